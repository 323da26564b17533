"""Outside checks of the grader: expected values in the forms session 27 left readable (session 28).

Sessions 25-27 hid the expected values of a test body's direct assertions, of unittest asserts,
of `with`/`try`-`finally` bodies and of module-level helpers, but left readable, from disk or
in-process: assertions in `if`/`elif`/`else` branches, in `try` blocks with `except` handlers,
in a TestCase's `with self.subTest(...)`, and in helper methods of a test class
(`self._check(x, want)`). A submission reading the test files for them resolved the harvest
task below with the bug in place. The grader now hides them too: a branch's or handler's
slots are required only where it ran (a marker each logs first; one of an `if`'s two markers
must log, so silencing the helper still fails the test), handlers that may catch the
`AssertionError` itself (`except Exception`, bare, a class of the code under test) are left,
`subTest` bodies are required like direct ones (a sub-failure fails the test) and lose their
labels, helper methods get a copy like module-level helpers. Each form below: its values
leave the file (fails on session 27's code), the right code resolves, code taking the other
branch / handler honestly still passes, a wrong function fails exactly that form's test.
"""

from __future__ import annotations

import ast

import pytest

from hillclimb.harness.expectations import HiddenExpectations, hide_in_js_source, hide_in_source
from test_outside_checks_s26_expect import grade_package, make_task
from test_outside_checks_s27_expect3 import (
    FORMS_HARVESTS,
    _test_constants,
    check_harvest_fails,
    check_harvest_task,
)

PKG_RIGHT = """
def parse(s):
    return int(s)


def inv(x):
    return 1 / x


def double(x):
    return 2 * x


def words(s):
    return s.split()


def count(xs):
    return len(xs)
"""

FORMS_TESTS = """import unittest

import pytest

import pkg


def test_branch():
    got = pkg.parse(" 12 ")
    if isinstance(got, str):
        assert got == "12"
    elif got > 100:
        assert got == 120
    else:
        assert got == 12


def test_try():
    try:
        assert pkg.inv(4) == 0.25
        assert pkg.inv(0) == 0
    except ZeroDivisionError:
        assert pkg.inv(2) == 0.5
    else:
        assert pkg.inv(1) == 1
    finally:
        assert pkg.double(21) == 42


class SubCase(unittest.TestCase):
    def test_sub(self):
        for x, want in [(1, 2), (3, 6)]:
            with self.subTest(x=x, want=want):
                self.assertEqual(pkg.double(x), want)


class HelperCase(unittest.TestCase):
    def _check(self, s, want):
        self.assertEqual(pkg.words(s), want, msg="words")
        self.assertIsNotNone(pkg.words(s))

    def test_words(self):
        self._check("a b", ["a", "b"])
        self._check("c d", want=["c", "d"])


class TestPlain:
    def check(self, xs, n):
        assert pkg.count(xs) == n

    def test_count(self):
        self.check([7, 8, 9, 10, 11], 5)
"""
FORMS = {  # form -> (test id, the expected values that must leave the file)
    "if": ("test_branch", ("'12'", "== 120", "== 12")),
    "try": ("test_try", ("0.25", "== 0", "0.5", "== 1", "42")),
    "subtest": ("SubCase::test_sub", ("2)", "6)", "want=")),
    "method": ("HelperCase::test_words", ("'a', 'b'", "'c', 'd'")),
    "plain_method": ("TestPlain::test_count", (", 5)",)),
}
FORMS_IDS = [f"tests/test_pkg.py::{test}" for test, _ in FORMS.values()]
WRONG = {  # a function wrong for one form's test only
    "if": "def parse(s):\n    return int(s) + 1",
    "try": "def inv(x):\n    return 1 / x if x != 2 else 0.4",
    "subtest": "def double(x):\n    return 2 * x if x != 3 else 7",
    "method": "def words(s):\n    return s.split() if s != 'c d' else ['c']",
    "plain_method": "def count(xs):\n    return len(xs) + 1",
}
OTHER_BRANCH = {  # right by the test's own rule, through the other branch / handler
    "if": "def parse(s):\n    return s.strip()",
    "try": "def inv(x):\n    return 1 / x if x else 0",
}


