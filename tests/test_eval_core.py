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


def _tasks(**kw):
    from hillclimb.eval.tasks import TaskEvalConfig

    return TaskEvalConfig(**kw)


def test_task_accuracy_structure_and_determinism(trained: dict) -> None:
    from hillclimb.eval import run_eval

    kw = dict(
        n_per_tier=2,
        families=["arith", "logic", "sequence"],
        tiers=[1, 2],
        max_tokens=6,
        examples=4,
        batch_size=4,
        baseline_train_n=50,
    )
    r1 = run_eval(trained["ckpt"], None, tasks=_tasks(**kw))
    r2 = run_eval(trained["ckpt"], None, tasks=_tasks(**kw))
    t = r1["tasks"]
    assert r1["bpb"] is None
    assert t["settings"]["splits"] == ["heldout", "heldout_phrasing"]
    assert t["n"] == 12 and set(t["by_family_tier"]) == {"arith", "logic", "sequence"}
    assert all(set(cells) == {"1", "2"} for cells in t["by_family_tier"].values())
    assert len(t["cells"]) == 2 * 3 * 2
    for c in t["cells"]:
        assert c["n"] == 2 and 0.0 <= c["accuracy"] <= 1.0
        assert c["max_tokens"] == 6 and c["heldout_family"] == (c["family"] == "sequence")
        b = c["baseline"]
        assert b["best"] == max(
            x for x in (b["lookup"], b["majority"], b["chance"]) if x is not None
        )
        # Every answer stopped by the 6-token budget counts as truncated, not as a plain miss.
        assert c["statuses"].get("truncated", 0) <= c["truncated"]
    logic1 = t["by_family_tier"]["logic"]["1"]["baseline"]
    assert logic1["chance"] == pytest.approx(0.5)  # two-choice questions
    assert t["by_family_tier"]["sequence"]["1"]["baseline"]["lookup"] == 0.0  # never trained
    assert set(t["by_kind_tier"]) == {"reasoning", "heldout_family"}
    # pooled accuracies carry the pooled no-training baseline of the same items (per-cell best,
    # weighted by items): the first split's at the top level, per kind x tier below it
    for split, sv in t["splits"].items():
        mine = [c for c in t["cells"] if c["split"] == split]
        want = sum(c["n"] * c["baseline"]["best"] for c in mine) / sum(c["n"] for c in mine)
        assert sv["baseline"] == pytest.approx(want)
        seq1 = [c for c in mine if c["family"] == "sequence" and c["tier"] == 1]
        assert sv["by_kind_tier"]["heldout_family"]["1"]["baseline"] == pytest.approx(
            seq1[0]["baseline"]["best"]
        )
    assert t["baseline"] == t["splits"][next(iter(t["splits"]))]["baseline"]
    assert sum(t["finish_reasons"].values()) == 24
    assert {s["family"] for s in t["samples"]} == {"arith", "logic", "sequence"}
    # Greedy decoding: the same checkpoint gives the same completions and the same table.
    assert [s["content"] for s in t["samples"]] == [s["content"] for s in r2["tasks"]["samples"]]
    assert t["cells"] == r2["tasks"]["cells"]


