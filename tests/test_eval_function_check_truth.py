"""HumanEval-style checks across processes: a value that cannot cross has no truth value.

Why: the tester rebuilds the candidate's return value from exact builtin types; anything else
arrives as an opaque stand-in. Its truth value used to be Python's default (True), so
`assert candidate(x)` — a common HumanEval assert for predicates — passed for any object of the
candidate's own class (session 23)."""

from __future__ import annotations

import pytest

from hillclimb.eval.programs import FunctionCheck, run_function_checks


@pytest.mark.parametrize(
    "candidate",
    [
        "class T:\n    pass\ndef f(x):\n    return T()\n",
        "class B(int):\n    pass\ndef f(x):\n    return B(1)\n",
        "def f(x):\n    return (i for i in [1])\n",
    ],
    ids=["own_class", "int_subclass", "generator"],
)
def test_an_uncarried_return_value_does_not_pass_a_truthiness_assert(candidate):
    truthy = "def check(candidate):\n    assert candidate(3)\n"
    honest = "def f(x):\n    return x > 2\n"
    res = run_function_checks(
        [FunctionCheck(candidate, "f", (truthy,)), FunctionCheck(honest, "f", (truthy,))],
        timeout_s=20.0,
    )
    assert [r.status for r in res] == ["fail", "pass"], res
    assert "no truth value" in res[0].detail
