"""Element operations of generated code tasks: filters and maps on ints, characters and words.

Why it is built this way:

- **A token names what an operation does, never its constants.** Keys of generated functions are
  sequences of tokens, and the split hashes keys, so two token sequences must never be the same
  function family with other constants. Tokens therefore merge surface forms that a constant
  turns into each other: `x + 3` and `x - 3` are one token (`shift`), `x > c` and `x >= c` are one
  token (`above`), `x % 2 == 1` and `x % 2 != 0` are one token. The surface form (a `Variant`) is
  drawn per function, so a key still shows up in several wordings and codings.
- **Composition rules keep one canonical order.** A filter directly after an affine map is just a
  filter with another constant before that map (`x + 2 > 5` is `x > 3`), two affine maps are one
  affine map, case changes commute with slicing, and so on. `map_allowed` and `filter_allowed`
  reject such sequences, so a held-out composition has no training twin that computes the same
  family in another order. They are rules of thumb for this vocabulary, not a decision procedure
  for program equivalence; `tests/test_problems_codegen.py` probes for twins empirically.
- Constants are drawn from the values that actually reach the operation (`pick(rng, seen)`), so
  a filter after a map keeps some values and drops others instead of being vacuous.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INT, CHAR, WORD = "int", "char", "word"
NOUNS = {INT: "values", CHAR: "characters", WORD: "words"}

Consts = dict[str, Any]
Pick = Callable[[random.Random, list], Consts]


@dataclass(frozen=True)
class Variant:
    """One surface form. Code uses `{v}` for the element; a filter's `text`/`alt` are its plural
    and singular predicate ("are greater than {c}" / "is greater than {c}"); a map's `text` is a
    clause with `{it}` ("multiplies {it} by {c}") and `alt` a noun phrase with `{x}`."""

    code: str
    text: str
    alt: str
    when: Callable[[Consts], bool] | None = None


@dataclass(frozen=True)
class Op:
    token: str
    kind: str  # "filter" | "map"
    src: str  # element type in
    dst: str  # element type out (a filter: the same)
    group: str  # composition class, see the rules below
    variants: tuple[Variant, ...]
    pick: Pick = field(default=lambda r, seen: {})
    # map only: filter tokens allowed directly after it (None: every filter of `dst`)
    then: frozenset[str] | None = frozenset()

    def use(self, rng: random.Random, seen: list) -> OpUse:
        consts = self.pick(rng, seen)
        options = [v for v in self.variants if v.when is None or v.when(consts)]
        return OpUse(self, consts, options[rng.randrange(len(options))])


@dataclass(frozen=True)
class OpUse:
    """An operation with its constants and surface form chosen."""

    op: Op
    consts: Consts
    variant: Variant

    def code(self, v: str) -> str:
        return self.variant.code.format(v=v, **self.consts)

    def clause(self, it: str) -> str:
        return self.variant.text.format(it=it, **self.consts)

    def noun(self, x: str) -> str:
        return self.variant.alt.format(x=x, **self.consts)

    def plural(self) -> str:
        return self.variant.text.format(**self.consts)

    def singular(self) -> str:
        return self.variant.alt.format(**self.consts)

    def interesting(self) -> list:
        """Constants worth putting into test inputs (boundaries)."""
        out: list = []
        for k in ("c", "d"):
            v = self.consts.get(k)
            if type(v) is int:
                out += [v - 1, v, v + 1]
            elif isinstance(v, str) and len(v) == 1:
                out.append(v)
        return out


# ---------------------------------------------------------------- constant pickers


def _seen_or(seen: list, fallback: list) -> list:
    return seen if seen else fallback


def _cut(seen: list, fallback: list) -> tuple[list, int]:
    """Distinct sorted values and a cut index i with at least two distinct values on each side
    (a threshold at an extreme keeps everything or nothing, or turns into an equality test).
    With too few values the cut is at the top, so the filter is vacuous and gets redrawn."""
    pool = sorted(set(_seen_or(seen, fallback)))
    return pool, (len(pool) - 1 if len(pool) < 4 else -1)


def _above(r: random.Random, seen: list) -> Consts:
    pool, i = _cut(seen, [0, 1, 2, 3])
    c = pool[i if i >= 0 else r.randint(1, len(pool) - 3)]
    return {"c": c, "c1": c + 1}


def _below(r: random.Random, seen: list) -> Consts:
    pool, i = _cut(seen, [0, 1, 2, 3])
    c = pool[0 if i >= 0 else r.randint(2, len(pool) - 2)]
    return {"c": c, "c0": c - 1}


def _one(r: random.Random, seen: list) -> Consts:
    pool = sorted(set(_seen_or(seen, [0, 1, 2, 3])))
    return {"c": r.choice(pool[1:-1] if len(pool) >= 3 else pool)}


def _two(r: random.Random, seen: list) -> Consts:
    pool, i = _cut(seen, [0, 2, 5, 8])
    if i >= 0:
        return {"c": pool[0], "d": pool[-1]}
    lo = r.randint(1, len(pool) - 3)
    hi = r.randint(lo + 1, len(pool) - 2)
    return {"c": pool[lo], "d": pool[hi]}


def _rng(lo: int, hi: int, name: str = "c") -> Pick:
    return lambda r, seen: {name: r.randint(lo, hi)}


def _chars(lo: int, hi: int) -> Pick:
    def pick(r: random.Random, seen: list) -> Consts:
        c = r.randint(lo, hi)
        return {"c": c, "cs": "character" if c == 1 else f"{c} characters"}

    return pick


def _mod(r: random.Random, seen: list) -> Consts:
    m = r.randint(2, 6)
    return {"m": m, "m1": m - 1}


def _modmap(r: random.Random, seen: list) -> Consts:
    m = r.randint(3, 7)
    return {"m": m, "m1": m - 1}


def _remainder(r: random.Random, seen: list) -> Consts:
    m = r.randint(3, 6)
    return {"m": m, "r": r.randint(1, m - 1)}


def _affine(r: random.Random, seen: list) -> Consts:
    return {"a": r.randint(2, 4), "b": r.randint(1, 9)}


def _letters(seen: list) -> list[str]:
    chars = [ch for w in seen if isinstance(w, str) for ch in w if ch.isalpha()]
    return chars or list("aeiost")


def _char(r: random.Random, seen: list) -> Consts:
    return {"c": r.choice(_seen_or(seen, list("abc")))}


def _among(r: random.Random, seen: list) -> Consts:
    pool = sorted(set(_seen_or(seen, list("abcxyz"))))
    k = min(len(pool), r.randint(2, 3))
    return {"cs": "".join(sorted(r.sample(pool, k)))}


def _replace_char(r: random.Random, seen: list) -> Consts:
    c = r.choice(_seen_or([x for x in seen if x.isalpha()], list("aeo")))
    d = r.choice([x for x in "aeiouxyz*#_" if x != c])
    return {"c": c, "d": d}


def _mask(r: random.Random, seen: list) -> Consts:
    return {"c": r.choice("*#_.")}


def _letter(r: random.Random, seen: list) -> Consts:
    return {"c": r.choice(_letters(seen))}


def _initial(r: random.Random, seen: list) -> Consts:
    firsts = [w[0] for w in seen if isinstance(w, str) and w]
    return {"c": r.choice(firsts or list("abs"))}


def _final(r: random.Random, seen: list) -> Consts:
    lasts = [w[-1] for w in seen if isinstance(w, str) and w]
    return {"c": r.choice(lasts or list("est"))}


def _word_replace(r: random.Random, seen: list) -> Consts:
    c = r.choice(_letters(seen))
    return {"c": c, "d": r.choice([x for x in "aeiou*-_" if x != c])}


def _suffix(r: random.Random, seen: list) -> Consts:
    return {"c": r.choice(("s", "ed", "!", "x", "-"))}


def _length(r: random.Random, seen: list) -> Consts:
    c = r.randint(2, 5)
    return {"c": c, "c1": c + 1}


# ---------------------------------------------------------------- int operations

_V = Variant
ORDER = frozenset({"above", "below", "between", "outside", "equal", "unequal"})
ARITH = frozenset({"multiple", "nonmultiple", "remainder"})


def _even(k: Consts) -> bool:
    return k["m"] == 2


def _not_even(k: Consts) -> bool:
    return k["m"] != 2


INT_OPS: tuple[Op, ...] = (
    Op(
        "above",
        "filter",
        INT,
        INT,
        "order",
        (
            _V("{v} > {c}", "are greater than {c}", "is greater than {c}"),
            _V("{v} >= {c1}", "are at least {c1}", "is at least {c1}"),
        ),
        _above,
    ),
    Op(
        "below",
        "filter",
        INT,
        INT,
        "order",
        (
            _V("{v} < {c}", "are less than {c}", "is less than {c}"),
            _V("{v} <= {c0}", "are at most {c0}", "is at most {c0}"),
        ),
        _below,
    ),
    Op(
        "between",
        "filter",
        INT,
        INT,
        "order",
        (
            _V(
                "{c} <= {v} <= {d}",
                "are between {c} and {d} (both included)",
                "is between {c} and {d} (both included)",
            ),
        ),
        _two,
    ),
    Op(
        "outside",
        "filter",
        INT,
        INT,
        "order",
        (
            _V(
                "{v} < {c} or {v} > {d}",
                "are less than {c} or greater than {d}",
                "is less than {c} or greater than {d}",
            ),
        ),
        _two,
    ),
    Op("equal", "filter", INT, INT, "order", (_V("{v} == {c}", "equal {c}", "equals {c}"),), _one),
    Op(
        "unequal",
        "filter",
        INT,
        INT,
        "order",
        (_V("{v} != {c}", "are not equal to {c}", "is not equal to {c}"),),
        _one,
    ),
    Op(
        "multiple",
        "filter",
        INT,
        INT,
        "arith",
        (
            _V("{v} % 2 == 0", "are even", "is even", _even),
            _V("{v} % {m} == 0", "are divisible by {m}", "is divisible by {m}", _not_even),
        ),
        _mod,
    ),
    Op(
        "nonmultiple",
        "filter",
        INT,
        INT,
        "arith",
        (
            _V("{v} % 2 == 1", "are odd", "is odd", _even),
            _V("{v} % 2 != 0", "are odd", "is odd", _even),
            _V(
                "{v} % {m} != 0",
                "are not divisible by {m}",
                "is not divisible by {m}",
                _not_even,
            ),
        ),
        _mod,
    ),
    Op(
        "remainder",
        "filter",
        INT,
        INT,
        "arith",
        (
            _V(
                "{v} % {m} == {r}",
                "leave remainder {r} when divided by {m} (as Python's % computes it)",
                "leaves remainder {r} when divided by {m} (as Python's % computes it)",
            ),
        ),
        _remainder,
    ),
    Op(
        "shift",
        "map",
        INT,
        INT,
        "affine",
        (
            _V("{v} + {c}", "adds {c} to {it}", "{x} plus {c}"),
            _V("{v} - {c}", "subtracts {c} from {it}", "{x} minus {c}"),
        ),
        _rng(1, 9),
    ),
    Op(
        "scale",
        "map",
        INT,
        INT,
        "affine",
        (_V("{v} * {c}", "multiplies {it} by {c}", "{x} multiplied by {c}"),),
        _rng(2, 5),
    ),
    Op(
        "affine",
        "map",
        INT,
        INT,
        "affine",
        (
            _V(
                "{v} * {a} + {b}",
                "replaces {it} by {a} times it plus {b}",
                "{a} times {x} plus {b}",
            ),
            _V(
                "{v} * {a} - {b}",
                "replaces {it} by {a} times it minus {b}",
                "{a} times {x} minus {b}",
            ),
        ),
        _affine,
    ),
    Op("negate", "map", INT, INT, "affine", (_V("-{v}", "negates {it}", "the negative of {x}"),)),
    Op(
        "reflect",
        "map",
        INT,
        INT,
        "affine",
        (_V("{c} - {v}", "replaces {it} by {c} minus it", "{c} minus {x}"),),
        _rng(1, 20),
    ),
    Op("square", "map", INT, INT, "even", (_V("{v} * {v}", "squares {it}", "the square of {x}"),)),
    Op(
        "absval",
        "map",
        INT,
        INT,
        "even",
        (_V("abs({v})", "replaces {it} by its absolute value", "the absolute value of {x}"),),
    ),
    Op(
        "modulo",
        "map",
        INT,
        INT,
        "mod",
        (
            _V(
                "{v} % {m}",
                "replaces {it} by its remainder modulo {m} (from 0 to {m1})",
                "the remainder of {x} modulo {m} (from 0 to {m1})",
            ),
        ),
        _modmap,
        frozenset({"above", "below", "between", "outside", "unequal"}),
    ),
    Op(
        "floordiv",
        "map",
        INT,
        INT,
        "floor",
        (
            _V(
                "{v} // {c}",
                "divides {it} by {c}, rounding down",
                "{x} divided by {c} (rounded down)",
            ),
        ),
        _rng(2, 5),
        ARITH,
    ),
    Op(
        "atleast",
        "map",
        INT,
        INT,
        "clip",
        (_V("max({v}, {c})", "raises {it} to {c} if it is smaller", "the larger of {x} and {c}"),),
        _one,
    ),
    Op(
        "atmost",
        "map",
        INT,
        INT,
        "clip",
        (_V("min({v}, {c})", "lowers {it} to {c} if it is larger", "the smaller of {x} and {c}"),),
        _one,
    ),
)

# ---------------------------------------------------------------- character operations

CHAR_CLASS = frozenset({"vowel", "digit", "letter", "upper", "lower"})
LETTER_CLASS = frozenset({"vowel", "upper", "lower"})  # what can be said of a word's letter

CHAR_OPS: tuple[Op, ...] = (
    Op(
        "vowel",
        "filter",
        CHAR,
        CHAR,
        "class",
        (
            _V(
                "{v} in 'aeiou'",
                "are lowercase vowels (a, e, i, o, u)",
                "is a lowercase vowel (a, e, i, o, u)",
            ),
        ),
    ),
    Op("digit", "filter", CHAR, CHAR, "class", (_V("{v}.isdigit()", "are digits", "is a digit"),)),
    Op(
        "letter",
        "filter",
        CHAR,
        CHAR,
        "class",
        (_V("{v}.isalpha()", "are letters", "is a letter"),),
    ),
    Op(
        "upper",
        "filter",
        CHAR,
        CHAR,
        "class",
        (_V("{v}.isupper()", "are uppercase letters", "is an uppercase letter"),),
    ),
    Op(
        "lower",
        "filter",
        CHAR,
        CHAR,
        "class",
        (_V("{v}.islower()", "are lowercase letters", "is a lowercase letter"),),
    ),
    Op(
        "same",
        "filter",
        CHAR,
        CHAR,
        "value",
        (_V("{v} == {c!r}", "are equal to {c!r}", "is equal to {c!r}"),),
        _char,
    ),
    Op(
        "other",
        "filter",
        CHAR,
        CHAR,
        "value",
        (_V("{v} != {c!r}", "are different from {c!r}", "is different from {c!r}"),),
        _char,
    ),
    Op(
        "among",
        "filter",
        CHAR,
        CHAR,
        "value",
        (
            _V(
                "{v} in {cs!r}",
                "are one of the characters of {cs!r}",
                "is one of the characters of {cs!r}",
            ),
        ),
        _among,
    ),
    Op(
        "upcase", "map", CHAR, CHAR, "case", (_V("{v}.upper()", "converts {it} to upper case", ""),)
    ),
    Op(
        "downcase",
        "map",
        CHAR,
        CHAR,
        "case",
        (_V("{v}.lower()", "converts {it} to lower case", ""),),
    ),
    Op(
        "swapcase", "map", CHAR, CHAR, "case", (_V("{v}.swapcase()", "swaps the case of {it}", ""),)
    ),
    Op(
        "replace",
        "map",
        CHAR,
        CHAR,
        "sub",
        (_V("{d!r} if {v} == {c!r} else {v}", "replaces {it} by {d!r} if it is {c!r}", ""),),
        _replace_char,
    ),
    Op(
        "mask_vowel",
        "map",
        CHAR,
        CHAR,
        "sub",
        (
            _V(
                "{c!r} if {v} in 'aeiou' else {v}",
                "replaces {it} by {c!r} if it is a lowercase vowel (a, e, i, o, u)",
                "",
            ),
        ),
        _mask,
    ),
    Op(
        "mask_digit",
        "map",
        CHAR,
        CHAR,
        "sub",
        (_V("{c!r} if {v}.isdigit() else {v}", "replaces {it} by {c!r} if it is a digit", ""),),
        _mask,
    ),
)

# ---------------------------------------------------------------- word (string) operations

WORD_SIZE = frozenset({"longer", "shorter", "length"})

WORD_OPS: tuple[Op, ...] = (
    Op(
        "longer",
        "filter",
        WORD,
        WORD,
        "size",
        (
            _V("len({v}) > {c}", "are longer than {c} characters", "is longer than {c} characters"),
            _V("len({v}) >= {c1}", "have at least {c1} characters", "has at least {c1} characters"),
        ),
        _length,
    ),
    Op(
        "shorter",
        "filter",
        WORD,
        WORD,
        "size",
        (
            _V(
                "len({v}) < {c}",
                "are shorter than {c} characters",
                "is shorter than {c} characters",
            ),
            _V("len({v}) <= {c}", "have at most {c} characters", "has at most {c} characters"),
        ),
        _length,
    ),
    Op(
        "length",
        "filter",
        WORD,
        WORD,
        "size",
        (_V("len({v}) == {c}", "have exactly {c} characters", "has exactly {c} characters"),),
        _length,
    ),
    Op(
        "starts",
        "filter",
        WORD,
        WORD,
        "content",
        (_V("{v}.startswith({c!r})", "start with {c!r}", "starts with {c!r}"),),
        _initial,
    ),
    Op(
        "ends",
        "filter",
        WORD,
        WORD,
        "content",
        (_V("{v}.endswith({c!r})", "end with {c!r}", "ends with {c!r}"),),
        _final,
    ),
    Op(
        "contains",
        "filter",
        WORD,
        WORD,
        "content",
        (_V("{c!r} in {v}", "contain {c!r}", "contains {c!r}"),),
        _letter,
    ),
    Op(
        "lacks",
        "filter",
        WORD,
        WORD,
        "content",
        (_V("{c!r} not in {v}", "do not contain {c!r}", "does not contain {c!r}"),),
        _letter,
    ),
    Op(
        "palindrome",
        "filter",
        WORD,
        WORD,
        "content",
        (
            _V(
                "{v} == {v}[::-1]",
                "are palindromes (read the same backwards)",
                "is a palindrome (reads the same backwards)",
            ),
        ),
    ),
    Op(
        "capital",
        "filter",
        WORD,
        WORD,
        "content",
        (
            _V(
                "{v}[0].isupper()",
                "start with an uppercase letter",
                "starts with an uppercase letter",
            ),
        ),
    ),
    Op(
        "allcaps",
        "filter",
        WORD,
        WORD,
        "content",
        (
            _V(
                "{v}.isupper()",
                "are written entirely in upper case",
                "is written entirely in upper case",
            ),
        ),
    ),
    Op(
        "upcase", "map", WORD, WORD, "case", (_V("{v}.upper()", "converts {it} to upper case", ""),)
    ),
    Op(
        "downcase",
        "map",
        WORD,
        WORD,
        "case",
        (_V("{v}.lower()", "converts {it} to lower case", ""),),
    ),
    Op(
        "capitalize",
        "map",
        WORD,
        WORD,
        "case",
        (
            _V(
                "{v}.capitalize()",
                "capitalizes {it} (first character upper case, the rest lower case)",
                "",
            ),
        ),
    ),
    Op(
        "swapcase", "map", WORD, WORD, "case", (_V("{v}.swapcase()", "swaps the case of {it}", ""),)
    ),
    Op("reverse", "map", WORD, WORD, "struct", (_V("{v}[::-1]", "reverses {it}", ""),)),
    Op(
        "prefix",
        "map",
        WORD,
        WORD,
        "slice",
        (_V("{v}[:{c}]", "keeps only the first {cs} of {it} (all of it if shorter)", ""),),
        _chars(1, 3),
    ),
    Op(
        "drop",
        "map",
        WORD,
        WORD,
        "slice",
        (_V("{v}[{c}:]", "removes the first {cs} of {it} (all of it if shorter)", ""),),
        _chars(1, 2),
    ),
    Op(
        "tail",
        "map",
        WORD,
        WORD,
        "slice",
        (_V("{v}[-{c}:]", "keeps only the last {cs} of {it} (all of it if shorter)", ""),),
        _chars(1, 3),
    ),
    Op(
        "suffix",
        "map",
        WORD,
        WORD,
        "struct",
        (_V("{v} + {c!r}", "appends {c!r} to {it}", ""),),
        _suffix,
    ),
    Op(
        "replace",
        "map",
        WORD,
        WORD,
        "point",
        (_V("{v}.replace({c!r}, {d!r})", "replaces every {c!r} in {it} by {d!r}", ""),),
        _word_replace,
    ),
    Op(
        "strip",
        "map",
        WORD,
        WORD,
        "struct",
        (_V("{v}.replace({c!r}, '')", "removes every {c!r} from {it}", ""),),
        _letter,
    ),
    Op(
        "wlen",
        "map",
        WORD,
        INT,
        "measure",
        (_V("len({v})", "replaces {it} by its length", "the length of {x}"),),
        then=ARITH,
    ),
    Op(
        "wcount",
        "map",
        WORD,
        INT,
        "measure",
        (
            _V(
                "{v}.count({c!r})",
                "replaces {it} by the number of times {c!r} occurs in it",
                "the number of times {c!r} occurs in {x}",
            ),
        ),
        _letter,
        then=None,
    ),
    Op(
        "initial",
        "map",
        WORD,
        CHAR,
        "pick",
        (_V("{v}[0]", "replaces {it} by its first character", ""),),
        then=LETTER_CLASS,
    ),
    Op(
        "final",
        "map",
        WORD,
        CHAR,
        "pick",
        (_V("{v}[-1]", "replaces {it} by its last character", ""),),
        then=LETTER_CLASS,
    ),
)

OPS: dict[tuple[str, str], Op] = {(o.src, o.token): o for o in INT_OPS + CHAR_OPS + WORD_OPS}
BY_TYPE: dict[str, tuple[Op, ...]] = {
    t: tuple(o for o in INT_OPS + CHAR_OPS + WORD_OPS if o.src == t) for t in (INT, CHAR, WORD)
}
INJECTIVE = frozenset(
    {"shift", "scale", "affine", "negate", "reflect", "swapcase", "reverse", "suffix"}
)

# int map -> map transitions that are reparametrisations or degenerate (see the module docstring)
_INT_BAD_AFTER: dict[str, frozenset[str]] = {
    "affine": frozenset({"shift", "scale", "affine", "negate", "reflect", "atleast", "atmost"}),
    "even": frozenset({"square", "absval"}),
    "floor": frozenset({"atleast", "atmost"}),
    "mod": frozenset({"absval"}),
    "clip": frozenset({"absval"}),  # |min(x, c)| is -min(x, c) for c <= 0
}
_SIGN_BEFORE_EVEN = frozenset({"negate", "reflect", "scale"})
# modulo after a map with a sign or two constants: a*x + b (mod m) is one family whose members
# these tokens would share ((-x) % 3 == (2 * x) % 3); floor division after an affine map likewise
_BAD_TOKEN_PAIRS = frozenset(
    {
        ("negate", "modulo"),
        ("reflect", "modulo"),
        ("affine", "modulo"),
        ("affine", "floordiv"),
    }
)


def map_allowed(maps: tuple[Op, ...], nxt: Op) -> bool:
    """Whether map `nxt` may follow the maps applied so far (source conversions not included)."""
    prev = maps[-1] if maps else None
    if prev is not None and prev.token == nxt.token and prev.src == nxt.src:
        return False
    if nxt.src == INT:
        if prev is None or prev.src != INT:
            return True
        bad = _INT_BAD_AFTER.get(prev.group, frozenset())
        if nxt.group in bad or nxt.token in bad:
            return False
        if prev.token in _SIGN_BEFORE_EVEN and nxt.group == "even":
            return False
        if (prev.token, nxt.token) in _BAD_TOKEN_PAIRS:
            return False
        return not (prev.token == "atmost" and nxt.token == "atleast")
    same = [o for o in maps if o.src == nxt.src]
    groups = {o.group for o in same}
    if nxt.src == CHAR:
        if "case" in groups:
            return False  # case changes come last
        return not (nxt.group == "sub" and "sub" in groups)
    # words: [struct | slice | point]? [case]? then at most one measure/pick
    if groups & {"measure", "pick"}:
        return False
    if nxt.group == "case":
        return "case" not in groups
    if nxt.group in ("struct", "slice", "point"):
        return not groups
    tokens = {o.token for o in same}
    if nxt.token == "wlen":
        return tokens <= {"prefix", "drop", "strip"}  # len(w[-k:]) is len(w[:k])
    if nxt.token == "wcount":  # case-insensitive counts: only after upcase
        return not tokens & {"reverse", "downcase", "swapcase", "capitalize"}
    return not same  # initial / final: straight from the split words


def filter_allowed(last_map: Op | None, prev_filter: Op | None, nxt: Op) -> bool:
    """Whether filter `nxt` may come now. `last_map`: the last map so far (None: no map, or a
    source conversion); `prev_filter`: the stage just before if it is a filter."""
    if last_map is not None and last_map.then is not None and nxt.token not in last_map.then:
        return False
    if prev_filter is None:
        return True
    # two filters in a row: one of each class, in a fixed order
    pairs = {
        INT: (ORDER - {"equal"}, ARITH),
        CHAR: (CHAR_CLASS, frozenset({"other"})),
        WORD: (WORD_SIZE, frozenset(o.token for o in WORD_OPS if o.group == "content")),
    }[nxt.src]
    return prev_filter.token in pairs[0] and nxt.token in pairs[1]
