"""Family `word_problem`: templated stories (counting, shopping, ages, rates, sharing).

Each template draws names, objects, units and numbers, writes the story, and writes the worked
solution as one short sentence per arithmetic step; the tier is the number of steps (1, 2, 3,
4-5) and the size of the numbers. Numbers are chosen so every intermediate value is a
non-negative integer and every division is exact, so the answer is always a plain integer (units
are named in the question and omitted from the answer: "The answer is 19.").

Content and surface are drawn apart (`Phrasing`): the template kind and the numbers come from the
problem stream and make the key; names, objects, units and the sentences come from the phrasing
stream. Parts that are summed and told in an order the story does not need (the two owners of
"combine", the two legs of a tier-3 trip, the three purchases of a tier-4 change story) are keyed
order-free (session 23: 2 of 64 held-out tier-3 trips were a training trip with its legs
swapped). A number's role is content: "has 3, gets 5 more" is not "has 5, gets 3 more", and a
story of another template with the same arithmetic is another problem. The held-out phrasing
pool rewrites every story in other sentences and with names and objects that no training story
uses, so `heldout_phrasing` measures whether the model reads the story or matches a sentence it
has seen.
"""

from __future__ import annotations

import random

from hillclimb.problems.base import Built, Draft, Phrasing

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
# Surface words only the held-out phrasing pool uses.
HELDOUT_NAMES = (
    ("Priya", "she", "her"),
    ("Diego", "he", "his"),
    ("Hannah", "she", "her"),
    ("Yusuf", "he", "his"),
    ("Clara", "she", "her"),
    ("Mateo", "he", "his"),
)
HELDOUT_OBJECTS = (
    ("peach", "peaches"),
    ("crayon", "crayons"),
    ("seashell", "seashells"),
    ("domino", "dominoes"),
    ("acorn", "acorns"),
)
HELDOUT_SHOP = (("bracelet", "bracelets"), ("umbrella", "umbrellas"), ("backpack", "backpacks"))
# (singular, plural): a drawn amount can be 1 ("in 1 year", "= 1 dollar", "a final 1 mile")
MONEY = (("dollar", "dollars"), ("euro", "euros"), ("pound", "pounds"), ("coin", "coins"))
VEHICLES = ("car", "train", "bus", "cyclist", "boat", "truck")
DIST = (("km", "km"), ("mile", "miles"))
YEARS = ("year", "years")
CONTAINERS = (("box", "boxes"), ("bag", "bags"), ("basket", "baskets"), ("jar", "jars"))
MACHINES = ("machine", "printer", "bakery", "factory line")


def _count(n: int, obj: tuple[str, str]) -> str:
    """`n` and the noun in agreement with it: "1 apple", "3 apples" (also for units: the
    templates draw amounts from ranges that include 1, and "in 1 years" was written until
    session 21)."""
    return f"{n} {obj[0] if n == 1 else obj[1]}"


def _note(bill: int, money: tuple[str, str]) -> str:
    """What a bill is paid with: "a 50-dollar note", but "50 coins" (there is no coin note)."""
    return f"{bill} coins" if money[1] == "coins" else f"a {bill}-{money[0]} note"


class _Surface:
    """Surface words and sentence choice for one story, all from the phrasing stream."""

    def __init__(self, phr: Phrasing) -> None:
        self.phr = phr
        self.held = phr.style != "train"
        names = phr.pool(NAMES, HELDOUT_NAMES)
        (self.n1, self.p1, _), (self.n2, _, _), (self.n3, _, _) = phr.rng.sample(names, 3)
        self.obj = phr.pick(OBJECTS, HELDOUT_OBJECTS)
        self.item, self.item2, self.item3 = phr.rng.sample(phr.pool(SHOP, HELDOUT_SHOP + SHOP), 3)
        self.money = phr.rng.choice(MONEY)
        self.cur = self.money[1]  # amounts named with `cur` are always more than one
        self.vehicle = phr.rng.choice(VEHICLES)
        self.dist = phr.rng.choice(DIST)
        self.unit = self.dist[1]
        self.box = phr.rng.choice(CONTAINERS)
        self.machine = phr.rng.choice(MACHINES)

    def say(self, train: str, heldout: str) -> str:
        return heldout if self.held else train


