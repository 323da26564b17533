"""Schema-guided tool calls (`serve.tool_grammar`): the automaton accepts exactly the calls the
harness can execute, every token mask keeps a call valid, the engine applies the masks on every
path (fast, eager, batched, speculative) without touching text outside calls, the HTTP server
guides calls (strict tools by their schema), the harness client records guided turns, and the
RL loss scores a guided token over the same allowed set the engine sampled it from.

Session 25's tiny coder wrote `{"name": "read_file", "arguments": {"path": "arguments": ...}}`
(two calls fused) and ended every harness episode `format_error`; these tests fail on the code
before guidance existed (no `tool_grammar`, no `guided_tools`)."""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path

import pytest
import torch

from hillclimb.harness.tools import TOOL_SCHEMAS, ToolBox
from hillclimb.serve.engine import SamplingParams
from hillclimb.serve.tool_grammar import ToolCallGrammar, compile_tools
from hillclimb.tokenizer.specials import TOOL_CALL_END, TOOL_CALL_START
from hillclimb.tokenizer.toolcalls import parse_assistant_text

sys.path.insert(0, str(Path(__file__).parent))
from test_outside_checks_s24_openai2 import _engine, _serve  # noqa: E402

CHAT = "/v1/chat/completions"


def _grammar(tools=TOOL_SCHEMAS) -> ToolCallGrammar:
    return _engine().tool_grammar(tools)


def _complete(g: ToolCallGrammar, text: str) -> bool:
    st = g.feed_bytes(g.initial, text.encode("utf-8"))
    return st is not None and g.accepting(st)


def _valid_call(call) -> bool:
    """What the harness would execute: a known tool and arguments matching its schema."""
    if call.error or call.arguments is None:
        return False
    try:
        ToolBox._validate(call.name, call.arguments)
    except Exception:
        return False
    return True


GOOD = [
    '\n{"name": "read_file", "arguments": {"path": "a.py"}}\n',
    '{"name":"run","arguments":{"command":"python -m pytest -q","timeout":1.5}}',
    '{"name": "read_file", "arguments": {"path": "a.py", "start_line": 3, "end_line": 10}}',
    '{"name": "submit", "arguments": {}}',
    '{"name": "search", "arguments": {"pattern": "x\\"y\\u00e9 ü", "regex": true}}',
    '{"name": "edit", "arguments": {"path": "a.py", "old_str": "a\\n", "new_str": "b\\n"}}',
    '{"name": "list_dir", "arguments": {"depth": 2}}',
]
BAD = [
    # session 25's fused call, verbatim
    '{"name": "read_file", "arguments": {"path": "arguments": "python -m pytest -q"}}',
    '{"name": "read_file", "arguments": {}}',  # a required argument missing
    '{"name": "nope", "arguments": {}}',  # no such tool
    '{"name": "read_file", "arguments": {"path": "a", "start_line": 0}}',  # minimum 1
    '{"name": "read_file", "arguments": {"path": "a", "start_line": -1}}',
    '{"name": "read_file", "arguments": {"path": "a", "path": "b"}}',  # a key twice
    '{"name": "read_file", "arguments": {"path": "a", "colour": "b"}}',  # undeclared key
    '{"name": "search", "arguments": {"pattern": "\\ud800"}}',  # a lone surrogate
    '{"name": "submit", "arguments": {}}}',
    '{"arguments": {}, "name": "submit"}',
    '{"name": "submit", "arguments": {"answer": 3}}',  # wrong type
    '{"name": "run", "arguments": {"command": "a\nb"}}',  # a raw control byte in a string
    '{"name": "read_file", "arguments": {"path": "a", "start_line": 012}}',  # leading zero
    '{"name":      "submit", "arguments": {}}',  # whitespace past the bound
]


def test_the_automaton_accepts_executable_calls_and_refuses_the_rest():
    g = _grammar()
    for text in GOOD:
        assert _complete(g, text), text
        (call,) = parse_assistant_text(f"{TOOL_CALL_START}{text}{TOOL_CALL_END}").tool_calls
        assert _valid_call(call), text
    for text in BAD:
        assert not _complete(g, text), text
    # a half-character: the string must decode without U+FFFD
    assert g.feed_bytes(g.initial, b'{"name": "run", "arguments": {"command": "\xc3"') is None
    assert g.feed_bytes(g.initial, b'{"name": "run", "arguments": {"command": "\xc3\xa9"')


