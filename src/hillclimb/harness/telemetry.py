"""The telemetry flywheel: every episode and every edit in SQLite, and training data out of it.

The coder was trained on "telemetry-grounded edit tasks" where accepted and rejected edits are a
training signal (BRIEF.md). We record, per episode, the task, model, tokens, exit status and grade
(with the full trajectory), and per edit whether it was applied or rejected (by the syntax gate,
by not matching), whether the tests then passed or rejected it, and — later, through the API
server — whether a user accepted it (`record_feedback`). `export` turns that into SFT examples
(accepted, successful trajectories, in our chat format with tool calls) and RL prompts (task
references of failed episodes). Schema: docs/areas/harness.md.

Why SQLite in WAL mode: one file, transactional, readable while a run writes it, safe from
several threads (one connection guarded by a lock) and from several processes (WAL + busy
timeout). Export output files are written atomically.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hillclimb.errors import HillclimbError
from hillclimb.harness.tools import utf8_text
from hillclimb.io import LockedSQLite, write_json_atomic, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from hillclimb.harness.agent import Episode
    from hillclimb.serve.flywheel import FlywheelStore

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    task_kind TEXT NOT NULL,
    task_dir TEXT NOT NULL,
    model TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'harness',
    status TEXT NOT NULL,               -- running | submitted | max_steps | ... | model_error | error
    resolved INTEGER,                   -- NULL while running
    reward REAL,
    grade_status TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    turns INTEGER NOT NULL DEFAULT 0,
    wall_s REAL,
    started_at REAL NOT NULL,
    finished_at REAL,
    error TEXT,
    trajectory TEXT                     -- the episode JSON (messages, steps, grade)
);
CREATE INDEX IF NOT EXISTS episodes_task ON episodes(task_id);
CREATE INDEX IF NOT EXISTS episodes_model ON episodes(model);
CREATE TABLE IF NOT EXISTS edits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id TEXT REFERENCES episodes(id),   -- NULL for edits recorded outside an episode
    task_id TEXT,
    model TEXT NOT NULL,
    turn INTEGER,
    tool TEXT NOT NULL,                 -- edit | create_file | api
    path TEXT NOT NULL,
    status TEXT NOT NULL,               -- applied | rejected_syntax | rejected_invalid
    error TEXT,
    verdict TEXT,                       -- tests_passed | rejected_by_tests | NULL (not graded)
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    arguments TEXT,                     -- the call's JSON arguments
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS edits_episode ON edits(episode_id);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,               -- edit | episode
    edit_id INTEGER REFERENCES edits(id),
    episode_id TEXT REFERENCES episodes(id),
    accepted INTEGER NOT NULL,          -- 1 accepted, 0 rejected
    source TEXT NOT NULL,               -- user | api | ...
    note TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_episode ON feedback(episode_id);
CREATE INDEX IF NOT EXISTS feedback_edit ON feedback(edit_id);
"""


def _utf8(params: tuple) -> tuple:
    """SQLite parameters with every string made UTF-8-encodable: a non-UTF-8 file name in a
    workspace (surrogate escapes from the OS) or a `\\udXXX` in a model's JSON would otherwise
    make the insert raise and take the whole run down."""
    return tuple(utf8_text(v) if isinstance(v, str) else v for v in params)


