"""Suffix drafting (prompt lookup + the engine's recent outputs) vs lookup vs plain decoding.

Usage:
    python bench/serve_suffix.py --model runs/tiny/09-rl-thinking/run/final \
        [--n-per-tier 8] [--tiers 1,2] [--temperature 0.7] [--repeats 2]

Workloads, one request at a time (the single-stream case speculation is for), contenders
alternating per request so load drift hits all alike:

- `revisit`: held-out (val split) problems are answered once to warm the history — the way an
  RL run samples a prompt at one step and again a few steps later, or an agent re-asks a turn —
  and then answered again, sampled with a *new* seed (temperature `--temperature`): the timed
  pass. Outputs differ between passes where sampling differs, so the history is a real, noisy
  source, not a copy of the answer.
- `fresh`: problems of another seed (a new one every timed pass) that no request has answered
  (the history has only unrelated outputs): drafting must not cost more than it saves here.

Every contender sees exactly the same requests; with greedy decoding (`--temperature 0`) the
outputs must be identical across contenders (asserted); with sampling they follow the same
distribution (tests/test_engine_suffix.py) but differ token by token. Prints one JSON object:
tokens/s per contender and workload, the ratio vs plain, and acceptance.

What it does not show: concurrency (speculation runs only while few requests are in flight),
or prefill (answers are short; the prefix cache is on for all contenders alike).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

CONTENDERS = ("none", "lookup", "suffix")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint directory")
    ap.add_argument("--families", default="arith,arith_chain,logic,word_problem")
    ap.add_argument("--tiers", default="1,2")
    ap.add_argument("--n-per-tier", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per workload")
    args = ap.parse_args()
    if min(args.n_per_tier, args.repeats, args.max_tokens) < 1:  # a rate needs a timed pass
        ap.error("--n-per-tier, --repeats and --max-tokens must be >= 1")

    import torch

    from hillclimb import problems as P
    from hillclimb.rl.rollout import chat_prompt
    from hillclimb.serve.engine import Engine
    from hillclimb.serve.sampling import SamplingParams

    torch.set_num_threads(1)

    def problems(seed: int) -> list:
        return [
            p
            for f in args.families.split(",")
            for t in (int(x) for x in args.tiers.split(","))
            for p in P.generate(f, t, args.n_per_tier, seed, "val")
        ]

    engines = {c: Engine.from_checkpoint(args.model, max_batch=1, drafter=c) for c in CONTENDERS}
    tok = engines["none"].tokenizer
    revisit = [chat_prompt(tok, p) for p in problems(0)]
    # fresh prompts are new in every timed pass (a repeated one would be a revisit)
    fresh = [[chat_prompt(tok, p) for p in problems(1 + rep)] for rep in range(args.repeats)]
    greedy = args.temperature == 0

    def params(seed: int) -> SamplingParams:
        return SamplingParams(
            max_tokens=args.max_tokens, temperature=args.temperature, seed=seed, top_p=1.0
        )

    # warm-up pass on the revisit prompts (seed 0): fills every engine's history alike and
    # compiles the steps; not timed
    for ids in revisit:
        for c in CONTENDERS:
            engines[c].generate(ids, params(0))
    results: dict[str, dict] = {}
    for name in ("revisit", "fresh"):
        tot = {c: {"tokens": 0, "seconds": 0.0, "drafted": 0, "accepted": 0} for c in CONTENDERS}
        for rep in range(args.repeats):
            prompts = revisit if name == "revisit" else fresh[rep]
            for i, ids in enumerate(prompts):
                outs = {}
                for c in CONTENDERS:
                    t0 = time.perf_counter()
                    o = engines[c].generate(ids, params(1000 * (rep + 1) + i))
                    tot[c]["seconds"] += time.perf_counter() - t0
                    tot[c]["tokens"] += len(o.token_ids)
                    if o.spec:
                        tot[c]["drafted"] += o.spec.get("drafted", 0)
                        tot[c]["accepted"] += o.spec.get("accepted", 0)
                    outs[c] = o.token_ids
                if greedy:
                    assert outs["lookup"] == outs["none"] == outs["suffix"], (name, i)
        base = tot["none"]["tokens"] / tot["none"]["seconds"]
        results[name] = {
            c: {
                "tokens": v["tokens"],
                "tokens_per_s": round(v["tokens"] / v["seconds"], 1),
                "vs_plain": round(v["tokens"] / v["seconds"] / base, 3),
                "acceptance": round(v["accepted"] / v["drafted"], 3) if v["drafted"] else None,
                "accepted_per_token": round(v["accepted"] / max(1, v["tokens"]), 3),
            }
            for c, v in tot.items()
        }
    print(
        json.dumps(
            {
                "bench": "serve_suffix",
                "model": str(args.model),
                "prompts_per_workload": len(revisit),
                "temperature": args.temperature,
                "repeats": args.repeats,
                "history": engines["suffix"].stats()["suffix"]["history"],
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "torch_threads": torch.get_num_threads(),
                "workloads": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
