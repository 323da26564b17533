"""Outside checks, session 19 (serve): unusual but valid requests against a live server on
random-weight micro checkpoints — streamed text equal to the plain answer when a think tag ends
the output, a dead engine process answered as the server's failure (503, not 400), a stream
that fails counted as failed, chat logprob `bytes` that join into the text."""

from __future__ import annotations

import json
import os
import signal
import sqlite3

import httpx
import pytest

from _server_util import load_engines, make_checkpoints, wait_for
from hillclimb.serve.billing import Price
from hillclimb.serve.server import ServerThread, build_state

THINK_PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("s19serve"))


@pytest.fixture(scope="module")
def server(ckpts, tmp_path_factory):
    engines = load_engines(ckpts, max_batch=4, speculative=True)
    db = tmp_path_factory.mktemp("s19db") / "usage.sqlite"
    prices = {"thinking": Price(1e6, 1e6), "code-flash": Price(1e6, 1e6)}  # 1 credit a token
    state = build_state(engines, db=db, prices=prices)
    with ServerThread(state) as srv:
        srv.db_path = db
        yield srv


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _last_row(server) -> dict:
    con = sqlite3.connect(server.db_path)
    con.row_factory = sqlite3.Row
    try:
        return dict(con.execute("SELECT * FROM requests ORDER BY created DESC LIMIT 1").fetchone())
    finally:
        con.close()


def _stream_texts(http: httpx.Client, body: dict) -> tuple[dict[int, str], list[dict]]:
    with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    objs = [json.loads(ln[6:]) for ln in lines[:-1]]
    texts: dict[int, str] = {}
    for o in objs:
        for ch in o.get("choices", []):
            texts[ch["index"]] = texts.get(ch["index"], "") + ch["text"]
    return texts, objs


@pytest.mark.parametrize(
    ("budget", "max_tokens", "drafter"),
    [(0, 1, "none"), (0, 3, "none"), (3, 4, "none"), (3, 4, "model"), (3, 4, "lookup")],
)
def test_streamed_completion_keeps_a_think_tag_with_no_text_after_it(
    http, budget, max_tokens, drafter
):
    """A budget forces `</think>`; when the output ends on it (length) or it has only the
    template's newlines after it, the streamed text dropped the tag the plain answer has (the
    stream put tags back only where a later delta changed side)."""
    body = {
        "model": "thinking",
        "prompt": THINK_PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "thinking_token_budget": budget,
        "drafter": drafter,
        "n": 2,
    }
    plain = http.post("/v1/completions", json=body).json()
    texts, _ = _stream_texts(http, body)
    want = [c["text"] for c in plain["choices"]]
    assert "</think>" in want[0] and want[0] == want[1]
    assert [texts[0], texts[1]] == want


