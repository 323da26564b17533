"""Adversarial requests against a live server (keys on, flywheel on, code-flash only): bodies
that are valid JSON but not text (lone surrogate escapes) or nested past the decoder's depth,
a body that never ends, logprobs of masked tokens (token healing), malformed tools and feedback.
Each must get an OpenAI-style 4xx error — never a 500, a dropped connection, a hang or a JSON
answer clients cannot parse — and the server must keep serving afterwards."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from _server_util import load_engines, make_checkpoints
from hillclimb.serve import serving
from hillclimb.serve.api import APIError
from hillclimb.serve.auth import KeySpec
from hillclimb.serve.flywheel import FILENAME
from hillclimb.serve.server import ServerThread, build_state

ALICE = "hc-test-alice-key-0001"
BOB = "hc-test-bob-key-000002"
CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    ckpts = make_checkpoints(root)
    engines = load_engines({"code-flash": ckpts["code-flash"]}, max_batch=4)
    state = build_state(
        engines,
        db=root / "usage.sqlite",
        keys=[KeySpec(ALICE, "alice"), KeySpec(BOB, "bob")],
        flywheel=root / FILENAME,
    )
    with ServerThread(state) as srv:
        yield srv


def _client(srv, key=ALICE):
    return httpx.Client(base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def http(server):
    with _client(server) as c:
        yield c


def _post_raw(http, path: str, raw: bytes) -> httpx.Response:
    return http.post(path, content=raw, headers={"content-type": "application/json"})


def _assert_error(r: httpx.Response, status: int = 400, param: str | None = "-") -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param != "-":
        assert err["param"] == param, err
    return err


def _healthy(http) -> None:
    body = {"model": "code-flash", "messages": MSG, "max_tokens": 2}
    assert http.post(CHAT, json=body).status_code == 200


def test_lone_surrogate_escapes_are_400(http):
    """`"\\ud800"` is valid JSON but not text: it reached the tokenizer, SQLite and the error
    message that echoes a field name or model id (500s, and a reset connection)."""
    base = (
        '{"model": "code-flash", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]'
    )
    bodies = {
        CHAT: [
            base.replace('"hi"', '"a\\ud800b"') + "}",
            base.replace('"code-flash"', '"\\ud800"') + "}",  # echoed in the 404 message
            base + ', "\\udc00": 1}',  # echoed as an unrecognized argument
            base + ', "stop": "\\udfff"}',
            base + ', "prediction": {"type": "content", "content": "x\\ud800"}}',
        ],
        "/v1/completions": [
            '{"model": "code-flash", "prompt": "a\\ud800", "max_tokens": 2}',
            '{"model": "code-flash", "prompt": "a", "suffix": "\\udc00", "max_tokens": 2}',
            '{"model": "code-flash", "prompt": "a\\ud800", "echo": true, "max_tokens": 2}',
        ],
        "/v1/feedback": ['{"id": "\\ud800", "accepted": true}'],
    }
    for path, raws in bodies.items():
        for raw in raws:
            _assert_error(_post_raw(http, path, raw.encode()), 400, None)
    # UTF-16 bodies (json.loads takes them) are checked too
    _assert_error(_post_raw(http, CHAT, (base.replace("hi", "\\ud800") + "}").encode("utf-16")))
    # a surrogate *pair* is a character, and an escaped backslash is not an escape
    for text in ("\\ud83d\\ude00", "\\\\ud800"):
        r = _post_raw(http, CHAT, (base.replace("hi", text) + "}").encode())
        assert r.status_code == 200, r.text
    _healthy(http)


def test_deeply_nested_body_is_400(http):
    """Nesting past the JSON decoder's recursion limit raised RecursionError: a 500."""
    deep = b"[" * 100_000 + b"]" * 100_000
    head = b'{"model": "code-flash", "messages": [{"role": "user", "content": "x"}], "metadata": '
    _assert_error(_post_raw(http, CHAT, head + deep + b"}"), 400, None)
    _assert_error(_post_raw(http, "/v1/feedback", b'{"id": "x", "edit": ' + deep + b"}"))
    _healthy(http)


def test_integer_too_long_to_parse_is_400(http):
    """json.loads refuses integers over 4300 digits with a plain ValueError: it was a 500
    (and the feedback route's 500 reset the connection)."""
    huge = b"9" * 5000
    raw = b'{"model": "code-flash", "messages": [{"role": "user", "content": "x"}], "n": '
    _assert_error(_post_raw(http, CHAT, raw + huge + b"}"), 400, None)
    _assert_error(_post_raw(http, "/v1/feedback", b'{"id": "x", "choice": ' + huge + b"}"))
    _healthy(http)


