"""Code problems checked in the real sandbox: references pass, bugs, near misses and attacks fail.

Most code problems are generated programs (`problems.codegen`); the rest are catalogue tasks."""

from __future__ import annotations

import pytest

from hillclimb.problems import TIERS, check, check_many_details, generate, to_messages

sandbox = pytest.importorskip("hillclimb.sandbox")
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
    assert sum(p.key.startswith("gen:") for p in ps) >= len(ps) // 2
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


def test_near_misses_of_generated_functions_fail():
    """A solution that leaves out one stage or branch of a generated function fails its tests in
    the sandbox (the generator only keeps functions whose tests tell every part apart)."""
    import random

    from hillclimb.problems.base import make_problem
    from hillclimb.problems.codegen import _build, _draw_structure, instance_of
    from hillclimb.problems.codetasks import assert_line

    ps, good, near = [], [], []
    rng = random.Random(3)
    while len(ps) < 8:
        tier = 2 + len(ps) % 3
        spec = _build(rng, *_draw_structure(rng, tier))
        inst = instance_of(spec) if spec is not None else None
        if inst is None or not spec.ablations:
            continue
        tests = "\n".join(assert_line(inst.name, a, e) for a, e in inst.cases) + "\n"
        built = {"reasoning": inst.plan, "answer": inst.source, "tests": tests}
        built["entry_point"] = inst.name
        ps.append(make_problem("code_function", "code", tier, inst.doc, built, inst.key))
        good.append(_fence(inst.source))
        near.append(_fence(spec.ablations[0]))
    results = check_many_details(ps + ps, good + near, timeout_s=10)
    assert all(r["passed"] for r in results[:8]), results[:8]
    assert not any(r["passed"] for r in results[8:]), results[8:]
