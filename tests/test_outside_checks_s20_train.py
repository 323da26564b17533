"""Outside checks (session 20) of the tokenizer trainer and the trainers: inputs the authors had
not tried — optimizer settings torch cannot take, a diverging run's checkpoints, a rerun into
an abandoned run directory, malformed SFT records, shards holding ids the tokenizer lacks, SFT
validation shares near 1 and examples longer than a row."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from _train_util import save_tokenizer_dir, write_shards
from hillclimb.cli import main
from hillclimb.data.shards import ShardWriter, write_meta
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.tokenizer.io import bytelevel_tokenizer
from hillclimb.train import SFTConfig, TrainConfig
from hillclimb.train import sft_data as S
from hillclimb.train.checkpointing import list_checkpoints
from hillclimb.train.logging import read_jsonl


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("s20train")
    write_shards(r / "data", n_train=120, n_val=20)
    save_tokenizer_dir(r)
    return r


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        preset="thinking-micro", data=root / "data", tokenizer=root / "tokenizer", out=out,
        seq_len=32, batch_size=4, micro_batch_size=4, steps=4, lr=1e-2, warmup_steps=1,
        val_every=0, val_tokens=64, log_every=1, threads=1, tensorboard=False,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


# ---- optimizer settings ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, said",
    [
        ("beta1", 1.5, "beta1 must be in [0, 1)"),  # was a ValueError traceback from AdamW
        ("beta2", -0.1, "beta2 must be in [0, 1)"),
        ("eps", -1.0, "eps must be > 0"),  # was a ValueError traceback from AdamW
        ("weight_decay", math.nan, "weight_decay must be a finite"),  # trained to a NaN loss
        ("weight_decay", -5.0, "weight_decay must be >= 0"),  # trained silently
        ("lr", math.inf, "lr must be a finite"),  # passed `lr > 0`, NaN loss at step 2
        ("muon_momentum", 1.0, "muon_momentum must be in [0, 1)"),
        ("time_limit_s", math.nan, "time_limit_s must be a positive"),  # silently no limit
        ("time_limit_s", -1.0, "time_limit_s must be a positive"),
        ("seed", 2**70, "seed must fit in 64 bits"),  # ValueError from torch.manual_seed
    ],
)
def test_optimizer_settings_torch_cannot_take_are_refused_at_construction(field, value, said):
    with pytest.raises(ConfigError, match=re.escape(said)):
        TrainConfig(**{field: value})


def test_cli_refuses_a_nan_weight_decay_in_one_line(root, tmp_path, capsys):
    argv = ["train", "--preset", "thinking-micro", "--data", str(root / "data"), "--tokenizer",
            str(root / "tokenizer"), "--out", str(tmp_path / "o"), "--weight-decay", "nan"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hillclimb: error:") and "weight_decay" in err
    assert not (tmp_path / "o").exists()  # refused before the run directory was made


# ---- divergence ------------------------------------------------------------------------------
def test_a_non_finite_gradient_is_not_applied_and_the_good_checkpoint_survives(root, tmp_path):
    """lr 1e6 diverges at step 2: the gradient's norm is NaN while the step's loss (computed
    before the update) is still finite. The update used to be applied, the step-2 checkpoint
    stored all-NaN weights and, with keep_last=1, pruned the good step-1 one; `--resume`
    then continued from NaN."""
    from hillclimb.train import pretrain

    out = tmp_path / "run"
    cfg = _cfg(root, out, lr=1e6, ckpt_every=1, keep_last=1, steps=6, warmup_steps=4)
    with pytest.raises(HillclimbError) as err:
        pretrain.run(cfg)
    cks = list_checkpoints(out)
    assert cks, "the last good checkpoint is kept"
    weights = load_file(str(cks[-1][1] / "model.safetensors"))
    assert all(np.isfinite(v).all() for v in weights.values())
    assert "not applied" in str(err.value)


def test_a_fresh_start_after_an_abandoned_attempt_does_not_append_to_its_curve(root, tmp_path):
    """An attempt that died before its first checkpoint (here: diverged) leaves metrics.jsonl;
    the rerun into the same --out (allowed: no checkpoints) appended its steps 1.. after the
    dead attempt's, and the report plotted both as one curve."""
    from hillclimb.train import pretrain

    out = tmp_path / "run"
    with pytest.raises(HillclimbError):
        pretrain.run(_cfg(root, out, lr=1e6, steps=6, warmup_steps=4))
    assert read_jsonl(out / "metrics.jsonl")  # the dead attempt logged something
    pretrain.run(_cfg(root, out, steps=3))
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in read_jsonl(out / "metrics.jsonl"))


