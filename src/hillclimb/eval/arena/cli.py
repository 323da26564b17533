"""`hillclimb arena`: the blind side-by-side arena, and `hillclimb arena --results`.

Why the checks run in this order: the cheap ones first (at least two models, names unique, the
usage database exists and holds keys), then the models are opened (checkpoints load, URLs answer
`/models`), and only then does the web server bind its port — so a typo fails in a second with
one line instead of after a model load, and a half-started arena never takes votes.

The usage database is the server's (`serve.cli.usage_db_path`: `--db`, else
`--state-dir`/usage.sqlite, else the default state directory); the votes go to `arena.sqlite`
in the same state directory unless `--arena-db` says otherwise. The arena never creates a
usage database: one that does not exist is an error naming `hillclimb keys create`.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
from pathlib import Path

from hillclimb.errors import HillclimbError
from hillclimb.io import client_api_key, default_state_dir
from hillclimb.serve.cli import check_bind, usage_db_path

DEFAULT_ARENA_DB = "arena.sqlite"


def arena_db_path(arena_db: Path | None, state_dir: Path | None) -> Path:
    if arena_db is not None:
        return arena_db
    return (state_dir if state_dir is not None else default_state_dir()) / DEFAULT_ARENA_DB


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser(
        "arena",
        help="blind side-by-side arena: vote between two anonymous answers; Bradley-Terry ratings",
    )
    a.add_argument(
        "--models",
        default=None,
        help="comma-separated: [NAME=]CHECKPOINT_DIR or [NAME=]URL[#SERVED_MODEL] (at least 2)",
    )
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=8100)
    a.add_argument(
        "--prompts",
        type=Path,
        default=None,
        help="prompt set to draw from: .jsonl of {prompt} or one prompt per line "
        "(default: held-out problems from our generators)",
    )
    a.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state directory holding usage.sqlite (API keys) and arena.sqlite (votes)",
    )
    a.add_argument("--db", type=Path, default=None, help="the server's usage/keys database")
    a.add_argument("--arena-db", type=Path, default=None, help="the votes database")
    a.add_argument(
        "--api-key",
        default=None,
        help="bearer key sent to URL models (default: $HILLCLIMB_API_KEY, else $OPENAI_API_KEY)",
    )
    a.add_argument("--device", default=None, help="device for checkpoint models (default auto)")
    a.add_argument("--max-tokens", type=int, default=512)
    a.add_argument("--temperature", type=float, default=0.7)
    a.add_argument("--top-p", type=float, default=0.95)
    a.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples for intervals")
    a.add_argument(
        "--prior", type=float, default=1.0, help="virtual tie games per pair of models (>= 0)"
    )
    a.add_argument(
        "--secure-cookies", action="store_true", help="mark cookies Secure (behind HTTPS)"
    )
    a.add_argument("--log-level", default="warning")
    a.add_argument(
        "--results", action="store_true", help="print the ratings of the stored votes and exit"
    )
    a.add_argument("--json", action="store_true", help="with --results: machine-readable")
    a.set_defaults(func=_arena, _parser=a)


def _rating_config(args: argparse.Namespace):  # noqa: ANN202
    from hillclimb.eval.arena.ratings import RatingConfig

    if args.bootstrap < 0:
        raise HillclimbError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    # NaN/inf would pass a `< 0` test, start the arena and then fail every results page
    if not (args.prior >= 0 and math.isfinite(args.prior)):
        raise HillclimbError(f"--prior must be a finite number >= 0, got {args.prior}")
    return RatingConfig(prior=args.prior, n_bootstrap=args.bootstrap)


def _results(args: argparse.Namespace) -> int:
    from hillclimb.eval.arena.app import ratings_from_votes
    from hillclimb.eval.arena.store import ArenaStore

    path = arena_db_path(args.arena_db, args.state_dir)
    if not path.is_file():
        raise HillclimbError(f"no arena database at {path} (pass --arena-db or --state-dir)")
    store = ArenaStore(path)
    votes = store.votes()
    cfg = _rating_config(args)
    models = [s.name for s in _specs(args.models)] if args.models else []
    if len({*models, *(v.model_left for v in votes), *(v.model_right for v in votes)}) < 2:
        raise HillclimbError(f"{path} holds no votes between two models yet")
    ratings = ratings_from_votes(votes, models, cfg)
    if args.json:
        print(
            json.dumps(
                {
                    "format": "hillclimb-arena-results-v1",
                    "database": str(path),
                    "votes": len(votes),
                    "prior": cfg.prior,
                    "n_bootstrap": cfg.n_bootstrap,
                    "confidence": cfg.confidence,
                    "ratings": [r.to_dict() for r in ratings],
                },
                indent=2,
            )
        )
        return 0
    print(f"{len(votes)} votes in {path}")
    print(f"{'rank':>4}  {'rating':>6}  {'95% interval':>13}  {'votes':>5}  W/T/B/L  model")
    for r in ratings:
        ci = r.interval_text()
        print(
            f"{r.rank:>4}  {r.rating:>6.0f}  {ci:>13}  {r.games:>5}  "
            f"{r.wins}/{r.ties}/{r.both_bad}/{r.losses}  {r.model}"
        )
    return 0


def _specs(models: str | None):  # noqa: ANN202
    from hillclimb.eval.arena.models import parse_models

    if models is None:
        raise HillclimbError("pass --models A,B[,...] (or --results to print the ratings)")
    return parse_models(models)


def _arena(args: argparse.Namespace) -> int:
    if args.results:
        return _results(args)
    from hillclimb.eval.arena.app import Arena, ArenaConfig, create_app
    from hillclimb.eval.arena.models import (
        GenerationConfig,
        check_targets,
        load_prompts,
        open_contenders,
    )
    from hillclimb.eval.arena.store import ArenaStore
    from hillclimb.serve.billing import UsageDB

    check_bind(args.host, args.port)  # a busy port fails now, not after the models load
    specs = _specs(args.models)
    check_targets(specs)
    gen = GenerationConfig(args.max_tokens, args.temperature, args.top_p)
    rating = _rating_config(args)
    usage = usage_db_path(args.db, args.state_dir)
    if not usage.is_file():
        raise HillclimbError(
            f"no usage database at {usage}: the arena logs voters in with the server's API keys; "
            "create them with `hillclimb keys create --name NAME` (same --db / --state-dir)"
        )
    prompts = load_prompts(args.prompts)
    try:
        accounts = UsageDB(usage)
    except sqlite3.DatabaseError as exc:  # UsageDB lets a corrupt file's first PRAGMA through
        raise HillclimbError(f"cannot open usage database {usage}: {exc}") from None
    if accounts.count_accounts() == 0:
        raise HillclimbError(
            f"the usage database {usage} has no API keys, so the arena cannot tell voters apart; "
            "create one per voter with `hillclimb keys create --name NAME`"
        )
    contenders = open_contenders(specs, api_key=client_api_key(args.api_key), device=args.device)
    try:
        store = ArenaStore(arena_db_path(args.arena_db, args.state_dir))
        arena = Arena(
            contenders,
            store,
            accounts,
            prompts,
            ArenaConfig(gen=gen, rating=rating, secure_cookies=args.secure_cookies),
        )
        import uvicorn

        print(
            f"hillclimb arena: http://{args.host}:{args.port}/  ({len(contenders)} models, "
            f"{len(prompts)} prompts)\n  keys: {usage}\n  votes: {store.path}",
            flush=True,
        )
        uvicorn.run(
            create_app(arena),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
        )
    finally:
        for c in contenders:
            c.close()
    return 0
