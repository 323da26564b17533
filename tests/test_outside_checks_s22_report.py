"""Outside checks (session 22): the numbers users read — the climb report (Markdown and HTML),
the registry, the promotion gate and its intervals.

No model is trained: checkpoints are directories with a fake weights file and evaluation
results are synthetic, in the formats the stages write (as tests/test_registry.py and
tests/test_report_html.py do).
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.registry.db import Registry
from test_registry import _FakeClimb, eval_result, fake_ckpt, snapshot
from test_report_html import _eval_rec


# ---- the gate's record of a first alias ----------------------------------------------------------
def test_a_first_alias_with_nothing_to_judge_reads_created_not_skipped_over_itself(tmp_path):
    """No RL stage, no `thinking@prod` yet: the report read "SKIPPED candidate X over incumbent X
    … reason: candidate X is the incumbent", as if X had been compared with itself."""
    from hillclimb.climb.promotion import registry_stage, render

    c = _FakeClimb(tmp_path / "c", tmp_path / "r.sqlite", rl_rate=0.7, seed=1)
    c.recipe.rl = {}  # no RL stage: the final model is the SFT model
    (tmp_path / "g").mkdir()
    out = registry_stage(c, tmp_path / "g")
    rec = out["models"]["thinking"]
    sft = rec["checkpoints"]["sft"]
    assert rec["decision"] == "skipped" and rec["alias_created"] == sft  # the JSON contract
    text = render(out)
    assert f"thinking@prod CREATED at {sft}: no incumbent, no gate" in text
    assert "over incumbent" not in text and "is the incumbent" not in text
    assert "no incumbent to compare with" in rec["reasons"][0]
    # a re-run: the alias exists and the candidate is what it names
    again = registry_stage(c, tmp_path / "g")
    assert "already thinking@prod" in again["models"]["thinking"]["reasons"][0]
    assert f"SKIPPED candidate {sft} for thinking@prod: it is the incumbent" in render(again)


# ---- the HTML report prints every accuracy beside its no-training baseline ---------------------
def _suite_result(value: float, base: float) -> dict:
    m = {"value": value, "ci95": [0.0, 0.2], "n": 164}
    return {
        "format": "hillclimb-suite-v1",
        "suite": "humaneval",
        "model": "/runs/m/final",
        "n_items": 164,
        "metrics": {"pass@1": m},
        "baseline": {"what": "a trivial function body", "pass@1": {**m, "value": base}},
        "truncated_share": 0.0,
        "mean_completion_tokens": 7.0,
    }


def test_the_html_report_shows_the_no_training_baselines_the_results_carry(tmp_path):
    """The HTML suite section said "No no-training baseline is defined for this suite" under a
    HumanEval result whose `baseline` report.md prints, and its accuracy tables (overview,
    per split) had no baseline column: 12.3% beside nothing, where the trivial answer gets
    8.5%."""
    from hillclimb.climb.html_report import write_html_report

    d = tmp_path / "evals"
    d.mkdir()
    (d / "suite-m-humaneval.json").write_text(json.dumps(_suite_result(0.123, 0.0731)))
    rec = _eval_rec("m", 0.5)
    rec["tasks"]["baseline"] = 0.0853
    for i, s in enumerate(rec["tasks"]["splits"].values()):
        s["baseline"] = 0.0853 + i / 100
    (d / "m.json").write_text(json.dumps(rec))
    html = write_html_report(d).read_text()
    assert "No no-training baseline is defined" not in html
    assert "no-training baseline" in html and "a trivial function body" in html
    assert "<td>7.3%</td>" in html  # the suite's baseline, beside its 12.3%
    assert html.count("<td>8.5%</td>") == 2  # overview and the heldout split
    assert "<td>9.5%</td>" in html  # heldout_phrasing's own baseline
    # a result without one says so, rather than printing nothing or inventing one
    bare = _suite_result(0.1, 0.0)
    del bare["baseline"]
    (d / "suite-m-humaneval.json").write_text(json.dumps(bare))
    assert "holds no no-training baseline" in write_html_report(d).read_text()


