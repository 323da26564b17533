"""Family `code_bugfix`: a reference function with one programmatically injected bug; fix it.

Bugs are AST mutations of our reference implementations — generated programs (`codegen`) and
the hand-written catalogue alike — in four categories:
- `wrong_operator`: swap an arithmetic/augmented/comparison/boolean operator, or drop a unary minus;
- `off_by_one`: move a boundary (`<` ↔ `<=`, `>` ↔ `>=`) or shift an integer constant by ±1
  inside `range(...)`, a subscript/slice, or a `± constant` expression;
- `wrong_variable`: replace one variable read by another variable of the same function;
- `missing_case`: delete an `if` statement (a guard or an early return) from a block.

Why it is built this way:

- The function (and so the split key) comes from `codegen.draw`, shared with `code_function`:
  a held-out function is never seen in training, neither to write nor to fix.
- A mutant is kept only if it still compiles and fails at least one of the function's test
  cases (run in-process: these are our own mutations of our own code, never model output). To
  keep that safe, nothing inside a `while` loop and nothing that decides how long a `for` loop
  runs is mutated by variable swaps, no read becomes a container that is grown in place
  (`out.append(str(out))` doubles its data every iteration) or an augmented assignment's own
  target (`total += total`), and every run has a `sys.settrace` step budget, so every mutant
  terminates quickly. A mutant whose wrong result would not fit a prompt is dropped.
- Catalogue references have all their mutants enumerated once and cached; a generated reference
  is new almost every draw, so `draw_mutant` tries the candidate edits in a random order and
  keeps the first that fails a test (cheap, and still deterministic).

The prompt shows the buggy code and one failing assert with what the buggy code actually did;
the worked reasoning names the faulty line, the category and the corrected line. The tests go
beyond that assert (`codetasks.strengthen_cases`): the buggy code special-cased on the shown call
passed 2-7 of 40 items per tier when it was wrong on that call only, so hidden cases are added
until it fails two (if any input shows the bug twice), as must every constant answer.
"""

from __future__ import annotations

import ast
import copy
import difflib
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hillclimb.problems.base import Built, Draft, Phrasing
from hillclimb.problems.codegen import draw
from hillclimb.problems.codetasks import (
    CODE_NAMESPACE,
    Instance,
    assert_line,
    call_repr,
    compile_function,
    strengthen_cases,
)

KIND = "code"
TIER_SUMMARY = {
    1: "one-line functions: wrong operator, wrong variable, off-by-one constant",
    2: "conditions and two-stage pipelines: also missing cases and loop bounds",
    3: "three-stage pipelines, dicts, list/string algorithms",
    4: "four-stage pipelines, nested loops, classic algorithms (no bugs inside while loops)",
}

CATEGORY_TEXT = {
    "wrong_operator": "it uses the wrong operator",
    "off_by_one": "it is off by one",
    "wrong_variable": "it uses the wrong variable",
    "missing_case": "a case is missing",
}

TEMPLATES = (
    "The function `{sig}` should do this: it {doc}. This version has a bug:\n```python\n{code}```\n"
    "The test `{test}` fails ({got}). Fix the function.",
    "Fix the bug in this Python function. It is meant to work like this: it {doc}.\n"
    "```python\n{code}```\nFailing test: `{test}` ({got}).",
    "This implementation of `{sig}` is wrong: `{test}` fails ({got}). The function {doc}.\n"
    "```python\n{code}```\nWrite the corrected function.",
)

HELDOUT_TEMPLATES = (
    "```python\n{code}```\nThis `{sig}` is supposed to be a function that {doc}, but "
    "`{test}` does not hold ({got}). Please repair it.",
    "Debug the following code. Intended behaviour: {doc}.\n```python\n{code}```\n"
    "Observed: `{test}` fails ({got}). Give the fixed version.",
)

_OP_SWAP: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.Mod: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
}
_CMP_WRONG: dict[type, type] = {
    ast.Lt: ast.Gt,
    ast.Gt: ast.Lt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.LtE: ast.GtE,
    ast.GtE: ast.LtE,
}
_CMP_BOUNDARY: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
}


