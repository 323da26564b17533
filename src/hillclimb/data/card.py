"""The data card: `data_card.json` (machine-readable) and `DATA_CARD.md` (for people).

Why both: training and the registry read the JSON (token counts, tokenizer hash, filter drop
counts); a person auditing the corpus reads the Markdown, which states in words what every filter
removed and why. The card holds no timestamps or output paths, so identical builds produce
byte-identical cards.

It also holds the one-line reasons a build failed (`empty_corpus_message`), which both the CLI
and `pipeline.build` (a `--force` rebuild that kept nothing is refused) say from a card.
"""

from __future__ import annotations

import os
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
    "decontaminate": "documents containing an evaluation item: a shared run of `ngram` normalised "
    "words with a probe (prompt, worked solution, reference code or tests of a val/held-out "
    "problem, an item of a standard evaluation suite, or a text of a configured eval file), or a "
    "whole shorter probe",
    "dedup": "exact (sha256 of normalised text) and near duplicates (MinHash + LSH); "
    "the most permissively licensed copy is kept",
}


def _cell(v: Any) -> str:
    """A Markdown table cell: a `|` or a line break in a file or source name (both legal in a
    POSIX file name) would otherwise end the cell or the row and shift the table."""
    return str(v).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _table(title: str, rows: dict[str, dict[str, Any]], with_tokens: bool) -> list[str]:
    cols = ["documents", "bytes"] + (["tokens"] if with_tokens else [])
    out = [f"### {title}", "", f"| {title.split()[-1]} | " + " | ".join(cols) + " |"]
    out.append("|---|" + "---:|" * len(cols))
    for name, r in rows.items():
        out.append(f"| {_cell(name)} | " + " | ".join(f"{r.get(c, 0):,}" for c in cols) + " |")
    return out + [""]


def _match_rows(examples: list[dict[str, Any]]) -> list[str]:
    out = ["| probe | source | path | matching words |", "|---|---|---|---|"]
    for e in examples:
        words = e["match"] if len(e["match"]) <= 160 else e["match"][:157] + "..."
        out.append(
            f"| `{_cell(e['probe'])}` ({_cell(e['probe_origin'])}) | {_cell(e['source'])} "
            f"| {_cell(e.get('path') or '')} | {_cell(words.replace('|', '/'))} |"
        )
    return out + [""]


def _decontamination(f: dict[str, Any]) -> list[str]:
    """The decontamination entry's own counts: probes, removals per source, example matches."""
    lines: list[str] = []
    for key, what in (
        ("excluded_problem_files", "Problem generators excluded from tree sources (always; "
         "never documents)"),
        ("excluded_heldout_files", "Held-out directories (marked `.hillclimb-heldout`: code "
         "kept for evaluation only) excluded from tree sources"),
    ):  # fmt: skip
        counts = f.get(key) or {}
        if counts:
            files = ", ".join(f"{k} {v:,} files" for k, v in counts.items())
            lines += [f"{what}: {files}.", ""]
    pr = f.get("probes")
    if pr:
        origins = ", ".join(f"{k} {v:,}" for k, v in pr.get("by_origin", {}).items())
        suites = ", ".join(f"{k} {v:,}" for k, v in (pr.get("suite_items") or {}).items())
        vague = pr.get("uninformative_ngrams_skipped")
        lines += [
            f"Probes: {pr['probes']:,} texts ({origins}) from {pr.get('problem_items', 0):,} "
            f"problems, "
            + (f"the suites' items ({suites}) " if suites else "no suite items ")
            + f"and {len(pr.get('files', [])):,} eval files; {pr['too_short']:,} too "
            f"short to mean contamination (skipped), {pr['whole_text_probes']:,} matched only "
            f"whole; {pr['ngrams']:,} distinct hashed n-grams"
            + (f" ({vague:,} runs of numbers or characters left out)" if vague else "")
            + (
                f"; {pr['skeleton_ngrams']:,} code skeleton {pr['skeleton_ngram']}-grams of "
                f"{pr['skeleton_probes']:,} code probes (copies with renamed identifiers)"
                if pr.get("skeleton_ngrams")
                else ""
            )
            + ".",
            "",
        ]
    removed = f.get("removed_by_source") or {}
    if removed:
        lines += ["| source | documents removed | bytes removed |", "|---|---:|---:|"]
        for k, v in removed.items():
            lines.append(f"| {_cell(k)} | {v['documents']:,} | {v['bytes']:,} |")
        lines.append("")
    if f.get("examples"):
        lines += ["Example matches:", ""] + _match_rows(f["examples"])
    kept = f.get("generator_overlaps_kept") or {}
    if kept:
        lines += [
            "Generator documents sharing n-grams with probes, kept (the problem split is by "
            "problem key; sibling problems share template sentences and sub-steps): "
            + ", ".join(f"{k} {v:,}" for k, v in kept.items())
            + ".",
            "",
        ]
        if f.get("generator_overlap_examples"):
            lines += _match_rows(f["generator_overlap_examples"])
    return lines


