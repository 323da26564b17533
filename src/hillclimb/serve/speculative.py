"""Speculative decoding: a draft model proposes γ tokens, the target verifies them in one forward.

The acceptance rule is Leviathan et al. 2023 / Chen et al. 2023: draft token x_i drawn from the
draft's (warped) distribution q_i is kept with probability min(1, p_i(x_i) / q_i(x_i)) where p_i
is the target's warped distribution at the same position; at the first rejection the token is
resampled from norm(max(0, p_i − q_i)); if all γ are kept a bonus token is drawn from p_{γ+1}.
The committed tokens are then distributed exactly as plain sampling from p — the property the
statistical test checks. With temperature 0 the rule degenerates to "argmax equal", so greedy
speculative output is identical to plain greedy decoding of the target.

Both distributions go through the same `warp_probs` (temperature, top-k, top-p) so the guarantee
holds for the warped target distribution the user asked for.

Why per sequence (batch 1) with the draft's own KV cache: acceptance lengths differ per sequence,
so batching verification would need ragged rollbacks; at the batch sizes where speculation pays
(one or a few streams) a per-sequence step is what HF assisted generation does too. The draft
cache is kept lazily: it remembers how many tokens of each slot's sequence it holds and catches up
on the rest (prompt, tokens committed by plain steps, the last bonus token) in one forward before
drafting. Rejected drafts are rolled back in both caches with `KVCache.truncate`.

γ adapts per request as in HF assisted generation's "heuristic" schedule: +2 after a step where
every draft token was accepted, −1 otherwise, bounded to [1, gamma_max].
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch

from hillclimb.model.kv_cache import KVCache
from hillclimb.serve.fastpath import FastForward
from hillclimb.serve.sampling import SamplingParams, warp_probs


@dataclass
class SpecStats:
    drafted: int = 0
    accepted: int = 0
    steps: int = 0  # verification forwards of the target

    def add(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        self.steps += 1

    def merge(self, other: SpecStats) -> None:
        self.drafted += other.drafted
        self.accepted += other.accepted
        self.steps += other.steps

    def as_dict(self) -> dict[str, Any]:
        """acceptance_rate = accepted / drafted; mean_accept_len = tokens committed per target
        verification forward (accepted drafts + the corrected or bonus token)."""
        return {
            "drafted": self.drafted,
            "accepted": self.accepted,
            "steps": self.steps,
            "acceptance_rate": self.accepted / self.drafted if self.drafted else 0.0,
            "mean_accept_len": (self.accepted + self.steps) / self.steps if self.steps else 0.0,
        }


def accept_drafts(
    target_logits: torch.Tensor,
    draft_tokens: list[int],
    draft_probs: torch.Tensor | None,
    params: SamplingParams,
    generator: torch.Generator,
) -> tuple[int, int]:
    """Verify γ draft tokens. target_logits [γ+1, V] (raw), draft_probs [γ, V] (warped q; None
    when greedy or when the draft is deterministic). Returns (n_accepted, next_token): the first
    n drafts are kept and next_token is the correction (on a rejection) or the bonus token (all
    accepted).

    A deterministic draft (prompt lookup, a prediction) is q = one-hot(d): d is kept with
    probability min(1, p(d) / 1) = p(d), and the residual norm(max(0, p − q)) is p with d
    removed, renormalised — the same rule, without materialising q."""
    g = len(draft_tokens)
    if params.greedy:
        target_arg = torch.argmax(target_logits, dim=-1).tolist()
        n = 0
        while n < g and target_arg[n] == draft_tokens[n]:
            n += 1
        return n, int(target_arg[n])
    p = warp_probs(target_logits, params)  # [γ+1, V]
    idx = torch.tensor(draft_tokens, device=p.device)
    rows = torch.arange(g, device=p.device)
    px = p[rows, idx]
    r = torch.rand(g, generator=generator, device=p.device)
    if draft_probs is None:  # one-hot q: keep d with probability p(d)
        ok = (r < px).tolist()
    else:
        ok = (r * draft_probs[rows, idx] < px).tolist()  # r < p/q without dividing by a tiny q
    n = 0
    while n < g and ok[n]:
        n += 1
    if n == g:
        return n, int(torch.multinomial(p[g], 1, generator=generator))
    if draft_probs is None:
        residual = p[n].clone()
        residual[draft_tokens[n]] = 0.0
    else:
        residual = (p[n] - draft_probs[n]).clamp_min(0.0)
    total = float(residual.sum())
    dist = residual / total if total > 0 else p[n]
    return n, int(torch.multinomial(dist, 1, generator=generator))


@dataclass
class _DraftSlot:
    held: int = 0  # tokens of the slot's sequence that the draft cache holds
    gamma: int = 4


class DraftRunner:
    """The draft model with its own KV cache (one slot per target slot); a `drafters.Drafter`."""

    name = "model"
    deterministic = False

    def __init__(
        self,
        model: torch.nn.Module,
        n_slots: int,
        max_len: int,
        device: torch.device,
        lock: threading.RLock | None = None,
        gamma_init: int = 4,
        gamma_max: int = 12,
        fast_path: bool = True,
        fast: FastForward | None = None,
        compile: bool = False,
    ):
        self.model = model
        dtype = next(model.parameters()).dtype
        # sharing the draft engine's steps: the same cache length too, so a compiled step
        # (static cache shape) serves both caches
        if fast is not None and fast_path:
            max_len = max(max_len, fast.max_len)
        self.cache = KVCache(model.cfg, n_slots, max_len, device=device, dtype=dtype)
        if fast is not None and fast_path:
            self.fast: FastForward | None = fast  # shared with the draft's own engine
        else:
            self.fast = FastForward(model, max_len) if fast_path else None
        if compile and self.fast is not None and self.fast.lean:
            # drafting (T = 1) and catch-up (T ≥ 2), for this cache's shape
            self.fast.enable_compile(multi=True, cache=self.cache)
        self.device = device
        self.lock = lock or threading.RLock()
        self.gamma_init = gamma_init
        self.gamma_max = gamma_max
        self.slots: list[_DraftSlot] = [_DraftSlot(gamma=gamma_init) for _ in range(n_slots)]
        self.stats = SpecStats()

    def start(self, slot: int, prompt_len: int, prediction: list[int] | None) -> None:
        """A request took the slot (its cache was reset when the last one left)."""

    def reset(self, slot: int) -> None:
        self.cache.reset([slot])
        self.slots[slot] = _DraftSlot(gamma=self.gamma_init)

    def gamma(self, slot: int) -> int:
        return self.slots[slot].gamma

    def adapt(self, slot: int, drafted: int, accepted: int) -> None:
        s = self.slots[slot]
        s.gamma = min(self.gamma_max, s.gamma + 2) if accepted == drafted else max(1, s.gamma - 1)

    def room(self, slot: int, seq_len: int) -> int:
        """How many draft tokens the draft cache can still take for a sequence of seq_len."""
        s = self.slots[slot]
        need_catchup = seq_len - s.held
        return self.cache.max_len - int(self.cache.cursor[slot]) - need_catchup

    def propose(
        self,
        slot: int,
        seq: list[int],
        gamma: int,
        params: SamplingParams,
        generator: torch.Generator,
    ) -> tuple[list[int], torch.Tensor | None]:
        """Draft `gamma` tokens continuing `seq` (the full sequence incl. the pending token).
        Returns (tokens, q) with q the warped draft distributions [gamma, V] (None if greedy)."""
        s = self.slots[slot]
        slot_ids = torch.tensor([slot], device=self.device)
        new = seq[s.held :]
        assert new, "draft cache is ahead of the sequence"
        tokens: list[int] = []
        qs: list[torch.Tensor] = []
        lean = self.fast is not None and self.fast.lean
        with self.lock:
            if lean:
                assert self.fast is not None
                logits = self.fast.extend_one(new, self.cache, slot)[-1]
            else:
                logits = self._forward(torch.tensor([new], device=self.device), slot_ids, slot)
            s.held = len(seq)
            for i in range(gamma):
                if params.greedy:
                    t = int(torch.argmax(logits))
                else:
                    q = warp_probs(logits, params)
                    t = int(torch.multinomial(q, 1, generator=generator))
                    qs.append(q)
                tokens.append(t)
                if i < gamma - 1:
                    if lean:
                        assert self.fast is not None
                        logits = self.fast.decode_one(t, self.cache, slot)[0]
                    else:
                        x = torch.tensor([[t]], device=self.device)
                        logits = self._forward(x, slot_ids, slot)
                    s.held += 1
        return tokens, (torch.stack(qs) if qs else None)

    def _forward(self, x: torch.Tensor, slot_ids: torch.Tensor, slot: int) -> torch.Tensor:
        if self.fast is not None:  # the draft cache never holds padding: dense
            return self.fast(x, self.cache, slot_ids, single_slot=slot, dense=True)[0, -1]
        return self.model(x, cache=self.cache, slot_ids=slot_ids, last_only=True)[0, -1]

    def rollback(self, slot: int, keep: int) -> None:
        """Keep only the first `keep` tokens of the slot's sequence in the draft cache."""
        s = self.slots[slot]
        if keep < s.held:
            self.cache.truncate(slot, keep)
            s.held = keep
