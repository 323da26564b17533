"""Session 24 outside checks: look-alike account names across scripts, the cost of the
look-alike check at 10,000 keys, and flywheel exports that carry no served database.

1. `name_key` folded case and NFKC only: `alice` and `\\u0430lice` (Cyrillic a), `bob` and
   `b\\u03bfb` (Greek omicron) could be two accounts, so `keys consent --name` could opt in the
   wrong one. It is now a TR39-style skeleton (confusable letters mapped to Latin).
2. Every new name was compared with every stored one (quadratic start-up for a large keys file);
   the key is now a stored, indexed column added in place to existing databases.
3. A climb took an export.json without `served_db` at its word: the API records of an export
   written by an older hillclimb (or copied away from its server) were trained on silently."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.climb.flywheel import flywheel_records
from hillclimb.errors import HillclimbError
from hillclimb.serve import billing
from hillclimb.serve.billing import UsageDB, hash_key

# ---- 1. cross-script and invisible look-alikes ---------------------------------------------------

LOOK_ALIKES = [
    ("alice", "\u0430lice"),  # Cyrillic small a
    ("bob", "b\u03bfb"),  # Greek small omicron
    ("NOAH", "\u039d\u039f\u0391\u0397"),  # Greek capitals
    ("HOST", "\u041d\u041e\u0405\u0422"),  # Cyrillic capitals (EN, O, DZE, TE)
    ("pay", "\u0440\u0430y"),  # Cyrillic er, a
    ("jo\u00eb", "j\u043e\u0451"),  # Cyrillic o and io (an accented letter)
    ("ann\u00e1", "anna\u0301\u0301"),  # a combining acute repeated prints as one
    ("mini", "min\u0131"),  # Latin dotless i
    ("ivan", "i\u0307van"),  # a dot above on i prints as its own dot
]


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
def test_cross_script_look_alike_names_are_refused(tmp_path, first, second):
    db = UsageDB(tmp_path / "usage.sqlite")
    db.create_account(first, None)
    with pytest.raises(HillclimbError, match="looks like the account") as err:
        db.create_account(second, None)
    assert ascii(first) in str(err.value)  # named escaped: the message itself is unambiguous
    with pytest.raises(HillclimbError, match="looks like the account"):
        db.sync_key("hc-another-key-00000001", second, None, None)
    assert db.count_accounts() == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("anna", "ann\u00e1"),  # an accent shows
        ("team1", "teaml"),  # look-alikes inside ASCII are left alone (existing keys files)
        ("ivan", "\u0438van"),  # Cyrillic i does not print as Latin i
        ("muller", "m\u00fcller"),
    ],
)
def test_names_that_print_differently_still_coexist(tmp_path, first, second):
    db = UsageDB(tmp_path / "usage.sqlite")
    db.create_account(first, None)
    db.create_account(second, None)
    assert db.count_accounts() == 2


def test_keys_consent_names_an_older_cross_script_look_alike(tmp_path, capsys):
    """A database made before this check holds `alice` and Cyrillic-a `alice`: `keys consent`
    refuses to pick one and names both (escaped)."""
    path = tmp_path / "usage.sqlite"
    UsageDB(path).create_account("alice", None, key="hc-key-latin-0000001")
    con = sqlite3.connect(path)
    con.execute(
        "INSERT INTO accounts(name, key_hash, key_prefix, created) VALUES (?, 'h', 'hc-x', 0)",
        ("\u0430lice",),
    )
    con.commit()
    con.close()
    assert main(["keys", "consent", "--db", str(path), "--name", "alice", "--on"]) != 0
    err = capsys.readouterr().err
    assert "look alike" in err and "\\u0430lice" in err


# ---- 2. the look-alike check is an index lookup; databases migrate in place -----------------------

OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE, key_prefix TEXT NOT NULL, credits_micro INTEGER,
    rate_limit_rpm REAL, disabled INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE requests (
    id TEXT PRIMARY KEY, account_id INTEGER REFERENCES accounts(id), account_name TEXT NOT NULL,
    endpoint TEXT NOT NULL, requested_model TEXT NOT NULL, model TEXT NOT NULL,
    status TEXT NOT NULL, reserved_micro INTEGER NOT NULL DEFAULT 0,
    cost_micro INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    finish_reason TEXT, http_status INTEGER, created REAL NOT NULL, finished REAL);
CREATE INDEX requests_account ON requests(account_id, created);
INSERT INTO meta VALUES ('schema', '1');
"""
OLD_COLUMNS = "id, name, key_hash, key_prefix, credits_micro, rate_limit_rpm, disabled, created"


