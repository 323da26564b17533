"""Outside checks of the grader, session 29 (graders4): swaps made during a test's call.

Session 28 checks a test's module namespace just before the call and its `pytest` just after,
and only for pytest functions. Code under test could swap between the two and undo it before
the end: package code keyed on `PYTEST_CURRENT_TEST` (no hook, thread or frame), or a thread
polling `sys._current_frames()`; in unittest TestCases even a profile hook timing the swap went
unseen. Each resolved `bugfix-inventory-11-0002` with the bug in place. The reporter now checks
the call phase of every test (functions and TestCase methods) and traces, opcode by opcode,
every frame running with a pinned test module's globals (`pytest_reporter._NameGuard`): a
pinned name holding another object at any of them fails the test. The refactor `_CallWatch`
now also covers setup (fixtures), TestCase methods and threads started during the test.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from hillclimb.harness.expectations import HiddenExpectations, hide_in_source
from hillclimb.harness.grading import grade_patch, grade_workspace
from hillclimb.harness.patching import apply_patch, copy_tree
from hillclimb.harness.task import Task, load_task
from hillclimb.harness.taskgen import generate as gen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "redteam"))
import graders_s29 as bench  # noqa: E402
from graders_s27 import attack  # noqa: E402

TASK_ID = "bugfix-inventory-11-0002"
F2P = "tests/test_inventory.py::test_add_duplicate_raises"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Seed 11's first tasks as before session 27 (asked not to refuse all-`raises` tasks)."""
    out = tmp_path_factory.mktemp("s29_graders4")
    gen.generate_tasks(out, 3, seed=11, kinds=["bugfix", "feature"], require_hidden_f2p=False)
    return out


@pytest.fixture(scope="module")
def task(corpus: Path) -> Task:
    t = load_task(corpus / TASK_ID)
    assert t.fail_to_pass == (F2P,)
    return t


@pytest.fixture(scope="module")
def case_task(corpus: Path, tmp_path_factory) -> Task:
    return bench.unittest_task(corpus, tmp_path_factory.mktemp("case") / "task")


def test_reference_resolves_and_bug_does_not(task: Task, case_task: Task) -> None:
    """Controls: the guard fails no honest test, pytest function or TestCase method."""
    for t in (task, case_task):
        assert grade_patch(t, t.solution_patch.read_text()).resolved
        assert not grade_patch(t, None).resolved


@pytest.mark.parametrize("name", sorted(bench.ATTACKS))
def test_swap_made_during_the_call_is_failed(task: Task, name: str) -> None:
    """`env_keyed` (package code reading `PYTEST_CURRENT_TEST`) and `thread_poll` (a thread
    polling the frames) swap the test module's `pytest` after the pre-call check and restore
    it before the call ends."""
    g = attack(task, bench.ATTACKS[name])
    assert g.status == "unresolved", (g.status, g.message)
    assert F2P in g.fail_to_pass["failed"]


def test_swap_timed_in_a_testcase_method_is_failed(case_task: Task) -> None:
    """A profile hook swaps the TestCase's module `make` while a method runs (no per-call
    check reached TestCase methods before)."""
    g = attack(case_task, bench.UNITTEST_TIMED)
    assert g.status == "unresolved", (g.status, g.message)
    assert bench.UNITTEST_F2P in g.fail_to_pass["failed"]


def test_builtin_put_into_the_test_module_is_failed(task: Task) -> None:
    """The package's constructor puts `ValueError` into the test module (the builtin itself:
    no test changes meaning, but any object could stand there). The file never binds that
    name, so the tests that read it afterwards fail (`_Pin.foreign`, `_NameGuard`)."""
    code = textwrap.dedent(
        """

        def _hc_shadow():
            import builtins, sys

            orig = Inventory.__init__

            def init(self, *a, **k):
                orig(self, *a, **k)
                for m in list(sys.modules.values()):
                    if (getattr(m, "__file__", "") or "").endswith("test_inventory.py"):
                        m.__dict__["ValueError"] = builtins.ValueError

            Inventory.__init__ = init


        _hc_shadow()
        """
    )
    g = attack(task, code)
    assert g.status == "unresolved", (g.status, g.message)
    assert "tests/test_inventory.py::test_restock_rejects_zero" in g.pass_to_pass["failed"]


