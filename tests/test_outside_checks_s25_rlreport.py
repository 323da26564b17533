"""Outside checks, session 25: the RL report's baselines and summary.json's RL checkpoints.

- The RL plot's val-curve panel and its accuracy-vs-thinking-budget (Pareto) panel showed no
  no-training baseline, and the Pareto table had no baseline row: an accuracy had nothing to be
  beaten against. The curve records carry each cell's baseline; the panels now draw it (the
  Pareto one pools the cells of the same val problems, n-weighted) and, for a run whose curve
  has none, say so in the legend instead of computing one.
- The Pareto table printed bare accuracies at a step with no val-curve point (no n) without
  saying why; it now says so under the table.
- summary.json's `models.<m>.rl` held problem RL's training numbers while `eval` was measured on
  the harness-RL checkpoint, with nothing naming either; every RL entry now names its stage and
  checkpoint, harness RL has its own entry, and the eval headline names its checkpoint's stage.

Fixtures are the RL run's `metrics.jsonl` / `curve.jsonl` formats (`rl/train.py`: `_curve`,
`_pareto`) and the smoke recipe's finished-run markers (tests/test_outside_checks_s24_report.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from hillclimb.rl import report as R
from test_outside_checks_s24_report import _fake_climb
from test_report_html import _eval_rec, _jsonl, _rl_run

# val cells of 8 problems: (correct, no-training baseline); a baseline of 0.0 is one too
CELLS = {"arith/1": (3, 0.25), "bool/1": (5, 0.5), "code/1": (2, 0.0)}
N = 8 * len(CELLS)
POOLED = sum(8 * b for _, b in CELLS.values()) / N


def _cells(baselines: bool) -> dict[str, dict[str, Any]]:
    out = {}
    for cell, (k, base) in CELLS.items():
        c = {"n": 8, "correct": k, "accuracy": k / 8, "tokens_per_correct": 20.0}
        out[cell] = {**c, "baseline": base} if baselines else c
    return out


def _run(run: Path, baselines: bool = True, curve_steps: tuple[int, ...] = (0, 2)) -> Path:
    """An RL run of 2 steps with val-curve points at `curve_steps` and Pareto points at 0 and 2."""
    _rl_run(run)  # metrics.jsonl of tests/test_report_html.py
    curve = [
        {
            "step": s,
            "split": "val",
            "accuracy": 0.5,
            "mean_tokens": 20.0,
            "cells": _cells(baselines),
        }
        for s in curve_steps
    ]
    pts = [{"budget": b, "accuracy": 0.25, "mean_tokens": float(b)} for b in (4, 8)]
    pareto = [{"step": s, "split": "val", "pareto": pts} for s in (0, 2)]
    _jsonl(run / "curve.jsonl", curve + pareto)
    return run


def _figure(run: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The RL figure as `plot_rl` draws it (captured instead of written as a PNG)."""
    got: list[Any] = []
    monkeypatch.setattr(R, "_save", lambda fig, dest: got.append(fig))
    assert R.plot_rl(run, run / "rl.png", "m")
    return got[0]


def _hlines(ax: Any) -> dict[float, str]:
    """y -> colour of the horizontal lines drawn across the panel."""
    from matplotlib.colors import to_hex

    out = {}
    for ln in ax.get_lines():
        y = list(ln.get_ydata())
        if len(y) == 2 and y[0] == y[1] and list(ln.get_xdata()) == [0, 1]:
            out[round(float(y[0]), 4)] = to_hex(ln.get_color())
    return out


def _legend(ax: Any) -> str:
    return "\n".join(t.get_text() for t in ax.get_legend().get_texts())


# ---- 1. the plot's val-curve and Pareto panels ---------------------------------------------------
def test_val_curve_panel_draws_each_cells_baseline_in_its_colour(tmp_path, monkeypatch):
    from matplotlib.colors import to_hex

    fig = _figure(_run(tmp_path / "run"), monkeypatch)
    ax = fig.axes[0]
    colour = {ln.get_label(): to_hex(ln.get_color()) for ln in ax.get_lines()}
    assert _hlines(ax) == {b: colour[cell] for cell, (_, b) in CELLS.items()}
    assert "no-training baseline" in _legend(ax)


def test_pareto_panel_draws_the_pooled_baseline_of_the_same_val_problems(tmp_path, monkeypatch):
    fig = _figure(_run(tmp_path / "run"), monkeypatch)
    ax = fig.axes[5]
    assert list(_hlines(ax)) == [round(POOLED, 4)]
    assert f"no-training baseline {POOLED:.0%} (n = {N})" in _legend(ax)


def test_a_run_without_recorded_baselines_says_so_and_draws_none(tmp_path, monkeypatch):
    fig = _figure(_run(tmp_path / "run", baselines=False), monkeypatch)
    for i in (0, 5):
        assert _hlines(fig.axes[i]) == {}
        assert "not recorded by this run" in _legend(fig.axes[i])


# ---- 2. the Pareto table ---------------------------------------------------------------------------
def _row(lines: list[str], head: str) -> str:
    return next(x for x in lines if x.startswith(f"| {head} |"))