Story = tuple[str, list[str], int, str, tuple[int, ...]]


def _t1(rng: random.Random, s: _Surface) -> Story:
    n1, p1, n2, obj = s.n1, s.p1, s.n2, s.obj
    P1 = p1.capitalize()
    k = rng.randrange(5)
    if k == 0:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        q = s.say(
            f"{n1} has {_count(a, obj)}. {P1} gets {b} more. How many {obj[1]} does {n1} have now?",
            f"{n1} started with {_count(a, obj)} and was given {b} more. What is the total number of {obj[1]} {p1} has?",
        )
        return q, [f"{a} + {b} = {a + b}."], a + b, "gain", (a, b)
    if k == 1:
        a = rng.randint(2, 9)
        b = rng.randint(1, a)
        q = s.say(
            f"{n1} has {_count(a, obj)}. {P1} gives {b} to {n2}. How many {obj[1]} does {n1} have left?",
            f"There are {_count(a, obj)} in {n1}'s collection. After {p1} hands {b} of them to {n2}, how many remain with {n1}?",
        )
        return q, [f"{a} - {b} = {a - b}."], a - b, "loss", (a, b)
    if k == 2:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        q = s.say(
            f"{n1} has {_count(a, obj)} and {n2} has {_count(b, obj)}. How many {obj[1]} do they have together?",
            f"{n1} owns {_count(a, obj)}, while {n2} owns {_count(b, obj)}. If they put them all in one pile, how many {obj[1]} are in the pile?",
        )
        # the two owners' names are surface, so (a, b) and (b, a) are one problem: key order-free
        return q, [f"{a} + {b} = {a + b}."], a + b, "combine", (min(a, b), max(a, b))
    if k == 3:
        b = rng.randint(1, 8)
        a = rng.randint(b + 1, 9)
        q = s.say(
            f"{n1} has {_count(a, obj)}. {n2} has {_count(b, obj)}. How many more {obj[1]} does {n1} have than {n2}?",
            f"{n2} has {_count(b, obj)} and {n1} has {_count(a, obj)}. By how many {obj[1]} does {n1} have the larger amount?",
        )
        return q, [f"{a} - {b} = {a - b}."], a - b, "compare", (a, b)
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    q = s.say(
        f"{n1} is {a} years old. How old will {p1} be in {_count(b, YEARS)}?",
        f"{n1}'s age today is {a}. How old will {n1} be {_count(b, YEARS)} from now?",
    )
    return q, [f"{a} + {b} = {a + b}."], a + b, "age", (a, b)


