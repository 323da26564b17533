"""Hidden expected values: the grader keeps the hidden tests' answers out of the run under test.

Why: code under test runs in the same interpreter as the tests and can read them — open the test
file on disk, or walk `sys.modules` to the test module and read its functions' bytecode constants —
and return the value an `assert f(3) == 7` expects without fixing anything (session 24's red team:
reward 1.0 on generated tasks; names built at run time defeat any text gate). So before a graded
run `hide_expectations` rewrites the hidden tests (Python, and JS files using strict
`node:assert`) so their expected values (literals, and what the source fixes: module constants,
loop and parametrize tables) are not in the run at all, and after the run
`judge_expectations` applies them to the values the run recorded. The section comment below says
what is covered and what is not (grading.py's threat model lists what still passes).
"""

from __future__ import annotations

import ast
import builtins
import copy
import datetime
import decimal
import json
import math
import operator
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from hillclimb.harness.testparse import FAIL, PASS, XPASS

# ---- hidden expected values ---------------------------------------------------------------------
#
# Code under test runs in the same interpreter as the tests and can read them: open the test file
# on disk, or walk `sys.modules` to the test module and read its functions' bytecode constants, and
# return the value an `assert f(3) == 7` expects without fixing anything (session 24's red team,
# reward 1.0 on generated tasks). Names built at run time (`getattr(sys, "mod" + "ules")`) defeat
# any text gate, so the defence takes the expected values out of the run instead: before the
# tests run, `hide_expectations` rewrites each hidden test file so that an assertion of a direct
# statement of a test function against a value its source fixes (`assert CALL == 7`, `7 == CALL`,
# `!=`, `<`, `in`, `is None`, `== pytest.approx(0.5)` or of a list/dict of numbers, a chained
# `0 <= CALL < 5`, `not (CALL == 3)`, each side of an `and`, and plain `assert CALL` / `assert not
# CALL`; the value a literal or folded from one: `-3`, `"a" + "b"`, `float("inf")`,
# `date(2024, 1, 5)`, a module constant, a row of a loop or parametrize table: see "constant
# folding" and "parametrize tables" below) becomes `_hillclimb_expect(CALL, "<slot>")`. That
# helper only records the value (a tagged encoding of plain builtin values and dates, and its
# truth value) in a log file; the operator and the value stay in the grader's memory, outside the
# sandbox, and `judge_expectations` compares after the run. `assert
# f(x)` and `assert not f(x)` rewrite to the same call, so not even truthiness is in the source.
# Session 27 added the forms a test body reaches beyond its direct statements, where the rewrite
# keeps the test's meaning: a `unittest.TestCase`'s `self.assertEqual` and kin (mapped to the
# comparison unittest makes), the bodies of `with` blocks whose managers never suppress an
# exception and of `try`/`finally`, `x == 1 or x == 2` of one stable subject (operator `any`),
# and module-level helpers called as statements (`check(3, 9)`: the value leaves the call site;
# see "assertion helpers").
# Session 28 added the forms whose statements an honest run may skip: the branches of an `if`
# (`_hide_if`) and the blocks of a `try` whose handlers cannot catch an `AssertionError`
# (`_hide_try`). Each branch or handler logs a marker first; a slot there is required only
# when its marker logged, a `try` body's unless a handler's did, and one of an `if`'s two
# markers must log (`Expectation.guard`/`unless`). Also a TestCase's `with self.subTest()`
# body (a sub-failure fails the test) and helper methods of test classes (`self._check(x, 9)`).
# Round 5 (also session 28): `while` loops and `for` loops over tables the source does not fix
# (`_hide_loop`: the body's marker logs on each run, one after the loop must log), `try` blocks
# whose handlers may catch the `AssertionError` but surely fail the test once entered
# (`_fails_test`: `pytest.fail`, `self.fail`, a `raise`; a wrong value failed the test through
# the handler before and fails it now), and a failure a handler surely catches and ignores
# (`_soft_try`: the comparison is dropped, its call kept; its value never decided anything).
# In node files, `describe` blocks at column 0 are read one level in (`_js_describes`).
# A passing test whose own slots were not all recorded, or whose recorded values do not satisfy
# the assertion, counts as failed (suppressing the helper cannot pass a test). The comparison is
# on plain values: a subclass of a builtin (an IntEnum, a namedtuple) compares as its base value,
# a number of another library (numpy's int64, a Fraction, a Decimal) as its int (`__index__`) or
# float value, and any other object (a class with its own `__eq__`) does not equal a literal: no
# object of the code under test takes part in deciding.

EXPECT_HELPER = "_hillclimb_expect"
MAX_EXPECT_LOG_BYTES = 16 << 20  # an honest run logs kilobytes; more is not read

# the operator seen from the subject when the literal stands on the left (`7 < f(x)`)
_FLIPPED = {
    "==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<=",
    "in": "contains", "not in": "not contains", "is": "is", "is not": "is not",
}  # fmt: skip
_AST_OPS = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
}  # fmt: skip

# Runs inside the test process (it is spliced into each rewritten test module). It knows neither
# the operator nor the expected value, so whatever code under test does to it, it cannot make a
# wrong value match; it only has to write what it saw.
_PRELUDE = """
def _hillclimb_encode(value, depth=0):
    kind = type(value)
    if depth > 64:
        raise ValueError("too deep")
    if value is None:
        return ["None"]
    if kind is bool:
        return ["bool", value]
    # subclasses (an IntEnum, a namedtuple, an OrderedDict) are read through the base type's
    # own methods: their value as that type, whatever they override
    if isinstance(value, str):
        return ["str", str.__str__(value)]
    if isinstance(value, int):
        return ["int", int.__repr__(value)]
    if isinstance(value, float):
        return ["float", float.__repr__(value)]
    if isinstance(value, complex):
        return ["complex", [float.__repr__(complex.real.__get__(value)),
                            float.__repr__(complex.imag.__get__(value))]]
    if isinstance(value, bytes):
        return ["bytes", bytes.hex(value)]
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            return [base.__name__, [_hillclimb_encode(v, depth + 1) for v in base.__iter__(value)]]
    if isinstance(value, dict):
        return ["dict", [[_hillclimb_encode(k, depth + 1), _hillclimb_encode(v, depth + 1)]
                         for k, v in dict.items(value)]]
    import datetime

    if isinstance(value, datetime.datetime):
        return ["datetime", datetime.datetime.isoformat(value)]
    if isinstance(value, datetime.date):
        return ["date", datetime.date.isoformat(value)]
    if isinstance(value, datetime.time):
        return ["time", datetime.time.isoformat(value)]
    if isinstance(value, datetime.timedelta):
        return ["timedelta", [datetime.timedelta.days.__get__(value),
                              datetime.timedelta.seconds.__get__(value),
                              datetime.timedelta.microseconds.__get__(value)]]
    # numbers of other libraries (numpy's int64, a Fraction, a Decimal): their value as a plain
    # int or float. Calling their methods is safe: nothing in this process knows the answer
    import numbers
    import operator

    if isinstance(value, numbers.Integral):
        return ["int", int.__repr__(int(operator.index(value)))]
    if isinstance(value, numbers.Number):
        return ["float", float.__repr__(float(value))]
    raise TypeError(kind.__name__)


def _hillclimb_expect(value, slot, _log=LOG_PATH, row=None):
    import json
    import os

    if row is not None:  # a row of a parametrize table: the slot is the row's own
        slot = f"{slot}@{row}"

    try:
        truth = bool(value)
    except Exception:
        truth = None
    try:
        encoded = _hillclimb_encode(value)
    except Exception:
        encoded = None
    test = os.environ.get("PYTEST_CURRENT_TEST", "")
    with open(_log, "a", encoding="utf-8") as log:
        log.write(json.dumps({"s": slot, "t": test, "v": encoded, "b": truth}) + "\\n")
"""


@dataclass(frozen=True)
class Expectation:
    """One hidden assertion: the test that owns it (`file::[Class::]function`, ws-relative and
    without parameters, or with the original parameter id for a row of a parametrize table), the
    operator as seen from the recorded value, the expected value (for `chain`: the (operator,
    value) pairs of a chained comparison, in order; for `approx`: an `Approx`), and whether the
    assertion was `not (...)` of the comparison.

    `guard` and `unless` say when the slot must have logged (a passing test whose required
    slots did not all log fails): only when the slot `guard` logged (the marker at the start
    of the `if`/`else` branch or `except` handler the assertion sits in), and not when one of
    `unless` logged (a handler of a `try` around it ran, so the rest of its body was skipped;
    for a branch marker, its sibling branch ran). Op `branch` marks a branch and always holds."""

    test: str
    op: str
    expected: Any
    negated: bool = False
    guard: str | None = None
    unless: tuple[str, ...] = ()


@dataclass
class HiddenExpectations:
    """What the grader keeps out of the run: every slot's expectation, the log it reads, and the
    opaque parametrize ids it gave (`_hcrow3_`) with the id pytest would have made instead."""

    log: Path
    slots: dict[str, Expectation] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)

    def owned(self, test: str) -> list[str]:
        return [slot for slot, exp in self.slots.items() if exp.test == test]

    def required(self, owned: list[str], seen: set[str]) -> set[str]:
        """The slots of `owned` that an honest run which logged `seen` must have logged: the
        unconditional ones, and those in branches or handlers it entered (see `Expectation`)."""
        out = set()
        for slot in owned:
            exp = self.slots[slot]
            if exp.guard is not None and exp.guard not in seen:
                continue
            if any(u in seen for u in exp.unless):
                continue
            out.add(slot)
        return out

    def original_id(self, nodeid: str) -> str:
        """`t.py::test_f[_hcrow0_]` -> `t.py::test_f[1-2]` (the id the task's lists use)."""
        head, bracket, params = nodeid.partition("[")
        if not bracket or not self.renamed:
            return nodeid
        return head + "[" + _ROW_TOKEN.sub(lambda m: self.renamed.get(m[0], m[0]), params)


@dataclass(frozen=True)
class Almost:
    """`self.assertAlmostEqual(x, expected, places=..., delta=...)` of a number (judged with
    unittest's own rule, `_almost_eq`; `assertNotAlmostEqual` is its negation)."""

    expected: int | float
    places: int | None = None
    delta: int | float | None = None


_ROW_TOKEN = re.compile(r"_hcrow\d+_")
ROW_PARAM = "_hillclimb_row"


@dataclass(frozen=True)
class Approx:
    """`pytest.approx(expected, rel=..., abs=...)` of a number, or of a flat list/tuple/dict of
    numbers, judged with pytest's own rule (`_approx_eq`)."""

    expected: Any
    rel: float | None = None
    abs: float | None = None


# ---- constant folding: what a test's source says a value is --------------------------------------
#
# An expected value need not be written as a literal to be readable: `-3`, `"ab" + "c"`,
# `[1 / 3, 2]`, `float("inf")`, `date(2024, 1, 5)`, a module-level `EXPECTED = [...]`, the row
# of a `for inp, want in [...]` table or of a `@pytest.mark.parametrize` table. `_fold` computes
# such values in the grader from the source alone. A name counts only when the test module binds
# it exactly once (its assignment or import) and never rebinds it anywhere (no function argument,
# local, loop variable or `global` of that name), so its value when the assertion runs is the
# folded one; a mutable constant (a list, a dict) counts only when every use reads it in place
# (a comparison operand, a loop's table, a parametrize table), which cannot mutate it.

_MAX_FOLDED = 100_000  # items/characters a folded value may have: no huge values from a test
_MAX_ROWS = 200  # rows of a loop or parametrize table the rewrite unrolls or renumbers
_MAX_UNROLLED = 5_000  # statements unrolling may add to one test function
_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("float", "int", "str", "bool", "complex", "tuple", "list", "set", "frozenset",
                 "dict", "enumerate", "zip", "range")
}  # fmt: skip
_CALLABLE = (float, int, str, bool, complex, tuple, list, set, frozenset, dict,
             datetime.date, datetime.datetime, datetime.time, datetime.timedelta)  # fmt: skip
_MODULE_ATTRS = {
    "math": {"inf", "nan", "pi", "e", "tau"},
    "datetime": {"date", "datetime", "time", "timedelta"},
}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}  # fmt: skip
_SCALARS = (type(None), bool, int, float, complex, str, bytes,
            datetime.date, datetime.time, datetime.timedelta)  # fmt: skip


class _NotConstant(Exception):
    """The expression is not a value the grader can compute from the test's source."""


def _plain(value: Any, depth: int = 0) -> bool:
    """A value the helper can record and the grader compare: builtin scalars, dates and
    builtin containers of them (not a module, a class or a function a name may stand for)."""
    if depth > 64:
        return False
    if type(value) in _SCALARS or type(value) is datetime.datetime:
        return True
    if type(value) in (list, tuple, set, frozenset):
        return all(_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _immutable(value: Any) -> bool:
    if type(value) in (tuple, frozenset):
        return all(_immutable(v) for v in value)
    return type(value) in _SCALARS or type(value) is datetime.datetime


def _sized(value: Any) -> Any:
    if (
        isinstance(value, (str, bytes, list, tuple, set, frozenset, dict))
        and len(value) > _MAX_FOLDED
    ):
        raise _NotConstant("too large")
    return value


def _fold(node: ast.expr, env: dict[str, Any]) -> Any:
    """The value `node` has when the test runs, computed from the source and `env` (the names
    whose value is known); `_NotConstant` when it cannot be known."""
    if isinstance(node, ast.Constant):
        if node.value is Ellipsis:
            raise _NotConstant("...")
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise _NotConstant(node.id)
        value = env[node.id]
        return (
            value
            if isinstance(value, (type, ModuleType)) or callable(value)
            else copy.deepcopy(value)
        )
    if isinstance(node, ast.Attribute):
        base = _fold(node.value, env)
        if isinstance(base, ModuleType) and node.attr in _MODULE_ATTRS.get(base.__name__, ()):
            return getattr(base, node.attr)
        raise _NotConstant(node.attr)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [_fold(e, env) for e in node.elts]  # a Starred element is not folded: raises
        kind = {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)]
        try:
            return _sized(kind(items))
        except TypeError as exc:  # an unhashable set member
            raise _NotConstant(str(exc)) from exc
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotConstant("**")
        try:
            return _sized(
                {_fold(k, env): _fold(v, env) for k, v in zip(node.keys, node.values, strict=True)}
            )  # type: ignore[arg-type]
        except TypeError as exc:
            raise _NotConstant(str(exc)) from exc
    if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
        container, key = _fold(node.value, env), _fold(node.slice, env)
        if type(container) not in (list, tuple, dict, str) or not _plain(key):
            raise _NotConstant("subscript")
        try:
            return copy.deepcopy(container[key])
        except (LookupError, TypeError) as exc:
            raise _NotConstant(str(exc)) from exc
    if isinstance(node, ast.UnaryOp):
        value = _fold(node.operand, env)
        if isinstance(node.op, ast.Not) and _plain(value):
            return not value
        if isinstance(node.op, (ast.USub, ast.UAdd)) and type(value) in (int, float, complex, bool):
            return -value if isinstance(node.op, ast.USub) else +value
        raise _NotConstant("unary")
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        left, right = _fold(node.left, env), _fold(node.right, env)
        if not (_plain(left) and _plain(right)):
            raise _NotConstant("operands")
        for seq, times in ((left, right), (right, left)):  # `"ab" * 3`: size known beforehand
            repeated = isinstance(node.op, ast.Mult) and isinstance(seq, (str, bytes, list, tuple))
            if repeated and (type(times) is not int or len(seq) * max(times, 0) > _MAX_FOLDED):
                raise _NotConstant("too large")
        try:
            return _sized(_ARITH[type(node.op)](left, right))
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise _NotConstant(str(exc)) from exc
    if isinstance(node, ast.Call):
        func = _fold(node.func, env)
        if not any(func is c for c in _CALLABLE) or any(k.arg is None for k in node.keywords):
            raise _NotConstant("call")
        args = [_fold(a, env) for a in node.args]
        kwargs = {k.arg: _fold(k.value, env) for k in node.keywords}
        if not all(_plain(v) for v in [*args, *kwargs.values()]):
            raise _NotConstant("arguments")
        try:
            value = func(*args, **kwargs)
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise _NotConstant(str(exc)) from exc
        return _sized(value)
    raise _NotConstant(type(node).__name__)


