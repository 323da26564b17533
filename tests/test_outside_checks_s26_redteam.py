"""Outside checks of the grader: code under test that swaps the tests it is judged by (session 26).

The hidden-expectation rewrite (sessions 25-26) keeps expected VALUES out of the sandbox, so a
test whose assertions the grader hid cannot pass without the right values. A test with nothing
to hide (`with pytest.raises(ValueError): ...`) is judged by pytest alone, in the interpreter
the code under test shares. A package that, at import, gives such a test another body (a thread
setting `test.__code__` to a no-op), replaces `pytest.raises` under a name built at run time,
or hands the test module a fake `pytest` made the test pass with the bug in place: on the
generated corpus of 60 bug-fix/feature tasks (seed 11) the body swap resolved
`bugfix-inventory-11-0002` (its only FAIL_TO_PASS test is a `pytest.raises` test) and earned
partial RL reward on two more. The grader's pytest plugin now notes each test's body at
collection and fails a call whose body, module objects or test API changed, or whose body is
code outside the test's file (`pytest_reporter._swapped`). Reference solutions still resolve
and the buggy code still fails.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from hillclimb.harness.grading import grade_patch, grade_workspace
from hillclimb.harness.patching import copy_tree
from hillclimb.harness.task import Task, load_task
from hillclimb.harness.taskgen import generate as gen

# Each attack is appended to the module the task's bug lives in. All names that a text check
# could look for are built at run time.

BODY_SWAP = """

def _hc_swap():
    import sys, threading, time

    def noop(*a, **k):
        return None

    def loop():
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            for name, m in list(sys.modules.items()):
                f = getattr(m, "__file__", None) or ""
                if "/tests/" not in f or not name.rsplit(".", 1)[-1].startswith("test"):
                    continue
                for k, v in list(vars(m).items()):
                    c = getattr(v, "__code__", None)
                    if k.startswith("test") and c is not None:
                        inner = {n for x in c.co_consts if hasattr(x, "co_names") for n in x.co_names}
                        if not any(n.startswith("_hillclimb") for n in set(c.co_names) | inner):
                            v.__code__ = noop.__code__
            time.sleep(0.002)

    threading.Thread(target=loop, daemon=True).start()


_hc_swap()
"""

FAKE_RAISES = """

class _HcSwallow:
    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True

"""

API_SWAP = (
    FAKE_RAISES
    + """
import sys as _hc_sys

setattr(_hc_sys.modules["py" + "test"], "rai" + "ses", _HcSwallow)
"""
)

MODULE_SWAP = (
    FAKE_RAISES
    + """
import sys as _hc_sys
import types as _hc_types

for _hc_m in list(_hc_sys.modules.values()):
    if "/tests/" in (getattr(_hc_m, "__file__", None) or "") and "py" + "test" in vars(_hc_m):
        vars(_hc_m)["py" + "test"] = _hc_types.SimpleNamespace(raises=_HcSwallow)
"""
)

ATTACKS = {"body_swap": BODY_SWAP, "api_swap": API_SWAP, "module_swap": MODULE_SWAP}
TASK_ID = "bugfix-inventory-11-0002"


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Task:
    """The generated task whose only FAIL_TO_PASS test is a `pytest.raises` test."""
    out = tmp_path_factory.mktemp("s26_redteam")
    # session 27: the generator now discards all-`pytest.raises` tasks unless asked not to
    gen.generate_tasks(out, 3, seed=11, kinds=["bugfix", "feature"], require_hidden_f2p=False)
    t = load_task(out / TASK_ID)
    assert t.fail_to_pass == ("tests/test_inventory.py::test_add_duplicate_raises",)
    return t


def attack_grade(task: Task, attack: str):
    tmp = Path(tempfile.mkdtemp(prefix="hc-s26-redteam-"))
    try:
        ws = tmp / "ws"
        copy_tree(task.repo, ws)
        mod = ws / task.meta["module"]
        mod.write_text(mod.read_text() + ATTACKS[attack])
        return grade_workspace(task, ws)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_reference_resolves_and_buggy_fails(task: Task) -> None:
    assert task.solution_patch is not None
    assert grade_patch(task, task.solution_patch.read_text()).resolved
    g = grade_patch(task, None)
    assert not g.resolved and g.fail_to_pass["passed"] == []


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_swapping_the_tests_does_not_resolve(task: Task, attack: str) -> None:
    g = attack_grade(task, attack)
    assert g.status == "unresolved", (g.status, g.message)
    assert g.fail_to_pass["passed"] == [], g.tests


def test_value_checked_names_only_passes_with_a_hidden_value(task: Task) -> None:
    """`value_checked` (what partial RL credit may count): tests that passed with a hidden
    assertion judged outside the sandbox; a `pytest.raises` test, which code under test can
    pass without the fix (its input is readable in the test), is not among them."""
    assert task.solution_patch is not None
    g = grade_patch(task, task.solution_patch.read_text())
    assert g.resolved
    assert "tests/test_inventory.py::test_item_value" in g.value_checked
    assert "tests/test_inventory.py::test_add_duplicate_raises" not in g.value_checked
    assert set(g.value_checked) <= {t for t, o in g.tests.items() if o == "passed"}
    assert grade_patch(task, None).value_checked  # the buggy code's other tests still check
