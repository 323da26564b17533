"""Speculation inside batched decoding: N concurrent clients with model-free drafting on vs off.

Why: drafting used to run only at <= 4 running requests (one verification forward per request);
batched verification (`Engine._verify_rows`) verifies every row's drafts in one ragged forward,
so the question is whether 32 concurrent clients get at least the aggregate tokens/s of the
same engine without drafting (issue 15), and where it pays.

One engine (the serve defaults on CPU: compiled single-slot and batched steps, one torch
thread, prefix cache on, default drafter "lookup"); "off" requests pass `speculative=False`, so
both contenders share the compiled graphs and the machine state. Per round and workload the
contenders alternate order (on, off, then off, on) so load drift hits both alike. Each of N
client threads submits `--per-client` requests back to back (greedy, `ignore_eos`, fixed
`max_tokens`) and waits for each result. Greedy output must be identical token for token
(asserted).

Workloads:
- `code_edit`: a function of this repository + "replace line k with: ...", `prediction` = the
  original function (how a client sends the file it edits);
- `code_edit_own_answer`: the same prompts with the model's own greedy answer as `prediction`
  (every draft right, long runs: the ceiling of the mechanism, a client that predicts
  perfectly);
- `open_ended`: a source line to continue, no prediction (prompt lookup only).

Random-weight models (`--preset`, built in memory) do not follow instructions: greedy decoding
of a random micro/tiny model falls into repeating spans of its prompt or of its own output,
which prompt lookup predicts well, and the prediction is right only where the answer happens to
copy the function. The acceptance rates reported say how far that holds; a trained model's
would differ.

    PYTHONPATH=src python bench/serve_batched_spec.py [--preset code-flash-tiny] [--clients 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_lookup import edit_example, functions  # noqa: E402 (same workload as serve_lookup)


def run_clients(engine, cases: list[tuple[str, dict]], clients: int, per_client: int,
                draft: bool) -> dict:  # fmt: skip
    """N threads, each submitting its share of `cases` back to back → wall time, tokens, ids."""
    from hillclimb.serve.engine import SamplingParams

    outs: dict[int, list[int]] = {}
    errors: list[str] = []
    spec = [0, 0, 0]
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(per_client):
            j = k * per_client + i
            prompt, kw = cases[j % len(cases)]
            sp = SamplingParams(
                max_tokens=kw["max_tokens"],
                temperature=0,
                ignore_eos=True,
                prediction=kw.get("prediction") if draft else None,
                speculative=None if draft else False,
            )
            o = engine.submit(prompt, sp).result(timeout=600)
            with lock:
                if o.error:
                    errors.append(o.error)
                outs[j] = list(o.token_ids)
                if o.spec:
                    for n, key in enumerate(("drafted", "accepted", "steps")):
                        spec[n] += o.spec[key]

    before = dict(engine.stats()["totals"])
    ths = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.perf_counter() - t0
    after = engine.stats()["totals"]
    delta = {k: after[k] - before[k] for k in ("verify_steps", "verify_rows", "verify_declined",
                                               "decode_steps", "batched_steps")}  # fmt: skip
    return {"wall": wall, "tokens": sum(len(v) for v in outs.values()), "outs": outs,
            "errors": errors, "spec": spec, "steps": delta}  # fmt: skip


def compare(engine, cases, args) -> dict:
    agg = {
        name: {"wall": 0.0, "tokens": 0, "spec": [0, 0, 0], "steps": {}} for name in ("on", "off")
    }
    identical = True
    errors: list[str] = []
    for rnd in range(args.rounds):
        order = [("on", True), ("off", False)]
        if rnd % 2:
            order.reverse()
        res = {}
        for name, draft in order:
            r = run_clients(engine, cases, args.clients, args.per_client, draft)
            res[name] = r
            a = agg[name]
            a["wall"] += r["wall"]
            a["tokens"] += r["tokens"]
            a["spec"] = [x + y for x, y in zip(a["spec"], r["spec"], strict=True)]
            for k, v in r["steps"].items():
                a["steps"][k] = a["steps"].get(k, 0) + v
            errors += r["errors"]
        identical &= res["on"]["outs"] == res["off"]["outs"]
    out: dict = {"identical_greedy_output": identical, "errors": len(errors)}
    for name in ("on", "off"):
        a = agg[name]
        d, acc, s = a["spec"]
        out[name] = {
            "tok_s": round(a["tokens"] / a["wall"], 1),
            "tokens": a["tokens"],
            "wall_s": round(a["wall"], 2),
            "acceptance_rate": round(acc / d, 3) if d else None,
            **a["steps"],
        }
    out["on_vs_off"] = round(out["on"]["tok_s"] / out["off"]["tok_s"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="code-flash-tiny")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--per-client", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--spec-batch", default="auto", choices=["auto", "always", "off"])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.engine import Engine, SamplingParams
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    model = build_model(get_preset(args.preset), seed=0).eval()
    t0 = time.perf_counter()
    eng = Engine(model, tok, max_batch=args.clients, seed=0, compile=not args.no_compile,
                 drafter="lookup", spec_batch=args.spec_batch, cpu_threads=args.threads)  # fmt: skip
    compile_s = time.perf_counter() - t0
    eng.start()
    eng.submit("warm up warm up", SamplingParams(max_tokens=8, temperature=0)).result()
    root = Path(__file__).resolve().parents[1]
    funcs = functions(root)
    rng = random.Random(1)
    edit = []
    for f in rng.sample(funcs, min(len(funcs), 64)):
        p, _, pred = edit_example(f, rng)
        edit.append((p, {"max_tokens": args.max_tokens, "prediction": pred}))
    lines = [ln.strip() for f in funcs for ln in f.splitlines() if len(ln.strip()) > 20]
    open_cases = [(ln, {"max_tokens": args.max_tokens})
                  for ln in random.Random(2).sample(lines, min(64, len(lines)))]  # fmt: skip
    out: dict = {
        "bench": "serve_batched_spec",
        "machine": f"{platform.machine()} cpu, torch threads={args.threads}",
        "torch": torch.__version__,
        "model": f"{args.preset} (random weights)",
        "clients": args.clients,
        "per_client": args.per_client,
        "rounds": args.rounds,
        "max_tokens": args.max_tokens,
        "spec_batch": args.spec_batch,
        "compiled": eng.compiled,
        "compiled_batch": eng.compiled_batch,
        "compile_s": round(compile_s, 1),
    }
    try:
        out["code_edit"] = compare(eng, edit, args)
        # the same prompts with the model's own plain answer as the prediction: every draft
        # right, long runs (the ceiling of the mechanism here; a client predicting perfectly)
        own = run_clients(eng, edit, args.clients, args.per_client, False)["outs"]
        edit_own = [(p, {**kw, "prediction": own[j]}) for j, (p, kw) in enumerate(edit)
                    if j in own]  # fmt: skip
        out["code_edit_own_answer"] = compare(eng, edit_own, args)
        out["open_ended"] = compare(eng, open_cases, args)
        out["cost_model"] = eng.stats()["batch_spec"]
    finally:
        eng.stop()
    text = json.dumps(out, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    assert (
        out["code_edit"]["identical_greedy_output"] and out["open_ended"]["identical_greedy_output"]
    )
    assert out["code_edit"]["errors"] == 0 and out["open_ended"]["errors"] == 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