def test_general_schemas_nested_enum_arrays_and_extra_properties():
    tools = [
        {"type": "function", "function": {"name": "plan", "parameters": {
            "type": "object", "additionalProperties": False, "required": ["mode", "steps"],
            "properties": {
                "mode": {"enum": ["fast", "slow", 3]},
                "steps": {"type": "array", "items": {"type": "object", "properties": {
                    "n": {"type": "integer", "minimum": 0}, "ok": {"type": "boolean"}},
                    "required": ["n"], "additionalProperties": False}},
                "note": {"type": ["string", "null"]},  # a union: any JSON value
            }}}},
        {"type": "function", "function": {"name": "free", "parameters": {
            "type": "object", "properties": {"k": {"type": "number"}}}}},  # extra keys allowed
    ]  # fmt: skip
    g = _grammar(tools)
    ok = [
        '{"name": "plan", "arguments": {"mode": "fast", "steps": []}}',
        '{"name": "plan", "arguments": {"mode": 3, "steps": [{"n": 0, "ok": false}, {"n": 12}]}}',
        '{"name": "plan", "arguments": {"mode": "slow", "steps": [], "note": {"a": [1, null]}}}',
        '{"name": "free", "arguments": {"k": -0.5, "other": {"x": "y"}}}',
        '{"name": "free", "arguments": {}}',
    ]
    bad = [
        '{"name": "plan", "arguments": {"mode": "medium", "steps": []}}',
        '{"name": "plan", "arguments": {"mode": "fast", "steps": [{"ok": true}]}}',
        '{"name": "plan", "arguments": {"mode": "fast", "steps": [{"n": -1}]}}',
        '{"name": "plan", "arguments": {"mode": "fast"}}',
        '{"name": "free", "arguments": {"k": "1"}}',
    ]
    for t in ok:
        assert _complete(g, t), t
    for t in bad:
        assert not _complete(g, t), t
    with pytest.raises(ValueError, match="unique"):
        compile_tools(tools + tools)
    with pytest.raises(ValueError, match="function tool"):
        compile_tools([{"type": "function", "function": {"description": "no name"}}])


def test_every_masked_random_walk_is_a_valid_call():
    """Draw uniformly among the allowed tokens from the start of a call until `</tool_call>`:
    whatever the walk, the call parses and the harness would execute it. The masks hold only
    tokens the automaton accepts, and `</tool_call>` exactly in the accepting state."""
    g = _grammar()
    rng = random.Random(0)
    finished = 0
    for _ in range(60):
        st, ids = g.initial, []
        for _step in range(400):
            allowed = torch.nonzero(g.mask(st)).flatten().tolist()
            assert allowed, st
            assert (g.end_id in allowed) == g.accepting(st)
            t = rng.choice(allowed)
            if t == g.end_id:
                break
            ids.append(t)
            st = g.advance(st, t)
            assert st is not None
        else:
            continue
        finished += 1
        body = b"".join(g.token_bytes[t] for t in ids).decode("utf-8")
        (call,) = parse_assistant_text(f"{TOOL_CALL_START}{body}{TOOL_CALL_END}").tool_calls
        assert _valid_call(call), body
    assert finished >= 10


def _calls(eng, out):
    return parse_assistant_text(eng.tokenizer.decode(out.token_ids)).tool_calls


def test_engine_guides_calls_on_every_path_and_leaves_other_text_alone():
    """A random micro model biased to open `<tool_call>`: unguided, its call bodies are
    garbage (the control); guided, every completed call is valid, the same on the eager and fast
    paths, in a batch beside an unguided row, with lookup drafts from a prediction, and
    sampled. A prompt that never opens a call decodes exactly as without guidance."""
    eng = _engine(tool_loving=True)
    base = SamplingParams(max_tokens=120, temperature=0, ignore_eos=True, drafter="none")
    sp = dataclasses.replace(base, guided_tools=TOOL_SCHEMAS)
    raw = _calls(eng, eng.generate("x = ", base))
    assert raw and not any(_valid_call(c) for c in raw)  # the control
    out = eng.generate("x = ", sp)
    done = [c for c in _calls(eng, out) if not (c.error or "").startswith("unterminated")]
    want = out.token_ids
    assert _engine(tool_loving=True, fast_path=False).generate("x = ", sp).token_ids == want
    both = eng.generate_batch(["x = ", "x = "], [sp, base])
    assert both[0].token_ids == want and both[1].token_ids != want  # no leak between rows
    pred = eng.tokenizer.decode(want)
    lk = eng.generate("x = ", dataclasses.replace(sp, drafter="lookup", speculative=True,
                                                   prediction=eng.tokenizer.encode(pred)))  # fmt: skip
    assert lk.token_ids == want
    for seed in range(6):
        s = eng.generate(
            "x = ", dataclasses.replace(sp, temperature=1.0, seed=seed, max_tokens=300)
        )
        done += [c for c in _calls(eng, s) if not (c.error or "").startswith("unterminated")]
    assert len(done) >= 2 and all(_valid_call(c) for c in done)  # calls did complete
    plain = _engine()  # an unbiased model: identical up to (and with) the first `<tool_call>`
    p30 = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    ref = plain.generate("def f(x):", p30).token_ids
    k = ref.index(plain.tokenizer.token_id(TOOL_CALL_START))
    assert k >= 3
    g30 = plain.generate("def f(x):", dataclasses.replace(p30, guided_tools=TOOL_SCHEMAS))
    assert g30.token_ids[: k + 1] == ref[: k + 1] and g30.token_ids != ref
    with pytest.raises(Exception, match="guided_tools"):
        SamplingParams(guided_tools=[{"type": "function", "function": {}}]).validate()


