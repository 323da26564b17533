"""Outside checks, session 30: the OpenAI-compatible server under adversarial requests.

A live server (keys and prices on, a random-weight code-flash-micro) was sent ≈230 requests
real and hostile clients send: wrong JSON types for every field, NaN/Infinity, huge integers,
odd messages, tools and tool turns, unicode, cut streams, seeds. Most were already refused well;
what was not:

- duplicate tool names: a 400 with `param: null`, `code: null` and the engine's wording
  ("invalid sampling parameters: guided_tools: tool names must be unique");
- a malformed assistant tool call (`{"id": "1"}`, `function: null`, an integer name): a 400
  quoting the chat template's internals ("'dict object' has no attribute 'name'"), param
  `messages`; an integer `arguments` was rendered into the history;
- a `tool` message answering no call (first message, after a user turn, an unknown
  `tool_call_id`, no `tool_call_id`): 200, rendered as history no model produced (OpenAI: 400);
  `tool_calls` on a user message and `tool_call_id` on a user message: dropped silently;
- a tool name OpenAI refuses (quotes, newlines, markup, > 64 characters): rendered between
  quotes into the prompt;
- a strict tool schema too large to guide, and more than 64 choices (prompts × n): `code: null`,
  the first also `param: null`;
- type errors found by the schema named the field `messages.0.content` / `tools.0` while the
  hand checks say `messages[0].content` / `tools[0]`: two spellings of one field.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from _server_util import load_engines, make_checkpoints, wait_for
from hillclimb.serve.api import APIError, ChatCompletionRequest, parse_request
from hillclimb.serve.auth import KeySpec
from hillclimb.serve.billing import Price
from hillclimb.serve.server import ServerThread, build_state

KEY = "hc-test-s30-apiadv-key1"
MODEL = "code-flash"
CHAT = "/v1/chat/completions"
USER = {"role": "user", "content": "hi"}
PRICE = Price(1e6, 2e6)  # 1 credit a prompt token, 2 a completion token


def _tool(name: str = "f") -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def _call(cid: str = "c1", name: str = "f", arguments: object = "{}") -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def _parse_error(body: dict) -> APIError:
    with pytest.raises(APIError) as ei:
        parse_request(ChatCompletionRequest, {"model": MODEL, **body})
    assert ei.value.status == 400 and ei.value.message
    return ei.value


# ---- request validation (no server) ---------------------------------------------------------
@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content"),
        ({"messages": [USER, {"role": "user", "name": 5, "content": "x"}]}, "messages[1].name"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [USER], "tools": [1]}, "tools[0]"),
        (
            {"messages": [USER, {"role": "assistant", "tool_calls": ["x"]}]},
            "messages[1].tool_calls[0]",
        ),
    ],
)
def test_schema_errors_name_the_field_as_the_hand_checks_do(body, param):
    err = _parse_error(body)
    assert err.param == param, err.message


@pytest.mark.parametrize(
    "tools, param",
    [
        ([_tool("f"), _tool("f")], "tools[1].function.name"),
        ([_tool("a"), _tool("b"), _tool("a")], "tools[2].function.name"),
        ([_tool('a"b')], "tools[0].function.name"),
        ([_tool("a b\n<tool_call>")], "tools[0].function.name"),
        ([_tool("x" * 65)], "tools[0].function.name"),
        ([_tool("\x00")], "tools[0].function.name"),
    ],
)
def test_tool_names_must_be_unique_and_plain(tools, param):
    err = _parse_error({"messages": [USER], "tools": tools})
    assert err.param == param and err.code == "invalid_value", err.message


def test_plain_tool_names_are_kept():
    req = parse_request(
        ChatCompletionRequest,
        {"model": MODEL, "messages": [USER], "tools": [_tool("read_file"), _tool("x-" + "y" * 62)]},
    )
    assert [t["function"]["name"] for t in req.tools] == ["read_file", "x-" + "y" * 62]


@pytest.mark.parametrize(
    "call, param",
    [
        ({"id": "c1"}, "messages[1].tool_calls[0].function"),
        ({"id": "c1", "type": "function", "function": None}, "messages[1].tool_calls[0].function"),
        (_call(name=5), "messages[1].tool_calls[0].function"),
        (_call(name=""), "messages[1].tool_calls[0].function"),
        (_call(arguments=5), "messages[1].tool_calls[0].function.arguments"),
        ({"id": "c1", "type": "function", "function": {"name": "f"}},
         "messages[1].tool_calls[0].function.arguments"),
        ({**_call(), "id": None}, "messages[1].tool_calls[0].id"),
        ({**_call(), "type": "custom"}, "messages[1].tool_calls[0].type"),
    ],
)  # fmt: skip
def test_malformed_assistant_tool_calls_are_named(call, param):
    msgs = [USER, {"role": "assistant", "content": None, "tool_calls": [call]}]
    err = _parse_error({"messages": msgs})
    assert err.param == param, err.message
    assert "dict object" not in err.message


@pytest.mark.parametrize(
    "msgs, param",
    [
        ([{"role": "tool", "content": "4", "tool_call_id": "c1"}], "messages[0].role"),
        ([USER, {"role": "tool", "content": "4", "tool_call_id": "c1"}], "messages[1].role"),
        (
            [USER, {"role": "assistant", "content": "x"}, {"role": "tool", "content": "4",
                                                           "tool_call_id": "c1"}],
            "messages[2].role",
        ),
        (
            [USER, {"role": "assistant", "tool_calls": [_call("c1")]},
             {"role": "tool", "content": "4", "tool_call_id": "c2"}],
            "messages[2].tool_call_id",
        ),
        (
            [USER, {"role": "assistant", "tool_calls": [_call("c1")]},
             {"role": "tool", "content": "4"}],
            "messages[2].tool_call_id",
        ),
        (
            [USER, {"role": "assistant", "tool_calls": [_call("c1")]},
             {"role": "assistant", "content": "x"},
             {"role": "tool", "content": "4", "tool_call_id": "c1"}],
            "messages[3].role",
        ),
        ([{**USER, "tool_calls": [_call()]}], "messages[0].tool_calls"),
        ([{**USER, "tool_call_id": "c1"}], "messages[0].tool_call_id"),
    ],
)  # fmt: skip
def test_tool_results_must_answer_a_call_before_them(msgs, param):
    err = _parse_error({"messages": msgs})
    assert err.param == param, err.message


def test_tool_results_of_parallel_calls_are_taken():
    msgs = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [_call("c1"), _call("c2", "g")]},
        {"role": "tool", "content": "4", "tool_call_id": "c2"},
        # the harness answers a call it could not parse with a user message, between results
        {"role": "user", "content": "Error: malformed tool call."},
        {"role": "tool", "content": "5", "tool_call_id": "c1"},
        {"role": "assistant", "content": "done", "tool_calls": None},
        USER,
    ]
    req = parse_request(ChatCompletionRequest, {"model": MODEL, "messages": msgs})
    assert len(req.messages) == 7


# ---- a live server ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("s30apiadv")
    ckpts = make_checkpoints(root)
    engines = load_engines({MODEL: ckpts[MODEL]}, max_batch=4, speculative=False)
    state = build_state(
        engines, db=root / "usage.sqlite", keys=[KeySpec(KEY, "alice")], prices={MODEL: PRICE}
    )
    with ServerThread(state) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(
        base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}
    ) as c:
        yield c


def _chat(http, **fields) -> httpx.Response:
    return http.post(CHAT, json={"model": MODEL, "messages": [USER], "max_tokens": 3, **fields})


def _assert_400(r: httpx.Response, param: str) -> dict:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and err["code"] and err["message"], err
    return err


def test_duplicate_tool_names_over_http_name_the_tool(http):
    err = _assert_400(_chat(http, tools=[_tool(), _tool()]), "tools[1].function.name")
    assert "guided_tools" not in err["message"]
    assert _chat(http, messages=[USER], max_tokens=2).status_code == 200


def test_a_strict_schema_too_large_to_guide_names_tools(http):
    """Refused by the engine's own check (`SamplingParams.validate`): was `param: null`."""
    enum = {"type": "object", "properties": {"a": {"enum": list(range(60_000))}}}
    tool = {"type": "function", "function": {"name": "f", "strict": True, "parameters": enum}}
    err = _assert_400(_chat(http, tools=[tool]), "tools")
    assert "too large" in err["message"]


