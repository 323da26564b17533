"""Outside checks (session 23, second honesty pass): the rates the IFEval, harness and RL reports
print carry their n, an interval and the no-training baseline on the same items. Intervals are
checked against a Wilson score interval written here, not the project's `wilson_ci`.

No model is trained: IFEval answers come from a fixed backend, the harness suite runs a scripted
agent on the tiny fixture task, the RL report reads synthetic `curve.jsonl` records.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from hillclimb.eval.backends import Completion
from hillclimb.eval.suite_common import SuiteConfig

Z95 = 1.959963984540054
TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval, written out independently of `hillclimb.eval.metrics`."""
    p, z2 = k / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (0.0 if k == 0 else centre - half, 1.0 if k == n else centre + half)


class _Fixed:
    kind, name = "fixed", "fixed"

    def __init__(self, text: str) -> None:
        self.text = text

    def chat(self, reqs):  # noqa: ANN001, ANN201
        return [Completion(self.text, "stop", 3) for _ in reqs]

    complete = chat

    def close(self) -> None:
        pass


# ---- IFEval: each instruction type's accuracy has an interval and a baseline --------------------
def test_ifeval_by_instruction_has_wilson_interval_and_baseline():
    from hillclimb.eval.ifeval import ECHOES, generate_items, run_ifeval, score_response

    cfg = SuiteConfig(n_items=40, bootstrap=200)
    res = run_ifeval(_Fixed("a short answer, all lower case"), cfg)
    items = generate_items(40, 0)
    by = res["by_instruction"]
    assert by
    # the baseline per instruction: the overall baseline's echo, on the same instructions
    echo = next(f for name, f in ECHOES.items() if res["baseline"]["what"].startswith(name + " ("))
    for kind, m in by.items():
        marks = [
            ok
            for it in items
            for x, ok in zip(
                it.instructions, score_response(it, echo(it.prompt))["strict"], strict=True
            )
            if x.kind == kind
        ]
        k = round(m["value"] * m["n"])
        lo, hi = wilson(k, m["n"])
        assert m["ci95"] == pytest.approx([lo, hi], abs=1e-12), kind
        assert m["n"] == len(marks)
        assert m["baseline"] == pytest.approx(sum(marks) / len(marks)), kind


def test_ifeval_cli_prints_the_instruction_interval():
    import io

    from hillclimb.eval.cli import print_suite
    from hillclimb.eval.ifeval import run_ifeval

    res = run_ifeval(_Fixed("ok"), SuiteConfig(n_items=20, bootstrap=100))
    res.update(suite="ifeval", model="m", backend="fixed", seconds=0.0)
    buf = io.StringIO()
    print_suite(res, file=buf)
    table = buf.getvalue().split("accuracy per instruction")[1]
    assert "–" in table  # "0% – 43%", not "-"


# ---- the RL report's val table: n and an interval per cell -------------------------------------
def _curve(step: int, correct: int, n: int) -> dict:
    cell = {"n": n, "correct": correct, "accuracy": correct / n, "baseline": 0.25}
    return {"step": step, "split": "val", "accuracy": correct / n, "cells": {"sum/1": cell}}


