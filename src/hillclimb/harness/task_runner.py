"""Run many tasks against one model: trajectories, a results table, a summary, resumably.

Layout of `--out DIR`:

    trajectories/<task_id>.json   one per task (the Episode JSON, or an error record)
    results.jsonl                 one line per task, rebuilt from trajectories after each task
    summary.json                  totals and per-kind resolve rates

Why rebuild results.jsonl from the trajectory files instead of appending: every file is written
atomically, so a crash at any moment leaves complete files only, and a resumed run (which skips
tasks whose trajectory is final) recomputes the table from the same truth. Tasks that ended in a
model or task error are retried on resume — the endpoint may be back, the task.toml fixed.

Tasks that need no work are not scored (`check_tasks`, on by default; `harness run
--no-check-tasks` skips it). Before a task's episode, the grader runs on its *untouched*
repository; a task that already grades resolved (hidden tests that pass without a fix, a
refactor whose checks already hold) would count as resolved for a model that did nothing, so it
ends `task_invalid` without an episode, and `summary.json`'s `resolve_rate` leaves it out of the
denominator (`invalid` counts them). Generated tasks were proven unresolved when they were made
(`harness generate`); the check catches tasks written or edited by hand. It costs one grade per
task (a test run), and is retried on resume like a task error, in case the task was fixed.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.harness.agent import EpisodeLimits, run_episode
from hillclimb.harness.clients import ModelClient, ModelError, ScriptedClient
from hillclimb.harness.grading import grade_patch
from hillclimb.harness.task import find_task_dirs, load_task
from hillclimb.io import write_json_atomic, write_text_atomic

RETRY_STATUSES = {"model_error", "task_error", "task_invalid", "error"}
INVALID = "task_invalid"  # the untouched repository already grades resolved: nothing to do


def _safe_name(s: str) -> str:
    """A trajectory file name for a task id: letters and digits of any script kept (an ASCII-only
    rule made every all-CJK id `_`, so two such tasks could not run together), anything else
    one `_`, at most 150 bytes of UTF-8 (file names are limited in bytes, not characters)."""
    name = re.sub(r"[^\w.-]+", "_", s)
    return name.encode("utf-8")[:150].decode("utf-8", errors="ignore") or "task"


def _read_trajectory(path: Path) -> dict[str, Any] | None:
    """A trajectory file's record, or None when it is unreadable, not UTF-8 JSON, or not an
    object (a disk error or a hand edit): such a file is rerun and replaced, never a crash."""
    try:
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):  # ValueError: JSONDecodeError and UnicodeDecodeError
        return None
    return rec if isinstance(rec, dict) else None


def _recorded_dir(rec: dict[str, Any]) -> Path | None:
    """The task directory a trajectory was made from (resolved), if it names one."""
    d = rec.get("task_dir")
    if not isinstance(d, str) or not d:
        return None
    try:
        return Path(d).resolve()
    except (OSError, ValueError, RuntimeError):
        return None


def _records_by_task_dir(traj_dir: Path) -> dict[Path, list[Path]]:
    """Trajectory files grouped by the task directory they record. A task directory's record
    moves when its name changes (a broken task.toml is recorded under the directory's name, a
    loaded one under its id): the file under the old name is stale then, and counting both
    made one task two rows of results.jsonl and summary.json."""
    out: dict[Path, list[Path]] = {}
    if not traj_dir.is_dir():
        return out
    for p in sorted(traj_dir.glob("*.json")):
        rec = _read_trajectory(p)
        d = _recorded_dir(rec) if rec is not None else None
        if d is not None:
            out.setdefault(d, []).append(p)
    return out


def result_row(traj: dict[str, Any]) -> dict[str, Any]:
    grade = traj.get("grade") or {}
    return {
        "task_id": traj.get("task_id"),
        "kind": traj.get("task_kind"),
        "model": traj.get("model"),
        "exit_status": traj.get("exit_status"),
        "resolved": bool(traj.get("resolved")),
        "grade_status": grade.get("status"),
        "turns": traj.get("turns", 0),
        "prompt_tokens": traj.get("prompt_tokens", 0),
        "completion_tokens": traj.get("completion_tokens", 0),
        "wall_s": round(float(traj.get("wall_s", 0.0)), 3),
        "error": traj.get("error"),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over every task; the resolve rates leave out `task_invalid` tasks (resolved
    untouched: they measure nothing)."""
    n = len(rows)
    invalid = sum(1 for r in rows if r["exit_status"] == INVALID)
    resolved = sum(r["resolved"] for r in rows)
    by_kind: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["exit_status"] == INVALID:
            continue
        k = by_kind.setdefault(
            r["kind"] or "?", {"tasks": 0, "resolved": 0, "completion_tokens": 0}
        )
        k["tasks"] += 1
        k["resolved"] += int(r["resolved"])
        k["completion_tokens"] += r["completion_tokens"]
    for k in by_kind.values():
        k["resolve_rate"] = k["resolved"] / k["tasks"] if k["tasks"] else 0.0
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["exit_status"]] = statuses.get(r["exit_status"], 0) + 1
    return {
        "tasks": n,
        "invalid": invalid,
        "resolved": resolved,
        "resolve_rate": resolved / (n - invalid) if n - invalid else 0.0,
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "mean_turns": sum(r["turns"] for r in rows) / n if n else 0.0,
        "exit_statuses": dict(sorted(statuses.items())),
        "by_kind": dict(sorted(by_kind.items())),
        "errors": sum(1 for r in rows if r["exit_status"] in RETRY_STATUSES - {INVALID}),
    }


