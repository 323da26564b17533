"""1 → 2 process scaling of `hillclimb train` on CPU (torchrun, gloo, DDP).

Runs the real CLI on synthetic byte-level shards three ways with the same global batch:
1 process × 1 thread, 1 process × 2 threads, 2 processes × 1 thread (DDP; FSDP2 with --fsdp),
and reports tokens/s from each run's `run.json` (the training loop's own timer) plus speedups.
Prints one JSON object.

    python bench/train_scaling.py --preset thinking-tiny --steps 12
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)


def write_data(root: Path, n_docs: int = 3000) -> None:
    from hillclimb.data.shards import ShardWriter, write_meta
    from hillclimb.tokenizer.io import bytelevel_tokenizer, save_tokenizer

    tok = bytelevel_tokenizer()
    save_tokenizer(tok, root / "tokenizer")
    rng = random.Random(0)
    words = [
        "the",
        "of",
        "and",
        "to",
        "in",
        "is",
        "that",
        "for",
        "it",
        "with",
        "as",
        "was",
        "on",
        "be",
        "by",
        "this",
        "are",
        "from",
        "or",
    ]
    splits = {}
    for split, n in (("train", n_docs), ("val", n_docs // 20)):
        w = ShardWriter(root / "data" / "shards", split, tok.vocab_size, tok.eos_id)
        for _ in range(n):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120))) + "."
            w.add(tok.encode(text), len(text))
        splits[split] = w.close()
    write_meta(
        root / "data" / "shards",
        splits,
        tok.vocab_size,
        tok.eos_id,
        hashlib.sha256(tok.hf.to_str().encode()).hexdigest(),
    )


def run(
    root: Path, name: str, nproc: int, threads: int, args: argparse.Namespace, mode: str
) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": str(threads)}
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    cmd = [
        *launcher,
        "-m",
        "hillclimb",
        "train",
        "--preset",
        args.preset,
        "--data",
        str(root / "data"),
        "--tokenizer",
        str(root / "tokenizer"),
        "--out",
        str(root / name),
        "--seq-len",
        str(args.seq_len),
        "--batch-size",
        str(args.batch),
        "--micro-batch-size",
        str(args.batch // 2),
        "--steps",
        str(args.steps),
        "--val-every",
        "0",
        "--val-tokens",
        "1024",
        "--threads",
        str(threads),
        "--no-tensorboard",
        "--distributed",
        mode if nproc > 1 else "none",
    ]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-2000:])
    r = json.loads((root / name / "run.json").read_text())
    # steady-state rate: skip the first steps (allocator warmup) using the per-step log
    m = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
    k = min(2, len(m) - 1)
    steady = (m[-1]["tokens"] - m[k]["tokens"]) / max(m[-1]["elapsed_s"] - m[k]["elapsed_s"], 1e-9)
    return {
        "config": name,
        "processes": nproc,
        "threads_per_process": threads,
        "tokens_per_s_loop": round(r["tokens_per_s"], 1),
        "tokens_per_s_steady": round(steady, 1),
        "wall_s": round(time.perf_counter() - t, 1),
        "final_loss": r["final_loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="thinking-tiny")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--fsdp", action="store_true", help="use FSDP2 instead of DDP for 2 processes")
    args = ap.parse_args()
    # the steady rate skips the first 2 logged steps, so it needs at least 2 more; the 2-process
    # run splits the global batch in halves
    if args.steps < 4:
        ap.error("--steps must be >= 4 (the steady-state rate skips the first 2 steps)")
    if args.batch < 2 or args.batch % 2 or args.seq_len < 1:
        ap.error("--batch must be even and >= 2 (2 processes split it), --seq-len >= 1")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_data(root)
        rows = [
            run(root, "1proc_1thread", 1, 1, args, "none"),
            run(root, "1proc_2threads", 1, 2, args, "none"),
            run(root, "2proc_1thread", 2, 1, args, "fsdp" if args.fsdp else "ddp"),
        ]
    base = rows[0]["tokens_per_s_steady"]
    for r in rows:
        r["speedup_vs_1x1"] = round(r["tokens_per_s_steady"] / base, 3)
    print(
        json.dumps(
            {
                "machine": {
                    "cores": len(os.sched_getaffinity(0)),
                    "loadavg_1m": os.getloadavg()[0],
                },
                "preset": args.preset,
                "seq_len": args.seq_len,
                "global_batch": args.batch,
                "steps": args.steps,
                "mode": "fsdp" if args.fsdp else "ddp",
                "results": rows,
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
