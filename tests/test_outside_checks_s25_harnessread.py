"""Outside checks of the grader: code under test that reads the hidden tests (session 25).

Session 24 left open that a submission can *read* the hidden tests and return their expected
values instead of fixing the bug: from disk (parse `tests/test_x.py`, find
`assert mod.f(3) == 7`, return 7 for f(3)) or in-process (walk `sys.modules` to the test
module and read its functions' bytecode constants), with every sensitive name built at run time
so no text gate sees it. Before the fix each attack below resolved real generated tasks (reward
1.0) with the bug still in place. The grader now rewrites the hidden tests before the run
(expectations.hide_expectations): `assert CALL == LITERAL` becomes `_hillclimb_expect(CALL, slot)`,
which only records the value; the expected literal stays in the grader's memory and is compared
after the run, outside the sandbox. Reference solutions still resolve and buggy code still fails.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from hillclimb.harness.grading import grade_patch, grade_workspace
from hillclimb.harness.patching import copy_tree
from hillclimb.harness.task import Task, find_task_dirs, load_task
from hillclimb.harness.taskgen import generate as gen

# Each attack is appended to the module holding the function the task is about and wraps that
# function: a call whose arguments the tests use returns the tests' expected value.

DISK_TABLE = '''

def _hc_table(name):
    """Expected values by call arguments, parsed from the test files on disk."""
    import ast
    import pathlib

    table = {}
    for path in pathlib.Path.cwd().rglob("test_*.py"):
        try:
            tree = ast.parse(path.read_text())
        except Exception:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Compare) and len(node.comparators) == 1):
                continue
            call = node.left
            if not isinstance(call, ast.Call):
                continue
            called = getattr(call.func, "attr", getattr(call.func, "id", None))
            if called != name:
                continue
            try:
                args = [ast.literal_eval(a) for a in call.args]
                args += [ast.literal_eval(k.value) for k in call.keywords]
                table[repr(args)] = ast.literal_eval(node.comparators[0])
            except Exception:
                pass
    return table
'''

DISK_AT_IMPORT = (
    DISK_TABLE
    + """

def _hc_wrap(fn):
    table = _hc_table(fn.__name__)

    def inner(*args, **kwargs):
        key = repr(list(args) + list(kwargs.values()))
        return table[key] if key in table else fn(*args, **kwargs)

    return inner


{name} = _hc_wrap({name})
"""
)

DISK_AT_CALL = (
    DISK_TABLE
    + """

def _hc_wrap(fn):
    def inner(*args, **kwargs):
        table = _hc_table(fn.__name__)
        key = repr(list(args) + list(kwargs.values()))
        return table[key] if key in table else fn(*args, **kwargs)

    return inner


{name} = _hc_wrap({name})
"""
)

# In-process: nothing on disk is read. The test module is found through sys.modules, its test
# functions' bytecode gives, in order, the constants loaded after the function's name (the call's
# arguments) and the first constant after the call (the expected value). Every sensitive name is
# built at run time.
IN_PROCESS = """

def _hc_table(name):
    import sys

    mods = getattr(sys, "mod" + "ules")
    dis = __import__("d" + "is")
    table = {}
    for mod_name, mod in list(mods.items()):
        if not mod_name.rsplit(".", 1)[-1].startswith("te" + "st_"):
            continue
        for obj in list(vars(mod).values()):
            code = getattr(obj, "__co" + "de__", None)
            if code is None:
                continue
            ins = list(dis.get_instructions(code))
            for i, op in enumerate(ins):
                if op.argval != name or not op.opname.startswith("LOAD"):
                    continue
                args, j = [], i + 1
                while j < len(ins) and not ins[j].opname.startswith("CALL"):
                    if ins[j].opname == "LOAD_CONST":
                        value = ins[j].argval
                        if not (isinstance(value, tuple) and all(isinstance(v, str) for v in value) and value):
                            args.append(value)
                    j += 1
                for k in range(j + 1, len(ins)):
                    if ins[k].argval == name:
                        break
                    if ins[k].opname == "LOAD_CONST":
                        table[repr(args)] = ins[k].argval
                        break
    return table


