"""Task accuracy that does not hide failures: per family × tier × split, beside its baselines.

What `hillclimb eval` and the climb report show for every family × tier cell, on each evaluation
split (`problems.EVAL_SPLITS`: `heldout` = new problems, for code new *functions*; and
`heldout_phrasing` = the same problems in wordings never trained on; held-out families appear in
both and are flagged):

- **greedy accuracy** (temperature 0: a deterministic function of the weights) and, when
  `samples_per_item > 0`, **sampled pass@k** (unbiased estimator, `eval.metrics`);
- the **no-training baseline** beside it (`problems.baselines`: lookup table over training items,
  majority answer, chance for multiple choice);
- the **truncation share** (`finish_reason == "length"`) and **tokens per correct answer**;
- `max_tokens` per cell, sized from the longest reference solution of the cell (worked reasoning +
  final answer, in the model's own tokens) × `max_tokens_margin` + 16, so a correct answer is
  never cut off for being long (a fixed 64 used to cut tier-3/4 solutions that need 120+).
  A fixed `max_tokens` may still be given; truncated answers are then counted as such.

Rollouts go through `rl.rollout.rollout_and_check`, the same function RL uses for rewards.
"""

from __future__ import annotations

import functools
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.eval.metrics import mean_pass_at_k
from hillclimb.problems.baselines import (
    CODE_FLAG_FAMILIES,
    SEEN_FLAGS,
    cell_baselines,
    flag_passed_by_train_fn,
    flag_seen_arithmetic,
    summarise,
)
from hillclimb.rl.rollout import cell_max_tokens

TASKS_FORMAT = "hillclimb-tasks-v2"


@dataclass
class TaskEvalConfig:
    n_per_tier: int = 20
    families: list[str] | None = None
    tiers: list[int] | None = None
    splits: list[str] = field(default_factory=lambda: ["heldout", "heldout_phrasing"])
    seed: int = 0
    max_tokens: int | None = None  # None: per family x tier from the reference solutions
    max_tokens_margin: float = 1.5
    batch_size: int = 32
    samples_per_item: int = 0  # sampled pass@k: samples per item (0: greedy only)
    pass_k: list[int] = field(default_factory=lambda: [1])
    temperature: float = 0.8
    top_p: float = 0.95
    sample_splits: list[str] | None = None  # splits that get sampled pass@k (None: all)
    sample_n_per_tier: int | None = None  # items per cell that get sampled (None: all n_per_tier)
    baseline_train_n: int = 500
    examples: int = 8  # sample generations kept for the report, spread over families

    def validate(self) -> None:
        from hillclimb import problems as P

        for f in self.families or []:
            if f not in P.FAMILIES:
                raise ConfigError(f"unknown problem family {f!r}; known: {sorted(P.FAMILIES)}")
        for t in self.tiers or []:
            if t not in P.TIERS:
                raise ConfigError(f"tier {t} not in {list(P.TIERS)}")
        for s in self.splits + list(self.sample_splits or []):
            if s not in P.SPLITS:
                raise ConfigError(f"unknown split {s!r}; splits are {list(P.SPLITS)}")
        if not self.splits:
            raise ConfigError("at least one evaluation split is needed")
        # a repeated family, tier or split evaluated its items twice: the same problems counted
        # as more items (n doubled, the interval narrowed for nothing; `--tiers 1,1 --splits
        # heldout,heldout` reported 16 items of 4)
        for name, values in (
            ("families", self.families or []),
            ("tiers", self.tiers or []),
            ("splits", self.splits),
            ("sample_splits", self.sample_splits or []),
        ):
            dup = sorted({v for v in values if list(values).count(v) > 1}, key=str)
            if dup:
                raise ConfigError(f"{name} lists {dup} more than once")
        if self.n_per_tier < 1:
            raise ConfigError("n_per_tier must be >= 1")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError("max_tokens must be >= 1 (or omitted for per-cell sizing)")
        if self.sample_n_per_tier is not None and self.sample_n_per_tier < 1:
            raise ConfigError("sample_n_per_tier must be >= 1 (or omitted for all items)")
        # one message per setting, naming its flag and value ("batch_size >= 1,
        # baseline_train_n >= 0, samples_per_item >= 0" left the user to guess which was wrong)
        for flag, value, least in (("--batch-size", self.batch_size, 1),
                                   ("--baseline-train-n", self.baseline_train_n, 0),
                                   ("--samples-per-item", self.samples_per_item, 0),
                                   ("--samples", self.examples, 0)):  # fmt: skip
            if value < least:
                raise ConfigError(f"{flag} must be >= {least}, got {value}")
        for k in self.pass_k:
            if self.samples_per_item and not 1 <= k <= self.samples_per_item:
                raise ConfigError(
                    f"pass@{k} needs 1 <= k <= samples_per_item ({self.samples_per_item})"
                )
        if self.max_tokens_margin < 1.0:
            raise ConfigError("max_tokens_margin must be >= 1")
        try:  # now, not when the sampled pass begins after the whole greedy one
            check_sampling(self.temperature, self.top_p)
        except HillclimbError as exc:
            raise ConfigError(str(exc)) from None


