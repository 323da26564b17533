"""Outside checks, session 25: the climb report's RL section and flywheel provenance.

- The RL section was titled "RL: the climb" whatever RL did; its title and lead now follow the
  paired held-out measurement and name the promotion gate's decision.
- The RL curve is the val split; the report now says so where the curve is shown and sets the
  held-out endpoints (SFT and RL, k/n, Wilson intervals, baseline, paired change) beside it.
- The flywheel section was left out when no export was used, and never showed harness-RL tasks
  from exports or who attested consent; it is now always there, with counts.
- A sample generation holding a control character (a NUL from a micro model in a smoke climb)
  made report.md a binary file; control characters are now written as `\\xNN`.

Fixtures are the stage formats of tests/test_report_html.py and the smoke recipe's finished-run
markers (tests/test_outside_checks_s24_report.py), so every test runs in about a second.
"""

from __future__ import annotations

import json
from pathlib import Path

from hillclimb.climb import report as R
from test_outside_checks_s24_report import _fake_climb, _md, _wilson
from test_report_html import _eval_rec, _stage, make_climb_run


def _climb_with_evals(tmp_path: Path, sft: float, rl: float):
    """The smoke recipe's finished run with SFT and RL task evaluations at the given accuracies
    (the same items: item i of a cell passes when i < accuracy x 10)."""
    c = _fake_climb(tmp_path)
    for m in c.recipe.model_names:
        rec = {"model": m, "pretrain": _eval_rec(m, None), "sft": _eval_rec(m, sft)}
        rec["rl"] = _eval_rec(m, rl)
        (c.dir("eval") / f"{m}.json").write_text(json.dumps(rec))
    return c


def _paired_first_split(sft: float, rl: float):
    """The paired bootstrap over the first split's items, computed here from the fixture."""
    from hillclimb.eval.bootstrap import paired_bootstrap

    a, b = _eval_rec("m", sft)["tasks"]["items"], _eval_rec("m", rl)["tasks"]["items"]
    first = [i for i in a if i["split"] == "heldout"]
    by_b = {i["id"]: i for i in b if i["split"] == "heldout"}
    return paired_bootstrap(
        [float(i["passed"]) for i in first], [float(by_b[i["id"]]["passed"]) for i in first], seed=0
    )


def _section(md: str, heading: str) -> str:
    """The text from the line starting with `heading` to the next heading of its level."""
    level = heading.split(" ", 1)[0] + " "
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(level)), len(lines))
    return "\n".join(lines[start:end])


# ---- 1. the RL section's title follows the measured result ---------------------------------------
def test_rl_title_says_no_measurable_gain_when_rl_changed_nothing(tmp_path):
    c = _climb_with_evals(tmp_path, 0.3, 0.3)
    md = _md(c)
    assert "## RL: the climb" not in md
    pb = _paired_first_split(0.3, 0.3)
    nums = (
        f"paired {pb.delta * 100:+.1f} points, CI [{pb.ci_low * 100:+.1f}, {pb.ci_high * 100:+.1f}]"
    )
    title = next(ln for ln in md.splitlines() if ln.startswith("## RL"))
    for m in c.recipe.model_names:
        assert f"{m}: no measurable gain ({nums} on 40 new problems)" in title, title


def test_rl_title_says_a_gain_only_when_the_paired_change_is_beyond_noise(tmp_path):
    c = _climb_with_evals(tmp_path, 0.3, 0.5)
    pb = _paired_first_split(0.3, 0.5)
    assert pb.ci_low > 0  # 8 of 40 items right only after RL, none only before
    title = next(ln for ln in _md(c).splitlines() if ln.startswith("## RL"))
    assert "a measurable gain (paired +20.0 points" in title and "no measurable" not in title


def test_rl_title_refuses_a_verdict_when_not_like_for_like():
    ev = {"sft": _eval_rec("m", 0.3), "rl": _eval_rec("m", 0.5)}
    ev["rl"]["tasks"]["settings"]["seed"] = 7
    assert R.rl_verdict(ev).startswith("no verdict (SFT and RL were not evaluated like")
    assert R.rl_section_title(["m"], {"m": ev}).startswith("RL: no verdict")


def test_the_rl_lead_names_the_gates_decision(tmp_path):
    c = _climb_with_evals(tmp_path, 0.3, 0.3)
    m = c.recipe.model_names[-1]
    c.results["registry"] = {
        "models": {m: {"alias": f"{m}@prod", "candidate": "ck-rl", "incumbent": "ck-sft",
                       "decision": "refused"}}
    }  # fmt: skip
    lead = _section(_md(c), "## RL")
    assert (
        f"**{m}**: RL against SFT on held-out problems: no measurable gain" in lead
        and f"Promotion gate: REFUSED candidate ck-rl over incumbent ck-sft for {m}@prod." in lead
    )


