"""Atomic file writing, shared by every stage.

DESIGN.md: artifacts are written atomically (temp file + rename) and never overwritten in place,
so a kill -9 at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

# A directory holding a file of this name is held out of training data: the data pipeline never
# ingests its files (`data.sources`), and the task generator's held-out projects carry it
# (`harness generate --split heldout`). Here, below both, so each reads the one name.
HELDOUT_MARKER = ".hillclimb-heldout"


def stdlib_heldout(rel: str) -> bool:
    """Whether this standard-library file (its path relative to the stdlib root) is held out for
    the FIM suite: a fixed third of the files by a hash of the path. `eval --suite fim` cuts its
    items only from these, and the data pipeline's `python_env` source never ingests them (ingest
    skip `heldout_eval`), so a model trained on the default data recipe, which takes this
    Python's stdlib, is not scored on lines it was trained on. Here for the same reason as
    HELDOUT_MARKER: eval and data both read it."""
    import hashlib

    return hashlib.sha256(f"fim-heldout\0{rel}".encode()).digest()[0] < 86


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask without changing it (os.umask would, briefly, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _plain_mode(path: Path, directory: bool) -> None:
    """Temp files and dirs are created private (0600/0700); give the published artifact the mode
    a plain `open`/`mkdir` would have (PNGs and reports readable by the user's other tools)."""
    with suppress(OSError):
        os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _publish_private_files(root: Path) -> None:
    """Give every file under `root` that a writer left private (mode 0600, ours) the mode a
    plain `open` would have, before `atomic_dir` publishes it.

    Why: safetensors' `save_file` writes through its own temp file, so every checkpoint's
    `model.safetensors` came out 0600 while its `config.json` beside it was 0644 — a checkpoint
    another account (a colleague, the service user running `hillclimb serve`, a container with
    another uid) could list but not load, and `export --format hf` copied the 0600 along. Only
    exactly-0600 files are touched: that is what temp-file writers produce; a file with any other
    mode was given it on purpose, and the umask still applies (umask 077 keeps 0600)."""
    uid = os.geteuid()
    plain = 0o666 & ~_umask()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with suppress(OSError):
                st = os.lstat(p)
                if (
                    stat.S_ISREG(st.st_mode)
                    and st.st_uid == uid
                    and stat.S_IMODE(st.st_mode) == 0o600
                ):
                    os.chmod(p, plain)


_SPECIAL_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def refuse_special_file(dest: str | os.PathLike[str]) -> None:
    """Raise HillclimbError when `dest` exists (links followed) and is not a regular file.

    Why: the atomic rename replaces whatever has the name, so `--out` naming a FIFO, or as root
    `/dev/null` or `/dev/full`, swapped the special file for a regular one and reported
    success, deleting a device node every process on the machine uses."""
    from hillclimb.errors import HillclimbError

    try:
        mode = os.stat(dest).st_mode
    except (OSError, ValueError):
        return  # not there (or unreachable: the write itself says why)
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            raise HillclimbError(
                f"{os.fsdecode(dest)} is {kind}, not a regular file; refusing to replace it "
                "(name a new or regular file)"
            )


def refuse_unusable_parent(dest: str | os.PathLike[str], flag: str = "--out") -> None:
    """Raise HillclimbError when `dest` cannot be created because an existing ancestor is not a
    directory (`--out FILE/x`). A command calls it before its work, so the mistake costs nothing
    instead of a traceback from `mkdir` after minutes of training."""
    from hillclimb.errors import HillclimbError

    p = Path(os.path.abspath(dest)).parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and not p.is_dir():
        raise HillclimbError(f"{flag} {os.fsdecode(dest)}: {p} is not a directory")


def _temp_prefix(dest: Path) -> str:
    """`.NAME.` for the temp file beside `dest`, NAME cut to 200 characters. Why: mkstemp adds 8
    characters and our `.tmp`, so a legal 250-character `--out` name (the limit is 255 bytes)
    could not be written at all ("File name too long" for a name the user never gave). Cut at a
    character, then to 200 bytes, so a multi-byte name stays legal too."""
    name = dest.name[:200]
    while len(os.fsencode(name)) > 200:
        name = name[:-1]
    return f".{name}."


@contextmanager
def _naming_dest(dest: Path) -> Iterator[None]:
    """Re-raise an OSError from creating the hidden temp file or directory beside `dest` as one
    that names `dest` and its directory. Why: a user who ran `hillclimb tokenizer train --out
    tok` in a directory they cannot write was told `Permission denied: './.tok.c7_15se0.tmp'`,
    a name they never gave (session 23, as a non-root user). The errno is kept (exit codes)."""
    try:
        yield
    except OSError as exc:
        where = os.fsdecode(dest.parent) or "."
        raise OSError(
            exc.errno,
            f"{exc.strerror or exc}: cannot create {os.fsdecode(dest)!r} "
            f"(in the directory {where!r})",
        ) from exc


@contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside `dest`; on success it is fsynced and renamed onto `dest`.
    `dest` may be new or a regular file (or a link to one); anything else is refused."""
    dest = Path(dest)
    refuse_special_file(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _naming_dest(dest):
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        _plain_mode(tmp_path, directory=False)
        os.replace(tmp_path, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(dest: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(dest: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    write_text_atomic(dest, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


@contextmanager
def atomic_dir(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp directory beside `dest`; on success it is renamed to `dest`.

    `dest` must not exist (artifacts are never overwritten in place); callers that replace an
    artifact rename the old one away first.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; refusing to overwrite it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _naming_dest(dest):
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        _publish_private_files(tmp)
        _plain_mode(tmp, directory=True)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sweep_temp(directory: str | os.PathLike[str], also: tuple[str, ...] = ()) -> None:
    """Remove what killed atomic writes left directly in `directory`: the hidden temp files and
    directories of `atomic_path` / `atomic_dir` (`.NAME.XXXXXXXX.tmp`) and names ending in one
    of `also`. Call it only on a directory this process holds (`exclusive_dir`): a running
    writer's temp file has the same name.

    Why: every crash inside such a write (a checkpoint, `config.json`, the rewrite of a long
    `metrics.jsonl` on resume) left one more copy behind, so repeated crashes grew the disk use
    without bound."""
    d = Path(directory)
    if not d.is_dir():
        return
    for p in d.iterdir():
        if p.name.startswith(".") and p.name.endswith((".tmp", *also)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with suppress(OSError):
                    p.unlink()


_HELD: dict[str, int] = {}  # lock path -> how many times this process holds it (re-entrant)
_HELD_GUARD = threading.Lock()


def _lock_path(path: Path) -> Path:
    p = Path(os.path.realpath(path))  # one lock however the directory is reached (links, ..)
    return p.parent / f".{p.name}.lock"


@contextmanager
def exclusive_dir(path: str | os.PathLike[str], flag: str = "--out") -> Iterator[None]:
    """Hold `path` for this process while a command writes into it; a second process (another
    `climb`, `train --resume`, `data build` on the same directory) is refused at once, naming
    the holder, instead of interleaving its writes with ours (two runs appending to one
    metrics.jsonl, saving checkpoints over each other's, removing a stage the other is in).

    An advisory `flock` on `.NAME.lock` beside the directory (beside, so the directory's own
    contents, which the commands inspect before writing, are unchanged; and so it can be held
    before the directory exists). The kernel drops it when the process dies, kill -9 included,
    so a crashed run never blocks the next one. Re-entrant within a process (a climb holds its
    run directory while its stages hold their own). Where the file cannot be made (a read-only
    parent) or the filesystem has no flock, nothing is held: the command's own checks remain."""
    import fcntl

    from hillclimb.errors import HillclimbError

    lock = _lock_path(Path(path))
    key = str(lock)
    with _HELD_GUARD:
        if _HELD.get(key):
            _HELD[key] += 1
            held_here = True
        else:
            held_here = False
    if held_here:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
        return
    fd = None
    while fd is None:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            break  # cannot make the lock file: run unlocked
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            raise HillclimbError(
                f"{flag} {path} is in use by another hillclimb process"
                + (f" (pid {holder})" if holder else "")
                + "; wait for it to finish or choose another directory"
            ) from None
        except OSError:
            os.close(fd)
            fd = None
            break  # no flock on this filesystem: run unlocked
        # the holder before us may have unlinked the file between our open and our lock: then
        # we hold a lock on a name nobody else will open; take the current file instead
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except OSError:
            same = False
        if not same:
            os.close(fd)
            fd = None
            continue
        with suppress(OSError):
            os.ftruncate(fd, 0)
            # surrogateescape: an argument that is not UTF-8 (a file name) reaches argv escaped
            line = f"{os.getpid()}: {' '.join(sys.argv)[:3000]}\n"
            os.write(fd, line.encode("utf-8", "surrogateescape"))
        break
    with _HELD_GUARD:
        _HELD[key] = 1
    try:
        yield
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        if fd is not None:
            # unlink while still holding the lock: a waiter that opened the old file sees it is
            # gone (the samestat check above) and retries on a fresh one
            with suppress(OSError):
                os.unlink(lock)
            os.close(fd)


def default_state_dir() -> Path:
    """Per-user state (the server's usage database, the registry): `$XDG_STATE_HOME/hillclimb`,
    or `~/.local/state/hillclimb` when that is unset or relative (XDG Base Directory spec), never
    the current directory — a command started from a checkout must not leave files in it."""
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "hillclimb"


def refuse_foreign_sqlite(
    path: str | os.PathLike[str],
    marker_table: str,
    kind: str,
    version: tuple[str, str] | None = None,
) -> None:
    """Raise HillclimbError when `path` is an SQLite database of someone else: it holds tables,
    but not `marker_table` (a table only `kind`'s schema has) — or, with `version` = (meta key,
    expected value), no `meta` table, or a `meta` row under that key with another value (the
    schema check used to run after `CREATE TABLE IF NOT EXISTS` had added our tables to it;
    session 22: another program's file with an `episodes` table got `meta` added).

    Why: every store here opens with `CREATE TABLE IF NOT EXISTS ...`, so pointing one at another
    store's file (`--registry telemetry.db`) would silently add its tables to it and carry on with
    an empty view. The file is opened read-only, so the check itself changes nothing; a missing,
    empty or unreadable file passes (creating it, or the caller's own "not a database" error)."""
    import sqlite3

    from hillclimb.errors import HillclimbError

    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size == 0:
            return
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except (OSError, sqlite3.Error):
        return
    found: tuple | None = None
    names: list[str] = []
    try:
        names = sorted(
            r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        )
        if version is not None and "meta" in names:
            found = con.execute("SELECT value FROM meta WHERE key=?", (version[0],)).fetchone()
    except sqlite3.Error:
        if version is not None and names:
            found = ("unreadable",)  # a `meta` of another shape: not ours
        else:
            return
    finally:
        con.close()
    shown = ", ".join(n for n in names if not n.startswith("sqlite_"))
    article = "an" if kind[:1] in "aeio" else "a"  # "a usage", "an arena"
    if version is not None and found is not None and str(found[0]) != version[1]:
        raise HillclimbError(
            f"{p}: {kind} schema v{found[0]}, expected v{version[1]}; refusing to change it"
        )
    if names and (marker_table not in names or (version is not None and "meta" not in names)):
        raise HillclimbError(
            f"{p} is not {article} {kind} database (it holds the tables {shown}); "
            "refusing to change it"
        )


class LockedSQLite:
    """One SQLite file in WAL mode behind one lock, with a versioned schema.

    Why shared: the harness's telemetry and the server's flywheel store keep their state the
    same way — transactional, readable while written (WAL), safe from several threads (one
    connection behind a lock) and processes (busy timeout) — and refuse a file that is not
    theirs or has another schema version with a clear error, touching nothing. A subclass sets
    `KIND` (for messages), `SCHEMA` (CREATE ... IF NOT EXISTS, with a `meta(key, value)` table),
    `VERSION` and `VERSION_KEY` (the meta row holding it)."""

    KIND = "database"
    SCHEMA = ""
    VERSION = "1"
    VERSION_KEY = "schema"
    FOREIGN_KEYS = False
    # A table only this schema has: a file with tables but not this one is refused untouched
    # (`refuse_foreign_sqlite`). None: no check.
    MARKER_TABLE: str | None = None

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import sqlite3
        import threading

        from hillclimb.errors import HillclimbError

        self.path = Path(path)
        if self.MARKER_TABLE is not None:
            refuse_foreign_sqlite(
                self.path, self.MARKER_TABLE, self.KIND, (self.VERSION_KEY, self.VERSION)
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if self.FOREIGN_KEYS:
                self._db.execute("PRAGMA foreign_keys=ON")
            with self._db:
                self._db.executescript(self.SCHEMA)
                row = self._db.execute(
                    "SELECT value FROM meta WHERE key=?", (self.VERSION_KEY,)
                ).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO meta VALUES (?, ?)", (self.VERSION_KEY, self.VERSION)
                    )
                elif str(row[0]) != self.VERSION:
                    raise HillclimbError(
                        f"{self.path}: {self.KIND} schema v{row[0]}, expected v{self.VERSION}"
                    )
        except sqlite3.DatabaseError as exc:
            raise HillclimbError(f"{self.path}: not a {self.KIND} database: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exec(self, sql: str, params: tuple = ()) -> Any:
        """One statement in its own transaction (a write)."""
        with self._lock, self._db:
            return self._db.execute(sql, params)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()


def client_api_key(explicit: str | None) -> str | None:
    """The bearer key a client command sends to an OpenAI-compatible URL: `--api-key`, else
    `$HILLCLIMB_API_KEY`, else `$OPENAI_API_KEY`.

    Why one function: `chat` read both variables, `harness run` only the first, and `eval` and
    `arena` neither, so the same exported key worked for one command and was a 401 for the
    next."""
    return explicit or os.environ.get("HILLCLIMB_API_KEY") or os.environ.get("OPENAI_API_KEY")


def pick_served_model(url: str, ids: list[str]) -> str:
    """The model to use at `url` when the user named none, from its `/models` ids: the only one
    (our router's `auto` is an alias, so one model beside it counts as one); none or several is
    an error asking for the flag. Shared by `eval --model URL` and `harness run --model URL`
    (the harness sent "default", which our server and vLLM answer with 404 on every task)."""
    from hillclimb.errors import HillclimbError

    real = [i for i in dict.fromkeys(ids) if i != "auto"] or list(dict.fromkeys(ids))
    if not real:
        raise HillclimbError(f"{url}/models lists no model; name the model to use")
    if len(real) > 1:
        raise HillclimbError(
            f"{url} serves {len(real)} models ({', '.join(real)}); name the one to use"
        )
    return real[0]


def json_lines(path: str | os.PathLike[str], what: str) -> Iterator[tuple[str, Any]]:
    """(`file:line`, the parsed value) for each non-blank line of a JSONL(.gz) file; a line that
    is not JSON or not UTF-8, or a file that cannot be read — a corrupt gzip stream (a
    zlib.error, not an OSError), unreadable — is one error naming the file, the line and `what`
    the file was read as.

    Why one reader: SFT data, corpus documents, tokenizer training input and arena prompt sets
    each had their own loop, and each had met a different one of these files (a Latin-1 byte,
    a byte-order mark, a damaged gzip) in a different session. Why bytes, decoded line by line:
    a text-mode reader decodes 8 KB at a time, so a Latin-1 byte on line 51 was reported on
    line 1. Lines end at LF, CRLF or a lone CR — never at U+2028/U+2029/U+0085, which JSON
    strings may hold unescaped; a UTF-8 byte-order mark opening the file is skipped."""
    from hillclimb.errors import HillclimbError

    f = Path(path)
    n = 0
    try:
        with gzip.open(f, "rb") if f.suffix == ".gz" else open(f, "rb") as fh:
            for raw in fh:
                for part in raw.splitlines() or [b""]:  # bytes: splits at \n, \r\n, \r only
                    n += 1
                    if n == 1 and part.startswith(b"\xef\xbb\xbf"):
                        part = part[3:]
                    try:
                        line = part.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise HillclimbError(
                            f"{f}:{n}: cannot read {what}: not UTF-8 text (byte "
                            f"{part[exc.start]:#04x} at column {exc.start + 1})"
                        ) from None
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise HillclimbError(f"{f}:{n}: malformed JSON: {exc}") from exc
                    yield f"{f}:{n}", rec
    except (OSError, EOFError, zlib.error) as exc:
        raise HillclimbError(f"{f}:{n + 1}: cannot read {what}: {exc}") from exc
