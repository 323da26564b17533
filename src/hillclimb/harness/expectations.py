"""Hidden expected values: the grader keeps the hidden tests' answers out of the run under test.

Why: code under test runs in the same interpreter as the tests and can read them — open the test
file on disk, or walk `sys.modules` to the test module and read its functions' bytecode constants —
and return the value an `assert f(3) == 7` expects without fixing anything (session 24's red team:
reward 1.0 on generated tasks; names built at run time defeat any text gate). So before a graded
run `hide_expectations` rewrites the hidden tests (Python, and JS files using strict
`node:assert`) so their literal expected values are not in the run at all, and after the run
`judge_expectations` applies them to the values the run recorded. The section comment below says
what is covered and what is not (grading.py's threat model lists what still passes).
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
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
# statement of a test function against a literal (`assert CALL == 7`, `7 == CALL`, `!=`, `<`,
# `in`, `is None`, `== pytest.approx(0.5)`, and plain `assert CALL` / `assert not CALL`) becomes
# `_hillclimb_expect(CALL, "<slot>")`. That helper only records the value (a tagged encoding of
# plain builtin values, and its truth value) in a log file; the operator and the literal stay in the
# grader's memory, outside the sandbox, and `judge_expectations` compares after the run. `assert
# f(x)` and `assert not f(x)` rewrite to the same call, so not even truthiness is in the source.
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
    # numbers of other libraries (numpy's int64, a Fraction, a Decimal): their value as a plain
    # int or float. Calling their methods is safe: nothing in this process knows the answer
    import numbers
    import operator

    if isinstance(value, numbers.Integral):
        return ["int", int.__repr__(int(operator.index(value)))]
    if isinstance(value, numbers.Number):
        return ["float", float.__repr__(float(value))]
    raise TypeError(kind.__name__)


def _hillclimb_expect(value, slot, _log=LOG_PATH):
    import json
    import os

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
    without parameters), the operator as seen from the recorded value, and the expected value."""

    test: str
    op: str
    expected: Any


@dataclass
class HiddenExpectations:
    """What the grader keeps out of the run: every slot's expectation, and the log it reads."""

    log: Path
    slots: dict[str, Expectation] = field(default_factory=dict)

    def owned(self, test: str) -> list[str]:
        return [slot for slot, exp in self.slots.items() if exp.test == test]


_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv}  # fmt: skip


def _folded_number(node: ast.expr) -> int | float | None:
    """The value of plain arithmetic on number literals (`2 / 3`), which is as much an expected
    value as a literal; None for anything else (no `**`: no huge numbers from a test)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _folded_number(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        left, right = _folded_number(node.left), _folded_number(node.right)
        if left is None or right is None:
            return None
        try:
            return _ARITH[type(node.op)](left, right)
        except ArithmeticError:
            return None
    return None


def _expected_value(node: ast.expr) -> tuple[str, Any] | None:
    """("literal", value) for a literal, ("approx", number) for `pytest.approx(<number>)`."""
    try:
        return "literal", ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    folded = _folded_number(node)
    if folded is not None:
        return "literal", folded
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "approx":
            got = _expected_value(node.args[0])
            if got and got[0] == "literal" and type(got[1]) in (int, float):
                return "approx", got[1]
    return None


def _classify(test: ast.expr) -> tuple[ast.expr, str, Any] | None:
    """(subject, operator, expected) for an assertion whose expected side can be hidden."""
    if isinstance(test, ast.Compare):
        if len(test.ops) != 1 or type(test.ops[0]) not in _AST_OPS:
            return None
        op = _AST_OPS[type(test.ops[0])]
        left, right = _expected_value(test.left), _expected_value(test.comparators[0])
        if right is not None and left is None:
            subject, (how, value) = test.left, right
        elif left is not None and right is None:
            subject, (how, value), op = test.comparators[0], left, _FLIPPED[op]
        else:
            return None
        if how == "approx":
            return (
                (subject, "approx" if op == "==" else "not approx", value)
                if op in ("==", "!=")
                else None
            )
        if op in ("is", "is not") and not (value is None or value is True or value is False):
            return None
        return subject, op, value
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return None if isinstance(test.operand, ast.Compare) else (test.operand, "false", None)
    return (test, "true", None)


def _mentions_xfail(nodes: list[ast.expr]) -> bool:
    return any("xfail" in ast.unparse(n) for n in nodes)


def _test_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) of module-level `test*` functions and `test*` methods of
    module-level `Test*` classes: the functions pytest collects by default. Tests marked xfail
    (on the function, its class or the module's `pytestmark`) are left alone: their failing
    assertion is what makes them xfailed, and a hidden one would not raise."""
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    marks = [s.value for s in tree.body if isinstance(s, ast.Assign)
             and any(getattr(t, "id", None) == "pytestmark" for t in s.targets)]  # fmt: skip
    if _mentions_xfail(marks):
        return []
    found = []
    for stmt in tree.body:
        if isinstance(stmt, funcs) and stmt.name.startswith("test"):
            found.append((stmt.name, stmt))
        elif isinstance(stmt, ast.ClassDef) and stmt.name.startswith("Test"):
            if _mentions_xfail(stmt.decorator_list):
                continue
            found += [(f"{stmt.name}::{s.name}", s) for s in stmt.body
                      if isinstance(s, funcs) and s.name.startswith("test")]  # fmt: skip
    return [(name, fn) for name, fn in found if not _mentions_xfail(fn.decorator_list)]


