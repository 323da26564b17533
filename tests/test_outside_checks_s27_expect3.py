"""Outside checks of the grader: expected values in the forms session 26 left readable (session 27).

Sessions 25 and 26 hid the expected values of a test body's direct `assert` statements (and of
loop and parametrize tables), but left readable, from disk or in-process: `unittest.TestCase`
assertions (`self.assertEqual(f(x), 7)`, `assertIn`, `assertAlmostEqual`, ...), assertions
inside `with` blocks (`with pytest.warns(...)`, `with open(...)`) and `try`/`finally` bodies, and
`or` of comparisons (`assert x == 4 or x == 5`). A submission that reads the test files for those
values resolved the task below with the bug in place. The grader now hides them too where that
keeps the test's meaning: every form below still passes the right code and fails each wrong one,
the values are neither in the rewritten file nor among its compiled constants, and forms whose
rewrite could change an honest run (a `with` that may suppress an exception, an `except`, a
TestCase whose assert methods may be overridden) are left as written.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from pathlib import Path

import pytest

from hillclimb.harness.expectations import (
    HiddenExpectations,
    hide_in_js_source,
    hide_in_source,
)
from hillclimb.harness.grading import grade_workspace
from hillclimb.harness.patching import copy_tree
from hillclimb.harness.task import Task, load_task
from test_outside_checks_s26_expect import grade_package, make_task  # the same hand-made task

PKG_RIGHT = """
import logging
import warnings


def add(a, b):
    return a + b


def third():
    return 1 / 3


def name():
    return "alpha"


def none():
    return None


def evens(xs):
    return [x for x in xs if x % 2 == 0]


def warn_add(a, b):
    warnings.warn("careful", UserWarning)
    return a + b


def log_add(a, b):
    logging.getLogger("pkg").warning("adding")
    return a + b
"""

FORMS_TESTS = """import logging
import unittest
from unittest import mock

import pytest

import pkg


class Base(unittest.TestCase):
    pass


class AddCase(Base):
    def test_equal(self):
        self.assertEqual(pkg.evens([1, 2, 4]), [2, 4])
        self.assertEqual([6], pkg.evens([5, 6]), msg=f"evens of {pkg.__name__}")
        self.assertNotEqual(pkg.evens([1]), [1])
        self.assertListEqual(pkg.evens([8, 9]), [8])

    def test_truth(self):
        self.assertTrue(pkg.name() == "alpha")
        self.assertFalse(pkg.none())
        self.assertIsNone(pkg.none())
        self.assertIn("lph", pkg.name())
        self.assertIn(pkg.name(), ("alpha", "gamma"))

    def test_almost(self):
        self.assertAlmostEqual(pkg.third(), 0.333, places=3)
        self.assertNotAlmostEqual(pkg.third(), 0.5, delta=0.1)
        self.assertGreater(pkg.third(), 0.25)

    def test_logs(self):
        with self.assertLogs("pkg"):
            self.assertEqual(pkg.log_add(5, 5), 10)


def test_with(tmp_path):
    with pytest.warns(UserWarning):
        assert pkg.warn_add(1, 2) == 3
    with open(tmp_path / "f", "w") as f, mock.patch.object(pkg, "X", 1, create=True):
        assert pkg.warn_add(f.write("ab"), 1) == 3
    try:
        assert pkg.warn_add(2, 3) == 5
    finally:
        logging.getLogger("pkg").info("done")


def test_or():
    x = pkg.add(2, 2)
    assert x == 4 or x == 5


def check_evens(xs, want):
    got = pkg.evens(xs)
    assert got == want
    assert len(got) <= len(xs)


def check_count(xs, n):
    assert len(pkg.evens(xs)) == n


def test_helper():
    check_evens([1, 2], [2])
    for xs, n in [([3, 4], 1), ([5], 0)]:
        check_count(xs, n)
