"""The arena's SQLite database: browser sessions, battles (a prompt and two answers) and votes.

Why SQLite in WAL mode, one file beside the server's usage database: votes are the only product
of the arena and must survive restarts and crashes; every write is one `BEGIN IMMEDIATE`
transaction, so a vote is either stored whole or not at all, and readers (the results page,
`hillclimb arena --results`) never block the voters.

Rules the schema enforces, not the web code:
- one vote per battle (`votes.battle_id` is the primary key);
- one vote per user per prompt per pair of models (`UNIQUE(voter, prompt_hash, pair)`, the pair
  stored as its two names sorted): a voter cannot stuff the ballot by asking the same prompt of
  the same two models again. A new prompt or another pair is a new vote.
- a vote's outcome is one of left / right / tie / both_bad.

Session cookies and CSRF tokens are random 256-bit strings; only the SHA-256 of a session token is
stored, so a copy of the database does not let anyone act as a logged-in voter.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hillclimb.errors import HillclimbError
from hillclimb.io import refuse_foreign_sqlite

SCHEMA_VERSION = "arena-v1"
OUTCOMES = ("left", "right", "tie", "both_bad")
SESSION_TTL_S = 7 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  sid_hash TEXT PRIMARY KEY,
  csrf TEXT NOT NULL,
  voter TEXT,
  voter_name TEXT,
  created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS battles (
  id TEXT PRIMARY KEY,
  voter TEXT NOT NULL,
  prompt TEXT NOT NULL,
  prompt_hash TEXT NOT NULL,
  source TEXT NOT NULL,
  model_left TEXT NOT NULL,
  model_right TEXT NOT NULL,
  answer_left TEXT NOT NULL,
  answer_right TEXT NOT NULL,
  finish_left TEXT NOT NULL,
  finish_right TEXT NOT NULL,
  seed INTEGER NOT NULL,
  created REAL NOT NULL,
  CHECK (model_left <> model_right)
);
CREATE INDEX IF NOT EXISTS battles_voter ON battles(voter);
CREATE TABLE IF NOT EXISTS votes (
  battle_id TEXT PRIMARY KEY REFERENCES battles(id),
  voter TEXT NOT NULL,
  prompt_hash TEXT NOT NULL,
  pair TEXT NOT NULL,
  model_left TEXT NOT NULL,
  model_right TEXT NOT NULL,
  outcome TEXT NOT NULL CHECK (outcome IN ('left', 'right', 'tie', 'both_bad')),
  created REAL NOT NULL,
  UNIQUE (voter, prompt_hash, pair)
);
"""


class AlreadyVoted(HillclimbError):
    """The voter has a vote for this battle, or for this prompt and pair of models."""


def prompt_hash(prompt: str) -> str:
    """Prompts that differ only in surrounding whitespace are the same prompt."""
    return hashlib.sha256(prompt.strip().encode("utf-8")).hexdigest()


def pair_key(a: str, b: str) -> str:
    lo, hi = sorted((a, b))
    return f"{lo}\n{hi}"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class Session:
    csrf: str
    voter: str | None  # None: not logged in
    voter_name: str | None


@dataclass
class Battle:
    id: str
    voter: str
    prompt: str
    source: str  # typed | drawn
    model_left: str
    model_right: str
    answer_left: str
    answer_right: str
    finish_left: str
    finish_right: str
    seed: int
    created: float
    outcome: str | None  # the voter's vote, None until cast


@dataclass
class Vote:
    battle_id: str
    voter: str
    model_left: str
    model_right: str
    outcome: str
    created: float


