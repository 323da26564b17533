"""Outside checks (session 23): the honesty of the numbers the project prints — every accuracy
with its n, an interval and the no-training baseline on the same items; comparisons of SFT and
RL with their noise; intervals checked against independent computations (Wilson, a paired
bootstrap written here).

No model is trained: suite backends answer from a table and evaluation results are synthetic,
in the formats the stages write (as tests/test_report_html.py does).
"""

from __future__ import annotations

import io
import json
import random

import pytest

from hillclimb.eval.backends import Completion
from hillclimb.eval.suite_common import SuiteConfig
from test_report_html import _eval_rec


class _Fixed:
    """A backend that answers every request with the same text."""

    kind, name = "fixed", "fixed"

    def __init__(self, text: str, finish: str = "stop") -> None:
        self.text, self.finish = text, finish

    def complete(self, reqs):  # noqa: ANN001, ANN201
        return [Completion(self.text, self.finish, 3) for _ in reqs]

    chat = complete

    def close(self) -> None:
        pass


# ---- the completion suite's per-tier rows carry their own baseline ------------------------------
def test_completion_suite_tier_rows_have_a_baseline_on_their_own_items():
    """`pass@1/tier1..4` stood beside "-" in the report and the CLI: the suite's baseline held
    only the overall `pass@1`."""
    from hillclimb.eval.suite_common import suite_baseline
    from hillclimb.eval.suites import run_suite

    res = run_suite("completion", "fixed", SuiteConfig(n_items=2, bootstrap=100),
                    backend=_Fixed("    return None\n"))  # fmt: skip
    base = suite_baseline(res)
    for metric, v in res["metrics"].items():
        assert metric in base, metric
        assert res["baseline"][metric]["n"] == v["n"]  # the same items
    assert set(res["baseline"]["by_tier_what"]) == {"1", "2", "3", "4"}


def test_a_tier_whose_tests_a_trivial_body_passes_shows_it_in_that_tier_only():
    """The per-tier baseline is computed on the tier's items, not copied from the whole suite."""
    from hillclimb.eval import completion_suite as CS

    its = CS.items(2, seed=0)
    weak = next(i for i, it in enumerate(its) if it["tier"] == 2)
    # a test `return None` passes: the item any trivial body solves
    its[weak] = {**its[weak], "test": f"assert {its[weak]['entry_point']}(0) == None\n"}
    got = CS.tier_baselines(its, SuiteConfig(bootstrap=100))
    assert got["pass@1/tier2"]["value"] == pytest.approx(0.5) and got["pass@1/tier2"]["n"] == 2
    assert all(got[f"pass@1/tier{t}"]["value"] == 0.0 for t in (1, 3, 4))
    assert "return None" in got["by_tier_what"]["2"]


# ---- the report's suite rows: baseline and truncation of the row's own items --------------------
def _completion_result(truncated_tier: int) -> dict:
    items = [
        {"id": f"t{t}-{i}", "tier": t, "passed": False,
         "finish_reason": "length" if (t == truncated_tier and i == 0) else "stop"}
        for t in (1, 2, 3, 4) for i in range(20)
    ]  # fmt: skip
    m = {"value": 0.0, "ci95": [0.0, 0.16], "n": 20}
    metrics = {"pass@1": {**m, "n": 80}, **{f"pass@1/tier{t}": m for t in (1, 2, 3, 4)}}
    return {
        "format": "hillclimb-suite-v1", "suite": "completion", "n_items": 80,
        "metrics": metrics,
        "baseline": {"what": "return None", **{k: dict(v) for k, v in metrics.items()}},
        "truncated_share": 1 / 80, "items": items,
    }  # fmt: skip


