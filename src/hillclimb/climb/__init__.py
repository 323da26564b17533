"""`hillclimb climb --recipe NAME`: the main job — the whole line, end to end, resumably.

data build → tokenizer → tokenized shards → pre-train each model (one shared tokenizer) → SFT data
→ SFT each model → evaluation → registry + promotion gate → report, driven by one recipe TOML
(`recipes/smoke.toml`, `recipes/tiny.toml`). Modules: `climb_recipe` (load/validate the TOML,
per-stage sections), `runner` (stages, completion markers, resume, summary), `state` (the run's
stages, paths, markers, timings), `sft_mixture` (chat / tool-call / FIM examples), `flywheel`
(telemetry exports as SFT examples), `promotion` (the registry stage: register, import evals, run
the gate), `report` (Markdown + matplotlib), `html_report` (one self-contained HTML file; also
`hillclimb report RUN` for any climb run or eval output). This module only declares the CLI, so
`hillclimb --help` never imports torch.

Library use: `from hillclimb.climb.runner import run_climb; run_climb("tiny", "runs/tiny")`.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "climb",
        help="run the whole line from a recipe (data → tokenizer → pretrain → SFT → eval → report)",
        description="Run the whole line from a recipe, resumably: every stage writes RUN_DIR/<NN-stage>/ "
        "and a completion marker; a re-run skips complete stages and resumes an interrupted one.",
    )
    p.add_argument(
        "--recipe", required=True, help="recipe name (recipes/NAME.toml) or path to a TOML file"
    )
    p.add_argument("--out", default=None, help="run directory (default: runs/NAME)")
    p.add_argument(
        "--restart-from",
        default=None,
        metavar="STAGE",
        help="redo STAGE and every later stage (data, tokenizer, shards, pretrain[-MODEL], "
        "sft-data, sft[-MODEL], rl[-MODEL], rl-harness-MODEL, eval, registry, report; the "
        "recipe decides which exist)",
    )
    p.add_argument(
        "--registry",
        default=None,
        help="registry the climb registers its checkpoints, evaluations and gate decisions in "
        "(default $XDG_STATE_HOME/hillclimb/registry.sqlite or ~/.local/state/hillclimb/...)",
    )
    p.add_argument(
        "--no-registry", action="store_true", help="do not register anything or run the gate"
    )
    p.add_argument(
        "--json", action="store_true", help="print the summary as JSON instead of a table"
    )
    p.set_defaults(func=_handle, _parser=p)

    r = sub.add_parser(
        "report",
        help="one self-contained HTML report for a climb run or an eval output",
        description="Write one static HTML file (plots embedded, no scripts, no network) for a "
        "climb run directory, an eval --json/--out file, a suite result or an eval output "
        "directory. Missing pieces are noted as 'not in this run'.",
    )
    r.add_argument("run", metavar="RUN", help="climb run directory, eval JSON file or eval dir")
    r.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="output file (default RUN/report.html; for a JSON file <name>.report.html beside it)",
    )
    r.set_defaults(func=_handle_report, _parser=r)


def _handle(args: argparse.Namespace) -> int:
    import json

    from hillclimb.climb.runner import run_climb

    summary = run_climb(
        args.recipe,
        args.out,
        restart_from=args.restart_from,
        print_summary=not args.json,
        registry=False if args.no_registry else args.registry,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


def _handle_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hillclimb.climb.html_report import write_html_report

    print(write_html_report(Path(args.run), Path(args.out) if args.out else None))
    return 0