class Telemetry(LockedSQLite):
    """A telemetry database. Thread-safe; open many times (processes) on the same file."""

    KIND = "telemetry"
    SCHEMA = SCHEMA
    VERSION = str(SCHEMA_VERSION)
    VERSION_KEY = "schema_version"
    FOREIGN_KEYS = True
    MARKER_TABLE = "episodes"  # another store's SQLite file is refused, not converted

    # ---- recording ----------------------------------------------------------------------------
    def start_episode(self, ep: Episode, source: str = "harness") -> None:
        self._exec(
            "INSERT OR REPLACE INTO episodes (id, task_id, task_kind, task_dir, model, source, status, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            _utf8((ep.episode_id, ep.task_id, ep.task_kind, ep.task_dir, ep.model, source, ep.started_at)),
        )  # fmt: skip

    def finish_episode(self, ep: Episode) -> None:
        grade = ep.grade or {}
        with self._lock, self._db:
            self._db.execute(
                "UPDATE episodes SET status=?, resolved=?, reward=?, grade_status=?, prompt_tokens=?,"
                " completion_tokens=?, turns=?, wall_s=?, finished_at=?, error=?, trajectory=? WHERE id=?",
                _utf8((
                    ep.exit_status,
                    int(ep.resolved),
                    ep.reward,
                    grade.get("status"),
                    ep.prompt_tokens,
                    ep.completion_tokens,
                    ep.turns,
                    ep.wall_s,
                    time.time(),
                    ep.error,
                    json.dumps(ep.to_json(), ensure_ascii=False),
                    ep.episode_id,
                )),
            )  # fmt: skip
            # Applied edits are judged by the tests of the episode they belong to.
            verdict = "tests_passed" if ep.resolved else "rejected_by_tests"
            if ep.task_kind != "repo_qa":
                self._db.execute(
                    "UPDATE edits SET verdict=? WHERE episode_id=? AND status='applied'",
                    (verdict, ep.episode_id),
                )

    def record_edit(
        self,
        *,
        episode_id: str | None,
        task_id: str | None,
        model: str,
        tool: str,
        path: str,
        status: str,
        error: str | None = None,
        turn: int | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        arguments: dict[str, Any] | None = None,
    ) -> int:
        """Record one edit; returns its id (the handle for `record_feedback`)."""
        cur = self._exec(
            "INSERT INTO edits (episode_id, task_id, model, turn, tool, path, status, error,"
            " prompt_tokens, completion_tokens, arguments, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            _utf8((
                episode_id, task_id, model, turn, tool, path, status, error, prompt_tokens,
                completion_tokens, json.dumps(arguments, ensure_ascii=False) if arguments is not None else None,
                time.time(),
            )),
        )  # fmt: skip
        return int(cur.lastrowid)

    def record_feedback(
        self, target: int | str, accepted: bool, source: str = "user", note: str | None = None
    ) -> int:
        """A user's (or the API's) verdict on an edit (int id) or an episode (str id)."""
        if isinstance(target, bool) or not isinstance(target, int | str):
            raise HillclimbError("feedback target must be an edit id (int) or an episode id (str)")
        if isinstance(target, int):
            # an id past SQLite's 64-bit range names no edit (and would raise OverflowError)
            if not -(2**63) <= target < 2**63 or not self.query(
                "SELECT 1 FROM edits WHERE id=?", (target,)
            ):
                raise HillclimbError(f"no edit with id {target}")
            row = ("edit", target, None)
        else:
            if not self.query("SELECT 1 FROM episodes WHERE id=?", (target,)):
                raise HillclimbError(f"no episode with id {target!r}")
            row = ("episode", None, target)
        cur = self._exec(
            "INSERT INTO feedback (target, edit_id, episode_id, accepted, source, note, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            _utf8((*row, int(bool(accepted)), source, note, time.time())),
        )
        return int(cur.lastrowid)

    # ---- reading ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        def grouped(sql: str) -> dict[str, int]:
            return {str(k): int(v) for k, v in self.query(sql)}

        eps = self.query(
            "SELECT COUNT(*), COALESCE(SUM(resolved),0), COALESCE(SUM(prompt_tokens),0),"
            " COALESCE(SUM(completion_tokens),0), COALESCE(AVG(turns),0) FROM episodes WHERE status!='running'"
        )[0]
        by_model = {}
        for model, n, res, comp in self.query(
            "SELECT model, COUNT(*), COALESCE(SUM(resolved),0), COALESCE(SUM(completion_tokens),0)"
            " FROM episodes WHERE status!='running' GROUP BY model ORDER BY model"
        ):
            by_model[model] = {"episodes": n, "resolved": res, "resolve_rate": res / n if n else 0.0,
                               "completion_tokens": comp}  # fmt: skip
        by_kind = {}
        for kind, n, res in self.query(
            "SELECT task_kind, COUNT(*), COALESCE(SUM(resolved),0) FROM episodes"
            " WHERE status!='running' GROUP BY task_kind ORDER BY task_kind"
        ):
            by_kind[kind] = {"episodes": n, "resolved": res, "resolve_rate": res / n if n else 0.0}
        return {
            "db": str(self.path),
            "episodes": int(eps[0]),
            "resolved": int(eps[1]),
            "resolve_rate": (eps[1] / eps[0]) if eps[0] else 0.0,
            "prompt_tokens": int(eps[2]),
            "completion_tokens": int(eps[3]),
            "mean_turns": float(eps[4]),
            "running": int(
                self.query("SELECT COUNT(*) FROM episodes WHERE status='running'")[0][0]
            ),
            "by_status": grouped(
                "SELECT status, COUNT(*) FROM episodes GROUP BY status ORDER BY status"
            ),
            "by_kind": by_kind,
            "by_model": by_model,
            "edits": grouped("SELECT status, COUNT(*) FROM edits GROUP BY status ORDER BY status"),
            "edit_verdicts": grouped(
                "SELECT COALESCE(verdict,'ungraded'), COUNT(*) FROM edits GROUP BY 1 ORDER BY 1"
            ),
            "feedback": grouped(
                "SELECT target || ':' || CASE accepted WHEN 1 THEN 'accepted' ELSE 'rejected' END, COUNT(*)"
                " FROM feedback GROUP BY 1 ORDER BY 1"
            ),
        }

    def _episode_feedback(self) -> dict[str, bool]:
        """Latest user verdict per episode: its latest episode feedback, overruled by any edit
        in it whose *latest* verdict is a rejection. Latest by insertion order (`id`): a user
        who rejects an edit and then accepts it has changed their mind, and clocks of several
        writers need not agree."""
        out: dict[str, bool] = {}
        for ep_id, accepted in self.query(
            "SELECT episode_id, accepted FROM feedback WHERE target='episode' ORDER BY id"
        ):
            out[ep_id] = bool(accepted)
        edits: dict[int, tuple[str, bool]] = {}  # edit id -> (episode, latest verdict)
        for edit_id, ep_id, accepted in self.query(
            "SELECT f.edit_id, e.episode_id, f.accepted FROM feedback f JOIN edits e"
            " ON f.edit_id=e.id WHERE f.target='edit' AND e.episode_id IS NOT NULL ORDER BY f.id"
        ):
            edits[edit_id] = (ep_id, bool(accepted))
        for ep_id, accepted in edits.values():
            if not accepted:
                out[ep_id] = False
        return out

    def export(
        self,
        out_dir: str | Path,
        *,
        require_accepted: bool = False,
        served: FlywheelStore | None = None,
    ) -> dict[str, Any]:
        """Write `sft.jsonl` (successful, not user-rejected trajectories; with
        `require_accepted` only explicitly accepted ones) and `rl_prompts.jsonl` (one task
        reference per task with a failed or user-rejected episode), plus `export.json`.

        With `served` (the API server's flywheel database) the SFT file also gets the answers API
        users accepted, from accounts that opted in (`FlywheelStore.training_records`). Every
        SFT line says where it came from in `meta.source` (`harness` | `api`)."""
        out = Path(out_dir)
        fb = self._episode_feedback()
        sft_lines: list[str] = []
        rl: dict[str, dict[str, Any]] = {}
        rows = self.query(
            "SELECT id, task_id, task_kind, task_dir, model, resolved, trajectory, status FROM episodes"
            " WHERE status!='running' AND trajectory IS NOT NULL ORDER BY started_at, id"
        )
        held: dict[tuple[str, str], str | None] = {}  # (task_dir, task_id) -> why excluded
        task_meta: dict[tuple[str, str], dict[str, Any]] = {}  # what `heldout_reason` reads
        excluded: dict[str, str] = {}  # task_id -> why
        malformed: list[str] = []  # episodes whose stored trajectory cannot be read back
        for ep_id, task_id, kind, task_dir, model, resolved, traj_json, status in rows:
            task = (task_dir, task_id)
            if task not in held:
                held[task], task_meta[task] = _evaluation_only(task_dir, task_id)
            why = held[task]
            if why:
                excluded[task_id] = why
                continue
            verdict = fb.get(ep_id)
            accepted = verdict is True or (verdict is None and not require_accepted)
            if resolved and accepted and status == "submitted":
                messages = _trajectory_messages(traj_json)
                if messages is None:
                    malformed.append(ep_id)
                    continue
                sft_lines.append(json.dumps({
                    "messages": messages,
                    "tools": _tool_schemas(),
                    "meta": {"source": "harness", "episode_id": ep_id, "task_id": task_id,
                             "kind": kind, "model": model, "user_feedback": verdict,
                             "task": task_meta[task]},
                }, ensure_ascii=False))  # fmt: skip
            elif (not resolved or verdict is False) and status != "model_error":
                ref = rl.setdefault(task_id, {
                    "task_id": task_id, "kind": kind, "task_dir": task_dir, "failed_episodes": [],
                    "models": [],
                })  # fmt: skip
                ref["failed_episodes"].append(ep_id)
                if model not in ref["models"]:
                    ref["models"].append(model)
        harness_sft = len(sft_lines)
        api_counts: dict[str, int] | None = None
        if served is not None:
            api_records, api_counts = served.training_records()
            kept = [r for r in api_records if not client_written_turns(r)]
            if len(kept) < len(api_records):
                api_counts = {**api_counts, "client_written_turns": len(api_records) - len(kept)}
                api_counts["exported"] = len(kept)
            sft_lines += [json.dumps(r, ensure_ascii=False) for r in kept]
        rl_lines = [json.dumps(v, ensure_ascii=False) for v in rl.values()]
        summary = {
            "db": str(self.path), "sft_examples": len(sft_lines), "rl_prompts": len(rl_lines),
            "sft_by_source": {"harness": harness_sft, "api": len(sft_lines) - harness_sft},
            # absolute: the climb re-checks consent against this database (climb/flywheel.py),
            # from another working directory
            "served_db": str(Path(served.path).resolve()) if served is not None else None,
            "api": api_counts,
            "episodes_considered": len(rows), "require_accepted": require_accepted,
            "evaluation_only_tasks_excluded": len(excluded),
            "evaluation_only_examples": dict(sorted(excluded.items())[:5]),
            "malformed_episodes": len(malformed), "malformed_examples": malformed[:5],
            "files": {"sft": str(out / "sft.jsonl"), "rl": str(out / "rl_prompts.jsonl")},
        }  # fmt: skip
        _write_export(out, sft_lines, rl_lines, summary)
        return summary