def _untouched_resolves(
    task: Any, task_dir: Path, t0: float, limits: EpisodeLimits
) -> dict[str, Any] | None:
    """The `task_invalid` record of a task whose untouched repository already grades resolved,
    else None. A repo_qa task needs an answer, so it cannot resolve untouched."""
    if task.kind == "repo_qa":
        return None
    pre = grade_patch(task, None, unsafe=limits.unsafe)
    if not pre.resolved:
        return None
    return {
        "format": "hillclimb-trajectory-v1", "task_id": task.id, "task_kind": task.kind,
        "task_dir": str(task_dir.resolve()), "model": None, "exit_status": INVALID,
        "error": (
            "the task's untouched repository already grades resolved (its hidden tests pass "
            "/ its checks hold without any change), so it cannot tell a fix from doing "
            "nothing: not run and not counted; fix the task (or use --no-check-tasks)"
        ),
        "resolved": False, "reward": 0.0, "started_at": t0, "wall_s": time.time() - t0,
        "messages": [], "grade": None, "untouched_grade": pre.to_json(),
    }  # fmt: skip


@dataclass
class RunReport:
    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    skipped: int


def run_tasks(
    tasks_dir: str | Path,
    client_factory: Callable[[], ModelClient],
    out_dir: str | Path,
    limits: EpisodeLimits = EpisodeLimits(),
    *,
    concurrency: int = 1,
    telemetry_path: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    check_tasks: bool = True,
    task_dirs: list[Path] | None = None,
) -> RunReport:
    """Run every task under `tasks_dir` (or only `task_dirs`, a selection of them); resumable;
    never stops for one task's failure. `check_tasks`: grade each untouched repository first
    (see the module docstring)."""
    from hillclimb.harness.telemetry import Telemetry

    out = Path(out_dir)
    traj_dir = out / "trajectories"
    dirs = find_task_dirs(tasks_dir) if task_dirs is None else list(task_dirs)
    lock = threading.Lock()
    local = threading.local()

    def client() -> ModelClient:
        if not hasattr(local, "client"):
            local.client = client_factory()
        return local.client

    def traj_path(task_dir: Path, task_id: str | None) -> Path:
        return traj_dir / f"{_safe_name(task_id or task_dir.name)}.json"

    todo: list[Path] = []
    skipped = 0
    recorded = _records_by_task_dir(traj_dir)
    current: dict[Path, Path] = {}  # task directory (resolved) -> its trajectory file now
    seen_ids: dict[str, Path] = {}
    # Two tasks writing one trajectory file would overwrite each other's results (ids that differ
    # only in characters `_safe_name` replaces, or a broken task named like another's id).
    seen_files: dict[str, Path] = {}
    for d in dirs:
        try:
            tid = load_task(d).id
        except HillclimbError:
            tid = None
        if tid is not None:
            if tid in seen_ids:
                raise HillclimbError(f"duplicate task id {tid!r} in {seen_ids[tid]} and {d}")
            seen_ids[tid] = d
        p = traj_path(d, tid)
        if p.name in seen_files:
            raise HillclimbError(
                f"tasks {seen_files[p.name]} and {d} would both write trajectories/{p.name}; "
                "give them distinct ids (and task directories distinct names)"
            )
        seen_files[p.name] = d
        current[d.resolve()] = p
        prev = _read_trajectory(p) if p.is_file() else None
        if prev is not None and prev.get("exit_status") not in RETRY_STATUSES:
            skipped += 1
            continue
        todo.append(d)
    # only now, when every task has its own file, is anything created
    try:
        traj_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HillclimbError(f"cannot create {traj_dir}: {exc}") from None

    def drop_stale(task_dir: Path, keep: Path) -> None:
        """Remove this task directory's records under names other than `keep`, its record now."""
        for old in recorded.get(task_dir.resolve(), []):
            if old != keep:
                old.unlink(missing_ok=True)

    for d in dirs:
        if d not in todo:  # final already; a record under another name is an older one
            drop_stale(d, current[d.resolve()])
    telemetry = Telemetry(telemetry_path) if telemetry_path else None

    def rebuild() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows = []
        for p in sorted(traj_dir.glob("*.json")):
            rec = _read_trajectory(p)
            if rec is not None:
                rows.append(result_row(rec))
        write_text_atomic(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        summary = summarize(rows)
        write_json_atomic(out / "summary.json", summary)
        return rows, summary

    def one(task_dir: Path) -> dict[str, Any]:
        t0 = time.time()
        try:
            task = load_task(task_dir)
        except HillclimbError as exc:
            traj = {
                "format": "hillclimb-trajectory-v1", "task_id": task_dir.name, "task_kind": None,
                "task_dir": str(task_dir.resolve()), "model": getattr(client(), "name", "?"),
                "exit_status": "task_error", "error": str(exc), "resolved": False, "reward": 0.0,
                "started_at": t0, "wall_s": 0.0, "messages": [], "grade": None,
            }  # fmt: skip
            path = traj_path(task_dir, None)
        else:
            traj = _untouched_resolves(task, task_dir, t0, limits) if check_tasks else None
            if traj is not None:
                traj["model"] = getattr(client(), "name", "?")
            path = traj_path(task_dir, task.id)
        if traj is None:
            c = client()
            if hasattr(c, "for_task"):  # per-task clients (the reference agent)
                try:
                    c = c.for_task(task)
                except HillclimbError as exc:
                    c = ScriptedClient([ModelError(str(exc))], name=getattr(c, "name", "?"))
            ep = run_episode(task, c, limits, telemetry)
            traj = ep.to_json()
        write_json_atomic(path, traj)
        row = result_row(traj)
        with lock:
            drop_stale(task_dir, path)
            rebuild()
        if progress is not None:
            progress(row)
        return row

    try:
        if concurrency <= 1:
            for d in todo:
                one(d)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                for fut in as_completed([pool.submit(one, d) for d in todo]):
                    fut.result()
    finally:
        if telemetry is not None:
            telemetry.close()
    rows, summary = rebuild()
    return RunReport(out, rows, summary, skipped)