@dataclass(frozen=True)
class Mutant:
    category: str
    source: str
    bad_lines: tuple[str, ...]
    good_lines: tuple[str, ...]
    failures: tuple[tuple[int, str], ...]  # (index into the instance's cases, what it did)
    edit: str = ""  # the candidate edit (for debugging)


def _protected(nodes: list[ast.AST]) -> set[int]:
    """ids of nodes that must not be mutated: inside while loops."""
    out: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.While):
            out.update(id(n) for n in ast.walk(node))
    return out


def _loop_control(nodes: list[ast.AST]) -> set[int]:
    """ids of nodes that decide how long a for loop runs (no variable swaps there)."""
    out: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.For):
            out.update(id(n) for n in ast.walk(node.iter))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
        ):
            out.update(id(n) for n in ast.walk(node))
    return out


def _candidates(tree: ast.Module) -> list[tuple[int, str, Any]]:
    """(node index in ast.walk order, category, edit) for every possible mutation."""
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    nodes = list(ast.walk(tree))
    protected = _protected(nodes)
    loopctl = _loop_control(nodes)
    variables = [a.arg for a in fn.args.args]
    for node in nodes:
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Store)
            and node.id not in variables
        ):
            variables.append(node.id)
    iterated = {
        n.id
        for loop in nodes
        if isinstance(loop, ast.For)
        for n in ast.walk(loop.iter)
        if isinstance(n, ast.Name)
    }
    # Containers that are grown in place (`out.append(...)`): reading one of them where an
    # element was read (`out.append(str(out))`) can double the data every iteration.
    grown = {
        n.func.value.id
        for n in nodes
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
        and n.func.attr in _GROWING
    }
    parents: dict[int, ast.AST] = {}
    for node in nodes:
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    # `total += x` must not become `total += total` (repeated doubling or squaring)
    aug_target = {
        id(n): a.target.id
        for a in nodes
        if isinstance(a, ast.AugAssign) and isinstance(a.target, ast.Name)
        for n in ast.walk(a.value)
    }
    out: list[tuple[int, str, Any]] = []
    for idx, node in enumerate(nodes):
        if id(node) in protected:
            continue
        parent = parents.get(id(node))
        if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _OP_SWAP:
            out.append((idx, "wrong_operator", ("op", _OP_SWAP[type(node.op)])))
        elif isinstance(node, ast.BoolOp):
            out.append(
                (
                    idx,
                    "wrong_operator",
                    ("boolop", ast.Or if isinstance(node.op, ast.And) else ast.And),
                )
            )
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            out.append((idx, "wrong_operator", ("unwrap", None)))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1:
            t = type(node.ops[0])
            if t in _CMP_WRONG:
                out.append((idx, "wrong_operator", ("cmp", _CMP_WRONG[t])))
            if t in _CMP_BOUNDARY:
                out.append((idx, "off_by_one", ("cmp", _CMP_BOUNDARY[t])))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            in_range = (
                isinstance(parent, ast.Call)
                and isinstance(parent.func, ast.Name)
                and parent.func.id == "range"
            )
            in_index = isinstance(parent, ast.Slice | ast.Subscript)
            in_shift = (
                isinstance(parent, ast.BinOp)
                and isinstance(parent.op, ast.Add | ast.Sub)
                and node is parent.right
            )
            if in_range or in_index or in_shift:
                for delta in (1, -1):
                    if node.value + delta >= 0 or node.value < 0:
                        out.append((idx, "off_by_one", ("const", node.value + delta)))
        elif (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and node.id in variables
            and id(node) not in loopctl
            and not isinstance(parent, ast.Attribute)  # no `out.append` -> `xs.append`
        ):
            for other in variables:
                if (
                    other != node.id
                    and other not in iterated
                    and other not in grown
                    and aug_target.get(id(node)) != other
                ):
                    out.append((idx, "wrong_variable", ("name", other)))
        elif (
            isinstance(node, ast.If)
            and not node.orelse
            and isinstance(parent, ast.FunctionDef | ast.For)
        ):
            body = parent.body
            if len(body) > 1 and node in body:
                out.append((idx, "missing_case", ("drop", None)))
    return out


