"""Outside checks, session 24 (openai2): three departures from OpenAI's spec that session 24's
conformance pass left (docs/areas/server.md), on random code-flash-micro engines with the
byte-level tokenizer, served over HTTP:

1. `top_p: 0` was a 400; OpenAI accepts it and keeps only the most likely token;
2. completions `logprobs.top_logprobs` keys collided on byte tokens that are not valid UTF-8 (all
   "\ufffd": `logprobs: 20` gave ~10 keys); chat entries' `token` and `bytes` disagreed. OpenAI
   spells such tokens "bytes:\\xNN";
3. `tool_choice: "none"` rendered the tools, and a model that called anyway left raw
   `<tool_call>` markup in `content`. Now the tool-call tokens are banned for such a request
   (`SamplingParams.banned_token_ids`), on every engine path.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import httpx
import pytest
import torch

from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.sampling import warp_probs
from hillclimb.serve.server import ServerThread, build_state
from hillclimb.tokenizer.io import bytelevel_tokenizer
from hillclimb.tokenizer.specials import TOOL_CALL_END, TOOL_CALL_START

MODEL = "code-flash"
CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
USER = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [{"type": "function", "function": {"name": "get_w", "parameters": {"type": "object"}}}]


def _engine(tool_loving: bool = False, **kw: Any) -> Engine:
    """A random code-flash-micro engine; `tool_loving`: its logits strongly prefer
    `<tool_call>` (one residual dimension is a large constant that the token's output row
    reads three times as strongly as any other's), so it calls a tool at every step."""
    tok = bytelevel_tokenizer()
    model = build_model(get_preset("code-flash-micro"), seed=0)
    if tool_loving:
        with torch.no_grad():
            model.embed_tokens.weight[:, 0] = 30.0
            model.lm_head.weight[:, 0] = 1.0
            model.lm_head.weight[tok.token_id(TOOL_CALL_START), 0] = 3.0
    kw.setdefault("max_batch", 4)
    return Engine(model, tok, device="cpu", name=MODEL, seed=0, **kw)


def _serve(engine: Engine, tmp_path_factory: Any, name: str) -> Any:
    state = build_state({MODEL: engine}, db=tmp_path_factory.mktemp(name) / "u.sqlite")
    with ServerThread(state) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    yield from _serve(_engine(), tmp_path_factory, "s24o2plain")


@pytest.fixture(scope="module")
def tool_http(tmp_path_factory):
    yield from _serve(_engine(tool_loving=True), tmp_path_factory, "s24o2tool")


def _stream(c: httpx.Client, path: str, body: dict) -> list[dict]:
    """The JSON chunks of a streamed answer."""
    out = []
    with c.stream("POST", path, json={**body, "stream": True}) as s:
        assert s.status_code == 200, s.read()
        for line in s.iter_lines():
            if line.startswith("data: {"):
                out.append(json.loads(line[6:]))
    return out


def _text(c: httpx.Client, path: str, body: dict, stream: bool) -> str:
    """The answer's text (completion text or chat content), streamed or not."""
    if not stream:
        r = c.post(path, json=body)
        assert r.status_code == 200, r.text
        ch = r.json()["choices"][0]
        return ch["text"] if path == COMP else ch["message"]["content"] or ""
    pieces = []
    for obj in _stream(c, path, body):
        for ch in obj["choices"]:
            pieces.append(ch["text"] if path == COMP else ch["delta"].get("content") or "")
    return "".join(pieces)


def _body(path: str, **kw: Any) -> dict:
    base = {"model": MODEL, "max_tokens": 8, "ignore_eos": True}
    base.update({"messages": USER} if path == CHAT else {"prompt": "def add(a, b):"})
    return {**base, **kw}


# ---- 1. top_p: 0 -------------------------------------------------------------------------------
@pytest.mark.parametrize("top_p", [0.0, 1e-9])
def test_warp_probs_keeps_only_the_most_likely_token_at_top_p_zero(top_p):
    logits = torch.randn(3, 300, generator=torch.Generator().manual_seed(1))
    probs = warp_probs(logits, SamplingParams(temperature=1.3, top_p=top_p))
    assert torch.isfinite(probs).all()
    want = torch.nn.functional.one_hot(logits.argmax(-1), 300).float()
    assert torch.allclose(probs, want, atol=1e-6)


def test_sampling_params_accept_top_p_zero_but_not_outside_0_1():
    SamplingParams(top_p=0.0).validate()
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(Exception, match="top_p"):
            SamplingParams(top_p=bad).validate()


@pytest.mark.parametrize("path", [COMP, CHAT])
@pytest.mark.parametrize("stream", [False, True])
def test_top_p_zero_is_the_most_likely_token_not_a_400(http, path, stream):
    """OpenAI accepts `top_p: 0`; sampled at a high temperature it is greedy decoding (before:
    400 "top_p must be in (0, 1]")."""
    greedy = _text(http, path, _body(path, temperature=0), stream=False)
    for top_p, seed in ((0, 1), (0, 2), (1e-9, 3)):
        body = _body(path, temperature=1.8, top_p=top_p, seed=seed)
        assert _text(http, path, body, stream) == greedy
    hot = _text(http, path, _body(path, temperature=1.8, seed=1), stream=False)
    assert hot != greedy  # the control: without top_p 0 this temperature samples other text


@pytest.mark.parametrize("path", [COMP, CHAT])
@pytest.mark.parametrize("top_p", [-0.01, 1.01])
def test_top_p_outside_0_1_stays_a_400(http, path, top_p):
    r = http.post(path, json=_body(path, top_p=top_p))
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_p", r.text


# ---- 2. logprob tokens that are not valid UTF-8 ------------------------------------------------
def _unspell(token: str) -> bytes:
    """The bytes an OpenAI logprob token string stands for ("bytes:\\xNN" or plain text)."""
    if not token.startswith("bytes:"):
        return token.encode("utf-8")
    body = token[len("bytes:") :]
    assert re.fullmatch(r"(?:\\x[0-9a-f]{2}|[ -\[\]-~])*", body), token
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), body).encode("latin-1")


