"""`hillclimb tokenizer train` and `hillclimb tokenizer eval`.

Thin argparse wrappers over `train.py` / `evaluate.py`; `tokenizers`, `tiktoken` and friends are
imported inside the handlers so `hillclimb --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hillclimb.errors import HillclimbError


def _train(args: argparse.Namespace) -> int:
    from hillclimb.io import refuse_unusable_parent
    from hillclimb.tokenizer.train import (
        TrainConfig,
        check_new_out,
        save_trained,
        train_from_corpus,
    )

    check_new_out(args.out)  # save_trained checks again, but only after training: fail first
    refuse_unusable_parent(args.out)  # `--out FILE/x` failed in mkdir, after the training
    cfg = TrainConfig(
        corpus=args.corpus,
        vocab_size=args.vocab_size,
        max_bytes=args.max_bytes,
        seed=args.seed,
        pretokenizer=args.pretokenizer,
        min_frequency=args.min_frequency,
    )
    tok, meta = train_from_corpus(cfg, show_progress=args.progress)
    out = save_trained(tok, meta, args.out)
    sel = meta["selection"]
    print(
        f"trained {meta['pretokenizer']} BPE, vocab {tok.vocab_size} on {sel['documents']} "
        f"documents ({sel['bytes'] / 1e6:.1f} MB) in {meta['train_seconds']:.1f}s -> {out}"
    )
    if sel.get("skipped"):
        why = ", ".join(f"{k} {v}" for k, v in sel["skipped"].items())
        print(f"  files not read from the corpus directory: {why}")
    cut = meta.get("long_runs_cut", {})
    if cut.get("runs"):
        print(
            f"  cut {cut['runs']} run(s) of one character class longer than {cut['chars']:,} "
            f"characters in {cut['documents']} document(s) into pieces for training "
            "(the trainer is quadratic in a pre-token's length)"
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from hillclimb.tokenizer.evaluate import evaluate, format_report

    gpt2 = args.gpt2_tiktoken
    if gpt2 is not None and not Path(gpt2).is_file():
        # `evaluate()` skips comparison (b) for a missing file (bench/tokenizer_compare.py relies
        # on that), but a path the user typed and mistyped must not pass as "skipped" with exit
        # 0; refused here, before the tokenizer is loaded and baseline (a) trained
        what = "is not a file" if Path(gpt2).exists() else "does not exist"
        raise HillclimbError(
            f"--gpt2-tiktoken {gpt2} {what}; omit the option to skip the GPT-2 comparison"
        )
    rep = evaluate(
        args.tokenizer,
        corpus=args.corpus,
        gpt2_tiktoken=args.gpt2_tiktoken,
        max_bytes=args.max_bytes,
        seed=args.seed,
        baseline=not args.no_baseline,
    )
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


# Larger than any vocabulary, byte budget or count we could use, and small enough for the Rust
# trainer's integers: `1e100` is refused here instead of overflowing inside `tokenizers`.
MAX_INT_ARG = 2**40


def _positive_int(text: str) -> int:
    try:
        if "e" in text.lower():  # 32e3; but not 1.5e0 (a fraction) nor 1e100 (an overflow)
            f = float(text)
            if not f.is_integer():
                raise ValueError(text)
            v = int(f)
        else:
            v = int(text)
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    if v > MAX_INT_ARG:
        raise argparse.ArgumentTypeError(f"too large: {text!r} (at most {MAX_INT_ARG})")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("tokenizer", help="train / evaluate the shared code-aware tokenizer")
    group.set_defaults(_parser=group)
    gsub = group.add_subparsers(dest="tokenizer_command", metavar="COMMAND")

    t = gsub.add_parser(
        "train",
        help="train byte-level BPE on a corpus's train split",
        description="Train the code-aware byte-level BPE tokenizer. CORPUS is a `data build` "
        "directory (documents/*.jsonl[.gz]), a .jsonl[.gz] file, or a plain directory of files.",
    )
    t.add_argument("--corpus", required=True, help="corpus directory, .jsonl file or source tree")
    t.add_argument("--vocab-size", type=_positive_int, required=True,
                   help="total vocabulary size, special tokens included")  # fmt: skip
    t.add_argument("--out", required=True, help="new output directory (must not exist)")
    t.add_argument("--max-bytes", type=_positive_int, default=None,
                   help="train on a seeded subsample of at most this many UTF-8 bytes")  # fmt: skip
    t.add_argument("--seed", type=int, default=0, help="seed of the --max-bytes subsample")
    t.add_argument("--pretokenizer", choices=["code", "code-v1", "gpt2"], default="code",
                   help="pre-tokenization regex (gpt2 = the baseline; code-v1 = ours before "
                        "issue 16)")  # fmt: skip
    t.add_argument("--min-frequency", type=_positive_int, default=2)
    t.add_argument("--progress", action="store_true", help="show the trainer's progress bar")
    t.set_defaults(func=_train, _parser=t)

    e = gsub.add_parser(
        "eval",
        help="chars/token and tokens/line per language vs GPT-2-regex BPE and GPT-2",
        description="Evaluate on the corpus's val split against (a) GPT-2-regex BPE trained on the "
        "same data at the same vocabulary size and (b) GPT-2's real vocabulary (optional).",
    )
    e.add_argument("--tokenizer", required=True, help="tokenizer directory")
    e.add_argument("--corpus", default=None,
                   help="corpus to evaluate on (default: the one the tokenizer was trained on)")  # fmt: skip
    e.add_argument("--gpt2-tiktoken", default=None,
                   help="path to whisper/assets/gpt2.tiktoken (from the openai-whisper sdist)")  # fmt: skip
    e.add_argument("--max-bytes", type=_positive_int, default=None,
                   help="baseline byte budget when the tokenizer has no training provenance")  # fmt: skip
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-baseline", action="store_true", help="skip training baseline (a)")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(func=_eval, _parser=e)
