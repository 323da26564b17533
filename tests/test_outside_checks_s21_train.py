"""Outside checks (session 21) of the trainers: a run extended with `--steps` and stopped between
its last checkpoint and publishing `final/`, SFT problem specs and FIM options that were ignored
or crashed, numbers the SFT summary and validation reported for things never measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from _train_util import save_tokenizer_dir, write_shards
from hillclimb.cli import main
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.train import SFTConfig, TrainConfig
from hillclimb.train import checkpointing as ck
from hillclimb.train import loop as L
from hillclimb.train.logging import read_jsonl


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("s21train")
    write_shards(r / "data", n_train=120, n_val=20)
    save_tokenizer_dir(r)
    return r


@pytest.fixture(scope="module")
def base(root) -> Path:
    """A 2-step pre-trained micro checkpoint to fine-tune."""
    from hillclimb.train import pretrain

    return Path(pretrain.run(_cfg(root, root / "base", steps=2)).final_dir)


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("s21rl") / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        preset="thinking-micro", data=root / "data", tokenizer=root / "tokenizer", out=out,
        seq_len=32, batch_size=4, steps=2, lr=1e-2, warmup_steps=1, val_every=0,
        val_tokens=64, log_every=1, threads=1, tensorboard=False,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _chat_file(path: Path, n: int = 24, reply: str | None = None) -> Path:
    with path.open("w") as f:
        for i in range(n):
            a, b = i, (3 * i) % 10
            msgs = [{"role": "user", "content": f"{a}+{b}?"},
                    {"role": "assistant", "content": f"{a + b}" if reply is None else reply}]  # fmt: skip
            f.write(json.dumps({"messages": msgs}) + "\n")
    return path


def _sft(base: Path, out: Path, **kw) -> SFTConfig:
    d = dict(init=base, out=out, seq_len=48, batch_size=2, steps=2, warmup_steps=1,
             val_every=0, threads=1, tensorboard=False)  # fmt: skip
    d.update(kw)
    return SFTConfig(**d)


def _lineage_step(run: Path) -> int:
    return json.loads((run / "final" / "hillclimb.json").read_text())["lineage"]["step"]


class _Killed(BaseException):
    """Stands in for a kill between the last checkpoint and `final/` (not an Exception, so no
    handler on the way swallows it)."""


def _stop_before_publishing(monkeypatch) -> None:
    def stop(*a, **k):
        raise _Killed("stopped before final/ was published")

    monkeypatch.setattr(L.ck, "publish_final", stop)


# ---- an extended run stopped before it published final/ ---------------------------------------
def test_resume_publishes_the_newest_checkpoint_not_the_shorter_runs_record(
    root, tmp_path, monkeypatch
):
    """A finished 2-step run extended to 4 (`--resume --steps 4`) and stopped after its step-4
    checkpoint but before final/ and run.json: `--resume` found the 2-step run.json and final/,
    returned them as the result (steps 2) and never published the step-4 weights."""
    from hillclimb.train import pretrain

    out = tmp_path / "run"
    pretrain.run(_cfg(root, out, steps=2))
    with monkeypatch.context() as m:
        _stop_before_publishing(m)
        with pytest.raises(_Killed):
            pretrain.run(_cfg(root, out, steps=4, resume=True))
    assert ck.latest_checkpoint(out)[0] == 4 and _lineage_step(out) == 2
    res = pretrain.run(_cfg(root, out, steps=4, resume=True))
    assert res.steps == 4 and _lineage_step(out) == 4
    assert json.loads((out / "run.json").read_text())["steps"] == 4
    # the step-4 validation recorded before the stop is the result's, not measured twice
    assert [r["step"] for r in read_jsonl(out / "val.jsonl")] == [2, 4]
    assert res.val_loss == read_jsonl(out / "val.jsonl")[-1]["val_loss"]
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3, 4]
    # and once published, a resume returns the record as before
    again = pretrain.run(_cfg(root, out, steps=4, resume=True))
    assert again.to_dict() == json.loads((out / "run.json").read_text())


def test_an_unreadable_run_json_is_published_again_not_a_traceback(root, tmp_path):
    from hillclimb.train import pretrain

    out = tmp_path / "run"
    pretrain.run(_cfg(root, out, steps=2))
    (out / "run.json").write_text('{"steps": 2, "run_')  # cut short
    res = pretrain.run(_cfg(root, out, steps=2, resume=True))
    assert res.steps == 2 and json.loads((out / "run.json").read_text())["steps"] == 2


def test_resume_of_a_moved_finished_run_names_where_it_is_now(root, tmp_path, capsys):
    """`--resume` on a finished pre-training run that was moved returned its run.json as
    written: `final checkpoint: <the old place>` (RL had this fixed in session 19)."""
    import shutil

    args = ["train", "--preset", "thinking-micro", "--data", str(root / "data"), "--tokenizer",
            str(root / "tokenizer"), "--seq-len", "32", "--batch-size", "4", "--steps", "1",
            "--val-tokens", "64", "--threads", "1", "--no-tensorboard"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "old")]) == 0
    shutil.move(tmp_path / "old", tmp_path / "new")
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "new"), "--resume", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["run_dir"] == str(tmp_path / "new")
    assert res["final_dir"] == str(tmp_path / "new" / "final")


def test_rl_resume_after_a_stop_before_final_records_each_val_point_once(
    micro, tmp_path, monkeypatch
):
    """The same stop in RL: the step-3 val curve and Pareto points were recorded before the
    checkpoint; the resume returned the 2-step summary (or, without run.json, measured and
    recorded both again)."""
    from hillclimb.rl.config import RLConfig
    from hillclimb.rl.train import run_rl

    out = tmp_path / "rl"

    def cfg(**kw) -> RLConfig:
        d = dict(init=micro, out=out, steps=2, prompts_per_step=2, group_size=2,
                 families=["arith"], tiers=[1], max_tokens=4, eval_every=2, eval_n_per_tier=2,
                 pareto_budgets=[2], overlong="none", tensorboard=False, threads=1,
                 pool_size=16)  # fmt: skip
        d.update(kw)
        return RLConfig(**d)

    run_rl(cfg())
    with monkeypatch.context() as m:
        _stop_before_publishing(m)
        with pytest.raises(_Killed):
            run_rl(cfg(steps=3, resume=True))
    res = run_rl(cfg(steps=3, resume=True))
    assert res["steps"] == 3 and _lineage_step(out) == 3
    recs = read_jsonl(out / "curve.jsonl")
    assert [r["step"] for r in recs if "cells" in r] == [0, 2, 3]
    assert [r["step"] for r in recs if "pareto" in r] == [0, 2, 3]
    assert [c["step"] for c in res["curve"]] == [0, 2, 3]


# ---- SFT problem specs and FIM options --------------------------------------------------------
def test_a_problem_count_list_shorter_than_the_tiers_is_one_line(base, tmp_path, capsys):
    """`n` as a list aligned with `tiers`: one count for two tiers was a zip() ValueError
    traceback, after the checkpoint and tokenizer were loaded."""
    argv = ["sft", "--from", str(base), "--out", str(tmp_path / "o"), "--problems",
            '{"families": ["arith"], "tiers": [1, 2], "n": [3]}']  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hillclimb: error:") and "one count per tier" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "problems, said",
    [
        # from a --config table the typo was not looked at: every tier was trained instead
        ({"families": ["arith"], "teirs": [1], "n": 2}, "unknown key(s) ['teirs']"),
        ({"families": ["arith"], "tiers": [1, 2], "n": [3]}, "one count per tier"),
        ({"families": ["arith"], "n": [3, 3]}, "one count per tier"),  # 4 tiers by default
        ({"n": "x"}, "n must be"),
    ],
)
def test_problem_specs_from_a_config_file_are_checked_like_the_flag(
    base, tmp_path, capsys, problems, said
):
    toml = tmp_path / "sft.toml"
    inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in problems.items())
    toml.write_text(f"[sft]\nproblems = {{{inline}}}\n")
    argv = ["sft", "--config", str(toml), "--from", str(base), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert said in capsys.readouterr().err
    with pytest.raises(ConfigError, match=re.escape(said)):
        SFTConfig(init=base, problems=problems)


def test_well_formed_problem_specs_still_train(base, tmp_path):
    from hillclimb.train import sft

    res = sft.run(_sft(base, tmp_path / "o", seq_len=256, steps=1,
                       problems={"families": ["arith"], "tiers": [1, 2], "n": [3, 2]}))  # fmt: skip
    assert res.extra["sft_examples"] + res.extra["sft_val_examples"] == 5


@pytest.mark.parametrize(
    "flags, said",
    [
        # alone: "no SFT data: pass --data FILE.jsonl, --problems or --fim-corpus"
        (["--fim-corpus", "{corpus}"], "fim_corpus"),
        # beside --data: the corpus was silently left unused
        (["--fim-corpus", "{corpus}", "--data", "{data}"], "needs fim_examples"),
        # FIM examples asked for and nothing to cut them from: silently none
        (["--fim-examples", "50", "--data", "{data}"], "fim_examples needs fim_corpus"),
    ],
)
def test_fim_options_that_would_be_ignored_are_refused(base, tmp_path, capsys, flags, said):
    corpus = tmp_path / "corpus" / "documents"
    corpus.mkdir(parents=True)
    doc = {"text": "def f(x):\n    y = x + 1\n    return y * 2\n", "language": "python"}
    (corpus / "a.jsonl").write_text(json.dumps(doc) + "\n")
    data = _chat_file(tmp_path / "d.jsonl")
    flags = [f.format(corpus=corpus.parent, data=data) for f in flags]
    assert main(["sft", "--from", str(base), "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hillclimb: error:") and said in err and "no SFT data" not in err
    assert not (tmp_path / "o").exists()


# ---- numbers the SFT summary reports --------------------------------------------------------------
def test_epochs_count_the_rows_a_short_bucket_step_really_takes(base, tmp_path):
    """With length buckets a short step is `batch_size * seq_len // short_seq_len` rows (8
    here), but `epochs` was `steps * batch_size / rows_per_epoch`, as if every step took 2:
    4 steps over 23 one-row examples said 0.35 epochs where 32 rows were 1.39."""
    from hillclimb.train import sft

    data = _chat_file(tmp_path / "d.jsonl", n=24)
    res = sft.run(_sft(base, tmp_path / "o", sft_data=[data], seq_len=128, short_seq_len=32,
                       batch_size=2, steps=4, val_fraction=0.05))  # fmt: skip
    ex, rows = res.extra["sft_examples"], res.extra["rows_per_epoch"]
    assert rows == ex  # one example a 33-token row: every row is one example
    assert res.extra["epochs"] == pytest.approx(4 * (2 * 128 // 32) / ex, abs=1e-3)


@pytest.mark.parametrize(
    "val_record, tokens",
    [
        # an empty reply: its only target is <|im_end|>, a special token of 0 bytes
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
            1,
        ),
        # an empty text: its only target (eos) is a row's first token, which nothing predicts
        ({"text": ""}, 0),
    ],
)
def test_validation_that_measured_nothing_reports_no_number(base, tmp_path, val_record, tokens):
    """Bits per byte over no byte was NaN (run.json held a bare `NaN`, not JSON) and a val loss
    over no token was 0.0 — a perfect score for a measurement never made."""
    from hillclimb.train import sft

    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps(val_record) + "\n")
    out = tmp_path / "o"
    res = sft.run(_sft(base, out, sft_data=[_chat_file(tmp_path / "d.jsonl")], val_data=[val]))
    run_json = (out / "run.json").read_text()
    json.loads(run_json, parse_constant=lambda c: pytest.fail(f"run.json holds {c}"))
    assert res.val_bpb is None
    vals = read_jsonl(out / "val.jsonl")
    if tokens:
        assert res.val_loss is not None and res.val_loss > 0
        assert [(v["val_tokens"], v["val_bpb"]) for v in vals] == [(1, None)]
    else:
        assert res.val_loss is None and vals == []


@pytest.mark.parametrize("command", ["sft", "train"])
def test_a_missing_out_is_refused_before_the_data_is_read(root, base, tmp_path, capsys, command):
    """Without --out the data was read and encoded first (for SFT with `--decontaminate
    default`, a minute of work), then refused; here the data would have failed first."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": 5}\n')
    argv = (
        ["sft", "--from", str(base), "--data", str(bad)]
        if command == "sft"
        else ["train", "--preset", "thinking-micro", "--data", str(tmp_path / "no-such-dir"),
              "--tokenizer", str(root / "tokenizer")]
    )  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is required" in err


