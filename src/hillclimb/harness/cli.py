"""CLI: `hillclimb harness run|grade|generate`, `hillclimb telemetry export|stats|feedback`.

`hillclimb sandbox ...` lives in `hillclimb/sandbox/cli.py`, registered by the top-level COMMAND_MODULES
list (once; this module does not mount it again). Heavy work is imported inside the handlers so
`hillclimb --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.io import client_api_key
from hillclimb.serve.drafter_choice import MODEL_FREE_DRAFTERS


def register(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser("harness", help="agent harness: run models on tasks, grade, generate tasks")
    hs = h.add_subparsers(dest="harness_command", metavar="SUBCOMMAND")
    h.set_defaults(_parser=h)

    run = hs.add_parser(
        "run",
        help="run a model on every task in a directory",
        description="Run a model (an OpenAI-compatible URL, a checkpoint directory, or "
        "'reference') through the tool loop on every task; writes OUT/trajectories/*.json, "
        "OUT/results.jsonl, OUT/summary.json and a telemetry database. Resumable.",
    )
    run.add_argument(
        "--tasks",
        required=True,
        help="a task directory, or a folder of tasks (also in group folders up to 3 levels "
        "down, e.g. a climb's 12-eval/harness-tasks)",
    )
    run.add_argument(
        "--model", required=True, help="http(s)://host/v1 | checkpoint DIR | reference"
    )
    run.add_argument(
        "--model-name",
        default=None,
        help="model id sent to an endpoint (default: the only model its /models lists)",
    )
    run.add_argument(
        "--api-key",
        default=None,
        help="bearer token (default: $HILLCLIMB_API_KEY, else $OPENAI_API_KEY)",
    )
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--max-steps", type=int, default=30, help="model turns per episode (30)")
    run.add_argument(
        "--max-tokens-per-turn",
        type=int,
        default=None,
        help="completion tokens asked for per turn (default: what the model's context leaves — "
        "a checkpoint's context minus the conversation, an endpoint's own cap; given, a local "
        "checkpoint still gets at most what its context has left). The episode ends "
        "context_exhausted when nothing is left",
    )
    run.add_argument(
        "--max-total-tokens",
        type=int,
        default=200_000,
        help="prompt + completion tokens summed over an episode's turns (200000)",
    )
    run.add_argument("--wall", type=float, default=900.0, help="seconds per episode (900)")
    run.add_argument(
        "--max-errors", type=int, default=3, help="consecutive malformed turns allowed"
    )
    run.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0)")
    run.add_argument("--seed", type=int, default=0, help="sampling seed; turn i uses seed + i")
    run.add_argument("--concurrency", type=int, default=1, help="episodes run at once (1)")
    run.add_argument("--request-timeout", type=float, default=300.0, help="HTTP timeout, s")
    run.add_argument("--telemetry", default=None, help="SQLite file (default OUT/telemetry.db)")
    run.add_argument("--no-telemetry", action="store_true", help="record no telemetry")
    run.add_argument(
        "--unsafe", action="store_true", help="allow running without sandbox isolation"
    )
    run.add_argument(
        "--no-check-tasks",
        action="store_true",
        help="skip grading each untouched repository first (tasks that already grade resolved "
        "end task_invalid and are not counted; the check costs one test run per task)",
    )
    run.add_argument(
        "--drafter",
        choices=MODEL_FREE_DRAFTERS,
        default="none",
        help="a checkpoint's model-free draft source (prompt lookup, or suffix drafting over the "
        "engine's earlier outputs too): drafts are checked against the model's own choice, so "
        "greedy episodes are the same, only the time differs (none)",
    )
    run.add_argument(
        "--no-guided-tools",
        dest="guided_tools",
        action="store_false",
        help="a checkpoint's raw tool calls: by default each <tool_call> body is decoded under "
        "the tools' JSON schema (serve/tool_grammar.py), so calls always parse and name a real "
        "tool; off shows what the model writes unaided (a resumed run must keep the setting)",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=_cmd_run, _parser=run)

    grade = hs.add_parser("grade", help="grade a task's repo with a patch applied (or untouched)")
    grade.add_argument("--task", required=True, help="task directory")
    grade.add_argument("--patch", default=None, help="unified diff file (default: no patch)")
    grade.add_argument("--answer", default=None, help="answer for repo_qa tasks")
    grade.add_argument("--solution", action="store_true", help="grade the task's own solution")
    grade.add_argument(
        "--unsafe", action="store_true", help="allow grading without sandbox isolation"
    )
    grade.add_argument("--json", action="store_true", help="print the grade as JSON")
    grade.set_defaults(func=_cmd_grade, _parser=grade)

    gen = hs.add_parser("generate", help="generate verified tasks from the built-in corpus")
    gen.add_argument("--out", required=True, help="output directory (one sub-directory per task)")
    gen.add_argument("--n", type=int, required=True, help="number of tasks to generate")
    gen.add_argument(
        "--seed", type=int, default=0, help="generator seed (0); same seed, same tasks"
    )
    gen.add_argument(
        "--kinds",
        nargs="+",
        default=None,
        help="task kinds to draw from: bugfix feature refactor repo_qa terminal (default: all)",
    )
    gen.add_argument(
        "--languages", nargs="+", default=None,
        help="python (default) and/or javascript (bugfix, feature, repo_qa; needs node)",
    )  # fmt: skip
    gen.add_argument(
        "--split", choices=["all", "train", "heldout", "heldout_mutations"], default="all",
        help="what to draw from: train (never the held-out projects, never a held-out mutation "
        "site), heldout (only the held-out projects: evaluation on code never trained on), "
        "heldout_mutations (bugfix/feature at the held-out sites of the training projects: new "
        "mutations of code trained on), all (default)",
    )  # fmt: skip
    gen.add_argument("--multi-prob", type=float, default=0.3, help="chance of a two-package repo")
    gen.add_argument(
        "--unsafe",
        action="store_true",
        help="verify tasks without sandbox isolation (when no sandbox backend works)",
    )
    gen.add_argument("--json", action="store_true", help="print the summary as JSON")
    gen.set_defaults(func=_cmd_generate, _parser=gen)

    t = sub.add_parser("telemetry", help="the edit/episode telemetry database (data flywheel)")
    ts = t.add_subparsers(dest="telemetry_command", metavar="SUBCOMMAND")
    t.set_defaults(_parser=t)
    exp = ts.add_parser("export", help="SFT examples and RL prompts from recorded episodes")
    exp.add_argument(
        "--db",
        default=None,
        help="telemetry database (harness run's OUT/telemetry.db); optional with --served "
        "(a server's users only, no harness episodes)",
    )
    exp.add_argument("--out", required=True, help="output directory for the SFT/RL files")
    exp.add_argument(
        "--require-accepted", action="store_true", help="SFT only from user-accepted episodes"
    )
    exp.add_argument(
        "--served",
        default=None,
        help="also export what API users accepted (opted-in accounts only): the server's "
        "flywheel database, STATE_DIR/flywheel.sqlite of `hillclimb serve`",
    )
    exp.add_argument("--json", action="store_true", help="print the counts as JSON")
    exp.set_defaults(func=_cmd_export, _parser=exp)
    st = ts.add_parser("stats", help="counts, resolve rates, tokens, edits, feedback")
    st.add_argument("--db", required=True, help="telemetry database")
    st.add_argument("--json", action="store_true", help="print the stats as JSON")
    st.set_defaults(func=_cmd_stats, _parser=st)
    fb = ts.add_parser("feedback", help="record a user's accept/reject of an edit or episode")
    fb.add_argument("--db", required=True, help="telemetry database")
    target = fb.add_mutually_exclusive_group(required=True)
    target.add_argument("--edit", type=int, help="edit id (telemetry stats lists them)")
    target.add_argument("--episode", help="episode id")
    verdict = fb.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--accept", action="store_true", help="the user kept it")
    verdict.add_argument("--reject", action="store_true", help="the user threw it away")
    fb.add_argument("--source", default="user", help="who gave the verdict (user)")
    fb.add_argument("--note", default=None, help="free-text note stored with the verdict")
    fb.set_defaults(func=_cmd_feedback, _parser=fb)


def _print(obj: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2))
        return
    from rich.console import Console

    Console().print_json(json.dumps(obj))


def _served_model(url: str, key: str | None, timeout: float) -> str:
    """The model at `url` when `--model-name` is not given: the only one its `/models` lists
    (besides our router's `auto`), else an error naming them ("default" when nothing is listed
    there: the episodes then fail per task, as an unreachable endpoint does). Every task used to ask for
    "default", which our server (and vLLM) answer with 404: each task ended `model_error`."""
    import httpx

    from hillclimb.io import pick_served_model

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    base = url.rstrip("/")
    try:
        r = httpx.get(base + "/models", headers=headers, timeout=min(timeout, 30.0))
        r.raise_for_status()
        data = r.json().get("data")
        ids = [m.get("id") for m in data if isinstance(m, dict)] if isinstance(data, list) else []
    except (httpx.HTTPError, ValueError, AttributeError):
        # unreachable or no model list: the run goes on and each task records why it failed
        # (`model_error`, retried on resume), as before
        return "default"
    try:
        return pick_served_model(base, [i for i in ids if isinstance(i, str)])
    except HillclimbError as exc:
        raise HillclimbError(f"{exc} (--model-name NAME)") from None


def make_client(
    model: str,
    model_name: str | None,
    api_key: str | None,
    timeout: float,
    concurrency: int = 1,
    drafter: str = "none",
    guided_tools: bool = True,
):
    """A factory of per-episode clients for `model`; `drafter` is a checkpoint engine's draft
    source (`serve.drafter_choice.MODEL_FREE_DRAFTERS`), refused for a URL or the reference
    agent, where it would do nothing while the run said it drafted."""
    from hillclimb.harness.clients import LocalClient, OpenAIClient, ReferenceClient
    from hillclimb.serve.drafter_choice import check_drafter

    check_drafter(drafter)
    local_model = model != "reference" and not model.startswith(("http://", "https://"))
    if drafter != "none" and not local_model:
        raise HillclimbError(
            f"--drafter {drafter} applies to a checkpoint directory, not to --model {model}"
        )
    if model == "reference":
        return lambda: ReferenceClient()
    if model.startswith(("http://", "https://")):
        key = client_api_key(api_key)
        name = model_name or _served_model(model, key, timeout)
        return lambda: OpenAIClient(model, name, key, timeout_s=timeout)
    if Path(model).is_dir():
        # one engine for every task and thread: concurrent episodes are batched by it instead
        # of each task loading its own model copy (the caller starts and stops it: `.engine`)
        from hillclimb.serve.engine import Engine

        engine = Engine.from_checkpoint(model, max_batch=max(1, concurrency), drafter=drafter)

        def local() -> LocalClient:
            return LocalClient(engine=engine, name=Path(model).name, guided_tools=guided_tools)

        local.engine = engine  # type: ignore[attr-defined]
        return local
    raise HillclimbError(
        f"--model {model!r} is neither an http(s) URL, a directory, nor 'reference'"
    )


def _out_dir_ok(out: Path, flag: str = "--out") -> None:
    """An output directory may exist (runs resume, exports refresh) but must be a directory."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise HillclimbError(f"{flag} {out}: {p} exists and is not a directory")
            return


