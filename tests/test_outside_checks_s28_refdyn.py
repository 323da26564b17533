"""Outside checks of the grader, session 28 (refdyn): `called_from` judged by what ran.

The static `called_from` check folds constant tests and names bound once to a constant, but
not every value-dead condition: a caller that keeps its inline code and calls the extracted
helper only under `if len(()):`, `if 1 > 2:`, `if os.environ.get("X"):`, in a loop over an
empty tuple or behind a function that always returns False met the check, and the refactor
task resolved. The pytest reporter now records, around each test call, whether the caller ran
and whether the helper was called from it (`pytest_reporter._CallWatch`), and the grader fails
a `called_from` check unless its caller ran in the tests and called the helper
(`grading._runtime_calls`): a caller the tests never run fails too (else a copy put in its place
at run time, `total = _hc_total`, keeps the checked def out of the run).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from hillclimb.harness.grading import grade_workspace
from hillclimb.harness.patching import copy_tree
from hillclimb.harness.results_channel import TrustedReport, _apply
from hillclimb.harness.task import Task, load_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "redteam"))
import graders_s28 as bench  # noqa: E402

MODULE = "shop/price.py"
ORIGINAL = (
    "def total(items, rate):\n"
    "    s = sum(p * q for p, q in items)\n"
    "    return round(s * (1 + rate), 2)\n"
    "\n\n"
    "def unused(x):\n"
    "    return x * 2\n"
)
TESTS = (
    "from shop.price import total\n\n\n"
    "def test_total():\n"
    "    assert total([(2.0, 3), (1.5, 2)], 0.1) == 9.9\n\n\n"
    "def test_empty():\n"
    "    assert total([], 0.2) == 0\n"
)
TASK_TOML = """id = "refactor-refdyn-0001"
kind = "refactor"
instruction = "Extract the sum in `total` into `subtotal(items)` and call it from `total`."
test_command = "python -m pytest -q -rA -p no:cacheprovider tests"
FAIL_TO_PASS = []
PASS_TO_PASS = ["tests/test_price.py::test_total", "tests/test_price.py::test_empty"]

[[checks]]
type = "function_exists"
name = "subtotal"
module = "shop/price.py"

[[checks]]
type = "called_from"
name = "subtotal"
module = "shop/price.py"
caller = "{caller}"

[limits]
test_timeout_s = 60.0

