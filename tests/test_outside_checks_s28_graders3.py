"""Outside checks of the grader, session 28: swaps of what a test reads, in its module only.

Session 27 pins each test's *body* to its file. The body can stay while the names it reads
change: code under test, imported at the top of the test module, can rebind in that module's
namespace the `pytest`, helper, class or module the test uses, either once before pytest
collects the module (a fix that lives only in the test module's namespace, the package keeping
its bug) or for one test at a time from a profile hook that sees the test start and return
(restored before any check after the call). On session 27's code each resolved
`bugfix-inventory-11-0002` with the bug in place. The reporter now checks, per pinned test
module at collection, that the names its file binds once (imports, undecorated defs and
classes) hold what the file and the module table give (`_namespace_mismatch`), and just before
each test function is called that none was rebound since and no Python trace or profile hook is
set (`pytest_pyfunc_call`, `_foreign_hook`).
"""

from __future__ import annotations

import ast
import inspect
import sys
import tempfile
from pathlib import Path

import pytest

from hillclimb.harness import pytest_reporter
from hillclimb.harness.grading import grade_patch, grade_workspace
from hillclimb.harness.patching import copy_tree
from hillclimb.harness.structural import run_check
from hillclimb.harness.task import StructuralCheck, Task, load_task
from hillclimb.harness.taskgen import generate as gen
from hillclimb.harness.taskgen import js_tasks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "redteam"))
import graders_s28 as bench  # noqa: E402

TASK_ID = "bugfix-inventory-11-0002"
F2P = "tests/test_inventory.py::test_add_duplicate_raises"

# Before collection, in the test module only: `store` becomes a copy whose `Inventory` refuses
# duplicates (the package keeps its bug), then the hook removes itself.
STATIC_MODULE = """

def _hc_ns():
    import sys, types

    def hook(frame, event, arg):
        if event != "return" or frame.f_code.co_name != "<module>":
            return
        if not frame.f_code.co_filename.endswith("test_inventory.py"):
            return
        g = frame.f_globals
        real = g["store"]
        fake = types.ModuleType(real.__name__)
        fake.__dict__.update(real.__dict__)

        class Inventory(real.Inventory):
            def add(self, sku, name, price, quantity=0):
                if sku in self.items:
                    raise ValueError(sku)
                return super().add(sku, name, price, quantity)

        fake.Inventory = Inventory
        g["store"] = fake
        getattr(sys, "set" + "profile")(None)

    getattr(sys, "set" + "profile")(hook)


_hc_ns()
"""

# The same, but the test file's own helper `make` is replaced by one building that class.
STATIC_HELPER = STATIC_MODULE.replace(
    'g["store"] = fake',
    "def make():\n"
    "            inv = Inventory()\n"
    '            inv.add("A1", "apple", 0.5, 10)\n'
    '            inv.add("B2", "bread", 2.0, 3)\n'
    "            return inv\n\n"
    '        g["make"] = make',
)


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Task:
    """Seed 11's first task as before session 27 (asked not to refuse all-`raises` tasks)."""
    out = tmp_path_factory.mktemp("s28_graders3")
    keep = "require_hidden_f2p" in inspect.signature(gen.generate_tasks).parameters
    extra = {"require_hidden_f2p": False} if keep else {}
    gen.generate_tasks(out, 3, seed=11, kinds=["bugfix", "feature"], **extra)
    t = load_task(out / TASK_ID)
    assert t.fail_to_pass == (F2P,)
    return t


def _graded(task: Task, code: str):
    with tempfile.TemporaryDirectory(prefix="hc-s28-t-") as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        mod = ws / task.meta["module"]
        mod.write_text(mod.read_text() + code)
        return grade_workspace(task, ws)


def test_reference_resolves_and_bug_does_not(task: Task) -> None:
    assert grade_patch(task, task.solution_patch.read_text()).resolved
    assert not grade_patch(task, None).resolved


@pytest.mark.parametrize("name", sorted(bench.ATTACKS))
def test_swap_timed_by_a_profile_hook_is_failed(task: Task, name: str) -> None:
    """The test module's `pytest` (`pytest_timed`) or its helpers and package names
    (`names_timed`) swapped while one test runs and put back when it returns."""
    g = _graded(task, bench.ATTACKS[name])
    assert g.status == "unresolved", (g.status, g.message)
    assert F2P in g.fail_to_pass["failed"]


