"""Standard suites — `hillclimb eval --model CKPT|URL --suite S`: the same items, prompts, stop
rules and checkers for a checkpoint and for any OpenAI-compatible endpoint.

Why a suite layer beside `tasks.py`: our generated families say how a model does on problems
like the ones it trained on; suites measure it on items written by someone else (HumanEval) or
for a different skill (instruction following, adversarial coding), and let another model — a
vLLM or hosted one — be scored by exactly the same code.

Every suite returns the same envelope (`SUITE_FORMAT`): `metrics` (each `{"value", "ci95":
[lo, hi], "n"}` — a seeded percentile bootstrap over items, `metrics.bootstrap_ci`),
`truncated_share` (answers stopped by `max_tokens`, finish_reason "length"), `finish_reasons`,
`items` (per item: id, passed, status, ...), `settings`, `seconds`. Nothing is written unless the
whole run succeeded (the CLI writes `--out` last).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import Backend, Completion
from hillclimb.eval.metrics import bootstrap_ci

SUITE_FORMAT = "hillclimb-suite-v1"


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


def _humaneval(backend: Backend, cfg: SuiteConfig) -> dict[str, Any]:
    from hillclimb.eval.humaneval import run_humaneval

    return run_humaneval(backend, cfg)


def _ifeval(backend: Backend, cfg: SuiteConfig) -> dict[str, Any]:
    from hillclimb.eval.ifeval import run_ifeval

    return run_ifeval(backend, cfg)


def _adversarial(backend: Backend, cfg: SuiteConfig) -> dict[str, Any]:
    from hillclimb.eval.adversarial import run_adversarial

    return run_adversarial(backend, cfg)


SUITES: dict[str, Callable[[Backend, SuiteConfig], dict[str, Any]]] = {
    "humaneval": _humaneval,
    "ifeval": _ifeval,
    "adversarial": _adversarial,
}


def check_suite(name: str) -> None:
    if name not in SUITES:
        raise HillclimbError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")


def run_suite(
    name: str,
    model: str,
    cfg: SuiteConfig | None = None,
    *,
    backend: Backend | None = None,
    api_key: str | None = None,
    served_model: str | None = None,
    device: str | None = None,
    batch_size: int = 16,
    concurrency: int = 4,
) -> dict[str, Any]:
    """Run suite `name` against `model` (a checkpoint directory or an http(s) base URL)."""
    from hillclimb.eval.backends import open_backend

    check_suite(name)
    cfg = cfg or SuiteConfig()
    cfg.validate()
    t0 = time.perf_counter()
    own = backend is None
    be = backend or open_backend(
        model,
        api_key=api_key,
        served_model=served_model,
        device=device,
        batch_size=batch_size,
        concurrency=concurrency,
    )
    try:
        body = SUITES[name](be, cfg)
    finally:
        if own:
            be.close()
    return {
        "format": SUITE_FORMAT,
        "suite": name,
        "model": be.name,
        "backend": be.kind,
        "settings": asdict(cfg),
        **body,
        "seconds": round(time.perf_counter() - t0, 3),
    }
