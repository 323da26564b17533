"""What schema-guided tool calls cost: grammar build, per-state mask build, and decode speed of
a guided vs a raw generation of the same checkpoint on the same harness prompts (JSON out).

    python bench/tool_grammar.py --model runs/tiny/07-sft-code-flash/run/final \
        --tasks runs/tiny/10-eval/harness-tasks/new-mutations [--max-tokens 256] [--repeats 3]

Each prompt is a harness episode's first turn (system prompt, compact tools, the task), as
`LocalClient` renders it. Arms alternate (raw, guided, raw, guided, ...) so drift of a shared
machine hits both; reported per arm: decode tokens/s (the engine's decode time, prefill left
out; median of repeats), completion tokens, and the share of tool calls that parse as
executable calls. Greedy, so the arms differ only where the
grammar overrode the model's first choice. Then every automaton state the guided arm reached has
its mask built again from an empty cache (`mask_build_ms`: median and max per state).

    python bench/tool_grammar.py --enum-sizes 100,2000,20000

Enum stress on a random code-flash-micro engine (byte-level tokenizer; no checkpoint): one tool
whose argument is an N-value string enum; the mask of the state just inside the value (the
literal set is built there) and of a state inside a value (`"value_1`: the set already built). A
scan of the values per byte made the second 1.4 s at N = 20,000 (session 26, before the
bisection); copy this file into an older checkout to measure that code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="a code-flash checkpoint directory")
    ap.add_argument("--tasks", help="a `harness generate` output directory")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--enum-sizes", help="comma-separated enum sizes: the enum stress instead")
    args = ap.parse_args()
    if args.enum_sizes:
        print(json.dumps(enum_stress([int(x) for x in args.enum_sizes.split(",")]), indent=1))
        return
    if not args.model or not args.tasks:
        ap.error("--model and --tasks are required (or --enum-sizes)")

    import torch

    from hillclimb.harness.agent import SYSTEM_PROMPT, task_prompt
    from hillclimb.harness.clients import LocalClient
    from hillclimb.harness.task import find_task_dirs, load_task
    from hillclimb.harness.tools import TOOL_SCHEMAS, ToolBox
    from hillclimb.serve.engine import Engine, SamplingParams
    from hillclimb.tokenizer.toolcalls import parse_assistant_text

    torch.manual_seed(0)
    eng = Engine.from_checkpoint(args.model, max_batch=1)
    t0 = time.perf_counter()
    g = eng.tool_grammar(TOOL_SCHEMAS)
    build_ms = (time.perf_counter() - t0) * 1e3
    client = LocalClient(engine=eng)
    prompts = []
    for d in find_task_dirs(Path(args.tasks)):
        task = load_task(d)
        msgs = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": task_prompt(task)}]  # fmt: skip
        client.reset()
        prompts.append(client._prompt(msgs, TOOL_SCHEMAS))

    def arm(guided: bool) -> dict:
        toks = secs = 0.0
        calls = ok = 0
        for ids in prompts:
            sp = SamplingParams(
                max_tokens=min(args.max_tokens, eng.max_context - len(ids) - 1),
                temperature=0,
                guided_tools=TOOL_SCHEMAS if guided else None,
                drafter="none",
            )
            out = eng.generate(ids, sp)
            secs += out.timings["decode_s"]  # decode only: the prefill is the same in both arms
            toks += max(len(out.token_ids) - 1, 0)
            for c in parse_assistant_text(eng.tokenizer.decode(out.token_ids)).tool_calls:
                calls += 1
                try:
                    if c.arguments is not None and not c.error:
                        ToolBox._validate(c.name, c.arguments)
                        ok += 1
                except Exception:
                    pass
        return {"tokens": toks, "s": secs, "calls": calls, "valid_calls": ok}

    runs: dict[str, list[dict]] = {"raw": [], "guided": []}
    arm(True), arm(False)  # warm-up: compiled graphs, mask cache
    for _ in range(args.repeats):
        for name in ("raw", "guided"):
            runs[name].append(arm(name == "guided"))
    states_before = g.mask_builds
    states = list(g._masks)  # every state the runs reached
    g._masks.clear()
    state_ms = []
    for st in states:
        t0 = time.perf_counter()
        g.mask(st)
        state_ms.append((time.perf_counter() - t0) * 1e3)
    res = {
        "bench": "tool_grammar",
        "model": args.model,
        "tasks": args.tasks,
        "prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load1": os.getloadavg()[0],
        },  # fmt: skip
        "grammar_build_ms": round(build_ms, 1),
        "vocab": g.vocab_size,
        "mask_states_built": states_before,
        "mask_build_ms": {
            "median": round(statistics.median(state_ms), 3) if state_ms else None,
            "max": round(max(state_ms), 3) if state_ms else None,
        },  # fmt: skip
        "arms": {},
    }
    for name, rs in runs.items():
        tps = [r["tokens"] / r["s"] for r in rs if r["s"] > 0]
        res["arms"][name] = {
            "tokens_per_s_median": round(statistics.median(tps), 1),
            "completion_tokens": rs[0]["tokens"],
            "tool_calls": rs[0]["calls"],
            "valid_calls": rs[0]["valid_calls"],
        }
    raw, gd = res["arms"]["raw"], res["arms"]["guided"]
    res["guided_vs_raw_tokens_per_s"] = round(
        gd["tokens_per_s_median"] / raw["tokens_per_s_median"], 3
    )
    print(json.dumps(res, indent=1))


def enum_stress(sizes: list[int]) -> dict:
    """Mask times for an N-value enum argument (see the module docstring)."""
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.engine import Engine
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    eng = Engine(build_model(get_preset("code-flash-micro"), seed=0), bytelevel_tokenizer(),
                 device="cpu", name="micro")  # fmt: skip
    out = {"bench": "tool_grammar_enum", "vocab": eng.cfg.vocab_size,
           "machine": {"cpus": os.cpu_count(), "load1": os.getloadavg()[0]}, "sizes": {}}  # fmt: skip
    for n in sizes:
        vals = [f"value_{i}" for i in range(n)]
        tools = [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "required": ["x"], "additionalProperties": False,
            "properties": {"x": {"enum": vals}}}}}]  # fmt: skip
        g = eng.tool_grammar(tools)
        row = {}
        for label, text in (("value_start_ms", b'{"name": "f", "arguments": {"x": '),
                            ("in_value_ms", b'{"name": "f", "arguments": {"x": "value_1')):  # fmt: skip
            st = g.feed_bytes(g.initial, text)
            t0 = time.perf_counter()
            g.mask(st)
            row[label] = round((time.perf_counter() - t0) * 1e3, 2)
        out["sizes"][str(n)] = row
    return out


if __name__ == "__main__":
    main()