def _readable(source: str, test: str) -> list[str]:
    """The asserting statements of `test` (`Class::name` or `name`) left as written: `assert`,
    `self.assert*`, calls of helpers (`check(...)`, `self._check(...)`)."""
    *owner, name = test.split("::")
    tree = ast.parse(source)
    scope = (
        next((c for c in tree.body if getattr(c, "name", "") == owner[0]), tree) if owner else tree
    )
    fn = next(f for f in ast.walk(scope) if isinstance(f, ast.FunctionDef) and f.name == name)
    return [
        ast.unparse(n)
        for n in ast.walk(fn)
        if isinstance(n, ast.Assert)
        or isinstance(n, ast.Expr)
        and isinstance(n.value, ast.Call)
        and getattr(n.value.func, "attr", getattr(n.value.func, "id", "")).startswith(
            ("assert", "check", "_check")
        )
    ]


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_form_hides_its_expected_values(form: str, tmp_path) -> None:
    """Session 27's code left these assertions as written (this fails there for each form)."""
    plan = HiddenExpectations(tmp_path / "log")
    source = hide_in_source(FORMS_TESTS, "tests/test_pkg.py", plan)
    assert source is not None
    test, values = FORMS[form]
    text, _ = _test_constants(source)
    assert _readable(text, test) == [], _readable(text, test)
    fn_text = ast.unparse(
        next(f for f in ast.walk(ast.parse(text)) if getattr(f, "name", "") == test.split("::")[-1])
    )
    for value in values:
        assert value not in fn_text, (value, fn_text)
    owned = [s for s, e in plan.slots.items() if e.test == f"tests/test_pkg.py::{test}"]
    assert any(plan.slots[s].op != "branch" for s in owned), owned


def test_no_expected_value_among_the_compiled_constants(tmp_path) -> None:
    plan = HiddenExpectations(tmp_path / "log")
    _, consts = _test_constants(hide_in_source(FORMS_TESTS, "tests/test_pkg.py", plan) or "")
    for value in ("120", "12", "0.25", "0.5", "42", "6", "'a'", "'b'", "'c'", "'d'", "5"):
        assert value not in consts, value
    assert {"'a b'", "21", "7", "8", "9"} <= consts  # the inputs stay


def test_every_form_keeps_its_meaning(tmp_path) -> None:
    """The right code resolves, and so does code taking the other branch or handler (the test's
    own rule accepts it); each wrong function fails exactly its form's test."""
    task = make_task(tmp_path / "forms", FORMS_TESTS, FORMS_IDS, "def parse(s):\n    return 0\n")
    res = grade_package(task, PKG_RIGHT)
    assert res.resolved, (res.status, res.message, res.tests)
    assert set(res.value_checked) == set(FORMS_IDS), res.value_checked
    for form, override in OTHER_BRANCH.items():
        res = grade_package(task, PKG_RIGHT + "\n\n" + override + "\n")
        assert res.resolved, (form, res.tests, res.message)
    for form, override in WRONG.items():
        res = grade_package(task, PKG_RIGHT + "\n\n" + override + "\n")
        failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
        assert failed == {FORMS[form][0]}, (form, res.tests, res.message)


SILENCE = """

def _silence():
    import sys

    for name, mod in list(getattr(sys, "mod" + "ules").items()):
        if name.rsplit(".", 1)[-1].startswith("test_"):
            setattr(mod, "_hillclimb_" + "expect", lambda *a, **k: None)


_silence_old_parse = parse


def parse(s):
    _silence()
    return _silence_old_parse(s)


_silence_old_inv = inv


def inv(x):
    _silence()
    return _silence_old_inv(x)
"""


def test_silencing_the_helper_skips_no_branch(tmp_path) -> None:
    """Code that replaces the helper in the test module (the rest of the test then logs
    nothing, markers included) fails the branch and handler tests: one of an `if`'s markers must
    log, and a `try` body's slots are excused only by a handler's marker."""
    task = make_task(tmp_path / "forms", FORMS_TESTS, FORMS_IDS, "def parse(s):\n    return 0\n")
    res = grade_package(task, PKG_RIGHT + SILENCE)
    failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
    assert {"test_branch", "test_try"} <= failed, (res.tests, res.message)


# ---- the harvests (session 27's attacks, `FORMS_HARVESTS`) on these forms ---------------------

