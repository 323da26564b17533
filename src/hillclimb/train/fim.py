"""Fill-in-the-middle in pre-training: some documents of a window are rearranged so the model
learns to write a middle that joins a prefix to a suffix it has already read.

Why in pre-training and not only in SFT: an IDE completion is a FIM request on every keystroke,
and a few hundred SFT cuts teach the format, not the skill (BENCHMARKS.md "FIM on held-out
code": the tiny code-flash wrote code-shaped text, below "repeat the previous line"). Code
models learn it in pre-training: Bavarian et al. 2022 ("Efficient Training of Language Models
to Fill in the Middle", arXiv 2207.14255) transform a share of documents (the FIM rate; 0.5 to
0.9 there, 0.5 in StarCoder and DeepSeek-Coder) and report that left-to-right quality is not
hurt ("FIM for free"); they mix two layouts half and half (the SPM rate, StarCoder 0.5):

- PSM: ``<|fim_prefix|> P <|fim_suffix|> S <|fim_middle|> M`` — the layout our server and
  Qwen2.5-Coder send (`tokenizer.specials.fim_prompt`);
- SPM (the paper's variant 2): ``<|fim_prefix|> <|fim_suffix|> S <|fim_middle|> P M`` — prefix
  and middle stay one run of text, which transfers to PSM in their measurements.

How, and why so: context-level FIM (the paper's better variant) on each window the stateless
loader draws (`train.data.PretrainBatches`): the window is split at the shards' document
separator (`eos`), each piece of at least `min_tokens` is rearranged with probability `rate`,
and the row is cut back to its width (three sentinels per rearranged piece fall off its end).
The middle of a whole document is followed by its `eos`, as SFT's FIM records end the middle
with `<|endoftext|>`, so the model learns where to stop. Cuts are at token boundaries, not
characters: the loader works on ids and must stay cheap and a pure function of (seed, step);
the server's token healing backs a request's last prefix token up to such a boundary. Every
token stays a target, as in the paper. Validation windows are never rearranged, so the
pre-training bits/byte stay a left-to-right measure and show what FIM costs there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hillclimb.errors import HillclimbError

MIN_TOKENS = 8  # a piece shorter than this is left as it is (nothing worth filling)


@dataclass(frozen=True)
class FimIds:
    prefix: int
    suffix: int
    middle: int
    eos: int  # the shards' document separator

    @classmethod
    def from_tokenizer(cls, tok, eos: int) -> FimIds:
        from hillclimb.tokenizer.specials import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

        sp = tok.special_ids
        missing = [s for s in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE) if s not in sp]
        if missing:
            raise HillclimbError(
                f"fim_rate > 0 needs the FIM special tokens; the tokenizer lacks {missing}"
            )
        return cls(sp[FIM_PREFIX], sp[FIM_SUFFIX], sp[FIM_MIDDLE], int(eos))


def fim_piece(
    piece: np.ndarray, rng: np.random.Generator, ids: FimIds, spm_rate: float
) -> np.ndarray:
    """One document piece rearranged around two uniformly drawn token cuts (PSM or SPM)."""
    a, b = sorted(int(x) for x in rng.integers(0, piece.size + 1, size=2))
    pre, mid, suf = piece[:a], piece[a:b], piece[b:]
    if rng.random() < spm_rate:
        head = np.asarray([ids.prefix, ids.suffix], dtype=piece.dtype)
        return np.concatenate([head, suf, [ids.middle], pre, mid]).astype(piece.dtype)
    return np.concatenate([[ids.prefix], pre, [ids.suffix], suf, [ids.middle], mid]).astype(
        piece.dtype
    )


def fim_row(
    row: np.ndarray,
    rng: np.random.Generator,
    ids: FimIds,
    rate: float,
    spm_rate: float,
    min_tokens: int = MIN_TOKENS,
) -> tuple[np.ndarray, int]:
    """`row` with each document piece (split at `ids.eos`) rearranged with probability `rate`,
    cut back to its width; also how many pieces were rearranged. One draw per piece whatever
    its length, so the draws do not depend on `min_tokens`."""
    width = row.size
    cuts = np.flatnonzero(row == ids.eos)
    out: list[np.ndarray] = []
    start, n = 0, 0
    for end in [*cuts.tolist(), width]:
        piece = row[start:end]
        if rng.random() < rate and piece.size >= min_tokens:
            out.append(fim_piece(piece, rng, ids, spm_rate))
            n += 1
        else:
            out.append(piece)
        if end < width:
            out.append(row[end : end + 1])
        start = end + 1
    if n == 0:
        return row, 0
    return np.concatenate(out)[:width], n


def fim_batch(
    batch: np.ndarray,
    rng: np.random.Generator,
    ids: FimIds,
    rate: float,
    spm_rate: float,
) -> tuple[np.ndarray, int]:
    """Every row of a step's batch through `fim_row` (rows in order, one generator)."""
    if rate <= 0.0:
        return batch, 0
    rows, total = [], 0
    for r in batch:
        new, n = fim_row(r, rng, ids, rate, spm_rate)
        rows.append(new)
        total += n
    return np.stack(rows), total
