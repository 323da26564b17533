"""Outside checks of the grader: expected values in loops and in `try` blocks whose handlers may
catch the assertion itself (session 28, round 5).

Rounds 1-4 hid the expected values of a test's direct assertions, branches, `try` blocks whose
handlers cannot catch an `AssertionError`, subTests and helpers, but left readable: assertions in
a `while` loop or a `for` over a table the source does not fix (the body may run any number of
times), and in a `try` whose handler may catch the `AssertionError` (`except Exception`, bare
`except`, `except AssertionError`). A submission reading the test file for them resolved the
harvest task below with the bug in place. Now: a loop's body logs a marker on each run (its slots
required only when it logged, every logged value judged) and one after the loop must log; a
handler that surely fails the test once entered (`pytest.fail`, `self.fail`, a `raise`) makes
the assertion a required slot like a direct one (a wrong value failed the test before, through
the handler, and fails it now); a handler that surely catches it and does nothing (`except
Exception: pass`) made a wrong value pass before, so the comparison is dropped (the call stays).
Each form: its values leave the file (fails on the round 4 code), the right code resolves, a
function wrong for one form fails exactly that form's test, and the swallowed one still passes.
"""

from __future__ import annotations

import ast
import json

import pytest

from hillclimb.harness.expectations import (
    HiddenExpectations,
    hide_in_js_source,
    hide_in_source,
    judge_expectations,
)
from test_outside_checks_s26_expect import grade_package, make_task
from test_outside_checks_s27_expect3 import (
    FORMS_HARVESTS,
    _test_constants,
    check_harvest_fails,
    check_harvest_task,
)
from test_outside_checks_s28_expect4 import _readable, grade_js, js_task

PKG_RIGHT = """
def parse(s):
    return int(s)


def triple(x):
    return 3 * x


def inv(x):
    return 1 / x


def halve(x):
    return x // 2


def parts(s):
    return s.split(",")
"""

