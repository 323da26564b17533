"""The registry's SQLite store: runs, checkpoints (lineage), evaluations (item level), aliases.

Why SQLite: one file in the state directory, safe for several readers and one writer at a time
(WAL, busy timeout), transactions for free, inspectable with the `sqlite3` shell. Every write
(register a checkpoint, import an evaluation, record a promotion and move an alias) is one
`BEGIN IMMEDIATE … COMMIT`, so bad input — a corrupt eval file, an unknown suite, a checkpoint
that is gone — raises a `HillclimbError` and leaves the database exactly as it was.

Identity: a checkpoint's id is the first 12 hex digits of the SHA-256 of its weight files
(`*.safetensors` and the shard index, names and bytes), so the same weights registered twice are
one checkpoint, and a copied or moved directory is recognised. Lineage columns: `parent_id` (the
checkpoint it was trained from, when registered), `stage` (pretrain / sft / rl / ...), `run_id`,
`recipe_hash` (the climb stage hash: the recipe sections that produced it, chained with its
parents'), `data_card_hash` (SHA-256 of the data card it was trained on).

Evaluations: one row per (checkpoint, suite) import, with the metric summary and one `eval_items`
row per item (`item_id → passed, score`); a suite is an evaluation split (`heldout`,
`heldout_phrasing`, ...). A selector `SPLIT:FILTER` narrows a suite to a kind (`reasoning`,
`code`, `heldout_family`), a family (`arith`) or a tier (`t2`) when comparing.

Aliases (`thinking@prod`) name the checkpoint that is live; they move only through a promotion
decision (`gate.promote`) or an explicit, recorded `set_alias`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.io import refuse_foreign_sqlite
from hillclimb.model.identity import weight_files, weights_sha256
from hillclimb.registry.evalfile import LIKE_SETTINGS, Item, parse_result

REGISTRY_FILE = "registry.sqlite"
SCHEMA_VERSION = 1
ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*@[A-Za-z0-9][A-Za-z0-9._-]*$")
KINDS = ("reasoning", "code", "heldout_family")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    path TEXT,
    recipe_hash TEXT,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    model TEXT,
    preset TEXT,
    stage TEXT,
    parent_id TEXT REFERENCES checkpoints(id),
    parent_path TEXT,
    run_id TEXT REFERENCES runs(id),
    recipe_hash TEXT,
    data_card_hash TEXT,
    created TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS checkpoints_path ON checkpoints(path);
CREATE TABLE IF NOT EXISTS evals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    checkpoint_id TEXT NOT NULL REFERENCES checkpoints(id),
    suite TEXT NOT NULL,
    n INTEGER NOT NULL,
    accuracy REAL NOT NULL,
    settings TEXT NOT NULL,
    summary TEXT NOT NULL,
    source TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evals_ck_suite ON evals(checkpoint_id, suite);
CREATE TABLE IF NOT EXISTS eval_items (
    eval_id INTEGER NOT NULL REFERENCES evals(id) ON DELETE CASCADE,
    item_id TEXT NOT NULL,
    family TEXT,
    tier INTEGER,
    kind TEXT,
    passed INTEGER NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (eval_id, item_id)
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    candidate TEXT NOT NULL REFERENCES checkpoints(id),
    incumbent TEXT REFERENCES checkpoints(id),
    alias TEXT,
    promoted INTEGER NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT PRIMARY KEY,
    checkpoint_id TEXT NOT NULL REFERENCES checkpoints(id),
    decision_id INTEGER REFERENCES decisions(id),
    updated TEXT NOT NULL
);
"""


# `record_decision(alias_was=...)` default: move the alias whatever it points at (manual aliases)
ANY_TARGET = object()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def registry_path(registry: Path | None = None, state_dir: Path | None = None) -> Path:
    """The registry file: `--registry PATH` wins, else `registry.sqlite` in the state directory
    (the one `hillclimb serve --state-dir` uses: `$XDG_STATE_HOME/hillclimb` or
    `~/.local/state/hillclimb`)."""
    if registry is not None:
        return Path(registry)
    from hillclimb.io import default_state_dir

    return (Path(state_dir) if state_dir is not None else default_state_dir()) / REGISTRY_FILE