def test_continuous_usage_stats_is_refused(http):
    """vLLM's `stream_options.continuous_usage_stats` was accepted and silently ignored."""
    body = {"model": "code-flash", "messages": MSG, "max_tokens": 2, "stream": True}
    body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    err = _assert_error(http.post(CHAT, json=body), 400, "stream_options.continuous_usage_stats")
    assert err["code"] == "unsupported_parameter"


def test_body_without_end_is_refused_at_the_limit():
    """A chunked body (no Content-Length) was buffered whole before the size check: one
    client could make the server hold any amount of memory. It is now read up to the limit."""
    calls = 0
    chunk = b"x" * 65536

    async def receive() -> dict:
        nonlocal calls
        calls += 1
        if calls > 4 * serving.MAX_BODY_BYTES // len(chunk):  # the old code read all of it
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    from starlette.requests import Request

    req = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)
    with pytest.raises(APIError) as ei:
        asyncio.run(serving.read_body(req))
    assert ei.value.status == 413 and ei.value.code == "request_too_large"
    assert calls <= serving.MAX_BODY_BYTES // len(chunk) + 2


def _strict_json(text: str):
    def bad(name: str):
        raise ValueError(f"non-JSON number {name}")

    return json.loads(text, parse_constant=bad)


def test_logprobs_of_masked_tokens_are_finite(http):
    """Token healing masks the alternatives of the first token(s): their logprob is -inf. The
    plain answer was a 500 (JSON cannot carry it) and a stream sent `-Infinity`. They are
    reported at vLLM's floor, -9999.0."""
    body = {
        "model": "code-flash",
        "prompt": "def f(x):\n    ",
        "max_tokens": 4,
        "temperature": 0,
        "token_healing": True,
        "logprobs": 3,
    }
    for extra in ({}, {"echo": True}):
        r = http.post("/v1/completions", json={**body, **extra})
        assert r.status_code == 200, r.text
        lp = _strict_json(r.text)["choices"][0]["logprobs"]
        values = [v for v in lp["token_logprobs"] if v is not None]
        values += [v for top in lp["top_logprobs"] if top for v in top.values()]
        assert values and all(math.isfinite(v) and -9999.0 <= v <= 0 for v in values)
    r = http.post("/v1/completions", json={**body, "stream": True})
    assert r.status_code == 200
    chunks = [_strict_json(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
    assert chunks and not any("error" in c for c in chunks)
    assert r.text.rstrip().endswith("data: [DONE]")
    _healthy(http)


@pytest.mark.parametrize(
    "tools, tool_choice, param",
    [
        ([{"type": "function", "function": {"name": 5}}], None, "tools[0]"),
        (
            [{"type": "function", "function": {"name": "f", "parameters": "x"}}],
            None,
            "tools[0].function.parameters",
        ),
        (
            [{"type": "function", "function": {"name": "f", "description": ["x"]}}],
            None,
            "tools[0].function.description",
        ),
        ([{"type": "function", "function": {"name": "f"}}], "bogus", "tool_choice"),
    ],
)
def test_malformed_tools_are_400(http, tools, tool_choice, param):
    """A tool the template would render as garbage (a number as its name, a string as its
    schema) was accepted and silently shown to the model; an unknown tool_choice string was
    called "unsupported" rather than invalid."""
    body = {"model": "code-flash", "messages": MSG, "max_tokens": 2, "tools": tools}
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    err = _assert_error(http.post(CHAT, json=body), 400, param)
    assert err["code"] in ("invalid_value", "invalid_type")


def test_feedback_refuses_bad_fields(server, http):
    body = {"model": "code-flash", "messages": MSG, "max_tokens": 2}
    rid = http.post(CHAT, json=body).json()["id"]

    def fb(client=http, **kw):
        return client.post("/v1/feedback", json={"id": rid, "accepted": True, **kw})

    # an integer past SQLite's 64 bits was a 500 (and a reset connection)
    for choice in (2**63, 10**30, -1, 64):
        _assert_error(fb(choice=choice), 400, "choice")
    _assert_error(fb(edit={"path": 5}), 400, "edit.path")  # was param "id"
    _assert_error(fb(edit={"applied": "yes"}), 400, "edit.applied")
    assert _assert_error(fb(edit={"aplied": True}), 400, "edit.aplied")["code"] == (
        "unknown_parameter"
    )
    assert _assert_error(fb(acepted=False), 400, "acepted")["code"] == "unknown_parameter"
    _assert_error(fb(note="x" * (64 * 1024 + 1)), 400, "note")
    with _client(server, BOB) as bob:
        _assert_error(fb(bob), 403, "id")
    r = http.post("/v1/feedback", json={"id": "chatcmpl-unknown", "accepted": False})
    _assert_error(r, 404, "id")
    ok = fb(choice=0, edit={"path": "a.py", "applied": True}, note="thanks")
    assert ok.status_code == 200 and ok.json()["request_id"] == rid
    _healthy(http)
