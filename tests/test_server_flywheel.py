"""The flywheel through the live server: a keyed user's answers are kept only after the operator
records their consent (`hillclimb keys consent`), streamed and plain chat and FIM completions
alike; `POST /v1/feedback` accepts or rejects one's own requests only; the export turns accepted
answers into SFT records with provenance. Also: the prefix cache's counters in /metrics and
`usage.prompt_tokens_details.cached_tokens` on a follow-up turn."""

from __future__ import annotations

import json

import httpx
import pytest

from _server_util import load_engines, make_checkpoints
from hillclimb.cli import main
from hillclimb.serve.auth import KeySpec
from hillclimb.serve.billing import UsageDB
from hillclimb.serve.flywheel import FILENAME, FlywheelStore
from hillclimb.serve.server import ServerThread, build_state

ALICE = "hc-test-alice-key-0001"
BOB = "hc-test-bob-key-000002"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("flywheel")
    engines = load_engines(make_checkpoints(root), max_batch=4, speculative=False)
    db = root / "usage.sqlite"
    state = build_state(
        engines,
        db=db,
        keys=[KeySpec(ALICE, "alice"), KeySpec(BOB, "bob")],
        flywheel=root / FILENAME,
    )
    with ServerThread(state) as srv:
        yield srv, root


def _client(srv, key):
    return httpx.Client(base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


def _chat(c, content, stream=False):
    body = {"model": "code-flash", "messages": [{"role": "user", "content": content}],
            "max_tokens": 6, "temperature": 0, "stream": stream}  # fmt: skip
    r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    if not stream:
        return r.json()["id"]
    ids = {json.loads(line[6:])["id"] for line in r.text.splitlines()
           if line.startswith("data: {")}  # fmt: skip
    assert len(ids) == 1
    return ids.pop()


def test_consent_then_feedback_then_export(served, tmp_path, capsys):
    srv, root = served
    with _client(srv, ALICE) as alice, _client(srv, BOB) as bob:
        before = _chat(alice, "before consent")
        # the operator records alice's opt-in (the account must exist in the usage database)
        assert main(["keys", "consent", "--db", str(root / "usage.sqlite"), "--name", "alice",
                     "--on"]) == 0  # fmt: skip
        assert main(["keys", "consent", "--db", str(root / "usage.sqlite"), "--name", "nobody",
                     "--on"]) != 0  # fmt: skip
        capsys.readouterr()
        plain = _chat(alice, "fix my function")
        streamed = _chat(alice, "and this one", stream=True)
        r = alice.post("/v1/completions", json={
            "model": "code-flash", "prompt": "def f(x):\n    ", "suffix": "\n\nprint(f(1))\n",
            "max_tokens": 5, "temperature": 0})  # fmt: skip
        assert r.status_code == 200
        fim = r.json()["id"]
        bobs = _chat(bob, "bob's question")

        def fb(c, rid, accepted, **kw):
            return c.post("/v1/feedback", json={"id": rid, "accepted": accepted, **kw})

        assert fb(bob, plain, True).status_code == 403  # not bob's request
        assert fb(alice, "chatcmpl-nope", True).status_code == 404
        bad = fb(alice, plain, "yes")
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "accepted"
        assert fb(alice, plain, True, edit={"path": "a.py", "applied": "no"}).status_code == 400
        ok = fb(alice, plain, True, edit={"path": "src/a.py", "applied": True})
        assert ok.status_code == 200 and ok.json()["training_use"] is True
        for rid in (streamed, fim, before):
            assert fb(alice, rid, True).status_code == 200
        assert fb(bob, bobs, True).json()["training_use"] is False  # bob never opted in
        assert httpx.post(srv.url + "/v1/feedback", json={"id": plain, "accepted": True},
                          timeout=10).status_code == 401  # fmt: skip
    with FlywheelStore(root / FILENAME) as fw:
        recs, counts = fw.training_records()
        assert fw.stats()["edits_applied"] == 1
    # plain + streamed chat and the FIM answer; "before consent" and bob's were never stored
    assert counts == {"accepted": 5, "rejected": 0, "no_consent": 2, "exported": 3}
    by_id = {r["meta"]["request_id"]: r for r in recs}
    assert set(by_id) == {plain, streamed, fim}
    chat = by_id[streamed]["messages"]
    assert chat[0] == {"role": "user", "content": "and this one"}
    assert chat[-1]["role"] == "assistant"
    assert by_id[fim]["fim"]["prefix"] == "def f(x):\n    "
    assert by_id[fim]["fim"]["suffix"] == "\n\nprint(f(1))\n"
    assert all(r["meta"]["account"] == "alice" and r["meta"]["consent"] for r in recs)
    assert UsageDB(root / "usage.sqlite").account_by_name("alice").name == "alice"
    # a server operator with no harness runs exports without --db (session 20: it was required)
    out = tmp_path / "exp"
    assert main(["telemetry", "export", "--served", str(root / FILENAME), "--out", str(out)]) == 0
    assert len((out / "sft.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()
    assert main(["telemetry", "export", "--out", str(tmp_path / "none")]) == 2
    assert "needs --db" in capsys.readouterr().err


def test_prefix_cache_metrics_and_cached_tokens(served):
    srv, _ = served
    with _client(srv, ALICE) as alice:
        body = {"model": "thinking", "prompt": "The quick brown fox jumps over the lazy dog. " * 3,
                "max_tokens": 4, "temperature": 0}  # fmt: skip
        first = alice.post("/v1/completions", json=body).json()
        again = alice.post("/v1/completions", json=body).json()
        assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        assert again["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
        text = httpx.get(srv.url + "/metrics", timeout=10).text
    for name in ("hillclimb_prefix_cache_hits_total", "hillclimb_prefix_cache_reused_tokens_total",
                 "hillclimb_engine_prefill_tokens_total", "hillclimb_prefix_cache_entries"):  # fmt: skip
        assert f'{name}{{model="thinking"}}' in text, name
