"""`hillclimb problems …`: inspect and export the verifiable problem generators.

Why a command at all: the data pipeline and training read problems through the Python API, but
people need to look at what the generators write (`show`, `describe`) and to freeze an evaluation
set or an SFT file on disk (`export`, written atomically as JSON lines).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hillclimb.errors import HillclimbError
from hillclimb.problems.base import SPLITS


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("problems", help="verifiable reasoning/code problem generators")
    gsub = group.add_subparsers(dest="problems_command", metavar="SUBCOMMAND")
    group.set_defaults(_parser=group)

    p = gsub.add_parser("describe", help="families, tiers and a sample prompt for each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_describe, _parser=p)

    p = gsub.add_parser("show", help="print a few problems with their worked solutions")
    p.add_argument("--family", required=True)
    p.add_argument("--tier", type=int, default=1)
    p.add_argument("-n", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="train", choices=SPLITS, help="which split (train)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_show, _parser=p)

    p = gsub.add_parser("export", help="write problems as JSON lines (problems|messages|documents)")
    p.add_argument("--out", required=True)
    p.add_argument("--format", default="problems", choices=("problems", "messages", "documents"))
    p.add_argument("--split", default="heldout", choices=SPLITS, help="which split (heldout)")
    p.add_argument("--n-per-tier", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    # space- or comma-separated (`--families arith logic` or `arith,logic`, as eval/rl take them)
    p.add_argument("--families", nargs="*", default=None, help="families (default: all)")
    p.add_argument("--tiers", nargs="*", default=None, help="tiers (default: all)")
    p.set_defaults(func=_export, _parser=p)


def _flat(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def _describe(args: argparse.Namespace) -> int:
    from hillclimb.problems import describe

    d = describe(seed=args.seed)
    if args.json:
        print(json.dumps(d, indent=2, ensure_ascii=False))
        return 0
    for family, info in d.items():
        print(f"{family} ({info['kind']})")
        for tier, t in info["tiers"].items():
            print(f"  tier {tier}: {t['summary']}")
            print(f"    e.g. {t['samples'][0]['prompt'].splitlines()[0]}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from hillclimb.problems import generate, to_messages

    ps = generate(args.family, args.tier, args.n, args.seed, args.split)
    if args.json:
        print(json.dumps([p.to_dict() for p in ps], indent=2, ensure_ascii=False))
        return 0
    for p in ps:
        msgs = to_messages(p)
        print(
            f"== {p.id}\n{p.prompt}\n-- reasoning\n{p.reasoning}\n-- answer\n{msgs[1]['content']}"
        )
        if p.tests:
            print(f"-- tests\n{p.tests}", end="")
    return 0


def _export(args: argparse.Namespace) -> int:
    from hillclimb.io import write_text_atomic
    from hillclimb.problems import problem_suite, to_document, to_messages

    # Checked before anything is generated: `--out DIR`, `--out ""` or a path under a file used
    # to end in an OSError traceback from the atomic rename.
    if not args.out or Path(args.out).is_dir():
        raise HillclimbError(f"--out {args.out!r} must name a file to write, not a directory")
    tiers = _flat(args.tiers)
    bad = [t for t in tiers or [] if not t.isdigit()]
    if bad:
        raise HillclimbError(f"--tiers: expected tier numbers, got {bad}")
    # `--families ,` or a bare `--tiers` selected nothing, which read as "all" and exported
    # every family or tier
    for flag, values in (("--families", _flat(args.families)), ("--tiers", tiers)):
        if values == []:
            raise HillclimbError(f"{flag} names nothing; leave it out for all")
    ps = problem_suite(args.seed, args.split, args.n_per_tier, _flat(args.families),
                       [int(t) for t in tiers] if tiers is not None else None)  # fmt: skip
    lines = []
    for p in ps:
        if args.format == "problems":
            rec = p.to_dict()
        elif args.format == "messages":
            rec = {"id": p.id, "messages": to_messages(p)}
        else:
            rec = {
                "id": p.id,
                "text": to_document(p),
                "source": "generator",
                "license": "Apache-2.0",
            }
        lines.append(json.dumps(rec, ensure_ascii=False))
    try:
        write_text_atomic(args.out, "\n".join(lines) + ("\n" if lines else ""))
    except OSError as exc:
        raise HillclimbError(f"cannot write {args.out}: {exc}") from None
    print(f"wrote {len(lines)} {args.format} to {args.out}")
    return 0