def _hc_wrap(fn):
    def inner(*args, **kwargs):
        table = _hc_table(fn.__name__)
        key = repr(list(args) + list(kwargs.values()))
        return table[key] if key in table else fn(*args, **kwargs)

    return inner


{name} = _hc_wrap({name})
"""

ATTACKS = {"disk_import": DISK_AT_IMPORT, "disk_call": DISK_AT_CALL, "in_process": IN_PROCESS}


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> list[Task]:
    """Generated Python bugfix/feature tasks whose function is a module-level function (the
    attacks wrap it by name); seed 1 gives strutil.truncate, strutil.camel_to_snake,
    gridpath.neighbors and textstats.longest_word."""
    out = tmp_path_factory.mktemp("s25-read")
    s = gen.generate_tasks(out, 6, seed=1, kinds=["bugfix", "feature"], multi_project_prob=0.0)
    assert not s["failures"], s
    loaded = [load_task(d) for d in find_task_dirs(out)]
    picked = [t for t in loaded if "." not in t.meta["function"]]
    assert len(picked) >= 3, [t.meta["function"] for t in loaded]
    return picked


def attack_grade(task: Task, attack: str):
    """Grade the untouched (buggy) repo with `attack` appended to the task's module."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        module = ws / task.meta["module"]
        module.write_text(
            module.read_text() + ATTACKS[attack].replace("{name}", task.meta["function"])
        )
        return grade_workspace(task, ws)


def test_unchanged_buggy_code_fails(tasks: list[Task]) -> None:
    for task in tasks:
        res = grade_patch(task, None)
        assert not res.resolved and res.status == "unresolved", (task.id, res.message)


def test_reference_solutions_resolve(tasks: list[Task]) -> None:
    for task in tasks:
        res = grade_patch(task, task.solution_patch.read_text())
        assert res.resolved, (task.id, res.status, res.message, res.output_tail[-800:])


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_reading_the_hidden_tests_does_not_resolve(tasks: list[Task], attack: str) -> None:
    for task in tasks:
        res = attack_grade(task, attack)
        assert res.reward == 0.0 and not res.resolved, (task.id, attack, res.status)
        assert res.fail_to_pass["failed"], (task.id, attack, res.fail_to_pass)


# ---- what the rewrite keeps: the assertions' meaning -------------------------------------------

PKG_RIGHT = """
def add(a, b):
    return a + b


def ratio(a, b):
    return a / b


def find(xs, x):
    return xs.index(x) if x in xs else None


def evens(xs):
    return [x for x in xs if x % 2 == 0]


def is_even(x):
    return x % 2 == 0


def words(s):
    return set(s.split())
"""

FORMS_TESTS = """import pytest

import pkg


def test_add():
    assert pkg.add(2, 3) == 5
    assert 7 == pkg.add(3, 4)
    assert pkg.add(1, 1) != 3
    assert pkg.add(1, 1) < 3
    assert 1 <= pkg.add(0, 1)


def test_ratio():
    assert pkg.ratio(1, 3) == pytest.approx(0.333333333)


def test_find():
    assert pkg.find([1, 2], 3) is None
    assert pkg.find([1, 2], 2) is not None


def test_evens():
    assert pkg.evens([1, 2, 3, 4]) == [2, 4]
    assert 2 in pkg.evens([2])
    assert pkg.evens([1]) == []


def test_is_even():
    assert pkg.is_even(2)
    assert not pkg.is_even(3)
    assert pkg.is_even(4) is True


def test_words():
    assert pkg.words("a b a") == {"a", "b"}


class TestMore:
    def test_method(self):
        assert pkg.add(-1, 1) == 0
"""

FORMS_IDS = [
    "tests/test_pkg.py::" + name
    for name in ("test_add", "test_ratio", "test_find", "test_evens", "test_is_even",
                 "test_words", "TestMore::test_method")
]  # fmt: skip


