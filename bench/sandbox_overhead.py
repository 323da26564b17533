"""Per-call overhead of the sandbox, per backend: what every harness tool call and RL reward pays.

Prints JSON: for each working backend (and a plain subprocess baseline), the median / p90 / mean
milliseconds of running `true` and `python -c pass` in a small workspace (in place, as the harness
does), and of `true` with copy_workspace=True (as the CLI does by default).

    PYTHONPATH=src python bench/sandbox_overhead.py [--n 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed


def stats(times: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def timed(fn, n: int) -> dict:
    fn()  # warm up (probe, page cache)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return stats(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    ws = Path(tempfile.mkdtemp(prefix="hc-bench-ws-"))
    for i in range(20):  # a small repository: 20 files
        (ws / f"mod{i}.py").write_text(f"X = {i}\n" * 50)
    lim = SandboxLimits(timeout_s=30)
    result: dict = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": sys.version.split()[0],
        "n": args.n,
        "workspace_files": 20,
        "baseline_subprocess": {
            "true": timed(lambda: subprocess.run(["true"], check=True), args.n),
            "python_c_pass": timed(
                lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.n
            ),
        },
    }
    backends = [b for b in ("bwrap", "unshare") if probe_backend(b)[0]] + ["unsafe"]
    for b in backends:

        def run(cmd, copy=False, b=b):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                r = run_sandboxed(cmd, ws, lim, copy_workspace=copy, backend=b, unsafe=True)
            assert r.status == "ok", (b, r.stderr)

        result[b] = {
            "true": timed(lambda run=run: run(["true"]), args.n),
            "python_c_pass": timed(lambda run=run: run([sys.executable, "-c", "pass"]), args.n),
            "true_copy_workspace": timed(lambda run=run: run(["true"], True), args.n),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
