"""Billing: per-key credits and usage in SQLite — reserve up front, settle at the end.

(Named billing, not accounting: `model/accounting.py` counts parameters and FLOPs.)

Why reserve-then-settle in `BEGIN IMMEDIATE` transactions: a request's final cost is known only
when generation ends, but its *largest possible* cost is known before it starts (prompt tokens +
max_tokens, at the model's prices). Reserving that maximum — subtracting it from the balance in
the same write transaction that checks the balance — makes "credits never go negative" hold under
any concurrency, across threads and even across server processes sharing the file: SQLite takes
the write lock at `BEGIN IMMEDIATE`, so two reservations can never both see the old balance.
Settling refunds `reserved - actual`. A request that dies without settling (a crash) leaves its
row `reserved`; `release_stale()` refunds those at the next start-up.

Money is stored as integer micro-credits (1e-6 credit) so sums are exact. A price is given in
credits per million tokens, which makes the arithmetic pleasant: a request's cost in micro-credits
is `tokens × price_per_million` (rounded up per request).

Keys are stored only as SHA-256 hashes (plus an 8-character prefix to recognise them); the
plaintext key is shown once, when `hillclimb keys create` makes it.

WAL mode lets `hillclimb keys usage` read while the server writes.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.io import refuse_foreign_sqlite

MICRO = 1_000_000  # micro-credits per credit
# the largest balance: micro-credits are SQLite INTEGERs (signed 64-bit, ≈9.2e18); a larger grant
# was an OverflowError traceback, and a sum past the limit silently turned into a REAL
MAX_CREDITS = 1e12
SCHEMA_VERSION = "1"
MAX_NAME_CHARS = 128
# the smallest rate limit, in requests per minute (one request per 1000 minutes): a smaller one
# (say 5e-324, a finite number > 0) divided by zero in the token bucket — a 500 on the key's
# second request — or sent a Retry-After of hundreds of digits
MIN_RPM = 1e-3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    credits_micro INTEGER,          -- NULL: unlimited
    rate_limit_rpm REAL,            -- NULL: unlimited
    disabled INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    name_key TEXT                   -- `name_key(name)`; NULL: written by an older hillclimb
);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    account_id INTEGER REFERENCES accounts(id),   -- NULL in open mode
    account_name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,           -- reserved | settled | released
    reserved_micro INTEGER NOT NULL DEFAULT 0,
    cost_micro INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    finish_reason TEXT,
    http_status INTEGER,
    created REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS requests_account ON requests(account_id, created);
"""


@dataclass(frozen=True)
class Price:
    """Credits per million tokens. Reasoning tokens are completion tokens."""

    prompt: float
    completion: float

    def cost_micro(self, prompt_tokens: int, completion_tokens: int) -> int:
        return math.ceil(prompt_tokens * self.prompt + completion_tokens * self.completion)


def default_price(active_params: int) -> Price:
    """Prices proportional to active parameters: 1 credit per million prompt tokens per billion
    active parameters; completion tokens 4× (decode is memory-bound, prefill is not)."""
    p = active_params / 1e9
    return Price(prompt=p, completion=4 * p)


@dataclass
class Account:
    id: int
    name: str
    key_prefix: str
    credits_micro: int | None
    rate_limit_rpm: float | None
    disabled: bool
    # the key's SHA-256: who the account is for the flywheel (consent, whose requests), which a
    # rename in the keys file does not change and a new key given an old name does not inherit
    key_hash: str = ""

    @property
    def credits(self) -> float | None:
        return None if self.credits_micro is None else self.credits_micro / MICRO


class InsufficientCredits(HillclimbError):
    def __init__(self, needed_micro: int, balance_micro: int):
        super().__init__(
            f"insufficient credits: this request may cost up to {needed_micro / MICRO:.6f} credits "
            f"but the balance is {balance_micro / MICRO:.6f}"
        )
        self.needed_micro = needed_micro
        self.balance_micro = balance_micro


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "hc-" + secrets.token_urlsafe(32)


