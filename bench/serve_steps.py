"""Per-step costs of the engine's single-slot steps, eager vs compiled, and the thread count.

Why: the serving defaults rest on these numbers — compiling the single-slot graph
(`FastForward.enable_compile`), prefilling short prompts through it (`_COMPILED_PREFILL_MAX`)
and one intra-op thread for small models (`hillclimb serve --threads` auto). Each figure is a
median over repeats, contenders alternated in the same process:

- decode: one token after 128 cached, real (varying) tokens, thinking-tiny;
- verify: 5 tokens scored at once (speculative verification), thinking-tiny;
- prefill: a lone prompt of T tokens into an empty slot, code-flash-tiny, the model's forward
  vs `FastForward`'s lean forward (the engine's path for long prompts and groups) vs the
  compiled graph;
- batched: a one-token step over 8 and 32 slots, code-flash-tiny, eager vs compiled graph;
- prefill choices: groups of 1/8/32 padded 58-token prompts, model forward vs lean forward
  (code-flash-tiny); lone thinking-tiny prompts of 32/48/64 tokens, lean vs compiled;
- expert layout: grouped GEMMs over transposed-view vs contiguous expert weights;
- threads: engine tokens/s for 1 stream and for 32 sampled streams, code-flash-tiny, compiled
  engine, 1 vs 2 torch threads.

Usage: PYTHONPATH=src python bench/serve_steps.py [--repeats 5]   (prints one JSON object)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def _median_ms(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n * 1e3)
    return round(statistics.median(times), 4)


def steps(repeats: int) -> dict:
    from hillclimb.model.config import get_preset
    from hillclimb.model.kv_cache import KVCache
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.fastpath import FastForward

    out: dict = {}
    m = build_model(get_preset("thinking-tiny"), seed=0).eval()
    eager, comp = FastForward(m, 512), FastForward(m, 512)
    cache = KVCache(m.cfg, 1, 512)
    assert comp.enable_compile(multi=True, cache=cache), comp.compile_error
    ctx = list(range(11, 139))
    with torch.inference_mode():
        for name, ff in (("eager", eager), ("compiled", comp)):
            cache.reset([0])
            ff.extend_one(ctx, cache, 0)
            state = {"tok": 7}

            def dec(ff=ff, state=state):
                state["tok"] = int(ff.decode_one(state["tok"], cache, 0).argmax()) % 4000
                if int(cache.cursor[0]) > 400:
                    cache.truncate(0, len(ctx))

            def ver(ff=ff):
                ff.extend_one([5, 9, 300, 7, 2], cache, 0, last_only=False)
                cache.truncate(0, len(ctx))

            dec()
            out[f"thinking_tiny_decode_ms_{name}"] = _median_ms(dec, 100, repeats)
            cache.truncate(0, len(ctx))
            ver()
            out[f"thinking_tiny_verify5_ms_{name}"] = _median_ms(ver, 30, repeats)

    m = build_model(get_preset("code-flash-tiny"), seed=0).eval()
    ff = FastForward(m, 300)
    cache = KVCache(m.cfg, 2, 300)
    assert ff.enable_compile(multi=True, cache=cache), ff.compile_error
    slot = torch.tensor([1])
    prefill = {}
    with torch.inference_mode():
        for T in (20, 40, 80, 128, 256):
            ids = [(7 * i + 3) % 4000 for i in range(T)]

            def model_fwd(ids=ids):
                m(torch.tensor([ids]), cache=cache, slot_ids=slot, last_only=True)
                cache.reset([1])

            def compiled(ids=ids):
                ff.extend_one(ids, cache, 1)
                cache.reset([1])

            def lean(ids=ids):  # FastForward's eager forward (the engine's path above 128)
                ff(torch.tensor([ids]), cache, slot, slot_range=(1, 2))
                cache.reset([1])

            compiled()
            prefill[str(T)] = {
                "model_forward_ms": _median_ms(model_fwd, 10, repeats),
                "lean_forward_ms": _median_ms(lean, 10, repeats),
                "compiled_ms": _median_ms(compiled, 10, repeats),
            }
    out["code_flash_tiny_prefill"] = prefill
    out["code_flash_tiny_batched_step_ms"] = batched(repeats)
    return out


def batched(repeats: int) -> dict:
    """One-token step over B contiguous slots (continuous batching), rows starting at 20–119
    cached tokens: the eager batched step vs the compiled graph (`enable_compile_batch`)."""
    from hillclimb.model.config import get_preset
    from hillclimb.model.kv_cache import KVCache
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.fastpath import FastForward

    m = build_model(get_preset("code-flash-tiny"), seed=0).eval()
    eager, comp = FastForward(m, 300), FastForward(m, 300)
    cache = KVCache(m.cfg, 32, 300)
    assert comp.enable_compile_batch(cache), comp.compile_error
    res: dict = {}
    with torch.inference_mode():
        for B in (8, 32):
            lens = [20 + (37 * b) % 100 for b in range(B)]
            toks = [(13 * b + 5) % 4000 for b in range(B)]
            row: dict = {}
            for name, ff in (("eager", eager), ("compiled", comp)):
                cache.reset()
                for b, n in enumerate(lens):
                    eager.extend_one([(3 * i + b) % 4000 for i in range(n)], cache, b)

                def step(ff=ff, toks=toks):  # rows grow by one cell per step (≤ 100 steps)
                    ff.decode_batch(toks, cache, 0)

                step()
                row[name] = _median_ms(step, 20, min(repeats, 4))
            res[str(B)] = row
    return res


def prefill_choices(repeats: int) -> dict:
    """The numbers behind the engine's prefill paths: groups of G right-padded 58-token prompts
    (model forward vs lean forward, code-flash-tiny) and thinking-tiny's lone prompts around
    `_COMPILED_PREFILL_MAX` (lean forward vs compiled graph)."""
    from hillclimb.model.config import get_preset
    from hillclimb.model.kv_cache import KVCache
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.fastpath import FastForward

    out: dict = {"code_flash_tiny_groups_58_tokens": {}, "thinking_tiny_lone_prompt": {}}
    m = build_model(get_preset("code-flash-tiny"), seed=0).eval()
    ff, cache = FastForward(m, 300), KVCache(m.cfg, 32, 300)
    with torch.inference_mode():
        for G in (1, 8, 32):
            ids = torch.tensor([[(7 * i + 3 * g) % 4000 for i in range(58)] for g in range(G)])
            mask = torch.ones(G, 58, dtype=torch.long)
            mask[0, -3:] = 0  # one shorter prompt: the group carries padding
            slots = torch.arange(G)

            def model_fwd(ids=ids, mask=mask, slots=slots, G=G):
                cache.reset(list(range(G)))
                m(ids, attention_mask=mask, cache=cache, slot_ids=slots, return_hidden=True)

            def lean(ids=ids, mask=mask, slots=slots, G=G):
                cache.reset(list(range(G)))
                ff(ids, cache, slots, slot_range=(0, G), attention_mask=mask)

            lean()
            out["code_flash_tiny_groups_58_tokens"][str(G)] = {
                "model_forward_ms": _median_ms(model_fwd, 5, repeats),
                "lean_forward_ms": _median_ms(lean, 5, repeats),
            }
    m = build_model(get_preset("thinking-tiny"), seed=0).eval()
    ff, cache = FastForward(m, 300), KVCache(m.cfg, 2, 300)
    assert ff.enable_compile(multi=True, cache=cache), ff.compile_error
    with torch.inference_mode():
        for T in (32, 48, 64):
            ids = [(7 * i + 3) % 4000 for i in range(T)]

            def lean(ids=ids):
                ff(torch.tensor([ids]), cache, torch.tensor([1]), slot_range=(1, 2))
                cache.reset([1])

            def compiled(ids=ids):
                ff.extend_one(ids, cache, 1)
                cache.reset([1])

            compiled()
            out["thinking_tiny_lone_prompt"][str(T)] = {
                "lean_forward_ms": _median_ms(lean, 10, repeats),
                "compiled_ms": _median_ms(compiled, 10, repeats),
            }
    return out


def expert_layout(repeats: int) -> dict:
    """`torch._grouped_mm` over 32 rows × top-2 of code-flash-tiny's 8 experts, with the expert
    weights as transposed views of the model's [E, out, in] vs contiguous [E, in, out] copies
    (why the compiled batched step keeps transposed copies of small experts)."""
    d, de, E, B = 128, 192, 8, 32
    g = torch.Generator().manual_seed(0)
    gate_up, down = torch.randn(E, 2 * de, d, generator=g), torch.randn(E, d, de, generator=g)
    counts = torch.bincount(torch.arange(2 * B) % E, minlength=E)
    offs = torch.cumsum(counts, 0).to(torch.int32)
    x, h = torch.randn(2 * B, d, generator=g), torch.randn(2 * B, de, generator=g)
    res: dict = {}
    for name, w in (("gate_up", gate_up), ("down", down)):
        a = x if name == "gate_up" else h
        view, contig = w.transpose(1, 2), w.transpose(1, 2).contiguous()
        res[name] = {
            "views_us": round(1e3 * _median_ms(lambda a=a, v=view: torch._grouped_mm(a, v, offs=offs), 200, repeats), 1),
            "contiguous_us": round(1e3 * _median_ms(lambda a=a, c=contig: torch._grouped_mm(a, c, offs=offs), 200, repeats), 1),
        }  # fmt: skip
    return res


def threads(repeats: int) -> dict:
    import tempfile
    from pathlib import Path

    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.engine import Engine, SamplingParams

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "m"
        save_checkpoint(build_model(get_preset("code-flash-tiny"), seed=0), d)
        e = Engine.from_checkpoint(d, device="cpu", max_batch=32, max_len=300, compile=True)
    prompts = [list(range(10 + i, 40 + i)) for i in range(32)]
    many = SamplingParams(max_tokens=64, temperature=0.7, ignore_eos=True)
    one = SamplingParams(max_tokens=128, temperature=0, ignore_eos=True)
    rates: dict[str, dict[str, list[float]]] = {
        "1": {"b1": [], "b32": []},
        "2": {"b1": [], "b32": []},
    }
    for _ in range(repeats):
        for th in ("1", "2"):
            torch.set_num_threads(int(th))
            t = time.perf_counter()
            e.generate_batch(prompts, many)
            rates[th]["b32"].append(32 * 64 / (time.perf_counter() - t))
            t = time.perf_counter()
            e.generate(prompts[0], one)
            rates[th]["b1"].append(128 / (time.perf_counter() - t))
    torch.set_num_threads(1)
    return {
        f"threads_{th}": {k: round(statistics.median(v), 1) for k, v in r.items()}
        for th, r in rates.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = steps(args.repeats)
    res["prefill_choices"] = prefill_choices(args.repeats)
    if hasattr(torch, "_grouped_mm"):
        res["code_flash_tiny_expert_layout_32_rows"] = expert_layout(args.repeats)
    res["code_flash_tiny_engine_tok_s"] = threads(args.repeats)
    print(json.dumps({"bench": "serve_steps", "machine": f"{platform.machine()} cpu",
                      "torch": torch.__version__, "results": res}, indent=2))  # fmt: skip


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
