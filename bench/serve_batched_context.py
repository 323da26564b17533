"""One decode step at agent-episode context lengths: one row vs a batch, contiguous vs scattered
slots, eager vs compiled; JSON out.

Usage:
    python bench/serve_batched_context.py [--contexts 200,1400] [--threads 2]

Why: agent episodes carry 1–2k-token contexts and keep their own KV slots, so the rows that
decode together are often scattered (docs/areas/engine.md). This times `FastForward`'s steps
on code-flash-tiny (random weights; cost does not depend on them) with every slot filled to
the context length: one row (`decode_one`), B rows as a contiguous slot range and as every
other slot (eager), and B contiguous rows through the compiled batched graph. Medians of
repeats, in milliseconds per step, all in one process.

What it does not show: the engine's own per-step work (sampling, detokenisation, scheduling) or
contention from other threads and processes (`bench/harness_episodes.py` has both).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from serve_steps import _median_ms  # noqa: E402 - this directory's script: one timing helper


def _ms(fn) -> float:  # noqa: ANN001
    return _median_ms(fn, 50, 5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contexts", default="200,1400")
    ap.add_argument("--batches", default="4,8")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.threads < 1:
        ap.error("--threads must be >= 1")

    import torch

    from hillclimb.model.config import get_preset
    from hillclimb.model.kv_cache import KVCache
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.fastpath import FastForward

    torch.set_num_threads(args.threads)
    cfg = get_preset("code-flash-tiny")
    model = build_model(cfg, seed=0).eval()
    try:
        contexts = [int(x) for x in args.contexts.split(",")]
        batches = [int(x) for x in args.batches.split(",")]
    except ValueError:
        ap.error("--contexts and --batches are comma-separated integers")
    # a step appends one token after L cached ones: L + 1 must fit the cache
    if not contexts or min(contexts) < 1 or max(contexts) >= cfg.max_seq_len:
        ap.error(f"--contexts must lie in [1, {cfg.max_seq_len - 1}] for {cfg.name}")
    if not batches or min(batches) < 1:
        ap.error("--batches must be >= 1")
    n_slots = 2 * max(batches)
    cache = KVCache(cfg, n_slots, cfg.max_seq_len)
    ff = FastForward(model, cfg.max_seq_len)
    gen = torch.Generator().manual_seed(0)

    def fill(L: int) -> None:
        cache.reset()
        for s in range(n_slots):
            ff(torch.randint(0, cfg.vocab_size, (1, L), generator=gen), cache, None, single_slot=s)

    def rewind(slots: torch.Tensor | slice, L: int) -> None:  # every step starts at length L
        cache.cursor[slots], cache.seen[slots] = L, L

    res: dict[str, float] = {}
    with torch.inference_mode():
        for L in contexts:
            fill(L)
            res[f"one_row/L{L}"] = _ms(
                lambda: (ff.decode_one(5, cache, 0), rewind(0, L))  # noqa: B023
            )
            for B in batches:
                ids = torch.full((B, 1), 5)
                rng = torch.arange(B)
                every_other = torch.arange(0, 2 * B, 2)
                res[f"eager_contiguous/B{B}/L{L}"] = _ms(
                    lambda: (ff(ids, cache, rng, slot_range=(0, B)), rewind(rng, L))  # noqa: B023
                )
                res[f"eager_scattered/B{B}/L{L}"] = _ms(
                    lambda: (ff(ids, cache, every_other), rewind(every_other, L))  # noqa: B023
                )
        compiled = ff.enable_compile_batch(cache)
        if compiled:
            for L in contexts:
                fill(L)
                for B in batches:
                    rng = torch.arange(B)
                    res[f"compiled_contiguous/B{B}/L{L}"] = _ms(
                        lambda: (ff.decode_batch([5] * B, cache, 0), rewind(rng, L))  # noqa: B023
                    )
    out = {
        "bench": "serve_batched_context",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": torch.get_num_threads(),
        "compiled_batch": bool(compiled),
        "ms_per_step": res,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
