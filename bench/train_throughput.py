"""Training throughput and MFU on this machine.

For each preset: a full training step (forward, backward, AdamW) of the real model and optimizer
code (`hillclimb.train.optim.build_optimizers`, the loop's loss: CE + MoE aux/z) on random token
batches of `--batch x --seq-len`, timed after warmup. FLOPs per token are read off the modules
(`hillclimb.model.accounting`: active matmul weights + causal attention at this context) times 3
(forward + backward); MFU = achieved FLOP/s / peak FLOP/s, where the peak is *measured* here as
the best fp32 square-matmul rate with the same thread count. Prints one JSON object.

    python bench/train_throughput.py                              # tiny presets at seq 256 and 512
    python bench/train_throughput.py --presets thinking-small --batch 1 --seq-len 256 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp

import torch
import torch.nn.functional as F


def peak_matmul_flops(threads: int, n: int = 1024, reps: int = 10) -> float:
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def bench_preset(
    name: str, batch: int, seq_len: int, steps: int, warmup: int, optimizer: str
) -> dict:
    from hillclimb.model.accounting import account_model, attention_flops_per_token
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.train.optim import build_optimizers

    cfg = get_preset(name)
    model = build_model(cfg, seed=0)
    model.train()
    acc = account_model(model)
    flops_tok = 3 * (acc.matmul_flops_per_token + attention_flops_per_token(model, seq_len))
    opts = build_optimizers(model, optimizer=optimizer)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), generator=g)
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten()) + model.aux_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    step_s = sorted(times)[len(times) // 2]  # median
    tok_s = batch * seq_len / step_s
    return {
        "preset": name,
        "batch": batch,
        "seq_len": seq_len,
        "optimizer": optimizer,
        "total_params": acc.total_params,
        "active_params": acc.active_params,
        "train_flops_per_token": flops_tok,
        "step_s_median": round(step_s, 4),
        "tokens_per_s": round(tok_s, 1),
        "achieved_gflops": round(tok_s * flops_tok / 1e9, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["thinking-tiny", "code-flash-tiny"])
    ap.add_argument("--seq-len", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="default: all cores")
    ap.add_argument("--optimizer", default="adamw")
    args = ap.parse_args()
    if min(args.steps, args.batch, *args.seq_len) < 1 or args.warmup < 0:
        ap.error("--steps, --batch and --seq-len must be >= 1 (a median needs a timed step)")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    peak = peak_matmul_flops(threads)
    rows = []
    for name in args.presets:
        for T in args.seq_len:
            r = bench_preset(name, args.batch, T, args.steps, args.warmup, args.optimizer)
            r["mfu"] = round(r["achieved_gflops"] * 1e9 / peak, 4)
            rows.append(r)
    print(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "threads": threads,
                    "loadavg_1m": os.getloadavg()[0],
                    "torch": torch.__version__,
                },
                "peak_matmul_gflops_fp32": round(peak / 1e9, 2),
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