def test_rl_loss_scores_guided_tokens_over_the_allowed_set():
    """The engine's recorded log-prob of each token of a guided completion equals
    `PolicyLoss.token_logp` with the guide table rebuilt from the token ids alone
    (`rl.guided`); scored over the full vocabulary instead (the control) the call's tokens
    come out lower — the importance ratio would start below 1 on every one of them."""
    import numpy as np

    from hillclimb.rl.grpo import PolicyLoss
    from hillclimb.rl.guided import GuideTable, episode_guide, fill_gidx

    eng = _engine(tool_loving=True, fast_path=False)
    sp = SamplingParams(max_tokens=60, temperature=1.0, seed=3, ignore_eos=True,
                        guided_tools=TOOL_SCHEMAS, policy_logprobs=True, drafter="none")  # fmt: skip
    prompt = eng.tokenizer.encode("x = ")
    out = eng.generate(prompt, sp)
    ids = prompt + list(out.token_ids)
    ep = type("Ep", (), {})()
    ep.token_ids, ep.completion_spans, ep.guided_spans = ids, [[len(prompt), len(ids)]], [True]
    table = GuideTable(eng.tool_grammar(TOOL_SCHEMAS))
    guide = episode_guide(ep, table)
    assert len(guide) > 10
    gidx = np.full((1, len(ids)), -1, dtype=np.int64)
    fill_gidx(gidx, 0, guide)
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = eng.model(x[:, :-1])
    loss = PolicyLoss(temperature=1.0, real_vocab=eng.tokenizer.vocab_size)
    loss.guide_table = table.tensor()
    got = loss.token_logp(logits, x, torch.from_numpy(gidx))[0, len(prompt) - 1 :]
    want = torch.tensor(out.policy_logprobs, dtype=torch.float32)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    full = loss.token_logp(logits, x)[0, len(prompt) - 1 :]
    inside = torch.tensor([p - len(prompt) for p, _ in guide])
    assert (full[inside] < want[inside] - 1e-3).any()


@pytest.fixture(scope="module")
def tool_http(tmp_path_factory):
    yield from _serve(_engine(tool_loving=True), tmp_path_factory, "s26grammar")


def test_served_chat_guides_tool_calls(tool_http):
    """Over HTTP: every tool call the biased model returns names an offered tool with JSON
    arguments; a `strict` tool's arguments follow its schema; `strict` must be a boolean."""
    tools = [  # short: the byte-level micro tokenizer renders them in a 512-token context
        {"type": "function", "function": {"name": "w", "strict": True, "parameters": {
            "type": "object", "additionalProperties": False, "required": ["d"],
            "properties": {"d": {"type": "integer", "minimum": 1}}}}},
    ]  # fmt: skip
    c = tool_http
    g = _engine().tool_grammar(tools)
    n_strict = n_open = 0
    for seed in range(6):
        body = {"model": "code-flash", "messages": [{"role": "user", "content": "w"}],
                "tools": tools, "max_tokens": 60, "temperature": 1.0, "seed": seed}  # fmt: skip
        r = c.post(CHAT, json=body)
        assert r.status_code == 200, r.text
        msg = r.json()["choices"][0]["message"]
        for call in msg.get("tool_calls") or []:
            fn = call["function"]
            assert fn["name"] == "w"
            args = json.loads(fn["arguments"])
            assert set(args) == {"d"} and isinstance(args["d"], int) and args["d"] >= 1
            n_strict += 1
        text = msg.get("content") or ""
        assert TOOL_CALL_END not in text
        if TOOL_CALL_START in text:  # a call the token cap cut: still a valid prefix
            body_text = text.split(TOOL_CALL_START, 1)[1]
            assert g.feed_bytes(g.initial, body_text.encode("utf-8")) is not None, body_text
            n_open += 1
    assert n_strict + n_open >= 4
    bad = {**body, "tools": [{**tools[0], "function": {**tools[0]["function"], "strict": "yes"}}]}
    r = c.post(CHAT, json=bad)
    assert r.status_code == 400 and "strict" in r.text