@pytest.mark.parametrize("stream", [False, True])
def test_completion_top_logprobs_keep_every_byte_token(http, stream):
    """A byte-level vocabulary has 128 single-byte tokens that are not UTF-8; their texts were
    all U+FFFD, so the `{token: logprob}` dict kept one of them (`logprobs: 20` → ~10 keys)."""
    body = _body(COMP, logprobs=20, temperature=0, max_tokens=4)
    if stream:
        tops = [t for o in _stream(http, COMP, body) for ch in o["choices"]
                if ch.get("logprobs") for t in ch["logprobs"]["top_logprobs"]]  # fmt: skip
    else:
        tops = http.post(COMP, json=body).json()["choices"][0]["logprobs"]["top_logprobs"]
    assert len(tops) == 4
    spelt = [k for top in tops for k in top if k.startswith("bytes:")]
    assert spelt, tops  # the random model does rank byte tokens among its top 20
    for top in tops:
        assert len(top) == 20, list(top)
        assert len({_unspell(k) for k in top}) == 20
        assert list(top.values()) == sorted(top.values(), reverse=True)


def test_echo_tokens_spell_split_characters_as_bytes(http):
    """`tokens` uses the same spelling as the keys: é (two byte tokens) is "bytes:\\xc3",
    "bytes:\\xa9"; offsets still index the echoed text."""
    prompt = "s = 'café'"
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 2, "temperature": 0, "echo": True,
            "logprobs": 3, "token_healing": False}  # fmt: skip
    lp = http.post(COMP, json=body).json()["choices"][0]["logprobs"]
    n = len(prompt.encode())
    assert lp["tokens"][:n] == [*"s = 'caf", "bytes:\\xc3", "bytes:\\xa9", "'"]
    assert b"".join(_unspell(t) for t in lp["tokens"][:n]) == prompt.encode()
    assert lp["text_offset"][:n] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9]


@pytest.mark.parametrize("stream", [False, True])
def test_chat_logprob_tokens_are_distinct_and_match_their_bytes(http, stream):
    body = _body(CHAT, logprobs=True, top_logprobs=20, temperature=0, max_tokens=4)
    if stream:
        content = [e for o in _stream(http, CHAT, body) for ch in o["choices"]
                   if ch.get("logprobs") for e in ch["logprobs"]["content"]]  # fmt: skip
    else:
        content = http.post(CHAT, json=body).json()["choices"][0]["logprobs"]["content"]
    assert len(content) == 4
    entries = [e for c in content for e in [c, *c["top_logprobs"]]]
    assert any(e["token"].startswith("bytes:") for e in entries)
    for e in entries:
        assert _unspell(e["token"]) == bytes(e["bytes"]), e
    for c in content:
        assert len({e["token"] for e in c["top_logprobs"]}) == 20


# ---- 3. tool_choice: "none" --------------------------------------------------------------------
def _chat_body(**kw: Any) -> dict:
    return {"model": MODEL, "messages": USER, "tools": TOOLS, "max_tokens": 12, **kw}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_loving_model_calls_a_tool_with_tool_choice_auto(tool_http, stream):
    """The control: the biased model really answers with a tool call."""
    body = _chat_body(temperature=0, tool_choice="auto")
    if stream:
        chunks = _stream(tool_http, CHAT, body)
        assert chunks[-1]["choices"][0]["finish_reason"] in ("tool_calls", "length")
        text = "".join(ch["delta"].get("content") or "" for o in chunks for ch in o["choices"])
        calls = [ch["delta"].get("tool_calls") for o in chunks for ch in o["choices"]]
        assert TOOL_CALL_START in text or any(calls)
    else:
        r = tool_http.post(CHAT, json={**body, "logprobs": True}).json()["choices"][0]
        assert r["logprobs"]["content"][0]["token"] == TOOL_CALL_START


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 5}])
def test_tool_choice_none_never_emits_tool_call_markup(tool_http, stream, sampling):
    """Before: `<tool_call>` came back as raw markup in `content` (tools were rendered, the
    model called anyway). Now the tool-call tokens are never sampled."""
    body = _chat_body(tool_choice="none", ignore_eos=True, logprobs=True, **sampling)
    if stream:
        chunks = _stream(tool_http, CHAT, body)
        text = "".join(ch["delta"].get("content") or "" for o in chunks for ch in o["choices"])
        tokens = [e["token"] for o in chunks for ch in o["choices"] if ch.get("logprobs")
                  for e in ch["logprobs"]["content"]]  # fmt: skip
        assert not any(ch["delta"].get("tool_calls") for o in chunks for ch in o["choices"])
        finish = [ch["finish_reason"] for o in chunks for ch in o["choices"] if ch["finish_reason"]]
    else:
        r = tool_http.post(CHAT, json=body)
        assert r.status_code == 200, r.text
        ch = r.json()["choices"][0]
        text, finish = ch["message"]["content"], [ch["finish_reason"]]
        tokens = [e["token"] for e in ch["logprobs"]["content"]]
        assert not ch["message"].get("tool_calls")
    assert len(tokens) == 12 and finish == ["length"]
    assert TOOL_CALL_START not in text and TOOL_CALL_END not in text
    assert TOOL_CALL_START not in tokens and TOOL_CALL_END not in tokens


