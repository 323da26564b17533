"""The climb's flywheel source: telemetry exports become SFT examples, with their provenance.

A model in production produces the next climb's training signal: harness episodes that resolved
their task, and answers API users accepted (`hillclimb telemetry export --served ...`,
docs/areas/server.md). A recipe names export directories per model in `[sft_data]`:

    [sft_data.code-flash]
    flywheel = ["exports/2026-12-05"]    # `telemetry export` output directories

and the sft-data stage adds their `sft.jsonl` records to that model's SFT file. What is admitted:
harness episodes (our own runs on our own tasks) and API answers whose record says the account
consented (`meta.consent` true — the export only writes those, this re-checks, so a hand-edited
export cannot smuggle a user's data in). Every admitted record keeps its `meta` (episode or
request id, account, consent) and gets `kind = "flywheel"`, so the stage record and the report
count how many training examples came from the flywheel and from where. The export's RL prompts
(unresolved / rejected tasks) are counted here; `hillclimb rl --harness EXPORT_DIR` trains on
them.

The stage's cache key includes a fingerprint of each export's files, so a new export re-runs
SFT data and everything after it, and an unchanged one does not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hillclimb.errors import ConfigError


def check_exports(paths: list[str], where: str) -> None:
    """Clear errors for export directories that are not `telemetry export` outputs."""
    for p in paths:
        d = Path(p)
        if not (d / "export.json").is_file() or not (d / "sft.jsonl").is_file():
            raise ConfigError(
                f"{where}: flywheel export {p} is not a `hillclimb telemetry export` output "
                "(needs export.json and sft.jsonl)"
            )


def fingerprint(paths: list[str]) -> str:
    """sha256 over the exports' sft.jsonl and rl_prompts.jsonl contents (the stage cache key)."""
    h = hashlib.sha256()
    for p in paths:
        for name in ("sft.jsonl", "rl_prompts.jsonl"):
            f = Path(p) / name
            h.update(name.encode())
            h.update(f.read_bytes() if f.is_file() else b"-")
    return h.hexdigest()[:16]


def flywheel_records(paths: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(SFT records admitted from the exports, counts and provenance for the stage record)."""
    check_exports(paths, "[sft_data] flywheel")
    records: list[dict[str, Any]] = []
    counts: dict[str, Any] = {
        "exports": [],
        "sft_examples": 0,
        "by_source": {},
        "refused_no_consent": 0,
        "rl_prompts_available": 0,
    }
    for p in paths:
        d = Path(p)
        admitted = refused = 0
        for n, line in enumerate(d.joinpath("sft.jsonl").read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{d / 'sft.jsonl'}:{n + 1}: not JSON ({exc})") from None
            meta = rec.get("meta") if isinstance(rec, dict) else None
            source = meta.get("source") if isinstance(meta, dict) else None
            if source == "harness" or (source == "api" and meta.get("consent") is True):
                rec["kind"], rec["source"] = "flywheel", f"flywheel/{source}"
                records.append(rec)
                admitted += 1
                counts["by_source"][source] = counts["by_source"].get(source, 0) + 1
            else:
                refused += 1
        rl = d / "rl_prompts.jsonl"
        n_rl = sum(1 for x in rl.read_text().splitlines() if x.strip()) if rl.is_file() else 0
        counts["exports"].append(
            {"path": str(d), "sft_examples": admitted, "refused": refused, "rl_prompts": n_rl}
        )
        counts["sft_examples"] += admitted
        counts["refused_no_consent"] += refused
        counts["rl_prompts_available"] += n_rl
    return records, counts
