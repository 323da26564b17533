"""Draft sources for speculative decoding behind one interface, and the model-free one: lookup.

`Drafter` is what the engine asks for draft tokens, per KV-cache slot: `gamma(slot)` (how many
tokens it would draft now; 0 = decode plainly this step), `room`, `propose`, `adapt` (after the
target verified a proposal), `rollback`, `reset`, `start` (a request took the slot). Two
implementations:

- `speculative.DraftRunner` — a smaller model with its own KV cache; proposals are samples from
  the draft's warped distribution q, verified with the Leviathan/Chen rule.
- `LookupDrafter` — prompt lookup / n-gram drafting (HF `prompt_lookup_num_tokens`, vLLM
  `ngram`): the last n tokens of the sequence (n from `ngram_max` down to `ngram_min`) are looked
  up in the prompt + the tokens generated so far, and what followed their most recent
  occurrence with a full draft after it is proposed (`NgramIndex.match`). With an OpenAI
  *predicted output* the prediction's tokens are searched first, and an alignment pointer keeps
  drafting from where the previous accepted draft ended (a repeated line elsewhere in the text
  does not derail it).

Why model-free: on this hardware a draft model costs 50–60% of a target step (BENCHMARKS.md,
"Speculative decoding"), which caps model drafting at ≈1.2–1.5× even with a perfect draft. A
lookup costs a few dictionary probes, so the only cost of a wrong guess is the verification
forward itself — and code edits, refactors and answers that quote their prompt copy long runs.

A lookup proposal is deterministic: the draft distribution is one-hot on the proposed token d.
The acceptance rule with q = one-hot(d) keeps d with probability p(d) and otherwise resamples
from p with d removed and renormalised (`speculative.accept_drafts` with `draft_probs=None`), so
sampled output is distributed exactly as plain sampling from the target and greedy output is
identical to plain greedy decoding.

When drafting pays is decided per request from its own acceptance, never from timings (so a
seeded sampled request stays reproducible): a decayed count of accepted and rejected draft
tokens (with a prior — higher when a prediction is given) estimates the per-token acceptance
α; a cost model in units of one plain decode step, verify(T) = `verify_base` +
`verify_per_token` · (T − 1), picks the γ that maximises expected tokens per cost,
E(γ, α) / verify(γ + 1) with E = (1 − α^(γ+1)) / (1 − α). When even the best γ does not beat
plain decoding by `min_gain` (1.1), the request decodes plainly for a back-off of `backoff_min`, 2×, …
`backoff_max` steps — or longer: at least the cost-model loss of the drafting run before it over
`loss_budget` (2%, `loss_bounded_wait`), so a losing drafter costs at most 2% in the long run —
and then probes with one draft; a winning probe resets the back-off. Before
its first verification a request drafts only if its prior α already pays (a prediction's prior
does; the plain prior 0.5 does not at the measured step costs), so short answers do not each
pay for a losing probe. Steps with no n-gram match cost only the lookup. The cost defaults are
whole engine steps (forward + acceptance + commit) on the compiled CPU steps of thinking-tiny,
not forwards alone: a verification step costs ≈2–2.5 plain steps (BENCHMARKS.md).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from hillclimb.errors import HillclimbError
from hillclimb.serve.sampling import DRAFTERS, SamplingParams

__all__ = [
    "DRAFTERS",
    "LOSS_BUDGET",
    "Drafter",
    "LookupConfig",
    "LookupDrafter",
    "NgramIndex",
    "loss_bounded_wait",
]

# The most a drafter that does not pay may cost over plain decoding, in the long run (issue 15).
LOSS_BUDGET = 0.02
# the longest back-off (plain steps) `loss_bounded_wait` ever asks for: a loss measured against a
# near-zero plain step (a broken clock) must not switch drafting off for good
WAIT_CAP = 1 << 20


def loss_bounded_wait(loss: float, floor: int, budget: float = LOSS_BUDGET) -> int:
    """Plain decode steps to wait after a drafting run that lost `loss` plain steps against plain
    decoding (its measured cost minus the tokens it committed, in units of one plain step): at
    least `floor` (the doubling back-off), and at least loss / budget.

    Why that rule: a cycle of a losing run (cost P, C tokens committed, loss = P − C) and a wait
    of W plain steps takes P + W where plain decoding takes C + W, an overhead of
    loss / (C + W) ≤ loss / W. W ≥ loss / budget bounds it by `budget` whatever the run cost —
    a fixed back-off did not: a probe of the attached tiny draft (its catch-up forward
    included) costs several plain steps, and probing every ≤ 256 steps ran at 0.95× and 0.81×
    of plain decoding (session 24). A probe's own cost grows
    with the wait before it (the draft model's cache catches up on the skipped tokens), so the
    waits grow geometrically and probes fade out while drafting keeps losing, and the bound
    holds for every cycle."""
    if loss <= 0 or budget <= 0:
        return floor
    if not math.isfinite(loss):
        return max(floor, WAIT_CAP)
    return max(floor, min(WAIT_CAP, math.ceil(loss / budget)))


ProposeFn = Callable[
    [int, list[int], int, SamplingParams, torch.Generator], tuple[list[int], torch.Tensor | None]
]


class Drafter(Protocol):
    """What the engine needs from a draft source (see the module docstring)."""

    name: str
    deterministic: bool  # proposals are one-hot (no draft distribution q)

    def start(self, slot: int, prompt_len: int, prediction: list[int] | None) -> None: ...

    def gamma(self, slot: int) -> int: ...

    def room(self, slot: int, seq_len: int) -> int: ...

    # propose(slot, seq, gamma, params, generator) → (up to γ tokens continuing seq, the pending
    # token last; their warped draft distributions [γ, V], or None for one-hot drafts)
    propose: ProposeFn

    def adapt(self, slot: int, drafted: int, accepted: int) -> None: ...

    def rollback(self, slot: int, keep: int) -> None: ...

    def reset(self, slot: int) -> None: ...


@dataclass
class LookupConfig:
    """Prompt-lookup drafting: n-gram sizes, draft length and the when-to-draft policy."""

    ngram_max: int = 4
    ngram_min: int = 2
    gamma_max: int = 12  # also capped by the engine's gamma_max (its cache overshoot room)
    # cost of one verification step of T tokens, in plain decode steps: base + per_token ·
    # (T − 1). The base is the whole speculative step measured in the engine (forward, the
    # acceptance test, committing, rollback) against a whole plain step, not the forwards alone
    # (BENCHMARKS.md, "Suffix drafting")
    verify_base: float = 2.0
    verify_per_token: float = 0.15
    # prior on per-token acceptance (pseudo-counts: weight · prior accepted, weight · (1 − prior)
    # rejected); a prediction is a stronger hint than the prompt
    prior: float = 0.5
    prior_prediction: float = 0.9
    prior_weight: float = 2.0
    decay: float = 0.9  # per verification step, on the observed counts
    # draft only while expected tokens per cost beat plain decoding by this factor (the cost
    # model is approximate; a thin margin would keep drafting at a loss)
    min_gain: float = 1.1
    backoff_min: int = 4
    backoff_max: int = 64
    # a back-off is also long enough that the loss of the drafting run before it, amortised
    # over it, stays within this share of plain decoding (`loss_bounded_wait`)
    loss_budget: float = LOSS_BUDGET
    # Engine-wide acceptance of prompt-lookup drafts (decayed per verification, over every
    # request): once it holds `seen_min` evidence it replaces `prior` for new requests, so a
    # workload whose answers copy their prompt (code edits) drafts from its first match while one
    # that does not (open questions) stays gated. Without evidence nobody would ever probe past
    # the gate, so every `explore_every`-th gated request probes once anyway.
    seen_min: float = 8.0
    seen_decay: float = 0.95
    explore_every: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.ngram_min <= self.ngram_max <= 64:
            raise HillclimbError(
                f"lookup n-gram sizes must satisfy 1 <= min <= max <= 64, got "
                f"{self.ngram_min}..{self.ngram_max}"
            )
        if self.gamma_max < 1 or self.backoff_min < 1 or self.backoff_max < self.backoff_min:
            raise HillclimbError("lookup gamma_max and back-off lengths must be >= 1")
        if self.explore_every < 1 or self.seen_min < 0 or not 0 < self.seen_decay <= 1:
            raise HillclimbError(
                "lookup explore_every must be >= 1, seen_min >= 0 and seen_decay in (0, 1]"
            )
        if not 0 < self.loss_budget < 1:
            raise HillclimbError(f"lookup loss_budget must be in (0, 1), got {self.loss_budget}")
        if not (0 < self.prior < 1 and 0 < self.prior_prediction < 1 and 0 < self.decay <= 1):
            raise HillclimbError("lookup priors must be in (0, 1) and decay in (0, 1]")

    def cost(self, n_tokens: int) -> float:
        """Verifying n_tokens in one forward, in plain decode steps."""
        return self.verify_base + self.verify_per_token * (n_tokens - 1)

    def best_gamma(self, alpha: float, limit: int) -> tuple[int, float]:
        """(γ ≤ limit maximising expected committed tokens per cost, that ratio)."""
        best, ratio = 0, 0.0
        for g in range(1, limit + 1):
            e = g + 1.0 if alpha >= 1 else (1 - alpha ** (g + 1)) / (1 - alpha)
            r = e / self.cost(g + 1)
            if r > ratio:
                best, ratio = g, r
        return best, ratio


class NgramIndex:
    """Positions of every n-gram (n in [n_min, n_max]) of a growing token list.

    `index[key]` lists, ascending, the positions right after each occurrence of `key` (where its
    continuation starts). Only n-grams with at least one following token are indexed, so the
    sequence's own suffix never matches itself. Amortised O(n_max − n_min + 1) per token."""

    def __init__(self, n_min: int, n_max: int):
        self.n_min, self.n_max = n_min, n_max
        self.tokens: list[int] = []
        self.index: dict[tuple[int, ...], list[int]] = {}
        self.done = 0  # n-grams ending before position `done` are indexed

    def extend(self, tokens: list[int], final: bool = False) -> None:
        """Append tokens; index up to the last one that has a continuation (all if `final`: a
        static source whose last n-gram can still match a sequence that goes on)."""
        self.tokens.extend(tokens)
        end = len(self.tokens) if final else len(self.tokens) - 1
        for i in range(self.done, end):  # n-grams ending at position i
            for n in range(self.n_min, min(self.n_max, i + 1) + 1):
                key = tuple(self.tokens[i + 1 - n : i + 1])
                self.index.setdefault(key, []).append(i + 1)
        self.done = max(self.done, end)

    def match(
        self, suffix: list[int], after: int | None = None, want: int = 1
    ) -> tuple[int, int] | None:
        """(continuation start, n) for the longest n-gram suffix of `suffix` that occurs: its
        first occurrence at or after `after` when given (keeps an alignment moving forward),
        else the most recent one with at least `want` tokens after it — in text that repeats
        with a short period (a loop, a list of similar lines) the most recent occurrence is one
        period back, so its continuation runs into the end of the sequence after a token or
        two, while an earlier one proposes a whole draft (checked among the last
        `RECENT_OCCURRENCES`; else the one with the most tokens after it). Only starts with at
        least one token to propose."""
        end = len(self.tokens)
        for n in range(min(self.n_max, len(suffix)), self.n_min - 1, -1):
            pos = self.index.get(tuple(suffix[len(suffix) - n :]))
            if not pos or pos[0] >= end:
                continue
            if after is not None:
                k = bisect.bisect_left(pos, after)
                if k < len(pos) and pos[k] < end:
                    return pos[k], n
            i = len(pos) - 1
            while pos[i] >= end:  # a static source's final n-gram
                i -= 1
            for j in range(i, max(-1, i - RECENT_OCCURRENCES), -1):
                if end - pos[j] >= want:
                    return pos[j], n
            return pos[max(0, i - RECENT_OCCURRENCES + 1)], n
        return None

    def find(self, suffix: list[int], after: int | None = None) -> int | None:
        m = self.match(suffix, after)
        return None if m is None else m[0]


# how many of an n-gram's latest occurrences the lookup considers for a long enough continuation
RECENT_OCCURRENCES = 8


@dataclass
class _LookupSlot:
    context: NgramIndex  # prompt + generated tokens (the request's sequence)
    prediction: NgramIndex | None = None
    pred_ptr: int = 0  # where in the prediction the last accepted draft ended
    prompt_len: int = 0
    accepted: float = 0.0  # decayed counts of accepted / rejected draft tokens
    rejected: float = 0.0
    prior: float = 0.5
    skip: int = 0  # plain steps left before the next probe
    backoff: int = 4
    # net plain steps lost to drafting since the last back-off (`loss_bounded_wait`)
    debt: float = 0.0
    last: tuple[int, int] | None = None  # (source: 0 prediction / 1 context, start) of the proposal
    explored: bool = False  # counted once towards the engine-wide exploration quota
    exploring: bool = False  # this request probes at its first match despite the gate
    stats: dict[str, int] = field(
        default_factory=lambda: {"matches": 0, "misses": 0, "skips": 0, "gated": 0}
    )


class LookupDrafter:
    """Prompt-lookup drafting over prompt + output (+ an optional prediction), per slot."""

    name = "lookup"
    deterministic = True

    def __init__(self, n_slots: int, config: LookupConfig | None = None, gamma_max: int = 12):
        self.cfg = config or LookupConfig()
        self.gamma_max = max(1, min(self.cfg.gamma_max, gamma_max))
        self.slots: list[_LookupSlot | None] = [None] * n_slots
        self.forced: list[bool] = [False] * n_slots
        # engine-wide decayed evidence on unforced context drafts (`LookupConfig.seen_*`)
        self.seen_accepted = 0.0
        self.seen_rejected = 0.0
        self.gated_requests = 0  # requests that met the gate (exploration counter)

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(
        self, slot: int, prompt_len: int, prediction: list[int] | None, forced: bool = False
    ) -> None:
        c = self.cfg
        s = _LookupSlot(context=NgramIndex(c.ngram_min, c.ngram_max), backoff=c.backoff_min)
        s.prompt_len = prompt_len
        if prediction:
            s.prediction = NgramIndex(c.ngram_min, c.ngram_max)
            s.prediction.extend(list(prediction), final=True)
            s.prior = c.prior_prediction
        else:
            s.prior = self.seen_prior()
        self.slots[slot] = s
        self.forced[slot] = forced

    def seen_prior(self) -> float:
        """The prior of a new request without a prediction: the engine-wide acceptance of
        context drafts once there is `seen_min` evidence, else the configured `prior`."""
        seen = self.seen_accepted + self.seen_rejected
        if seen < self.cfg.seen_min:
            return self.cfg.prior
        return min(0.95, max(0.05, self.seen_accepted / seen))

    def reset(self, slot: int) -> None:
        self.slots[slot] = None
        self.forced[slot] = False

    def rollback(self, slot: int, keep: int) -> None:
        """Nothing to roll back: the index only ever holds committed tokens."""

    def room(self, slot: int, seq_len: int) -> int:
        return self.gamma_max + 1  # no cache of its own

    # ---- policy -------------------------------------------------------------------------------
    def alpha(self, slot: int) -> float:
        s = self._slot(slot)
        w = self.cfg.prior_weight
        return (s.accepted + w * s.prior) / (s.accepted + s.rejected + w)

    def gamma(self, slot: int) -> int:
        """Draft length this step would allow (the match decides the rest); 0 while backing off,
        and 0 before the first verification when the prior alone says drafting would not pay
        (the first probe of every request was a measured loss on short answers)."""
        s = self._slot(slot)
        if self.forced[slot]:
            return self.gamma_max
        if s.skip > 0:
            s.skip -= 1
            s.stats["skips"] += 1
            return 0
        if s.accepted + s.rejected == 0 and not self.pays(slot):
            if not s.explored:
                s.explored = True
                self.gated_requests += 1
                if (self.gated_requests - 1) % self.cfg.explore_every == 0:
                    s.exploring = True  # evidence for the engine-wide prior
                    s.stats["explored"] = 1
            if s.exploring:  # until its first match is verified (steps without one cost nothing)
                return self.gamma_max
            s.stats["gated"] += 1
            return 0
        return self.gamma_max

    def pays(self, slot: int) -> bool:
        """Whether the best draft length at the current α beats plain decoding by `min_gain`."""
        return self.cfg.best_gamma(self.alpha(slot), self.gamma_max)[1] >= self.cfg.min_gain

    def adapt(self, slot: int, drafted: int, accepted: int) -> None:
        s = self._slot(slot)
        c = self.cfg
        s.accepted = c.decay * s.accepted + accepted
        s.rejected = c.decay * s.rejected + (1 if accepted < drafted else 0)
        if s.last is not None and s.last[0] == 0:
            # just past the committed correction/bonus token, if it matched the prediction too
            # (`_match` checks that before trusting the pointer)
            s.pred_ptr = s.last[1] + accepted + 1
        elif not self.forced[slot] and s.prediction is None:  # evidence for `seen_prior`
            self.seen_accepted = c.seen_decay * self.seen_accepted + accepted
            self.seen_rejected = c.seen_decay * self.seen_rejected + (accepted < drafted)
        # what this verification lost against plain decoding, by the cost model (never below
        # zero: gains are not banked against a later change of the text)
        s.debt = max(0.0, s.debt + c.cost(drafted + 1) - (accepted + 1))
        _, ratio = c.best_gamma(self.alpha(slot), self.gamma_max)
        if ratio < c.min_gain:
            s.skip = loss_bounded_wait(s.debt, s.backoff, c.loss_budget)
            s.backoff = min(c.backoff_max, 2 * s.backoff)
            s.debt = 0.0
        else:
            s.backoff = c.backoff_min

    # ---- drafting -----------------------------------------------------------------------------
    def propose(self, slot: int, seq: list[int], gamma: int, *_: Any) -> tuple[list[int], None]:
        """Up to `gamma` tokens continuing `seq` (prompt + output, pending token last); [] when
        nothing matches. One-hot drafts: the sampling parameters and the generator (`ProposeFn`)
        are not needed."""
        return self._draft(slot, seq, gamma), None

    def _draft(self, slot: int, seq: list[int], gamma: int) -> list[int]:
        """The lookup: from the prediction or the sequence itself."""
        s = self._slot(slot)
        ctx = s.context
        if len(ctx.tokens) < len(seq):
            ctx.extend(seq[len(ctx.tokens) :])
        nmax = self.cfg.ngram_max
        tail = seq[-nmax:]
        src, start = self._match(s, seq, tail, gamma)
        s.last = None
        if start is None:
            s.stats["misses"] += 1
            return []
        tokens = s.prediction.tokens if src == 0 and s.prediction is not None else ctx.tokens
        avail = len(tokens) - start
        limit = min(gamma, avail)
        if limit < 1:
            s.stats["misses"] += 1
            return []
        g, _ = self.cfg.best_gamma(self.alpha(slot), limit)
        if self.forced[slot]:
            g = limit
        g = max(1, g)
        s.last = (src, start)
        s.stats["matches"] += 1
        return list(tokens[start : start + g])

    def _match(
        self, s: _LookupSlot, seq: list[int], tail: list[int], want: int = 1
    ) -> tuple[int, int | None]:
        pred = s.prediction
        if pred is not None:
            # still aligned: the sequence ends with the prediction's tokens before pred_ptr
            p = s.pred_ptr
            k = min(self.cfg.ngram_min, p)
            if 0 < p < len(pred.tokens) and k >= 1 and pred.tokens[p - k : p] == seq[-k:]:
                return 0, p
            out = seq[s.prompt_len :]
            if p == 0 and 0 < len(out) <= self.cfg.ngram_max and pred.tokens[: len(out)] == out:
                return 0, len(out)  # the answer so far is the prediction's start
        pm = pred.match(tail, after=s.pred_ptr) if pred is not None else None
        cm = s.context.match(tail, want=want)
        if pm is not None and (cm is None or pm[1] >= cm[1]):  # the longer match; ties: prediction
            return 0, pm[0]
        return 1, None if cm is None else cm[0]

    def drafted_from_prediction(self, slot: int) -> bool:
        """Whether the slot's last proposal came from the request's predicted output (what
        OpenAI's accepted/rejected prediction token counts are about; a match in the prompt or
        the output so far is ordinary prompt lookup)."""
        s = self.slots[slot]
        return s is not None and s.last is not None and s.last[0] == 0

    def _slot(self, slot: int) -> _LookupSlot:
        s = self.slots[slot]
        if s is None:
            raise HillclimbError(f"lookup drafter: slot {slot} has no request")
        return s

    def slot_stats(self, slot: int) -> dict[str, Any]:
        s = self._slot(slot)
        return {**s.stats, "alpha": round(self.alpha(slot), 3)}
