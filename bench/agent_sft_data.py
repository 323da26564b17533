"""Agent SFT data outside a climb: the climb's `task_examples` and `tool_examples` as one JSONL
file for `hillclimb sft --data`, with their token lengths on a tokenizer; JSON summary out.

Usage:
    python bench/agent_sft_data.py --out agent.jsonl [--tasks 300] [--tools 100] [--seed 0] \
        [--context 2048] [--tokenizer runs/tiny/02-tokenizer/tokenizer]

`--tasks`: reference episodes on generated repository bug-fix tasks (`harness generate --split
train`: training projects, training mutation sites; ~1 s per task to generate and prove);
`--tools`: single-file code_bugfix episodes. `--context` picks the tool-schema rendering a model
of that context is shown (compact at <= 8k). Why a script: session 12 trained code-flash-tiny
on these episodes with `hillclimb sft` (not in a recipe yet), and the data must be reproducible
from a committed command. What it does not show: whether a model learns from them (BENCHMARKS.md,
"Agent episodes on code-flash-tiny").
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSONL file to write")
    ap.add_argument("--tasks", type=int, default=300, help="repository task episodes")
    ap.add_argument("--tools", type=int, default=100, help="single-file code_bugfix episodes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--context", type=int, default=2048, help="the model's context (tool schemas)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir: report token lengths")
    args = ap.parse_args()
    if args.tasks < 0 or args.tools < 0 or args.tasks + args.tools == 0:
        ap.error("--tasks and --tools must be >= 0, and not both 0")

    from hillclimb.climb.sft_mixture import task_records, tool_records
    from hillclimb.io import atomic_path

    t0 = time.perf_counter()
    recs = task_records(args.tasks, args.seed, args.context)
    t_tasks = time.perf_counter() - t0
    recs += tool_records(args.tools, args.seed, [1, 2], args.context)
    with atomic_path(Path(args.out)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    out: dict = {
        "bench": "agent_sft_data",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "seed": args.seed,
        "records": {k: sum(r["kind"] == k for r in recs) for k in ("task", "tool")},
        "seconds_tasks": round(t_tasks, 1),
        "seconds_total": round(time.perf_counter() - t0, 1),
        "out": args.out,
    }
    if args.tokenizer:
        import numpy as np

        from hillclimb.tokenizer.io import load_tokenizer
        from hillclimb.train.sft_data import encode_record

        tok = load_tokenizer(args.tokenizer)
        for kind in ("task", "tool"):
            n = np.array([len(encode_record(tok, r).ids) for r in recs if r["kind"] == kind])
            if n.size:
                out[f"tokens_{kind}"] = {
                    "min": int(n.min()), "p50": float(np.median(n)), "p90": float(np.percentile(n, 90)),
                    "max": int(n.max()), "share_over_2048": round(float((n > 2048).mean()), 3),
                }  # fmt: skip
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
