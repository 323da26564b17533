"""KV cache for incremental decoding of a batch of independent sequences ("slots").

Why slots with per-slot cursors and a validity mask: the serving engine batches requests that
joined at different times (continuous batching), prefills them with right or left padding, and
frees slots when requests finish. Each slot has its own write cursor (storage index) and its own
position counter (number of real tokens seen), and `valid` marks which cells hold real tokens, so
padding cells are never attended to. A forward over a subset of slots (`slot_ids`) is how a new
request is prefilled while others wait.

Memory is allocated once, up front: `n_layers × slots × n_kv_heads × max_len × head_dim` for K
and V each — with MQA/GQA (`n_kv_heads < n_heads`) this is where the KV saving shows.
"""

from __future__ import annotations

import torch

from hillclimb.model.config import ModelConfig


class KVCache:
    def __init__(
        self,
        cfg: ModelConfig,
        n_slots: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        shape = (n_slots, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.valid = torch.zeros(n_slots, max_len, dtype=torch.bool, device=device)
        self.cursor = torch.zeros(n_slots, dtype=torch.long, device=device)  # next storage index
        self.seen = torch.zeros(n_slots, dtype=torch.long, device=device)  # real tokens so far
        self.n_slots = n_slots
        self.max_len = max_len

    @property
    def device(self) -> torch.device:
        return self.valid.device

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def reset(self, slots: torch.Tensor | list[int] | None = None) -> None:
        """Free slots (all when None) so new sequences can start in them."""
        if slots is None:
            self.valid.zero_()
            self.cursor.zero_()
            self.seen.zero_()
            return
        idx = torch.as_tensor(slots, dtype=torch.long, device=self.device)
        self.valid[idx] = False
        self.cursor[idx] = 0
        self.seen[idx] = 0

    def truncate(self, slot: int, n_real: int) -> None:
        """Roll a slot back so that only its first `n_real` real tokens remain (speculative
        decoding rejects drafted tokens this way). Assumes the slot holds no padding cells after
        its first real token (true for sequences prefilled without left padding)."""
        valid_idx = torch.nonzero(self.valid[slot]).flatten()
        if n_real > valid_idx.numel():
            raise ValueError(
                f"cannot truncate slot {slot} to {n_real} tokens: holds {valid_idx.numel()}"
            )
        if n_real == valid_idx.numel():
            return
        cut = int(valid_idx[n_real]) if n_real < valid_idx.numel() else int(self.cursor[slot])
        self.valid[slot, cut:] = False
        self.cursor[slot] = cut
        self.seen[slot] = n_real

    def copy_prefix(self, src: int, dst: int, n: int) -> torch.Tensor:
        """Make slot `dst` hold exactly the first `n` real tokens of slot `src`, densely in cells
        0..n-1 (`src == dst` compacts a slot in place). Returns the source cells used.

        Why this is exact: a token's K carries its rotary *position* (its index among the real
        tokens, `seen`), not its storage cell, and padding cells are never attended to; so
        dropping the holes and continuing from position n gives the same attention inputs as
        prefilling those n tokens into a fresh slot. The prefix cache (`serve/prefix_cache.py`)
        uses it to adopt or copy a finished request's KV instead of prefilling it again."""
        cells = torch.nonzero(self.valid[src, : int(self.cursor[src])]).flatten()[:n]
        if cells.numel() != n:
            raise ValueError(f"slot {src} holds {cells.numel()} real tokens, not {n}")
        dense = n == 0 or int(cells[-1]) == n - 1
        if not (src == dst and dense):
            for t in (*self.k, *self.v):
                t[dst, :, :n] = t[src, :, :n] if dense else t[src].index_select(1, cells)
        self.valid[dst] = False
        self.valid[dst, :n] = True
        self.cursor[dst] = n
        self.seen[dst] = n
        return cells

    def prepare(
        self, slot_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Reserve cells for a forward of T new tokens in `slot_ids` (len B).

        Returns (write_idx [B, T], positions [B, T], key_mask [B, T, L], L): where to write the
        new K/V, their rotary positions, which of the first L cells each new query may attend to.
        Advances cursors, position counters and validity.
        """
        B, T = attention_mask.shape
        cursor = self.cursor[slot_ids]
        write_idx = cursor[:, None] + torch.arange(T, device=self.device)[None, :]
        if int(write_idx.max()) >= self.max_len:
            raise ValueError(
                f"KV cache overflow: need {int(write_idx.max()) + 1} cells, have {self.max_len}"
            )
        m = attention_mask.to(torch.long)
        positions = self.seen[slot_ids][:, None] + torch.cumsum(m, dim=1) - 1
        positions = positions.clamp(min=0)
        rows = slot_ids[:, None].expand(B, T)
        self.valid[rows, write_idx] = attention_mask.to(torch.bool)
        self.cursor[slot_ids] = cursor + T
        self.seen[slot_ids] = self.seen[slot_ids] + m.sum(dim=1)
        L = int(write_idx.max()) + 1
        cells = torch.arange(L, device=self.device)
        causal = cells[None, None, :] <= write_idx[:, :, None]  # [B, T, L]
        key_mask = causal & self.valid[slot_ids, :L][:, None, :]
        # A padding query with no valid key before it would give NaN; let it see itself.
        key_mask |= cells[None, None, :] == write_idx[:, :, None]
        return write_idx, positions, key_mask, L