@pytest.mark.parametrize("code", [STATIC_MODULE, STATIC_HELPER], ids=["module", "helper"])
def test_namespace_swap_before_collection_is_failed(task: Task, code: str) -> None:
    """A fix that lives only in the test module's namespace (its `store` or its `make`), made
    before collection by a hook that then removes itself (no hook left to see at call time)."""
    g = _graded(task, code)
    assert g.status == "unresolved", (g.status, g.message)
    assert F2P in g.fail_to_pass["failed"]


def test_package_monkeypatched_by_a_test_still_passes(task: Task) -> None:
    """Control: a test that monkeypatches the *package* module (not its own namespace) and a
    test that reloads it are not swaps; the reference with such tests added still resolves."""
    extra = (
        "\n\ndef test_patched_package(monkeypatch):\n"
        "    monkeypatch.setattr(store, 'Inventory', models.Item)\n"
        "    assert store.Inventory is models.Item\n"
        "\n\ndef test_reloaded_package():\n"
        "    import importlib\n"
        "    assert importlib.reload(models).Item is not None\n"
    )
    with tempfile.TemporaryDirectory(prefix="hc-s28-c-") as tmp:
        d = Path(tmp) / TASK_ID
        import shutil

        shutil.copytree(task.repo.parent, d)
        for f in (d / "tests" / "test_inventory.py", d / "repo" / "tests" / "test_inventory.py"):
            f.write_text(f.read_text() + extra)
        toml = d / "task.toml"
        ids = '  "tests/test_inventory.py::test_patched_package",\n'
        ids += '  "tests/test_inventory.py::test_reloaded_package",\n'
        toml.write_text(toml.read_text().replace("PASS_TO_PASS = [\n", "PASS_TO_PASS = [\n" + ids))
        t = load_task(d)
        g = grade_patch(t, t.solution_patch.read_text())
    assert g.resolved, (g.status, g.message, g.pass_to_pass)


def test_namespace_binds_only_names_the_file_alone_decides() -> None:
    src = (
        "import os\nimport a.b\nimport a.c as c\nimport json as j\nfrom m import x, y as z\nfrom . import rel\n"
        "try:\n    import maybe\nexcept ImportError:\n    maybe = None\n"
        "from m import twice\ntwice = 1\n"
        "def helper():\n    global g\n    g = 1\n"
        "@decorated\ndef fixture():\n    pass\n"
        "class C:\n    def m(self):\n        pass\n"
        "g = 0\nfor i in range(2):\n    pass\n"
    )
    binds = pytest_reporter._namespace_binds(ast.parse(src), ast)
    assert binds == {
        "os": ("module", "os"),
        "j": ("module", "json"),
        "a": ("module", "a"),
        "c": ("from", "a", "c", 0),
        "x": ("from", "m", "x", 0),
        "z": ("from", "m", "y", 0),
        "rel": ("from", "", "rel", 1),
        "helper": ("def", "helper"),
        "C": ("class", "C"),
    }
    assert pytest_reporter._namespace_binds(ast.parse("from m import *\nimport os\n"), ast) == {}


JS_TASK = "bugfix-js-stats+cart-11-0004"
JS_PLAIN = "tests/stats.test.js::median of three"
JS_PLAIN_TEST = """
test('median of three', () => {
  if (stats.median([3, 1, 2]) !== 2) throw new Error('wrong median');
});
"""


@pytest.fixture(scope="module")
def js_task(tmp_path_factory) -> Task:
    """Seed 11's two-file JavaScript task (`cart.test.js` runs before `stats.test.js`) with a
    FAIL_TO_PASS test that hides nothing added to `stats.test.js` (no `assert` call)."""
    if js_tasks.node_version() is None:
        pytest.skip("node does not run in the sandbox")
    out = tmp_path_factory.mktemp("s28_js")
    gen.generate_tasks(out, 5, seed=11, kinds=["bugfix", "feature"], languages=["javascript"])
    d = out / JS_TASK
    for f in (d / "tests" / "stats.test.js", d / "repo" / "tests" / "stats.test.js"):
        f.write_text(f.read_text() + JS_PLAIN_TEST)
    toml = d / "task.toml"
    toml.write_text(
        toml.read_text().replace("FAIL_TO_PASS = [\n", f'FAIL_TO_PASS = [\n  "{JS_PLAIN}",\n')
    )
    return load_task(d)


