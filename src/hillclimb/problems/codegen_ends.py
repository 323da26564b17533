"""The two ends of a generated pipeline: where its elements come from and what it returns.

Why it is built this way:

- A **source** says what the function takes and which elements it walks through: a list of
  integers, the integers 1..n, the digits of n, the characters or words of a string, two lists
  zipped / intersected / concatenated, all pairs i < j of a list, sliding windows, the rows of a
  matrix. Sources that already compute something (a pair sum, a window maximum, a row count)
  cost one or two "stages", so the tier of a function is the number of things it does.
- An **aggregate** says what is returned, with its type stated in the spec ("0 if there are
  none", "or None if there are none", "True ... and False otherwise", "a dict mapping ..."), so the
  expected values of the tests are unambiguous under a type-strict check.
- Each aggregate has a straight-line form over a list (`steps`) and, where natural, an
  accumulator form (`loop`) used when the function is written as one loop; both compute the same
  value, so a function's code style is content that varies within a key.
- Input samplers mix random values with the constants of the function (and their neighbours),
  so boundary cases (`x > 3` at 3 and 4) are in the tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hillclimb.problems.codegen_ops import (
    ARITH,
    CHAR,
    CHAR_OPS,
    INJECTIVE,
    INT,
    INT_OPS,
    ORDER,
    WORD,
    Consts,
    Op,
    OpUse,
)

Inputs = Callable[[random.Random, list], tuple]


# ---------------------------------------------------------------- input samplers


def _int(r: random.Random, interesting: list, lo: int, hi: int) -> int:
    ints = [v for v in interesting if type(v) is int]
    if ints and r.random() < 0.3:
        return r.choice(ints)
    return r.randint(lo, hi)


def int_list(r: random.Random, interesting: list, lo: int = -9, hi: int = 20, n: int = 7) -> list:
    return [_int(r, interesting, lo, hi) for _ in range(r.randint(0, n))]


_ALPHABET = "aaabcdeeeiilnoorsstuxyzABEZ0127"
# Every character generated strings draw from (and so every one a generated rule can test for).
ALPHABET = "".join(dict.fromkeys(_ALPHABET))


def text(r: random.Random, interesting: list, n: int = 9) -> str:
    chars = [v for v in interesting if isinstance(v, str) and len(v) == 1]
    out = []
    for _ in range(r.randint(0, n)):
        out.append(r.choice(chars) if chars and r.random() < 0.25 else r.choice(_ALPHABET))
    return "".join(out)


_LETTERS = "aabcdeeilmnoorssttu"


def word(r: random.Random, interesting: list) -> str:
    if r.random() < 0.12:
        half = "".join(r.choice(_LETTERS) for _ in range(r.randint(1, 2)))
        w = half + (r.choice(_LETTERS) if r.random() < 0.5 else "") + half[::-1]
    else:
        w = "".join(r.choice(_LETTERS) for _ in range(r.randint(1, 7)))
    chars = [v for v in interesting if isinstance(v, str) and len(v) == 1 and v.isalpha()]
    if chars and r.random() < 0.3:
        i = r.randrange(len(w) + 1)
        w = w[:i] + r.choice(chars) + w[i:]
    roll = r.random()
    if roll < 0.15:
        w = w.capitalize()
    elif roll < 0.25:
        w = w.upper()
    return w


def sentence(r: random.Random, interesting: list) -> str:
    words = [word(r, interesting) for _ in range(r.randint(0, 5))]
    out = " ".join(words)
    if words and r.random() < 0.2:
        out = out.replace(" ", "  ", 1)
    if r.random() < 0.1:
        out = " " + out + " "
    return out


def _digits(r: random.Random, interesting: list) -> tuple:
    ds = [v for v in interesting if type(v) is int and 0 <= v <= 9]
    k = r.randint(1, 6)
    digits = [r.choice(ds) if ds and r.random() < 0.3 else r.randint(0, 9) for _ in range(k)]
    return (int("".join(map(str, digits))),)


def _rows(r: random.Random, interesting: list) -> tuple:
    return (
        [
            [_int(r, interesting, -5, 12) for _ in range(r.randint(1, 4))]
            for _ in range(r.randint(0, 4))
        ],
    )


def _two_lists(lo: int, hi: int) -> Inputs:
    return lambda r, i: (int_list(r, i, lo, hi, 6), int_list(r, i, lo, hi, 6))


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """Where the elements come from. Templates may use the constants from `pick` (`{k}`, ...)."""

    token: str
    args: str
    typ: str
    cost: int
    text: str  # the spec's opening ("takes a list of integers xs")
    plan: str
    headers: tuple[tuple[str, str], ...]  # (target, iterable), outermost first
    var: str  # the element's name once converted
    nouns: tuple[str, ...]  # for function names
    inputs: Inputs
    edges: tuple[tuple, ...]
    conv: str | None = None  # the element, from the loop targets
    guard: str | None = None  # a condition on the loop target (acts as a filter)
    pick: Callable[[random.Random, list], Consts] = field(default=lambda r, seen: {})


def _source_list() -> list[Source]:
    out = [
        Source(
            "list",
            "xs",
            INT,
            0,
            "takes a list of integers xs",
            "Go through xs in order.",
            (("x", "xs"),),
            "x",
            ("values", "numbers"),
            lambda r, i: (int_list(r, i),),
            (([],), ([0],)),
        ),
        Source(
            "range",
            "n",
            INT,
            0,
            "takes a non-negative integer n and considers the integers from 1 to n in increasing "
            "order",
            "Loop over i from 1 to n with range(1, n + 1).",
            (("i", "range(1, n + 1)"),),
            "i",
            ("upto", "up_to_n"),
            lambda r, i: (r.randint(2, 20),),
            ((0,), (1,)),
        ),
        Source(
            "digits",
            "n",
            INT,
            0,
            "takes a non-negative integer n and considers its decimal digits from left to right, as "
            "integers",
            "Turn n into its digits with str(n) and int().",
            (("ch", "str(n)"),),
            "d",
            ("digits", "digit_values"),
            _digits,
            ((0,), (7,)),
            conv="int(ch)",
        ),
        Source(
            "chars",
            "s",
            CHAR,
            0,
            "takes a string s and goes through its characters in order",
            "Go through the characters of s.",
            (("ch", "s"),),
            "ch",
            ("chars", "letters"),
            lambda r, i: (text(r, i),),
            (("",), ("a",)),
        ),
        Source(
            "words",
            "s",
            WORD,
            0,
            "takes a string s and splits it into words at runs of whitespace (as s.split() does)",
            "Split s into words with s.split().",
            (("w", "s.split()"),),
            "w",
            ("words", "terms"),
            lambda r, i: (sentence(r, i),),
            (("",), ("  ",)),
        ),
    ]
    zips = {
        "add": ("a + b", "a + b"),
        "sub": ("a - b", "a - b"),
        "mul": ("a * b", "a * b"),
        "max": ("max(a, b)", "the larger of a and b"),
        "min": ("min(a, b)", "the smaller of a and b"),
        "absdiff": ("abs(a - b)", "the absolute difference of a and b"),
    }
    two_edges = (([], []), ([1, 2, 3], []), ([4], [4, 5]))
    for token, (code, what) in zips.items():
        out.append(
            Source(
                f"zip_{token}",
                "xs, ys",
                INT,
                1,
                "takes two lists of integers xs and ys, pairs up their elements by position "
                f"(stopping at the end of the shorter list) and takes {what} for each pair (a, b)",
                f"Walk through both lists with zip and compute {code} for each pair.",
                (("a, b", "zip(xs, ys)"),),
                "x",
                ("pairwise", "zipped"),
                _two_lists(-5, 15),
                two_edges,
                conv=code,
            )
        )
    for token, guard, what in (
        ("common", "x in ys", "that also occur in ys"),
        ("missing", "x not in ys", "that do not occur in ys"),
    ):
        out.append(
            Source(
                token,
                "xs, ys",
                INT,
                1,
                f"takes two lists of integers xs and ys and keeps, in order, the values of xs {what} "
                "(repeats in xs are kept)",
                f"Go through xs and keep x when `{guard}`.",
                (("x", "xs"),),
                "x",
                ("shared", "common") if token == "common" else ("unmatched", "missing"),
                _two_lists(0, 9),
                two_edges,
                guard=guard,
            )
        )
    out.append(
        Source(
            "concat",
            "xs, ys",
            INT,
            1,
            "takes two lists of integers xs and ys and considers the values of xs followed by the "
            "values of ys",
            "Go through xs + ys.",
            (("x", "xs + ys"),),
            "x",
            ("combined", "both"),
            _two_lists(-9, 20),
            two_edges,
        )
    )
    pair_ops = {
        "sum": ("xs[i] + xs[j]", "xs[i] + xs[j]"),
        "absdiff": ("abs(xs[i] - xs[j])", "the absolute difference of xs[i] and xs[j]"),
        "product": ("xs[i] * xs[j]", "xs[i] * xs[j]"),
        "max": ("max(xs[i], xs[j])", "the larger of xs[i] and xs[j]"),
        "min": ("min(xs[i], xs[j])", "the smaller of xs[i] and xs[j]"),
    }
    for token, (code, what) in pair_ops.items():
        out.append(
            Source(
                f"pairs_{token}",
                "xs",
                INT,
                2,
                "takes a list of integers xs and, for every pair of positions i < j (by i, then by "
                f"j), takes {what}",
                f"Use two nested loops over positions i < j and compute {code}.",
                (("i", "range(len(xs))"), ("j", "range(i + 1, len(xs))")),
                "x",
                ("pair_values", "pairs"),
                lambda r, i: (int_list(r, i, -5, 12, 6),),
                (([],), ([5],), ([2, 2],)),
                conv=code,
            )
        )
    window_ops = {
        "sum": ("sum(xs[i:i + {k}])", "the sum of the window"),
        "max": ("max(xs[i:i + {k}])", "the largest value of the window"),
        "min": ("min(xs[i:i + {k}])", "the smallest value of the window"),
        "spread": (
            "max(xs[i:i + {k}]) - min(xs[i:i + {k}])",
            "the largest minus the smallest value of the window",
        ),
        "distinct": ("len(set(xs[i:i + {k}]))", "the number of different values in the window"),
    }
    for token, (code, what) in window_ops.items():
        out.append(
            Source(
                f"windows_{token}",
                "xs",
                INT,
                2,
                "takes a list of integers xs and, for every window of {k} consecutive values from "
                f"left to right (none if xs is shorter than {{k}}), takes {what}",
                f"Slide a window of {{k}} values: for i in range(len(xs) - {{k}} + 1) take {code}.",
                (("i", "range(len(xs) - {k} + 1)"),),
                "x",
                ("windows", "window_values"),
                lambda r, i: (int_list(r, i, -9, 15, 8),),
                (([],), ([1],)),
                conv=code,
                pick=lambda r, seen: {"k": r.randint(2, 4)},
            )
        )
    row_ops = {
        "sum": ("sum(row)", "the sum of the row"),
        "max": ("max(row)", "the largest value of the row"),
        "min": ("min(row)", "the smallest value of the row"),
        "len": ("len(row)", "the number of values in the row"),
    }
    row_text = "takes a list rows of non-empty lists of integers and, for each row in order, takes "
    for token, (code, what) in row_ops.items():
        out.append(
            Source(
                f"rows_{token}",
                "rows",
                INT,
                1,
                row_text + what,
                f"For each row compute {code}.",
                (("row", "rows"),),
                "x",
                ("rows", "row_values"),
                _rows,
                (([],), ([[0]],)),
                conv=code,
            )
        )
    for op in INT_OPS:
        if op.kind != "filter" or op.token not in ORDER | ARITH:
            continue
        for token, code, what in (
            (
                "sum",
                "sum([v for v in row if {cond}])",
                "the sum of the row's values that {p} (0 if none)",
            ),
            ("count", "len([v for v in row if {cond}])", "how many of the row's values {p}"),
        ):
            out.append(
                Source(
                    f"rows_{token}_{op.token}",
                    "rows",
                    INT,
                    2,
                    row_text + what,
                    f"For each row compute {code} (a loop inside the loop over rows).",
                    (("row", "rows"),),
                    "x",
                    ("rows", "row_values"),
                    _rows,
                    (([],), ([[0]],)),
                    conv=code,
                    pick=_row_pred(op),
                )
            )
    return out


def _row_pred(op: Op) -> Callable[[random.Random, list], Consts]:
    def pick(r: random.Random, seen: list) -> Consts:
        use = op.use(r, list(range(-5, 13)))
        return {"cond": use.code("v"), "p": use.plural(), "_uses": (use,)}

    return pick


SOURCES: dict[str, Source] = {s.token: s for s in _source_list()}


# ---------------------------------------------------------------- aggregates

_COLLECT = (("values = []",), ("values.append({v})",))


@dataclass(frozen=True)
class Agg:
    """What a pipeline returns. `steps` lines work on `{values}` (a list, or the source's own
    iterable); `loop` = (init, body with `{v}`, final) for the one-loop style, or None to collect
    the elements and finish with `steps`. `{cond}` is the predicate of a `run_*` aggregate."""

    token: str
    types: frozenset[str]
    text: str
    steps: tuple[str, ...]
    plan: str
    verbs: tuple[str, ...]
    loop: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = None
    cost: int = 0
    needs_filter: bool = False  # value-independent (count/any): the last stage must be a filter
    no_maps: frozenset[str] = frozenset()  # maps that would make it a reparametrisation
    pick: Callable[[random.Random, list], Consts] = field(default=lambda r, seen: {})
    pred: Op | None = None


def _t(*types: str) -> frozenset[str]:
    return frozenset(types)


_ALL = _t(INT, CHAR, WORD)
_SEPS = (",", "-", " ", ";", "+")
_WORD_SEPS = (" ", "-", ",", "", "_")


def _sep(seps: tuple[str, ...]) -> Callable[[random.Random, list], Consts]:
    def pick(r: random.Random, seen: list) -> Consts:
        sep = r.choice(seps)
        return {
            "sep": sep,
            "between": f"with {sep!r} between them" if sep else "with nothing between them",
        }

    return pick


def _mod_pick(r: random.Random, seen: list) -> Consts:
    return {"m": r.randint(3, 5)}


_LENGTH_SAME = frozenset({"upcase", "downcase", "capitalize", "swapcase", "reverse", "replace"})
_CASE = frozenset({"upcase", "downcase", "capitalize", "swapcase"})
# equality-based results barely change under a case change (only where "a" meets "A")
_EQUALITY_BLIND = INJECTIVE | _CASE


def _agg_list() -> list[Agg]:
    items = "{items}"
    out = [
        Agg(
            "sum",
            _t(INT),
            f"returns the sum of {items} (0 if there are none)",
            ("return sum({values})",),
            "Add them up; the sum of nothing is 0.",
            ("total", "sum_of"),
            (("total = 0",), ("total += {v}",), ("return total",)),
            no_maps=frozenset({"wlen", "wcount"}),  # = total_len / a character count
        ),
        Agg(
            "product",
            _t(INT),
            f"returns the product of {items} (1 if there are none)",
            ("result = 1", "for item in {values}:", "    result *= item", "return result"),
            "Multiply them together, starting from 1.",
            ("product_of", "multiply"),
            (("result = 1",), ("result *= {v}",), ("return result",)),
            no_maps=frozenset({"modulo"}),  # mostly 0
        ),
        Agg(
            "max",
            _t(INT),
            f"returns the largest of {items}, or None if there are none",
            ("return max({values}) if {values} else None",),
            "Track the largest value; None when there is no value.",
            ("largest", "max_of"),
            (
                ("best = None",),
                ("if best is None or {v} > best:", "    best = {v}"),
                ("return best",),
            ),
        ),
        Agg(
            "min",
            _t(INT),
            f"returns the smallest of {items}, or None if there are none",
            ("return min({values}) if {values} else None",),
            "Track the smallest value; None when there is no value.",
            ("smallest", "min_of"),
            (
                ("best = None",),
                ("if best is None or {v} < best:", "    best = {v}"),
                ("return best",),
            ),
        ),
        Agg(
            "first",
            _ALL,
            f"returns the first of {items}, or None if there are none",
            ("return {values}[0] if {values} else None",),
            "Return the first one found; None if the loop ends without one.",
            ("first", "first_of"),
            ((), ("return {v}",), ("return None",)),
        ),
        Agg(
            "last",
            _ALL,
            f"returns the last of {items}, or None if there are none",
            ("return {values}[-1] if {values} else None",),
            "Remember the latest one; None if there is none.",
            ("last", "last_of"),
            (("last = None",), ("last = {v}",), ("return last",)),
        ),
        Agg(
            "list",
            _ALL,
            f"returns {items} as a list, in order",
            ("return {values}",),
            "Collect them in a list.",
            ("collect", "select", "gather"),
            (("out = []",), ("out.append({v})",), ("return out",)),
        ),
        Agg(
            "sorted",
            _t(INT),
            f"returns {items} as a list sorted in increasing order",
            ("return sorted({values})",),
            "Collect them, then sort.",
            ("sorted", "ordered"),
        ),
        Agg(
            "sorted",
            _t(WORD),
            f"returns {items} as a list sorted in Python's default string order",
            ("return sorted({values})",),
            "Collect them, then sort.",
            ("sorted", "ordered"),
        ),
        Agg(
            "rsorted",
            _t(INT),
            f"returns {items} as a list sorted in decreasing order",
            ("return sorted({values}, reverse=True)",),
            "Collect them, then sort with reverse=True.",
            ("descending", "ranked"),
        ),
        Agg(
            "join",
            _t(INT),
            f"returns {items} written in decimal and joined into one string {{between}} ('' if "
            "there are none)",
            ("return {sep!r}.join(map(str, {values}))",),
            "Turn each into text with str() and join them with {sep!r}.",
            ("joined", "format"),
            (("parts = []",), ("parts.append(str({v}))",), ("return {sep!r}.join(parts)",)),
            pick=_sep(_SEPS),
        ),
        Agg(
            "spread",
            _t(INT),
            f"returns the largest minus the smallest of {items} (0 if there are none)",
            ("return max({values}) - min({values}) if {values} else 0",),
            "Collect them; the answer is max - min, or 0 for none.",
            ("spread", "range_of"),
            no_maps=frozenset({"shift", "negate", "reflect", "affine"}),  # affine: a scale
        ),
        Agg(
            "distinct",
            _ALL,
            f"returns how many different {{noun}} there are among {items}, as an integer",
            ("return len(set({values}))",),
            "Put them in a set and count it.",
            ("distinct", "count_distinct"),
            (("seen = set()",), ("seen.add({v})",), ("return len(seen)",)),
            no_maps=_EQUALITY_BLIND,
        ),
        Agg(
            "count",
            _ALL,
            "returns how many {noun} are left, as an integer",
            ("return len({values})",),
            "Count them.",
            ("count", "how_many"),
            (("count = 0",), ("count += 1",), ("return count",)),
            needs_filter=True,
        ),
        Agg(
            "has",
            _ALL,
            "returns True if at least one of the {noun} is left and False otherwise",
            ("return len({values}) > 0",),
            "Return True as soon as one is found, False at the end.",
            ("has", "any"),
            ((), ("return True",), ("return False",)),
            needs_filter=True,
        ),
        Agg(
            "empty",
            _ALL,
            "returns True if none of the {noun} is left and False otherwise",
            ("return len({values}) == 0",),
            "Return False as soon as one is found, True at the end.",
            ("none_left", "nothing_left"),
            ((), ("return False",), ("return True",)),
            needs_filter=True,
        ),
        Agg(
            "take",
            _t(INT),
            f"returns the first {{k}} of {items} as a list (all of them if there are fewer)",
            ("return {values}[:{k}]",),
            "Collect them and keep the first {k} with a slice.",
            ("head", "first_few"),
            pick=lambda r, seen: {"k": r.randint(2, 3)},
        ),
        Agg(
            "concat",
            _t(CHAR),
            f"returns {items} joined into one string ('' if there are none)",
            ("return ''.join({values})",),
            "Build the result string one character at a time.",
            ("joined", "keep"),
            (("result = ''",), ("result += {v}",), ("return result",)),
        ),
        Agg(
            "rconcat",
            _t(CHAR),
            f"returns {items} joined into one string in reverse order ('' if there are none)",
            ("return ''.join({values})[::-1]",),
            "Put each new character in front of the result.",
            ("reversed", "backwards"),
            (("result = ''",), ("result = {v} + result",), ("return result",)),
        ),
        Agg(
            "sconcat",
            _t(CHAR),
            f"returns {items} sorted in Python's default order and joined into one string",
            ("return ''.join(sorted({values}))",),
            "Collect them, sort, and join.",
            ("sorted", "ordered"),
        ),
        Agg(
            "joined",
            _t(WORD),
            f"returns {items} joined into one string {{between}}",
            ("return {sep!r}.join({values})",),
            "Collect them and join them with {sep!r}.",
            ("joined", "combine"),
            (("parts = []",), ("parts.append({v})",), ("return {sep!r}.join(parts)",)),
            pick=_sep(_WORD_SEPS),
        ),
        Agg(
            "longest",
            _t(WORD),
            f"returns the longest of {items} (the first one if several are equally long), or "
            "None if there are none",
            ("return max({values}, key=len) if {values} else None",),
            "Keep the longest so far; only a strictly longer one replaces it.",
            ("longest", "longest_of"),
            (
                ("best = None",),
                ("if best is None or len({v}) > len(best):", "    best = {v}"),
                ("return best",),
            ),
        ),
        Agg(
            "shortest",
            _t(WORD),
            f"returns the shortest of {items} (the first one if several are equally short), or "
            "None if there are none",
            ("return min({values}, key=len) if {values} else None",),
            "Keep the shortest so far; only a strictly shorter one replaces it.",
            ("shortest", "shortest_of"),
            (
                ("best = None",),
                ("if best is None or len({v}) < len(best):", "    best = {v}"),
                ("return best",),
            ),
        ),
        Agg(
            "total_len",
            _t(WORD),
            f"returns the total number of characters in {items}",
            ("return sum(map(len, {values}))",),
            "Add up the lengths.",
            ("total_length", "letters_in"),
            (("total = 0",), ("total += len({v})",), ("return total",)),
            no_maps=_LENGTH_SAME | {"suffix", "tail"},  # len(w[-k:]) is len(w[:k])
        ),
        # ---- cost 1: dicts and runs
        Agg(
            "tally",
            _ALL,
            f"returns a dict mapping each of {items} to the number of times it occurs",
            (
                "counts = {{}}",
                "for item in {values}:",
                "    counts[item] = counts.get(item, 0) + 1",
                "return counts",
            ),
            "Count them in a dict with counts.get(key, 0) + 1.",
            ("tally", "histogram"),
            (("counts = {{}}",), ("counts[{v}] = counts.get({v}, 0) + 1",), ("return counts",)),
            cost=1,
            no_maps=frozenset({"wlen"}),  # = tally_length
        ),
        Agg(
            "tally_mod",
            _t(INT),
            f"returns a dict that maps each r that occurs as v % {{m}} for one of {items} v to "
            "how many of them have v % {m} == r",
            (
                "counts = {{}}",
                "for item in {values}:",
                "    key = item % {m}",
                "    counts[key] = counts.get(key, 0) + 1",
                "return counts",
            ),
            "Count them by their remainder modulo {m} in a dict.",
            ("tally_by_remainder", "count_by_remainder"),
            (
                ("counts = {{}}",),
                ("key = {v} % {m}", "counts[key] = counts.get(key, 0) + 1"),
                ("return counts",),
            ),
            cost=1,
            pick=_mod_pick,
        ),
        Agg(
            "group_mod",
            _t(INT),
            f"returns a dict that maps each r that occurs as v % {{m}} for one of {items} v to "
            "the list, in order, of those v with v % {m} == r",
            (
                "groups = {{}}",
                "for item in {values}:",
                "    groups.setdefault(item % {m}, []).append(item)",
                "return groups",
            ),
            "Group them by remainder modulo {m} with dict.setdefault.",
            ("group_by_remainder", "bucket"),
            (
                ("groups = {{}}",),
                ("groups.setdefault({v} % {m}, []).append({v})",),
                ("return groups",),
            ),
            cost=1,
            pick=_mod_pick,
        ),
        Agg(
            "sum_mod",
            _t(INT),
            f"returns a dict that maps each r that occurs as v % {{m}} for one of {items} v to "
            "the sum of those v with v % {m} == r",
            (
                "totals = {{}}",
                "for item in {values}:",
                "    key = item % {m}",
                "    totals[key] = totals.get(key, 0) + item",
                "return totals",
            ),
            "Sum them per remainder modulo {m} in a dict.",
            ("totals_by_remainder", "sum_by_remainder"),
            (
                ("totals = {{}}",),
                ("key = {v} % {m}", "totals[key] = totals.get(key, 0) + {v}"),
                ("return totals",),
            ),
            cost=1,
            pick=_mod_pick,
        ),
        Agg(
            "group_initial",
            _t(WORD),
            f"returns a dict mapping each first character to the list, in order, of {items} that "
            "start with it",
            (
                "groups = {{}}",
                "for item in {values}:",
                "    groups.setdefault(item[0], []).append(item)",
                "return groups",
            ),
            "Group them by their first character with dict.setdefault.",
            ("group_by_initial", "index"),
            (
                ("groups = {{}}",),
                ("groups.setdefault({v}[0], []).append({v})",),
                ("return groups",),
            ),
            cost=1,
            no_maps=frozenset({"drop", "strip"}),
        ),
        Agg(
            "tally_length",
            _t(WORD),
            f"returns a dict mapping each length that occurs among {items} to how many of them "
            "have that length",
            (
                "counts = {{}}",
                "for item in {values}:",
                "    counts[len(item)] = counts.get(len(item), 0) + 1",
                "return counts",
            ),
            "Count them by length in a dict.",
            ("count_by_length", "length_histogram"),
            (
                ("counts = {{}}",),
                ("counts[len({v})] = counts.get(len({v}), 0) + 1",),
                ("return counts",),
            ),
            cost=1,
            no_maps=_LENGTH_SAME | {"suffix", "tail"},  # len(w[-k:]) is len(w[:k])
        ),
        Agg(
            "longest_equal",
            _t(INT, CHAR),
            f"returns the length of the longest stretch of equal adjacent elements among {items} "
            "(0 if there are none)",
            (
                "best = 0",
                "current = 0",
                "for i in range(len({values})):",
                "    if i > 0 and {values}[i] == {values}[i - 1]:",
                "        current += 1",
                "    else:",
                "        current = 1",
                "    best = max(best, current)",
                "return best",
            ),
            "Extend the current stretch while an element equals the one before; keep the best.",
            ("longest_streak", "longest_repeat"),
            cost=1,
            no_maps=_EQUALITY_BLIND,
        ),
        Agg(
            "runs_count",
            _t(INT, CHAR),
            f"returns the number of stretches of equal adjacent elements among {items} (for "
            "example 1, 1, 2, 1 has 3 stretches; 0 if there are none)",
            (
                "count = 0",
                "for i in range(len({values})):",
                "    if i == 0 or {values}[i] != {values}[i - 1]:",
                "        count += 1",
                "return count",
            ),
            "A new stretch starts at the first element and wherever one differs from the one before.",
            ("count_streaks", "count_blocks"),
            cost=1,
            no_maps=_EQUALITY_BLIND,
        ),
    ]
    for op in INT_OPS + CHAR_OPS:
        if op.kind == "filter" and op.token not in ("equal", "same"):
            out.append(_run(op, op.src))
    return out


def _run(op: Op, typ: str) -> Agg:
    return Agg(
        f"run_{op.token}",
        _t(typ),
        "returns the length of the longest stretch of adjacent elements among {items}, each "
        "of which {p1} (0 if there is none)",
        (
            "best = 0",
            "current = 0",
            "for item in {values}:",
            "    if {cond}:",
            "        current += 1",
            "        best = max(best, current)",
            "    else:",
            "        current = 0",
            "return best",
        ),
        "Count the current stretch of elements that pass, reset it to 0 on one that does not, and "
        "keep the best.",
        ("longest_run", "longest_stretch"),
        (
            ("best = 0", "current = 0"),
            (
                "if {cond}:",
                "    current += 1",
                "    best = max(best, current)",
                "else:",
                "    current = 0",
            ),
            ("return best",),
        ),
        cost=1,
        pred=op,
    )


AGGS: tuple[Agg, ...] = tuple(_agg_list())
AGG_BY_KEY: dict[tuple[str, str], Agg] = {(t, a.token): a for a in AGGS for t in a.types}


@dataclass(frozen=True)
class AggUse:
    agg: Agg
    consts: Consts
    pred: OpUse | None = None

    def _fill(self, line: str, values: str, v: str, noun: str) -> str:
        extra: dict[str, Any] = {"values": values, "v": v, "noun": noun}
        if self.pred is not None:
            extra["cond"] = self.pred.code(v or "item")
            extra["p"] = self.pred.plural()
            extra["p1"] = self.pred.singular()
        return line.format(**self.consts, **extra)

    def text(self, noun: str, items: str) -> str:
        return self._fill(self.agg.text.replace("{items}", items), "", "", noun)

    def plan(self, noun: str) -> str:
        return self._fill(self.agg.plan, "", "", noun)

    def steps(self, values: str) -> list[str]:
        return [self._fill(line, values, "item", "") for line in self.agg.steps]

    def loop(self, v: str) -> tuple[list[str], list[str], list[str]]:
        """(init, body, final) of the one-loop style."""
        if self.agg.loop is None:
            init, body = _COLLECT
            return (
                [self._fill(x, "", v, "") for x in init],
                [self._fill(x, "", v, "") for x in body],
                self.steps("values"),
            )
        init, body, final = self.agg.loop
        return (
            [self._fill(x, "", v, "") for x in init],
            [self._fill(x, "", v, "") for x in body],
            [self._fill(x, "", v, "") for x in final],
        )


def use_agg(agg: Agg, rng: random.Random, seen: list) -> AggUse:
    consts = agg.pick(rng, seen)
    pred = agg.pred.use(rng, seen) if agg.pred is not None else None
    return AggUse(agg, consts, pred)
