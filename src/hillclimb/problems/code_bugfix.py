"""Family `code_bugfix`: a reference function with one programmatically injected bug; fix it.

Bugs are AST mutations of our reference implementations, in four categories:
- `wrong_operator`: swap an arithmetic/augmented/comparison/boolean operator, or drop a unary minus;
- `off_by_one`: move a boundary (`<` ↔ `<=`, `>` ↔ `>=`) or shift an integer constant by ±1
  inside `range(...)`, a subscript/slice, or a `± constant` expression;
- `wrong_variable`: replace one variable read by another variable of the same function;
- `missing_case`: delete an `if` statement (a guard or an early return) from a block.

A mutant is kept only if it still compiles and fails at least one of the task's test cases (run
in-process: these are our own mutations of our own code, never model output). To keep that safe,
nothing inside a `while` loop and nothing that decides how long a `for` loop runs is mutated by
variable swaps, so every mutant terminates. Mutants are enumerated deterministically and cached
per reference source, so drawing a problem is cheap.

The prompt shows the buggy code and one failing assert with what the buggy code actually did;
the worked reasoning names the faulty line, the category and the corrected line.
"""

from __future__ import annotations

import ast
import copy
import difflib
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hillclimb.problems.base import Built
from hillclimb.problems.codetasks import (
    BY_TIER,
    Instance,
    assert_line,
    call_repr,
    compile_function,
    instance,
    task_index,
)

KIND = "code"
TIER_SUMMARY = {
    1: "one-line functions: wrong operator, wrong variable, off-by-one constant",
    2: "conditionals and simple loops: also missing cases and loop bounds",
    3: "list/string algorithms",
    4: "classic algorithms (bugs only outside while loops)",
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


def _protected(tree: ast.AST) -> set[int]:
    """ids of nodes that must not be mutated: inside while loops, loop iterables/range args."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.While):
            out.update(id(n) for n in ast.walk(node))
    return out


def _loop_control(tree: ast.AST) -> set[int]:
    """ids of nodes that decide how long a for loop runs (no variable swaps there)."""
    out: set[int] = set()
    for node in ast.walk(tree):
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
    protected = _protected(tree)
    loopctl = _loop_control(tree)
    variables = [a.arg for a in fn.args.args]
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Store)
            and node.id not in variables
        ):
            variables.append(node.id)
    iterated = {
        n.id
        for loop in ast.walk(fn)
        if isinstance(loop, ast.For)
        for n in ast.walk(loop.iter)
        if isinstance(n, ast.Name)
    }
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    out: list[tuple[int, str, Any]] = []
    for idx, node in enumerate(ast.walk(tree)):
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
                if other != node.id and other not in iterated:
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


def _apply(tree: ast.Module, idx: int, edit: tuple[str, Any]) -> ast.Module:
    new = copy.deepcopy(tree)
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
        fn = compile_function(source, inst.task.name)
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
        if got != expected or type(got) is not type(expected):
            out.append((i, f"it returns {got!r}"))
    return tuple(out)


class _StepBudget(BaseException):
    """Raised by the tracer when a mutant runs too many steps (a second line of defence)."""


def _run_limited(fn: Callable, args: tuple, budget: int = 100_000) -> Any:
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        if count > budget:
            raise _StepBudget
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        return fn(*args)
    finally:
        sys.settrace(old)


@lru_cache(maxsize=2048)
def mutants(task_index: int, params: tuple[tuple[str, Any], ...]) -> tuple[Mutant, ...]:
    inst = instance(task_index, params)
    tree = ast.parse(inst.source)
    ref_lines = inst.source.splitlines()
    out: list[Mutant] = []
    seen: set[str] = set()
    for idx, category, edit in _candidates(tree):
        try:
            src = ast.unparse(_apply(tree, idx, edit)) + "\n"
        except Exception:  # noqa: BLE001 - an edit that yields an invalid tree is skipped
            continue
        if src == inst.source or src in seen:
            continue
        seen.add(src)
        fails = _failures(inst, src)
        if not fails:
            continue
        bad_lines, good_lines = _diff(ref_lines, src.splitlines())
        out.append(Mutant(category, src, bad_lines, good_lines, fails))
    return tuple(out)


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
    call = call_repr(inst.task.name, args)
    if m.category == "missing_case":
        missing = "; ".join(m.good_lines)
        first = f"A case is missing: the function needs `{missing}`."
        second = "Add it back in its place."
    else:
        first = f"The bug is in `{'; '.join(m.bad_lines)}`: {CATEGORY_TEXT[m.category]}."
        second = f"It should be `{'; '.join(m.good_lines)}`."
    return f"{first}\n{second}\nWith the fix, {call} returns {expected!r}."


def sample(rng: random.Random, tier: int) -> tuple[str, Callable[[], Built]]:
    while True:
        task = rng.choice(BY_TIER[tier])
        params = tuple(sorted(task.params(rng).items())) if task.params else ()
        index = task_index(task)
        ms = mutants(index, params)
        if ms:
            break
    m = rng.choice(ms)
    fail_index, got = rng.choice(m.failures)
    inst = instance(index, params)
    args, expected = inst.cases[fail_index]
    test = assert_line(task.name, args, expected)
    prompt = rng.choice(TEMPLATES).format(
        sig=f"{task.name}({task.args})", doc=inst.doc, code=m.source, test=test, got=got
    )

    def build() -> Built:
        tests = "\n".join(assert_line(task.name, a, e) for a, e in inst.cases) + "\n"
        return {
            "reasoning": _reasoning(m, inst, fail_index),
            "answer": inst.source,
            "tests": tests,
            "entry_point": task.name,
            "meta": {
                "task": task.name,
                "params": dict(params),
                "bug": m.category,
                "buggy": m.source,
            },
        }

    return prompt, build