[meta]
module = "shop/price.py"
refactor = "extract_function"
helper = "subtotal"
"""
HELPER = "\n\ndef subtotal(items):\n    return sum(p * q for p, q in items)\n"
HONEST = (
    "def total(items, rate):\n"
    "    s = subtotal(items)\n"
    "    return round(s * (1 + rate), 2)\n"
    "\n\n"
    "def unused(x):\n"
    "    return x * 2\n" + HELPER
)


def _make_task(root: Path, caller: str = "total") -> Task:
    """A hand-made extract-function task: `shop/price.py` and one test file."""
    for base in (root / "repo", root):
        (base / "tests").mkdir(parents=True, exist_ok=True)
        (base / "tests" / "test_price.py").write_text(TESTS)
    (root / "repo" / "shop").mkdir()
    (root / "repo" / "shop" / "__init__.py").write_text("")
    (root / "repo" / MODULE).write_text(ORIGINAL)
    (root / "task.toml").write_text(TASK_TOML.replace("{caller}", caller))
    return load_task(root)


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Task:
    return _make_task(tmp_path_factory.mktemp("refdyn") / "t")


def _graded(task: Task, source: str, extra: dict[str, str] | None = None):
    with tempfile.TemporaryDirectory(prefix="hc-s28-refdyn-") as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        (ws / MODULE).write_text(source)
        for rel, text in (extra or {}).items():
            (ws / rel).write_text(text)
        return grade_workspace(task, ws)


def _called_from(res) -> dict:
    return next(c for c in res.checks if c["check"].startswith("called_from("))


def test_honest_refactor_resolves_and_says_the_helper_ran(task: Task) -> None:
    res = _graded(task, HONEST)
    assert res.resolved, res.message
    assert _called_from(res)["runtime"] == "subtotal ran from total"


@pytest.mark.parametrize("guard", sorted(bench.VALUE_DEAD.values()))
def test_call_under_a_value_dead_condition_fails(task: Task, guard: str) -> None:
    """Each guard leaves the call in code the static check counts as reachable; the caller
    ran in the tests and never called the helper, so the check fails."""
    body = ORIGINAL.replace("    s = sum", f"    {guard}\n        subtotal(items)\n    s = sum")
    res = _graded(task, body + HELPER + "\n\ndef _hc_never():\n    return False\n")
    check = _called_from(res)
    assert not res.resolved
    assert not check["ok"]  # the static check fails it too (`total` keeps its inline code)
    assert "ran in the tests without calling subtotal" in check["runtime"]


def test_helper_called_only_from_elsewhere_fails(task: Task) -> None:
    """The helper runs in the tests, but not from the caller (called from a genexpr inside
    another function the caller's dead branch names)."""
    body = ORIGINAL.replace(
        "    s = sum",
        "    if len(()):\n        subtotal(items)\n    s = helper2(items)\n    s = sum",
    )
    extra = "\n\ndef helper2(items):\n    return subtotal(items)\n"
    res = _graded(task, body + HELPER + extra)
    assert not _called_from(res)["ok"]


def test_helper_in_a_comprehension_of_the_caller_counts(task: Task) -> None:
    body = HONEST.replace("s = subtotal(items)", "s = sum(subtotal([it]) for it in items)")
    res = _graded(task, body)
    assert res.resolved, res.message


def test_caller_the_tests_never_run_fails_the_check(tmp_path: Path) -> None:
    """`unused` is never called by the tests: the run cannot show it calling the helper, so
    the check fails (the task generator's proof then discards such a task)."""
    t = _make_task(tmp_path / "t", caller="unused")
    src = ORIGINAL.replace("    return x * 2", "    return subtotal([(x, 2)])") + HELPER
    res = _graded(t, src)
    assert not res.resolved
    assert not _called_from(res)["ok"]
    assert _called_from(res)["runtime"] == "unused did not run in the tests"


def test_caller_replaced_at_run_time_fails(task: Task) -> None:
    """The checked `total` keeps a dead call; a copy takes its name at run time, so the tests
    never run the checked caller (`graders_s28.rebind_caller`)."""
    body = ORIGINAL.replace("    s = sum", "    if len(()):\n        subtotal(items)\n    s = sum")
    copy = ORIGINAL.split("\n\n\n")[0].replace("def total(", "def _hc_total(")
    res = _graded(task, body + HELPER + "\n\n" + copy + "\n\ntotal = _hc_total\n")
    assert not res.resolved
    assert not _called_from(res)["ok"]
    assert _called_from(res)["runtime"] == "total did not run in the tests"


def test_caller_compiled_elsewhere_under_its_name_does_not_count(task: Task) -> None:
    """`total` keeps a dead call and, in the tests, runs a function compiled under the module's
    file and the name `total` whose body calls the helper: not the code the module file
    defines for `total`, so the helper's call from it does not count."""
    body = ORIGINAL.replace(
        "    s = sum",
        "    if len(()):\n        subtotal(items)\n    _hc_ns['total'](items)\n    s = sum",
    )
    fake = (
        "\n\n_hc_ns = {'subtotal': subtotal}\n"
        "exec(compile('def total(items):\\n    return subtotal(items)\\n', __file__, 'exec'),"
        " _hc_ns)\n"
    )
    res = _graded(task, body + HELPER + fake)
    assert not res.resolved
    assert not _called_from(res)["ok"]
    assert "without calling subtotal" in _called_from(res)["runtime"]


def test_switching_the_recording_off_fails_the_test(task: Task) -> None:
    """A decorator on the caller removes the profile function before the caller's own code
    starts, so its run would go unseen (and the run-time requirement not apply): a test call
    that ends without the reporter's profile function set fails."""
    deco = (
        "import sys\n\n\n"
        "def _deco(f):\n"
        "    def w(*a, **k):\n"
        "        getattr(sys, 'set' + 'profile')(None)\n"
        "        return f(*a, **k)\n"
        "    return w\n\n\n"
        "@_deco\n"
    )
    body = ORIGINAL.replace("    s = sum", "    if len(()):\n        subtotal(items)\n    s = sum")
    res = _graded(task, deco + body + HELPER)
    assert not res.resolved
    assert res.pass_to_pass["failed"]


def test_end_record_calls_parsed_and_malformed_ignored() -> None:
    rep = TrustedReport()
    _apply(rep, {"k": "end", "runner": "pytest", "exitstatus": 0, "calls": [[True, False]]})
    assert rep.calls == [[True, False]]
    for bad in ([[1, 0]], [[True]], "x", [["a", "b"]]):
        rep = TrustedReport()
        _apply(rep, {"k": "end", "runner": "pytest", "exitstatus": 0, "calls": bad})
        assert rep.calls is None, json.dumps(bad)


def test_watch_records_and_removes_itself_once_every_helper_ran(tmp_path: Path) -> None:
    """`_CallWatch.hook` notes the caller and the helper called from it (in a genexpr of the
    caller too), and once every watched helper ran from its caller it removes itself, so the
    rest of the tests run without a profile function (its cost)."""
    from hillclimb.harness import pytest_reporter

    mod = tmp_path / "m.py"
    mod.write_text(
        "def helper(x):\n    return x\n\n\n"
        "def other(x):\n    return helper(x)\n\n\n"
        "def caller(xs):\n    return sum(helper(x) for x in xs)\n"
    )
    ns: dict = {}
    exec(compile(mod.read_text(), str(mod), "exec", dont_inherit=True), ns)  # as import does
    watch = pytest_reporter._CallWatch([(str(mod.resolve()), "caller", "helper")])
    sys.setprofile(watch.hook)
    try:
        ns["other"](1)  # the helper, but not from the caller
        assert sys.getprofile() == watch.hook and watch.record() == [[False, False]]
        ns["caller"]([1, 2])
        assert sys.getprofile() is None  # removed itself
    finally:
        sys.setprofile(None)
    assert watch.done and watch.record() == [[True, True]]
