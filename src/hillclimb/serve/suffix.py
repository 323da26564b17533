"""Suffix drafting: prompt lookup plus the engine's recent outputs, ranked by frequency.

Prompt lookup (`drafters.LookupDrafter`) only sees the request's own prompt and output. Agent
and RL workloads repeat themselves *across* requests: an agent's turns re-emit the same tool-call
scaffolding, file paths and test commands; the n samples of a GRPO group, and the same prompt
revisited a few steps later, produce near-identical reasoning and code. SuffixDecoding
(arXiv 2411.04975) drafts from a suffix tree over previous outputs, choosing at each step the
continuation seen most often after the current context, and reports its largest gains on such
agentic workloads. This module is that idea in the engine's terms:

- `OutputHistory` — the last `max_tokens` tokens of finished outputs, one n-gram index over all
  of them (outputs separated by a token id no sequence contains, so no n-gram spans two). For a
  context it walks from the longest matching n-gram down and proposes the *most frequent*
  continuation among that n-gram's recent occurrences (ties: the most recent), one token at a
  time, extending the context with each proposed token — the greedy path of a frequency-weighted
  suffix tree. It stops when no n-gram of at least `min_match` tokens matches (a short context
  such as a chat template's opening is shared by every output and says nothing about this one)
  or the leading continuation's share falls below `min_share` (the history disagrees with
  itself, so a guess would likely be rejected).
- `SuffixDrafter` — a `LookupDrafter` whose proposal comes from the request's prediction or
  its own prompt + output first (the most specific evidence), and from the history when those
  have no match. The acceptance policy (per-request α, cost model, back-off) is the lookup's,
  except that a request's prior α is the engine's recent acceptance for this drafter once it
  has evidence (the fixed prior made every short answer pay for probing).

Proposals are deterministic (one-hot), so the exact acceptance rule keeps sampled output
distributed as plain sampling and greedy output identical to plain greedy decoding: the history
changes how fast an answer is produced, never what it is. A *seeded sampled* request gets the
same tokens too: verification draws each position exactly as plain sampling does and keeps the
draft while they agree (`speculative.accept_drafts`), so the drafts — and so what the engine
answered before — do not change which random draws the request spends (up to floating-point
differences between the verify and decode forwards, as for greedy output).

Privacy: output is unaffected, but a history draft shows — in the answer's speed and in the
`hillclimb.speculative` counts the server returns (drafted / accepted) — that some earlier output
contained the request's context and how it went on: a membership oracle for other users'
answers. So the history is kept per cache scope (`SamplingParams.cache_scope`: the HTTP server's
account + `cache_salt`): a request drafts only from outputs of its own scope. In-process callers
(scope None: RL groups, harness episodes) share `SuffixDrafter.history`; at most
`MAX_SCOPED_HISTORIES` other scopes keep one (least recently used dropped), each a
`SCOPED_HISTORY_SHARE` of the shared one's size, so many accounts cannot grow memory unbounded.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.serve.drafters import LookupConfig, LookupDrafter, NgramIndex

__all__ = ["HistoryConfig", "OutputHistory", "SuffixDrafter"]

# a gated request probes only with continuations this unanimous, seen at least this often
# (requiring 3 sightings stopped every probe on revisited prompts: bench/serve_suffix.py)
CONFIDENT_SHARE = 0.9
CONFIDENT_COUNT = 1
# per-scope histories (module docstring, Privacy): how many scopes keep one, and their size as
# a share of the shared history's `max_tokens`
MAX_SCOPED_HISTORIES = 16
SCOPED_HISTORY_SHARE = 0.25
_SEP = -1  # between outputs in the history; never a token id, so no n-gram spans two outputs


@dataclass
class HistoryConfig:
    """What the output history keeps and how it proposes."""

    ngram_min: int = 2
    ngram_max: int = 16
    max_tokens: int = 65536  # kept tokens (oldest outputs dropped first)
    max_occurrences: int = 64  # recent occurrences of an n-gram counted for its continuation
    min_share: float = 0.3  # stop drafting when the leading continuation's share is below this
    # draft only from contexts at least this long: short n-grams ("The answer is") are shared by
    # every output and predict nothing about this one (measured: bench/serve_suffix.py)
    min_match: int = 6

    def __post_init__(self) -> None:
        if not 1 <= self.ngram_min <= self.ngram_max <= 64:
            raise HillclimbError(
                f"history n-gram sizes must satisfy 1 <= min <= max <= 64, got "
                f"{self.ngram_min}..{self.ngram_max}"
            )
        if self.max_tokens < 1 or self.max_occurrences < 1:
            raise HillclimbError("history max_tokens and max_occurrences must be >= 1")
        if not 0 < self.min_share <= 1:
            raise HillclimbError(f"history min_share must be in (0, 1], got {self.min_share}")
        if not self.ngram_min <= self.min_match <= self.ngram_max:
            raise HillclimbError(
                f"history min_match must be within the n-gram sizes "
                f"{self.ngram_min}..{self.ngram_max}, got {self.min_match}"
            )


class OutputHistory:
    """Recent finished outputs, indexed for frequency-ranked continuation (module docstring)."""

    def __init__(self, config: HistoryConfig | None = None) -> None:
        self.cfg = config or HistoryConfig()
        self.outputs: deque[list[int]] = deque()
        self.kept = 0  # tokens in `outputs`
        self.index = NgramIndex(self.cfg.ngram_min, self.cfg.ngram_max)
        self.added = 0  # outputs ever added (a counter for stats)

    def __len__(self) -> int:
        return len(self.outputs)

    def add(self, tokens: list[int]) -> None:
        """Remember one finished output (its generated tokens, not its prompt)."""
        tokens = [int(t) for t in tokens]
        if len(tokens) < 2:
            return  # nothing to continue from
        self.outputs.append(tokens)
        self.kept += len(tokens)
        self.added += 1
        while self.kept > self.cfg.max_tokens and len(self.outputs) > 1:
            self.kept -= len(self.outputs.popleft())
        if len(self.index.tokens) > 2 * self.cfg.max_tokens:
            # rebuild over what is kept; amortised O(1) per token since it at least halves
            self.index = NgramIndex(self.cfg.ngram_min, self.cfg.ngram_max)
            for out in self.outputs:
                self.index.extend([*out, _SEP])
        else:
            self.index.extend([*tokens, _SEP])
        # index.extend leaves the last n-gram (ending at _SEP) unindexed until the next output;
        # keys containing _SEP never match a real sequence, so that is harmless.

    def next_token(self, context: list[int], min_n: int | None = None) -> tuple[int, float] | None:
        """(most frequent continuation of the longest matching suffix of `context` — at least
        `min_n` tokens long, default `ngram_min` — and its share among that n-gram's recent
        occurrences), or None when no such n-gram occurs."""
        nxt = self._next(context, min_n)
        return None if nxt is None else (nxt[0], nxt[1])

    def _next(self, context: list[int], min_n: int | None) -> tuple[int, float, int] | None:
        """`next_token` plus how many recent occurrences continued that way."""
        toks = self.index.tokens
        c = self.cfg
        lo = c.ngram_min if min_n is None else max(c.ngram_min, min_n)
        for n in range(min(c.ngram_max, len(context)), lo - 1, -1):
            pos = self.index.index.get(tuple(context[len(context) - n :]))
            if not pos:
                continue
            recent = pos[-c.max_occurrences :]
            counts: Counter[int] = Counter()
            last_seen: dict[int, int] = {}
            for i, p in enumerate(recent):
                if p < len(toks) and toks[p] != _SEP:
                    counts[toks[p]] += 1
                    last_seen[toks[p]] = i
            if not counts:
                continue  # every occurrence ended its output: try a shorter n-gram
            best = max(counts, key=lambda t: (counts[t], last_seen[t]))
            return best, counts[best] / len(recent), counts[best]
        return None

    def draft(
        self, context: list[int], limit: int, min_share: float | None = None, min_count: int = 1
    ) -> list[int]:
        """Up to `limit` tokens continuing `context` along the most frequent path, each with at
        least `min_share` (default: the config's) of its context's recent occurrences and seen
        at least `min_count` times."""
        floor = self.cfg.min_share if min_share is None else min_share
        out: list[int] = []
        ctx = list(context[-self.cfg.ngram_max :])
        while len(out) < limit:
            nxt = self._next(ctx, self.cfg.min_match)
            if nxt is None or nxt[1] < floor or nxt[2] < min_count:
                break
            out.append(nxt[0])
            ctx = [*ctx[1:], nxt[0]] if len(ctx) >= self.cfg.ngram_max else [*ctx, nxt[0]]
        return out

    def stats(self) -> dict[str, int]:
        return {"outputs": len(self.outputs), "tokens": self.kept, "added": self.added}


class SuffixDrafter(LookupDrafter):
    """Prompt lookup first, then the shared output history (module docstring)."""

    name = "suffix"
    deterministic = True

    def __init__(
        self,
        n_slots: int,
        config: LookupConfig | None = None,
        gamma_max: int = 12,
        history: OutputHistory | None = None,
    ) -> None:
        super().__init__(n_slots, config, gamma_max)
        self.history = history if history is not None else OutputHistory()  # scope None
        self.scoped: OrderedDict[str, OutputHistory] = OrderedDict()  # LRU, newest last
        self.scopes: list[str | None] = [None] * n_slots  # each slot's request's scope
        # (the engine-wide acceptance a new request starts from is the lookup's `seen_prior`,
        # fed by history drafts too)
        self.gated: list[bool] = [False] * n_slots

    def gamma(self, slot: int) -> int:
        """The lookup's policy, except that a request gated before its first verification (its
        prior does not pay) may still probe with a *confident* history proposal — the only way
        the engine-wide acceptance estimate can learn that the history pays."""
        g = super().gamma(slot)
        s = self._slot(slot)
        self.gated[slot] = g == 0 and s.accepted + s.rejected == 0 and s.skip == 0
        return self.gamma_max if self.gated[slot] else g

    def start(
        self, slot: int, prompt_len: int, prediction: list[int] | None, forced: bool = False
    ) -> None:
        super().start(slot, prompt_len, prediction, forced)
        self.gated[slot] = False
        self.scopes[slot] = None

    def set_scope(self, slot: int, scope: str | None) -> None:
        """Draft for `slot` only from outputs of cache scope `scope` (after `start`)."""
        self.scopes[slot] = scope

    def history_for(self, scope: str | None, create: bool = False) -> OutputHistory | None:
        """The history of `scope` (the shared one for None); a scope without one gets a new one
        when `create` (the least recently used scoped history beyond the cap is dropped)."""
        if scope is None:
            return self.history
        h = self.scoped.get(scope)
        if h is not None:
            self.scoped.move_to_end(scope)
            return h
        if not create:
            return None
        cfg = self.history.cfg
        size = max(cfg.ngram_max, int(cfg.max_tokens * SCOPED_HISTORY_SHARE))
        h = self.scoped[scope] = OutputHistory(replace(cfg, max_tokens=size))
        while len(self.scoped) > MAX_SCOPED_HISTORIES:
            self.scoped.popitem(last=False)
        return h

    def remember(self, tokens: list[int], scope: str | None) -> None:
        """Add a finished output to its scope's history (never to another scope's)."""
        h = self.history_for(scope, create=True)
        assert h is not None
        h.add(tokens)

    def _history(self, slot: int) -> OutputHistory | None:
        return self.history_for(self.scopes[slot])

    def _draft(self, slot: int, seq: list[int], gamma: int) -> list[int]:
        s = self._slot(slot)
        hist = self._history(slot)
        if self.gated[slot]:  # only a confident history proposal may probe
            drafted = (
                hist.draft(seq, gamma, CONFIDENT_SHARE, CONFIDENT_COUNT) if hist is not None else []
            )
            if not drafted:
                s.stats["misses"] += 1
            return self._from_history(s, drafted)
        tokens = super()._draft(slot, seq, gamma)
        if tokens:
            return tokens
        drafted = hist.draft(seq, gamma) if hist is not None else []
        if not drafted:
            return []  # the lookup already counted the miss
        s.stats["misses"] -= 1  # the lookup counted one; the history matched instead
        g, _ = self.cfg.best_gamma(self.alpha(slot), len(drafted))
        return self._from_history(s, drafted[: len(drafted) if self.forced[slot] else max(1, g)])

    def _from_history(self, s: Any, drafted: list[int]) -> list[int]:
        """Count a history proposal (none when empty) and mark its source: 2, the history (no
        alignment pointer to move in `adapt`)."""
        if drafted:
            s.stats["matches"] += 1
            s.stats["history"] = s.stats.get("history", 0) + 1
            s.last = (2, 0)
        return drafted

    def slot_stats(self, slot: int) -> dict[str, Any]:
        out = super().slot_stats(slot)
        out.setdefault("history", 0)
        return out
