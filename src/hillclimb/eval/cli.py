"""`hillclimb eval --model CKPT [--data DIR]`: evaluate any checkpoint, not only the climb's.

Prints a rich table (bpb vs the unigram baseline, accuracy per family x tier) or, with `--json`,
the full result; `--out DIR` also writes `DIR/eval.json` atomically. Heavy imports happen inside
the handler so `hillclimb --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _tiers(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"tiers must be comma-separated integers, got {s!r}"
        ) from None


def _families(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint: val bits/byte and held-out task accuracy",
        description="Evaluate a checkpoint directory: validation bits per byte on a data "
        "directory's val shards (vs the unigram baseline) and greedy held-out "
        "accuracy per problem family and tier.",
    )
    p.add_argument(
        "--model", required=True, help="checkpoint directory (HF layout with tokenizer.json)"
    )
    p.add_argument(
        "--data",
        default=None,
        help="data directory with shards/ (from `hillclimb data build` or a climb's 03-shards); "
        "without it bits per byte is skipped",
    )
    p.add_argument(
        "--n-per-tier", type=int, default=10, help="held-out problems per family x tier (10)"
    )
    p.add_argument(
        "--families", type=_families, default=None, help="comma-separated families (default: all)"
    )
    p.add_argument(
        "--tiers", type=_tiers, default=None, help="comma-separated tiers (default: 1,2,3,4)"
    )
    p.add_argument(
        "--max-tokens", type=int, default=256, help="generation budget per problem (256)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="generation batch size (16)")
    p.add_argument("--samples", type=int, default=4, help="sample generations to keep (4)")
    p.add_argument("--seq-len", type=int, default=None, help="bpb window length (default 256)")
    p.add_argument("--val-tokens", type=int, default=32768, help="val tokens for bpb (32768)")
    p.add_argument("--seed", type=int, default=0, help="held-out suite seed (0)")
    p.add_argument("--no-tasks", action="store_true", help="only bits per byte")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--out", default=None, help="also write DIR/eval.json")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_handle, _parser=p)


def print_eval(result: dict[str, Any], file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(file=file or sys.stdout)
    con.print(f"[bold]{result['name']}[/bold] ({result['preset']}) — {result['model']}")
    b = result.get("bpb")
    if b:
        con.print(
            f"val bits/byte {b['val_bpb']:.4f}  (unigram baseline {b['unigram_bpb']:.4f}, "
            f"{b['val_tokens']} tokens)"
        )
    t = result.get("tasks")
    if t:
        tiers = [str(x) for x in t["settings"]["tiers"]]
        tab = Table(title=f"held-out accuracy (greedy, n={t['settings']['n_per_tier']} per cell)")
        tab.add_column("family")
        for tier in tiers:
            tab.add_column(f"tier {tier}", justify="right")
        for fam, cells in t["by_family_tier"].items():
            tab.add_row(fam, *[f"{cells[x]['accuracy']:.0%}" if x in cells else "-" for x in tiers])
        con.print(tab)
        con.print(
            f"overall {t['accuracy']:.1%} ({t['correct']}/{t['n']}); "
            f"finish reasons {t['finish_reasons']}"
        )


def _handle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hillclimb.eval.core import run_eval
    from hillclimb.io import write_json_atomic

    res = run_eval(
        args.model,
        args.data,
        n_per_tier=args.n_per_tier,
        families=args.families,
        tiers=args.tiers,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        samples=args.samples,
        seed=args.seed,
        val_tokens=args.val_tokens,
        seq_len=args.seq_len,
        accuracy=not args.no_tasks,
        device=args.device,
    )
    if args.out:
        write_json_atomic(Path(args.out) / "eval.json", res)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print_eval(res)
    return 0
