"""What every standard suite shares: its settings, a metric with its interval, generation
statistics and the per-item record of a code suite.

Why a module of its own: `suites.py` dispatches to `humaneval.py`, `ifeval.py` and
`adversarial.py`, and each of those needs these helpers; with the helpers in `suites.py` the
modules imported each other (issue 16). Now all four import downward, into this module.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import Completion
from hillclimb.eval.metrics import bootstrap_ci


@dataclass
class SuiteConfig:
    limit: int | None = None  # first N items only (quick runs)
    samples_per_item: int = 0  # sampled completions per item for pass@k (0: greedy only)
    pass_k: list[int] = field(default_factory=lambda: [1])
    temperature: float = 0.8  # for the sampled completions; greedy is temperature 0
    top_p: float = 0.95
    max_tokens: int | None = None  # None: the suite's default
    seed: int = 0  # item generation, sampling and bootstrap seed
    timeout_s: float = 10.0  # per program (code suites)
    bootstrap: int = 1000  # bootstrap resamples
    form: str = "completion"  # humaneval: completion (raw prompt) | chat (one user turn)
    n_items: int | None = None  # generated suites (ifeval): how many prompts (None: default)
    # problems suite: which families / tiers / evaluation splits (None: all families and tiers)
    families: list[str] | None = None
    tiers: list[int] | None = None
    splits: list[str] = field(default_factory=lambda: ["heldout", "heldout_phrasing"])
    # harness suite: task groups ("[NAME=]DIR"), turns per episode, episodes in flight
    tasks: list[str] | None = None
    harness_max_steps: int = 30
    harness_concurrency: int = 4

    def validate(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise HillclimbError(f"--limit must be >= 1, got {self.limit}")
        if self.samples_per_item < 0:
            raise HillclimbError(f"--samples-per-item must be >= 0, got {self.samples_per_item}")
        if any(k < 1 for k in self.pass_k):
            raise HillclimbError(f"pass@k needs k >= 1, got {self.pass_k}")
        if self.samples_per_item and max(self.pass_k) > self.samples_per_item:
            raise HillclimbError(
                f"pass@{max(self.pass_k)} needs --samples-per-item >= {max(self.pass_k)}"
            )
        if not self.samples_per_item and any(k != 1 for k in self.pass_k):
            raise HillclimbError(
                f"pass@{max(self.pass_k)} needs sampled completions: "
                f"pass --samples-per-item >= {max(self.pass_k)}"
            )
        if self.max_tokens is not None and self.max_tokens < 1:
            raise HillclimbError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.timeout_s <= 0:
            raise HillclimbError(f"timeout must be > 0 s, got {self.timeout_s}")
        if self.form not in ("completion", "chat"):
            raise HillclimbError(f"--form must be completion or chat, got {self.form!r}")
        if self.n_items is not None and self.n_items < 1:
            raise HillclimbError(f"--n-items must be >= 1, got {self.n_items}")
        if self.families or self.tiers or self.splits != ["heldout", "heldout_phrasing"]:
            # checked before a model is loaded or a URL reached, by the generator eval's own rule
            from hillclimb.eval.tasks import TaskEvalConfig

            TaskEvalConfig(families=self.families, tiers=self.tiers, splits=self.splits).validate()


def metric(
    values: list[float], cfg: SuiteConfig, weights: list[float] | None = None, salt: int = 0
) -> dict[str, Any]:
    """A mean (or a ratio of sums with `weights`) with its 95% bootstrap interval."""
    n = len(values)
    den = sum(weights) if weights is not None else n
    value = sum(values) / den if den else 0.0
    lo, hi = bootstrap_ci(values, weights, seed=cfg.seed * 1000 + salt, resamples=cfg.bootstrap)
    return {"value": value, "ci95": [lo, hi], "n": n}


def generation_stats(comps: list[Completion]) -> dict[str, Any]:
    reasons = Counter(c.finish_reason for c in comps)
    n = len(comps)
    return {
        "n_generations": n,
        "finish_reasons": dict(sorted(reasons.items())),
        "truncated_share": reasons.get("length", 0) / n if n else 0.0,
        "prompt_too_long": reasons.get("prompt_too_long", 0),
        "mean_completion_tokens": sum(c.completion_tokens for c in comps) / n if n else 0.0,
    }


def program_item(item_id: str, result: Any, comp: Completion, **extra: Any) -> dict[str, Any]:
    """The per-item record of a code suite: a failing answer stopped by `max_tokens` (or with no
    room in the context) says so in `status` instead of reading as plainly wrong."""
    status = result.status
    if not result.passed and comp.finish_reason in ("length", "prompt_too_long"):
        status = "truncated" if comp.finish_reason == "length" else "prompt_too_long"
    return {
        "id": item_id,
        **extra,
        "passed": result.passed,
        "status": status,
        "detail": result.detail,
        "finish_reason": comp.finish_reason,
        "completion_tokens": comp.completion_tokens,
        "completion": comp.text,
    }
