"""Decontamination of training *records* (SFT examples, flywheel exports), not corpus documents.

Why: the data build drops corpus documents that contain an evaluation item, but training data can
also arrive as records that never pass through it — an SFT file a user brings
(`hillclimb sft --data FILE --decontaminate PROBES`) or a telemetry export the climb's flywheel
admits. A benchmark answer pasted into one of them is as much a leak as one in the corpus, so such
records are judged by the same index (`probes.npz`, written by every data build) and the same
`Decontaminator` looks, on every string the record could be trained on.

Records are judged as outside text: there is no generator exemption here (the data build's
`generators` source is its own, split by problem key; a record in a user's file only claims a
provenance). Built-in problem examples (`--problems`) are generated from the train split and are
not judged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hillclimb.errors import ConfigError

PROBES_FILE = "probes.npz"


def record_text(rec: dict[str, Any]) -> str:
    """Every string a record could train on, joined: every string anywhere in it but its `meta`
    — message contents in any shape, tool-call arguments, and the `text` / `fim` fields that
    `train.sft_data.encode_record` trains on when a record has no messages."""
    parts: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk({k: v for k, v in rec.items() if k != "meta"})
    return "\n".join(parts)


def check_probes_spec(spec: Any) -> Path | None:
    """The probes.npz path `spec` names (None for `default`), or a clear error — checked when a
    config is made, so a typo fails before a model is loaded, not after data is read."""
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise ConfigError(
            f"--decontaminate must be a probes.npz, a data build output dir or `default`, "
            f"got {spec!r}"
        )
    if str(spec) == "default":
        return None
    path = Path(spec)
    if path.is_dir():
        if not (path / PROBES_FILE).is_file():
            raise ConfigError(
                f"--decontaminate {spec}: no {PROBES_FILE} in that directory (a `hillclimb data "
                "build` output has one beside documents/; or pass `default`)"
            )
        return path / PROBES_FILE
    if not path.is_file():
        raise ConfigError(
            f"--decontaminate {spec}: not found (a probes.npz, a data build output directory, "
            "or `default`)"
        )
    return path


def load_probes(spec: str | Path) -> tuple[Any, str]:
    """(ProbeIndex, a description for logs and cards) from `spec`: a `probes.npz` file, a
    directory holding one (a data build's output), or `default` — the index a data build with
    the default `[data.decontaminate]` table would use (problem items of seed 0, 50 per family x
    tier, and the standard suites; about a minute on 2 cores)."""
    from hillclimb.data.decontam import ProbeIndex, build_index

    if str(spec) == "default":
        from hillclimb.data.config import DecontaminateConfig

        return build_index(DecontaminateConfig()), "default probes ([data.decontaminate] defaults)"
    from hillclimb.errors import HillclimbError

    path = check_probes_spec(spec)
    assert path is not None
    try:
        return ProbeIndex.load(path), str(path)
    except HillclimbError as exc:  # its hint names the data build's --force: say what that means
        raise ConfigError(
            f"--decontaminate {spec}: {exc} (rebuild it: `hillclimb data build ... --force`, "
            "or pass `default`)"
        ) from None


def decontaminate_records(
    records: list[dict[str, Any]], index: Any, examples: int = 5
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the records that contain no evaluation item, a report: how many were judged and dropped,
    per probe origin, and the first `examples` matches with the record's position)."""
    from hillclimb.data.config import DecontaminateConfig
    from hillclimb.data.decontam import Decontaminator

    judge = Decontaminator(index, DecontaminateConfig(), set())
    kept: list[dict[str, Any]] = []
    by_origin: dict[str, int] = {}
    shown: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        verdict, m = judge.check(record_text(rec), "records", None)
        if verdict == "clean":
            kept.append(rec)
            continue
        assert m is not None
        by_origin[m.origin] = by_origin.get(m.origin, 0) + 1
        if len(shown) < examples:
            shown.append({"record": i, "probe": m.probe, "origin": m.origin, "match": m.ngram})
    report = {
        "judged": len(records),
        "dropped": len(records) - len(kept),
        "by_origin": dict(sorted(by_origin.items())),
        "examples": shown,
    }
    return kept, report
