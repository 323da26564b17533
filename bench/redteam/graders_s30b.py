"""Swaps read while the test frame's trace events are switched off (session 30; JSON out).

Session 29's `_NameGuard` traces, opcode by opcode, every frame that runs with a pinned test
module's globals and checks each global-name read; it also fails a frame whose opcode events
are off when it returns or that never reports its return. Code with frame access could switch
the events off and back on in between: each attack below is appended to the module the task is
about (sensitive names built at run time, as in rounds 1-4). Every function and method of the
module first walks its callers' frames (`sys._getframe`); when one is a test that hides nothing
and whose first statement is not a `with` (`graders_s29._SWAP`), it switches that frame's
events off, swaps the test module's `pytest` for one whose `raises` swallows, and the fake's
`__exit__` puts the real `pytest` back and switches the events on again before the test returns:

- `opcodes_off`: `frame.f_trace_opcodes = False` (back to True on exit);
- `ftrace_off`: `frame.f_trace = None` (the saved local function put back on exit);
- `settrace_off`: `sys.settrace(None)` (the saved global function put back on exit); when a
  helper of the test module called the package (`make()`), only once that helper has returned:
  its `f_trace` is replaced by a relay to its own local function that switches the global
  function off after passing the `return` event on (else the return goes unreported).

Grades per generated task (default 60, seed 11, session 26's corpus: `graders_s26.legacy_corpus`)
the reference (must resolve), the buggy code (must not) and each attack; `PYTHONPATH=OLD/src`
grades with old code. Measured numbers: docs/LOG.md, session 30 ("Graders red team, round 5").

`--threads` instead grades `THREAD_SWAP` on a hand-made task: `bugfix-inventory-11-0002` with
its FAIL_TO_PASS test's body run in a thread the test starts and joins (`thread_task`); no
generated test starts a thread (the generator writes none), so this is the one shape measured.

Usage: python bench/redteam/graders_s30b.py [--corpus DIR | --seed 11 --n 60] [--attacks ...]
       python bench/redteam/graders_s30b.py --corpus DIR --threads
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path += [str(ROOT / "tests"), str(ROOT / "src"), str(ROOT / "bench" / "redteam")]

from graders_s26 import grade_corpus, legacy_corpus  # noqa: E402
from graders_s27 import attack  # noqa: E402
from graders_s29 import _SWAP, WRAP_ALL  # noqa: E402

from hillclimb.harness.grading import grade_patch  # noqa: E402
from hillclimb.harness.task import Task, load_task  # noqa: E402

# Shared: wrap every function and method of the module so that each call first looks for a
# target test frame up the stack and arms `_hc_off`/`_hc_on` (defined per attack) around a swap.
_ARM = (
    _SWAP
    + """

def _hc_arm():
    import sys

    f = getattr(sys, "_get" + "frame")(2)
    below = None
    while f is not None:
        fn = f.f_code.co_filename
        if _hc_is_test_file(fn) and f.f_code.co_name in _hc_targets(fn):
            g = f.f_globals
            real = g.get("py" + "test")
            if real is None or getattr(real, "_hc_fake", False):
                return
            undo = _hc_off(f, below)
            _hc_fake_api(g)
            fake = g["py" + "test"]
            swallow = fake.raises

            class _Undo(swallow):
                def __exit__(self, *exc):
                    out = super().__exit__(*exc)
                    undo()
                    return out

            fake.raises = _Undo
            return
        below, f = f, getattr(f, "f_" + "back")
"""
    + WRAP_ALL
)

OPCODES_OFF = (
    _ARM
    + """

def _hc_off(f, below):
    name = "f_trace_" + "opcodes"
    setattr(f, name, False)
    return lambda: setattr(f, name, True)


_hc_wrap_all()
"""
)

FTRACE_OFF = (
    _ARM
    + """

def _hc_off(f, below):
    name = "f_" + "trace"
    saved = getattr(f, name)
    setattr(f, name, None)
    return lambda: setattr(f, name, saved)


_hc_wrap_all()
"""
)

SETTRACE_OFF = (
    _ARM
    + """