def test_package_monkeypatched_during_a_test_still_passes(task: Task) -> None:
    """Control: package code that rebinds its *own* module's names while a test runs (the
    package is graded as such) swaps nothing the test file binds."""
    code = textwrap.dedent(
        """

        _hc_calls = []


        def _hc_note(fn):
            def inner(*a, **k):
                global _hc_calls
                _hc_calls = _hc_calls + [fn.__name__]
                return fn(*a, **k)

            return inner


        Inventory.restock = _hc_note(Inventory.restock)
        """
    )
    g = grade_patch(task, task.solution_patch.read_text())
    assert g.resolved
    with tempfile.TemporaryDirectory(prefix="hc-s29-t-") as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        assert apply_patch(ws, task.solution_patch.read_text()).ok
        mod = ws / task.meta["module"]
        mod.write_text(mod.read_text() + code)
        g = grade_workspace(task, ws)
    assert g.resolved, g.message


# ---- refactor: where the caller may run ------------------------------------------------------

MODULE = "shop/price.py"
ORIGINAL = "def total(items, rate):\n    s = sum(p * q for p, q in items)\n    return round(s * (1 + rate), 2)\n"
HELPER = "\n\ndef subtotal(items):\n    return sum(p * q for p, q in items)\n"
HONEST = ORIGINAL.replace("sum(p * q for p, q in items)", "subtotal(items)") + HELPER
DEAD = (
    ORIGINAL.replace("    s = sum", "    if len(()):\n        subtotal(items)\n    s = sum")
    + HELPER
)
TASK_TOML = """id = "refactor-s29-0001"
kind = "refactor"
instruction = "Extract the sum in `total` into `subtotal(items)` and call it from `total`."
test_command = "python -m pytest -q -rA -p no:cacheprovider tests"
FAIL_TO_PASS = []
PASS_TO_PASS = ["tests/test_price.py::{test}"]

[[checks]]
type = "called_from"
name = "subtotal"
module = "shop/price.py"
caller = "total"

[limits]
test_timeout_s = 60.0

[meta]
module = "shop/price.py"
refactor = "extract_function"
"""
# Honest tests that run `total` only from a TestCase method, a thread, or a fixture.
TESTS = {
    "Case::test_total": (
        "import unittest\n\nfrom shop.price import total\n\n\n"
        "class Case(unittest.TestCase):\n"
        "    def test_total(self):\n"
        "        self.assertEqual(total([(2.0, 3), (1.5, 2)], 0.1), 9.9)\n"
    ),
    "test_thread": (
        "import threading\n\nfrom shop.price import total\n\n\n"
        "def test_thread():\n"
        "    out = []\n"
        "    t = threading.Thread(target=lambda: out.append(total([(2.0, 3)], 0.0)))\n"
        "    t.start()\n"
        "    t.join()\n"
        "    assert out == [6.0]\n"
    ),
    "test_fixture": (
        "import pytest\n\nfrom shop.price import total\n\n\n"
        "@pytest.fixture\n"
        "def value():\n"
        "    return total([(2.0, 3)], 0.0)\n\n\n"
        "def test_fixture(value):\n"
        "    assert value == 6.0\n"
    ),
}


def _refactor(root: Path, test: str, source: str):
    for base in (root / "repo", root):
        (base / "tests").mkdir(parents=True, exist_ok=True)
        (base / "tests" / "test_price.py").write_text(TESTS[test])
    (root / "repo" / "shop").mkdir()
    (root / "repo" / "shop" / "__init__.py").write_text("")
    (root / "repo" / MODULE).write_text(ORIGINAL)
    (root / "task.toml").write_text(TASK_TOML.replace("{test}", test))
    t = load_task(root)
    with tempfile.TemporaryDirectory(prefix="hc-s29-ref-") as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(t.repo, ws)
        (ws / MODULE).write_text(source)
        return grade_workspace(t, ws)


