"""Session 23 outside checks: the server side of the flywheel's consent (red team, part 2).

Nothing a user sends enters training without an opt-in recorded for *their* key, and a user
rates only their own requests: consent and ownership followed the account *name*, so a name
given to a new key inherited the old key's opt-in and requests; feedback rows per request were
unbounded; look-alike account names could coexist; export and report lines hid reasons."""

from __future__ import annotations

import hashlib
import sqlite3

import httpx
import pytest

from _server_util import load_engines, make_checkpoints
from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.serve.auth import KeySpec
from hillclimb.serve.billing import UsageDB
from hillclimb.serve.flywheel import FILENAME, FlywheelStore
from hillclimb.serve.server import ServerThread, build_state

K1 = "hc-consent2-key-one-0001"
K2 = "hc-consent2-key-two-0002"
ANSWER = {"choices": [{"content": "ok"}]}
REQ = {"messages": [{"role": "user", "content": "hi"}], "tools": None}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("consent2")
    engines = load_engines(make_checkpoints(root), max_batch=4, speculative=False)
    state = build_state(
        engines, db=root / "usage.sqlite", keys=[KeySpec(K1, "alice")], flywheel=root / FILENAME
    )
    with ServerThread(state) as srv:
        yield srv, state, root


def _client(srv, key):
    return httpx.Client(base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


def _chat(c, content):
    body = {"model": "code-flash", "messages": [{"role": "user", "content": content}],
            "max_tokens": 4, "temperature": 0}  # fmt: skip
    r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_a_name_given_to_a_new_key_brings_neither_consent_nor_requests(server, capsys):
    """Key K1 is alice and opted in; a keys file renames K1 to bob and names a new key K2
    alice. K2 inherited alice's opt-in (its content was kept for training without its consent)
    and could accept K1's requests; K1, now bob, could no longer rate its own."""
    srv, state, root = server
    db = str(root / "usage.sqlite")
    assert main(["keys", "consent", "--db", db, "--name", "alice", "--on"]) == 0
    capsys.readouterr()
    with _client(srv, K1) as k1, _client(srv, K2) as k2:
        old = _chat(k1, "alice's question")
        # what a restart with the edited keys file does (`Authenticator` syncs every key)
        state.db.sync_key(K1, "bob", None, None)
        state.db.sync_key(K2, "alice", None, None)
        assert k2.post("/v1/feedback", json={"id": old, "accepted": True}).status_code == 403
        new = _chat(k2, "the new alice's question")
        r = k2.post("/v1/feedback", json={"id": new, "accepted": True})
        assert r.status_code == 200 and r.json()["training_use"] is False
        r = k1.post("/v1/feedback", json={"id": old, "accepted": True})
        assert r.status_code == 200 and r.json()["training_use"] is True
    with FlywheelStore(root / FILENAME) as fw:
        kept = dict(fw.query("SELECT request_id, request IS NOT NULL FROM served"))
        recs, _ = fw.training_records()
    assert kept[new] == 0 and kept[old] == 1
    assert [r["meta"]["request_id"] for r in recs] == [old]


def test_repeated_feedback_keeps_one_verdict_per_request(tmp_path):
    """Without --rpm a client could send feedback on one request forever, each row with a 64 KiB
    note: flywheel.sqlite grew without bound. The latest verdict now replaces the earlier."""
    with FlywheelStore(tmp_path / FILENAME) as fw:
        fw.set_consent("alice", True)
        fw.record_served("r1", account="alice", endpoint="chat", model="m", request=REQ,
                         response=ANSWER)  # fmt: skip
        for i in range(50):
            fw.record_feedback("r1", account="alice", accepted=i % 2 == 1, note="x" * 1000)
        assert fw.query("SELECT COUNT(*), MAX(accepted) FROM feedback") == [(1, 1)]
        recs, counts = fw.training_records()
        assert counts["accepted"] == 1 and len(recs) == 1
        fw.record_feedback("r1", account="alice", accepted=False)
        assert fw.training_records()[1]["rejected"] == 1


def test_an_opt_in_while_a_request_is_in_flight_does_not_reach_back(tmp_path):
    """Consent was read only when a request finished: an account opted in while its request
    was generating had that request's content kept, though it was sent before the opt-in."""
    with FlywheelStore(tmp_path / FILENAME) as fw:
        fw.set_consent("alice", True, key_id="k1")  # turned on during the request
        kept = fw.record_served("r1", account="alice", endpoint="chat", model="m", request=REQ,
                                response=ANSWER, key_id="k1", consent_at_start=False)  # fmt: skip
        assert kept is False
        assert fw.query("SELECT consent, request FROM served") == [(0, None)]


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE consent (id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL,
    opted_in INTEGER NOT NULL, changed_at REAL NOT NULL);
CREATE INDEX consent_account ON consent(account, id);
CREATE TABLE served (request_id TEXT PRIMARY KEY, account TEXT NOT NULL, endpoint TEXT NOT NULL,
    model TEXT NOT NULL, consent INTEGER NOT NULL, request TEXT, response TEXT,
    created_at REAL NOT NULL);
CREATE INDEX served_account ON served(account, created_at);
CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL REFERENCES served(request_id), account TEXT NOT NULL,
    choice INTEGER NOT NULL DEFAULT 0, accepted INTEGER NOT NULL, edit_path TEXT,
    edit_applied INTEGER, note TEXT, created_at REAL NOT NULL);
