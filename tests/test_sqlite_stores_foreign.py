"""SQLite stores refuse another program's (or another store's) file before changing it.

Session 22: the flywheel store had no marker table, so pointed at a registry it added consent /
served / feedback tables to it; telemetry on another program's file that happened to have an
`episodes` table got `meta` added before failing; a store of another schema version had this
version's tables added before the version check refused it."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.harness.telemetry import Telemetry
from hillclimb.registry.db import Registry
from hillclimb.serve.flywheel import FlywheelStore


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tables(p: Path) -> list[str]:
    con = sqlite3.connect(p)
    try:
        return sorted(
            r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        )
    finally:
        con.close()


def test_the_flywheel_store_refuses_a_registry_file(tmp_path):
    reg = tmp_path / "registry.sqlite"
    Registry(reg).close()
    before, tables = _digest(reg), _tables(reg)
    with pytest.raises(HillclimbError, match="not a flywheel database"):
        FlywheelStore(reg)
    assert _digest(reg) == before and _tables(reg) == tables


def test_telemetry_refuses_a_foreign_file_with_an_episodes_table(tmp_path):
    db = tmp_path / "theirs.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE episodes (id INTEGER PRIMARY KEY, what TEXT)")
    con.execute("INSERT INTO episodes VALUES (1, 'theirs')")
    con.commit()
    con.close()
    before = _digest(db)
    with pytest.raises(HillclimbError, match="not a telemetry database"):
        Telemetry(db)
    assert _digest(db) == before and _tables(db) == ["episodes"]


def test_another_schema_version_is_refused_before_tables_are_added(tmp_path):
    db = tmp_path / "flywheel.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("CREATE TABLE served (id TEXT)")
    con.execute("INSERT INTO meta VALUES ('schema', '99')")
    con.commit()
    con.close()
    before = _digest(db)
    with pytest.raises(HillclimbError, match="schema v99, expected v2"):
        FlywheelStore(db)
    assert _digest(db) == before and _tables(db) == ["meta", "served"]


def test_own_stores_reopen(tmp_path):
    for cls, name in ((FlywheelStore, "f.sqlite"), (Telemetry, "t.sqlite")):
        p = tmp_path / name
        cls(p).close()
        cls(p).close()  # a second open of our own file is fine
