"""Fill-in-the-middle in pre-training (`train.fim`): the layouts, the rates, determinism, the
run's record, and bad settings refused before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _train_util import save_tokenizer_dir, write_shards
from hillclimb.data.shards import ShardReader
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.tokenizer.io import bytelevel_tokenizer
from hillclimb.tokenizer.specials import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX
from hillclimb.train import SFTConfig, TrainConfig
from hillclimb.train.data import PretrainBatches
from hillclimb.train.fim import FimIds, fim_row

SRC = str(Path(__file__).resolve().parents[1] / "src")
IDS = FimIds(prefix=901, suffix=902, middle=903, eos=0)


def _restore(piece: list[int]) -> tuple[list[int], str]:
    """The original text of one rearranged piece, and its layout."""
    p, s, m = IDS.prefix, IDS.suffix, IDS.middle
    assert piece[0] == p and piece.count(p) == 1 and piece.count(s) == 1
    assert piece.count(m) == 1
    if piece[1] == s:  # SPM: <P><S> suf <M> pre mid
        k = piece.index(m)
        return piece[k + 1 :] + piece[2:k], "spm"
    i, k = piece.index(s), piece.index(m)  # PSM: <P> pre <S> suf <M> mid
    assert i < k
    return piece[1:i] + piece[k + 1 :] + piece[i + 1 : k], "psm"


def _pieces(row: list[int]) -> list[list[int]]:
    out, cur = [], []
    for t in row:
        if t == IDS.eos:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    return [*out, cur]


def _row(rng: np.random.Generator, lengths: list[int]) -> np.ndarray:
    parts = []
    for n in lengths:
        parts += rng.integers(10, 800, size=n).tolist() + [IDS.eos]
    return np.asarray(parts[:-1], dtype=np.int64)


def test_every_rearranged_piece_holds_its_document_in_psm_or_spm():
    rng = np.random.default_rng(0)
    layouts = []
    for trial in range(200):
        # four pieces long enough to rearrange, then one too short (it absorbs the 12 sentinels)
        lengths = [int(x) for x in rng.integers(20, 40, size=4)] + [15]
        row = _row(rng, lengths)
        out, n = fim_row(row, np.random.default_rng(trial), IDS, 1.0, 0.5, min_tokens=20)
        assert out.shape == row.shape and out.dtype == row.dtype
        assert n == 4  # every piece long enough, none shorter
        got = _pieces(out.tolist())
        want = _pieces(row.tolist())
        for g, w in zip(got[:4], want[:4], strict=True):
            text, layout = _restore(g)
            assert text == w
            layouts.append(layout)
        # the row keeps its width: the short last piece lost the 12 sentinels' worth of tokens
        assert got[4] == want[4][:3]
    share = layouts.count("spm") / len(layouts)
    assert 0.4 < share < 0.6  # spm_rate 0.5


def test_rates_zero_and_one_and_the_share_of_documents():
    rng = np.random.default_rng(1)
    row = _row(rng, [20] * 10)
    same, n = fim_row(row, np.random.default_rng(2), IDS, rate=0.0, spm_rate=0.5)
    assert n == 0 and np.array_equal(same, row)
    only_psm = 0
    total = 0
    for t in range(100):
        out, n = fim_row(row, np.random.default_rng(t), IDS, rate=0.5, spm_rate=0.0)
        total += n
        only_psm += int(np.sum((out[:-1] == IDS.prefix) & (out[1:] == IDS.suffix)))
    assert 400 < total < 600  # about half of 1,000 pieces
    # spm_rate 0: never <P><S> back to back unless the prefix drawn was empty (a cut at 0)
    assert only_psm < total * 0.2


def test_pretrain_batches_with_fim_are_a_pure_function_of_seed_and_step(tmp_path):
    tok = bytelevel_tokenizer()
    reader = ShardReader(write_shards(tmp_path))
    train = reader.split("train")
    ids = FimIds.from_tokenizer(tok, reader.eos_id)
    plain = PretrainBatches(train, 64, 8, seed=3)
    a = PretrainBatches(train, 64, 8, seed=3, fim_rate=0.5, fim_ids=ids)
    b = PretrainBatches(train, 64, 8, seed=3, fim_rate=0.5, fim_ids=ids)
    off = PretrainBatches(train, 64, 8, seed=3, fim_rate=0.0, fim_ids=ids)
    assert np.array_equal(a.batch(7), b.batch(7))  # resumable
    assert np.array_equal(off.batch(7), plain.batch(7))  # off: the batches of before
    assert not np.array_equal(a.batch(7), plain.batch(7))
    fim_tokens = {ids.prefix, ids.suffix, ids.middle}
    rows = np.concatenate([a.batch(s) for s in range(10)])
    assert np.isin(rows, list(fim_tokens)).any()
    # every row is its window with pieces rearranged: same multiset of ordinary ids or a cut tail
    for s in range(3):
        for r_fim, r_plain in zip(a.batch(s), plain.batch(s), strict=True):
            kept = r_fim[~np.isin(r_fim, list(fim_tokens))]
            assert set(kept.tolist()) <= set(r_plain.tolist())
    with pytest.raises(HillclimbError, match="fim_ids"):
        PretrainBatches(train, 64, 8, seed=3, fim_rate=0.5)


def test_a_tokenizer_without_fim_tokens_is_refused():
    class NoFim:
        special_ids = {"<|endoftext|>": 0}

    with pytest.raises(HillclimbError, match="FIM special tokens"):
        FimIds.from_tokenizer(NoFim(), 0)
    tok = bytelevel_tokenizer()
    got = FimIds.from_tokenizer(tok, tok.eos_id)
    assert (got.prefix, got.suffix, got.middle) == tuple(
        tok.special_ids[s] for s in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)
    )


def test_bad_fim_settings_fail_at_construction(tmp_path):
    for kw in ({"fim_rate": -0.1}, {"fim_rate": 1.5}, {"fim_spm_rate": 2.0}):
        with pytest.raises(ConfigError, match="fim_"):
            TrainConfig(**kw)
    with pytest.raises(ConfigError, match="pre-training option"):
        SFTConfig(fim_rate=0.5)
    from hillclimb.rl.config import RLConfig

    with pytest.raises(ConfigError, match="pre-training options"):
        RLConfig(fim_rate=0.5)


def test_train_cli_with_fim_records_it_and_keeps_val_left_to_right(tmp_path):
    """`hillclimb train --fim-rate`: the run trains (finite loss), the checkpoint says what it
    was taught, and the val bits/byte are measured on the same left-to-right windows."""
    write_shards(tmp_path / "data")
    save_tokenizer_dir(tmp_path)
    common = [
        sys.executable, "-m", "hillclimb", "train", "--preset", "code-flash-micro",
        "--data", str(tmp_path / "data"), "--tokenizer", str(tmp_path / "tokenizer"),
        "--seq-len", "48", "--batch-size", "4", "--steps", "6", "--val-every", "6",
        "--val-tokens", "256", "--ckpt-every", "0", "--threads", "1", "--no-tensorboard",
        "--no-progress", "--json",
    ]  # fmt: skip
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}
    runs = {}
    for name, extra in (("fim", ["--fim-rate", "0.9", "--fim-spm-rate", "0.5"]), ("plain", [])):
        p = subprocess.run(
            [*common, "--out", str(tmp_path / name), *extra],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr[-2000:]
        runs[name] = tmp_path / name
    meta = json.loads((runs["fim"] / "final" / "hillclimb.json").read_text())
    assert meta["fim"] == {"rate": 0.9, "spm_rate": 0.5}
    assert "fim" not in json.loads((runs["plain"] / "final" / "hillclimb.json").read_text())
    cfg = json.loads((runs["fim"] / "config.json").read_text())["train"]
    assert cfg["fim_rate"] == 0.9
    bad = subprocess.run(
        [*common, "--out", str(tmp_path / "bad"), "--fim-rate", "7"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "fim_rate must be in [0, 1]" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad" / "final").exists()


def test_set_vocab_size_with_a_preset_is_used_or_refused_in_one_line(tmp_path):
    """`--set vocab_size=N` beside `--preset` raised "replace() got multiple values for keyword
    argument 'vocab_size'" (a traceback)."""
    from hillclimb.train.pretrain import resolve_model_config

    tok = bytelevel_tokenizer()
    cfg = TrainConfig(preset="code-flash-micro", model_overrides={"vocab_size": 1024})
    assert resolve_model_config(cfg, tok).vocab_size == 1024
    for bad in (8, "big", True):
        with pytest.raises(ConfigError, match="vocab_size must be an int >="):
            resolve_model_config(
                TrainConfig(preset="code-flash-micro", model_overrides={"vocab_size": bad}), tok
            )
