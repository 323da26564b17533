"""The FIM suite — `hillclimb eval --model CKPT|URL --suite fim`: fill-in-the-middle on held-out
cuts of licensed code that is not in our training corpus.

Why: code-flash serves IDE completions (`/v1/completions` with `suffix`), and the generator
suites never ask for a middle. Items are cut from this Python's standard library (PSF-2.0), from
the third of its files that no corpus built here contains (`io.stdlib_heldout`: the default data
recipe ingests the stdlib through `python_env`, which skips exactly those), one line inside a
function body per item:
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

**Test-based FIM** (`test_pass`): exact match cannot tell a different but correct line from a
wrong one, so a second item set is scored by running tests. Items are the `code_function`
generator's held-out functions (never trained on) with at least two one-line statements in the
body: one of them is removed (seeded); prefix = the function as an editor shows it (signature +
docstring, `meta["completion_prompt"]`) + the body before the line, suffix = the body after it;
prefix + answer line + suffix is judged against the problem's asserts by the RL reward's checker
in the sandbox (`suite_common.check_assert_programs`; run beside the asserts, a one-line
`return` of an always-equal object passed every item). `--n-items N` asks N stdlib items and max(1, N // 10) test items per tier (default 10;
tier 1's bodies are one statement, so it gives none); the "previous line" baseline is run
through the same tests.

What it does not show: multi-line middles; other languages.
"""

from __future__ import annotations

import ast
import random
import sysconfig
from collections.abc import Callable
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
    """The standard library's own .py files (no tests, no site-packages) held out of every corpus
    the data pipeline builds (`io.stdlib_heldout`: a third of the files), sorted. With `root`
    (another tree of code) every file counts."""
    from hillclimb.io import stdlib_heldout

    base = Path(root or sysconfig.get_paths()["stdlib"])
    out = []
    for p in sorted(base.rglob("*.py")):
        rel = p.relative_to(base).parts
        if any(x in ("site-packages", "dist-packages", "test", "tests", "idlelib") for x in rel):
            continue
        if root is None and not stdlib_heldout(p.relative_to(base).as_posix()):
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
        lines = _source_lines(text)
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


DEFAULT_TEST_PER_TIER = 10


