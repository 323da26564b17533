"""Per-call overhead of the sandbox, per backend: what every harness tool call and RL reward pays.

Prints JSON: for each working backend (and a plain subprocess baseline), the median / p90 / mean
milliseconds of running `true` and `python -c pass` in a small workspace (in place, as the harness
does), and of `true` with copy_workspace=True (as the CLI does by default).

    PYTHONPATH=src python bench/sandbox_overhead.py [--n 50]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed


def stats(times: list[float]) -> dict:
    """Median, p90 (nearest rank: never below the median, whatever the count) and mean in ms."""
    ms = sorted(t * 1000 for t in times)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[math.ceil(0.9 * len(ms)) - 1], 2),
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


def measure(ws: Path, n: int) -> dict:
    """Every backend's overhead, `n` timed calls each, on a 20-file workspace made in `ws`."""
    for i in range(20):  # a small repository: 20 files
        (ws / f"mod{i}.py").write_text(f"X = {i}\n" * 50)
    lim = SandboxLimits(timeout_s=30)
    result: dict = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": sys.version.split()[0],
        "n": n,
        "workspace_files": 20,
        "baseline_subprocess": {
            "true": timed(lambda: subprocess.run(["true"], check=True), n),
            "python_c_pass": timed(
                lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), n
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
            "true": timed(lambda run=run: run(["true"]), n),
            "python_c_pass": timed(lambda run=run: run([sys.executable, "-c", "pass"]), n),
            "true_copy_workspace": timed(lambda run=run: run(["true"], True), n),
        }
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    if args.n < 1:
        ap.error("--n must be >= 1 (timed calls per measurement)")
    ws = Path(tempfile.mkdtemp(prefix="hc-bench-ws-"))
    try:
        print(json.dumps(measure(ws, args.n), indent=2))
    finally:
        shutil.rmtree(ws, ignore_errors=True)  # scratch: a run leaves nothing in /tmp


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