def _check_run_args(args: argparse.Namespace) -> None:
    """Bad limits fail here with one line, before a model loads or anything is written."""
    if args.concurrency < 1 or args.max_steps < 1:
        raise HillclimbError("--concurrency and --max-steps must be at least 1")
    _check_guided_resume(Path(args.out), args)
    if args.max_tokens_per_turn is not None and args.max_tokens_per_turn < 1:
        raise HillclimbError(f"--max-tokens-per-turn must be at least 1, got {args.max_tokens_per_turn}")  # fmt: skip
    if args.max_total_tokens < 1:
        raise HillclimbError(f"--max-total-tokens must be at least 1, got {args.max_total_tokens}")
    if args.max_errors < 0:
        raise HillclimbError(f"--max-errors must be >= 0, got {args.max_errors}")
    for flag, value in (("--wall", args.wall), ("--request-timeout", args.request_timeout)):
        if not math.isfinite(value) or value <= 0:
            raise HillclimbError(f"{flag} must be a positive number of seconds, got {value}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise HillclimbError(f"--temperature must be >= 0, got {args.temperature}")
    _out_dir_ok(Path(args.out))
    if args.telemetry is not None and Path(args.telemetry).is_dir():
        raise HillclimbError(f"--telemetry {args.telemetry} is a directory, not a database file")


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from hillclimb.harness.agent import EpisodeLimits
    from hillclimb.harness.task_runner import run_tasks

    _check_run_args(args)
    factory = make_client(
        args.model, args.model_name, args.api_key, args.request_timeout, args.concurrency,
        drafter=args.drafter, guided_tools=getattr(args, "guided_tools", True),
    )  # fmt: skip
    limits = EpisodeLimits(
        max_steps=args.max_steps, max_tokens_per_turn=args.max_tokens_per_turn,
        max_total_tokens=args.max_total_tokens, wall_s=args.wall,
        max_consecutive_errors=args.max_errors, temperature=args.temperature, seed=args.seed,
        unsafe=args.unsafe,
    )  # fmt: skip
    out = Path(args.out)
    db = None if args.no_telemetry else (args.telemetry or out / "telemetry.db")
    console = Console(stderr=True)

    def progress(row: dict) -> None:
        if not args.json:
            mark = (
                "[green]resolved[/]"
                if row["resolved"]
                else f"[red]{row['grade_status'] or row['exit_status']}[/]"
            )
            console.print(f"{row['task_id']}: {mark} ({row['exit_status']}, {row['turns']} turns, "
                          f"{row['completion_tokens']} tokens)" + (f" — {row['error']}" if row["error"] else ""))  # fmt: skip

    engine = getattr(factory, "engine", None)
    if engine is not None:
        from hillclimb.serve.engine import running_for_episodes

        running = running_for_episodes(engine)
    else:
        running = contextlib.nullcontext()
    with running:
        report = run_tasks(args.tasks, factory, out, limits, concurrency=args.concurrency,
                           telemetry_path=db, progress=progress,
                           check_tasks=not args.no_check_tasks)  # fmt: skip
    s = report.summary
    _record_settings(out, s, args)
    # every task of the run ended in an error (an endpoint that is down, a wrong URL): a failed
    # run, not a finished one with a 0% resolve rate — the results are kept and resume retries
    failed = s["tasks"] > 0 and s["errors"] == s["tasks"]
    if failed:
        print(
            f"hillclimb: error: every task ended in an error ({s['exit_statuses']}); see "
            f"{out / 'results.jsonl'} — rerun with the same --out to retry them",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(dict(s, skipped=report.skipped, out=str(out)), indent=2))
        return 1 if failed else 0
    table = Table(
        title=f"harness run: {s['resolved']}/{s['tasks']} resolved ({s['resolve_rate']:.1%})"
    )
    for col in ("kind", "tasks", "resolved", "rate", "completion tokens"):
        table.add_column(col)
    for kind, k in s["by_kind"].items():
        table.add_row(
            kind,
            str(k["tasks"]),
            str(k["resolved"]),
            f"{k['resolve_rate']:.1%}",
            str(k["completion_tokens"]),
        )
    Console().print(table)
    print(
        f"exit statuses: {s['exit_statuses']}; skipped (already done): {report.skipped}; out: {out}"
    )
    return 1 if failed else 0


def _local(args: argparse.Namespace) -> bool:
    return args.model != "reference" and not args.model.startswith(("http://", "https://"))


def _check_guided_resume(out: Path, args: argparse.Namespace) -> None:
    """Refuse to resume a checkpoint run under the other tool-call decoding: guided and raw
    episodes differ, and one summary over both would describe neither."""
    f = out / "summary.json"
    if not _local(args) or not f.is_file():
        return
    try:
        before = json.loads(f.read_text(encoding="utf-8")).get("settings", {}).get("guided_tools")
    except (OSError, ValueError, AttributeError):
        return
    if before is not None and bool(before) != bool(getattr(args, "guided_tools", True)):
        was = "guided" if before else "raw (--no-guided-tools)"
        raise HillclimbError(
            f"{out} holds a run with {was} tool calls; resume it with the same setting or "
            "write to another --out"
        )


def _record_settings(out: Path, summary: dict[str, Any], args: argparse.Namespace) -> None:
    """`settings.drafter` and `settings.guided_tools` in the summary (printed and
    OUT/summary.json) of a checkpoint run.

    Why: the run's time depends on the drafter, its greedy trajectories do not; guided tool
    calls change the trajectories (a resume under the other setting is refused)."""
    from hillclimb.io import write_json_atomic

    if args.model == "reference" or args.model.startswith(("http://", "https://")):
        return  # no engine of ours: nothing drafted here
    summary.setdefault("settings", {})["drafter"] = args.drafter
    summary["settings"]["guided_tools"] = bool(getattr(args, "guided_tools", True))
    if (out / "summary.json").is_file():
        write_json_atomic(out / "summary.json", summary)


def _cmd_grade(args: argparse.Namespace) -> int:
    from hillclimb.harness.grading import (
        UNHIDDEN_F2P_WARNING,
        fail_to_pass_hides_nothing,
        grade_patch,
    )
    from hillclimb.harness.task import load_task

    task = load_task(args.task)
    patch = None
    answer = args.answer
    if args.solution:
        if task.kind == "repo_qa":
            answer = task.answers[0]
        elif task.solution_patch is None:
            raise HillclimbError(f"task {task.id} has no solution.patch")
        else:
            try:
                patch = task.solution_patch.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HillclimbError(f"task {task.id}: solution.patch is not UTF-8 text ({exc})") from None  # fmt: skip
    if args.patch:
        p = Path(args.patch)
        if not p.exists():
            raise HillclimbError(f"patch file {p} does not exist")
        if not p.is_file():
            raise HillclimbError(f"patch file {p} is not a regular file")
        patch = p.read_text(encoding="utf-8", errors="replace")
    res = grade_patch(task, patch, answer=answer, unsafe=args.unsafe)
    if args.solution and fail_to_pass_hides_nothing(task, res):
        print(f"warning: {task.id}: {UNHIDDEN_F2P_WARNING}", file=sys.stderr)
    d = res.to_json()
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print(
            f"{task.id} ({task.kind}): {res.status.upper()}"
            + (f" — {res.message}" if res.message else "")
        )
        for key in ("fail_to_pass", "pass_to_pass"):
            if d[key]["passed"] or d[key]["failed"]:
                print(f"  {key}: {len(d[key]['passed'])} passed, {len(d[key]['failed'])} failed")
        for c in d["checks"]:
            print(f"  check {c['check']}: {'ok' if c['ok'] else 'FAILED ' + c['detail']}")
    return 0 if res.resolved else 1


def _cmd_generate(args: argparse.Namespace) -> int:
    from hillclimb.harness.taskgen.generate import generate_tasks

    if not 0.0 <= args.multi_prob <= 1.0:  # also refuses nan
        raise HillclimbError(f"--multi-prob must be between 0 and 1, got {args.multi_prob}")
    _out_dir_ok(Path(args.out))
    progress = None if args.json else (lambda tid: print(f"wrote {tid}", file=sys.stderr))
    s = generate_tasks(args.out, args.n, seed=args.seed, kinds=args.kinds, languages=args.languages,
                       multi_project_prob=args.multi_prob, unsafe=args.unsafe, progress=progress,
                       split=args.split)  # fmt: skip
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(f"generated {s['generated']}/{s['n']} tasks in {args.out}")
        for f in s["failures"]:
            print(f"  {f}")
        for note in s.get("notes", []):
            print(f"  note: {note}")
    return 0 if s["generated"] == s["n"] else 1


def _open_db(path: str):
    from hillclimb.harness.telemetry import Telemetry

    if not Path(path).is_file():
        raise HillclimbError(f"telemetry database {path} does not exist")
    return Telemetry(path)


def _cmd_export(args: argparse.Namespace) -> int:
    from hillclimb.io import refuse_foreign_sqlite
    from hillclimb.serve.flywheel import FlywheelStore

    if args.served is not None and not Path(args.served).is_file():
        raise HillclimbError(f"flywheel database {args.served} does not exist")
    if args.served is not None:
        # FlywheelStore would add its tables to any SQLite file it is pointed at
        refuse_foreign_sqlite(args.served, "served", "flywheel")
    if args.db is None and args.served is None:
        raise HillclimbError(
            "telemetry export needs --db (a harness run's telemetry.db) and/or --served (the "
            "server's flywheel.sqlite)"
        )
    _out_dir_ok(Path(args.out))
    with contextlib.ExitStack() as stack:
        if args.db is None:  # only what API users accepted: an empty harness database
            from hillclimb.harness.telemetry import Telemetry

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="hillclimb-export-"))
            tel = stack.enter_context(Telemetry(Path(tmp) / "telemetry.db"))
        else:
            tel = stack.enter_context(_open_db(args.db))
        served = FlywheelStore(args.served) if args.served is not None else None
        try:
            s = tel.export(args.out, require_accepted=args.require_accepted, served=served)
        finally:
            if served is not None:
                served.close()
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        by = s["sft_by_source"]
        print(
            f"{s['sft_examples']} SFT examples ({by['harness']} harness, {by['api']} API), "
            f"{s['rl_prompts']} RL prompts -> {args.out}"
        )
        for note in export_notes(s):
            print(f"  note: {note}")
    return 0


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def export_notes(s: dict[str, Any]) -> list[str]:
    """Why records an export read were left out, one line per reason. Without them an export of
    nothing ("0 SFT examples (0 harness, 0 API)") gave no hint that, say, the one accepted
    answer came from an account that never opted in — only export.json said so."""
    notes = []
    api = s.get("api") or {}
    if api.get("no_consent"):
        notes.append(
            f"{_n(api['no_consent'], 'accepted API answer')} not exported: no consent — its "
            "account had not opted in when it was served (`hillclimb keys consent --name NAME "
            "--on` keeps the content of its later requests; requests served in open mode, "
            "without API keys, are never kept)"
        )
    if api.get("malformed"):
        notes.append(
            f"{_n(api['malformed'], 'accepted API answer')} not exported: the stored request "
            "or answer is missing or unreadable"
        )
    if api.get("client_written_turns"):
        notes.append(
            f"{_n(api['client_written_turns'], 'accepted API chat')} not exported: its request "
            "history holds assistant turns the client wrote, which SFT would learn as the "
            "model's own"
        )
    if api.get("rejected"):
        notes.append(f"{_n(api['rejected'], 'API answer')} rejected by users (not exported)")
    if s.get("evaluation_only_tasks_excluded"):
        notes.append(
            f"{_n(s['evaluation_only_tasks_excluded'], 'task')} left out: evaluation-only "
            "(held-out projects, templates or mutation sites), e.g. "
            + ", ".join(s.get("evaluation_only_examples") or {})
        )
    if s.get("malformed_episodes"):
        notes.append(
            f"{_n(s['malformed_episodes'], 'episode')} left out: its stored trajectory cannot "
            "be read back"
        )
    return notes