# ---- shards holding ids the tokenizer lacks ------------------------------------------------------
def _shards_with(root: Path, dest: Path, bad_id: int, split: str) -> Path:
    """Shards whose meta.json claims the tokenizer's vocabulary but whose `split` holds `bad_id`
    (a damaged shard / hand-edited meta)."""
    tok = bytelevel_tokenizer()
    shards = dest / "shards"
    rng = np.random.default_rng(0)
    splits = {}
    for name in ("train", "val"):
        w = ShardWriter(shards, name, 1 << 16, tok.eos_id, shard_tokens=4096)
        for _ in range(60):
            w.add(rng.integers(0, 256, 40).tolist(), n_bytes=40)
        if name == split:
            w.add([bad_id] * 40, n_bytes=40)
        splits[name] = w.close()
    sha = hashlib.sha256(tok.hf.to_str().encode()).hexdigest()
    write_meta(shards, splits, 1 << 16, tok.eos_id, sha)
    meta = json.loads((shards / "meta.json").read_text())
    meta["vocab_size"] = tok.vocab_size  # the claim; the uint16 ids say otherwise
    (shards / "meta.json").write_text(json.dumps(meta))
    return dest


@pytest.mark.parametrize(
    "bad_id, split",
    [
        (60000, "train"),  # beyond the embedding table: an IndexError traceback mid-run
        (300, "train"),  # inside the padded table (320) but no token: trained silently
        (60000, "val"),
    ],
)
def test_shards_holding_ids_the_tokenizer_lacks_are_refused_before_training(
    root, tmp_path, bad_id, split
):
    from hillclimb.train import pretrain

    data = _shards_with(root, tmp_path / "data", bad_id, split)
    with pytest.raises(HillclimbError, match=f"token id {bad_id} .*outside the tokenizer"):
        pretrain.build_task(_cfg(root, tmp_path / "run", data=data))


# ---- SFT records -----------------------------------------------------------------------------
_U = {"role": "user", "content": "u"}


@pytest.mark.parametrize(
    "rec, said",
    [
        ({"fim": {"prefix": 1, "middle": "x", "suffix": "y"}}, "fim must be"),
        ({"fim": "def f(): pass"}, "fim must be"),
        ({"fim": {"prefix": "a", "suffix": "b"}}, "fim must be"),
        ({"text": 5}, "text must be a string"),
        ({"text": None}, "text must be a string"),
        ({"messages": [_U, {"role": "assistant", "content": "a", "reasoning_content": 5}]},
         "reasoning_content must be a string"),
        ({"messages": [_U, {"role": "assistant", "content": None,
                            "tool_calls": [{"function": {"name": "f"}}]}]}, "tool_calls"),
        ({"messages": [_U, {"role": "assistant", "content": None,
                            "tool_calls": [{"function": {"name": 7, "arguments": "{}"}}]}]},
         "tool_calls"),
        ({"messages": [_U, {"role": "assistant", "content": None,
                            "tool_calls": [{"function": {"name": "", "arguments": "{}"}}]}]},
         "tool_calls"),
        ({"messages": [_U, {"role": "assistant", "content": None,
                            "tool_calls": [{"function": {"name": "f", "arguments": [1]}}]}]},
         "tool_calls"),
    ],
)  # fmt: skip
def test_malformed_sft_records_are_one_error_naming_the_line(tmp_path, rec, said):
    """Each of these was a TypeError traceback from the tokenizer or the chat template."""
    f = tmp_path / "d.jsonl"
    ok = {"messages": [_U, {"role": "assistant", "content": "a"}]}
    f.write_text(json.dumps(ok) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(HillclimbError, match=re.escape("d.jsonl:2: ") + ".*" + re.escape(said)):
        S.read_jsonl([f])


def test_well_formed_tool_calls_still_read_and_encode(tmp_path):
    tok = bytelevel_tokenizer()
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    rec = {"messages": [_U, {"role": "assistant", "content": None, "tool_calls": [call],
                             "reasoning_content": "why"}]}  # fmt: skip
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps(rec) + "\n" + json.dumps({"fim": {"prefix": "a", "middle": "b",
                                                                "suffix": "c"}}) + "\n")  # fmt: skip
    recs = S.read_jsonl([f])
    assert [S.encode_record(tok, r).n_targets > 0 for r in recs] == [True, True]