# ---- records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    id: str
    content_hash: str
    path: str
    model: str | None
    preset: str | None
    stage: str | None
    parent_id: str | None
    parent_path: str | None
    run_id: str | None
    recipe_hash: str | None
    data_card_hash: str | None
    created: str
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def missing_reason(self) -> str | None:
        """Why the checkpoint's files cannot be served any more (None: they are there)."""
        p = Path(self.path)
        if not p.is_dir():
            return f"its directory {p} no longer exists"
        if not (p / "config.json").is_file() or not weight_files(p):
            return f"its directory {p} has no config.json or weights any more"
        return None

    def unservable_reason(self) -> str | None:
        """Why an alias must not point at this checkpoint's directory: its files are gone, or
        its weights are no longer the ones registered (None: they are).

        Why the hash: a checkpoint is its weights, and its evaluations and gate decisions are
        about those bytes. A directory trained into again (or a weights file replaced) after
        registration kept its path, so an alias moved to it — and `serve` behind the alias —
        served weights that no evaluation or gate had seen."""
        gone = self.missing_reason()
        if gone:
            return gone
        now = content_hash(self.path)
        if now != self.content_hash:
            return (
                f"its weights in {self.path} changed since it was registered (they hash to "
                f"{now[:12]}, not {self.content_hash[:12]}); register and evaluate them again"
            )
        return None


@dataclass(frozen=True)
class Evaluation:
    id: int
    checkpoint_id: str
    suite: str
    n: int
    accuracy: float
    settings: dict[str, Any]
    summary: dict[str, Any]
    source: str | None
    created: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Alias:
    name: str
    checkpoint_id: str
    decision_id: int | None
    updated: str


# ---- weights identity ---------------------------------------------------------------------------
def content_hash(directory: str | os.PathLike[str]) -> str:
    """The checkpoint's weights hash (`model.identity.weights_sha256`), or a clear error."""
    d = Path(directory)
    if not d.is_dir():
        raise HillclimbError(f"checkpoint directory not found: {d}")
    digest = weights_sha256(d)
    if digest is None:
        raise HillclimbError(f"{d} is not a checkpoint: no *.safetensors weights")
    return digest


def check_weights(ck: Checkpoint, result: Any, source: str) -> None:
    """Refuse `result` for `ck` when it records other weights (`weights_sha256`, the same hash
    as `content_hash`: `eval.core.model_identity`); a result without it (an older one, a
    suite result, a server's) is taken as before.

    Why: a result names its checkpoint by path, and a path outlives its weights (a climb run
    again with `--restart`); `add-eval` attached an old `eval.json` to the new weights, and
    `--force` (for a moved checkpoint) attached any result at all."""
    rec = result.get("weights_sha256") if isinstance(result, dict) else None
    if rec is None or rec == ck.content_hash:
        return
    shown = rec[:12] if isinstance(rec, str) else repr(rec)
    raise HillclimbError(
        f"{source}: it evaluated weights {shown}, not checkpoint {ck.id}'s "
        f"({ck.content_hash[:12]}); evaluate {ck.path} again"
    )


