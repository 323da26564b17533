"""The `Problem` record, the train/held-out split rule and the deterministic generation loop.

Why it is built this way:

- Every family module exposes `sample(rng, tier) -> (prompt, build)`. The prompt is made first
  and cheaply; `build()` (the worked solution, the answer, the tests) only runs for prompts that
  land in the requested split and were not seen before in this call. Held-out generation draws
  ~10x more candidates than it keeps, so this keeps it fast.
- The split is decided by a hash of the prompt alone (10% bucket = held-out), so train and
  held-out are disjoint by construction, whatever the seed, count or caller.
- A problem's id is a hash of family, tier and prompt: the same prompt is the same problem.
- Generation is a pure function of (family, tier, n, seed, split): one `random.Random` seeded from
  a SHA-256 of those names (never Python's salted `hash()`).
- Within one call prompts are unique until the family/tier's space looks exhausted (a long run of
  draws that only repeat); only then are repeats allowed, so asking for more problems than a
  small tier holds (tier-1 `arith` has 155 facts) still returns n problems.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hillclimb.errors import HillclimbError

TIERS: tuple[int, ...] = (1, 2, 3, 4)
SPLITS: tuple[str, ...] = ("train", "heldout")
HELDOUT_PERCENT = 10

# What a family's `build()` returns.
Built = dict[str, Any]
Sampler = Callable[[random.Random, int], tuple[str, Callable[[], Built]]]


@dataclass(frozen=True)
class Problem:
    """One verifiable problem; `answer` is the canonical final answer (code: reference source)."""

    id: str
    family: str
    kind: str  # "reasoning" | "code"
    tier: int
    prompt: str
    reasoning: str
    answer: str
    tests: str | None = None
    entry_point: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as exc:
            raise HillclimbError(f"not a problem record: {exc}") from exc


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def is_heldout(prompt: str) -> bool:
    """True iff this prompt belongs to the held-out split (a fixed 10% hash bucket)."""
    return int(prompt_hash(prompt)[:8], 16) % 100 < HELDOUT_PERCENT


def derive_seed(*parts: object) -> int:
    text = "hillclimb.problems/" + "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def make_problem(family: str, kind: str, tier: int, prompt: str, built: Built) -> Problem:
    digest = hashlib.sha256(f"{family}\0{tier}\0{prompt}".encode()).hexdigest()
    return Problem(
        id=f"{family}/t{tier}/{digest[:16]}",
        family=family,
        kind=kind,
        tier=tier,
        prompt=prompt,
        reasoning=built["reasoning"],
        answer=built["answer"],
        tests=built.get("tests"),
        entry_point=built.get("entry_point"),
        meta=built.get("meta", {}),
    )


def generate_from(
    family: str, kind: str, sample: Sampler, tier: int, n: int, seed: int, split: str
) -> list[Problem]:
    """The generation loop shared by every family (see the module docstring)."""
    if tier not in TIERS:
        raise HillclimbError(f"unknown tier {tier!r}; tiers are {list(TIERS)}")
    if split not in SPLITS:
        raise HillclimbError(f"unknown split {split!r}; splits are {list(SPLITS)}")
    if not isinstance(n, int) or n < 0:
        raise HillclimbError(f"n must be a non-negative integer, got {n!r}")
    rng = random.Random(derive_seed(family, tier, seed))
    want_heldout = split == "heldout"
    out: list[Problem] = []
    by_prompt: dict[str, Problem] = {}
    repeats_allowed = False
    dup_streak = 0
    draws = 0
    max_draws = 400 * n + 200_000
    while len(out) < n:
        draws += 1
        if draws > max_draws:
            raise HillclimbError(
                f"{family} tier {tier}: could not draw {n} {split} problems "
                f"({len(out)} after {draws - 1} draws)"
            )
        prompt, build = sample(rng, tier)
        if is_heldout(prompt) != want_heldout:
            continue
        p = by_prompt.get(prompt)
        if p is None:
            p = make_problem(family, kind, tier, prompt, build())
            by_prompt[prompt] = p
            out.append(p)
            dup_streak = 0
        elif repeats_allowed:
            out.append(p)
        else:
            dup_streak += 1
            # The space looks exhausted: from now on repeats fill up to n.
            if dup_streak > max(2000, 4 * len(by_prompt)):
                repeats_allowed = True
    return out
