"""Code problems checked in the real sandbox: references pass, bugs and attacks fail."""

from __future__ import annotations

import pytest

from hillclimb.problems import TIERS, check, check_many_details, generate, to_messages

sandbox = pytest.importorskip("hillclimb.harness.sandbox")
pytestmark = pytest.mark.skipif(
    sandbox.sandbox_backend() is None, reason="no sandbox isolation backend on this machine"
)


def _fence(src: str) -> str:
    return f"```python\n{src}```"


def test_references_pass_and_bugs_fail_in_one_batch():
    ps = []
    for family in ("code_function", "code_bugfix"):
        for tier in TIERS:
            ps += generate(family, tier, 3, seed=1, split="heldout")
    refs = [to_messages(p)[1]["content"] for p in ps]
    empty = [_fence(f"def {p.entry_point}(*args):\n    return None\n") for p in ps]
    bugs = [_fence(p.meta["buggy"]) for p in ps if p.family == "code_bugfix"]
    bug_ps = [p for p in ps if p.family == "code_bugfix"]
    results = check_many_details(ps + ps + bug_ps, refs + empty + bugs, timeout_s=10)
    n = len(ps)
    assert all(r["passed"] for r in results[:n]), [r for r in results[:n] if not r["passed"]]
    assert not any(r["passed"] for r in results[n:]), [r for r in results[n:] if r["passed"]]
    assert {r["status"] for r in results[2 * n :]} <= {"fail", "error"}


def test_single_check_and_attacks():
    p = generate("code_function", 1, 1, seed=0)[0]
    good = to_messages(p)[1]["content"]
    assert check(p, good)
    fn = p.entry_point
    attacks = {
        "exit0": _fence("import sys\nsys.exit(0)\n"),
        "os_exit": _fence("import os\nos._exit(0)\n"),
        "fake_json": _fence('print(\'{"status": "pass", "detail": "", "nonce": "x"}\')\n'),
        "hang": _fence(f"def {fn}(*a):\n    while True:\n        pass\n"),
        "missing": _fence("def something_else():\n    return 1\n"),
        "syntax": _fence("def (:\n"),
    }
    results = check_many_details([p] * len(attacks), list(attacks.values()), timeout_s=2)
    by_name = dict(zip(attacks, results, strict=True))
    assert not any(r["passed"] for r in results), by_name
    assert by_name["hang"]["status"] == "timeout"
    assert by_name["missing"]["status"] == "error"
