"""Outside checks, session 22 (serve API): the `hillclimb serve` / `hillclimb keys` CLI, the
OpenAI-compatible HTTP server under adversarial clients (bodies, keys, disconnects), per-token
usage and billing — against random-weight micro checkpoints (see each test's docstring)."""

from __future__ import annotations

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.serve.billing import UsageDB


def _no_load(monkeypatch) -> list:
    """Replace model loading and serving with a recorder: a check that runs after the models
    load (minutes on a real checkpoint) shows up as a recorded call."""
    import hillclimb.serve.server as server

    calls: list = []
    monkeypatch.setattr(server, "load_state", lambda *a, **kw: calls.append(kw) or object())
    monkeypatch.setattr(server, "serve_forever", lambda *a, **kw: None)
    return calls


# ---- 1. --router that cannot be used ---------------------------------------------------------
@pytest.mark.parametrize("models", [["--flash"], ["--thinking"], ["--thinking", "--flash"]])
def test_serve_router_file_missing_is_refused_before_loading(monkeypatch, tmp_path, capsys, models):
    """`hillclimb serve --flash CK --router missing.json` started anyway (the router is only
    built when both models are served, so the file was never read); with both models the missing
    file was only noticed after every checkpoint had loaded. Now: one clear error, first."""
    calls = _no_load(monkeypatch)
    argv = ["serve", "--port", "0", "--router", str(tmp_path / "missing.json")]
    for flag in models:
        argv += [flag, str(tmp_path / "ck")]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert ("missing.json" if len(models) == 2 else "--router") in err
    assert "Traceback" not in err and calls == []


def test_serve_router_with_one_model_is_refused(monkeypatch, tmp_path, capsys):
    """A valid router file with only one model: 'auto' has nothing to route between, so the file
    would be silently ignored; say so instead of starting."""
    from hillclimb.serve.router import Router

    router = tmp_path / "router.json"
    Router(None).save(router)
    calls = _no_load(monkeypatch)
    assert main(["serve", "--port", "0", "--flash", "ck", "--router", str(router)]) != 0
    assert "--router" in capsys.readouterr().err and calls == []
    argv = ["serve", "--port", "0", "--flash", "a", "--thinking", "b", "--router", str(router)]
    assert main(argv) == 0 and len(calls) == 1  # both models: accepted


# ---- 2. account names ------------------------------------------------------------------------
BAD_NAMES = ["", "   ", "\t", "bob\nalice", "a\rb", "x\x00y", " bob", "bob ", "a" * 300]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_keys_create_refuses_unusable_names(tmp_path, capsys, name):
    """`hillclimb keys create --name ' '` (or a name with a newline, a NUL, outer spaces) made an
    account that `keys credit --name` can hardly address and that breaks the one-line CLI output
    and the usage table. Now a clear error, and nothing is written."""
    db = tmp_path / "u.sqlite"
    assert main(["keys", "create", "--db", str(db), "--name", name]) != 0
    err = capsys.readouterr().err
    assert "name" in err and "Traceback" not in err
    assert not db.exists() or UsageDB(db).count_accounts() == 0


@pytest.mark.parametrize("name", BAD_NAMES[1:])
def test_keys_file_names_are_checked_like_created_ones(tmp_path, name):
    """The same names through a keys file / HILLCLIMB_API_KEYS (`sync_key`) are refused too."""
    from hillclimb.serve.auth import Authenticator, KeySpec

    db = UsageDB(tmp_path / "u.sqlite")
    with pytest.raises(HillclimbError, match="name"):
        Authenticator(db, [KeySpec("hc-key-000000001", name)])
    assert db.count_accounts() == 0


def test_keys_create_keeps_ordinary_names(tmp_path, capsys):
    db = tmp_path / "u.sqlite"
    for name in ("alice", "Team B (eval)", "ünïcode-名前"):
        assert main(["keys", "create", "--db", str(db), "--name", name]) == 0
    assert UsageDB(db).count_accounts() == 3


# ---- a live server: code-flash micro, keys on ------------------------------------------------
ALICE = "hc-test-alice-key-0001"
CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from _server_util import load_engines, make_checkpoints
    from hillclimb.serve.auth import KeySpec
    from hillclimb.serve.billing import Price
    from hillclimb.serve.server import ServerThread, build_state

    root = tmp_path_factory.mktemp("s22serveapi")
    ckpts = make_checkpoints(root)
    engines = load_engines({"code-flash": ckpts["code-flash"]}, max_batch=4)
    state = build_state(
        engines,
        db=root / "usage.sqlite",
        keys=[KeySpec(ALICE, "alice", credits=1e6)],
        prices={"code-flash": Price(1e6, 1e6)},  # 1 credit a token
    )
    with ServerThread(state) as srv:
        srv.db_path = root / "usage.sqlite"
        yield srv


@pytest.fixture(scope="module")
def http(server):
    import httpx

    headers = {"Authorization": f"Bearer {ALICE}"}
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as c:
        yield c