# ---- 2. the val curve is said to be val, with the held-out endpoints beside it -------------------
def test_the_val_curve_stands_beside_the_heldout_endpoints_in_report_md(tmp_path):
    c = _climb_with_evals(tmp_path, 0.3, 0.5)
    md = _md(c)
    m = next(m for m in c.recipe.model_names if m in c.recipe.rl)
    sub = _section(md, f"### rl-{m}")
    assert "greedy pass rate on the **val** split" in sub and "not the held-out result" in sub
    (slo, shi), (rlo, rhi) = _wilson(12, 40), _wilson(20, 40)
    pb = _paired_first_split(0.3, 0.5)
    want = (
        f"- held-out new problems (heldout): SFT 30.0% (12/40) [{slo:.1%}, {shi:.1%}] → RL "
        f"50.0% (20/40) [{rlo:.1%}, {rhi:.1%}]; no-training baseline 10.0%; paired change "
        f"{pb.delta * 100:+.1f} points, 95% CI [{pb.ci_low * 100:+.1f}, {pb.ci_high * 100:+.1f}]"
        " — beyond noise"
    )
    assert want in sub, sub


def test_the_html_rl_section_says_val_and_shows_the_heldout_endpoints(tmp_path):
    from hillclimb.climb.html_report import write_html_report

    html = write_html_report(make_climb_run(tmp_path / "run")).read_text()
    rl = html[html.index('<section id="rl">') : html.index('<section id="tokens">')]
    (rlo, rhi) = _wilson(20, 40)
    assert "val split, not held out" in rl
    assert f"RL 50.0% (20/40) [{rlo:.1%}, {rhi:.1%}]" in rl
    assert "RL: a measurable gain (paired +20.0 points" in rl


# ---- 3. the flywheel's provenance --------------------------------------------------------------
def test_a_climb_without_flywheel_data_says_so_with_counts(tmp_path):
    c = _climb_with_evals(tmp_path, 0.3, 0.3)
    c.results["sft-data"] = {m: {"examples": 40 + i} for i, m in enumerate(c.recipe.model_names)}
    sec = _section(_md(c), "## The flywheel")
    assert "No flywheel data" in sec
    for i, m in enumerate(c.recipe.model_names):
        assert f"{m} 0 of {40 + i} SFT examples" in sec


def _fw(attested: bool) -> dict:
    fw = {
        "sft_examples": 3, "by_source": {"api": 2, "harness": 1}, "refused_no_consent": 0,
        "refused": {}, "decontamination": "probes of the data build", "rl_prompts_available": 4,
        "exports": [{"path": "exp", "sft_examples": 3, "refused": 0, "rl_prompts": 4}],
    }  # fmt: skip
    if attested:
        fw["consent_attested"] = [
            {"export": "exp", "by": "ops team, signed forms", "api_records": 2}
        ]
    return fw


def test_the_flywheel_table_shows_attested_consent_and_harness_rl_tasks():
    sft = {"a": {"examples": 50, "flywheel": _fw(True)}, "b": {"examples": 30}}
    rl = {"a": {"tasks": 5, "flywheel_tasks": 2, "flywheel": {"refused": {"duplicate": 1}}}}
    text = "\n".join(R.flywheel_lines(sft, rl))
    assert "consent attested by" in text and "harness-RL tasks from the flywheel" in text
    row_a = next(ln for ln in text.splitlines() if ln.startswith("| a |"))
    assert "ops team, signed forms (2)" in row_a and "2 of 5 (refused: duplicate 1)" in row_a
    row_b = next(ln for ln in text.splitlines() if ln.startswith("| b |"))
    assert row_b.startswith("| b | 0 | 30 | none |") and "no rl-harness stage" in row_b


def test_harness_rl_tasks_from_an_export_alone_make_a_flywheel_table():
    rl = {"a": {"tasks": 2, "flywheel_tasks": 2, "flywheel": {"refused": {}}}}
    text = "\n".join(R.flywheel_lines({"a": {"examples": 9}}, rl))
    assert "No flywheel data" not in text
    assert "| a | 0 | 9 |" in text and "| 2 of 2 |" in text


def test_the_html_flywheel_shows_the_rl_harness_stage_and_attestation(tmp_path):
    from hillclimb.climb.html_report import write_html_report

    run = make_climb_run(tmp_path / "run")
    for dirname, key, result in (
        ("05-sft-data", "sft-data", {"m": {"examples": 300, "flywheel": _fw(True)}}),
        ("07b-rl-harness-m", "rl-harness-m", {"tasks": 6, "flywheel_tasks": 4}),
    ):
        d = _stage(run, dirname, key)
        marker = json.loads((d / "_stage.json").read_text())
        (d / "_stage.json").write_text(json.dumps({**marker, "result": result}))
    text = write_html_report(run).read_text()
    assert "<td>ops team, signed forms (2)</td><td>4 of 6</td>" in text


