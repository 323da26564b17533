"""Decontamination against disguised evaluation items (session 16, docs/LOG.md;
docs/areas/data.md "Decontamination").

Builds the default probe index (`problems.contamination_probes`, seed 0, 50 per family x tier),
takes every held-out probe text of >= 13 normalised words, disguises it (CRLF, tabs, NBSP,
full-width digits, Cyrillic look-alikes, zero-width spaces, NFKD, ligatures, soft hyphens, a
comment after every line, HTML-escaped, URL-encoded with `quote` / `quote_plus`, and — for texts
that parse as Python and define names — its identifiers consistently renamed), embeds it in a
document and counts how often the filter still finds it — the index alone, and as
`Decontaminator.check` judges a document (with its further looks). `renamed_identifiers` counts
only the eligible texts; `eligible` says how many parsed and how many had names to rename. With
`--humaneval`, HumanEval's prompt + canonical solution (renamed and URL-encoded) against an index
of the humaneval suite probes as well.

    python bench/decontam_disguises.py [--humaneval]   # ~1-2 min on 2 cores; one JSON line
"""

from __future__ import annotations

import argparse
import ast
import builtins
import html
import io
import json
import keyword
import tokenize
import unicodedata
import urllib.parse
from collections import Counter

import hillclimb.problems as P
from hillclimb.data.config import DecontaminateConfig
from hillclimb.data.decontam import Decontaminator, Probe, ProbeIndex, normalize_tokens

LOOK = str.maketrans({"a": "а", "e": "е", "o": "о", "i": "і", "c": "с", "p": "р"})  # Cyrillic


def disguises(t: str) -> dict[str, str]:
    return {
        "verbatim": t,
        "crlf": t.replace("\n", "\r\n"),
        "tabs": t.replace("    ", "\t"),
        "nbsp": t.replace(" ", "\u00a0"),
        "fullwidth_digits": t.translate({ord(d): chr(0xFF10 + int(d)) for d in "0123456789"}),
        "cyrillic_lookalikes": t.translate(LOOK),
        "zero_width": t.replace(" ", " \u200b"),
        "nfkd": unicodedata.normalize("NFKD", t),
        "ligature_fi": t.replace("fi", "\ufb01"),
        "soft_hyphen": t.replace("o", "o\u00ad"),
        "comment_every_line": "\n".join(line + "  # note" for line in t.splitlines()),
        # as a web page shows code: < > & " ' as entities, newlines as <br> (session 17)
        "html_escaped": html.escape(t).replace("\n", "<br>\n"),
        # as a URL query carries it (session 18)
        "url_encoded": urllib.parse.quote(t),
        "url_encoded_plus": urllib.parse.quote_plus(t),
    }


# New names for renamed identifiers, in order of first appearance (then `name_<k>`).
WORDS = [
    "text",
    "total",
    "value",
    "item",
    "data",
    "result",
    "current",
    "index",
    "entry",
    "amount",
    "first",
    "second",
    "left",
    "right",
    "node",
    "part",
    "piece",
    "store",
    "chunk",
    "element",
    "number",
    "record",
    "state",
    "target",
    "window",
    "other",
    "extra",
    "acc",
    "tmp",
]
_KEEP = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))


def _bound_names(tree: ast.AST) -> list[str]:
    """Names the code binds itself, in source order: function / class names, arguments, assigned,
    loop / with / comprehension targets, `except ... as` names. Imported names, builtins and
    keywords are not among them (a renaming that keeps the code working leaves them)."""
    imported = {
        (a.asname or a.name).split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    found: list[tuple[int, int, str]] = []
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((n.lineno, n.col_offset, n.name))
        elif isinstance(n, ast.arg):
            found.append((n.lineno, n.col_offset, n.arg))
        elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            found.append((n.lineno, n.col_offset, n.id))
        elif isinstance(n, ast.ExceptHandler) and n.name:
            found.append((n.lineno, n.col_offset, n.name))
    names = dict.fromkeys(name for *_, name in sorted(found))
    return [n for n in names if n not in _KEEP and n not in imported and not n.startswith("__")]


def _call_keywords_to_keep(tree: ast.AST, renamed: set[str]) -> set[tuple[int, int]]:
    """(line, column) of keyword arguments in calls of functions that are not renamed
    (`sorted(xs, key=key)`: the first `key` is the callee's parameter and stays)."""
    keep = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name) and n.func.id in renamed):
            keep |= {(k.lineno, k.col_offset) for k in n.keywords if k.arg}
    return keep


