"""The API side of the data flywheel: what a key's users accepted or rejected, with consent.

The coder we reproduce learned from what its users accepted or rejected. For our server that
means three records, in one SQLite file beside the usage database (`flywheel.sqlite` in the
state directory):

- `consent` — per account key, whether its requests may become training data. Off unless the
  operator turns it on (`hillclimb keys consent NAME --on`); every change is kept with its
  time. Content is stored only while consent is on, and an export re-checks the current state,
  so revoking consent keeps everything that account sent out of every later export.
- `served` — one row per request the server answered: its id, account, endpoint and model
  (so feedback can be checked against its owner), and — only when that account had opted in —
  the request (messages + tools, or prompt + suffix) and the answer (text and tool calls).
- `feedback` — a verdict on a served request (accepted / rejected), optionally which choice and
  which edit the client applied (`{"path", "applied"}`: the server records edits it served
  when the client reports them). A user can rate only their own account's requests.

Export (`training_records`) turns accepted, consented, content-bearing requests into the SFT
formats `hillclimb sft` reads: a chat → `{"messages", "tools"}` with the answer as the final
assistant turn; a completion with a suffix (FIM) or without → `{"fim": {prefix, middle,
suffix}}`, so the loss falls on the model's accepted text only. Each record carries its
provenance (account, request id, feedback id, consent). Rejected requests are counted, not
trained on: an API request has no verifier, so it cannot become an RL prompt (harness episodes,
which do, come from the telemetry database).

Who an account is: its key (`key_id`, the key's SHA-256 as the usage database stores it), not
its name. A keys file may rename a key and give the old name to a new key; keyed by name, the new
key inherited the old one's opt-in and could rate its requests (session 23). Consent, ownership
of a served request and feedback are therefore judged by key; the name is kept beside it for
people (and for readers of older exports). Rows of a schema-v1 file (names only, `key_id`
NULL; migrated in place on open) still count for a key under that name unless the name has
since been seen with another key.

Why a separate file and not the usage database: accounting must stay small and fast under every
request, and an operator can delete or ship the flywheel file without touching credits.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.io import LockedSQLite, refuse_foreign_sqlite

# v2 (session 23): `key_id` on consent, served and feedback; a v1 file is migrated on open
SCHEMA_VERSION = "2"
FILENAME = "flywheel.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consent (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    opted_in INTEGER NOT NULL,
    changed_at REAL NOT NULL,
    key_id TEXT                       -- the account's key (v2); NULL: a v1 row, by name only
);
CREATE INDEX IF NOT EXISTS consent_account ON consent(account, id);
CREATE TABLE IF NOT EXISTS served (
    request_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    endpoint TEXT NOT NULL,           -- chat | completions
    model TEXT NOT NULL,
    consent INTEGER NOT NULL,         -- the account's consent when it was served
    request TEXT,                     -- JSON; NULL without consent
    response TEXT,                    -- JSON; NULL without consent
    created_at REAL NOT NULL,
    key_id TEXT                       -- the key that was served (v2); '': open mode; NULL: v1
);
CREATE INDEX IF NOT EXISTS served_account ON served(account, created_at);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL REFERENCES served(request_id),
    account TEXT NOT NULL,
    choice INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL,
    edit_path TEXT,                   -- the file the client applied the answer to (if reported)
    edit_applied INTEGER,             -- 1 applied, 0 not applied, NULL not reported
    note TEXT,
    created_at REAL NOT NULL,
    key_id TEXT                       -- the key that gave the verdict (v2)
);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id, id);
"""
# run after the v1 -> v2 migration and on every open (the v2 schema above creates them too)
_KEY_INDEXES = """
CREATE INDEX IF NOT EXISTS consent_key ON consent(key_id, id);
CREATE INDEX IF NOT EXISTS served_key ON served(key_id);
"""
_MIGRATED_TABLES = ("consent", "served", "feedback")