"""
FORMS_IDS = [
    "tests/test_pkg.py::" + name
    for name in ("AddCase::test_equal", "AddCase::test_truth", "AddCase::test_almost",
                 "AddCase::test_logs", "test_with", "test_or", "test_helper")
]  # fmt: skip


def test_every_form_keeps_its_meaning(tmp_path) -> None:
    """The right code resolves (also one `or` accepts: `add(2, 2)` giving 5); each wrong
    function fails exactly the tests whose hidden assertions it breaks."""
    task = make_task(tmp_path / "forms", FORMS_TESTS, FORMS_IDS, "def add(a, b):\n    return 0\n")
    res = grade_package(task, PKG_RIGHT)
    assert res.resolved, (res.status, res.message, res.tests)
    assert set(res.tests) == set(FORMS_IDS), res.tests
    assert set(res.value_checked) == set(FORMS_IDS), res.value_checked  # a hidden value each
    other_or = "def add(a, b):\n    return 5 if (a, b) == (2, 2) else a + b"
    assert grade_package(task, PKG_RIGHT + "\n\n" + other_or + "\n").resolved
    wrong = {
        "AddCase::test_equal": "def evens(xs):\n    return [x for x in xs if x % 2 == 0][:1]",
        "AddCase::test_truth": "def none():\n    return 0",
        "AddCase::test_almost": "def third():\n    return 0.3344",
        "AddCase::test_logs": "def log_add(a, b):\n    logging.getLogger('pkg').warning('x')\n"
        "    return a + b + 1",
        "test_with": "def warn_add(a, b):\n    warnings.warn('careful', UserWarning)\n"
        "    return a - b if a == 2 else a + b",
        "test_or": "def add(a, b):\n    return 6",
        "test_helper": "def evens(xs):\n    return [5] if xs == [5] else [x for x in xs if x % 2 == 0]",
    }
    for test, override in wrong.items():
        res = grade_package(task, PKG_RIGHT + "\n\n" + override + "\n")
        failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
        assert failed == {test}, (test, res.tests, res.message)
    more_wrong = {  # one assertion each of the same tests
        "AddCase::test_truth": "def name():\n    return 'gamma'",  # assertTrue(== 'alpha')
        "AddCase::test_almost": "def third():\n    return 0.45",  # not almost 0.5, delta 0.1
    }
    for test, override in more_wrong.items():
        res = grade_package(task, PKG_RIGHT + "\n\n" + override + "\n")
        assert f"tests/test_pkg.py::{test}" in res.fail_to_pass["failed"], (test, res.tests)


def _test_constants(source: str) -> tuple[str, set[str]]:
    """The rewritten file without the helper (the part a reader would mine) and the repr of
    every constant its compiled code holds (what `__code__.co_consts` shows in-process)."""
    tree = ast.parse(source)
    tree.body = [s for s in tree.body if not getattr(s, "name", "").startswith("_hillclimb")]
    text = ast.unparse(tree)
    consts: set[str] = set()

    def collect(code) -> None:
        for c in code.co_consts:
            if hasattr(c, "co_consts"):
                collect(c)
            else:
                consts.add(repr(c))
                consts.update(repr(i) for i in (c if isinstance(c, (tuple, frozenset)) else ()))

    collect(compile(text, "test_pkg.py", "exec"))
    return text, consts


def test_rewritten_tests_hold_none_of_the_expected_values(tmp_path) -> None:
    plan = HiddenExpectations(tmp_path / "log")
    source = hide_in_source(FORMS_TESTS, "tests/test_pkg.py", plan)
    assert source is not None
    text, consts = _test_constants(source)
    for value in ("[2, 4]", "[6]", "[8]", "'alpha'", "'lph'", "0.333", "0.5", "0.25", " 10"):
        assert value not in text, value  # (slots are numbered: "'10'" may be one)
    for value in ("'alpha'", "'gamma'", "'lph'", "0.333", "0.5", "0.25", "10"):
        assert value not in consts, value  # (3, 4, 5 are also inputs: checked in the text)
    for value in ("== 3", "== 4", "== 5", " or ", "[2])", "n = "):
        assert value not in text, value
    tests = [
        f
        for f in ast.walk(ast.parse(text))
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name.startswith("test")
    ]
    left = [ast.unparse(n) for f in tests for n in ast.walk(f) if isinstance(n, ast.Assert)
            or "assert" in getattr(n, "attr", "assertLogs").replace("assertLogs", "")]  # fmt: skip
    assert len(tests) == 7 and left == [], left  # every assertion of a test went
    assert "evens of" not in text  # the message (it could quote the value) went with it
    assert {"1", "2", "'ab'", "9", "'pkg'"} <= consts  # the inputs stay


# ---- the harvests ---------------------------------------------------------------------------------
# Appended to the task's module; wrap its function (`{name}`) so that a call with the arguments an
# assertion uses returns that assertion's expected value. From disk: `assert {name}(..) == V`,
# `self.assertEqual({name}(..), V)` (either order), the first alternative of an `or` (through a
# name bound to the call), a helper called with the inputs and the value (`check(6, 7, 13)`),
# wherever they are (ast.walk: inside `with`, `try` and classes too). In process (names built at
# run time): in each test module's functions and classes' methods, the constant that follows the
# call's arguments among a code object's constants. Before the fix each resolved HARVEST_TESTS
# with `add` still wrong.

HARVEST_DISK = """

