"""Speculative vs plain greedy decoding of the thinking model: speedup, acceptance, identical output.

Three pairings, each measured in the same run on the same prompts with temperature 0 (so the
speculative output must equal the plain output token for token — checked and reported):

- `random`: thinking-tiny verified, code-flash-tiny drafting, both randomly initialised. Two
  unrelated random models almost never agree: this is the worst case (pure overhead).
- `self`: thinking-tiny drafting for itself. Acceptance is 1 by construction; the speedup shows the
  mechanism's overhead ceiling when the draft costs as much as the target.
- `trained`: a quickly trained pair — thinking-tiny and a 1-layer draft with the same vocabulary,
  both trained from scratch for `--train-steps` steps on the same text (this repository's own
  Python sources), prompted with held-out lines of that text. No trained pair exists under runs/
  yet, so this is the honest stand-in until `hillclimb train` produces one.

Speedup = plain decode time / speculative decode time for the same prompts and token counts
(prefill included in both); `speedup` forces speculation on every step, `speedup_auto` is the
engine's default policy (speculate only while it measures faster than plain decoding), and
`speedup_serve_default` what `hillclimb serve` gets: its start-up rule (`startup_decision`) leaves
the draft off unless the expected speedup at acceptance 0.6 is ≥ 1.05×. Usage:
  PYTHONPATH=src python bench/serve_speculative.py [--tokens 96] [--prompts 6] [--train-steps 150]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch


def corpus_text(root: Path) -> str:
    files = sorted((root / "src" / "hillclimb").rglob("*.py"))
    return "\n".join(f.read_text(errors="replace") for f in files)


def train(
    model,
    ids: torch.Tensor,
    steps: int,
    seq: int,
    batch: int,
    lr: float,
    seed: int,
    log_every: int = 0,
) -> float:
    """Plain next-token training (AdamW, cosine decay) on one long token stream (progress on
    stderr every `log_every` steps when > 0)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / 20) * 0.5 * (1 + torch.cos(torch.tensor(s / steps * 3.14159)).item())
        ),
    )
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=g)
        x = torch.stack([ids[s : s + seq] for s in starts])
        y = torch.stack([ids[s + 1 : s + seq + 1] for s in starts])
        loss = model.loss(x, y) + model.aux_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log_every and (sched.last_epoch % log_every == 0):
            print(f"step {sched.last_epoch}/{steps} loss {float(loss):.3f}", file=sys.stderr)
    model.eval()
    return float(loss.detach())


def run_pair(target, draft, tok, prompts, n_tokens, compile: bool = True) -> dict:
    """Plain decoding vs forced speculation vs the default `auto` policy, alternated per prompt
    in one run. All engines use compiled one-token steps when `compile` (the CPU default of
    `hillclimb serve`), so the draft's steps are as cheap as this machine makes them."""
    import dataclasses

    from hillclimb.serve.engine import Engine, SamplingParams

    plain = Engine(target, tok, max_batch=1, seed=0, compile=compile)
    spec = Engine(target, tok, max_batch=1, draft=draft, seed=0, compile=compile)
    # its own engine: forced runs would otherwise teach the auto policy what they measured
    auto = Engine(target, tok, max_batch=1, draft=draft, seed=0, compile=compile)
    startup = startup_decision(auto)
    sp = SamplingParams(max_tokens=n_tokens, temperature=0, ignore_eos=True)
    forced = dataclasses.replace(sp, speculative=True)
    plain.generate(prompts[0], SamplingParams(max_tokens=8, temperature=0))  # warm-up
    spec.generate(prompts[0], SamplingParams(max_tokens=8, temperature=0, speculative=True))
    t_plain = t_spec = t_auto = 0.0
    identical = True
    drafted = accepted = steps = auto_steps = 0
    for p in prompts:  # alternate so load drift hits all alike
        t = time.perf_counter()
        a = plain.generate(p, sp)
        t_plain += time.perf_counter() - t
        t = time.perf_counter()
        b = spec.generate(p, forced)
        t_spec += time.perf_counter() - t
        t = time.perf_counter()
        c = auto.generate(p, sp)
        t_auto += time.perf_counter() - t
        identical &= a.token_ids == b.token_ids == c.token_ids
        if b.spec:
            drafted += b.spec["drafted"]
            accepted += b.spec["accepted"]
            steps += b.spec["steps"]
        if c.spec:
            auto_steps += c.spec["steps"]
    n = len(prompts) * n_tokens
    return {
        "plain_tok_s": round(n / t_plain, 1),
        "spec_tok_s": round(n / t_spec, 1),
        "speedup": round(t_plain / t_spec, 2),
        "auto_tok_s": round(n / t_auto, 1),
        "speedup_auto": round(t_plain / t_auto, 2),
        "auto_verify_steps": auto_steps,
        "auto_backoffs": auto.stats()["totals"]["spec_backoffs"],
        # `hillclimb serve`'s start-up rule on this pair (`host.choose_draft`): without the
        # draft the server decodes plainly, so its default is 1.00× by construction
        "serve_default": "draft" if startup["attached"] else "plain",
        "speedup_serve_default": round(t_plain / t_auto, 2) if startup["attached"] else 1.0,
        "startup_decision": startup,
        "identical_greedy_output": identical,
        "acceptance_rate": round(accepted / drafted, 3) if drafted else 0.0,
        "mean_accept_len": round((accepted + steps) / steps, 2) if steps else 0.0,
        "drafted": drafted,
        "accepted": accepted,
        "verify_steps": steps,
        "compiled": plain.compiled and spec.compiled,
    }


