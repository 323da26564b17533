"""hillclimb.eval: bits per byte agrees with the trainer's, accuracy tables, CLI, bad input."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _train_util import save_tokenizer_dir, write_shards  # noqa: E402
from hillclimb.cli import main  # noqa: E402
from hillclimb.errors import HillclimbError  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A micro model pre-trained for a few steps on synthetic shards (byte-level tokenizer)."""
    from hillclimb.train import TrainConfig, pretrain

    root = tmp_path_factory.mktemp("evaldata")
    data = write_shards(root / "data", n_train=300, n_val=60)
    tok = save_tokenizer_dir(root)
    cfg = TrainConfig(
        preset="thinking-micro",
        data=data,
        tokenizer=tok,
        out=root / "run",
        seq_len=64,
        batch_size=8,
        steps=30,
        lr=3e-3,
        warmup_steps=2,
        val_every=0,
        val_tokens=1024,
        tensorboard=False,
        seed=0,
    )
    res = pretrain.run(cfg)
    return {"root": root, "data": data, "ckpt": Path(res.final_dir), "res": res}


def test_bpb_matches_trainer_and_beats_unigram(trained: dict) -> None:
    from hillclimb.eval import run_eval

    r = run_eval(trained["ckpt"], trained["data"], seq_len=64, val_tokens=1024, accuracy=False)
    b = r["bpb"]
    # Same fixed windows, same model: the trainer's final val bpb and ours agree.
    assert b["val_bpb"] == pytest.approx(trained["res"].val_bpb, rel=1e-5)
    assert b["unigram_bpb"] == pytest.approx(trained["res"].extra["unigram_bpb"], rel=1e-9)
    # 30 steps on a tiny repetitive language already beat token frequencies.
    assert b["val_bpb"] < b["unigram_bpb"]
    assert r["tasks"] is None and b["val_tokens"] == 1024


def test_task_accuracy_structure_and_determinism(trained: dict) -> None:
    from hillclimb.eval import run_eval

    kw = dict(
        n_per_tier=2,
        families=["arith", "logic"],
        tiers=[1, 2],
        max_tokens=6,
        samples=2,
        batch_size=4,
    )
    r1 = run_eval(trained["ckpt"], None, **kw)
    r2 = run_eval(trained["ckpt"], None, **kw)
    t = r1["tasks"]
    assert r1["bpb"] is None
    assert t["n"] == 8 and set(t["by_family_tier"]) == {"arith", "logic"}
    assert all(set(cells) == {"1", "2"} for cells in t["by_family_tier"].values())
    assert sum(c["n"] for cells in t["by_family_tier"].values() for c in cells.values()) == 8
    assert 0.0 <= t["accuracy"] <= 1.0 and t["settings"]["split"] == "heldout"
    assert len(t["samples"]) == 2 and {s["family"] for s in t["samples"]} == {"arith", "logic"}
    assert sum(t["finish_reasons"].values()) == 8
    # Greedy decoding: the same checkpoint gives the same completions.
    assert [s["content"] for s in t["samples"]] == [s["content"] for s in r2["tasks"]["samples"]]


def test_cli_json_and_out(trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(
        [
            "eval",
            "--model",
            str(trained["ckpt"]),
            "--data",
            str(trained["data"]),
            "--no-tasks",
            "--seq-len",
            "64",
            "--val-tokens",
            "512",
            "--json",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert printed["bpb"]["val_bpb"] == saved["bpb"]["val_bpb"] and math.isfinite(
        saved["bpb"]["val_bpb"]
    )


def test_cli_table(trained: dict, capsys: pytest.CaptureFixture) -> None:
    rc = main(
        [
            "eval",
            "--model",
            str(trained["ckpt"]),
            "--n-per-tier",
            "1",
            "--families",
            "arith",
            "--tiers",
            "1",
            "--max-tokens",
            "4",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "arith" in out


def test_bad_inputs(trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hillclimb.eval import run_eval

    with pytest.raises(HillclimbError, match="checkpoint not found"):
        run_eval(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HillclimbError, match="not a checkpoint"):
        run_eval(tmp_path / "empty")
    with pytest.raises(HillclimbError, match="no tokenized shards"):
        run_eval(trained["ckpt"], tmp_path / "empty", accuracy=False)
    with pytest.raises(HillclimbError, match="unknown problem family"):
        run_eval(trained["ckpt"], None, families=["nonsense"])
    # Shards tokenized with another tokenizer (different vocabulary) are refused.
    from hillclimb.tokenizer.train import train_tokenizer

    other = train_tokenizer(["def f(x):\n    return x + 1\n"] * 50, vocab_size=300)
    bad = write_shards(tmp_path / "other", n_train=50, n_val=20, tok=other)
    with pytest.raises(HillclimbError, match="vocabulary"):
        run_eval(trained["ckpt"], bad, accuracy=False)
    # The CLI prints it as one line and exits 2.
    broken = tmp_path / "broken"
    shutil.copytree(trained["ckpt"], broken)
    (broken / "config.json").unlink()
    assert main(["eval", "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hillclimb: error:") and "config.json" in err and err.count("\n") == 1