FORMS_TESTS = """import unittest

import pytest

import pkg


def test_while():
    x, steps = 40, 0
    while x > 5:
        x = pkg.halve(x)
        steps += 1
        assert pkg.triple(steps) in (3, 6, 9)
    else:
        assert x == 5


def test_for_computed():
    for s in pkg.parts("1,2"):
        assert pkg.parse(s) in (1, 2)


def test_try_fail():
    try:
        assert pkg.inv(4) == 0.25
    except Exception as e:
        pytest.fail(f"raised {e}")


def test_try_reraise():
    try:
        assert pkg.parse("7") == 7
    except:
        print("parse failed")
        raise


def test_try_assertion_first():
    try:
        assert pkg.triple(4) == 12
    except AssertionError:
        raise
    except Exception:
        pass


class FailCase(unittest.TestCase):
    def test_fail(self):
        try:
            self.assertEqual(pkg.halve(9), 4)
        except Exception as e:
            self.fail(f"raised {e}")


def test_try_soft():
    try:
        assert pkg.parse("x9") == 99
    except Exception:
        pass
"""
FORMS = {  # form -> (test id, the expected values that must leave the file)
    "while": ("test_while", ("(3, 6, 9)", "== 5")),
    "for": ("test_for_computed", ("(1, 2)",)),
    "except_fail": ("test_try_fail", ("0.25",)),
    "bare_reraise": ("test_try_reraise", ("== 7",)),
    "assertion_first": ("test_try_assertion_first", ("== 12",)),
    "unit_fail": ("FailCase::test_fail", (", 4)",)),
    "swallowed": ("test_try_soft", ("99",)),
}
FORMS_IDS = [f"tests/test_pkg.py::{test}" for test, _ in FORMS.values()]
WRONG = {  # a function wrong for one form's test only
    "while": "def triple(x):\n    return 3 * x if x != 2 else 5",
    "for": "def parts(s):\n    return s.split(',') + ['3']",
    "except_fail": "def inv(x):\n    return 1 / x if x != 4 else 0.3",
    "bare_reraise": "def parse(s):\n    return int(s) if s != '7' else 8",
    "assertion_first": "def triple(x):\n    return 3 * x if x != 4 else 13",
    "unit_fail": "def halve(x):\n    return x // 2 if x != 9 else 5",
    # the handler swallowed this failure before: it must not fail the test now either
    "swallowed": "def parse(s):\n    return 98 if s == 'x9' else int(s)",
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_form_hides_its_expected_values(form: str, tmp_path) -> None:
    """Round 4's code left these assertions as written (this fails there for each form)."""
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
    if form == "swallowed":  # dropped: nothing to judge, the call is still made
        assert owned == [] and "pkg.parse('x9')" in fn_text, (owned, fn_text)
    else:
        assert any(plan.slots[s].op != "branch" for s in owned), owned


def test_no_expected_value_among_the_compiled_constants(tmp_path) -> None:
    plan = HiddenExpectations(tmp_path / "log")
    _, consts = _test_constants(hide_in_source(FORMS_TESTS, "tests/test_pkg.py", plan) or "")
    for value in ("(3, 6, 9)", "0.25", "12", "99"):  # (the loop's `x > 5` stays)
        assert value not in consts, value
    assert {"40", "'1,2'", "4", "'7'", "9", "'x9'"} <= consts  # the inputs stay


@pytest.fixture()
def forms_task(tmp_path):
    return make_task(tmp_path / "forms", FORMS_TESTS, FORMS_IDS, "def parse(s):\n    return 0\n")


def test_every_form_keeps_its_meaning(forms_task) -> None:
    """The right code resolves; each wrong function fails exactly its form's test, except the
    swallowed one (its handler ignored the failure before, so the test still passes)."""
    res = grade_package(forms_task, PKG_RIGHT)
    assert res.resolved, (res.status, res.message, res.tests)
    for form, override in WRONG.items():
        res = grade_package(forms_task, PKG_RIGHT + "\n\n" + override + "\n")
        failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
        want = set() if form == "swallowed" else {FORMS[form][0]}
        assert failed == want, (form, res.tests, res.message)


def test_a_handler_that_fails_still_fails_on_an_exception(forms_task) -> None:
    """The handlers run as written: the call raising still fails through `pytest.fail`."""
    res = grade_package(forms_task, PKG_RIGHT + "\n\ndef inv(x):\n    raise ValueError(x)\n")
    failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
    assert failed == {"test_try_fail"}, (res.tests, res.message)


SILENCE = """

def _silence():
    import sys

    for name, mod in list(getattr(sys, "mod" + "ules").items()):
        if name.rsplit(".", 1)[-1].startswith("test_"):
            setattr(mod, "_hillclimb_" + "expect", lambda *a, **k: None)


def _silenced(fn):
    def wrapper(*args):
        _silence()
        return fn(*args)

    return wrapper


halve, parts, inv = _silenced(halve), _silenced(parts), _silenced(inv)
"""


def test_silencing_the_helper_skips_no_loop_or_handler(forms_task) -> None:
    """Code that replaces the helper in the test module (the rest of the test logs nothing):
    a loop entered needs its body's slots, a loop not entered its marker after the loop, a
    `try` body its slots (no handler marker excuses them)."""
    res = grade_package(forms_task, PKG_RIGHT + SILENCE)
    failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
    assert {"test_while", "test_for_computed", "test_try_fail"} <= failed, (res.tests, res.message)


def test_a_loop_needs_its_exit_marker_and_its_body_only_where_it_ran(tmp_path) -> None:
    """The judge's rule on a loop's markers: the one after the loop must log; the body's slots
    are required once its marker logged; every logged value is judged (each run's)."""
    plan = HiddenExpectations(tmp_path / "log")
    src = "import pkg\n\ndef test_a():\n    while pkg.g():\n        assert pkg.f() == 3\n"
    hide_in_source(src, "tests/test_x.py", plan)
    body = next(s for s, e in plan.slots.items() if e.op == "branch" and e.guard == s)
    after = next(s for s, e in plan.slots.items() if e.op == "branch" and e.guard is None)
    value = next(s for s, e in plan.slots.items() if e.op == "==")

    def judge(logged: list[tuple[str, object]]) -> str:
        plan.log.write_text(
            "".join(
                json.dumps({"s": s, "t": "tests/test_x.py::test_a (call)", "v": v, "b": True})
                + "\n"
                for s, v in logged
            )
        )
        return judge_expectations(plan, {"tests/test_x.py::test_a": "passed"})[0][
            "tests/test_x.py::test_a"
        ]

    three, four, none = ["int", "3"], ["int", "4"], ["None"]
    assert judge([]) == "failed"  # the helper silenced before the loop
    assert judge([(after, none)]) == "passed"  # the loop ran no time
    assert judge([(body, none), (after, none)]) == "failed"  # ran, its value missing
    assert judge([(body, none), (value, three), (after, none)]) == "passed"
    assert judge([(body, none), (value, three), (body, none), (value, four), (after, none)]) == (
        "failed"  # the second run's value is wrong
    )


# ---- the harvests (session 27's attacks, `FORMS_HARVESTS`) on these forms ---------------------

HARVEST_TESTS = """import pytest

import pkg


def test_while():
    n = 0
    while n < 1:
        n += 1
        assert pkg.add(4, 5) == 9


def test_except():
    try:
        assert pkg.add(1, 2) == 3
    except Exception as e:
        pytest.fail(f"raised {e}")


def test_bare():
    try:
        got = pkg.add(6, 7)
        assert got == 13
    except:
        raise
"""
HARVEST_IDS = [f"tests/test_pkg.py::{n}" for n in ("test_while", "test_except", "test_bare")]
HARVEST_BUGGY = "def add(a, b):\n    return a - b\n"


def test_harvest_task_reference_resolves_and_buggy_fails(tmp_path) -> None:
    check_harvest_task(tmp_path / "harvest", HARVEST_TESTS, HARVEST_IDS, HARVEST_BUGGY)


@pytest.mark.parametrize("harvest", sorted(FORMS_HARVESTS))
def test_harvesting_these_forms_does_not_resolve(tmp_path, harvest: str) -> None:
    """Before: the disk harvest resolved this task with `add` wrong."""
    check_harvest_fails(tmp_path / "harvest", HARVEST_TESTS, HARVEST_IDS, HARVEST_BUGGY, harvest)


# ---- soundness: what must stay as written ---------------------------------------------------------

HEAD = "import unittest\n\nimport pytest\n\nimport pkg\n\n\n"


def hidden_values(source: str, tmp_path) -> list[object]:
    plan = HiddenExpectations(tmp_path / "log")
    hide_in_source(HEAD + source, "tests/test_x.py", plan)
    return [exp.expected for exp in plan.slots.values() if exp.op != "branch"]


@pytest.mark.parametrize(
    "source",
    [
        # a loop whose body may return (the marker after it would be skipped honestly), an
        # `else` that leaves the enclosing loop, an assertion after a `break`
        "def test_a():\n    while pkg.g():\n        if pkg.h():\n            return\n"
        "        assert pkg.f() == 3\n",
        "def test_a():\n    for i in pkg.xs():\n        while pkg.g():\n            pass\n"
        "        else:\n            break\n        assert pkg.f() == 3\n",
        "def test_a():\n    while pkg.g():\n        break\n        assert pkg.f() == 3\n",
        # a `break` in an inner loop's `else` leaves the table loop (round 4 unrolled it: the
        # copy's `break` outside any loop made the rewritten file a SyntaxError)
        "def test_a():\n    for x in [1, 2]:\n        while pkg.g(x):\n            pass\n"
        "        else:\n            break\n        assert pkg.f(x) == 3\n",
        # the value rebound in the loop
        "def test_a():\n    want = 3\n    while pkg.g():\n        assert pkg.f() == want\n"
        "        want = 4\n",
        # handlers that may catch the assertion and neither surely fail nor do nothing
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except Exception:\n"
        "        pytest.skip('flaky')\n",
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except Exception:\n"
        "        pkg.log()\n",
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except Exception:\n"
        "        return\n",
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except Exception:\n"
        "        pytest.fail(str(pkg.g()))\n",
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except pkg.Error:\n"
        "        raise\n    except Exception:\n        pass\n",
        # a raise that an enclosing handler may catch (only an AssertionError passes it)
        "def test_a():\n    try:\n        try:\n            assert pkg.f() == 3\n"
        "        except Exception:\n            raise ValueError('x')\n    except ValueError:\n"
        "        pass\n",
        # swallowed, but not the last statement, with an `else`, two conjuncts, a name read later,
        # or the catch not sure
        "def test_a():\n    try:\n        assert pkg.f() == 3\n        pkg.g()\n"
        "    except Exception:\n        pass\n",
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except Exception:\n"
        "        pass\n    else:\n        pkg.g()\n",
        "def test_a():\n    try:\n        assert pkg.f() == 3 and pkg.g() == 4\n"
        "    except Exception:\n        pass\n",
        "def test_a():\n    e = 1\n    try:\n        assert pkg.f() == 3\n    except Exception as e:\n"
        "        pass\n    print(e)\n",
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except pkg.Error:\n        pass\n",
        "Exception = KeyError\n\ndef test_a():\n    try:\n        assert pkg.f() == 3\n"
        "    except Exception:\n        pass\n",
        # a TestCase whose `fail` is not unittest's (not a TestCase: `self.fail` is anything)
        "class TestA:\n    def test_a(self):\n        try:\n            assert pkg.f() == 3\n"
        "        except Exception:\n            self.fail('x')\n",
    ],
)
def test_forms_that_may_behave_differently_are_left(source: str, tmp_path) -> None:
    assert hidden_values(source, tmp_path) == []
    plan = HiddenExpectations(tmp_path / "log2")
    out = hide_in_source(HEAD + source, "tests/test_x.py", plan)
    assert out is None or "== 3" in out, out


def test_swallowed_assertions_elsewhere_keep_the_rest(tmp_path) -> None:
    """A swallowed assertion inside a branch or loop is dropped there too, and the other
    handlers of its `try` (which cannot catch an `AssertionError`) stay as written."""
    src = (
        "def test_a():\n    if pkg.g():\n        try:\n            assert pkg.f() == 3\n"
        "        except KeyError:\n            pkg.h()\n        except (TypeError, AssertionError):\n"
        "            pass\n"
    )
    plan = HiddenExpectations(tmp_path / "log")
    out = hide_in_source(HEAD + src, "tests/test_x.py", plan)
    assert out is not None and "== 3" not in out and "pkg.h()" in out, out
    assert "pkg.f()" in out, out


# ---- node: `describe` blocks (tests named `suite::name` by node's reporter) ---------------------

JS_TESTS = """'use strict';

const { describe, it, test } = require('node:test');
const assert = require('node:assert/strict');
const pkg = require('../pkg/index');

describe('math', () => {
  test('add', () => {
    assert.equal(pkg.add(2, 3), 5);
  });

  it('split', () => {
    assert.deepEqual(pkg.split('x y'), [
      'x',
      'y',
    ]);
  });

  describe('inner', () => {
    it('double', () => {
      assert.equal(pkg.add(21, 21), 42);
    });
  });
});

test('top', () => {
  assert.equal(pkg.add(1, 1), 2);
});
"""
JS_RIGHT = """'use strict';
function add(a, b) { return a + b; }
function split(s) { return s.split(' '); }
module.exports = { add, split };
"""
JS_IDS = ["math::add", "math::split", "math::inner::double", "top"]
JS_WRONG = {  # a function wrong for one test only
    "math::add": "function add(a, b) { return a === 2 ? 6 : a + b; }",
    "math::split": "function split(s) { return [s]; }",
    "math::inner::double": "function add(a, b) { return a === 21 ? 41 : a + b; }",
}


def test_js_describe_blocks_are_hidden(tmp_path) -> None:
    """Round 4's code left every assertion inside `describe` as written (this fails there)."""
    plan = HiddenExpectations(tmp_path / "log")
    out = hide_in_js_source(JS_TESTS, "tests/pkg.test.js", plan)
    assert out is not None
    tests = out.split("require('../pkg/index');", 1)[1]
    for value in (", 5)", "'x',", ", 42)", ", 2)"):
        assert value not in tests, (value, tests)
    assert "  describe('inner', () => {" in tests and "pkg.add(21, 21)" in tests
    assert sorted(e.test.split("::", 1)[1] for e in plan.slots.values()) == sorted(JS_IDS)


def test_js_describe_keeps_its_meaning(tmp_path) -> None:
    task = js_task(tmp_path / "task", JS_TESTS, JS_IDS, "jsdescribe")

    def grade(source: str):
        return grade_js(task, source)

    res = grade(JS_RIGHT)
    assert res.resolved, (res.status, res.message, res.tests, res.output_tail[-1500:])
    assert len(res.value_checked) == len(JS_IDS), res.value_checked
    for test, override in JS_WRONG.items():
        name = override.split("(", 1)[0].split()[-1]
        source = JS_RIGHT.replace(f"function {name}(", f"function _old_{name}(")
        source = source.replace("module.exports", override + "\nmodule.exports")
        res = grade(source)
        failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
        assert failed == {test}, (test, res.tests, res.message)


@pytest.mark.parametrize(
    "body",
    [
        # a block whose inside is not indented one level, or that is not closed at column 0
        "describe('s', () => {\ntest('t', () => {\n  assert.equal(pkg.f(), 3);\n});\n});\n",
        "describe('s', () => {\n  test('t', () => {\n    assert.equal(pkg.f(), 3);\n  });\n",
        # a suite callback taking arguments, a name that is a template
        "describe('s', (t) => {\n  test('t', () => {\n    assert.equal(pkg.f(), 3);\n  });\n});\n",
        "describe(`s`, () => {\n  test('t', () => {\n    assert.equal(pkg.f(), 3);\n  });\n});\n",
        # a suite with modifiers (the whole file stays: a suite the grader does not read)
        "describe.skip('s', () => {\n  test('t', () => {\n    assert.equal(pkg.f(), 3);\n  });\n"
        "});\n\ntest('u', () => {\n  assert.equal(pkg.f(), 4);\n});\n",
    ],
)
def test_js_describe_shapes_the_grader_is_not_sure_of_are_left(body: str, tmp_path) -> None:
    head = (
        "'use strict';\n\nconst { describe, test } = require('node:test');\n"
        "const assert = require('node:assert/strict');\nconst pkg = require('../pkg/index');\n\n"
    )
    plan = HiddenExpectations(tmp_path / "log")
    assert hide_in_js_source(head + body, "tests/x.test.js", plan) is None
    assert plan.slots == {}


# ---- node: top-level test loops whose names hold a non-integer number ---------------------------


def test_js_numbers_are_written_as_node_writes_them() -> None:
    """`_js_number` against node's own `String(x)` (the ids the task's lists use)."""
    import random
    import shutil
    import struct
    import subprocess

    from hillclimb.harness.expectations import _js_number

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    rng = random.Random(5)
    values = [1.5, 100.0, 1e-7, 1e-6, 1.5e-7, 1e21, 1.5e21, 1e20, 0.1 + 0.2, 5e-324, -0.5, -0.0]
    values += [10 ** rng.uniform(-30, 30) for _ in range(200)]
    values += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(200)]
    values = [v for v in values if v == v and abs(v) != float("inf")]
    script = "const v = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
    script += "console.log(JSON.stringify(v.map(String)));"
    done = subprocess.run(
        ["node", "-e", script], input=json.dumps(values), capture_output=True, text=True
    )
    node = json.loads(done.stdout)
    assert [_js_number(v) for v in values] == node


