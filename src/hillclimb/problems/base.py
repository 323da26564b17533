"""The `Problem` record, the split rules and the deterministic generation loop.

Why it is built this way:

- **Held out by what a problem *is*, not by how it is worded.** Every family's sampler returns a
  `Draft`: the prompt, a phrasing-free `key` for the underlying problem (the operands and the
  operation, the facts of a story, the function a code task asks for) and a lazy `build()`. The
  split is decided by a hash of the key, so a held-out problem never has a training twin that
  differs only in wording, names or the example shown. A previous rule hashed the prompt text, and
  most held-out items had such a twin (a lookup table over training items then scored 55% on tier 1).
- **Four splits** (`SPLITS`): `train` (75% of keys, training phrasings), `val` (10% of keys,
  training phrasings: for tuning and checkpoint choice, never for reported numbers), `heldout`
  (15% of keys, training phrasings: *new problems*) and `heldout_phrasing` (the same 15% of keys in
  phrasings no training item ever uses: *new problems in new words*). Families keep two pools of
  phrasings (`STYLES`): the training pool and a held-out pool (other sentence forms, operator
  words, names, and for code a docstring-completion form); the sampler takes the pool to draw from.
- **Code is held out as whole functions**: the code families' keys name the function (a catalogue
  task or a generated program's structure), and both code families share one key namespace, so a
  held-out function is never seen in training — not with another example, not as a bug to fix.
- **Held-out families** (`problems.HELDOUT_FAMILIES`) are never generated for `train` or `val`.
- A problem's id is a hash of family, tier and prompt: the same prompt is the same problem.
- Generation is a pure function of (family, tier, n, seed, split): one `random.Random` seeded from
  a SHA-256 of those names (never Python's salted `hash()`). `build()` only runs for drafts that
  land in the requested split and are new to the call, so rejection stays cheap.
- Within one call prompts (evaluation splits: keys) are unique until the family/tier's space looks
  exhausted (a long run of draws that only repeat). Then `train` fills up to n with repeats (a
  small tier still gives the mixture its share), while an evaluation split stops: it returns
  fewer than n items rather than count one problem twice (a repeated item weighs an accuracy
  and narrows its interval for nothing, and the registry refuses such a result).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hillclimb.errors import HillclimbError

TIERS: tuple[int, ...] = (1, 2, 3, 4)
SPLITS: tuple[str, ...] = ("train", "val", "heldout", "heldout_phrasing")
STYLES: tuple[str, ...] = ("train", "heldout")  # phrasing pools
# Key buckets (percent of keys): [0, TEST) test, [TEST, TEST + VAL) val, the rest train.
TEST_PERCENT = 15
VAL_PERCENT = 10
# split -> (key bucket, phrasing pool)
SPLIT_RULE: dict[str, tuple[str, str]] = {
    "train": ("train", "train"),
    "val": ("val", "train"),
    "heldout": ("test", "train"),
    "heldout_phrasing": ("test", "heldout"),
}

# What a family's `build()` returns.
Built = dict[str, Any]


@dataclass(frozen=True)
class Draft:
    """A sampled problem before its solution is built.

    `key` identifies the underlying problem independently of its wording; `namespace` groups keys
    that must split together (default: the family; both code families use "code")."""

    prompt: str
    key: str
    build: Callable[[], Built]
    namespace: str | None = None


@dataclass
class Phrasing:
    """How a sampler words its problem: the phrasing pool (`style`) and a random stream of its own.

    Samplers draw the problem's content (numbers, facts, the function) from the main `rng` and
    everything about wording (templates, names, objects, the example shown) from `self.rng`, so
    `heldout` and `heldout_phrasing` walk through the same problems in the same order: the two
    splits are paired item by item and their difference is the effect of wording alone."""

    style: str
    rng: random.Random
    # (namespace, key) -> whether the loop will keep it: lets a sampler whose content is costly to
    # finish (code: tests derived by running the reference) stop as soon as its key is known. It
    # depends only on the key's bucket, so paired splits still consume the same randomness.
    accept: Callable[[str, str], bool] | None = None

    def wants(self, namespace: str, key: str) -> bool:
        return self.accept is None or self.accept(namespace, key)

    def pick(self, train: Any, heldout: Any) -> Any:
        """A random element of the pool for this style."""
        pool = train if self.style == "train" else heldout
        return pool[self.rng.randrange(len(pool))]

    def pool(self, train: Any, heldout: Any) -> Any:
        return train if self.style == "train" else heldout


Sampler = Callable[[random.Random, int, Phrasing], Draft]


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
    key: str = ""  # the underlying problem, phrasing-free (see the module docstring)
    split: str = ""  # the split it was generated for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        """A record of `to_dict` (an exported or hand-written JSON line) back as a Problem; a
        field of the wrong type is refused here, naming it (an `"answer": null` used to load and
        then fail inside the checker with an AttributeError traceback)."""
        if not isinstance(d, dict):
            raise HillclimbError(
                f"not a problem record: expected an object, got {type(d).__name__}"
            )
        try:
            p = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as exc:
            raise HillclimbError(f"not a problem record: {exc}") from exc
        where = f"problem record {p.id!r}" if isinstance(p.id, str) else "problem record"
        wrong = [
            f"{k} must be {want}, got {getattr(p, k)!r}"[:200]
            for k, ok, want in (
                ("id", isinstance(p.id, str) and p.id, "a non-empty string"),
                ("family", isinstance(p.family, str), "a string"),
                ("kind", p.kind in ("reasoning", "code"), "'reasoning' or 'code'"),
                ("tier", type(p.tier) is int, "an integer"),
                ("prompt", isinstance(p.prompt, str), "a string"),
                ("reasoning", isinstance(p.reasoning, str), "a string"),
                ("answer", isinstance(p.answer, str), "a string"),
                ("tests", p.tests is None or isinstance(p.tests, str), "a string or null"),
                (
                    "entry_point",
                    p.entry_point is None or isinstance(p.entry_point, str),
                    "a string or null",
                ),  # fmt: skip
                ("meta", isinstance(p.meta, dict), "an object"),
                ("key", isinstance(p.key, str), "a string"),
                ("split", isinstance(p.split, str), "a string"),
            )
            if not ok
        ]
        if wrong:
            raise HillclimbError(f"{where}: " + "; ".join(wrong))
        return p


def key_bucket(namespace: str, key: str) -> str:
    """ "train", "val" or "test": a fixed hash bucket of (namespace, key)."""
    h = int(hashlib.sha256(f"{namespace}\0{key}".encode()).hexdigest()[:8], 16) % 100
    if h < TEST_PERCENT:
        return "test"
    if h < TEST_PERCENT + VAL_PERCENT:
        return "val"
    return "train"


def derive_seed(*parts: object) -> int:
    text = "hillclimb.problems/" + "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def make_problem(
    family: str, kind: str, tier: int, prompt: str, built: Built, key: str = "", split: str = ""
) -> Problem:
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
        key=key,
        split=split,
    )


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise HillclimbError(f"unknown split {split!r}; splits are {list(SPLITS)}")


def generate_from(
    family: str, kind: str, sample: Sampler, tier: int, n: int, seed: int, split: str
) -> list[Problem]:
    """The generation loop shared by every family (see the module docstring)."""
    if tier not in TIERS:
        raise HillclimbError(f"unknown tier {tier!r}; tiers are {list(TIERS)}")
    check_split(split)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise HillclimbError(f"n must be a non-negative integer, got {n!r}")
    bucket, style = SPLIT_RULE[split]
    rng = random.Random(derive_seed(family, tier, seed, bucket))
    phr = Phrasing(
        style,
        random.Random(derive_seed(family, tier, seed, bucket, style)),
        lambda ns, key: key_bucket(ns, key) == bucket,
    )
    # Training repeats a problem in several phrasings; evaluation splits hold one item per problem.
    by_key = split != "train"
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
        d = sample(rng, tier, phr)
        if key_bucket(d.namespace or family, d.key) != bucket:
            continue
        ident = d.key if by_key else d.prompt
        p = by_prompt.get(ident)
        if p is None:
            p = make_problem(family, kind, tier, d.prompt, d.build(), d.key, split)
            by_prompt[ident] = p
            out.append(p)
            dup_streak = 0
        elif repeats_allowed:
            out.append(p)
        else:
            dup_streak += 1
            # The space looks exhausted: training fills up to n with repeats, evaluation stops.
            if dup_streak > max(2000, 4 * len(by_prompt)):
                if by_key:
                    break
                repeats_allowed = True
    return out