def check_sampling(temperature: float, top_p: float) -> None:
    """Refuse sampling settings no backend can use, before a model loads or a URL is asked.

    Why here (and not in suite_common, which imports this module): the engine refused a NaN or negative `--temperature` only when the sampled part
    began (after the whole greedy pass), and a URL backend ended in a `ValueError` traceback
    (NaN is not JSON) — the same rule the arena applies to its `--temperature` / `--top-p`."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise HillclimbError(f"--temperature must be a finite number >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise HillclimbError(f"--top-p must be in (0, 1], got {top_p}")


# Training word problems the `arith_seen_in_train` flag compares with, at least: whatever
# `baseline_train_n` is (0 turns the baselines off), the flag must not undercount. Measured at
# seed 0, tier 1: 100 items flag 8 of 20 held-out stories, 500 and 3,000 both 14 (84 of the 89
# tier-1 sums and differences occur in 500); 500 word problems of tiers 1-4 take 0.1 s.
ARITH_FLAG_TRAIN_N = 500
# Training code items per code family x tier the `passed_by_train_fn` flag compares with, at
# least (the same `_train_items` as the lookup baseline and the word flag, at the evaluation's
# seed), of both code families and every evaluated tier: a tier-4 training function passes a
# tier-2 held-out item. Seed 0, 20 per cell, tiers 1-4: 4 of 160 code items per split flagged
# at 500, 10 and 9 (heldout, heldout_phrasing) at 1,500 since session 29's alphabet case
# (`codegen.alphabet_case`; 6 and 13 before) — it grows with the sample: a lower bound
# (`python bench/heldout_code_audit.py --eval-flag --n-train N`); 500 is what the lookup
# baseline already draws, so both flags cost 1.6-2.3 s there (2 busy cores), while 1,500 took
# 52 s to generate. Every tier whatever `--tiers` says would make a one-tier evaluation
# generate all four (a 2-item code_function tier-1 problems-suite test went from 7 to 52 s).
CODE_FLAG_TRAIN_N = 500


@functools.lru_cache(maxsize=256)
def _train_items(family: str, tier: int, n: int, seed: int) -> tuple[Any, ...]:
    """The lookup baseline's training items (a climb evaluates several models on the same ones)."""
    from hillclimb import problems as P

    return tuple(P.generate(family, tier, n, seed, "train"))