def check_account_name(name: Any) -> str:
    """An account name operators can type back (`keys credit --name`) and that prints on one
    line: a non-blank string without control characters (newline, NUL, tab), without outer
    whitespace, at most `MAX_NAME_CHARS` characters. Why: `keys create --name ' '` or a name with
    a newline made an account that `keys credit` could hardly address, and that broke the
    one-line CLI output, the usage table and the server log."""
    if not isinstance(name, str) or not name.strip():
        raise HillclimbError(f"an account needs a non-blank name, got {name!r}")
    if name != name.strip():
        raise HillclimbError(f"account name {name!r} starts or ends with whitespace")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise HillclimbError(f"account name {ascii(name)} contains control characters")
    if len(name) > MAX_NAME_CHARS:
        raise HillclimbError(
            f"account name is {len(name)} characters long; at most {MAX_NAME_CHARS} allowed"
        )
    hidden = [ch for ch in name if _invisible(ch)]
    if hidden:
        raise HillclimbError(
            f"account name {ascii(name)} contains invisible characters "
            f"({', '.join(f'U+{ord(ch):04X}' for ch in hidden)}): two names that print alike "
            "must not name two accounts"
        )
    return name


# Default-ignorable code points that are not format characters (Cf is refused above): fillers,
# joiners and selectors that print as nothing (Unicode's DerivedCoreProperties).
_IGNORABLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0]
    + list(range(0x180B, 0x1810))
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
)


def _invisible(ch: str) -> bool:
    return ord(ch) in _IGNORABLE or unicodedata.category(ch) in ("Cs", "Co", "Cn")


# Letters of other scripts (and a few Latin ones) that print like a basic Latin letter, after
# NFKC: a small, hand-checked part of Unicode TR39's confusables table (Cyrillic, Greek,
# Armenian). Capitals map to capitals, so that the case folding after the mapping treats Cyrillic
# `Н` like Latin `H` even though their lower cases (`н`, `h`) differ. Letters that only look like
# small capitals (Cyrillic `н`, `т`, `к`) and look-alikes inside ASCII (`l`/`I`/`1`, `O`/`0`,
# `rn`/`m`) are left out: the first are distinguishable, the second would refuse ordinary names
# such as `team1` beside `teaml` in existing keys files.
_CONFUSABLE_PAIRS = (
    # Cyrillic small
    "\u0430a \u0435e \u043eo \u0440p \u0441c \u0443y \u0445x \u0455s \u0456i \u0458j "
    "\u04cfl \u04bbh \u0501d \u051bq \u051dw \u04afy \u0475v "
    # Cyrillic capital
    "\u0410A \u0412B \u0415E \u041aK \u041cM \u041dH \u041eO \u0420P \u0421C \u0422T "
    "\u0425X \u0423Y \u0405S \u0406I \u0408J \u04c0I \u04baH \u051aQ \u051cW \u04aeY "
    "\u0474V "
    # Greek capital and small
    "\u0391A \u0392B \u0395E \u0396Z \u0397H \u0399I \u039aK \u039cM \u039dN \u039fO "
    "\u03a1P \u03a4T \u03a5Y \u03a7X \u03bfo \u03bdv \u03b9i \u03b1a \u03c1p \u03c5u "
    "\u03c7x \u03b3y \u03f3j \u03b7n \u03bak "
    # Armenian small; Latin letters outside ASCII
    "\u0585o \u057du \u0570h \u0578n \u0131i \u0251a \u0261g \u01c0l"
)
_CONFUSABLES = {ord(pair[0]): pair[1] for pair in _CONFUSABLE_PAIRS.split()}
# bump when `name_key` changes: every stored key is recomputed when a database is opened
NAME_KEY_VERSION = "skeleton-1"