def _fold_plain(node: ast.expr, env: dict[str, Any]) -> tuple[bool, Any]:
    """(True, value) when `node` folds to a plain value, else (False, None)."""
    try:
        value = _fold(node, env)
    except (_NotConstant, RecursionError, MemoryError):
        return False, None
    return (True, value) if _plain(value) else (False, None)


def _fold_rows(node: ast.expr, env: dict[str, Any]) -> list[Any] | None:
    """The items a `for` loop over `node` takes, when the source fixes them: a folded list,
    tuple, string or dict (its keys), `range`, `enumerate`, `zip` and a dict's
    `.items()/.keys()/.values()` of such (sets are not unrolled: their order is the hash's)."""
    if isinstance(node, ast.Call) and not node.keywords:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in ("items", "keys", "values")
            and not node.args
        ):
            ok, d = _fold_plain(func.value, env)
            return list(getattr(d, func.attr)()) if ok and type(d) is dict else None
        if isinstance(func, ast.Name) and func.id in ("enumerate", "zip", "range"):
            if env.get(func.id) is not _BUILTINS[func.id]:
                return None
            if func.id == "range":
                folded = [_fold_plain(a, env) for a in node.args]
                if not all(ok and type(v) is int for ok, v in folded) or not 1 <= len(folded) <= 3:
                    return None
                try:
                    r = range(*(v for _, v in folded))
                except ValueError:
                    return None
                return list(r) if len(r) <= _MAX_ROWS else None
            parts = [_fold_rows(a, env) for a in node.args]
            if any(p is None for p in parts) or not parts:
                return None
            if func.id == "enumerate" and len(parts) != 1:
                return None  # a start argument: not worth reading
            if func.id == "enumerate":
                return list(enumerate(parts[0]))  # type: ignore[arg-type]
            return list(zip(*parts, strict=False))  # type: ignore[arg-type]
    ok, value = _fold_plain(node, env)
    if not ok or type(value) not in (list, tuple, str, dict):
        return None
    return list(value)


def _literal_node(value: Any) -> ast.expr:
    """Source for a plain value (the inputs the rewrite must still bind: a loop's input column,
    a parametrize table's kept columns); `_NotConstant` for values with no literal form."""
    if value is None or type(value) in (bool, int, float, str, bytes):
        return ast.Constant(value)
    if type(value) in (list, tuple):
        kind = ast.List if type(value) is list else ast.Tuple
        return kind([_literal_node(v) for v in value], ast.Load())
    if type(value) is set:
        if not value:
            return ast.Set([ast.Starred(ast.Tuple([], ast.Load()), ast.Load())])  # {*()}
        return ast.Set([_literal_node(v) for v in value])
    if type(value) is dict:
        return ast.Dict(
            [_literal_node(k) for k in value], [_literal_node(v) for v in value.values()]
        )
    raise _NotConstant(type(value).__name__)


def _binding_counts(node: ast.AST) -> Counter[str]:
    """How often each name is bound anywhere in `node` (assignments, loop targets, arguments,
    imports, definitions, `global`, except clauses, match captures): in a module, a name bound
    once is a constant."""
    counts: Counter[str] = Counter()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
            counts[sub.id] += 1
        elif isinstance(sub, ast.arg):
            counts[sub.arg] += 1
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            counts[sub.name] += 1
        elif isinstance(sub, ast.alias):
            counts[sub.asname or sub.name.split(".")[0]] += 1
        elif isinstance(sub, (ast.Global, ast.Nonlocal)):
            counts.update({n: 2 for n in sub.names})
        elif isinstance(sub, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar, ast.MatchMapping)):
            name = getattr(sub, "name", None) or getattr(sub, "rest", None)
            if name:
                counts[name] += 1
    return counts


_DYNAMIC = {"globals", "locals", "vars", "exec", "eval", "__import__", "__dict__"}


def _module_env(tree: ast.Module, exported: bool) -> tuple[dict[str, Any], set[str]]:
    """The names whose value the test module fixes (see the section comment), and which of them
    are module-level constants (assignments the rewrite may delete once nothing reads them).
    A module that reaches its namespace dynamically (`globals()`, `setattr`, ...) or that
    another test file imports (`exported`) gets the unshadowed builtins only."""
    counts = _binding_counts(tree)
    env: dict[str, Any] = {n: f for n, f in _BUILTINS.items() if counts[n] == 0}
    words = {getattr(n, "id", None) or getattr(n, "attr", None) for n in ast.walk(tree)}
    if exported or words & _DYNAMIC:
        return env, set()
    changeable = _changeable(tree)
    consts: set[str] = set()
    modules = {"math": math, "datetime": datetime}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                name = alias.asname or alias.name
                if alias.name in modules and counts[name] == 1:
                    env[name] = modules[alias.name]
        elif isinstance(stmt, ast.ImportFrom) and stmt.module in modules and not stmt.level:
            for alias in stmt.names:
                name = alias.asname or alias.name
                if alias.name in _MODULE_ATTRS[stmt.module] and counts[name] == 1:
                    env[name] = getattr(modules[stmt.module], alias.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if len(targets) != 1 or not isinstance(targets[0], ast.Name) or stmt.value is None:
                continue
            name = targets[0].id
            ok, value = _fold_plain(stmt.value, env)
            if not ok or counts[name] != 1:
                continue
            if not _immutable(value) and name in changeable:
                continue
            env[name] = value
            consts.add(name)
    return env, consts


def _changeable(scope: ast.AST) -> set[str]:
    """Names some use in `scope` may change in place (`xs.append(1)`, `f(xs)`): a mutable
    value bound to one is not folded there (the assertion may see it changed)."""
    parents = {
        child: parent for parent in ast.walk(scope) for child in ast.iter_child_nodes(parent)
    }
    return {
        n.id for n in ast.walk(scope)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and not _read_in_place(n, parents)
    }  # fmt: skip


def _fixed(bound: dict[str, Any], changeable: set[str]) -> dict[str, Any]:
    """The bindings whose value cannot change in place where they are used."""
    return {k: v for k, v in bound.items() if _immutable(v) or k not in changeable}


def _read_in_place(node: ast.Name, parents: dict[ast.AST, ast.AST]) -> bool:
    """Is this use of a mutable constant one that cannot change it (a comparison operand, a
    loop's table, inside a decorator: a parametrize table)?"""
    here: ast.AST = node
    parent = parents.get(here)
    # through `X.items()`, `enumerate(X)`, `zip(X, Y)`: reading, not changing
    while (
        isinstance(parent, ast.Attribute) and parent.attr in ("items", "keys", "values")
        or isinstance(parent, ast.Call) and here is not parent.func
        and getattr(parent.func, "id", None) in ("enumerate", "zip", "len")
        or isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute)
        and here is parent.func and not parent.args
    ):  # fmt: skip
        here, parent = parent, parents.get(parent)
    if isinstance(parent, ast.Compare) or isinstance(parent, ast.For) and parent.iter is here:
        return True
    while parent is not None:
        grand = parents.get(parent)
        if isinstance(grand, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return parent in grand.decorator_list
        parent = grand
    return False


# ---- which assertions are hidden, and how ---------------------------------------------------------


def _expected_value(node: ast.expr, env: dict[str, Any]) -> tuple[str, Any] | None:
    """("literal", value) for an expression the source fixes, ("approx", Approx) for
    `pytest.approx(<numbers>[, rel=, abs=])`; None for anything else."""
    ok, value = _fold_plain(node, env)
    if ok:
        return "literal", value
    if isinstance(node, ast.Call) and len(node.args) == 1:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name != "approx":
            return None
        ok, value = _fold_plain(node.args[0], env)
        tolerances: dict[str, float] = {}
        for kw in node.keywords:
            tok, tol = _fold_plain(kw.value, env) if kw.arg in ("rel", "abs") else (False, None)
            if not tok or type(tol) not in (int, float) or not tol >= 0:
                return None  # nan_ok, a negative or NaN tolerance: left to pytest
            tolerances[kw.arg] = tol  # type: ignore[index]
        numbers = (
            value.values()
            if type(value) is dict
            else value
            if type(value) in (list, tuple)
            else [value]
        )
        if ok and all(type(v) in (int, float) for v in numbers):
            return "approx", Approx(value, tolerances.get("rel"), tolerances.get("abs"))
    return None


def _classify_compare(test: ast.Compare, env: dict[str, Any]) -> tuple[ast.expr, str, Any] | None:
    """(subject, operator, expected) for a comparison with exactly one term the source does not
    fix; a chained one (`0 <= f(x) < 5`) gives operator `chain` and its (operator, value) pairs."""
    if not all(type(op) in _AST_OPS for op in test.ops):
        return None
    terms = [test.left, *test.comparators]
    values = [_expected_value(t, env) for t in terms]
    open_terms = [i for i, v in enumerate(values) if v is None]
    if len(open_terms) != 1:
        return None
    k = open_terms[0]
    checks: list[tuple[str, Any]] = []
    for j, op_node in enumerate(test.ops):
        op = _AST_OPS[type(op_node)]
        if k not in (j, j + 1):
            return None  # a comparison of two constants inside a chain: left to Python
        how, value = values[j + 1 if k == j else j]  # type: ignore[misc]
        if k == j + 1:
            op = _FLIPPED[op]
        if how == "approx":
            if op not in ("==", "!="):
                return None
            op = "approx" if op == "==" else "not approx"
        elif op in ("is", "is not") and not (value is None or value is True or value is False):
            return None
        checks.append((op, value))
    if len(checks) == 1:
        return terms[k], checks[0][0], checks[0][1]
    return terms[k], "chain", tuple(checks)


def _classify(test: ast.expr, env: dict[str, Any]) -> tuple[ast.expr, str, Any, bool] | None:
    """(subject, operator, expected, negated) for an assertion whose expected side can be
    hidden; `assert X` / `assert not X` record X's truth value."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        if isinstance(test.operand, ast.Compare):
            got = _classify_compare(test.operand, env)
            return None if got is None else (*got, True)
        if _fold_plain(test.operand, env)[0]:
            return None  # `assert not 0`: nothing to hide
        return test.operand, "false", None, False
    if isinstance(test, ast.Compare):
        got = _classify_compare(test, env)
        return None if got is None else (*got, False)
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        got = _classify_or(test, env)
        if got is not None:
            return got
    if _fold_plain(test, env)[0]:
        return None
    return test, "true", None, False


def _stable(node: ast.expr) -> bool:
    """A subject that reads the same value however often it is evaluated (a name, an attribute
    or constant subscript of one): `x == 1 or x == 2` may then log it once."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Constant):
            return False
        node = node.value
    return isinstance(node, ast.Name)


def _classify_or(test: ast.BoolOp, env: dict[str, Any]) -> tuple[ast.expr, str, Any, bool] | None:
    """`assert x == 1 or x in (5, 6) or not (x < 0)`: every disjunct a hideable comparison of
    the same stable subject; operator `any` with each disjunct's (operator, value, negated),
    judged outside. Different subjects are left (the later ones need not be evaluated)."""
    parts: list[tuple[str, Any, bool]] = []
    subject: ast.expr | None = None
    for value in test.values:
        negated = isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not)
        comp = value.operand if negated else value  # type: ignore[attr-defined]
        got = _classify_compare(comp, env) if isinstance(comp, ast.Compare) else None
        if got is None or not _stable(got[0]):
            return None
        if subject is not None and ast.dump(subject) != ast.dump(got[0]):
            return None
        subject = got[0]
        parts.append((got[1], got[2], negated))
    return (subject, "any", tuple(parts), False) if subject is not None else None


def _conjuncts(test: ast.expr) -> list[ast.expr]:
    """`assert a and b` is `assert a; assert b` (b is only evaluated when a held, and then
    the test's outcome is the same)."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return [part for value in test.values for part in _conjuncts(value)]
    return [test]


@dataclass
class _Rewrite:
    """One test function's rewrite: where its slots go and what unrolling may still add."""

    test: str
    plan: HiddenExpectations
    loads: Counter[str]  # names read anywhere in the function, as written
    dynamic: bool  # the function reaches its locals dynamically: keep every binding
    row: bool = False  # inside a parametrized body: slots are per row (`ROW_PARAM`)
    budget: int = _MAX_UNROLLED
    selfname: str | None = None  # a `unittest.TestCase` method's `self` (its asserts are read)
    managers: frozenset[str] = frozenset()  # `with` managers (as written) that never suppress
    mod: _Module | None = None  # the module's helpers (`_hide_helper_call`)
    local: Counter[str] = field(default_factory=Counter)  # names the function binds
    cls: str | None = None  # the class of a test method (its helper methods: `_hide_helper_call`)
    owner: str | None = None  # a test method's `self` (never rebound): `self._check(...)` calls
    guard: str | None = None  # the marker of the branch or handler being rewritten (`Expectation`)
    unless: tuple[str, ...] = ()  # the markers of the handlers of `try` bodies around it
    dropped: int = 0  # assertions whose failure a handler swallowed: dropped (`_soft_try`)

    def expectation(self, op: str, expected: Any, negated: bool = False) -> Expectation:
        """An expectation of this test, required where the block being rewritten runs."""
        return Expectation(self.test, op, expected, negated, self.guard, self.unless)


def _escapes(stmts: list[ast.stmt]) -> bool:
    """Can control leave these statements early (a `return`, or a `break`/`continue` of the
    loop they are the body of)? Nested functions and loops' bodies are their own (a loop's
    `else` is not: a `break` there leaves the loop around it)."""

    def visit(node: ast.AST, loops: int) -> bool:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return False
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            return any(visit(s, loops + 1) for s in node.body) or any(
                visit(s, loops) for s in node.orelse
            )
        if (
            isinstance(node, ast.Return)
            or isinstance(node, (ast.Break, ast.Continue))
            and not loops
        ):
            return True
        return any(visit(child, loops) for child in ast.iter_child_nodes(node))

    return any(visit(s, 0) for s in stmts)


