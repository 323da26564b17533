"""Pre-training and SFT end to end on micro presets: learning, artifacts, pre-flight errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hillclimb
from _train_util import save_tokenizer_dir, write_shards
from hillclimb.errors import HillclimbError
from hillclimb.tokenizer.io import bytelevel_tokenizer
from hillclimb.train import SFTConfig, TrainConfig
from hillclimb.train.logging import read_jsonl

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _cfg(root: Path, **kw) -> TrainConfig:
    base = dict(
        preset="thinking-micro",
        data=root / "data",
        tokenizer=root / "tokenizer",
        out=root / "run",
        seq_len=32,
        batch_size=8,
        micro_batch_size=4,
        steps=40,
        lr=1e-2,
        warmup_steps=4,
        val_every=20,
        val_tokens=512,
        log_every=10,
        threads=1,
        tensorboard=True,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from hillclimb.train import pretrain

    root = tmp_path_factory.mktemp("pre")
    write_shards(root / "data")
    save_tokenizer_dir(root)
    result = pretrain.run(_cfg(root, model_overrides={"bias_balancing": True}))
    return root, result


def test_pretrain_learns_and_writes_the_run_directory(pretrained):
    root, r = pretrained
    run = root / "run"
    assert r.steps == 40 and r.tokens == 40 * 8 * 32
    m = read_jsonl(run / "metrics.jsonl")
    assert [x["step"] for x in m] == list(range(1, 41))
    assert m[-1]["loss"] < m[0]["loss"] - 1.0
    assert set(m[0]) >= {"step", "loss", "lr", "grad_norm", "tokens", "tok_s", "aux", "balance"}
    v = read_jsonl(run / "val.jsonl")
    assert [x["step"] for x in v] == [20, 40]
    assert r.val_bpb == v[-1]["val_bpb"] and r.val_bpb < r.extra["unigram_bpb"]  # beat unigram
    assert read_jsonl(run / "routing.jsonl")[0]["layers"][0]["tokens_per_expert"]
    assert list((run / "tb").iterdir())
    assert json.loads((run / "run.json").read_text())["steps"] == 40
    # the consumer checkpoint loads through the public API and is bitwise the trained weights
    model = hillclimb.load_model(run / "final")
    assert model.cfg.vocab_size == 320  # padded_vocab(271)
    state = torch.load(run / "checkpoints" / "step_000040" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 40 and len(state["optimizers"]) == 1
    # aux-loss-free balancing ran: selection biases moved and are stored
    assert any(float(b.abs().sum()) > 0 for b in state["expert_bias"].values())
    assert torch.equal(model.layers[0].mlp.gate.expert_bias, state["expert_bias"]["0"])
    info = json.loads((run / "final" / "hillclimb.json").read_text())
    assert info["lineage"]["stage"] == "pretrain"


def test_sft_trains_only_on_assistant_tokens_from_a_checkpoint(pretrained, tmp_path):
    from hillclimb.serve.budget import BUDGET_NOTE, with_budget_note
    from hillclimb.train import sft

    root, _ = pretrained
    recs = []
    for a in range(10):
        for b in range(10):
            recs.append(
                {
                    "messages": [
                        {"role": "user", "content": f"{a}+{b}"},
                        {
                            "role": "assistant",
                            "reasoning_content": f"{a} plus {b}",
                            "content": str(a + b),
                        },
                    ]
                }
            )
    recs.append({"fim": {"prefix": "the cat ", "middle": "sat", "suffix": " on"}})
    # budget-noted examples make the note a trained input: the checkpoint says so (serving)
    recs[:3] = [{"messages": with_budget_note(r["messages"], 9)} for r in recs[:3]]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    cfg = SFTConfig(
        init=root / "run" / "final",
        sft_data=[data],
        out=tmp_path / "sft",
        seq_len=64,
        batch_size=8,
        steps=25,
        lr=5e-3,
        val_every=0,
        threads=1,
        tensorboard=False,
    )
    r = sft.run(cfg)
    m = read_jsonl(tmp_path / "sft" / "metrics.jsonl")
    assert m[-1]["loss"] < m[0]["loss"]
    assert r.extra["sft_kinds"]["chat"] >= 90 and r.extra["sft_val_examples"] >= 1
    assert r.val_bpb is not None and r.val_bpb > 0
    info = json.loads((tmp_path / "sft" / "final" / "hillclimb.json").read_text())
    assert info["lineage"]["stage"] == "sft" and info["lineage"]["parent"].endswith("final")
    assert info["budget_conditioning"] == {"note": BUDGET_NOTE, "sft_examples": 3}
    assert r.extra["budget_noted"] == 3


def test_sft_may_extend_the_context_and_nothing_else(pretrained, tmp_path):
    """Tool episodes can be longer than pre-training's context: fine-tuning may raise
    `max_seq_len` (RoPE angles are per position, no weight changes shape); any other change of
    the model config is refused before any work."""
    from hillclimb.model.checkpoint import load_config
    from hillclimb.train import sft

    root, _ = pretrained
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"text": f"{i} {i + 1} {i + 2}"}) + "\n" for i in range(40)))
    ctx = load_config(root / "run" / "final")[0].max_seq_len
    kw = dict(init=root / "run" / "final", sft_data=[data], seq_len=32, batch_size=4, steps=2,
              val_every=0, threads=1, tensorboard=False)  # fmt: skip
    sft.run(SFTConfig(out=tmp_path / "long", model_overrides={"max_seq_len": 2 * ctx}, **kw))
    assert load_config(tmp_path / "long" / "final")[0].max_seq_len == 2 * ctx
    info = json.loads((tmp_path / "long" / "final" / "hillclimb.json").read_text())
    assert "budget_conditioning" not in info  # no budget notes in its data
    with pytest.raises(HillclimbError, match="different model config"):
        sft.run(SFTConfig(out=tmp_path / "deep", model_overrides={"top_k": 1}, **kw))
    assert not (tmp_path / "deep" / "final").exists()


def test_sft_runs_with_length_buckets_and_copy_rows(pretrained, tmp_path):
    """Steps alternate between short rows (more of them) and long rows; copy rows take the
    width of whichever rows a step has; the trainer takes both shapes."""
    from hillclimb.train import sft

    root, _ = pretrained
    data = tmp_path / "sft.jsonl"
    recs = [{"text": " ".join(str(i + k) for k in range(4))} for i in range(60)]
    recs += [{"text": " ".join(str(i + k) for k in range(18))} for i in range(20)]
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    cfg = SFTConfig(init=root / "run" / "final", sft_data=[data], out=tmp_path / "b", seq_len=96,
                    short_seq_len=24, batch_size=2, steps=12, copy_fraction=0.3, lr=5e-3,
                    val_every=0, threads=1, tensorboard=False)  # fmt: skip
    r = sft.run(cfg)
    m = read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert r.steps == 12 and all(math.isfinite(x["loss"]) for x in m)
    batches = sft.build_task(cfg).batches
    shapes = {batches(step)[0].shape for step in range(12)}
    assert shapes == {(8, 25), (2, 97)}  # 2 * 96 // 24 short rows, or 2 long ones


def test_muon_and_wsd_run(pretrained, tmp_path):
    from hillclimb.train import pretrain

    root, _ = pretrained
    r = pretrain.run(
        _cfg(
            root,
            out=tmp_path / "muon",
            optimizer="muon",
            schedule="wsd",
            steps=12,
            val_every=0,
            tensorboard=False,
        )
    )
    m = read_jsonl(tmp_path / "muon" / "metrics.jsonl")
    assert m[-1]["loss"] < m[0]["loss"] and r.steps == 12
    st = torch.load(
        tmp_path / "muon" / "checkpoints" / "step_000012" / "trainer_state.pt", weights_only=True
    )
    assert len(st["optimizers"]) == 2


def test_pretrain_runs_on_copy_rows(pretrained, tmp_path):
    """copy_fraction = 1: every row is spans and their repeats with loss on the repeats only;
    the masked batches go through the ordinary trainer (finite, falling loss). Whether copying
    forms is a question for real runs (`bench/copy_probe.py`), not 30 micro steps."""
    from hillclimb.train import pretrain

    root, _ = pretrained
    r = pretrain.run(
        _cfg(
            root,
            out=tmp_path / "copy",
            copy_fraction=1.0,
            steps=30,
            seq_len=48,
            lr=3e-3,
            val_every=0,
            tensorboard=False,
        )  # fmt: skip
    )
    m = read_jsonl(tmp_path / "copy" / "metrics.jsonl")
    assert r.steps == 30 and all(math.isfinite(x["loss"]) for x in m)
    assert m[-1]["loss"] < m[0]["loss"] - 1.0


def test_preflight_errors_come_before_any_work(pretrained, tmp_path):
    from hillclimb.train import pretrain

    root, _ = pretrained
    # shards tokenized with a different vocabulary than the tokenizer
    other = tmp_path / "other"
    tok = bytelevel_tokenizer()
    tok.hf.add_tokens(["<extra_a>", "<extra_b>"])
    write_shards(other / "data", tok=tok)
    with pytest.raises(HillclimbError, match="vocabulary"):
        pretrain.run(_cfg(root, data=other / "data", out=tmp_path / "x1"))
    # same size, different tokenizer content -> hash mismatch
    meta = json.loads((root / "data" / "shards" / "meta.json").read_text())
    meta["tokenizer_sha256"] = "0" * 64
    bad = tmp_path / "bad" / "shards"
    bad.mkdir(parents=True)
    for f in (root / "data" / "shards").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(HillclimbError, match="different tokenizer"):
        pretrain.run(_cfg(root, data=tmp_path / "bad", out=tmp_path / "x2"))
    with pytest.raises(HillclimbError, match="no tokenized shards"):
        pretrain.run(_cfg(root, data=tmp_path / "nothing", out=tmp_path / "x3"))
    # a model that cannot fit in memory is refused with an estimate
    with pytest.raises(HillclimbError, match="needs about"):
        pretrain.run(
            _cfg(root, preset="thinking-full", seq_len=4096, batch_size=64, out=tmp_path / "x4")
        )
    # unwritable output directory
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(HillclimbError, match="not writable"):
            pretrain.run(_cfg(root, out=ro / "run"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HillclimbError, match="not writable"):
        pretrain.run(_cfg(root, out=blocker / "run"))
    # an existing run is not silently overwritten
    with pytest.raises(HillclimbError, match="--resume"):
        pretrain.run(_cfg(root))
    assert not (tmp_path / "x1").exists() or not any((tmp_path / "x1").iterdir())


def test_cli_reports_bad_input_as_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "hillclimb",
            "train",
            "--preset",
            "thinking-micro",
            "--data",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2
    assert (
        p.stderr.startswith("hillclimb: error:")
        and "tokenizer" in p.stderr
        and "Traceback" not in p.stderr
    )


def test_sft_problems_with_budget_notes_use_the_models_tokenizer(pretrained, tmp_path):
    """`hillclimb sft --problems '{..., "budget_fraction": 1}'`: the run's tokenizer measures
    each solution (no separate tokenizer to pass), and the task marks the checkpoint."""
    pytest.importorskip("hillclimb.problems")
    from hillclimb.train import sft

    root, _ = pretrained
    spec = {"families": ["arith"], "tiers": [1], "n": 6, "budget_fraction": 1.0}
    cfg = SFTConfig(init=root / "run" / "final", problems=spec, out=tmp_path / "p", seq_len=256,
                    batch_size=2, steps=1, val_every=0, threads=1, tensorboard=False)  # fmt: skip
    task = sft.build_task(cfg)
    assert task.meta["budget_conditioning"]["sft_examples"] == 6
    assert task.summary["budget_noted"] == 6


def test_sft_decontaminate_drops_records_holding_an_evaluation_item(pretrained, tmp_path, capsys):
    """`hillclimb sft --data FILE --decontaminate PROBES`: a user's SFT file never passed through
    the data build, so its records are judged by the same probe index (`probes.npz`) on every
    string they could train on; the contaminated ones are dropped and the run (and checkpoint)
    says what was judged against what. Without the flag the run says it was not checked."""
    from hillclimb.data.decontam import Probe, ProbeIndex
    from hillclimb.errors import ConfigError
    from hillclimb.train import sft
    from hillclimb.train.cli import _print_decontamination

    root, _ = pretrained
    item = (
        "def separate_paren_groups(paren_string):\n    result = []\n    depth = 0\n"
        "    for c in paren_string:\n        if c == '(':\n            depth += 1\n"
    )
    build = tmp_path / "corpus"
    build.mkdir()
    ProbeIndex.build([Probe("HumanEval/1", "suite:humaneval", item)], 13, 8).save(
        build / "probes.npz"
    )
    clean = [{"text": f"{i} plus {i + 1} is {2 * i + 1}"} for i in range(30)]
    leaks = [
        {"messages": [{"role": "user", "content": "solve it"},
                      {"role": "assistant", "content": "Here:\n" + item}]},
        {"messages": [{"role": "user", "content": "x"},
                      {"role": "assistant", "content": "",
                       "tool_calls": [{"function": {"name": "edit",
                                                    "arguments": {"new_str": item}}}]}]},
        {"text": item.replace("\n", "\r\n")},
    ]  # fmt: skip
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in clean[:15] + leaks + clean[15:]))
    kw = dict(init=root / "run" / "final", sft_data=[data], out=tmp_path / "s", seq_len=64,
              batch_size=2, steps=1, val_every=0, threads=1, tensorboard=False)  # fmt: skip
    for spec in (build, build / "probes.npz"):
        task = sft.build_task(SFTConfig(decontaminate=str(spec), **kw))
        rep = task.summary["decontamination"]
        assert rep["judged"] == 33 and rep["dropped"] == 3, rep
        assert rep["by_origin"] == {"suite:humaneval": 3}
        assert [e["record"] for e in rep["examples"]] == [15, 16, 17]
        assert task.summary["sft_examples"] + task.summary["sft_val_examples"] == 30
        assert task.meta["data"]["decontamination"]["dropped"] == 3
        _print_decontamination(rep)
        assert "dropped 3 of 33" in capsys.readouterr().err
    off = sft.build_task(SFTConfig(**kw))
    assert off.summary["decontamination"] == "off"
    _print_decontamination("off")
    assert "not checked against evaluation items" in capsys.readouterr().err
    # bad specs fail when the config is made, before a model or any data is read
    for bad in (tmp_path / "nope.npz", tmp_path, ""):
        with pytest.raises(ConfigError, match="--decontaminate"):
            SFTConfig(decontaminate=str(bad), **kw)
    # a damaged (or older-format) index: a clear error saying how to rebuild it
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not an index")
    with pytest.raises(ConfigError, match="rebuild it"):
        sft.build_task(SFTConfig(decontaminate=str(junk), **kw))
    # a file of nothing but evaluation items is an error, not an empty run
    data.write_text("".join(json.dumps(r) + "\n" for r in leaks))
    with pytest.raises(HillclimbError, match="every one of the 3"):
        sft.build_task(SFTConfig(decontaminate=str(build), **kw))
