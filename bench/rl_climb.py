"""RL from an SFT checkpoint, with and without length control, evaluated like for like; JSON out.

Usage:
    python bench/rl_climb.py --sft runs/tiny/08-sft-thinking/run/final --out runs/rl-bench \
        [--steps 40] [--families arith,logic] [--tiers 1,2] [--n-per-tier 20] [--no-alp]

Runs (from the same SFT checkpoint, the same seed and RL settings):
  1. RL without length control;
  2. the same RL with ALP (`--length-penalty alp`), unless --no-alp;
then evaluates SFT, RL and RL+ALP with the same `TaskEvalConfig` (held-out problems and new
phrasings, greedy, per-cell max_tokens, baselines) and prints one JSON object: per family x tier
x split accuracy, tokens per correct answer and truncation for each model, the RL runs' rollout
throughput and weight-sync share, and the ratios the targets are stated in (RL − SFT points;
tokens per correct with ALP / without, on the cells both solve), and a summary pooled per split
x tier (accuracy, tokens per correct answer and per answer, the reference solutions' tokens,
each over tier 1's), with the cells SFT already saturates (`--saturated`) pooled on their own.
Extra `--rl-arg` flags are passed to `hillclimb rl` verbatim (e.g. `--rl-arg=--lr=1e-4`).
`--max-tokens N` sets one completion budget for both RL and the evaluation: the per-cell default
is sized from the minimal reference solutions and would truncate a model trained with
`verbose_fraction`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))

from hillclimb.errors import HillclimbError  # noqa: E402
from hillclimb.eval.tasks import TOKEN_METRICS, pool_cells  # noqa: E402


def _rl(sft: Path, out: Path, args: argparse.Namespace, alp: bool) -> dict:
    cmd = [
        sys.executable, "-m", "hillclimb", "rl", "--model", str(sft), "--out", str(out),
        "--steps", str(args.steps), "--tiers", args.tiers, "--no-tensorboard", "--resume",
    ]  # fmt: skip
    if args.families:
        cmd += ["--families", args.families]
    if alp:
        cmd += ["--length-penalty", "alp"]
    if args.max_tokens:
        cmd += ["--max-tokens", str(args.max_tokens)]
    cmd += args.rl_arg
    # an arm already run is reused only for the same command: a rerun into the same --out with
    # other --steps or --rl-arg reported the old arm's figures as the new one's (s26 audit)
    stamp = out / "bench_cmd.json"
    # ALP-only settings do nothing in the plain arm (`alp_beta` is read only with
    # `--length-penalty alp`): kept out of its stamp, a β sweep reuses one plain arm
    key = [a for a in cmd[1:] if alp or not a.startswith("--alp-beta")]
    if (out / "rl.json").is_file():
        done = json.loads(stamp.read_text()) if stamp.is_file() else None
        if done == key:
            return json.loads((out / "rl.json").read_text())
        raise HillclimbError(
            f"{out} holds an RL arm run with another command ({done}); pass another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(key))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, env=env).returncode
    if rc != 0:  # `hillclimb rl` has printed why (a bad --rl-arg, a missing checkpoint, ...)
        raise HillclimbError(f"`hillclimb rl` exited {rc} for {out} (its message is above)")
    res = json.loads((out / "rl.json").read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


def _eval(ckpt: Path, args: argparse.Namespace) -> dict:
    from hillclimb.eval.core import run_eval
    from hillclimb.eval.tasks import TaskEvalConfig

    fams = [f for f in args.families.split(",") if f] or None
    cfg = TaskEvalConfig(
        n_per_tier=args.n_per_tier,
        families=fams,
        tiers=[int(t) for t in (args.eval_tiers or args.tiers).split(",")],
        batch_size=32,
        baseline_train_n=300,
        max_tokens=args.max_tokens or None,
    )
    return run_eval(ckpt, None, tasks=cfg)["tasks"]


def _cells(t: dict) -> dict:
    return {
        f"{c['split']}/{c['family']}/{c['tier']}": {
            "accuracy": c["accuracy"],
            "baseline": c["baseline"]["best"],
            "tokens_per_correct": c["tokens_per_correct"],
            "mean_completion_tokens": c["mean_completion_tokens"],
            "reasoning_tokens_per_correct": c.get("reasoning_tokens_per_correct"),
            "truncated_share": c["truncated_share"],
            "n": c["n"],
            "correct": c["correct"],
            "reference_tokens": c.get("reference_tokens"),
        }
        for c in t["cells"]
    }


def _pool(cells: dict, keys: list[str]) -> dict:
    """Accuracy and tokens pooled over `keys` (item-weighted, as if one cell)."""
    return pool_cells([cells[k] for k in keys if k in cells])


def _summary(evals: dict, saturated: float) -> dict:
    """Per split x tier pools for every model, the tier ratios (tokens per correct answer and
    per answer, each tier over tier 1), and the cells SFT saturates (accuracy >= `saturated`)
    pooled the same way: where the issue's length-control target is stated."""
    out: dict = {"by_split_tier": {}, "tier_ratio": {}, "saturated": {}}
    groups: dict = {}
    for k in evals["sft"]:
        split, _fam, tier = k.split("/")
        groups.setdefault(f"{split}/t{tier}", []).append(k)
    for name, cells in evals.items():
        pools = {g: _pool(cells, ks) for g, ks in sorted(groups.items())}
        out["by_split_tier"][name] = pools
        ratios = {}
        for g, v in pools.items():
            split, tier = g.split("/")
            first = pools.get(f"{split}/t1")
            if tier == "t1" or not first:
                continue
            for m in TOKEN_METRICS:
                if v[m] and first[m]:
                    ratios[f"{g}/{m}"] = v[m] / first[m]
        out["tier_ratio"][name] = ratios
    sat = [k for k, v in evals["sft"].items() if v["accuracy"] >= saturated]
    out["saturated"] = {
        "threshold": saturated,
        "cells": sat,
        **{name: _pool(cells, sat) for name, cells in evals.items()},
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft", required=True, type=Path, help="SFT checkpoint to start RL from")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--families", default="")
    ap.add_argument("--tiers", default="1,2")
    ap.add_argument("--n-per-tier", type=int, default=20)
    ap.add_argument("--no-alp", action="store_true")
    ap.add_argument("--max-tokens", type=int, default=0,
                    help="one completion budget for RL and evaluation (0: per cell from the "
                    "references; a verbose SFT model needs more)")  # fmt: skip
    ap.add_argument("--eval-tiers", default="",
                    help="tiers to evaluate (default: --tiers); e.g. 1,2,3 to see whether "
                    "tokens rise with difficulty beyond the trained tiers")  # fmt: skip
    ap.add_argument(
        "--saturated",
        type=float,
        default=0.9,
        help="SFT accuracy at which a cell counts as saturated (summary only)",
    )
    ap.add_argument("--rl-arg", action="append", default=[])
    args = ap.parse_args()
    if not (args.sft / "config.json").is_file():  # before --out is made: nothing left behind
        ap.error(f"--sft {args.sft} is not a checkpoint directory (no config.json)")
    args.out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    runs = {"rl": _rl(args.sft, args.out / "rl", args, alp=False)}
    if not args.no_alp:
        runs["rl_alp"] = _rl(args.sft, args.out / "rl_alp", args, alp=True)
    evals = {"sft": _cells(_eval(args.sft, args))}
    for name, r in runs.items():
        evals[name] = _cells(_eval(Path(r["final_dir"]), args))
    gain = {k: (evals["rl"][k]["accuracy"] - v["accuracy"]) * 100 for k, v in evals["sft"].items()}
    out = {
        "bench": "rl_climb",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load1": load0},
        "sft": str(args.sft),
        "steps": args.steps,
        "eval": evals,
        "rl_minus_sft_points": gain,
        "summary": _summary(evals, args.saturated),
        "runs": {
            name: {
                "rollout_tokens_per_s": r.get("rollout_tokens_per_s"),
                "sync_share": r.get("sync_share"),
                "elapsed_s": r.get("elapsed_s"),
                "first": r.get("first"),
                "last": r.get("last"),
            }
            for name, r in runs.items()
        },
    }
    if "rl_alp" in evals:
        ratio = {}
        for k, v in evals["rl"].items():
            w = evals["rl_alp"].get(k)
            if w and v["tokens_per_correct"] and w["tokens_per_correct"]:
                ratio[k] = w["tokens_per_correct"] / v["tokens_per_correct"]
        out["alp_tokens_per_correct_ratio"] = ratio
        out["alp_minus_rl_points"] = {
            k: (evals["rl_alp"][k]["accuracy"] - v["accuracy"]) * 100
            for k, v in evals["rl"].items()
        }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
