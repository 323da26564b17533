"""Can a checkpoint copy from its context? Next-token accuracy on the second half of a repeated
random token sequence (an induction probe); JSON out.

Usage:
    python bench/copy_probe.py --model runs/tiny/07-sft-code-flash/run/final [--model M2 ...] \
        [--rows 16] [--length 40] [--seed 0] [--at OFFSET:GAP ...]

Each row is k random ordinary token ids (never special tokens) followed by the same k ids again.
A model with induction heads predicts the second copy from the first (accuracy → 1, loss far below
the first copy's); one without them cannot do better than on the first copy (accuracy ≈ 0, the
losses equal). Why this matters here: fixing a function, editing a file, or a prompt-lookup draft
being accepted all need the model to reproduce text it was shown; this isolates that ability
from everything else (BENCHMARKS.md, session 10: none of the tiny climb's models can).

`--at OFFSET:GAP` puts OFFSET random tokens before the span and GAP between it and its repeat:
copying late in a long context and over a distance (session 12: adjacent copy rows in 256-token
pre-training rows teach copying over tens of tokens only).

What it does not show: copying of in-distribution text (real code repeated is partly predictable
without copying); it is a probe of the mechanism.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def probe(
    model_dir: str, rows: int, length: int, seed: int, at: list[tuple[int, int]]
) -> list[dict]:
    """One record per (offset, gap); the measurement is `hillclimb.train.copy_check`'s (the
    check a pre-training run with a copy warm-up makes of itself)."""
    from hillclimb.train.copy_check import probe_copying

    preset, scores = probe_copying(model_dir, rows, length, seed, at)
    return [
        {
            "model": model_dir,
            "preset": preset,
            "offset": offset,
            "gap": gap,
            "loss_first_copy": sc.loss_first_copy,
            "loss_second_copy": sc.loss_second_copy,
            "top1_second_copy": sc.top1_second_copy,
        }
        for offset, gap, sc in scores
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="checkpoint directory")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--length", type=int, default=40, help="tokens per copy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--at", action="append", default=None, metavar="OFFSET:GAP",
        help="random tokens before the span and between the span and its repeat (repeatable; "
        "default 0:0): copying at a distance, as an agent copies from a tool observation",
    )  # fmt: skip
    args = ap.parse_args()
    if args.rows < 1 or args.length < 2:
        ap.error("--rows must be >= 1 and --length >= 2")
    try:
        at = [tuple(int(v) for v in a.split(":")) for a in (args.at or ["0:0"])]
    except ValueError:
        ap.error("--at expects OFFSET:GAP, two integers >= 0")
    if any(len(a) != 2 or min(a) < 0 for a in at):
        ap.error("--at expects OFFSET:GAP, two integers >= 0")
    out = {
        "bench": "copy_probe",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "rows": args.rows,
        "length": args.length,
        "seed": args.seed,
        "models": [r for m in args.model for r in probe(m, args.rows, args.length, args.seed, at)],
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
