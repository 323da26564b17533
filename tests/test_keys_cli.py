"""`hillclimb keys` on a bad `--db`: one clear error line, exit 2, no traceback, nothing changed.

Each case here once ended in an sqlite/OS traceback, or — a foreign SQLite file — silently
added the usage tables to someone else's database.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.serve.billing import UsageDB

# Every `keys` command, as the arguments after `--db PATH`.
COMMANDS = {
    "usage": ["usage"],
    "create": ["create", "--name", "alice"],
    "credit": ["credit", "--name", "alice", "--add", "1"],
    "consent": ["consent", "--name", "alice", "--on"],
}


def _keys(capsys: pytest.CaptureFixture[str], command: str, db: Path) -> tuple[int, str, str]:
    name, *rest = COMMANDS[command]
    rc = main(["keys", name, "--db", str(db), *rest])
    out, err = capsys.readouterr()
    return rc, out, err


def _refused(rc: int, out: str, err: str) -> str:
    """Assert the contract for refused input; returns the error line."""
    assert rc == 2
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hillclimb: error: "), err
    return lines[0]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_corrupt_file_is_a_clear_error_and_untouched(tmp_path, capsys, command):
    db = tmp_path / "usage.sqlite"
    db.write_bytes(b"this is not an SQLite database, just some bytes " * 20)
    before = _snapshot(tmp_path)
    line = _refused(*_keys(capsys, command, db))
    assert "not a database" in line and str(db) in line
    assert _snapshot(tmp_path) == before  # no -wal/-shm, no flywheel.sqlite, same bytes


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_directory_is_a_clear_error(tmp_path, capsys, command):
    line = _refused(*_keys(capsys, command, tmp_path))
    assert str(tmp_path) in line
    assert list(tmp_path.iterdir()) == []


def _foreign_db(path: Path) -> None:
    """A database of another store (a registry-like schema)."""
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE models (id INTEGER PRIMARY KEY, path TEXT)")
        con.execute("CREATE TABLE aliases (name TEXT PRIMARY KEY, model INTEGER)")
        con.execute("INSERT INTO models(path) VALUES ('ckpt/a')")
    con.close()


def _tables(path: Path) -> list[str]:
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return sorted(
            r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        )
    finally:
        con.close()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_another_stores_database_is_refused_untouched(tmp_path, capsys, command):
    db = tmp_path / "registry.sqlite"
    _foreign_db(db)
    before = _snapshot(tmp_path)
    line = _refused(*_keys(capsys, command, db))
    assert "refusing to change it" in line and "models" in line
    assert _snapshot(tmp_path) == before
    assert _tables(db) == ["aliases", "models"]  # no accounts / requests / meta added


def test_usage_db_refuses_a_foreign_file_but_opens_its_own(tmp_path):
    """The check is in UsageDB itself, so `hillclimb serve --db` is covered too; a fresh, an
    empty and an existing usage database all still open."""
    foreign = tmp_path / "telemetry.sqlite"
    _foreign_db(foreign)
    with pytest.raises(HillclimbError, match="not a usage database"):
        UsageDB(foreign)
    fresh = tmp_path / "new" / "usage.sqlite"
    db = UsageDB(fresh)  # the parent is made, as for the default state directory
    db.create_account("alice", 3.0)
    db.close()
    again = UsageDB(fresh)
    assert again.account_by_name("alice").credits == 3.0
    again.close()
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    UsageDB(empty).close()
    assert {"accounts", "requests", "meta"} <= set(_tables(empty))


def test_missing_parent(tmp_path, capsys):
    """`create` makes the directory (as it does the default state directory); the commands that
    read an existing database say there is none and create nothing."""
    db = tmp_path / "no" / "such" / "usage.sqlite"
    for command in ("usage", "credit", "consent"):
        line = _refused(*_keys(capsys, command, db))
        assert f"no usage database at {db}" in line
        assert not (tmp_path / "no").exists()
    rc, out, err = _keys(capsys, "create", db)
    assert rc == 0 and db.is_file() and "API key" in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_parent_that_is_a_file(tmp_path, capsys, command):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    _refused(*_keys(capsys, command, blocker / "usage.sqlite"))
    assert blocker.read_text() == "x"


@pytest.fixture
def read_only_db(tmp_path: Path) -> Iterator[Path]:
    """A usage database with one account that this process cannot write: mode 0444, or (root
    ignores modes) the immutable attribute where `chattr` works."""
    db = tmp_path / "usage.sqlite"
    made = UsageDB(db)
    made.create_account("alice", 1.0)
    # closed now, not at garbage collection: as non-root, a connection left open from here wrote
    # its WAL checkpoint into the 0444 file during the test (root with chattr was not affected)
    made.close()
    if os.geteuid() != 0:
        db.chmod(0o444)
        yield db
        db.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(db)], capture_output=True).returncode:
        pytest.skip("root, and no immutable attribute here: cannot make a read-only file")
    try:
        yield db
    finally:
        subprocess.run([chattr, "-i", str(db)], check=True)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_read_only_file_is_a_clear_error_and_untouched(read_only_db, capsys, command):
    before = read_only_db.read_bytes()
    line = _refused(*_keys(capsys, command, read_only_db))
    assert "readonly" in line or "read-only" in line
    assert read_only_db.read_bytes() == before


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_newer_schema_version_is_refused_untouched(tmp_path, capsys, command):
    """A usage database whose `meta` row records a schema version this code does not know (a
    newer hillclimb's) is refused with one line naming the version, before anything is written;
    the current version and a database without the row (made before it existed) still open."""
    db = tmp_path / "usage.sqlite"
    made = UsageDB(db)
    made.create_account("alice", 2.0)
    made.close()
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE meta SET value='2' WHERE key='schema'")
    con.close()
    before = _snapshot(tmp_path)
    line = _refused(*_keys(capsys, command, db))
    assert "schema version '2'" in line and str(db) in line
    assert _snapshot(tmp_path) == before
    with pytest.raises(HillclimbError, match="schema version '2'"):
        UsageDB(db)  # `hillclimb serve --db` goes through the same check
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM meta WHERE key='schema'")
    con.close()
    again = UsageDB(db)  # no version row: the current schema, which gets its row
    assert again.account_by_name("alice").credits == 2.0
    again.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("1",)
    con.close()
    UsageDB(db).close()  # the current version opens
