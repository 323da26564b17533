"""The AIME-style held-out family: every answer equals a brute-force count, every worked solution
verifies, wrong answers fail, and it can never be generated for training."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from hillclimb import problems as P
from hillclimb.errors import HillclimbError
from hillclimb.problems import competition as C


def _brute(name: str, f: dict[str, int]) -> int:
    if name == "multiples":
        return sum(1 for x in range(1, f["n"] + 1) if x % f["a"] == 0 or x % f["b"] == 0)
    if name == "powmod":
        return f["a"] ** f["k"] % f["m"]
    if name == "divisors":
        return sum(1 for d in range(1, f["n"] + 1) if f["n"] % d == 0)
    if name == "digitsum":
        return sum(map(int, str(f["a"] ** f["k"])))
    if name == "sumsq":
        return sum(i * i for i in range(1, f["n"] + 1)) % f["m"]
    if name == "pairs":  # x > n, and y follows; x - n divides n^2, so x <= n + n^2
        n = f["n"]
        return sum(1 for x in range(n + 1, n + n * n + 1) if (n * x) % (x - n) == 0)
    if name == "paths":  # DP over the grid, the forbidden point set to 0
        m, n, p, q = f["m"], f["n"], f["p"], f["q"]
        ways = [[0] * (n + 1) for _ in range(m + 1)]
        for i in range(m + 1):
            for j in range(n + 1):
                if (i, j) == (p, q):
                    continue
                ways[i][j] = (
                    1
                    if i == j == 0
                    else (ways[i - 1][j] if i else 0) + (ways[i][j - 1] if j else 0)
                )
        return ways[m][n]
    if name == "linear":
        a, b, n = f["a"], f["b"], f["n"]
        return sum(1 for x in range(n + 1) for y in range(n + 1) if a * x + b * y == n)
    if name == "subsets":
        items = range(1, f["n"] + 1)
        return sum(
            1
            for r in range(f["n"] + 1)
            for s in itertools.combinations(items, r)
            if sum(s) % f["k"] == 0
        )
    if name == "legendre":
        fact, e = math.factorial(f["n"]), 0
        while fact % f["p"] == 0:
            fact, e = fact // f["p"], e + 1
        return e
    if name == "quadratic":
        return sum(1 for x in range(1, f["N"] + 1) if (x * x + f["c"] * x + f["d"]) % f["p"] == 0)
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(C.SOLVERS))
def test_every_answer_equals_brute_force(name):
    for seed in range(25):
        fields, lines, answer = C.SOLVERS[name](random.Random(seed))
        assert answer == _brute(name, fields), (name, fields)
        assert lines and str(answer) in lines[-1]


def test_templates_cover_the_tiers_and_wordings_fit():
    assert sorted(n for names in C.TIER_TEMPLATES.values() for n in names) == sorted(C.SOLVERS)
    for name, (train, held) in C.WORDINGS.items():
        fields = C.SOLVERS[name](random.Random(0))[0]
        for w in train + held:
            text = w.format(**fields)
            assert "{" not in text.replace("{1", "").replace("{S", ""), (name, w)
        assert not set(train) & set(held)


def test_generated_items_verify_and_wrong_answers_fail():
    for tier in P.TIERS:
        held = P.generate("competition", tier, 20, seed=3, split="heldout")
        phr = P.generate("competition", tier, 20, seed=3, split="heldout_phrasing")
        assert len(held) == 20 and [p.key for p in held] == [p.key for p in phr]
        for p in held + phr:
            assert P.check(p, f"<think>\n{p.reasoning}\n</think>\n\nThe answer is {p.answer}.")
            assert not P.check(p, f"The answer is {int(p.answer) + 1}.")
    assert "competition" in P.HELDOUT_FAMILIES and P.FAMILIES["competition"] == "reasoning"
    for split in ("train", "val"):
        with pytest.raises(HillclimbError, match="held-out family"):
            P.generate("competition", 1, 1, 0, split)