@pytest.mark.parametrize("test", sorted(TESTS))
def test_honest_refactor_seen_from_testcase_thread_or_fixture(tmp_path: Path, test: str) -> None:
    """An honest refactor whose tests run the caller only in a TestCase method, a thread or a
    fixture resolves (before: "total did not run in the tests", a false negative)."""
    res = _refactor(tmp_path / "t", test, HONEST)
    check = next(c for c in res.checks if c["check"].startswith("called_from("))
    assert res.resolved, (res.message, check)
    assert check["runtime"] == "subtotal ran from total"


@pytest.mark.parametrize("test", sorted(TESTS))
def test_dead_call_still_fails_there(tmp_path: Path, test: str) -> None:
    """Control: the value-dead call still fails when the caller runs in those places."""
    res = _refactor(tmp_path / "t", test, DEAD)
    assert not res.resolved


# ---- hidden expected values: handlers that fail the test ------------------------------------

HEAD = "import unittest\n\nimport pytest\n\nimport pkg\n\n\n"


def _hidden(source: str, tmp_path: Path) -> tuple[list[object], str | None]:
    plan = HiddenExpectations(tmp_path / "log")
    out = hide_in_source(HEAD + source, "tests/test_x.py", plan)
    return [e.expected for e in plan.slots.values() if e.op != "branch"], out


@pytest.mark.parametrize(
    "handler",
    [
        "pytest.fail('x', pytrace=False)",
        "pytest.fail(reason='x', pytrace=False)",
        "pytest.fail(msg='x')",
    ],
)
def test_pytest_fail_with_keywords_fails_the_test(handler: str, tmp_path: Path) -> None:
    """`pytest.fail(..., pytrace=False)` surely fails the test like `pytest.fail(...)`: the
    assertion its handler may catch is hidden (round 5 refused any keyword, so it stayed
    readable)."""
    src = f"def test_a():\n    try:\n        assert pkg.f() == 3\n    except Exception:\n        {handler}\n"
    values, out = _hidden(src, tmp_path)
    assert values == [3], (values, out)
    assert out is not None and "== 3" not in out


def test_testcase_fail_with_msg_keyword_fails_the_test(tmp_path: Path) -> None:
    src = (
        "class T(unittest.TestCase):\n    def test_a(self):\n        try:\n"
        "            self.assertEqual(pkg.f(), 3)\n        except Exception:\n"
        "            self.fail(msg='x')\n"
    )
    values, _ = _hidden(src, tmp_path)
    assert values == [3]


@pytest.mark.parametrize(
    "source",
    [
        # an unknown keyword raises TypeError, which a handler further out may catch
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except Exception:\n"
        "        pytest.fail('x', bogus=1)\n",
        # keyword values must be inert
        "def test_a():\n    try:\n        assert pkg.f() == 3\n    except Exception:\n"
        "        pytest.fail('x', pytrace=pkg.g())\n",
    ],
)
def test_fail_calls_that_may_do_otherwise_stay(source: str, tmp_path: Path) -> None:
    values, out = _hidden(source, tmp_path)
    assert values == [] and (out is None or "== 3" in out), (values, out)


@pytest.mark.parametrize(
    "where",
    [
        "    failureException = KeyError\n\n",
        "    def setUp(self):\n        self.failureException = KeyError\n\n",
    ],
)
def test_testcase_with_its_own_failure_exception_is_left_as_written(
    where: str, tmp_path: Path
) -> None:
    """With `failureException = KeyError` the TestCase's `assertEqual` raises `KeyError`, which
    `except KeyError: pass` swallows: a wrong value passes the test as written. Judged as a
    required slot (round 5: the handler "cannot catch an AssertionError") it failed the test
    instead, so the grader disagreed with the file; now the module's TestCases are not read."""
    src = (
        f"class T(unittest.TestCase):\n{where}    def test_a(self):\n        try:\n"
        "            self.assertEqual(pkg.f(), 3)\n        except KeyError:\n            pass\n"
        "        self.assertEqual(pkg.g(), 4)\n"
    )
    values, out = _hidden(src, tmp_path)
    assert values == [], (values, out)
    assert out is None or "pkg.f(), 3" in out