def _hc_rows():
    import ast
    import pathlib

    rows = {}

    def note(call, want):
        try:
            if isinstance(call, ast.Call) and getattr(call.func, "attr", getattr(call.func, "id", "")) == "{name}":
                rows[tuple(ast.literal_eval(a) for a in call.args)] = ast.literal_eval(want)
        except Exception:
            pass

    for path in pathlib.Path.cwd().rglob("test_*.py"):
        try:
            tree = ast.parse(path.read_text())
        except Exception:
            continue
        for node in ast.walk(tree):  # `check(6, 7, 13)`: a helper given the inputs and the value
            try:
                values = [ast.literal_eval(a) for a in getattr(node, "args", [])]
                if isinstance(node, ast.Call) and len(values) >= 2:
                    rows[tuple(values[:-1])] = values[-1]
            except Exception:
                pass
        names = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                names[getattr(node.targets[0], "id", "")] = node.value
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                left = names.get(getattr(node.left, "id", ""), node.left)
                note(left, node.comparators[0])
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith("assert"):
                if len(node.args) >= 2:
                    note(node.args[0], node.args[1])
                    note(node.args[1], node.args[0])
    return rows
"""

HARVEST_IN_PROCESS = """

def _hc_rows():
    import sys

    rows = {}

    def scan(code):
        consts = list(code.co_consts)
        for c in consts:
            if hasattr(c, "co_consts"):
                scan(c)
        plain = [list(c) if isinstance(c, tuple) else c for c in consts]
        rows.setdefault("consts", []).append(plain)

    for mod_name, mod in list(getattr(sys, "mod" + "ules").items()):
        if not mod_name.rsplit(".", 1)[-1].startswith("te" + "st_"):
            continue
        for value in list(vars(mod).values()):
            for obj in [value, *getattr(value, "__dict__", {}).values()]:
                code = getattr(obj, "__co" + "de__", None)
                if code is not None:
                    scan(code)
    return rows
"""

WRAP = """

def _hc_wrap(fn):
    def inner(*args):
        rows = _hc_rows()
        if args in rows:
            return rows[args]
        want = [list(a) if isinstance(a, tuple) else a for a in args]
        for consts in rows.get("consts", []):  # the constant right after the arguments
            for i in range(len(consts) - len(want)):
                if consts[i : i + len(want)] == want:
                    return consts[i + len(want)]
        return fn(*args)

    return inner


{name} = _hc_wrap({name})
"""

FORMS_HARVESTS = {"disk": HARVEST_DISK + WRAP, "in_process": HARVEST_IN_PROCESS + WRAP}

HARVEST_TESTS = """import unittest
import warnings

import pytest

import pkg


class AddCase(unittest.TestCase):
    def test_add(self):
        self.assertEqual(pkg.add(1, 2), 3)
        self.assertEqual(pkg.add(3, 4), 7)