HARVEST_TESTS = """import unittest

import pytest

import pkg


def test_if():
    got = pkg.add(4, 5)
    if got is None:
        pytest.fail("no value")
    else:
        assert got == 9


def test_try():
    try:
        assert pkg.add(2, 3) == 5
    except ZeroDivisionError:
        pytest.fail("raised")


class AddCase(unittest.TestCase):
    def test_sub(self):
        with self.subTest(a=1, b=2):
            self.assertEqual(pkg.add(1, 2), 3)

    def _check(self, a, b, want):
        self.assertEqual(pkg.add(a, b), want)

    def test_helper(self):
        self._check(6, 7, 13)
"""
HARVEST_IDS = [
    f"tests/test_pkg.py::{n}"
    for n in ("test_if", "test_try", "AddCase::test_sub", "AddCase::test_helper")
]
HARVEST_BUGGY = "def add(a, b):\n    return a - b\n"


def test_harvest_task_reference_resolves_and_buggy_fails(tmp_path) -> None:
    check_harvest_task(tmp_path / "harvest", HARVEST_TESTS, HARVEST_IDS, HARVEST_BUGGY)


@pytest.mark.parametrize("harvest", sorted(FORMS_HARVESTS))
def test_harvesting_these_forms_does_not_resolve(tmp_path, harvest: str) -> None:
    """Before: the disk harvest resolved this task with `add` wrong."""
    check_harvest_fails(tmp_path / "harvest", HARVEST_TESTS, HARVEST_IDS, HARVEST_BUGGY, harvest)


# ---- soundness: what must stay as written ---------------------------------------------------------


def hidden_values(source: str, tmp_path) -> list[object]:
    plan = HiddenExpectations(tmp_path / "log")
    hide_in_source(source, "tests/test_x.py", plan)
    return [exp.expected for exp in plan.slots.values() if exp.op != "branch"]


HEAD = "import unittest\n\nimport pytest\n\nimport pkg\n\n\n"


@pytest.mark.parametrize(
    "source",
    [
        # handlers that may catch the AssertionError itself: the assertion's failure is handled
        # (one that surely catches it and does nothing: the comparison is dropped, no slot, and
        # one that fails the test is hidden, since session 28: test_outside_checks_s28_expect5)
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except pkg.Error:\n        pass\n",
        "ValueError = Exception\n\ndef test_a():\n    try:\n        assert pkg.f() == 3\n"
        "    except ValueError:\n        pass\n",
        # a `finally` that swallows
        "def test_a():\n    for i in [1]:\n        try:\n            assert pkg.f() == 3\n"
        "        except KeyError:\n            pass\n        finally:\n            break\n",
        # subTest: a label that calls, a `self` that is not a TestCase's, an `as` target
        "class T(unittest.TestCase):\n    def test_a(self):\n        with self.subTest(pkg.g()):\n"
        "            self.assertEqual(pkg.f(), 3)\n",
        "class T(unittest.TestCase):\n    def subTest(self, **kw):\n        return pkg.ctx()\n\n"
        "    def test_a(self):\n        with self.subTest(x=1):\n            self.assertEqual(pkg.f(), 3)\n",
        "class TestA:\n    def test_a(self):\n        with self.subTest(x=1):\n"
        "            assert pkg.f() == 3\n",
        # helper methods: subclassed (an override may be called), decorated, defined twice,
        # `self` rebound at the call site, a static test method
        "class TestA:\n    def check(self, w):\n        assert pkg.f() == w\n\n"
        "    def test_a(self):\n        self.check(3)\n\nclass TestB(TestA):\n"
        "    def check(self, w):\n        pass\n",
        "class TestA:\n    @staticmethod\n    def check(w):\n        assert pkg.f() == w\n\n"
        "    def test_a(self):\n        self.check(3)\n",
        "class TestA:\n    def check(self, w):\n        assert pkg.f() == w\n\n"
        "    check = pkg.other\n\n    def test_a(self):\n        self.check(3)\n",
        "class TestA:\n    def check(self, w):\n        assert pkg.f() == w\n\n"
        "    def test_a(self):\n        self = pkg.other()\n        self.check(3)\n",
        # a branch after a possible return
        "def test_a():\n    if pkg.g():\n        return\n    if pkg.h():\n        assert pkg.f() == 3\n",
    ],
)
def test_forms_that_may_behave_differently_are_left(source: str, tmp_path) -> None:
    assert hidden_values(HEAD + source, tmp_path) == []