def name_key(name: str) -> str:
    """What two account names must not share: a TR39-style *skeleton* of the name. Why:
    `Jos\u00e9` and `Jose\u0301`, `alice` and fullwidth `\uff41lice` or `Alice`, and `alice`
    and `\u0430lice` (Cyrillic a) print (nearly) alike, so `hillclimb keys consent --name` could
    opt in the wrong one of two such accounts.

    Steps: NFKD (fullwidth, ligatures, mathematical letters; accents split off their letters),
    look-alike letters of other scripts to Latin (`_CONFUSABLES`), case folding, NFKD and the
    mapping again (for what folding made), invisible characters dropped, a combining mark repeated
    right after itself dropped (it prints over itself), a dot above on i or j dropped (it
    prints as the letter's own dot); recomposed (NFC)."""
    # NFKD (NFKC, then canonically decomposed): the mapping also reaches accented letters
    s = unicodedata.normalize("NFKD", name).translate(_CONFUSABLES)
    s = unicodedata.normalize("NFKD", s.casefold()).translate(_CONFUSABLES)
    out: list[str] = []
    for ch in s:
        if _invisible(ch) or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            continue
        if (
            unicodedata.combining(ch)
            and out
            and (out[-1] == ch or (ch == "\u0307" and out[-1] in "ij"))
        ):
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def check_rpm(rate_limit_rpm: float | None) -> None:
    """A rate limit is None (no limit) or a finite number of requests per minute >= `MIN_RPM`
    (NaN passed `<= 0` and was stored as NULL: no rate limit at all)."""
    if rate_limit_rpm is not None and not (
        math.isfinite(rate_limit_rpm) and rate_limit_rpm >= MIN_RPM
    ):
        raise HillclimbError(
            f"rate_limit_rpm must be a finite number >= {MIN_RPM:g} requests per minute, "
            f"got {rate_limit_rpm}"
        )


def to_micro(credits: float | None) -> int | None:
    if credits is None:
        return None
    if credits < 0 or not math.isfinite(credits):
        raise HillclimbError(f"credits must be a finite number >= 0, got {credits}")
    if credits > MAX_CREDITS:
        raise HillclimbError(f"credits must be at most {MAX_CREDITS:g}, got {credits:g}")
    return round(credits * MICRO)