@pytest.fixture(scope="module")
def checkpoint(root, tmp_path_factory) -> Path:
    ck = tmp_path_factory.mktemp("ck") / "ck"
    assert main(["init", "--preset", "thinking-micro", "--out", str(ck),
                 "--tokenizer", str(root / "tokenizer")]) == 0  # fmt: skip
    return ck


def test_sft_cli_reports_a_malformed_record_in_one_line(checkpoint, tmp_path, capsys):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"fim": {"prefix": 1, "middle": "x", "suffix": "y"}}) + "\n")
    rc = main(["sft", "--from", str(checkpoint), "--data", str(f), "--out", str(tmp_path / "o"),
               "--steps", "1", "--seq-len", "64", "--batch-size", "2", "--threads", "1"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("hillclimb: error:") and "bad.jsonl:1:" in err


def test_a_validation_share_near_one_keeps_an_example_to_train_on(checkpoint, tmp_path):
    """3 records at val_fraction 0.9: round(2.7) = 3 went to validation, none was left to
    train on, and the error blamed the examples' length ("every SFT example is longer than 65
    tokens; raise --seq-len")."""
    from hillclimb.train import sft

    f = tmp_path / "three.jsonl"
    f.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"u{i}"},
                 {"role": "assistant", "content": "a"}]}) + "\n" for i in range(3)))  # fmt: skip
    task = sft.build_task(
        SFTConfig(
            init=checkpoint,
            sft_data=[f],
            out=tmp_path / "o",
            seq_len=64,
            batch_size=2,
            val_fraction=0.9,
        )  # fmt: skip
    )
    assert task.summary["sft_examples"] == 1 and task.summary["sft_val_examples"] == 2


def test_an_all_too_long_sft_file_says_how_many_records_were_dropped(checkpoint, tmp_path):
    from hillclimb.train import sft

    f = tmp_path / "long.jsonl"
    f.write_text(json.dumps({"messages": [{"role": "user", "content": "x " * 200},
                                          {"role": "assistant", "content": "a"}]}) + "\n")  # fmt: skip
    with pytest.raises(HillclimbError, match="1 of 1 records are longer than 65 tokens"):
        sft.build_task(SFTConfig(init=checkpoint, sft_data=[f], out=tmp_path / "o", seq_len=64))


def test_max_example_tokens_beyond_a_row_is_refused():
    """An example longer than a row was cut to the row by packing (its end and closing
    <|im_end|> lost) though the field says longer examples are dropped."""
    with pytest.raises(ConfigError, match="max_example_tokens"):
        SFTConfig(seq_len=64, max_example_tokens=1000)
    with pytest.raises(ConfigError, match="max_example_tokens"):
        SFTConfig(seq_len=64, max_example_tokens=-3)
    assert SFTConfig(seq_len=64, max_example_tokens=65).max_example_tokens == 65