JS_LOOP_TESTS = """'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const pkg = require('../pkg/index');

for (const [x, want] of [
  [1.5, 3],
  [0.25, 0.5],
  [1e-7, 2e-7],
]) {
  test(`double ${x}`, () => {
    assert.equal(pkg.double(x), want);
  });
}
"""
JS_LOOP_IDS = ["double 1.5", "double 0.25", "double 1e-7"]


def test_js_test_loops_named_by_non_integer_numbers_are_written_out(tmp_path) -> None:
    """Round 4's code left this loop as written (the names' text was not sure): this fails
    there. Each row is a test named as node names it, the right code resolves under the
    task's ids and a function wrong for one row fails exactly that test."""

    plan = HiddenExpectations(tmp_path / "log")
    out = hide_in_js_source(JS_LOOP_TESTS, "tests/pkg.test.js", plan)
    assert out is not None
    tests = out.split("require('../pkg/index');", 1)[1]
    assert "want" not in tests and "2e-7" not in tests and "0.5" not in tests, tests
    assert 'test("double 1e-7"' in tests, tests
    task = js_task(tmp_path / "task", JS_LOOP_TESTS, JS_LOOP_IDS, "jsloop")

    def grade(body: str):
        return grade_js(task, f"'use strict';\n{body}\nmodule.exports = {{ double }};\n")

    res = grade("function double(x) { return 2 * x; }")
    assert res.resolved, (res.status, res.message, res.tests)
    assert len(res.value_checked) == len(JS_LOOP_IDS), res.value_checked
    res = grade("function double(x) { return x === 0.25 ? 0.6 : 2 * x; }")
    failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
    assert failed == {"double 0.25"}, (res.tests, res.message)