def decontamination_summary(card: dict[str, Any]) -> list[str]:
    """A few Markdown lines for reports (the climb's): what decontamination checked and removed,
    with example matches (probe id + matching words). Empty for cards without the entry."""
    f = next((x for x in card.get("filters", []) if x.get("name") == "decontaminate"), None)
    if f is None:
        return []
    excluded = sum((f.get("excluded_problem_files") or {}).values())
    pr = f.get("probes")
    if not f.get("enabled") or not pr:
        return [
            f"**decontamination**: off; {excluded:,} problem-generator files excluded.",
            "",
        ]
    removed = f.get("removed_by_source") or {}
    by = ", ".join(f"{k} {v['documents']:,} ({v['bytes']:,} bytes)" for k, v in removed.items())
    kept = sum((f.get("generator_overlaps_kept") or {}).values())
    lines = [
        f"**decontamination**: {pr['probes']:,} probe texts ({pr['too_short']:,} too short to "
        f"count) checked against {f.get('stats', {}).get('documents_checked', 0):,} documents; "
        f"removed {f['dropped']:,}" + (f" ({by})" if by else "") + f"; {excluded:,} "
        f"problem-generator files excluded; {kept:,} generator documents share n-grams with "
        "probes (kept: split by problem key).",
        "",
    ]
    examples = f.get("examples") or f.get("generator_overlap_examples") or []
    if examples:
        what = "removed" if f.get("examples") else "kept generator overlaps"
        lines += [f"Example matches ({what}):", ""] + _match_rows(examples)
    return lines


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
    for w in card.get("warnings", []):
        lines += [f"**Warning:** {w}.", ""]
    lines += ["## Sources", "", "| name | kind | path |", "|---|---|---|"]
    for s in card["sources"]:
        lines.append(f"| {_cell(s['name'])} | {s['kind']} | {_cell(s.get('path') or '')} |")
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
                lines.append(f"| {_cell(reason)} | {n:,} |")
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
        if f["name"] == "decontaminate":
            lines += _decontamination(f)
    lines += [
        "Dropped documents are in `rejects/<filter>.jsonl.gz` with the reason (texts truncated "
        "and secret-redacted).",
        "",
    ]
    # a path that is not UTF-8 (a file name os.walk surrogate-escaped) is shown as `\udcff`
    # instead of making the card unwritable at the very end of a build
    return "\n".join(lines).encode("utf-8", "backslashreplace").decode("utf-8")


LICENSE_HINT = (
    "files whose license is unknown are dropped: give the source a LICENSE/COPYING file, "
    "package metadata or SPDX headers, pass --license SPDX with --source (the license your "
    'files are under), or use a recipe whose source declares `license = "..."` '
    "(docs/areas/data.md)"
)


def license_unknown(card: dict) -> int:
    """Documents the license filter dropped because no license could be told."""
    for f in card.get("filters", []):
        if f.get("name") == "license":
            return int(f.get("reasons", {}).get("unknown", 0))
    return 0


def empty_corpus_message(card: dict) -> str:
    """Why a build kept nothing, in the user's terms. Why: the old message always blamed
    licenses, which sent the user of an empty directory or an all-Latin-1 tree looking for a
    LICENSE file that would not have helped."""
    ingest = next((f for f in card.get("filters", []) if f.get("name") == "ingest"), {})
    read = int(ingest.get("stats", {}).get("documents_read", 0) or 0)
    head = "data build kept no document"
    if not read:
        skipped = ", ".join(f"{r} {n}" for r, n in ingest.get("reasons", {}).items())
        why = f" (skipped: {skipped})" if skipped else ""
        missing = ", ".join(f"{n} ({p})" for n, p in missing_paths(card, None))
        where = f"; no such path: {missing}" if missing else ""
        return (
            f"{head}: no file of the sources could be read as a document{why}{where}; check "
            "the paths, and that the files are UTF-8 text of a known type (docs/areas/data.md)"
        )
    if license_unknown(card):
        return f"{head} (the filters above say why); {LICENSE_HINT}"
    return f"{head} (the filters above say why; rejects/ holds each dropped file and its reason)"


def missing_paths(card: dict, names: set[str] | None) -> list[tuple[str, str]]:
    """(name, path) of each source of the card (of `names`, when given) whose path does not
    exist. Why: a `missing_source` skip was only a count, so a user with several sources had to
    open rejects/ to learn which path was wrong."""
    out = []
    for src in card.get("sources", []):
        path, name = src.get("path"), src.get("name")
        wanted = names is None or name in names
        if wanted and isinstance(path, str) and path and not os.path.lexists(path):
            out.append((str(name), path))
    return out
