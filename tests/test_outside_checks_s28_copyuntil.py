"""Outside checks (session 28) of the adaptive copy warm-up (`copy_warmup_check_every`): the
warm-up probes copying every K steps and ends at the first check that passes, `copy_warmup_steps`
being its maximum. Its end is run state: a run killed after it resumes bitwise; checks draw
nothing from the training RNG streams and change nothing in the trajectory; after an early end
the batches mix corpus and copy rows and the schedule still decays to its end."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hillclimb
from _train_util import save_tokenizer_dir, write_shards
from hillclimb.errors import ConfigError
from hillclimb.train import TrainConfig
from hillclimb.train import copy_check as CC
from hillclimb.train.logging import read_jsonl

# the subprocesses import the hillclimb these tests import (PYTHONPATH may name another tree)
SRC = str(Path(hillclimb.__file__).resolve().parents[1])
# the real CLI with the pass threshold set first: a micro model never copies (chance, ~0.00), so
# 0.0 makes the first check pass (an early end) and 2.0 makes none pass (the maximum)
WRAP = (
    "import sys; import hillclimb.train.copy_check as C; C.COPY_THRESHOLD = float(sys.argv[1]); "
    "from hillclimb.cli import main; sys.exit(main(sys.argv[2:]))"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("s28copyuntil")
    write_shards(r / "data", n_train=120, n_val=20)
    save_tokenizer_dir(r)
    return r


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        preset="thinking-micro", data=root / "data", tokenizer=root / "tokenizer", out=out,
        seq_len=48, batch_size=4, steps=10, copy_warmup_steps=8, copy_warmup_check_every=2,
        copy_fraction=0.5, lr=1e-2, warmup_steps=1, val_every=0, val_tokens=64, log_every=1,
        ckpt_every=2, keep_last=10, threads=1, tensorboard=False,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _curve(run: Path) -> list[dict]:
    drop = ("tok_s", "elapsed_s")
    return [{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(run / "metrics.jsonl")]  # fmt: skip


def _weights(run: Path) -> bytes:
    return (run / "final" / "model.safetensors").read_bytes()


# ---- the warm-up's own logic ---------------------------------------------------------------------
def test_the_warmup_ends_at_the_first_passing_check_or_its_maximum():
    readings = iter([0.0, 0.2, 0.6, 0.9])
    cw = CC.CopyWarmup(max_steps=10, check_every=2, threshold=0.5)
    ends = [s for s in range(1, 11) if cw.after_step(s, lambda: next(readings))]
    assert ends == [6] and cw.end == 6 and cw.length() == 6
    assert [(c["step"], c["passed"]) for c in cw.checks] == [(2, False), (4, False), (6, True)]
    assert cw.in_warmup(5) and not cw.in_warmup(6)
    # never passing: it ends at the maximum, every check recorded
    cw = CC.CopyWarmup(max_steps=5, check_every=2, threshold=0.5)
    assert [s for s in range(1, 8) if cw.after_step(s, lambda: 0.1)] == [5]
    assert cw.end == 5 and [c["step"] for c in cw.checks] == [2, 4] and not cw.state()["passed"]
    # check_every 0: the fixed warm-up, no probe ever
    cw = CC.CopyWarmup(max_steps=3, check_every=0)
    assert [s for s in range(1, 6) if cw.after_step(s, lambda: 1 / 0)] == [3]
    # the state round-trips (what the checkpoint carries)
    again = CC.CopyWarmup(max_steps=10, check_every=2, threshold=0.5)
    again.load(json.loads(json.dumps(CC.CopyWarmup(10, 2, 0.5, 4, [{"step": 4, "top1": 0.7, "passed": True}]).state())))  # fmt: skip
    assert again.end == 4 and again.checks[0]["top1"] == 0.7


def test_bad_check_intervals_are_refused_with_the_option_named(tmp_path, capsys):
    with pytest.raises(ConfigError, match="copy_warmup_check_every must be >= 0"):
        TrainConfig(steps=10, copy_warmup_steps=5, copy_warmup_check_every=-1)
    with pytest.raises(ConfigError, match="copy_warmup_check_every"):
        TrainConfig.from_dict({"steps": 10, "copy_warmup_check_every": "often"})
    from hillclimb.cli import build_parser, main

    ns = build_parser().parse_args(
        ["train", "--copy-warmup-steps", "6", "--copy-warmup-check-every", "3"]
    )
    assert ns.copy_warmup_check_every == 3
    # the flag reaches the config's validation (before any data is read)
    argv = ["train", "--preset", "thinking-micro", "--data", str(tmp_path / "none"), "--out",
            str(tmp_path / "o"), "--steps", "10", "--copy-warmup-steps", "6",
            "--copy-warmup-check-every", "-3"]  # fmt: skip
    assert main(argv) != 0
    assert "copy_warmup_check_every must be >= 0" in capsys.readouterr().err


# ---- in a real run --------------------------------------------------------------------------------
def test_checks_leave_the_trajectory_and_the_rng_streams_as_they_were(root, tmp_path, monkeypatch):
    """A run whose checks never pass trains exactly as the fixed warm-up of the same length:
    the same curve, weights and saved RNG states (the probe drew nothing from them)."""
    from hillclimb.train import pretrain
    from hillclimb.train.checkpointing import load_trainer_state, step_dir

    monkeypatch.setattr(CC, "COPY_THRESHOLD", 2.0)
    checked = pretrain.run(_cfg(root, tmp_path / "checked"))
    fixed = pretrain.run(_cfg(root, tmp_path / "fixed", copy_warmup_check_every=0))
    rec = checked.extra["copy_warmup"]
    assert rec["end"] == 8 and rec["passed"] is False
    assert [c["step"] for c in rec["checks"]] == [2, 4, 6, 8]
    assert all(0.0 <= c["top1"] < 0.5 for c in rec["checks"])
    assert fixed.extra["copy_warmup"]["checks"] == [] and fixed.extra["copy_warmup"]["end"] == 8
    assert _curve(tmp_path / "checked") == _curve(tmp_path / "fixed")
    assert _weights(tmp_path / "checked") == _weights(tmp_path / "fixed")
    for s in (2, 6, 10):
        a = load_trainer_state(step_dir(tmp_path / "checked", s))["rng"]
        b = load_trainer_state(step_dir(tmp_path / "fixed", s))["rng"]
        assert torch.equal(a["torch"], b["torch"]) and a["python"] == b["python"]
        assert torch.equal(a["numpy"]["key"], b["numpy"]["key"])
    on_disk = json.loads((tmp_path / "checked" / "run.json").read_text())["extra"]
    assert on_disk["copy_warmup"] == rec and "copy_check" in on_disk  # the end check stays


def test_an_early_end_mixes_the_corpus_in_and_the_schedule_still_decays_to_its_end(
    root, tmp_path, monkeypatch
):
    from hillclimb.train import pretrain
    from hillclimb.train.data import PretrainBatches

    monkeypatch.setattr(CC, "COPY_THRESHOLD", 0.0)
    cfg = _cfg(root, tmp_path / "early", copy_fraction=0.0, warmup_steps=2)
    r = pretrain.run(cfg)
    rec = r.extra["copy_warmup"]
    assert rec["end"] == 2 and rec["passed"] and len(rec["checks"]) == 1  # steps stays the total
    assert r.steps == 10
    lrs = [m["lr"] for m in read_jsonl(tmp_path / "early" / "metrics.jsonl")]
    # steps 1-2: the warm-up's own ramp; step 3 on: the schedule from its start (ramp, cosine)
    assert lrs[:2] == pytest.approx([cfg.lr / 2, cfg.lr])
    assert lrs[2:4] == pytest.approx([cfg.lr / 2, cfg.lr])
    assert lrs[-1] == pytest.approx(cfg.lr * cfg.min_lr_ratio)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:], strict=False))
    # the batches the run drew: copy rows only before the end, the corpus alone after it
    # (copy_fraction 0); a fixed warm-up of 8 would have drawn copy rows through step 7
    from hillclimb.data.shards import ShardReader

    train = ShardReader(root / "data").split("train")
    warm = CC.CopyWarmup(8, 2, 0.0, end=2)
    b = PretrainBatches(train, 48, 4, cfg.seed, 0.0, 8, warmup=warm)
    fixed = PretrainBatches(train, 48, 4, cfg.seed, 0.0, 8)
    corpus = PretrainBatches(train, 48, 4, cfg.seed)
    assert b.batch_and_mask(1)[1] is not None and b.batch_and_mask(1)[1].min() == 0
    assert np.array_equal(b.batch(2), corpus.batch(2))
    assert not np.array_equal(fixed.batch(2), corpus.batch(2))


def _run_cli(threshold: float, *args: str, kill_at: int | None = None) -> subprocess.Popen:
    from hillclimb.train.checkpointing import KILL_ENV

    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    return subprocess.Popen(
        [sys.executable, "-c", WRAP, str(threshold), *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _train_args(root: Path, out: Path) -> list[str]:
    return ["train", "--preset", "thinking-micro", "--data", str(root / "data"),
            "--tokenizer", str(root / "tokenizer"), "--out", str(out), "--seq-len", "48",
            "--batch-size", "4", "--steps", "10", "--copy-warmup-steps", "8",
            "--copy-warmup-check-every", "2", "--copy-fraction", "0.5", "--lr", "1e-2",
            "--warmup-steps", "1", "--val-every", "0", "--val-tokens", "64", "--log-every", "1",
            "--ckpt-every", "2", "--keep-last", "1", "--threads", "1", "--no-tensorboard"]  # fmt: skip


@pytest.mark.slow  # ≈20 s: 2 x (a run, a killed run, its resume) as subprocesses
@pytest.mark.parametrize("threshold", [0.0, 2.0], ids=["ends-early", "runs-to-max"])
def test_a_run_killed_after_checks_resumes_to_the_uninterrupted_run_bitwise(
    root, tmp_path, threshold
):
    """SIGKILLed while saving step 6 (after the warm-up ended at step 2, or after 3 failed
    checks), `--resume` continues from step 4 with the warm-up's end and checks restored: the
    curve, the final weights and `extra.copy_warmup` are those of the run never interrupted.
    Had the end not been restored, the resumed run would draw copy rows only and hold the rate
    at its peak again until a later check (or step 8)."""
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
    got = json.loads((run / "run.json").read_text())["extra"]["copy_warmup"]
    assert got == rec
    if threshold == 0.0:
        assert rec["end"] == 2 and rec["passed"] and len(rec["checks"]) == 1
    else:
        assert rec["end"] == 8 and not rec["passed"] and len(rec["checks"]) == 4
    assert _curve(run) == _curve(tmp_path / "ref")
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == list(range(1, 11))
    assert _weights(run) == _weights(tmp_path / "ref")
    assert all(math.isfinite(r["loss"]) for r in read_jsonl(run / "metrics.jsonl"))


def test_the_tiny_code_recipe_uses_the_adaptive_warmup():
    """The recipe key reaches the pre-training config (`[pretrain]` = TrainConfig fields): the
    warm-up checks, its maximum leaves at least 400 corpus steps, as the fixed one did."""
    from hillclimb.climb.climb_recipe import load_recipe

    pre = load_recipe("tiny-code").pretrain["code-flash"]
    cfg = TrainConfig.from_dict(pre)
    assert 0 < cfg.copy_warmup_check_every < cfg.copy_warmup_steps
    assert cfg.steps - cfg.copy_warmup_steps >= 400 and 0 < cfg.copy_fraction < 1
