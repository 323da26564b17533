"""The FIM suite — `hillclimb eval --model CKPT|URL --suite fim`: fill-in-the-middle on held-out
cuts of licensed code that is not in our training corpus.

Why: code-flash serves IDE completions (`/v1/completions` with `suffix`), and the generator
suites never ask for a middle. Items are cut from this Python's standard library (PSF-2.0,
a licensed source the climb recipes do not ingest), one line inside a function body per item:
prefix = up to `PREFIX_CHARS` before the line, suffix = up to `SUFFIX_CHARS` after it, the
middle = the line itself (without its newline). The prompt is the PSM layout our server builds
for a `suffix` request (`tokenizer.specials.fim_prompt`, Qwen2.5-Coder's tokens), sent as raw
text, so a checkpoint and our server see the same tokens; another server must honour those
special tokens in a raw prompt for the numbers to compare.

Scoring: the answer is cut at its first newline (one line was removed). `exact` = the answer
equals the middle; `exact_stripped` = equal up to surrounding whitespace; `prefix_match` = the
share of the middle's characters the answer gets right from the start (a partial credit an IDE
user sees as "how much of the line was right"). Also the share of empty answers and of answers
that open a Markdown fence (the failure the issue reported: "```python" for a FIM request).
Beside them, the no-model baseline "repeat the previous non-blank line" on the same items.

What it does not show: multi-line middles, or whether a different but correct line was written
(exact match is strict); test-based FIM scoring is not built.
"""

from __future__ import annotations

import ast
import random
import sysconfig
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import Backend, Request
from hillclimb.eval.suite_common import SuiteConfig, generation_stats, metric

PREFIX_CHARS = 1200
SUFFIX_CHARS = 400
DEFAULT_N_ITEMS = 100
DEFAULT_MAX_TOKENS = 48
MIN_MIDDLE = 8  # characters of the removed line (shorter lines say little)


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The standard library's own .py files (no tests, no site-packages), sorted."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    out = []
    for p in sorted(base.rglob("*.py")):
        rel = p.relative_to(base).parts
        if any(x in ("site-packages", "dist-packages", "test", "tests", "idlelib") for x in rel):
            continue
        out.append(p)
    return out


def make_items(n: int, seed: int, root: Path | None = None) -> list[dict[str, Any]]:
    """n seeded FIM items (module docstring); one per file, files drawn without replacement."""
    files = stdlib_files(root)
    if not files:
        raise HillclimbError(f"no Python standard library sources found under {root or 'stdlib'}")
    rng = random.Random(seed)
    rng.shuffle(files)
    items: list[dict[str, Any]] = []
    for f in files:
        if len(items) >= n:
            break
        try:
            text = f.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        lines = text.splitlines(keepends=True)
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line))
        body_lines = sorted(
            {
                node.lineno
                for fn in ast.walk(tree)
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                for node in ast.walk(fn)
                if isinstance(node, ast.stmt) and node is not fn and node.lineno == node.end_lineno
            }
        )
        cands = [
            i - 1
            for i in body_lines
            if len(lines[i - 1].strip()) >= MIN_MIDDLE
            and not lines[i - 1].strip().startswith(("#", '"', "'"))
            and lines[i - 1].isascii()
        ]
        if not cands:
            continue
        k = rng.choice(cands)
        line = lines[k]
        middle = line[:-1] if line.endswith("\n") else line
        a, b = starts[k], starts[k] + len(middle)
        items.append(
            {
                "id": f"fim-{len(items):03d}",
                "source": f.name,
                "line": k + 1,
                "prefix": text[max(0, a - PREFIX_CHARS) : a],
                "middle": middle,
                "suffix": text[b : b + SUFFIX_CHARS],
            }
        )
    return items


def score(middle: str, answer: str) -> dict[str, Any]:
    line = answer.split("\n", 1)[0]
    k = 0
    while k < min(len(line), len(middle)) and line[k] == middle[k]:
        k += 1
    return {
        "answer": line,
        "exact": line == middle,
        "exact_stripped": line.strip() == middle.strip(),
        "prefix_match": k / len(middle) if middle else 0.0,
        "empty": not line.strip(),
        "fence": answer.lstrip().startswith("```"),
    }


def run_fim(backend: Backend, cfg: SuiteConfig) -> dict[str, Any]:
    from hillclimb.tokenizer.specials import fim_prompt

    items = make_items(cfg.n_items or DEFAULT_N_ITEMS, cfg.seed)
    if cfg.limit:
        items = items[: cfg.limit]
    max_tokens = cfg.max_tokens or DEFAULT_MAX_TOKENS
    comps = backend.complete(
        [
            Request(
                it["id"],
                fim_prompt(it["prefix"], it["suffix"]),
                0,
                max_tokens,
                0.0,
                1.0,
                (),
                cfg.seed,
            )  # fmt: skip
            for it in items
        ]
    )
    rows = []
    for it, c in zip(items, comps, strict=True):
        s = score(it["middle"], c.text)
        rows.append(
            {
                "id": it["id"],
                "source": f"{it['source']}:{it['line']}",
                "middle": it["middle"],
                **s,
                "passed": s["exact_stripped"],
                "finish_reason": c.finish_reason,
                "completion_tokens": c.completion_tokens,
            }
        )
    metrics = {
        "exact": metric([float(r["exact"]) for r in rows], cfg, salt=1),
        "exact_stripped": metric([float(r["exact_stripped"]) for r in rows], cfg, salt=2),
        "prefix_match": metric([float(r["prefix_match"]) for r in rows], cfg, salt=3),
        "empty": metric([float(r["empty"]) for r in rows], cfg, salt=4),
        "fence": metric([float(r["fence"]) for r in rows], cfg, salt=5),
    }
    # the no-model baseline: repeat the last non-blank line of the prefix (indentation and
    # repeated statements make this non-trivial for code)
    base = [score(it["middle"], _previous_line(it["prefix"])) for it in items]
    baseline = {
        "what": "repeat the previous non-blank line",
        "exact_stripped": metric([float(b["exact_stripped"]) for b in base], cfg, salt=6),
        "prefix_match": metric([float(b["prefix_match"]) for b in base], cfg, salt=7),
    }
    return {
        "n_items": len(items),
        "metrics": metrics,
        "baseline": baseline,
        **generation_stats(comps),
        "items": rows,
    }


def _previous_line(prefix: str) -> str:
    for line in reversed(prefix.splitlines()):
        if line.strip():
            return line
    return ""
