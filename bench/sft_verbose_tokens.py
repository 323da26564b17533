"""How much longer `verbose_fraction` makes SFT examples: tokens per example, plain vs verbose.

Usage:
    python bench/sft_verbose_tokens.py --data runs/tiny-verbose/05-sft-data/thinking.jsonl \
        --tokenizer runs/tiny-verbose/02-tokenizer/tokenizer

Why: the long form (`problems.render.verbose_reasoning`) must fit the SFT rows and the RL /
eval completion budget, and the length-control result is stated against it. Prints one JSON
object: per family x tier, the count, mean and max tokens of plain and verbose chat examples
(as the SFT trainer encodes them, prompt and template included) and the ratio of the means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="an sft-data JSONL file")
    ap.add_argument("--tokenizer", required=True, help="the climb's tokenizer directory")
    args = ap.parse_args()

    from hillclimb.tokenizer.io import load_tokenizer
    from hillclimb.train.sft_data import encode_record, read_jsonl

    tok = load_tokenizer(args.tokenizer)
    lengths: dict[str, dict[str, list[int]]] = {}
    for r in read_jsonl([args.data]):
        if r.get("kind") != "chat" or "family" not in r:
            continue
        cell = lengths.setdefault(f"{r['family']}/{r['tier']}", {"plain": [], "verbose": []})
        cell["verbose" if r.get("verbose") else "plain"].append(len(encode_record(tok, r).ids))
    out = {}
    for key, c in sorted(lengths.items()):
        row = {
            form: {"n": len(v), "mean": round(sum(v) / len(v), 1), "max": max(v)}
            for form, v in c.items()
            if v
        }
        if len(row) == 2:
            row["ratio_of_means"] = round(row["verbose"]["mean"] / row["plain"]["mean"], 2)
        out[key] = row
    print(
        json.dumps({"bench": "sft_verbose_tokens", "data": str(args.data), "cells": out}, indent=2)
    )
    return 0


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
