"""Single-stream decode tokens/s: hillclimb Engine vs `transformers` generate, same weights, same run.

Why this measurement: the engine's decode step (KV cache with slots, last-position logits,
host-side sampling/stop handling) is what every user of the engine pays per token; the
`transformers` Qwen3-MoE implementation loaded from the *same exported checkpoint directory* is
the standard reference. The engine runs twice: eager steps, and with `compile=True` (the single-stream step compiled by
inductor, the `hillclimb serve` default on CPU). All decode greedily with EOS ignored, in the same process with the same
torch thread count, and the decode rate is measured as (N − 1) / (t(N tokens) − t(1 token)) so
prompt prefill is excluded from both. The token sequences are compared as a sanity check.

Usage: PYTHONPATH=src python bench/serve_decode.py [--presets thinking-micro,thinking-tiny]
         [--tokens 128] [--repeats 3] [--threads 1] [--checkpoint DIR]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hillclimb.errors import HillclimbError


def _engine_time(engine, prompt_ids, n):
    from hillclimb.serve.engine import SamplingParams

    t = time.perf_counter()
    out = engine.generate(
        list(prompt_ids), SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)
    )
    return time.perf_counter() - t, out.token_ids


def _hf_time(hf, prompt_ids, n, cache: str | None = None):
    """transformers' `generate`, greedy; `cache="static"` with a compiled forward is its own
    fastest CPU path."""
    x = torch.tensor([prompt_ids])
    extra = {"cache_implementation": cache} if cache else {}
    t = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            **extra,
        )
    return time.perf_counter() - t, out[0, len(prompt_ids) :].tolist()


def _rates(fns, n, repeats):
    """Median decode rate per contender; contenders alternate within each repeat so that load
    drift on a shared machine hits both alike."""
    for fn in fns:
        fn(8)  # warm-up
    rates: list[list[float]] = [[] for _ in fns]
    toks: list = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t1, _ = fn(1)
            tn, toks[i] = fn(n)
            if tn <= t1:  # timing noise exceeds the decode time: no rate (was 1e9 tok/s)
                raise HillclimbError(
                    f"decoding {n} tokens took no longer than 1 token ({tn:.4f} s vs "
                    f"{t1:.4f} s): too few --tokens to measure a decode rate"
                )
            rates[i].append((n - 1) / (tn - t1))
    return [statistics.median(r) for r in rates], toks


def bench_checkpoint(path: Path, n: int, repeats: int, prompt_len: int) -> dict:
    import transformers

    from hillclimb.serve.engine import Engine

    engine = Engine.from_checkpoint(path, device="cpu", max_batch=1, max_len=prompt_len + n + 8)
    t0 = time.perf_counter()
    compiled = Engine.from_checkpoint(
        path, device="cpu", max_batch=1, max_len=prompt_len + n + 8, compile=True
    )
    compile_s = time.perf_counter() - t0
    if not compiled.compiled:
        raise SystemExit(f"compiled step unavailable: {compiled.compile_error}")
    prompt = engine.tokenizer.encode(
        'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n' * 8
    )
    prompt = prompt[:prompt_len]
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    # transformers' best CPU path: static cache + torch.compile of the forward (its docs'
    # recipe); compiled on the first calls, which the warm-up in `_rates` absorbs
    hf_static = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    # one compiled graph per (prefill | decode) shape and per model of the run: the default
    # limit of 8 recompilations is shared by every model's `forward` wrapper, and hitting it
    # silently falls back to eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    hf_static.forward = torch.compile(hf_static.forward, dynamic=False)
    t0 = time.perf_counter()
    _hf_time(hf_static, prompt, 4, "static")
    hf_compile_s = time.perf_counter() - t0
    (ours, comp, ref, ref_static), (ours_toks, comp_toks, hf_toks, hf_static_toks) = _rates(
        [
            lambda k: _engine_time(engine, prompt, k),
            lambda k: _engine_time(compiled, prompt, k),
            lambda k: _hf_time(hf, prompt, k),
            lambda k: _hf_time(hf_static, prompt, k, "static"),
        ],
        n,
        repeats,
    )
    agree = next(
        (i for i, (a, b) in enumerate(zip(ours_toks, hf_toks, strict=False)) if a != b),
        len(ours_toks),
    )
    return {
        "preset": engine.cfg.name,
        "params": sum(p.numel() for p in engine.model.parameters()),
        "prompt_tokens": len(prompt),
        "new_tokens": n,
        "engine_tok_s": round(ours, 1),
        "engine_compiled_tok_s": round(comp, 1),
        "transformers_tok_s": round(ref, 1),
        "speedup": round(ours / ref, 2),
        "speedup_compiled": round(comp / ref, 2),
        "transformers_static_compiled_tok_s": round(ref_static, 1),
        "speedup_vs_static_compiled": round(ours / ref_static, 2),
        "speedup_compiled_vs_static_compiled": round(comp / ref_static, 2),
        "transformers_compile_s": round(hf_compile_s, 1),
        "static_tokens_equal_eager_hf": hf_static_toks == hf_toks,
        "compile_s": round(compile_s, 1),
        "greedy_tokens_agree_prefix": agree,
        "compiled_equals_eager": comp_toks == ours_toks,
        "compiled_fell_back": compiled.fast.compile_error,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="thinking-micro,thinking-tiny")
    ap.add_argument("--checkpoint", type=Path, action="append", default=[])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    # the rate is (N - 1) / (t(N) - t(1)): one token is no rate, and a median needs a repeat
    if args.tokens < 2 or args.repeats < 1 or args.prompt_len < 1 or args.threads < 1:
        ap.error("--tokens must be >= 2 and --repeats, --prompt-len, --threads >= 1")
    torch.set_num_threads(args.threads)
    import transformers

    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = list(args.checkpoint)
        for name in [p for p in args.presets.split(",") if p]:
            d = Path(tmp) / name
            save_checkpoint(build_model(get_preset(name), seed=0), d)
            paths.append(d)
        for p in paths:
            results.append(bench_checkpoint(p, args.tokens, args.repeats, args.prompt_len))
    print(
        json.dumps(
            {
                "bench": "serve_decode",
                "machine": f"{platform.machine()} {platform.processor() or ''} cpu threads={args.threads}".strip(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "results": results,
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
