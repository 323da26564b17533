"""Prompt-lookup drafting and OpenAI predicted outputs vs plain greedy decoding, in one run.

Workloads (greedy; per prompt the contenders alternate so load drift hits all alike, and their
outputs must be identical token for token — asserted):

- `code_edit`: the prompt holds a Python function (held-out functions of this repository's
  sources) and an instruction "replace line k with: <new line>"; the answer is the function
  with that one line changed, in a fenced block. Contenders: plain decoding, lookup (prompt +
  output as the draft source) and lookup + `prediction` (the original function, the way a
  client sends the file it asks to edit).
  A fourth contender gets the model's own plain answer as the prediction: the ceiling of the
  mechanism on this machine when every draft is right (a client that predicts perfectly).
- `open_ended`: continue a held-out source line (no code block to copy): plain vs lookup —
  the drafting policy must back off where it does not pay.

The model: code-flash-tiny (the model lookup is the default for), trained here from scratch for
`--train-steps` on edit examples of the training functions mixed with "repeat this random string"
examples (byte-level tokens), so that its greedy answers copy the way a code model's do — the
climb's SFT'd code-flash-tiny does not copy a function at all; no such model exists under runs/. `--save DIR` keeps the weights, `--ckpt DIR` reuses them. The engines
use the compiled CPU steps (the serve default) and one torch thread.

  PYTHONPATH=src python bench/serve_lookup.py [--train-steps 600] [--prompts 8] [--repeats 2]

Prints one JSON object: tokens/s per contender and workload, ratios vs plain, acceptance,
verification steps, and how often the model's answer was the exact intended edit.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import platform
import random
import time
from pathlib import Path

import torch
from serve_speculative import train  # same training loop (AdamW, warm-up + cosine)


def functions(root: Path, lo: int = 60, hi: int = 200) -> list[str]:
    """Top-level and method function sources of the package, lo..hi characters, dedented."""
    out = []
    for f in sorted((root / "src" / "hillclimb").rglob("*.py")):
        text = f.read_text(errors="replace")
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                src = ast.get_source_segment(text, node)
                if not src or not lo <= len(src) <= hi or not src.isascii():
                    continue
                out.append(src.rstrip() + "\n")
    return sorted(set(out))


def copy_example(rng: random.Random) -> str:
    """A random printable string and its repetition: only copying predicts the second half,
    which teaches a small model induction (copying) far faster than code alone."""
    n = rng.randint(20, 160)
    alphabet = "abcdefghijklmnopqrstuvwxyz_ ()=:.,0123456789\n    "
    text = "".join(rng.choice(alphabet) for _ in range(n))
    return f"<|im_start|>user\nRepeat:\n{text}<|im_end|>\n<|im_start|>assistant\n{text}<|im_end|>\n"


def edit_example(func: str, rng: random.Random) -> tuple[str, str, str]:
    """(prompt, answer, prediction): replace one body line with a changed copy of itself."""
    lines = func.splitlines(keepends=True)
    k = rng.randrange(1, len(lines)) if len(lines) > 1 else 0
    line = lines[k].rstrip("\n")
    indent = line[: len(line) - len(line.lstrip())]
    body = line.strip()
    choice = rng.random()
    if choice < 0.4 and body:
        new = f"{indent}{body}  # checked"
    elif choice < 0.7:
        new = f"{indent}log.debug({rng.choice(['start', 'here', 'value', 'done'])!r})"
    else:
        new = f"{indent}{body.replace('(', '( ', 1)}" if "(" in body else f"{indent}pass"
    edited = "".join(lines[:k]) + new + "\n" + "".join(lines[k + 1 :])
    prompt = (
        "<|im_start|>user\nApply the edit.\n```python\n"
        f"{func}```\nReplace line {k + 1} with:\n{new}\n<|im_end|>\n<|im_start|>assistant\n"
    )
    answer = f"```python\n{edited}```<|im_end|>"
    prediction = f"```python\n{func}```"
    return prompt, answer, prediction


def edit_contenders(plain, look) -> dict:  # noqa: ANN001
    """The code-edit contenders (`measure`'s engines): plain decoding, lookup, lookup + the
    case's `prediction`, lookup + the model's own plain answer as the prediction (the ceiling)."""
    return {
        "plain": (plain, False),
        "lookup": (look, False),
        "lookup_prediction": (look, True),
        "lookup_own_answer_as_prediction": (look, "own"),
    }


def measure(engines: dict, cases: list[tuple[str, dict]], repeats: int) -> dict:
    """Alternate the contenders per case; tokens/s (prefill included), identical output."""
    from hillclimb.serve.engine import SamplingParams

    times = {k: 0.0 for k in engines}
    tokens = {k: 0 for k in engines}
    spec = {k: [0, 0, 0] for k in engines}
    identical = True
    outputs = []
    for _ in range(repeats):
        for prompt, kw in cases:
            ref = None
            for name, (eng, use_pred) in engines.items():
                pred = kw.get("prediction") if use_pred else None
                if use_pred == "own" and ref is not None:
                    pred = list(ref.token_ids)  # the model's own answer: every draft right
                sp = SamplingParams(max_tokens=kw["max_tokens"], temperature=0, prediction=pred)
                t = time.perf_counter()
                o = eng.generate(prompt, sp)
                times[name] += time.perf_counter() - t
                tokens[name] += len(o.token_ids)
                if o.spec:
                    for i, key in enumerate(("drafted", "accepted", "steps")):
                        spec[name][i] += o.spec[key]
                if ref is None:
                    ref = o
                    outputs.append(o.text)
                identical &= o.token_ids == ref.token_ids
    out: dict = {"identical_greedy_output": identical}
    base = next(iter(engines))
    for name in engines:
        d, a, s = spec[name]
        out[name] = {
            "tok_s": round(tokens[name] / times[name], 1),
            "vs_plain": round(times[base] / times[name] * tokens[name] / tokens[base], 3),
            "tokens": tokens[name],
            "acceptance_rate": round(a / d, 3) if d else None,
            "verify_steps": s,
            "tokens_per_verify": round((a + s) / s, 2) if s else None,
        }
    out["_texts"] = outputs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-steps", type=int, default=600)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--open-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--ckpt", type=Path, default=None, help="reuse trained weights (--save)")
    ap.add_argument("--save", type=Path, default=None)
    ap.add_argument("--init", type=Path, default=None, help="train on from these weights")
    ap.add_argument("--seq", type=int, default=384)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from hillclimb.model.checkpoint import load_model, save_checkpoint
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.engine import Engine
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    root = Path(__file__).resolve().parents[1]
    funcs = functions(root)

    def held(f: str) -> bool:
        return hashlib.sha256(f.encode()).digest()[0] < 26  # ≈10% held out

    train_f = [f for f in funcs if not held(f)]
    test_f = [f for f in funcs if held(f)]
    rng = random.Random(0)
    out: dict = {
        "bench": "serve_lookup",
        "machine": f"{platform.machine()} cpu threads={args.threads}",
        "torch": torch.__version__,
        "functions": {"train": len(train_f), "heldout": len(test_f)},
    }
    t0 = time.perf_counter()
    if args.ckpt is not None:
        model = load_model(args.ckpt, device="cpu").eval()
        out["model"] = str(args.ckpt)
    else:
        docs = []
        for f in train_f:
            for _ in range(4):
                p, a, _ = edit_example(f, rng)
                docs.append(tok.encode(p + a + "\n"))
                docs.append(tok.encode(copy_example(rng)))
        rng.shuffle(docs)
        if args.init is not None:
            model = load_model(args.init, device="cpu")
        else:
            model = build_model(get_preset("code-flash-tiny"), seed=0)
        torch.set_num_threads(2)  # training alone: both cores
        stream = torch.tensor([t for d in docs for t in d])
        loss = train(model, stream, args.train_steps, seq=args.seq, batch=4, lr=3e-3, seed=0,
                     log_every=100)  # fmt: skip
        torch.set_num_threads(args.threads)
        out["model"] = "code-flash-tiny trained here"
        out["train"] = {"steps": args.train_steps, "final_loss": round(loss, 3), "seq": args.seq,
                        "init": str(args.init) if args.init else None,
                        "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        if args.save is not None:
            save_checkpoint(model, args.save, tokenizer=tok)
    comp = not args.no_compile
    plain = Engine(model, tok, max_batch=1, seed=0, compile=comp, drafter="none")
    look = Engine(model, tok, max_batch=1, seed=0, compile=comp, drafter="lookup")
    plain.generate("warm", _sp(8))
    look.generate("warm up warm up", _sp(8))
    erng = random.Random(1)
    cases, answers = [], []
    for f in test_f[: args.prompts]:
        p, a, pred = edit_example(f, erng)
        n_answer = len(tok.encode(a))
        cases.append((p, {"max_tokens": n_answer + 16, "prediction": pred}))
        answers.append(a.removesuffix("<|im_end|>"))
    edit = measure(edit_contenders(plain, look), cases, args.repeats)
    texts = edit.pop("_texts")
    edit["exact_edit_answers"] = sum(
        t.strip() == a.strip() for t, a in zip(texts[: len(answers)], answers, strict=False)
    )
    edit["prompts"] = len(cases)
    out["code_edit"] = edit
    lines = [ln for f in test_f for ln in f.splitlines() if len(ln.strip()) > 20]
    open_cases = [(ln, {"max_tokens": args.open_tokens})
                  for ln in random.Random(2).sample(lines, min(args.prompts, len(lines)))]  # fmt: skip
    ended = measure({"plain": (plain, False), "lookup": (look, False)}, open_cases, args.repeats)
    ended.pop("_texts")
    ended["prompts"] = len(open_cases)
    out["open_ended"] = ended
    out["compiled"] = plain.compiled and look.compiled
    out["lookup_config"] = vars(look.lookup.cfg)
    print(json.dumps(out, indent=2))
    assert edit["identical_greedy_output"] and ended["identical_greedy_output"]


def _sp(n: int):  # noqa: ANN202
    from hillclimb.serve.engine import SamplingParams

    return SamplingParams(max_tokens=n, temperature=0)


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
