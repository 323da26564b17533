"""Curriculum over families × tiers: train where the model can learn, move up as tiers saturate.

A group teaches nothing when all its completions get the same reward (GRPO's advantages are then
zero), so prompts are drawn where the group pass rate is strictly between 0 and 1. Per cell
(family, tier) an exponential moving average of the pass rate is kept; a cell's sampling weight is
p̂(1 − p̂) + 0.05 (the variance of a Bernoulli reward, floored so no unlocked cell starves).
Every tier up to `start_tier` is unlocked from the start (`--tiers 1,2 --start-tier 2`: both);
the next tier of a family unlocks when its highest unlocked tier's average reaches `promote_at`
(one tier at a time; nothing is locked again). Prompts come only from the generators' `train`
split (pools of `pool_size` problems per cell, drawn once), so no val or held-out problem is ever
trained on. All draws are deterministic in (seed, step), and the state (averages, unlocked
tiers) is saved with every checkpoint so a resumed run continues the same curriculum.
"""

from __future__ import annotations

import random
from typing import Any

from hillclimb.problems import Problem, generate
from hillclimb.problems.base import derive_seed


class Curriculum:
    def __init__(
        self,
        families: list[str],
        tiers: list[int],
        *,
        start_tier: int,
        promote_at: float,
        pool_size: int,
        seed: int,
        ema: float = 0.3,
    ):
        self.families, self.tiers = list(families), sorted(tiers)
        self.promote_at, self.pool_size, self.seed, self.alpha = promote_at, pool_size, seed, ema
        self.unlocked = {f: [t for t in self.tiers if t <= start_tier] for f in families}
        self.pass_rate: dict[str, float] = {}
        self._pools: dict[tuple[str, int], list[Problem]] = {}

    @staticmethod
    def key(family: str, tier: int) -> str:
        return f"{family}/{tier}"

    def cells(self) -> list[tuple[str, int]]:
        return [(f, t) for f in self.families for t in self.unlocked[f]]

    def weight(self, family: str, tier: int) -> float:
        p = self.pass_rate.get(self.key(family, tier))
        if p is None:
            return 0.3  # not tried yet: as if p = 0.5 plus the floor
        return p * (1 - p) + 0.05

    def pool(self, family: str, tier: int) -> list[Problem]:
        k = (family, tier)
        if k not in self._pools:
            self._pools[k] = generate(
                family, tier, self.pool_size, derive_seed("rl-pool", self.seed, family), "train"
            )
        return self._pools[k]

    def draw(self, step: int, n: int, round_: int = 0) -> list[Problem]:
        rng = random.Random(derive_seed("rl-draw", self.seed, step, round_))
        cells = self.cells()
        weights = [self.weight(f, t) for f, t in cells]
        out = []
        for _ in range(n):
            f, t = rng.choices(cells, weights=weights)[0]
            out.append(rng.choice(self.pool(f, t)))
        return out

    def observe(self, problem: Problem, pass_rate: float) -> None:
        k = self.key(problem.family, problem.tier)
        prev = self.pass_rate.get(k)
        self.pass_rate[k] = (
            pass_rate if prev is None else (1 - self.alpha) * prev + self.alpha * pass_rate
        )

    def promote(self) -> list[str]:
        """Unlock the next tier of every family whose highest unlocked tier has saturated."""
        moved = []
        for f in self.families:
            top = max(self.unlocked[f])
            p = self.pass_rate.get(self.key(f, top))
            higher = [t for t in self.tiers if t > top]
            if p is not None and p >= self.promote_at and higher:
                self.unlocked[f].append(higher[0])
                moved.append(self.key(f, higher[0]))
        return moved

    def state(self) -> dict[str, Any]:
        return {
            "unlocked": {f: list(v) for f, v in self.unlocked.items()},
            "pass_rate": dict(self.pass_rate),
        }

    def load(self, st: dict[str, Any]) -> None:
        if not st:
            return
        for f, v in (st.get("unlocked") or {}).items():
            if f in self.unlocked:
                self.unlocked[f] = [int(t) for t in v]
        self.pass_rate.update({k: float(v) for k, v in (st.get("pass_rate") or {}).items()})
