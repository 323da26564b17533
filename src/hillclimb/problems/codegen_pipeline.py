"""Generated pipeline functions: a source, a few filter/map stages, an aggregate.

Why it is built this way:

- **One small grammar, many programs.** A structure is (source, stages, aggregate); its key is
  `gen:<source>|filter_<t>|map_<t>|...|<aggregate>` — the tokens only, never the constants, the
  names or the code style — so the split holds out whole compositions. The grammar's legal moves
  come from the composition rules in `codegen_ops` and the aggregate constraints here (a count
  needs a filter as its last stage, a distinct-count ignores injective maps, ...), which keep
  reparametrisations of one family from appearing under two keys.
- **Cost = tier - 1**: a stage costs 1, sources and aggregates that compute something cost 1-2.
- **Drawing is a random walk with a memoised feasibility check** (cheap, deterministic), not
  uniform over structures; `count` enumerates the space for the docs and tests.
- **Two code styles per structure** (content, drawn per function): one list comprehension per
  stage group and a final expression, or one loop with nested ifs and an accumulator. The spec
  is generated from the same parts, clause by clause, so code and spec cannot drift apart.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hillclimb.problems.codegen_ends import AGGS, SOURCES, Agg, AggUse, Source, use_agg
from hillclimb.problems.codegen_ops import (
    ARITH,
    BY_TYPE,
    CHAR,
    INT,
    NOUNS,
    OPS,
    WORD,
    Op,
    OpUse,
    filter_allowed,
    map_allowed,
)
from hillclimb.problems.codegen_spec import GenSpec, canonical_key, compiled_lambda, imperative

SINGULAR = {INT: "value", CHAR: "character", WORD: "word"}
VAR_POOL = {
    INT: ("x", "y", "z", "u", "t"),
    CHAR: ("ch", "c", "letter"),
    WORD: ("w", "word", "part"),
}
# How often each source starts a pipeline (relative weights).
SOURCE_WEIGHT = {"list": 4.0, "range": 1.5, "digits": 1.5, "chars": 2.5, "words": 3.0}
OTHER_WEIGHT = {"zip": 0.5, "common": 0.7, "missing": 0.7, "concat": 0.5, "pairs": 0.5}
OTHER_WEIGHT |= {"windows": 0.5, "rows": 0.4}
_RANGE_ORDERED = frozenset({"max", "min", "sorted", "rsorted"})
_RANGE_DISTINCT = frozenset({"distinct", "tally", "longest_equal", "runs_count"})
_RANGE_NON_INJECTIVE = frozenset({"modulo", "floordiv", "atleast", "atmost"})
_ORDER_ONLY = frozenset({"longest_equal", "runs_count"})  # need a meaningful element order
# sources whose values are never negative (|x| of them would do nothing)
_NONNEG = frozenset({"range", "digits", "rows_len", "windows_distinct", "zip_absdiff"})
_NONNEG |= {"pairs_absdiff", "common", "missing"}
_SIGNED_MAPS = frozenset({"shift", "negate", "reflect", "affine"})
_SINGLETON_FILTERS = frozenset({"equal", "same"})  # every kept element is the same value
# character steps that are one string method on the whole string (`s.upper()`,
# `s.replace('a', 'b')`, `s.replace('x', '')` for a filter `!= 'x'`)
_STR_METHOD = frozenset({"upcase", "downcase", "swapcase", "replace", "other"})
_LOOSE = frozenset({"unequal", "other", "lacks", "nonmultiple"})  # keep almost everything
# character maps that do nothing (or one thing) to the characters a class filter keeps
_CHAR_VACUOUS = {
    "digit": frozenset({"upcase", "downcase", "swapcase", "replace", "mask_vowel", "mask_digit"}),
    "vowel": frozenset({"downcase", "mask_vowel", "mask_digit"}),
    "upper": frozenset({"upcase", "mask_digit", "mask_vowel"}),
    "lower": frozenset({"downcase", "mask_digit"}),
    "letter": frozenset({"mask_digit"}),
    "same": frozenset({"upcase", "downcase", "swapcase", "replace", "mask_vowel", "mask_digit"}),
}
_WORD_VACUOUS = {
    "allcaps": frozenset({"upcase"}),
    "palindrome": frozenset({"reverse"}),
    "length": frozenset({"wlen"}),
}

StageKey = tuple[str, str]  # (element type in, token)
Structure = tuple[Source, tuple[Op, ...], Agg]


def _weight(src: Source) -> float:
    if src.token in SOURCE_WEIGHT:
        return SOURCE_WEIGHT[src.token]
    w = OTHER_WEIGHT[src.token.split("_")[0]]
    return w / 4 if src.cost == 2 and src.token.startswith("rows") else w


@dataclass(frozen=True)
class State:
    source: Source
    stages: tuple[Op, ...]

    @property
    def typ(self) -> str:
        return self.stages[-1].dst if self.stages else self.source.typ

    @property
    def maps(self) -> tuple[Op, ...]:
        return tuple(o for o in self.stages if o.kind == "map")

    def ops(self) -> list[Op]:
        maps = self.maps
        last_map = maps[-1] if maps else None
        prev = self.stages[-1] if self.stages and self.stages[-1].kind == "filter" else None
        vacuous: set[str] = set()
        table = {CHAR: _CHAR_VACUOUS, WORD: _WORD_VACUOUS}.get(self.typ, {})
        for o in self.stages:
            if o.kind == "filter" and o.src == self.typ:
                vacuous |= table.get(o.token, frozenset())
        if self.source.token == "zip_absdiff" and not maps:
            vacuous |= {"multiple", "nonmultiple"}  # divisibility ignores the sign of a - b
        if self.source.token == "zip_sub" and not self.stages:
            vacuous.add("absval")  # |a - b| is the source zip_absdiff
        if self.typ == INT and not self._maybe_negative():
            vacuous.add("absval")
        if self.source.token == "range" and not maps:
            # 1..n cut by a threshold is an interval: counts and sums of it are one-liners of n
            vacuous |= {"above", "below", "between", "outside", "equal", "unequal"}
            vacuous |= {"atleast", "atmost"}
        if any(o.token in _SINGLETON_FILTERS for o in self.stages):
            return []  # every kept element is the same value: nothing left to transform
        out = []
        for op in BY_TYPE[self.typ]:
            if op.kind == "filter":
                if filter_allowed(last_map, prev, op) and op.token not in vacuous:
                    out.append(op)
            elif map_allowed(maps, op) and op.token not in vacuous:
                out.append(op)
        return out

    def _maybe_negative(self) -> bool:
        neg = self.source.token not in _NONNEG
        for o in self.stages:
            if o.kind != "map":
                continue
            if o.src != INT:
                neg = False  # a length or a count
            elif o.token in _SIGNED_MAPS:
                neg = True
            elif o.token in ("square", "absval", "modulo"):
                neg = False
        return neg

    def aggs(self, cost: int) -> list[Agg]:
        maps = self.maps
        tokens = {o.token for o in maps}
        last_map = maps[-1] if maps else None
        last_is_filter = (
            self.stages[-1].kind == "filter" if self.stages else self.source.guard is not None
        )
        singleton = any(o.token in _SINGLETON_FILTERS for o in self.stages)
        word_contains = any(o.src == WORD and o.token == "contains" for o in self.stages)
        filters = {o.token for o in self.stages if o.kind == "filter"}
        out = []
        for agg in AGGS:
            if agg.cost != cost or self.typ not in agg.types:
                continue
            if agg.needs_filter and not last_is_filter:
                continue
            if singleton and not agg.needs_filter:
                continue  # all kept elements are equal: only counting them says anything
            if tokens & agg.no_maps:
                continue
            if agg.pred is not None and (
                any(o.kind == "filter" for o in self.stages)
                or self.source.guard
                or not filter_allowed(last_map, None, agg.pred)
            ):
                continue  # a stretch among filtered values would be another count
            if self.source.token == "range" and not self._range_ok(agg, tokens, filters):
                continue
            if agg.token in ("has", "empty") and (
                (self.typ == WORD and word_contains)
                or (self.stages and self.stages[-1].token in _LOOSE)
            ):
                continue  # `c in s` in disguise, or almost always True: weak tests
            if self.source.token.startswith("pairs") and (
                agg.pred is not None or agg.token in _ORDER_ONLY
            ):
                continue  # stretches of adjacent pairs mean little
            if (
                self.source.token.startswith(("pairs", "windows"))
                and agg.token in ("first", "last")
                and not filters
            ):
                continue  # one slice (the first/last pair i < j is the first/last window of 2)
            if (
                self.source.token == "chars"
                and agg.token in ("concat", "rconcat")
                and all(o.token in _STR_METHOD for o in self.stages)
            ):
                continue  # a chain of string methods (`s[::-1].upper()`): tier-1 `str1`
            out.append(agg)
        return out

    @staticmethod
    def _range_ok(agg: Agg, tokens: set[str], filters: set[str]) -> bool:
        """1..n is increasing and distinct: most order/duplicate aggregates are another one."""
        if agg.token in ("has", "empty"):
            return False  # whether some i <= n qualifies is a threshold on n: `test|below`
        if agg.token in _RANGE_ORDERED:
            return "modulo" in tokens
        if agg.token in _RANGE_DISTINCT:
            return bool(tokens & _RANGE_NON_INJECTIVE)
        if agg.token in ("last", "spread") and "modulo" not in tokens:
            return bool(filters & ARITH)  # else a one-liner of n
        return not agg.token.startswith("run_") and agg.token != "first"


def _state(source: str, stages: tuple[StageKey, ...]) -> State:
    return State(SOURCES[source], tuple(OPS[k] for k in stages))


def _key(o: Op) -> StageKey:
    return (o.src, o.token)


@lru_cache(maxsize=200_000)
def _feasible(source: str, stages: tuple[StageKey, ...], r: int) -> bool:
    st = _state(source, stages)
    if r <= 1 and st.aggs(r):
        return True
    if r == 0:
        return False
    return any(_feasible(source, stages + (_key(o),), r - 1) for o in st.ops())


@lru_cache(maxsize=200_000)
def _count(source: str, stages: tuple[StageKey, ...], r: int) -> int:
    st = _state(source, stages)
    n = len(st.aggs(r)) if r <= 1 else 0
    if r > 0:
        n += sum(_count(source, stages + (_key(o),), r - 1) for o in st.ops())
    return n


def count(budget: int) -> int:
    """How many pipeline structures have this cost (tier - 1)."""
    return sum(_count(s.token, (), budget - s.cost) for s in SOURCES.values() if s.cost <= budget)


def keys(budget: int) -> list[str]:
    """Every pipeline key of this cost (slow for budget 3: hundreds of thousands)."""
    out: list[str] = []

    def walk(src: Source, stages: tuple[StageKey, ...], r: int) -> None:
        st = _state(src.token, stages)
        if r <= 1:
            out.extend(key_of(src, st.stages, a) for a in st.aggs(r))
        if r > 0:
            for o in st.ops():
                walk(src, stages + (_key(o),), r - 1)

    for s in SOURCES.values():
        if s.cost <= budget:
            walk(s, (), budget - s.cost)
    return out


def key_of(source: Source, stages: tuple[Op, ...], agg: Agg) -> str:
    """The split key: the tokens in order, a string pipeline that is a list pipeline with its
    elements renamed keyed as that list pipeline (`canonical_key`)."""
    parts = [source.token] + [f"{o.kind}_{o.token}" for o in stages] + [agg.token]
    return canonical_key("gen:" + "|".join(parts))


def draw_structure(rng: random.Random, budget: int) -> tuple[Source, tuple[Op, ...], Agg]:
    """A random structure of this cost (a random walk over the legal moves)."""
    sources = [s for s in SOURCES.values() if s.cost <= budget]
    weights = [_weight(s) for s in sources]
    while True:
        src = rng.choices(sources, weights)[0]
        stages: tuple[StageKey, ...] = ()
        r = budget - src.cost
        if not _feasible(src.token, stages, r):
            continue
        while True:
            st = _state(src.token, stages)
            moves: list[Any] = list(st.aggs(r)) if r <= 1 else []
            if r > 0:
                moves += [o for o in st.ops() if _feasible(src.token, stages + (_key(o),), r - 1)]
            move = moves[rng.randrange(len(moves))]
            if isinstance(move, Agg):
                return src, st.stages, move
            stages += (_key(move),)
            r -= 1


# ---------------------------------------------------------------- instantiation


@dataclass(frozen=True)
class PipeUse:
    source: Source
    sconsts: dict[str, Any]
    stages: tuple[OpUse, ...]
    agg: AggUse

    def fmt(self, text: str) -> str:
        return text.format(**self.sconsts) if self.sconsts else text

    @property
    def typ(self) -> str:
        return self.stages[-1].op.dst if self.stages else self.source.typ


def _apply(use: OpUse, seen: list) -> list:
    fn = compiled_lambda(use.code("v"))
    out = []
    for v in seen:
        try:
            r = fn(v)
        except Exception:  # noqa: BLE001 - a value the operation cannot take is just dropped
            continue
        if use.op.kind == "filter":
            if r:
                out.append(v)
        else:
            out.append(r)
    return out


def _source_elements(src: Source, sconsts: dict, rng: random.Random) -> list:
    headers = " ".join(f"for {t} in {src_fmt(it, sconsts)}" for t, it in src.headers)
    elem = src_fmt(src.conv, sconsts) if src.conv else src.headers[0][0]
    cond = f" if {src.guard}" if src.guard else ""
    fn = compiled_lambda(f"[{elem} {headers}{cond}]", src.args)
    seen: list = []
    for _ in range(8):
        try:
            seen += fn(*src.inputs(rng, []))
        except Exception:  # noqa: BLE001 - our own sampler and source; skip odd draws
            continue
    return seen


def src_fmt(text: str, consts: dict) -> str:
    return text.format(**{k: v for k, v in consts.items() if not k.startswith("_")})


def _vacuous(use: OpUse, before: list, after: list) -> bool:
    """A stage that changes nothing on the sampled values: a filter that keeps all or none of
    them, a map that is the identity or a constant on them."""
    if len({repr(v) for v in before}) < 2:
        return False
    if use.op.kind == "filter":
        return len(after) in (0, len(before))
    return after == before or len({repr(v) for v in after}) < 2


def instantiate(
    src: Source, ops: tuple[Op, ...], agg: Agg, rng: random.Random
) -> tuple[PipeUse, bool]:
    """Constants for every part, drawn from the values that reach it; also whether some stage
    is vacuous on those values (the caller then draws again)."""
    sconsts = src.pick(rng, [])
    seen = _source_elements(src, sconsts, rng)
    uses: list[OpUse] = []
    vacuous = False
    for op in ops:
        use = op.use(rng, sorted(set(seen), key=repr))
        uses.append(use)
        after = _apply(use, seen)
        vacuous = vacuous or _vacuous(use, seen, after)
        seen = after
    agg_use = use_agg(agg, rng, sorted(set(seen), key=repr))
    return PipeUse(src, sconsts, tuple(uses), agg_use), vacuous


def _and(conds: list[str]) -> str:
    return " and ".join(f"({c})" for c in conds) if len(conds) > 1 else conds[0]


def code_steps(p: PipeUse, name: str) -> str:
    src = p.source
    headers = [(t, p.fmt(it)) for t, it in src.headers]
    lines = [f"def {name}({src.args}):"]
    chunk_headers = headers
    var = src.headers[0][0]
    conds: list[str] = [src.guard] if src.guard else []
    elem: str | None = p.fmt(src.conv) if src.conv else None
    typ = src.typ
    emitted = False

    def close() -> None:
        nonlocal chunk_headers, var, conds, elem, emitted
        fors = " ".join(f"for {t} in {it}" for t, it in chunk_headers)
        cond = f" if {_and(conds)}" if conds else ""
        lines.append(f"    values = [{elem or var} {fors}{cond}]")
        chunk_headers, conds, elem, emitted = [(VAR_POOL[typ][0], "values")], [], None, True
        var = VAR_POOL[typ][0]

    if elem is not None:
        close()
    for use in p.stages:
        if elem is not None:
            close()
        if use.op.kind == "filter":
            conds.append(use.code(var))
        else:
            elem = use.code(var)
            typ = use.op.dst
    if elem is not None or conds:
        close()
    if emitted:
        values = "values"
    else:
        values = headers[0][1]
        if not values.isidentifier():
            lines.append(f"    values = {values}")
            values = "values"
    lines += ["    " + line for line in p.agg.steps(values)]
    return "\n".join(lines) + "\n"


def code_loop(p: PipeUse, name: str) -> str:
    src = p.source
    used = {a.strip() for a in src.args.split(",")} | {"values", "item", "key", "best"}
    for t, _ in src.headers:
        used |= {x.strip() for x in t.split(",")}
    var = src.var if src.conv else src.headers[0][0]
    used.add(var)
    body: list[str] = []
    depth = 0
    for t, it in src.headers:
        body.append("    " * depth + f"for {t} in {p.fmt(it)}:")
        depth += 1
    pending: list[str] = [src.guard] if src.guard else []
    if src.conv:
        body.append("    " * depth + f"{var} = {p.fmt(src.conv)}")
    for use in p.stages:
        if use.op.kind == "filter":
            pending.append(use.code(var))
            continue
        if pending:
            body.append("    " * depth + f"if {_and(pending)}:")
            depth += 1
            pending = []
        new = next(n for n in VAR_POOL[use.op.dst] if n not in used)
        used.add(new)
        body.append("    " * depth + f"{new} = {use.code(var)}")
        var = new
    if pending:
        body.append("    " * depth + f"if {_and(pending)}:")
        depth += 1
    init, inner, final = p.agg.loop(var)
    lines = [f"def {name}({src.args}):"]
    lines += ["    " + x for x in init]
    lines += ["    " + x for x in body]
    lines += ["    " * (depth + 1) + x for x in inner]
    lines += ["    " + x for x in final]
    return "\n".join(lines) + "\n"


def spec(p: PipeUse) -> tuple[str, str]:
    """(doc, plan)."""
    typ = p.source.typ
    clauses: list[str] = []
    plans: list[str] = [p.fmt(p.source.plan)]
    for use in p.stages:
        if use.op.kind == "filter":
            clause = f"keeps only the {NOUNS[typ]} that {use.plural()}"
        else:
            clause = use.clause(f"each {SINGULAR[typ]}")
            typ = use.op.dst
        clauses.append(clause)
        plans.append(imperative(clause) + ".")
    changed = bool(clauses or p.source.conv or p.source.guard)
    items = f"the resulting {NOUNS[typ]}" if changed else f"the {NOUNS[typ]}"
    agg = p.agg.text(NOUNS[typ], items)
    opening = p.fmt(p.source.text)
    if clauses:
        doc = f"{opening}, {', '.join(clauses)}, and {agg}"
    else:
        doc = f"{opening}{',' if ',' in opening else ''} and {agg}"
    plans.append(p.agg.plan(NOUNS[typ]))
    return doc, " ".join(plans)


def ablations(p: PipeUse) -> list[PipeUse]:
    """The pipeline without some of its stages (any non-empty subset), where the types still
    fit: a pair of stages can cancel out (`x * 3` then `x // 3`) where neither alone does."""
    out = []
    n = len(p.stages)
    for drop in range(1, n + 1):
        for gone in itertools.combinations(range(n), drop):
            stages = tuple(u for i, u in enumerate(p.stages) if i not in gone)
            typ = p.source.typ
            ok = True
            for u in stages:
                ok = ok and u.op.src == typ
                typ = u.op.dst
            if ok and typ in p.agg.agg.types:
                out.append(PipeUse(p.source, p.sconsts, stages, p.agg))
    return out


def legal(structure: Structure) -> bool:
    """Whether the grammar can produce this structure (every stage and the aggregate allowed)."""
    src, ops, agg = structure
    stages: tuple[StageKey, ...] = ()
    for o in ops:
        if not any(x is o for x in _state(src.token, stages).ops()):
            return False
        stages += (_key(o),)
    return any(a is agg for a in _state(src.token, stages).aggs(agg.cost))


def siblings(structure: Structure) -> list[Structure]:
    """(See `_siblings`; cached per structure.)"""
    src, ops, agg = structure
    return list(_siblings_of(src.token, tuple(_key(o) for o in ops), AGGS.index(agg)))


@lru_cache(maxsize=65_536)
def _siblings_of(source: str, stages: tuple[StageKey, ...], agg: int) -> tuple[Structure, ...]:
    return tuple(_siblings((SOURCES[source], tuple(OPS[k] for k in stages), AGGS[agg])))


def _siblings(structure: Structure) -> list[Structure]:
    """The legal structures one part away: another source (same arguments, type and cost),
    another operation at one stage (same kind and types) or another aggregate (same cost).
    A function's tests must tell it apart from these, its nearest other keys."""
    src, ops, agg = structure
    out: list[Structure] = []
    for s2 in SOURCES.values():
        same = (s2.args, s2.typ, s2.cost) == (src.args, src.typ, src.cost)
        # not between 1..n and the digits of n: other domains (n = 10**5 ...)
        if s2 is not src and same and src.args != "n":
            out.append((s2, ops, agg))
    for i, op in enumerate(ops):
        for o2 in BY_TYPE[op.src]:
            if o2 is not op and o2.kind == op.kind and o2.dst == op.dst:
                out.append((src, ops[:i] + (o2,) + ops[i + 1 :], agg))
    for a2 in AGGS:
        if a2.token != agg.token and a2.cost == agg.cost:
            out.append((src, ops, a2))
    return [x for x in out if legal(x)]


