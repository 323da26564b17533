"""Outside checks (session 29) of `copy_warmup_weight_decay`: the weight decay of the decay group
(matrices) during pre-training's copy warm-up, fixed or adaptive, the run's `weight_decay` after
it. Why it exists: at decay 0.1 the copy loss drifts down slowly where at 0 it breaks (seeds 1-2
passed the probe at step 450 at 0, not by 1,500 at 0.1; docs/LOG.md, session 28). The decay in
force follows the warm-up's end, which is checkpoint state, so a killed run resumes bitwise."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest

import hillclimb
import test_outside_checks_s28_copyuntil as copyuntil
from _train_util import save_tokenizer_dir, write_shards
from hillclimb.errors import ConfigError
from hillclimb.train import TrainConfig
from hillclimb.train import copy_check as CC
from hillclimb.train.logging import read_jsonl
from test_outside_checks_s28_copyuntil import _curve, _run_cli, _weights

# the subprocesses import the hillclimb these tests import (PYTHONPATH may name another tree)
SRC = str(Path(hillclimb.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("s29warmupwd")
    write_shards(r / "data", n_train=120, n_val=20)
    save_tokenizer_dir(r)
    return r


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    """Session 28's copy warm-up run (`copyuntil._cfg`) without checkpoints, decay 0.1."""
    return copyuntil._cfg(root, out, **{"ckpt_every": 0, "weight_decay": 0.1, **kw})


# ---- validation and the flag -----------------------------------------------------------------
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_a_bad_warmup_decay_is_refused_with_the_option_named(bad):
    with pytest.raises(ConfigError, match="copy_warmup_weight_decay must be a finite number >= 0"):
        TrainConfig(steps=10, copy_warmup_steps=5, copy_warmup_weight_decay=bad)


def test_the_warmup_decay_is_typed_a_pretraining_option_and_unset_by_default():
    assert TrainConfig().copy_warmup_weight_decay is None  # the old behaviour: weight_decay
    assert TrainConfig(copy_warmup_weight_decay=0).copy_warmup_weight_decay == 0
    with pytest.raises(ConfigError, match="copy_warmup_weight_decay"):
        TrainConfig.from_dict({"steps": 10, "copy_warmup_weight_decay": "none"})
    from hillclimb.train.config import SFTConfig

    with pytest.raises(ConfigError, match="copy_warmup_weight_decay is a pre-training option"):
        SFTConfig(copy_warmup_weight_decay=0.0)


def test_the_cli_flag_reaches_the_config(tmp_path, capsys):
    from hillclimb.cli import build_parser, main

    ns = build_parser().parse_args(["train", "--copy-warmup-weight-decay", "0"])
    assert ns.copy_warmup_weight_decay == 0.0
    assert build_parser().parse_args(["train"]).copy_warmup_weight_decay is None
    argv = ["train", "--preset", "thinking-micro", "--data", str(tmp_path / "none"), "--out",
            str(tmp_path / "o"), "--steps", "10", "--copy-warmup-steps", "6",
            "--copy-warmup-weight-decay", "-1"]  # fmt: skip
    assert main(argv) != 0
    assert "copy_warmup_weight_decay must be a finite number >= 0" in capsys.readouterr().err


# ---- in a real run ---------------------------------------------------------------------------
def _decay_per_step(monkeypatch) -> list[list[float]]:
    """The AdamW groups' weight decay as each optimizer step is taken (recorded, not changed)."""
    from hillclimb.train.loop import Trainer

    seen: list[list[float]] = []
    update = Trainer.update

    def recording(self, *a, **kw):
        seen.append([g["weight_decay"] for g in self.optimizers[0].param_groups])
        return update(self, *a, **kw)

    monkeypatch.setattr(Trainer, "update", recording)
    return seen