CREATE INDEX feedback_request ON feedback(request_id, id);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO consent (account, opted_in, changed_at) VALUES ('alice', 1, 1.0), ('bob', 1, 1.0);
INSERT INTO served VALUES ('r1', 'alice', 'chat', 'm', 1,
    '{"messages": [{"role": "user", "content": "hi"}]}', '{"choices": [{"content": "ok"}]}', 2.0);
INSERT INTO feedback (request_id, account, accepted, created_at) VALUES ('r1', 'alice', 1, 3.0);
"""


def test_a_v1_flywheel_file_is_migrated_with_every_row_kept(tmp_path):
    """Consent and ownership are now kept per key (schema v2). A v1 file (names only) is
    migrated in place: its rows stay, its opt-ins still count for the key that holds the
    name — unless the name has been seen with another key since; a file of a later schema is
    refused untouched."""
    p = tmp_path / FILENAME
    con = sqlite3.connect(p)
    con.executescript(V1_SCHEMA)
    con.close()
    with FlywheelStore(p) as fw:
        assert fw.query("SELECT value FROM meta WHERE key='schema'") == [("2",)]
        assert fw.query("SELECT COUNT(*) FROM consent") == [(2,)]
        assert len(fw.training_records()[0]) == 1  # the v1 export still reads the same
        assert fw.consent("alice", key_id="ka") is True
        fw.record_served("r2", account="bob", endpoint="chat", model="m", request=REQ,
                         response=ANSWER, key_id="kb")  # fmt: skip
        # "bob" is now K-b's: another key under that name gets neither the opt-in nor r2
        assert fw.consent("bob", key_id="kb") is True and fw.consent("bob", key_id="kx") is False
        with pytest.raises(HillclimbError, match="own requests"):
            fw.record_feedback("r2", account="bob", key_id="kx", accepted=True)
    FlywheelStore(p).close()  # a second open of the migrated file is fine
    con = sqlite3.connect(p)
    con.execute("UPDATE meta SET value='3' WHERE key='schema'")
    con.commit()
    con.close()
    before = hashlib.sha256(p.read_bytes()).hexdigest()
    with pytest.raises(HillclimbError, match="schema v3, expected v2"):
        FlywheelStore(p)
    assert hashlib.sha256(p.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    "first, second",
    [
        ("Jos\u00e9", "Jose\u0301"),  # NFC vs NFD
        ("alice", "\uff41lice"),  # fullwidth a
        ("alice", "Alice"),
        ("ﬁona", "fiona"),  # the fi ligature
    ],
)
def test_account_names_that_look_alike_cannot_coexist(tmp_path, first, second):
    """`keys consent --name` could opt in the wrong one of two look-alike accounts."""
    db = UsageDB(tmp_path / "usage.sqlite")
    db.create_account(first, None)
    with pytest.raises(HillclimbError, match="looks like the account"):
        db.create_account(second, None)
    with pytest.raises(HillclimbError, match="looks like the account"):
        db.sync_key("hc-some-other-key-0003", second, None, None)
    db.sync_key("hc-third-key-000000004", "carol", None, None)
    with pytest.raises(HillclimbError, match="looks like the account"):
        db.sync_key("hc-third-key-000000004", second, None, None)  # a rename onto it
    db.sync_key("hc-third-key-000000004", "carol", None, None)  # unchanged: fine


@pytest.mark.parametrize("name", ["alice\u3164", "\u3164", "ali\u034fce", "alice\ufe0f"])
def test_account_names_with_invisible_characters_are_refused(tmp_path, name):
    db = UsageDB(tmp_path / "usage.sqlite")
    with pytest.raises(HillclimbError, match="invisible"):
        db.create_account(name, None)


def test_keys_consent_refuses_a_name_with_an_older_look_alike(tmp_path, capsys):
    """A database made before the check may hold two look-alike accounts: both stay readable,
    but `keys consent` names both (escaped) instead of opting in whichever one was typed."""
    path = tmp_path / "usage.sqlite"
    db = UsageDB(path)
    db.create_account("Jos\u00e9", None, key="hc-key-nfc-00000001")
    con = sqlite3.connect(path)
    con.execute(
        "INSERT INTO accounts(name, key_hash, key_prefix, created) VALUES (?, 'h', 'hc-x', 0)",
        ("Jose\u0301",),
    )
    con.commit()
    con.close()
    assert db.account_by_name("Jose\u0301").name == "Jose\u0301"
    assert main(["keys", "consent", "--db", str(path), "--name", "Jos\u00e9", "--on"]) != 0
    err = capsys.readouterr().err
    assert "look alike" in err and "Jose\\u0301" in err
    assert (
        not (tmp_path / FILENAME).exists()
        or FlywheelStore(tmp_path / FILENAME).stats()["accounts_opted_in"] == 0
    )


def test_export_notes_name_client_written_turns():
    from hillclimb.harness.cli import export_notes

    notes = export_notes({"api": {"client_written_turns": 2}})
    assert any("2 accepted API chats" in n and "assistant turns" in n for n in notes), notes


def test_the_flywheel_report_heads_its_refusals_honestly():
    from hillclimb.climb.report import flywheel_lines

    fw = {"sft_examples": 1, "by_source": {"api": 1}, "refused_no_consent": 0,
          "refused": {"consent_revoked": 2, "client_written_turns": 1},
          "rl_prompts_available": 0, "exports": ["x"]}  # fmt: skip
    text = "\n".join(flywheel_lines({"thinking": {"flywheel": fw, "examples": 5}}))
    assert "evaluation-only task, unknown task" not in text
    assert "consent_revoked 2" in text and "client_written_turns 1" in text
    assert "consent revoked" in text  # the heading names what the column counts


def test_an_account_named_open_cannot_rate_open_mode_requests(tmp_path):
    """Requests served in open mode (no keys) are stored under the name "open"; an account
    later created with that name could accept or reject all of them (they count in the
    export's rejected/accepted numbers)."""
    with FlywheelStore(tmp_path / FILENAME) as fw:
        fw.record_served("r0", account="open", endpoint="chat", model="m", request=REQ,
                         response=ANSWER, open_mode=True)  # fmt: skip
        with pytest.raises(HillclimbError, match="own requests"):
            fw.record_feedback("r0", account="open", key_id="k-open", accepted=False)
        fw.record_feedback("r0", account="open", accepted=True)  # still open mode: allowed