def test_markers_require_one_branch_and_excuse_only_what_was_skipped(tmp_path) -> None:
    """The judge's rule on the logged markers: an `if` needs one branch's marker, a branch's
    slots are required only when its marker logged, a `try` body's unless a handler's did."""
    from hillclimb.harness.expectations import judge_expectations

    plan = HiddenExpectations(tmp_path / "log")
    src = HEAD + (
        "def test_a():\n    if pkg.g():\n        assert pkg.f() == 3\n\n"
        "def test_b():\n    try:\n        assert pkg.f() == 3\n    except KeyError:\n"
        "        assert pkg.h() == 4\n"
    )
    hide_in_source(src, "tests/test_x.py", plan)
    by_test = {
        t: {e.op + ("" if e.op == "branch" else f"{e.expected}"): s for s, e in plan.slots.items()
            if e.test == f"tests/test_x.py::{t}"}
        for t in ("test_a", "test_b")
    }  # fmt: skip
    a, b = by_test["test_a"], by_test["test_b"]
    a_marks = [s for s, e in plan.slots.items() if e.op == "branch" and e.test.endswith("test_a")]
    b_mark = next(
        s for s, e in plan.slots.items() if e.op == "branch" and e.test.endswith("test_b")
    )

    def judge(test: str, logged: list[tuple[str, object]]) -> str:
        import json

        plan.log.write_text(
            "".join(
                json.dumps({"s": s, "t": f"tests/test_x.py::{test} (call)", "v": v, "b": True})
                + "\n"
                for s, v in logged
            )
        )
        return judge_expectations(plan, {f"tests/test_x.py::{test}": "passed"})[0][
            f"tests/test_x.py::{test}"
        ]

    assert judge("test_a", []) == "failed"  # neither branch: the helper was silenced
    assert judge("test_a", [(a_marks[1], ["None"])]) == "passed"  # the (added) else ran
    assert judge("test_a", [(a_marks[0], ["None"])]) == "failed"  # if ran, its slot missing
    assert judge("test_a", [(a_marks[0], ["None"]), (a["==3"], ["int", "3"])]) == "passed"
    assert judge("test_a", [(a_marks[0], ["None"]), (a["==3"], ["int", "4"])]) == "failed"
    assert judge("test_b", []) == "failed"  # no handler ran: the body's slot is required
    assert judge("test_b", [(b["==3"], ["int", "3"])]) == "passed"
    assert judge("test_b", [(b_mark, ["None"])]) == "failed"  # the handler's own slot missing
    assert judge("test_b", [(b_mark, ["None"]), (b["==4"], ["int", "4"])]) == "passed"


# ---- node: assertions and loop tables over several lines, top-level loops making tests ----------

JS_TESTS = """'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const pkg = require('../pkg/index');

test('multi', () => {
  assert.deepEqual(pkg.parse('a=1'), {
    a: 1,
  });
  assert.deepEqual(pkg.split('x y'), [
    'x',
    'y',
  ]);
});

test('table', () => {
  for (const [s, want] of [
    ['p q', ['p', 'q']],
    ['', []],
  ]) {
    assert.deepEqual(pkg.split(s), want);
  }
});

for (const [a, b, want] of [
  [1, 2, 3],
  [10, -4, 14],
]) {
  test(`add ${a} ${b}`, () => {
    assert.equal(pkg.add(a, b), want);
  });
}
"""
JS_RIGHT = """'use strict';
function add(a, b) { return a === 10 ? a - b : a + b; }
function split(s) { return s ? s.split(' ') : []; }
function parse(s) { const [k, v] = s.split('='); return { [k]: Number(v) }; }
module.exports = { add, split, parse };
"""
JS_IDS = ["multi", "table", "add 1 2", "add 10 -4"]
JS_WRONG = {  # a function wrong for one test only
    "multi": ("parse", "function parse(s) { return { a: '1' }; }"),
    "table": ("split", "function split(s) { return s.split(' '); }"),
    "add 10 -4": ("add", "function add(a, b) { return a + b; }"),
}


def test_js_multiline_and_test_loops_are_hidden(tmp_path) -> None:
    """Session 27's code left every one of these as written (this fails there)."""
    plan = HiddenExpectations(tmp_path / "log")
    out = hide_in_js_source(JS_TESTS, "tests/pkg.test.js", plan)
    assert out is not None
    tests = out.split("require('../pkg/index');", 1)[1]
    for value in ("a: 1", "'x',", "'p', 'q'", "want", "14", "[1, 2, 3]"):
        assert value not in tests, (value, tests)
    assert "const a = 10;" in tests and 'test("add 10 -4"' in tests  # inputs and names stay
    assert sorted({e.test.split("::")[1] for e in plan.slots.values()}) == sorted(JS_IDS)


