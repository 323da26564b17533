"""2 processes on CPU (torchrun, gloo): DDP and FSDP2 give the 1-process loss curve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _train_util import save_tokenizer_dir, write_shards
from hillclimb.train.logging import read_jsonl

SRC = str(Path(__file__).resolve().parents[1] / "src")
ARGS = [
    "--preset",
    "thinking-micro",
    "--seq-len",
    "32",
    "--batch-size",
    "4",
    "--micro-batch-size",
    "2",
    "--steps",
    "4",
    "--warmup-steps",
    "1",
    "--val-every",
    "2",
    "--val-tokens",
    "256",
    "--threads",
    "1",
    "--no-tensorboard",
    "--lr",
    "5e-3",
]


def _run(root: Path, out: str, nproc: int, *extra: str) -> subprocess.CompletedProcess:
    # TMPDIR: torchrun's agent leaves a torchelastic_* directory in the temp dir; keep it in root
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "TMPDIR": str(root)}
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    cmd = [
        *launcher,
        "-m",
        "hillclimb",
        "train",
        "--data",
        str(root / "data"),
        "--tokenizer",
        str(root / "tokenizer"),
        "--out",
        str(root / out),
        *ARGS,
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    write_shards(root / "data")
    save_tokenizer_dir(root)
    p = _run(root, "one", 1)
    assert p.returncode == 0, p.stderr
    return root, read_jsonl(root / "one" / "metrics.jsonl"), read_jsonl(root / "one" / "val.jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_match_one_process(single, mode):
    root, ref, ref_val = single
    p = _run(root, mode, 2, "--distributed", mode)
    assert p.returncode == 0, p.stderr[-3000:]
    got = read_jsonl(root / mode / "metrics.jsonl")
    assert len(got) == len(ref) == 4
    for a, b in zip(ref, got, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)
        assert b["tokens"] == a["tokens"]
    gv = read_jsonl(root / mode / "val.jsonl")
    assert [round(x["val_loss"], 4) for x in gv] == [round(x["val_loss"], 4) for x in ref_val]
    # rank 0 wrote one full (unsharded) checkpoint that loads like any other
    import hillclimb

    model = hillclimb.load_model(root / mode / "final")
    assert sum(p.numel() for p in model.parameters()) > 0
    cfg = (root / mode / "config.json").read_text()
    assert f'"mode": "{mode}"' in cfg and '"world_size": 2' in cfg
