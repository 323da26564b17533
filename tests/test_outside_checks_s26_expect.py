"""Outside checks of the grader: expected values that are not written as literals (session 26).

Session 25 hid the hidden tests' literal expected values from the run under test
(expectations.py), but left readable what was not a literal in a test function's own body:
parametrize tables (in the file, in the function's `pytestmark` and in the test ids), module
constants (`EXPECTED = [...]`), loops over literal tables, `-3`, `"a" + "b"`, `float("inf")`,
`date(2024, 1, 5)`, chained comparisons, `assert not (x == 1)`, `assert a and b`,
`pytest.approx([...])`. A submission harvesting those resolved the task below with the bug in
place. The grader now folds such values from the source and hides them too; these tests check
that every form keeps its meaning (the right code resolves, each wrong function fails exactly its
own tests, parametrized rows under their original ids) and that the harvest no longer resolves.
"""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path

import pytest

from hillclimb.harness.expectations import HiddenExpectations, hide_in_source
from hillclimb.harness.grading import grade_workspace
from hillclimb.harness.patching import copy_tree
from hillclimb.harness.task import Task, load_task

PKG_RIGHT = """
import datetime


def add(a, b):
    return a + b


def split(s):
    return s.split()


def evens(xs):
    return [x for x in xs if x % 2 == 0]


def square(x):
    return x * x


def greet(name):
    return "hello " + name


def inv(x):
    return float("inf") if x == 0 else 1 / x


def day(n):
    return datetime.date(2024, 1, n)


def halves(xs):
    return [x / 2 for x in xs]
"""

FORMS_TESTS = """from datetime import date

import pytest

import pkg

EVENS = [2, 4]
CASES = [(2, 3, 5), (3, 4, 7)]
SQUARES = {1: 1, 2: 4, 3: 9}


@pytest.mark.parametrize("a,b,want", [(1, 2, 3), (10, -4, 6), pytest.param(0, 0, 0, id="zero")])
def test_add_table(a, b, want):
    assert pkg.add(a, b) == want


@pytest.mark.parametrize("s, want", [("a b", ["a", "b"]), ("", [])])
def test_split(s, want):
    assert pkg.split(s) == want


def test_evens():
    assert pkg.evens([1, 2, 3, 4]) == EVENS


def test_add_loop():
    for a, b, want in CASES:
        assert pkg.add(a, b) == want


def test_squares():
    for x, sq in SQUARES.items():
        assert pkg.square(x) == sq


def test_forms():
    assert pkg.add(-1, -2) == -3
    assert pkg.greet("x") == "hello " + "x"
    assert pkg.inv(0) == float("inf")
    assert pkg.day(5) == date(2024, 1, 5)
    assert 0 <= pkg.add(1, 1) < 3
    assert not (pkg.add(1, 1) == 3)
    assert pkg.add(1, 2) == 3 and pkg.add(2, 2) == 4
    assert pkg.halves([1, 2]) == pytest.approx([0.5, 1.0])
    assert pkg.add(2, 2) in (4, 5)
"""

FORMS_IDS = [
    "tests/test_pkg.py::" + name
    for name in ("test_add_table[1-2-3]", "test_add_table[10--4-6]", "test_add_table[zero]",
                 "test_split[a b-want0]", "test_split[-want1]", "test_evens", "test_add_loop",
                 "test_squares", "test_forms")
]  # fmt: skip


def make_task(root: Path, tests: str, ids: list[str], buggy: str) -> Task:
    """A hand-made bug-fix task: package `pkg` (`buggy` source), hidden `tests/test_pkg.py`."""
    (root / "repo" / "pkg").mkdir(parents=True)
    (root / "repo" / "pkg" / "__init__.py").write_text(buggy)
    (root / "tests").mkdir()
    (root / "tests" / "test_pkg.py").write_text(tests)
    listed = ", ".join(f'"{i}"' for i in ids)
    (root / "task.toml").write_text(
        f'id = "{root.name}"\nkind = "bugfix"\ninstruction = "fix pkg"\nFAIL_TO_PASS = [{listed}]\n'
    )
    return load_task(root)


def grade_package(task: Task, source: str):
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        (ws / "pkg" / "__init__.py").write_text(source)
        return grade_workspace(task, ws)


@pytest.fixture()
def forms_task(tmp_path) -> Task:
    return make_task(tmp_path / "forms", FORMS_TESTS, FORMS_IDS, "def add(a, b):\n    return 0\n")