def _hide_assert(stmt: ast.Assert, env: dict[str, Any], rw: _Rewrite) -> list[ast.stmt] | None:
    """The statements replacing `stmt`: a helper call per hideable conjunct, an `assert` for the
    rest; None when nothing in it is hidden."""
    parts = _conjuncts(stmt.test)
    out: list[ast.stmt] = []
    hidden = 0
    for part in parts:
        got = _classify(part, env)
        if got is None:
            out.append(ast.copy_location(ast.Assert(part, None), stmt))
            continue
        out.append(_slot_call(*got, rw, stmt))
        hidden += 1
    return out if hidden else None


def _targets(target: ast.expr) -> list[str] | None:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        names = [_targets(t) for t in target.elts]
        return None if any(n is None for n in names) else [n for ns in names for n in ns]  # type: ignore[union-attr]
    return None


def _destructure(target: ast.expr, value: Any) -> dict[str, Any] | None:
    """What `for <target> in ...` binds for one item; None if it would not unpack."""
    if isinstance(target, ast.Name):
        return {target.id: value}
    if not isinstance(value, (list, tuple, str)) or len(value) != len(target.elts):  # type: ignore[attr-defined]
        return None
    bound: dict[str, Any] = {}
    for t, v in zip(target.elts, value, strict=True):  # type: ignore[attr-defined]
        got = _destructure(t, v)
        if got is None:
            return None
        bound.update(got)
    return bound


def _forget(plan: HiddenExpectations, count: int) -> None:
    """Drop the slots added after the first `count` (a rewrite given up half way)."""
    for slot in list(plan.slots)[count:]:
        del plan.slots[slot]


def _unroll(loop: ast.For, env: dict[str, Any], rw: _Rewrite) -> list[ast.stmt] | None:
    """A `for` over a table the source fixes, written out once per row so its assertions are
    direct statements (each required to log): the row's values are known in its copy, so
    `assert f(inp) == want` hides `want`; a loop variable is still bound in a copy only where
    something reads it (an input). None when the loop is not of that kind or hides nothing."""
    names = _targets(loop.target)
    rows = _fold_rows(loop.iter, env)
    if loop.orelse or names is None or not rows or len(rows) > _MAX_ROWS or _escapes(loop.body):
        return None
    size = len(rows) * sum(1 for s in loop.body for _ in ast.walk(s) if isinstance(_, ast.stmt))
    if size > rw.budget:
        return None
    outer = rw.loads - Counter(
        n.id for n in ast.walk(loop) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    )
    copies: list[tuple[dict[str, Any], list[ast.stmt]]] = []
    before, risky = len(rw.plan.slots), _changeable(loop)
    for row in rows:
        bound = _destructure(loop.target, row)
        if bound is None:
            _forget(rw.plan, before)
            return None
        body, _ = _hide_block(copy.deepcopy(loop.body), {**env, **_fixed(bound, risky)}, rw)
        copies.append((bound, body))
    if len(rw.plan.slots) == before:
        return None
    read = set(outer) | {
        n.id for _, body in copies for s in body for n in ast.walk(s)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }  # fmt: skip
    out: list[ast.stmt] = []
    try:
        for bound, body in copies:
            for name in names:
                if rw.dynamic or name in read:
                    target = ast.Name(name, ast.Store())
                    out.append(
                        ast.copy_location(ast.Assign([target], _literal_node(bound[name])), loop)
                    )
            out += body
    except _NotConstant:
        _forget(rw.plan, before)
        return None
    rw.budget -= size
    return out


def _hide_block(
    stmts: list[ast.stmt], env: dict[str, Any], rw: _Rewrite
) -> tuple[list[ast.stmt], int]:
    """Rewrite a block's direct assertions (`assert`, and a TestCase's `self.assertEqual` and
    kin), unroll its loops over fixed tables, and do the same inside `with` blocks whose
    managers never suppress an exception (or a TestCase's `subTest`) and `try` blocks with only
    a `finally`: statements that, once the block is entered, either all run or fail the test.
    Branches of an `if` and `try` blocks with handlers that cannot catch an `AssertionError`
    (`_hide_if`, `_hide_try`) are rewritten too, their slots required only where the branch or
    handler they sit in ran (markers: see `Expectation`). Not those in other `with`/`try`
    blocks, or after a statement that may `return`: a slot the test may legitimately skip
    cannot be required. A name a statement rebinds leaves `env` from there on."""
    env = dict(env)
    out: list[ast.stmt] = []
    before, diverted, dropped = len(rw.plan.slots), False, rw.dropped
    for stmt in stmts:
        new: list[ast.stmt] | None = None
        if diverted:
            pass
        elif isinstance(stmt, ast.Assert):
            new = _hide_assert(stmt, env, rw)
        elif type(stmt) is ast.For:
            new = _unroll(stmt, env, rw)
            if new is None:
                new = _hide_loop(stmt, env, rw)
        elif isinstance(stmt, ast.While):
            new = _hide_loop(stmt, env, rw)
        elif isinstance(stmt, ast.Expr) and rw.selfname:
            new = _hide_unittest(stmt, env, rw)
        elif isinstance(stmt, ast.If):
            new = _hide_if(stmt, env, rw)
        elif isinstance(stmt, ast.Try) and stmt.handlers:
            new = _hide_try(stmt, env, rw)
        elif isinstance(stmt, (ast.With, ast.Try)):
            new = _hide_nested(stmt, env, rw)
        if new is None and not diverted and isinstance(stmt, ast.Expr):
            new = _hide_helper_call(stmt, env, rw)
        out += new if new is not None else [stmt]
        diverted = diverted or _escapes([stmt])
        for name in _binding_counts(stmt):
            env.pop(name, None)
    return out, len(rw.plan.slots) - before + rw.dropped - dropped


def _hide_nested(
    stmt: ast.With | ast.Try, env: dict[str, Any], rw: _Rewrite
) -> list[ast.stmt] | None:
    """A `with` whose every manager is one known never to suppress an exception (`open`,
    `pytest.warns`, `mock.patch`, a TestCase's `assertLogs`: see `_managers`), or a `try` with
    only a `finally` that cannot swallow (no `return`/`break` in it): its body is rewritten like
    a test body (once entered, it runs to its end or the test fails; a TestCase's `subTest`
    too, its labels dropped: `_quiet_subtest`). `pytest.raises`, `suppress` and unknown
    managers are left: they may skip the rest of the body."""
    items = None
    if isinstance(stmt, ast.With):
        if not all(
            isinstance(item.context_expr, ast.Call)
            and ast.unparse(item.context_expr.func) in rw.managers
            for item in stmt.items
        ):
            return None
        items = [_quiet_subtest(item, rw) for item in stmt.items]
        if any(item is None for item in items):
            return None
        inner = dict(env)
        for item in stmt.items:  # `as f` binds f before the body runs
            for name in _binding_counts(item.optional_vars) if item.optional_vars else ():
                inner.pop(name, None)
    elif stmt.handlers or stmt.orelse or not stmt.finalbody or _escapes(stmt.finalbody):
        return None
    else:
        inner = env
    before = len(rw.plan.slots)
    body, hidden = _hide_block(stmt.body, inner, rw)
    if not hidden:
        _forget(rw.plan, before)
        return None
    new = copy.copy(stmt)
    new.body = body
    if items is not None:
        new.items = items  # type: ignore[union-attr]
    return [new]


def _quiet_subtest(item: ast.withitem, rw: _Rewrite) -> ast.withitem | None:
    """`with self.subTest(x=1, want=3):` -> `with self.subTest():` (its message and parameters
    only label a failure in the report, and may quote the expected value); None for one whose
    arguments may do something (a call). Other managers stay as they are.

    Why a `subTest` body can be required like a direct one: a failure in it (an assertion or any
    exception) is caught there and the test continues, but pytest then fails the test (the
    grader counts a sub-failure as the test's), so in a passing run every body ran to its end."""
    call = item.context_expr
    func = call.func if isinstance(call, ast.Call) else None
    if not (
        isinstance(func, ast.Attribute)
        and func.attr == "subTest"
        and isinstance(func.value, ast.Name)
        and func.value.id == rw.selfname
    ):
        return item
    args = [*call.args, *(k.value for k in call.keywords)]  # type: ignore[union-attr]
    if not all(_inert(a) for a in args) or item.optional_vars is not None:
        return None
    return ast.withitem(ast.Call(func, [], []), None)


def _marker(rw: _Rewrite, at: ast.stmt) -> tuple[str, ast.stmt]:
    """A new branch marker (see `Expectation`) and the statement logging it; its `unless` is
    set by the caller once its siblings exist."""
    stmt = _slot_call(ast.Constant(None), "branch", None, False, rw, at)
    return list(rw.plan.slots)[-1], stmt


def _hide_if(stmt: ast.If, env: dict[str, Any], rw: _Rewrite) -> list[ast.stmt] | None:
    """`if C: A else: B` (an `elif` is an `if` in the `else`): each branch rewritten like a test
    body, its slots required only when its marker logged (`if C: log(m1); A' else: log(m0);
    B'`; an absent `else` gets one holding only its marker). One marker of the two must log, so
    silencing the helper cannot skip both. The condition stays as written (it decides which
    values are expected: the values in it are readable). None when no branch hides anything."""
    before, outer = len(rw.plan.slots), rw.guard
    yes, yes_mark = _marker(rw, stmt)
    no, no_mark = _marker(rw, stmt)
    rw.plan.slots[yes] = replace(rw.plan.slots[yes], unless=(*rw.unless, no))
    rw.plan.slots[no] = replace(rw.plan.slots[no], unless=(*rw.unless, yes))
    inner = {k: v for k, v in env.items() if k not in _binding_counts(stmt.test)}  # `:=`
    try:
        rw.guard = yes
        body, hidden = _hide_block(stmt.body, inner, rw)
        rw.guard = no
        orelse, hidden_else = _hide_block(stmt.orelse, inner, rw)
    finally:
        rw.guard = outer
    if not hidden and not hidden_else:
        _forget(rw.plan, before)
        return None
    new = copy.copy(stmt)
    new.body, new.orelse = [yes_mark, *body], [no_mark, *orelse]
    return [new]


def _catches_assertion(kind: ast.expr | None, rw: _Rewrite) -> bool:
    """Could an `except` clause of this type catch the `AssertionError` of a failing assertion?
    Only builtin exception classes the test does not rebind are read (`ValueError`, a tuple of
    them); a bare `except`, `Exception` or a class of the code under test may."""
    if kind is None or rw.mod is None:
        return True
    for node in kind.elts if isinstance(kind, ast.Tuple) else [kind]:
        if not isinstance(node, ast.Name) or rw.local[node.id]:
            return True
        cls = getattr(builtins, node.id, None) if rw.mod.qualified(node.id) == node.id else None
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            return True
        if issubclass(AssertionError, cls):
            return True
    return False


def _certainly_catches(kind: ast.expr | None, rw: _Rewrite) -> bool:
    """Does an `except` clause of this type surely catch an `AssertionError` (bare, or a builtin
    class it derives from that the test does not rebind: `Exception`, `AssertionError`, ...)?"""
    if kind is None:
        return True
    if rw.mod is None:
        return False
    for node in kind.elts if isinstance(kind, ast.Tuple) else [kind]:
        if not isinstance(node, ast.Name) or rw.local[node.id]:
            continue
        cls = getattr(builtins, node.id, None) if rw.mod.qualified(node.id) == node.id else None
        if isinstance(cls, type) and issubclass(AssertionError, cls):
            return True
    return False


# The keywords `pytest.fail(reason, pytrace)` and `TestCase.fail(msg)` take (`msg` also an old
# spelling of pytest's `reason`): with inert values they still surely fail the test.
_FAIL_KEYWORDS = frozenset({"reason", "pytrace", "msg"})


def _fail_stmt(stmt: ast.stmt, rw: _Rewrite, only_assertion: bool) -> bool:
    """Does this statement surely fail the test once it runs: a bare `raise` (in a handler
    that caught the `AssertionError`, it re-raises it), `raise E(...)` of a builtin exception
    class (`AssertionError` when `only_assertion`), `pytest.fail(...)`, a TestCase's
    `self.fail(...)`, `assert False`? Arguments must be inert (evaluating them cannot raise
    something else, or do anything)."""

    def builtin_exc(node: ast.expr) -> bool:
        target = node.func if isinstance(node, ast.Call) else node
        if isinstance(node, ast.Call) and not all(
            _inert(a) for a in [*node.args, *(k.value for k in node.keywords)]
        ):
            return False
        if not isinstance(target, ast.Name) or rw.local[target.id] or rw.mod is None:
            return False
        if rw.mod.qualified(target.id) != target.id:
            return False
        cls = getattr(builtins, target.id, None)
        if only_assertion:
            return cls is AssertionError
        return isinstance(cls, type) and issubclass(cls, Exception)

    if isinstance(stmt, ast.Raise):
        return (
            stmt.exc is None or (stmt.cause is None or _inert(stmt.cause)) and builtin_exc(stmt.exc)
        )
    if isinstance(stmt, ast.Assert):
        return (
            isinstance(stmt.test, ast.Constant)
            and not stmt.test.value
            and (stmt.msg is None or _inert(stmt.msg))
        )
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if not isinstance(call, ast.Call) or not all(_inert(a) for a in call.args):
        return False
    # keywords only as the two calls name them (an unknown one raises TypeError instead)
    if not all(k.arg in _FAIL_KEYWORDS and _inert(k.value) for k in call.keywords):
        return False
    written = ast.unparse(call.func)
    head = written.partition(".")[0]
    if written == "pytest.fail" and rw.mod is not None and not rw.local[head]:
        return rw.mod.qualified(written) == "pytest.fail"
    return rw.selfname is not None and written == f"{rw.selfname}.fail"


def _fails_test(handler: ast.ExceptHandler, rw: _Rewrite) -> bool:
    """Does entering this handler surely fail the test? Then a hidden assertion it could catch
    is sound as a required slot: a wrong value failed the test before (through the handler)
    and fails it now (judged outside). Inside a `try` body with handlers (`rw.unless`) an
    exception could be caught further out, so only a handler whose first statement raises the
    `AssertionError` (or pytest's `Failed`, which no builtin class but `BaseException`
    catches) counts; elsewhere any exception leaving the test fails it, so statements may come
    first if they cannot leave the handler another way (`return`, `break`) or skip the test."""
    body = handler.body
    if rw.unless:
        return _fail_stmt(body[0], rw, only_assertion=True)
    if _escapes(body) or any(w in ast.unparse(s) for s in body for w in ("skip", "xfail", "exit")):
        return False
    return _fail_stmt(body[-1], rw, only_assertion=False)


def _inert_handler(handler: ast.ExceptHandler, rw: _Rewrite) -> bool:
    """A handler that does nothing (`pass`, `...`, a docstring) and binds no name the test
    reads (`as e` unbinds `e` when it ends)."""
    if handler.name is not None and rw.loads[handler.name]:
        return False
    return all(
        isinstance(s, ast.Pass) or isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
        for s in handler.body
    )


