"""Outside checks (session 24): every number of the climb report recomputed from the artifacts it
summarises — suite rows' truncated shares, the pre-trained model's line, the SFT-vs-RL cells,
pooled tokens per correct answer — and the HTML report saying what report.md says about the gate.

No model is trained: evaluation results and stage markers are small hand-made records in the
formats the stages write (as tests/test_report_html.py does).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hillclimb.climb import report as R
from test_report_html import _eval_rec, _stage, make_climb_run


# ---- suite rows: the truncated share of the items each metric is over ----------------------------
def _harness_item(group: str, split: str, exit_status: str, passed: bool) -> dict:
    return {
        "id": f"{group}/{exit_status}/{passed}",
        "group": group,
        "project_split": split,
        "kind": "bugfix",
        "passed": passed,
        "status": "resolved" if passed else "unresolved",
        "exit_status": exit_status,
        "turns": 3,
        "completion_tokens": 50,
        "do_nothing": False,
    }


def _harness_result() -> dict:
    """Group `new-mutations`: 4 episodes, every one ended by max_steps; group `unseen-projects`:
    4 episodes that all submitted (2 resolved). Pooled: 4 of 8 truncated."""
    items = [_harness_item("new-mutations", "train", "max_steps", False) for _ in range(4)]
    items += [_harness_item("unseen-projects", "heldout", "submitted", k < 2) for k in range(4)]

    def m(vals: list[bool]) -> dict:
        return {"value": sum(vals) / len(vals), "ci95": [0.0, 1.0], "n": len(vals)}

    g = {
        k: [i["passed"] for i in items if i["group"] == k]
        for k in ("new-mutations", "unseen-projects")
    }
    metrics = {"resolve_rate": m([i["passed"] for i in items])}
    metrics |= {f"resolve_rate/{k}": m(v) for k, v in g.items()}
    metrics["resolve_rate/projects:heldout"] = m(g["unseen-projects"])
    metrics["resolve_rate/projects:train"] = m(g["new-mutations"])
    return {
        "format": "hillclimb-suite-v1",
        "suite": "harness",
        "n_items": 8,
        "metrics": metrics,
        "baseline": {"what": "do nothing", **{k: 0.0 for k in metrics}},
        "truncated_share": 0.5,
        "truncated_by": {"max_steps": 0.5},
        "items": items,
    }


def test_harness_group_rows_count_their_own_truncated_episodes():
    """Every per-group and per-project-split row of the standard-suites table printed the whole
    suite's truncated share: a group whose 4 episodes all ran out of turns and a group whose 4
    all submitted both read "50%". Each row now counts the episodes its rate is over."""
    rows = R.suite_table_rows({"cf": {"suites": {"harness": _harness_result()}}}, ["cf"])
    trunc = {r[2]: r[7] for r in rows}
    assert trunc["resolve_rate"] == "50%"  # pooled: 4 of 8
    assert trunc["resolve_rate/new-mutations"] == "100%"
    assert trunc["resolve_rate/unseen-projects"] == "0%"
    assert trunc["resolve_rate/projects:train"] == "100%"
    assert trunc["resolve_rate/projects:heldout"] == "0%"


def test_problems_split_rows_count_their_own_split():
    """The problems suite's `accuracy/<split>` and `accuracy/<split>/<kind>` rows printed the
    share over both splits and every family."""
    items = [
        {"split": "heldout", "family": "arith", "tier": 1, "passed": False, "status": "truncated"},
        {
            "split": "heldout",
            "family": "code_function",
            "tier": 1,
            "passed": True,
            "status": "pass",
        },
        {
            "split": "heldout_phrasing",
            "family": "arith",
            "tier": 1,
            "passed": True,
            "status": "pass",
        },
        {
            "split": "heldout_phrasing",
            "family": "arith",
            "tier": 2,
            "passed": True,
            "status": "pass",
        },
    ]
    res = {"truncated_share": 0.25, "items": items}
    assert R.metric_truncated_share(res, "accuracy/heldout") == 0.5
    assert R.metric_truncated_share(res, "accuracy/heldout/reasoning") == 1.0
    assert R.metric_truncated_share(res, "accuracy/heldout/code") == 0.0
    assert R.metric_truncated_share(res, "accuracy/heldout_phrasing") == 0.0
    assert R.metric_truncated_share(res, "pass@1") == 0.25  # a whole-suite metric: the suite's


# ---- per-cell tables ----------------------------------------------------------------------------
def _cell(split: str, correct: int, n: int, tpc: float | None) -> dict:
    return {
        "split": split, "family": "arith", "tier": 1, "n": n, "correct": correct,
        "accuracy": correct / n, "truncated": 0, "tokens_per_correct": tpc,
        "baseline": {"best": 0.1}, "heldout_family": False, "max_tokens": 64,
    }  # fmt: skip


def _tasks(cells: list[dict]) -> dict:
    splits = list(dict.fromkeys(c["split"] for c in cells))
    return {
        "settings": {"tiers": [1], "splits": splits},
        "cells": cells,
        "splits": {s: {"by_family_tier": {"arith": {}}} for s in splits},
    }


def test_tokens_per_correct_pools_the_correct_answers_of_both_splits():
    """The accuracy table's "tokens / correct" was the plain mean of the splits' figures: 1
    correct answer of 500 tokens on one split and 19 of 100 on the other read 300, where the 20
    correct answers took (500 + 19 x 100) / 20 = 120 tokens each."""
    t = _tasks([_cell("heldout", 1, 20, 500.0), _cell("heldout_phrasing", 19, 20, 100.0)])
    header, rows = R.accuracy_rows(t)
    got = float(rows[0][header.index("tokens / correct")])
    assert math.isclose(got, 120.0, abs_tol=0.5)
    none = _tasks([_cell("heldout", 0, 20, None), _cell("heldout_phrasing", 0, 20, None)])
    header, rows = R.accuracy_rows(none)
    assert rows[0][header.index("tokens / correct")] == "-"


def test_sft_vs_rl_cells_carry_their_counts():
    """The SFT-vs-RL table printed "50%" → "100%", "+50" with no n: the same on 2 items as on
    200. Each accuracy now carries correct/n, recomputable from the cell."""
    ev = {
        "sft": {"tasks": _tasks([_cell("heldout", 1, 2, 10.0)])},
        "rl": {"tasks": _tasks([_cell("heldout", 2, 2, 12.0)])},
    }
    header, rows = R.sft_vs_rl_rows(ev)
    assert rows[0][header.index("SFT")] == "50% (1/2)"
    assert rows[0][header.index("RL")] == "100% (2/2)"
    assert rows[0][header.index("change (points)")] == "+50"


# ---- the pre-trained model's line in report.md ----------------------------------------------------
def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p, den = k / n, 1 + z * z / n
    c, h = (p + z * z / (2 * n)) / den, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, c - h), min(1.0, c + h)


def _fake_climb(tmp_path: Path, evals: bool = False):
    """A finished smoke climb's run directory (markers only) and its `Climb`; with `evals`,
    each model's eval record is the SFT/RL fixture of tests/test_report_html.py."""
    from hillclimb.climb.runner import plan
    from hillclimb.climb.state import Climb
    from test_outside_checks_s21_climb import _fake_finished_run, _recipe, _smoke_raw

    recipe = _recipe(_smoke_raw(), tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    c = Climb(recipe=recipe, out=run, stages=plan(recipe))
    for m in recipe.model_names if evals else []:
        rec = {"model": m, "pretrain": _eval_rec(m, None), "sft": _eval_rec(m, 0.3)}
        (c.dir("eval") / f"{m}.json").write_text(json.dumps({**rec, "rl": _eval_rec(m, 0.5)}))
    return c


def _md(c) -> str:
    from hillclimb.climb.report import write_report

    write_report(c, c.out / "report")
    return (c.out / "report" / "report.md").read_text()


def test_the_pretrained_models_line_has_n_interval_and_baseline(tmp_path):
    """report.md printed "Before SFT (pre-trained model): overall 20.0%." — no n, no interval,
    no no-training baseline, and "overall" for the first split alone. Now its correct/n, the
    Wilson interval over its first split's items and the baseline of the same items."""
    c = _fake_climb(tmp_path)
    for m in c.recipe.model_names:
        rec = {"model": m, "pretrain": _eval_rec(m, 0.2), "sft": _eval_rec(m, 0.3)}
        rec["rl"] = _eval_rec(m, 0.5)
        for p in ("pretrain", "sft", "rl"):
            t = rec[p]["tasks"]
            first = [i for i in t["items"] if i["split"] == "heldout"]
            t.update(n=len(first), correct=sum(i["passed"] for i in first), baseline=0.1)
        (c.dir("eval") / f"{m}.json").write_text(json.dumps(rec))
    md = _md(c)
    lo, hi = _wilson(8, 40)  # 0.2 x 10 items per cell, 4 cells of the first split
    want = (
        f"Before SFT (pre-trained model), heldout: 20.0% (8/40) [{lo:.1%}, {hi:.1%}]; "
        "no-training baseline on the same items 10.0%."
    )
    assert want in md
    assert "overall 20.0%." not in md


# ---- the HTML report says what report.md says about the promotion gate ----------------------------
def test_the_html_report_shows_the_gate_decision(tmp_path):
    """report.md has a "Registry and promotion gate" section (decision, each check's change,
    interval and p-values); the HTML report had nothing about the gate."""
    from hillclimb.climb.html_report import write_html_report
    from hillclimb.climb.promotion import render

    run = make_climb_run(tmp_path / "run")
    check = {
        "role": "target", "suite": "heldout", "ok": False, "reason": "not better",
        "n": 40, "mean_a": 0.3, "mean_b": 0.35, "delta": 0.05, "ci_low": -0.1, "ci_high": 0.2,
        "p_better": 0.2, "p_worse": 0.8, "effect_size": 0.1,
    }  # fmt: skip
    gate = {
        "registry": "/r.sqlite",
        "models": {
            "m": {"alias": "m@prod", "candidate": "ck-rl", "incumbent": "ck-sft",
                  "decision": "refused", "checks": [check], "reasons": ["RL not beyond noise"]}
        },
    }  # fmt: skip
    d = _stage(run, "09-registry", "registry")
    marker = json.loads((d / "_stage.json").read_text())
    (d / "_stage.json").write_text(json.dumps({**marker, "result": gate}))
    html = write_html_report(run).read_text()
    first = render(gate).splitlines()[1].removeprefix("- ")
    assert "REFUSED candidate ck-rl over incumbent ck-sft for m@prod" in first
    assert first in html
    assert "30.0% -&gt; 35.0% (+5.0 pts, CI [-10.0, +20.0]" in html
    assert "reason: RL not beyond noise" in html


def test_a_run_without_a_registry_stage_says_so_in_the_html(tmp_path):
    from hillclimb.climb.html_report import NOT_IN_RUN, write_html_report

    html = write_html_report(make_climb_run(tmp_path / "run")).read_text()
    assert f"Registry and promotion gate: {NOT_IN_RUN}" in html


# ---- which RL checkpoint "after RL" measured ----------------------------------------------------
def test_harness_rl_results_are_named_as_such_in_both_reports(tmp_path):
    """With `[rl_harness]`, the eval stage's "rl" result is the harness-RL checkpoint
    (`rl_stage: rl-harness-<model>`), yet the headline's "after RL" and the "SFT vs RL" heading
    sat right before `rl-<model>`'s climbing curve without naming it. Both reports now name the
    stage when it is not `rl-<model>`, and only then."""
    from hillclimb.climb.html_report import write_html_report

    assert R.rl_stage_note("m", {"rl_stage": "rl-m"}) == ""
    assert R.rl_stage_note("m", {}) == ""
    run = make_climb_run(tmp_path / "run")
    d = run / "08-eval"
    rec = json.loads((d / "m.json").read_text())
    rec["rl_stage"] = "rl-harness-m"
    (d / "m.json").write_text(json.dumps(rec))
    (d / "eval.json").write_text(json.dumps({"m": rec}))
    assert R.sft_vs_rl_title("m", rec) == "m: SFT vs RL (rl-harness-m) (same items, same settings)"
    html = write_html_report(run).read_text()
    assert "m: SFT vs RL (rl-harness-m) (same items, same settings)" in html
    assert "<td>rl (rl-harness-m)</td>" in html


def test_the_accuracy_heading_says_after_rl_only_for_models_rl_trained():
    """`## Accuracy on problems never trained on (final models: after RL)` stood over every
    model's tables once one model had RL — in `tiny`, over code-flash's SFT-only results."""
    rl, sft = {"rl": {"tasks": {}}}, {"rl": None}
    assert R.final_models_label({"a": rl, "b": rl}) == "final models: after RL"
    assert R.final_models_label({"a": sft}) == "after SFT"
    mixed = R.final_models_label({"code-flash": sft, "thinking": rl})
    assert mixed == "final models: after RL for thinking; after SFT for the others"


# ---- the gate's "beyond noise" against the report's own 95% reading --------------------------------
def _gate_check(rl_only: int, sft_only: int, n: int = 200) -> tuple[dict, dict]:
    """A target check as the gate would make it from these paired items, and the evaluation
    record the report's SFT-vs-RL lines read."""
    from hillclimb.eval.bootstrap import paired_bootstrap
    from hillclimb.registry.gate import sign_test_p

    both = 40
    rest = n - both - rl_only - sft_only
    sft = [1] * sft_only + [0] * rl_only + [1] * both + [0] * rest
    rl = [0] * sft_only + [1] * rl_only + [1] * both + [0] * rest
    pb = paired_bootstrap(sft, rl, resamples=10_000, seed=0)
    p_better = max(pb.p_better, sign_test_p(pb.b_only, pb.a_only))
    p_worse = max(pb.p_worse, sign_test_p(pb.a_only, pb.b_only))
    assert p_better < 0.05  # the gate (alpha 0.05, one-sided) calls it an improvement
    check = {
        "role": "target", "suite": "heldout", "ok": True, "n": n,
        "reason": f"improves beyond noise (p(one-sided, better)={p_better:.3g} < 0.05)",
        "mean_a": pb.mean_a, "mean_b": pb.mean_b, "delta": pb.delta, "ci_low": pb.ci_low,
        "ci_high": pb.ci_high, "p_better": p_better, "p_worse": p_worse, "effect_size": 0.1,
    }  # fmt: skip

    def tasks(vals: list[int]) -> dict:
        items = [{"split": "heldout", "id": str(k), "passed": bool(v)} for k, v in enumerate(vals)]
        return {"items": items}

    return check, {"sft": {"tasks": tasks(sft)}, "rl": {"tasks": tasks(rl)}}


def test_a_one_sided_gate_pass_the_report_calls_noise_is_reconciled():
    """12 items only RL solved and 4 only SFT (of 200): the gate's one-sided p is 0.038 < 0.05,
    so it printed "improves beyond noise" and PROMOTED, beside a 95% interval of [+0.0, +8.0];
    the same report's SFT-vs-RL line said "not beyond noise (95%, two-sided)". The gate's line
    now carries a note saying the two readings differ and why."""
    from hillclimb.climb.promotion import render

    check, ev = _gate_check(12, 4)
    (line,) = R.sft_vs_rl_paired(ev)
    assert line.endswith("not beyond noise (95%, two-sided)")
    rec = {"alias": "m@prod", "candidate": "b", "incumbent": "a", "decision": "promoted"}
    text = render({"registry": "r", "models": {"m": {**rec, "checks": [check]}}})
    assert "improves beyond noise" in text
    assert "not beyond noise at 95% two-sided (interval [+0.0, +8.0], one-sided p 0.0384" in text
    # a change beyond noise by both readings gets no note
    check, ev = _gate_check(30, 2)
    (line,) = R.sft_vs_rl_paired(ev)
    assert line.endswith("— beyond noise (95%, two-sided)")
    text = render({"registry": "r", "models": {"m": {**rec, "checks": [check]}}})
    assert "not beyond noise at 95%" not in text


# ---- the data card's filter table ------------------------------------------------------------------
def test_the_filters_top_reasons_are_the_most_frequent(tmp_path):
    """ "top reasons" were the first four in the card's order: a filter whose largest reason came
    fifth ("near 200" after four reasons of 1) printed without it."""
    c = _fake_climb(tmp_path, evals=True)
    reasons = {"a": 1, "b": 1, "c": 1, "exact": 44, "near": 200}
    card = {
        "totals": {"documents": 10, "bytes": 100, "tokens": 50},
        "filters": [{"name": "dedup", "dropped": 248, "reasons": reasons}],
    }
    c.shards_dir.mkdir(parents=True, exist_ok=True)
    (c.shards_dir / "data_card.json").write_text(json.dumps(card))
    md = _md(c)
    assert "| dedup | 248 | near 200, exact 44, a 1, b 1 (+1 more reason) |" in md


def test_the_html_report_shows_the_filters_and_the_flywheel(tmp_path):
    """report.md has the data card's filter table, the decontamination summary and the flywheel
    table (SFT examples from telemetry, refusals for want of consent); the HTML report gave the
    card's three totals and nothing else."""
    from hillclimb.climb.html_report import write_html_report

    run = make_climb_run(tmp_path / "run")
    shards = _stage(run, "03-shards", "shards")
    card = {
        "totals": {"documents": 10, "bytes": 100, "tokens": 50},
        "filters": [{"name": "dedup", "dropped": 7, "reasons": {"exact": 2, "near": 5}}],
    }
    (shards / "data_card.json").write_text(json.dumps(card))
    fw = {
        "sft_examples": 12, "by_source": {"harness": 9, "api": 3}, "refused_no_consent": 4,
        "refused": {"no_consent": 4, "eval_item": 2}, "decontamination": "on",
        "rl_prompts_available": 5, "exports": ["a.jsonl"],
    }  # fmt: skip
    d = run / "05-sft-data"
    marker = json.loads((d / "_stage.json").read_text())
    result = {"m": {"examples": 300, "flywheel": fw}}
    (d / "_stage.json").write_text(json.dumps({**marker, "result": result}))
    text = write_html_report(run).read_text()
    assert "<td>dedup</td><td>7</td><td>near 5, exact 2</td>" in text
    assert "<h3>The flywheel</h3>" in text
    assert "<td>m</td><td>12</td><td>300</td><td>api 3, harness 9</td><td>4</td>" in text