def _cmd_stats(args: argparse.Namespace) -> int:
    with _open_db(args.db) as tel:
        st = tel.stats()
    if args.json:
        _print(st, True)
    else:
        print_stats(st)
    return 0


def print_stats(st: dict[str, Any], file: Any = None) -> None:
    """`telemetry stats` for a person: totals, then episodes per model and per task kind."""
    from rich.console import Console
    from rich.table import Table

    con = Console(file=file)

    def pct(x: float) -> str:
        return f"{x:.1%}"

    def counts(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"

    con.print(
        f"[bold]{st['db']}[/bold]: {st['episodes']} finished episodes ({st['running']} running), "
        f"{st['resolved']} resolved ({pct(st['resolve_rate'])}), mean turns "
        f"{st['mean_turns']:.1f}, tokens {st['prompt_tokens']} prompt / "
        f"{st['completion_tokens']} completion"
    )
    con.print(f"episode endings: {counts(st['by_status'])}")
    for title, key, cols in (
        ("per model", "by_model", ("episodes", "resolved", "resolve_rate", "completion_tokens")),
        ("per task kind", "by_kind", ("episodes", "resolved", "resolve_rate")),
    ):
        if st[key]:
            tab = Table(title=title)
            tab.add_column(title.split()[-1])
            for c in cols:
                tab.add_column(c.replace("_", " "), justify="right")
            for name, row in st[key].items():
                tab.add_row(
                    name, *(pct(row[c]) if c == "resolve_rate" else str(row[c]) for c in cols)
                )
            con.print(tab)
    con.print(f"edits: {counts(st['edits'])}; verdicts: {counts(st['edit_verdicts'])}")
    con.print(f"feedback: {counts(st['feedback'])}")


def _cmd_feedback(args: argparse.Namespace) -> int:
    with _open_db(args.db) as tel:
        fid = tel.record_feedback(args.edit if args.edit is not None else args.episode, bool(args.accept),
                                  source=args.source, note=args.note)  # fmt: skip
    print(f"feedback {fid} recorded")
    return 0