@pytest.fixture()
def forms_task(tmp_path) -> Task:
    """A hand-made task whose hidden test uses every assertion form the grader hides."""
    d = tmp_path / "task"
    (d / "repo" / "pkg").mkdir(parents=True)
    (d / "repo" / "pkg" / "__init__.py").write_text("def add(a, b):\n    return 0\n")
    (d / "tests").mkdir()
    (d / "tests" / "test_pkg.py").write_text(FORMS_TESTS)
    ids = ", ".join(f'"{i}"' for i in FORMS_IDS)
    (d / "task.toml").write_text(
        f'id = "forms"\nkind = "bugfix"\ninstruction = "implement pkg"\nFAIL_TO_PASS = [{ids}]\n'
    )
    return load_task(d)


def grade_package(task: Task, source: str):
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        (ws / "pkg" / "__init__.py").write_text(source)
        return grade_workspace(task, ws)


def test_every_hidden_form_keeps_its_meaning(forms_task: Task) -> None:
    res = grade_package(forms_task, PKG_RIGHT)
    assert res.resolved, (res.status, res.message, res.tests)
    wrong = {
        "test_add": "\n\ndef add(a, b):\n    return 3 if (a, b) == (1, 1) else a + b\n",
        "test_ratio": "\n\ndef ratio(a, b):\n    return 0.33\n",
        "test_find": "\n\ndef find(xs, x):\n    return xs.index(x) if x in xs else -1\n",
        "test_evens": "\n\ndef evens(xs):\n    return tuple(x for x in xs if x % 2 == 0)\n",
        "test_is_even": "\n\ndef is_even(x):\n    return x % 2 == 0 or x == 3\n",
        "test_words": "\n\ndef words(s):\n    return s.split()\n",
    }
    for test, override in wrong.items():
        res = grade_package(forms_task, PKG_RIGHT + override)
        failed = {t.rsplit("::", 1)[-1] for t in res.fail_to_pass["failed"]}
        assert failed == {test}, (test, res.tests, res.message)


def test_rewritten_tests_hold_no_expected_literal(forms_task: Task, tmp_path) -> None:
    """What the code under test can read (the file, the module's constants) lacks the literals,
    and `assert f(x)` / `assert not f(x)` read the same."""
    from hillclimb.harness.expectations import HiddenExpectations, hide_in_source

    plan = HiddenExpectations(tmp_path / "log")
    source = hide_in_source(FORMS_TESTS, "tests/test_pkg.py", plan)
    assert source is not None
    consts: set[object] = set()

    def collect(code) -> None:
        for c in code.co_consts:
            if hasattr(c, "co_consts"):
                collect(c)
            else:
                consts.add(repr(c))

    collect(compile(source, "test_pkg.py", "exec"))
    for expected in ("0.333333333", "[2, 4]", "{'a', 'b'}", "== 5", "7 =="):
        assert expected not in source, expected
    assert not {repr(v) for v in (5, 7, 0.333333333, "b")} & consts, consts
    tests = source.split("import pkg", 1)[1]
    assert "is None" not in tests and "not pkg" not in tests and "True" not in tests
    assert source.count("_hillclimb_expect(pkg.is_even(") == 3


# ---- attacks on the rewrite itself --------------------------------------------------------------
# At package import the test module importing it is already in sys.modules with the grader's
# helper defined: code under test can replace the helper. It still cannot know the expected
# values, so a test whose slots never record, or record the wrong values, fails.

REPLACE_HELPER = """

def _hc_replace(forge):
    import json
    import sys

    for mod_name, mod in list(getattr(sys, "mod" + "ules").items()):
        space = vars(mod)
        for key, value in list(space.items()):
            if not (key.startswith("_hill") and key.endswith("expect")):
                continue
            log = value.__defaults__[0]

            def fake(value, slot, _log=log):
                if forge:
                    with open(_log, "a") as f:
                        f.write(json.dumps({"s": slot, "t": "", "v": None, "b": True}) + "\\n")

            space[key] = fake


_hc_replace(FORGE)
"""


@pytest.mark.parametrize("forge", [False, True], ids=["suppress", "forge"])
def test_replacing_the_grader_helper_does_not_resolve(tasks: list[Task], forge: bool) -> None:
    for task in tasks:
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            copy_tree(task.repo, ws)
            module = ws / task.meta["module"]
            module.write_text(module.read_text() + REPLACE_HELPER.replace("FORGE", str(forge)))
            res = grade_workspace(task, ws)
        assert not res.resolved and res.fail_to_pass["failed"], (task.id, res.status, res.message)