def interesting(p: PipeUse) -> list:
    out: list = []
    for use in p.sconsts.get("_uses", ()):
        out += use.interesting()
    for use in p.stages:
        out += use.interesting()
    return out


def build(rng: random.Random, structure: Structure) -> GenSpec | None:
    """A function of this structure, or None when its constants made a stage vacuous."""
    src, ops, agg = structure
    p, vacuous = instantiate(src, ops, agg, rng)
    if vacuous:
        return None
    style = rng.choice(("steps", "loop"))
    name = f"{rng.choice(agg.verbs)}_{rng.choice(src.nouns)}"
    code = code_steps(p, name) if style == "steps" else code_loop(p, name)
    doc, plan = spec(p)
    extra = interesting(p)
    params: dict[str, Any] = {k: v for k, v in p.sconsts.items() if not k.startswith("_")}
    for i, use in enumerate(p.stages):
        params.update({f"{i}.{k}": v for k, v in use.consts.items()})
    params.update({f"agg.{k}": v for k, v in p.agg.consts.items()})
    if p.agg.pred is not None:
        params.update({f"agg.pred.{k}": v for k, v in p.agg.pred.consts.items()})
    return GenSpec(
        ablations=tuple(code_steps(q, name) for q in ablations(p)),
        key=key_of(src, ops, agg),
        name=name,
        args=src.args,
        doc=doc,
        code=code,
        plan=plan,
        inputs=lambda r: src.inputs(r, extra),
        edges=src.edges,
        params=params | {"style": style},
    )