def test_pareto_table_has_a_baseline_row_with_n_and_k_of_n_beside_accuracies(tmp_path):
    lines = R.summary_lines(_run(tmp_path / "run"))
    assert _row(lines, "no-training baseline").count(f"{POOLED:.0%} of {N}") == 2
    assert f"{R._rate(round(0.25 * N), N)} of {N}" in _row(lines, "4")  # accuracy 0.25 of N


def test_pareto_table_says_what_it_cannot_show(tmp_path):
    """No baselines recorded: the row says so (not 0%). No val point at the last Pareto step: its
    accuracies are bare, and the table says why (no n) instead of guessing one."""
    lines = R.summary_lines(_run(tmp_path / "old", baselines=False))
    assert _row(lines, "no-training baseline").count("not recorded by this run") == 2
    lines = R.summary_lines(_run(tmp_path / "gap", curve_steps=(0,)))
    row = _row(lines, "no-training baseline")
    assert f"of {N} (no model)" in row and "no val point at this step" in row
    assert any("Step 2: no val-curve point" in x and "no k/n or interval" in x for x in lines)


def test_pooled_baseline_refuses_to_fill_a_missing_cell():
    cells = _cells(True)
    cells["bool/1"].pop("baseline")
    assert R.pooled_baseline({"cells": cells}) == (None, N)
    assert R.pooled_baseline(None) == (None, 0)


# ---- 3. summary.json names the checkpoint of its RL numbers ----------------------------------------
def _eval(m: str, acc: float | None) -> dict[str, Any]:
    """tests/test_report_html.py's eval record with the splits' `by_kind_tier` rows that
    `eval/tasks.py` writes (the headline reads them; that fixture leaves them out)."""
    rec = _eval_rec(m, acc)
    for split in ((rec["tasks"] or {}).get("splits") or {}).values():
        split["by_kind_tier"] = {"reasoning": {"1": {"accuracy": acc, "baseline": 0.1}}}
    return rec


def _climb(tmp_path: Path, with_stage: bool = True):
    """The smoke recipe's finished run (code-flash: problem RL then harness RL; thinking: problem
    RL only) with RL results of both stages and eval records of each model's final checkpoint."""
    from hillclimb.climb.runner import rl_final

    c = _fake_climb(tmp_path)
    for m in c.recipe.model_names:
        rec = {"model": m, "pretrain": _eval(m, None), "sft": _eval(m, 0.3)}
        rec["rl"] = _eval(m, 0.5)
        if with_stage:
            rec["rl_stage"] = rl_final(c.recipe, m)
        (c.dir("eval") / f"{m}.json").write_text(json.dumps(rec))
        c.results[f"rl-{m}"] = {"steps": 2, "first": {"pass_rate": 0.1}, "last": {"pass_rate": 0.2}}
    c.results["rl-harness-code-flash"] = {"steps": 1, "tasks": 3, "flywheel_tasks": 0}
    return c


def test_summary_names_the_stage_and_checkpoint_of_every_rl_number(tmp_path):
    from hillclimb.climb.runner import build_summary

    c = _climb(tmp_path)
    assert "code-flash" in c.recipe.rl_harness and "thinking" not in c.recipe.rl_harness
    models = build_summary(c, [], 0.0)["models"]
    cf, th = models["code-flash"], models["thinking"]
    assert cf["rl"]["stage"] == "rl-code-flash" and cf["rl"]["steps"] == 2
    assert cf["rl"]["checkpoint"] == str(c.final("rl-code-flash"))
    assert cf["rl_harness"]["stage"] == "rl-harness-code-flash"
    assert (cf["rl_harness"]["steps"], cf["rl_harness"]["tasks"]) == (1, 3)
    assert cf["final_stage"] == cf["eval"]["checkpoint_stage"] == "rl-harness-code-flash"
    assert cf["final"] == cf["rl_harness"]["checkpoint"] != cf["rl"]["checkpoint"]
    assert th["rl_harness"] is None
    assert th["final_stage"] == th["eval"]["checkpoint_stage"] == "rl-thinking"
    assert th["final"] == th["rl"]["checkpoint"]


def test_headline_stage_of_older_and_sft_only_records():
    """An RL record from before `rl_stage` was kept predates harness RL: its checkpoint was
    problem RL's. Without RL the headline is the SFT model's."""
    from hillclimb.climb.runner import _eval_headline

    base = {"model": "m", "pretrain": _eval("m", None), "sft": _eval("m", 0.3)}
    assert _eval_headline(base)["checkpoint_stage"] == "sft-m"
    assert _eval_headline({**base, "rl": _eval("m", 0.5)})["checkpoint_stage"] == "rl-m"
    h = _eval_headline({**base, "rl": _eval("m", 0.5), "rl_stage": "rl-harness-m"})
    assert h["checkpoint_stage"] == h["rl_stage"] == "rl-harness-m"


def test_terminal_summary_names_the_final_checkpoints_stage(tmp_path, monkeypatch):
    from hillclimb.climb.runner import build_summary, print_summary_table

    monkeypatch.setenv("COLUMNS", "400")  # rich wraps a stage name in a narrow column
    buf = io.StringIO()
    print_summary_table(build_summary(_climb(tmp_path), [], 0.0), file=buf)
    assert "rl-harness-code-flash" in buf.getvalue() and "rl-thinking" in buf.getvalue()
