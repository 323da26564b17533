"""The problems suite (`hillclimb eval --model URL --suite problems`) reports each split's
accuracy without the items a training item would get right (`problems.baselines.SEEN_FLAGS`),
beside the plain one, as `hillclimb eval` and the climb report do (session 28: the suite carried
the flags in its item records but no figure)."""

from __future__ import annotations

from hillclimb.eval.suite_common import SuiteConfig
from hillclimb.eval.suites import run_suite
from test_outside_checks_s28_trainpass import (
    HELD_KEY,
    TRAIN_KEY,
    _Backend,
    _held,
    _renamed,
    _train,
    _untriggered,
)


def test_problems_suite_reports_accuracy_without_flagged_items(monkeypatch):
    import hillclimb.eval.tasks as tasks

    # session 29: the real training function's trigger 'B' is now in the item's tests; the
    # flag is tested with it moved to 'Q' (see test_outside_checks_s28_trainpass)
    real = tasks._train_items
    monkeypatch.setattr(tasks, "_train_items", lambda *a: tuple(_untriggered(list(real(*a)))))
    item = next(p for p in _held() if p.key == HELD_KEY)
    fn = next(t for t in _train() if t.key == TRAIN_KEY)
    cfg = SuiteConfig(
        n_items=20, families=["code_function"], tiers=[2], splits=["heldout"], bootstrap=50
    )
    res = run_suite(
        "problems", "memorised", cfg, backend=_Backend({item.prompt: _renamed(fn, item)})
    )
    m = res["metrics"]
    assert (m["accuracy/heldout"]["value"], m["accuracy/heldout"]["n"]) == (0.05, 20)
    without = m["accuracy/heldout/without_passed_by_train_fn"]
    assert (without["value"], without["n"]) == (0.0, 19)
    assert "accuracy/heldout/without_passed_by_train_fn" in res["baseline"]
    # no word problems evaluated: the word flag was never checked, so no figure for it
    assert "accuracy/heldout/without_seen_arith" not in m
