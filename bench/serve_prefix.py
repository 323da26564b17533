"""Prefix cache on vs off (`serve/prefix_cache.py`), side by side in one run.

Workloads (two engines over the same weights, one with the cache and one without; runs
alternate which goes first so load drift hits both alike; greedy outputs and seeded samples
must be identical token for token — asserted):

- `chat`: episodes of `--turns` turns through the harness's `LocalClient` (token-faithful:
  each turn's prompt is the previous prompt + the reply + the new user message, as agent
  episodes are built). Per episode: prompt tokens, tokens actually prefilled, wall time.
- `grpo`: a group of `--group` seeded samples of one chat prompt in one `generate_batch` (an
  RL rollout group; a new prompt per group). Per group: tokens prefilled, wall time.
- `no_shared`: prompts that share no prefix (each starts with a different random word), one
  request at a time and as a batch: the cache's overhead when it never hits (target ≤ 2%).

Model: `--ckpt DIR`, else the first SFT'd thinking-tiny of a climb under /tmp
(`/tmp/*/runs/tiny/*sft-thinking/run/final`), else a randomly initialised thinking-tiny with
the byte-level tokenizer (said in the output). CPU, one torch thread, eager steps unless
`--compile`.

  PYTHONPATH=src python bench/serve_prefix.py [--ckpt DIR] [--episodes 4] [--turns 6]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import glob
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from hillclimb.serve.prefix_cache import common_prefix

USER_TURNS = [
    "Hi! Can you help me plan a small vegetable garden?",
    "Which vegetables grow well in partial shade?",
    "How often should I water them in summer?",
    "What about pests, anything natural I can use?",
    "Can you summarise that as a short checklist?",
    "Thanks. One more: when should I harvest the lettuce?",
    "And how do I store it afterwards?",
    "Great, that is all for today.",
]
SYSTEM = "You are a helpful, concise assistant. Answer in a few sentences."


def find_ckpt() -> Path | None:
    found = sorted(glob.glob("/tmp/*/runs/tiny/*sft-thinking/run/final"))
    return Path(found[0]) if found else None


def make_engines(args: argparse.Namespace) -> tuple[Any, Any, str]:
    from hillclimb.serve.engine import Engine

    ckpt = Path(args.ckpt) if args.ckpt else find_ckpt()
    kw = {"max_batch": args.max_batch, "seed": 0, "compile": args.compile, "device": "cpu"}
    if ckpt is not None:
        on = Engine.from_checkpoint(ckpt, prefix_cache=True, **kw)
        off = Engine(on.model, on.tokenizer, prefix_cache=False, **kw)
        return on, off, str(ckpt)
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    model = build_model(get_preset("thinking-tiny"), seed=0).eval()
    tok = bytelevel_tokenizer()
    on = Engine(model, tok, prefix_cache=True, **kw)
    off = Engine(model, tok, prefix_cache=False, **kw)
    return on, off, "random thinking-tiny (no checkpoint found)"


def prefilled(engine: Any) -> int:
    return int(engine.stats()["totals"]["prefill_tokens"])


def run_episode(engine: Any, turns: int, max_tokens: int, k: int) -> dict[str, Any]:
    from hillclimb.harness.clients import LocalClient

    client = LocalClient(engine=engine)
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    p0, t0 = prefilled(engine), time.perf_counter()
    prompt_tokens, replies = 0, []
    for i in range(turns):
        messages.append({"role": "user", "content": f"({k}) {USER_TURNS[i % len(USER_TURNS)]}"})
        res = client.chat(messages, [], max_tokens=max_tokens, temperature=0.0, seed=None)
        prompt_tokens += len(res.prompt_ids or [])
        replies.append(list(res.completion_ids or []))
        messages.append({"role": "assistant", "content": res.content})
    return {
        "wall_s": time.perf_counter() - t0,
        "prompt_tokens": prompt_tokens,
        "prefill_tokens": prefilled(engine) - p0,
        "replies": replies,
    }


def run_group(engine: Any, prompt: list[int], n: int, max_tokens: int, k: int) -> dict[str, Any]:
    from hillclimb.serve.engine import SamplingParams

    params = [
        SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=1000 * k + i, ignore_eos=True)
        for i in range(n)
    ]
    p0, t0 = prefilled(engine), time.perf_counter()
    outs = engine.generate_batch([prompt] * n, params)
    return {
        "wall_s": time.perf_counter() - t0,
        "prompt_tokens": n * len(prompt),
        "prefill_tokens": prefilled(engine) - p0,
        "replies": [o.token_ids for o in outs],
    }


WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "piano",
    "tiger",
    "lemon",
    "orbit",
    "maple",
    "quartz",
    "violet",
    "harbor",
    "zebra",
    "copper",
    "desert",
    "falcon",
    "garden",
    "silver",
    "rocket",
    "meadow",
    "candle",
    "window",
    "forest",
    "marble",
]


def unshared_prompts(tok: Any, n: int) -> list[list[int]]:
    """n prompts of 8–30 random words, each starting with a different random syllable."""
    rng = random.Random(0)
    pairs = [a + b + c for a in "bcdfghjklmnprstvwz" for b in "aeiou" for c in "bdgklmnprstz"]
    rng.shuffle(pairs)
    assert n <= len(pairs), f"at most {len(pairs)} no-shared prompts"
    return [
        tok.encode(pairs[i] + " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))))
        for i in range(n)
    ]


def run_unshared(
    engine: Any, single_prompts: list[list[int]], batch_prompts: list[list[int]], max_tokens: int
) -> dict[str, Any]:
    from hillclimb.serve.engine import SamplingParams

    sp = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    t0 = time.perf_counter()
    single = [engine.generate(p, sp).token_ids for p in single_prompts]
    t1 = time.perf_counter()
    batch = [o.token_ids for o in engine.generate_batch(batch_prompts, sp)]
    t2 = time.perf_counter()
    return {"single_s": t1 - t0, "batch_s": t2 - t1, "replies": single + batch}


def long_system_prompt(tok: Any, k: int, n_tokens: int) -> str:
    """A system prompt of about n_tokens tokens, different for every k (so each run's first
    request is cold), of seeded random words."""
    rng = random.Random(1000 + k)
    words = [f"rule{k}:"]
    while len(tok.encode(" ".join(words))) < n_tokens:
        words.extend(rng.choice(WORDS) for _ in range(16))
    ids = tok.encode(" ".join(words))[:n_tokens]
    return tok.decode(ids)


def run_ttft(engine: Any, system: str, k: int) -> dict[str, Any]:
    """Time to first token of two requests sharing a long system prompt (different questions):
    the second one finds the system prompt's KV in the cache."""
    from hillclimb.serve.engine import SamplingParams

    sp = SamplingParams(max_tokens=1, temperature=0, ignore_eos=True)
    out: dict[str, Any] = {"replies": []}
    for i, q in enumerate((f"Summarise rule {k}.", f"Which words repeat in rule {k}?")):
        ids = engine.tokenizer.encode_chat(
            [{"role": "system", "content": system}, {"role": "user", "content": q}],
            add_generation_prompt=True,
        )
        t0 = time.perf_counter()
        out["replies"].append(engine.generate(ids, sp).token_ids)
        out[("first" if i == 0 else "second") + "_ttft_s"] = time.perf_counter() - t0
        out["prompt_tokens"] = len(ids)
    return out


