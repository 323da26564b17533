"""Family `arith`: one arithmetic operation, with column-by-column worked solutions.

Tiers (each grows the numbers or the operations, never the phrasing):
1. one-digit a + b, and a - b with a non-negative result (155 facts; a problem's key is the fact,
   with + and × keys order-free, so 3 + 5 and 5 + 3 are one problem and split together);
2. two-digit ± (non-negative), one-digit × one-digit, table division;
3. three-digit ± (negative results allowed), two-digit × one-digit, long division by one digit;
4. three-digit × two-digit, long division (up to two-digit divisors), fraction + and -.

Training phrasing is deliberately narrow (a handful of symbol templates) so tier 1 stays
learnable by a tiny model. The held-out phrasings are what a user also types: operator words
("What is 7 plus 5?", "Find the product of 6 and 4."), ASCII operators (`*`, `/`) and unspaced
expressions — never seen in training, to measure whether the model learned arithmetic or a template.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction

from hillclimb.problems.base import Built, Draft, Phrasing
from hillclimb.problems.steps import add_steps, div_steps, fmt, frac_steps, mul_steps, sub_steps

KIND = "reasoning"
TIER_SUMMARY = {
    1: "one-digit a + b and a - b (result >= 0)",
    2: "two-digit + and -, one-digit x one-digit, table division",
    3: "three-digit + and - (negatives), two-digit x one-digit, long division by one digit",
    4: "three-digit x two-digit, long division by up to two digits, fraction + and -",
}

TEMPLATES = (
    "What is {e}?",
    "Compute {e}.",
    "Calculate {e}.",
    "{e} = ?",
    "What does {e} equal?",
    "Work out {e}.",
)
# Held-out phrasings: operator words per operation, and the expression written differently.
WORDED: dict[str, tuple[str, ...]] = {
    "+": (
        "What is {a} plus {b}?",
        "Find the sum of {a} and {b}.",
        "Add {a} and {b}.",
        "How much is {a} plus {b}?",
    ),
    "-": (
        "What is {a} minus {b}?",
        "Subtract {b} from {a}.",
        "How much is {a} minus {b}?",
        "Take {b} away from {a}. What is left?",
    ),
    "×": (
        "What is {a} times {b}?",
        "Find the product of {a} and {b}.",
        "Multiply {a} by {b}.",
        "How much is {a} multiplied by {b}?",
    ),
    "÷": (
        "What is {a} divided by {b}?",
        "Divide {a} by {b}.",
        "How much is {a} divided by {b}?",
        "What do you get when you divide {a} by {b}?",
    ),
}
# (none of these is a training template of any family: arith_chain trains on "Evaluate {e}.")
SYMBOLIC_HELDOUT = (
    "Find the value of {e}.",
    "{e} equals what?",
    "Solve: {e}",
    "Give the result of {e}.",
)
ASCII = {"×": "*", "÷": "/"}


def _op_problem(rng: random.Random, tier: int) -> tuple[int | Fraction, str, int | Fraction]:
    if tier == 1:
        if rng.random() < 0.5:
            return rng.randint(0, 9), "+", rng.randint(0, 9)
        a = rng.randint(0, 9)
        return a, "-", rng.randint(0, a)
    kind = rng.randrange(3) if tier < 4 else rng.randrange(4)
    if tier == 2:
        if kind == 0:
            a, b = rng.randint(10, 99), rng.randint(1, 99)
            if rng.random() < 0.5:
                return a, "+", b
            a, b = max(a, b), min(a, b)
            return a, "-", b
        if kind == 1:
            return rng.randint(1, 9), "×", rng.randint(1, 9)
        b, q = rng.randint(2, 9), rng.randint(1, 9)
        return b * q, "÷", b
    if tier == 3:
        if kind == 0:
            return rng.randint(100, 999), rng.choice("+-"), rng.randint(100, 999)
        if kind == 1:
            return rng.randint(10, 99), "×", rng.randint(2, 9)
        b, q = rng.randint(2, 9), rng.randint(10, 99)
        return b * q, "÷", b
    if kind == 0:
        return rng.randint(100, 999), "×", rng.randint(10, 99)
    if kind == 1:
        b = rng.randint(2, 9) if rng.random() < 0.5 else rng.randint(11, 30)
        q = rng.randint(100, 999)
        return b * q, "÷", b
    # fractions (two kinds of draws keep + and - balanced)
    da, db = rng.randint(2, 12), rng.randint(2, 12)
    a = Fraction(rng.randint(1, da - 1), da)
    b = Fraction(rng.randint(1, db - 1), db)
    return a, rng.choice("+-"), b


def _steps(a: int | Fraction, op: str, b: int | Fraction) -> tuple[list[str], int | Fraction]:
    if isinstance(a, Fraction) or isinstance(b, Fraction):
        fa, fb = Fraction(a), Fraction(b)
        return frac_steps(fa, op, fb), (fa + fb if op == "+" else fa - fb)
    table: dict[str, Callable[[int, int], list[str]]] = {
        "+": add_steps,
        "-": sub_steps,
        "×": mul_steps,
        "÷": div_steps,
    }
    value = {"+": a + b, "-": a - b, "×": a * b}.get(op)
    return table[op](a, b), (a // b if value is None else value)


def problem_key(a: int | Fraction, op: str, b: int | Fraction) -> str:
    """The fact itself: order-free for the commutative operations."""
    x, y = fmt(a), fmt(b)
    if op in "+×" and Fraction(a) > Fraction(b):
        x, y = y, x
    return f"{x} {op} {y}"


def _heldout_prompt(phr: Phrasing, a: int | Fraction, op: str, b: int | Fraction) -> str:
    k = phr.rng.randrange(3)
    if k == 0:
        return phr.rng.choice(WORDED[op]).format(a=fmt(a), b=fmt(b))
    sym = ASCII.get(op, op) if phr.rng.random() < 0.7 else op
    expr = f"{fmt(a)}{sym}{fmt(b)}" if k == 1 else f"{fmt(a)} {sym} {fmt(b)}"
    return phr.rng.choice(SYMBOLIC_HELDOUT).format(e=expr)


def sample(rng: random.Random, tier: int, phr: Phrasing) -> Draft:
    a, op, b = _op_problem(rng, tier)
    expr = f"{fmt(a)} {op} {fmt(b)}"
    if phr.style == "train":
        prompt = phr.rng.choice(TEMPLATES).format(e=expr)
    else:
        prompt = _heldout_prompt(phr, a, op, b)

    def build() -> Built:
        lines, value = _steps(a, op, b)
        return {
            "reasoning": "\n".join(lines),
            "answer": fmt(value),
            "meta": {"expression": expr, "op": op, "steps": len(lines)},
        }

    return Draft(prompt, problem_key(a, op, b), build)
