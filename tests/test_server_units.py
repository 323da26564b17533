"""Server building blocks without a live server: the reasoning/content/tool-call stream parser,
request validation, Prometheus exposition, keys files, token buckets, and the credits database
under concurrent writers (two connections = two server processes)."""

from __future__ import annotations

import json
import threading

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.serve.api import APIError, ChatCompletionRequest, CompletionRequest, parse_request
from hillclimb.serve.auth import (
    Authenticator,
    AuthError,
    TokenBucket,
    load_env_keys,
    load_keys_file,
)
from hillclimb.serve.billing import MICRO, Price, UsageDB, default_price
from hillclimb.serve.engine import TokenEvent
from hillclimb.serve.metrics import Counter, Histogram, ServerMetrics
from hillclimb.serve.serving_chat import ChatChoice, Whitespace
from hillclimb.serve.serving_completion import RawText


def _feed_all(choice: ChatChoice, pieces: list[tuple[str, bool]]) -> list[dict]:
    deltas = []
    for text, reasoning in pieces:
        deltas += choice.feed(text, reasoning)
    return deltas + choice.close()


def test_chat_choice_splits_reasoning_content_and_tool_calls():
    c = ChatChoice(0, parse_tools=True, call_prefix="call_x")
    pieces = [
        ("\nLet me", True),
        (" think.\n", True),
        ("\n\nI will ", False),
        ("read it.\n<tool", False),
        ('_call>\n{"name": "read_file", "argu', False),
        ('ments": {"path": "a.py"}}\n</tool_call>', False),
        ("\n", False),
    ]
    deltas = _feed_all(c, pieces)
    assert c.reasoning == "Let me think."
    assert c.content == "I will read it."
    assert c.tool_calls == [
        {
            "id": "call_x_0",
            "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
        }
    ]
    tc = [d for d in deltas if "tool_calls" in d]
    assert tc and tc[0]["tool_calls"][0]["index"] == 0
    # streamed deltas concatenate to the same strings
    assert "".join(d.get("reasoning_content", "") for d in deltas) == c.reasoning
    assert "".join(d.get("content", "") for d in deltas) == c.content


def test_chat_choice_without_tools_and_malformed_or_unterminated_calls():
    plain = ChatChoice(0, parse_tools=False, call_prefix="c")
    _feed_all(plain, [("a <tool_call>{}</tool_call> b", False)])
    assert plain.content == "a <tool_call>{}</tool_call> b" and not plain.tool_calls
    bad = ChatChoice(0, parse_tools=True, call_prefix="c")
    _feed_all(bad, [("x <tool_call>not json</tool_call>", False)])
    assert not bad.tool_calls and "not json" in bad.content
    cut = ChatChoice(0, parse_tools=True, call_prefix="c")
    _feed_all(cut, [('ok <tool_call>{"name": "f", "argu', False)])
    assert not cut.tool_calls and cut.content.startswith("ok <tool_call>{")


def test_whitespace_strip_streaming_equals_strip():
    for parts in (["  a", " b ", "\n", "c\n\n"], ["\n\n"], ["x"], [" ", "", " y", "  "]):
        w = Whitespace()
        assert "".join(w.feed(p) for p in parts) == "".join(parts).strip()


def test_raw_text_puts_think_tags_back():
    r = RawText(think_start_id=7)
    evs = [
        TokenEvent([7, 1], "plan", True, None, False, None),
        TokenEvent([], "answer", False, None, False, None),
        TokenEvent([2], "!", False, None, True, "stop"),
    ]
    assert "".join(r.feed(e) for e in evs) == "<think>plan</think>answer!"


def test_request_validation():
    ok = parse_request(
        ChatCompletionRequest,
        {
            "model": "m",
            "messages": [{"role": "developer", "content": [{"type": "text", "text": "hi"}]}],
            "max_completion_tokens": 5,
        },
    )
    assert ok.max_tokens == 5
    with pytest.raises(APIError) as ei:
        parse_request(CompletionRequest, {"model": "m", "prompt": "x", "best_of": 3})
    assert ei.value.param == "best_of" and ei.value.status == 400
    with pytest.raises(APIError) as ei:
        parse_request(CompletionRequest, {"model": "m", "prompt": "x", "stream_options": {}})
    assert ei.value.param == "stream_options"
    with pytest.raises(APIError) as ei:
        parse_request(ChatCompletionRequest, {"model": "m", "messages": [{"role": "user"}]})
    assert ei.value.param == "messages[0].content"
    with pytest.raises(APIError) as ei:
        parse_request(
            ChatCompletionRequest,
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 3,
                "max_completion_tokens": 4,
            },
        )
    assert ei.value.param == "max_completion_tokens"
    with pytest.raises(APIError):
        parse_request(
            CompletionRequest,
            {"model": "m", "prompt": "x", "echo": True, "logprobs": 1, "stream": True},
        )
    # echo + logprobs (prompt logprobs, what lm-eval's loglikelihood requests send) is accepted
    parse_request(CompletionRequest, {"model": "m", "prompt": "x", "echo": True, "logprobs": 1})


def test_prometheus_text_format():
    c = Counter("x_total", "help me", ("a",))
    c.inc('q"1', amount=2)
    h = Histogram("lat_seconds", "latency", ("m",), buckets=(0.1, 1.0))
    h.observe("t", value=0.5)
    h.observe("t", value=5)
    text = "\n".join(c.render() + h.render())
    assert 'x_total{a="q\\"1"} 2' in text
    assert 'lat_seconds_bucket{m="t",le="0.1"} 0' in text
    assert 'lat_seconds_bucket{m="t",le="1"} 1' in text
    assert 'lat_seconds_bucket{m="t",le="+Inf"} 2' in text
    assert 'lat_seconds_count{m="t"} 2' in text and 'lat_seconds_sum{m="t"} 5.5' in text
    assert "# TYPE lat_seconds histogram" in text
    m = ServerMetrics()
    m.add_collector(lambda: 1 / 0)  # a broken collector never breaks /metrics
    assert "collector error" in m.render()