def test_every_folded_form_keeps_its_meaning(forms_task: Task) -> None:
    res = grade_package(forms_task, PKG_RIGHT)
    assert res.resolved, (res.status, res.message, res.tests)
    assert set(res.tests) == set(FORMS_IDS), res.tests  # the original parametrize ids
    wrong = {
        "test_add_table[10--4-6]": "def add(a, b):\n    return 0 if (a, b) == (10, -4) else a + b",
        "test_split[-want1]": "def split(s):\n    return s.split() or ['']",
        "test_evens": "def evens(xs):\n    return [x for x in xs if x % 2]",
        "test_add_loop": "def add(a, b):\n    return 8 if (a, b) == (3, 4) else a + b",
        "test_squares": "def square(x):\n    return x * x if x < 3 else 10",
        "test_forms": "def day(n):\n    return datetime.date(2024, 1, n + 1)",
    }
    for test, override in wrong.items():
        res = grade_package(forms_task, PKG_RIGHT + "\n\n" + override + "\n")
        failed = {t.split("::", 1)[1] for t in res.fail_to_pass["failed"]}
        assert failed == {test}, (test, res.tests, res.message)
    more_wrong = [
        "def add(a, b):\n    return a + b if (a, b) != (1, 1) else 3",  # chain, not (==)
        "def greet(name):\n    return 'hello' + name",
        "def inv(x):\n    return 1e308",
        "def halves(xs):\n    return [x / 2 + 0.01 for x in xs]",
        "def add(a, b):\n    return 6 if (a, b) == (2, 2) else a + b",  # `in (4, 5)` and `and`
    ]
    for override in more_wrong:
        res = grade_package(forms_task, PKG_RIGHT + "\n\n" + override + "\n")
        assert "tests/test_pkg.py::test_forms" in res.fail_to_pass["failed"], (override, res.tests)


def test_rewritten_tests_hold_none_of_the_expected_values(tmp_path) -> None:
    """Neither the rewritten file nor its compiled constants hold an expected value of a
    parametrize table, a module constant, a loop table or a folded expression; the ids are
    opaque."""
    plan = HiddenExpectations(tmp_path / "log")
    source = hide_in_source(FORMS_TESTS, "tests/test_pkg.py", plan)
    assert source is not None
    tests = source.split("import pkg", 1)[1]
    consts: set[str] = set()

    def collect(code) -> None:
        for c in code.co_consts:
            if hasattr(c, "co_consts"):
                collect(c)
            else:
                flatten(c)

    def flatten(c) -> None:
        consts.add(repr(c))
        if isinstance(c, (tuple, frozenset)):
            for item in c:
                flatten(item)

    collect(compile(source, "test_pkg.py", "exec"))
    names = {n.id for n in ast.walk(ast.parse(tests)) if isinstance(n, ast.Name)}
    assert not names & {"EVENS", "CASES", "SQUARES", "want", "sq", "date", "float"}, names
    for gone in ("hello", "inf", "approx", "zero"):
        assert gone not in tests, gone
    for value in ("'hello x'", "0.5", "9", "-3", "6", "7", "inf"):
        assert value not in consts, value
    assert "1-2-3" not in source and "zero" not in source and set(plan.renamed.values()) == {
        "1-2-3", "10--4-6", "zero", "a b-want0", "-want1"
    }  # fmt: skip
    inputs = {repr(v) for v in (10, -4, "a b", 1, 2, 3)}
    assert inputs <= consts  # the inputs stay: the calls still need them


# ---- soundness: what must not be folded -----------------------------------------------------------


def hidden_values(source: str, tmp_path: Path) -> list[object]:
    plan = HiddenExpectations(tmp_path / "log")
    hide_in_source(source, "tests/test_x.py", plan)
    return [exp.expected for exp in plan.slots.values()]