def _long_engine():
    """The tool-loving micro engine with room for the harness's rendered tools."""
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.engine import Engine
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    cfg = dataclasses.replace(get_preset("code-flash-micro"), max_seq_len=4096)
    model = build_model(cfg, seed=0)
    with torch.no_grad():
        model.embed_tokens.weight[:, 0] = 30.0
        model.lm_head.weight[:, 0] = 1.0
        model.lm_head.weight[tok.token_id(TOOL_CALL_START), 0] = 3.0
    return Engine(model, tok, device="cpu", name="code-flash", seed=0, max_batch=2)


def test_local_client_records_guided_turns_for_the_trainer(tmp_path):
    """`LocalClient` guides by default and says so; the episode keeps each turn's completion
    span, so `rl.guided` can rebuild the masks; `guided_tools=False` is the raw model."""
    from hillclimb.harness.clients import LocalClient

    eng = _long_engine()
    tools = TOOL_SCHEMAS
    g = eng.tool_grammar(tools)
    msgs = [{"role": "user", "content": "fix the bug"}]
    r = LocalClient(engine=eng).chat(msgs, tools, max_tokens=100, temperature=0, seed=0)
    body = r.raw["text"].split(TOOL_CALL_START, 1)[1].split(TOOL_CALL_END, 1)[0]
    assert r.guided and g.feed_bytes(g.initial, body.encode("utf-8")) is not None
    raw = LocalClient(engine=eng, guided_tools=False).chat(
        msgs, tools, max_tokens=100, temperature=0, seed=0
    )
    body = raw.raw["text"].split(TOOL_CALL_START, 1)[1].split(TOOL_CALL_END, 1)[0]
    assert not raw.guided and g.feed_bytes(g.initial, body.encode("utf-8")) is None
    from hillclimb.harness.agent import Episode, _record_tokens

    ep = Episode("e", "t", "bugfix", str(tmp_path), "m")
    _record_tokens(ep, r)
    ((a, b),) = ep.completion_spans
    assert ep.token_ids[a:b] == r.completion_ids and ep.guided_spans == [True]


def test_episode_batch_carries_the_guide_and_the_loss_matches_the_rollout(tmp_path):
    """A guided harness turn through `LocalClient` → `Episode` → `rl.harness.episode_batch`
    with a `GuideTable`: every sampled token's recorded log-prob equals `PolicyLoss`'s score of
    it on the batch (the ratio starts at 1), guided tokens included."""
    from hillclimb.harness.agent import Episode, _record_tokens
    from hillclimb.harness.clients import LocalClient
    from hillclimb.rl.grpo import PolicyLoss
    from hillclimb.rl.guided import GuideTable
    from hillclimb.rl.harness import episode_batch

    eng = _long_engine()
    msgs = [{"role": "user", "content": "fix the bug"}]
    r = LocalClient(engine=eng).chat(msgs, TOOL_SCHEMAS, max_tokens=60, temperature=1.0, seed=1)
    ep = Episode("e", "t", "bugfix", str(tmp_path), "m")
    _record_tokens(ep, r)
    guide = GuideTable(eng.tool_grammar(TOOL_SCHEMAS))
    b = episode_batch([{"episodes": [ep], "adv": [1.0]}], 1, 4096, guide)
    assert (b["gidx"] >= 0).sum() > 10
    loss = PolicyLoss(temperature=1.0, real_vocab=eng.tokenizer.vocab_size)
    loss.guide_table = guide.tensor()
    x = torch.from_numpy(b["ids"])
    with torch.no_grad():
        logits = eng.model(x[:, :-1])
    got = loss.token_logp(logits, x, torch.from_numpy(b["gidx"]))
    m = torch.from_numpy(b["mask"][:, 1:]) > 0
    old = torch.from_numpy(b["old_lp"][:, 1:])
    assert m.sum() > 10 and torch.allclose(got[m], old[m], atol=1e-4)


