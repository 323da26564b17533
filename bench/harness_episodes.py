"""Agent episodes on one engine: aggregate throughput at 1 vs N concurrent episodes; JSON out.

Usage:
    python bench/harness_episodes.py --model runs/tiny/07-sft-code-flash/run/final \
        [--tasks DIR | --n-tasks 8 --seed 7] [--concurrency 1,8] [--max-steps 6] [--threads auto,2] \
        [--drafter none,lookup,suffix]

Why: RL in the harness and `eval --suite harness` run many episodes at once; they share one
started engine whose batched decode step serves every episode's turn (issue 13). This measures
what that sharing buys: the same greedy episodes (same tasks, seeds and limits, so the same
trajectories — a test asserts it) run with each concurrency level in one process, side by side,
and the script reports per level the wall time, episodes per minute, aggregate completion
tokens/s and the split of episode time into model turns / tools (edits, test runs) / grading.
Also the per-episode prefill tokens the engine actually computed against the prompt tokens it
was sent (the prefix cache's saving, when the engine has one). `--threads auto,2` repeats every
level with another intra-op thread count in the same process (auto = one thread for a small CPU
model, `run_group_episodes`' rule). `--drafter none,lookup,suffix` repeats everything with each
model-free draft source (issue 15 §1: `hillclimb harness run --drafter`), each on a fresh engine
so the suffix drafter's history holds no earlier drafter's copies of the same episodes; a row's
`throughput_vs_no_drafter` is its tokens/s over the `none` row of the same threads and level, and
its `drafting` counters say how many tokens were drafted and accepted. Later levels on one engine
find the earlier levels' prompts in its prefix cache and (suffix) their outputs in its history —
the same greedy episodes again; `--fresh-engine` builds a new engine for every row instead.

What it does not show: resolve rates (a tiny model resolves ≈0 of these tasks; the number here
is throughput), or contention from other processes (run it on an idle machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a code-flash checkpoint directory")
    ap.add_argument("--tasks", default=None, help="a `harness generate` output (else generated)")
    ap.add_argument("--n-tasks", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--max-steps", type=int, default=6)
    ap.add_argument("--compile", action="store_true", help="compiled decode steps (the server's)")
    ap.add_argument("--threads", default="auto",
                    help="torch intra-op threads while episodes run, comma-separated to compare "
                    "(auto = run_group_episodes' rule: 1 for a small CPU model)")  # fmt: skip
    ap.add_argument("--drafter", default="none",
                    help="model-free draft sources to compare, comma-separated: none, lookup, "
                    "suffix (each on its own engine)")  # fmt: skip
    ap.add_argument("--fresh-engine", action="store_true",
                    help="a new engine for every row (no prefix cache or suffix history carried "
                    "over from an earlier level's identical episodes)")  # fmt: skip
    args = ap.parse_args()

    import torch

    from hillclimb.cli import main as cli
    from hillclimb.eval.backends import check_drafter
    from hillclimb.harness.agent import EpisodeLimits
    from hillclimb.harness.task import find_task_dirs, load_task
    from hillclimb.serve.engine import Engine

    levels = [int(x) for x in args.concurrency.split(",")]
    drafters = [check_drafter(d.strip()) for d in args.drafter.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tasks_dir = args.tasks
        if tasks_dir is None:
            tasks_dir = str(Path(tmp) / "tasks")
            with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
                cli(["harness", "generate", "--out", tasks_dir, "--n", str(args.n_tasks),
                     "--seed", str(args.seed), "--kinds", "bugfix"])  # fmt: skip
        tasks = [load_task(d) for d in sorted(find_task_dirs(Path(tasks_dir)))]
        limits = EpisodeLimits(max_steps=args.max_steps, temperature=0.0, seed=0)
        rows, trajectories, full_streams = [], [], []
        runs = [(th, c) for th in args.threads.split(",") for c in levels]
        for drafter in drafters:
            engine = None
            for th, c in runs:
                if engine is None or args.fresh_engine:
                    engine = None  # its KV cache goes before the next one is built
                    engine = Engine.from_checkpoint(
                        args.model, max_batch=max(levels), compile=args.compile, drafter=drafter
                    )
                row, traj, full = _one_level(engine, tasks, limits, c, th)
                rows.append({"drafter": drafter, **row})
                trajectories.append(traj)
                full_streams.append(full)
            engine = None
    base = rows[0]
    for r, traj, full in zip(rows, trajectories, full_streams, strict=True):
        r["throughput_vs_first"] = round(
            r["aggregate_tokens_per_s"] / max(1e-9, base["aggregate_tokens_per_s"]), 2
        )
        # vs the first concurrency level under the same thread setting and drafter (issue 13)
        one = next(x for x in rows if (x["threads"], x["drafter"]) == (r["threads"], r["drafter"]))
        r["throughput_vs_first_level"] = round(
            r["aggregate_tokens_per_s"] / max(1e-9, one["aggregate_tokens_per_s"]), 2
        )
        plain = next(
            (x for x in rows if x["drafter"] == "none" and (x["threads"], x["concurrency"])
             == (r["threads"], r["concurrency"])),
            None,
        )  # fmt: skip
        r["throughput_vs_no_drafter"] = (
            None
            if plain is None
            else round(r["aggregate_tokens_per_s"] / max(1e-9, plain["aggregate_tokens_per_s"]), 2)
        )
        r["same_trajectories_as_first"] = traj == trajectories[0]  # model-sampled tokens
        r["same_full_streams_as_first"] = full == full_streams[0]  # incl. tool observations
    print(
        json.dumps(
            {
                "bench": "harness_episodes",
                "model": str(args.model),
                "tasks": len(tasks),
                "max_steps": args.max_steps,
                "compile": args.compile,
                "drafters": drafters,
                "fresh_engine": args.fresh_engine,
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "process_torch_threads": torch.get_num_threads(),
                "levels": rows,
            },
            indent=2,
        )
    )
    return 0


def _one_level(
    engine: Any, tasks: list[Any], limits: Any, c: int, th: str
) -> tuple[dict[str, Any], list[list[int]], list[list[int]]]:
    """One (threads, concurrency) level on `engine`: its row, the model-sampled token streams
    and the full streams of its episodes."""
    from hillclimb.rl.harness import run_group_episodes

    n_threads = None if th == "auto" else int(th)
    before = _engine_counters(engine)
    t0 = time.perf_counter()
    eps = run_group_episodes(engine, [(t, 0) for t in tasks], limits, c, n_threads)
    wall = time.perf_counter() - t0
    after = _engine_counters(engine)
    comp = sum(e.completion_tokens for e in eps)
    delta = {k: after[k] - before.get(k, 0) for k in after}
    row = {
        "concurrency": c,
        "threads": th,
        "episodes": len(eps),
        "wall_s": round(wall, 2),
        "episodes_per_min": round(60 * len(eps) / wall, 2),
        "completion_tokens": comp,
        "prompt_tokens": sum(e.prompt_tokens for e in eps),
        "aggregate_tokens_per_s": round(comp / wall, 1),
        "turns": sum(e.turns for e in eps),
        "model_s": round(sum(e.model_s for e in eps), 2),
        "tool_s": round(sum(e.tool_s for e in eps), 2),
        "grade_s": round(sum(e.grade_s for e in eps), 2),
        "resolved": sum(bool(e.resolved) for e in eps),
        "exit_statuses": sorted({e.exit_status for e in eps}),
        # this level's drafted / accepted tokens of each model-free drafter
        "drafting": {k: v for k, v in delta.items() if k.startswith(("lookup.", "suffix."))},
        # cumulative counters: this level's share (entries/cached_tokens are levels)
        "engine_counters": {k: v for k, v in delta.items() if k.startswith(("totals.", "prefix."))},
    }
    # the model's own tokens; tool observations carry wall-clock times ("(0.2s)"), so the full
    # streams may differ between levels where the model did not
    traj = [
        [t for t, m in zip(e.token_ids or [], e.loss_mask or [], strict=True) if m] for e in eps
    ]
    return row, traj, [list(e.token_ids or []) for e in eps]


_KEPT_TREES = ("totals.", "prefix.")
_KEPT = ("lookup.drafted", "lookup.accepted", "suffix.drafted", "suffix.accepted")


def _engine_counters(engine: object) -> dict[str, int]:
    """Numeric engine counters (prefill tokens computed, prefix-cache hits) when it has them."""
    stats = getattr(engine, "stats", None)
    if not callable(stats):
        return {}
    out: dict[str, int] = {}

    def walk(prefix: str, d: object) -> None:
        if isinstance(d, dict):
            for k, v in d.items():
                walk(f"{prefix}{k}.", v)
        elif isinstance(d, int) and not isinstance(d, bool):
            key = prefix.rstrip(".")
            if key in _KEPT or (key.startswith(_KEPT_TREES) and key != "prefix.min_tokens"):
                out[key] = d

    walk("", stats())
    return out


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