def file_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of one file (the data card's hash in lineage)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_info(directory: Path) -> dict[str, Any]:
    """`hillclimb.json` (preset, family, lineage) without importing the model package (torch)."""
    f = directory / "hillclimb.json"
    if not f.is_file():
        return {}
    try:
        info = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HillclimbError(f"malformed {f}: {exc}") from exc
    return info if isinstance(info, dict) else {}


def _abs(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


# ---- the store ----------------------------------------------------------------------------------
class Registry:
    """One registry database. `create=False` refuses a path with no database (read-only users:
    `list`, `show`, `compare`, serving an alias), so a typo never creates an empty registry."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            if not create:
                raise HillclimbError(f"no registry at {self.path} (give --registry PATH)")
            if self.path.exists():
                raise HillclimbError(f"registry path {self.path} exists and is not a file")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HillclimbError(f"cannot create {self.path.parent}: {exc}") from exc
            if not os.access(self.path.parent, os.W_OK | os.X_OK):
                # SQLite's own word for it is "unable to open database file"
                raise HillclimbError(
                    f"cannot create registry {self.path}: its directory is not writable by "
                    "this user (give --registry PATH)"
                )
        else:
            # `--registry telemetry.db` must not turn another store's file into a registry
            refuse_foreign_sqlite(self.path, "checkpoints", "registry")
            _refuse_other_checkpoints_table(self.path)
        self.read_only_reason: str | None = None
        if self.path.is_file():
            self.read_only_reason = _not_writable_reason(self.path)
        if self.read_only_reason is not None:
            self.conn = _connect_read_only(self.path)
            return
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA busy_timeout = 30000")
            self.conn.execute("PRAGMA journal_mode = WAL")
            # the version first: a registry of another schema is refused before this one's
            # tables are added to it
            self._check_schema(self._schema_version())
            self.conn.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS)
            with self.transaction():
                row = self._schema_version()
                if row is None:
                    self.conn.execute(
                        "INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                    )
                self._check_schema(row)
        except sqlite3.DatabaseError as exc:
            raise HillclimbError(f"{self.path} is not a usable registry database: {exc}") from exc

    def _schema_version(self) -> str | None:
        """The `meta` table's schema row (None: no table or no row yet)."""
        has = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        row = has and self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        return str(row[0]) if row else None

    def _check_schema(self, version: str | None) -> None:
        if version is not None and version != str(SCHEMA_VERSION):
            raise HillclimbError(
                f"registry {self.path} has schema {version}, this hillclimb reads {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """Close; a database error met inside the block (a file damaged after it opened, a
        lock held past the busy timeout) becomes one `HillclimbError` naming the registry, not a
        traceback. Integrity errors stay what they are: they are bugs, not bad files."""
        self.close()
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
            raise HillclimbError(
                f"registry {self.path} could not be used: {exc} (a damaged file, or another "
                "process held it too long); a write it refused was rolled back"
            ) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing: an exception rolls every statement of the block back."""
        if self.read_only_reason is not None:
            raise HillclimbError(
                f"registry {self.path} is read-only here ({self.read_only_reason}); reading it "
                "works, this command writes: run it as the registry's owner, or give "
                "--registry PATH to one you can write"
            )
        if self.conn.in_transaction:  # nested: the outer block commits or rolls back
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---- runs -----------------------------------------------------------------------------------
    def register_run(
        self, kind: str, path: str | os.PathLike[str], *, name: str | None, recipe_hash: str | None
    ) -> str:
        """A run (e.g. a climb's run directory), identified by kind + absolute path."""
        p = _abs(path)
        rid = hashlib.sha256(f"{kind}\0{p}".encode()).hexdigest()[:12]
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs(id, kind, name, path, recipe_hash, created) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET name=excluded.name, recipe_hash=excluded.recipe_hash",
                (rid, kind, name, p, recipe_hash, _now()),
            )
        return rid

    # ---- checkpoints ----------------------------------------------------------------------------
    def register_checkpoint(
        self,
        path: str | os.PathLike[str],
        *,
        stage: str | None = None,
        parent: str | None = None,
        run_id: str | None = None,
        recipe_hash: str | None = None,
        data_card_hash: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Register (or update) the checkpoint at `path`; returns its record.

        Idempotent: the same weights are one checkpoint; a second registration records the new
        path and fills in lineage that was unknown, never changing what was known (weights equal
        to their parent's — a stage that changed nothing — stay the parent's checkpoint). `parent` is a
        reference (id, alias or path); without it, `hillclimb.json`'s lineage parent path is used
        and linked when that directory is registered."""
        d = Path(path).expanduser()
        chash = content_hash(d)
        info = _read_info(d)
        lineage = info.get("lineage") if isinstance(info.get("lineage"), dict) else {}
        parent_path = None
        parent_id = None
        if parent is not None:
            pc = self.resolve(parent)
            parent_id, parent_path = pc.id, pc.path
        elif lineage.get("parent"):
            parent_path = _abs(str(lineage["parent"]))
            found = self._by_path(parent_path)
            parent_id = found.id if found else None
        cid = chash[:12]
        if parent_id == cid:  # same weights as the parent (a stage that changed nothing): one
            parent_id = parent_path = None  # checkpoint, whose first-known lineage stands
        model = info.get("family") or (info.get("model_config") or {}).get("family")
        with self.transaction() as db:
            old = db.execute("SELECT * FROM checkpoints WHERE id=?", (cid,)).fetchone()
            if old is not None and old["content_hash"] != chash:
                raise HillclimbError(f"checkpoint id collision on {cid}; registry is inconsistent")
            if (
                run_id is not None
                and db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is None
            ):
                raise HillclimbError(f"unknown run {run_id}")
            merged_meta = {**(meta or {}), **(json.loads(old["meta"]) if old else {})}
            # the first location stands while it still holds the weights (a copy elsewhere, or
            # a later stage that changed nothing, does not move it); a moved checkpoint follows
            keep = old is not None and _holds(Path(old["path"]), chash, d)
            path_now = old["path"] if keep else _abs(d)
            db.execute(
                "INSERT INTO checkpoints(id, content_hash, path, model, preset, stage, parent_id, "
                "parent_path, run_id, recipe_hash, data_card_hash, created, meta) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                "path=excluded.path, model=COALESCE(model, excluded.model), "
                "preset=COALESCE(preset, excluded.preset), stage=COALESCE(stage, excluded.stage), "
                "parent_id=COALESCE(parent_id, excluded.parent_id), "
                "parent_path=COALESCE(parent_path, excluded.parent_path), "
                "run_id=COALESCE(run_id, excluded.run_id), "
                "recipe_hash=COALESCE(recipe_hash, excluded.recipe_hash), "
                "data_card_hash=COALESCE(data_card_hash, excluded.data_card_hash), "
                "meta=excluded.meta",
                (
                    cid,
                    chash,
                    path_now,
                    model,
                    info.get("preset"),
                    stage or lineage.get("stage"),
                    parent_id,
                    parent_path,
                    run_id,
                    recipe_hash,
                    data_card_hash,
                    _now(),
                    json.dumps(merged_meta, sort_keys=True),
                ),
            )
            # children registered before their parent: link them now
            db.execute(
                "UPDATE checkpoints SET parent_id=? WHERE parent_id IS NULL AND parent_path=? "
                "AND id<>?",
                (cid, _abs(d), cid),
            )
        return self.checkpoint(cid)

    def checkpoint(self, cid: str) -> Checkpoint:
        row = self.conn.execute("SELECT * FROM checkpoints WHERE id=?", (cid,)).fetchone()
        if row is None:
            raise HillclimbError(f"unknown checkpoint {cid!r}")
        return _checkpoint(row)

    def checkpoints(self) -> list[Checkpoint]:
        rows = self.conn.execute("SELECT * FROM checkpoints ORDER BY created, id").fetchall()
        return [_checkpoint(r) for r in rows]

    def _by_path(self, path: str) -> Checkpoint | None:
        row = self.conn.execute(
            "SELECT * FROM checkpoints WHERE path=? ORDER BY created DESC LIMIT 1", (path,)
        ).fetchone()
        return _checkpoint(row) if row else None

    def resolve(self, ref: str | os.PathLike[str]) -> Checkpoint:
        """A checkpoint from a reference: an alias (`thinking@prod`), an id (or a unique prefix of
        at least 4 hex digits) or a registered checkpoint directory."""
        s = str(ref)
        p = Path(s).expanduser()
        if p.is_dir():
            # a directory names the weights in it now (not what was registered at its path:
            # trained into again, it holds another checkpoint); without weights, its record
            if weight_files(p):
                row = self.conn.execute(
                    "SELECT * FROM checkpoints WHERE content_hash=?", (content_hash(p),)
                ).fetchone()
                found = _checkpoint(row) if row else None
                was = self._by_path(_abs(p)) if found is None else None
                if was is not None:
                    raise HillclimbError(
                        f"the weights in {p} changed since they were registered as checkpoint "
                        f"{was.id}: `hillclimb registry add {p}` registers the new ones (and "
                        f"`{was.id}` still names the old)"
                    )
            else:
                found = self._by_path(_abs(p))
            if found is None:
                raise HillclimbError(
                    f"checkpoint {p} is not registered in {self.path} "
                    "(`hillclimb registry add DIR` registers it)"
                )
            return found
        if "@" in s:
            return self.checkpoint(self.alias(s).checkpoint_id)
        if re.fullmatch(r"[0-9a-f]{4,64}", s):
            rows = self.conn.execute(
                "SELECT * FROM checkpoints WHERE id LIKE ? OR content_hash=?", (s[:12] + "%", s)
            ).fetchall()
            rows = [r for r in rows if r["content_hash"].startswith(s)]
            if len(rows) == 1:
                return _checkpoint(rows[0])
            if len(rows) > 1:
                raise HillclimbError(
                    f"checkpoint id prefix {s!r} is ambiguous: {', '.join(r['id'] for r in rows)}"
                )
        raise HillclimbError(
            f"unknown checkpoint {s!r}: not an alias, a registered id or a checkpoint directory "
            f"(registry {self.path}; `hillclimb registry list` shows what is there)"
        )

    def lineage(self, cid: str) -> list[Checkpoint]:
        """The checkpoint and its registered ancestors, newest first."""
        chain: list[Checkpoint] = []
        seen: set[str] = set()
        cur: str | None = cid
        while cur is not None and cur not in seen:
            seen.add(cur)
            ck = self.checkpoint(cur)
            chain.append(ck)
            cur = ck.parent_id
        return chain

    # ---- evaluations ----------------------------------------------------------------------------
    def add_eval_result(
        self, cid: str, result: dict[str, Any], *, source: str | None = None
    ) -> list[Evaluation]:
        """Import one evaluation result for checkpoint `cid` (`parse_result`: a `run_eval`
        result gives one suite per split, a standard-suite result one suite), each with its
        item-level results. A re-import of the same suite
        with the same settings replaces the earlier one (an identical one is kept, id and all:
        `_same_as_latest`). Checks the file's own totals against its
        items first: a corrupt file changes nothing. A result that records the content hash
        of the weights it evaluated (`weights_sha256`) is refused for any other checkpoint."""
        check_weights(self.checkpoint(cid), result, source or "<result>")
        suites = parse_result(result, source or "<result>")
        out_ids: list[int] = []
        with self.transaction() as db:
            for suite, (summary, settings, items) in suites.items():
                settings_json = json.dumps(settings, sort_keys=True)
                summary_json = json.dumps(summary, sort_keys=True)
                same = self._same_as_latest(cid, suite, settings_json, summary_json, items)
                if same is not None:  # the same result again: kept as it is, with its id
                    out_ids.append(same)
                    continue
                db.execute(
                    "DELETE FROM evals WHERE checkpoint_id=? AND suite=? AND settings=?",
                    (cid, suite, settings_json),
                )
                cur = db.execute(
                    "INSERT INTO evals(checkpoint_id, suite, n, accuracy, settings, summary, "
                    "source, created) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        cid,
                        suite,
                        summary["n"],
                        summary["accuracy"],
                        settings_json,
                        summary_json,
                        source,
                        _now(),
                    ),
                )
                eid = int(cur.lastrowid or 0)
                db.executemany(
                    "INSERT INTO eval_items(eval_id, item_id, family, tier, kind, passed, score) "
                    "VALUES (?,?,?,?,?,?,?)",
                    [
                        (eid, it.item_id, it.family, it.tier, it.kind, int(it.passed), it.score)
                        for it in items
                    ],
                )
                out_ids.append(eid)
        return [self._eval(i) for i in out_ids]

    def _same_as_latest(
        self, cid: str, suite: str, settings_json: str, summary_json: str, items: list[Item]
    ) -> int | None:
        """The id of `cid`'s newest evaluation on `suite` when it holds exactly this result (same
        settings, summary and item results), else None.

        Why: the climb's registry stage imports its eval files on every run; a re-import that
        replaced an identical row gave it a new id, and a stored gate decision (which names
        the evaluations it compared) could not tell "the same evidence" from "the eval stage
        ran again"."""
        row = self.conn.execute(
            "SELECT id, settings, summary FROM evals WHERE checkpoint_id=? AND suite=? "
            "ORDER BY id DESC LIMIT 1",
            (cid, suite),
        ).fetchone()
        if row is None or row["settings"] != settings_json or row["summary"] != summary_json:
            return None
        stored = self.conn.execute(
            "SELECT item_id, family, tier, kind, passed, score FROM eval_items WHERE eval_id=?",
            (row["id"],),
        ).fetchall()
        new = [(it.item_id, it.family, it.tier, it.kind, int(it.passed), it.score) for it in items]
        return row["id"] if sorted(map(tuple, stored)) == sorted(new) else None

    def _eval(self, eid: int) -> Evaluation:
        row = self.conn.execute("SELECT * FROM evals WHERE id=?", (eid,)).fetchone()
        return _evaluation(row)

    def evals(self, cid: str) -> list[Evaluation]:
        rows = self.conn.execute(
            "SELECT * FROM evals WHERE checkpoint_id=? ORDER BY suite, id", (cid,)
        ).fetchall()
        return [_evaluation(r) for r in rows]

    def suites(self, cid: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT suite FROM evals WHERE checkpoint_id=? ORDER BY suite", (cid,)
        ).fetchall()
        return [r["suite"] for r in rows]

    def latest_eval(
        self, cid: str, suite: str, *, like: dict[str, Any] | None = None
    ) -> Evaluation:
        """The newest evaluation of `cid` on `suite` (a split; a `SPLIT:FILTER` selector's
        split) — with settings `like` when it has one — ; a clear error naming the suites it
        does have otherwise.

        Why `like`: evaluations of one suite under other settings (a token budget, a seed) are
        all kept; the gate compared the candidate with the incumbent's newest one, under other
        settings with a warning, even when the incumbent also had one like the candidate's."""
        split = suite.split(":", 1)[0]
        row = None
        if like is not None:
            row = self.conn.execute(
                "SELECT * FROM evals WHERE checkpoint_id=? AND suite=? AND settings=? "
                "ORDER BY id DESC LIMIT 1",
                (cid, split, json.dumps(like, sort_keys=True)),
            ).fetchone()
            row = row or self._comparable_eval(cid, split, like)
        row = (
            row
            or self.conn.execute(
                "SELECT * FROM evals WHERE checkpoint_id=? AND suite=? ORDER BY id DESC LIMIT 1",
                (cid, split),
            ).fetchone()
        )
        if row is None:
            have = self.suites(cid)
            raise HillclimbError(
                f"checkpoint {cid} has no evaluation on suite {split!r}; it has "
                f"{', '.join(have) if have else 'none (import one: hillclimb registry add-eval)'}"
            )
        return _evaluation(row)

    def _comparable_eval(self, cid: str, split: str, like: dict[str, Any]) -> Any:
        """The newest evaluation of `cid` on `split` that records the `LIKE_SETTINGS` `like`
        records, with the same values (other settings may differ: a warning), else None.

        Why: with no evaluation under exactly `like`'s settings the newest was taken, even when
        it was one the gate must call not comparable (token healing on) and an older one was
        comparable (healing off, another timeout)."""
        keys = [k for k in LIKE_SETTINGS if k in like]
        if not keys:
            return None
        rows = self.conn.execute(
            "SELECT * FROM evals WHERE checkpoint_id=? AND suite=? ORDER BY id DESC", (cid, split)
        ).fetchall()
        for r in rows:
            st = json.loads(r["settings"])
            if all(k in st and st[k] == like[k] for k in keys):
                return r
        return None

    def items(
        self, cid: str, suite: str, *, like: dict[str, Any] | None = None
    ) -> tuple[Evaluation, dict[str, Item]]:
        """Item results of the newest evaluation of `cid` on `suite` (`SPLIT` or `SPLIT:FILTER`,
        FILTER = a kind, a family or a tier `tN`), with settings `like` when it has one."""
        ev = self.latest_eval(cid, suite, like=like)
        rows = self.conn.execute(
            "SELECT item_id, family, tier, kind, passed, score FROM eval_items WHERE eval_id=?",
            (ev.id,),
        ).fetchall()
        items = {
            r["item_id"]: Item(
                r["item_id"], r["family"], r["tier"], r["kind"], bool(r["passed"]), r["score"]
            )
            for r in rows
        }
        if ":" in suite:
            filt = suite.split(":", 1)[1]
            items = {k: v for k, v in items.items() if _matches(v, filt)}
            if not items:
                fams = sorted({r["family"] for r in rows if r["family"]})
                raise HillclimbError(
                    f"suite selector {suite!r} matches no item of checkpoint {cid}'s "
                    f"{ev.suite!r} evaluation; filters: kinds {', '.join(KINDS)}, families "
                    f"{', '.join(fams)}, tiers t1..t4"
                )
        return ev, items

    # ---- aliases and decisions --------------------------------------------------------------------
    def alias(self, name: str) -> Alias:
        row = self.conn.execute("SELECT * FROM aliases WHERE name=?", (name,)).fetchone()
        if row is None:
            known = [a.name for a in self.aliases()]
            raise HillclimbError(
                f"unknown alias {name!r} in {self.path}; aliases: "
                f"{', '.join(known) if known else 'none yet (hillclimb promote ... --alias NAME)'}"
            )
        return Alias(row["name"], row["checkpoint_id"], row["decision_id"], row["updated"])

    def find_alias(self, name: str) -> Alias | None:
        row = self.conn.execute("SELECT * FROM aliases WHERE name=?", (name,)).fetchone()
        return (
            Alias(row["name"], row["checkpoint_id"], row["decision_id"], row["updated"])
            if row
            else None
        )

    def aliases(self, cid: str | None = None) -> list[Alias]:
        q, args = "SELECT * FROM aliases", ()
        if cid is not None:
            q, args = q + " WHERE checkpoint_id=?", (cid,)
        rows = self.conn.execute(q + " ORDER BY name", args).fetchall()
        return [Alias(r["name"], r["checkpoint_id"], r["decision_id"], r["updated"]) for r in rows]

    def record_decision(
        self,
        candidate: str,
        incumbent: str | None,
        alias: str | None,
        promoted: bool,
        report: dict[str, Any],
        *,
        alias_was: str | None | object = ANY_TARGET,
    ) -> int:
        """Store a promotion decision and, when promoted, point `alias` at the candidate — in
        one transaction. `alias_was`: the checkpoint the alias pointed at (None: no alias) when
        the decision was judged; if another writer moved it since, nothing is stored
        (`HillclimbError`): the candidate was never compared with what it would replace."""
        if alias is not None:
            check_alias_name(alias)
        with self.transaction() as db:
            if promoted and alias is not None and alias_was is not ANY_TARGET:
                row = db.execute("SELECT checkpoint_id FROM aliases WHERE name=?", (alias,))
                now = (row.fetchone() or [None])[0]
                if now != alias_was:
                    raise HillclimbError(
                        f"alias {alias} moved from {alias_was or '(none)'} to {now or '(none)'} "
                        "while the gate ran (another promotion); nothing was recorded — run the "
                        "promotion again to judge the candidate against it"
                    )
            cur = db.execute(
                "INSERT INTO decisions(created, candidate, incumbent, alias, promoted, report) "
                "VALUES (?,?,?,?,?,?)",
                (_now(), candidate, incumbent, alias, int(promoted), json.dumps(report)),
            )
            did = int(cur.lastrowid or 0)
            if promoted and alias is not None:
                db.execute(
                    "INSERT INTO aliases(name, checkpoint_id, decision_id, updated) VALUES "
                    "(?,?,?,?) ON CONFLICT(name) DO UPDATE SET checkpoint_id=excluded.checkpoint_id, "
                    "decision_id=excluded.decision_id, updated=excluded.updated",
                    (alias, candidate, did, _now()),
                )
        return did

    def set_alias(self, name: str, cid: str, reason: str) -> int:
        """Point `name` at `cid` without a gate (recorded as a manual decision with `reason`)."""
        check_alias_name(name)
        ck = self.checkpoint(cid)
        gone = ck.unservable_reason()
        if gone:
            raise HillclimbError(f"refusing to alias {name} to checkpoint {cid}: {gone}")
        old = self.find_alias(name)
        return self.record_decision(
            cid,
            old.checkpoint_id if old else None,
            name,
            True,
            {"manual": True, "reason": reason, "promoted": True},
        )

    def decisions(self, cid: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM decisions", ()
        if cid is not None:
            q, args = q + " WHERE candidate=? OR incumbent=?", (cid, cid)
        rows = self.conn.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [
            {
                "id": r["id"],
                "created": r["created"],
                "candidate": r["candidate"],
                "incumbent": r["incumbent"],
                "alias": r["alias"],
                "promoted": bool(r["promoted"]),
                "report": json.loads(r["report"]),
            }
            for r in rows
        ]

    def serve_path(self, name: str) -> Path:
        """The directory to serve for alias `name`; a clear error when the alias is unknown or
        its checkpoint's files are gone."""
        a = self.alias(name)
        ck = self.checkpoint(a.checkpoint_id)
        gone = ck.unservable_reason()
        if gone:
            raise HillclimbError(
                f"alias {name} points at checkpoint {ck.id}, but {gone}; promote another "
                f"checkpoint or `hillclimb registry alias {name} CKPT` (registry {self.path})"
            )
        return Path(ck.path)


def _not_writable_reason(path: Path) -> str | None:
    """Why this process cannot write the registry at `path` (None: it can). SQLite writes the
    file and, in WAL mode, `-wal`/`-shm` files beside it, so both must be writable."""
    if not os.access(path, os.W_OK):
        return "the file is not writable by this user"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"its directory {path.parent} is not writable by this user"
    return None


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing registry another account owns (a shared team
    registry, `serve --state-dir` of the service that trains), after checking its schema.

    Why: opening it the writable way ran `PRAGMA journal_mode = WAL` and `CREATE TABLE IF NOT
    EXISTS`, so `registry list` / `show` / serving an alias from a registry this user may read
    but not write failed with "is not a usable registry database: attempt to write a readonly
    database" (session 23, as a non-root user). `mode=ro` reads a live registry (its writer's
    `-wal`/`-shm` present); a WAL-mode file at rest in a directory we cannot write needs
    `immutable=1` (SQLite cannot create the `-shm` it would otherwise want)."""
    uri = path.resolve().as_uri()
    last: sqlite3.DatabaseError | None = None
    for query in ("mode=ro", "mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(f"{uri}?{query}", uri=True, isolation_level=None, timeout=30.0)
        except sqlite3.DatabaseError as exc:
            last = exc
            continue
        conn.row_factory = sqlite3.Row
        try:
            has = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            row = has and conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            last = exc
            continue
        if not row:
            conn.close()
            raise HillclimbError(f"{path} is not a registry database (no schema row)")
        if str(row[0]) != str(SCHEMA_VERSION):
            conn.close()
            raise HillclimbError(
                f"registry {path} has schema {row[0]}, this hillclimb reads {SCHEMA_VERSION}"
            )
        return conn
    raise HillclimbError(f"{path} is not a usable registry database: {last}")


def _refuse_other_checkpoints_table(path: Path) -> None:
    """Raise HillclimbError when `path` has a `checkpoints` table that is not the registry's
    (no `content_hash` column): a training tool's own database, say.

    Why: `refuse_foreign_sqlite` looks for the table's name only, so such a file passed the
    check, had `meta`, `runs`, `evals`, ... added to it and only then failed on a missing
    column — another program's file changed by a command that refused it. Read-only; a file
    SQLite cannot read passes, to the caller's own "not a usable registry" error."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except (OSError, sqlite3.Error):
        return
    try:
        cols = {r[1] for r in con.execute("PRAGMA table_info(checkpoints)")}
    except sqlite3.Error:
        return
    finally:
        con.close()
    if cols and "content_hash" not in cols:
        raise HillclimbError(
            f"{path} is not a registry database (its `checkpoints` table has the columns "
            f"{', '.join(sorted(cols))}); refusing to change it"
        )


def check_alias_name(name: str) -> None:
    if not ALIAS_RE.fullmatch(name):
        raise HillclimbError(
            f"bad alias {name!r}: use MODEL@TAG (letters, digits, '.', '_', '-'), e.g. thinking@prod"
        )


def _holds(old: Path, chash: str, new: Path) -> bool:
    """Whether `old` (a checkpoint's recorded directory) still holds the weights hashed
    `chash` — `new`, the directory just hashed, is known to."""
    if not weight_files(old):
        return False
    if _abs(old) == _abs(new):
        return True
    try:
        return content_hash(old) == chash
    except (HillclimbError, OSError):
        return False


def _matches(it: Item, filt: str) -> bool:
    if filt in KINDS:
        return it.kind == filt
    m = re.fullmatch(r"t(\d+)", filt)
    if m:
        return it.tier == int(m.group(1))
    return it.family == filt


def _checkpoint(row: sqlite3.Row) -> Checkpoint:
    d = dict(row)
    d["meta"] = json.loads(d["meta"] or "{}")
    return Checkpoint(**d)


def _evaluation(row: sqlite3.Row) -> Evaluation:
    d = dict(row)
    d["settings"] = json.loads(d["settings"])
    d["summary"] = json.loads(d["summary"])
    return Evaluation(**d)
