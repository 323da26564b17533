"""Outside checks, session 24 (OpenAI conformance of `/v1/chat/completions` and
`/v1/completions`), written against OpenAI's spec and the official `openai` client, on a live
server over a random-weight code-flash-micro checkpoint (open mode):

- nullable parameters: OpenAI's spec marks `n`, `stream`, `logprobs`, `echo`, ... nullable and
  the client sends `"n": null` for `n=None`; a 400 "Input should be a valid integer" was wrong;
- an assistant message sent back as history the way the client hands it out
  (`message.model_dump()`: `refusal`, `annotations`, `audio`, `function_call` all null) was a
  400 "Unrecognized field in messages[1]: refusal";
- `parallel_tool_calls: false` was accepted and ignored: an answer with two tool calls came back
  with both.
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import openai
import pytest

from _server_util import load_engines, make_checkpoints
from hillclimb.serve.api import ChatCompletionRequest, parse_request
from hillclimb.serve.server import ServerThread, build_state
from hillclimb.tokenizer.specials import TOOL_CALL_END, TOOL_CALL_START

MODEL = "code-flash"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("s24openai")
    ckpts = make_checkpoints(root)
    engines = load_engines({MODEL: ckpts[MODEL]}, max_batch=4, speculative=False)
    state = build_state(engines, db=root / "usage.sqlite", checkpoints={MODEL: ckpts[MODEL]})
    with ServerThread(state) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


# ---- 1. null means the default ---------------------------------------------------------------
def test_the_official_client_may_pass_none_for_nullable_parameters(client):
    """`create(n=None, stream=None, logprobs=None)` sends those keys as JSON null; OpenAI takes
    null as the default. Before: 400 on `n` ("Input should be a valid integer")."""
    r = client.chat.completions.create(
        model=MODEL, messages=USER, max_tokens=3, n=None, stream=None, logprobs=None, seed=1
    )
    assert len(r.choices) == 1 and r.choices[0].logprobs is None
    assert r.usage.completion_tokens == 3
    c = client.completions.create(model=MODEL, prompt="ab", max_tokens=2, echo=None, n=None)
    assert len(c.choices) == 1 and not c.choices[0].text.startswith("ab")


@pytest.mark.parametrize(
    "path, extra",
    [
        ("/v1/chat/completions", {"n": None}),
        ("/v1/chat/completions", {"stream": None}),
        ("/v1/chat/completions", {"logprobs": None}),
        ("/v1/chat/completions", {"continue_final_message": None}),
        ("/v1/chat/completions", {"ignore_eos": None}),
        ("/v1/completions", {"echo": None}),
        ("/v1/completions", {"stream": True, "stream_options": {"include_usage": None}}),
    ],
)
def test_null_is_the_default_not_a_400(http, path, extra):
    body = {"model": MODEL, "max_tokens": 2, **extra}
    body.update({"messages": USER} if "chat" in path else {"prompt": "ab"})
    r = http.post(path, json=body)
    assert r.status_code == 200, r.text


def test_a_null_required_field_is_still_refused(http):
    """Only fields with a default take null: `messages: null` is still a 400 naming it."""
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": None})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


# ---- 2. assistant messages as the client returns them ----------------------------------------
def test_an_answer_dumped_by_the_client_is_accepted_as_history(client):
    """A chat loop that keeps `message.model_dump()` (LangChain, JSON history files) sends back
    `refusal`, `annotations`, `audio`, `function_call` and `tool_calls` as null."""
    first = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=3)
    dumped = first.choices[0].message.model_dump()
    assert "refusal" in dumped  # what the client really hands out
    history = USER + [dumped, {"role": "user", "content": "more"}]
    r = client.chat.completions.create(model=MODEL, messages=history, max_tokens=2)
    assert r.choices[0].finish_reason in ("length", "stop")


def _prompt_tokens(http, assistant: dict) -> int:
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", **assistant}, USER[0]]
    r = http.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 1, "messages": msgs})
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens"]


def test_an_assistant_refusal_is_what_it_said(http):
    """A refusal (the field, or a `refusal` content part) stays in the history as the
    assistant's text rather than vanishing: the same prompt as that text as content."""
    said = _prompt_tokens(http, {"content": "I can't help with that"})
    assert _prompt_tokens(http, {"content": None, "refusal": "I can't help with that"}) == said
    part = {"type": "refusal", "refusal": "I can't help with that"}
    assert _prompt_tokens(http, {"content": [part]}) == said
    assert _prompt_tokens(http, {"content": ""}) < said


@pytest.mark.parametrize(
    "msgs, param",
    [
        ([{"role": "user", "content": "a", "refusal": "x"}], "messages[0].refusal"),
        (
            [USER[0], {"role": "assistant", "audio": {"id": "audio_1"}}, USER[0]],
            "messages[1].audio",
        ),
        (
            [USER[0], {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}],
            "messages[1].function_call",
        ),
        ([{"role": "user", "content": [{"type": "refusal", "refusal": "x"}]}], None),
    ],
)
def test_assistant_only_fields_that_would_change_the_history_are_refused(http, msgs, param):
    """Real audio or a legacy function call cannot be rendered: a 400 naming it, not a drop."""
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": msgs})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == (param or "messages[0].content[0].type")


# ---- 3. parallel_tool_calls: false ---------------------------------------------------------------
TOOLS = [{"type": "function", "function": {"name": "get_w", "parameters": {"type": "object"}}}]


def _call(city: str) -> str:
    return f'{TOOL_CALL_START}{{"name": "get_w", "arguments": {{"c": "{city}"}}}}{TOOL_CALL_END}'


def _answer(parallel: bool | None, engine_reason: str) -> tuple[list[dict], str, str]:
    """Tool calls, content and finish reason of one choice fed a two-call answer in pieces."""
    from hillclimb.serve.serving_chat import _choices

    body = {"model": MODEL, "messages": USER, "tools": TOOLS, "parallel_tool_calls": parallel}
    req = parse_request(ChatCompletionRequest, body)
    job = SimpleNamespace(request_id="chatcmpl-0123456789abcdef", handles=[object()])
    (choice,) = _choices(job, req)
    text = _call("Paris") + "\n" + _call("Rome") + " and some words"
    for k in range(0, len(text), 7):  # streamed in pieces that split the tags
        choice.feed(text[k : k + 7], is_reasoning=False)
    choice.close()
    return choice.tool_calls, choice.content, choice.finish_reason(engine_reason)


@pytest.mark.parametrize("engine_reason", ["stop", "length"])
def test_parallel_tool_calls_false_gives_at_most_one_call(engine_reason):
    """OpenAI: with `parallel_tool_calls: false` the model calls at most one tool. Before: both
    calls came back (a client that runs one call at a time ran two)."""
    calls, content, finish = _answer(False, engine_reason)
    assert [c["function"]["name"] for c in calls] == ["get_w"]
    assert '"Paris"' in calls[0]["function"]["arguments"]
    assert "Rome" not in content and finish == "tool_calls"


@pytest.mark.parametrize("parallel", [True, None])
def test_parallel_tool_calls_default_keeps_every_call(parallel):
    calls, content, finish = _answer(parallel, "stop")
    assert len(calls) == 2 and "some words" in content and finish == "tool_calls"
    assert _answer(parallel, "length")[2] == "length"  # cut by max_tokens: not a finished call
