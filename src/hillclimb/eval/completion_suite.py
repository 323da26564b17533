"""Our own completion-form set — `hillclimb eval --model CKPT|URL --suite completion`: held-out
functions in HumanEval's native form (signature + docstring with one doctest, to be continued
with the body), scored by running their tests in the sandbox.

Why beside HumanEval: HumanEval is 164 fixed public problems (possibly in a hosted model's
training data, and a level far above our tiny models); this set is drawn from the `code_function`
generator's *held-out functions* — never trained on in any family or phrasing, by the split key —
so it is unseen by construction, sized per tier, and sets the completion form (what an IDE sends)
beside the chat form the climb's eval uses for the same functions. Protocol as HumanEval's
(`humaneval.run_completion_items`): the continuation is cut at the first `humaneval.STOP`,
greedy pass@1 and sampled pass@k with bootstrap intervals, per-tier rates. One difference:
prompt + completion is judged against the problem's asserts by the RL reward's checker
(`suite_common.check_assert_programs`: expected values never enter the candidate's process,
type-strict comparison), not run beside them, where an always-equal return value or a printed
end marker passed every item. The prompt is `meta["completion_prompt"]` of the problem
(`problems.code_function.completion_prompt`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hillclimb.eval.backends import Backend
from hillclimb.eval.suite_common import SuiteConfig, metric

DEFAULT_N_PER_TIER = 20


def items(n_per_tier: int, seed: int) -> list[dict[str, Any]]:
    """HumanEval-shaped records of `n_per_tier` held-out functions per tier."""
    from hillclimb import problems as P

    out = []
    for tier in P.TIERS:
        for p in P.generate("code_function", tier, n_per_tier, seed, "heldout"):
            out.append(
                {
                    "task_id": p.id,
                    "tier": tier,
                    "prompt": p.meta["completion_prompt"],
                    "test": p.tests,
                    "entry_point": p.entry_point,
                    "asserts": True,
                    "canonical_solution": p.answer,
                }
            )
    return out


def run_completion(
    backend: Backend, cfg: SuiteConfig, announce: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The suite's result; `announce` is told how many items will run before the first does
    (`--n-items` counts per tier, not in total)."""
    from hillclimb.eval.humaneval import run_completion_items

    n = cfg.n_items or DEFAULT_N_PER_TIER
    its = items(n, cfg.seed)
    if announce is not None:
        tiers = len({it["tier"] for it in its})
        line = f"completion suite: {len(its)} items: {n} per tier ({tiers} tiers)"
        if cfg.limit is not None and cfg.limit < len(its):
            line += f"; --limit {cfg.limit} asks the first {cfg.limit}"
        announce(line)
    if cfg.limit is not None:
        its = its[: cfg.limit]
    out = run_completion_items(backend, cfg, its)
    tier_of = {it["task_id"]: it["tier"] for it in its}
    for row in out["items"]:
        row["tier"] = tier_of[row["id"]]
    for k, tier in enumerate(sorted(set(tier_of.values())), 1):
        vals = [float(r["passed"]) for r in out["items"] if r["tier"] == tier]
        out["metrics"][f"pass@1/tier{tier}"] = metric(vals, cfg, salt=100 + k)
    out["baseline"].update(tier_baselines(its, cfg))
    return out


def tier_baselines(its: list[dict[str, Any]], cfg: SuiteConfig) -> dict[str, Any]:
    """`{"pass@1/tierN": metric}` of the no-training baseline on each tier's own items (the
    best of the trivial bodies there, as the suite's overall baseline is on all items), plus
    `"by_tier_what"` naming that body per tier.

    Why: the per-tier rows of the report and the CLI printed "-" as their baseline, so a tier's
    pass rate stood beside nothing — and a tier whose tests a trivial body passes would show its
    model score as skill. Costs one more sandbox run of the trivial bodies (seconds)."""
    from hillclimb.eval.humaneval import trivial_item_baseline

    out: dict[str, Any] = {}
    what: dict[str, str] = {}
    for tier in sorted({it["tier"] for it in its}):
        rec = trivial_item_baseline([it for it in its if it["tier"] == tier], cfg)
        out[f"pass@1/tier{tier}"] = rec["pass@1"]
        what[str(tier)] = rec["what"]
    return {**out, "by_tier_what": what}