# ---- custom RL rewards ----------------------------------------------------------------------------
def _rollout():
    from hillclimb.problems import Problem
    from hillclimb.rl.rollout import Rollout

    p = Problem(id="arith/t1/x", family="arith", kind="reasoning", tier=1, prompt="2 + 3?",
                reasoning="", answer="5")  # fmt: skip
    return Rollout(problem=p, sample=0, prompt_ids=[1, 2], completion_ids=[3, 4],
                   logprobs=[-0.1, -0.2], forced=[False, False], text="The answer is 5.",
                   finish_reason="stop", completion_tokens=2, passed=True, status="pass")  # fmt: skip


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("numpy").complex128(1 + 2j),  # was read as 1.0 (a warning at most)
        lambda: __import__("numpy").complex64(1 + 0j),
        lambda: __import__("torch").tensor(1 + 2j),  # was a RuntimeError traceback
        lambda: __import__("numpy").array(1 + 2j),
    ],
    ids=["np-complex128", "np-complex64", "torch-complex", "np-0d-complex"],
)
def test_a_complex_reward_is_refused_as_no_real_number(make):
    from hillclimb.rl.rewards import score

    def cplx(r):
        return make()

    with pytest.raises(HillclimbError, match=r"cplx returned .* must be a real number"):
        score(cplx, _rollout())


