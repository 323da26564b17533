"""`hillclimb sandbox run|check`: the sandbox as a command (the library is `sandbox/core.py`).

`run` copies the workspace to a throw-away directory by default (the original is never touched by
the command); `--in-place` runs on the directory itself, which is what the harness does on its own
per-episode copy. The exit code mirrors the command's so scripts can chain it: the command's own
code for ok/error, 124 timeout (as coreutils `timeout`), 137 memory, 128+N for a signal, 153 when
the workspace went over its disk quota (128 + SIGXFSZ, the file-size signal), 125 when the sandbox
could not be set up. `check` says which backend would run and why the others would not.
"""

from __future__ import annotations

import argparse
import json
import sys

_EXIT = {"timeout": 124, "memory": 137, "disk": 153, "refused": 125}


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("sandbox", help="run a command isolated (no network, workspace-only)")
    gsub = group.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    group.set_defaults(_parser=group)

    run = gsub.add_parser(
        "run",
        help="run CMD in a sandboxed copy of a workspace",
        description="Run CMD (after --) in a sandbox whose only writable host path is a copy of "
        "the workspace: no network, own PID/mount/IPC namespaces, rlimits, wall-clock timeout.",
    )
    run.add_argument("--workspace", required=True, help="directory the command runs in")
    run.add_argument("--timeout", type=float, default=30.0, help="wall-clock seconds (30)")
    run.add_argument("--memory", type=int, default=1024, help="address-space limit, MB (1024)")
    run.add_argument("--cpu", type=int, default=None, help="CPU-time limit, s (timeout + 1)")
    run.add_argument("--max-procs", type=int, default=128, help="processes + threads (128)")
    run.add_argument("--max-file-mb", type=int, default=256, help="largest file written (256)")
    run.add_argument(
        "--max-workspace-mb",
        type=int,
        default=2048,
        help="disk quota: what the workspace may hold during the run (2048)",
    )
    run.add_argument(
        "--max-memory-mb",
        type=int,
        default=None,
        help="all the run's memory, memory-backed files included (4 x --memory; needs a "
        "writable memory cgroup, `sandbox check` says)",
    )
    run.add_argument("--max-output", type=int, default=1 << 20, help="bytes kept per stream")
    run.add_argument("--in-place", action="store_true", help="run on the workspace itself")
    run.add_argument(
        "--backend",
        choices=["bwrap", "unshare", "unsafe"],
        default=None,
        help="isolation backend (default: the best that works here; `sandbox check` says which)",
    )
    run.add_argument(
        "--unsafe", action="store_true", help="allow running WITHOUT isolation if none works"
    )
    run.add_argument("--stdin", default=None, help="file whose bytes are fed to stdin ('-': ours)")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    run.set_defaults(func=_cmd_run, _parser=run)

    check = gsub.add_parser("check", help="which isolation backend works here, and why not others")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_cmd_check, _parser=check)


def _cmd_run(args: argparse.Namespace) -> int:
    from hillclimb.errors import HillclimbError
    from hillclimb.sandbox.core import SandboxLimits, run_sandboxed

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise HillclimbError("sandbox run: no command given (use: -- CMD [ARGS...])")
    stdin = None
    if args.stdin == "-":
        stdin = sys.stdin.buffer.read()
    elif args.stdin is not None:
        try:
            with open(args.stdin, "rb") as f:
                stdin = f.read()
        except OSError as exc:
            raise HillclimbError(f"sandbox run: cannot read --stdin file: {exc}") from exc
    limits = SandboxLimits(
        timeout_s=args.timeout,
        memory_mb=args.memory,
        cpu_s=args.cpu,
        max_procs=args.max_procs,
        max_file_mb=args.max_file_mb,
        max_output_bytes=args.max_output,
        max_workspace_mb=args.max_workspace_mb,
        max_memory_mb=args.max_memory_mb,
    )
    res = run_sandboxed(
        cmd,
        args.workspace,
        limits,
        copy_workspace=not args.in_place,
        stdin=stdin,
        unsafe=args.unsafe or args.backend == "unsafe",
        backend=args.backend,
    )
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
    else:
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        if res.status != "ok" or res.stdout_truncated or res.stderr_truncated:
            trunc = [
                s
                for s, t in (("stdout", res.stdout_truncated), ("stderr", res.stderr_truncated))
                if t
            ]
            print(
                f"hillclimb sandbox: status={res.status} exit_code={res.exit_code} "
                f"after {res.duration_s:.2f}s (backend {res.backend})"
                + (f"; truncated: {', '.join(trunc)}" if trunc else ""),
                file=sys.stderr,
            )
    if res.status in ("ok", "error"):
        return int(res.exit_code or 0) & 0xFF or (0 if res.status == "ok" else 1)
    if res.status == "killed" and res.exit_code is not None:
        return 128 + abs(res.exit_code)
    return _EXIT.get(res.status, 1)


def _cmd_check(args: argparse.Namespace) -> int:
    from hillclimb.sandbox.core import _no_backend_error, backend_report, sandbox_backend
    from hillclimb.sandbox.memcg import memcg_report

    report = backend_report()
    memcg = memcg_report()
    chosen = sandbox_backend()
    # why none was selected, in the variable's words when it forces one (a typo listed both
    # backends as working, then "selected: none" with no reason; session 23)
    why = None if chosen else str(_no_backend_error())
    if args.json:
        out = {"backend": chosen, "backends": report, "why_none": why, "memory_cgroup": memcg}
        print(json.dumps(out, indent=2))
    else:
        for name, info in report.items():
            mark = "yes" if info["available"] else "no "
            print(f"{name:8s} {mark}  {info['reason']}")
        mark = "yes" if memcg["available"] else "no "
        print(f"{'memcg':8s} {mark}  {memcg['reason']}")
        if chosen:
            print(f"selected: {chosen}")
        else:
            print("selected: none — `sandbox run` refuses unless --unsafe (no isolation)")
            print(f"why: {why}")
    return 0 if chosen else 1