def _write_export(
    out: Path, sft_lines: list[str], rl_lines: list[str], summary: dict[str, Any]
) -> None:
    """The three export files, each atomically, `export.json` last and removed first: it is what
    marks a directory as an export (`climb.flywheel.check_exports`), so an export interrupted
    between files is refused as incomplete rather than read as a new `sft.jsonl` beside the
    previous export's `rl_prompts.jsonl`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "export.json").unlink(missing_ok=True)
        write_text_atomic(out / "sft.jsonl", "".join(line + "\n" for line in sft_lines))
        write_text_atomic(out / "rl_prompts.jsonl", "".join(line + "\n" for line in rl_lines))
        write_json_atomic(out / "export.json", summary)
    except OSError as exc:
        raise HillclimbError(
            f"cannot write the telemetry export to {out}: {exc}; the directory holds no complete "
            "export (no export.json) until a rerun succeeds"
        ) from None


def client_written_turns(rec: dict[str, Any]) -> bool:
    """Whether an API chat record holds an assistant turn before its last one: text the client
    sent in the request's history, not the answer the server gave and the user accepted.

    Why it cannot be trained on: SFT puts the loss on every assistant turn, so another model's
    output or text crafted to teach ours would be learned as our own answers (the climb's
    flywheel refuses such records too, `client_written_turns`). Multi-turn chats whose earlier
    answers are ours are lost with them, until the SFT format can mask a turn."""
    msgs = rec.get("messages")
    if not isinstance(msgs, list):
        return False  # fim / text records: their target is the served text only
    return any(isinstance(m, dict) and m.get("role") == "assistant" for m in msgs[:-1])


def _trajectory_messages(traj_json: str) -> list[dict[str, Any]] | None:
    """The SFT messages of a stored trajectory, or None when it is not one (a database edited by
    hand, written by another program, or damaged): one such row is left out and counted, it
    does not abort the export of every other episode."""
    try:
        traj = json.loads(traj_json)
    except (TypeError, ValueError):
        return None
    msgs = traj.get("messages") if isinstance(traj, dict) else None
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        return None
    calls = [m.get("tool_calls") or [] for m in msgs]
    if not all(
        isinstance(c, list)
        and all(isinstance(tc, dict) and isinstance(tc.get("function", {}), dict) for tc in c)
        for c in calls
    ):
        return None
    return sft_messages(msgs)


def _evaluation_only(task_dir: str | None, task_id: str) -> tuple[str | None, dict[str, Any]]:
    """(Why episodes on task `task_id` in `task_dir` must not become training data, or None;
    the task meta that decides it, kept in the SFT record so the climb can check it again).

    Held-out tasks (`taskgen.common.heldout_reason`: held-out projects, templates, mutation
    sites) are what the harness suite measures; an episode on one — an evaluation run recorded
    in telemetry — would teach the next climb the answer. A task whose `task.toml` cannot be
    read cannot be shown to be a training task, so it is left out too; so is one whose directory
    now holds another task (tasks regenerated into the same path): its meta says nothing about
    the task the episode ran on, and RL would be pointed at a task the episode never saw."""
    from hillclimb.harness.task import load_task
    from hillclimb.harness.taskgen.common import heldout_reason

    if not task_dir:
        return "no task directory recorded", {}
    try:
        task = load_task(task_dir)
    except HillclimbError as exc:
        return f"task unreadable ({exc})", {}
    if task.id != task_id:
        return f"its directory {task_dir} now holds task {task.id!r}, not {task_id!r}", {}
    meta = task.meta or {}
    keep = ("split", "projects", "template", "module", "function", "line", "site_split")
    return heldout_reason(meta), {k: meta[k] for k in keep if k in meta}


def _tool_schemas() -> list[dict[str, Any]]:
    from hillclimb.harness.tools import TOOL_SCHEMAS

    return TOOL_SCHEMAS


def sft_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trajectory messages in our chat format: tool-call arguments as JSON objects (the template
    renders `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`), tool results as `tool`."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for tc in m["tool_calls"]:
                fn = dict(tc.get("function", {}))
                if isinstance(fn.get("arguments"), str):
                    with contextlib.suppress(json.JSONDecodeError):
                        fn["arguments"] = json.loads(fn["arguments"])
                calls.append({"type": "function", "id": tc.get("id"), "function": fn})
            m["tool_calls"] = calls
        out.append(m)
    return out