def test_rl_report_val_table_has_n_and_interval(tmp_path):
    from hillclimb.rl.report import summary_lines

    (tmp_path / "metrics.jsonl").write_text("")
    recs = [_curve(0, 3, 16), _curve(10, 9, 16)]
    (tmp_path / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    text = "\n".join(summary_lines(tmp_path))
    head = next(ln for ln in text.splitlines() if ln.startswith("| cell"))
    assert "| n |" in head and "95%" in head
    row = next(ln for ln in text.splitlines() if ln.startswith("| sum/1"))
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[1] == "16"
    for col, k in ((cols[2], 3), (cols[3], 9)):
        lo, hi = wilson(k, 16)
        assert col == f"{k / 16:.0%} [{lo:.0%}, {hi:.0%}]"
    assert cols[4] == "25%"


def test_rl_report_pareto_accuracies_have_n_and_interval(tmp_path):
    from hillclimb.rl.report import summary_lines

    (tmp_path / "metrics.jsonl").write_text("")
    recs = [
        _curve(0, 3, 16),
        {"step": 0, "split": "val", "pareto": [{"budget": 64, "accuracy": 0.25, "mean_tokens": 9}]},
    ]
    (tmp_path / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    text = "\n".join(summary_lines(tmp_path))
    row = next(ln for ln in text.splitlines() if ln.startswith("| 64 |"))
    lo, hi = wilson(4, 16)
    assert f"25% [{lo:.0%}, {hi:.0%}] of 16" in row


# ---- the harness suite: a do-nothing agent's rate beside the resolve rate ----------------------
@pytest.fixture
def harness_tasks(tmp_path) -> Path:
    from hillclimb.harness.patching import apply_patch

    root = tmp_path / "tasks"
    shutil.copytree(TINY, root / "open")
    solved = root / "solved"
    shutil.copytree(TINY, solved)
    assert apply_patch(solved / "repo", (TINY / "solution.patch").read_text()).ok
    toml = (solved / "task.toml").read_text().replace('"tiny-bugfix"', '"tiny-bugfix-solved"')
    (solved / "task.toml").write_text(toml)
    return root


def test_harness_suite_reports_the_do_nothing_baseline(harness_tasks, monkeypatch):
    from hillclimb.eval import harness_suite as HS
    from hillclimb.harness import grading
    from hillclimb.harness.clients import ReferenceClient

    monkeypatch.setattr(HS, "_client_factory", lambda backend, *_: (ReferenceClient, None))
    untouched: list[str] = []
    real = grading.grade_patch

    def counting(task, patch, **kw):  # noqa: ANN001, ANN202
        if not (patch and patch.strip()):
            untouched.append(task.id)
        return real(task, patch, **kw)

    monkeypatch.setattr(grading, "grade_patch", counting)
    import hillclimb.harness.task_runner as TR

    monkeypatch.setattr(TR, "grade_patch", counting)
    res = HS.run_harness(_Fixed(""), SuiteConfig(tasks=[f"g={harness_tasks}"], bootstrap=100))
    assert res["metrics"]["resolve_rate"]["value"] == 1.0 and res["n_items"] == 1
    b = res["baseline"]
    assert "do-nothing" in b["what"]
    assert set(b) >= set(res["metrics"])  # a baseline beside every rate
    for key, m in res["metrics"].items():
        assert b[key]["n"] == m["n"]
        assert b[key]["value"] == 0.0
        assert b[key]["ci95"] == pytest.approx(list(wilson(0, m["n"])), abs=1e-12)
    inv = b["task_invalid"]
    assert inv["excluded"] is True and inv["count"] == 1 and inv["ids"] == ["tiny-bugfix-solved"]
    # had the invalid task been counted, doing nothing would have scored 1 of 2
    assert inv["do_nothing_rate_if_counted"]["value"] == 0.5
    assert inv["do_nothing_rate_if_counted"]["n"] == 2
    # the baseline is the check the runner makes anyway: one untouched grade per task, not two
    assert sorted(untouched) == ["tiny-bugfix", "tiny-bugfix-solved"]


def test_harness_cli_prints_the_baseline_beside_the_rate(harness_tasks, monkeypatch):
    import io

    from hillclimb.eval import harness_suite as HS
    from hillclimb.eval.cli import print_suite
    from hillclimb.harness.clients import ReferenceClient

    monkeypatch.setattr(HS, "_client_factory", lambda backend, *_: (ReferenceClient, None))
    res = HS.run_harness(_Fixed(""), SuiteConfig(tasks=[f"g={harness_tasks}"], bootstrap=100))
    res.update(suite="harness", model="m", backend="fixed", seconds=0.0)
    buf = io.StringIO()
    print_suite(res, file=buf)
    out = buf.getvalue()
    assert "no-training baseline" in out and "do-nothing" in out
    row = next(ln for ln in out.splitlines() if "resolve_rate " in ln)
    cols = [c.strip() for c in row.strip("│ ").split("│")]
    assert cols == ["resolve_rate", "100.0%", "20.7% – 100.0%", "1", "0.0%"]  # 1 of 1; baseline 0


# ---- router fit report: each model's and the routed accuracy have an interval ------------------
def test_routing_report_accuracies_have_wilson_intervals():
    from hillclimb.eval import routing as R

    strong = [1.0] * 7 + [0.0] * 13
    weak = [1.0] * 3 + [0.0] * 17
    scores = [float(i % 5) for i in range(20)]
    h = R.quality_vs_cost({"fitted": scores}, strong, weak, resamples=50, seed=0)
    assert h["n"] == 20
    assert h["strong_accuracy_ci95"] == pytest.approx(list(wilson(7, 20)), abs=1e-6)
    assert h["weak_accuracy_ci95"] == pytest.approx(list(wilson(3, 20)), abs=1e-6)
    outs = [R.Outcome(f"p{i}", "sum", 1, "val", {}, i < 3, i < 7) for i in range(20)]
    pool = R._pool_summary(outs, "thinking_not_better")
    assert pool["flash_accuracy_ci95"] == pytest.approx(list(wilson(3, 20)), abs=1e-6)
    assert pool["thinking_accuracy_ci95"] == pytest.approx(list(wilson(7, 20)), abs=1e-6)