# ---- tokenizer train --out -------------------------------------------------------------------
@pytest.mark.parametrize("target", ["empty-dir", "nowhere"])
def test_tokenizer_train_refuses_a_symlinked_out_before_training(tmp_path, capsys, target):
    """A link to an empty directory passed the CLI's check and failed in save_trained
    (`rmdir` on a link); a dangling link failed after training (rename onto it). Both were
    NotADirectoryError tracebacks."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.py").write_text("def f(x):\n    return x + 1\n" * 20)
    (tmp_path / "empty-dir").mkdir()
    out = tmp_path / "out"
    out.symlink_to(tmp_path / target)
    rc = main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "300",
               "--out", str(out)])  # fmt: skip
    assert rc == 2
    assert "symbolic link" in capsys.readouterr().err
    assert out.is_symlink() and not any((tmp_path / "empty-dir").iterdir())


def test_copy_rows_with_a_short_bucket_too_narrow_for_a_span_are_refused_up_front(
    checkpoint, tmp_path
):
    """Copy rows take the width of the step's rows; a short bucket of 8 tokens cannot hold an
    8-token span and its repeat. It was a numpy `ValueError: low >= high` traceback at the
    first step that drew the short bucket, after the model was loaded."""
    from hillclimb.train import sft

    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps({"text": "ab" if i % 2 else "x" * 100}) + "\n"
                         for i in range(20)))  # fmt: skip
    cfg = SFTConfig(init=checkpoint, sft_data=[f], out=tmp_path / "o", seq_len=64, batch_size=4,
                    short_seq_len=8, copy_fraction=0.5, steps=6, threads=1)  # fmt: skip
    with pytest.raises(HillclimbError, match="short-seq-len 8"):
        sft.build_task(cfg)
    # what the refusal protects: on the original code the run failed mid-way
    ok = cfg.replace(short_seq_len=16, out=tmp_path / "o2")
    assert sft.run(ok).steps == 6


# ---- damaged files under --data / --fim-corpus -------------------------------------------------
def _corrupt_gzip(path: Path) -> Path:
    data = "".join(json.dumps({"text": f"def f{i}(x):\n    return x\n" * 3, "language": "python"})
                   + "\n" for i in range(300)).encode()  # fmt: skip
    b = bytearray(gzip.compress(data))
    for i in range(40, len(b) - 20, 7):  # a damaged deflate stream: zlib.error, not OSError
        b[i] ^= 0x5A
    path.write_bytes(bytes(b))
    return path


@pytest.mark.parametrize(
    "content, said",
    [
        (b"not json\n", ":1: malformed JSON"),  # was a JSONDecodeError traceback
        (b'{"id": 1, "language": "python"}\n', ":1: expected a document object"),  # KeyError
        (b"[1, 2]\n", ":1: expected a document object"),  # AttributeError
        (b"\xff\xfe\n", ":1: cannot read corpus documents"),  # UnicodeDecodeError
        (None, ":1: cannot read corpus documents"),  # zlib.error
    ],
)
def test_a_damaged_fim_corpus_is_one_error_naming_the_file(tmp_path, content, said):
    docs = tmp_path / "corpus" / "documents"
    docs.mkdir(parents=True)
    if content is None:
        f = _corrupt_gzip(docs / "a.jsonl.gz")
    else:
        f = docs / "a.jsonl"
        f.write_bytes(content)
    with pytest.raises(HillclimbError, match=re.escape(f.name + said)):
        S.fim_from_corpus(tmp_path / "corpus", 5, seed=0, max_chars=200)


def test_a_corrupt_gzip_sft_file_is_one_error_naming_the_file(tmp_path):
    f = _corrupt_gzip(tmp_path / "d.jsonl.gz")
    with pytest.raises(HillclimbError, match=re.escape("d.jsonl.gz:") + ".*cannot read SFT data"):
        S.read_jsonl([f])


# ---- resume on other data ---------------------------------------------------------------------
def test_resume_on_other_shards_is_refused_and_on_moved_shards_allowed(root, tmp_path):
    """`data` may change on resume (a moved directory), and nothing looked behind the path:
    other shards there were trained on from the checkpoint's step, one curve of two runs."""
    from hillclimb.train import pretrain

    out = tmp_path / "run"
    pretrain.run(_cfg(root, out, steps=2, ckpt_every=1))
    other = write_shards(tmp_path / "other", n_train=150, n_val=20, seed=7)
    with pytest.raises(HillclimbError, match="trained on other data"):
        pretrain.run(_cfg(root, out, steps=4, resume=True, data=other))
    moved = tmp_path / "moved"
    shutil.copytree(root / "data", moved)
    assert pretrain.run(_cfg(root, out, steps=3, resume=True, data=moved)).steps == 3


def test_sft_resume_on_other_records_is_refused(checkpoint, tmp_path):
    from hillclimb.train import sft

    def records(name: str, answer: str) -> Path:
        f = tmp_path / name
        f.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                     {"role": "assistant", "content": answer}]}) + "\n" for i in range(6)))  # fmt: skip
        return f

    def cfg(f: Path, steps: int) -> SFTConfig:
        return SFTConfig(init=checkpoint, sft_data=[f], out=tmp_path / "o", seq_len=64,
                         batch_size=2, steps=steps, ckpt_every=1, threads=1, tensorboard=False)  # fmt: skip

    sft.run(cfg(records("a.jsonl", "yes"), 2))
    with pytest.raises(HillclimbError, match="trained on other data"):
        sft.run(cfg(records("b.jsonl", "no"), 4).replace(resume=True))
    same = records("c.jsonl", "yes")  # the same records under another name: a move
    assert sft.run(cfg(same, 3).replace(resume=True)).steps == 3