@pytest.mark.parametrize(
    "source",
    [
        # rebound: the value at the assertion is not the module's
        "import pkg\nE = 1\n\ndef test_a():\n    E = 2\n    assert pkg.f() == E\n",
        "import pkg\nE = 1\n\ndef test_a(E):\n    assert pkg.f() == E\n",
        "import pkg\nE = 1\nE = 2\n\ndef test_a():\n    assert pkg.f() == E\n",
        "import pkg\nE = 1\n\ndef test_a():\n    global E\n    assert pkg.f() == E\n",
        # a mutable constant the tests may change
        "import pkg\nE = [1]\n\ndef test_a():\n    E.append(2)\n    assert pkg.f() == E\n",
        # the namespace reached dynamically
        "import pkg\nE = 1\n\ndef test_a():\n    globals()['E'] = 2\n    assert pkg.f() == E\n",
        # a loop that may stop early (a loop over a table that is not fixed is hidden since
        # session 28, its slots required only where its body ran: test_outside_checks_s28_expect5)
        "import pkg\n\ndef test_a():\n    for x in [1, 2]:\n        if pkg.g(x):\n            break\n"
        "        assert pkg.f(x) == 3\n",
        # after a possible return (a branch's own assertions are hidden since session 28)
        "import pkg\n\ndef test_a():\n    if pkg.g():\n        return\n    assert pkg.f() == 3\n",
        # a mutable row value the test changes, or passes to the code under test
        "import pkg\n\ndef test_a():\n    for want in [[1]]:\n        want.append(2)\n"
        "        assert pkg.f() == want\n",
        "import pkg\n\ndef test_a():\n    for want in [[1]]:\n        assert pkg.f(want) == want\n",
        "import pytest\nimport pkg\n\n@pytest.mark.parametrize('w', [[1]])\ndef test_a(w):\n"
        "    w.append(2)\n    assert pkg.f() == w\n",
        # an xfail class (its failing assertion is what makes it xfailed)
        "import pytest\nimport pkg\n\nclass TestA:\n    pytestmark = pytest.mark.xfail\n\n"
        "    def test_a(self):\n        assert pkg.f() == 3\n",
        # a shadowed builtin
        "import pkg\nfloat = str\n\ndef test_a():\n    assert pkg.f() == float('1')\n",
    ],
)
def test_values_that_may_change_are_not_folded(source: str, tmp_path) -> None:
    assert hidden_values(source, tmp_path) == []


def test_rows_that_give_different_code_or_unsure_ids_are_left(tmp_path) -> None:
    """A parametrize table is rewritten only when every row rewrites to the same code and
    the grader knows pytest's ids for it."""
    cases = [
        # duplicate ids (pytest would add suffixes)
        '@pytest.mark.parametrize("x,w", [(1, 2), (1, 2)])\ndef test_a(x, w):\n    assert pkg.f(x) == w\n',
        # marks on a row, indirect
        '@pytest.mark.parametrize("x,w", [pytest.param(1, 2, marks=pytest.mark.slow)])\n'
        "def test_a(x, w):\n    assert pkg.f(x) == w\n",
        '@pytest.mark.parametrize("x", [1], indirect=True)\ndef test_a(x):\n    assert pkg.f(x) == 2\n',
        # a non-ASCII id (pytest escapes it)
        '@pytest.mark.parametrize("x,w", [("é", 2)])\ndef test_a(x, w):\n    assert pkg.f(x) == w\n',
    ]
    for case in cases:
        source = "import pytest\nimport pkg\n\n" + case
        plan = HiddenExpectations(tmp_path / "log")
        out = hide_in_source(source, "tests/test_x.py", plan)
        assert not plan.renamed, case
        if out is not None:  # the literal-only assertions may still be hidden, as before
            assert "parametrize" in out and "_hillclimb_row" not in out, out


def test_ids_stay_when_the_command_selects_by_id(tmp_path) -> None:
    source = "import pytest\nimport pkg\n\n" + FORMS_TESTS.split("import pkg", 1)[1]
    plan = HiddenExpectations(tmp_path / "log")
    out = hide_in_source(source, "tests/test_x.py", plan, rename_ids=False)
    assert out is not None and not plan.renamed and "(10, -4, 6)" in out


def test_other_test_files_importing_a_module_keep_its_constants(tmp_path) -> None:
    from hillclimb.harness.expectations import hide_expectations

    (tmp_path / "tests").mkdir()
    a = tmp_path / "tests" / "test_a.py"
    a.write_text("import pkg\nE = [1, 2]\n\ndef test_a():\n    assert pkg.f() == E\n")
    b = tmp_path / "tests" / "test_b.py"
    b.write_text("from test_a import E\n\ndef test_b():\n    assert E == [1, 2]\n")
    hide_expectations(tmp_path, [a, b], tmp_path / "log")
    assert ast.parse(a.read_text())  # still a module, and E is still defined there
    assert "E = [1, 2]" in a.read_text()


# ---- the harvest: parametrize tables, module constants, loop tables --------------------------------
# Appended to the task's module; wraps its function (`{name}`) so that a call with the arguments a table row gives
# returns that row's last column (the expected value, by convention). From disk: parse the test
# files; in process: the test module's globals and the test functions' `pytestmark` (names
# built at run time). Before the fix each resolved TABLES_TASK with `add` still wrong.

HARVEST_DISK = """

def _hc_rows():
    import ast
    import pathlib

    rows = []
    for path in pathlib.Path.cwd().rglob("test_*.py"):
        try:
            tree = ast.parse(path.read_text())
        except Exception:
            continue
        consts = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                try:
                    consts[node.targets[0].id] = ast.literal_eval(node.value)
                except Exception:
                    pass
        for value in consts.values():
            if isinstance(value, list):
                rows += [tuple(r) for r in value if isinstance(r, (tuple, list))]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "parametrize":
                try:
                    rows += [tuple(r) for r in ast.literal_eval(node.args[1])]
                except Exception:
                    pass
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Call):
                right = node.comparators[0]
                try:
                    args = tuple(ast.literal_eval(a) for a in node.left.args)
                    want = consts[right.id] if isinstance(right, ast.Name) else ast.literal_eval(right)
                    rows.append(args + (want,))
                except Exception:
                    pass
    return rows
"""