def _hide_in_function(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, test: str, plan: HiddenExpectations
) -> int:
    """Rewrite the function's direct `assert` statements (not those in loops, branches or
    `with` blocks: a slot the test may legitimately skip cannot be required) in place."""
    hidden = 0
    for i, stmt in enumerate(fn.body):
        if not isinstance(stmt, ast.Assert):
            continue
        got = _classify(stmt.test)
        if got is None:
            continue
        subject, op, expected = got
        slot = str(len(plan.slots))
        plan.slots[slot] = Expectation(test, op, expected)
        call = ast.Call(ast.Name(EXPECT_HELPER, ast.Load()), [subject, ast.Constant(slot)], [])
        fn.body[i] = ast.copy_location(ast.Expr(call), stmt)
        hidden += 1
    return hidden


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


def hide_in_source(source: str, rel: str, plan: HiddenExpectations) -> str | None:
    """`source` (the test file at ws-relative `rel`) with its hideable assertions rewritten and
    the helper added; None when there is nothing to hide or it does not parse (left as it is:
    pytest then reports the file's own error)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    hidden = sum(
        _hide_in_function(fn, f"{rel}::{name}", plan) for name, fn in _test_functions(tree)
    )
    if not hidden:
        return None
    prelude = ast.parse(_PRELUDE.replace("LOG_PATH", repr(str(plan.log)))).body
    at = _prelude_at(tree)
    tree.body[at:at] = prelude
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def hide_expectations(ws: Path, files: list[Path], log: Path) -> HiddenExpectations:
    """Rewrite the test `files` (paths under `ws`) so their expected literals leave the run;
    the returned plan holds them for `judge_expectations`. Call after the hidden tests are
    installed and before the run; `log` must be writable inside the sandbox (it lies in `ws`)."""
    plan = HiddenExpectations(log)
    for path in files:
        rel = path.relative_to(ws).as_posix()
        try:
            source = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not UTF-8: the runner reports it; there is nothing for us to parse
        hide = hide_in_js_source if path.suffix in (".js", ".cjs") else hide_in_source
        new = hide(source, rel, plan)
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
    containers = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}
    if kind in containers:
        return containers[kind](_decode(v) for v in value)
    if kind == "dict":
        return {_decode(k): _decode(v) for k, v in value}
    raise ValueError(f"unknown kind {kind!r}")


def _approx(actual: Any, expected: int | float) -> bool:
    """pytest.approx's default for one number: relative 1e-6 or absolute 1e-12."""
    if type(actual) not in (int, float):
        return False
    if actual == expected:
        return True
    return abs(actual - expected) <= max(1e-6 * abs(expected), 1e-12)


