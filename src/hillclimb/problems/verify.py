"""Answer extraction and verification: exact-match for reasoning, sandboxed tests for code.

Conventions (one for the whole project, so SFT data, evaluation and RL rewards agree):
- reasoning problems: the assistant's final content is `The answer is X.`; `extract_answer` takes
  the LAST "answer is"/"answer:" in the completion (after any `</think>`), tolerating whitespace,
  a trailing period, thousands commas, a leading "+", "$", a unicode minus and fractions; if the
  phrase is missing it falls back to `\\boxed{X}` and then (numeric answers only) to the last
  number in the final content. Numbers compare as exact fractions (`0.5` == `1/2`), words
  case-insensitively (`yes`, `True`, names).
- code problems: the content is one ```python fenced block; `extract_answer` takes the last fenced
  block (an unclosed final fence counts up to the end), or the whole completion if there is none.

Code is never run in this process. `check_many` writes one workspace with every candidate and a
small runner, and makes ONE `run_sandboxed` call per batch; inside, the runner starts one fresh
`python -I -S` per candidate (a few at a time), with its own wall-clock timeout, address-space
and file-size limits, stdout/stderr sent to /dev/null, and reports through a per-run random
nonce that the candidate never sees — so a candidate that exits early, prints fake results or
hangs simply fails. Harness failures (sandbox missing, runner crashed) raise instead of being
counted as wrong answers.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.problems.base import Problem
from hillclimb.problems.steps import fmt, parse_number

_ANSWER_RE = re.compile(r"answer\s*(?:is|:|=)\s*:?\s*", re.IGNORECASE)
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
_NUM_TOKEN = r"[-+\u2212]?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?"
_NUM_RE = re.compile(_NUM_TOKEN)
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'_-]*|" + _NUM_TOKEN)
_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def final_content(p: Problem) -> str:
    """The assistant's final message for the reference solution (the one convention)."""
    if p.kind == "code":
        src = p.answer if p.answer.endswith("\n") else p.answer + "\n"
        return f"```python\n{src}```"
    return f"The answer is {p.answer}."


def _after_think(text: str) -> str:
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    return text.replace("<think>", "")


def _number(text: str) -> str | None:
    m = _NUM_RE.search(text)
    if not m:
        return None
    value = parse_number(m.group(0))
    return None if value is None else fmt(value)


def _normalise(p: Problem, raw: str) -> str | None:
    if parse_number(p.answer) is not None:
        return _number(raw)
    m = _WORD_RE.search(raw)
    if not m:
        return None
    word = m.group(0)
    value = parse_number(word)
    return fmt(value) if value is not None else word.casefold()


def extract_code(completion: str) -> str:
    text = _after_think(completion)
    blocks = _FENCE_RE.findall(text)
    if not blocks:
        return text.strip() + "\n"
    return blocks[-1][1]


def extract_answer(p: Problem, completion: str) -> str | None:
    """The final answer in a completion, normalised (None if there is none)."""
    if p.kind == "code":
        return extract_code(completion)
    text = _after_think(completion)
    matches = list(_ANSWER_RE.finditer(text))
    if matches:
        tail = text[matches[-1].end() :].split("\n", 1)[0].strip().strip("*`\"'")
        return _normalise(p, tail)
    boxed = _BOXED_RE.findall(text)
    if boxed:
        return _normalise(p, boxed[-1])
    if parse_number(p.answer) is not None:
        nums = _NUM_RE.findall(text)
        if nums:
            return _number(nums[-1])
    return None


def reference_answer(p: Problem) -> str:
    """The problem's answer in the same normal form `extract_answer` produces."""
    value = parse_number(p.answer)
    return fmt(value) if value is not None else p.answer.casefold()


def check(p: Problem, completion: str, *, timeout_s: float = 10.0) -> bool:
    """True iff the completion solves the problem (code runs in the sandbox, never here)."""
    if p.kind == "code":
        return check_many([p], [completion], timeout_s=timeout_s)[0]
    got = extract_answer(p, completion)
    if got is None:
        return False
    want = parse_number(p.answer)
    if want is not None:
        value = parse_number(got)
        return value is not None and Fraction(value) == want
    return got == reference_answer(p)


def check_many(
    problems: list[Problem],
    completions: list[str],
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
) -> list[bool]:
    """Batch `check`: reasoning in-process, all code in one sandbox run per 256 candidates."""
    return [
        d["passed"]
        for d in check_many_details(problems, completions, timeout_s=timeout_s, workers=workers)
    ]


def check_many_details(
    problems: list[Problem],
    completions: list[str],
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
    batch_size: int = 256,
) -> list[dict[str, Any]]:
    """Like `check_many`, with `status` (pass|fail|error|timeout|no_answer) and `detail`."""
    if len(problems) != len(completions):
        raise HillclimbError(
            f"{len(problems)} problems but {len(completions)} completions; they must pair up"
        )
    out: list[dict[str, Any] | None] = [None] * len(problems)
    code_idx: list[int] = []
    for i, (p, c) in enumerate(zip(problems, completions, strict=True)):
        if p.kind == "code":
            code_idx.append(i)
            continue
        got = extract_answer(p, c)
        ok = check(p, c)
        out[i] = {
            "passed": ok,
            "status": "pass" if ok else ("no_answer" if got is None else "fail"),
            "detail": "" if got is None else f"extracted {got!r}",
        }
    for start in range(0, len(code_idx), batch_size):
        chunk = code_idx[start : start + batch_size]
        results = _run_code_batch(
            [problems[i] for i in chunk], [completions[i] for i in chunk], timeout_s, workers
        )
        for i, r in zip(chunk, results, strict=True):
            out[i] = r
    return [r for r in out if r is not None]