def js_task(root, tests: str, ids: list[str], task_id: str):
    """A hand-made JS bug-fix task: `pkg/index.js` (empty exports), hidden `tests/pkg.test.js`
    (`tests`), FAIL_TO_PASS `ids` (names after `tests/pkg.test.js::`); skips without node."""
    import shutil

    from hillclimb.harness.task import load_task

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    (root / "repo" / "pkg").mkdir(parents=True)
    (root / "repo" / "pkg" / "index.js").write_text("'use strict';\nmodule.exports = {};\n")
    (root / "repo" / "tests").mkdir()
    (root / "tests").mkdir()
    (root / "tests" / "pkg.test.js").write_text(tests)
    listed = ", ".join(f'"tests/pkg.test.js::{n}"' for n in ids)
    (root / "task.toml").write_text(
        f'id = "{task_id}"\nkind = "bugfix"\nlanguage = "javascript"\ninstruction = "pkg"\n'
        f"FAIL_TO_PASS = [{listed}]\n"
    )
    return load_task(root)


def grade_js(task, source: str):
    """`task` graded with `source` as `pkg/index.js`."""
    import tempfile
    from pathlib import Path

    from hillclimb.harness.grading import grade_workspace
    from hillclimb.harness.patching import copy_tree

    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        (ws / "pkg" / "index.js").write_text(source)
        return grade_workspace(task, ws)


def test_js_forms_keep_their_meaning(tmp_path) -> None:
    task = js_task(tmp_path / "task", JS_TESTS, JS_IDS, "jsforms")

    def grade(source: str):
        return grade_js(task, source)

    res = grade(JS_RIGHT)
    assert res.resolved, (res.status, res.message, res.tests, res.output_tail[-1500:])
    assert len(res.value_checked) == len(JS_IDS), res.value_checked
    for test, (name, override) in JS_WRONG.items():
        source = JS_RIGHT.replace(f"function {name}(", f"function _old_{name}(")
        source = source.replace("module.exports", override + "\nmodule.exports")
        res = grade(source)
        failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
        assert failed == {test}, (test, res.tests, res.message)


JS_HEAD = (
    "'use strict';\n\nconst test = require('node:test');\n"
    "const assert = require('node:assert/strict');\nconst pkg = require('../pkg/index');\n\n"
)


@pytest.mark.parametrize(
    "body",
    [
        # a test name that reads the expected value (the id would carry it), or one name for
        # two rows (a non-integer number in the name, `${1.5}`, is written out since session 28
        # round 5: `_js_number`, test_outside_checks_s28_expect5)
        "for (const [a, want] of [[1, 2], [3, 4]]) {\n  test(`f ${want}`, () => {\n"
        "    assert.equal(pkg.f(a), want);\n  });\n}\n",
        "for (const [a, want] of [[1, 2], [3, 4]]) {\n  test(`f`, () => {\n"
        "    assert.equal(pkg.f(a), want);\n  });\n}\n",
        # a loop body doing more than tests, a table that is not literal
        "for (const [a, want] of [[1, 2]]) {\n  console.log(a);\n  test(`f ${a}`, () => {\n"
        "    assert.equal(pkg.f(a), want);\n  });\n}\n",
        "for (const [a, want] of pkg.rows()) {\n  test(`f ${a}`, () => {\n"
        "    assert.equal(pkg.f(a), want);\n  });\n}\n",
        # an assertion spanning lines that never closes, or holding a comment or template
        "test('t', () => {\n  assert.deepEqual(pkg.f(), [\n    1, // one\n  ]);\n});\n",
        "test('t', () => {\n  assert.deepEqual(pkg.f(), [\n    `1`,\n  ]);\n});\n",
    ],
)
def test_js_forms_the_grader_is_not_sure_of_are_left(body: str, tmp_path) -> None:
    plan = HiddenExpectations(tmp_path / "log")
    assert hide_in_js_source(JS_HEAD + body, "tests/pkg.test.js", plan) is None, plan.slots
