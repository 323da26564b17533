"""Train a fresh model on copy rows only and watch in-context copying form; JSON out.

Usage:
    python bench/copy_warmup.py --like runs/tiny/04-pretrain-code-flash/run/final --steps 500 \
        [--seed 0] [--lr 3e-3] [--save DIR] [--distinct N --distinct-steps K] [--threads T]

A fresh model of the `--like` checkpoint's configuration (its weights are not used) is trained
with AdamW on rows of `--seq-len` + 1 tokens that pack random-id spans of 8–48 tokens, each
followed by itself, with the loss on the repeats only (from their second token). Every
`--every` steps it prints the top-1 accuracy on the repeats of that step's batch. Random span
lengths matter: with one fixed length a model can copy by position (attend K tokens back),
which is not induction. `--save DIR` writes the result as a checkpoint (the `--like`
checkpoint's tokenizer and metadata) to pre-train from (`hillclimb train --init DIR`).

Why: none of the tiny climb's checkpoints copy from their context (`bench/copy_probe.py`,
BENCHMARKS.md, session 10). This measures how many steps of copy rows it takes to install
the mechanism: the loss sits at the uniform level for a seed-dependent number of steps, then
falls (≈ 275 steps with seed 0, ≈ 600 with seed 1 for code-flash-tiny).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

SPAN = (8, 48)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--like", required=True, help="checkpoint whose configuration to train")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--save", type=Path, default=None, help="write the model here (must not exist)")
    ap.add_argument(
        "--distinct", type=int, default=0, metavar="N",
        help="draw the spans of the first --distinct-steps steps from N fixed random ordinary ids "
        "(0: all): a curriculum tried against the plateau (docs/areas/train.md, Copy rows)",
    )  # fmt: skip
    ap.add_argument("--distinct-steps", type=int, default=0, metavar="K")
    ap.add_argument(
        "--span", default=f"{SPAN[0]}:{SPAN[1]}", metavar="LO:HI",
        help="span lengths drawn uniformly in [LO, HI] (default the trainer's 8:48)",
    )  # fmt: skip
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    try:
        lo, hi_span = (int(v) for v in args.span.split(":"))
    except ValueError:
        ap.error("--span expects LO:HI, two integers")
    if not 2 <= lo <= hi_span:
        ap.error("--span needs 2 <= LO <= HI")
    if args.seq_len < 2 * lo + 1 or args.steps < 1 or args.batch_size < 1:
        ap.error(f"--seq-len must be >= {2 * lo + 1}; --steps, --batch-size >= 1")
    if args.distinct < 0 or args.distinct == 1 or args.distinct_steps < 0:
        ap.error("--distinct must be 0 or >= 2 and --distinct-steps >= 0")
    if args.save is not None and args.save.exists():
        ap.error(f"--save {args.save} exists; refusing to overwrite")

    import numpy as np
    import torch
    import torch.nn.functional as F

    from hillclimb.model.checkpoint import load_model, read_info, save_checkpoint
    from hillclimb.tokenizer.io import load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_model(args.like)
    model.init_weights(args.seed)
    model.train()
    tok = load_tokenizer(Path(args.like) / "tokenizer.json")
    special = set(tok.special_ids.values())
    vocab = min(int(model.cfg.vocab_size), int(tok.vocab_size))
    ordinary = np.array([i for i in range(vocab) if i not in special])
    rng = np.random.default_rng(args.seed)
    width = args.seq_len + 1
    hi = min(hi_span, (width - 1) // 2)
    few = rng.permutation(ordinary)[: args.distinct] if args.distinct else ordinary

    def row(step: int) -> tuple[list[int], list[int]]:
        pool = few if step <= args.distinct_steps else ordinary
        ids: list[int] = []
        mask: list[int] = []
        while len(ids) < width:
            k = int(rng.integers(lo, hi + 1))
            span = pool[rng.integers(0, pool.size, size=k)].tolist()
            ids += span + span
            mask += [0] * (k + 1) + [1] * (k - 1)
        return ids[:width], mask[:width]

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    curve = []
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        rows = [row(step) for _ in range(args.batch_size)]
        x = torch.tensor([r[0] for r in rows])
        m = torch.tensor([r[1] for r in rows])[:, 1:] == 1
        logits = model(x[:, :-1])
        tgt = x[:, 1:].masked_fill(~m, -100)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.every == 0 or step == args.steps:
            acc = (logits.argmax(-1)[m] == x[:, 1:][m]).float().mean().item()
            curve.append({"step": step, "loss": loss.item(), "top1_repeats": acc})
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
    model.eval()
    if args.save is not None:
        info = {k: v for k, v in read_info(args.like).items() if k != "format"}
        save_checkpoint(model, args.save, tokenizer=tok, meta=info)
    out = {
        "bench": "copy_warmup",
        "like": args.like,
        "seed": args.seed,
        "lr": args.lr,
        "steps": args.steps,
        "distinct": args.distinct,
        "span": args.span,
        "distinct_steps": args.distinct_steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "curve": curve,
        "saved": str(args.save) if args.save else None,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