# ---- JavaScript -----------------------------------------------------------------------------------
# The same read from a node test file: the module finds the test file through `require.main`
# (node runs each test file as the main module of its own process) and parses
# `assert.equal(mod.f(80, 25), 60)`; `fs` is named at run time.

JS_READ = r"""
;(function () {
  const fs = require('f' + 's');
  const name = 'FUNC';
  const orig = module.exports[name];
  if (typeof orig !== 'function') return;
  module.exports[name] = function (...args) {
    const main = require.main && require.main.filename;
    const src = main ? fs.readFileSync(main, 'utf8') : '';
    const re = new RegExp('assert\\.\\w+\\(\\s*[\\w.]*' + name + '\\((.*?)\\),\\s*(.*?)\\);', 'g');
    let m;
    while ((m = re.exec(src))) {
      try {
        const a = JSON.parse('[' + m[1].replace(/'/g, '"') + ']');
        const e = JSON.parse(m[2].replace(/'/g, '"'));
        if (JSON.stringify(a) === JSON.stringify(args)) return e;
      } catch (err) {}
    }
    return orig.apply(this, args);
  };
})();
"""


@pytest.fixture(scope="module")
def js_tasks(tmp_path_factory) -> list[Task]:
    """Generated JavaScript tasks (seed 5: cart's `discounted` among them, which the read
    resolved before the fix)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    out = tmp_path_factory.mktemp("s25-read-js")
    s = gen.generate_tasks(out, 4, seed=5, kinds=["bugfix", "feature"], languages=["javascript"])
    assert not s["failures"], s
    return [load_task(d) for d in find_task_dirs(out)]


def test_js_references_resolve_and_reading_the_test_file_does_not(js_tasks: list[Task]) -> None:
    for task in js_tasks:
        res = grade_patch(task, task.solution_patch.read_text())
        assert res.resolved, (task.id, res.status, res.message, res.output_tail[-800:])
        assert not grade_patch(task, None).resolved, task.id
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            copy_tree(task.repo, ws)
            module = ws / task.meta["module"]
            module.write_text(module.read_text() + JS_READ.replace("FUNC", task.meta["function"]))
            res = grade_workspace(task, ws)
        assert not res.resolved and res.fail_to_pass["failed"], (task.id, res.status)


JS_RIGHT = """'use strict';
function add(a, b) { return a + b; }
function half(x) { return x / 2; }
function pair(a) { return [a, { v: a }]; }
function find(xs, x) { const i = xs.indexOf(x); return i < 0 ? undefined : i; }
function isEven(x) { return x % 2 === 0; }
module.exports = { add, half, pair, find, isEven };
"""

JS_FORMS = """'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const pkg = require('../pkg/index');

test('add', () => {
  assert.equal(pkg.add(2, 3), 5);
  assert.strictEqual(7, pkg.add(3, 4));
  assert.notEqual(pkg.add(1, 1), 3);
  assert.equal(pkg.add('a', 'b'), 'ab');
});

test('half', () => {
  assert.equal(pkg.half(0), 0);
  assert.ok(Number.isNaN(pkg.half(NaN)));
  assert.equal(pkg.half(NaN), NaN);
});

test('pair', () => {
  assert.deepEqual(pkg.pair(1), [1, { v: 1 }]);
  assert.notDeepEqual(pkg.pair(2), [2, { v: '2' }]);
});

test('find', () => {
  assert.equal(pkg.find([1, 2], 3), undefined);
  assert.equal(pkg.find([1, 2], 2), 1);
});