def evaluate_tasks(
    engine: Any,
    cfg: TaskEvalConfig,
    *,
    rollout: Any = None,
    tokenizer: Any = None,
    on_items: Callable[[list[Any]], None] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Greedy (and optionally sampled) accuracy per family × tier × split, with baselines.

    `engine` rolls out through `rl.rollout.rollout_and_check`; another source of answers (the
    `problems` suite's OpenAI-compatible backend) passes `rollout` — a callable with that
    function's signature minus the engine — and `tokenizer` (None: per-cell `max_tokens` from the
    reference solution's UTF-8 bytes, an upper bound on any byte-level BPE's token count).
    `on_items` is told the problems once they are drawn, before any is asked (to say how many);
    `limit` asks only the first `limit` of them (`--limit`: a quick run, not a full one cut)."""
    from hillclimb import problems as P
    from hillclimb.rl.rollout import reference_tokens, rollout_and_check

    cfg.validate()
    if rollout is None:
        rollout = functools.partial(rollout_and_check, engine)
        tokenizer = engine.tokenizer
    fams = list(cfg.families or P.FAMILIES)
    tiers = list(cfg.tiers or P.TIERS)
    t0 = time.perf_counter()
    suite: dict[str, list[Any]] = {
        s: P.problem_suite(cfg.seed, s, cfg.n_per_tier, fams, tiers) for s in cfg.splits
    }
    items = [p for s in cfg.splits for p in suite[s]]
    if on_items is not None:
        on_items(items)
    caps: dict[tuple[str, int], int] = {}
    for f in fams:
        for t in tiers:
            cell = [p for p in items if p.family == f and p.tier == t]
            caps[(f, t)] = cfg.max_tokens or cell_max_tokens(tokenizer, cell, cfg.max_tokens_margin)
    if limit is not None:  # after the caps: a cell's budget is its whole cell's, as without
        items = items[:limit]
    asked = {(p.split, p.id) for p in items}
    suite_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    greedy = rollout(
        items,
        n=1,
        max_tokens=[caps[(p.family, p.tier)] for p in items],
        temperature=0.0,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
    )
    greedy_s = time.perf_counter() - t1

    sampled_by_id: dict[tuple[str, str], list[Any]] = defaultdict(list)
    sampled_s = 0.0
    if cfg.samples_per_item > 0:
        sample_splits = cfg.sample_splits or cfg.splits
        k = cfg.sample_n_per_tier or cfg.n_per_tier
        s_items = [
            p
            for s in cfg.splits
            if s in sample_splits
            for f in fams
            for t in tiers
            for p in [q for q in suite[s] if q.family == f and q.tier == t][:k]
            if (p.split, p.id) in asked
        ]
        t2 = time.perf_counter()
        rolls = rollout(
            s_items,
            n=cfg.samples_per_item,
            max_tokens=[caps[(p.family, p.tier)] for p in s_items],
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=cfg.seed,
            batch_size=cfg.batch_size,
        )
        sampled_s = time.perf_counter() - t2
        for r in rolls:
            sampled_by_id[(r.problem.split, r.problem.id)].append(r)

    t3 = time.perf_counter()
    base: dict[tuple[str, int], list[Any]] = {}
    for f in fams:
        for t in tiers:
            base[(f, t)] = (
                list(_train_items(f, t, cfg.baseline_train_n, cfg.seed))
                if f not in P.HELDOUT_FAMILIES and cfg.baseline_train_n
                else []
            )
    outcomes: dict[str, list[dict[str, Any]]] = {}
    for s in cfg.splits:
        for f in fams:
            for t in tiers:
                cell = [p for p in suite[s] if p.family == f and p.tier == t]
                for p, o in zip(cell, cell_baselines(cell, base[(f, t)]), strict=True):
                    outcomes[f"{s}/{p.id}"] = o
    baseline_s = time.perf_counter() - t3
    # after the baselines: the training items they drew are cached, so this is the flags' own cost
    t4 = time.perf_counter()
    _flag_seen(suite, cfg, fams, tiers)
    flags_s = time.perf_counter() - t4

    cells: list[dict[str, Any]] = []
    by_split: dict[str, Any] = {}
    for s in cfg.splits:
        rows = [r for r in greedy if r.problem.split == s]
        by_ft: dict[str, dict[str, Any]] = {}
        for f in fams:
            for t in tiers:
                rs = [r for r in rows if r.problem.family == f and r.problem.tier == t]
                if not rs:
                    continue
                cell = _cell(
                    rs,
                    [outcomes[f"{s}/{r.problem.id}"] for r in rs],
                    [sampled_by_id.get((s, r.problem.id), []) for r in rs],
                    cfg,
                )
                cell.update(
                    family=f,
                    tier=t,
                    kind=P.FAMILIES[f],
                    split=s,
                    heldout_family=f in P.HELDOUT_FAMILIES,
                    max_tokens=caps[(f, t)],
                    # what the items' own (minimal) worked solutions cost in this tokenizer: the
                    # length a model that neither pads nor skips steps would write
                    reference_tokens=(
                        sum(reference_tokens(tokenizer, r.problem) for r in rs) / len(rs)
                        if tokenizer is not None
                        else None
                    ),
                )
                cells.append(cell)
                by_ft.setdefault(f, {})[str(t)] = cell
        by_split[s] = {
            **_totals(rows),
            **{g.split_key: _without_seen(rows, g.meta_key) for g in SEEN_FLAGS},
            "baseline": _pooled_baseline([c for c in cells if c["split"] == s]),
            "by_family_tier": by_ft,
            "by_kind_tier": _by_kind_tier(rows, tiers, P, [c for c in cells if c["split"] == s]),
        }

    first = cfg.splits[0]
    finish: dict[str, int] = defaultdict(int)
    for r in greedy:
        finish[r.finish_reason] += 1
    gen_tokens = sum(r.completion_tokens for r in greedy)
    return {
        "format": TASKS_FORMAT,
        "settings": {**asdict(cfg), "families": fams, "tiers": tiers, "temperature_greedy": 0.0},
        "cells": cells,
        "splits": by_split,
        # The first split (held-out problems) at the top level, as before.
        **{k: by_split[first][k] for k in ("accuracy", "n", "correct", "baseline", "by_kind_tier")},
        "by_family_tier": by_split[first]["by_family_tier"],
        "finish_reasons": dict(finish),
        "truncated_share": sum(r.truncated for r in greedy) / max(1, len(greedy)),
        "mean_completion_tokens": gen_tokens / max(1, len(greedy)),
        "samples": _examples(greedy, fams, cfg.examples),
        # item-level results (greedy), so two models can be compared on shared items (registry)
        "items": [
            _item(r, sampled_by_id.get((r.problem.split, r.problem.id), []), caps) for r in greedy
        ],
        "seconds": {
            "suite": round(suite_s, 3),
            "greedy": round(greedy_s, 3),
            "sampled": round(sampled_s, 3),
            "baselines": round(baseline_s, 3),
            "seen_flags": round(flags_s, 3),
        },
        "gen_tokens_per_s": gen_tokens / greedy_s if greedy_s > 0 else 0.0,
    }


def _cell(
    rs: list[Any],
    base: list[dict[str, Any]],
    sampled: list[list[Any]],
    cfg: TaskEvalConfig,
) -> dict[str, Any]:
    n = len(rs)
    correct = [r for r in rs if r.passed]
    truncated = sum(r.truncated for r in rs)
    statuses: dict[str, int] = defaultdict(int)
    for r in rs:
        statuses[r.status] += 1
    cell: dict[str, Any] = {
        "n": n,
        "correct": len(correct),
        "accuracy": len(correct) / n,
        "truncated": truncated,
        "truncated_share": truncated / n,
        "statuses": dict(statuses),
        "mean_completion_tokens": sum(r.completion_tokens for r in rs) / n,
        "tokens_per_correct": (
            sum(r.completion_tokens for r in correct) / len(correct) if correct else None
        ),
        # think-block tokens (tags included) of the correct answers: the part length control
        # acts on, without the template and answer line every answer pays alike
        "reasoning_tokens_per_correct": (
            sum(getattr(r, "reasoning_tokens", 0) for r in correct) / len(correct)
            if correct
            else None
        ),
        "baseline": summarise(base).to_dict(),
        "pass_at_k": None,
    }
    if any(sampled):
        counts = [(len(ss), sum(x.passed for x in ss)) for ss in sampled if ss]
        cell["pass_at_k"] = {str(k): mean_pass_at_k(counts, k) for k in cfg.pass_k}
        flat = [x for ss in sampled for x in ss]
        cell["sampled"] = {
            "samples_per_item": cfg.samples_per_item,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "truncated_share": sum(x.truncated for x in flat) / len(flat),
        }
    return cell


def _item(r: Any, sampled: list[Any], caps: dict[tuple[str, int], int]) -> dict[str, Any]:
    """An item's record; with the `max_tokens` it was given. Why: a cell's budget is sized from
    the longest reference among the items drawn, so the same problem gets another budget under
    another `--n-per-tier` (code_function tier 2: 168 tokens of 3 items, 208 of 20) and a
    truncated answer may pass under the larger one: two results share the item, not its
    setting, and only the record can say so."""
    p = r.problem
    out = {"id": p.id, "split": p.split, "family": p.family, "tier": p.tier}
    out.update(passed=r.passed, status=r.status, max_tokens=caps[(p.family, p.tier)])
    for g in SEEN_FLAGS:
        if g.meta_key in (p.meta or {}):
            out[g.meta_key] = p.meta[g.meta_key]
    if sampled:
        out["sample_pass_rate"] = sum(x.passed for x in sampled) / len(sampled)
    return out


def _totals(rows: list[Any]) -> dict[str, Any]:
    c = sum(r.passed for r in rows)
    return {"n": len(rows), "correct": c, "accuracy": c / len(rows) if rows else 0.0}


def _flag_seen(
    suite: dict[str, list[Any]], cfg: TaskEvalConfig, fams: list[str], tiers: list[int]
) -> None:
    """Sets the `problems.baselines.SEEN_FLAGS` on every drawn item of the evaluated splits.

    Both compare with the lookup baseline's training items (`_train_items`: the generator's
    train split at the evaluation's seed, `baseline_train_n` per family x tier), never fewer than
    their floor whatever `baseline_train_n` is (0 turns the baselines off, not the flags): word
    problems with the training stories of their own tier (`ARITH_FLAG_TRAIN_N`), code items with
    the training references of both code families and every evaluated tier (`CODE_FLAG_TRAIN_N`;
    an evaluation of fewer tiers may flag fewer: tiers 1-4 flag 6 of 160 per split at seed 0,
    each tier evaluated alone 4)."""
    if "word_problem" in fams:
        n = max(cfg.baseline_train_n, ARITH_FLAG_TRAIN_N)
        for t in tiers:
            train = list(_train_items("word_problem", t, n, cfg.seed))
            for s in cfg.splits:
                flag_seen_arithmetic(
                    [p for p in suite[s] if p.family == "word_problem" and p.tier == t], train
                )
    code = [p for s in cfg.splits for p in suite[s] if p.family in CODE_FLAG_FAMILIES]
    if code:
        n = max(cfg.baseline_train_n, CODE_FLAG_TRAIN_N)
        train = [
            x for f in CODE_FLAG_FAMILIES for t in tiers for x in _train_items(f, t, n, cfg.seed)
        ]
        flag_passed_by_train_fn(code, train)


def _without_seen(rows: list[Any], meta_key: str) -> dict[str, Any] | None:
    """A split's accuracy without the items a `SEEN_FLAGS` flag marks (`meta[meta_key]` truthy),
    with how many were left out; None when no item carries the flag (no item of its families,
    or a result of code before the flag).

    Why: items are held out by key (word problems by template and numbers, code by structure),
    not by what a memorised training item would get right: on tier 1 most held-out stories
    repeat a training story's sums (session 26 audit: 14 of 20), and some held-out functions
    are passed by a training function of another structure (session 16 audit). The plain
    accuracy is printed beside this one, never replaced by it."""
    metas = [r.problem.meta or {} for r in rows]
    if not any(meta_key in m for m in metas):
        return None
    kept = [r for r, m in zip(rows, metas, strict=True) if not m.get(meta_key)]
    c = sum(r.passed for r in kept)
    return {
        "n": len(kept),
        "correct": c,
        "accuracy": c / len(kept) if kept else None,
        "flagged": len(rows) - len(kept),
    }


def _pooled_baseline(cells: list[dict[str, Any]]) -> float | None:
    """The no-training baseline of pooled cells: each cell's best baseline (lookup, majority or
    chance: `cell_baselines`) weighted by its items, so a pooled accuracy is printed beside what
    a model with no skill gets on the same items (None without cells)."""
    n = sum(c["n"] for c in cells)
    if not n:
        return None
    return sum(c["n"] * ((c.get("baseline") or {}).get("best") or 0.0) for c in cells) / n


def _kind_of(family: str, P: Any) -> str:
    """The row of `by_kind_tier` a family's items pool into (items and cells alike)."""
    return "heldout_family" if family in P.HELDOUT_FAMILIES else P.FAMILIES[family]