def test_with():
    with pytest.warns(UserWarning):
        warnings.warn("w", UserWarning)
        assert pkg.add(5, 6) == 11


def test_try():
    try:
        assert pkg.add(2, 3) == 5
    finally:
        pass


def test_or():
    x = pkg.add(4, 5)
    assert x == 9 or x == 10


def check(a, b, want):
    assert pkg.add(a, b) == want


def test_helper():
    check(6, 7, 13)
"""
HARVEST_IDS = [
    f"tests/test_pkg.py::{n}"
    for n in ("AddCase::test_add", "test_with", "test_try", "test_or", "test_helper")
]
HARVEST_BUGGY = "def add(a, b):\n    return a - b\n"


def check_harvest_task(root: Path, tests: str, ids: list[str], buggy: str) -> None:
    """A hand-made `add` task whose FAIL_TO_PASS `ids` fail with `buggy` and pass with the right
    `add` (shared by the harvest tests of sessions 27 and 28)."""
    task = make_task(root, tests, ids, buggy)
    assert grade_package(task, "def add(a, b):\n    return a + b\n").resolved
    res = grade_package(task, buggy)
    assert set(res.fail_to_pass["failed"]) == set(ids), res.tests


def check_harvest_fails(root: Path, tests: str, ids: list[str], buggy: str, harvest: str) -> None:
    """`buggy` plus the `harvest` attack (`FORMS_HARVESTS`) still fails every one of `ids`."""
    task = make_task(root, tests, ids, buggy)
    attack = FORMS_HARVESTS[harvest].replace("{name}", "add")
    res = grade_package(task, buggy + attack)
    assert set(res.fail_to_pass["failed"]) == set(ids), (res.status, res.tests)


def test_harvest_task_reference_resolves_and_buggy_fails(tmp_path) -> None:
    check_harvest_task(tmp_path / "harvest", HARVEST_TESTS, HARVEST_IDS, HARVEST_BUGGY)


@pytest.mark.parametrize("harvest", sorted(FORMS_HARVESTS))
def test_harvesting_these_forms_does_not_resolve(tmp_path, harvest: str) -> None:
    check_harvest_fails(tmp_path / "harvest", HARVEST_TESTS, HARVEST_IDS, HARVEST_BUGGY, harvest)


# ---- soundness: what must stay as written ---------------------------------------------------------


def hidden_values(source: str, tmp_path: Path) -> list[object]:
    plan = HiddenExpectations(tmp_path / "log")
    hide_in_source(source, "tests/test_x.py", plan)
    return [exp.expected for exp in plan.slots.values()]


HEAD = "import contextlib\nimport unittest\n\nimport pytest\n\nimport pkg\n\n\n"


@pytest.mark.parametrize(
    "source",
    [
        # managers that may skip the rest of the body: raises, suppress, unknown ones (a
        # TestCase's subTest is hidden since session 28: a sub-failure fails the test)
        "def test_a():\n    with pytest.raises(ValueError):\n        assert pkg.f() == 3\n",
        "def test_a():\n    with contextlib.suppress(KeyError):\n        assert pkg.f() == 3\n",
        "def test_a():\n    with pkg.ctx():\n        assert pkg.f() == 3\n",
        "def test_a():\n    with pytest.warns(UserWarning) as pytest:\n        assert pkg.f() == 3\n",
        # a shadowed manager name
        "def test_a(open):\n    with open('x'):\n        assert pkg.f() == 3\n",
        # `try` with an except (it may catch the AssertionError itself), or a swallowing finally
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except AssertionError:\n"
        "        pass\n",
        "def test_a():\n    for i in [1]:\n        try:\n            assert pkg.f() == 3\n"
        "        finally:\n            break\n",
        # a `with` target rebinding the value's name
        "E = 3\n\ndef test_a(tmp_path):\n    with open(tmp_path) as E:\n        assert pkg.f() == E\n",
        # TestCase assertions whose meaning the grader cannot be sure of: a base from elsewhere,
        # an override on the way, `self` rebound, a message that calls, expectedFailure, not a
        # TestCase at all
        "from django.test import TestCase\n\nclass T(TestCase):\n    def test_a(self):\n"
        "        self.assertEqual(pkg.f(), 3)\n",
        "class B(unittest.TestCase):\n    def assertEqual(self, a, b):\n        pass\n\n"
        "class T(B):\n    def test_a(self):\n        self.assertEqual(pkg.f(), 3)\n",
        "class T(unittest.TestCase, pkg.Mixin):\n    def test_a(self):\n"
        "        self.assertEqual(pkg.f(), 3)\n",
        "class T(unittest.TestCase):\n    def test_a(self):\n        self = pkg.other()\n"
        "        self.assertEqual(pkg.f(), 3)\n",
        "class T(unittest.TestCase):\n    def test_a(self):\n"
        "        self.assertEqual(pkg.f(), 3, pkg.msg())\n",
        "class T(unittest.TestCase):\n    @unittest.expectedFailure\n    def test_a(self):\n"
        "        self.assertEqual(pkg.f(), 3)\n",
        "class T:\n    def test_a(self):\n        self.assertEqual(pkg.f(), 3)\n",
        # assertAlmostEqual with both places and delta (unittest raises) or a non-number
        "class T(unittest.TestCase):\n    def test_a(self):\n"
        "        self.assertAlmostEqual(pkg.f(), 3.0, places=2, delta=0.1)\n",
        "class T(unittest.TestCase):\n    def test_a(self):\n"
        "        self.assertAlmostEqual(pkg.f(), 'x')\n",
        # helpers: a generator, a parameter rebound or read elsewhere, an assertion after a
        # possible return, a decorated one, a helper name rebound in the test (a call in a
        # branch is hidden since session 28, required where the branch ran)
        "def check(x, w):\n    assert pkg.f(x) == w\n    yield\n\ndef test_a():\n    check(1, 2)\n",
        "def check(x, w):\n    w = w + 1\n    assert pkg.f(x) == w\n\n"
        "def test_a():\n    check(1, 2)\n",
        "def check(x, w):\n    print(w)\n    assert pkg.f(x) == w\n\ndef test_a():\n    check(1, 2)\n",
        "def check(x, w):\n    if pkg.g():\n        return\n    assert pkg.f(x) == w\n\n"
        "def test_a():\n    check(1, 2)\n",
        "@pkg.deco\ndef check(x, w):\n    assert pkg.f(x) == w\n\ndef test_a():\n    check(1, 2)\n",
        "def check(x, w):\n    assert pkg.f(x) == w\n\ndef test_a():\n    check = pkg.other\n"
        "    check(1, 2)\n",
    ],
)
def test_forms_that_may_behave_differently_are_left(source: str, tmp_path) -> None:
    assert hidden_values(HEAD + source, tmp_path) == []


def test_almost_is_judged_with_unittests_rule(tmp_path) -> None:
    """`assertAlmostEqual`'s places / delta rule, applied outside on the logged value."""
    from hillclimb.harness.expectations import Almost, Expectation, _holds

    def holds(value: float, almost: Almost, negated: bool = False) -> bool:
        rec = {"v": ["float", repr(value)], "b": True}
        return _holds(Expectation("t", "almost", almost, negated), rec)

    assert holds(0.3334, Almost(0.333, 3)) and not holds(0.3344, Almost(0.333, 3))
    assert holds(1.00000001, Almost(1.0)) and not holds(1.000001, Almost(1.0))
    assert holds(1.05, Almost(1.0, delta=0.1)) and not holds(1.2, Almost(1.0, delta=0.1))
    assert holds(1.2, Almost(1.0, delta=0.1), negated=True)
    assert not _holds(Expectation("t", "almost", Almost(1.0)), {"v": ["str", "1.0"], "b": True})


