"""Can a checkpoint copy from its context? Next-token accuracy on the second half of a repeated
random token sequence (an induction probe); JSON out.

Usage:
    python bench/copy_probe.py --model runs/tiny/07-sft-code-flash/run/final [--model M2 ...] \
        [--rows 16] [--length 40] [--seed 0]

Each row is k random ordinary token ids (never special tokens) followed by the same k ids again.
A model with induction heads predicts the second copy from the first (accuracy → 1, loss far below
the first copy's); one without them cannot do better than on the first copy (accuracy ≈ 0, the
losses equal). Why this matters here: fixing a function, editing a file, or a prompt-lookup draft
being accepted all need the model to reproduce text it was shown; this isolates that ability
from everything else (BENCHMARKS.md, session 10: none of the tiny climb's models can).

What it does not show: copying of in-distribution text (real code repeated is partly predictable
without copying) or over long distances; it is a yes/no probe of the mechanism.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def probe(model_dir: str, rows: int, length: int, seed: int) -> dict:
    import torch
    import torch.nn.functional as F

    from hillclimb.model.checkpoint import load_model
    from hillclimb.tokenizer.io import load_tokenizer

    model = load_model(model_dir)
    tok = load_tokenizer(Path(model_dir) / "tokenizer.json")
    special = set(tok.special_ids.values())
    vocab = min(int(model.cfg.vocab_size), int(tok.vocab_size))
    ordinary = torch.tensor([i for i in range(vocab) if i not in special])
    g = torch.Generator().manual_seed(seed)
    seq = ordinary[torch.randint(len(ordinary), (rows, length), generator=g)]
    x = torch.cat([seq, seq], 1)
    with torch.no_grad():
        logits = model(x)
    nll = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
    ).view(rows, -1)
    first, second = nll[:, : length - 1], nll[:, length:]
    hit = logits[:, length:-1].argmax(-1) == x[:, length + 1 :]
    return {
        "model": model_dir,
        "preset": getattr(model.cfg, "name", ""),
        "loss_first_copy": first.mean().item(),
        "loss_second_copy": second.mean().item(),
        "top1_second_copy": hit.float().mean().item(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="checkpoint directory")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--length", type=int, default=40, help="tokens per copy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.rows < 1 or args.length < 2:
        ap.error("--rows must be >= 1 and --length >= 2")
    out = {
        "bench": "copy_probe",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "rows": args.rows,
        "length": args.length,
        "seed": args.seed,
        "models": [probe(m, args.rows, args.length, args.seed) for m in args.model],
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
