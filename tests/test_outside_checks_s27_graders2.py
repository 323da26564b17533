"""Outside checks of the grader, session 27: holes session 26's graders red team left.

1. Swaps before collection under the test file's own name. Session 26's reporter notes each
   test's body at collection; code under test runs earlier (the test module imports it) and can
   make the collected body itself another one, compiled under the test file's filename: a
   profile hook that sets `__code__` when the test module's frame returns (`code_swap`),
   executing edited source into the module's namespace (`dict_swap`), or rewriting a test file
   not imported yet (`disk_swap`). On old code each resolved `bugfix-inventory-11-0002` (its
   only FAIL_TO_PASS test is a `pytest.raises` test) with the bug in place. The grader now pins
   the installed test files (`Channel.pin_tests`) and the reporter compares each test's code
   with the file as compiled before any workspace code ran (`pytest_reporter._pinned_mismatch`).
2. `pytest.raises` inputs readable. A task whose FAIL_TO_PASS tests all hide nothing is judged
   by pytest alone. The generator now discards such candidates (`require_hidden_f2p`, on by
   default; seed 11 made `bugfix-inventory-11-0002` one), and `hillclimb harness grade
   --solution` warns on a user task like it (`grading.fail_to_pass_hides_nothing`).
3. Refactor checks gameable with run-time names: `name_absent` passed with the old name bound
   again through `globals()`/`setattr`/`exec`, `called_from` with the call in dead code.
"""

from __future__ import annotations

import inspect
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from hillclimb.cli import main as cli_main
from hillclimb.harness.grading import grade_patch, grade_workspace
from hillclimb.harness.patching import copy_tree
from hillclimb.harness.structural import run_check
from hillclimb.harness.task import StructuralCheck, Task, load_task
from hillclimb.harness.taskgen import generate as gen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "redteam"))
import graders_s27 as bench  # noqa: E402

TASK_ID = "bugfix-inventory-11-0002"
F2P = "tests/test_inventory.py::test_add_duplicate_raises"
FIRST = (
    "from inventory import store\n\n\ndef test_a_store_imports():\n"
    "    assert hasattr(store, 'Inventory')\n"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Seed 11's first three tasks as before session 27 (the generator may now refuse the
    all-`pytest.raises` task; asked not to, where it can be)."""
    out = tmp_path_factory.mktemp("s27_graders2")
    keep = "require_hidden_f2p" in inspect.signature(gen.generate_tasks).parameters
    extra = {"require_hidden_f2p": False} if keep else {}
    gen.generate_tasks(out, 3, seed=11, kinds=["bugfix", "feature"], **extra)
    return out


@pytest.fixture(scope="module")
def task(corpus: Path) -> Task:
    t = load_task(corpus / TASK_ID)
    assert t.fail_to_pass == (F2P,)
    return t


@pytest.fixture(scope="module")
def two_file_task(corpus: Path, tmp_path_factory) -> Task:
    """The same task with a second test file collected first (`test_a.py` imports the
    package), so the package runs before `test_inventory.py` is imported."""
    d = tmp_path_factory.mktemp("s27_two") / TASK_ID
    shutil.copytree(corpus / TASK_ID, d)
    for where in (d / "tests", d / "repo" / "tests"):
        (where / "test_a.py").write_text(FIRST)
    toml = d / "task.toml"
    toml.write_text(
        toml.read_text().replace(
            "PASS_TO_PASS = [\n", 'PASS_TO_PASS = [\n  "tests/test_a.py::test_a_store_imports",\n'
        )
    )
    return load_task(d)


def _attack(task: Task, name: str):
    tmp = Path(tempfile.mkdtemp(prefix="hc-s27-graders2-"))
    try:
        ws = tmp / "ws"
        copy_tree(task.repo, ws)
        mod = ws / task.meta["module"]
        mod.write_text(mod.read_text() + bench.ATTACKS[name])
        return grade_workspace(task, ws)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("attack", ["code_swap", "dict_swap"])
def test_swap_before_collection_does_not_resolve(task: Task, attack: str) -> None:
    g = _attack(task, attack)
    assert g.status == "unresolved", (g.status, g.message)
    assert g.fail_to_pass["passed"] == [], g.tests


def test_rewriting_a_test_file_not_yet_imported_does_not_resolve(two_file_task: Task) -> None:
    g = _attack(two_file_task, "disk_swap")
    assert g.status == "unresolved", (g.status, g.message)
    assert g.fail_to_pass["passed"] == [], g.tests


@pytest.mark.parametrize("which", ["task", "two_file_task"])
def test_pinned_references_resolve_and_buggy_fails(which: str, request) -> None:
    t: Task = request.getfixturevalue(which)
    assert t.solution_patch is not None
    g = grade_patch(t, t.solution_patch.read_text())
    assert g.resolved, (g.message, g.tests)
    assert not grade_patch(t, None).resolved


def test_generated_tasks_have_a_fail_to_pass_test_with_a_hidden_value(tmp_path: Path) -> None:
    """Seed 11's third task was all `pytest.raises` (session 26); by default another is drawn."""
    gen.generate_tasks(tmp_path, 3, seed=11, kinds=["bugfix", "feature"])
    tasks = [load_task(d) for d in sorted(tmp_path.iterdir()) if (d / "task.toml").is_file()]
    assert len(tasks) == 3
    for t in tasks:
        assert t.solution_patch is not None
        g = grade_patch(t, t.solution_patch.read_text())
        assert g.resolved
        assert set(t.fail_to_pass) & set(g.value_checked), (t.id, t.fail_to_pass)


