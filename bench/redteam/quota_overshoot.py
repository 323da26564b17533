"""How far past the workspace quota does a never-ending writer get? (session 25; JSON out)

The scenario of `test_sandbox_workspace_quota_stops_many_files`: 1 MB files written in a loop
against a 3 MB quota; the run is killed at a poll and the workspace size is what it wrote before
that. The overshoot is the poll interval (10-100 ms) plus the poller's scheduling delay, so it
grows with machine load (session 25, beside a climb: 6-64 MB, one CI run 84 MB).

Usage: python bench/redteam/quota_overshoot.py [--runs 8] [--backend bwrap]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "src"))  # PYTHONPATH=OLD/src compares old code

from hillclimb.sandbox import run_sandboxed  # noqa: E402
from hillclimb.sandbox.core import SandboxLimits  # noqa: E402


def tree_bytes(path: pathlib.Path) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(path) for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--backend", default="bwrap")
    args = ap.parse_args()
    writer = (
        f'{sys.executable} -c "import itertools\n'
        "for i in itertools.count(): open(f'f{i}', 'wb').write(b'x' * (1 << 20))\""
    )
    lim = SandboxLimits(timeout_s=20, memory_mb=512, max_file_mb=1, max_workspace_mb=3)
    held, statuses = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            ws = pathlib.Path(tmp) / "ws"
            ws.mkdir()
            r = run_sandboxed(writer, ws, lim, backend=args.backend)
            statuses.append(r.status)
            held.append(round(tree_bytes(ws) / 2**20, 1))
    print(json.dumps({"bench": "redteam_quota_overshoot", "backend": args.backend,
                      "load1": os.getloadavg()[0], "statuses": statuses, "held_mb": held,
                      "max_mb": max(held)}))  # fmt: skip


if __name__ == "__main__":
    main()