# ---- --config files ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "toml, said",
    [
        (b"train = 5\n", "`train` must be a table"),  # TypeError from dict(5)
        (b'train = "ab"\n', "`train` must be a table"),  # ValueError from dict("ab")
        (b"\xff\n", "cannot read config"),  # UnicodeDecodeError
        (b"model_overrides = 5\n", "model_overrides must be a table"),  # TypeError with --set
    ],
)
def test_odd_config_files_are_one_line_errors(root, tmp_path, capsys, toml, said):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(toml)
    argv = ["train", "--preset", "thinking-micro", "--data", str(root / "data"), "--tokenizer",
            str(root / "tokenizer"), "--out", str(tmp_path / "o"), "--config", str(cfg),
            "--set", "bias_balancing=true"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hillclimb: error:") and said in err


# ---- chat encoding: text that looks like the untrusted-text markers -----------------------------
MARK0, MARK99 = "\ue0000\ue001", "\ue00099\ue001"  # U+E000 digits U+E001


@pytest.mark.parametrize("where", ["assistant", "tool definition", "both"])
def test_marker_lookalikes_in_rendered_text_are_encoded_as_written(where):
    """`encode_chat` puts numbered private-use markers where untrusted text goes and splits the
    rendering on them. Text rendered as it is (an assistant turn, a tool definition) holding
    U+E000 "0" U+E001 was encoded as the system prompt in its place (the model was fed
    "x SECRET y" for "x <marker> y"); U+E000 "99" U+E001 was an IndexError."""
    tok = bytelevel_tokenizer()
    said = f"x {MARK0} y {MARK99}" if where != "tool definition" else "plain"
    desc = f"d {MARK0}" if where != "assistant" else "d"
    tools = [{"type": "function", "function": {"name": "f", "description": desc}}]
    msgs = [{"role": "system", "content": "SECRET <|im_end|>"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": said}, {"role": "user", "content": "q"}]  # fmt: skip
    want = tok.apply_chat_template(msgs, tools=tools, add_generation_prompt=True)
    got = tok.decode(tok.encode_chat(msgs, tools=tools, add_generation_prompt=True))
    assert got == want and got.count("SECRET") == 1
    # the agent's token-by-token extension and SFT's assistant mask read the same text
    tail = tok.decode(tok.encode_chat_tail(msgs, 2, tools=tools))
    assert want.endswith(tail) and said in tail
    ex = S.encode_chat(tok, msgs, tools)
    assert tok.decode([i for i, m in zip(ex.ids, ex.mask, strict=True) if m]) == said + "<|im_end|>"


@pytest.mark.parametrize(
    "line",
    [
        '{"messages": [{"role": "user", "content": "u\\ud800"}, {"role": "assistant", "content": "a"}]}',
        '{"text": "a\\udfff"}',
        '{"fim": {"prefix": "p", "middle": "\\ud83d", "suffix": "s"}}',
    ],
)
def test_a_lone_surrogate_in_an_sft_record_is_one_error_naming_the_line(tmp_path, line):
    """JSON allows "\\ud800"; the tokenizer does not (a TypeError traceback from `tokenizers`)."""
    f = tmp_path / "d.jsonl"
    f.write_text(line + "\n")
    with pytest.raises(HillclimbError, match=r"d\.jsonl:1: holds a lone surrogate \(U\+D"):
        S.read_jsonl([f])
    docs = tmp_path / "corpus" / "documents"
    docs.mkdir(parents=True)
    (docs / "a.jsonl").write_text('{"text": "def f():\\n  x\\n  \\ud800\\n  y\\n"}\n')
    with pytest.raises(HillclimbError, match=r"a\.jsonl:1: holds a lone surrogate"):
        S.fim_from_corpus(tmp_path / "corpus", 3, seed=0, max_chars=200)


# ---- a half-set torchrun environment --------------------------------------------------------------
@pytest.mark.parametrize(
    "env, said",
    [
        ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR and MASTER_PORT not"),  # ValueError
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),  # ValueError
    ],
)  # fmt: skip
def test_a_stray_torchrun_environment_is_one_line(root, tmp_path, capsys, monkeypatch, env, said):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
              "MASTER_PORT"):  # fmt: skip
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    argv = ["train", "--preset", "thinking-micro", "--data", str(root / "data"), "--tokenizer",
            str(root / "tokenizer"), "--out", str(tmp_path / "o"), "--steps", "1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hillclimb: error:") and said in err


# ---- a damaged tokenizer.json ---------------------------------------------------------------------
def test_a_byte_level_tokenizer_missing_a_byte_symbol_is_refused_on_load(tmp_path):
    """Without the symbol for "A" (no merge uses it, so `tokenizers` loads the file) "ABA"
    encoded as "B": every A of a corpus or a prompt dropped without a word."""
    from hillclimb.tokenizer.io import load_tokenizer

    d = save_tokenizer_dir(tmp_path)
    j = json.loads((d / "tokenizer.json").read_text())
    del j["model"]["vocab"]["A"]
    (d / "tokenizer.json").write_text(json.dumps(j))
    with pytest.raises(HillclimbError, match=r"lacks the symbols of 1 byte\(s\) \(0x41\)"):
        load_tokenizer(d)