def _old_database(path: Path, n: int) -> None:
    """A usage database as the previous hillclimb wrote it: `n` accounts (two of them
    look-alikes across scripts, allowed then) and a settled and a reserved request."""
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    names = [f"user-{i:05d}" for i in range(n - 2)] + ["alice", "\u0430lice"]
    con.executemany(
        "INSERT INTO accounts(name, key_hash, key_prefix, credits_micro, rate_limit_rpm, "
        "disabled, created) VALUES (?, ?, 'hc-x', ?, ?, ?, ?)",
        [(nm, hash_key(nm), 1000 + i, 60.0 if i % 2 else None, i % 3 == 0, float(i))
         for i, nm in enumerate(names)],
    )  # fmt: skip
    for rid, status in (("r-settled", "settled"), ("r-held", "reserved")):
        con.execute(
            "INSERT INTO requests(id, account_id, account_name, endpoint, requested_model, "
            "model, status, reserved_micro, cost_micro, created) "
            "VALUES (?, 1, 'user-00000', 'chat', 'm', 'm', ?, 50, 20, 1.0)",
            (rid, status),
        )
    con.commit()
    con.close()


def _dump(path: Path) -> tuple[list, list, list]:
    con = sqlite3.connect(path)
    try:
        return (
            con.execute(f"SELECT {OLD_COLUMNS} FROM accounts ORDER BY id").fetchall(),
            con.execute("SELECT * FROM requests ORDER BY id").fetchall(),
            con.execute("SELECT * FROM meta WHERE key='schema'").fetchall(),
        )
    finally:
        con.close()


def test_an_older_database_gains_indexed_name_keys_in_place(tmp_path):
    path = tmp_path / "usage.sqlite"
    _old_database(path, 50)
    before = _dump(path)
    db = UsageDB(path)
    assert _dump(path) == before  # every row and the schema version kept
    con = sqlite3.connect(path)
    keys = dict(con.execute("SELECT name, name_key FROM accounts").fetchall())
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    con.close()
    assert keys["alice"] == keys["\u0430lice"] == "alice" and keys["user-00007"] == "user-00007"
    assert "accounts_name_key" in indexes
    with pytest.raises(HillclimbError, match="looks like the account"):
        db.create_account("\u0430lic\u0435", None)
    with pytest.raises(HillclimbError, match="look alike"):
        db.account_by_unique_name("alice")  # the pair made before the check stays named
    usage = {a["name"]: a for a in db.usage()["accounts"]}
    assert usage["user-00000"]["requests"] == 2 and usage["user-00000"]["held"] == pytest.approx(
        50 / billing.MICRO
    )
    db.close()
    UsageDB(path).close()  # opens again, nothing to do
    assert _dump(path) == before


def test_a_row_an_older_hillclimb_writes_meanwhile_is_still_checked(tmp_path):
    """The column is additive (schema version 1): an older hillclimb may still insert an
    account, with a NULL key, while this one holds the database open."""
    path = tmp_path / "usage.sqlite"
    db = UsageDB(path)
    con = sqlite3.connect(path)
    con.execute(
        "INSERT INTO accounts(name, key_hash, key_prefix, created) VALUES ('bob', 'h', 'x', 0)"
    )
    con.commit()
    con.close()
    with pytest.raises(HillclimbError, match="looks like the account"):
        db.create_account("b\u03bfb", None)
    db.close()
    con = sqlite3.connect(path)
    UsageDB(path).close()  # the next open fills the key in
    assert con.execute("SELECT name_key FROM accounts WHERE name='bob'").fetchone() == ("bob",)
    con.close()