def side_by_side(fn: Any, on: Any, off: Any, reps: int) -> dict[str, Any]:
    """Run fn(engine, k) for k in range(reps) on both engines (alternating who goes first) and
    assert identical replies; → per-engine lists of the numeric fields."""
    res: dict[str, dict[str, list[float]]] = {"on": {}, "off": {}}
    for k in range(reps):
        order = [("on", on), ("off", off)] if k % 2 == 0 else [("off", off), ("on", on)]
        got = {name: fn(eng, k) for name, eng in order}
        if got["on"]["replies"] != got["off"]["replies"]:
            raise AssertionError(f"outputs differ with the prefix cache (run {k})")
        for name, r in got.items():
            for key, v in r.items():
                if key != "replies":
                    res[name].setdefault(key, []).append(v)
    return res


def summary(res: dict[str, dict[str, list[float]]], first_skipped: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fields in res.items():
        out[name] = {
            k: round(statistics.median(v[1:] if first_skipped and len(v) > 2 else v), 4)
            for k, v in fields.items()
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--reply-tokens", type=int, default=48)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--unshared", type=int, default=8, help="prompts of the no-shared workload")
    ap.add_argument("--unshared-reps", type=int, default=5)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument(
        "--system-tokens", type=int, default=1000, help="ttft: shared system prompt tokens"
    )
    ap.add_argument("--ttft-reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    on, off, source = make_engines(args)
    tok = on.tokenizer
    with torch.inference_mode():
        # warm both engines (allocator, first-call overheads) outside the measurements
        for e in (on, off):
            run_unshared(e, [tok.encode("warm up the engine please")], [], 4)

        chat = side_by_side(
            lambda e, k: run_episode(e, args.turns, args.reply_tokens, k),
            on,
            off,
            args.episodes,
        )
        # a new prompt per group (RL samples each prompt once per step, and syncs the weights
        # between steps, which clears the cache): only the sharing inside a group is measured
        group_prompts = [
            tok.encode_chat(
                [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Compute {37 + k} * 12, explaining each step."},
                ],
                add_generation_prompt=True,
            )
            for k in range(args.groups)
        ]
        grpo = side_by_side(
            lambda e, k: run_group(e, group_prompts[k], args.group, args.reply_tokens, k),
            on,
            off,
            args.groups,
        )
        # fresh prompts for every run and phase (a repeated prompt would be a hit), no two
        # sharing as many tokens as the cache's minimum match
        prompts = unshared_prompts(tok, 2 * args.unshared * args.unshared_reps)
        lim = on.prefix.min_tokens
        assert all(
            common_prefix(a, b) < lim for i, a in enumerate(prompts) for b in prompts[i + 1 :]
        ), "no-shared prompts must not share a prefix"
        n = args.unshared
        unshared = side_by_side(
            lambda e, k: run_unshared(
                e, prompts[2 * n * k : 2 * n * k + n], prompts[2 * n * k + n : 2 * n * (k + 1)],
                args.reply_tokens,
            ),
            on,
            off,
            args.unshared_reps,
        )  # fmt: skip
        room = on.max_context - 40  # the question and the chat template's tokens
        sys_tokens = min(args.system_tokens, room)
        systems = [long_system_prompt(tok, k, sys_tokens) for k in range(args.ttft_reps)]
        ttft = side_by_side(lambda e, k: run_ttft(e, systems[k], k), on, off, args.ttft_reps)
    c, g, u = summary(chat, False), summary(grpo, False), summary(unshared, True)
    t = summary(ttft, False)
    result = {
        "bench": "serve_prefix",
        "model": source,
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "compile": args.compile,
        "chat": {
            "episodes": args.episodes,
            "turns": args.turns,
            "reply_tokens": args.reply_tokens,
            "per_episode_median": c,
            "prefill_tokens_ratio": round(
                c["on"]["prefill_tokens"] / max(c["off"]["prefill_tokens"], 1), 4
            ),
            "wall_speedup": round(c["off"]["wall_s"] / c["on"]["wall_s"], 3),
        },
        "grpo": {
            "group": args.group,
            "groups": args.groups,
            "prompt_tokens": len(group_prompts[0]),
            "per_group_median": g,
            "wall_speedup": round(g["off"]["wall_s"] / g["on"]["wall_s"], 3),
        },
        "no_shared": {
            "prompts": args.unshared,
            "reps": args.unshared_reps,
            "median_s_first_rep_skipped": u,
            "overhead_single": round(u["on"]["single_s"] / u["off"]["single_s"] - 1, 4),
            "overhead_batch": round(u["on"]["batch_s"] / u["off"]["batch_s"] - 1, 4),
        },
        "ttft": {
            "system_tokens": sys_tokens,
            "reps": args.ttft_reps,
            "median": t,
            # the second request's speed-up from the cache (first/second on the cached engine)
            "second_vs_first_on": round(t["on"]["first_ttft_s"] / t["on"]["second_ttft_s"], 2),
            "second_vs_first_off": round(t["off"]["first_ttft_s"] / t["off"]["second_ttft_s"], 2),
            "second_on_vs_off": round(t["off"]["second_ttft_s"] / t["on"]["second_ttft_s"], 2),
        },
        "prefix_stats": on.prefix_stats(),
        "identical_outputs": True,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