class ArenaStore:
    """Thread-safe: one connection shared under a lock; across processes SQLite's
    `BEGIN IMMEDIATE` serialises writers."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            p = Path(self.path)
            if p.exists() and not p.is_file():
                raise HillclimbError(f"arena database {p} exists and is not a file")
            # `--arena-db registry.sqlite` must not add the arena's tables to another store
            refuse_foreign_sqlite(p, "votes", "arena")
            p.parent.mkdir(parents=True, exist_ok=True)
        # One connection for every thread, under a lock: arena traffic is a few writes a minute,
        # and one connection cannot see a half-written state of its own. Other processes
        # (`hillclimb arena --results`) open their own; WAL lets them read while votes are written.
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON"):
                self._db.execute(f"PRAGMA {pragma}")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise HillclimbError(f"cannot open arena database {self.path}: {exc}") from exc
        if row["value"] != SCHEMA_VERSION:
            raise HillclimbError(
                f"arena database {self.path} has schema {row['value']!r}, expected "
                f"{SCHEMA_VERSION!r}"
            )

    @contextmanager
    def _usable(self) -> Iterator[None]:
        """A database error (a file damaged after it opened, a lock held past the busy timeout)
        as one `HillclimbError` naming the file, not a traceback (`arena --results`); integrity
        errors pass through (the vote rules are read from them)."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise HillclimbError(f"arena database {self.path} could not be used: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._usable():
            yield self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: all of it is stored, or (on any error) none."""
        with self._lock, self._usable():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- sessions -------------------------------------------------------------------------
    def new_session(self, voter: str | None = None, voter_name: str | None = None) -> str:
        """A new session; returns its token (the cookie value, stored only as a hash)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE created < ?", (now - SESSION_TTL_S,))
            c.execute(
                "INSERT INTO sessions(sid_hash, csrf, voter, voter_name, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (_token_hash(token), secrets.token_urlsafe(32), voter, voter_name, now),
            )
        return token

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._read() as c:
            row = c.execute(
                "SELECT * FROM sessions WHERE sid_hash = ? AND created >= ?",
                (_token_hash(token), time.time() - SESSION_TTL_S),
            ).fetchone()
        return None if row is None else Session(row["csrf"], row["voter"], row["voter_name"])

    def end_session(self, token: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE sid_hash = ?", (_token_hash(token),))

    # ---- battles and votes -----------------------------------------------------------------
    def add_battle(
        self,
        *,
        voter: str,
        prompt: str,
        source: str,
        left: tuple[str, str, str],
        right: tuple[str, str, str],
        seed: int,
    ) -> str:
        """Store a battle; `left`/`right` are (model, answer, finish_reason). Returns its id."""
        if left[0] == right[0]:
            raise HillclimbError("a battle needs two different models")
        bid = secrets.token_urlsafe(16)
        with self._write() as c:
            c.execute(
                "INSERT INTO battles(id, voter, prompt, prompt_hash, source, model_left, "
                "model_right, answer_left, answer_right, finish_left, finish_right, seed, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    bid,
                    voter,
                    prompt,
                    prompt_hash(prompt),
                    source,
                    left[0],
                    right[0],
                    left[1],
                    right[1],
                    left[2],
                    right[2],
                    seed,
                    time.time(),
                ),
            )
        return bid

    def battle(self, battle_id: str) -> Battle | None:
        with self._read() as c:
            row = c.execute(
                "SELECT b.*, v.outcome FROM battles b LEFT JOIN votes v ON v.battle_id = b.id "
                "WHERE b.id = ?",
                (battle_id,),
            ).fetchone()
        if row is None:
            return None
        return Battle(
            row["id"],
            row["voter"],
            row["prompt"],
            row["source"],
            row["model_left"],
            row["model_right"],
            row["answer_left"],
            row["answer_right"],
            row["finish_left"],
            row["finish_right"],
            row["seed"],
            row["created"],
            row["outcome"],
        )

    def voted_pairs(self, voter: str, prompt: str) -> set[str]:
        """The pairs (`pair_key`) this voter already voted on for this prompt."""
        with self._read() as c:
            rows = c.execute(
                "SELECT pair FROM votes WHERE voter = ? AND prompt_hash = ?",
                (voter, prompt_hash(prompt)),
            ).fetchall()
        return {r["pair"] for r in rows}

    def vote(self, battle_id: str, voter: str, outcome: str) -> Vote:
        """Record `voter`'s vote on their own battle; refuses a second vote (AlreadyVoted)."""
        if outcome not in OUTCOMES:
            raise HillclimbError(f"unknown vote {outcome!r}; one of {', '.join(OUTCOMES)}")
        now = time.time()
        with self._write() as c:
            b = c.execute("SELECT * FROM battles WHERE id = ?", (battle_id,)).fetchone()
            if b is None or b["voter"] != voter:
                raise HillclimbError(f"no battle {battle_id!r} for this voter")
            pair = pair_key(b["model_left"], b["model_right"])
            try:
                c.execute(
                    "INSERT INTO votes(battle_id, voter, prompt_hash, pair, model_left, "
                    "model_right, outcome, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        battle_id,
                        voter,
                        b["prompt_hash"],
                        pair,
                        b["model_left"],
                        b["model_right"],
                        outcome,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyVoted(
                    "you have already voted on this prompt for this pair of models"
                ) from None
        return Vote(battle_id, voter, b["model_left"], b["model_right"], outcome, now)

    def votes(self) -> list[Vote]:
        with self._read() as c:
            rows = c.execute("SELECT * FROM votes ORDER BY created, battle_id").fetchall()
        return [
            Vote(
                r["battle_id"],
                r["voter"],
                r["model_left"],
                r["model_right"],
                r["outcome"],
                r["created"],
            )
            for r in rows
        ]
