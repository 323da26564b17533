"""Family `sequence` (held out): continue a number sequence — never used for training.

Why it exists: the other families measure new problems and new wordings of tasks the models were
trained on. A held-out *family* measures transfer: the arithmetic the models learned, applied to a
task format they have never seen ("What number comes next: 2, 5, 8, 11?"). It is listed in
`problems.HELDOUT_FAMILIES`, so `generate(..., split="train" | "val")` refuses it and no recipe
can put it into pre-training or SFT data; its worked solutions exist only for reports and for
users who deliberately choose to train on it under another name.

Tiers: 1 = add a small constant (four terms shown); 2 = subtract a constant, or double/triple;
3 = differences that grow by a constant, or two alternating steps; 4 = each term the sum of the
two before, or a term missing in the middle of an arithmetic sequence.
"""

from __future__ import annotations

import random

from hillclimb.problems.base import Built, Draft, Phrasing

KIND = "reasoning"
TIER_SUMMARY = {
    1: "add a small constant (four terms shown)",
    2: "subtract a constant, or multiply by 2 or 3",
    3: "differences that grow by a constant, or two alternating steps",
    4: "each term the sum of the two before, or a missing middle term",
}

TEMPLATES = (
    "What number comes next in the sequence {s}?",
    "What is the next number: {s}, ...?",
)
HELDOUT_TEMPLATES = (
    "Continue the pattern: {s}, __",
    "Find the next term of {s}.",
)
MISSING = ("Which number is missing: {s}?", "Fill in the blank: {s}.")


def _terms(rng: random.Random, tier: int) -> tuple[list[int], int | None, list[str], int, str]:
    """(terms, missing index or None, worked lines, answer, key)."""
    if tier == 1:
        a, d = rng.randint(0, 9), rng.randint(1, 5)
        xs = [a + i * d for i in range(5)]
        lines = [f"Each term is {d} more than the one before.", f"{xs[3]} + {d} = {xs[4]}."]
        return xs[:4], None, lines, xs[4], f"add:{a},{d}"
    if tier == 2:
        if rng.random() < 0.5:
            d = rng.randint(2, 9)
            a = rng.randint(4 * d, 4 * d + 30)
            xs = [a - i * d for i in range(5)]
            lines = [f"Each term is {d} less than the one before.", f"{xs[3]} - {d} = {xs[4]}."]
            return xs[:4], None, lines, xs[4], f"sub:{a},{d}"
        r, a = rng.choice((2, 3)), rng.randint(1, 5)
        xs = [a * r**i for i in range(5)]
        lines = [f"Each term is {r} times the one before.", f"{xs[3]} × {r} = {xs[4]}."]
        return xs[:4], None, lines, xs[4], f"mul:{a},{r}"
    if tier == 3:
        a, d, dd = rng.randint(0, 9), rng.randint(1, 5), rng.randint(1, 3)
        if rng.random() < 0.5:
            xs, step = [a], d
            for _ in range(5):
                xs.append(xs[-1] + step)
                step += dd
            diffs = [xs[i + 1] - xs[i] for i in range(4)]
            lines = [
                f"The differences are {', '.join(map(str, diffs))}; they grow by {dd}.",
                f"The next difference is {diffs[-1] + dd}, so {xs[4]} + {diffs[-1] + dd} = {xs[5]}.",
            ]
            return xs[:5], None, lines, xs[5], f"grow:{a},{d},{dd}"
        p, q = rng.randint(1, 6), rng.randint(1, 6)
        xs = [a]
        for i in range(6):
            xs.append(xs[-1] + (p if i % 2 == 0 else q))
        lines = [
            f"The steps alternate: +{p}, +{q}.",
            f"The next step is +{p}: {xs[5]} + {p} = {xs[6]}.",
        ]
        return xs[:6], None, lines, xs[6], f"alt:{a},{p},{q}"
    if rng.random() < 0.5:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        xs = [a, b]
        for _ in range(5):
            xs.append(xs[-1] + xs[-2])
        lines = ["Each term is the sum of the two before it.", f"{xs[4]} + {xs[5]} = {xs[6]}."]
        return xs[:6], None, lines, xs[6], f"fib:{a},{b}"
    a, d = rng.randint(0, 40), rng.randint(2, 12)
    xs = [a + i * d for i in range(6)]
    gap = rng.randint(1, 4)
    lines = [
        f"The known terms step by {d}.",
        f"The missing term is {xs[gap - 1]} + {d} = {xs[gap]}.",
    ]
    return xs, gap, lines, xs[gap], f"gap:{a},{d},{gap}"


def sample(rng: random.Random, tier: int, phr: Phrasing) -> Draft:
    xs, gap, lines, answer, key = _terms(rng, tier)
    shown = ", ".join("?" if i == gap else str(x) for i, x in enumerate(xs))
    if gap is not None:
        prompt = phr.pick(MISSING[:1], MISSING[1:]).format(s=shown)
    else:
        prompt = phr.pick(TEMPLATES, HELDOUT_TEMPLATES).format(s=shown)

    def build() -> Built:
        return {
            "reasoning": "\n".join(lines),
            "answer": str(answer),
            "meta": {"template": key.split(":", 1)[0], "steps": len(lines)},
        }

    return Draft(prompt, key, build)
