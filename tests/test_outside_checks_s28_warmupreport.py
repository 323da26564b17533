"""Where an adaptive copy warm-up ended (`run.json` `extra.copy_warmup`) reaches summary.json,
the climb's terminal warning and report.md (session 28: it was only in `run.json`, so a reader
of the report could not tell a warm-up that passed early from one that ran out of steps)."""

from __future__ import annotations

import io

from hillclimb.train import copy_check as CC
from test_outside_checks_s24_report import _fake_climb, _md


def _warmup(passed: bool) -> dict:
    checks = [
        {"step": 50, "top1": 0.01, "passed": False},
        {"step": 100, "top1": 0.44, "passed": False},
    ]
    if passed:
        checks.append({"step": 150, "top1": 0.62, "passed": True})
    return {"end": 150, "max_steps": 150 if not passed else 1500, "check_every": 50,
            "threshold": 0.5, "passed": passed, "checks": checks}  # fmt: skip


def test_phrase_says_pass_step_or_maximum_and_best_probe():
    from hillclimb.climb.report import copy_check_line, copy_warmup_phrase

    assert copy_warmup_phrase(_warmup(True)) == (
        "The adaptive warm-up passed its check at step 150 (checked every 50)."
    )
    assert copy_warmup_phrase(_warmup(False)) == (
        "The adaptive warm-up ran to its maximum, 150 steps, without passing a check; best "
        "probe 0.440 at step 100."
    )
    fixed = {**_warmup(False), "check_every": 0}
    assert copy_warmup_phrase(fixed) == "" and copy_warmup_phrase(None) == ""
    ok = CC.copy_verdict(CC.CopyScore(8.0, 0.4, 0.81, 312))
    assert copy_check_line("pretrain-x", ok, _warmup(True)).endswith(
        ">= 0.5). The adaptive warm-up passed its check at step 150 (checked every 50)."
    )


def test_summary_terminal_and_report_carry_the_warmup(tmp_path, monkeypatch):
    from hillclimb.climb import runner

    c = _fake_climb(tmp_path, evals=True)
    m = c.recipe.model_names[0]
    failed = CC.copy_verdict(CC.CopyScore(8.0, 7.9, 0.0, 312))
    c.results.setdefault(f"pretrain-{m}", {})["extra"] = {
        "copy_check": failed,
        "copy_warmup": _warmup(False),
    }
    monkeypatch.setattr(runner, "_current_headline", lambda c, m, ev: {})
    summary = runner.build_summary(c, [], 1.0)
    assert summary["models"][m]["pretrain"]["copy_warmup"] == _warmup(False)
    buf = io.StringIO()
    runner.print_summary_table(summary, file=buf)
    out = " ".join(buf.getvalue().split())
    assert "ran to its maximum, 150 steps, without passing a check; best probe 0.440" in out
    head = _md(c).split("## Accuracy")[0]
    assert "did not form in-context copying" in head
    assert "ran to its maximum, 150 steps, without passing a check" in head


def test_phrase_names_the_warmup_decay_when_recorded():
    """Session 30: `run.json` records the warm-up's decay (`copy_warmup_weight_decay`, session 29);
    the sentence the report and the terminal print now carries it, so two climbs' warm-ups can
    be compared; runs recorded before it (no key) read as before."""
    from hillclimb.climb.report import copy_warmup_phrase

    assert copy_warmup_phrase({**_warmup(True), "weight_decay": 0.0}) == (
        "The adaptive warm-up passed its check at step 150 (checked every 50). Weight decay "
        "during it: 0."
    )
    assert copy_warmup_phrase({**_warmup(False), "weight_decay": 0.1}).endswith(
        "best probe 0.440 at step 100. Weight decay during it: 0.1."
    )
    assert copy_warmup_phrase({**_warmup(True), "weight_decay": None}).endswith("every 50).")