def rename_identifiers(src: str) -> str | None:
    """`src` with every name it binds consistently renamed (see `_bound_names`; new names from
    `WORDS` that the source does not use), or None when it does not parse as Python or binds no
    name. Attributes after `.`, keyword arguments of other callees, strings and comments are left
    as they are; the token stream is rewritten in place, so the layout stays."""
    try:
        tree = ast.parse(src)
        toks = list(tokenize.generate_tokens(io.StringIO(src).readline))
    except (SyntaxError, tokenize.TokenError, IndentationError, ValueError):
        return None
    names = _bound_names(tree)
    if not names:
        return None
    used = {t.string for t in toks if t.type == tokenize.NAME} | _KEEP
    fresh = (w for w in [*WORDS, *(f"name_{k}" for k in range(len(names)))] if w not in used)
    mapping = dict(zip(names, fresh, strict=False))
    keep = _call_keywords_to_keep(tree, set(mapping))
    lines = src.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []
    prev = None
    for t in toks:
        if t.type == tokenize.NAME and t.string in mapping and (prev is None or prev.string != "."):
            row, col = t.start
            byte_col = len(lines[row - 1][:col].encode("utf-8"))
            if (row, byte_col) not in keep:
                edits.append((row, col, t.end[1], mapping[t.string]))
        if t.type not in (tokenize.NL, tokenize.COMMENT):
            prev = t
    for row, start, end, new in reversed(edits):
        line = lines[row - 1]
        lines[row - 1] = line[:start] + new + line[end:]
    return "".join(lines)


def drop_docstrings(src: str) -> str:
    """`src` without the lines of its docstrings (module, class, function): HumanEval's prompt
    is mostly docstring, which the word look catches whatever the names; without it only the code
    is left to find."""
    tree = ast.parse(src)
    drop: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = n.body[0] if n.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                drop |= set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines = src.splitlines(keepends=True)
    return "".join(line for i, line in enumerate(lines, 1) if i not in drop)


def measure(index: ProbeIndex, texts: list[str], with_disguises: bool = True) -> dict:
    """Per disguise: texts tried (`n`), caught by the index alone and by the filter's check."""
    judge = Decontaminator(index, DecontaminateConfig(), set())
    n, by_index, by_filter = Counter(), Counter(), Counter()
    parsed = 0
    for t in texts:
        variants = disguises(t) if with_disguises else {"verbatim": t}
        parsed += _parses(t)
        renamed = rename_identifiers(t)
        if renamed is not None:
            variants["renamed_identifiers"] = renamed
        for name, text in variants.items():
            doc = "Some preface text here.\n" + text + "\nend"
            n[name] += 1
            by_index[name] += index.match(doc) is not None
            by_filter[name] += judge.check(doc, "web", None)[0] == "drop"
    out = {name: {"n": n[name], "index": by_index[name], "filter": by_filter[name]} for name in n}
    out["eligible"] = {"texts": len(texts), "parse": parsed, "renamed": n["renamed_identifiers"]}
    return out


def _parses(text: str) -> bool:
    """Whether `text` parses as Python (the texts a renaming could apply to)."""
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


def humaneval(index_cfg: DecontaminateConfig) -> dict:
    """HumanEval's prompt + canonical solution renamed / URL-encoded, against the suite probes."""
    from hillclimb.data.decontam import build_index
    from hillclimb.eval.humaneval import load_problems

    index = build_index(index_cfg)
    texts = [p["prompt"] + p["canonical_solution"] for p in load_problems()]
    out = measure(index, texts, with_disguises=False)
    judge = Decontaminator(index, DecontaminateConfig(), set())
    bare = [rename_identifiers(drop_docstrings(t)) for t in texts]
    docs = ["Some preface text here.\n" + t + "\nend" for t in bare if t is not None]
    out["renamed_no_docstring"] = {
        "n": len(docs),
        "index": sum(index.match(d) is not None for d in docs),
        "filter": sum(judge.check(d, "web", None)[0] == "drop" for d in docs),
    }
    for name, enc in (
        ("url_encoded", urllib.parse.quote),
        ("url_encoded_plus", urllib.parse.quote_plus),
    ):
        docs = ["Some preface text here.\n" + enc(t) + "\nend" for t in texts]
        out[name] = {
            "n": len(docs),
            "index": sum(index.match(d) is not None for d in docs),
            "filter": sum(judge.check(d, "web", None)[0] == "drop" for d in docs),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-per-tier", type=int, default=50)
    ap.add_argument("--humaneval", action="store_true", help="HumanEval solutions as well")
    args = ap.parse_args()
    recs = P.contamination_probes(seeds=[0], n_per_tier=args.n_per_tier)
    probes = [Probe(r["id"], "problems:" + r["split"], t) for r in recs for t in r["texts"] if t]
    index = ProbeIndex.build(probes, 13, 8)
    texts = [
        t
        for r in recs
        if r["split"] == "heldout"
        for t in r["texts"]
        if len(normalize_tokens(t)) >= 13
    ]
    out = measure(index, texts)
    if args.humaneval:
        cfg = DecontaminateConfig(problems_n_per_tier=0, suites=["humaneval"])
        out["humaneval"] = humaneval(cfg)
    print(json.dumps(out))


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