def test_real_rewards_of_numpy_and_torch_kinds_are_still_read():
    import numpy as np
    import torch

    from hillclimb.rl.rewards import score

    r = _rollout()
    for v, want in ((np.bool_(True), 1.0), (np.int64(2), 2.0), (np.array(0.5), 0.5),
                    (torch.tensor([0.25]), 0.25), (torch.tensor(1, dtype=torch.int8), 1.0)):  # fmt: skip
        assert score(lambda _r, v=v: v, r) == want


# ---- torchrun ------------------------------------------------------------------------------------
def test_short_bucket_steps_two_processes_cannot_share_are_refused_before_training(base, tmp_path):
    """Length buckets make a short step `batch_size * seq_len // short_seq_len` rows: 5 here,
    which 2 processes cannot split. The run set up, then stopped at the first short step
    (after however many long steps came first) with "a batch of 5 rows cannot be split"."""
    import os
    import subprocess
    import sys

    data = tmp_path / "mixed.jsonl"
    with data.open("w") as f:
        for i in range(16):
            reply = f"{i % 10}" if i % 4 else f"{i % 10} is" + " the sum" * 12
            msgs = [{"role": "user", "content": f"{i}?"}, {"role": "assistant", "content": reply}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "hillclimb", "sft", "--from", str(base), "--data", str(data), "--seq-len", "128",
           "--short-seq-len", "48", "--batch-size", "2", "--steps", "4", "--threads", "1",
           "--no-tensorboard", "--out", str(tmp_path / "o")]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode != 0
    assert "short-bucket step" in p.stderr and "5 rows" in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "o" / "metrics.jsonl").is_file() or not read_jsonl(
        tmp_path / "o" / "metrics.jsonl"
    )