def test_too_many_choices_is_an_invalid_value_of_n(http):
    body = {"model": MODEL, "prompt": ["a"] * 64, "n": 16, "max_tokens": 1}
    _assert_400(http.post("/v1/completions", json=body), "n")


def test_a_tool_round_trip_still_renders(http):
    msgs = [USER, {"role": "assistant", "content": None, "tool_calls": [_call()]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"}]  # fmt: skip
    r = _chat(http, messages=msgs, tools=[_tool()])
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_tokens", "3"), ("max_tokens", True), ("max_tokens", 2**64), ("max_tokens", -1),
        ("temperature", float("nan")), ("temperature", float("inf")), ("temperature", "0.5"),
        ("n", 0), ("n", 17), ("n", 2.0), ("seed", 2**64), ("top_p", float("nan")),
        ("stop", ["a", "b", "c", "d", "e"]), ("stop", [""]), ("stop", [["a"]]),
        ("top_logprobs", 21), ("logprobs", 2), ("stream", "true"),
        ("prediction", {"type": "content", "content": "x" * 2000}), ("prediction", "text"),
        ("suffix", "x"), ("echo", True), ("best_of", 2), ("max_completion_tokens", 0),
        ("response_format", {"type": "json_object"}), ("reasoning_effort", "max"),
    ],
)  # fmt: skip
def test_wrong_values_are_400s_naming_the_field(http, field, value):
    # json.dumps writes NaN and Infinity as Python's JSON writer does (httpx's refuses them)
    body = {"model": MODEL, "messages": [USER], "max_tokens": 3, field: value}
    if field == "top_logprobs":
        body["logprobs"] = True
    r = http.post(
        CHAT, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] and err["param"].split(".")[0].split("[")[0] == field, err