def _assertion_handlers(stmt: ast.Try, rw: _Rewrite) -> tuple[list[ast.ExceptHandler], bool]:
    """The handlers an `AssertionError` raised in the body may reach, in order (up to the first
    that surely catches it: the later ones never see it), and whether one surely does."""
    reached = []
    for handler in stmt.handlers:
        if _catches_assertion(handler.type, rw):
            reached.append(handler)
            if _certainly_catches(handler.type, rw):
                return reached, True
    return reached, False


def _soft_try(stmt: ast.Try, env: dict[str, Any], rw: _Rewrite) -> list[ast.stmt] | None:
    """`try: ...; assert CALL == 3 except Exception: pass`: a failing assertion there is
    caught and ignored, so the expected value never decides anything; the assertion becomes
    `CALL` (evaluated as before: an exception it raises is caught as before). Only the last
    statement of the body, one conjunct, no `else` (it runs only when nothing was raised), and
    only when the first handler that surely catches an `AssertionError` and every handler
    before it that may catch one do nothing (`_inert_handler`): then skipping or running the
    comparison cannot change what runs after. None otherwise (left as written)."""
    if stmt.orelse or not stmt.body or not isinstance(stmt.body[-1], ast.Assert):
        return None
    reached, caught = _assertion_handlers(stmt, rw)
    if not caught or not all(_inert_handler(h, rw) for h in reached):
        return None  # the AssertionError may leave the `try`, or a handler acts on it
    last = stmt.body[-1]
    parts = _conjuncts(last.test)  # type: ignore[attr-defined]
    inner = {k: v for k, v in env.items() if k not in _binding_counts(ast.Module(stmt.body, []))}
    got = _classify(parts[0], inner) if len(parts) == 1 else None
    if got is None:
        return None
    new = copy.copy(stmt)
    new.body = [*stmt.body[:-1], ast.copy_location(ast.Expr(got[0]), last)]
    rw.dropped += 1
    return [new]


def _returns(stmts: list[ast.stmt]) -> bool:
    """Is there a `return` in these statements (not in a nested function)?"""

    def visit(node: ast.AST) -> bool:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return False
        return isinstance(node, ast.Return) or any(visit(c) for c in ast.iter_child_nodes(node))

    return any(visit(s) for s in stmts)


def _hide_loop(
    stmt: ast.While | ast.For, env: dict[str, Any], rw: _Rewrite
) -> list[ast.stmt] | None:
    """`while C: A else: B` (or a `for` over a table the source does not fix): the body runs
    any number of times, so its slots are required only when its marker logged (each run logs
    the marker, then its values, every one judged), the `else`'s only when its own did. A
    marker after the loop must log (like one of an `if`'s two), so silencing the helper before
    the loop fails the test. The condition and the iterable stay as written; a name the loop
    binds is not fixed inside it. Not when the body may `return` or the `else` leave the
    enclosing block (the marker after the loop would be skipped honestly)."""
    if _returns(stmt.body) or _escapes(stmt.orelse):
        return None
    before, outer = len(rw.plan.slots), rw.guard
    body_mark, body_stmt = _marker(rw, stmt)
    else_mark, else_stmt = _marker(rw, stmt) if stmt.orelse else (None, None)
    for mark in (body_mark, else_mark):  # evidence that the block ran, never itself required
        if mark is not None:
            rw.plan.slots[mark] = replace(rw.plan.slots[mark], guard=mark)
    inner = {k: v for k, v in env.items() if k not in _binding_counts(stmt)}
    try:
        rw.guard = body_mark
        body, hidden = _hide_block(stmt.body, inner, rw)
        rw.guard = else_mark
        orelse, hidden_else = _hide_block(stmt.orelse, inner, rw)
    finally:
        rw.guard = outer
    if not hidden and not hidden_else:
        _forget(rw.plan, before)
        return None
    _, exit_stmt = _marker(rw, stmt)  # required where the loop's own block runs
    new = copy.copy(stmt)
    new.body = [body_stmt, *body]
    new.orelse = [else_stmt, *orelse] if else_stmt is not None else []
    return [new, exit_stmt]


def _hide_try(stmt: ast.Try, env: dict[str, Any], rw: _Rewrite) -> list[ast.stmt] | None:
    """`try: A except E: H else: B finally: F` whose handlers cannot catch an `AssertionError`
    (`_catches_assertion`), or fail the test when they do (`_fails_test`): a hidden assertion
    failing in `A` failed the test before and still does (its value is judged outside), so
    every block is rewritten like a test body.
    A handler's first statement logs its marker: `A`'s and `B`'s slots are required unless a
    handler ran (an exception it caught skipped the rest), a handler's only when it ran, `F`'s
    always. Not when a handler or `finally` may `return`/`break` (the test's own rule).
    Handlers that may catch the assertion and ignore it: `_soft_try`."""
    if not all(_fails_test(h, rw) for h in _assertion_handlers(stmt, rw)[0]):
        return _soft_try(stmt, env, rw)
    if _escapes(stmt.finalbody):
        return None
    before, outer = len(rw.plan.slots), (rw.guard, rw.unless)
    marks = [_marker(rw, h) for h in stmt.handlers]
    for mark, _ in marks:  # evidence that a handler ran, never itself required
        rw.plan.slots[mark] = replace(rw.plan.slots[mark], guard=mark)
    after = {k: v for k, v in env.items() if k not in _binding_counts(stmt)}  # body may rebind
    hidden = 0
    try:
        rw.unless = (*outer[1], *(m for m, _ in marks))
        body, n = _hide_block(stmt.body, env, rw)
        hidden += n
        orelse, n = _hide_block(stmt.orelse, after, rw)
        hidden += n
        rw.unless = outer[1]
        handlers = []
        for handler, (mark, mark_stmt) in zip(stmt.handlers, marks, strict=True):
            rw.guard = mark
            block, n = _hide_block(handler.body, after, rw)
            hidden += n
            new_handler = copy.copy(handler)
            new_handler.body = [mark_stmt, *block]
            handlers.append(new_handler)
        rw.guard = outer[0]
        final, n = _hide_block(stmt.finalbody, after, rw)
        hidden += n
    finally:
        rw.guard, rw.unless = outer
    if not hidden:  # (the markers alone are not counted)
        _forget(rw.plan, before)
        return None
    new = copy.copy(stmt)
    new.body, new.handlers, new.orelse, new.finalbody = body, handlers, orelse, final
    return [new]


def _mentions_xfail(nodes: list[ast.expr]) -> bool:
    return any(w in ast.unparse(n) for n in nodes for w in ("xfail", "expectedFailure"))


@dataclass(frozen=True)
class _Module:
    """What a test module's imports say its names are: `imports` maps each name the module
    binds exactly once by an import to what it imports (`mock` -> `unittest.mock`); `counts`
    is `_binding_counts` of the module."""

    imports: dict[str, str]
    counts: Counter[str]
    testcases: frozenset[str]  # its classes pytest runs as `unittest.TestCase`s (see below)
    # see "assertion helpers": module-level ones by name, test classes' methods by (class, name)
    helpers: dict[str | tuple[str, str], _Helper] = field(default_factory=dict)
    called: set[str | tuple[str, str]] = field(default_factory=set)  # now called by their copy

    @classmethod
    def of(cls, tree: ast.Module, env: dict[str, Any] | None = None) -> _Module:
        counts = _binding_counts(tree)
        imports: dict[str, str] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.Import):
                for a in stmt.names:
                    imports[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0]
                    )
            elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
                for a in stmt.names:
                    imports[a.asname or a.name] = f"{stmt.module}.{a.name}"
        imports = {k: v for k, v in imports.items() if counts[k] == 1}
        testcases = _testcases(tree, imports, counts)
        helpers: dict[str | tuple[str, str], _Helper] = {}
        if env is not None:
            helpers.update(_helpers(tree, env, counts))
            helpers.update(_method_helpers(tree, env, testcases))
        return cls(imports, counts, testcases, helpers)

    def qualified(self, written: str) -> str | None:
        """`mock.patch.object` -> `unittest.mock.patch.object`; a builtin stays itself; None
        for a name the module binds otherwise."""
        head, dot, rest = written.partition(".")
        if head in self.imports:
            return self.imports[head] + dot + rest
        return written if self.counts[head] == 0 and hasattr(builtins, head) else None


# `with` managers whose `__exit__` never suppresses an exception: a body under them runs to its
# end or the test fails, so its assertions can be required like direct ones
_NEVER_SUPPRESS = {
    "open", "io.open", "io.StringIO", "io.BytesIO", "pytest.warns", "pytest.deprecated_call",
    "warnings.catch_warnings", "tempfile.TemporaryDirectory", "tempfile.NamedTemporaryFile",
    "tempfile.TemporaryFile", "tempfile.SpooledTemporaryFile", "contextlib.redirect_stdout",
    "contextlib.redirect_stderr", "contextlib.nullcontext", "decimal.localcontext",
    *(f"{m}.patch{a}" for m in ("unittest.mock", "mock") for a in ("", ".object", ".dict", ".multiple")),
}  # fmt: skip
_FIXTURE_MANAGERS = {"monkeypatch.context", "caplog.at_level", "capsys.disabled", "capfd.disabled"}
_TESTCASE_MANAGERS = {"assertWarns", "assertWarnsRegex", "assertLogs", "assertNoLogs"}
_TESTCASE_BASES = {"unittest.TestCase", "unittest.IsolatedAsyncioTestCase",
                   "unittest.case.TestCase"}  # fmt: skip


def _testcases(tree: ast.Module, imports: dict[str, str], counts: Counter[str]) -> frozenset[str]:
    """Module-level classes pytest runs as `unittest.TestCase`s whose assert methods are
    unittest's own: every base is unittest's TestCase or such a class of this module, and no
    class on the way defines a name of `_UNITTEST` (an override would change the meaning).
    A base imported from elsewhere (Django's TestCase, a project mixin) may override them.
    A module that names `failureException` anywhere (a class attribute, `self.failureException
    = KeyError` in `setUp`) has none: its assertions and `self.fail` raise that class, not the
    `AssertionError` the handler analysis (`_catches_assertion`, `_fail_stmt`) reasons about."""
    for node in ast.walk(tree):
        named = getattr(node, "id", None) or getattr(node, "attr", None)
        if named == "failureException" or getattr(node, "value", None) == "failureException":
            return frozenset()
    classes = {s.name: s for s in tree.body if isinstance(s, ast.ClassDef)}
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, cls in classes.items():
            if name in found or cls.keywords or counts[name] != 1:
                continue
            own = {getattr(t, "id", None) for s in cls.body for t in getattr(s, "targets", [])}
            own |= {
                s.name for s in cls.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
            if own & {*_UNITTEST, *_TESTCASE_MANAGERS, "subTest"} or not cls.bases:
                continue
            ok = True
            for base in cls.bases:
                text = ast.unparse(base)
                head, dot, rest = text.partition(".")
                qual = imports[head] + dot + rest if head in imports else None
                if qual not in _TESTCASE_BASES and text not in found:
                    ok = False
            if ok:
                found.add(name)
                changed = True
    return frozenset(found)


def _test_functions(
    tree: ast.Module, mod: _Module
) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    """(qualified name, node, is a TestCase method) of module-level `test*` functions, `test*`
    methods of module-level `Test*` classes and of `unittest.TestCase` classes of any name:
    the functions pytest collects by default. Tests marked xfail (on the function, its class or
    the module's `pytestmark`; `unittest.expectedFailure`) are left alone: their failing
    assertion is what makes them xfailed, and a hidden one would not raise."""
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    marks = [s.value for s in tree.body if isinstance(s, ast.Assign)
             and any(getattr(t, "id", None) == "pytestmark" for t in s.targets)]  # fmt: skip
    if _mentions_xfail(marks):
        return []
    found = []
    for stmt in tree.body:
        if isinstance(stmt, funcs) and stmt.name.startswith("test"):
            found.append((stmt.name, stmt, False))
        elif isinstance(stmt, ast.ClassDef) and (
            stmt.name.startswith("Test") or stmt.name in mod.testcases
        ):
            class_marks = [s.value for s in stmt.body if isinstance(s, ast.Assign)
                           and any(getattr(t, "id", None) == "pytestmark" for t in s.targets)]  # fmt: skip
            if _mentions_xfail(stmt.decorator_list + class_marks):
                continue
            unit = stmt.name in mod.testcases
            found += [(f"{stmt.name}::{s.name}", s, unit) for s in stmt.body
                      if isinstance(s, funcs) and s.name.startswith("test")]  # fmt: skip
    return [(name, fn, u) for name, fn, u in found if not _mentions_xfail(fn.decorator_list)]


def _rewrite(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    test: str,
    plan: HiddenExpectations,
    mod: _Module,
    unit: bool = False,
) -> _Rewrite:
    loads = Counter(
        n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    )
    local = _binding_counts(fn)
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    selfname = params[0] if unit and params and local[params[0]] == 1 else None
    parts = test.split("::")  # `file::Class::test` for a method
    static = any(w in ast.unparse(d) for d in fn.decorator_list for w in ("static", "classmethod"))
    cls = parts[1] if len(parts) == 3 and not static else None
    managers = set()
    for node in ast.walk(fn):
        if not isinstance(node, (ast.With, ast.AsyncWith)):
            continue
        for item in node.items:
            func = getattr(item.context_expr, "func", None)
            written = ast.unparse(func) if func is not None else ""
            head, _, attr = written.partition(".")
            fixture = (
                written in _FIXTURE_MANAGERS and head in params and local[head] == 1
                and mod.counts[head] == local[head]  # not also a module name (a fixture there)
            )  # fmt: skip
            testcase = selfname is not None and head == selfname and attr in _TESTCASE_MANAGERS
            testcase = testcase or selfname is not None and head == selfname and attr == "subTest"
            if (
                fixture
                or testcase
                or (local[head] == 0 and mod.qualified(written) in _NEVER_SUPPRESS)
            ):
                managers.add(written)
    return _Rewrite(
        test,
        plan,
        loads,
        dynamic=bool(set(loads) & _DYNAMIC),
        selfname=selfname,
        managers=frozenset(managers),
        mod=mod,
        local=local,
        cls=cls,
        owner=params[0] if cls is not None and params and local[params[0]] == 1 else None,
    )


def _hide_in_function(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    test: str,
    plan: HiddenExpectations,
    env: dict[str, Any],
    mod: _Module,
    unit: bool,
) -> int:
    """Rewrite the test function's body in place; the number of slots it got."""
    body, hidden = _hide_block(fn.body, env, _rewrite(fn, test, plan, mod, unit))
    fn.body = body
    return hidden


# ---- unittest.TestCase assertions ----------------------------------------------------------------
#
# In a class pytest runs as a `unittest.TestCase` (`_testcases`), `self.assertEqual(f(x), 7)` and
# its kin say the same as an `assert`: each maps to the comparison unittest makes (its own code:
# `first == second`, `member in container`, `expr1 is expr2`, `not expr`, ...) and goes through
# `_classify` like one. A `msg` is dropped (it may quote the expected value) when evaluating it
# cannot do anything (names, attributes, constants, f-strings of those).

_CMP = {"Equal": ast.Eq, "NotEqual": ast.NotEq, "Less": ast.Lt, "LessEqual": ast.LtE,
        "Greater": ast.Gt, "GreaterEqual": ast.GtE, "In": ast.In, "NotIn": ast.NotIn,
        "Is": ast.Is, "IsNot": ast.IsNot}  # fmt: skip
# method -> (positional parameters before msg, how to build the comparison)
_UNITTEST: dict[str, tuple[int, Any]] = {
    **{f"assert{k}": (2, op) for k, op in _CMP.items()},
    # typed forms: unittest checks the type, then `==`; a value of another type is unequal
    # to the literal anyway (the log keeps list/tuple/dict/set/str apart)
    **{f"assert{k}Equal": (2, ast.Eq) for k in ("List", "Tuple", "Dict", "Set", "MultiLine")},
    "assertTrue": (1, "true"), "assertFalse": (1, "false"),
    "assertIsNone": (1, ast.Is), "assertIsNotNone": (1, ast.IsNot),
    "assertAlmostEqual": (2, "almost"), "assertNotAlmostEqual": (2, "not almost"),
}  # fmt: skip
_INERT = (ast.Name, ast.Attribute, ast.Constant, ast.JoinedStr, ast.FormattedValue, ast.Load,
          ast.Subscript, ast.Tuple)  # fmt: skip


def _inert(node: ast.expr) -> bool:
    return all(isinstance(n, _INERT) for n in ast.walk(node))


def _unittest_test(
    call: ast.Call, method: str, env: dict[str, Any]
) -> tuple[ast.expr, str, Any, bool] | None:
    """(subject, operator, expected, negated) for a TestCase assertion, like `_classify`."""
    given = _unittest_given(call, method)
    if given is None:
        return None
    how = _UNITTEST[method][1]
    if how in ("almost", "not almost"):
        return _almost_test(given["first"], given["second"], given, env, how == "not almost")
    return _classify(_unittest_shape(method, given), env)


def _unittest_given(call: ast.Call, method: str) -> dict[str, ast.expr] | None:
    """The call's arguments by unittest's parameter names; None for a call unittest would
    reject or whose `msg` may do something when evaluated."""
    arity, how = _UNITTEST[method]
    names = ["first", "second"][:arity] + (["places"] if "almost" in str(how) else []) + ["msg"]
    if len(call.args) > len(names) or any(isinstance(a, ast.Starred) for a in call.args):
        return None
    given = dict(zip(names, call.args, strict=False))
    for kw in call.keywords:
        if kw.arg is None or kw.arg in given:
            return None
        given[kw.arg] = kw.value
    allowed = {*names, "delta"} if "almost" in str(how) else set(names)
    if not set(given) <= allowed or not set(names[:arity]) <= set(given):
        return None
    if "msg" in given and not _inert(given["msg"]):
        return None
    return given


def _unittest_shape(method: str, given: dict[str, ast.expr]) -> ast.expr:
    """The expression whose truth the (non-almost) TestCase assertion checks: `first == second`,
    `not expr`, `expr is None`, ..."""
    how, first = _UNITTEST[method][1], given["first"]
    if how == "true":
        return first
    if how == "false":
        return ast.UnaryOp(ast.Not(), first)
    if _UNITTEST[method][0] == 1:
        return ast.Compare(first, [how()], [ast.Constant(None)])
    return ast.Compare(first, [how()], [given["second"]])


def _almost_test(
    first: ast.expr,
    second: ast.expr,
    given: dict[str, ast.expr],
    env: dict[str, Any],
    negated: bool,
) -> tuple[ast.expr, str, Any, bool] | None:
    """`assertAlmostEqual(x, 0.3, places=3)`: one side a number the source fixes, `places` an
    int and `delta` a non-negative number the source fixes (not both: unittest raises)."""
    folded = [_fold_plain(side, env) for side in (first, second)]
    fixed = [ok for ok, _ in folded]
    if fixed.count(True) != 1 or type(folded[fixed.index(True)][1]) not in (int, float):
        return None
    k = fixed.index(True)
    extra = {}
    for key, kind in (("places", (int,)), ("delta", (int, float))):
        if key in given:
            ok, v = _fold_plain(given[key], env)
            if not ok or type(v) not in kind or key == "delta" and not v >= 0:
                return None
            extra[key] = v
    if len(extra) == 2:
        return None
    subject = (first, second)[1 - k]
    return subject, "almost", Almost(folded[k][1], extra.get("places"), extra.get("delta")), negated


def _slot_call(
    subject: ast.expr, op: str, expected: Any, negated: bool, rw: _Rewrite, at: ast.stmt
) -> ast.stmt:
    """A new slot for the assertion and the statement logging its subject."""
    slot = str(len(rw.plan.slots))
    rw.plan.slots[slot] = rw.expectation(op, expected, negated)
    args = [subject, ast.Constant(slot)]
    row = [ast.keyword("row", ast.Name(ROW_PARAM, ast.Load()))] if rw.row else []
    return ast.copy_location(ast.Expr(ast.Call(ast.Name(EXPECT_HELPER, ast.Load()), args, row)), at)


def _hide_unittest(stmt: ast.Expr, env: dict[str, Any], rw: _Rewrite) -> list[ast.stmt] | None:
    """`self.assertEqual(f(x), 7)` in a TestCase method -> a helper call; None for others."""
    call = stmt.value
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == rw.selfname
        and call.func.attr in _UNITTEST
    ):
        return None
    got = _unittest_test(call, call.func.attr, env)
    if got is None or got[1] == "any":
        return None
    return [_slot_call(*got, rw, stmt)]


