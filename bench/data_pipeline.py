"""Pipeline throughput on the default data recipe (recipes/data-default.toml), capped.

Builds the default recipe's sources (this interpreter's stdlib + site-packages, system C headers,
Node packages, a JDK src.zip, generators) with every source capped to --max-files candidate files,
into a temporary directory, and reports documents/s and MB/s over the items read, plus what was
kept. Wall time and CPU time are both reported: on a shared machine wall time depends on load.

Usage: python bench/data_pipeline.py [--max-files 1500] [--workers 2]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hillclimb.data.pipeline import build  # noqa: E402
from hillclimb.data.recipe import load_data_config  # noqa: E402


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="data-default")
    ap.add_argument("--max-files", type=int, default=1500, help="cap per source")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = load_data_config(args.recipe)
    for s in cfg.sources:
        s.max_files = min(s.max_files or args.max_files, args.max_files)
    cfg.workers = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0 = _cpu(), time.perf_counter()
        card = build(cfg, Path(tmp) / "out", progress=False)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
    ingest = next(f for f in card["filters"] if f["name"] == "ingest")
    read_docs = ingest.get("stats", {}).get("documents_read", 0)
    read_bytes = ingest.get("stats", {}).get("bytes_read", 0)
    print(
        json.dumps(
            {
                "benchmark": "data_pipeline",
                "recipe": args.recipe,
                "max_files_per_source": args.max_files,
                "workers": args.workers,
                "items": card["ingest"]["items"],
                "documents_read": read_docs,
                "mb_read": round(read_bytes / 1e6, 2),
                "documents_kept": card["totals"]["documents"],
                "mb_kept": round(card["totals"]["bytes"] / 1e6, 2),
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "docs_per_s": round(read_docs / wall, 1),
                "mb_per_s": round(read_bytes / 1e6 / wall, 2),
                "docs_per_cpu_s": round(read_docs / cpu, 1),
                "dropped": {f["name"]: f["dropped"] for f in card["filters"]},
                "by_source_kept": {k: v["documents"] for k, v in card["by_source"].items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
