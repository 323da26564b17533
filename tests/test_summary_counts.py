"""summary.json prints k of n and a Wilson interval beside every accuracy (session 24: bare
accuracies read the same at n = 20 and n = 621)."""

from __future__ import annotations

from hillclimb.climb.runner import _eval_headline
from hillclimb.stats import wilson_ci


def _tasks(k: int, n: int) -> dict:
    split = {"n": n, "correct": k, "accuracy": k / n, "baseline": 0.1, "by_kind_tier": {}}
    return {"accuracy": k / n, "n": n, "correct": k, "baseline": 0.1, "splits": {"heldout": split}}


def test_headline_and_splits_carry_counts_and_intervals() -> None:
    rec = {"pretrain": {}, "sft": {"tasks": _tasks(3, 20)}, "rl": {"tasks": _tasks(88, 621)}}
    h = _eval_headline(rec)
    lo, hi = wilson_ci(88, 621)
    assert (h["correct"], h["n"]) == (88, 621)
    assert h["ci95"] == [round(lo, 4), round(hi, 4)]
    assert h["by_split"]["heldout"]["n"] == 621 and h["by_split"]["heldout"]["ci95"][0] < 0.1417
    small = _eval_headline({"pretrain": {}, "sft": {"tasks": _tasks(3, 20)}})
    assert small["ci95"][1] - small["ci95"][0] > 3 * (h["ci95"][1] - h["ci95"][0])
    old = _eval_headline({"pretrain": {}, "sft": {"tasks": {"accuracy": 0.5}}})
    assert "ci95" not in old and old["accuracy"] == 0.5  # an older evaluation: nothing invented