def test_suite_rows_show_each_tiers_own_truncated_share_and_baseline():
    """One answer cut off in tier 4 was printed as "truncated 1%" on every tier's row (the
    whole suite's share), and the tier rows' baseline was "-"."""
    from hillclimb.climb.report import suite_table_rows

    evals = {"m": {"suites": {"completion": _completion_result(truncated_tier=4)}}}
    rows = {r[2]: r for r in suite_table_rows(evals, ["m"])}
    assert rows["pass@1"][-1] == "1%"
    assert [rows[f"pass@1/tier{t}"][-1] for t in (1, 2, 3, 4)] == ["0%", "0%", "0%", "5%"]
    assert all(r[-2] == "0%" for r in rows.values())  # every row has its baseline


# ---- report.md prints the intervals the HTML report prints ---------------------------------------
def _items_rec(model: str, passed: list[bool], seed: int = 0) -> dict:
    """An eval record of one family x tier cell per split whose items passed as given."""
    rec = _eval_rec(model, 0.5)
    t = rec["tasks"]
    t["items"] = [
        {"id": f"arith/t1/{i}", "split": s, "family": "arith", "tier": 1, "passed": p}
        for s in t["settings"]["splits"]
        for i, p in enumerate(passed)
    ]
    n, c = len(passed), sum(passed)
    for s in t["splits"].values():
        s.update(n=n, correct=c, accuracy=c / n, baseline=0.1)
    t.update(n=n, correct=c, accuracy=c / n, baseline=0.1)
    t["settings"].update(seed=seed, max_tokens=None)
    return rec


def test_report_md_accuracy_rows_and_headline_carry_n_and_an_interval(tmp_path):
    """The HTML report's per-cell table printed "[lo, hi]" after each accuracy; report.md's
    same table and its headline did not ("17.4%" beside "17.1%", no n, no interval)."""
    from hillclimb.climb.report import accuracy_table
    from hillclimb.eval.metrics import wilson_ci

    rec = _eval_rec("m", 0.5)
    table = accuracy_table(rec["tasks"])
    assert "50% (5/10) [" in table  # the interval, as in the HTML table
    from hillclimb.climb.report import headline_accuracy

    rec = _items_rec("m", [True] * 108 + [False] * 513)
    head = headline_accuracy(rec["tasks"])
    assert head.startswith("17.4% (108/621) [")
    lo, hi = (float(x.rstrip("%]")) / 100 for x in head.split("[")[1].split(", "))
    wlo, whi = wilson_ci(108, 621)
    assert abs(lo - wlo) < 0.01 and abs(hi - whi) < 0.01  # an independent interval agrees
    assert headline_accuracy({}) == "-"


# ---- SFT vs RL: the change with its noise --------------------------------------------------------
def _independent_paired(a: list[float], b: list[float], reps: int = 4000) -> tuple[float, float]:
    """A plain index-resampling paired bootstrap (no shortcut), for comparison."""
    rng = random.Random(12345)
    n = len(a)
    d = [y - x for x, y in zip(a, b, strict=True)]
    stats = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    return stats[int(0.025 * reps)], stats[int(0.975 * reps) - 1]