def _source_lines(text: str) -> list[str]:
    """The lines of `text` as `ast` numbers them (with their "\\n"). Not `str.splitlines`: it
    also breaks at form feeds, \\x1c-\\x1e, \\x85 and U+2028/2029 (legal inside Python source,
    e.g. in a docstring), after which `lines[node.lineno - 1]` was another line than the
    statement's: the cut landed in a docstring and the item's line number was off."""
    parts = text.split("\n")
    return [x + "\n" for x in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def make_test_items(per_tier: int, seed: int) -> list[dict[str, Any]]:
    """`per_tier` test-based items per tier from held-out generated functions (docstring)."""
    from hillclimb import problems as P

    rng = random.Random(f"fim-tests/{seed}")
    items: list[dict[str, Any]] = []
    for tier in P.TIERS:
        got = 0
        for p in P.generate("code_function", tier, per_tier * 4, seed, "heldout"):
            if got >= per_tier:
                break
            lines = p.answer.splitlines(keepends=True)
            fn = ast.parse(p.answer).body[0]
            cands = sorted(
                {
                    node.lineno - 1
                    for node in ast.walk(fn)
                    if isinstance(node, ast.stmt) and node is not fn
                    and node.lineno == node.end_lineno
                    and len(lines[node.lineno - 1].strip()) >= MIN_MIDDLE
                }
            )  # fmt: skip
            if len(cands) < 2:  # a one-statement body is a completion, not a middle
                continue
            k = rng.choice(cands)
            middle = lines[k].rstrip("\n")
            items.append(
                {
                    "id": f"fim-test-t{tier}-{got:02d}",
                    "source": p.id,
                    "line": k + 1,
                    "prefix": p.meta["completion_prompt"] + "".join(lines[1:k]),
                    "middle": middle,
                    "suffix": "\n" + "".join(lines[k + 1 :]),
                    "tests": p.tests,
                }
            )
            got += 1
    return items


def test_programs(items: list[dict[str, Any]], answers: list[str]) -> list[str]:
    """Prefix + the answer's first line + suffix + the asserts, per item."""
    return [
        f"{code}\n\n{it['tests']}"
        for it, code in zip(items, candidate_sources(items, answers), strict=True)
    ]


def candidate_sources(items: list[dict[str, Any]], answers: list[str]) -> list[str]:
    """Prefix + the answer's first line + suffix (the function to test), per item."""
    return [
        f"{it['prefix']}{a.split(chr(10), 1)[0]}{it['suffix']}"
        for it, a in zip(items, answers, strict=True)
    ]


def run_test_items(items: list[dict[str, Any]], answers: list[str], timeout_s: float) -> list[Any]:
    """Each answer line in its function, judged against the item's asserts by the reward's
    checker (`suite_common.check_assert_programs`: a one-line `return` of an always-equal
    object passed every item when the function and its asserts shared an interpreter)."""
    from hillclimb.eval.suite_common import check_assert_programs

    return check_assert_programs(
        [it["id"] for it in items],
        candidate_sources(items, answers),
        [it["tests"] for it in items],
        timeout_s,
    )


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


def run_fim(
    backend: Backend, cfg: SuiteConfig, announce: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The suite's result; `announce` is told how many items will run before the first does
    (`--n-items N` is N text items plus test items per tier, not a total)."""
    from hillclimb.tokenizer.specials import fim_prompt

    items = make_items(cfg.n_items or DEFAULT_N_ITEMS, cfg.seed)
    per_tier = max(1, cfg.n_items // 10) if cfg.n_items else DEFAULT_TEST_PER_TIER
    tests = make_test_items(per_tier, cfg.seed)
    if announce is not None:
        line = (f"fim suite: {len(items) + len(tests)} items: {len(items)} standard-library "
                f"lines and {len(tests)} test-based ({per_tier} per tier 2-4)")  # fmt: skip
        if cfg.limit and cfg.limit < len(items) + len(tests):
            line += f"; --limit {cfg.limit} asks the first {cfg.limit}"
        announce(line)
    if cfg.limit:  # the first N items in all, text items first (each set was cut to N: 2N ran)
        items = items[: cfg.limit]
        tests = tests[: cfg.limit - len(items)]
    n_text = len(items)
    items = items + tests
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
    # the no-model baseline: repeat the last non-blank line of the prefix (indentation and
    # repeated statements make this non-trivial for code)
    prev = [_previous_line(it["prefix"]) for it in items]
    ran = run_test_items(
        tests + tests, [c.text for c in comps[n_text:]] + prev[n_text:], cfg.timeout_s
    )
    ran_model, ran_base = ran[: len(tests)], ran[len(tests) :]
    rows = []
    for j, (it, c) in enumerate(zip(items, comps, strict=True)):
        s = score(it["middle"], c.text)
        row = {"id": it["id"], "source": f"{it['source']}:{it['line']}", "middle": it["middle"],
               **s, "passed": s["exact_stripped"]}  # fmt: skip
        if j >= n_text:  # test-based: a different but working line counts
            r = ran_model[j - n_text]
            row.update(passed=r.passed, test_status=r.status)
        rows.append(
            {**row, "finish_reason": c.finish_reason, "completion_tokens": c.completion_tokens}
        )
    text_rows, test_rows = rows[:n_text], rows[n_text:]
    base = [score(it["middle"], p) for it, p in zip(items[:n_text], prev, strict=False)]
    base_test = [score(it["middle"], p) for it, p in zip(tests, prev[n_text:], strict=True)]
    # a metric over no items (a --limit that leaves no test items) is left out, not 0% of nothing
    part = {"text": text_rows, "all": rows, "test": test_rows, "base": base, "ran": ran_base,
            "base_test": base_test}  # fmt: skip
    specs = {
        "exact": ("text", lambda r: r["exact"], 1),
        "exact_stripped": ("text", lambda r: r["exact_stripped"], 2),
        "prefix_match": ("text", lambda r: r["prefix_match"], 3),
        "empty": ("all", lambda r: r["empty"], 4),
        "fence": ("all", lambda r: r["fence"], 5),
        "test_pass": ("test", lambda r: r["passed"], 8),
        "test_exact_stripped": ("test", lambda r: r["exact_stripped"], 9),
    }
    # every accuracy beside the baseline on its own items ("exact" and "test_exact_stripped"
    # stood beside "-": the previous line is sometimes exactly the removed one)
    base_specs = {
        "exact": ("base", lambda b: b["exact"], 11),
        "exact_stripped": ("base", lambda b: b["exact_stripped"], 6),
        "prefix_match": ("base", lambda b: b["prefix_match"], 7),
        "test_pass": ("ran", lambda r: r.passed, 10),
        "test_exact_stripped": ("base_test", lambda b: b["exact_stripped"], 12),
    }

    def measured(which: dict[str, Any]) -> dict[str, Any]:
        return {
            name: metric([float(get(x)) for x in part[src]], cfg, salt=salt)
            for name, (src, get, salt) in which.items()
            if part[src]
        }

    metrics = measured(specs)
    baseline = {"what": "repeat the previous non-blank line", **measured(base_specs)}
    return {
        "n_items": len(items),
        "n_text_items": n_text,
        "n_test_items": len(tests),
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
