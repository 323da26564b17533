"""Outside checks of the grader, session 30 (builtinsguard): swaps of the `builtins` module.

`_NameGuard` checked that a builtin the test file never binds is absent from the test module,
but not the `builtins` entry behind it, nor the builtins dict the test's functions were made
with. Package code replacing `builtins.any` (at import, or only during a test's call) or
giving the importing test module a `__builtins__` of its own resolved a task whose
FAIL_TO_PASS test asserts `any(...)` with the bug in place (`bench/redteam/graders_s30c.py`).
The reporter now pins those builtins as pytest loaded it (`_builtins_mismatch` at collection
and before the call; `_NameGuard` at every read and on each guarded frame's `f_builtins`).
"""

from __future__ import annotations

import builtins
import sys
import types
from pathlib import Path

import pytest

from hillclimb.harness import pytest_reporter as rep
from hillclimb.harness.grading import grade_patch
from hillclimb.harness.task import Task
from hillclimb.harness.taskgen import generate as gen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "redteam"))
import graders_s30c as bench  # noqa: E402
from graders_s27 import attack  # noqa: E402

REAL_ANY = builtins.any  # as at import: what the guard pins
SRC = "def check(xs):\n    return any(x > 1 for x in xs)\n"


def _module(builtins_dict: dict | None = None) -> types.ModuleType:
    mod = types.ModuleType("s30_builtinsguard_probe")
    if builtins_dict is not None:
        mod.__dict__["__builtins__"] = builtins_dict
    exec(compile(SRC, "<probe>", "exec"), mod.__dict__)
    return mod


def _guarded(mod: types.ModuleType, during=None) -> bool:
    """Run `mod.check([0])` under a `_NameGuard` pinning `any` (calling `during` first, inside
    the guarded frame's caller); whether the guard saw a change."""
    real = builtins.__dict__
    space = (mod.__dict__, {"any": rep._ABSENT}, {"any": REAL_ANY})
    guard = rep._NameGuard({id(mod.__dict__): space}, real)
    sys.settrace(guard.hook)
    try:
        if during is not None:
            during()
        mod.check([0])
    finally:
        sys.settrace(None)
    return guard.changed


def test_guard_passes_the_real_builtin() -> None:
    assert _guarded(_module()) is False


def test_guard_fails_a_builtin_swapped_during_the_call(monkeypatch) -> None:
    mod = _module()
    monkeypatch.setattr(builtins, "any", lambda it: True)
    assert _guarded(mod) is True


def test_guard_fails_a_frame_with_other_builtins() -> None:
    fake = dict(builtins.__dict__)
    fake["any"] = lambda it: True
    assert _guarded(_module(fake)) is True


def test_guard_without_builtins_map_keeps_old_table_shape() -> None:
    """A two-part space (no builtin map) still works: absent names only."""
    mod = _module()
    guard = rep._NameGuard({id(mod.__dict__): (mod.__dict__, {"any": rep._ABSENT})})
    sys.settrace(guard.hook)
    try:
        mod.check([3])
    finally:
        sys.settrace(None)
    assert guard.changed is False


def test_guard_fails_an_import_through_a_swapped_import(monkeypatch) -> None:
    """`import` inside a test reads `__import__` from builtins: pinned as named builtins are."""
    real_import = builtins.__import__
    mod = types.ModuleType("s30_builtinsguard_imports")
    exec(compile("def f():\n    import json\n    return json\n", "<imp>", "exec"), mod.__dict__)
    pin = rep._foreign_reads([mod.f.__code__])
    assert "__import__" in pin
    space = (mod.__dict__, {"__import__": rep._ABSENT}, {"__import__": real_import})
    for swap, want in ((False, False), (True, True)):
        if swap:
            monkeypatch.setattr(builtins, "__import__", lambda *a, **k: real_import(*a, **k))
        guard = rep._NameGuard({id(mod.__dict__): space}, builtins.__dict__)
        sys.settrace(guard.hook)
        try:
            mod.f()
        finally:
            sys.settrace(None)
        assert guard.changed is want


@pytest.fixture
def loaded(monkeypatch):
    """`_state` as far as `_builtins_mismatch` reads it: the builtins as at load."""
    monkeypatch.setattr(rep, "_state", {"builtins": rep._builtins_now()})
    return rep._Pin({}, frozenset(), {}, frozenset({"any", "len"}))


def test_mismatch_none_for_honest_module(loaded) -> None:
    mod = _module()
    assert rep._builtins_mismatch(loaded, mod.__dict__, mod.check) is None


def test_mismatch_names_a_replaced_builtin(loaded, monkeypatch) -> None:
    monkeypatch.setattr(builtins, "len", lambda x: 0)
    mod = _module()
    assert "`len`" in rep._builtins_mismatch(loaded, mod.__dict__)


def test_mismatch_module_builtins_of_its_own(loaded) -> None:
    mod = _module(dict(builtins.__dict__))
    assert "`__builtins__`" in rep._builtins_mismatch(loaded, mod.__dict__)


def test_mismatch_function_made_with_other_builtins(loaded) -> None:
    """`__builtins__` put back after the test functions were made: the function still differs."""
    mod = _module(dict(builtins.__dict__))
    mod.__dict__["__builtins__"] = builtins
    why = rep._builtins_mismatch(loaded, mod.__dict__, mod.check)
    assert why is not None and "function" in why


@pytest.fixture(scope="module")
def handmade(tmp_path_factory) -> Task:
    out = tmp_path_factory.mktemp("s30_builtinsguard")
    gen.generate_tasks(out / "c", 3, seed=11, kinds=["bugfix", "feature"], require_hidden_f2p=False)
    return bench.handmade_task(out / "c", out / "task")


def test_handmade_controls(handmade: Task) -> None:
    assert grade_patch(handmade, handmade.solution_patch.read_text()).resolved
    assert not grade_patch(handmade, None).resolved


@pytest.mark.parametrize("name", sorted(bench.ATTACKS))
def test_builtins_swaps_do_not_resolve(handmade: Task, name: str) -> None:
    g = attack(handmade, bench.ATTACKS[name])
    assert g.status != "patch_rejected"  # the attack reached the run
    assert not g.resolved
    assert bench.HANDMADE_F2P in g.fail_to_pass.get("failed", [])