def _metric(http, line_start: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---- 3. duplicate keys -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (
            b'{"model":"code-flash","messages":[{"role":"user","content":"hi"}],'
            b'"max_tokens":2,"max_tokens":3}',
            "max_tokens",
        ),
        (
            b'{"model":"code-flash","model":"code-flash","messages":[{"role":"user","content":"hi"}],'
            b'"max_tokens":2}',
            "model",
        ),
        (
            b'{"model":"code-flash","messages":[{"role":"user","content":"hi","role":"system"}],'
            b'"max_tokens":2}',
            "role",
        ),
        (
            b'{"model":"code-flash","messages":[{"role":"user","content":"hi"}],"max_tokens":2,'
            b'"\\ud800":1,"\\ud800":2}',
            "\\ud800",
        ),
    ],
)
def test_duplicate_json_keys_are_400(http, raw, key):
    """`{"max_tokens": 2, "max_tokens": 3}` was served as 3 (the decoder keeps the last value,
    a proxy or validator in front may keep the first): one body, two meanings, and the bill
    follows the one the client may not have meant. Now a 400 naming the key."""
    r = http.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "duplicate_key" and err["param"] == key and key in err["message"]
    ok = {"model": "code-flash", "messages": MSG, "max_tokens": 2}
    assert http.post(CHAT, json=ok).status_code == 200


# ---- 4. a client that hangs up before its body arrived ---------------------------------------
def test_client_gone_mid_body_is_499_not_a_server_error(server, http):
    """A client that sends half a body and closes the connection was counted as a 500 (and
    logged a ClientDisconnect traceback as a server failure): now a 499, like a closed stream."""
    import socket

    from _server_util import wait_for

    before = _metric(http, 'hillclimb_requests_total{endpoint="chat",model="-",status="499"}')
    fails = _metric(http, 'hillclimb_requests_total{endpoint="chat",model="-",status="500"}')
    with socket.create_connection((server.host, server.port)) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + ALICE.encode()
            + b'\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model"'
        )
        import time

        time.sleep(0.2)
    key = 'hillclimb_requests_total{endpoint="chat",model="-",status="499"}'
    assert wait_for(lambda: _metric(http, key) == before + 1, timeout=10)
    assert _metric(http, key.replace("499", "500")) == fails


# ---- 5. revoking a key -----------------------------------------------------------------------
def test_keys_revoke_refuses_the_key_on_a_running_server(server, http, capsys):
    """There was no way to revoke a leaked key: `hillclimb keys` could create, credit and report,
    and deleting the key from the keys file left it in the database, still accepted. Now
    `keys revoke --name` refuses it from the next request (the running server reads the account
    per request), with a message that says so; `--restore` takes it back."""
    import httpx

    db = str(server.db_path)
    assert main(["keys", "create", "--db", db, "--name", "mallory", "--json"]) == 0
    import json

    key = json.loads(capsys.readouterr().out)["key"]
    body = {"model": "code-flash", "messages": MSG, "max_tokens": 2}
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.post(server.url + CHAT, json=body, headers=auth, timeout=60).status_code == 200
    assert main(["keys", "revoke", "--db", db, "--name", "mallory"]) == 0
    assert "revoked" in capsys.readouterr().out
    r = httpx.post(server.url + CHAT, json=body, headers=auth, timeout=60)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert key not in r.text
    assert http.post(CHAT, json=body).status_code == 200  # other keys are untouched
    usage = {a["name"]: a for a in UsageDB(db).usage()["accounts"]}
    assert usage["mallory"]["revoked"] and usage["mallory"]["requests"] == 1
    assert main(["keys", "revoke", "--db", db, "--name", "mallory", "--restore"]) == 0
    assert httpx.post(server.url + CHAT, json=body, headers=auth, timeout=60).status_code == 200
    assert main(["keys", "revoke", "--db", db, "--name", "nobody"]) != 0
    assert "no account named 'nobody'" in capsys.readouterr().err


def test_revoked_keys_stay_revoked_and_never_reopen_the_server(tmp_path):
    """A revoked key still listed in the keys file must not come back at the next start (the
    file only registers keys), and revoking every key must not restart the server in open mode
    (auth was on only while an *enabled* account existed)."""
    from hillclimb.serve.auth import Authenticator, AuthError, KeySpec

    db = UsageDB(tmp_path / "u.sqlite")
    spec = KeySpec("hc-leaked-key-000001", "leaky")
    Authenticator(db, [spec])
    db.set_revoked("leaky", True)
    auth = Authenticator(db, [spec])  # restart with the same keys file
    assert not auth.open_mode
    with pytest.raises(AuthError, match="revoked"):
        auth.authenticate(f"Bearer {spec.key}")
    auth = Authenticator(db)  # restart with no keys file: still keys mode, everyone refused
    assert not auth.open_mode
    with pytest.raises(AuthError):
        auth.authenticate(None)