# ---- assertion helpers ---------------------------------------------------------------------------
#
# `def check(x, want): assert f(x) == want`, called from tests as `check(3, 9)`: the expected value
# is an argument at each call site. A module-level helper (bound once, no decorators, plain
# parameters) gets a copy (`_hillclimb_h_check`) whose direct assertions (before anything that
# may `return`) log their subject under the slot its caller passes; an `expected` parameter, one
# the helper reads only as one side of such a comparison, is passed as None instead of its value.
# A call that is a direct statement of a test body (so its slots can be required), whose expected
# arguments the source fixes, calls the copy and gets a slot per assertion judged against its own
# argument; any other call keeps calling the helper as written (and its values stay readable).

SLOT_PARAM, ROW_KEYWORD = "_hillclimb_slot", "_hillclimb_row"
_SUBJECT = "_hillclimb_subject"  # stands for the subject when a call site's value is classified


@dataclass
class _Helper:
    """A helper's rewrite: its node and copy, its parameters, which are `expected`, and per
    hidden assertion (in order) either the comparison with the subject replaced by `_SUBJECT`
    (to classify with the call site's argument) or the expectation itself (a fixed value)."""

    node: ast.FunctionDef
    copy: ast.FunctionDef
    params: list[str]
    expected: set[str]
    parts: list[tuple[str, ast.expr] | tuple[str, Expectation]]


def _param_side(part: ast.expr, candidates: set[str]) -> tuple[str, ast.expr, ast.expr] | None:
    """(parameter, subject, the part with the subject replaced by `_SUBJECT`) for `subj OP p`,
    `p OP subj` or `not (...)` of one, `p` a candidate and `subj` reading none."""
    negated = isinstance(part, ast.UnaryOp) and isinstance(part.op, ast.Not)
    comp = part.operand if negated else part  # type: ignore[attr-defined]
    if not isinstance(comp, ast.Compare) or len(comp.ops) != 1 or type(comp.ops[0]) not in _AST_OPS:
        return None
    sides = [comp.left, comp.comparators[0]]
    for k in (0, 1):
        param, subject = sides[k], sides[1 - k]
        if isinstance(param, ast.Name) and param.id in candidates:
            if {n.id for n in ast.walk(subject) if isinstance(n, ast.Name)} & candidates:
                return None
            new_sides = (
                [ast.Name(_SUBJECT, ast.Load()), param]
                if k
                else [param, ast.Name(_SUBJECT, ast.Load())]
            )
            shape: ast.expr = ast.Compare(new_sides[0], comp.ops, [new_sides[1]])
            return param.id, subject, ast.UnaryOp(ast.Not(), shape) if negated else shape
    return None


def _helper(fn: ast.FunctionDef, env: dict[str, Any], method: str | None = None) -> _Helper | None:
    """`fn`'s rewrite as a helper (see the section comment); None when it hides nothing.
    `method`: `fn` is a method of a test class (`plain`, or `unit` for a `unittest.TestCase`
    whose assert methods are unittest's: its `self.assertEqual` and kin are read too); its
    first parameter is `self`, which the call site does not pass."""
    args = fn.args
    if fn.decorator_list or args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg:
        return None
    params = [a.arg for a in args.args]
    local = _binding_counts(fn)
    selfname = None
    if method is not None:
        if not params or local[params[0]] != 1:
            return None  # no `self`, or `self` rebound
        selfname, params = params[0], params[1:]
    words = {getattr(n, "id", None) or getattr(n, "attr", None) for n in ast.walk(fn)}
    if words & _DYNAMIC or {SLOT_PARAM, ROW_KEYWORD, _SUBJECT} & set(local):
        return None
    if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in ast.walk(fn)):
        return None  # a generator: calling it runs none of its assertions
    loads = Counter(
        n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    )
    henv = {k: v for k, v in env.items() if local[k] == 0}
    # the direct assertions before anything that may return, split into conjuncts
    direct: list[tuple[int, list[ast.expr]]] = []
    for i, stmt in enumerate(fn.body):
        if isinstance(stmt, ast.Assert):
            direct.append((i, _conjuncts(stmt.test)))
        elif method == "unit" and (shape := _self_assert(stmt, selfname)) is not None:
            direct.append((i, [shape]))
        elif _escapes([stmt]):
            break
    # expected: read only as a whole side of those comparisons (`f(x) == want`), never beside
    # another expected one (`a == b`: one of them is the subject)
    bare: Counter[str] = Counter(
        side.id for _, parts in direct for part in parts
        for comp in [part.operand if isinstance(part, ast.UnaryOp) and isinstance(part.op, ast.Not) else part]
        if isinstance(comp, ast.Compare) and len(comp.ops) == 1
        for side in (comp.left, comp.comparators[0]) if isinstance(side, ast.Name)
    )  # fmt: skip
    expected = {p for p in params if local[p] == 1 and bare[p] and bare[p] == loads[p]}
    while True:
        used = Counter(got[0] for _, ps in direct for p in ps if (got := _param_side(p, expected)))
        kept = {p for p in expected if used[p] == loads[p]}
        if kept == expected:
            break
        expected = kept
    copy_fn = copy.deepcopy(fn)
    copy_fn.name = f"_hillclimb_h_{fn.name}"
    hidden: list[tuple[str, ast.expr] | tuple[str, Expectation]] = []
    for i, parts in direct:
        out: list[ast.stmt] = []
        for part in parts:
            got = _param_side(part, expected)
            subject: ast.expr | None = None
            if got:
                hidden.append(("param", got[2]))
                subject = got[1]
            elif not {n.id for n in ast.walk(part) if isinstance(n, ast.Name)} & expected:
                fixed = _classify(part, henv)
                if fixed is not None:
                    hidden.append(("fixed", Expectation("", *fixed[1:])))
                    subject = fixed[0]
            if subject is None:
                kept = fn.body[i] if isinstance(fn.body[i], ast.Expr) else ast.Assert(part, None)
                out.append(ast.copy_location(kept, fn.body[i]))  # (a TestCase call as written)
                continue
            slot = ast.BinOp(
                ast.Name(SLOT_PARAM, ast.Load()), ast.Add(), ast.Constant(f".{len(hidden) - 1}")
            )
            row = ast.keyword("row", ast.Name(ROW_KEYWORD, ast.Load()))
            call = ast.Call(ast.Name(EXPECT_HELPER, ast.Load()), [subject, slot], [row])
            out.append(ast.copy_location(ast.Expr(call), fn.body[i]))
        copy_fn.body[i] = out  # type: ignore[call-overload]
    if not hidden:
        return None
    copy_fn.body = [s for b in copy_fn.body for s in (b if isinstance(b, list) else [b])]
    copy_fn.args.args += [ast.arg(SLOT_PARAM), ast.arg(ROW_KEYWORD)]
    copy_fn.args.defaults += [ast.Constant(None), ast.Constant(None)]
    return _Helper(fn, copy_fn, params, expected, hidden)


def _self_assert(stmt: ast.stmt, selfname: str | None) -> ast.expr | None:
    """What `self.assertEqual(a, b)` (and kin, not the almost ones) as a statement checks:
    `a == b`; None for any other statement."""
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == selfname
        and call.func.attr in _UNITTEST
        and "almost" not in str(_UNITTEST[call.func.attr][1])
    ):
        return None
    given = _unittest_given(call, call.func.attr)
    return None if given is None else _unittest_shape(call.func.attr, given)


def _method_helpers(
    tree: ast.Module, env: dict[str, Any], testcases: frozenset[str]
) -> dict[tuple[str, str], _Helper]:
    """Helper methods of test classes (`self._check(3, 9)`), keyed (class, method): methods
    not named `test*` of module-level `Test*` classes and unittest TestCases, defined once in
    their class, of a class no class of the module derives from (a subclass could override the
    helper its inherited tests call)."""
    classes = [s for s in tree.body if isinstance(s, ast.ClassDef)]
    based = {ast.unparse(b) for c in classes for b in c.bases}
    found = {}
    for cls in classes:
        if not (cls.name.startswith("Test") or cls.name in testcases) or cls.name in based:
            continue
        own = Counter(
            n for s in cls.body for n in (
                [s.name] if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                else _binding_counts(s)
            )
        )  # fmt: skip
        for stmt in cls.body:
            if (
                isinstance(stmt, ast.FunctionDef)
                and not stmt.name.startswith("test")
                and own[stmt.name] == 1
                and own[f"_hillclimb_h_{stmt.name}"] == 0
            ):
                kind = "unit" if cls.name in testcases else "plain"
                helper = _helper(stmt, env, method=kind)
                if helper is not None:
                    found[(cls.name, stmt.name)] = helper
    return found


def _helpers(tree: ast.Module, env: dict[str, Any], counts: Counter[str]) -> dict[str, _Helper]:
    """The module's helpers that can hide something (not test functions: pytest runs those)."""
    found = {}
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.FunctionDef)
            and not stmt.name.startswith("test")
            and counts[stmt.name] == 1
            and counts[f"_hillclimb_h_{stmt.name}"] == 0
        ):
            helper = _helper(stmt, env)
            if helper is not None:
                found[stmt.name] = helper
    return found