class FeedbackError(HillclimbError):
    """A feedback request the store refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ConsentRules:
    """Who consents and who owns a request, by key (module docstring), over any connection's
    `query`: the store's own, and a climb's read-only one (`climb.flywheel`), so a climb judges an
    export's records by the same rules the server applied (session 23: the climb checked by
    name, so a name given to a new key could vouch for the old key's records). A subclass
    provides `query(sql, params) -> rows`."""

    query: Any

    def consent(self, account: str, key_id: str | None = None) -> bool:
        """Whether the account (its key, when given) has opted in now. Without a key: the latest
        row under the name (stores used without keys). With one: the latest row of that key;
        a key with none falls back to v1 rows (no key) under its name, unless another key has
        been seen under that name since (a name given to a new key brings no opt-in)."""
        if key_id is None:
            rows = self.query(
                "SELECT opted_in FROM consent WHERE account=? ORDER BY id DESC LIMIT 1",
                (account,),
            )
            return bool(rows and rows[0][0])
        rows = self.query(
            "SELECT opted_in FROM consent WHERE key_id=? ORDER BY id DESC LIMIT 1", (key_id,)
        )
        if rows:
            return bool(rows[0][0])
        if self._bound_elsewhere(account, key_id):
            return False
        rows = self.query(
            "SELECT opted_in FROM consent WHERE account=? AND key_id IS NULL"
            " ORDER BY id DESC LIMIT 1",
            (account,),
        )
        return bool(rows and rows[0][0])

    def _bound_elsewhere(self, account: str, key_id: str) -> bool:
        """Whether `account` (a name) has been seen with a key other than `key_id`."""
        return bool(
            self.query(
                "SELECT 1 FROM consent WHERE account=? AND key_id IS NOT NULL AND key_id!=?"
                " UNION ALL SELECT 1 FROM served WHERE account=? AND key_id IS NOT NULL"
                " AND key_id!=? LIMIT 1",
                (account, key_id, account, key_id),
            )
        )

    def _owns(self, owner: str, owner_key: str | None, account: str, key_id: str | None) -> bool:
        """Whether `account` (with `key_id`) may rate a request served to `owner`/`owner_key`:
        the same key when both are known (a renamed key keeps its requests; a new key given
        the old name gets none of them), else the same name — and for a request served
        without a key (v1), a name since seen with another key owns nothing."""
        if owner_key is not None and key_id is not None:
            return owner_key == key_id
        if owner != account:
            return False
        return key_id is None or not self._bound_elsewhere(owner, key_id)


class FlywheelStore(ConsentRules, LockedSQLite):
    """The flywheel database (module docstring). Thread-safe; one connection behind a lock."""

    KIND = "flywheel"
    MARKER_TABLE = "served"  # a registry or telemetry file is refused, not given our tables
    SCHEMA = _SCHEMA + _KEY_INDEXES
    VERSION = SCHEMA_VERSION
    VERSION_KEY = "schema"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        _migrate_v1(Path(path), self.KIND)
        super().__init__(path)

    # ---- consent ------------------------------------------------------------------------------
    def set_consent(self, account: str, opted_in: bool, *, key_id: str | None = None) -> None:
        """Record `account`'s opt-in or opt-out, under its key when given (the server and
        `hillclimb keys consent` always give it). An opt-out is also written under every other
        name the key was known by, so that a reader judging by name (an older export's
        `meta.account`) sees it too."""
        if not account:
            raise HillclimbError("consent needs an account name")
        names = [account]
        if key_id is not None and not opted_in:
            names += [n for n in self._names_of(key_id) if n != account]
        now = time.time()
        with self._lock, self._db:
            for name in names:
                self._db.execute(
                    "INSERT INTO consent (account, opted_in, changed_at, key_id)"
                    " VALUES (?, ?, ?, ?)",
                    (name, int(bool(opted_in)), now, key_id),
                )

    def _names_of(self, key_id: str) -> list[str]:
        return [
            r[0]
            for r in self.query(
                "SELECT account FROM consent WHERE key_id=?"
                " UNION SELECT account FROM served WHERE key_id=?",
                (key_id, key_id),
            )
        ]

    # ---- serving ------------------------------------------------------------------------------
    def record_served(
        self,
        request_id: str,
        *,
        account: str,
        endpoint: str,
        model: str,
        request: dict[str, Any],
        response: dict[str, Any],
        open_mode: bool = False,
        key_id: str | None = None,
        consent_at_start: bool | None = None,
    ) -> bool:
        """Record a served request; its content only when the account has opted in (never in
        open mode, where no account can have) — both now and, when `consent_at_start` is given,
        when the request arrived: an opt-in recorded while a request was in flight does not
        reach back to it. Returns whether content was kept.

        An open-mode request is stored with the key '' (no key): an account later named "open"
        owns none of them."""
        if open_mode:
            key_id = ""
        keep = (
            not open_mode and consent_at_start is not False and self.consent(account, key_id=key_id)
        )
        self._exec(
            "INSERT OR REPLACE INTO served (request_id, account, endpoint, model, consent,"
            " request, response, created_at, key_id) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                request_id,
                account,
                endpoint,
                model,
                int(keep),
                json.dumps(request, ensure_ascii=False) if keep else None,
                json.dumps(response, ensure_ascii=False) if keep else None,
                time.time(),
                key_id,
            ),
        )
        return keep

    def record_feedback(
        self,
        request_id: str,
        *,
        account: str,
        accepted: bool,
        choice: int = 0,
        edit: dict[str, Any] | None = None,
        note: str | None = None,
        key_id: str | None = None,
    ) -> dict[str, Any]:
        """A verdict on `request_id` by `account` (its key, when given); refused (FeedbackError)
        for an unknown request or another account's. One verdict per request: a new one
        replaces the earlier (the export reads the latest anyway), so a client repeating
        feedback cannot grow the file without bound."""
        rows = self.query(
            "SELECT account, consent, key_id FROM served WHERE request_id=?", (request_id,)
        )
        if not rows:
            raise FeedbackError(f"no served request with id {request_id!r}", 404, "not_found")
        owner, consent, owner_key = rows[0]
        if not self._owns(owner, owner_key, account, key_id):
            raise FeedbackError(
                "feedback can be given only on your own requests", 403, "permission_denied"
            )
        path = applied = None
        if edit is not None:
            path = edit.get("path")
            if path is not None and not isinstance(path, str):
                raise FeedbackError("edit.path must be a string", 400, "invalid_request_error")
            a = edit.get("applied")
            if a is not None and not isinstance(a, bool):
                raise FeedbackError("edit.applied must be a boolean", 400, "invalid_request_error")
            applied = None if a is None else int(a)
        with self._lock, self._db:
            self._db.execute("DELETE FROM feedback WHERE request_id=?", (request_id,))
            cur = self._db.execute(
                "INSERT INTO feedback (request_id, account, choice, accepted, edit_path,"
                " edit_applied, note, created_at, key_id) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    request_id,
                    owner,  # the name it was served under: readers match it to `served`
                    int(choice),
                    int(bool(accepted)),
                    path,
                    applied,
                    note,
                    time.time(),
                    owner_key if owner_key is not None else key_id,
                ),
            )
        return {
            "id": int(cur.lastrowid),
            "request_id": request_id,
            "accepted": bool(accepted),
            "training_use": bool(consent) and self.consent(owner, key_id=owner_key),
        }

    # ---- reading ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        served = dict(self.query("SELECT consent, COUNT(*) FROM served GROUP BY consent"))
        verdicts = dict(self.query("SELECT accepted, COUNT(*) FROM feedback GROUP BY accepted"))
        edits = self.query("SELECT COUNT(*) FROM feedback WHERE edit_applied=1")[0][0]
        # one identity per key (v2 rows) or per name (v1 rows): its latest row decides
        latest = self.query(
            "SELECT opted_in FROM consent WHERE id IN (SELECT MAX(id) FROM consent"
            " GROUP BY COALESCE(key_id, 'name:' || account))"
        )
        return {
            "db": str(self.path),
            "served": sum(served.values()),
            "served_with_consent": served.get(1, 0),
            "accepted": verdicts.get(1, 0),
            "rejected": verdicts.get(0, 0),
            "edits_applied": edits,
            "accounts_opted_in": sum(1 for (on,) in latest if on),
        }

    def training_records(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """(SFT records from accepted, consented requests; counts of what was left out and why).

        The latest verdict per request decides; consent must hold both when the request was
        served and now (judged by the key that was served)."""
        # + "malformed" (only when some are): stored rows that are not a request/answer pair
        counts = {"accepted": 0, "rejected": 0, "no_consent": 0, "exported": 0}
        latest: dict[str, tuple[int, int, int]] = {}
        for fid, rid, choice, accepted in self.query(
            "SELECT id, request_id, choice, accepted FROM feedback ORDER BY id"
        ):
            latest[rid] = (fid, choice, accepted)
        records: list[dict[str, Any]] = []
        for rid, (fid, choice, accepted) in latest.items():
            if not accepted:
                counts["rejected"] += 1
                continue
            counts["accepted"] += 1
            rows = self.query(
                "SELECT account, endpoint, model, consent, request, response, key_id FROM served"
                " WHERE request_id=?",
                (rid,),
            )
            if not rows:  # the served row was deleted by hand (an account's data purged)
                counts["malformed"] = counts.get("malformed", 0) + 1
                continue
            account, endpoint, model, consent, req, resp, key_id = rows[0]
            if not consent or req is None or not self.consent(account, key_id=key_id):
                counts["no_consent"] += 1
                continue
            rec = _stored_record(endpoint, req, resp, choice)
            if rec is None:
                counts["malformed"] = counts.get("malformed", 0) + 1
                continue
            rec["meta"] = {
                "source": "api",
                "account": account,
                "request_id": rid,
                "feedback_id": fid,
                "model": model,
                "consent": True,
            }
            records.append(rec)
            counts["exported"] += 1
        return records, counts


def _migrate_v1(path: Path, kind: str) -> None:
    """Bring a schema-v1 flywheel file to v2 in place, in one transaction: add `key_id` to its
    three tables (NULL in the rows it holds; see the module docstring for what they mean) and
    set the version. Every stored row is kept. Anything but our own v1 file is left to the
    normal open, which refuses another program's file or another version untouched."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        finally:
            con.close()
    except (OSError, sqlite3.Error):
        return
    if row is None or str(row[0]) != "1":
        return
    # another program's v1 file (a registry's `meta` says schema 1 too) is named as such, not
    # as a flywheel file of an older version
    refuse_foreign_sqlite(path, "served", kind)
    if not set(_MIGRATED_TABLES) <= tables:
        return
    try:
        con = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                again = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if again is not None and str(again[0]) == "1":  # not migrated meanwhile
                    for table in _MIGRATED_TABLES:
                        con.execute(f"ALTER TABLE {table} ADD COLUMN key_id TEXT")
                    con.execute("UPDATE meta SET value=? WHERE key='schema'", (SCHEMA_VERSION,))
                    con.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('migrated_from_v1', ?)",
                        (repr(time.time()),),
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise HillclimbError(
            f"{path}: cannot migrate this {kind} database from schema v1 to v{SCHEMA_VERSION}: "
            f"{exc} (nothing was changed)"
        ) from None


