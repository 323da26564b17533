"""The one `hillclimb` entry point.

Why argparse and a registry of per-package `register()` functions: each stage package owns its
own subcommands (in `<package>/cli.py`), so stages evolve independently and `hillclimb --help`
stays fast — a `register()` only declares arguments; heavy imports (torch, tokenizers, fastapi)
happen inside the handler that runs.

A handler is `fn(args) -> int | None`; an exception of type `HillclimbError` is printed as a
one-line error (exit 2) instead of a traceback, because bad input deserves a clear message; so is
an `OSError` no handler anticipated (exit 2 for an unusable path, 1 for e.g. a full disk).
Ctrl-C is `hillclimb: interrupted`, exit 130.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys

from hillclimb.errors import HillclimbError

# Packages that contribute subcommands, in help order. Each module defines
# `register(subparsers: argparse._SubParsersAction) -> None`.
COMMAND_MODULES = [
    "hillclimb.model.cli",  # init, model info, export
    "hillclimb.data.cli",  # data build
    "hillclimb.problems.cli",  # problems describe/show/export
    "hillclimb.tokenizer.cli",  # tokenizer train|eval
    "hillclimb.train.cli",  # train, sft
    "hillclimb.rl.cli",  # rl
    "hillclimb.eval.cli",  # eval
    "hillclimb.eval.routing_cli",  # router fit
    "hillclimb.eval.arena.cli",  # arena
    "hillclimb.climb",  # climb
    "hillclimb.registry.cli",  # registry list|show|compare|add|add-eval|alias, promote
    "hillclimb.sandbox.cli",  # sandbox run, sandbox check
    "hillclimb.harness.cli",  # harness, telemetry
    "hillclimb.serve.cli",  # serve, chat, bench serve
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hillclimb",
        description="Build, train, evaluate and serve the thinking + code-flash sparse-MoE pair.",
    )
    from hillclimb import __version__

    parser.add_argument("--version", action="version", version=f"hillclimb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


# OSError numbers that mean the path given was unusable (bad input: exit 2, as a
# HillclimbError); any other OSError (disk full, I/O error) is a runtime failure (exit 1).
_BAD_PATH_ERRNOS = {
    errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP,
    errno.EACCES, errno.EPERM, errno.EROFS, errno.EXDEV, errno.ENOTEMPTY,
}  # fmt: skip


def _os_error_text(exc: OSError) -> str:
    """`File name too long: 'aaa…'`: the reason and the path(s), without the `[Errno N]`."""
    text = exc.strerror or str(exc)
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    return text + "".join(f": {os.fsdecode(n) if isinstance(n, bytes) else n!r}" for n in names)


def _pass_undecodable_names_through(stream: object = None) -> None:
    """A file name that is not UTF-8 (`--out $'bad\\xff'`) reaches us as surrogate escapes;
    printing it ("wrote bad\\udcff") raised UnicodeEncodeError under a UTF-8 locale (stdout errors
    'strict'), a traceback after the work was done. Write the name's own bytes back instead, as
    Python already does under the C locale and as `ls` does; other text is unaffected.

    On a stdout that is not UTF-8 (a Latin-1 or ASCII locale, `PYTHONIOENCODING=ascii`), any
    character it cannot hold — the `→` of every climb progress line, `×` in a problem, a table's
    box drawing — raised the same error (session 23: `hillclimb climb` under Latin-1 died
    with a traceback printing its summary, after the work). There it is written as a backslash
    escape, as Python already does for stderr, so the output stays readable and the command
    finishes."""
    stream = sys.stdout if stream is None else stream
    if getattr(stream, "errors", None) != "strict" or not hasattr(stream, "reconfigure"):
        return
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("_", "-")
    utf8 = encoding in ("utf-8", "utf8")
    with contextlib.suppress(Exception):
        stream.reconfigure(errors="surrogateescape" if utf8 else "backslashreplace")


def main(argv: list[str] | None = None) -> int:
    # Spin-waiting OpenMP threads collapse throughput when cores are oversubscribed (measured
    # 10-160x on 2-core CPUs, docs/LOG.md); must be set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _pass_undecodable_names_through()
    try:
        # building the parser imports every stage's cli module (~0.2 s): Ctrl-C there is an
        # interrupt like any other, not a traceback
        parser = build_parser()
        args = parser.parse_args(argv)
        handler = getattr(args, "func", None)
        if handler is None:
            # `hillclimb` or `hillclimb model` with no leaf command: show the relevant help.
            (getattr(args, "_parser", None) or parser).print_help()
            return 0 if args.command is None else 2
        rc = handler(args)
        # a closed pipe shows here, not as a traceback at interpreter exit; `>&-` (no stdout
        # at all) leaves sys.stdout None, where print() writes nothing and flush() would fail
        if sys.stdout is not None:
            sys.stdout.flush()
    except HillclimbError as exc:
        print(f"hillclimb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hillclimb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `hillclimb registry list --json | head`: the reader left; stop quietly, as `cat` does
        # (exit 128 + SIGPIPE). Output still buffered goes to /dev/null, not to another error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # what no handler checked for (a name over 255 bytes, a full disk): one line, as for
        # any other bad input, instead of a traceback from wherever the path was first touched
        print(f"hillclimb: error: {_os_error_text(exc)}", file=sys.stderr)
        return 2 if exc.errno in _BAD_PATH_ERRNOS else 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
