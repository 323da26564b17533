"""`hillclimb eval --model CKPT [--data DIR]`: evaluate any checkpoint, not only the climb's;
`hillclimb eval --model CKPT|URL --suite S`: a standard suite (`eval.suites`) against a checkpoint
or any OpenAI-compatible endpoint, scored by the same code.

Prints rich tables (bpb vs the unigram baseline; per split, accuracy per family x tier with its
no-training baseline, pass@k and truncation share) or, with `--json`,
the full result; `--out DIR` also writes `DIR/eval.json` atomically. Heavy imports happen inside
the handler so `hillclimb --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from hillclimb.io import client_api_key
from hillclimb.serve.drafter_choice import MODEL_FREE_DRAFTERS


def _tiers(s: str) -> list[int]:
    """`1,2,4` → [1, 2, 4], for `--tiers` and `--pass-k` alike; the messages name no option,
    argparse puts the flag's own name in front ("argument --pass-k: ...")."""
    try:
        out = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not out:  # `--tiers ""` read as no selection, i.e. every tier
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {s!r}")
    return out


def _families(s: str) -> list[str]:
    out = [x.strip() for x in s.split(",") if x.strip()]
    if not out:  # `--families ,` read as no selection, i.e. every family
        raise argparse.ArgumentTypeError(f"families must name at least one family, got {s!r}")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint: val bits/byte and held-out task accuracy",
        description="Evaluate a checkpoint directory: validation bits per byte on a data "
        "directory's val shards (vs the unigram baseline) and greedy held-out "
        "accuracy per problem family and tier.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="checkpoint directory (HF layout with tokenizer.json); with --suite also an "
        "OpenAI-compatible base URL such as http://127.0.0.1:8000/v1",
    )
    p.add_argument(
        "--suite",
        default=None,
        help="run a standard suite instead of the generator tasks: problems (the generator "
        "tasks' held-out split through the suite backends, so a URL can be scored too), "
        "humaneval (HumanEval, "
        "completion form, run in the sandbox), completion (held-out generated functions in the same "
        "completion form), ifeval (verifiable instructions we wrote), "
        "adversarial (our categorised tricky coding set), harness (resolve rate on generated "
        "repository tasks through the agent loop; needs --tasks), fim (fill-in-the-middle on held-out "
        "cuts of the Python standard library: exact match, prefix match, empty/fence shares)",
    )
    p.add_argument(
        "--tasks",
        action="append",
        default=None,
        metavar="[NAME=]DIR",
        help="suite harness: a `harness generate` output, once per task group (e.g. "
        "--tasks seen=DIR1 --tasks unseen=DIR2: each group gets its own resolve rate)",
    )
    p.add_argument(
        "--max-steps", type=int, default=30, help="suite harness: model turns per episode (30)"
    )
    p.add_argument(
        "--keep-episodes",
        metavar="DIR",
        default=None,
        help="suite harness: keep every episode (trajectories, results.jsonl per task group) "
        "in DIR, a new or empty directory (default: discarded after scoring)",
    )
    p.add_argument(
        "--no-guided-tools",
        dest="guided_tools",
        action="store_false",
        help="suite harness: a checkpoint's raw tool calls (default: each <tool_call> body is "
        "decoded under the tools' JSON schema, as `harness run` does)",
    )
    p.add_argument(
        "--prices",
        default=None,
        help="suite: a prices file (JSON/TOML {model: {prompt, completion}} credits per million "
        "tokens, as `hillclimb serve --prices`) → cost per solved item",
    )
    p.add_argument(
        "--price-model",
        default=None,
        help="suite: which model's price applies (default: the checkpoint's family, or "
        "--served-model for a URL)",
    )
    p.add_argument("--limit", type=int, default=None, help="suite: first N items only")
    p.add_argument(
        "--n-items",
        type=int,
        default=None,
        help="ifeval: number of items; fim: N text items plus max(1, N // 10) test items per "
        "tier 2-4; problems: items per family x tier (20); "
        "completion: held-out functions per tier (20)",
    )
    p.add_argument(
        "--form",
        choices=["completion", "chat"],
        default="completion",
        help="suite humaneval: raw-prompt completion (native) or one chat turn (completion)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="suite against a URL: bearer API key (default: $HILLCLIMB_API_KEY, else "
        "$OPENAI_API_KEY)",
    )
    p.add_argument(
        "--served-model",
        default=None,
        help="suite against a URL: the model name to request (default: the first of /models)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="suite against a URL: requests in flight; suite harness: episodes in flight (4)",
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, help="suite: seconds per test program (10)"
    )
    p.add_argument(
        "--data",
        default=None,
        help="data directory with shards/ (from `hillclimb data build` or a climb's 03-shards); "
        "without it bits per byte is skipped",
    )
    p.add_argument(
        "--n-per-tier", type=int, default=20, help="problems per family x tier x split (20)"
    )
    p.add_argument(
        "--families", type=_families, default=None, help="comma-separated families (default: all)"
    )
    p.add_argument(
        "--tiers", type=_tiers, default=None, help="comma-separated tiers (default: 1,2,3,4)"
    )
    p.add_argument(
        "--splits",
        type=_families,
        default=["heldout", "heldout_phrasing"],
        help="evaluation splits: heldout (new problems/functions), heldout_phrasing (the same "
        "problems in wordings never trained on), val (tuning only) (default: heldout,heldout_phrasing)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="generation budget per problem (default: per family x tier, 1.5x the longest "
        "reference solution + 16, so correct answers are never cut off)",
    )
    p.add_argument(
        "--samples-per-item",
        type=int,
        default=0,
        help="sampled completions per problem for pass@k (0: greedy only)",
    )
    p.add_argument(
        "--pass-k", type=_tiers, default=[1], help="k values for pass@k, each <= samples (1)"
    )
    p.add_argument(
        "--sample-n-per-tier",
        type=int,
        default=None,
        help="items per cell that get sampled (default: all --n-per-tier)",
    )
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0.8)")
    p.add_argument("--top-p", type=float, default=0.95, help="sampling top-p (0.95)")
    p.add_argument(
        "--baseline-train-n",
        type=int,
        default=500,
        help="training items per family x tier for the lookup-table baseline (500)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="generation batch size (32)")
    p.add_argument("--samples", type=int, default=8, help="sample generations to keep (8)")
    p.add_argument("--seq-len", type=int, default=None, help="bpb window length (default 256)")
    p.add_argument("--val-tokens", type=int, default=32768, help="val tokens for bpb (32768)")
    p.add_argument("--seed", type=int, default=0, help="suite and sampling seed (0)")
    p.add_argument("--no-tasks", action="store_true", help="only bits per byte")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument(
        "--drafter",
        choices=MODEL_FREE_DRAFTERS,
        default="none",
        help="a checkpoint's model-free draft source (prompt lookup or suffix drafting, as "
        "`serve` uses for code-flash): drafts are checked against the greedy choice, so greedy "
        "answers are the same, only faster or slower; recorded in the settings (none)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="also write DIR/eval.json (DIR/SUITE.json with --suite); an existing one is kept "
        "unless --force",
    )
    p.add_argument("--force", action="store_true", help="replace an existing result file in --out")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_handle, _parser=p)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


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
    if not t:
        return
    st = t["settings"]
    has_pk = bool(st.get("samples_per_item"))
    for split in st["splits"]:
        tab = Table(
            # a cell's pool can hold fewer items than asked (arith tier 1: 16): those show n
            title=f"{split}: greedy accuracy (no-training baseline), n={st['n_per_tier']} per "
            "cell unless shown"
        )
        tab.add_column("family")
        for tier in st["tiers"]:
            tab.add_column(f"tier {tier}", justify="right")
        for fam, cells in t["splits"][split]["by_family_tier"].items():
            row = [
                fam + (" (held-out family)" if cells and _first(cells)["heldout_family"] else "")
            ]
            for tier in st["tiers"]:
                c = cells.get(str(tier))
                if c is None:
                    row.append("-")
                    continue
                txt = f"{c['accuracy']:.0%} ({_pct(c['baseline']['best'])})"
                if c.get("n") is not None and c["n"] != st["n_per_tier"]:
                    txt += f" n={c['n']}"
                if has_pk and c.get("pass_at_k"):
                    txt += " pass@" + "/".join(f"{k}:{v:.0%}" for k, v in c["pass_at_k"].items())
                if c["truncated"]:
                    txt += f" trunc {c['truncated_share']:.0%}"
                row.append(txt)
            tab.add_row(*row)
        con.print(tab)
        con.print(overall_line(t, split))
    con.print(
        f"finish reasons {t['finish_reasons']}; truncated {t['truncated_share']:.1%}; "
        f"mean completion tokens {t['mean_completion_tokens']:.1f}"
    )


def overall_line(t: dict[str, Any], split: str) -> str:
    """A split's overall accuracy with its 95% interval (Wilson) over the split's items and the
    no-training baseline on the same items.

    Why: the line read "heldout: overall 50.0% (10/20)" — the one number a reader takes away,
    printed without the baseline every cell above carries and without saying that 20 items
    put it anywhere from 30% to 70%."""
    from hillclimb.eval.metrics import bootstrap_ci

    tot = t["splits"][split]
    line = f"{split}: overall {tot['accuracy']:.1%} ({tot['correct']}/{tot['n']})"
    vals = [float(i["passed"]) for i in t.get("items") or [] if i.get("split") == split]
    if vals:
        lo, hi = bootstrap_ci(vals)
        line += f", 95% CI {lo:.1%} – {hi:.1%}"
    base = tot.get("baseline")
    line += "; no-training baseline " + (f"{base:.1%}" if base is not None else "-")
    # items a training item would get right left out, one figure per flag (eval.tasks: word
    # problems of training arithmetic since session 27, code a training function passes since 28)
    from hillclimb.problems.baselines import SEEN_FLAGS

    for g in SEEN_FLAGS:
        w = tot.get(g.split_key)
        if w and w.get("flagged") and w.get("accuracy") is not None:
            line += (
                f"; without {w['flagged']} {g.label} {w['accuracy']:.1%} ({w['correct']}/{w['n']})"
            )
    return line


def _first(cells: dict[str, Any]) -> dict[str, Any]:
    return next(iter(cells.values()))


def print_suite(result: dict[str, Any], file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(file=file or sys.stdout)
    con.print(
        f"[bold]{result['suite']}[/bold] — {result['model']} ({result['backend']}), "
        f"{result['n_items']} items, {result['seconds']:.1f} s"
    )
    tab = Table(title="metric (95% interval over items: Wilson for pass/fail)")
    tab.add_column("metric")
    tab.add_column("value", justify="right")
    tab.add_column("95% CI", justify="right")
    tab.add_column("n", justify="right")
    from hillclimb.eval.suite_common import suite_baseline
    from hillclimb.eval.suites import metric_baseline

    base = suite_baseline(result)
    if base:
        tab.add_column("no-training baseline", justify="right")
    for name, m in result["metrics"].items():
        row = [name, f"{m['value']:.1%}", f"{m['ci95'][0]:.1%} – {m['ci95'][1]:.1%}", str(m["n"])]
        if base:
            b = metric_baseline(result, name)
            row.append(f"{b:.1%}" if b is not None else "-")
        tab.add_row(*row)
    con.print(tab)
    if base:
        b = result["baseline"]
        extra = b.get("items_passed_by_some_trivial_answer")
        con.print(
            f"no-training baseline: {b.get('what', '?')}"
            + (f"; items some trivial answer passes: {extra}" if extra is not None else "")
        )
    if result.get("baselines") and not base:  # older problems results: per split only
        con.print(
            "no-training baseline (best of lookup / majority / chance per cell): "
            + ", ".join(
                f"{s} {b:.1%}" if b is not None else f"{s} -"
                for s, b in result["baselines"].items()
            )
        )
    for title, key in (("category", "by_category"), ("instruction", "by_instruction")):
        groups = result.get(key)
        if groups:
            # the interval each group carries (adversarial categories have one): "0% of 5"
            # and "0% of 50" differ by more than the n column shows
            t = Table(title=f"accuracy per {title}")
            t.add_column(title)
            t.add_column("accuracy", justify="right")
            t.add_column("95% CI", justify="right")
            t.add_column("n", justify="right")
            t.add_column("baseline", justify="right")  # on the same items, where the suite has one
            for g, m in groups.items():
                ci, base = m.get("ci95"), m.get("baseline")
                t.add_row(g, f"{m['value']:.0%}",
                          f"{ci[0]:.0%} – {ci[1]:.0%}" if ci else "-", str(m["n"]),
                          f"{base:.0%}" if isinstance(base, (int, float)) else "-")  # fmt: skip
            con.print(t)
    unknown = result.get("usage_unknown")
    tokens = (
        f"mean completion tokens {result['mean_completion_tokens']:.1f}"
        if not unknown
        else f"completion tokens unknown (no usage reported for {unknown} answers)"
    )
    con.print(f"finish reasons {result['finish_reasons']}; {_truncation(result)}; {tokens}")
    eff = result.get("efficiency") or {}
    if eff:
        per = eff["tokens_per_solved"]
        why = "unknown" if unknown else "- (none solved)"
        line = f"solved {eff['solved']}/{eff['items']}; completion tokens per solved item " + (
            f"{per:.1f}" if per is not None else why
        )
        if "cost_per_solved" in eff:
            c = eff["cost_per_solved"]
            line += "; credits per solved item " + (
                f"{c:.6g} (completion tokens only)" if c is not None else why
            )
        con.print(line)


# harness episode endings as the summary names them (`max_tokens` there is the episode's total
# token budget, not the per-turn cap)
_LIMIT_NAMES = {
    "context_exhausted": "context exhausted",
    "max_steps": "out of turns (max_steps)",
    "max_tokens": "episode token budget",
    "timeout": "wall-clock timeout",
}


def _truncation(result: dict[str, Any]) -> str:
    """The truncated share named by its cause. Answer suites are cut by `max_tokens` only; the
    harness suite's episodes end at one of several limits (`truncated_by`), and calling an
    exhausted context "max_tokens" sent users to raise a limit that was not the one hit."""
    by = result.get("truncated_by")
    if by is None:
        return f"truncated (max_tokens) {result['truncated_share']:.1%}"
    if not by:
        return "stopped by a limit 0.0%"
    causes = ", ".join(f"{_LIMIT_NAMES.get(k, k)} {v:.1%}" for k, v in sorted(by.items()))
    return f"stopped by a limit {result['truncated_share']:.1%} ({causes})"


def _price(args: argparse.Namespace) -> tuple[float, float] | None:
    """(prompt, completion) credits per million tokens for `--prices`, or None."""
    if args.prices is None:
        return None
    from hillclimb.errors import HillclimbError
    from hillclimb.serve.state import load_prices

    prices = load_prices(args.prices)
    name = args.price_model or args.served_model
    if name is None and not args.model.startswith(("http://", "https://")):
        from hillclimb.model.checkpoint import read_info

        name = read_info(args.model).get("family")
    if name not in prices:
        raise HillclimbError(
            f"--prices {args.prices} has no price for {name!r} (it prices "
            f"{', '.join(prices) or 'nothing'}); pass --price-model"
        )
    return prices[name].prompt, prices[name].completion


def _report(
    args: argparse.Namespace,
    res: dict[str, Any],
    filename: str,
    printer: Callable[[dict[str, Any]], None],
) -> int:
    """A finished evaluation: written to `--out/filename` if asked, then printed (`--json`: the
    whole result, else `printer`'s table)."""
    from pathlib import Path

    from hillclimb.errors import HillclimbError
    from hillclimb.io import write_json_atomic

    failed: HillclimbError | None = None
    if args.out:
        target = Path(args.out) / filename
        try:
            if args.force:
                write_json_atomic(target, res)
            else:
                _write_new(target, res)
        except OSError as exc:
            failed = HillclimbError(f"cannot write {target}: {exc}; {_rescue(res, filename)}")
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        printer(res)
    if failed is not None:  # after the result is shown: the evaluation itself is not lost
        raise failed
    return 0


def _rescue(res: dict[str, Any], filename: str) -> str:
    """Save `res` in the temporary directory when `--out` cannot take it; says where.

    Why: `--out` is checked before the run, but a directory can go read-only, full or away
    while an evaluation runs (or be one no file can be made in, as /proc), and the error
    dropped the finished result unprinted — an hour of HumanEval samples gone."""
    import os
    import tempfile

    from hillclimb.io import write_json_atomic

    try:
        fd, tmp = tempfile.mkstemp(prefix=f"hillclimb-{filename.removesuffix('.json')}-",
                                   suffix=".json")  # fmt: skip
        os.close(fd)
        write_json_atomic(tmp, res)
    except OSError as exc:
        return f"nor in the temporary directory ({exc}); it is printed above only"
    return f"the result was saved to {tmp} instead"


def _write_new(target: Any, res: dict[str, Any]) -> None:
    """Write `res` to `target` only if no file is there, atomically (a hard link of a complete
    temporary file, which fails where the name exists).

    Why not check-then-replace: `_check_out` looks before the run, and a second run into the same
    `--out` that finished first was silently replaced by this one (its file then held the other
    run's numbers). Now this run's result stays beside it under a name of its own, said in the
    error, and nothing already stored is replaced."""
    import os
    import tempfile
    from pathlib import Path

    from hillclimb.errors import HillclimbError
    from hillclimb.io import write_json_atomic

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{target.stem}.", suffix=".json", dir=target.parent)
    os.close(fd)
    write_json_atomic(tmp, res)
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise HillclimbError(
            f"{target} appeared while this evaluation ran (another run into the same --out?) "
            f"and was kept; this run's result is in {tmp}"
        ) from None
    except OSError:  # a file system without hard links: the check-then-replace of before
        if target.exists():
            raise HillclimbError(
                f"{target} appeared while this evaluation ran and was kept; this run's result "
                f"is in {tmp}"
            ) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


# Which flags each mode reads: "eval" is the generator-task evaluation (no --suite), the rest
# are suite names, "*" every suite. A flag given where nothing reads it is refused in one line
# (`_refuse_unread_flags`): `--suite problems --families logic` evaluating all eight families,
# or `--suite ifeval --samples-per-item 4` reporting no pass@k, looked like a result.
_ALL_SUITES = ("problems", "humaneval", "completion", "ifeval", "adversarial", "harness", "fim")
_SAMPLING = ("eval", "problems", "humaneval", "completion")
_FLAG_READERS: dict[str, tuple[str, ...]] = {
    "families": ("eval", "problems"),
    "tiers": ("eval", "problems"),
    "splits": ("eval", "problems"),
    "n_per_tier": ("eval",),
    "sample_n_per_tier": ("eval",),
    "baseline_train_n": ("eval",),
    "samples": ("eval",),
    "seq_len": ("eval",),
    "val_tokens": ("eval",),
    "no_tasks": ("eval",),
    "data": ("eval",),
    "samples_per_item": _SAMPLING,
    "pass_k": _SAMPLING,
    "temperature": _SAMPLING,
    "top_p": _SAMPLING,
    "limit": ("*",),
    "n_items": ("problems", "completion", "ifeval", "fim"),
    "form": ("humaneval", "completion"),
    "tasks": ("harness",),
    "max_steps": ("harness",),
    "timeout": ("problems", "humaneval", "completion", "adversarial", "fim"),
    "prices": ("*",),
    "price_model": ("*",),
    "api_key": ("*",),
    "served_model": ("*",),
    "concurrency": ("*",),
}
# the counterpart to suggest, where the mode that refused a flag reads a similar one
_INSTEAD = {"n_per_tier": "n_items", "n_items": "n_per_tier", "limit": "n_per_tier"}


def _refuse_unread_flags(args: argparse.Namespace) -> None:
    """Refuse a flag that differs from its default where the chosen mode never reads it.

    Why refuse rather than ignore: an evaluation that ran on other items (all families instead of
    `--families logic`) or without the asked-for pass@k prints a plausible table, and nothing
    says the flag did nothing. A flag given with its default value cannot be told apart from
    one not given, and changes nothing, so it passes."""
    from hillclimb.errors import HillclimbError

    parser = getattr(args, "_parser", None)
    if parser is None:
        return
    mode = args.suite or "eval"
    for dest, readers in _FLAG_READERS.items():
        if getattr(args, dest, None) == parser.get_default(dest):
            continue
        if mode in readers or ("*" in readers and mode != "eval"):
            continue
        flag = "--" + dest.replace("_", "-")
        where = f"--suite {mode}" if mode != "eval" else "evaluation without --suite"
        used = ", ".join(
            "evaluation without --suite"
            if r == "eval"
            else ("any --suite" if r == "*" else f"--suite {r}")
            for r in readers
        )
        alt = _INSTEAD.get(dest)
        hint = ""
        if alt is not None and mode in _FLAG_READERS[alt]:
            hint = f"; {where} takes --{alt.replace('_', '-')}"
        raise HillclimbError(f"{flag} does not apply to {where} (only to: {used}){hint}")
    if any(k < 1 for k in args.pass_k):  # else "add --samples-per-item >= 0" was the advice
        raise HillclimbError(f"--pass-k values must be >= 1, got {args.pass_k}")
    if not args.samples_per_item and any(k != 1 for k in args.pass_k):
        # the docs pair them (`--samples-per-item N --pass-k 1,N`): pass@k > 1 needs samples
        raise HillclimbError(
            f"--pass-k {','.join(map(str, args.pass_k))} needs sampled completions: add "
            f"--samples-per-item >= {max(args.pass_k)} (without it only greedy pass@1 is scored)"
        )


def _handle_suite(args: argparse.Namespace) -> int:
    from hillclimb.eval.suites import SuiteConfig, check_suite, run_suite

    check_suite(args.suite)
    _refuse_unread_flags(args)
    cfg = SuiteConfig(
        limit=args.limit,
        samples_per_item=args.samples_per_item,
        pass_k=args.pass_k,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        seed=args.seed,
        timeout_s=args.timeout,
        form=args.form,
        n_items=args.n_items,
        families=args.families,
        tiers=args.tiers,
        splits=list(args.splits),
        tasks=args.tasks,
        harness_max_steps=args.max_steps,
        harness_concurrency=args.concurrency,
        harness_guided_tools=args.guided_tools,
        harness_keep=args.keep_episodes,
    )
    res = run_suite(
        args.suite,
        args.model,
        cfg,
        price=_price(args),
        api_key=client_api_key(args.api_key),
        served_model=args.served_model,
        device=args.device,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        announce=lambda line: print(line, file=sys.stderr, flush=True),  # stdout: the result
        drafter=args.drafter,
    )
    return _report(args, res, f"{args.suite}.json", print_suite)


def _check_out(args: argparse.Namespace) -> None:
    """`--out` must be a directory (or not exist yet), and the result file it would get must not
    exist unless `--force`: found now, not after the whole evaluation ran — and an earlier
    result (maybe the only copy of an hour's evaluation) is never replaced silently."""
    import os
    from pathlib import Path

    from hillclimb.errors import HillclimbError

    if args.out is None:
        return
    if not args.out.strip():
        raise HillclimbError("--out needs a directory name (got an empty string)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise HillclimbError(f"--out {out} exists and is not a directory")
    # the directory it would be created in: a dangling link or a file on the way fails the
    # write only after the whole evaluation ran, and the result (not yet printed) was lost
    anc = out
    while not anc.exists():
        if anc.is_symlink():
            raise HillclimbError(f"--out {out}: {anc} is a symbolic link to nothing")
        if anc.parent == anc:
            break
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise HillclimbError(f"--out {out}: {anc} is not a directory")
    if anc.is_dir() and not os.access(anc, os.W_OK | os.X_OK):
        raise HillclimbError(f"--out {out}: {anc} is not writable")
    target = out / (f"{args.suite}.json" if args.suite is not None else "eval.json")
    if target.is_dir():
        raise HillclimbError(f"{target} is a directory; choose another --out")
    if target.exists() and not args.force:
        raise HillclimbError(
            f"{target} already holds an evaluation result; pass --force to replace it or "
            "choose another --out"
        )


def _handle(args: argparse.Namespace) -> int:
    from hillclimb.errors import HillclimbError

    _check_out(args)
    if args.suite is not None:
        return _handle_suite(args)
    if args.model.startswith(("http://", "https://")):
        raise HillclimbError(f"a URL can only be evaluated with --suite ({', '.join(_ALL_SUITES)})")

    _refuse_unread_flags(args)
    from hillclimb.eval.core import run_eval
    from hillclimb.eval.tasks import TaskEvalConfig

    tasks = TaskEvalConfig(
        n_per_tier=args.n_per_tier,
        families=args.families,
        tiers=args.tiers,
        splits=args.splits,
        seed=args.seed,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        samples_per_item=args.samples_per_item,
        pass_k=args.pass_k,
        sample_n_per_tier=args.sample_n_per_tier,
        temperature=args.temperature,
        top_p=args.top_p,
        baseline_train_n=args.baseline_train_n,
        examples=args.samples,
    )
    res = run_eval(
        args.model,
        args.data,
        tasks=tasks,
        val_tokens=args.val_tokens,
        seq_len=args.seq_len,
        accuracy=not args.no_tasks,
        device=args.device,
        drafter=args.drafter,
    )
    return _report(args, res, "eval.json", print_eval)