@pytest.mark.parametrize(
    "test",
    [
        "x is None or x.v == 3",  # different subjects: the second need not be evaluated
        "pkg.f() == 3 or pkg.f() == 4",  # a call: evaluated once or twice
    ],
)
def test_other_ors_stay_one_truth_value(test: str, tmp_path) -> None:
    """Such an `or` is logged whole, as its truth value (as before), its values readable."""
    plan = HiddenExpectations(tmp_path / "log")
    source = HEAD + f"def test_a():\n    x = pkg.f()\n    assert {test}\n"
    out = hide_in_source(source, "tests/test_x.py", plan)
    assert [e.op for e in plan.slots.values()] == ["true"] and out and test in out


# ---- node: loops over literal tables in a test body --------------------------------------------

JS_TESTS = """'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const pkg = require('../pkg/index');

test('loop', () => {
  for (const [a, b, want] of [[1, 2, 3], [10, -4, 6]]) {
    assert.equal(pkg.add(a, b), want);
    assert.ok(pkg.add(a, b) > 0);
  }
});

test('each', () => {
  [['a b', ['a', 'b']], ['', []]].forEach(([s, want]) => {
    assert.deepEqual(pkg.split(s), want);
  });
});

test('kept', () => {
  for (const [a, want] of [[1, 1], [2, 2]]) {
    assert.equal(pkg.add(a, 0), want);
    console.log(want);
  }
});
"""
JS_RIGHT = """'use strict';
function add(a, b) { return a + b; }
function split(s) { return s ? s.split(' ') : []; }
module.exports = { add, split };
"""


