"""Prompt lookup and predicted outputs on the climb's own models, on issue 15's code-edit
workload: answers to held-out `code_bugfix` problems (rewrite a given function with a one-token
fix), through the chat template, greedy.

Why beside `serve_lookup.py`: that bench trains a byte-level model to copy, because the climb's
SFT'd models did not; this one measures the models a user of the climb actually gets
(`runs/tiny/07-sft-code-flash/run/final`, `.../09-rl-thinking/run/final` or any checkpoint), so
the ratio says what drafting buys *them*. Contenders, alternating per prompt, outputs identical
token for token (asserted): plain decoding; lookup over prompt + output (the server's default
for code-flash); lookup + `prediction` = the buggy function in the answer's fenced form (what an
editor sends: the file it asks to change); lookup + the model's own plain answer as the
prediction (the ceiling: every draft right). Also reported: how much of each answer is a copy
of the prompt's function (the longest common run of lines), which bounds what lookup can draft.

    PYTHONPATH=src python bench/serve_bugfix_lookup.py --model CKPT [--n-per-tier 4] [--tiers 1,2,3]
"""

from __future__ import annotations

import argparse
import difflib
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from serve_lookup import edit_contenders, measure  # noqa: E402 (alternating, identical output)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--n-per-tier", type=int, default=4)
    ap.add_argument("--tiers", default="1,2,3")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if min(args.n_per_tier, args.repeats, args.max_tokens, args.threads) < 1:
        ap.error("--n-per-tier, --repeats, --max-tokens and --threads must be >= 1")
    torch.set_num_threads(args.threads)

    from hillclimb import problems as P
    from hillclimb.problems.verify import extract_code
    from hillclimb.serve.engine import Engine

    comp = not args.no_compile
    plain = Engine.from_checkpoint(args.model, max_batch=1, seed=0, compile=comp, drafter="none")
    look = Engine.from_checkpoint(args.model, max_batch=1, seed=0, compile=comp, drafter="lookup")
    tok = plain.tokenizer
    cases, buggy = [], []
    for tier in [int(t) for t in args.tiers.split(",")]:
        for p in P.generate("code_bugfix", tier, args.n_per_tier, args.seed, "heldout"):
            ids = tok.encode_chat(
                [{"role": "user", "content": p.prompt}], add_generation_prompt=True
            )
            src = p.meta["buggy"] if p.meta["buggy"].endswith("\n") else p.meta["buggy"] + "\n"
            pred = tok.encode(f"```python\n{src}```")
            cases.append((ids, {"max_tokens": args.max_tokens, "prediction": pred}))
            buggy.append(src)
    res = measure(edit_contenders(plain, look), cases, args.repeats)
    texts = res.pop("_texts")[: len(cases)]
    copied = []
    for text, src in zip(texts, buggy, strict=True):
        code = extract_code(text) or text
        sm = difflib.SequenceMatcher(None, src, code, autojunk=False)
        copied.append(sum(b.size for b in sm.get_matching_blocks()) / max(1, len(code)))
    res["answer_chars_copied_from_prompt_function"] = round(sum(copied) / len(copied), 3)
    res["prompts"] = len(cases)
    res["model"] = args.model
    res["machine"] = f"{platform.machine()} {torch.get_num_threads()} thread(s)"
    res["compiled"] = comp
    print(json.dumps(res, indent=2))
    assert res["identical_greedy_output"], "drafting changed greedy output"


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