def _stored_record(endpoint: str, req: Any, resp: Any, choice: int) -> dict[str, Any] | None:
    """The SFT record of one stored request/answer pair, or None when the stored JSON is not
    one (a damaged or hand-edited database, a choice the answer does not have): counted as
    `malformed` and left out, so one bad row does not abort the export of all the others."""
    try:
        request, response = json.loads(req), json.loads(resp)
    except (TypeError, ValueError):
        return None
    if not isinstance(request, dict) or not isinstance(response, dict):
        return None
    return _record(endpoint, request, response, choice)


def _record(
    endpoint: str, request: dict[str, Any], response: dict[str, Any], choice: int
) -> dict[str, Any] | None:
    choices = response.get("choices") or []
    if not isinstance(choices, list) or not 0 <= choice < len(choices):
        return None
    answer = choices[choice]
    if not isinstance(answer, dict) or not isinstance(request.get("messages", []), list):
        return None
    if endpoint == "chat":
        msg: dict[str, Any] = {"role": "assistant", "content": answer.get("content") or ""}
        if answer.get("tool_calls"):
            msg["tool_calls"] = answer["tool_calls"]
        rec: dict[str, Any] = {"messages": [*request.get("messages", []), msg]}
        if request.get("tools"):
            rec["tools"] = request["tools"]
        return rec
    if not isinstance(request.get("prompt"), str):
        return None  # token-id or batched prompts are not kept
    return {
        "fim": {
            "prefix": request["prompt"],
            "middle": answer.get("text", ""),
            "suffix": request.get("suffix") or "",
        }
    }
