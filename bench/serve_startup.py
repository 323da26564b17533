"""Start-up time of the server's engines: cold (empty inductor cache) and warm (the same cache).

Why: on CPU `hillclimb serve` compiles each model's decode steps at start-up; users meet the
cold figure once and the warm one on every later start. Each start runs in a fresh Python
process (as `hillclimb serve` does) loading random-weight thinking-tiny and code-flash-tiny
checkpoints through `load_state` with the serve defaults (engine process, compiled steps),
timed until the engines are ready, then stopped.

Usage: PYTHONPATH=src python bench/serve_startup.py [--preset tiny] [--max-batch 16]
(prints one JSON object)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
t = time.perf_counter()
from hillclimb.serve.server import load_state
st = load_state(sys.argv[1], sys.argv[2], db=":memory:", max_batch=int(sys.argv[3]),
                engine_process=True)
ready = time.perf_counter() - t
ok = {k: [m.engine.compiled, m.engine.compiled_batch] for k, m in st.models.items()}
st.stop_engines()
print(json.dumps({"ready_s": round(ready, 1), "compiled_decode_and_batch": ok}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--max-batch", type=int, default=16)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model

    with tempfile.TemporaryDirectory(prefix="hc-bench-startup-") as tmp:
        paths = {}
        for mid in ("thinking", "code-flash"):
            paths[mid] = Path(tmp) / mid
            save_checkpoint(build_model(get_preset(f"{mid}-{args.preset}"), seed=0), paths[mid])
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor"),
               "PYTHONPATH": str(ROOT / "src")}  # fmt: skip
        runs = {}
        for name in ("cold", "warm"):
            cmd = [sys.executable, "-c", CHILD, str(paths["thinking"]), str(paths["code-flash"]),
                   str(args.max_batch)]  # fmt: skip
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"bench": "serve_startup", "machine": f"{platform.machine()}, "
                      f"{os.cpu_count()} cpus", "preset": args.preset,
                      "max_batch": args.max_batch, "runs": runs}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