_CALLS: list[int] = []


def first_step_pays(r) -> float:
    """1 for every sample of the first step's 4 rollouts (a custom reward sees a copy; its
    calls are counted here), 0 after: step 1's training pass rate is not step 2's."""
    _CALLS.append(1)
    return 1.0 if len(_CALLS) <= 4 else 0.0


def test_rl_first_and_last_numbers_of_a_short_run_are_different_steps(micro, tmp_path, capsys):
    """rl.json's `first` / `last` (the CLI's "train pass rate A → B") were the means of the first
    3 and the last 3 steps: over 2 steps the same two, so a reward that went from 1 to 0 read
    0.5 → 0.5."""
    from hillclimb.rl.config import RLConfig
    from hillclimb.rl.train import run_rl

    _CALLS.clear()
    cfg = RLConfig(init=micro, out=tmp_path / "rl", steps=2, prompts_per_step=2, group_size=2,
                   families=["arith"], tiers=[1], max_tokens=4, eval_every=0, pareto_budgets=[],
                   overlong="none", tensorboard=False, threads=1, pool_size=16,
                   dynamic_sampling=False)  # fmt: skip
    res = run_rl(cfg, reward_fn=first_step_pays)
    steps = read_jsonl(tmp_path / "rl" / "metrics.jsonl")
    assert [s["reward"] for s in steps] == [1.0, 0.0]
    assert res["first"]["reward"] == 1.0 and res["last"]["reward"] == 0.0