def _apply(source: str, idx: int, edit: tuple[str, Any]) -> ast.Module:
    new = ast.parse(source)  # a fresh tree (several times faster than deepcopy)
    nodes = list(ast.walk(new))
    node = nodes[idx]
    kind, arg = edit
    if kind == "op" or kind == "boolop":
        node.op = arg()
    elif kind == "cmp":
        node.ops = [arg()]
    elif kind == "const":
        node.value = arg
    elif kind == "name":
        node.id = arg
    elif kind == "unwrap":
        for parent in nodes:
            for field, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, field, node.operand)
                elif isinstance(value, list) and any(v is node for v in value):
                    setattr(parent, field, [node.operand if v is node else v for v in value])
    elif kind == "drop":
        for parent in nodes:
            body = getattr(parent, "body", None)
            if isinstance(body, list) and any(v is node for v in body):
                parent.body = [v for v in body if v is not node]
    return new


def _failures(inst: Instance, source: str) -> tuple[tuple[int, str], ...]:
    """Every failing case of a mutant; empty if it passes all (or runs away)."""
    try:
        fn = compile_function(source, inst.name)
    except Exception:  # noqa: BLE001 - a mutant that does not even define the function
        return ()
    out: list[tuple[int, str]] = []
    for i, (args, expected) in enumerate(inst.cases):
        try:
            got = _run_limited(fn, copy.deepcopy(args))
        except _StepBudget:
            return ()  # too slow or looping: not a bug we want to show
        except Exception as exc:  # noqa: BLE001 - our own mutant raising is the bug showing
            out.append((i, f"it raises {type(exc).__name__}"))
            continue
        try:
            same = got == expected and type(got) is type(expected)
            shown = "" if same else repr(got)
        except Exception:  # noqa: BLE001 - e.g. a list that contains itself
            return ()
        if len(shown) > MAX_SHOWN:
            return ()  # a runaway result; it would not fit a prompt anyway
        if not same:
            out.append((i, f"it returns {shown}"))
    return tuple(out)


_GROWING = frozenset({"append", "add", "extend", "insert", "setdefault", "update"})


class _StepBudget(BaseException):
    """Raised by the tracer when a mutant runs too many steps (a second line of defence), or
    runs for seconds (a last resort: the candidate rules keep data from growing exponentially,
    so a correct mutant takes milliseconds and this never decides what is generated)."""


MAX_SHOWN = 200
STEP_BUDGET = 100_000
TIME_BUDGET_S = 2.0


def _run_limited(fn: Callable, args: tuple, budget: int = STEP_BUDGET) -> Any:
    count = 0
    deadline = time.perf_counter() + TIME_BUDGET_S

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        if count > budget or time.perf_counter() > deadline:
            raise _StepBudget
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        return fn(*args)
    finally:
        sys.settrace(old)


def _limited(fn: Callable) -> Callable:
    """`fn` under the step budget, a runaway turned into an ordinary error (a wrong answer)."""

    def run(*args: Any) -> Any:
        try:
            return _run_limited(fn, args)
        except _StepBudget:
            raise RuntimeError("runs away") from None

    return run


def _mutant(inst: Instance, tree: ast.Module, cand: tuple[int, str, Any]) -> Mutant | None:
    idx, category, edit = cand
    try:
        src = ast.unparse(_apply(inst.source, idx, edit)) + "\n"
    except Exception:  # noqa: BLE001 - an edit that yields an invalid tree is skipped
        return None
    if src == inst.source:
        return None
    fails = _failures(inst, src)
    if not fails:
        return None
    bad_lines, good_lines = _diff(inst.source.splitlines(), src.splitlines())
    return Mutant(category, src, bad_lines, good_lines, fails, f"{edit[0]}@{idx}")