# ---- 4. control characters in generations --------------------------------------------------------
def test_a_nul_in_a_sample_generation_does_not_make_the_reports_binary(tmp_path):
    from hillclimb.climb.html_report import write_html_report

    run = make_climb_run(tmp_path / "run")
    d = run / "08-eval"
    rec = json.loads((d / "m.json").read_text())
    rec["rl"]["tasks"]["samples"][0]["content"] = "x\x00y\x1bz"
    (d / "m.json").write_text(json.dumps(rec))
    (d / "eval.json").write_text(json.dumps({"m": rec}))
    html = write_html_report(run).read_bytes()
    assert b"\x00" not in html and b"\x1b" not in html and b"x\\x00y\\x1bz" in html
    assert R.printable("a\tb\nc\x00\x7f") == "a\tb\nc\\x00\\x7f"
    assert "\x00" not in R._quote("p\x00q") and "p\\x00q" in R._quote("p\x00q")


# ---- 5. the headline read plainly; the accuracy section's counts in words ---------------------
def test_the_headline_reads_bpb_and_accuracy_against_their_baselines(tmp_path):
    """The headline set bpb beside the unigram and accuracy beside the no-training baseline
    and left the comparison to the reader; a model not beyond token frequencies read like one
    that was."""
    c = _climb_with_evals(tmp_path, 0.3, 0.3)
    for m in c.recipe.model_names:
        f = c.dir("eval") / f"{m}.json"
        rec = json.loads(f.read_text())
        rec["pretrain"]["bpb"] = {"val_bpb": 3.9, "unigram_bpb": 3.5}
        f.write_text(json.dumps(rec))
    head = _section(_md(c), "## Headline")
    lo, hi = _wilson(12, 40)
    for m in c.recipe.model_names:
        want = (
            f"- {m}: pre-trained bpb 3.900 is NOT below the unigram 3.500; after SFT bpb 2.400 "
            f"is below the unigram 3.500; final accuracy on new problems 12/40 "
            f"[{lo:.1%}, {hi:.1%}] is above the no-training baseline 10.0%."
        )
        assert want in head, head


def test_the_accuracy_section_prints_counts_as_words(tmp_path):
    c = _climb_with_evals(tmp_path, 0.3, 0.3)
    for m in c.recipe.model_names:
        f = c.dir("eval") / f"{m}.json"
        rec = json.loads(f.read_text())
        rec["rl"]["tasks"]["settings"]["n_per_tier"] = 1
        rec["rl"]["tasks"]["finish_reasons"] = {"stop": 2, "length": 30}
        f.write_text(json.dumps(rec))
    md = _md(c)
    assert "1 problems per cell" not in md and "{'" not in md
    assert "1 problem per cell and split" in md and "finish reasons length 30, stop 2." in md


def test_the_html_overview_reads_the_headline_plainly(tmp_path):
    from hillclimb.climb.html_report import write_html_report

    html = write_html_report(make_climb_run(tmp_path / "run")).read_text()
    lo, hi = _wilson(20, 40)
    assert (
        f"- m: pre-trained bpb 2.400 is below the unigram 3.500; after SFT bpb 2.400 is below "
        f"the unigram 3.500; final accuracy on new problems "
        f"20/40 [{lo:.1%}, {hi:.1%}] is above the no-training baseline 10.0%." in html
    )


def test_harness_rl_endpoints_stand_under_the_stage_the_eval_measured(tmp_path):
    """With harness RL the eval stage measures `rl-harness-<m>`'s checkpoint; its held-out
    numbers go under that stage, and `rl-<m>`'s val curve says they are not its own."""
    c = _climb_with_evals(tmp_path, 0.3, 0.5)
    m = next(m for m in c.recipe.model_names if m in c.recipe.rl_harness and m in c.recipe.rl)
    f = c.dir("eval") / f"{m}.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "rl_stage": f"rl-harness-{m}"}))
    md = _md(c)
    plain = _section(md, f"### rl-{m}")
    assert f"the eval stage measured `rl-harness-{m}`'s checkpoint, not this stage's" in plain
    assert "held-out new problems" not in plain
    harness = _section(md, f"### rl-harness-{m}")
    assert "- held-out new problems (heldout): SFT 30.0% (12/40)" in harness
    assert f"→ RL (rl-harness-{m}) 50.0% (20/40)" in harness


def test_the_accuracy_figure_carries_wilson_whiskers(tmp_path):
    """The accuracy bars had no interval, so a 1-item cell's 100% looked exact."""
    t = _eval_rec("m", 0.3)["tasks"]
    cells = t["splits"]["heldout"]["by_family_tier"]
    lows, highs = R.wilson_whiskers(cells, ["arith", "nope"], "1")
    lo, hi = _wilson(3, 10)
    assert abs(lows[0] - (0.3 - lo)) < 1e-12 and abs(highs[0] - (hi - 0.3)) < 1e-12
    assert lows[1] == highs[1] == 0.0
    assert R.plot_accuracy(t, "m", tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_html_tokens_table_says_how_many_answers_per_correct_is_over(tmp_path):
    """ "tokens / correct" of one correct answer read as solid as over twenty."""
    from hillclimb.climb.html_report import write_html_report

    html = write_html_report(make_climb_run(tmp_path / "run")).read_text()
    tokens = html[html.index('<section id="tokens">') : html.index('<section id="experts">')]
    assert "<th>correct</th>" in tokens
    assert "<td>arith</td><td>2</td><td>20.0</td><td>20.0</td><td>5/10</td><td>0%</td>" in tokens
