"""Outside checks of the grader, session 30 (graders5): trace events switched off, threads.

Session 29's `_NameGuard` checks, opcode by opcode, every global-name read of the frames that run
with a pinned test module's globals, on the main thread. Code with frame access could switch a
test frame's events off (`f_trace_opcodes = False`, `f_trace = None`, `sys.settrace(None)`),
read a swapped name unseen, and switch them on again before the frame returned; a test whose
body ran in a thread was not watched at all. Each resolved `bugfix-inventory-11-0002` with the
bug in place (`bench/redteam/graders_s30b.py`). Every event of a guarded frame must now follow
from the one before by the code's control flow (`_flow_table`), come from the frame's own local
function under the installed global one, and threads started during the call are guarded too.
"""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import pytest

from hillclimb.harness import pytest_reporter as rep
from hillclimb.harness.grading import grade_patch
from hillclimb.harness.task import Task, load_task
from hillclimb.harness.taskgen import generate as gen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "redteam"))
import graders_s30b as bench  # noqa: E402
from graders_s27 import attack  # noqa: E402

TASK_ID = "bugfix-inventory-11-0002"
F2P = "tests/test_inventory.py::test_add_duplicate_raises"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Seed 11's first tasks as before session 27 (asked not to refuse all-`raises` tasks)."""
    out = tmp_path_factory.mktemp("s30_graders5")
    gen.generate_tasks(out, 3, seed=11, kinds=["bugfix", "feature"], require_hidden_f2p=False)
    return out


@pytest.fixture(scope="module")
def task(corpus: Path) -> Task:
    t = load_task(corpus / TASK_ID)
    assert t.fail_to_pass == (F2P,)
    return t


@pytest.fixture(scope="module")
def thread_task(corpus: Path, tmp_path_factory) -> Task:
    return bench.thread_task(corpus, tmp_path_factory.mktemp("thread") / "task")


def test_reference_resolves_and_bug_does_not(task: Task, thread_task: Task) -> None:
    """Controls: the flow check fails no honest test, on the main thread or in a thread."""
    for t in (task, thread_task):
        assert grade_patch(t, t.solution_patch.read_text()).resolved
        assert not grade_patch(t, None).resolved


@pytest.mark.parametrize("name", sorted(bench.ATTACKS))
def test_swap_read_while_events_are_off_is_failed(task: Task, name: str) -> None:
    g = attack(task, bench.ATTACKS[name])
    assert g.status == "unresolved", (g.status, g.message)
    assert F2P in g.fail_to_pass["failed"]


def test_swap_read_in_a_thread_the_test_started_is_failed(thread_task: Task) -> None:
    g = attack(thread_task, bench.THREAD_SWAP)
    assert g.status == "unresolved", (g.status, g.message)
    assert bench.THREAD_F2P in g.fail_to_pass["failed"]


# ---- the guard on its own: module code made here, run under it ----------------------------

_HONEST = """
import json

def gen(n):
    for i in range(n):
        if i % 3 == 0:
            continue
        yield i * SCALE

class Quiet:
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return exc[0] is KeyError

def work():
    out = [x for x in gen(20) if x > 2]
    total = 0
    while total < 50:
        total += len(out)
        if total > 40:
            break
    for bad in ("{", "[1,", "x"):
        try:
            json.loads(bad)
        except ValueError:
            total += 1
        finally:
            total += 0
    with Quiet():
        {}["missing"]
    try:
        try:
            raise KeyError("k")
        finally:
            total += 1
    except KeyError:
        pass
    try:
        with Quiet():
            raise ValueError("v")
    except ValueError:
        total += 1
    f = lambda y: y + SCALE
    return total + f(1) + sum(gen(4))

def check():
    assert work() > 0
"""


def _module(source: str, **extra) -> types.ModuleType:
    mod = types.ModuleType("hc_s30_guarded")
    mod.__dict__.update(extra)
    exec(compile(source, "<hc_s30_guarded>", "exec"), mod.__dict__)
    return mod


def _guarded(mod: types.ModuleType, names: list[str], fn):
    """Run `fn` with the guard watching `mod` (its `names` pinned), as `_phase` installs it."""
    g = rep._NameGuard({id(mod.__dict__): (mod.__dict__, {n: mod.__dict__[n] for n in names})})
    hook = getattr(g, "hook", g.trace)
    saved = sys.gettrace(), threading.gettrace()
    threading.settrace(hook)
    sys.settrace(hook)
    try:
        fn()
    finally:
        now = sys.gettrace()
        sys.settrace(saved[0])
        threading.settrace(saved[1])
    return g, now is hook


def test_honest_control_flow_leaves_no_gap() -> None:
    """Loops, generators, comprehensions, `break`/`continue`, handled and re-raised exceptions,
    a `with` that suppresses: no event is missed, so nothing is flagged."""
    mod = _module(_HONEST, SCALE=2)
    g, kept = _guarded(mod, ["SCALE", "json"], mod.check)
    assert kept and not g.changed and g.open == 0
    t = threading.Thread(target=mod.check)
    g, kept = _guarded(mod, ["SCALE", "json"], lambda: (t.start(), t.join()))
    assert kept and not g.changed and g.open == 0


_TOGGLED = """
def body():
    tamper()
    value = NAME
    restore()
    return value
"""


@pytest.mark.parametrize("how", ["opcodes", "f_trace", "settrace"])
def test_events_switched_off_and_on_are_flagged(how: str) -> None:
    """`NAME` is swapped while the frame's events are off and put back before they are on
    again: no read of a swapped name is seen, the gap is."""
    state: dict = {}

    def tamper() -> None:
        f = sys._getframe(1)
        state["f"], state["local"], state["global"] = f, f.f_trace, sys.gettrace()
        if how == "opcodes":
            f.f_trace_opcodes = False
        elif how == "f_trace":
            f.f_trace = None
        else:
            sys.settrace(None)
        f.f_globals["NAME"] = "fake"

    def restore() -> None:
        f = state["f"]
        f.f_globals["NAME"] = "real"
        f.f_trace_opcodes = True
        f.f_trace = state["local"]
        sys.settrace(state["global"])

    mod = _module(_TOGGLED, NAME="real", tamper=tamper, restore=restore)
    got: list = []
    g, _ = _guarded(mod, ["NAME"], lambda: got.append(mod.body()))
    assert got == ["fake"]  # the swap was read
    assert g.changed


def test_another_local_function_is_flagged() -> None:
    """A frame's local function replaced by a relay that calls it: the events still arrive,
    but not from the frame's own `f_trace`."""

    def tamper() -> None:
        f = sys._getframe(1)
        local = f.f_trace

        def relay(frame, event, arg):
            local(frame, event, arg)
            return relay

        f.f_trace = relay

    mod = _module("def body():\n    tamper()\n    return 1\n", tamper=tamper)
    g, _ = _guarded(mod, [], mod.body)
    assert g.changed


def test_extended_arg_load_is_checked() -> None:
    """A `LOAD_GLOBAL` behind an `EXTENDED_ARG` (more than 127 global names) reports its
    opcode event at the prefix: the read there is still checked."""
    names = [f"n{i}" for i in range(300)]
    src = "def body():\n    swap()\n    return " + " + ".join(names) + "\n"

    def swap() -> None:
        sys._getframe(1).f_globals["n299"] = 5

    mod = _module(src, swap=swap, **{n: 0 for n in names})
    got: list = []
    g, _ = _guarded(mod, ["n299"], lambda: got.append(mod.body()))
    assert got == [5]
    assert g.changed