def _t2(rng: random.Random, s: _Surface) -> Story:
    n1, p1, n2 = s.n1, s.p1, s.n2
    P1 = p1.capitalize()
    k = rng.randrange(5)
    if k == 0:
        item, item2, cur = s.item, s.item2, s.cur
        c, p, q2 = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 20)
        q = s.say(
            f"{n1} buys {c} {item[1]} for {p} {cur} each and a {item2[0]} for {q2} {cur}. "
            f"How many {cur} does {p1} spend?",
            f"At the market, {n1} picks up {c} {item[1]} priced at {p} {cur} apiece, plus one "
            f"{item2[0]} costing {q2} {cur}. What is the total cost in {cur}?",
        )
        lines = [
            f"The {item[1]} cost {c} × {p} = {c * p} {cur}.",
            f"In total {c * p} + {q2} = {c * p + q2} {cur}.",
        ]
        return q, lines, c * p + q2, "shopping", (c, p, q2)
    if k == 1:
        obj = s.obj
        a, b = rng.randint(5, 30), rng.randint(2, 20)
        c = rng.randint(1, a + b)
        q = s.say(
            f"{n1} has {_count(a, obj)}. {P1} finds {b} more and then gives {c} to {n2}. "
            f"How many {obj[1]} does {n1} have now?",
            f"{n1} begins the day with {_count(a, obj)}. Later {p1} discovers another {b}, and "
            f"after that {p1} passes {c} to {n2}. How many {obj[1]} does {n1} end up with?",
        )
        lines = [
            f"After finding more: {a} + {b} = {a + b}.",
            f"After giving some away: {a + b} - {c} = {a + b - c}.",
        ]
        return q, lines, a + b - c, "gain_loss", (a, b, c)
    if k == 2:
        a, d, y = rng.randint(3, 15), rng.randint(1, 9), rng.randint(1, 10)
        dy, yy = _count(d, YEARS), _count(y, YEARS)
        q = s.say(
            f"{n1} is {a} years old. {n2} is {dy} older than {n1}. How old will {n2} be in {yy}?",
            f"{n2} was born {dy} before {n1}, who is now {a}. What age will {n2} reach {yy} from today?",
        )
        lines = [
            f"{n2} is {a} + {d} = {a + d} years old now.",
            f"In {yy}: {a + d} + {y} = {a + d + y}.",
        ]
        return q, lines, a + d + y, "ages", (a, d, y)
    if k == 3:
        v, u = s.vehicle, s.unit
        sp, t, e = rng.randint(2, 9) * 10, rng.randint(2, 5), rng.randint(1, 20)
        q = s.say(
            f"A {v} travels {sp} {u} per hour for {t} hours and then {_count(e, s.dist)} more. How many {u} does it travel in total?",
            f"Moving at a steady {sp} {u} an hour, a {v} drives for {t} hours, then covers a final {_count(e, s.dist)}. What is the whole distance in {u}?",
        )
        lines = [
            f"In {t} hours: {sp} × {t} = {sp * t} {u}.",
            f"In total {sp * t} + {e} = {sp * t + e} {u}.",
        ]
        return q, lines, sp * t + e, "distance", (sp, t, e)
    obj, box = s.obj, s.box
    b, per, extra = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 9)
    loose = (f"1 loose {obj[0]}", f"1 more {obj[0]} lies") if extra == 1 else \
        (f"{extra} loose {obj[1]}", f"{extra} more {obj[1]} lie")  # fmt: skip
    q = s.say(
        f"{n1} has {b} {box[1]} with {per} {obj[1]} in each {box[0]}, and {loose[0]}. "
        f"How many {obj[1]} does {p1} have?",
        f"There are {b} {box[1]}, each holding {per} {obj[1]}, and {loose[1]} on "
        f"the table. All of them belong to {n1}. Count {n1}'s {obj[1]}.",
    )
    lines = [
        f"In the {box[1]}: {b} × {per} = {b * per}.",
        f"With the loose ones: {b * per} + {extra} = {b * per + extra}.",
    ]
    return q, lines, b * per + extra, "packs", (b, per, extra)


