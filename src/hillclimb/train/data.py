"""Pre-training batches from tokenized shards: deterministic random windows, fixed val windows.

Why stateless random windows: the global batch of optimizer step `s` is a pure function of
(seed, s) — `B` windows of `seq_len + 1` tokens at offsets drawn by a generator seeded with
(seed, s). So the "data-loader position" that a checkpoint must store is just the step, resuming
is exact, and the same global batch is produced whatever the number of processes; each rank then
takes its contiguous slice of rows (`rank_rows`). Windows may cross document boundaries — the
shards put `eos` between documents, as nanoGPT/nanochat pack them — which keeps every token useful.

The fixed val windows and the unigram baseline live in `hillclimb.data.shard_eval`, shared with
`hillclimb eval` so both report the same bits/byte.
"""

from __future__ import annotations

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
