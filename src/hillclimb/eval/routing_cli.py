"""`hillclimb router fit`: train the `auto` router on both models' outcomes (eval.routing).

A command group of its own (not a flag of `eval`) because its output is an artifact the server
loads (`hillclimb serve --router ROUTER.json`), beside a report of quality vs cost. Heavy imports
happen inside the handler so `hillclimb --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hillclimb.eval.cli import _families, _tiers


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "router",
        help="train the 'auto' router on outcomes of both models",
        description="Router training for the server's 'auto' model.",
    )
    r.set_defaults(_parser=r)
    rsub = r.add_subparsers(dest="router_command", metavar="COMMAND")
    p = rsub.add_parser(
        "fit",
        help="fit the router on the train pool, report quality vs cost on the val pool",
        description="Answer generated problems (train split for the fit, val split for the "
        "report) greedily with both models, fit the router's logistic regression on whether "
        "thinking was needed, save it (loadable by `hillclimb serve --router`) and report "
        "routed accuracy per share of calls to thinking and APGR (fitted vs hand-set priors vs "
        "random) to <OUT stem>.report.json.",
    )
    p.add_argument("--thinking", required=True, help="thinking checkpoint directory (strong)")
    p.add_argument("--code-flash", required=True, help="code-flash checkpoint directory (weak)")
    p.add_argument("--out", required=True, help="router file to write, e.g. router.json")
    p.add_argument(
        "--families", type=_families, default=None, help="comma-separated (default: trainable)"
    )
    p.add_argument("--tiers", type=_tiers, default=None, help="comma-separated (default: 1-4)")
    p.add_argument("--n-per-tier", type=int, default=10, help="problems per family x tier (10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--label",
        choices=["thinking_not_better", "flash_passed"],
        default="thinking_not_better",
        help="code-flash is good enough when: thinking did not beat it (default) / it passed",
    )
    p.add_argument(
        "--max-tokens", type=int, default=None, help="fixed cap (default: sized per cell)"
    )
    p.add_argument(
        "--threshold-share",
        type=float,
        default=None,
        help="set the saved threshold so this share of train prompts go to thinking "
        "(default: threshold 0, i.e. P(needs thinking) > 0.5)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (1000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(func=_fit, _parser=p)


def _fmt(v: Any) -> str:
    return "undefined" if v is None else f"{v:.3f}"


def _fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hillclimb.errors import HillclimbError
    from hillclimb.eval.routing import RouterFitConfig, report_path, run_router_fit
    from hillclimb.serve.cli import check_device

    # Both checked before the models answer a single problem: they used to fail with a traceback
    # (torch's device parser; the atomic rename onto a directory) — the latter after the fit.
    if Path(args.out).is_dir():
        raise HillclimbError(f"--out {args.out} is a directory; name the router .json file")
    check_device(args.device)
    cfg = RouterFitConfig(
        thinking=args.thinking,
        code_flash=args.code_flash,
        out=args.out,
        families=args.families,
        tiers=args.tiers,
        n_per_tier=args.n_per_tier,
        seed=args.seed,
        label=args.label,
        max_tokens=args.max_tokens,
        threshold_share=args.threshold_share,
        bootstrap=args.bootstrap,
        batch_size=args.batch_size,
        device=args.device,
    )
    rep = run_router_fit(cfg)
    if args.json:
        json.dump(rep, sys.stdout, indent=2)
        print()
        return 0
    h, tr = rep["heldout"], rep["train"]

    def acc(d: dict, key: str, ci_key: str) -> str:
        ci = d.get(ci_key)
        return f"{d[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    print(f"router written to {rep['router_file']} (report: {report_path(rep['router_file'])})")
    print(
        f"train: n={tr['n']} flash {acc(tr, 'flash_accuracy', 'flash_accuracy_ci95')} thinking "
        f"{acc(tr, 'thinking_accuracy', 'thinking_accuracy_ci95')} labels {tr['labels']}"
        + (f"  [{tr['fit']['note']}]" if tr["fit"]["note"] else "")
    )
    print(
        f"held-out (val): n={h['n']} code-flash {acc(h, 'weak_accuracy', 'weak_accuracy_ci95')} "
        f"thinking {acc(h, 'strong_accuracy', 'strong_accuracy_ci95')} gap {h['gap']:+.3f}"
    )
    print("share→thinking  fitted  priors  random  oracle")
    for row in h["curve"]:
        print(
            f"{row['share_to_thinking']:>13.0%}  {row['fitted']:.3f}   {row['priors']:.3f}"
            f"   {row['random']:.3f}   {row['oracle']:.3f}"
        )
    a = h["apgr"]
    print(
        f"APGR fitted {_fmt(a['fitted']['value'])} {a['fitted'].get('ci95') or ''}  priors "
        f"{_fmt(a['priors']['value'])}  random {_fmt(a['random_sampled']['value'])}  oracle "
        f"{_fmt(a['oracle']['value'])}"
    )
    if "fitted_minus_priors" in a:
        d = a["fitted_minus_priors"]
        print(f"APGR fitted - priors {_fmt(d['value'])} (paired 95% interval {d['ci95']})")
    if h["apgr_note"]:
        print(f"note: {h['apgr_note']}")
    s = h["at_saved_threshold"]
    print(
        f"saved threshold {s['threshold']:.3f}: {s['share_to_thinking']:.0%} to thinking, "
        f"accuracy {s['accuracy']:.3f}"
    )
    return 0
