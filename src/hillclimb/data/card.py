"""The data card: `data_card.json` (machine-readable) and `DATA_CARD.md` (for people).

Why both: training and the registry read the JSON (token counts, tokenizer hash, filter drop
counts); a person auditing the corpus reads the Markdown, which states in words what every filter
removed and why. The card holds no timestamps or output paths, so identical builds produce
byte-identical cards.
"""

from __future__ import annotations

from typing import Any

CARD_FORMAT = "hillclimb-data-card-v1"

FILTER_WHY = {
    "ingest": "bad input skipped before filtering: missing sources, unreadable, binary, "
    "non-UTF-8, oversized, empty, unsupported file types, malformed records",
    "license": "only allowlisted (permissive by default) licenses may be trained on; "
    "GPL-family, proprietary and unknown licenses are dropped",
    "blocklist": "web documents from blocked domains (hosts of other models' outputs by "
    "default) and vendored, minified or generated files",
    "ai_content": "documents with markers of another model's output (no distillation)",
    "ai_detector": "Binoculars observer/performer perplexity ratio below threshold "
    "(likely machine-generated)",
    "quality": "StarCoder-style code heuristics (line lengths, alphanumeric fraction, "
    "auto-generated markers, encoded blobs) and Gopher-style prose heuristics",
    "secrets": "never drops: redacts e-mails, API keys/tokens, private keys, passwords",
    "dedup": "exact (sha256 of normalised text) and near duplicates (MinHash + LSH); "
    "the most permissively licensed copy is kept",
}


def _table(title: str, rows: dict[str, dict[str, Any]], with_tokens: bool) -> list[str]:
    cols = ["documents", "bytes"] + (["tokens"] if with_tokens else [])
    out = [f"### {title}", "", f"| {title.split()[-1]} | " + " | ".join(cols) + " |"]
    out.append("|---|" + "---:|" * len(cols))
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(f"{r.get(c, 0):,}" for c in cols) + " |")
    return out + [""]


def render_markdown(card: dict[str, Any]) -> str:
    with_tokens = card.get("tokenizer") is not None
    t = card["totals"]
    lines = [
        "# Data card",
        "",
        f"Recipe: `{card.get('recipe') or 'ad hoc --source'}` · config fingerprint "
        f"`{card['fingerprint'][:16]}`",
        "",
        f"**{t['documents']:,} documents, {t['bytes']:,} bytes"
        + (f", {t['tokens']:,} tokens" if with_tokens else "")
        + f"** from {card['ingest']['items']:,} candidate items.",
        "",
    ]
    if with_tokens:
        tk = card["tokenizer"]
        lines += [
            f"Tokenizer sha256 `{tk['sha256'][:16]}`, vocabulary {tk['vocab_size']:,} "
            f"(shards dtype {tk.get('dtype', '?')}).",
            "",
        ]
    lines += ["## Sources", "", "| name | kind | path |", "|---|---|---|"]
    for s in card["sources"]:
        lines.append(f"| {s['name']} | {s['kind']} | {s.get('path') or ''} |")
    lines.append("")
    lines += ["## Contents", ""]
    lines += _table("by split", card["by_split"], with_tokens)
    lines += _table("by source", card["by_source"], with_tokens)
    lines += _table("by language", card["by_language"], with_tokens)
    lines += _table("by license", card["by_license"], with_tokens)
    lines += ["## What each filter removed and why", ""]
    for f in card["filters"]:
        why = FILTER_WHY.get(f["name"], "")
        lines.append(f"### {f['name']} — dropped {f['dropped']:,}")
        lines += ["", why, ""]
        if f.get("reasons"):
            lines += ["| reason | documents |", "|---|---:|"]
            for reason, n in f["reasons"].items():
                lines.append(f"| {reason} | {n:,} |")
            lines.append("")
        if f.get("stats"):
            lines.append(
                "Other counts: " + ", ".join(f"{k} {v:,}" for k, v in f["stats"].items()) + "."
            )
            lines.append("")
        if f.get("params"):
            lines.append(
                "Parameters: " + ", ".join(f"{k}={v}" for k, v in f["params"].items()) + "."
            )
            lines.append("")
    lines += [
        "Dropped documents are in `rejects/<filter>.jsonl.gz` with the reason (texts truncated "
        "and secret-redacted).",
        "",
    ]
    return "\n".join(lines)