def test_the_look_alike_check_does_not_scan_every_account(tmp_path, monkeypatch):
    """Creating account #2,001 computed the key of all 2,000 others (twice); now a handful."""
    path = tmp_path / "usage.sqlite"
    _old_database(path, 2000)
    db = UsageDB(path)  # the one-off backfill happens here
    calls = []
    real = billing.name_key
    monkeypatch.setattr(billing, "name_key", lambda s: calls.append(s) or real(s))
    db.create_account("newcomer", None)
    db.sync_key("hc-newcomer-key-00002", "newcomer-2", None, None)
    db.account_by_unique_name("user-00042")
    assert len(calls) <= 10, len(calls)


# ---- 3. an export that names no served database ----------------------------------------------------

TRAIN_TASK = {"projects": ["strutil"], "module": "strutil/text.py", "split": "train"}


def _chat(text: str, **meta) -> dict:
    return {
        "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}],
        "meta": meta,
    }


def _export(d: Path, summary: str) -> Path:
    d.mkdir(parents=True)
    (d / "export.json").write_text(summary)
    recs = [
        _chat("api", source="api", consent=True, account="alice", request_id="r1"),
        _chat("harness", source="harness", episode_id="e1", task=TRAIN_TASK),
    ]
    (d / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


@pytest.mark.parametrize(
    ("summary", "why"),
    [
        # what `telemetry export --served` wrote before session 23: no `served_db` field
        (
            json.dumps(
                {"db": "telemetry.db", "sft_examples": 2, "sft_by_source": {"harness": 1, "api": 1}}
            ),
            "served_db",
        ),  # fmt: skip
        ("{}", "consent_attested_by"),
        ("{not json", "cannot be read as JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"served_db": 5}), "not a path"),
    ],
)
def test_an_export_without_the_servers_verdicts_is_not_trained_on(tmp_path, summary, why):
    exp = _export(tmp_path / "exp", summary)
    recs, counts = flywheel_records([str(exp)])
    assert [r["messages"][0]["content"] for r in recs] == ["harness"]  # our own runs: kept
    assert counts["refused"] == {"consent_unverifiable": 1}
    (entry,) = counts["consent_unverifiable"]
    assert why in entry["why"] and entry["export"] == str(exp)


def test_an_attested_export_is_admitted_and_says_so(tmp_path):
    exp = _export(tmp_path / "exp", json.dumps({"consent_attested_by": "ops: signed forms"}))
    recs, counts = flywheel_records([str(exp)])
    assert sorted(r["messages"][0]["content"] for r in recs) == ["api", "harness"]
    assert counts["consent_attested"] == [
        {"export": str(exp), "by": "ops: signed forms", "api_records": 1}
    ]


@pytest.mark.parametrize("by", ["", "   ", 1, None])
def test_an_empty_attestation_vouches_for_nothing(tmp_path, by):
    exp = _export(tmp_path / "exp", json.dumps({"consent_attested_by": by}))
    recs, counts = flywheel_records([str(exp)])
    assert [r["messages"][0]["content"] for r in recs] == ["harness"]
    assert "consent_attested" not in counts


def test_an_attestation_does_not_override_a_named_database(tmp_path):
    """A database the export names but that is gone (purged) still refuses its records."""
    summary = {"served_db": str(tmp_path / "gone.sqlite"), "consent_attested_by": "ops"}
    exp = _export(tmp_path / "exp", json.dumps(summary))
    recs, counts = flywheel_records([str(exp)])
    assert [r["messages"][0]["content"] for r in recs] == ["harness"]
    assert counts["refused"] == {"consent_unverifiable": 1}