# The per-candidate program. It reads the nonce first (before any candidate code exists), then
# detaches stdio, limits itself, runs candidate + tests in one namespace and reports once.
_ITEM_PY = r"""
import json, os, resource, sys, traceback
def main():
    i = int(sys.argv[1])
    nonce = sys.stdin.readline().strip()
    with open(os.path.join("items", f"{i}.json"), encoding="utf-8") as f:
        spec = json.load(f)
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    mem = spec["memory_mb"] << 20
    try:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    except (ValueError, OSError):
        pass
    status, detail = "pass", ""
    ns = {"__name__": "solution"}
    try:
        exec(compile(spec["code"], "solution.py", "exec"), ns)
        if spec["entry_point"] and not callable(ns.get(spec["entry_point"])):
            status, detail = "error", "function %s is not defined" % spec["entry_point"]
        else:
            try:
                exec(compile(spec["tests"], "tests.py", "exec"), ns)
            except AssertionError:
                tb = traceback.extract_tb(sys.exc_info()[2])
                lines = spec["tests"].splitlines()
                line = next((fr.lineno for fr in reversed(tb) if fr.filename == "tests.py"), 0)
                status, detail = "fail", lines[line - 1] if 0 < line <= len(lines) else ""
    except BaseException as exc:
        status, detail = "error", (type(exc).__name__ + ": " + str(exc))[:300]
    os.write(out, (json.dumps({"nonce": nonce, "status": status, "detail": detail}) + "\n").encode())
    os._exit(0)
main()
"""

_RUNNER_PY = r"""
import concurrent.futures, json, os, signal, subprocess, sys, tempfile
def main():
    with open("batch.json", encoding="utf-8") as f:
        spec = json.load(f)
    def one(i):
        nonce = spec["nonces"][i]
        with tempfile.TemporaryFile() as buf:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "item.py", str(i)],
                                    stdin=subprocess.PIPE, stdout=buf, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                proc.communicate((nonce + "\n").encode(), timeout=spec["timeout_s"])
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
                return {"status": "timeout", "detail": "over %ss" % spec["timeout_s"]}
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            buf.seek(0)
            for line in reversed(buf.read(1 << 20).decode("utf-8", "replace").splitlines()):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("nonce") == nonce:
                    return {"status": rec["status"], "detail": rec["detail"]}
            return {"status": "error", "detail": "no result (exit code %s)" % proc.returncode}
    with concurrent.futures.ThreadPoolExecutor(spec["workers"]) as pool:
        results = list(pool.map(one, range(len(spec["nonces"]))))
    print(json.dumps({"results": results}))
main()
"""


def _run_code_batch(
    problems: list[Problem], completions: list[str], timeout_s: float, workers: int | None
) -> list[dict[str, Any]]:
    from hillclimb.harness.sandbox import SandboxLimits, run_sandboxed

    n = len(problems)
    workers = max(1, min(workers or (os.cpu_count() or 2), 8, n))
    memory_mb = 512
    with tempfile.TemporaryDirectory(prefix="hillclimb-check-") as tmp:
        ws = Path(tmp)
        (ws / "items").mkdir()
        nonces = [secrets.token_hex(16) for _ in range(n)]
        for i, (p, c) in enumerate(zip(problems, completions, strict=True)):
            if not p.tests:
                raise HillclimbError(f"code problem {p.id} has no tests")
            item = {
                "code": extract_code(c),
                "tests": p.tests,
                "entry_point": p.entry_point,
                "memory_mb": memory_mb,
            }
            (ws / "items" / f"{i}.json").write_text(json.dumps(item), encoding="utf-8")
        (ws / "item.py").write_text(_ITEM_PY, encoding="utf-8")
        (ws / "runner.py").write_text(_RUNNER_PY, encoding="utf-8")
        (ws / "batch.json").write_text(
            json.dumps({"nonces": nonces, "timeout_s": timeout_s, "workers": workers}),
            encoding="utf-8",
        )
        rounds = -(-n // workers)
        limits = SandboxLimits(
            timeout_s=timeout_s * rounds + 30.0,
            memory_mb=max(1024, memory_mb * (workers + 1)),
            max_procs=max(64, 8 * workers),
        )
        res = run_sandboxed([sys.executable, "-I", "-S", "runner.py"], ws, limits)
    if res.status != "ok":
        raise HillclimbError(
            f"code check runner failed in the sandbox ({res.status}, backend {res.backend}): "
            f"{res.stderr.strip()[-500:]}"
        )
    try:
        results = json.loads(res.stdout.strip().splitlines()[-1])["results"]
    except (ValueError, KeyError, IndexError) as exc:
        raise HillclimbError(f"code check runner printed no results: {exc}") from exc
    if len(results) != n:
        raise HillclimbError(f"code check runner returned {len(results)} results for {n}")
    return [
        {"passed": r["status"] == "pass", "status": r["status"], "detail": r["detail"]}
        for r in results
    ]
