"""`hillclimb registry list|show|compare|add|add-eval|alias` and `hillclimb promote`.

Every command takes `--registry PATH` (default `STATE_DIR/registry.sqlite`, STATE_DIR from
`--state-dir`, else `$XDG_STATE_HOME/hillclimb` or `~/.local/state/hillclimb` — the directory
`hillclimb serve` keeps its state in, so `serve --thinking thinking@prod` finds the alias
`promote` wrote). Read-only commands never create a registry and take `--json`. `promote` exits 0
when it promoted and 1 when the gate refused (the decision, with its reasons, is printed and
stored either way); bad input exits 2 with one line. Only argparse at import time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry database (default STATE_DIR/registry.sqlite)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state directory (default $XDG_STATE_HOME/hillclimb or ~/.local/state/hillclimb)",
    )


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


# The bootstrap holds a [resamples, distinct values] int64 table: 10**7 takes ~2.4 s and ~0.4 GB
# (measured), far past where the interval stops moving; 10**11 asked numpy for 745 GiB.
MAX_RESAMPLES = 10_000_000


def _int_in(lo: int, hi: int | None) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi] (hi None: no upper bound), so a value the
    bootstrap cannot use (`--seed -1` for numpy's SeedSequence, `--resamples 1e11`) is a usage
    error naming the flag instead of a numpy traceback."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            bound = f"at least {lo}" if hi is None else f"in {lo}..{hi}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {v}")
        return v

    return parse


def _gate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resamples", type=_int_in(1, MAX_RESAMPLES), default=10_000,
                   help=f"bootstrap resamples (10000; at most {MAX_RESAMPLES})")  # fmt: skip
    p.add_argument("--confidence", type=float, default=0.95, help="CI level (0.95)")
    p.add_argument("--seed", type=_int_in(0, None), default=0, help="bootstrap seed (0; >= 0)")
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "registry",
        help="checkpoints, lineage, item-level evaluations, aliases (SQLite)",
        description="The registry of runs, checkpoints (lineage, content hash), evaluations "
        "(item-level) and aliases. docs/areas/registry.md",
    )
    rsub = r.add_subparsers(dest="registry_command", metavar="COMMAND")
    r.set_defaults(_parser=r)

    p = rsub.add_parser("list", help="checkpoints and aliases")
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_list, _parser=p)

    p = rsub.add_parser("show", help="one checkpoint: lineage, evaluations, aliases, decisions")
    _common(p)
    p.add_argument("ref", help="alias (thinking@prod), id (prefix) or checkpoint directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_show, _parser=p)

    p = rsub.add_parser(
        "compare", help="two checkpoints on the shared items of a suite (paired bootstrap)"
    )
    _common(p)
    p.add_argument("a", help="baseline checkpoint (alias, id or directory)")
    p.add_argument("b", help="checkpoint compared with it (differences are B - A)")
    p.add_argument(
        "--suite",
        required=True,
        help="evaluation split (heldout, heldout_phrasing, ...) or SPLIT:FILTER with FILTER a "
        "kind (reasoning, code, heldout_family), a family or a tier (t2)",
    )
    _gate_args(p)
    p.set_defaults(func=_compare, _parser=p)

    p = rsub.add_parser("add", help="register a checkpoint directory (idempotent)")
    _common(p)
    p.add_argument("path", type=Path, help="checkpoint directory")
    p.add_argument("--stage", default=None, help="pretrain | sft | rl | ... (default: lineage)")
    p.add_argument("--parent", default=None, help="parent checkpoint (alias, id or directory)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_add, _parser=p)

    p = rsub.add_parser(
        "add-eval",
        help="import an evaluation (hillclimb eval --json / --out, or a climb's eval file)",
    )
    _common(p)
    p.add_argument("ckpt", help="checkpoint (alias, id or directory; a directory is registered)")
    p.add_argument(
        "eval_json",
        type=Path,
        help="eval.json / SUITE.json, an `eval --out` directory holding one, or a climb's "
        "NN-eval/<model>.json",
    )
    p.add_argument(
        "--stage",
        default=None,
        help="which result of a climb eval file (pretrain, sft, rl); default: the one whose "
        "checkpoint path matches",
    )
    p.add_argument(
        "--force", action="store_true", help="accept a result naming another path (moved dir)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_add_eval, _parser=p)

    p = rsub.add_parser(
        "alias", help="point an alias at a checkpoint without a gate (recorded as manual)"
    )
    _common(p)
    p.add_argument("name", help="MODEL@TAG, e.g. thinking@prod")
    p.add_argument("ckpt", help="checkpoint (alias, id or directory)")
    p.add_argument("--reason", default="set by hand", help="why (stored with the decision)")
    p.set_defaults(func=_alias, _parser=p)

    p = sub.add_parser(
        "promote",
        help="promote a checkpoint only if it beats the incumbent beyond noise (the gate)",
        description="Promote CANDIDATE over INCUMBENT: the target suite must improve beyond "
        "noise and no gate suite may regress beyond noise (paired bootstrap on shared items). "
        "On promotion --alias moves to the candidate. Exit 0 promoted, 1 refused, 2 bad input.",
    )
    _common(p)
    p.add_argument("candidate", help="candidate checkpoint (alias, id or directory)")
    p.add_argument(
        "--over",
        default=None,
        metavar="INCUMBENT",
        help="incumbent checkpoint (default: what --alias points at now)",
    )
    p.add_argument("--target", required=True, help="suite that must improve (e.g. heldout)")
    p.add_argument(
        "--gates",
        type=_csv,
        default=[],
        help="comma-separated suites that must not regress (e.g. heldout_phrasing,heldout:code)",
    )
    p.add_argument("--alias", default=None, help="alias to move on promotion, e.g. thinking@prod")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    _gate_args(p)
    p.set_defaults(func=_promote, _parser=p)


def _open(args: argparse.Namespace, *, create: bool) -> Any:
    from hillclimb.registry.db import Registry, registry_path

    return Registry(registry_path(args.registry, args.state_dir), create=create)


def _list(args: argparse.Namespace) -> int:
    with _open(args, create=False) as reg:
        cks = reg.checkpoints()
        aliases = reg.aliases()
        by_ck: dict[str, list[str]] = {}
        for a in aliases:
            by_ck.setdefault(a.checkpoint_id, []).append(a.name)
        rows = [
            {
                **ck.to_dict(),
                "aliases": by_ck.get(ck.id, []),
                "evals": {e.suite: e.accuracy for e in reg.evals(ck.id)},
                "missing": ck.missing_reason(),
            }
            for ck in cks
        ]
        if args.json:
            print(json.dumps({"registry": str(reg.path), "checkpoints": rows,
                              "aliases": {a.name: a.checkpoint_id for a in aliases}}, indent=2))  # fmt: skip
            return 0
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        # paths, model and stage names are shown as they are, never read as rich markup
        # (`run[/]x` raised MarkupError; `[lr=3e-5]` vanished from a path)
        t = Table(title=Text(f"registry {reg.path}"))
        for col in ("id", "model", "stage", "parent", "evals", "aliases", "path"):
            t.add_column(col)
        for r in rows:
            evals = " ".join(f"{s}:{a:.1%}" for s, a in r["evals"].items()) or "-"
            path = r["path"] + (" (MISSING)" if r["missing"] else "")
            t.add_row(r["id"], r["model"] or "-", r["stage"] or "-", r["parent_id"] or "-",
                      evals, ", ".join(r["aliases"]) or "-", path)  # fmt: skip
        con = Console(markup=False, highlight=False)
        con.width = max(con.width, 180)  # ids and paths are not worth truncating
        con.print(t)
    return 0


def _show(args: argparse.Namespace) -> int:
    with _open(args, create=False) as reg:
        ck = reg.resolve(args.ref)
        out = {
            "checkpoint": ck.to_dict(),
            "missing": ck.missing_reason(),
            "lineage": [{"id": c.id, "stage": c.stage, "path": c.path} for c in reg.lineage(ck.id)],
            "aliases": [a.name for a in reg.aliases(ck.id)],
            "evals": [
                {k: v for k, v in e.to_dict().items() if k != "summary"}
                | {"correct": e.summary.get("correct")}
                for e in reg.evals(ck.id)
            ],
            "decisions": [
                {k: d[k] for k in ("id", "created", "candidate", "incumbent", "alias", "promoted")}
                for d in reg.decisions(ck.id)
            ],
        }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    c = out["checkpoint"]
    print(f"checkpoint {c['id']}  ({c['model'] or '?'} {c['preset'] or ''}, stage {c['stage']})")
    print(
        f"  path          {c['path']}"
        + (f"  (MISSING: {out['missing']})" if out["missing"] else "")
    )
    print(f"  content hash  {c['content_hash']}")
    print(f"  recipe hash   {c['recipe_hash'] or '-'}")
    print(f"  data card     {c['data_card_hash'] or '-'}")
    print(f"  run           {c['run_id'] or '-'}")
    print(f"  aliases       {', '.join(out['aliases']) or '-'}")
    print("  lineage       " + " <- ".join(f"{x['id']} ({x['stage']})" for x in out["lineage"])
          + (f" <- {c['parent_path']} (unregistered)" if c["parent_path"] and not c["parent_id"] else ""))  # fmt: skip
    for e in out["evals"]:
        print(f"  eval {e['suite']:<18} {e['accuracy']:.1%} ({e['correct']}/{e['n']}) "
              f"{e['created']}  {e['source'] or ''}")  # fmt: skip
    for d in out["decisions"]:
        verdict = "promoted" if d["promoted"] else "refused"
        print(f"  decision #{d['id']} {d['created']}: {d['candidate']} over "
              f"{d['incumbent'] or '-'} -> {d['alias'] or '-'}: {verdict}")  # fmt: skip
    return 0


def _compare(args: argparse.Namespace) -> int:
    from hillclimb.registry.gate import compare

    with _open(args, create=False) as reg:
        a, b = reg.resolve(args.a), reg.resolve(args.b)
        comp = compare(reg, a.id, b.id, args.suite, resamples=args.resamples,
                       confidence=args.confidence, seed=args.seed)  # fmt: skip
    if args.json:
        print(json.dumps(comp.to_dict(), indent=2))
        return 0
    print(f"{args.suite}: A={a.id} vs B={b.id}: {comp.line()}")
    print(f"  p(two-sided)={comp.stats.p_two_sided:.3g}; items: A {comp.n_a}, B {comp.n_b}")
    for w in comp.warnings:
        print(f"  warning: {w}")
    for n in comp.notes():
        print(f"  note: {n}")
    return 0


def _add(args: argparse.Namespace) -> int:
    with _open(args, create=True) as reg:
        ck = reg.register_checkpoint(args.path, stage=args.stage, parent=args.parent)
    if args.json:
        print(json.dumps(ck.to_dict(), indent=2))
    else:
        print(f"registered {ck.id} ({ck.model or '?'}, stage {ck.stage or '-'}) at {ck.path}")
    return 0


def _add_eval(args: argparse.Namespace) -> int:
    from hillclimb.errors import HillclimbError
    from hillclimb.registry.evalfile import (
        eval_file_path,
        load_eval_file,
        parse_result,
        pick_result,
    )

    args.eval_json = eval_file_path(args.eval_json)  # an `eval --out DIR`: its result file
    source = str(args.eval_json)
    obj = load_eval_file(args.eval_json)  # bad files fail before the registry is touched
    with _open(args, create=True) as reg:
        ckpt_dir = Path(args.ckpt).expanduser()
        with reg.transaction():
            if ckpt_dir.is_dir():
                ck = reg.register_checkpoint(ckpt_dir)
            else:
                ck = reg.resolve(args.ckpt)
            # a checkpoint is its weights: the same weights in two directories (an RL run that
            # made no update) are one record, listed at the first path registered. A result
            # naming the directory given here is about these weights too.
            paths = list(dict.fromkeys([*([ckpt_dir] if ckpt_dir.is_dir() else []), ck.path]))
            errors: list[HillclimbError] = []
            for path in paths:
                try:
                    result = pick_result(
                        obj, path, source=source, stage=args.stage, force=args.force
                    )
                    break
                except HillclimbError as exc:
                    errors.append(exc)
            else:
                raise errors[0]
            parse_result(result, source)  # validate before writing
            evals = reg.add_eval_result(ck.id, result, source=str(args.eval_json.resolve()))
    if args.json:
        print(json.dumps({"checkpoint": ck.id, "evals": [e.to_dict() for e in evals]}, indent=2))
    else:
        for e in evals:
            print(f"{ck.id}: {e.suite} {e.accuracy:.1%} over {e.n} items (eval #{e.id})")
    return 0


def _alias(args: argparse.Namespace) -> int:
    with _open(args, create=False) as reg:
        ck = reg.resolve(args.ckpt)
        reg.set_alias(args.name, ck.id, args.reason)
    print(f"{args.name} -> {ck.id} ({ck.path})")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from hillclimb.registry.gate import GateConfig, print_decision, promote

    cfg = GateConfig(target=args.target, gates=tuple(args.gates), alpha=args.alpha,
                     resamples=args.resamples, confidence=args.confidence, seed=args.seed)  # fmt: skip
    with _open(args, create=False) as reg:
        dec = promote(reg, args.candidate, args.over, cfg, alias=args.alias)
    if args.json:
        print(json.dumps(dec.to_dict(), indent=2))
    else:
        print_decision(dec)
    return 0 if dec.promoted else 1
