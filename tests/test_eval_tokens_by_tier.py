"""Tokens by tier (issue 12's "tokens rise with tier"): pooled figures equal the hand-computed
ones, held-out families, other kinds and other splits stay out, and the climb reports show it."""

from __future__ import annotations

import pytest

from hillclimb.climb.report import tokens_by_tier_rows
from hillclimb.eval.tasks import pool_cells, tokens_by_tier


def _cell(fam, tier, n, correct, tpc, rpc, mean, split="heldout", kind="reasoning", held=False):
    return {
        "reference_tokens": 10.0 * tier,
        "family": fam,
        "tier": tier,
        "split": split,
        "kind": kind,
        "heldout_family": held,
        "n": n,
        "correct": correct,
        "accuracy": correct / n,
        "tokens_per_correct": tpc if correct else None,
        "reasoning_tokens_per_correct": rpc if correct else None,
        "mean_completion_tokens": mean,
    }


CELLS = [
    _cell("arith", 1, 10, 10, 20.0, 12.0, 20.0),
    _cell("logic", 1, 10, 5, 40.0, 30.0, 50.0),
    _cell("arith", 3, 10, 2, 90.0, 80.0, 100.0),
    _cell("logic", 3, 10, 0, None, None, 120.0),
    # every one of these must stay out of the pools
    _cell("sequence", 1, 10, 10, 999.0, 999.0, 999.0, held=True),
    _cell("code_function", 1, 10, 10, 999.0, 999.0, 999.0, kind="code"),
    _cell("arith", 1, 10, 10, 999.0, 999.0, 999.0, split="heldout_phrasing"),
]
TASKS = {"splits": {"heldout": {}, "heldout_phrasing": {}}, "cells": CELLS}


def test_pool_weights_per_correct_by_correct_answers_and_mean_by_items():
    p = pool_cells(CELLS[:2])
    assert p["n"] == 20 and p["correct"] == 15 and p["accuracy"] == pytest.approx(0.75)
    assert p["tokens_per_correct"] == pytest.approx((10 * 20 + 5 * 40) / 15)
    assert p["reasoning_tokens_per_correct"] == pytest.approx((10 * 12 + 5 * 30) / 15)
    assert p["mean_completion_tokens"] == pytest.approx(35.0)
    # cells without `correct` (the bench's own records) pool from accuracy x n
    q = pool_cells([{k: v for k, v in c.items() if k != "correct"} for c in CELLS[:2]])
    assert q["tokens_per_correct"] == pytest.approx(p["tokens_per_correct"])
    # an older eval file without think-block counts gives no figure, not a zero
    old = [{k: v for k, v in c.items() if k != "reasoning_tokens_per_correct"} for c in CELLS[:2]]
    assert pool_cells(old)["reasoning_tokens_per_correct"] is None
    assert pool_cells(old)["tokens_per_correct"] == pytest.approx(p["tokens_per_correct"])
    assert pool_cells([CELLS[3]])["tokens_per_correct"] is None  # nothing solved
    no_ref = [{k: v for k, v in c.items() if k != "reference_tokens"} for c in CELLS[:2]]
    assert pool_cells(no_ref[:1] + CELLS[1:2])["reference_tokens"] is None


def test_tokens_by_tier_pools_trained_reasoning_cells_of_the_first_split():
    by = tokens_by_tier(TASKS)
    assert sorted(by) == [1, 3]
    t1, t3 = by[1], by[3]
    assert t1["n"] == 20 and t1["correct"] == 15
    assert t3["n"] == 20 and t3["correct"] == 2 and t3["tokens_per_correct"] == 90.0
    assert t3["mean_completion_tokens"] == pytest.approx(110.0)
    assert t3["ratio"]["tokens_per_correct"] == pytest.approx(90.0 / ((200 + 200) / 15))
    assert t3["ratio"]["reasoning_tokens_per_correct"] == pytest.approx(80.0 / (270 / 15))
    assert t3["ratio"]["mean_completion_tokens"] == pytest.approx(110.0 / 35.0)
    assert t3["reference_tokens"] == 30.0 and t3["ratio"]["reference_tokens"] == pytest.approx(3.0)
    assert t1["ratio"]["tokens_per_correct"] == pytest.approx(1.0)
    # the other split on request; nothing of another kind or a held-out family
    assert tokens_by_tier(TASKS, split="heldout_phrasing")[1]["tokens_per_correct"] == 999.0
    assert tokens_by_tier(TASKS, kind="code")[1]["n"] == 10
    assert tokens_by_tier({"splits": {}, "cells": []}) == {}


def test_a_tier_without_correct_answers_has_no_ratio():
    tasks = {"splits": {"heldout": {}}, "cells": [CELLS[0], CELLS[3]]}
    t3 = tokens_by_tier(tasks)[3]
    assert t3["tokens_per_correct"] is None and t3["ratio"]["tokens_per_correct"] is None
    assert t3["ratio"]["mean_completion_tokens"] == pytest.approx(6.0)


def test_report_rows_put_sft_and_rl_side_by_side():
    rl = {"splits": {"heldout": {}}, "cells": [dict(c) for c in CELLS]}
    rl["cells"][2]["tokens_per_correct"] = 180.0
    header, rows = tokens_by_tier_rows({"sft": {"tasks": TASKS}, "rl": {"tasks": rl}})
    assert header[:2] == ["tier", "n"] and "SFT tokens / correct" in header
    assert "RL thinking / correct" in header
    assert rows[0][:4] == [1, 20, "10 (1.0×)", "75%"]
    assert rows[1][0] == 3 and rows[1][2] == "30 (3.0×)" and rows[1][4] == "90 (3.4×)"
    assert rows[1][header.index("RL tokens / correct")] == "180 (6.8×)"
    # SFT only (no RL stage), and nothing at all without reasoning cells
    assert tokens_by_tier_rows({"sft": {"tasks": TASKS}})[0][3] == "SFT accuracy"
    assert tokens_by_tier_rows({"sft": {"tasks": {"splits": {}, "cells": []}}}) is None