@lru_cache(maxsize=2048)
def _candidates_of(source: str) -> tuple[ast.Module, tuple[tuple[int, str, Any], ...]]:
    tree = ast.parse(source)
    return tree, tuple(_candidates(tree))


_MUTANTS: dict[tuple[str, str, str], tuple[Mutant, ...]] = {}


def mutants(inst: Instance) -> tuple[Mutant, ...]:
    """Every distinct mutant of `inst` that fails one of its cases (cached per reference)."""
    cache_key = (inst.name, inst.source, repr(inst.cases))
    hit = _MUTANTS.get(cache_key)
    if hit is not None:
        return hit
    tree, cands = _candidates_of(inst.source)
    out: list[Mutant] = []
    seen: set[str] = set()
    for cand in cands:
        m = _mutant(inst, tree, cand)
        if m is not None and m.source not in seen:
            seen.add(m.source)
            out.append(m)
    if len(_MUTANTS) > 4096:
        _MUTANTS.clear()
    _MUTANTS[cache_key] = result = tuple(out)
    return result


def draw_mutant(inst: Instance, rng: random.Random) -> Mutant | None:
    """A random failing mutant: candidate edits in random order, the first that fails a test."""
    tree, cands = _candidates_of(inst.source)
    order = list(range(len(cands)))
    rng.shuffle(order)
    for i in order:
        m = _mutant(inst, tree, cands[i])
        if m is not None:
            return m
    return None


def _diff(ref: list[str], bug: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    bad: list[str] = []
    good: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ref, b=bug, autojunk=False).get_opcodes():
        if tag != "equal":
            good.extend(ref[i1:i2])
            bad.extend(bug[j1:j2])
    return tuple(x.strip() for x in bad), tuple(x.strip() for x in good)


def _reasoning(m: Mutant, inst: Instance, fail_index: int) -> str:
    args, expected = inst.cases[fail_index]
    call = call_repr(inst.name, args)
    if m.category == "missing_case":
        missing = "; ".join(m.good_lines)
        first = f"A case is missing: the function needs `{missing}`."
        second = "Add it back in its place."
    else:
        first = f"The bug is in `{'; '.join(m.bad_lines)}`: {CATEGORY_TEXT[m.category]}."
        second = f"It should be `{'; '.join(m.good_lines)}`."
    return f"{first}\n{second}\nWith the fix, {call} returns {expected!r}."


def _unbuilt() -> Built:
    raise AssertionError("a draft refused by the split is never built")


def sample(rng: random.Random, tier: int, phr: Phrasing) -> Draft:
    while True:
        inst = draw(rng, tier, lambda key: phr.wants(CODE_NAMESPACE, key))
        if isinstance(inst, str):  # refused by the split: no mutant searched
            return Draft("", inst, _unbuilt, namespace=CODE_NAMESPACE)
        if inst.meta.get("origin") == "catalogue":
            ms = mutants(inst)
            m = ms[rng.randrange(len(ms))] if ms else None
        else:
            m = draw_mutant(inst, rng)
        if m is not None:
            break
    fail_index, got = phr.rng.choice(m.failures)
    args, expected = inst.cases[fail_index]
    test = assert_line(inst.name, args, expected)
    prompt = phr.pick(TEMPLATES, HELDOUT_TEMPLATES).format(
        sig=inst.sig, doc=inst.doc, code=m.source, test=test, got=got
    )

    def build() -> Built:
        cases = strengthen_cases(inst, (_limited(compile_function(m.source, inst.name)),), m.source)
        tests = "\n".join(assert_line(inst.name, a, e) for a, e in cases) + "\n"
        return {
            "reasoning": _reasoning(m, inst, fail_index),
            "answer": inst.source,
            "tests": tests,
            "entry_point": inst.name,
            "meta": dict(inst.meta) | {"bug": m.category, "buggy": m.source},
        }

    return Draft(prompt, inst.key, build, namespace=CODE_NAMESPACE)