def _by_kind_tier(
    rows: list[Any], tiers: list[int], P: Any, cells: list[dict[str, Any]]
) -> dict[str, Any]:
    """Per kind (trainable families) and for the held-out families, per tier, each with the
    pooled no-training baseline of its cells."""
    out: dict[str, Any] = {}
    for kind in ("reasoning", "code", "heldout_family"):
        for t in tiers:
            sel = [
                r.passed
                for r in rows
                if r.problem.tier == t and _kind_of(r.problem.family, P) == kind
            ]
            if sel:
                mine = [c for c in cells if c["tier"] == t and _kind_of(c["family"], P) == kind]
                out.setdefault(kind, {})[str(t)] = {
                    "correct": sum(sel),
                    "n": len(sel),
                    "accuracy": sum(sel) / len(sel),
                    "baseline": _pooled_baseline(mine),
                }
    return out


TOKEN_METRICS = (
    "tokens_per_correct",
    "reasoning_tokens_per_correct",
    "mean_completion_tokens",
    "reference_tokens",
)
PER_ITEM = ("mean_completion_tokens", "reference_tokens")


def pool_cells(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Cells pooled as if they were one: accuracy over all their items, tokens per correct
    answer over all their correct answers (so a family with more correct answers weighs more),
    mean completion tokens and reference-solution tokens over all their items. A figure some
    cell lacks (an older eval file) is None, never a partial pool."""
    n = sum(c["n"] for c in cells)
    correct = sum(c.get("correct", c["accuracy"] * c["n"]) for c in cells)
    out: dict[str, Any] = {"n": n, "correct": correct, "accuracy": correct / n if n else None}
    for m in TOKEN_METRICS:
        if m in PER_ITEM:
            known = n and all(c.get(m) is not None for c in cells)
            out[m] = sum(c[m] * c["n"] for c in cells) / n if known else None
        else:
            solved = [(c.get(m), c.get("correct", c["accuracy"] * c["n"])) for c in cells]
            solved = [(x, k) for x, k in solved if k]
            # a cell with correct answers but no figure (an older eval file): no honest pool
            known = correct and all(x is not None for x, _ in solved)
            out[m] = sum(x * k for x, k in solved) / correct if known else None
    return out


def tokens_by_tier(
    tasks: dict[str, Any], split: str | None = None, kind: str = "reasoning"
) -> dict[int, dict[str, Any]]:
    """Accuracy and tokens per tier, pooled over the trainable families of `kind` on `split`
    (default: the first evaluated split, the held-out problems), with each token figure as a
    multiple of the lowest tier's (`ratio`). Why: issue 12 states adaptive length control as
    "tokens rise with tier (tier 3 >= 3x tier 1)", and a per-cell table cannot show it. Held-out
    families are left out (nothing was trained on them); a tier whose pool has no correct answer
    has no per-correct figure and no ratio. Pooling mixes families by how many answers each gets
    right, which differs between tiers; the per-cell table beside it shows that mix."""
    split = split or next(iter(tasks.get("splits") or {}), None)
    cells = [
        c
        for c in tasks.get("cells") or []
        if c["split"] == split and c.get("kind") == kind and not c.get("heldout_family")
    ]
    pools = {
        t: pool_cells([c for c in cells if c["tier"] == t])
        for t in sorted({c["tier"] for c in cells})
    }
    if not pools:
        return {}
    first = pools[min(pools)]
    for v in pools.values():
        v["ratio"] = {
            m: v[m] / first[m] if v[m] is not None and first[m] else None for m in TOKEN_METRICS
        }
    return pools


def _examples(rolls: list[Any], fams: list[str], limit: int) -> list[dict[str, Any]]:
    """A few generations for the report: one per family and split (held-out problems first,
    easiest tier first), up to `limit`."""
    splits = list(dict.fromkeys(r.problem.split for r in rolls))
    order = sorted(
        (r for r in rolls if r.finish_reason != "prompt_too_long"),
        key=lambda r: (
            splits.index(r.problem.split),
            r.problem.tier,
            fams.index(r.problem.family),
        ),
    )
    picked: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for r in order:
        if len(picked) >= limit:
            break
        if (r.problem.family, r.problem.split) not in seen:
            seen.add((r.problem.family, r.problem.split))
            picked.append(r)
    return [
        {
            "id": r.problem.id,
            "family": r.problem.family,
            "tier": r.problem.tier,
            "split": r.problem.split,
            "prompt": r.problem.prompt,
            "expected": r.problem.answer,
            "reasoning": r.reasoning_text,
            "content": r.content_text,
            "finish_reason": r.finish_reason,
            "status": r.status,
            "correct": r.passed,
        }
        for r in picked
    ]