# ---- 6. the usage report ---------------------------------------------------------------------
def test_usage_report_keeps_open_mode_requests_apart_from_an_account_named_open(tmp_path):
    """Requests served in open mode are recorded under the name "open". Once keys were turned on
    with an account that happens to be called "open", `keys usage` listed that account twice and
    the open-mode requests (their tokens and cost) vanished from the report."""
    db = UsageDB(tmp_path / "u.sqlite")
    db.reserve("r1", None, "chat", "code-flash", "code-flash", 0)
    db.settle(
        "r1",
        prompt_tokens=5,
        completion_tokens=7,
        reasoning_tokens=0,
        cost_micro=0,
        finish_reason="stop",
        http_status=200,
    )
    db.create_account("open", 10)
    rows = db.usage()["accounts"]
    assert [(a["name"], a["unlimited"], a["requests"], a["prompt_tokens"]) for a in rows] == [
        ("open", False, 0, 0),  # the account
        ("open", True, 1, 5),  # the open-mode requests
    ]


# ---- 7. keys that no request can ever present ------------------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        " hc-padded-key-0001",
        "hc-trailing-key-01\n",
        "hc key with spaces",
        "        ",
        "hc-ünïcode-key-0001",
        "hc-tab\tkey-00001",
    ],
)
def test_keys_file_refuses_keys_no_header_can_carry(tmp_path, key):
    """A keys-file key with outer whitespace (a copy-paste), an inner space, a tab or a non-ASCII
    character was registered — turning auth on — but the Authorization header is stripped, split
    at its first space and ASCII, so every request with it was 401 "Incorrect API key". Now the
    keys file is refused at start-up naming the problem (the key itself is not echoed whole)."""
    import json

    from hillclimb.serve.auth import load_keys_file

    f = tmp_path / "keys.json"
    f.write_text(json.dumps({key: {"name": "alice"}}))
    with pytest.raises(HillclimbError, match="printable ASCII") as exc:
        load_keys_file(f)
    assert key.strip() not in str(exc.value) or len(key.strip()) <= 4


# ---- 8. a rate limit too small to compute with ----------------------------------------------
@pytest.mark.parametrize("rpm", [5e-324, 1e-300, 1e-6])
def test_tiny_rate_limits_are_refused(tmp_path, capsys, rpm):
    """`keys create --rpm 5e-324` (finite and > 0) made a key whose second request divided by
    zero in the token bucket — a 500 — and `1e-300` answered 429 with a 302-digit Retry-After.
    Now every way in (CLI, keys file) refuses a limit below MIN_RPM with a clear message."""
    import json

    from hillclimb.serve.auth import load_keys_file

    db = tmp_path / "u.sqlite"
    assert main(["keys", "create", "--db", str(db), "--name", "a", "--rpm", repr(rpm)]) != 0
    err = capsys.readouterr().err
    assert "rate_limit_rpm must be" in err and "Traceback" not in err
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({"hc-key-0000000001": {"rate_limit_rpm": rpm}}))
    with pytest.raises(HillclimbError, match="rate_limit_rpm must be"):
        load_keys_file(f)


def test_rate_limit_of_a_stored_tiny_rpm_still_answers_429():
    """A database written before the check may hold a tiny limit: the bucket still refuses the
    second request with a bounded wait instead of dividing by zero."""
    from hillclimb.serve.auth import RateLimiter, retry_after_header
    from hillclimb.serve.billing import Account

    acc = Account(1, "a", "hc-", None, 5e-324, False)
    lim = RateLimiter()
    assert lim.check(acc) == 0.0
    wait = lim.check(acc)
    assert 0 < wait < 1e7 and len(retry_after_header(wait)) < 10


# ---- 9. what was wrong with an unparsable body -----------------------------------------------
@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (
            '{"model":"code-flash","messages":[{"role":"user","content":"caf\xe9"}]}'.encode(
                "latin-1"
            ),
            "not valid UTF-8 text (byte 0xe9 at offset 63)",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not valid UTF-8"),
        (b'{"model":"code-flash",\n "messages": [}', "line 2 column 15"),
        (b'{"model":"code-flash","max_tokens":2,}', "Expecting property name"),
    ],
)
def test_unparsable_body_says_what_and_where(http, raw, says):
    """A Latin-1 or binary body and a JSON syntax error all got the same generic "could not
    parse the JSON body" hint; now the 400 also names the bad byte or the line and column."""
    r = http.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    msg = r.json()["error"]["message"]
    assert msg.startswith("We could not parse the JSON body") and says in msg, msg


# ---- 10. an unknown model id is not echoed back whole ----------------------------------------
def test_unknown_huge_model_id_is_not_echoed_whole(http):
    """A 1 MB `model` string came back whole in the 404 message: now cut, with its length."""
    r = http.post(CHAT, json={"model": "m" * 1_000_000, "messages": MSG})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert len(r.content) < 2000 and "1000000 characters" in r.text
    r = http.post(CHAT, json={"model": "gpt-4o", "messages": MSG})
    assert r.status_code == 404 and "'gpt-4o'" in r.text