def _ban(**kw: Any) -> SamplingParams:
    tok = bytelevel_tokenizer()
    ban = [tok.token_id(TOOL_CALL_START), tok.token_id(TOOL_CALL_END)]
    base: dict[str, Any] = {"max_tokens": 10, "temperature": 0, "ignore_eos": True}
    return SamplingParams(**{**base, **kw}, banned_token_ids=ban)


def test_banned_tokens_hold_on_every_engine_path_with_greedy_identity():
    """Eager, fast path, a batch with an unbanned neighbour, a draft model that proposes
    `<tool_call>` at every step (batched verification too) and lookup drafts from a prediction
    holding it: the banned token never appears, and greedy output is the same on every path."""
    eng = _engine(tool_loving=True)
    tid = eng.tokenizer.token_id(TOOL_CALL_START)
    sp = _ban(drafter="none")
    plain = eng.generate("x = ", dataclasses.replace(sp, banned_token_ids=None))
    assert plain.token_ids[0] == tid  # the control: unbanned, the model calls
    want = eng.generate("x = ", sp).token_ids
    assert tid not in want and len(want) == 10
    eager = _engine(tool_loving=True, fast_path=False).generate("x = ", sp).token_ids
    assert eager == want
    outs = eng.generate_batch(
        ["x = ", "x = "], [sp, dataclasses.replace(sp, banned_token_ids=None)]
    )
    assert outs[0].token_ids == want and outs[1].token_ids[0] == tid  # no leak between rows
    pred = want[:3] + [tid] + want[3:]
    lk = eng.generate("x = ", dataclasses.replace(sp, drafter="lookup", speculative=True,
                                                   prediction=pred))  # fmt: skip
    assert lk.token_ids == want and lk.spec is not None and lk.spec["drafted"] > 0
    spec = _engine(tool_loving=True, draft=_engine(tool_loving=True))
    msp = dataclasses.replace(sp, drafter="model", speculative=True)
    one = spec.generate("x = ", msp)
    assert one.token_ids == want
    assert one.spec is not None and one.spec["drafted"] > 0 and one.spec["accepted"] == 0
    assert [o.token_ids for o in spec.generate_batch(["x = "] * 2, msp)] == [want, want]
    # lookup drafts of several requests verified in one ragged forward (`_verify_rows`)
    batched = _engine(tool_loving=True, spec_batch="always")
    lsp = dataclasses.replace(sp, drafter="lookup", speculative=True, prediction=pred)
    assert [o.token_ids for o in batched.generate_batch(["x = "] * 3, lsp)] == [want] * 3
    assert batched.stats()["totals"]["verify_steps"] > 0


def test_banned_tokens_hold_when_sampling():
    eng = _engine(tool_loving=True)
    tid = eng.tokenizer.token_id(TOOL_CALL_START)
    for seed in range(4):
        sp = _ban(temperature=1.5, seed=seed)
        out = eng.generate("x = ", sp)
        assert tid not in out.token_ids and out.completion_tokens == 10
    with pytest.raises(Exception, match="banned_token_ids"):
        SamplingParams(banned_token_ids=[-1]).validate()


@pytest.mark.slow
def test_banned_tokens_hold_on_the_compiled_batched_step():
    """The inductor-compiled decode steps (`compile=True`, single-stream and batched): the ban is
    applied to their logits like any other step's, and greedy output equals the eager
    engine's."""
    comp = _engine(tool_loving=True, compile=True, max_batch=2)
    if not comp.compiled:
        pytest.skip(f"no compiler here: {comp.compile_error}")
    sp = _ban(drafter="none")
    want = _engine(tool_loving=True, fast_path=False).generate("x = ", sp).token_ids
    assert comp.generate("x = ", sp).token_ids == want  # the compiled single-stream step
    outs = comp.generate_batch(["x = ", "x = "], sp)
    assert comp.stats()["totals"]["batched_compiled_steps"] > 0
    assert [o.token_ids for o in outs] == [want, want]