def test_grade_solution_warns_when_no_fail_to_pass_test_hides_a_value(
    task: Task, corpus: Path, capsys
) -> None:
    assert cli_main(["harness", "grade", "--task", str(task.root), "--solution"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "FAIL_TO_PASS" in err and task.id in err
    other = next(d for d in sorted(corpus.iterdir()) if d.name != TASK_ID and d.is_dir())
    assert cli_main(["harness", "grade", "--task", str(other), "--solution"]) == 0
    assert "warning" not in capsys.readouterr().err


# ---- 3. refactor structural checks and names bound at run time --------------------------------

BASE = 'def old(x):\n    """old: adds one."""\n    raise ValueError("old failed") if x is None else None\n'


def _check(tmp_path: Path, src: str, check: StructuralCheck, base: str | None = BASE):
    ws, repo = tmp_path / "ws", tmp_path / "repo"
    for root, text in ((ws, src), (repo, base)):
        if text is not None:
            root.mkdir(exist_ok=True)
            (root / "m.py").write_text(text)
    if "baseline" not in inspect.signature(run_check).parameters:  # before session 27
        return run_check(ws, check)
    return run_check(ws, check, baseline=repo if base is not None else None)


ABSENT = StructuralCheck("name_absent", "old")
HONEST_RENAME = 'def new(x):\n    """old: adds one."""\n    raise ValueError("old failed") if x is None else None\n'


@pytest.mark.parametrize(
    "tail",
    [
        'globals()["old"] = new\n',
        'import sys\nsetattr(sys.modules[__name__], "o" + "ld", new)\n',
        'exec("def old(x): return new(x)")\n',
        'k = "o"\nk += "ld"\nglobals()[k] = new\n',
        "__getattr__ = lambda n: new if n == f\"{'ol'}d\" else None\n",
    ],
)
def test_name_absent_fails_when_the_old_name_comes_back_at_run_time(
    tmp_path: Path, tail: str
) -> None:
    r = _check(tmp_path, HONEST_RENAME + tail, ABSENT)
    assert not r.ok, r.detail


def test_name_absent_passes_an_honest_rename_keeping_the_repo_strings(tmp_path: Path) -> None:
    assert _check(tmp_path, HONEST_RENAME, ABSENT).ok
    assert not _check(tmp_path, BASE, ABSENT).ok  # the old def is still there


CALLED = StructuralCheck("called_from", "helper", module="m.py", caller="f")
HELPER = "def helper(x):\n    return x + 1\n\n\n"


@pytest.mark.parametrize(
    "body",
    [
        "    return x + 1\n    helper(x)\n",
        "    if False:\n        helper(x)\n    return x + 1\n",
        "    while 0:\n        helper(x)\n    return x + 1\n",
        "    y = False and helper(x)\n    return x + 1\n",
        "    y = True or helper(x)\n    return x + 1\n",
        "    y = helper(x) if None else 0\n    return x + 1\n",
        "    def unused():\n        return helper(x)\n    return x + 1\n",
        "    g = lambda: helper(x)\n    return x + 1\n",
        "    if True:\n        return x + 1\n    else:\n        return helper(x)\n",
    ],
)
def test_called_from_ignores_calls_that_cannot_run(tmp_path: Path, body: str) -> None:
    r = _check(tmp_path, HELPER + "def f(x):\n" + body, CALLED, base=None)
    assert not r.ok, body


@pytest.mark.parametrize(
    "body",
    [
        "    return helper(x)\n",
        "    if x:\n        return helper(x)\n    return 0\n",
        "    for i in range(2):\n        x = helper(x)\n    return x\n",
        "    try:\n        return helper(x)\n    except ValueError:\n        raise\n",
        "    with open('f') as fh:\n        pass\n    return [helper(v) for v in (x,)]\n",
        "    return x and helper(x)\n",
    ],
)
def test_called_from_accepts_live_calls(tmp_path: Path, body: str) -> None:
    r = _check(tmp_path, HELPER + "def f(x):\n" + body, CALLED, base=None)
    assert r.ok, (body, r.detail)


SHAPES = """import functools

import pytest

from inventory import models


def wrap(f):
    @functools.wraps(f)
    def inner(*a, **k):
        return f(*a, **k)

    return inner


@wrap
def test_wrapped():
    assert models.Item("x", "x", 2.0, 2).value() == 4.0


def test_rebound():
    assert models.Item("x", "x", 1.0, 3).value() == 3.0


test_rebound = wrap(test_rebound)


@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert models.Item("x", "x", 1.0, n).value() == float(n)


class TestShapes:
    def test_method(self):
        with pytest.raises(TypeError):
            models.Item("x")

    @staticmethod
    def test_static():
        assert not models.Item("x", "x", 1.0, 5).is_low(3)


class TestInherited(TestShapes):
    pass
"""
SHAPE_IDS = [
    "tests/test_shapes.py::test_wrapped",
    "tests/test_shapes.py::test_rebound",
    "tests/test_shapes.py::test_param[1]",
    "tests/test_shapes.py::test_param[2]",
    "tests/test_shapes.py::TestShapes::test_method",
    "tests/test_shapes.py::TestShapes::test_static",
    "tests/test_shapes.py::TestInherited::test_method",
    "tests/test_shapes.py::TestInherited::test_static",
]


def test_pinning_passes_the_test_shapes_honest_suites_use(corpus: Path, tmp_path: Path) -> None:
    """Decorated, rebound, parametrized, class, static and inherited tests: the pinned check
    (`_pinned_mismatch`) must not fail any of them for the reference fix."""
    d = tmp_path / TASK_ID
    shutil.copytree(corpus / TASK_ID, d)
    for where in (d / "tests", d / "repo" / "tests"):
        (where / "test_shapes.py").write_text(SHAPES)
    toml = d / "task.toml"
    listed = "".join(f'  "{t}",\n' for t in SHAPE_IDS)
    toml.write_text(toml.read_text().replace("PASS_TO_PASS = [\n", "PASS_TO_PASS = [\n" + listed))
    t = load_task(d)
    assert t.solution_patch is not None
    g = grade_patch(t, t.solution_patch.read_text())
    assert g.resolved, (g.message, {k: v for k, v in g.tests.items() if v != "passed"})
    assert all(g.tests.get(i) == "passed" for i in SHAPE_IDS), g.tests