@pytest.fixture(scope="module")
def plain_http(tmp_path_factory):
    yield from _serve(_engine(), tmp_path_factory, "s26required")


def test_required_and_named_tool_choice_force_a_valid_call(plain_http):
    """`tool_choice: "required"` and a named function were a 400 ("only auto and none"). Now
    the answer opens with `<tool_call>` on an unbiased model that would not call by itself, its
    body follows the grammar of the allowed tools (a named choice: that tool only), and bad
    choices are 400s naming `tool_choice`."""
    c = plain_http
    tools = [
        {"type": "function", "function": {"name": "w", "strict": True, "parameters": {
            "type": "object", "additionalProperties": False, "required": ["d"],
            "properties": {"d": {"type": "integer", "minimum": 1}}}}},
        {"type": "function", "function": {"name": "o", "parameters": {"type": "object"}}},
    ]  # fmt: skip
    eng = _engine()
    base = {"model": "code-flash", "messages": [{"role": "user", "content": "w"}],
            "tools": tools, "max_tokens": 24, "temperature": 0, "logprobs": True}  # fmt: skip
    auto = c.post(CHAT, json={**base, "tool_choice": "auto"}).json()["choices"][0]
    assert auto["logprobs"]["content"][0]["token"] != TOOL_CALL_START  # the control
    for choice, allowed in (
        ("required", tools),
        ({"type": "function", "function": {"name": "o"}}, tools[1:]),
    ):
        r = c.post(CHAT, json={**base, "tool_choice": choice})
        assert r.status_code == 200, r.text
        ch = r.json()["choices"][0]
        assert ch["logprobs"]["content"][0]["token"] == TOOL_CALL_START
        g = eng.tool_grammar(allowed)
        text = "".join(e["token"] for e in ch["logprobs"]["content"][1:])
        body = text.split(TOOL_CALL_END, 1)[0]
        assert g.feed_bytes(g.initial, body.encode("utf-8")) is not None, body
        for call in ch["message"].get("tool_calls") or []:
            assert call["function"]["name"] in {t["function"]["name"] for t in allowed}
    no_tools = {k: v for k, v in base.items() if k != "tools"}
    r = c.post(CHAT, json={**no_tools, "tool_choice": "required"})
    assert r.status_code == 400 and "tool_choice" in r.text
    r = c.post(CHAT, json={**base, "tool_choice": {"type": "function", "function": {"name": "x"}}})
    assert r.status_code == 400 and "no function named 'x'" in r.text
    with pytest.raises(Exception, match="require_tool_call needs guided_tools"):
        SamplingParams(require_tool_call=True).validate()


def test_large_enums_and_oversized_schemas():
    """A 20,000-value enum decodes exactly (members accepted, others refused, the longest
    matching member wins); schemas past the size bound are refused with a clear error (an
    unbounded schema would let one request stall the engine building masks)."""
    from hillclimb.serve.tool_grammar import MAX_LITERALS

    vals = [f"value_{i}" for i in range(20_000)]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "required": ["x"], "additionalProperties": False,
        "properties": {"x": {"enum": vals}, "n": {"enum": [1, 12, 123]}}}}}]  # fmt: skip
    g = _grammar(tools)
    assert _complete(g, '{"name": "f", "arguments": {"x": "value_19999"}}')
    assert _complete(g, '{"name": "f", "arguments": {"x": "value_1", "n": 12}}')
    assert not _complete(g, '{"name": "f", "arguments": {"x": "value_20000"}}')
    assert not _complete(g, '{"name": "f", "arguments": {"x": "value_"}}')
    assert not _complete(g, '{"name": "f", "arguments": {"x": "value_1", "n": 124}}')
    st = g.feed_bytes(g.initial, b'{"name": "f", "arguments": {"x": "value_1999')
    allowed = {g.token_bytes[t] for t in torch.nonzero(g.mask(st)).flatten().tolist()}
    assert b'"' in allowed and b"9" in allowed and b"a" not in allowed
    big = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"enum": list(range(MAX_LITERALS + 1))}}}}}]  # fmt: skip
    with pytest.raises(ValueError, match="too large"):
        compile_tools(big)
    with pytest.raises(Exception, match="too large"):
        SamplingParams(guided_tools=big).validate()