def test_sft_vs_rl_says_whether_the_change_is_beyond_noise():
    """The SFT-vs-RL table printed per-cell changes ("+15", "-10" on 20 items) and the headline
    two accuracies, with nothing saying whether RL changed anything beyond noise."""
    from hillclimb.climb.report import sft_vs_rl_paired

    rng = random.Random(0)
    sft = [rng.random() < 0.3 for _ in range(300)]
    rl = [x if rng.random() < 0.9 else not x for x in sft]  # noise only
    ev = {"sft": _items_rec("m", sft), "rl": _items_rec("m", rl)}
    lines = sft_vs_rl_paired(ev)
    assert len(lines) == 2 and lines[0].startswith("heldout: SFT")
    assert "on the same 300 items" in lines[0]
    ci = lines[0].split("CI [")[1].split("]")[0].split(", ")
    lo, hi = (float(x) / 100 for x in ci)
    ilo, ihi = _independent_paired([float(x) for x in sft], [float(x) for x in rl])
    assert abs(lo - ilo) < 0.01 and abs(hi - ihi) < 0.01
    assert lines == sft_vs_rl_paired(ev)  # seeded
    verdict = "not beyond noise" if lo <= 0 <= hi else "beyond noise"
    assert lines[0].endswith(f"— {verdict} (95%, two-sided)")
    # a real gain on many items reads as one
    better = [True] * 200 + [False] * 100
    ev = {"sft": _items_rec("m", [False] * 300), "rl": _items_rec("m", better)}
    assert sft_vs_rl_paired(ev)[0].endswith("— beyond noise (95%, two-sided)")
    # a CI that excludes 0 while the exact sign test does not (9 vs 2 items): not beyond noise
    a = [True] * 2 + [False] * 619
    b = [False] * 2 + [True] * 9 + [False] * 610
    line = sft_vs_rl_paired({"sft": _items_rec("m", a), "rl": _items_rec("m", b)})[0]
    assert "only RL right on 9, only SFT on 2" in line and "CI [+0." in line
    assert "p(one-sided, better) 0.0327" in line and "not beyond noise" in line