def _t3(rng: random.Random, s: _Surface) -> Story:
    n1, p1, n2, n3 = s.n1, s.p1, s.n2, s.n3
    P1 = p1.capitalize()
    k = rng.randrange(4)
    if k == 0:
        item, item2, cur = s.item, s.item2, s.cur
        c, p, q2 = rng.randint(2, 9), rng.randint(3, 15), rng.randint(5, 30)
        total = c * p + q2
        bill = next(x for x in (20, 50, 100, 200) if x >= total)
        q = s.say(
            f"{n1} buys {c} {item[1]} at {p} {cur} each and a {item2[0]} for {q2} {cur}. "
            f"{P1} pays with {_note(bill, s.money)}. How many {cur} of change does {p1} get?",
            f"{c} {item[1]} cost {p} {cur} each and one {item2[0]} costs {q2} {cur}. {n1} "
            f"buys all of them and hands over {bill} {cur}. How much change, in {cur}, comes back?",
        )
        lines = [
            f"The {item[1]} cost {c} × {p} = {c * p} {cur}.",
            f"Everything costs {c * p} + {q2} = {total} {cur}.",
            f"The change is {bill} - {total} = {_count(bill - total, s.money)}.",
        ]
        return q, lines, bill - total, "change", (c, p, q2, bill)
    if k == 1:
        v, u = s.vehicle, s.unit
        s1, t1 = rng.randint(3, 12) * 10, rng.randint(2, 5)
        s2, t2 = rng.randint(3, 12) * 5, rng.randint(2, 4)
        q = s.say(
            f"A {v} travels at {s1} {u} per hour for {t1} hours, then at {s2} {u} per hour for "
            f"{t2} hours. How many {u} does it travel in total?",
            f"For the first {t1} hours a {v} keeps to {s1} {u} an hour; for the next {t2} hours "
            f"it slows to {s2} {u} an hour. How far does it go altogether, in {u}?",
        )
        lines = [
            f"First part: {s1} × {t1} = {s1 * t1} {u}.",
            f"Second part: {s2} × {t2} = {s2 * t2} {u}.",
            f"Total: {s1 * t1} + {s2 * t2} = {s1 * t1 + s2 * t2} {u}.",
        ]
        # the two legs are summed, so which is told first is wording (as "combine"'s owners): a
        # leg is (speed, hours) and the key holds the pair of legs order-free
        legs = sorted([(s1, t1), (s2, t2)])
        return q, lines, s1 * t1 + s2 * t2, "trip", (*legs[0], *legs[1])
    if k == 2:
        a, m, d = rng.randint(3, 12), rng.randint(2, 3), rng.randint(1, 5)
        word = {2: "twice", 3: "three times"}[m]
        q = s.say(
            f"{n1} is {a} years old. {n2} is {word} as old as {n1}. {n3} is {_count(d, YEARS)} "
            f"younger than {n2}. What is the sum of their three ages?",
            f"{n2}'s age is {word} {n1}'s, and {n1} is {a}. {n3} is {_count(d, YEARS)} behind {n2}. "
            f"Add up the ages of {n1}, {n2} and {n3}.",
        )
        b = a * m
        c = b - d
        lines = [
            f"{n2} is {a} × {m} = {b} years old.",
            f"{n3} is {b} - {d} = {_count(c, YEARS)} old.",
            f"The sum is {a} + {b} + {c} = {a + b + c}.",
        ]
        return q, lines, a + b + c, "ages", (a, m, d)
    obj = s.obj
    k2, each = rng.randint(2, 6), rng.randint(2, 9)
    # what is left over from sharing equally is less than one more round (`total % k2`): with
    # up to 9 left for 2-6 friends, 3 in 4 of these stories had a wrong worked answer ("44 among
    # 5 friends: each gets 7, 9 left") and most gave away more than was left
    left = rng.randint(1, k2 - 1)
    total = k2 * each + left
    eat = rng.randint(1, left)
    q = s.say(
        f"{n1} shares {total} {obj[1]} equally among {k2} friends and keeps what is left over. "
        f"Then {p1} gives {eat} of the leftover {obj[1]} to {n2}. How many {obj[1]} does {n1} keep?",
        f"{total} {obj[1]} are split as evenly as possible between {k2} friends of {n1}, and "
        f"{n1} takes the remainder. {P1} then passes {eat} of those to {n2}. How many does {n1} still hold?",
    )
    lines = [
        f"{k2} × {each} = {k2 * each}, so each friend gets {each}.",
        f"Left over: {total} - {k2 * each} = {left}.",
        f"{n1} keeps {left} - {eat} = {left - eat}.",
    ]
    return q, lines, left - eat, "sharing", (total, k2, eat)