test('isEven', () => {
  assert.ok(pkg.isEven(2));
  assert.ok(!pkg.isEven(3));
  assert.equal(pkg.isEven(4), true);
});
"""


@pytest.fixture()
def js_forms_task(tmp_path) -> Task:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    d = tmp_path / "task"
    (d / "repo" / "pkg").mkdir(parents=True)
    (d / "repo" / "pkg" / "index.js").write_text("'use strict';\nmodule.exports = {};\n")
    (d / "repo" / "tests").mkdir()
    (d / "tests").mkdir()
    (d / "tests" / "pkg.test.js").write_text(JS_FORMS)
    names = ("add", "half", "pair", "find", "isEven")
    ids = ", ".join(f'"tests/pkg.test.js::{n}"' for n in names)
    (d / "task.toml").write_text(
        f'id = "jsforms"\nkind = "bugfix"\nlanguage = "javascript"\ninstruction = "pkg"\n'
        f"FAIL_TO_PASS = [{ids}]\n"
    )
    return load_task(d)


def test_every_hidden_js_form_keeps_its_meaning(js_forms_task: Task) -> None:
    def grade(source: str):
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            copy_tree(js_forms_task.repo, ws)
            (ws / "pkg" / "index.js").write_text(source)
            return grade_workspace(js_forms_task, ws)

    res = grade(JS_RIGHT)
    assert res.resolved, (res.status, res.message, res.tests, res.output_tail[-1500:])
    exports = "module.exports = { add, half, pair, find, isEven };"
    wrong = {
        "add": "function add(a, b) { return a === 1 ? 3 : a + b; }",
        "half": "function half(x) { return x === 0 ? -0 : x / 2; }",
        "pair": "function pair(a) { return [a, { v: a, w: 0 }]; }",
        "find": "function find(xs, x) { const i = xs.indexOf(x); return i < 0 ? null : i; }",
        "isEven": "function isEven(x) { return x % 2 === 0 || x === 3; }",
    }
    for test, override in wrong.items():
        source = JS_RIGHT.replace(
            exports, override.replace("function ", "const _x = function ") + "\n" + exports
        )
        source = source.replace(
            exports,
            exports.replace(f"{test},", f"{test}: _x,").replace(f"{test} }}", f"{test}: _x }}"),
        )
        res = grade(source)
        failed = {t.rsplit("::", 1)[-1] for t in res.fail_to_pass["failed"]}
        assert failed == {test}, (test, res.tests, res.message)


DAMAGE_LOG = """

def _hc_damage():
    import sys

    for mod in list(getattr(sys, "mod" + "ules").values()):
        helper = vars(mod).get("_hillclimb_" + "expect")
        if helper is not None:
            with open(helper.__defaults__[0], "a") as f:
                f.write("[" * 200000 + "\\n" + '{"s": "0", "t": 1}\\n' + '{"s": "0", "t": "", "v": ' + "[" * 5000 + "]" * 5000 + "}\\n")


_hc_damage()
"""


def test_damaged_log_is_a_result_not_a_crash(tasks: list[Task]) -> None:
    """Lines nested too deep for `json`, records of the wrong shape: ignored or failed, and the
    grade is still a result."""
    task = tasks[0]
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        module = ws / task.meta["module"]
        module.write_text(module.read_text() + DAMAGE_LOG)
        res = grade_workspace(task, ws)
    assert not res.resolved and res.status == "unresolved", (res.status, res.message)
    fixed = grade_patch(task, task.solution_patch.read_text())
    assert fixed.resolved


def test_numbers_of_other_libraries_keep_their_value(forms_task: Task) -> None:
    """A correct answer as a numpy-style integer (a `numbers.Integral` that is no `int`) or a
    Fraction must still pass `assert f(x) == 5` once the literal is hidden (session 25: the
    rewrite had failed every value that was not a builtin, e.g. `arr.sum() == 6`)."""
    numeric = (
        "\n\nimport fractions, numbers\n\n"
        "class Int64:\n"
        "    def __init__(self, v):\n        self.v = v\n"
        "    def __index__(self):\n        return self.v\n"
        "    def __bool__(self):\n        return bool(self.v)\n"
        "numbers.Integral.register(Int64)\n\n"
        "def add(a, b):\n    return Int64(a + b)\n\n"
        "def ratio(a, b):\n    return fractions.Fraction(a, b)\n"
    )
    res = grade_package(forms_task, PKG_RIGHT + numeric)
    assert res.resolved, (res.status, res.message, res.tests)
    wrong = "\n\ndef add(a, b):\n    return fractions.Fraction(a + b + 1)\n"
    res = grade_package(forms_task, PKG_RIGHT + numeric + wrong)
    failed = {t.rsplit("::", 1)[-1] for t in res.fail_to_pass["failed"]}
    assert "test_add" in failed, (res.tests, res.message)