def _holds(exp: Expectation, record: dict[str, Any]) -> bool:
    """Does the recorded value satisfy the hidden assertion? Evaluated in the grader, on values
    rebuilt from builtin types, so no object of the code under test takes part."""
    if exp.op in ("true", "false"):
        return record.get("b") is (exp.op == "true")
    if exp.op.startswith("js_"):
        return _js_holds(exp, record)
    if record.get("v") is None:
        return exp.op == "is not"  # not an encodable builtin, so not None / True / False
    try:
        actual = _decode(record["v"])
        checks = {
            "==": lambda: actual == exp.expected,
            "!=": lambda: actual != exp.expected,
            "<": lambda: actual < exp.expected,
            "<=": lambda: actual <= exp.expected,
            ">": lambda: actual > exp.expected,
            ">=": lambda: actual >= exp.expected,
            "in": lambda: actual in exp.expected,
            "not in": lambda: actual not in exp.expected,
            "contains": lambda: exp.expected in actual,
            "not contains": lambda: exp.expected not in actual,
            "is": lambda: actual is exp.expected,
            "is not": lambda: actual is not exp.expected,
            "approx": lambda: _approx(actual, exp.expected),
            "not approx": lambda: not _approx(actual, exp.expected),
        }
        return bool(checks[exp.op]())
    except Exception:  # an undecodable record or an incomparable value fails the assertion
        return False


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


def judge_expectations(
    plan: HiddenExpectations, outcomes: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Outcomes with each passing test whose hidden assertions failed, or did not all run,
    turned into a failure; also the ids so turned (for the grade's message)."""
    failing: set[str] = (
        set()
    )  # node ids (and base ids, for unattributed records) with a failed check
    seen: dict[str, set[str]] = {}  # node id -> its slots that recorded
    for rec in _read_expect_log(plan.log):
        exp = plan.slots.get(rec["s"])
        if exp is None:
            continue
        test = re.sub(r" \((setup|call|teardown)\)$", "", rec["t"]) or exp.test
        if not _holds(exp, rec):
            failing.update((test, exp.test))
        seen.setdefault(test, set()).add(rec["s"])
    judged = dict(outcomes)
    turned = []
    for nodeid, outcome in outcomes.items():
        if outcome not in (PASS, XPASS):
            continue
        base = _base_test(nodeid)
        unrecorded = set(plan.owned(base) + plan.owned(nodeid)) - seen.get(nodeid, set())
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
_JS_TEST = re.compile(r"^test\(\s*('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\s*,")
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


def _js_args(text: str) -> list[str] | None:
    """Split a call's argument text at top-level commas; None when it has a template string,
    a regular expression or a comment (not read here)."""
    parts, depth, start, i, quote = [], 0, 0, 0, ""
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
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    if quote or depth:
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


def hide_in_js_source(source: str, rel: str, plan: HiddenExpectations) -> str | None:
    """The node test file at `rel` with its hideable assertions rewritten and the helper added;
    None when the file is not in the shape read here or has nothing to hide."""
    if not _JS_STRICT.search(source):
        return None
    lines, test, hidden = source.split("\n"), None, 0
    for n, line in enumerate(lines):
        opened = _JS_TEST.match(line)
        if opened:
            ok, name = js_literal(opened.group(1))
            test = f"{rel}::{name}" if ok else None
            continue
        if line.startswith("}"):
            test = None
            continue
        m = _JS_ASSERT.match(line)
        args = _js_args(m.group(2)) if m and test else None
        got = _js_classify(m.group(1), args) if m and args else None
        if got is None or test is None:
            continue
        subject, op, expected = got
        slot = str(len(plan.slots))
        plan.slots[slot] = Expectation(test, op, expected)
        lines[n] = f"  {JS_EXPECT_HELPER}({subject}, '{slot}');"
        hidden += 1
    if not hidden:
        return None
    prelude = _JS_PRELUDE.replace("LOG_PATH", json.dumps(str(plan.log)))
    at = 1 if lines and lines[0].strip() in ("'use strict';", '"use strict";') else 0
    return "\n".join(lines[:at] + [prelude] + lines[at:])


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