# ---- SFT vs RL is "same items, same settings" only when it is -------------------------------------
def _sft_rl(seed_rl: int = 0, n_rl: int = 10) -> dict:
    rec = {"model": "m", "pretrain": _eval_rec("m", None), "sft": _eval_rec("m", 0.3)}
    rec["rl"] = _eval_rec("m", 0.5)
    for p, seed in (("sft", 0), ("rl", seed_rl)):
        rec[p]["tasks"]["settings"].update(seed=seed, max_tokens=None)
    if seed_rl:  # another seed draws other problems: other (content-derived) ids
        for it in rec["rl"]["tasks"]["items"]:
            it["id"] += f"-seed{seed_rl}"
    rec["rl"]["tasks"]["settings"]["n_per_tier"] = n_rl
    return rec


def test_sft_and_rl_evaluated_on_other_items_are_not_called_like_for_like(tmp_path):
    """The SFT-vs-RL table was headed "(same items, same settings)" unconditionally, in
    report.md and the HTML report: results of another seed or cell size were set side by side
    cell by cell, and what the evaluation changed read as what RL changed."""
    from hillclimb.climb.html_report import write_html_report
    from hillclimb.climb.report import unlike, write_report
    from hillclimb.climb.runner import plan
    from hillclimb.climb.state import Climb
    from test_outside_checks_s21_climb import _fake_finished_run, _recipe, _smoke_raw

    same = _sft_rl()
    assert unlike(same["sft"]["tasks"], same["rl"]["tasks"]) == []
    other = _sft_rl(seed_rl=7, n_rl=12)
    why = unlike(other["sft"]["tasks"], other["rl"]["tasks"])
    assert "seed 0 vs 7" in why[1] and "n_per_tier 10 vs 12" in why[0]
    assert "80 of SFT's 80 items and 80 of RL's 80 are not the other's" in why[2]
    # without item-level results: cells of another size are seen
    for p in ("sft", "rl"):
        del other[p]["tasks"]["items"]
    other["rl"]["tasks"]["settings"]["seed"] = 0
    other["rl"]["tasks"]["cells"][0]["n"] = 12
    assert unlike(other["sft"]["tasks"], other["rl"]["tasks"])[-1] == "1 cells of different size"

    recipe = _recipe(_smoke_raw(), tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    c = Climb(recipe=recipe, out=run, stages=plan(recipe))
    first, second = recipe.model_names[0], recipe.model_names[-1]
    for m in recipe.model_names:
        rec = _sft_rl(seed_rl=7) if m == first else _sft_rl()
        (c.dir("eval") / f"{m}.json").write_text(json.dumps({**rec, "model": m}))
    write_report(c, run / "report")
    md = (run / "report" / "report.md").read_text()
    assert f"#### {first}: SFT vs RL — NOT like for like (seed 0 vs 7;" in md
    assert f"**{first}: SFT and RL were not evaluated like for like**" in md
    if second != first:
        assert f"#### {second}: SFT vs RL (same items, same settings)" in md
    html = write_html_report(run).read_text()
    assert f"{first}: SFT vs RL — NOT like for like" in html


# ---- a foreign SQLite file given as --registry is refused untouched ---------------------------------
def test_another_programs_checkpoints_table_is_refused_and_left_as_it_was(tmp_path, capsys):
    """A training tool's database with its own `checkpoints` table passed the foreign-file
    check (it looks at table names), had meta/runs/evals/... created in it, and only then
    failed on a missing column: a refused command changed someone else's file."""
    from hillclimb.cli import main

    other = tmp_path / "trainer.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE checkpoints (step INTEGER, loss REAL)")
    con.execute("INSERT INTO checkpoints VALUES (100, 2.5)")
    con.commit()
    con.close()
    before, raw = snapshot(other), other.read_bytes()
    with pytest.raises(HillclimbError, match="is not a registry database .*step"):
        Registry(other)
    assert main(["registry", "list", "--registry", str(other)]) == 2
    err = capsys.readouterr().err
    assert "not a registry database" in err and "Traceback" not in err
    assert snapshot(other) == before and other.read_bytes() == raw
    assert not Path(f"{other}-wal").exists()


