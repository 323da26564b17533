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

from typing import Protocol

import numpy as np

from hillclimb.data.shards import Split
from hillclimb.errors import HillclimbError
from hillclimb.train.fim import FimIds, fim_batch


class WarmupEnd(Protocol):
    """Where a copy warm-up ends, as the batches need it (`copy_check.CopyWarmup` is one; a
    Protocol, not an import: the check's module sits above this one, next to the loop)."""

    def in_warmup(self, step: int) -> bool: ...


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """Independent generator per (seed, step, stream) — no hidden sequential state."""
    return np.random.default_rng([seed & 0xFFFFFFFF, step, stream, 0x68696C6C])


COPY_SPAN = (8, 48)  # tokens per copied span (each row packs spans and their repeats)


class CopyRows:
    """Copy rows mixed into a stage's batches: spans of 8–48 ids drawn uniformly from `vocab`
    (the ids the stage's own data uses, specials excluded), each followed by itself; only the
    repeats are targets (from their second token: the first cannot be known).

    Why: in-context copying needs induction heads, and on the tiny corpus (1.25M tokens, 400
    steps) pre-training never formed them: a repeated random span was no easier to predict than
    the first time, so fixing a shown function or accepting a prompt-lookup draft could not work
    (`bench/copy_probe.py`, BENCHMARKS.md). Random span lengths matter: with one fixed length a
    model copies by position (attend K back), which is not induction. Ids are drawn uniformly,
    not by frequency: frequent ids would make spans repeat a few tokens, and a one-token match
    back into the span is then ambiguous. Rows are a pure function of (seed, step).

    `distant` rows repeat spans from anywhere earlier in the row, not just the one before: each
    new piece is, with even odds, a fresh span or a repeat of a uniformly drawn earlier one, so
    copy distances spread over the whole row. Why: adjacent repeats teach copying over 8–48
    tokens only — a copying code-flash (probe 0.75) fell to 0.03 with 300 tokens between the span
    and its repeat, while an agent copies a path or a line from a tool observation hundreds to
    thousands of tokens back (LOG.md, session 12). SFT's `copy_distant` turns them on
    (measured there: they teach the distance, but at 25% of 4096-token SFT rows they cost the
    short code tasks); pre-training keeps adjacent repeats (copying forms on those)."""

    def __init__(self, vocab: np.ndarray, width: int, seed: int, distant: bool = False):
        if width < 2 * COPY_SPAN[0] + 1:
            raise HillclimbError(
                f"copy rows need seq_len >= {2 * COPY_SPAN[0]} (a span and its repeat), "
                f"got {width - 1}"
            )
        if vocab.size < 2:
            raise HillclimbError("copy rows need at least 2 distinct ordinary token ids")
        self.vocab = vocab
        self.width = width
        self.seed = seed
        self.distant = distant

    def row(
        self, rng: np.random.Generator, width: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One copy row of `width` tokens (default: the stage's row width)."""
        w = width or self.width
        ids: list[int] = []
        mask: list[int] = []
        hi = min(COPY_SPAN[1], (w - 1) // 2)  # the first span always fits its repeat
        spans: list[list[int]] = []
        while len(ids) < w:
            if self.distant and spans and rng.random() < 0.5:
                span = spans[int(rng.integers(0, len(spans)))]
                ids += span
                mask += [0] + [1] * (len(span) - 1)
                continue
            k = int(rng.integers(COPY_SPAN[0], hi + 1))
            span = self.vocab[rng.integers(0, self.vocab.size, size=k)].tolist()
            if self.distant:
                spans.append(span)
                ids += span
                mask += [0] * k
            else:
                ids += span + span
                mask += [0] * k + [0] + [1] * (k - 1)
        return np.asarray(ids[:w], dtype=np.int64), np.asarray(mask[:w], dtype=np.int64)

    def mix(
        self, step: int, ids: np.ndarray, mask: np.ndarray | None, share: float
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Replace about `share` of the rows of a step's batch (chosen per step) by copy rows."""
        if share <= 0.0:
            return ids, mask
        rng = step_rng(self.seed, step, stream=1)
        pick = rng.random(ids.shape[0]) < share
        ids = ids.copy()
        mask = np.ones_like(ids, dtype=np.int64) if mask is None else mask.copy()
        for i in np.flatnonzero(pick):  # rows as wide as the batch's (SFT length buckets)
            ids[i], mask[i] = self.row(rng, ids.shape[1])
        return ids, mask


def ordinary_ids(
    ids: np.ndarray, special: set[int] | frozenset[int] = frozenset(), chunk: int = 1 << 24
) -> np.ndarray:
    """The distinct ids in `ids` (ascending), special tokens removed: what copy spans are drawn
    from. Counted chunk by chunk, so a memory-mapped corpus is neither loaded whole nor sorted."""
    seen = np.zeros(0, dtype=bool)
    for i in range(0, int(ids.size), chunk):
        c = np.bincount(np.asarray(ids[i : i + chunk]).astype(np.int64, copy=False)) > 0
        if c.size > seen.size:
            c[: seen.size] |= seen
            seen = c
        else:
            seen[: c.size] |= c
    u = np.flatnonzero(seen)
    return u[~np.isin(u, np.fromiter(special, dtype=np.int64, count=len(special)))]


def check_ids_in_vocab(ids: np.ndarray, vocab_size: int, where: str, chunk: int = 1 << 24) -> None:
    """Refuse a token stream holding an id the tokenizer does not have. `meta.json` says which
    vocabulary the shards were written for, but nothing else checks their contents: a damaged
    shard or a hand-edited `meta.json` reached the model as an embedding IndexError traceback
    (a device-side assert on CUDA) or, for an id between the tokenizer's size and the padded
    table's, trained silently on a row no text maps to. One chunked pass over the memory map."""
    for i in range(0, int(ids.size), chunk):
        c = np.asarray(ids[i : i + chunk])
        if c.size and int(c.max()) >= vocab_size:
            j = i + int(np.argmax(c >= vocab_size))
            raise HillclimbError(
                f"{where} holds token id {int(ids[j])} at position {j}, outside the tokenizer's "
                f"{vocab_size} ids: the shards are damaged or were tokenized with another "
                "tokenizer; re-tokenize the data"
            )


class PretrainBatches:
    """`batch(step) -> int64 array [batch_size, seq_len + 1]` of the global batch;
    `batch_and_mask(step)` also gives the target mask (None when every token is a target).

    With `copy_fraction`, that share of each step's rows are copy rows (`CopyRows`, ids from the
    corpus); the first `copy_warmup_steps` steps use copy rows only. Why a warm-up: mixed into the
    corpus at 25-50% from the start, copying never formed in 400 steps; on copy rows alone it does
    after a plateau of a seed-dependent few hundred steps (BENCHMARKS.md, session 11).

    With `fim_rate` (and `fim_ids`), that share of the document pieces in each window is
    rearranged for fill-in-the-middle (`train.fim`), before copy rows replace any row.

    With `warmup` (a `copy_check.CopyWarmup` the training loop advances), the warm-up lasts until
    its end step instead of `copy_warmup_steps`: an adaptive warm-up ends at the first probe
    check that passes, so how many steps are copy-only is only known during the run."""

    def __init__(
        self,
        split: Split,
        seq_len: int,
        batch_size: int,
        seed: int,
        copy_fraction: float = 0.0,
        copy_warmup_steps: int = 0,
        special: set[int] | frozenset[int] = frozenset(),
        fim_rate: float = 0.0,
        fim_spm_rate: float = 0.5,
        fim_ids: FimIds | None = None,
        warmup: WarmupEnd | None = None,
    ):
        if fim_rate > 0 and fim_ids is None:
            raise HillclimbError("fim_rate > 0 needs the FIM token ids (fim_ids)")
        self.tokens = split.tokens
        self.fim_rate = float(fim_rate)
        self.fim_spm_rate = float(fim_spm_rate)
        self.fim_ids = fim_ids
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.copy_fraction = float(copy_fraction)
        self.copy_warmup_steps = int(copy_warmup_steps)
        self.warmup = warmup
        self.special = special
        self.n = int(self.tokens.size)
        if self.n < seq_len + 2:
            raise HillclimbError(
                f"training split has {self.n} tokens, fewer than one window of seq_len+1="
                f"{seq_len + 1}; add data or lower seq_len"
            )
        self._copies: CopyRows | None = None
        if self.copy_fraction > 0 or self.copy_warmup_steps > 0:
            vocab = ordinary_ids(np.asarray(self.tokens), special)
            self._copies = CopyRows(vocab, seq_len + 1, seed)

    def batch(self, step: int) -> np.ndarray:
        return self.batch_and_mask(step)[0]

    def batch_and_mask(self, step: int) -> tuple[np.ndarray, np.ndarray | None]:
        rng = step_rng(self.seed, step)
        starts = rng.integers(0, self.n - self.seq_len - 1, size=self.batch_size)
        rows = [np.asarray(self.tokens[s : s + self.seq_len + 1], dtype=np.int64) for s in starts]
        ids = np.stack(rows)
        if self.fim_rate > 0:
            assert self.fim_ids is not None
            ids, _ = fim_batch(
                ids, step_rng(self.seed, step, stream=2), self.fim_ids, self.fim_rate,
                self.fim_spm_rate,
            )  # fmt: skip
        if self._copies is None:
            return ids, None
        copy_only = (
            self.warmup.in_warmup(step) if self.warmup is not None
            else step < self.copy_warmup_steps
        )  # fmt: skip
        share = 1.0 if copy_only else self.copy_fraction
        return self._copies.mix(step, ids, None, share)


def rank_rows(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's contiguous share of a global batch (batch size divisible by world)."""
    per = batch.shape[0] // world
    return batch[rank * per : (rank + 1) * per]