def _hide_helper_call(stmt: ast.Expr, env: dict[str, Any], rw: _Rewrite) -> list[ast.stmt] | None:
    """`check(3, 9)` as a direct statement of a test body -> `_hillclimb_h_check(3, None,
    _hillclimb_slot='4')`, the slots `4.0`, ... required; None when it is not such a call or an
    expected argument is not one the source fixes."""
    call = stmt.value
    if not isinstance(call, ast.Call) or rw.mod is None:
        return None
    func = call.func
    key: str | tuple[str, str] | None = None
    if isinstance(func, ast.Name) and not rw.local[func.id]:
        key = func.id
    elif (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == rw.owner
        and rw.cls is not None
    ):
        key = (rw.cls, func.attr)  # `self._check(3, 9)`: a helper method of the test's class
    helper = rw.mod.helpers.get(key) if key is not None else None  # type: ignore[arg-type]
    if helper is None or any(isinstance(a, ast.Starred) for a in call.args):
        return None
    if len(call.args) > len(helper.params) or any(k.arg is None for k in call.keywords):
        return None
    given = dict(zip(helper.params, call.args, strict=False))
    for kw in call.keywords:
        if kw.arg in given or kw.arg not in helper.params:
            return None
        given[kw.arg] = kw.value
    if not helper.expected <= set(given):
        return None
    exps: list[Expectation] = []
    for kind, what in helper.parts:
        if kind == "fixed":
            exps.append(rw.expectation(what.op, what.expected, what.negated))  # type: ignore[union-attr]
            continue
        shape = copy.deepcopy(what)  # the parameter's place takes the call site's argument
        comp = shape.operand if isinstance(shape, ast.UnaryOp) else shape
        if isinstance(comp.left, ast.Name) and comp.left.id in helper.expected:
            comp.left = given[comp.left.id]
        else:
            comp.comparators = [given[comp.comparators[0].id]]
        got = _classify(shape, env)
        if got is None or not (isinstance(got[0], ast.Name) and got[0].id == _SUBJECT):
            return None
        exps.append(rw.expectation(*got[1:]))
    base = str(len(rw.plan.slots))
    for k, exp in enumerate(exps):
        rw.plan.slots[f"{base}.{k}"] = exp
    new = copy.copy(call)
    new.func = (
        ast.Name(helper.copy.name, ast.Load())
        if isinstance(key, str)
        else ast.Attribute(ast.Name(rw.owner, ast.Load()), helper.copy.name, ast.Load())
    )
    new.args = [
        ast.Constant(None) if p in helper.expected else a
        for p, a in zip(helper.params, call.args, strict=False)
    ]
    new.keywords = [
        ast.keyword(k.arg, ast.Constant(None)) if k.arg in helper.expected else k
        for k in call.keywords
    ] + [ast.keyword(SLOT_PARAM, ast.Constant(base))]
    if rw.row:
        new.keywords.append(ast.keyword(ROW_KEYWORD, ast.Name(ROW_PARAM, ast.Load())))
    rw.mod.called.add(key)  # type: ignore[arg-type]
    return [ast.copy_location(ast.Expr(new), stmt)]


# ---- parametrize tables --------------------------------------------------------------------------
#
# `@pytest.mark.parametrize("inp,want", [(1, 2), (3, 4)])` puts the expected values in the
# decorator, where a reader finds them (in the file, or in the function's `pytestmark`), and in
# the test ids (`test_f[1-2]`, also in `PYTEST_CURRENT_TEST`). So the rewrite folds the body once
# per row (its columns known), and when every row gives the same code, replaces the table by the
# columns something still reads plus a row number (`ROW_PARAM`), the slots being per row, and the
# ids by opaque ones (`_hcrow7_`) that `HiddenExpectations.original_id` maps back to the id pytest
# would have made (its rule, for the values whose id is their text: numbers, None, booleans,
# plain ASCII strings; any other value is `<argname><index>`). Tables whose ids the grader cannot
# be sure of (duplicates, `pytest.param` with marks, `indirect`, several parametrize decorators on
# one test, escaped strings) are left as they are.

_PRINTABLE_ID = re.compile(r"[ -\[\]-~]*")  # printable ASCII without a backslash


def _is_parametrize(deco: ast.expr) -> bool:
    return (
        isinstance(deco, ast.Call)
        and isinstance(deco.func, ast.Attribute)
        and deco.func.attr == "parametrize"
    )


def _param_id(value: Any, argname: str, idx: int) -> str | None:
    """pytest's id for one value (`IdMaker._idval`); None where the grader cannot be sure."""
    if type(value) is str:
        return value if _PRINTABLE_ID.fullmatch(value) else None
    if value is None or type(value) in (bool, int, float, complex):
        return str(value)
    if type(value) is bytes:
        return None
    return f"{argname}{idx}"


def _param_table(
    deco: ast.Call, env: dict[str, Any]
) -> tuple[list[str], list[tuple[Any, ...]], list[str]] | None:
    """(argnames, rows, pytest's ids) of a parametrize decorator whose table the source fixes."""
    if len(deco.args) != 2 or any(k.arg != "ids" for k in deco.keywords):
        return None
    ok, names = _fold_plain(deco.args[0], env)
    if ok and type(names) is str:
        names = [n.strip() for n in names.split(",") if n.strip()]
    if (
        not ok
        or type(names) not in (list, tuple)
        or not names
        or not all(type(n) is str for n in names)
    ):
        return None
    table = deco.args[1]
    items = table.elts if isinstance(table, (ast.List, ast.Tuple)) else None
    explicit: list[str | None] = []
    rows: list[tuple[Any, ...]] = []
    for item in items if items is not None else []:
        given = None
        if (
            isinstance(item, ast.Call)
            and getattr(item.func, "attr", getattr(item.func, "id", None)) == "param"
        ):
            if any(k.arg != "id" for k in item.keywords) or any(
                isinstance(a, ast.Starred) for a in item.args
            ):
                return None
            if item.keywords:
                ok, given = _fold_plain(item.keywords[0].value, env)
                if not ok or (given is not None and type(given) is not str):
                    return None
            values = [_fold_plain(a, env) for a in item.args]
            if not all(ok for ok, _ in values):
                return None
            row = tuple(v for _, v in values)
        else:
            ok, value = _fold_plain(item, env)
            if not ok:
                return None
            if len(names) == 1:
                row = (value,)
            elif type(value) in (list, tuple):
                row = tuple(value)
            else:
                return None
        if len(row) != len(names):
            return None
        rows.append(row)
        explicit.append(given)
    if items is None:
        got = _fold_rows(table, env)
        if got is None:
            return None
        for value in got:
            row = (
                (value,)
                if len(names) == 1
                else tuple(value)
                if type(value) in (list, tuple)
                else ()
            )
            if len(row) != len(names):
                return None
            rows.append(row)
            explicit.append(None)
    if not rows or len(rows) > _MAX_ROWS:
        return None
    if deco.keywords:
        ok, ids_given = _fold_plain(deco.keywords[0].value, env)
        if not ok or type(ids_given) not in (list, tuple) or len(ids_given) != len(rows):
            return None
        explicit = [e if e is not None else i for e, i in zip(explicit, ids_given, strict=True)]
    ids: list[str] = []
    for idx, (row, given) in enumerate(zip(rows, explicit, strict=True)):
        parts = (
            [given]
            if given is not None
            else [_param_id(v, n, idx) for v, n in zip(row, names, strict=True)]
        )
        if any(type(p) is not str or not _PRINTABLE_ID.fullmatch(p) for p in parts):
            return None
        ids.append("-".join(parts))  # type: ignore[arg-type]
    if len(set(ids)) != len(ids):
        return None
    return list(names), rows, ids


