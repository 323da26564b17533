"""Generated functions of one or two scalars: short expressions, piecewise rules, iterations.

Why it is built this way:

- Tier 1 is "one line, one or two operations": `expr` (two integer maps in a row), `test` (a
  predicate, possibly of a remainder or quotient, returning True/False), `expr2` (combine a and b,
  then one map) and `str1` (two string transforms, or a transform and a measurement). The
  catalogue already has the one-operation functions (`add_constant`, `is_even`, ...), so these
  forms start at two operations or use predicates the catalogue lacks.
- Piecewise rules (`piecewise`, `bands`, `iterate`) have **canonical keys**: `x < c` with
  branches (A, B) is the same family as `x >= c` with (B, A), so the key names the condition
  family and the branches in a fixed order (`below|<low branch>|<high branch>`), while the code
  and the spec use whichever comparison was drawn.
- Specs read as steps in order ("first multiplies x by 3, then adds 4 to the result"), so
  precedence is never ambiguous, and floor division and `%` say how they round.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from hillclimb.problems.codegen_ends import int_list
from hillclimb.problems.codegen_ends import text as random_text
from hillclimb.problems.codegen_ops import (
    INT,
    OPS,
    WORD,
    WORD_OPS,
    Op,
    OpUse,
    Variant,
    map_allowed,
)
from hillclimb.problems.codegen_spec import GenSpec, compiled_lambda

_INT_MAPS = tuple(o for (t, _), o in OPS.items() if t == INT and o.kind == "map")
IDENTITY = Op("identity", "map", INT, INT, "id", (Variant("{v}", "keeps {it}", "{x} itself"),))
# Branches of piecewise rules: no clips (a clip is itself piecewise) and no |x| (the same).
BRANCHES = (IDENTITY,) + tuple(
    o for o in _INT_MAPS if o.token not in ("atleast", "atmost", "absval")
)
ITERATE_BRANCHES = tuple(o for o in BRANCHES if o.token != "square")  # no runaway growth
_DOMAIN = list(range(-9, 21))


def _x(r: random.Random, extra: list) -> int:
    ints = [v for v in extra if type(v) is int]
    return r.choice(ints) if ints and r.random() < 0.35 else r.randint(-20, 30)


def _p(o: Op, r: random.Random, seen: list | None = None) -> OpUse:
    return o.use(r, _DOMAIN if seen is None else seen)


# ---------------------------------------------------------------- tier 1


# |x| then these is a `piecewise` rule on the sign of x (-|x|: x or -x; |x| + c: c - x or x + c)
_ABS_PIECEWISE = frozenset({"negate", "shift"})


def _expr_pairs() -> list[tuple[Op, Op]]:
    return [
        (a, b)
        for a in _INT_MAPS
        for b in _INT_MAPS
        if map_allowed((a,), b) and not (a.token == "absval" and b.token in _ABS_PIECEWISE)
    ]


def _paren(code: str) -> str:
    return f"({code})"


def _fn(name: str, args: str, expr: str) -> str:
    return f"def {name}({args}):\n    return {expr}\n"


def build_expr(r: random.Random, a: Op, b: Op) -> GenSpec:
    ua = _p(a, r)
    ub = _p(b, r, _apply_all(ua))
    code = ub.code(_paren(ua.code("x")))
    name = r.choice(("compute", "transform", "evaluate", "apply_steps"))
    doc = (
        f"takes an integer x and returns the result of two steps: first {ua.clause('x')}, then "
        f"{ub.clause('the result')}"
    )
    extra = ua.interesting() + ub.interesting()
    return GenSpec(
        f"gen:expr|{a.token}|{b.token}",
        name,
        "x",
        doc,
        f"def {name}(x):\n    return {code}\n",
        "Apply the two steps in order in one expression.",
        lambda rr: (_x(rr, extra),),
        ((0,), (1,), (-7,)),
        {"0": ua.consts, "1": ub.consts},
        ablations=(
            _fn(name, "x", ua.code("x")),
            _fn(name, "x", ub.code("x")),
            _fn(name, "x", "x"),  # e.g. (x * 3) // 3
        ),
    )


def _apply_all(use: OpUse) -> list:
    fn = compiled_lambda(use.code("v"))
    return sorted({fn(v) for v in _DOMAIN})


_TEST_SINGLE = ("below", "between", "outside", "unequal", "nonmultiple", "remainder")


def _test_structures() -> list[tuple[Op | None, Op]]:
    out: list[tuple[Op | None, Op]] = [(None, OPS[(INT, t)]) for t in _TEST_SINGLE]
    for m in ("modulo", "floordiv"):
        op = OPS[(INT, m)]
        assert op.then is not None
        out += [(op, OPS[(INT, t)]) for t in sorted(op.then)]
    return out


def build_test(r: random.Random, m: Op | None, pred: Op) -> GenSpec:
    um = _p(m, r) if m is not None else None
    up = _p(pred, r, _apply_all(um) if um is not None else None)
    subject = um.noun("x") if um is not None else "x"
    inner = um.code("x") if um is not None else "x"
    code = up.code(_paren(inner) if um is not None else inner)
    name = r.choice(("check", "test_value", "qualifies", "matches"))
    doc = f"takes an integer x and returns True if {subject} {up.singular()}, and False otherwise"
    extra = up.interesting() + (um.interesting() if um else [])
    key = f"gen:test|{m.token}|{pred.token}" if m is not None else f"gen:test|{pred.token}"
    return GenSpec(
        key,
        name,
        "x",
        doc,
        f"def {name}(x):\n    return {code}\n",
        "The condition itself is the True/False answer.",
        lambda rr: (_x(rr, extra),),
        ((0,), (-3,)),
        {"map": um.consts if um else {}, "pred": up.consts},
        ablations=(_fn(name, "x", up.code("x")),) if um is not None else (),
    )


COMBINE = {
    "add": ("a + b", "adds a and b"),
    "sub": ("a - b", "subtracts b from a"),
    "mul": ("a * b", "multiplies a by b"),
    "max": ("max(a, b)", "takes the larger of a and b"),
    "min": ("min(a, b)", "takes the smaller of a and b"),
    "absdiff": ("abs(a - b)", "takes the absolute difference of a and b"),
}


def _expr2_structures() -> list[tuple[str, Op]]:
    return [
        (c, o)
        for c in COMBINE
        for o in _INT_MAPS
        if not (c == "absdiff" and o.token in ("absval", "square"))  # |a-b|**2 == (a-b)**2
        and not (c == "sub" and o.token == "absval")  # that is absdiff itself
        and not (c == "max" and o.token == "atleast")
        and not (c == "min" and o.token == "atmost")
    ]


def build_expr2(r: random.Random, comb: str, op: Op) -> GenSpec:
    code0, clause = COMBINE[comb]
    u = _p(op, r)
    name = r.choice(("combine", "mix", "pair_value", "blend"))
    doc = (
        f"takes two integers a and b and returns the result of two steps: first {clause}, then "
        f"{u.clause('the result')}"
    )
    extra = u.interesting()
    return GenSpec(
        f"gen:expr2|{comb}|{op.token}",
        name,
        "a, b",
        doc,
        f"def {name}(a, b):\n    return {u.code(_paren(code0))}\n",
        "Combine a and b first, then apply the second step to that result.",
        lambda rr: (_x(rr, extra), _x(rr, extra)),
        ((0, 0), (3, -4)),
        {"op": u.consts},
        ablations=(_fn(name, "a, b", code0),),
    )


COMBINE_AFTER = {
    "add": ("{r} + b", "adds b to the result"),
    "sub": ("{r} - b", "subtracts b from the result"),
    "mul": ("{r} * b", "multiplies the result by b"),
    "max": ("max({r}, b)", "takes the larger of the result and b"),
    "min": ("min({r}, b)", "takes the smaller of the result and b"),
    "absdiff": ("abs({r} - b)", "takes the absolute difference of the result and b"),
}
# (map of a, combine with b) pairs that are a combine-then-map of `expr2` in disguise
_EXPR2M_BAD = frozenset(
    {
        ("shift", "add"),
        ("shift", "sub"),
        ("scale", "mul"),
        ("negate", "mul"),
        ("negate", "add"),
        ("negate", "sub"),
        ("negate", "absdiff"),
        ("reflect", "add"),
        ("reflect", "sub"),
    }
)


def _expr2m_structures() -> list[tuple[Op, str]]:
    return [(o, c) for o in _INT_MAPS for c in COMBINE_AFTER if (o.token, c) not in _EXPR2M_BAD]


def build_expr2m(r: random.Random, op: Op, comb: str) -> GenSpec:
    u = _p(op, r)
    code0, clause = COMBINE_AFTER[comb]
    name = r.choice(("combine", "mix", "pair_value", "blend"))
    doc = (
        f"takes two integers a and b and returns the result of two steps: first "
        f"{u.clause('a')}, then {clause}"
    )
    extra = u.interesting()
    return GenSpec(
        f"gen:expr2m|{op.token}|{comb}",
        name,
        "a, b",
        doc,
        f"def {name}(a, b):\n    return {code0.format(r=_paren(u.code('a')))}\n",
        "Apply the first step to a, then combine the result with b.",
        lambda rr: (_x(rr, extra), _x(rr, extra)),
        ((0, 0), (-3, 4)),
        {"op": u.consts},
        ablations=(_fn(name, "a, b", code0.format(r="a")),),
    )


def _test2_structures() -> list[tuple[str, Op]]:
    preds = [o for o in OPS.values() if o.src == INT and o.kind == "filter"]
    # divisibility ignores the sign: |a - b| is then a - b
    sign_free = ("multiple", "nonmultiple")
    return [(c, p) for c in COMBINE for p in preds if not (c == "absdiff" and p.token in sign_free)]


def build_test2(r: random.Random, comb: str, pred: Op) -> GenSpec:
    code0, _ = COMBINE[comb]
    subject = {
        "add": "a + b",
        "sub": "a - b",
        "mul": "a * b",
        "max": "the larger of a and b",
        "min": "the smaller of a and b",
        "absdiff": "the absolute difference of a and b",
    }[comb]
    pair = compiled_lambda(code0, "a, b")
    seen = sorted({pair(a, b) for a in range(-12, 25, 3) for b in range(-10, 24, 4)})
    up = _p(pred, r, seen)
    name = r.choice(("check_pair", "test_pair", "pair_qualifies"))
    doc = f"takes two integers a and b and returns True if {subject} {up.singular()}, and False otherwise"
    extra = up.interesting()
    return GenSpec(
        f"gen:test2|{comb}|{pred.token}",
        name,
        "a, b",
        doc,
        f"def {name}(a, b):\n    return {up.code(_paren(code0))}\n",
        "Compute the combination, then test it; the comparison is the answer.",
        lambda rr: (_x(rr, extra), _x(rr, extra)),
        ((0, 0), (2, -2)),
        {"pred": up.consts},
    )


# one aggregate of a list, then one map; only pairs where the map does not commute with it
LIST_AGGS = {
    "len": ("len(xs)", "takes the number of values in xs", False),
    "sum": ("sum(xs)", "takes the sum of xs (0 if it is empty)", False),
    "max": ("max(xs)", "takes the largest value of xs", True),
    "min": ("min(xs)", "takes the smallest value of xs", True),
}
_LIST_MAPS = {
    "len": frozenset(o.token for o in _INT_MAPS),
    "sum": frozenset(
        {"shift", "reflect", "square", "absval", "modulo", "floordiv", "atleast", "atmost"}
    ),
    "max": frozenset({"square", "absval", "modulo"}),
    "min": frozenset({"square", "absval", "modulo"}),
}


def _list1_structures() -> list[tuple[str, Op]]:
    return [(a, o) for a in LIST_AGGS for o in _INT_MAPS if o.token in _LIST_MAPS[a]]


def build_list1(r: random.Random, agg: str, op: Op) -> GenSpec:
    code0, clause, nonempty = LIST_AGGS[agg]
    u = _p(op, r, list(range(0, 40)) if agg in ("len", "sum") else None)
    name = r.choice(("summarize", "score_list", "list_value", "reduce_values"))
    what = "a non-empty list of integers xs" if nonempty else "a list of integers xs"
    doc = (
        f"takes {what} and returns the result of two steps: first {clause}, then "
        f"{u.clause('the result')}"
    )

    def inputs(rr: random.Random) -> tuple:
        xs = int_list(rr, [], -9, 15, 6)
        return ((xs or [rr.randint(-9, 15)]) if nonempty else xs,)

    return GenSpec(
        f"gen:list1|{agg}|{op.token}",
        name,
        "xs",
        doc,
        f"def {name}(xs):\n    return {u.code(code0)}\n",
        "Reduce the list first, then apply the second step.",
        inputs,
        (([3],), ([-2, 5],)) if nonempty else (([],), ([4],)),
        {"op": u.consts},
        ablations=(_fn(name, "xs", code0),),
    )


STR_N = {
    "repeat": ("s * n", "repeats s n times"),
    "head": ("s[:n]", "keeps the first n characters of s (all of s if it is shorter)"),
    "drop": ("s[n:]", "removes the first n characters of s (all of s if it is shorter)"),
}


def _strn_structures() -> list[tuple[str, Op | Measure]]:
    out: list[tuple[str, Op | Measure]] = []
    for nop in STR_N:
        for o in _STR_MAPS:
            if (
                o.group == "case"
                or o.token in ("reverse", "suffix")
                or (o.token == "strip" and nop != "repeat")
            ):
                out.append((nop, o))
        out += [(nop, m) for m in MEASURES[:3] if not (nop == "repeat" and m.token == "find")]
    return out


def build_strn(r: random.Random, nop: str, b: Op | Measure) -> GenSpec:
    code0, first = STR_N[nop]
    seen = [random_text(r, []) for _ in range(6)]
    name = r.choice(("stretch", "trim_text", "resize_text"))
    if isinstance(b, Measure):
        c = r.choice([ch for s in seen for ch in s] or ["a"])
        code = b.code.format(x=_paren(code0), c=c)
        doc = (
            f"takes a string s and an integer n >= 0, {first}, and "
            f"{b.text.format(x='the result', c=c)}"
        )
        extra: list = [c]
        consts: dict = {"c": c}
        alone = [b.code.format(x="s", c=c)]
    else:
        ub = b.use(r, seen)
        code = ub.code(_paren(code0))
        doc = (
            f"takes a string s and an integer n >= 0 and returns the result of two steps: first "
            f"{first}, then {ub.clause('the result')}"
        )
        extra = ub.interesting()
        consts = ub.consts
        alone = [ub.code("s"), code0]
    return GenSpec(
        f"gen:strn|{nop}|{b.token}",
        name,
        "s, n",
        doc,
        f"def {name}(s, n):\n    return {code}\n",
        "Apply the operation with n first, then the string step.",
        lambda rr: (random_text(rr, extra, 6), rr.randint(0, 4)),
        (("", 2), ("ab", 0)),
        consts,
        ablations=tuple(_fn(name, "s, n", x) for x in alone),
    )


# string measurements (tier 1 only): str -> int / bool, with the maps each may follow
@dataclass(frozen=True)
class Measure:
    token: str
    code: str
    text: str  # with {x}: the subject; {c!r}: a character
    after: frozenset[str]
    char: bool = True


# Case-insensitive measurements after a case change: upcase only (after downcase, swapcase or
# capitalize the same searches are the same family with a lower-case constant).
_V_ANY = frozenset(
    o.token
    for o in WORD_OPS
    if o.kind == "map" and o.dst == WORD and o.token not in ("downcase", "swapcase", "capitalize")
)
MEASURES = (
    Measure(
        "length",
        "len({x})",
        "returns the length of {x}",
        frozenset({"prefix", "drop", "tail", "strip"}),
        False,
    ),
    Measure(
        "count",
        "{x}.count({c!r})",
        "returns how many times {c!r} occurs in {x}",
        _V_ANY - {"reverse", "suffix"},
    ),
    Measure(
        "find",
        "{x}.find({c!r})",
        "returns the index of the first {c!r} in {x}, or -1 if there is none",
        _V_ANY,
    ),
    Measure(
        "startswith",
        "{x}.startswith({c!r})",
        "returns True if {x} starts with {c!r} and False otherwise",
        frozenset({"drop", "strip", "replace", "upcase"}),
    ),
    Measure(
        "contains",
        "{c!r} in {x}",
        "returns True if {x} contains {c!r} and False otherwise",
        frozenset({"prefix", "drop", "tail", "replace", "upcase"}),
    ),
)
_STR_MAPS = tuple(o for o in WORD_OPS if o.kind == "map" and o.dst == WORD)
# Two structural string steps that are not reparametrisations of one (slices compose to slices,
# replace commutes with reversing and slicing, ...): an explicit list.
_STRUCT_PAIRS = frozenset(
    {
        ("prefix", "reverse"),
        ("drop", "reverse"),
        ("tail", "reverse"),
        ("suffix", "reverse"),
        ("reverse", "suffix"),
        ("strip", "prefix"),
        ("strip", "drop"),
        ("strip", "tail"),
        ("replace", "reverse"),
        ("replace", "prefix"),
        ("prefix", "suffix"),
        ("drop", "suffix"),
    }
)


def _str1_structures() -> list[tuple[Op, Op | Measure]]:
    out: list[tuple[Op, Op | Measure]] = []
    for a in _STR_MAPS:
        for b in _STR_MAPS:
            if (a.token, b.token) in _STRUCT_PAIRS or (
                a.group != "case" and b.group == "case" and map_allowed((a,), b)
            ):
                out.append((a, b))
        out += [(a, m) for m in MEASURES if a.token in m.after]
    return out


def _telling_char(r: random.Random, m: Measure, before: list[str], after: list[str]) -> str | None:
    """A character for measurement `m` whose results differ with and without the first step
    (else that step would be vacuous)."""
    pool = sorted({ch for t in before + after for ch in t})
    fn = compiled_lambda(m.code.format(x="v", c="c"), "v, c")
    good = [c for c in pool if [fn(t, c) for t in before] != [fn(t, c) for t in after]]
    return r.choice(good) if good else None


def build_str1(r: random.Random, a: Op, b: Op | Measure) -> GenSpec | None:
    seen = [random_text(r, []) for _ in range(10)]
    ua = a.use(r, seen)
    fa = compiled_lambda(ua.code("v"))
    after = [fa(t) for t in seen]
    if after == seen:
        return None
    first = ua.clause("s")
    if isinstance(b, Measure):
        c = _telling_char(r, b, seen, after)
        if c is None:
            return None
        code = b.code.format(x=_paren(ua.code("s")), c=c)
        doc = f"takes a string s, {first}, and {b.text.format(x='the result', c=c)}"
        name = r.choice(("measure", "inspect_text", "scan"))
        extra = ua.interesting() + [c]
        consts = {"c": c}
        alone = [b.code.format(x="s", c=c)]
    else:
        ub = b.use(r, after)
        fb = compiled_lambda(ub.code("v"))
        if [fb(t) for t in after] == after:
            return None
        code = ub.code(_paren(ua.code("s")))
        doc = (
            f"takes a string s and returns the result of two steps: first {first}, then "
            f"{ub.clause('the result')}"
        )
        name = r.choice(("rewrite", "reformat", "convert_text", "restyle"))
        extra = ua.interesting() + ub.interesting()
        consts = ub.consts
        alone = [ua.code("s"), ub.code("s")]
    return GenSpec(
        f"gen:str1|{a.token}|{b.token}",
        name,
        "s",
        doc,
        f"def {name}(s):\n    return {code}\n",
        "Apply the string methods in order in one expression.",
        lambda rr: (random_text(rr, extra),),
        (("",), ("a",)),
        {"0": ua.consts, "1": consts},
        ablations=tuple(_fn(name, "s", x) for x in alone),
    )


# ---------------------------------------------------------------- piecewise rules


@dataclass(frozen=True)
class Cond:
    code: str
    sing: str  # with {x}
    first: bool  # True: the condition selects the key's first branch


def _below(r: random.Random) -> tuple[dict, list[Cond]]:
    c = r.randint(-5, 12)
    return {"c": c}, [
        Cond("{x} < {c}", "{x} is less than {c}", True),
        Cond("{x} <= {c1}", "{x} is at most {c1}", True),
        Cond("{x} > {c1}", "{x} is greater than {c1}", False),
        Cond("{x} >= {c}", "{x} is at least {c}", False),
    ]


def _parity(r: random.Random) -> tuple[dict, list[Cond]]:
    return {}, [
        Cond("{x} % 2 == 0", "{x} is even", True),
        Cond("{x} % 2 == 1", "{x} is odd", False),
        Cond("{x} % 2 != 0", "{x} is odd", False),
    ]


def _multiple(r: random.Random) -> tuple[dict, list[Cond]]:
    return {"m": r.randint(3, 6)}, [
        Cond("{x} % {m} == 0", "{x} is divisible by {m}", True),
        Cond("{x} % {m} != 0", "{x} is not divisible by {m}", False),
    ]


def _between(r: random.Random) -> tuple[dict, list[Cond]]:
    c = r.randint(-5, 8)
    return {"c": c, "d": c + r.randint(2, 8)}, [
        Cond("{c} <= {x} <= {d}", "{x} is between {c} and {d} (both included)", True),
        Cond("{x} < {c} or {x} > {d}", "{x} is less than {c} or greater than {d}", False),
    ]


# No `x == c` family: its branch is taken at one point only, so it is a constant and families
# that differ only in that branch's map would be the same functions.
FAMILIES: dict[str, Callable[[random.Random], tuple[dict, list[Cond]]]] = {
    "below": _below,
    "parity": _parity,
    "multiple": _multiple,
    "between": _between,
}


def _cond(r: random.Random, family: str, avoid_identity_first: bool | None = None) -> tuple:
    consts, conds = FAMILIES[family](r)
    if "c" in consts:
        consts["c1"] = consts["c"] - 1
    if avoid_identity_first is not None:
        conds = [c for c in conds if c.first != avoid_identity_first] or conds
    return consts, r.choice(conds)


def _fmt(text: str, consts: dict, x: str) -> str:
    return text.format(x=x, **consts)


def _piecewise_structures() -> list[tuple[str, Op, Op]]:
    return [(f, a, b) for f in FAMILIES for a in BRANCHES for b in BRANCHES if a is not b]


def build_piecewise(r: random.Random, family: str, a: Op, b: Op) -> GenSpec:
    consts, cond = _cond(r, family)
    ua, ub = _p(a, r), _p(b, r)
    yes, no = (ua, ub) if cond.first else (ub, ua)
    test = _fmt(cond.code, consts, "x")
    style = r.choice(("if", "else", "expr"))
    name = r.choice(("adjust", "respond", "piecewise", "route_value"))
    if style == "if":
        body = f"    if {test}:\n        return {yes.code('x')}\n    return {no.code('x')}\n"
    elif style == "else":
        body = (
            f"    if {test}:\n        return {yes.code('x')}\n    else:\n"
            f"        return {no.code('x')}\n"
        )
    else:
        body = f"    return {yes.code('x')} if {test} else {no.code('x')}\n"
    doc = (
        f"takes an integer x and returns {yes.noun('x')} if {_fmt(cond.sing, consts, 'x')}, "
        f"and {no.noun('x')} otherwise"
    )
    extra = [v for k, v in consts.items() if k in ("c", "d")]
    extra += [v + 1 for v in extra] + [v - 1 for v in extra] + ua.interesting() + ub.interesting()
    return GenSpec(
        f"gen:piecewise|{family}|{a.token}|{b.token}",
        name,
        "x",
        doc,
        f"def {name}(x):\n{body}",
        "Test the condition, then compute the matching branch.",
        lambda rr: (_x(rr, extra),),
        ((0,), (consts.get("c", 3),)),
        {"cond": consts, "a": ua.consts, "b": ub.consts, "style": style},
        ablations=(_fn(name, "x", ua.code("x")), _fn(name, "x", ub.code("x"))),
    )


def _bands_structures() -> list[tuple[Op, Op, Op]]:
    return [
        (a, b, c) for a in BRANCHES for b in BRANCHES for c in BRANCHES if a is not b and b is not c
    ]


def build_bands(r: random.Random, a: Op, b: Op, c: Op) -> GenSpec:
    lo = r.randint(-6, 6)
    hi = lo + r.randint(3, 9)
    ua, ub, uc = _p(a, r), _p(b, r), _p(c, r)
    name = r.choice(("band", "classify_value", "tiered", "bracket"))
    if r.random() < 0.5:
        body = (
            f"    if x < {lo}:\n        return {ua.code('x')}\n"
            f"    elif x < {hi}:\n        return {ub.code('x')}\n"
            f"    return {uc.code('x')}\n"
        )
        doc = (
            f"takes an integer x and returns {ua.noun('x')} if x is less than {lo}, "
            f"{ub.noun('x')} if x is at least {lo} but less than {hi}, and {uc.noun('x')} if x "
            f"is at least {hi}"
        )
    else:
        body = (
            f"    if x >= {hi}:\n        return {uc.code('x')}\n"
            f"    elif x >= {lo}:\n        return {ub.code('x')}\n"
            f"    return {ua.code('x')}\n"
        )
        doc = (
            f"takes an integer x and returns {uc.noun('x')} if x is at least {hi}, "
            f"{ub.noun('x')} if x is at least {lo} but less than {hi}, and {ua.noun('x')} if x "
            f"is less than {lo}"
        )
    extra = [lo - 1, lo, lo + 1, hi - 1, hi, hi + 1]
    return GenSpec(
        f"gen:bands|{a.token}|{b.token}|{c.token}",
        name,
        "x",
        doc,
        f"def {name}(x):\n{body}",
        f"Check the ranges in order: below {lo}, from {lo} up to {hi}, from {hi} on.",
        lambda rr: (_x(rr, extra),),
        ((lo,), (hi,)),
        {"lo": lo, "hi": hi, "a": ua.consts, "b": ub.consts, "c": uc.consts},
        ablations=tuple(_fn(name, "x", u.code("x")) for u in (ua, ub, uc)),
    )


ITERATE_RESULTS = {
    "final": ("returns the final value", "x"),
    "trace": ("returns the list of all values, starting with x (k + 1 values in all)", "values"),
    "peak": ("returns the largest value seen, x included", "best"),
}


def _iterate_structures() -> list[tuple[str, Op, Op, str]]:
    return [
        (f, a, b, res)
        for f in FAMILIES
        for a in ITERATE_BRANCHES
        for b in ITERATE_BRANCHES
        for res in ITERATE_RESULTS
        if a is not b
    ]


def build_iterate(r: random.Random, family: str, a: Op, b: Op, result: str) -> GenSpec:
    # With an identity branch, write only the other branch: the condition must select it.
    ident = a is IDENTITY or b is IDENTITY
    consts, cond = _cond(r, family, (a is IDENTITY) if ident else None)
    ua, ub = _p(a, r), _p(b, r)
    yes, no = (ua, ub) if cond.first else (ub, ua)
    test = _fmt(cond.code, consts, "x")
    what, ret = ITERATE_RESULTS[result]
    name = r.choice(("iterate", "evolve", "repeat_rule", "simulate"))

    def render(step: list[str]) -> str:
        init = {"final": [], "trace": ["values = [x]"], "peak": ["best = x"]}[result]
        after = {"final": [], "trace": ["values.append(x)"], "peak": ["best = max(best, x)"]}
        src = [f"def {name}(x, k):"] + ["    " + x for x in init] + ["    for _ in range(k):"]
        src += ["    " + x for x in step] + ["        " + x for x in after[result]]
        return "\n".join(src + [f"    return {ret}"]) + "\n"

    step = [f"    if {test}:", f"        x = {yes.code('x')}"]
    if no.op is not IDENTITY:
        step += ["    else:", f"        x = {no.code('x')}"]
    single = [[f"    x = {u.code('x')}"] for u in (ua, ub) if u.op is not IDENTITY]

    def becomes(u: OpUse) -> str:
        if u.op is IDENTITY:
            return "it stays the same"
        return f"it becomes {u.noun('the value')}"

    doc = (
        "takes integers x and k (k >= 0) and applies this step k times, starting from x: if "
        f"{_fmt(cond.sing, consts, 'the value')}, {becomes(yes)}; otherwise {becomes(no)}. It "
        + what
    )
    extra = [v for k, v in consts.items() if k in ("c", "d")]
    return GenSpec(
        f"gen:iterate|{family}|{a.token}|{b.token}|{result}",
        name,
        "x, k",
        doc,
        render(step),
        "Loop k times; each time test the current value and replace it by the matching branch.",
        lambda rr: (_x(rr, extra), rr.randint(0, 6)),
        ((0, 0), (3, 1)),
        {"cond": consts, "a": ua.consts, "b": ub.consts},
        ablations=tuple(render(x) for x in single),
    )


# ---------------------------------------------------------------- string piecewise rules

# condition family -> variants (code, text, True: the condition selects the key's first branch)
STR_CONDS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "longer": (
        ("len(s) > {c}", "s is longer than {c} characters", True),
        ("len(s) <= {c}", "s has at most {c} characters", False),
    ),
    "starts": (("s.startswith({d!r})", "s starts with {d!r}", True),),
    "ends": (("s.endswith({d!r})", "s ends with {d!r}", True),),
    "contains": (("{d!r} in s", "s contains {d!r}", True),),
    "palindrome": (("s == s[::-1]", "s reads the same backwards", True),),
    "capital": (("s[:1].isupper()", "s starts with an uppercase letter", True),),
}
IDENTITY_STR = Op("keep", "map", WORD, WORD, "id", (Variant("{v}", "keeps {it}", ""),))
STR_BRANCHES = (IDENTITY_STR,) + _STR_MAPS


def _strcase_structures() -> list[tuple[str, Op, Op]]:
    return [
        (cond, a, b)
        for cond in STR_CONDS
        for a in STR_BRANCHES
        for b in STR_BRANCHES
        if a is not b and not (cond == "palindrome" and a.token == "reverse")
    ]


def _str_input(extra: list) -> Callable[[random.Random], tuple]:
    def inputs(r: random.Random) -> tuple:
        t = random_text(r, extra, 7)
        if r.random() < 0.2:
            t = t + t[::-1][r.randint(0, 1) :]
        return (t,)

    return inputs


def build_strcase(r: random.Random, cond: str, a: Op, b: Op) -> GenSpec:
    seen = [random_text(r, []) for _ in range(8)]
    code0, text0, first = r.choice(STR_CONDS[cond])
    c = r.randint(2, 5)
    d = (
        r.choice([t[0] for t in seen if t] or ["a"])
        if cond != "ends"
        else r.choice([t[-1] for t in seen if t] or ["e"])
    )
    test = code0.format(c=c, d=d)
    ua, ub = a.use(r, seen), b.use(r, seen)
    yes, no = (ua, ub) if first else (ub, ua)
    name = r.choice(("restyle", "normalize_text", "route_text", "format_text"))

    def what(u: OpUse) -> str:
        if u.op is IDENTITY_STR:
            return "s unchanged"
        return "the result of the step that " + u.clause("s")

    body = f"    if {test}:\n        return {yes.code('s')}\n    return {no.code('s')}\n"
    doc = (
        f"takes a string s and returns {what(yes)} if {text0.format(c=c, d=d)}, and "
        f"{what(no)} otherwise"
    )
    extra = [d] + ua.interesting() + ub.interesting()
    return GenSpec(
        f"gen:strcase|{cond}|{a.token}|{b.token}",
        name,
        "s",
        doc,
        f"def {name}(s):\n{body}",
        "Test the condition on s, then apply the matching step.",
        _str_input(extra),
        (("",), ("a",)),
        {"c": c, "d": d, "a": ua.consts, "b": ub.consts},
        ablations=(_fn(name, "s", ua.code("s")), _fn(name, "s", ub.code("s"))),
    )


# ---------------------------------------------------------------- registry

Builder = Callable[..., GenSpec]


@dataclass(frozen=True)
class Form:
    name: str
    structures: Callable[[], list[tuple]]
    build: Builder


FORMS: dict[str, Form] = {
    f.name: f
    for f in (
        Form("expr", _expr_pairs, build_expr),
        Form("test", _test_structures, build_test),
        Form("expr2", _expr2_structures, build_expr2),
        Form("str1", _str1_structures, build_str1),
        Form("expr2m", _expr2m_structures, build_expr2m),
        Form("test2", _test2_structures, build_test2),
        Form("list1", _list1_structures, build_list1),
        Form("strn", _strn_structures, build_strn),
        Form("piecewise", _piecewise_structures, build_piecewise),
        Form("bands", _bands_structures, build_bands),
        Form("iterate", _iterate_structures, build_iterate),
        Form("strcase", _strcase_structures, build_strcase),
    )
}