def test_a_registry_of_another_schema_version_is_refused_before_tables_are_added(tmp_path):
    db = tmp_path / "r.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('schema', '2')")
    con.execute("CREATE TABLE checkpoints (id TEXT PRIMARY KEY, content_hash TEXT, path TEXT)")
    con.commit()
    con.close()
    before = snapshot(db)
    with pytest.raises(HillclimbError, match="has schema 2, this hillclimb reads 1"):
        Registry(db)
    assert snapshot(db) == before  # no `runs`, `evals`, ... of schema 1 added to it
    # a registry of this schema still opens (and one interrupted before its schema row too)
    good = tmp_path / "good.sqlite"
    Registry(good).close()
    con = sqlite3.connect(good)
    con.execute("DELETE FROM meta")
    con.commit()
    con.close()
    with Registry(good) as reg:
        assert reg.checkpoints() == []


# ---- intervals on edge cases ----------------------------------------------------------------------
def test_a_nan_score_is_refused_not_turned_into_a_nan_interval():
    """NaN sorts nowhere: the interval of [nan, 1, 0] came back as (0.33, nan), printed as
    "33% – nan%" beside the value."""
    from hillclimb.eval.metrics import bootstrap_ci, wilson_ci

    for bad in ([math.nan, 1.0, 0.0], [math.inf, 0.0]):
        with pytest.raises(HillclimbError, match="finite"):
            bootstrap_ci(bad)
    with pytest.raises(HillclimbError, match="finite"):
        bootstrap_ci([1.0, 0.0], [1.0, math.nan])
    # finite edge cases are as they were: all-pass / all-fail get Wilson's interval
    assert bootstrap_ci([1.0] * 5) == wilson_ci(5, 5) and bootstrap_ci([0.0] * 9) == wilson_ci(0, 9)
    assert bootstrap_ci([1.0]) == wilson_ci(1, 1) and bootstrap_ci([]) == (0.0, 0.0)


# ---- the gate compares like with like when the registry has it -------------------------------------
def test_the_gate_picks_the_incumbents_evaluation_with_the_candidates_settings(tmp_path):
    """The incumbent evaluated with max_tokens 64 (as the candidate) and later with 512: the
    gate took the newest and compared 64 with 512 — a warning, a different p-value — while a
    like-for-like evaluation was in the registry."""
    from hillclimb.registry.gate import GateConfig, compare, promote

    with Registry(tmp_path / "r.sqlite") as reg:
        a, b = fake_ckpt(tmp_path / "a", 1), fake_ckpt(tmp_path / "b", 2)
        ia, ib = reg.register_checkpoint(a).id, reg.register_checkpoint(b).id
        like = reg.add_eval_result(ia, eval_result(a, {"heldout": [False] * 30}, 64))[0]
        reg.add_eval_result(ia, eval_result(a, {"heldout": [True] * 30}, 512))  # newer
        reg.add_eval_result(ib, eval_result(b, {"heldout": [True] * 30}, 64))
        c = compare(reg, ia, ib, "heldout")
        assert c.eval_a == like.id and c.warnings == [] and c.stats.delta == 1.0
        assert promote(reg, ib, ia, GateConfig(target="heldout")).promoted
        # without a like-for-like one, the newest is compared and the difference is said
        reg.add_eval_result(ib, eval_result(b, {"heldout": [True] * 30}, 128))
        c = compare(reg, ia, ib, "heldout")
        assert c.stats.delta == 0.0 and "different generation settings" in c.warnings[0]
