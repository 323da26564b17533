"""`hillclimb rl --model CKPT --out RUN [--config FILE.toml | --recipe R [--for M]] [flags]`: RL with
verifiable rewards.

Flags map onto `RLConfig` fields (the training flags mean what they mean for `hillclimb train`);
`--config` loads an `[rl]` table (or a flat table) first and flags override it. `--recipe`
takes a climb recipe's RL settings for one model (`[rl]` merged with `[rl.<model>]`, exactly as
the climb's `rl-<model>` stage gets them), so a stage can be rerun or varied by hand. Resumable with
`--resume`; runs under `torchrun --nproc_per_node N -m hillclimb rl ...` (DDP, gloo on CPU).
The run directory gets checkpoints/ and final/ (HF layout), metrics.jsonl (one record per RL
step), curve.jsonl (greedy val pass rate per family x tier; with --harness-val the held-out
harness resolve rate), rl.json (summary) and report.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hillclimb.errors import ConfigError

_RL_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--families", "families", "list", "comma-separated families (default: the model's kind)"),
    (
        "--harness",
        "harness",
        str,
        "agentic RL: a `harness generate` task dir (episodes, not problems)",
    ),
    (
        "--harness-val",
        "harness_val",
        str,
        "with --harness: held-out task dir (no task id, content or mutation site shared with "
        "--harness) for a greedy resolve-rate curve in curve.jsonl",
    ),
    (
        "--harness-val-every",
        "harness_val_every",
        int,
        "RL steps between --harness-val points (10; 0: only at the start and the end)",
    ),
    ("--harness-max-steps", "harness_max_steps", int, "model turns per harness episode (6)"),
    ("--harness-concurrency", "harness_concurrency", int, "harness episodes in flight (8)"),
    (
        "--no-guided-tools",
        "harness_guided_tools",
        "false",
        "with --harness: the policy's raw tool calls (default: each <tool_call> body is decoded "
        "under the tools' JSON schema, and the loss scores those tokens over the same allowed set)",
    ),
    (
        "--no-check-tasks",
        "check_tasks",
        "false",
        "with --harness: skip grading each untouched repository first (tasks that already "
        "grade resolved are otherwise left out: doing nothing would earn their reward)",
    ),
    ("--tiers", "tiers", "ints", "comma-separated tiers (default 1,2,3,4)"),
    (
        "--start-tier",
        "start_tier",
        int,
        "curriculum: highest tier unlocked at the start; lower tiers train too (1)",
    ),
    ("--promote-at", "promote_at", float, "unlock the next tier at this pass rate (0.8)"),
    ("--prompts-per-step", "prompts_per_step", int, "prompts per RL step (8)"),
    ("--group-size", "group_size", int, "G: samples per prompt, >= 2 (8)"),
    ("--temperature", "temperature", float, "rollout temperature (1.0)"),
    ("--max-tokens", "max_tokens", int, "completion budget (default: per cell from references)"),
    (
        "--reward",
        "reward",
        str,
        "custom reward 'module:function' (Rollout -> float; with --harness it is called on the "
        "graded harness Episode instead); the module is imported from sys.path, else from the "
        "current directory",
    ),
    ("--format-reward", "format_reward", float, "bonus for an extractable answer (0)"),
    (
        "--overlong",
        "overlong",
        str,
        "truncated completions and harness episodes cut by a limit: mask | soft | none (mask; "
        "soft: problems only)",
    ),
    ("--length-penalty", "length_penalty", str, "none | alp (solve-rate-scaled, arXiv 2506.05256)"),
    ("--alp-beta", "alp_beta", float, "ALP coefficient (0.5, length / budget)"),
    ("--length-start-step", "length_start_step", int, "RL step at which ALP switches on (0)"),
    (
        "--budget-conditioning",
        "budget_conditioning",
        "true",
        "put a thinking budget in each prompt and penalise overshooting it (L1-max)",
    ),
    (
        "--budget-fracs",
        "budget_fracs",
        "floats",
        "budgets as fractions of the cell budget (0: no note)",
    ),
    ("--budget-beta", "budget_beta", float, "penalty for a full budget overshoot (1.0)"),
    (
        "--pareto-budgets",
        "pareto_budgets",
        "ints",
        "forced thinking budgets for the Pareto plot (not with --harness)",
    ),
    ("--clip-low", "clip_low", float, "PPO clip below (0.2)"),
    ("--clip-high", "clip_high", float, "clip above, DAPO clip-higher (0.28)"),
    (
        "--loss-agg",
        "loss_agg",
        str,
        "token-mean (DAPO) | seq-mean (GRPO) | dr-grpo (Dr. GRPO: also no std division)",
    ),
    (
        "--no-std-norm",
        "std_norm",
        "false",
        "do not divide advantages by the group std (Dr. GRPO; the default with --loss-agg dr-grpo)",
    ),
    (
        "--std-norm",
        "std_norm",
        "true",
        "divide advantages by the group std (the default, except with --loss-agg dr-grpo)",
    ),
    ("--kl-beta", "kl_beta", float, "KL weight to the initial policy, k3 (0)"),
    ("--epochs", "epochs", int, "policy epochs per batch (1)"),
    ("--minibatches", "minibatches", int, "optimizer steps per epoch (1)"),
    ("--no-dynamic-sampling", "dynamic_sampling", "false", "keep groups with equal rewards"),
    (
        "--eval-every",
        "eval_every",
        int,
        "RL steps between val-split evaluations (10; 0: off; not with --harness)",
    ),
    (
        "--eval-n-per-tier",
        "eval_n_per_tier",
        int,
        "val problems per family x tier (8; not with --harness)",
    ),
    ("--engine-batch", "engine_batch", int, "concurrent rollouts in the engine (64)"),
    (
        "--drafter",
        "drafter",
        str,
        "model-free draft source of the rollout engine: none | lookup | suffix (none); the "
        "same tokens and log-probs for a seed, only faster or slower",
    ),
    ("--aux-scale", "aux_scale", float, "weight of the MoE aux/z losses (1.0)"),
    ("--no-update-bias", "update_bias", "false", "freeze the expert selection biases"),
    (
        "--no-routing-replay",
        "routing_replay",
        "false",
        "route training tokens by the training router instead of the rollout's recorded experts",
    ),
]


def register(sub: argparse._SubParsersAction) -> None:
    from hillclimb.train.cli import _add_common

    p = sub.add_parser(
        "rl",
        help="reinforcement learning with verifiable rewards (GRPO family, length control)",
        description="RL from a checkpoint on our problem generators' train split: sampled groups, "
        "verifier rewards (exact answers, sandboxed tests), clipped policy gradient. "
        "Resumable; torchrun-able.",
    )
    p.add_argument("--model", dest="init", type=Path, default=None, help="checkpoint to start from")
    for flag, dest, typ, hlp in _RL_FLAGS:
        if typ in ("false", "true"):
            p.add_argument(
                flag, dest=dest, action="store_const", const=typ == "true", default=None, help=hlp
            )
        elif typ == "list":
            p.add_argument(flag, dest=dest, type=_list, default=None, help=hlp)
        elif typ == "ints":
            p.add_argument(flag, dest=dest, type=_ints, default=None, help=hlp)
        elif typ == "floats":
            p.add_argument(flag, dest=dest, type=_floats, default=None, help=hlp)
        else:
            p.add_argument(flag, dest=dest, type=typ, default=None, help=hlp)
    p.add_argument(
        "--recipe",
        default=None,
        metavar="RECIPE",
        help="a climb recipe (name or path): its [rl] + [rl.<model>] settings, as the climb's "
        "rl-<model> stage runs them; flags override (not with --config)",
    )
    p.add_argument(
        "--for",
        dest="recipe_model",
        default=None,
        metavar="MODEL",
        help="with --recipe: which model's RL settings (default: the recipe's only RL model)",
    )
    _add_common(p)
    p.set_defaults(func=_handle, _parser=p)


def recipe_rl_settings(recipe: str, model: str | None, harness: bool = False) -> dict[str, Any]:
    """The `RLConfig` fields a climb recipe gives `model`'s RL stage (`[rl]` + `[rl.<model>]`),
    or with `harness` its harness RL stage (`[rl_harness.<model>]`, which the climb reads on its
    own: the problem curriculum's `[rl]` keys are refused with `--harness`).

    Why: the recipe was the only place the climb's RL settings were written, and `--config`
    refuses a climb recipe (its per-model tables cannot be chosen between); rerunning or
    varying the climb's RL stage by hand meant copying tables. The climb fills `out`, `init`
    and `resume` itself; here they come from the command line."""
    from hillclimb.climb.climb_recipe import load_recipe

    rec = load_recipe(recipe)
    tables = {m: t["rl"] for m, t in rec.rl_harness.items()} if harness else rec.rl
    what = "harness RL ([rl_harness.<model>])" if harness else "RL"
    have = sorted(tables)
    if not have:
        raise ConfigError(
            f"recipe {recipe} runs no {what} stage"
            + ("" if harness else " (no [rl] table, or every model off)")
        )
    if model is None:
        if len(have) > 1:
            raise ConfigError(f"recipe {recipe} runs {what} for {have}: choose one with --for")
        model = have[0]
    if model not in tables:
        raise ConfigError(f"recipe {recipe} runs no {what} for {model!r}; it runs it for {have}")
    return dict(tables[model])


def _list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _ints(s: str) -> list[int]:
    try:
        return [int(x) for x in _list(s)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in _list(s)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def _handle(args: argparse.Namespace) -> int:
    import dataclasses

    from hillclimb.rl.config import RLConfig
    from hillclimb.train.cli import _collect, _cpu_env, _is_main

    _cpu_env()
    fields = {f.name for f in dataclasses.fields(RLConfig)}
    if args.recipe_model is not None and args.recipe is None:
        raise ConfigError("--for names a model of --recipe; pass --recipe too")
    if args.recipe is not None and args.config is not None:
        raise ConfigError("--recipe and --config both give RL settings; pass one")
    d = _collect(args, "rl", fields)
    if args.recipe is not None:
        harness = bool(d.get("harness"))
        d = {**recipe_rl_settings(args.recipe, args.recipe_model, harness), **d}
    if not d.get("init"):
        raise ConfigError("pass --model CHECKPOINT (the SFT model to start RL from)")
    cfg = RLConfig.from_dict(d)
    from hillclimb.rl.report import write_rl_report
    from hillclimb.rl.train import run_rl

    res = run_rl(cfg)
    if _is_main():
        report = write_rl_report(Path(res["run_dir"]))
        if args.json:
            print(json.dumps(res, indent=2, default=str))
        else:
            # a run the time limit cut short said only "N steps", as if N had been asked for
            cut = (
                f" of {cfg.steps} (stopped by --time-limit; --resume continues)"
                if res.get("stopped_early")
                else ""
            )
            print(
                f"rl: {res['steps']} steps{cut}; {_headline_text(res)}; final checkpoint: "
                f"{res['final_dir']}; report: {report}",
                file=sys.stderr,
            )
    return 0


def _headline_text(res: dict[str, Any]) -> str:
    """First → last training pass rate and tokens, or that no step was recorded.

    Why: a run of 0 steps (`--steps 0`, or a resume of one) has no training numbers, and
    printing the missing ones as "pass rate 0% → 0%, tokens 0 → 0" reported a measurement
    that was never made."""
    first, last = res.get("first") or {}, res.get("last") or {}
    keys = ("pass_rate", "mean_tokens")
    if not all(isinstance(d, dict) and all(k in d for k in keys) for d in (first, last)):
        return "no training steps recorded"
    return (
        f"train pass rate {first['pass_rate']:.0%} → {last['pass_rate']:.0%}, tokens "
        f"{first['mean_tokens']:.0f} → {last['mean_tokens']:.0f}"
    )
