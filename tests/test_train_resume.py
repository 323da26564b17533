"""Crash safety and exact resume: kill -9 during a checkpoint save, resume, compare bitwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _train_util import save_tokenizer_dir, write_shards
from hillclimb.train.checkpointing import KILL_ENV, list_checkpoints
from hillclimb.train.logging import read_jsonl

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _train(
    root: Path, out: str, *extra: str, env_extra: dict | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, **(env_extra or {})}
    env.pop(KILL_ENV, None) if not env_extra else None
    cmd = [
        sys.executable,
        "-m",
        "hillclimb",
        "train",
        "--preset",
        "code-flash-micro",
        "--data",
        str(root / "data"),
        "--tokenizer",
        str(root / "tokenizer"),
        "--out",
        str(root / out),
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--micro-batch-size",
        "2",
        "--steps",
        "7",
        "--warmup-steps",
        "2",
        "--ckpt-every",
        "2",
        "--keep-last",
        "2",
        "--val-every",
        "3",
        "--val-tokens",
        "256",
        "--threads",
        "1",
        "--no-tensorboard",
        "--optimizer",
        "muon",
        "--set",
        "bias_balancing=true",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_kill_during_save_then_resume_matches_uninterrupted_run_bitwise(tmp_path):
    write_shards(tmp_path / "data")
    save_tokenizer_dir(tmp_path)
    ref = _train(tmp_path, "ref")
    assert ref.returncode == 0, ref.stderr

    crashed = _train(tmp_path, "run", env_extra={KILL_ENV: "4"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    # the interrupted save left no step_000004 and the previous checkpoint intact
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [2]
    leftovers = [
        p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")
    ]
    assert leftovers, "expected the killed save's temp directory"
    assert not (tmp_path / "run" / "final").exists()

    again = _train(tmp_path, "run")  # without --resume: refuses to clobber the run
    assert again.returncode == 2 and "--resume" in again.stderr

    resumed = _train(tmp_path, "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]
    a = read_jsonl(tmp_path / "ref" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [x["step"] for x in b] == list(range(1, 8))
    keys = ("loss", "aux", "lr", "grad_norm", "balance", "tokens")
    assert [[x[k] for k in keys] for x in a] == [[x[k] for k in keys] for x in b]  # bitwise
    va = read_jsonl(tmp_path / "ref" / "val.jsonl")
    vb = read_jsonl(tmp_path / "run" / "val.jsonl")
    assert [(x["step"], x["val_loss"]) for x in va] == [(x["step"], x["val_loss"]) for x in vb]
    assert (tmp_path / "ref" / "final" / "model.safetensors").read_bytes() == (
        tmp_path / "run" / "final" / "model.safetensors"
    ).read_bytes()
    # keep-last pruning
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [6, 7]
    # resuming a finished run is a no-op that returns its summary
    done = _train(tmp_path, "run", "--resume")
    assert done.returncode == 0 and "7 steps" in done.stderr