def startup_decision(engine) -> dict:
    """What `hillclimb serve` decides for this pair at start-up: the engine's own steps timed
    (`host.measure_step_costs`) and `speculative.decide_draft` (expected speedup at acceptance
    0.6 ≥ 1.05×). It only measures and decides: the engine keeps its draft, so the `auto`
    column is still measured."""
    from hillclimb.serve.host import measure_step_costs
    from hillclimb.serve.speculative import decide_draft

    costs = measure_step_costs(engine)
    return decide_draft(costs, range(1, engine.gamma_max + 1)).as_dict()


def cost_model(target, draft, gammas=range(1, 13), steps: int = 60, compile: bool = True) -> dict:
    """Per-step costs measured with the engine's own steps (compiled one-token steps, the
    single-slot verification step) at a mid-sized context, and the speedup they allow:

        speedup(γ, α) = t · E(γ, α) / (γ · d + v(γ + 1)),  E = (1 − α^(γ+1)) / (1 − α)

    with t the target's decode step, d the draft's, v(T) the target scoring T tokens at once and
    E the tokens committed per round at per-token acceptance α. `ceiling` is the best γ with a
    perfect draft (α = 1): no draft of this cost can beat it on this machine."""
    from hillclimb.model.kv_cache import KVCache
    from hillclimb.serve.fastpath import FastForward

    out: dict = {}
    ctx = list(range(11, 139))  # 128 cells of context
    with torch.inference_mode():
        for name, model in (("target", target), ("draft", draft)):
            ff = FastForward(model, 512)
            if compile:
                ff.enable_compile(multi=True)  # as the engines do: compiled verification
            cache = KVCache(model.cfg, 1, 512)
            ff.extend_one(ctx, cache, 0)
            vocab = model.cfg.vocab_size
            tok = 7
            for _ in range(10):
                tok = int(ff.decode_one(tok, cache, 0).argmax())
            cache.truncate(0, len(ctx))
            t0 = time.perf_counter()
            for _ in range(steps):
                tok = int(ff.decode_one(tok % vocab, cache, 0).argmax())
            out[f"{name}_decode_ms"] = round((time.perf_counter() - t0) / steps * 1e3, 4)
            cache.truncate(0, len(ctx))
            if name == "target":
                v = {}
                for T in [g + 1 for g in gammas]:
                    t0 = time.perf_counter()
                    for i in range(steps // 2):
                        ids = [(37 * i + 11 * j) % vocab for j in range(T)]
                        ff.extend_one(ids, cache, 0, last_only=False)
                        cache.truncate(0, len(ctx))
                    v[T] = (time.perf_counter() - t0) / (steps // 2) * 1e3
                out["target_verify_ms"] = {str(k): round(x, 4) for k, x in v.items()}
    t, d = out["target_decode_ms"], out["draft_decode_ms"]
    v = {int(k): x for k, x in out["target_verify_ms"].items()}

    def speedup(g: int, a: float) -> float:
        e = g + 1 if a >= 1 else (1 - a ** (g + 1)) / (1 - a)
        return t * e / (g * d + v[g + 1])

    best = max(gammas, key=lambda g: speedup(g, 1.0))
    out["draft_over_target"] = round(d / t, 3)
    out["verify5_over_decode"] = round(v[5] / t, 3) if 5 in v else None
    out["ceiling_speedup"] = round(speedup(best, 1.0), 3)
    out["ceiling_gamma"] = best
    out["speedup_at"] = {str(a): round(max(speedup(g, a) for g in gammas), 3)
                         for a in (0.5, 0.7, 0.9)}  # fmt: skip
    return out


def climb_pair(run: Path, n_prompts: int, n_tokens: int, compile: bool = True) -> dict:
    """The pair a `hillclimb climb` produced: SFT'd thinking verified, SFT'd code-flash drafting,
    on held-out problems (tiers 1-2) in the chat format the models were tuned on — reasoning
    prompts and code prompts measured separately (code-flash was tuned on the latter)."""
    from hillclimb import load_model, load_tokenizer
    from hillclimb.problems import problem_suite

    def final(kind: str) -> Path:
        return next(run.glob(f"*-sft-{kind}")) / "run" / "final"

    target, draft = load_model(final("thinking")), load_model(final("code-flash"))
    tok = load_tokenizer(final("thinking"))
    suite = problem_suite(seed=1, split="heldout", n_per_tier=n_prompts, tiers=[1, 2])
    out = {"target": str(final("thinking")), "draft": str(final("code-flash"))}
    for kind in ("reasoning", "code"):
        probs = [p for p in suite if p.kind == kind][: n_prompts * 2]
        prompts = [tok.encode_chat([{"role": "user", "content": p.prompt}],
                                   add_generation_prompt=True) for p in probs]  # fmt: skip
        out[kind] = run_pair(target, draft, tok, prompts, n_tokens, compile=compile)
    out["cost_model"] = cost_model(target, draft, compile=compile)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--train-steps", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", default="random,self,trained")
    ap.add_argument("--no-compile", action="store_true",
                    help="eager steps (quick runs on a busy machine; not the serve default)")  # fmt: skip
    ap.add_argument("--climb", type=Path, default=None,
                    help="a climb run dir: also measure its SFT'd thinking (target) + code-flash "
                    "(draft) on held-out problem prompts rendered with the chat template")  # fmt: skip
    args = ap.parse_args()
    comp = not args.no_compile
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from hillclimb.model.config import ModelConfig, get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    root = Path(__file__).resolve().parents[1]
    text = corpus_text(root)
    split = int(len(text) * 0.9)
    held = text[split:]
    rng = random.Random(0)
    lines = [ln for ln in held.splitlines() if len(ln.strip()) > 30]
    prompts = rng.sample(lines, args.prompts)
    out: dict = {
        "bench": "serve_speculative",
        "machine": f"{platform.machine()} cpu threads={args.threads}",
        "torch": torch.__version__,
        "new_tokens_per_prompt": args.tokens,
        "prompts": len(prompts),
        "pairs": {},
    }
    pairs = set(args.pairs.split(","))
    if args.climb is not None:
        out["pairs"]["climb"] = climb_pair(args.climb, args.prompts, args.tokens, comp)
    target = build_model(get_preset("thinking-tiny"), seed=0).eval()
    if "random" in pairs:
        draft = build_model(get_preset("code-flash-tiny"), seed=1).eval()
        out["pairs"]["random"] = {
            "target": "thinking-tiny",
            "draft": "code-flash-tiny",
            **run_pair(target, draft, tok, prompts, args.tokens, compile=comp),
            "cost_model": cost_model(target, draft, compile=comp),
        }
    if "self" in pairs:
        out["pairs"]["self"] = {
            "target": "thinking-tiny",
            "draft": "thinking-tiny (same weights)",
            **run_pair(target, target, tok, prompts, args.tokens, compile=comp),
        }
    if "trained" in pairs:
        ids = torch.tensor(tok.encode(text[:split]))
        t0 = time.perf_counter()
        tgt = build_model(get_preset("thinking-tiny"), seed=0)
        loss_t = train(tgt, ids, args.train_steps, seq=128, batch=8, lr=3e-3, seed=0)
        dcfg = ModelConfig(
            name="draft-1layer",
            family="code-flash",
            vocab_size=4096,
            d_model=64,
            n_layers=1,
            n_heads=4,
            n_kv_heads=1,
            head_dim=16,
            n_experts=4,
            top_k=1,
            d_expert=128,
            max_seq_len=2048,
            tie_embeddings=True,
        )
        drf = build_model(dcfg, seed=1)
        loss_d = train(drf, ids, args.train_steps, seq=128, batch=8, lr=3e-3, seed=1)
        out["pairs"]["trained"] = {
            "target": "thinking-tiny (trained)",
            "draft": "1-layer 4-expert draft (trained)",
            "train_steps": args.train_steps,
            "train_s": round(time.perf_counter() - t0, 1),
            "final_loss_target": round(loss_t, 3),
            "final_loss_draft": round(loss_d, 3),
            **run_pair(tgt, drf, tok, prompts, args.tokens, compile=comp),
            "cost_model": cost_model(tgt, drf, compile=comp),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