def _hide_parametrized(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    test: str,
    plan: HiddenExpectations,
    env: dict[str, Any],
    mod: _Module,
) -> int | None:
    """Rewrite a parametrized test (see the section comment); None when it is not one the
    grader rewrites this way (then its body is rewritten like any other)."""
    decos = [d for d in fn.decorator_list if _is_parametrize(d)]
    if len(decos) != 1:
        return None
    deco = decos[0]
    table = _param_table(deco, env)  # type: ignore[arg-type]
    args = fn.args
    if table is None or args.defaults or args.vararg or args.kwarg:
        return None
    names, rows, ids = table
    params = [a.arg for a in args.args]
    if not set(names) <= set(params) or ROW_PARAM in params or args.posonlyargs:
        return None
    bodies, risky = [], _changeable(fn)
    for row in rows:
        sub = HiddenExpectations(plan.log)
        rw = _rewrite(fn, test, sub, mod)
        rw.row = True
        body, _ = _hide_block(
            copy.deepcopy(fn.body), {**env, **_fixed(dict(zip(names, row, strict=True)), risky)}, rw
        )
        bodies.append((body, sub))
    shapes = {ast.dump(ast.Module(body, [])) for body, _ in bodies}
    if len(shapes) != 1 or not bodies[0][1].slots:
        return None  # the rows do not share one rewritten body, or nothing is hidden
    body = bodies[0][0]
    read = {
        n.id
        for s in body
        for n in ast.walk(s)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    read |= {
        n.id
        for d in fn.decorator_list
        if d is not deco
        for n in ast.walk(d)
        if isinstance(n, ast.Name)
    }
    keep = [i for i, n in enumerate(names) if n in read]
    try:
        new_rows = [ast.Tuple([*(_literal_node(row[i]) for i in keep), ast.Constant(r)], ast.Load())
                    for r, row in enumerate(rows)]  # fmt: skip
    except _NotConstant:
        return None
    prefix = f"p{len(plan.slots)}_"
    for node in (n for s in body for n in ast.walk(s)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == EXPECT_HELPER:
            node.args[1] = ast.Constant(prefix + node.args[1].value)  # type: ignore[attr-defined]
        for kw in getattr(node, "keywords", []) if isinstance(node, ast.Call) else []:
            if kw.arg == SLOT_PARAM:  # a helper's copy called with its slots
                kw.value = ast.Constant(prefix + kw.value.value)  # type: ignore[attr-defined]
    tokens = []
    for r, (row_id, (_, sub)) in enumerate(zip(ids, bodies, strict=True)):
        token = f"_hcrow{len(plan.renamed)}_"
        plan.renamed[token] = row_id
        tokens.append(ast.Constant(token))
        for slot, exp in sub.slots.items():
            plan.slots[f"{prefix}{slot}@{r}"] = replace(
                exp,
                test=f"{test}[{row_id}]",
                guard=None if exp.guard is None else f"{prefix}{exp.guard}@{r}",
                unless=tuple(f"{prefix}{u}@{r}" for u in exp.unless),
            )
    deco.args = [
        ast.List([ast.Constant(names[i]) for i in keep] + [ast.Constant(ROW_PARAM)], ast.Load()),
        ast.List(new_rows, ast.Load()),  # type: ignore[arg-type]
    ]  # type: ignore[attr-defined]
    deco.keywords = [ast.keyword("ids", ast.List(tokens, ast.Load()))]  # type: ignore[attr-defined]
    dropped = {names[i] for i in range(len(names)) if i not in keep}
    args.args = [a for a in args.args if a.arg not in dropped] + [ast.arg(ROW_PARAM)]
    fn.body = body
    return sum(len(sub.slots) for _, sub in bodies)


def _prelude_at(tree: ast.Module) -> int:
    """Where the helper goes: after the module docstring and `from __future__` imports."""
    at = 0
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        at = 1
    while (
        at < len(body) and isinstance(body[at], ast.ImportFrom) and body[at].module == "__future__"
    ):
        at += 1
    return at


def hide_in_source(
    source: str,
    rel: str,
    plan: HiddenExpectations,
    *,
    exported: bool = False,
    rename_ids: bool = True,
) -> str | None:
    """`source` (the test file at ws-relative `rel`) with its hideable assertions rewritten and
    the helper added; None when there is nothing to hide or it does not parse (left as it is:
    pytest then reports the file's own error). `exported`: another test file imports this one,
    so its module-level names stay; `rename_ids`: parametrize ids may be replaced (not when the
    test command selects tests by id)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    env, consts = _module_env(tree, exported)
    mod = _Module.of(tree, env)
    hidden = 0
    for name, fn, unit in _test_functions(tree, mod):
        test = f"{rel}::{name}"
        got = _hide_parametrized(fn, test, plan, env, mod) if rename_ids and not unit else None
        hidden += got if got is not None else _hide_in_function(fn, test, plan, env, mod, unit)
    if not hidden:
        return None
    for key in mod.called:  # each helper's copy goes right after it (a method's in its class)
        helper = mod.helpers[key]
        body = tree.body
        if isinstance(key, tuple):
            body = next(
                s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == key[0]
            ).body
        at = next(i for i, st in enumerate(body) if st is helper.node)
        body.insert(at + 1, helper.copy)
    # a constant nothing reads any more (its uses were all hidden) leaves the file
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    tree.body = [
        s for s in tree.body
        if not (isinstance(s, (ast.Assign, ast.AnnAssign))
                and {t.id for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
                     if isinstance(t, ast.Name)} & (consts - read))
    ]  # fmt: skip
    prelude = ast.parse(_PRELUDE.replace("LOG_PATH", repr(str(plan.log)))).body
    at = _prelude_at(tree)
    tree.body[at:at] = prelude
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def hide_expectations(
    ws: Path, files: list[Path], log: Path, *, rename_ids: bool = True
) -> HiddenExpectations:
    """Rewrite the test `files` (paths under `ws`) so their expected values leave the run; the
    returned plan holds them for `judge_expectations`. Call after the hidden tests are installed
    and before the run; `log` must be writable inside the sandbox (it lies in `ws`).
    `rename_ids=False` when the test command names test ids (parametrize ids must stay)."""
    plan = HiddenExpectations(log)
    sources: dict[Path, str] = {}
    for path in files:
        try:
            sources[path] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not UTF-8: the runner reports it; there is nothing for us to parse
    for path, source in sources.items():
        rel = path.relative_to(ws).as_posix()
        if path.suffix in (".js", ".cjs"):
            new = hide_in_js_source(source, rel, plan)
        else:
            word = re.compile(rf"\b{re.escape(path.stem)}\b")
            exported = any(word.search(s) for p, s in sources.items() if p != path)
            new = hide_in_source(source, rel, plan, exported=exported, rename_ids=rename_ids)
        if new is not None:
            path.write_text(new, encoding="utf-8")
    return plan


def _decode(tagged: Any) -> Any:
    """The value `_hillclimb_encode` recorded, rebuilt from builtin types only."""
    kind = tagged[0]
    if kind == "None":
        return None
    value = tagged[1]
    simple = {"bool": bool, "str": str, "int": int, "float": float}
    if kind in simple:
        got = simple[kind](value)
        if kind in ("bool", "str") and type(value) is not simple[kind]:
            raise ValueError("bad record")
        return got
    if kind == "complex":
        return complex(float(value[0]), float(value[1]))
    if kind == "bytes":
        return bytes.fromhex(value)
    dates = {"date": datetime.date, "datetime": datetime.datetime, "time": datetime.time}
    if kind in dates:
        return dates[kind].fromisoformat(str(value))
    if kind == "timedelta":
        return datetime.timedelta(int(value[0]), int(value[1]), int(value[2]))
    containers = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}
    if kind in containers:
        return containers[kind](_decode(v) for v in value)
    if kind == "dict":
        return {_decode(k): _decode(v) for k, v in value}
    raise ValueError(f"unknown kind {kind!r}")


def _approx_scalar(
    actual: Any, expected: int | float, rel: float | None, abs_: float | None
) -> bool:
    """pytest's `ApproxScalar.__eq__` for a number: equal, or within max(rel·|expected|, abs)
    (default rel 1e-6, abs 1e-12; only `abs` given: that alone)."""
    if actual == expected:
        return True
    if (
        type(actual) not in (bool, int, float, complex)
        or math.isnan(expected)
        or math.isinf(expected)
    ):
        return False
    tol_abs = abs_ if abs_ is not None else 1e-12
    if rel is None and abs_ is not None:
        tolerance = tol_abs
    else:
        tolerance = max((rel if rel is not None else 1e-6) * abs(expected), tol_abs)
    return abs(expected - actual) <= tolerance


def _approx_eq(actual: Any, approx: Approx) -> bool:
    """pytest.approx's rule on a decoded value: a mapping needs the same keys, a sequence the
    same length (then item by item in iteration order, as pytest zips them)."""
    exp = approx.expected
    if type(exp) is dict:
        if not isinstance(actual, dict) or set(actual) != set(exp):
            return False
        return all(_approx_scalar(actual[k], v, approx.rel, approx.abs) for k, v in exp.items())
    if type(exp) in (list, tuple):
        if not isinstance(actual, (list, tuple, set, frozenset, dict, str, bytes)) or len(
            actual
        ) != len(exp):
            return False
        return all(
            _approx_scalar(a, e, approx.rel, approx.abs) for a, e in zip(actual, exp, strict=True)
        )
    return _approx_scalar(actual, exp, approx.rel, approx.abs)


def _almost_eq(actual: Any, almost: Almost) -> bool:
    """unittest's `assertAlmostEqual` on a decoded value: equal, or the difference within
    `delta`, or zero when rounded to `places` (default 7) decimal places."""
    if actual == almost.expected:
        return True
    if type(actual) not in (bool, int, float):
        return False  # a string's difference raises in unittest: the assertion fails
    diff = abs(actual - almost.expected)
    if almost.delta is not None:
        return bool(diff <= almost.delta)
    return round(diff, 7 if almost.places is None else almost.places) == 0


_COMPARE = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
    "in": lambda a, e: a in e, "not in": lambda a, e: a not in e,
    "contains": lambda a, e: e in a, "not contains": lambda a, e: e not in a,
    "is": operator.is_, "is not": operator.is_not,
    "approx": _approx_eq, "not approx": lambda a, e: not _approx_eq(a, e),
    "almost": _almost_eq,
}  # fmt: skip


def _verdict(exp: Expectation, record: dict[str, Any]) -> bool | None:
    """The assertion's value on the recorded value, None where Python would have raised. A
    value that was not a plain builtin stands as a bare object: unequal to every literal, not
    ordered against any (no object of the code under test takes part)."""
    actual = object() if record.get("v") is None else _decode(record["v"])
    if exp.op == "chain":
        return all(bool(_COMPARE[op](actual, value)) for op, value in exp.expected)
    if exp.op == "any":  # `x == 1 or x == 2`: Python stops at the first that holds
        return any(
            _holds(Expectation(exp.test, op, value, negated), record)
            for op, value, negated in exp.expected
        )
    return bool(_COMPARE[exp.op](actual, exp.expected))


def _holds(exp: Expectation, record: dict[str, Any]) -> bool:
    """Does the recorded value satisfy the hidden assertion? Evaluated in the grader, on values
    rebuilt from builtin types, so no object of the code under test takes part."""
    if exp.op in ("true", "false"):
        return record.get("b") is (exp.op == "true")
    if exp.op == "branch":
        return True  # a marker: which branch ran, not a value
    if exp.op.startswith("js_"):
        return _js_holds(exp, record)
    try:
        verdict = _verdict(exp, record)
    except Exception:  # an undecodable record or an incomparable value fails the assertion
        return False
    return verdict is not None and verdict != exp.negated


def _read_expect_log(log: Path) -> list[dict[str, Any]]:
    """The log's records (malformed lines and anything past the size cap are dropped)."""
    try:
        with log.open("rb") as f:
            data = f.read(MAX_EXPECT_LOG_BYTES)
    except OSError:
        return []
    records = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):  # a line nested too deep is damage, like any other
            continue
        if (
            isinstance(rec, dict)
            and isinstance(rec.get("s"), str)
            and isinstance(rec.get("t"), str)
        ):
            records.append(rec)
    return records


def _base_test(nodeid: str) -> str:
    """`tests/t.py::test_f[1] (call)` -> `tests/t.py::test_f`."""
    nodeid = re.sub(r" \((setup|call|teardown)\)$", "", nodeid)
    return nodeid.split("[", 1)[0]


def _attributed_records(
    plan: HiddenExpectations,
) -> Iterator[tuple[dict[str, Any], Expectation, str]]:
    """The log's records of known slots, each with its expectation and the test it belongs to
    (the id the runner reported, mapped back to the task's, else the slot's owner)."""
    for rec in _read_expect_log(plan.log):
        exp = plan.slots.get(rec["s"])
        if exp is not None:
            test = plan.original_id(re.sub(r" \((setup|call|teardown)\)$", "", rec["t"]))
            yield rec, exp, test or exp.test


def tests_that_logged_values(plan: HiddenExpectations) -> set[str]:
    """The tests (ids as `judge_expectations` keys them) that logged at least one hidden value,
    a branch marker not counting: a passing test among them passed a check made outside the
    sandbox. Why not every passing test that owns a slot: a test whose only hidden values sit in
    a branch or handler that did not run passes on pytest's word alone."""
    return {test for _, exp, test in _attributed_records(plan) if exp.op != "branch"}


def judge_expectations(
    plan: HiddenExpectations, outcomes: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Outcomes (under the tests' original ids: opaque parametrize ids mapped back) with each
    passing test whose hidden assertions failed, or did not all run, turned into a failure;
    also the ids so turned (for the grade's message)."""
    failing: set[str] = set()  # node ids (and base ids, for unattributed records) failing a check
    seen: dict[str, set[str]] = {}  # node id -> its slots that recorded
    for rec, exp, test in _attributed_records(plan):
        if not _holds(exp, rec):
            failing.update((test, exp.test))
        seen.setdefault(test, set()).add(rec["s"])
    judged = {plan.original_id(nodeid): outcome for nodeid, outcome in outcomes.items()}
    turned = []
    for nodeid, outcome in list(judged.items()):
        if outcome not in (PASS, XPASS):
            continue
        base = _base_test(nodeid)
        logged = seen.get(nodeid, set())
        unrecorded = plan.required(plan.owned(base) + plan.owned(nodeid), logged) - logged
        if nodeid in failing or base in failing or unrecorded:
            judged[nodeid] = FAIL
            turned.append(nodeid)
    return judged, turned


# ---- hidden expected values: node:test files ----------------------------------------------------
#
# The same for JavaScript, on the shape the generated suites have (and nothing looser): a file that
# requires `node:assert/strict` (so `equal` is `strictEqual`, `deepEqual` is `deepStrictEqual`),
# `test('name', ...)` blocks opened and closed at column 0, and one-line assertions at the test
# body's own indentation (two spaces) whose expected argument is a JavaScript literal. Anything
# else (multi-line or nested assertions, loose `node:assert`, template strings) is left as it is.

JS_EXPECT_HELPER = "__hillclimbExpect"
_JS_ASSERT = re.compile(r"^  assert\.(\w+)\((.*)\);\s*$")
_JS_TEST = re.compile(r"^(?:test|it)\(\s*('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\s*,")
_JS_STRICT = re.compile(r"""require\(\s*['"](?:node:)?assert/strict['"]\s*\)""")
_JS_OPS = {
    "equal": "js_same", "strictEqual": "js_same", "notEqual": "js_not_same",
    "notStrictEqual": "js_not_same", "deepEqual": "js_deep", "deepStrictEqual": "js_deep",
    "notDeepEqual": "js_not_deep", "notDeepStrictEqual": "js_not_deep",
}  # fmt: skip

_JS_PRELUDE = """const __hillclimbExpect = (() => {
  const fs = require('fs');
  const enc = (v, d) => {
    if (d > 64) throw new Error('too deep');
    if (v === null) return ['null'];
    if (v === undefined) return ['undefined'];
    const t = typeof v;
    if (t === 'boolean' || t === 'string') return [t, v];
    if (t === 'number') return ['number', Object.is(v, -0) ? '-0' : String(v)];
    if (Array.isArray(v) && Object.getPrototypeOf(v) === Array.prototype) {
      return ['array', Array.from(v, (x) => enc(x, d + 1))];
    }
    if (t === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      return ['object', Object.keys(v).map((k) => [k, enc(v[k], d + 1)])];
    }
    throw new Error('not a plain value');
  };
  return (value, slot) => {
    let b = null;
    let v = null;
    try { b = !!value; } catch (e) { b = null; }
    try { v = enc(value, 0); } catch (e) { v = null; }
    fs.appendFileSync(LOG_PATH, JSON.stringify({ s: slot, t: '', v, b }) + '\\n');
  };
})();
"""


class _Undefined:
    """JavaScript's `undefined` (distinct from `null`, which is None)."""

    def __repr__(self) -> str:
        return "undefined"


JS_UNDEFINED = _Undefined()
_JS_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
_JS_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_JS_WORDS = {"true": True, "false": False, "null": None, "undefined": JS_UNDEFINED,
             "NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}  # fmt: skip


class _JsLiteral:
    """A recursive-descent reader of JavaScript literals (numbers, strings, true/false/null/
    undefined, arrays, plain objects); `ValueError` for anything else."""

    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0

    def space(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def value(self) -> Any:
        self.space()
        s, i = self.s, self.i
        if i >= len(s):
            raise ValueError("end of literal")
        if s[i] in "'\"":
            return self.string()
        if s[i] == "[":
            return self.items("]", self.value)
        if s[i] == "{":
            return dict(self.items("}", self.member))
        for word, value in _JS_WORDS.items():
            if s.startswith(word, i) and not s[i + len(word) : i + len(word) + 1].isalnum():
                self.i += len(word)
                return value
        m = _JS_NUMBER.match(s, i)
        if not m or s[m.end() : m.end() + 1].isalnum():
            raise ValueError(f"not a literal at {i}")
        self.i = m.end()
        return float(m.group())

    def string(self) -> str:
        quote, out = self.s[self.i], []
        self.i += 1
        while self.i < len(self.s):
            ch = self.s[self.i]
            self.i += 1
            if ch == quote:
                return "".join(out)
            if ch == "\\":
                nxt = self.s[self.i]
                self.i += 1
                if nxt == "u":
                    out.append(chr(int(self.s[self.i : self.i + 4], 16)))
                    self.i += 4
                elif nxt in "xX" or nxt.isdigit() and nxt != "0":
                    raise ValueError("escape not read")
                else:
                    out.append(_JS_ESCAPES.get(nxt, nxt))
            else:
                out.append(ch)
        raise ValueError("unterminated string")

    def member(self) -> tuple[str, Any]:
        self.space()
        if self.s[self.i] in "'\"":
            key = self.string()
        else:
            m = re.compile(r"[A-Za-z_$][\w$]*|\d+").match(self.s, self.i)
            if not m:
                raise ValueError("bad key")
            key, self.i = m.group(), m.end()
        self.space()
        if self.s[self.i] != ":":
            raise ValueError("shorthand property")
        self.i += 1
        return key, self.value()

    def items(self, close: str, read: Any) -> list[Any]:
        self.i += 1
        out: list[Any] = []
        while True:
            self.space()
            if self.s[self.i] == close:
                self.i += 1
                return out
            out.append(read())
            self.space()
            if self.s[self.i] == ",":
                self.i += 1
            elif self.s[self.i] != close:
                raise ValueError("expected , or " + close)


def js_literal(text: str) -> tuple[bool, Any]:
    """(True, value) when `text` is exactly one JavaScript literal, else (False, None)."""
    reader = _JsLiteral(text)
    try:
        value = reader.value()
        reader.space()
    except (ValueError, IndexError):
        return False, None
    return reader.i == len(text), value


def _js_code(text: str) -> list[tuple[int, str]] | None:
    """The positions and characters of `text` outside its string literals (quotes included in
    neither); None when it has a template string, a regular expression or a comment (not read
    here) or a string left open."""
    out, quote, i = [], "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "`/":
            return None
        else:
            out.append((i, ch))
        i += 1
    return None if quote else out


def _js_args(text: str) -> list[str] | None:
    """Split a call's argument text at top-level commas; None when `_js_code` cannot read it or
    its brackets do not balance."""
    code = _js_code(text)
    if code is None:
        return None
    parts, depth, start = [], 0, 0
    for i, ch in code:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if depth:
        return None
    parts.append(text[start:].strip())
    return [p for p in parts if p] if parts[-1] == "" else parts


def _js_classify(method: str, args: list[str]) -> tuple[str, str, Any] | None:
    """(subject, operator, expected) for a hideable one-line node assertion."""
    if method == "ok" and len(args) in (1, 2):
        return args[0], "true", None
    if method not in _JS_OPS or len(args) not in (2, 3):
        return None
    (lok, left), (rok, right) = js_literal(args[0]), js_literal(args[1])
    if rok and not lok:
        subject, expected = args[0], right
    elif lok and not rok:
        subject, expected = args[1], left
    else:
        return None
    op = _JS_OPS[method]
    if op in ("js_same", "js_not_same") and isinstance(expected, (list, dict)):
        return None  # identity against a fresh literal: not a shape worth reading
    return subject, op, expected


_JS_FOR = re.compile(r"^  for \(const \[([\w$, ]+)\] of (\[.*\])\) \{\s*$")
_JS_FOREACH = re.compile(r"^  (\[.*\])\.forEach\(\(\[([\w$, ]+)\]\) => \{\s*$")
_JS_BODY_ASSERT = re.compile(r"^    assert\.(\w+)\((.*)\);\s*$")


def _js_word(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w$.]){re.escape(name)}(?![\w$])")


def _js_unroll(
    lines: list[str], at: int, test: str, plan: HiddenExpectations
) -> tuple[list[str], int] | None:
    """A loop over a literal table in a test body, `for (const [a, want] of [[1, 2], ...]) {`
    or `[[1, 2], ...].forEach(([a, want]) => {`, on one line, whose body is one-line
    assertions only: written out per row (`{ const a = 1; __hillclimbExpect(f(a), '3'); }`),
    a name the body reads only as a whole expected argument (`want`) left unbound, its value a
    slot's. (The replacement lines, the lines consumed); None when the loop is not of that
    shape (rows and inputs literals, every assertion hideable)."""
    loop, each = _JS_FOR.match(lines[at]), _JS_FOREACH.match(lines[at])
    if loop:
        names_text, table, close = loop.group(1), loop.group(2), "  }"
    elif each:
        names_text, table, close = each.group(2), each.group(1), "  });"
    else:
        return None
    names = [n.strip() for n in names_text.split(",")]
    end = next((i for i in range(at + 1, len(lines)) if not lines[i].startswith("    ")), None)
    if end is None or lines[end].rstrip() != close or end == at + 1:
        return None
    body = [_JS_BODY_ASSERT.match(line) for line in lines[at + 1 : end]]
    row_texts = _js_args(table[1:-1])
    if any(b is None for b in body) or not row_texts or len(row_texts) > _MAX_ROWS:
        return None
    rows = []
    for text in row_texts:
        items = _js_args(text[1:-1]) if text.startswith("[") and text.endswith("]") else None
        if items is None or len(items) != len(names) or not all(js_literal(i)[0] for i in items):
            return None
        rows.append(dict(zip(names, items, strict=True)))
    calls = [(b.group(1), _js_args(b.group(2))) for b in body]  # type: ignore[union-attr]
    if any(args is None for _, args in calls):
        return None
    # expected names: every use is a whole argument of an assertion (the other one the subject)
    uses = Counter(a for _, args in calls for a in args if a in names)  # type: ignore[union-attr]
    reads = Counter(
        n for n in names for line in lines[at + 1 : end] for _ in _js_word(n).finditer(line)
    )
    expected = {n for n in names if uses[n] and uses[n] == reads[n]}
    out, before = [], len(plan.slots)
    for row in rows:
        out.append("  {")
        out += [f"    const {n} = {row[n]};" for n in names if n not in expected and reads[n]]
        for method, args in calls:
            filled = [row[a] if a in expected else a for a in args]  # type: ignore[union-attr]
            got = _js_classify(method, filled)
            if got is None or any(_js_word(n).search(got[0]) for n in expected):
                _forget(plan, before)
                return None
            slot = str(len(plan.slots))
            plan.slots[slot] = Expectation(test, got[1], got[2])
            out.append(f"    {JS_EXPECT_HELPER}({got[0]}, '{slot}');")
        out.append("  }")
    return out, end - at + 1


# Session 28: statements spanning lines (an assertion whose expected object or array is written
# over several lines, a loop whose table is) are read as one logical line (`_js_logical`), and a
# top-level loop over a literal table whose body defines tests (`for (const [a, want] of [...])
# { test(`f ${a}`, () => {...}); }`) is written out per row (`_js_unroll_tests`).

_JS_JOIN_ASSERT = re.compile(r"^(?:  |    )assert\.\w+\(")
_JS_JOIN_LOOP = re.compile(r"^(?:|  )(?:for \(const \[|\[)")
_MAX_JOINED = 200  # lines one logical line may span


def _js_depth(text: str) -> int | None:
    """Open `(`/`[` minus closed ones in `text` outside strings; None when `_js_code` cannot
    read it."""
    code = _js_code(text)
    if code is None:
        return None
    return sum((ch in "([") - (ch in ")]") for _, ch in code)


def _js_logical(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    """The file as logical lines and the source lines each stands for: an assertion left open at
    its line's end (`assert.deepEqual(f(x), {` ... `});`) joined up to where its brackets close,
    a loop header (`for (const [a, want] of [` ... `]) {`, `[` ... `].forEach(([a, want]) => {`)
    up to its `{`. Anything else, or one that does not close within `_MAX_JOINED` lines, stays
    one line per line."""
    texts: list[str] = []
    groups: list[list[str]] = []
    n = 0
    while n < len(lines):
        line, end = lines[n], None
        assertion, loop = _JS_JOIN_ASSERT.match(line), _JS_JOIN_LOOP.match(line)
        depth = _js_depth(line) if assertion or loop and not line.rstrip().endswith("{") else None
        if depth is not None and depth > 0:
            joined = line
            for k in range(n + 1, min(len(lines), n + _MAX_JOINED)):
                joined += " " + lines[k].strip()
                depth = _js_depth(joined)
                if depth is None:
                    break
                if assertion and depth == 0:
                    end = k
                    break
                if loop and joined.endswith("{") and depth in (0, 1):  # `forEach(` stays open
                    end = k
                    break
        if end is None:
            texts.append(line)
            groups.append([line])
            n += 1
        else:
            texts.append(joined)
            groups.append(lines[n : end + 1])
            n = end + 1
    return texts, groups


_JS_TOP_FOR = re.compile(r"^for \(const \[([\w$, ]+)\] of (\[.*\])\) \{\s*$")
_JS_LOOP_TEST = re.compile(r"^  test\(\s*`((?:[^`\\$]|\$\{[\w$]+\})*)`\s*,\s*\(\) => \{\s*$")


def _js_name_part(value: Any) -> str | None:
    """`${value}` of a literal as JavaScript writes it: strings, and finite numbers
    (`_js_number`)."""
    if type(value) is str:
        return value
    if type(value) is float and math.isfinite(value):
        return _js_number(value)
    return None


def _js_number(value: float) -> str:
    """ECMAScript's Number::toString(10) of a finite number: the shortest digits that read back
    as the same double (Python's `repr` finds the same ones), written plainly when the value
    is below 1e21 and at least 1e-6, else as `d.ddde+n` (`1e-7`, `1.5e+21`, `100`, `0.000001`;
    `-0` is `0`). Checked against node's `String(x)` for a spread of values (tests)."""
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _js_number(-value)
    sign, digits, exp = decimal.Decimal(repr(value)).normalize().as_tuple()
    text, k = "".join(map(str, digits)), len(digits)
    n = int(exp) + k  # the value is 0.<text> * 10**n
    if k <= n <= 21:
        return text + "0" * (n - k)
    if 0 < n <= 21:
        return text[:n] + "." + text[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + text
    e = f"{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return text + "e" + e if k == 1 else text[0] + "." + text[1:] + "e" + e


def _js_unroll_tests(
    lines: list[str], at: int, rel: str, plan: HiddenExpectations
) -> tuple[list[str], int] | None:
    """A top-level `for (const [a, want] of [[1, 2], ...]) {` whose body is only tests named by
    a template of its inputs (`test(`double ${a}`, () => {`) holding one-line assertions: each
    row written out (`{ const a = 1; test('double 1', () => { __hillclimbExpect(...); }); }`),
    its expected names unbound (their values slots' of the test the row's name gives). (The
    replacement lines, the lines consumed); None when the loop is not of that shape, a name
    reads an expected value, or two rows give one name."""
    loop = _JS_TOP_FOR.match(lines[at])
    if not loop:
        return None
    names = [n.strip() for n in loop.group(1).split(",")]
    end = next((i for i in range(at + 1, len(lines)) if not lines[i].startswith("  ")), None)
    if end is None or lines[end].rstrip() != "}":
        return None
    tests: list[tuple[str, list[tuple[str, list[str]]]]] = []  # (name template, assertions)
    i = at + 1
    while i < end:
        opened = _JS_LOOP_TEST.match(lines[i])
        close = next((k for k in range(i + 1, end) if not lines[k].startswith("    ")), None)
        if not opened or close is None or lines[close].rstrip() != "  });" or close == i + 1:
            return None
        body = [_JS_BODY_ASSERT.match(line) for line in lines[i + 1 : close]]
        if any(b is None for b in body):
            return None
        calls = [(b.group(1), _js_args(b.group(2))) for b in body]  # type: ignore[union-attr]
        if any(args is None for _, args in calls):
            return None
        tests.append((opened.group(1), calls))  # type: ignore[arg-type]
        i = close + 1
    row_texts = _js_args(loop.group(2)[1:-1])
    if not tests or not row_texts or len(row_texts) > _MAX_ROWS:
        return None
    rows = []
    for text in row_texts:
        items = _js_args(text[1:-1]) if text.startswith("[") and text.endswith("]") else None
        if items is None or len(items) != len(names) or not all(js_literal(i)[0] for i in items):
            return None
        rows.append(dict(zip(names, items, strict=True)))
    uses = Counter(a for _, calls in tests for _, args in calls for a in args if a in names)
    reads = Counter(
        n for n in names for line in lines[at + 1 : end] for _ in _js_word(n).finditer(line)
    )
    expected = {n for n in names if uses[n] and uses[n] == reads[n]}  # (a name's `${n}` reads it)
    out, before, seen = [], len(plan.slots), set()
    for row in rows:
        out.append("{")
        out += [f"  const {n} = {row[n]};" for n in names if n not in expected and reads[n]]
        for template, calls in tests:
            name = _js_template(template, row, expected)
            if name is None or name in seen:
                _forget(plan, before)
                return None
            seen.add(name)
            out.append(f"  test({json.dumps(name)}, () => {{")
            for method, args in calls:
                filled = [row[a] if a in expected else a for a in args]
                got = _js_classify(method, filled)
                if got is None or any(_js_word(n).search(got[0]) for n in expected):
                    _forget(plan, before)
                    return None
                slot = str(len(plan.slots))
                plan.slots[slot] = Expectation(f"{rel}::{name}", got[1], got[2])
                out.append(f"    {JS_EXPECT_HELPER}({got[0]}, '{slot}');")
            out.append("  });")
        out.append("}")
    return out, end - at + 1


def _js_template(template: str, row: dict[str, str], expected: set[str]) -> str | None:
    """The test name a row gives `template` (`double ${a}`); None when it reads an expected
    name or a value whose text the grader is not sure of."""
    parts = re.split(r"\$\{([\w$]+)\}", template)
    out = []
    for k, part in enumerate(parts):
        if k % 2 == 0:
            if "\\" in part:
                return None
            out.append(part)
            continue
        if part not in row or part in expected:
            return None
        text = _js_name_part(js_literal(row[part])[1])
        if text is None:
            return None
        out.append(text)
    return "".join(out)


_JS_SUITE = re.compile(r"^(?:describe|suite)\b")  # any suite opened at column 0
_JS_DESCRIBE = re.compile(
    r"^describe\(\s*('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\s*,\s*\(\) => \{\s*$"
)


def hide_in_js_source(source: str, rel: str, plan: HiddenExpectations) -> str | None:
    """The node test file at `rel` with its hideable assertions rewritten (and its loops over
    literal tables written out per row, `_js_unroll`, `_js_unroll_tests`) and the helper added;
    None when the file is not in the shape read here or has nothing to hide."""
    if not _JS_STRICT.search(source):
        return None
    before = len(plan.slots)
    got = _js_describes(source.split("\n"), rel, plan)
    if got is None:  # a suite the grader cannot read: its tests' ids are not sure
        _forget(plan, before)
        return None
    out, hidden = got
    if not hidden:
        return None
    prelude = _JS_PRELUDE.replace("LOG_PATH", json.dumps(str(plan.log)))
    at = 1 if out and out[0].strip() in ("'use strict';", '"use strict";') else 0
    return "\n".join(out[:at] + [prelude] + out[at:])


def _js_describes(
    raw: list[str], prefix: str, plan: HiddenExpectations
) -> tuple[list[str], int] | None:
    """`raw` lines with the blocks of `describe('S', () => {` ... `});` (opened and closed at
    column 0, every line inside indented by at least two spaces) read like a file of their own,
    one indentation level in, their tests' ids `<prefix>::S::<name>` (node's reporter names a
    nested test by its suites); the rest read by `_js_hide_lines`. Returns the lines and how
    many statements were hidden; None when a suite opened at column 0 has another shape (a
    test inside it not indented would be read as a top-level one: its id, and so the judging of
    its values, would be wrong)."""
    out: list[str] = []
    hidden, start, n = 0, 0, 0
    while n < len(raw):
        if not _JS_SUITE.match(raw[n]):
            n += 1
            continue
        opened = _JS_DESCRIBE.match(raw[n])
        close = next((k for k in range(n + 1, len(raw)) if raw[k].startswith("}")), None)
        ok, name = js_literal(opened.group(1)) if opened else (False, None)
        if not ok or close is None or raw[close].strip() != "});":
            return None
        inner = raw[n + 1 : close]
        if not all(line.startswith("  ") or not line.strip() for line in inner):
            return None
        got, k = _js_hide_lines(raw[start:n], prefix, plan)
        out += got
        hidden += k
        nested = _js_describes([line[2:] for line in inner], f"{prefix}::{name}", plan)
        if nested is None:
            return None
        lines, k = nested
        out += [raw[n], *(("  " + line) if line.strip() else line for line in lines), raw[close]]
        hidden += k
        start = n = close + 1
    got, k = _js_hide_lines(raw[start:], prefix, plan)
    return out + got, hidden + k


def _js_hide_lines(raw: list[str], rel: str, plan: HiddenExpectations) -> tuple[list[str], int]:
    """`raw` lines (a file, or a `describe` block's inside one level in: `_js_describes`) with
    their hideable assertions rewritten, test ids `<rel>::<name>`; and how many were hidden."""
    lines, groups = _js_logical(raw)
    test, hidden = None, 0
    out: list[str] = []
    n = 0
    while n < len(lines):
        line = lines[n]
        n += 1
        start = len(out)
        out += groups[n - 1]
        opened = _JS_TEST.match(line)
        if opened:
            ok, name = js_literal(opened.group(1))
            test = f"{rel}::{name}" if ok else None
            continue
        if line.startswith("}"):
            test = None
            continue
        unrolled = _js_unroll(lines, n - 1, test, plan) if test else None
        if test is None and unrolled is None:
            unrolled = _js_unroll_tests(lines, n - 1, rel, plan)
        if unrolled is not None:
            out[start:] = unrolled[0]
            n += unrolled[1] - 1
            hidden += 1
            continue
        m = _JS_ASSERT.match(line)
        args = _js_args(m.group(2)) if m and test else None
        got = _js_classify(m.group(1), args) if m and args else None
        if got is None or test is None:
            continue
        subject, op, expected = got
        slot = str(len(plan.slots))
        plan.slots[slot] = Expectation(test, op, expected)
        out[start:] = [f"  {JS_EXPECT_HELPER}({subject}, '{slot}');"]
        hidden += 1
    return out, hidden


def _js_decode(tagged: Any) -> Any:
    kind = tagged[0]
    if kind in ("null", "undefined"):
        return None if kind == "null" else JS_UNDEFINED
    value = tagged[1]
    if kind == "boolean" and type(value) is bool or kind == "string" and type(value) is str:
        return value
    if kind == "number":
        return -0.0 if value == "-0" else float(value)
    if kind == "array":
        return [_js_decode(v) for v in value]
    if kind == "object":
        return {str(k): _js_decode(v) for k, v in value}
    raise ValueError(f"unknown kind {kind!r}")


def _js_same(a: Any, b: Any) -> bool:
    """`Object.is` on a decoded value and a literal (arrays/objects are never the same)."""
    if type(a) is float and type(b) is float:
        if a != a or b != b:
            return a != a and b != b
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) is not type(b) or isinstance(a, (list, dict)):
        return False
    return a is b if a is None or a is JS_UNDEFINED else a == b


def _js_deep(a: Any, b: Any) -> bool:
    """`assert.deepStrictEqual` on plain values."""
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(_js_deep(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(_js_deep(a[k], b[k]) for k in a)
    return _js_same(a, b)


def _js_holds(exp: Expectation, record: dict[str, Any]) -> bool:
    if record.get("v") is None:
        return exp.op in ("js_not_same", "js_not_deep")  # not a plain value: unlike any literal
    try:
        actual = _js_decode(record["v"])
        same = (
            _js_deep(actual, exp.expected) if "deep" in exp.op else _js_same(actual, exp.expected)
        )
    except Exception:  # an undecodable (or absurdly deep) record fails the assertion
        return False
    return same != exp.op.startswith("js_not")