class UsageDB:
    """The billing database. Thread-safe: one connection per thread, writes in
    `BEGIN IMMEDIATE` transactions."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            self._check_path(Path(self.path))
        self._local = threading.local()
        # Serialises this process's writers (fewer busy waits). ":memory:" is one database per
        # connection, so there all threads share a single connection under this lock.
        self._lock = threading.RLock()
        self._shared: sqlite3.Connection | None = None
        # Connecting is inside the try too: a file that is not SQLite fails at the first PRAGMA
        # of `_connect`, a path SQLite cannot open at `connect` — both clear errors, not
        # tracebacks. Nothing before the schema script writes, so a refused file is untouched.
        try:
            if self.path == ":memory:":
                self._shared = self._connect()
            conn = self._conn()
            stored = self._stored_version(conn)
            if stored is not None and stored != SCHEMA_VERSION:
                self.close()
                raise HillclimbError(
                    f"usage database {self.path} has schema version {stored!r}; this hillclimb "
                    f"knows version {SCHEMA_VERSION!r} (made by a newer hillclimb?); refusing to "
                    "change it"
                )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )
            self._index_name_keys(conn)
        except sqlite3.Error as exc:
            self.close()
            raise HillclimbError(f"cannot open usage database {self.path}: {exc}") from exc

    @staticmethod
    def _stored_version(conn: sqlite3.Connection) -> str | None:
        """The schema version an existing database records (None: a fresh file, or one made
        before the version row existed — the current schema, which gets the row).

        Why read before anything is written: the schema is `CREATE TABLE IF NOT EXISTS` and the
        version row `INSERT OR IGNORE`, so a database of another schema version used to be
        opened as if it were this one — reading and settling rows whose meaning may differ."""
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if has_meta is None:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        return None if row is None else str(row[0])

    def _index_name_keys(self, conn: sqlite3.Connection) -> None:
        """Give every account its stored, indexed `name_key`, so that the look-alike check is an
        index lookup, not a scan of every account (each new key compared with all others made a
        keys file of 10,000 keys quadratic at start-up).

        An additive change within schema version 1: a database made before the column gets it in
        place (`ALTER TABLE ... ADD COLUMN`, every row kept, keys computed from the names), and
        an older hillclimb that still opens the file writes rows with a NULL key, which the
        lookups compute on the fly and the next open fills in. The index is not UNIQUE: a
        database made before a check may already hold look-alikes, which stay readable
        (`account_by_unique_name` names them). Nothing is written when all is in place, so a
        read-only database still opens."""
        if self._name_keys_ready(conn):
            return
        with self._write() as c:
            if "name_key" not in {r[1] for r in c.execute("PRAGMA table_info(accounts)")}:
                c.execute("ALTER TABLE accounts ADD COLUMN name_key TEXT")
            c.execute("CREATE INDEX IF NOT EXISTS accounts_name_key ON accounts(name_key)")
            stale = self._stored_name_key_version(c) != NAME_KEY_VERSION
            rows = c.execute(
                "SELECT id, name FROM accounts" + ("" if stale else " WHERE name_key IS NULL")
            ).fetchall()
            c.executemany(
                "UPDATE accounts SET name_key = ? WHERE id = ?",
                [(name_key(r["name"]), r["id"]) for r in rows],
            )
            c.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('name_key', ?)",
                (NAME_KEY_VERSION,),
            )

    @staticmethod
    def _stored_name_key_version(conn: sqlite3.Connection) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key='name_key'").fetchone()
        return None if row is None else str(row[0])

    def _name_keys_ready(self, conn: sqlite3.Connection) -> bool:
        """Whether the column, its index and every row's key of this `NAME_KEY_VERSION` exist."""
        if "name_key" not in {r[1] for r in conn.execute("PRAGMA table_info(accounts)")}:
            return False
        if self._stored_name_key_version(conn) != NAME_KEY_VERSION:
            return False
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='index' AND name='accounts_name_key'"
        ).fetchone():
            return False
        return not conn.execute("SELECT 1 FROM accounts WHERE name_key IS NULL LIMIT 1").fetchone()

    @staticmethod
    def _check_path(path: Path) -> None:
        """Refuse, before anything is created or written, a path that cannot be this store: a
        directory, a parent that cannot be made, or another store's SQLite file — the schema is
        `CREATE TABLE IF NOT EXISTS`, so opening a registry or telemetry database would
        silently add `accounts`/`requests` to it."""
        if path.is_dir():
            raise HillclimbError(f"usage database {path} is a directory, not a file")
        refuse_foreign_sqlite(path, "accounts", "usage")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HillclimbError(
                f"cannot create the directory of usage database {path}: {exc}"
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=30.0, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._shared is not None:
            return self._shared
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    # ---- accounts -----------------------------------------------------------------------------
    def create_account(
        self,
        name: str,
        credits: float | None,
        rate_limit_rpm: float | None = None,
        key: str | None = None,
    ) -> str:
        """Create an account; returns its plaintext key (generated unless given)."""
        check_account_name(name)
        check_rpm(rate_limit_rpm)
        key = key or new_key()
        with self._write() as c:
            if c.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                raise HillclimbError(f"an account named {name!r} already exists")
            self._refuse_look_alike(c, name, None)
            if c.execute("SELECT 1 FROM accounts WHERE key_hash = ?", (hash_key(key),)).fetchone():
                raise HillclimbError("that key is already registered")
            c.execute(
                "INSERT INTO accounts(name, key_hash, key_prefix, credits_micro, rate_limit_rpm, "
                "created, name_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    hash_key(key),
                    key[:8],
                    to_micro(credits),
                    rate_limit_rpm,
                    time.time(),
                    name_key(name),
                ),
            )
        return key

    def sync_key(
        self, key: str, name: str, credits: float | None, rate_limit_rpm: float | None
    ) -> None:
        """Register a key from a keys file/env: inserted with its credits the first time; later
        loads update name and rate limit but never reset the balance (it is the DB's), nor
        restore a key `hillclimb keys revoke` revoked (a leaked key left in the file must stay
        refused after a restart; `keys revoke --restore` brings it back)."""
        check_account_name(name)
        check_rpm(rate_limit_rpm)
        h, nk = hash_key(key), name_key(name)
        with self._write() as c:
            row = c.execute("SELECT id, name FROM accounts WHERE key_hash = ?", (h,)).fetchone()
            clash = c.execute("SELECT key_hash FROM accounts WHERE name = ?", (name,)).fetchone()
            if clash is not None and clash["key_hash"] != h:
                raise HillclimbError(
                    f"account name {name!r} already belongs to another key in {self.path}"
                )
            if row is None or row["name"] != name:  # a new name for this key (unchanged: fine)
                self._refuse_look_alike(c, name, None if row is None else row["id"])
            if row is None:
                c.execute(
                    "INSERT INTO accounts(name, key_hash, key_prefix, credits_micro, "
                    "rate_limit_rpm, created, name_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, h, key[:8], to_micro(credits), rate_limit_rpm, time.time(), nk),
                )
            else:
                c.execute(
                    "UPDATE accounts SET name = ?, name_key = ?, rate_limit_rpm = ? WHERE id = ?",
                    (name, nk, rate_limit_rpm, row["id"]),
                )

    @staticmethod
    def _look_alikes(c: sqlite3.Connection, name: str, own_id: int | None) -> list[str]:
        """Names of the other accounts whose `name_key` is `name`'s, through the index. Rows an
        older hillclimb wrote since this database was opened (NULL key) are judged here."""
        key = name_key(name)
        rows = c.execute(
            "SELECT id, name, name_key FROM accounts WHERE name_key = ? OR name_key IS NULL",
            (key,),
        )
        return [
            r["name"]
            for r in rows
            if r["id"] != own_id and (r["name_key"] or name_key(r["name"])) == key
        ]

    def _refuse_look_alike(self, c: sqlite3.Connection, name: str, own_id: int | None) -> None:
        """Refuse `name` when another account's name has the same `name_key`."""
        for other in self._look_alikes(c, name, own_id):
            if other != name:
                raise HillclimbError(
                    f"account name {ascii(name)} looks like the account {ascii(other)} "
                    f"in {self.path} (the same after Unicode normalisation, case folding and "
                    "mapping look-alike letters of other scripts to Latin); choose a distinct name"
                )

    def account_by_unique_name(self, name: str) -> Account:
        """`account_by_name`, refusing a name that a database made before the look-alike check
        shares (by `name_key`) with another account: for a decision such as consent, the
        operator must not act on whichever of two look-alikes their terminal produced."""
        acc = self.account_by_name(name)
        with self._read() as c:
            alike = self._look_alikes(c, name, acc.id)
        if alike:
            shown = ", ".join(ascii(n) for n in [name, *alike])
            raise HillclimbError(
                f"the accounts {shown} look alike (the same after Unicode normalisation, case "
                "folding and mapping look-alike letters of other scripts to Latin); rename all "
                "but one in the keys file before changing consent"
            )
        return acc

    def add_credits(self, name: str, credits: float) -> Account:
        amount = to_micro(credits)
        with self._write() as c:
            row = c.execute("SELECT * FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise HillclimbError(f"no account named {name!r}")
            if row["credits_micro"] is not None:
                if row["credits_micro"] + amount > MAX_CREDITS * MICRO:
                    raise HillclimbError(
                        f"{name!r} would hold more than the largest balance, "
                        f"{MAX_CREDITS:g} credits"
                    )
                c.execute(
                    "UPDATE accounts SET credits_micro = credits_micro + ? WHERE id = ?",
                    (amount, row["id"]),
                )
        return self.account_by_name(name)

    def count_accounts(self, include_revoked: bool = False) -> int:
        """Enabled accounts (with `include_revoked`, every account ever made)."""
        where = "" if include_revoked else " WHERE disabled = 0"
        with self._read() as c:
            row = c.execute("SELECT COUNT(*) FROM accounts" + where).fetchone()
        return int(row[0])

    def set_revoked(self, name: str, revoked: bool) -> Account:
        """Revoke an account's key (`hillclimb keys revoke`), or restore it. A running server
        reads the account on every request, so a revoked key is refused from its next request;
        the account's usage and balance are kept."""
        with self._write() as c:
            row = c.execute("SELECT id FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise HillclimbError(f"no account named {name!r}")
            c.execute("UPDATE accounts SET disabled = ? WHERE id = ?", (int(revoked), row["id"]))
        return self.account_by_name(name)

    def _account(self, row: sqlite3.Row | None) -> Account | None:
        if row is None:
            return None
        return Account(
            row["id"],
            row["name"],
            row["key_prefix"],
            row["credits_micro"],
            row["rate_limit_rpm"],
            bool(row["disabled"]),
            row["key_hash"],
        )

    def account_by_key(self, key: str) -> Account | None:
        with self._read() as c:
            row = c.execute(
                "SELECT * FROM accounts WHERE key_hash = ?", (hash_key(key),)
            ).fetchone()
        return self._account(row)

    def account_by_name(self, name: str) -> Account:
        with self._read() as c:
            acc = self._account(
                c.execute("SELECT * FROM accounts WHERE name = ?", (name,)).fetchone()
            )
        if acc is None:
            raise HillclimbError(f"no account named {name!r}")
        return acc

    # ---- requests -----------------------------------------------------------------------------
    def reserve(
        self,
        request_id: str,
        account: Account | None,
        endpoint: str,
        requested_model: str,
        model: str,
        max_cost_micro: int,
    ) -> None:
        """Record a request and hold its maximum cost; raises InsufficientCredits (nothing
        written) when the balance cannot cover it."""
        now = time.time()
        with self._write() as c:
            if account is not None:
                row = c.execute(
                    "SELECT credits_micro FROM accounts WHERE id = ?", (account.id,)
                ).fetchone()
                balance = row["credits_micro"] if row is not None else 0
                if balance is not None:
                    if balance < max_cost_micro:
                        raise InsufficientCredits(max_cost_micro, balance)
                    c.execute(
                        "UPDATE accounts SET credits_micro = credits_micro - ? WHERE id = ?",
                        (max_cost_micro, account.id),
                    )
            c.execute(
                "INSERT INTO requests(id, account_id, account_name, endpoint, requested_model, "
                "model, status, reserved_micro, created) VALUES (?, ?, ?, ?, ?, ?, 'reserved', ?, ?)",
                (
                    request_id,
                    account.id if account else None,
                    account.name if account else "open",
                    endpoint,
                    requested_model,
                    model,
                    max_cost_micro,
                    now,
                ),
            )

    def settle(
        self,
        request_id: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        reasoning_tokens: int,
        cost_micro: int,
        finish_reason: str | None,
        http_status: int,
    ) -> int:
        """Charge the actual cost (capped at the reservation) and refund the rest; returns the
        cost charged. Settling twice is a no-op."""
        with self._write() as c:
            row = c.execute(
                "SELECT account_id, reserved_micro, status FROM requests WHERE id = ?",
                (request_id,),
            ).fetchone()
            if row is None or row["status"] != "reserved":
                return 0
            cost = min(int(cost_micro), int(row["reserved_micro"]))
            refund = int(row["reserved_micro"]) - cost
            if row["account_id"] is not None and refund:
                c.execute(
                    "UPDATE accounts SET credits_micro = credits_micro + ? "
                    "WHERE id = ? AND credits_micro IS NOT NULL",
                    (refund, row["account_id"]),
                )
            c.execute(
                "UPDATE requests SET status = 'settled', cost_micro = ?, prompt_tokens = ?, "
                "completion_tokens = ?, reasoning_tokens = ?, finish_reason = ?, http_status = ?, "
                "finished = ? WHERE id = ?",
                (
                    cost,
                    prompt_tokens,
                    completion_tokens,
                    reasoning_tokens,
                    finish_reason,
                    http_status,
                    time.time(),
                    request_id,
                ),
            )
            return cost

    def release_stale(self) -> int:
        """Refund every reservation left by a process that died before settling."""
        with self._write() as c:
            rows = c.execute(
                "SELECT id, account_id, reserved_micro FROM requests WHERE status = 'reserved'"
            ).fetchall()
            for r in rows:
                if r["account_id"] is not None:
                    c.execute(
                        "UPDATE accounts SET credits_micro = credits_micro + ? "
                        "WHERE id = ? AND credits_micro IS NOT NULL",
                        (r["reserved_micro"], r["account_id"]),
                    )
                c.execute(
                    "UPDATE requests SET status = 'released', finished = ? WHERE id = ?",
                    (time.time(), r["id"]),
                )
        return len(rows)

    # ---- reports ------------------------------------------------------------------------------
    def usage(self) -> dict[str, Any]:
        """Per-account totals and per-(account, model) breakdown, for `hillclimb keys usage`."""
        with self._read() as c:
            return self._usage(c)

    def _usage(self, c: sqlite3.Connection) -> dict[str, Any]:
        accounts = []
        owners: list[tuple[str, Account | None]] = [
            (r["name"], self._account(r)) for r in c.execute("SELECT * FROM accounts ORDER BY id")
        ]
        # requests served without an account (open mode, named "open") are their own rows, even
        # when an account of the same name exists: looked up by name, they vanished from the
        # report and that account was listed twice
        owners += [
            (r[0], None)
            for r in c.execute(
                "SELECT DISTINCT account_name FROM requests WHERE account_id IS NULL"
            )
        ]
        for name, acc in owners:
            where = "account_id = ?" if acc else "account_id IS NULL AND account_name = ?"
            arg = acc.id if acc else name
            tot = c.execute(
                f"SELECT COUNT(*) AS requests, COALESCE(SUM(prompt_tokens),0) AS p, "
                f"COALESCE(SUM(completion_tokens),0) AS c, COALESCE(SUM(reasoning_tokens),0) AS r, "
                f"COALESCE(SUM(cost_micro),0) AS cost, "
                f"COALESCE(SUM(CASE WHEN status='reserved' THEN reserved_micro END),0) AS held "
                f"FROM requests WHERE {where}",
                (arg,),
            ).fetchone()
            per_model = [
                {
                    "model": r["model"],
                    "requests": r["n"],
                    "prompt_tokens": r["p"],
                    "completion_tokens": r["c"],
                    "reasoning_tokens": r["r"],
                    "cost": r["cost"] / MICRO,
                }
                for r in c.execute(
                    f"SELECT model, COUNT(*) AS n, SUM(prompt_tokens) AS p, "
                    f"SUM(completion_tokens) AS c, SUM(reasoning_tokens) AS r, "
                    f"SUM(cost_micro) AS cost FROM requests WHERE {where} GROUP BY model "
                    f"ORDER BY model",
                    (arg,),
                )
            ]
            accounts.append(
                {
                    "name": name,
                    "key_prefix": acc.key_prefix if acc else None,
                    "credits": acc.credits if acc else None,
                    "unlimited": acc is None or acc.credits_micro is None,
                    "rate_limit_rpm": acc.rate_limit_rpm if acc else None,
                    "revoked": bool(acc and acc.disabled),
                    "requests": tot["requests"],
                    "prompt_tokens": tot["p"],
                    "completion_tokens": tot["c"],
                    "reasoning_tokens": tot["r"],
                    "spent": tot["cost"] / MICRO,
                    "held": tot["held"] / MICRO,
                    "by_model": per_model,
                }
            )
        return {"db": self.path, "accounts": accounts}

    def requests(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._read() as c:
            rows = c.execute(
                "SELECT * FROM requests ORDER BY created DESC LIMIT ?", (limit,)
            ).fetchall()
        return [dict(r) for r in rows]
