"""Outside checks, session 30 (follow-up): the server's remaining adversarial gaps.

- A tool with `"strict": true` whose parameters schema was invalid (`$ref: "#"`, `"enum": []`,
  `minimum` > `maximum`, `minLength` > `maxLength`, an unknown `type`, `required` naming no
  property, a string `additionalProperties`) or used a keyword the grammar does not enforce was
  decoded as "any JSON" where the schema said more: strict promised what was not kept. Now a
  400 naming the keyword's path; the same schema without strict is still served.
- A UTF-16 body was served while a Latin-1 one was refused as "not UTF-8": `json.loads` on
  bytes guesses UTF-16/32. Now UTF-8 only (a UTF-8 BOM is dropped), the encoding named.
- `top_k: 10**400` and `thinking_token_budget: 2**80` were taken: now 400s above a maximum.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.requests import Request

from _server_util import load_engines, make_checkpoints
from hillclimb.serve import api, tool_grammar
from hillclimb.serve.api import APIError, ChatCompletionRequest, parse_request
from hillclimb.serve.auth import KeySpec
from hillclimb.serve.server import ServerThread, build_state
from hillclimb.serve.serving import read_body

KEY = "hc-test-s30-apiadv2-key1"
MODEL = "code-flash"
CHAT = "/v1/chat/completions"
USER = {"role": "user", "content": "hi"}
P = "tools[0].function.parameters"
# the documented maxima (docs/areas/server.md); modules are read by attribute so that this file
# runs against the code before the fix too
MAX_TOP_K = 1 << 20
MAX_THINKING_TOKEN_BUDGET = 1 << 24


def _strict(params: object, strict: bool = True) -> dict:
    fn = {"name": "f", "strict": strict, "parameters": params}
    return {"type": "function", "function": fn}


def _obj(**props: object) -> dict:
    return {"type": "object", "properties": props}


def _parse(body: dict) -> ChatCompletionRequest:
    return parse_request(ChatCompletionRequest, {"model": MODEL, "messages": [USER], **body})


def _refused(body: dict) -> APIError:
    with pytest.raises(APIError) as ei:
        _parse(body)
    assert ei.value.status == 400 and ei.value.code == "invalid_value", ei.value.message
    return ei.value


# ---- strict tool schemas ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, param",
    [
        (_obj(a={"$ref": "#"}), f"{P}.properties.a.$ref"),
        (_obj(a={"enum": []}), f"{P}.properties.a.enum"),
        (_obj(a={"type": "integer", "minimum": 5, "maximum": 1}), f"{P}.properties.a.minimum"),
        (_obj(a={"type": "string", "minLength": 5, "maxLength": 1}), f"{P}.properties.a.minLength"),
        (_obj(a={"type": "strng"}), f"{P}.properties.a.type"),
        ({**_obj(a={"type": "string"}), "required": ["b"]}, f"{P}.required"),
        ({"type": "object", "additionalProperties": "no"}, f"{P}.additionalProperties"),
        (_obj(a={"type": "array", "items": 5}), f"{P}.properties.a.items"),
        ({"type": "object", "properties": []}, f"{P}.properties"),
        ({"type": "string"}, f"{P}.type"),
        # valid, but more than the grammar enforces: strict would be a broken promise
        (_obj(a={"type": "string", "pattern": "^x$"}), f"{P}.properties.a.pattern"),
        (_obj(a={"type": "string", "maxLength": 3}), f"{P}.properties.a.maxLength"),
        (_obj(a={"type": "integer", "maximum": 3}), f"{P}.properties.a.maximum"),
        (_obj(a={"type": "integer", "minimum": 2}), f"{P}.properties.a.minimum"),
        (_obj(a={"anyOf": [{"type": "string"}]}), f"{P}.properties.a.anyOf"),
        (_obj(a={"type": ["string", "null"]}), f"{P}.properties.a.type"),
        (_obj(**{"a b": {"type": "array", "minItems": 1}}), f'{P}.properties["a b"].minItems'),
        (_obj(a=_obj(b={"format": "date"})), f"{P}.properties.a.properties.b.format"),
    ],
)
def test_strict_schema_refused_with_the_path(params, param):
    err = _refused({"tools": [_strict(params)]})
    assert err.param == param and param in err.message and "strict" in err.message
    _parse({"tools": [_strict(params, strict=False)]})  # without strict: taken, as before


def test_honoured_strict_schemas_are_taken():
    params = {
        **_obj(
            n={"type": "integer", "minimum": 1},
            x={"type": "number", "minimum": 0},
            e={"enum": ["a", "b"], "description": "one of two"},
            c={"const": 3},
            arr={"type": "array", "items": {"type": "boolean"}},
            o={"type": "object", "additionalProperties": {"type": "string"}},
            any_value={},
        ),
        "required": ["n", "e"],
        "additionalProperties": False,
        "title": "args",
    }
    assert tool_grammar.strict_schema_problem(params) is None
    _parse({"tools": [_strict(params)], "tool_choice": "required"})


def test_strict_schema_check_is_iterative():
    deep: dict = {"type": "string", "pattern": "x"}
    for _ in range(400):
        deep = _obj(a=deep)
    where, _ = tool_grammar.strict_schema_problem(deep)
    assert where.endswith(".a.pattern") and where.count(".properties.a") == 400


# ---- integer bounds ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("top_k", 10**400),
        ("top_k", MAX_TOP_K + 1),
        ("top_k", -2),
        ("thinking_token_budget", 2**80),
        ("thinking_token_budget", MAX_THINKING_TOKEN_BUDGET + 1),
        ("thinking_token_budget", -1),
    ],
)
def test_huge_integers_are_refused_naming_the_field(field, value):
    err = _refused({field: value})
    assert err.param == field and len(err.message) < 200


@pytest.mark.parametrize(
    "field, value",
    [("top_k", -1), ("top_k", MAX_TOP_K), ("thinking_token_budget", MAX_THINKING_TOKEN_BUDGET)],
)
def test_integers_at_the_maximum_are_taken(field, value):
    assert getattr(_parse({field: value}), field) == value


def test_documented_maxima():
    assert (api.MAX_TOP_K, api.MAX_THINKING_TOKEN_BUDGET) == (MAX_TOP_K, MAX_THINKING_TOKEN_BUDGET)


# ---- body encoding ----------------------------------------------------------------------------
def _read(raw: bytes) -> object:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [], "path": CHAT}
    return asyncio.run(read_body(Request(scope, receive)))


BODY = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "héllo"}]}, ensure_ascii=False
)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_utf16_and_utf32_bodies_are_refused_naming_the_encoding(encoding):
    with pytest.raises(APIError) as ei:
        _read(BODY.encode(encoding))
    assert ei.value.status == 400 and "must be UTF-8" in ei.value.message
    assert encoding.upper() in ei.value.message


def test_latin1_refused_and_utf8_with_or_without_bom_taken():
    with pytest.raises(APIError) as ei:
        _read(BODY.encode("latin-1"))
    assert "not valid UTF-8" in ei.value.message and "0xe9" in ei.value.message
    assert _read(BODY.encode("utf-8")) == json.loads(BODY)
    assert _read(b"\xef\xbb\xbf" + BODY.encode("utf-8")) == json.loads(BODY)


# ---- over HTTP --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http(tmp_path_factory):
    root = tmp_path_factory.mktemp("s30apiadv2")
    engines = load_engines({MODEL: make_checkpoints(root)[MODEL]}, max_batch=2, speculative=False)
    state = build_state(engines, db=root / "usage.sqlite", keys=[KeySpec(KEY, "alice")])
    with (
        ServerThread(state) as srv,
        httpx.Client(base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as c,
    ):
        yield c


def test_over_http(http):
    ok = {"model": MODEL, "messages": [USER], "max_tokens": 2}
    r = http.post(CHAT, json={**ok, "tools": [_strict(_obj(a={"$ref": "#"}))]})
    assert r.status_code == 400 and r.json()["error"]["param"] == f"{P}.properties.a.$ref"
    assert http.post(CHAT, json={**ok, "tools": [_strict(_obj(a={"$ref": "#"}), False)]}).is_success
    headers = {"Content-Type": "application/json"}
    r = http.post(CHAT, content=json.dumps(ok).encode("utf-16"), headers=headers)
    assert r.status_code == 400 and "UTF-16" in r.json()["error"]["message"]
    assert http.post(CHAT, content=b"\xef\xbb\xbf" + json.dumps(ok).encode(), headers=headers)
    r = http.post(CHAT, json={**ok, "top_k": 10**400})
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_k"
