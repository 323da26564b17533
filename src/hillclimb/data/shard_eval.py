"""What training's validation and `hillclimb eval` both read off tokenized shards.

Why here, in the data layer: the fixed val windows, the unigram baseline and the "shards were
tokenized with this tokenizer" check define what a reported bits/byte *means*. Training (the
curve) and evaluation (the number in the climb's table) must compute them identically, and
evaluation must not reach into training's internals to do so (docs/ARCHITECTURE.md), so both
import them from the package that owns the shard format.

Validation uses fixed, non-overlapping windows from the start of the val split (the same windows
at every evaluation and in every run with the same `seq_len`, so curves are comparable), and
reports bits per byte: Σ NLL(nats) / (ln 2 · Σ UTF-8 bytes of the target tokens), the
tokenizer-independent measure (special tokens count 0 bytes). `unigram_bpb` gives the baseline a
model must beat: the val bpb of the train split's smoothed token frequencies.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hillclimb.data.shards import ShardReader, Split, file_sha256
from hillclimb.errors import HillclimbError

if TYPE_CHECKING:
    from hillclimb.tokenizer.io import Tokenizer


def val_windows(split: Split, seq_len: int, max_tokens: int) -> np.ndarray:
    """Non-overlapping [n, seq_len + 1] windows from the start of the split (≤ max_tokens targets)."""
    n_win = min(max(1, max_tokens // seq_len), (split.n_tokens - 1) // seq_len)
    if n_win <= 0:
        return np.zeros((0, seq_len + 1), dtype=np.int64)
    rows = [
        np.asarray(split.tokens[i * seq_len : i * seq_len + seq_len + 1], dtype=np.int64)
        for i in range(n_win)
    ]
    return np.stack(rows)


def unigram_bpb(
    train: Split, val_targets: np.ndarray, token_bytes: np.ndarray, vocab: int
) -> float:
    """Bits per byte of an add-one-smoothed unigram model (train counts) on the val targets."""
    counts = np.bincount(np.asarray(train.tokens[:50_000_000], dtype=np.int64), minlength=vocab)
    counts = counts[:vocab].astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    t = val_targets.reshape(-1)
    nbytes = float(token_bytes[t].sum())
    if nbytes <= 0:
        return float("nan")
    return float(-logp[t].sum() / (math.log(2) * nbytes))


def tokenizer_hashes(tok: Tokenizer, path: Path) -> set[str]:
    """Every SHA-256 under which this tokenizer may have been recorded by `data build`."""
    out = {
        hashlib.sha256(tok.hf.to_str().encode()).hexdigest(),
        hashlib.sha256(tok.hf.to_str(pretty=True).encode()).hexdigest(),
    }
    f = path / "tokenizer.json" if path.is_dir() else path
    if f.is_file():
        out.add(file_sha256(f))
    return out


def check_shards_match(
    reader: ShardReader,
    tok: Tokenizer,
    tok_path: Path,
    allow_mismatch: bool,
    override_flag: str | None = "--allow-tokenizer-mismatch",
) -> None:
    """Refuse shards tokenized with another vocabulary size or (unless allowed) tokenizer file.

    `override_flag` is the caller's flag that allows a mismatch, named in the error; None where
    the command has none (`hillclimb eval`: bits per byte over another tokenizer's ids would
    divide by the wrong byte counts, so there is nothing sensible to allow)."""
    if reader.vocab_size != tok.vocab_size:
        raise HillclimbError(
            f"shards at {reader.dir} were tokenized with a {reader.vocab_size}-token vocabulary but the "
            f"tokenizer at {tok_path} has {tok.vocab_size}; re-tokenize the data or pass the matching tokenizer"
        )
    recorded = reader.meta.get("tokenizer_sha256")
    if recorded and not allow_mismatch and recorded not in tokenizer_hashes(tok, tok_path):
        raise HillclimbError(
            f"shards at {reader.dir} were tokenized with a different tokenizer (sha256 {recorded[:12]}…) "
            f"than {tok_path}; "
            + (
                f"re-tokenize or pass {override_flag}"
                if override_flag
                else "re-tokenize the data with this checkpoint's tokenizer or pass the shards "
                "built with it"
            )
        )