@pytest.mark.parametrize("threshold", [0.0, 2.0], ids=["ends-early", "runs-to-max"])
def test_the_decay_group_uses_the_warmup_decay_until_the_end_then_the_runs(
    root, tmp_path, monkeypatch, threshold
):
    from hillclimb.train import pretrain

    monkeypatch.setattr(CC, "COPY_THRESHOLD", threshold)
    seen = _decay_per_step(monkeypatch)
    r = pretrain.run(_cfg(root, tmp_path / "run", copy_warmup_weight_decay=0.0))
    end = 2 if threshold == 0.0 else 8
    assert r.extra["copy_warmup"]["end"] == end
    assert len(seen) == 10
    # group 0: matrices (decay), group 1: norms, embeddings (never decayed)
    assert [s[0] for s in seen] == [0.0] * end + [0.1] * (10 - end)
    assert all(s[1] == 0.0 for s in seen)
    rec = json.loads((tmp_path / "run" / "run.json").read_text())["extra"]["copy_warmup"]
    assert rec["weight_decay"] == 0.0
    conf = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert conf["copy_warmup_weight_decay"] == 0.0 and conf["weight_decay"] == 0.1


def test_zero_decay_during_a_whole_run_warmup_is_weight_decay_zero_bitwise(root, tmp_path):
    """A fixed warm-up over every step at warm-up decay 0 trains exactly as weight_decay 0; the
    unset option (and one equal to weight_decay) trains exactly as before, and decay matters
    here at all (the default run differs)."""
    from hillclimb.train import pretrain

    fixed = dict(copy_warmup_steps=10, copy_warmup_check_every=0)
    pretrain.run(_cfg(root, tmp_path / "warm0", copy_warmup_weight_decay=0.0, **fixed))
    pretrain.run(_cfg(root, tmp_path / "wd0", weight_decay=0.0, **fixed))
    pretrain.run(_cfg(root, tmp_path / "unset", **fixed))
    pretrain.run(_cfg(root, tmp_path / "same", copy_warmup_weight_decay=0.1, **fixed))
    assert _weights(tmp_path / "warm0") == _weights(tmp_path / "wd0")
    assert _weights(tmp_path / "unset") == _weights(tmp_path / "same")
    assert _weights(tmp_path / "warm0") != _weights(tmp_path / "unset")
    rec = json.loads((tmp_path / "unset" / "run.json").read_text())["extra"]["copy_warmup"]
    assert rec["weight_decay"] == 0.1  # unset: the run's own decay, said where the end is


def _train_args(root: Path, out: Path, warm_wd: str | None = "0") -> list[str]:
    warm = [] if warm_wd is None else ["--copy-warmup-weight-decay", warm_wd]
    return [*copyuntil._train_args(root, out), "--weight-decay", "0.1", *warm]


@pytest.mark.slow  # ≈15 s: 2 x (a run, a killed run, its resume) as subprocesses
@pytest.mark.parametrize("threshold", [0.0, 2.0], ids=["ends-early", "runs-to-max"])
def test_a_killed_run_resumes_with_the_decay_its_warmup_end_says_bitwise(root, tmp_path, threshold):
    """SIGKILLed while saving step 6, `--resume` from step 4: after an early end (step 2) the
    resumed steps decay at 0.1, inside a warm-up that runs to 8 at 0 then 0.1 — the curve and
    the final weights are the uninterrupted run's, which differ from a run at 0.1 throughout."""
    from hillclimb.train.checkpointing import list_checkpoints

    ref = _run_cli(threshold, *_train_args(root, tmp_path / "ref"))
    assert ref.wait(300) == 0, ref.stderr.read()
    run = tmp_path / "run"
    killed = _run_cli(threshold, *_train_args(root, run), kill_at=6)
    assert killed.wait(300) == -signal.SIGKILL
    assert [s for s, _ in list_checkpoints(run)] == [4] and not (run / "final").exists()
    resumed = _run_cli(threshold, *_train_args(root, run), "--resume")
    assert resumed.wait(300) == 0, resumed.stderr.read()
    rec = json.loads((tmp_path / "ref" / "run.json").read_text())["extra"]["copy_warmup"]
    assert json.loads((run / "run.json").read_text())["extra"]["copy_warmup"] == rec
    assert rec["end"] == (2 if threshold == 0.0 else 8) and rec["weight_decay"] == 0.0
    assert _curve(run) == _curve(tmp_path / "ref")
    assert _weights(run) == _weights(tmp_path / "ref")
    assert all(math.isfinite(r["loss"]) for r in read_jsonl(run / "metrics.jsonl"))
    # the option changed the run (else this test could not tell a wrong decay on resume)
    other = _run_cli(threshold, *_train_args(root, tmp_path / "plain", warm_wd=None))
    assert other.wait(300) == 0, other.stderr.read()
    assert _weights(tmp_path / "plain") != _weights(tmp_path / "ref")
