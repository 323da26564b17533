"""CLI of the serving side: `hillclimb serve`, `hillclimb chat`, `hillclimb keys ...`.

Handlers import FastAPI, uvicorn and torch lazily so `hillclimb --help` stays fast. `keys`
subcommands only touch the SQLite usage database (billing.py), so operators can create keys,
top up credits and read usage while a server runs on the same file (WAL).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.io import client_api_key, default_state_dir
from hillclimb.serve.flywheel import FILENAME as FLYWHEEL_FILE

# Server state (the usage/credits database and its -wal/-shm files) lives in a per-user state
# directory, not the current one: `hillclimb serve` started from a checkout must not leave files
# in it. XDG Base Directory spec: $XDG_STATE_HOME (an absolute path), else ~/.local/state.
DEFAULT_DB = "usage.sqlite"


def usage_db_path(db: Path | None, state_dir: Path | None) -> Path:
    """The usage database: an explicit `--db` wins; else `DEFAULT_DB` in the state directory."""
    if db is not None:
        return db
    return (state_dir if state_dir is not None else default_state_dir()) / DEFAULT_DB


def _existing_usage_db(args: argparse.Namespace) -> Path:
    """The usage database `hillclimb keys` reads (`--db`, `--state-dir`); it must exist."""
    path = usage_db_path(args.db, args.state_dir)
    if not path.is_file():
        raise HillclimbError(f"no usage database at {path}")
    return path


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="OpenAI-compatible server for thinking / code-flash / auto")
    s.add_argument(
        "--thinking",
        type=Path,
        default=None,
        help="thinking checkpoint directory, or a registry alias such as thinking@prod",
    )
    s.add_argument(
        "--flash",
        type=Path,
        default=None,
        help="code-flash checkpoint directory, or a registry alias such as code-flash@prod",
    )
    s.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry that resolves MODEL@TAG aliases (default STATE_DIR/registry.sqlite)",
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--keys",
        type=Path,
        default=None,
        help="API keys file (JSON or TOML): key -> {name, credits, rate_limit_rpm}; "
        "HILLCLIMB_API_KEYS is read too. No keys anywhere = open mode",
    )
    s.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="directory for server state: the usage/credits database "
        f"(default $XDG_STATE_HOME/hillclimb or ~/.local/state/hillclimb; file {DEFAULT_DB})",
    )
    s.add_argument(
        "--db",
        type=Path,
        default=None,
        help=f"SQLite usage/credits database (default STATE_DIR/{DEFAULT_DB}; overrides "
        "--state-dir)",
    )
    s.add_argument(
        "--prices",
        type=Path,
        default=None,
        help="prices file {model: {prompt, completion}} in credits per million tokens "
        "(default: proportional to active parameters)",
    )
    s.add_argument("--router", type=Path, default=None, help="trained router file for 'auto'")
    s.add_argument("--max-batch", type=int, default=16, help="engine batch slots per model")
    s.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    spec = s.add_mutually_exclusive_group()
    spec.add_argument(
        "--no-speculative", action="store_true", help="do not let code-flash draft for thinking"
    )
    spec.add_argument(
        "--draft",
        action="store_true",
        help="attach code-flash as thinking's draft model without measuring (default: measure "
        "the pair's step costs at start-up and attach it only when the expected speedup at "
        "acceptance 0.6 is at least 1.05x)",
    )
    s.add_argument(
        "--prefix-cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep finished requests' KV in idle slots and reuse shared prompt prefixes "
        "(conversation history, system prompts) instead of prefilling them (default: on)",
    )
    s.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads for the engines (default on CPU: 1 for models with "
        "d_model <= 512, leaving a core to the HTTP event loop; else all cores)",
    )
    s.add_argument(
        "--stream-interval",
        type=float,
        default=None,
        help="seconds between two SSE writes of one stream (default: auto = 0 while a model "
        "runs <= 4 requests, 0.015 above; the first token is never held back)",
    )
    s.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the decode steps (single-stream, multi-token verification and batched) with torch.compile/inductor "
        "(default: on for CPU; ≈10 s per graph at start-up, cached on disk; falls back to eager)",
    )
    s.add_argument(
        "--engine-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the engines in a child process, so HTTP work and decode steps use separate "
        "cores (default: on; --no-engine-process keeps one process)",
    )
    s.add_argument(
        "--default-max-tokens",
        type=int,
        default=1024,
        help="chat max_tokens when a request sends none (capped by the context)",
    )
    s.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    s.set_defaults(func=_serve, _parser=s)

    c = sub.add_parser("chat", help="terminal chat against a server (or checkpoints)")
    c.add_argument("--url", default=None, help="any OpenAI-compatible base URL (…/v1 optional)")
    c.add_argument("--thinking", type=Path, default=None, help="start a local server on this")
    c.add_argument("--flash", type=Path, default=None, help="start a local server on this")
    c.add_argument("--model", default="auto")
    c.add_argument(
        "--api-key",
        default=None,
        help="Bearer key (default: $HILLCLIMB_API_KEY or $OPENAI_API_KEY)",
    )
    c.add_argument("--system", default=None, help="system prompt")
    c.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="completion tokens per answer (default: the server's, capped by what the "
        "context leaves; a fixed 512 overflowed a 512-token model's context on the first turn)",
    )
    c.add_argument("--temperature", type=float, default=0.7)
    c.add_argument("--reasoning-effort", choices=["low", "medium", "high"], default=None)
    c.add_argument(
        "--show-thinking",
        action="store_true",
        help="print reasoning in full (default: dimmed, collapsed to its last line)",
    )
    c.set_defaults(func=_chat, _parser=c)

    k = sub.add_parser("keys", help="API keys, credits and usage (operators)")
    ksub = k.add_subparsers(dest="keys_command", metavar="COMMAND")
    k.set_defaults(_parser=k)
    kc = ksub.add_parser("create", help="create an account and print its new API key once")
    _db_args(kc)
    kc.add_argument("--name", required=True, help="account name")
    kc.add_argument("--credits", type=float, default=None, help="initial credits (omit: unlimited)")
    kc.add_argument("--rpm", type=float, default=None, help="rate limit, requests per minute")
    kc.add_argument("--json", action="store_true", help="print the account and key as JSON")
    kc.set_defaults(func=_keys_create, _parser=kc)
    ka = ksub.add_parser("credit", help="add credits to an account")
    _db_args(ka)
    ka.add_argument("--name", required=True, help="account name")
    ka.add_argument("--add", type=float, required=True, help="credits to add")
    ka.set_defaults(func=_keys_credit, _parser=ka)
    kr = ksub.add_parser(
        "revoke",
        help="revoke an account's key: refused from its next request, even by a running server, "
        "and after restarts (usage and balance are kept)",
    )
    _db_args(kr)
    kr.add_argument("--name", required=True, help="account name")
    kr.add_argument("--restore", action="store_true", help="accept the revoked key again")
    kr.set_defaults(func=_keys_revoke, _parser=kr)
    ku = ksub.add_parser("usage", help="per-account balance and token usage")
    _db_args(ku)
    ku.add_argument("--json", action="store_true", help="print the usage report as JSON")
    ku.set_defaults(func=_keys_usage, _parser=ku)
    kn = ksub.add_parser(
        "consent",
        help="whether an account's requests may become training data (the flywheel; off "
        "unless turned on here)",
    )
    _db_args(kn)
    kn.add_argument("--name", required=True, help="account name")
    on_off = kn.add_mutually_exclusive_group(required=True)
    on_off.add_argument("--on", action="store_true", help="the account opted in")
    on_off.add_argument("--off", action="store_true", help="the account opted out (default)")
    kn.set_defaults(func=_keys_consent, _parser=kn)


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        help=f"usage database (default: the server's, STATE_DIR/{DEFAULT_DB})",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="server state directory (default $XDG_STATE_HOME/hillclimb or "
        "~/.local/state/hillclimb)",
    )


def _serve(args: argparse.Namespace) -> int:
    import logging

    from hillclimb.serve.server import load_state, serve_forever

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.thinking is None and args.flash is None:
        raise HillclimbError("give --thinking DIR and/or --flash DIR")
    if args.max_batch < 1:
        raise HillclimbError("--max-batch must be >= 1")
    if args.stream_interval is not None and not 0 <= args.stream_interval <= 1:
        raise HillclimbError("--stream-interval must be between 0 and 1 second")
    if args.threads is not None and args.threads < 1:
        raise HillclimbError("--threads must be >= 1")
    if args.state_dir is not None and args.state_dir.exists() and not args.state_dir.is_dir():
        raise HillclimbError(f"--state-dir {args.state_dir} exists and is not a directory")
    if args.default_max_tokens < 1:
        raise HillclimbError(f"--default-max-tokens must be >= 1, got {args.default_max_tokens}")
    check_router(args.router, args.thinking, args.flash)
    check_device(args.device)
    check_bind(args.host, args.port)
    db = usage_db_path(args.db, args.state_dir)
    thinking, flash = (_checkpoint_or_alias(p, args) for p in (args.thinking, args.flash))
    state = load_state(thinking, flash, db=db, keys_file=args.keys,
                       env_keys=os.environ.get("HILLCLIMB_API_KEYS"), prices_file=args.prices,
                       router_file=args.router, max_batch=args.max_batch, device=args.device,
                       speculative=speculative_option(args),
                       default_max_tokens=args.default_max_tokens,
                       compile=args.compile, stream_interval=args.stream_interval,
                       threads=args.threads, engine_process=args.engine_process,
                       log_level=args.log_level, prefix_cache=args.prefix_cache,
                       flywheel=db.parent / FLYWHEEL_FILE)  # fmt: skip
    line = draft_line(state)
    if line:
        print(line, flush=True)
    serve_forever(state, args.host, args.port, log_level=args.log_level)
    return 0


def speculative_option(args: argparse.Namespace) -> bool | None:
    """`--draft` → True (attach), `--no-speculative` → False, neither → None: measured at
    start-up (`host.choose_draft`)."""
    if args.no_speculative:
        return False
    return True if args.draft else None


def draft_line(state: Any) -> str | None:
    """The start-up line on thinking's draft model (printed before the banner), or None when
    not both models are served. /health's `speculative` and /v1/models' `speculative_draft`
    say the same."""
    m = (getattr(state, "models", None) or {}).get("thinking")
    decision = getattr(m.engine, "draft_decision", None) if m is not None else None
    if not decision:
        return None
    on = "code-flash drafts for thinking" if decision["attached"] else "no draft model"
    return f"  speculative decoding ({decision['policy']}): {on}: {decision['reason']}"


def check_router(router: Path | None, thinking: Path | None, flash: Path | None) -> None:
    """`--router FILE` is read and checked before any checkpoint loads.

    Why: the router is only built when both models are served, so with one model the file was
    never read — a missing or wrong file was silently ignored and the server started; with both,
    a missing file was only noticed after every checkpoint had loaded (and compiled)."""
    if router is None:
        return
    if thinking is None or flash is None:
        raise HillclimbError(
            "--router routes model 'auto' between two models: give both --thinking and --flash, "
            "or drop --router"
        )
    from hillclimb.serve.router import Router

    Router.load(router, None)  # a missing, unreadable or malformed file is a clear error


def check_device(device: str | None) -> None:
    """A `--device` torch cannot parse, or a CUDA device on a machine without one, is a one-line
    error before any checkpoint is read (it used to be a torch traceback from the engine)."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise HillclimbError(f"--device {device!r} is not a torch device: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HillclimbError(f"--device {device}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise HillclimbError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )


def check_bind(host: str, port: int) -> None:
    """Bind `host:port` once and let it go, before the models load.

    Why: uvicorn binds only after every checkpoint is loaded (and compiled), so a port out of
    range was an OverflowError traceback, and a busy port, an unknown host name or an address
    this machine does not have an exit 3 — each after a long start-up. A socket with
    SO_REUSEADDR (as uvicorn's) is closed at once, so it does not hold the port."""
    import socket

    if not 0 <= port <= 65535:
        raise HillclimbError(f"--port must be between 0 and 65535, got {port}")
    if host == "":  # every interface, as uvicorn/asyncio read an empty host
        family, addr = socket.AF_INET, ("", port)
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise HillclimbError(f"--host {host!r} does not resolve: {exc}") from None
        family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise HillclimbError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _checkpoint_or_alias(path: Path | None, args: argparse.Namespace) -> Path | None:
    """A checkpoint directory as given, or the one a registry alias (`thinking@prod`, not an
    existing path) points at; unknown aliases and deleted checkpoints are clear errors."""
    if path is None or path.exists() or "@" not in str(path):
        return path
    from hillclimb.registry.db import Registry, registry_path

    where = registry_path(args.registry, args.state_dir)
    if not where.is_file():
        raise HillclimbError(f"{path} is not a checkpoint directory, and no registry at {where} "
                             "resolves it as an alias (--registry PATH)")  # fmt: skip
    with Registry(where, create=False) as reg:
        return reg.serve_path(str(path))


def _chat(args: argparse.Namespace) -> int:
    from hillclimb.serve.chat_cli import run_chat

    key = client_api_key(args.api_key)
    if args.url is None and args.thinking is None and args.flash is None:
        raise HillclimbError("give --url URL, or --thinking DIR and/or --flash DIR")
    if args.url is not None and (args.thinking or args.flash):
        raise HillclimbError("give either --url or checkpoints, not both")
    return run_chat(url=args.url, thinking=args.thinking, flash=args.flash, model=args.model,
                    api_key=key, system=args.system, max_tokens=args.max_tokens,
                    temperature=args.temperature, reasoning_effort=args.reasoning_effort,
                    show_thinking=args.show_thinking)  # fmt: skip


def _keys_create(args: argparse.Namespace) -> int:
    from hillclimb.serve.billing import UsageDB

    path = usage_db_path(args.db, args.state_dir)
    db = UsageDB(path)
    key = db.create_account(args.name, args.credits, args.rpm)
    acc = db.account_by_name(args.name)
    if args.json:
        print(json.dumps({"name": acc.name, "key": key, "credits": acc.credits,
                          "rate_limit_rpm": acc.rate_limit_rpm, "db": str(path)}))  # fmt: skip
    else:
        credits = "unlimited" if acc.credits is None else f"{acc.credits:g}"
        print(f"created account {acc.name!r} (credits {credits}, rate limit "
              f"{acc.rate_limit_rpm or 'none'} rpm) in {path}")  # fmt: skip
        print(f"API key (shown once, store it now): {key}")
    # open mode is decided at start-up: a server already running on this database that started
    # without accounts keeps serving without keys until it is restarted
    print(
        "note: a server already running on this database in open mode keeps serving without "
        "keys until it is restarted",
        file=sys.stderr,
    )
    return 0


def _keys_credit(args: argparse.Namespace) -> int:
    from hillclimb.serve.billing import UsageDB

    path = _existing_usage_db(args)
    acc = UsageDB(path).add_credits(args.name, args.add)
    credits = "unlimited" if acc.credits is None else f"{acc.credits:g}"
    print(f"{acc.name}: balance {credits} credits")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from hillclimb.serve.billing import UsageDB

    acc = UsageDB(_existing_usage_db(args)).set_revoked(args.name, not args.restore)
    state = "revoked: its key is refused" if acc.disabled else "restored: its key is accepted"
    print(f"{acc.name}: {state} from the next request on")
    return 0


def _keys_consent(args: argparse.Namespace) -> int:
    from hillclimb.serve.billing import UsageDB
    from hillclimb.serve.flywheel import FlywheelStore

    path = _existing_usage_db(args)
    # an unknown account is a clear error; consent is kept under the account's key, so a name
    # later given to another key does not carry it over
    acc = UsageDB(path).account_by_unique_name(args.name)
    with FlywheelStore(path.parent / FLYWHEEL_FILE) as fw:
        fw.set_consent(acc.name, bool(args.on), key_id=acc.key_hash or None)
    state = "may" if args.on else "may not"
    print(f"{args.name}: requests from now on {state} become training data ({fw.path})")
    return 0


def _keys_usage(args: argparse.Namespace) -> int:
    from hillclimb.serve.billing import UsageDB

    path = _existing_usage_db(args)
    usage = UsageDB(path).usage()
    if args.json:
        print(json.dumps(usage, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"usage: {path}")
    for col in ("account", "balance", "requests", "prompt", "completion", "reasoning", "spent",
                "held", "rpm"):  # fmt: skip
        t.add_column(col, justify="left" if col == "account" else "right")
    for a in usage["accounts"]:
        bal = "unlimited" if a["unlimited"] else f"{a['credits']:.6g}"
        t.add_row(
            a["name"],
            bal,
            str(a["requests"]),
            str(a["prompt_tokens"]),
            str(a["completion_tokens"]),
            str(a["reasoning_tokens"]),
            f"{a['spent']:.6g}",
            f"{a['held']:.6g}",
            f"{a['rate_limit_rpm']:g}" if a["rate_limit_rpm"] else "-",
        )
    Console().print(t)
    return 0