def _t4(rng: random.Random, s: _Surface) -> Story:
    n1, p1 = s.n1, s.p1
    P1 = p1.capitalize()
    k = rng.randrange(3)
    if k == 0:
        items = (s.item, s.item2, s.item3)
        cur = s.cur
        counts = [rng.randint(2, 9) for _ in items]
        prices = [rng.randint(3, 25) for _ in items]
        costs = [c * p for c, p in zip(counts, prices, strict=True)]
        total = sum(costs)
        bill = next(x for x in (100, 200, 500, 1000) if x >= total)
        if s.held:
            each = [
                f"{c} {it[1]} ({p} {cur} each)"
                for c, it, p in zip(counts, items, prices, strict=True)
            ]
            q = (
                f"{n1}'s shopping list: {each[0]}; {each[1]}; {each[2]}. {P1} pays for "
                f"everything with {bill} {cur}. What change should {p1} receive, in {cur}?"
            )
        else:
            each = [
                f"{c} {it[1]} at {p} {cur} each"
                for c, it, p in zip(counts, items, prices, strict=True)
            ]
            parts = f"{each[0]}, {each[1]} and {each[2]}"
            q = f"{n1} buys {parts}. {P1} pays {bill} {cur}. How many {cur} of change does {p1} get?"
        lines = [
            f"{c} × {p} = {c * p} {cur} for the {it[1]}."
            for c, it, p in zip(counts, items, prices, strict=True)
        ]
        lines.append(f"Total: {costs[0]} + {costs[1]} + {costs[2]} = {total} {cur}.")
        lines.append(f"Change: {bill} - {total} = {_count(bill - total, s.money)}.")
        # the items are surface and listed in the order drawn: key the (count, price) purchases
        # order-free, then the bill
        bought = sorted(zip(counts, prices, strict=True))
        return q, lines, bill - total, "change", (*(x for cp in bought for x in cp), bill)
    if k == 1:
        cur = s.cur
        sv, w = rng.randint(5, 40), rng.randint(3, 12)
        spend = rng.randint(10, sv * w)
        e, d = rng.randint(5, 30), rng.randint(2, 7)
        q = s.say(
            f"{n1} saves {sv} {cur} every week for {w} weeks. Then {p1} spends {spend} {cur} on a gift "
            f"and earns {e} {cur} a day for {d} days. How many {cur} does {p1} have now?",
            f"For {w} weeks in a row, {n1} puts aside {sv} {cur} a week. A present then costs "
            f"{n1} {spend} {cur}, after which {p1} works {d} days at {e} {cur} per day. How much "
            f"money, in {cur}, does {n1} have at the end?",
        )
        saved = sv * w
        lines = [
            f"Saved: {sv} × {w} = {saved} {cur}.",
            f"After the gift: {saved} - {spend} = {_count(saved - spend, s.money)}.",
            f"Earned: {e} × {d} = {e * d} {cur}.",
            f"Now: {saved - spend} + {e * d} = {saved - spend + e * d} {cur}.",
        ]
        return q, lines, saved - spend + e * d, "savings", (sv, w, spend, e, d)
    m, obj, box = s.machine, s.obj, s.box
    while True:
        r, mins = rng.randint(4, 30), rng.randint(5, 20)
        made = r * mins
        divisors = [d for d in range(2, 13) if made % d == 0]
        if divisors:
            break
    per = rng.choice(divisors)
    bad_boxes = rng.randint(1, 3)
    bad = bad_boxes * per
    q = s.say(
        f"A {m} makes {r} {obj[1]} per minute for {mins} minutes. {bad} of them are faulty and "
        f"thrown away, and the rest are packed {per} to a {box[0]}. How many {box[1]} are filled?",
        f"Running for {mins} minutes, a {m} turns out {r} {obj[1]} each minute. After {bad} "
        f"defective ones are removed, the good {obj[1]} go into {box[1]} of {per}. How many full "
        f"{box[1]} are there?",
    )
    lines = [
        f"Made: {r} × {mins} = {made}.",
        f"Kept: {made} - {bad} = {made - bad}.",
        f"{box[1].capitalize()}: {made - bad} ÷ {per} = {(made - bad) // per}.",
    ]
    return q, lines, (made - bad) // per, "production", (r, mins, bad, per)


_BY_TIER = {1: _t1, 2: _t2, 3: _t3, 4: _t4}


def sample(rng: random.Random, tier: int, phr: Phrasing) -> Draft:
    surface = _Surface(phr)
    prompt, lines, answer, template, nums = _BY_TIER[tier](rng, surface)

    def build() -> Built:
        return {
            "reasoning": "\n".join(lines),
            "answer": str(answer),
            "meta": {"template": template, "steps": len(lines)},
        }

    return Draft(prompt, f"{template}:{','.join(map(str, nums))}", build)
