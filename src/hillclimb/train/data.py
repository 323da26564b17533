"""Pre-training batches from tokenized shards: deterministic random windows, fixed val windows.

Why stateless random windows: the global batch of optimizer step `s` is a pure function of
(seed, s) — `B` windows of `seq_len + 1` tokens at offsets drawn by a generator seeded with
(seed, s). So the "data-loader position" that a checkpoint must store is just the step, resuming
is exact, and the same global batch is produced whatever the number of processes; each rank then
takes its contiguous slice of rows (`rank_rows`). Windows may cross document boundaries — the
shards put `eos` between documents, as nanoGPT/nanochat pack them — which keeps every token useful.

Validation uses fixed, non-overlapping windows from the start of the val split (the same windows
at every evaluation and in every run with the same `seq_len`, so curves are comparable), and
reports bits per byte: Σ NLL(nats) / (ln 2 · Σ UTF-8 bytes of the target tokens), the
tokenizer-independent measure (special tokens count 0 bytes). `unigram_bpb` gives the baseline a
model must beat: the val bpb of the train split's smoothed token frequencies.
"""

from __future__ import annotations

import math

import numpy as np

from hillclimb.data.shards import Split
from hillclimb.errors import HillclimbError


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """Independent generator per (seed, step, stream) — no hidden sequential state."""
    return np.random.default_rng([seed & 0xFFFFFFFF, step, stream, 0x68696C6C])


class PretrainBatches:
    """`batch(step) -> int64 array [batch_size, seq_len + 1]` of the global batch."""

    def __init__(self, split: Split, seq_len: int, batch_size: int, seed: int):
        self.tokens = split.tokens
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.n = int(self.tokens.size)
        if self.n < seq_len + 2:
            raise HillclimbError(
                f"training split has {self.n} tokens, fewer than one window of seq_len+1="
                f"{seq_len + 1}; add data or lower seq_len"
            )

    def batch(self, step: int) -> np.ndarray:
        rng = step_rng(self.seed, step)
        starts = rng.integers(0, self.n - self.seq_len - 1, size=self.batch_size)
        rows = [np.asarray(self.tokens[s : s + self.seq_len + 1], dtype=np.int64) for s in starts]
        return np.stack(rows)


def rank_rows(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's contiguous share of a global batch (batch size divisible by world)."""
    per = batch.shape[0] // world
    return batch[rank * per : (rank + 1) * per]


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
