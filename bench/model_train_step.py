"""Training-step throughput of our MoE vs transformers' Qwen3MoeForCausalLM (issue 2 benchmark).

Forward + backward + AdamW step, fp32 on CPU, identical config and batch, timed in the same
process with the two models interleaved round by round (these machines are shared and noisy, so
only ratios measured side by side mean anything). Also: grouped vs per-expert-loop experts, and
step time when the number of experts doubles at fixed top-k (cost should follow active params).

    python bench/model_train_step.py [--presets thinking-tiny code-flash-tiny] [--batch 8 --seq 256]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def _hf_model(cfg, experts_impl: str | None):
    import transformers

    from hillclimb.model.hf import config_to_hf

    d = {
        k: v
        for k, v in config_to_hf(cfg).items()
        if k not in ("architectures", "model_type", "dtype", "rope_scaling", "rope_theta")
    }
    if experts_impl:
        d["experts_implementation"] = experts_impl
    hf_cfg = transformers.Qwen3MoeConfig(**d)
    hf_cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.Qwen3MoeForCausalLM(hf_cfg).train()


def _ours(cfg):
    from hillclimb.model.transformer import build_model

    return build_model(cfg, seed=0).train()


def _step_fn(model, ids, tgt, hf: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    V = model.config.vocab_size if hf else model.cfg.vocab_size

    def step():
        logits = model(ids).logits if hf else model(ids)
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, V), tgt.view(-1))
        if not hf:
            loss = loss + model.aux_loss()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _time_interleaved(fns: dict, rounds: int, warmup: int = 2) -> dict[str, float]:
    for f in fns.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_peak_flops(n: int = 1024, reps: int = 10) -> float:
    """Achievable fp32 GEMM FLOP/s on this machine right now (the MFU denominator)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["thinking-tiny", "code-flash-tiny"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    if min(args.batch, args.seq, args.rounds) < 1:  # a median step time needs one timed round
        ap.error("--batch, --seq and --rounds must be >= 1")
    from hillclimb.model.config import get_preset

    torch.manual_seed(0)
    out = {
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "batch": args.batch,
        "seq": args.seq,
        "rounds": args.rounds,
        "results": {},
    }
    for name in args.presets:
        cfg = get_preset(name)
        ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq))
        tgt = torch.randint(0, cfg.vocab_size, (args.batch, args.seq))
        tokens = args.batch * args.seq
        fns = {
            "ours_grouped": _step_fn(_ours(cfg.replace(expert_impl="grouped")), ids, tgt, False),
            "ours_loop": _step_fn(_ours(cfg.replace(expert_impl="loop")), ids, tgt, False),
            "ours_2x_experts": _step_fn(
                _ours(cfg.replace(n_experts=2 * cfg.n_experts)), ids, tgt, False
            ),
            "hf_default": _step_fn(_hf_model(cfg, None), ids, tgt, True),
        }
        try:
            fns["hf_grouped_mm"] = _step_fn(_hf_model(cfg, "grouped_mm"), ids, tgt, True)
        except Exception as exc:  # older transformers: no experts_implementation switch
            out.setdefault("notes", []).append(f"hf grouped_mm unavailable: {exc}")
        t = _time_interleaved(fns, args.rounds)
        res = {k: {"step_s": v, "tokens_per_s": tokens / v} for k, v in t.items()}
        best_hf = min(v for k, v in t.items() if k.startswith("hf_"))
        res["ratio_ours_vs_hf_default"] = t["hf_default"] / t["ours_grouped"]
        res["ratio_ours_vs_best_hf"] = best_hf / t["ours_grouped"]
        res["ratio_grouped_vs_loop"] = t["ours_loop"] / t["ours_grouped"]
        res["step_time_2x_experts_over_1x"] = t["ours_2x_experts"] / t["ours_grouped"]
        # Utilisation: training FLOPs per token (3x forward matmuls + attention at this length)
        from hillclimb.model.accounting import account, attention_flops_per_token
        from hillclimb.model.transformer import build_model

        acc = account(cfg)
        attn = attention_flops_per_token(build_model(cfg, device="meta"), args.seq)
        flops_tok = 3 * (acc.matmul_flops_per_token + attn)
        peak = matmul_peak_flops()
        res["matmul_peak_gflops"] = peak / 1e9
        res["mfu_ours"] = flops_tok * tokens / t["ours_grouped"] / peak
        res["mfu_hf_default"] = flops_tok * tokens / t["hf_default"] / peak
        out["results"][name] = res
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