def test_js_test_file_rewritten_on_disk_is_failed(js_task: Task) -> None:
    """A module `cart.test.js` loads rewrites `stats.test.js` (not started yet) with the tests
    that hide nothing emptied and a first line that writes the original back as it loads."""
    assert grade_patch(js_task, js_task.solution_patch.read_text()).resolved
    assert JS_PLAIN in grade_patch(js_task, None).fail_to_pass["failed"]
    g = bench.js_attack(js_task)
    assert JS_PLAIN in g.fail_to_pass["failed"], (g.status, g.tests, g.reporter)
    assert "tests/stats.test.js" in g.reporter["changed_tests"]


# ---- refactor checks: `called_from` and values ------------------------------------------------

CALLED = StructuralCheck("called_from", "helper", module="m.py", caller="f")
HELPER = "def helper(x):\n    return x + 1\n\n\n"


def _called(tmp_path: Path, src: str) -> bool:
    (tmp_path / "m.py").write_text(src)
    return run_check(tmp_path, CALLED).ok


@pytest.mark.parametrize(
    "src",
    [
        "DEBUG = False\n\n\n"
        + HELPER
        + "def f(x):\n    if DEBUG:\n        helper(x)\n    return x + 1\n",
        HELPER + "def f(x):\n    off = 0\n    if off:\n        helper(x)\n    return x + 1\n",
        HELPER + "def f(x):\n    off = None\n    y = off and helper(x)\n    return x + 1\n",
        "ON = True\n\n\n"
        + HELPER
        + "def f(x):\n    if not ON:\n        helper(x)\n    return x + 1\n",
    ],
    ids=["module-false", "local-zero", "local-none-and", "not-true"],
)
def test_called_from_folds_names_bound_once_to_a_constant(tmp_path: Path, src: str) -> None:
    """A dead call behind a name bound once to a false constant (the caller keeps its inline
    code): not a call."""
    assert not _called(tmp_path, src)


@pytest.mark.parametrize(
    "src",
    [
        "VERBOSE = True\n\n\n"
        + HELPER
        + "def f(x):\n    if VERBOSE:\n        return helper(x)\n    return 0\n",
        "DEBUG = False\n\n\ndef enable():\n    global DEBUG\n    DEBUG = True\n\n\n"
        + HELPER
        + "def f(x):\n    if DEBUG:\n        return helper(x)\n    return 0\n",
        "DEBUG = False\nDEBUG = True\n\n\n"
        + HELPER
        + "def f(x):\n    if DEBUG:\n        return helper(x)\n    return 0\n",
        HELPER + "def f(x, off=False):\n    if off:\n        return helper(x)\n    return 0\n",
    ],
    ids=["true-constant", "rebound-by-global", "bound-twice", "parameter"],
)
def test_called_from_keeps_calls_a_value_may_reach(tmp_path: Path, src: str) -> None:
    """Names bound more than once, through `global`, or as parameters are not folded."""
    assert _called(tmp_path, src)


@pytest.mark.parametrize(
    "body",
    [
        "    g = helper\n    return g(x)\n",
        "    return functools.partial(helper, x)()\n",
        "    return {'h': helper}['h'](x)\n",
        "    return globals()['helper'](x)\n",
    ],
    ids=["alias", "partial", "dict", "globals"],
)
def test_called_from_counts_only_calls_by_name(tmp_path: Path, body: str) -> None:
    """Decision (session 28): a call through a value is not a call of the helper. Whether it
    runs depends on values the check does not follow (the alias rebound, the key never chosen),
    so counting it reopens the dead-call evasion one step away; an honest extraction calls the
    helper by name."""
    assert not _called(tmp_path, "import functools\n\n\n" + HELPER + "def f(x):\n" + body)
