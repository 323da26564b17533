"""The API side of the data flywheel: what a key's users accepted or rejected, with consent.

The coder we reproduce learned from what its users accepted or rejected. For our server that
means three records, in one SQLite file beside the usage database (`flywheel.sqlite` in the
state directory):

- `consent` — per account, whether its requests may become training data. Off unless the
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

Why a separate file and not the usage database: accounting must stay small and fast under every
request, and an operator can delete or ship the flywheel file without touching credits.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.io import LockedSQLite

SCHEMA_VERSION = "1"
FILENAME = "flywheel.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consent (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    opted_in INTEGER NOT NULL,
    changed_at REAL NOT NULL
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
    created_at REAL NOT NULL
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
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id, id);
"""


class FeedbackError(HillclimbError):
    """A feedback request the store refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class FlywheelStore(LockedSQLite):
    """The flywheel database (module docstring). Thread-safe; one connection behind a lock."""

    KIND = "flywheel"
    MARKER_TABLE = "served"  # a registry or telemetry file is refused, not given our tables
    SCHEMA = _SCHEMA
    VERSION = SCHEMA_VERSION
    VERSION_KEY = "schema"

    # ---- consent ------------------------------------------------------------------------------
    def set_consent(self, account: str, opted_in: bool) -> None:
        if not account:
            raise HillclimbError("consent needs an account name")
        self._exec(
            "INSERT INTO consent (account, opted_in, changed_at) VALUES (?, ?, ?)",
            (account, int(bool(opted_in)), time.time()),
        )

    def consent(self, account: str) -> bool:
        rows = self.query(
            "SELECT opted_in FROM consent WHERE account=? ORDER BY id DESC LIMIT 1", (account,)
        )
        return bool(rows and rows[0][0])

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
    ) -> bool:
        """Record a served request; its content only when the account has opted in (never in
        open mode, where no account can have). Returns whether content was kept."""
        keep = not open_mode and self.consent(account)
        self._exec(
            "INSERT OR REPLACE INTO served (request_id, account, endpoint, model, consent,"
            " request, response, created_at) VALUES (?,?,?,?,?,?,?,?)",
            (
                request_id,
                account,
                endpoint,
                model,
                int(keep),
                json.dumps(request, ensure_ascii=False) if keep else None,
                json.dumps(response, ensure_ascii=False) if keep else None,
                time.time(),
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
    ) -> dict[str, Any]:
        """A verdict on `request_id` by `account`; refused (FeedbackError) for an unknown request
        or another account's."""
        rows = self.query("SELECT account, consent FROM served WHERE request_id=?", (request_id,))
        if not rows:
            raise FeedbackError(f"no served request with id {request_id!r}", 404, "not_found")
        owner, consent = rows[0]
        if owner != account:
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
        cur = self._exec(
            "INSERT INTO feedback (request_id, account, choice, accepted, edit_path,"
            " edit_applied, note, created_at) VALUES (?,?,?,?,?,?,?,?)",
            (
                request_id,
                account,
                int(choice),
                int(bool(accepted)),
                path,
                applied,
                note,
                time.time(),
            ),
        )
        return {
            "id": int(cur.lastrowid),
            "request_id": request_id,
            "accepted": bool(accepted),
            "training_use": bool(consent) and self.consent(account),
        }

    # ---- reading ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        served = dict(self.query("SELECT consent, COUNT(*) FROM served GROUP BY consent"))
        verdicts = dict(self.query("SELECT accepted, COUNT(*) FROM feedback GROUP BY accepted"))
        edits = self.query("SELECT COUNT(*) FROM feedback WHERE edit_applied=1")[0][0]
        return {
            "db": str(self.path),
            "served": sum(served.values()),
            "served_with_consent": served.get(1, 0),
            "accepted": verdicts.get(1, 0),
            "rejected": verdicts.get(0, 0),
            "edits_applied": edits,
            "accounts_opted_in": sum(
                1
                for (acc,) in self.query("SELECT DISTINCT account FROM consent")
                if self.consent(acc)
            ),
        }

    def training_records(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """(SFT records from accepted, consented requests; counts of what was left out and why).

        The latest verdict per request decides; consent must hold both when the request was
        served and now."""
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
                "SELECT account, endpoint, model, consent, request, response FROM served"
                " WHERE request_id=?",
                (rid,),
            )
            if not rows:  # the served row was deleted by hand (an account's data purged)
                counts["malformed"] = counts.get("malformed", 0) + 1
                continue
            account, endpoint, model, consent, req, resp = rows[0]
            if not consent or req is None or not self.consent(account):
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
