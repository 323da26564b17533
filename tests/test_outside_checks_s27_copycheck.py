"""Outside checks, session 27: a pre-training run with a copy warm-up checks that copying formed.

`recipes/tiny-code.toml`'s warm-up left code-flash-tiny at the uniform loss on today's corpus
(seed 0: copy probe 0.000) and the climb went on without a word (LOG.md, session 26). Now the
run measures copying on its final weights (`train/copy_check.py`, `bench/copy_probe.py`'s
measurement), records it in `run.json` `extra.copy_check`, warns on stderr, and the climb's
summary, terminal table and report say so, with the remedy.

A model that copies is an exact induction rule over logits (the check's logic is what is under
test; a micro model trained to copy takes hundreds of steps); one that does not is a fresh
micro checkpoint and a micro pre-training of a few steps."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from _train_util import save_tokenizer_dir, write_shards
from hillclimb.train import TrainConfig
from hillclimb.train import copy_check as CC

VOCAB = 2048


def _induction(x: torch.Tensor) -> torch.Tensor:
    """Logits of a perfect copier: at t, the token after the latest earlier occurrence of x[t]."""
    rows, t_len = x.shape
    out = torch.zeros(rows, t_len, VOCAB)
    for b in range(rows):
        last: dict[int, int] = {}
        for t in range(t_len):
            tok = int(x[b, t])
            if tok in last and last[tok] + 1 < t_len:
                out[b, t, int(x[b, last[tok] + 1])] = 10.0
            last[tok] = t
    return out


def _echo(x: torch.Tensor) -> torch.Tensor:
    """Logits of a non-copier that is confident (predicts the current token again)."""
    return torch.nn.functional.one_hot(x, VOCAB).float() * 10.0


def _rows(offset: int = 0, gap: int = 0) -> torch.Tensor:
    return CC.copy_rows(torch.arange(4, VOCAB), CC.CHECK_ROWS, CC.CHECK_LENGTH, 0, offset, gap)


def test_a_copier_passes_and_a_non_copier_fails_with_the_remedy():
    x = _rows()
    good = CC.score_copying(_induction, x, CC.CHECK_LENGTH)
    bad = CC.score_copying(_echo, x, CC.CHECK_LENGTH)
    assert good.positions == bad.positions == CC.CHECK_ROWS * (CC.CHECK_LENGTH - 1)
    assert good.top1_second_copy > 0.95 and good.loss_second_copy < good.loss_first_copy - 5
    assert bad.top1_second_copy < 0.05
    ok, fail = CC.copy_verdict(good), CC.copy_verdict(bad)
    assert ok["copies"] is True and "remedy" not in ok
    assert (
        fail["copies"] is False
        and "seed" in fail["remedy"]
        and "copy_warmup_steps" in fail["remedy"]
    )
    assert CC.copy_warning("pretrain-x", ok) is None
    w = CC.copy_warning("pretrain-x", fail)
    assert w and "pretrain-x" in w and f"top-1 {bad.top1_second_copy:.3f}" in w and "seed" in w


def test_the_repeat_is_scored_after_an_offset_and_a_gap():
    """The copier still reads as one at a distance; the scored span is the repeat, not the gap."""
    x = _rows(offset=12, gap=30)
    assert x.shape == (CC.CHECK_ROWS, 12 + 2 * CC.CHECK_LENGTH + 30)
    assert torch.equal(x[:, 12 : 12 + CC.CHECK_LENGTH], x[:, -CC.CHECK_LENGTH :])
    assert CC.score_copying(_induction, x, CC.CHECK_LENGTH, 12, 30).top1_second_copy > 0.95


def test_bad_probe_shapes_are_refused():
    import pytest

    from hillclimb.errors import HillclimbError

    with pytest.raises(HillclimbError, match="length >= 2"):
        CC.copy_rows(torch.arange(10), 2, 1, 0)
    with pytest.raises(HillclimbError, match="2 ordinary"):
        CC.copy_rows(torch.arange(1), 2, 8, 0)


def _pretrain_cfg(root: Path, out: Path, warmup: int) -> TrainConfig:
    return TrainConfig(
        preset="thinking-micro", data=root / "data", tokenizer=root / "tokenizer", out=out,
        seq_len=48, batch_size=4, steps=4, copy_warmup_steps=warmup, lr=3e-3, warmup_steps=1,
        val_every=0, val_tokens=256, log_every=2, threads=1, tensorboard=False,
    )  # fmt: skip


def test_pretraining_with_a_warmup_records_and_warns_when_copying_did_not_form(tmp_path, capsys):
    from hillclimb.train import pretrain

    write_shards(tmp_path / "data")
    save_tokenizer_dir(tmp_path)
    r = pretrain.run(_pretrain_cfg(tmp_path, tmp_path / "warm", warmup=2))
    rec = r.extra["copy_check"]
    assert rec["copies"] is False and rec["top1_second_copy"] < 0.1  # 4 micro steps: chance
    assert rec["positions"] == CC.CHECK_ROWS * (CC.CHECK_LENGTH - 1)
    assert json.loads((tmp_path / "warm" / "run.json").read_text())["extra"]["copy_check"] == rec
    err = capsys.readouterr().err
    assert "WARNING: pretrain: the copy warm-up did not form in-context copying" in err
    # the same run resumed: the recorded check, not a second probe or warning
    again = pretrain.run(_pretrain_cfg(tmp_path, tmp_path / "warm", warmup=2).replace(resume=True))
    assert again.extra["copy_check"] == rec and "WARNING" not in capsys.readouterr().err
    # no warm-up, no check (nothing was meant to form)
    plain = pretrain.run(_pretrain_cfg(tmp_path, tmp_path / "plain", warmup=0))
    assert "copy_check" not in plain.extra


def test_the_probe_on_a_fresh_micro_checkpoint_reads_chance(tmp_path):
    from hillclimb.cli import main

    ck = tmp_path / "ck"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(ck), "--seed", "0"]) == 0
    rec = CC.check_copying(ck)
    assert rec["copies"] is False and rec["top1_second_copy"] < 0.1
    assert (rec["rows"], rec["length"]) == (CC.CHECK_ROWS, CC.CHECK_LENGTH)


def _failed() -> dict:
    return CC.copy_verdict(CC.CopyScore(8.0, 7.9, 0.0, 312))


def test_the_climb_terminal_summary_warns_for_a_model_that_cannot_copy():
    from hillclimb.climb.runner import print_summary_table

    summary = {
        "recipe": "tiny-code", "run_dir": "r", "stages_run": [], "total_stage_seconds": 1.0,
        "report": "r/report/report.md",
        "models": {"code-flash": {"pretrain": {"copy_check": _failed()}, "eval": {}},
                   "thinking": {"pretrain": {"copy_check": None}, "eval": {}}},
    }  # fmt: skip
    buf = io.StringIO()
    print_summary_table(summary, file=buf)
    out = " ".join(buf.getvalue().split())  # rich wraps long lines
    assert "WARNING: pretrain-code-flash: the copy warm-up did not form" in out
    assert "pretrain-thinking" not in out


def test_the_report_says_it_at_the_top_and_a_passing_check_beside_the_stage(tmp_path, monkeypatch):
    from hillclimb.climb.report import copy_check_line
    from test_outside_checks_s24_report import _fake_climb, _md

    c = _fake_climb(tmp_path, evals=True)
    m = c.recipe.model_names[0]
    c.results.setdefault(f"pretrain-{m}", {})["extra"] = {"copy_check": _failed()}
    from hillclimb.climb import runner

    # summary.json's record of it (the eval headline is not under test here)
    monkeypatch.setattr(runner, "_current_headline", lambda c, m, ev: {})
    assert runner.build_summary(c, [], 1.0)["models"][m]["pretrain"]["copy_check"] == _failed()
    md = _md(c)
    head = md.split("## Accuracy")[0]
    assert f"**Warning — pretrain-{m}: the copy warm-up did not form in-context copying" in head
    assert "another [pretrain] seed or more copy_warmup_steps" in head
    ok = CC.copy_verdict(CC.CopyScore(8.0, 0.4, 0.81, 312))
    assert copy_check_line("pretrain-x", ok) == (
        "pretrain-x: the copy warm-up formed in-context copying (copy probe top-1 0.810 >= 0.5)."
    )
    assert copy_check_line("pretrain-x", None) is None


def test_copy_warmup_bench_refuses_bad_curricula(monkeypatch, capsys):
    """bench/copy_warmup.py's curriculum flags (session 27's plateau runs): bad values are usage
    errors before any checkpoint is read."""
    from test_outside_checks_s22_bench import _exit

    for argv, msg in (
        (["--span", "9:4"], "--span needs 2 <= LO <= HI"),
        (["--span", "a:b"], "--span expects LO:HI"),
        (["--distinct", "1"], "--distinct must be 0 or >= 2"),
    ):
        assert _exit(monkeypatch, "copy_warmup.py", "--like", "/nonexistent", *argv).code == 2
        assert msg in capsys.readouterr().err


def test_the_html_report_says_it_beside_the_pretraining_curve(tmp_path):
    """report.html shows the copy check under the pre-training loss curve, as report.md does
    (a failed warm-up in bold); a run without a check shows no such line."""
    import json

    from hillclimb.climb.html_report import write_html_report
    from test_report_html import _parse, make_climb_run

    run = make_climb_run(tmp_path / "run")
    plain = "".join(_parse(write_html_report(run, tmp_path / "a.html")).text)
    assert "copy warm-up" not in plain
    marker = run / "04-pretrain-m" / "_stage.json"
    rec = json.loads(marker.read_text())
    rec["result"] = {"extra": {"copy_check": _failed()}}
    marker.write_text(json.dumps(rec))
    page = (tmp_path / "b.html").resolve()
    write_html_report(run, page)
    html = page.read_text()
    assert "<b>Warning — pretrain-m: the copy warm-up did not form in-context copying" in html
