"""Family `word_problem`: templated stories (counting, shopping, ages, rates, sharing).

Each template draws names, objects, units and numbers, writes the story, and writes the worked
solution as one short sentence per arithmetic step; the tier is the number of steps (1, 2, 3,
4-5) and the size of the numbers. Numbers are chosen so every intermediate value is a
non-negative integer and every division is exact, so the answer is always a plain integer (units
are named in the question and omitted from the answer: "The answer is 19.").
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hillclimb.problems.base import Built

KIND = "reasoning"
TIER_SUMMARY = {
    1: "one step: gain, loss, combine, compare, age in n years (numbers < 10)",
    2: "two steps: shopping, gain then loss, relative ages, distance, packs",
    3: "three steps: change from a bill, two-leg trips, ages, sharing leftovers",
    4: "four or five steps: several purchases and change, weekly savings, production",
}

NAMES = (
    ("Mia", "she", "her"),
    ("Noah", "he", "his"),
    ("Ava", "she", "her"),
    ("Liam", "he", "his"),
    ("Zoe", "she", "her"),
    ("Omar", "he", "his"),
    ("Lena", "she", "her"),
    ("Ravi", "he", "his"),
    ("Sara", "she", "her"),
    ("Tom", "he", "his"),
    ("Nina", "she", "her"),
    ("Ben", "he", "his"),
    ("Aisha", "she", "her"),
    ("Kenji", "he", "his"),
    ("Ines", "she", "her"),
    ("Leo", "he", "his"),
    ("Maya", "she", "her"),
    ("Ivan", "he", "his"),
    ("Rosa", "she", "her"),
    ("Sam", "he", "his"),
)
OBJECTS = (
    ("apple", "apples"),
    ("pencil", "pencils"),
    ("sticker", "stickers"),
    ("marble", "marbles"),
    ("book", "books"),
    ("cookie", "cookies"),
    ("card", "cards"),
    ("shell", "shells"),
    ("stamp", "stamps"),
    ("balloon", "balloons"),
    ("egg", "eggs"),
    ("toy car", "toy cars"),
    ("orange", "oranges"),
    ("button", "buttons"),
    ("coin", "coins"),
    ("flower", "flowers"),
)
SHOP = (
    ("pen", "pens"),
    ("notebook", "notebooks"),
    ("sandwich", "sandwiches"),
    ("ticket", "tickets"),
    ("mug", "mugs"),
    ("ball", "balls"),
    ("candle", "candles"),
    ("puzzle", "puzzles"),
    ("plant", "plants"),
    ("kite", "kites"),
    ("scarf", "scarves"),
    ("lamp", "lamps"),
)
MONEY = ("dollars", "euros", "pounds", "coins")
VEHICLES = ("car", "train", "bus", "cyclist", "boat", "truck")
DIST = ("km", "miles")
CONTAINERS = (("box", "boxes"), ("bag", "bags"), ("basket", "baskets"), ("jar", "jars"))
MACHINES = ("machine", "printer", "bakery", "factory line")


def _count(n: int, obj: tuple[str, str]) -> str:
    return f"{n} {obj[0] if n == 1 else obj[1]}"


def _two_names(rng: random.Random) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    a, b = rng.sample(NAMES, 2)
    return a, b


def _t1(rng: random.Random) -> tuple[str, list[str], int, str]:
    (n1, p1, _), (n2, _, _) = _two_names(rng)
    obj = rng.choice(OBJECTS)
    k = rng.randrange(5)
    if k == 0:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        q = f"{n1} has {_count(a, obj)}. {p1.capitalize()} gets {b} more. How many {obj[1]} does {n1} have now?"
        return q, [f"{a} + {b} = {a + b}."], a + b, "gain"
    if k == 1:
        a = rng.randint(2, 9)
        b = rng.randint(1, a)
        q = f"{n1} has {_count(a, obj)}. {p1.capitalize()} gives {b} to {n2}. How many {obj[1]} does {n1} have left?"
        return q, [f"{a} - {b} = {a - b}."], a - b, "loss"
    if k == 2:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        q = f"{n1} has {_count(a, obj)} and {n2} has {_count(b, obj)}. How many {obj[1]} do they have together?"
        return q, [f"{a} + {b} = {a + b}."], a + b, "combine"
    if k == 3:
        b = rng.randint(1, 8)
        a = rng.randint(b + 1, 9)
        q = f"{n1} has {_count(a, obj)}. {n2} has {_count(b, obj)}. How many more {obj[1]} does {n1} have than {n2}?"
        return q, [f"{a} - {b} = {a - b}."], a - b, "compare"
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    q = f"{n1} is {a} years old. How old will {p1} be in {b} years?"
    return q, [f"{a} + {b} = {a + b}."], a + b, "age"


def _t2(rng: random.Random) -> tuple[str, list[str], int, str]:
    (n1, p1, _), (n2, _, _) = _two_names(rng)
    k = rng.randrange(5)
    if k == 0:
        item, item2 = rng.sample(SHOP, 2)
        cur = rng.choice(MONEY)
        c, p, q2 = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 20)
        q = (
            f"{n1} buys {c} {item[1]} for {p} {cur} each and a {item2[0]} for {q2} {cur}. "
            f"How many {cur} does {p1} spend?"
        )
        lines = [
            f"The {item[1]} cost {c} × {p} = {c * p} {cur}.",
            f"In total {c * p} + {q2} = {c * p + q2} {cur}.",
        ]
        return q, lines, c * p + q2, "shopping"
    if k == 1:
        obj = rng.choice(OBJECTS)
        a, b = rng.randint(5, 30), rng.randint(2, 20)
        c = rng.randint(1, a + b)
        q = (
            f"{n1} has {_count(a, obj)}. {p1.capitalize()} finds {b} more and then gives {c} to {n2}. "
            f"How many {obj[1]} does {n1} have now?"
        )
        lines = [
            f"After finding more: {a} + {b} = {a + b}.",
            f"After giving some away: {a + b} - {c} = {a + b - c}.",
        ]
        return q, lines, a + b - c, "gain_loss"
    if k == 2:
        a, d, y = rng.randint(3, 15), rng.randint(1, 9), rng.randint(1, 10)
        q = f"{n1} is {a} years old. {n2} is {d} year{'s' if d > 1 else ''} older than {n1}. How old will {n2} be in {y} years?"
        lines = [
            f"{n2} is {a} + {d} = {a + d} years old now.",
            f"In {y} years: {a + d} + {y} = {a + d + y}.",
        ]
        return q, lines, a + d + y, "ages"
    if k == 3:
        v, u = rng.choice(VEHICLES), rng.choice(DIST)
        s, t, e = rng.randint(2, 9) * 10, rng.randint(2, 5), rng.randint(1, 20)
        q = f"A {v} travels {s} {u} per hour for {t} hours and then {e} {u} more. How many {u} does it travel in total?"
        lines = [
            f"In {t} hours: {s} × {t} = {s * t} {u}.",
            f"In total {s * t} + {e} = {s * t + e} {u}.",
        ]
        return q, lines, s * t + e, "distance"
    obj, box = rng.choice(OBJECTS), rng.choice(CONTAINERS)
    b, per, extra = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 9)
    q = (
        f"{n1} has {b} {box[1]} with {per} {obj[1]} in each {box[0]}, and {extra} loose {obj[1]}. "
        f"How many {obj[1]} does {p1} have?"
    )
    lines = [
        f"In the {box[1]}: {b} × {per} = {b * per}.",
        f"With the loose ones: {b * per} + {extra} = {b * per + extra}.",
    ]
    return q, lines, b * per + extra, "packs"


def _t3(rng: random.Random) -> tuple[str, list[str], int, str]:
    (n1, p1, _), (n2, _, _) = _two_names(rng)
    k = rng.randrange(4)
    if k == 0:
        item, item2 = rng.sample(SHOP, 2)
        cur = rng.choice(MONEY)
        c, p, q2 = rng.randint(2, 9), rng.randint(3, 15), rng.randint(5, 30)
        total = c * p + q2
        bill = next(x for x in (20, 50, 100, 200) if x >= total)
        q = (
            f"{n1} buys {c} {item[1]} at {p} {cur} each and a {item2[0]} for {q2} {cur}. "
            f"{p1.capitalize()} pays with a {bill}-{cur[:-1]} note. How many {cur} of change does {p1} get?"
        )
        lines = [
            f"The {item[1]} cost {c} × {p} = {c * p} {cur}.",
            f"Everything costs {c * p} + {q2} = {total} {cur}.",
            f"The change is {bill} - {total} = {bill - total} {cur}.",
        ]
        return q, lines, bill - total, "change"
    if k == 1:
        v, u = rng.choice(VEHICLES), rng.choice(DIST)
        s1, t1 = rng.randint(3, 12) * 10, rng.randint(2, 5)
        s2, t2 = rng.randint(3, 12) * 5, rng.randint(2, 4)
        q = (
            f"A {v} travels at {s1} {u} per hour for {t1} hours, then at {s2} {u} per hour for "
            f"{t2} hours. How many {u} does it travel in total?"
        )
        lines = [
            f"First part: {s1} × {t1} = {s1 * t1} {u}.",
            f"Second part: {s2} × {t2} = {s2 * t2} {u}.",
            f"Total: {s1 * t1} + {s2 * t2} = {s1 * t1 + s2 * t2} {u}.",
        ]
        return q, lines, s1 * t1 + s2 * t2, "trip"
    if k == 2:
        a, m, d = rng.randint(3, 12), rng.randint(2, 3), rng.randint(1, 5)
        word = {2: "twice", 3: "three times"}[m]
        (n3, _, _) = rng.choice([x for x in NAMES if x[0] not in (n1, n2)])
        q = (
            f"{n1} is {a} years old. {n2} is {word} as old as {n1}. {n3} is {d} years younger than "
            f"{n2}. What is the sum of their three ages?"
        )
        b = a * m
        c = b - d
        lines = [
            f"{n2} is {a} × {m} = {b} years old.",
            f"{n3} is {b} - {d} = {c} years old.",
            f"The sum is {a} + {b} + {c} = {a + b + c}.",
        ]
        return q, lines, a + b + c, "ages"
    obj = rng.choice(OBJECTS)
    k2, each = rng.randint(2, 6), rng.randint(2, 9)
    left = rng.randint(1, 9)
    total = k2 * each + left
    eat = rng.randint(1, left)
    q = (
        f"{n1} shares {total} {obj[1]} equally among {k2} friends and keeps what is left over. "
        f"Then {p1} gives {eat} of the leftover {obj[1]} to {n2}. How many {obj[1]} does {n1} keep?"
    )
    lines = [
        f"{k2} × {each} = {k2 * each}, so each friend gets {each}.",
        f"Left over: {total} - {k2 * each} = {left}.",
        f"{n1} keeps {left} - {eat} = {left - eat}.",
    ]
    return q, lines, left - eat, "sharing"


def _t4(rng: random.Random) -> tuple[str, list[str], int, str]:
    (n1, p1, _), _ = _two_names(rng)
    k = rng.randrange(3)
    if k == 0:
        items = rng.sample(SHOP, 3)
        cur = rng.choice(MONEY)
        counts = [rng.randint(2, 9) for _ in items]
        prices = [rng.randint(3, 25) for _ in items]
        costs = [c * p for c, p in zip(counts, prices, strict=True)]
        total = sum(costs)
        bill = next(x for x in (100, 200, 500, 1000) if x >= total)
        each = [
            f"{c} {it[1]} at {p} {cur} each" for c, it, p in zip(counts, items, prices, strict=True)
        ]
        parts = f"{each[0]}, {each[1]} and {each[2]}"
        q = f"{n1} buys {parts}. {p1.capitalize()} pays {bill} {cur}. How many {cur} of change does {p1} get?"
        lines = [
            f"{c} × {p} = {c * p} {cur} for the {it[1]}."
            for c, it, p in zip(counts, items, prices, strict=True)
        ]
        lines.append(f"Total: {costs[0]} + {costs[1]} + {costs[2]} = {total} {cur}.")
        lines.append(f"Change: {bill} - {total} = {bill - total} {cur}.")
        return q, lines, bill - total, "change"
    if k == 1:
        cur = rng.choice(MONEY)
        s, w = rng.randint(5, 40), rng.randint(3, 12)
        spend = rng.randint(10, s * w)
        e, d = rng.randint(5, 30), rng.randint(2, 7)
        q = (
            f"{n1} saves {s} {cur} every week for {w} weeks. Then {p1} spends {spend} {cur} on a gift "
            f"and earns {e} {cur} a day for {d} days. How many {cur} does {p1} have now?"
        )
        saved = s * w
        lines = [
            f"Saved: {s} × {w} = {saved} {cur}.",
            f"After the gift: {saved} - {spend} = {saved - spend} {cur}.",
            f"Earned: {e} × {d} = {e * d} {cur}.",
            f"Now: {saved - spend} + {e * d} = {saved - spend + e * d} {cur}.",
        ]
        return q, lines, saved - spend + e * d, "savings"
    m = rng.choice(MACHINES)
    obj, box = rng.choice(OBJECTS), rng.choice(CONTAINERS)
    while True:
        r, mins = rng.randint(4, 30), rng.randint(5, 20)
        made = r * mins
        divisors = [d for d in range(2, 13) if made % d == 0]
        if divisors:
            break
    per = rng.choice(divisors)
    bad_boxes = rng.randint(1, 3)
    bad = bad_boxes * per
    q = (
        f"A {m} makes {r} {obj[1]} per minute for {mins} minutes. {bad} of them are faulty and "
        f"thrown away, and the rest are packed {per} to a {box[0]}. How many {box[1]} are filled?"
    )
    lines = [
        f"Made: {r} × {mins} = {made}.",
        f"Kept: {made} - {bad} = {made - bad}.",
        f"{box[1].capitalize()}: {made - bad} ÷ {per} = {(made - bad) // per}.",
    ]
    return q, lines, (made - bad) // per, "production"


_BY_TIER = {1: _t1, 2: _t2, 3: _t3, 4: _t4}


def sample(rng: random.Random, tier: int) -> tuple[str, Callable[[], Built]]:
    prompt, lines, answer, template = _BY_TIER[tier](rng)

    def build() -> Built:
        return {
            "reasoning": "\n".join(lines),
            "answer": str(answer),
            "meta": {"template": template, "steps": len(lines)},
        }

    return prompt, build