# ---- a checkpoint fine-tuned through another tokenizer -----------------------------------------
def test_fine_tuning_through_another_tokenizer_is_refused(root, base, tmp_path, capsys):
    """`--from CKPT --tokenizer OTHER`: a BPE retrained to a similar size (within the
    checkpoint's 512-row table) trained silently on ids that meant other bytes ("h" was 104,
    then 71) and saved OTHER beside the weights. The checkpoint's own tokenizer, from another
    directory, is still accepted."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [f"def f{i}(x):\n    return x + {i}\n" for i in range(30)]
    (corpus / "a.jsonl").write_text(
        "".join(json.dumps({"text": t, "language": "python"}) + "\n" for t in lines)
    )
    other = tmp_path / "other-tok"
    assert main(["tokenizer", "train", "--corpus", str(corpus / "a.jsonl"), "--vocab-size",
                 "300", "--out", str(other)]) == 0  # fmt: skip
    capsys.readouterr()
    data = _chat_file(tmp_path / "d.jsonl")
    argv = ["sft", "--from", str(base), "--data", str(data), "--out", str(tmp_path / "o"),
            "--tokenizer", str(other), "--steps", "1", "--threads", "1", "--no-tensorboard"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is not the tokenizer checkpoint" in err and not (tmp_path / "o").exists()
    ok = argv[:-7] + ["--tokenizer", str(root / "tokenizer"), "--steps", "1", "--threads", "1",
                      "--no-tensorboard", "--seq-len", "48"]  # fmt: skip
    assert main(ok) == 0


# ---- the SFT validation split -------------------------------------------------------------------
def _encoded(base: Path, f: Path) -> list:
    from hillclimb.tokenizer.io import load_tokenizer
    from hillclimb.train import sft_data as S

    tok = load_tokenizer(base)
    return [S.encode_record(tok, r) for r in S.read_jsonl([f])]


def test_a_repeated_record_is_never_both_trained_on_and_held_out(base, tmp_path):
    """40 records of 10 distinct ones: the split was by record, so copies of one example landed
    on both sides and the val loss partly measured examples the model had trained on."""
    from hillclimb.train import sft

    f = tmp_path / "rep.jsonl"
    f.write_text(_chat_file(tmp_path / "ten.jsonl", n=10).read_text() * 4)
    task = sft.build_task(_sft(base, tmp_path / "o", sft_data=[f], val_fraction=0.3))
    # round(0.3 * 10) = 3 distinct examples held out, all 4 copies of each (was 12 records)
    assert (task.summary["sft_examples"], task.summary["sft_val_examples"]) == (28, 12)
    task = sft.build_task(_sft(base, tmp_path / "o", sft_data=[f], val_fraction=0.25))
    assert (task.summary["sft_examples"], task.summary["sft_val_examples"]) == (32, 8)  # was 10
    train, val = sft.split_val(_encoded(base, f), 0.25, 0)
    assert not {tuple(e.ids) for e in val} & {tuple(e.ids) for e in train}


def test_without_repeats_the_split_is_unchanged(base, tmp_path):
    """The same records as before the change go to validation when nothing repeats."""
    import numpy as np

    from hillclimb.train import sft

    examples = _encoded(base, _chat_file(tmp_path / "d.jsonl", n=20))
    assert len({tuple(e.ids) for e in examples}) == 20
    order = np.random.default_rng([7, 0x76616C]).permutation(20)  # the split before the change
    want = {tuple(examples[i].ids) for i in order[:5]}
    train, val = sft.split_val(examples, 0.25, 7)
    assert {tuple(e.ids) for e in val} == want and len(train) == 15