@pytest.mark.slow  # a whole report.md with its plots: about 13 s on two busy cores
def test_the_reports_print_the_paired_comparison(tmp_path):
    from hillclimb.climb.html_report import _eval_model
    from hillclimb.climb.report import write_report
    from hillclimb.climb.runner import plan
    from hillclimb.climb.state import Climb
    from test_outside_checks_s21_climb import _fake_finished_run, _recipe, _smoke_raw

    recipe = _recipe(_smoke_raw(), tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    c = Climb(recipe=recipe, out=run, stages=plan(recipe))
    for m in recipe.model_names:
        # as the eval stage keeps a suite: a summary without items, the full result in a file
        full = _completion_result(truncated_tier=4)
        (c.dir("eval") / f"suite-{m}-completion.json").write_text(json.dumps(full))
        summary = {k: full[k] for k in ("metrics", "baseline", "n_items", "truncated_share")}
        rec = {"model": m, "pretrain": _eval_rec(m, None),
               "sft": _items_rec(m, [False] * 40), "rl": _items_rec(m, [True] * 40),
               "suites": {"completion": {**summary, "file": f"suite-{m}-completion.json"}}}  # fmt: skip
        (c.dir("eval") / f"{m}.json").write_text(json.dumps(rec))
    write_report(c, run / "report")
    md = (run / "report" / "report.md").read_text()
    line = "- heldout: SFT 0.0% → RL 100.0% on the same 40 items: +100.0 points"
    assert line in md
    assert "100.0% (40/40) [" in md  # the headline's n and interval
    # the suite table: each tier row with its baseline and its own truncated share
    assert "| completion | pass@1/tier1 | 0% | 0% – 16% | 20 | 0% | 0% |" in md
    assert "| completion | pass@1/tier4 | 0% | 0% – 16% | 20 | 0% | 5% |" in md
    rec = json.loads((c.dir("eval") / f"{recipe.model_names[0]}.json").read_text())
    html = "".join(_eval_model("m", {p: rec[p] for p in ("pretrain", "sft", "rl")}))
    assert line[2:] in html


# ---- the CLI's overall line ----------------------------------------------------------------------
def test_the_eval_cli_overall_line_has_an_interval_and_the_baseline():
    """`hillclimb eval` printed "heldout: overall 50.0% (10/20)" — no baseline, no interval."""
    from hillclimb.eval.cli import print_eval

    rec = {**_items_rec("m", [True] * 10 + [False] * 10), "bpb": None}
    rec["tasks"].update(truncated_share=0.0, mean_completion_tokens=9.0)
    out = io.StringIO()
    print_eval(rec, file=out)
    text = " ".join(out.getvalue().split())  # rich wraps long lines
    assert "heldout: overall 50.0% (10/20), 95% CI " in text
    assert "no-training baseline 10.0%" in text
    lo = float(text.split("95% CI ")[1].split("%")[0]) / 100
    assert 0.25 <= lo <= 0.33  # Wilson: 29.9%


def test_the_cli_prints_each_categorys_interval():
    from hillclimb.eval.cli import print_suite

    res = {"suite": "adversarial", "model": "m", "backend": "engine", "n_items": 5,
           "seconds": 1.0, "metrics": {"accuracy": {"value": 0.0, "ci95": [0.0, 0.43], "n": 5}},
           "by_category": {"dates": {"value": 0.0, "ci95": [0.0, 0.434], "n": 5}},
           "finish_reasons": {"stop": 5}, "truncated_share": 0.0,
           "mean_completion_tokens": 3.0}  # fmt: skip
    out = io.StringIO()
    print_suite(res, file=out)
    assert "0% – 43%" in out.getvalue().split("accuracy per category")[1]


# ---- tokens by tier: the per-tier accuracies beside their baseline -------------------------------
def test_tokens_by_tier_accuracies_have_the_pooled_baseline_and_an_interval():
    """The tokens-by-tier table printed "SFT accuracy 70%" per tier with no baseline (26% on
    those items) and no interval."""
    from hillclimb.climb.report import tokens_by_tier_rows

    rec = _eval_rec("m", 0.5)
    for c in rec["tasks"]["cells"]:
        if c["family"] == "arith":
            c["baseline"]["best"] = 0.3 if c["tier"] == 1 else 0.0
    header, rows = tokens_by_tier_rows({"sft": rec})
    assert header[-1] == "no-training baseline (same items)" and header[3] == "SFT accuracy"
    # tier 1 pools arith (baseline 30%) only: code_function is not a reasoning family
    assert rows[0][-1] == "30%" and rows[1][-1] == "0%"
    assert rows[0][3].startswith("50% [") and rows[0][3].endswith("%]")


def test_the_html_overview_gives_n_and_an_interval(tmp_path):
    """The HTML overview set "30.0%" (SFT) beside "50.0%" (RL) with no n and no interval."""
    from hillclimb.climb.html_report import _overview, load_input
    from test_report_html import make_climb_run

    html = _overview(load_input(make_climb_run(tmp_path / "run")))
    assert "<td>50.0% (20/40) [" in html and "<td>30.0% (12/40) [" in html


def test_a_sampled_pass_at_k_row_has_the_baseline_and_the_sampled_truncation():
    """`sampled_pass@10` stood beside "-" (the trivial body's pass@10 is its pass@1: it passes
    every sample of an item or none) and beside the greedy answers' truncated share."""
    from hillclimb.eval.cli import print_suite

    m = {"value": 0.1, "ci95": [0.05, 0.16], "n": 164}
    res = {"format": "hillclimb-suite-v1", "suite": "humaneval", "model": "m",
           "backend": "engine", "n_items": 164, "seconds": 1.0,
           "metrics": {"pass@1": m, "sampled_pass@10": {**m, "value": 0.3}},
           "baseline": {"what": "return None", "pass@1": {**m, "value": 0.02}},
           "truncated_share": 0.0, "sampled": {"truncated_share": 0.25},
           "finish_reasons": {"stop": 164}, "mean_completion_tokens": 9.0}  # fmt: skip
    out = io.StringIO()
    print_suite(res, file=out)
    line = next(x for x in out.getvalue().splitlines() if "sampled_pass@10" in x)
    assert line.rstrip(" │").endswith("2.0%")
    from hillclimb.climb.report import suite_table_rows

    rows = {r[2]: r for r in suite_table_rows({"x": {"suites": {"humaneval": res}}}, ["x"])}
    assert rows["sampled_pass@10"][-2:] == ["2%", "25%"] and rows["pass@1"][-2:] == ["2%", "0%"]