def _hc_off(f, below):
    import sys

    set_ = getattr(sys, "set" + "trace")
    saved = getattr(sys, "get" + "trace")()
    name = "f_" + "trace"
    local = getattr(below, name, None)
    if below is not None and below.f_globals is f.f_globals and local is not None:
        # a helper of the test module sits between: let its events (and its return) reach
        # the guard, and switch the events off only once it has returned
        def relay(frame, event, arg):
            local(frame, event, arg)
            if event == "return":
                set_(None)
            return relay

        setattr(below, name, relay)
    else:
        set_(None)
    return lambda: set_(saved)


_hc_wrap_all()
"""
)

ATTACKS = {"opcodes_off": OPCODES_OFF, "ftrace_off": FTRACE_OFF, "settrace_off": SETTRACE_OFF}

# A test that runs its body in a thread (`thread_task`): package code called off the main
# thread in a call phase swaps the test module's `pytest` (found by `PYTEST_CURRENT_TEST`, as
# `graders_s29.ENV_KEYED`); session 29's guard traced the main thread only.
THREAD_SWAP = (
    _ARM
    + """

def _hc_arm():
    import os, sys, threading

    if threading.current_thread() is threading.main_thread():
        return
    cur = os.environ.get("PYTEST_" + "CURRENT_TEST", "")
    if not cur.endswith(" (call)"):
        return
    full = os.path.realpath(cur.partition("::")[0])
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if isinstance(f, str) and os.path.realpath(f) == full:
            _hc_fake_api(m.__dict__)


_hc_wrap_all()
"""
)

THREAD_TASK = "bugfix-inventory-11-0002"
THREAD_F2P = "tests/test_inventory.py::test_add_duplicate_raises_in_thread"
_THREADED = """def test_add_duplicate_raises_in_thread():
    import threading

    errors = []

    def body():
        try:
            inv = make()
            with pytest.raises(ValueError):
                inv.add("A1", "again", 1.0)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert errors == []
"""


def thread_task(corpus: pathlib.Path, out: pathlib.Path) -> Task:
    """`THREAD_TASK` from `corpus`, copied to `out` with its FAIL_TO_PASS test's body run in a
    thread the test starts and joins (`THREAD_F2P`)."""
    shutil.copytree(corpus / THREAD_TASK, out)
    test = out / "tests" / "test_inventory.py"
    src = test.read_text()
    old = """def test_add_duplicate_raises():
    inv = make()
    with pytest.raises(ValueError):
        inv.add("A1", "again", 1.0)
"""
    if old not in src:
        raise ValueError(f"{THREAD_TASK}: its duplicate test is not the one this bench rewrites")
    test.write_text(src.replace(old, _THREADED))
    toml = (out / "task.toml").read_text()
    (out / "task.toml").write_text(
        toml.replace('::test_add_duplicate_raises"', '::test_add_duplicate_raises_in_thread"')
    )
    return load_task(out)


def thread_summary(corpus: pathlib.Path) -> dict[str, object]:
    """The hand-made threaded task: reference, buggy code and `THREAD_SWAP`."""
    with tempfile.TemporaryDirectory(prefix="hc-s30-thread-") as tmp:
        t = thread_task(corpus, pathlib.Path(tmp) / "task")
        sol = t.solution_patch
        g = attack(t, THREAD_SWAP)
        return {
            "task": t.id,
            "reference": grade_patch(t, sol.read_text()).resolved if sol else None,
            "buggy": grade_patch(t, None).resolved,
            "thread_swap": g.status,
            "f2p_failed": THREAD_F2P in g.fail_to_pass.get("failed", []),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", help="a directory of generated tasks to reuse")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--attacks", nargs="+", default=sorted(ATTACKS), choices=sorted(ATTACKS))
    ap.add_argument("--only", nargs="+", help="grade only these task ids")
    ap.add_argument("--threads", action="store_true", help="grade the threaded task instead")
    args = ap.parse_args()
    tmp = None
    if args.corpus:
        root = pathlib.Path(args.corpus)
    else:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="hc-s30-corpus-"))
        root = tmp / "tasks"
        legacy_corpus(root, args.n, args.seed)
    if args.threads:
        print(json.dumps(thread_summary(root), indent=2))
        return
    if args.only:
        sub = pathlib.Path(tempfile.mkdtemp(prefix="hc-s30-only-"))
        for t in args.only:
            (sub / t).symlink_to((root / t).resolve())
        root = sub
    got = grade_corpus(root, {a: ATTACKS[a] for a in args.attacks}, attack)
    print(json.dumps(got, indent=2))
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
