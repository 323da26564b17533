"""Does `reasoning_effort` change what the served thinking model does? Tokens and accuracy per level.

Usage:
    python bench/serve_effort.py --model runs/tiny/09-rl-thinking/run/final \
        [--families arith,arith_chain,logic,word_problem] [--tiers 1,2] [--n-per-tier 16]

For each effort level (none, low, medium, high) the problems (`--split`: val by default, whose
problems are never trained on but tune checkpoints; `heldout` / `heldout_phrasing` for reported
accuracy) are answered greedily through the engine with exactly what the server does for that
request: the budget the engine resolves for `reasoning_effort` (`serve.budget.resolve_budget`,
with the checkpoint's measured thinking profile when it has one), the think block closed when
the budget is spent, and the budget note in the prompt for budget-conditioned checkpoints —
which are only *told* an effort level's budget, with the effort table's cap as the hard limit
(`serving_chat.thinking_limits`). Prints one JSON object: the no-training baseline on the same
problems (`baseline_accuracy`, as `hillclimb eval` computes it), and per level the budget,
accuracy, mean reasoning tokens (inside the think block, tags included; also per tier), mean
completion tokens, the share of answers that kept within the budget, and the ratios against
"none". All levels see the same problems, prompts and settings, side by side in one run.

`--budgets 26,64,256` asks with explicit `thinking_token_budget` values instead of the effort
levels; `--note-only` leaves the think block open (no forced `</think>`), so a budget-conditioned
checkpoint is only *told* its budget: whatever changes with the budget then is trained
behaviour, not truncation. RL trains it that way (`hillclimb rl --budget-conditioning`: the note
in the prompt, a penalty for overshooting, no cut).

What it does not show: quality beyond exact-answer accuracy, or (without `--note-only`) whether
the model plans for its budget rather than being cut off.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

LEVELS = (None, "low", "medium", "high")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a thinking checkpoint directory")
    ap.add_argument("--families", default="arith,arith_chain,logic,word_problem")
    ap.add_argument("--tiers", default="1,2")
    ap.add_argument("--n-per-tier", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="val", choices=["val", "heldout", "heldout_phrasing"],
                    help="problems to ask: val (default) or the held-out splits (new problems; "
                    "the same in new wordings), where the no-training baseline is reported too")  # fmt: skip
    ap.add_argument("--baseline-train-n", type=int, default=500,
                    help="training items per cell for the lookup baseline (as `hillclimb eval`)")  # fmt: skip
    ap.add_argument("--max-tokens", type=int, default=256, help="answer cap per problem")
    ap.add_argument("--budgets", default="",
                    help="explicit thinking budgets (e.g. 26,64,256) instead of effort levels")  # fmt: skip
    ap.add_argument("--note-only", action="store_true",
                    help="put the budget note in the prompt (any model: one not trained with it "
                    "is the control) and never close the think block at the budget (measures "
                    "planning, not truncation)")  # fmt: skip
    args = ap.parse_args()
    try:
        explicit = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        ap.error(f"--budgets must be comma-separated integers, got {args.budgets!r}")
    if any(b < 1 for b in explicit):
        ap.error("--budgets must be positive")

    import torch

    from hillclimb import problems as P
    from hillclimb.model.checkpoint import read_info
    from hillclimb.rl.rollout import rollout_and_check
    from hillclimb.serve.budget import effort_budget, profile_from_info, resolve_budget
    from hillclimb.serve.engine import Engine

    torch.manual_seed(args.seed)
    engine = Engine.from_checkpoint(args.model)
    info = read_info(args.model)
    profile = profile_from_info(info)
    conditioned = bool(info.get("budget_conditioning"))
    probs = [
        p
        for f in args.families.split(",")
        for t in (int(x) for x in args.tiers.split(","))
        for p in P.generate(f, t, args.n_per_tier, args.seed, args.split)
    ]
    # the no-training baseline on the same items, as `hillclimb eval` computes it: per family x
    # tier the best of a lookup table over training items, the majority answer and chance
    from hillclimb.problems.baselines import cell_baselines, summarise

    cells: dict[tuple[str, int], list[Any]] = {}
    for p in probs:
        cells.setdefault((p.family, p.tier), []).append(p)
    baseline = sum(
        summarise(
            cell_baselines(cell, P.generate(f, t, args.baseline_train_n, args.seed, "train"))
        ).best
        * len(cell)
        for (f, t), cell in cells.items()
    ) / max(1, len(probs))
    rows = []
    levels: list[tuple[str | None, int | None]] = (
        [(None, None)] + [(f"budget {b}", b) for b in explicit]
        if explicit
        else [(lv, resolve_budget(lv, None, engine.max_context, profile)) for lv in LEVELS]
    )
    for level, budget in levels:
        # the server's hard cap: the budget itself, except that a budget-reading model asked
        # for an effort level is only told it, with the effort table's cap as the backstop
        # (`serving_chat.thinking_limits`); --note-only: no cut at all
        hard = budget
        if conditioned and not explicit and level is not None:
            hard = effort_budget(level, engine.max_context)
        if args.note_only:
            hard = None
        t0 = time.perf_counter()
        rolls = rollout_and_check(
            engine,
            probs,
            n=1,
            max_tokens=args.max_tokens,
            temperature=0.0,
            think_budgets=[budget] * len(probs),
            budget_note=conditioned or args.note_only,
            force_budgets=[hard] * len(probs),
        )
        n = max(1, len(rolls))
        by_tier: dict[str, list[int]] = {}
        for p, r in zip(probs, rolls, strict=True):
            by_tier.setdefault(str(p.tier), []).append(r.reasoning_tokens)
        rows.append(
            {
                "effort": level or "none",
                "budget": budget,
                "hard_cap": hard,
                "accuracy": sum(r.passed for r in rolls) / n,
                "mean_reasoning_tokens": sum(r.reasoning_tokens for r in rolls) / n,
                "mean_completion_tokens": sum(r.completion_tokens for r in rolls) / n,
                # share of answers whose think block (tags excluded) stayed within the budget
                "within_budget": (
                    sum(max(0, r.reasoning_tokens - 2) <= budget for r in rolls) / n
                    if budget is not None
                    else None
                ),
                "reasoning_tokens_by_tier": {
                    t: round(sum(v) / len(v), 1) for t, v in sorted(by_tier.items())
                },
                "wall_s": round(time.perf_counter() - t0, 2),
            }
        )
    base = rows[0]
    for r in rows:
        r["reasoning_tokens_vs_none"] = (
            r["mean_reasoning_tokens"] / base["mean_reasoning_tokens"]
            if base["mean_reasoning_tokens"]
            else None
        )
        r["accuracy_minus_none"] = r["accuracy"] - base["accuracy"]
    print(
        json.dumps(
            {
                "bench": "serve_effort",
                "model": str(args.model),
                "budget_conditioned": conditioned,
                "forced_cut": not args.note_only,
                "thinking_profile": profile,
                "problems": len(probs),
                "split": args.split,
                "baseline_accuracy": baseline,
                "families": args.families,
                "tiers": args.tiers,
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "torch_threads": torch.get_num_threads(),
                "levels": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