def test_auto_max_tokens_and_sampled_pass_at_k(trained: dict) -> None:
    from hillclimb.eval import run_eval
    from hillclimb.problems import generate
    from hillclimb.rl.rollout import cell_max_tokens, reference_tokens
    from hillclimb.serve.engine import Engine

    r = run_eval(
        trained["ckpt"],
        None,
        tasks=_tasks(
            n_per_tier=2,
            families=["arith"],
            tiers=[3],
            splits=["heldout"],
            samples_per_item=3,
            pass_k=[1, 3],
            batch_size=8,
            baseline_train_n=20,
        ),
    )
    (cell,) = r["tasks"]["cells"]
    eng = Engine.from_checkpoint(trained["ckpt"])
    items = generate("arith", 3, 2, 0, "heldout")
    longest = max(reference_tokens(eng.tokenizer, p) for p in items)
    assert cell["max_tokens"] == cell_max_tokens(eng.tokenizer, items, 1.5) >= 1.5 * longest
    # the items' own worked solutions, in this tokenizer: what "tokens rise with tier" is read against
    refs = [reference_tokens(eng.tokenizer, p) for p in items]
    assert cell["reference_tokens"] == pytest.approx(sum(refs) / len(refs))
    pk = cell["pass_at_k"]
    assert set(pk) == {"1", "3"} and 0.0 <= pk["1"] <= pk["3"] <= 1.0
    assert cell["sampled"]["samples_per_item"] == 3


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
            "--baseline-train-n",
            "10",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "heldout_phrasing" in out and "baseline" in out and "arith" in out


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
        run_eval(trained["ckpt"], None, tasks=_tasks(families=["nonsense"]))
    with pytest.raises(HillclimbError, match="unknown split"):
        run_eval(trained["ckpt"], None, tasks=_tasks(splits=["test"]))
    with pytest.raises(HillclimbError, match="sample_n_per_tier"):
        run_eval(trained["ckpt"], None, tasks=_tasks(samples_per_item=2, sample_n_per_tier=0))
    with pytest.raises(HillclimbError, match="pass@5"):
        run_eval(trained["ckpt"], None, tasks=_tasks(samples_per_item=2, pass_k=[5]))
    # Shards tokenized with another tokenizer (different vocabulary) are refused.
    from hillclimb.tokenizer.train import train_tokenizer

    other = train_tokenizer(["def f(x):\n    return x + 1\n"] * 50, vocab_size=300)
    bad = write_shards(tmp_path / "other", n_train=50, n_val=20, tok=other)
    with pytest.raises(HillclimbError, match="vocabulary"):
        run_eval(trained["ckpt"], bad, accuracy=False)
    # Same vocabulary size, another tokenizer: refused without suggesting a flag `eval` lacks
    # (only `train` has --allow-tokenizer-mismatch).
    other_tok = tmp_path / "other_tok"
    shutil.copytree(trained["data"], other_tok)
    meta_file = next(other_tok.rglob("meta.json"))
    meta = json.loads(meta_file.read_text())
    meta["tokenizer_sha256"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
    assert (
        main(["eval", "--model", str(trained["ckpt"]), "--data", str(other_tok), "--no-tasks"]) == 2
    )
    err = capsys.readouterr().err
    assert "different tokenizer" in err and "re-tokenize" in err
    assert "--allow-tokenizer-mismatch" not in err
    # The CLI prints it as one line and exits 2.
    broken = tmp_path / "broken"
    shutil.copytree(trained["ckpt"], broken)
    (broken / "config.json").unlink()
    assert main(["eval", "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hillclimb: error:") and "config.json" in err and err.count("\n") == 1


def test_cell_token_figures_count_correct_answers_only() -> None:
    """tokens_per_correct and reasoning_tokens_per_correct average over the correct answers only
    (a truncated miss is long and must not count); mean_completion_tokens over all."""
    from types import SimpleNamespace as N

    from hillclimb.eval.tasks import TaskEvalConfig, _cell

    def r(ok: bool, comp: int, rea: int) -> N:
        status = "ok" if ok else "truncated"
        return N(passed=ok, truncated=not ok, status=status, completion_tokens=comp,
                 reasoning_tokens=rea)  # fmt: skip

    c = _cell([r(True, 30, 20), r(True, 20, 10), r(False, 50, 50)], [], [[], [], []],
              TaskEvalConfig())  # fmt: skip
    assert c["tokens_per_correct"] == 25.0 and c["reasoning_tokens_per_correct"] == 15.0
    assert c["mean_completion_tokens"] == pytest.approx(100 / 3)
    none = _cell([r(False, 50, 50)], [], [[]], TaskEvalConfig())
    assert none["tokens_per_correct"] is None and none["reasoning_tokens_per_correct"] is None