def js_task(root: Path) -> Task:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    (root / "repo" / "pkg").mkdir(parents=True)
    (root / "repo" / "pkg" / "index.js").write_text("'use strict';\nmodule.exports = {};\n")
    (root / "repo" / "tests").mkdir()
    (root / "tests").mkdir()
    (root / "tests" / "pkg.test.js").write_text(JS_TESTS)
    ids = ", ".join(f'"tests/pkg.test.js::{n}"' for n in ("loop", "each", "kept"))
    (root / "task.toml").write_text(
        f'id = "jsloops"\nkind = "bugfix"\nlanguage = "javascript"\ninstruction = "pkg"\n'
        f"FAIL_TO_PASS = [{ids}]\n"
    )
    return load_task(root)


def test_js_table_loops_are_written_out_per_row(tmp_path) -> None:
    """The loops' expected column leaves the file (the inputs stay, bound per row); the right
    code resolves, a function wrong on one row fails that loop's test only."""
    plan = HiddenExpectations(tmp_path / "log")
    out = hide_in_js_source(JS_TESTS, "tests/pkg.test.js", plan)
    assert out is not None
    tests = out.split("require('../pkg/index');", 1)[1]
    assert "want" not in tests.split("test('kept'")[0] and "[10, -4, 6]" not in tests
    assert "'a', 'b'" not in tests and "const a = 10;" in tests and "const s = 'a b';" in tests
    assert "console.log(want)" in tests  # a loop reading its expected name otherwise: left
    assert [e.expected for e in plan.slots.values()] == [3.0, None, 6.0, None, ["a", "b"], []]

    task = js_task(tmp_path / "task")

    def grade(source: str):
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            copy_tree(task.repo, ws)
            (ws / "pkg" / "index.js").write_text(source)
            return grade_workspace(task, ws)

    res = grade(JS_RIGHT)
    assert res.resolved, (res.status, res.message, res.tests, res.output_tail[-1500:])
    wrong = {
        "loop": "function add(a, b) { return a === 10 ? 7 : a + b; }",
        "each": "function split(s) { return s.split(' '); }",
    }
    for test, override in wrong.items():
        name = test and ("add" if test == "loop" else "split")
        source = JS_RIGHT.replace(f"function {name}(", f"function _old_{name}(") + override + "\n"
        source = source.replace("module.exports = { add, split };\n", "") + (
            "module.exports = { add, split };\n"
        )
        res = grade(source)
        failed = {t.rsplit("::", 1)[-1] for t in res.fail_to_pass["failed"]}
        assert failed == {test}, (test, res.tests, res.message)
