"""Benchmark the problem generators and checkers; prints JSON.

Usage: PYTHONPATH=src python bench/problems_generate.py [--n 10000] [--code-checks 200]
Measures generation throughput per family (train and held-out), reasoning check throughput, and
sandboxed code-check throughput through `check_many` (one sandbox run per batch) when a sandbox
backend is available.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from hillclimb.problems import (
    FAMILIES,
    HELDOUT_FAMILIES,
    check_many,
    generate,
    problem_suite,
    to_messages,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--code-checks", type=int, default=200)
    args = ap.parse_args()
    out: dict = {"machine": platform.machine(), "python": platform.python_version(), "generate": {}}
    for family in FAMILIES:
        row = {}
        for split, n in (("train", args.n), ("heldout", args.n // 10)):
            if family in HELDOUT_FAMILIES and split == "train":
                continue  # evaluation-only family: no train split
            t0 = time.perf_counter()
            ps = generate(family, 2, n, seed=0, split=split)
            assert len(ps) == n
            dt = time.perf_counter() - t0
            row[split] = {"n": n, "seconds": round(dt, 3), "per_s": round(n / dt)}
        out["generate"][family] = row
    suite = problem_suite(seed=0, split="heldout", n_per_tier=50)
    reasoning = [p for p in suite if p.kind == "reasoning"]
    t0 = time.perf_counter()
    ok = check_many(reasoning, [to_messages(p)[1]["content"] for p in reasoning])
    dt = time.perf_counter() - t0
    out["check_reasoning"] = {
        "n": len(reasoning),
        "all_pass": all(ok),
        "per_s": round(len(reasoning) / dt),
    }
    try:
        from hillclimb.sandbox import sandbox_backend

        backend = sandbox_backend()
    except ImportError:
        backend = None
    if backend and args.code_checks:
        code = [p for p in suite if p.kind == "code"][: args.code_checks]
        t0 = time.perf_counter()
        ok = check_many(code, [to_messages(p)[1]["content"] for p in code])
        dt = time.perf_counter() - t0
        out["check_code"] = {
            "n": len(code),
            "backend": backend,
            "all_pass": all(ok),
            "seconds": round(dt, 2),
            "per_s": round(len(code) / dt, 1),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