def test_dead_engine_process_is_503_not_a_client_error(ckpts, tmp_path):
    """With the engines in a child process (the `hillclimb serve` default), a request after the
    process died was a 400 invalid_request_error — the client's fault, so not retried."""
    from hillclimb.serve.host import EngineOptions, start_engine_process

    opts = EngineOptions(max_batch=2, device="cpu", compile=False)
    engines, _ = start_engine_process(None, ckpts["code-flash"], opts)
    state = build_state(engines, db=tmp_path / "u.sqlite")
    with ServerThread(state) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        body = {"model": "code-flash", "prompt": "hi", "max_tokens": 2, "temperature": 0}
        assert c.post("/v1/completions", json=body).status_code == 200
        os.kill(engines["code-flash"].host.proc.pid, signal.SIGKILL)
        assert wait_for(lambda: engines["code-flash"].host.dead is not None, timeout=10)
        for path, extra in (
            ("/v1/completions", {}),
            ("/v1/completions", {"echo": True, "logprobs": 1}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
        ):
            req = {**body, **extra}
            if "messages" in extra:
                req.pop("prompt")
            r = c.post(path, json=req)
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["type"] == "server_error" and err["code"] == "engine_unavailable"
        assert c.get("/health").status_code == 503
        text = c.get("/metrics").text
        assert 'status="503"' in text and 'status="400"' not in text


def test_stream_that_fails_is_counted_as_failed(server, http, monkeypatch):
    """An engine failure mid-stream ends the SSE with an error object; it was still counted and
    settled as a 200 answer (the plain request gives a 500)."""
    eng = server.state.models["code-flash"].engine

    def boom(*a, **k):  # noqa: ANN002, ANN003
        raise RuntimeError("injected sampling failure")

    monkeypatch.setattr(eng, "_sample", boom)
    monkeypatch.setattr(eng, "_sample_many", boom)
    m = server.state.metrics.requests
    before, ok = (m.value("completions", "code-flash", s) for s in ("500", "200"))
    body = {"model": "code-flash", "prompt": "fail me", "max_tokens": 4, "temperature": 1.0}
    _, objs = _stream_texts(http, body)
    assert "error" in objs[-1]
    assert wait_for(lambda: m.value("completions", "code-flash", "500") == before + 1)
    assert m.value("completions", "code-flash", "200") == ok
    # the stream settles after its last byte reached the client, the metric just before the row
    assert wait_for(lambda: _last_row(server)["http_status"] == 500)
    # the plain answer agrees
    assert http.post("/v1/completions", json=body).status_code == 500
    monkeypatch.undo()
    assert http.post("/v1/completions", json=body).status_code == 200


def test_chat_logprob_bytes_join_into_a_character_split_across_tokens(server):
    """`bytes` exist so that a character split across tokens can be put back together; each
    such token's text alone is U+FFFD, and its `bytes` were U+FFFD's (EF BF BD)."""
    from hillclimb.serve.serving_chat import chat_logprobs

    tok = server.state.tokenizer
    ids = tok.encode("é😀")
    assert len(ids) == 6  # byte-level: one token per byte
    recs = [
        {"token_id": t, "token": tok.decode([t]), "logprob": -1.0,
         "top_logprobs": [{"token_id": t, "token": tok.decode([t]), "logprob": -1.0}]}
        for t in ids
    ]  # fmt: skip
    out = chat_logprobs(recs, tok)
    assert bytes(b for e in out for b in e["bytes"]).decode("utf-8") == "é😀"
    assert [e["top_logprobs"][0]["bytes"] for e in out] == [e["bytes"] for e in out]
    # special tokens and plain ASCII keep their text's bytes
    sp = tok.encode("<|im_end|>x")
    out = chat_logprobs([{"token_id": t, "logprob": 0.0} for t in sp], tok)
    assert [bytes(e["bytes"]).decode() for e in out] == [e["token"] for e in out]


def test_request_refused_at_submit_is_not_charged(server, http):
    """`drafter: "model"` for code-flash (no draft model) is refused by the engine's own check,
    after the reservation: the 400 was settled at the cost of its prompt tokens and counted in
    `hillclimb_prompt_tokens_total`, though no token was processed."""
    m = server.state.metrics
    before = m.prompt_tokens.value("code-flash")
    body = {"model": "code-flash", "prompt": "hello world", "max_tokens": 4, "drafter": "model"}
    for n in (1, 3):
        r = http.post("/v1/completions", json={**body, "n": n})
        assert r.status_code == 400 and "no draft model" in r.json()["error"]["message"]
        row = _last_row(server)
        assert row["http_status"] == 400 and row["status"] == "settled"
        assert (row["cost_micro"], row["prompt_tokens"], row["completion_tokens"]) == (0, 0, 0)
    assert m.prompt_tokens.value("code-flash") == before
    # an answered request still pays its prompt
    ok = http.post("/v1/completions", json={**body, "drafter": "none"}).json()
    assert _last_row(server)["cost_micro"] == round(ok["usage"]["total_tokens"] * 1e6)