def test_a_seed_with_temperature_repeats_the_answer(http):
    body = {"temperature": 1.0, "seed": 1234, "max_tokens": 16, "ignore_eos": True, "n": 2}
    a = [c["message"]["content"] for c in _chat(http, **body).json()["choices"]]
    b = [c["message"]["content"] for c in _chat(http, **body).json()["choices"]]
    assert a == b and a[0] != a[1]


def test_a_stream_cut_by_the_client_frees_its_slots_and_bills_what_ran(server):
    eng = server.state.models[MODEL].engine
    db = server.state.db
    done_before = eng.stats()["totals"]["completion_tokens"]
    eng.after_step = lambda: time.sleep(0.005)  # slow enough to leave mid-stream
    body = {"model": MODEL, "messages": [USER], "max_tokens": 300, "stream": True,
            "ignore_eos": True, "n": 2, "stream_options": {"include_usage": True}}  # fmt: skip
    try:
        with (
            httpx.Client(
                base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}
            ) as c,
            c.stream("POST", CHAT, json=body) as r,
        ):
            for n, _ in enumerate(r.iter_lines()):
                if n >= 6:
                    break
        assert wait_for(lambda: eng.stats()["running"] == 0 and eng.stats()["queue_depth"] == 0)
        assert wait_for(lambda: db.requests(1)[0]["status"] == "settled")
    finally:
        eng.after_step = None
    row = db.requests(1)[0]
    assert row["http_status"] == 499
    ran = eng.stats()["totals"]["completion_tokens"] - done_before
    assert 0 < row["completion_tokens"] == ran < 600
    assert row["cost_micro"] == PRICE.cost_micro(row["prompt_tokens"], row["completion_tokens"])
    alice = {a["name"]: a for a in db.usage()["accounts"]}["alice"]
    assert alice["held"] == 0
