"""No-training baselines: what an accuracy must beat before it means the model learned anything.

Printed beside every accuracy in `hillclimb eval` and the climb report:

- **lookup** — a lookup table over training items: each evaluation item is answered with the
  answer (code: the reference solution) of the most similar training item of the same family and
  tier (exact prompt first, else the largest overlap of word/number tokens). This is what pure
  memorisation scores; with an honest split (held out by underlying problem, function and
  phrasing) it should be near zero except where answers repeat by chance.
- **majority** — always answer the most common training answer of the cell (reasoning only).
- **chance** — for multiple-choice items (`meta["choices"]`: yes/no, True/False, "which of a or
  b", a name from an ordering), the mean of 1/len(choices); None when no item is multiple choice.
- **best** — the largest of the three: the number printed beside the accuracy.

The training items are `n_train` draws of the generator's train split (the same distribution the
climb trains on; not byte-identical to a given run's SFT file, which is a sample of it). Code
lookups are verified in the sandbox like any answer.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hillclimb.problems import Problem, check_many
from hillclimb.problems.verify import final_content

_TOKEN = re.compile(r"[A-Za-z_]+|\d+")


def _tokens(text: str) -> frozenset[str]:
    return frozenset(t.lower() for t in _TOKEN.findall(text))


@dataclass
class CellBaseline:
    lookup: float
    majority: float | None
    chance: float | None

    @property
    def best(self) -> float:
        return max(x for x in (self.lookup, self.majority, self.chance) if x is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lookup": self.lookup,
            "majority": self.majority,
            "chance": self.chance,
            "best": self.best,
        }


def _nearest(item: Problem, train: list[Problem], sets: list[frozenset[str]]) -> Problem:
    for t in train:
        if t.prompt == item.prompt:
            return t
    a = _tokens(item.prompt)
    best, best_score = train[0], -1.0
    for t, b in zip(train, sets, strict=True):
        inter = len(a & b)
        score = inter / (len(a) + len(b) - inter or 1)
        if score > best_score:
            best, best_score = t, score
    return best


def cell_baselines(
    items: list[Problem], train: list[Problem], *, check_timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """Per-item baseline outcomes: `{"lookup": bool, "majority": bool|None, "chance": float|None}`.

    `items` and `train` are problems of one family and tier."""
    if not items:
        return []
    if not train:
        return [{"lookup": False, "majority": None, "chance": _chance(p)} for p in items]
    sets = [_tokens(t.prompt) for t in train]
    answers = [final_content(_nearest(p, train, sets)) for p in items]
    # A lookup answer is the neighbour's final content; code answers run in the sandbox.
    lookup = check_many(items, answers, timeout_s=check_timeout_s)
    majority: list[bool | None]
    if items[0].kind == "code":
        majority = [None] * len(items)
    else:
        common = Counter(t.answer for t in train).most_common(1)[0][0]
        majority = check_many(items, [f"The answer is {common}."] * len(items))
    return [
        {"lookup": bool(lk), "majority": mj, "chance": _chance(p)}
        for p, lk, mj in zip(items, lookup, majority, strict=True)
    ]


# One worked step of a word-problem solution: "a op b = c" (column arithmetic never appears there).
_STEP = re.compile(r"(\d+) ([+\-×÷]) (\d+) = \d+")


def worked_arithmetic(p: Problem) -> tuple[tuple[str, ...], ...]:
    """The arithmetic of a word problem's worked solution, one `(a, op, b)` per step in order,
    operands of + and × sorted: what stories of two templates share ("has 3, gets 5 more" and
    "3 and 5 together" are both 3 + 5). Empty for a solution with no such step."""
    out = []
    for a, op, b in _STEP.findall(p.reasoning):
        if op in "+×":
            a, b = sorted((a, b), key=int)
        out.append((a, op, b))
    return tuple(out)


def flag_seen_arithmetic(items: list[Problem], train: list[Problem]) -> int:
    """Sets `meta["arith_seen_in_train"]` on every `word_problem` item of `items`: whether a
    training item (`train`: the same family and tier) works the same arithmetic; returns how many
    are flagged. Other families are left alone (their keys are their arithmetic or logic).

    Why: word problems are keyed by template and numbers, so a held-out story may repeat a
    training story's arithmetic in other words (tier 1's number space is small: session 26's
    audit found 14 of 20 held-out tier-1 items doing so). The flag lets evaluation print the
    accuracy without them beside the plain one. With no training items nothing is flagged."""
    seen = {worked_arithmetic(t) for t in train if t.family == "word_problem"}
    seen.discard(())
    flagged = 0
    for p in items:
        if p.family != "word_problem":
            continue
        hit = bool(train) and worked_arithmetic(p) in seen
        p.meta["arith_seen_in_train"] = hit
        flagged += hit
    return flagged


def _chance(p: Problem) -> float | None:
    choices = (p.meta or {}).get("choices")
    return 1.0 / len(choices) if choices else None


def summarise(outcomes: list[dict[str, Any]]) -> CellBaseline:
    """Cell-level baseline accuracies from per-item outcomes."""
    n = max(1, len(outcomes))
    lookup = sum(bool(o["lookup"]) for o in outcomes) / n
    maj = [o["majority"] for o in outcomes if o["majority"] is not None]
    majority = sum(maj) / len(maj) if maj else None
    ch = [o["chance"] for o in outcomes]
    chance = None if all(c is None for c in ch) else sum(c or 0.0 for c in ch) / n
    return CellBaseline(lookup, majority, chance)
