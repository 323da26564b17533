"""Cost of the decontamination stage on a recipe's corpus (default: tiny).

Times, in one process: `contamination_probes` (generating the val / held-out problems), hashing
them into the probe index, and the per-document check over every document that reaches the stage
(each item of the recipe loaded and run through the filters before it, exactly as the pipeline
does); then a whole `data build` of the recipe with decontamination on (problem probes already
memoised in this process, so the difference to "off" is hashing + checking) and off. CPU seconds
are this process's only, beside wall seconds: on a shared machine wall time depends on load.

Usage: python bench/data_decontam.py [--recipe tiny] [--skip-builds]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hillclimb.data import decontam  # noqa: E402
from hillclimb.data.filters import build_filters, run_filters  # noqa: E402
from hillclimb.data.pipeline import build  # noqa: E402
from hillclimb.data.recipe import load_data_config  # noqa: E402
from hillclimb.data.sources import LoadError, all_items_for, load_item  # noqa: E402


class _Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> dict[str, float]:
        w, c = time.perf_counter(), time.process_time()
        out = {"wall_s": round(w - self.wall, 3), "cpu_s": round(c - self.cpu, 3)}
        self.wall, self.cpu = w, c
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="tiny")
    ap.add_argument("--skip-builds", action="store_true", help="only the stage's own parts")
    args = ap.parse_args()
    cfg = load_data_config(args.recipe)
    d = cfg.decontaminate
    res: dict = {"recipe": args.recipe, "ngram": d.ngram, "min_tokens": d.min_tokens}

    clock = _Clock()
    records = decontam.problem_probe_records(
        d.problems_seeds, d.problems_n_per_tier, d.problems_families, cfg.workers
    )  # what a build does: families in `workers` processes (their CPU is not in cpu_s)
    res["contamination_probes"] = {**clock.lap(), "items": len(records), "workers": cfg.workers}
    index = decontam.build_index(d)  # problem probes memoised: this is the hashing
    res["index"] = {**clock.lap(), **{k: index.stats[k] for k in ("probes", "too_short", "ngrams")}}

    docs = []
    filters = build_filters(cfg)
    for item in all_items_for(cfg):
        try:
            doc = load_item(item)
        except LoadError:
            continue
        if run_filters(filters, doc) is None:
            docs.append(doc)
    clock.lap()
    gen = {s.name for s in cfg.sources if s.kind == "generators"}
    judge = decontam.Decontaminator(index, d, gen)
    verdicts: dict[str, int] = {}
    for doc in docs:
        v, _ = judge.check(doc.text, doc.source, doc.meta.get("problem_id"))
        verdicts[v] = verdicts.get(v, 0) + 1
    n_bytes = sum(doc.n_bytes for doc in docs)
    lap = clock.lap()
    res["check"] = {
        **lap,
        "documents": len(docs),
        "bytes": n_bytes,
        "verdicts": verdicts,
        "mb_per_cpu_s": round(n_bytes / 1e6 / max(lap["cpu_s"], 1e-9), 2),
    }
    if not args.skip_builds:
        for on in (True, False):
            cfg.decontaminate.enabled = on
            with tempfile.TemporaryDirectory() as tmp:
                clock.lap()
                build(cfg, Path(tmp) / "out", progress=False)
                key = "build_decontaminate_on_probes_memoised" if on else "build_decontaminate_off"
                res[key] = clock.lap()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
