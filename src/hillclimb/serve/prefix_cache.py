"""Prefix cache: finished requests leave their KV in their slot, indexed by its token ids.

Why: the engine's users repeat prompt prefixes all the time — a conversation's next turn is the
previous prompt + the answer + a new message (the harness builds turns token-faithfully, so the
whole history is a prefix), a GRPO group is n samples of one prompt, server requests share a
system prompt and chat template. Prefilling those tokens again costs a forward over every one
of them; reusing the KV costs one copy of the cells (or nothing, when the new request simply
adopts the slot).

Design (the engine drives it; this module keeps the index, the policy and the counters):

- An *entry* is a retired slot whose KV is kept: its tokens (prompt + generated tokens that
  were fed back, in cell order), a last-use clock and a reference count. Entries live in the
  engine's own KV slots, so the cache costs no memory beyond the preallocated slots: an idle
  slot holds the most recent conversations instead of zeros.
- Lookup scans the entries (plus the running requests and this step's other joiners, which the
  engine adds) for the longest common token prefix. Entries are bounded by `max_batch` (16 by
  default), so a scan with C-speed chunked list comparisons (`common_prefix`) is cheaper than
  maintaining a radix tree or per-block hashes, and a mismatch on the first token costs one
  comparison per entry.
- Slots for new requests come from empty slots first, then from the least-recently-used entry
  whose reference count is zero (eviction). An entry that is the source of a planned copy is
  pinned (`pin`/`unpin`), so a later joiner of the same admission cannot evict (or adopt and
  truncate) it before the copy has run.
- A request adopts an entry (takes its slot, keeps the first n tokens) when the match covers the
  whole entry — nothing else is lost — or when the entry would be the eviction victim anyway;
  otherwise it copies the n cells into its own slot and the entry stays for others.
- Every entry carries the *cache scope* of the request that made it
  (`SamplingParams.cache_scope`), and a lookup only sees entries of its own scope: a reused
  prefix is visible to the caller (`usage.prompt_tokens_details.cached_tokens`, and the time to
  first token even without the counter), so a match across API accounts let one user confirm
  another's prompt text by guessing it. The HTTP server scopes by authenticated account (plus an
  optional client `cache_salt`); a server without keys, and in-process callers (RL groups,
  harness episodes, eval), use one shared scope (None). The engine applies the same rule to the
  running requests and same-step joiners it matches against. Slots are still one pool: another
  scope can evict an entry (LRU), which reveals nothing of its tokens.
- Cached KV is a function of the weights: `Engine.sync_weights` (RL) and the engine's recovery
  from a failed step clear the cache (`clear`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

_CHUNK = 64


def common_prefix(a: list[int], b: list[int], limit: int | None = None) -> int:
    """Length of the longest common prefix of two token lists (at most `limit`): chunks of 64
    compared as list slices (C speed), then token by token inside the first differing chunk."""
    n = min(len(a), len(b))
    if limit is not None:
        n = min(n, limit)
    if n <= 0 or a[0] != b[0]:
        return 0
    i = 0
    while i + _CHUNK <= n and a[i : i + _CHUNK] == b[i : i + _CHUNK]:
        i += _CHUNK
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class PrefixEntry:
    slot: int
    tokens: list[int]  # the tokens whose KV the slot holds, in cell order
    last_use: int
    refs: int = 0  # planned copies that still need this slot's KV
    scope: str | None = None  # the cache scope of the request that made it (None: shared)


@dataclass
class PrefixStats:
    """Counters (cumulative). `hits` / `lookups` is the request hit rate; `reused_tokens` /
    `prompt_tokens` the token hit rate: the share of prompt tokens not prefilled."""

    lookups: int = 0  # admitted requests looked up
    hits: int = 0  # of them, requests that reused ≥ min_tokens tokens of KV
    prompt_tokens: int = 0  # prompt tokens of the looked-up requests
    reused_tokens: int = 0  # prompt tokens whose KV was reused (prefill tokens saved)
    adopted: int = 0  # hits that took over the cached slot itself
    copied: int = 0  # hits that copied a cached slot's cells
    from_running: int = 0  # hits that copied the cells of a running request
    shared_in_batch: int = 0  # hits on another request admitted in the same step
    shared_logits: int = 0  # of those, identical prompts: no forward at all
    evictions: int = 0  # entries dropped to make room
    invalidations: int = 0  # entries dropped by `clear` (weights changed, failed step)
    stored: int = 0  # retired slots kept as entries


@dataclass
class PrefixCache:
    """The index of cached slots (see the module docstring). Not thread-safe: the engine calls
    it under its lock."""

    min_tokens: int = 8  # shorter matches are not worth a copy (or a second prefill phase)
    entries: dict[int, PrefixEntry] = field(default_factory=dict)
    stats: PrefixStats = field(default_factory=PrefixStats)
    _clock: int = 0

    def __post_init__(self) -> None:
        if self.min_tokens < 1:
            raise ValueError(f"min_tokens must be >= 1, got {self.min_tokens}")

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def put(self, slot: int, tokens: list[int], scope: str | None = None) -> bool:
        """Keep a retired slot's KV under `scope` (False, and nothing kept, when it is too short
        to reuse)."""
        if len(tokens) < self.min_tokens:
            return False
        self.entries[slot] = PrefixEntry(slot, tokens, self._tick(), scope=scope)
        self.stats.stored += 1
        return True

    def best(
        self, prompt: list[int], limit: int, scope: str | None = None
    ) -> tuple[PrefixEntry | None, int]:
        """The entry of `scope` sharing the longest prefix with `prompt` (at most `limit`
        tokens) and that length; (None, 0) below `min_tokens`. Entries of other scopes are never
        candidates. Ties go to the most recently used entry."""
        best: PrefixEntry | None = None
        best_n = self.min_tokens - 1
        for e in sorted(self.entries.values(), key=lambda e: -e.last_use):
            if e.scope != scope:
                continue
            n = common_prefix(e.tokens, prompt, limit)
            if n > best_n:
                best, best_n = e, n
        return (best, best_n) if best is not None else (None, 0)

    def touch(self, slot: int) -> None:
        self.entries[slot].last_use = self._tick()

    def pin(self, slot: int) -> None:
        self.entries[slot].refs += 1

    def unpin(self, slot: int) -> None:
        e = self.entries.get(slot)
        if e is not None:
            e.refs = max(0, e.refs - 1)

    def victim(self) -> int | None:
        """The least-recently-used unpinned entry's slot (None when every entry is pinned)."""
        free = [e for e in self.entries.values() if e.refs == 0]
        return min(free, key=lambda e: e.last_use).slot if free else None

    @property
    def evictable(self) -> int:
        return sum(e.refs == 0 for e in self.entries.values())

    def take(self, slot: int) -> PrefixEntry:
        """Remove an entry because a request adopts its slot."""
        e = self._unpinned(slot)
        self.stats.adopted += 1
        return e

    def evict(self, slot: int) -> None:
        self._unpinned(slot)
        self.stats.evictions += 1

    def _unpinned(self, slot: int) -> PrefixEntry:
        e = self.entries[slot]
        if e.refs:
            raise RuntimeError(f"slot {slot} is pinned by {e.refs} planned copies")
        return self.entries.pop(slot)

    def clear(self) -> list[int]:
        """Drop every entry (their KV no longer matches the weights) → the freed slots."""
        slots = sorted(self.entries)
        self.stats.invalidations += len(slots)
        self.entries.clear()
        return slots

    def as_dict(self) -> dict[str, float | int]:
        s = self.stats
        entries = list(self.entries.values())  # one C-level copy: safe beside the loop thread
        return {
            **asdict(s),
            "entries": len(entries),
            "cached_tokens": sum(len(e.tokens) for e in entries),
            "hit_rate": s.hits / s.lookups if s.lookups else 0.0,
            "token_hit_rate": s.reused_tokens / s.prompt_tokens if s.prompt_tokens else 0.0,
        }