def test_keys_files_and_env(tmp_path):
    j = tmp_path / "keys.json"
    j.write_text(
        json.dumps({"sk-aaaaaaaa1": {"name": "alice", "credits": 5, "rate_limit_rpm": 60}})
    )
    t = tmp_path / "keys.toml"
    t.write_text('[keys."sk-bbbbbbbb2"]\nname = "bob"\ncredits = 1.5\n')
    (a,) = load_keys_file(j)
    (b,) = load_keys_file(t)
    assert (a.name, a.credits, a.rate_limit_rpm) == ("alice", 5.0, 60.0)
    assert (b.name, b.credits, b.rate_limit_rpm) == ("bob", 1.5, None)
    assert [s.name for s in load_env_keys("sk-cccccccc3, sk-dddddddd4")] == ["env0", "env1"]
    assert load_env_keys('{"sk-eeeeeeee5": {"name": "eve"}}')[0].name == "eve"
    for bad in (
        '{"short": {}}',
        '{"sk-ffffffff6": {"credits": -1}}',
        '{"sk-ffffffff6": {"colour": 1}}',
    ):
        with pytest.raises(HillclimbError):
            load_env_keys(bad)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(HillclimbError, match="malformed"):
        load_keys_file(tmp_path / "bad.json")

    db = UsageDB(tmp_path / "u.sqlite")
    auth = Authenticator(db, [a, b])
    assert not auth.open_mode
    assert auth.authenticate("Bearer sk-aaaaaaaa1").name == "alice"
    for header in (None, "Basic xyz", "Bearer sk-wrong-key"):
        with pytest.raises(AuthError):
            auth.authenticate(header)
    # reloading the file never refills a balance
    db.reserve("r1", db.account_by_name("alice"), "chat", "thinking", "thinking", 2 * MICRO)
    Authenticator(db, [a, b])
    assert db.account_by_name("alice").credits == 3.0
    assert Authenticator(UsageDB(":memory:")).open_mode


def test_token_bucket():
    b = TokenBucket(rpm=2)
    assert b.take() == 0.0 and b.take() == 0.0
    wait = b.take()
    assert 0 < wait <= 30.0


def test_prices():
    assert default_price(35_000_000_000) == Price(35.0, 140.0)
    assert Price(1e6, 2e6).cost_micro(3, 4) == 11 * MICRO
    assert Price(0.1, 0.1).cost_micro(1, 0) == 1  # rounded up: never free by rounding


def test_credits_concurrent_writers_never_overdraw(tmp_path):
    path = tmp_path / "c.sqlite"
    setup = UsageDB(path)
    setup.create_account("acct", credits=10.0, key="sk-concurrent-1")
    dbs = [UsageDB(path), UsageDB(path)]  # two "processes"
    acc = setup.account_by_name("acct")
    ok, refused = [], []
    lock = threading.Lock()

    def worker(w: int) -> None:
        db = dbs[w % 2]
        for i in range(25):
            rid = f"w{w}-{i}"
            try:
                db.reserve(rid, acc, "chat", "thinking", "thinking", MICRO)  # 1 credit max
            except HillclimbError:
                with lock:
                    refused.append(rid)
                continue
            db.settle(
                rid,
                prompt_tokens=1,
                completion_tokens=1,
                reasoning_tokens=0,
                cost_micro=MICRO // 2,
                finish_reason="stop",
                http_status=200,
            )
            with lock:
                ok.append(rid)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = setup.account_by_name("acct").credits_micro
    assert final >= 0
    assert final == 10 * MICRO - len(ok) * (MICRO // 2)
    assert final < MICRO  # refused only once the balance could not cover a reservation
    assert len(ok) + len(refused) == 200 and len(ok) >= 18
    # a reservation left by a crash is refunded at the next start
    setup.reserve("dead", acc, "chat", "thinking", "thinking", 0)
    setup.add_credits("acct", 1.0)
    setup.reserve("dead2", acc, "chat", "thinking", "thinking", MICRO)
    assert setup.account_by_name("acct").credits_micro == final
    assert setup.release_stale() == 2
    assert setup.account_by_name("acct").credits_micro == final + MICRO
    assert (
        setup.settle(
            "dead2",
            prompt_tokens=1,
            completion_tokens=1,
            reasoning_tokens=0,
            cost_micro=5,
            finish_reason="stop",
            http_status=200,
        )
        == 0
    )


def test_fim_request_reads_the_code_around_the_hole_as_text():
    """An IDE editing a file that itself contains `<|fim_middle|>` / `<|im_end|>` (this
    repository's source does): one hole, at the end; no stop token inside the prompt. A raw
    prompt stays model format (special tokens parsed, as vLLM)."""
    from hillclimb.serve.api import CompletionRequest
    from hillclimb.serve.serving_completion import completion_prompts
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    code = 'MIDDLE = "<|fim_middle|>"; STOP = "<|im_end|>"\n'
    (ids,) = completion_prompts(
        CompletionRequest(model="code-flash", prompt=code, suffix=code), tok
    )
    mid, end = tok.token_id("<|fim_middle|>"), tok.token_id("<|im_end|>")
    assert ids.count(mid) == 1 and ids[-1] == mid and end not in ids
    (raw,) = completion_prompts(CompletionRequest(model="code-flash", prompt=code), tok)
    assert raw.count(mid) == 1 and end in raw
