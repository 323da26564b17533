"""Time per climb stage (BENCHMARKS.md: "time per climb stage for tiny"); prints JSON.

Usage:
    python bench/climb_stages.py --recipe tiny [--out runs/tiny] [--run]

With `--run` the climb is run first (complete stages are skipped, so point --out at a fresh
directory for a full measurement); without it, the timings of an existing run directory are read.
Seconds come from the stage markers (`_stage.json`: the invocation that completed the stage) and
`climb.jsonl`; the 1-minute load average is recorded because a shared machine inflates them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="tiny")
    ap.add_argument("--out", default=None)
    ap.add_argument("--run", action="store_true", help="run the climb first")
    args = ap.parse_args()
    from hillclimb.climb.climb_recipe import load_recipe
    from hillclimb.climb.runner import run_climb, stage_timings

    recipe = load_recipe(args.recipe)
    out = Path(args.out or Path("runs") / recipe.name)
    load_before = os.getloadavg()[0]
    if args.run:
        run_climb(recipe, out, print_summary=False)
    if not out.is_dir():
        print(f"no run directory {out}; pass --run", file=sys.stderr)
        return 2
    rows = stage_timings(out)
    summary = (
        json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    )
    models = {}
    for m, rec in (summary.get("models") or {}).items():
        models[m] = {
            "pretrain_tokens_per_s": (rec.get("pretrain") or {}).get("tokens_per_s"),
            "pretrain_tokens": (rec.get("pretrain") or {}).get("tokens"),
            **(rec.get("eval") or {}),
        }
    print(
        json.dumps(
            {
                "bench": "climb_stages",
                "recipe": recipe.name,
                "run_dir": str(out),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "processor": platform.machine(),
                    "load_avg_1m_before": round(load_before, 2),
                    "load_avg_1m_after": round(os.getloadavg()[0], 2),
                },
                "stages_s": {r["stage"]: r["seconds"] for r in rows},
                "total_s": round(sum(r["seconds"] for r in rows), 1),
                "models": models,
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