HARVEST_IN_PROCESS = """

def _hc_rows():
    import sys

    rows = []
    for mod_name, mod in list(getattr(sys, "mod" + "ules").items()):
        if not mod_name.rsplit(".", 1)[-1].startswith("te" + "st_"):
            continue
        space = vars(mod)
        for value in list(space.values()):
            if isinstance(value, list):
                rows += [tuple(r) for r in value if isinstance(r, (tuple, list))]
            for mark in getattr(value, "pytest" + "mark", []):
                if mark.name == "parametr" + "ize":
                    rows += [tuple(getattr(r, "values", r)) for r in mark.args[1]]
            code = getattr(value, "__co" + "de__", None)
            if code is not None:  # `assert add(5, 6) == NAME`: the name's value
                consts = [c for c in code.co_consts if isinstance(c, int)]
                for name in code.co_names:
                    if isinstance(space.get(name), int) and len(consts) >= 2:
                        rows.append((consts[0], consts[1], space[name]))
    return rows
"""

WRAP = """

def _hc_wrap(fn):
    def inner(*args):
        for row in _hc_rows():
            if len(row) == len(args) + 1 and tuple(row[:-1]) == args:
                return row[-1]
        return fn(*args)

    return inner


{name} = _hc_wrap({name})
"""

HARVESTS = {"disk": HARVEST_DISK, "in_process": HARVEST_IN_PROCESS}

TABLES_TESTS = """import pytest

import pkg

CASES = [(2, 3, 5), (3, 4, 7)]
EXPECTED = 11


@pytest.mark.parametrize("a,b,want", [(1, 2, 3), (10, -4, 6)])
def test_table(a, b, want):
    assert pkg.add(a, b) == want


def test_loop():
    for a, b, want in CASES:
        assert pkg.add(a, b) == want


def test_const():
    assert pkg.add(5, 6) == EXPECTED
"""
TABLES_IDS = [
    "tests/test_pkg.py::" + n
    for n in ("test_table[1-2-3]", "test_table[10--4-6]", "test_loop", "test_const")
]
TABLES_BUGGY = "def add(a, b):\n    return a - b\n"


def tables_task(root: Path) -> Task:
    """The bench's and these tests' task: `add` wrong, every test a table or a constant."""
    return make_task(root, TABLES_TESTS, TABLES_IDS, TABLES_BUGGY)


def harvest_grade(task: Task, harvest: str):
    return grade_package(task, TABLES_BUGGY + HARVESTS[harvest] + WRAP.replace("{name}", "add"))


def test_tables_task_reference_resolves_and_buggy_fails(tmp_path) -> None:
    task = tables_task(tmp_path / "tables")
    assert grade_package(task, "def add(a, b):\n    return a + b\n").resolved
    assert not grade_package(task, TABLES_BUGGY).resolved


@pytest.mark.parametrize("harvest", sorted(HARVESTS))
def test_harvesting_tables_and_constants_does_not_resolve(tmp_path, harvest: str) -> None:
    res = harvest_grade(tables_task(tmp_path / "tables"), harvest)
    assert not res.resolved and res.fail_to_pass["failed"], (harvest, res.status, res.tests)


def test_ids_from_a_conftest_hook_keep_the_table(tmp_path) -> None:
    """A conftest's `pytest_make_parametrize_id` makes ids the grader cannot predict: the table
    is then left as written, and the right code still resolves under the hook's ids."""
    tests = (
        "import pytest\n\nimport pkg\n\n\n"
        '@pytest.mark.parametrize("a,b,want", [(1, 2, 3), (10, -4, 6)])\n'
        "def test_add(a, b, want):\n    assert pkg.add(a, b) == want\n"
    )
    ids = ["tests/test_pkg.py::test_add[v1-v2-v3]", "tests/test_pkg.py::test_add[v10-v-4-v6]"]
    task = make_task(tmp_path / "hook", tests, ids, TABLES_BUGGY)
    (task.hidden_tests / "conftest.py").write_text(
        "def pytest_make_parametrize_id(config, val, argname):\n    return f'v{val}'\n"
    )
    res = grade_package(task, "def add(a, b):\n    return a + b\n")
    assert res.resolved, (res.status, res.message, res.tests)
    assert not grade_package(task, TABLES_BUGGY).resolved
