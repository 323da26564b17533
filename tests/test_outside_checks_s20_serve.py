"""Outside checks, session 20 (serve): the speculation and IDE-completion paths under inputs the
authors had not tried — an engine process that dies before it is ready, stop strings long enough
to make hold-back matching quadratic, token healing with `logprobs` (and `echo`), FIM requests to
a model that prefers tool-call tokens, and more (see each test's docstring)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys

import httpx
import pytest
import torch

from hillclimb.errors import HillclimbError
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.detok import StopMatcher
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.host import EngineOptions, EngineProcess, start_engine_process
from hillclimb.serve.server import ServerThread, build_state
from hillclimb.serve.serving import spelt_bytes
from hillclimb.tokenizer.io import bytelevel_tokenizer
from hillclimb.tokenizer.specials import (
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    IM_START,
    TOOL_CALL_END,
    TOOL_CALL_START,
    TOOL_RESPONSE_END,
    TOOL_RESPONSE_START,
    fim_prompt,
)

TOOL_TOKENS = [TOOL_CALL_START, TOOL_CALL_END, TOOL_RESPONSE_START, TOOL_RESPONSE_END]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- 1. the engine process dies before it reports ready ------------------------------------------
class _DieOnLoad:
    """Unpickled in the spawned child, this ends the child at once (as a crash while loading a
    checkpoint would: no "failed" message, the pipe just closes)."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_engine_process_dying_before_ready_is_a_clear_error():
    spec = {"thinking": None, "flash": None, "opts": _DieOnLoad(), "log_level": "WARNING"}
    with pytest.raises(HillclimbError, match="engine process exited while loading.*exit code 3"):
        EngineProcess(spec)


def test_engine_process_bad_log_level_is_a_clear_error(tmp_path):
    """A log level the child's logging refuses failed before the child's error reporting: the
    child died with a traceback and the parent raised a bare EOFError."""
    with pytest.raises(HillclimbError, match="(?i)level"):
        start_engine_process(None, tmp_path, EngineOptions(device="cpu"), log_level="loud")


# ---- 2. stop-string hold-back in linear work -----------------------------------------------------
def _safe_end_reference(stops: list[str], text: str) -> int:
    hold = 0
    for s in (s for s in stops if s):
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return len(text) - hold


def test_stop_matcher_safe_end_matches_brute_force():
    rng = random.Random(0)
    for _ in range(3000):
        alpha = rng.choice(["ab", "abc", "a\n", "aé😀"])
        stops = ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 7)))
                 for _ in range(rng.randint(0, 3))]  # fmt: skip
        m = StopMatcher(stops)
        text = ""
        for _ in range(rng.randint(1, 25)):  # a stream: the text grows, sometimes restarts
            if rng.random() < 0.1:
                text = text[: rng.randint(0, len(text))]
            text += "".join(rng.choice(alpha) for _ in range(rng.randint(0, 3)))
            assert m.safe_end(text) == _safe_end_reference(stops, text), (stops, text)
    # a fresh matcher on an unrelated text, and the same text twice
    m = StopMatcher(["abcab", "zz"])
    assert m.safe_end("xxabca") == 2 and m.safe_end("xxabca") == 2 and m.safe_end("z") == 0


def _count_lines(fn, *args):
    """Python lines executed in `serve/detok.py` while running fn(*args) → (result, lines)."""
    import hillclimb.serve.detok as detok

    target = detok.__file__
    n = 0

    def tracer(frame, event, arg):
        nonlocal n
        if frame.f_code.co_filename != target:
            return None
        if event == "line":
            n += 1
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        out = fn(*args)
    finally:
        sys.settrace(old)
    return out, n


def test_stop_matcher_long_stop_string_bounded_work():
    """A 2000-character stop string (the API sets no length limit) with a stream of near-miss
    characters: the old matcher tried every prefix length of every stop string at every token
    (O(stop length) Python steps per token, each slicing O(stop length) characters); the work
    per streamed character must not grow with the stop string's length."""
    stop = "ab" * 1000
    m = StopMatcher([stop, "xyz"])

    def stream() -> list[int]:
        text, ends = "", []
        for i in range(300):
            text += "ab"[i % 2] if i % 7 else "q"
            ends.append(m.safe_end(text))
        return ends

    ends, lines = _count_lines(stream)
    assert ends[-1] == _safe_end_reference([stop, "xyz"], "".join(
        "ab"[i % 2] if i % 7 else "q" for i in range(300)))  # fmt: skip
    assert lines < 300 * 60, lines  # the old matcher: ≈ 300 × 2000


# ---- 3. token healing + logprobs: the tokens describe the returned text ----------------------------
CODE = (
    "def add(a, b):\n    return a + b\n\n"
    "def total(items):\n    result = 0\n    for item in items:\n        result += item\n"
    "    return result\n"
)


@pytest.fixture(scope="module")
def heal_http(tmp_path_factory):
    from hillclimb.tokenizer.train import train_tokenizer

    tok = train_tokenizer([CODE] * 60, vocab_size=512)
    cfg = dataclasses.replace(get_preset("code-flash-micro"), vocab_size=512)
    eng = Engine(build_model(cfg, seed=0), tok, device="cpu", max_batch=4, name="code-flash",
                 seed=0, token_healing=True)  # fmt: skip
    state = build_state({"code-flash": eng}, db=tmp_path_factory.mktemp("s20heal") / "u.sqlite")
    with ServerThread(state) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


def _plain(tokens: list[str]) -> list[str]:
    """The tokens' texts: a token that is not UTF-8 is spelt "bytes:\\xNN" (OpenAI's
    convention, session 24); its text is its bytes decoded alone (U+FFFD)."""
    return [spelt_bytes(t).decode("utf-8", errors="replace") for t in tokens]


def _check_lp(text: str, lp: dict, start: int = 0) -> None:
    assert "".join(_plain(lp["tokens"])) == text[start:] if start == 0 else True
    pos = start
    for t, off in zip(_plain(lp["tokens"]), lp["text_offset"], strict=True):
        assert off == pos and text[off : off + len(t)] == t
        pos += len(t)
    assert pos == len(text)


@pytest.mark.parametrize("prompt", ["def total(items):\n", "def total(items):\n    res",
                                    "def add(a, b):\n    return a + "])  # fmt: skip
def test_healing_logprobs_describe_only_the_continuation(heal_http, prompt):
    body = {"model": "code-flash", "prompt": prompt, "max_tokens": 6, "temperature": 0,
            "ignore_eos": True, "logprobs": 2}  # fmt: skip
    r = heal_http.post("/v1/completions", json=body).json()
    ch = r["choices"][0]
    assert r["usage"]["prompt_tokens"] < len(prompt)  # healing did back up the prompt
    assert "".join(_plain(ch["logprobs"]["tokens"])) == ch["text"]
    _check_lp(ch["text"], ch["logprobs"])
    # streamed: the chunks' tokens and offsets describe the streamed text the same way
    tokens, offsets, text = [], [], ""
    with heal_http.stream("POST", "/v1/completions", json={**body, "stream": True}) as s:
        for line in s.iter_lines():
            if line.startswith("data: {"):
                obj = json.loads(line[6:])
                for c in obj["choices"]:
                    text += c["text"]
                    if c.get("logprobs"):
                        tokens += c["logprobs"]["tokens"]
                        offsets += c["logprobs"]["text_offset"]
    assert text == ch["text"] and "".join(_plain(tokens)) == text
    _check_lp(text, {"tokens": tokens, "text_offset": offsets})
    # echo: the prompt once, then the continuation; offsets run over the whole text
    e = heal_http.post("/v1/completions", json={**body, "echo": True}).json()["choices"][0]
    assert e["text"] == prompt + ch["text"]
    assert "".join(_plain(e["logprobs"]["tokens"])) == e["text"]
    _check_lp(e["text"], e["logprobs"])


def _stream_lp(http, body: dict) -> tuple[str, list[str], list[int]]:
    tokens, offsets, text = [], [], ""
    with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as s:
        for line in s.iter_lines():
            if line.startswith("data: {"):
                for c in json.loads(line[6:])["choices"]:
                    text += c["text"]
                    if c.get("logprobs"):
                        tokens += c["logprobs"]["tokens"]
                        offsets += c["logprobs"]["text_offset"]
    return text, tokens, offsets


@pytest.mark.parametrize("stop", [None, ["zz", "q\n"]])
def test_streamed_logprob_offsets_when_text_is_held_back(heal_http, stop):
    """Healing off: a step whose text is held back (half a UTF-8 character — the random model
    emits many — or a possible stop string) still sends its tokens; their offsets were counted
    from the text sent so far, so the next chunk's offsets restarted inside earlier tokens."""
    body = {"model": "code-flash", "prompt": "x = [1, 2", "max_tokens": 24, "temperature": 0,
            "ignore_eos": True, "logprobs": 1, "token_healing": False, "stop": stop}  # fmt: skip
    plain = heal_http.post("/v1/completions", json=body).json()["choices"][0]
    text, tokens, offsets = _stream_lp(heal_http, body)
    assert text == plain["text"]
    assert offsets == plain["logprobs"]["text_offset"]
    assert tokens == plain["logprobs"]["tokens"]
    pos = 0
    for t, off in zip(_plain(tokens), offsets, strict=True):
        assert off == pos
        pos += len(t)


# ---- 4. FIM never answers with tool-call markup ----------------------------------------------------
def _tool_loving_engine(tokens: list[str] = TOOL_TOKENS, **kw) -> Engine:
    """A code-flash micro model whose logits strongly prefer the tool-call special tokens: one
    residual dimension is a large constant for every token, and the tool tokens' output rows
    read it three times as strongly as any other token's."""
    tok = bytelevel_tokenizer()
    model = build_model(get_preset("code-flash-micro"), seed=0)
    with torch.no_grad():
        model.embed_tokens.weight[:, 0] = 30.0
        model.lm_head.weight[:, 0] = 1.0
        for t in tokens:
            model.lm_head.weight[tok.token_id(t), 0] = 3.0
    return Engine(model, tok, device="cpu", max_batch=4, name="code-flash", seed=0, **kw)


@pytest.fixture(scope="module")
def tool_engine():
    return _tool_loving_engine(drafter="lookup")


def test_tool_loving_model_does_call_tools_outside_fim(tool_engine):
    """The control: the biased model really answers a plain prompt with tool-call tokens."""
    tok = tool_engine.tokenizer
    out = tool_engine.generate("def f(x):", SamplingParams(max_tokens=4, temperature=0))
    assert out.token_ids[0] in {tok.token_id(t) for t in TOOL_TOKENS}


@pytest.mark.parametrize("how", ["greedy", "sampled", "prediction", "token ids"])
def test_fim_never_emits_tool_call_tokens(tool_engine, how):
    tok = tool_engine.tokenizer
    banned = {tok.token_id(t) for t in TOOL_TOKENS}
    prompt: str | list[int] = fim_prompt("def f(x):\n    ", "\n    return y\n")
    sp = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    if how == "sampled":
        sp = dataclasses.replace(sp, temperature=1.5, seed=3)
    elif how == "prediction":  # lookup drafts verified against the constrained distribution:
        # the plain answer with a tool-call token spliced in, drafted from the prediction
        plain = tool_engine.generate(prompt, dataclasses.replace(sp, drafter="none")).token_ids
        pred = plain[:3] + [tok.token_id(TOOL_CALL_START)] + plain[3:]
        sp = dataclasses.replace(sp, prediction=pred, speculative=True, drafter="lookup")
    elif how == "token ids":
        prompt = tok.encode_fim("def f(x):\n    ", "\n    return y\n")
    out = tool_engine.generate(prompt, sp)
    if how == "prediction":
        assert out.spec is not None and out.spec["drafted"] > out.spec["accepted"] > 0
        assert out.token_ids == plain
    assert out.completion_tokens == 12 and not banned & set(out.token_ids), out.token_ids
    assert not any(t in out.text for t in TOOL_TOKENS)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_fim_ban_rejects_a_draft_models_tool_tokens(temperature):
    """The draft model (no ban of its own, the same tool-loving weights) proposes tool tokens at
    every step; verification against the constrained distribution rejects every one."""
    eng = _tool_loving_engine(draft=_tool_loving_engine())
    banned = {eng.tokenizer.token_id(t) for t in TOOL_TOKENS}
    sp = SamplingParams(max_tokens=10, temperature=temperature, seed=1, ignore_eos=True,
                        speculative=True, drafter="model")  # fmt: skip
    out = eng.generate(fim_prompt("x = ", "\n"), sp)
    assert out.spec is not None and out.spec["drafted"] > 0 and out.spec["accepted"] == 0
    assert out.completion_tokens == 10 and not banned & set(out.token_ids)
    plain = eng.generate("x = ", sp)  # the control: unconstrained, the drafts are accepted
    assert plain.spec is not None and plain.spec["accepted"] > 0


@pytest.mark.parametrize("markup", [FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, IM_START])
def test_fim_never_emits_other_markup(markup):
    """A middle holding a FIM marker or a chat-turn start is never code either (a random micro
    model answered the prompt `<|fim_middle|>` with `<|fim_prefix|>`)."""
    eng = _tool_loving_engine(tokens=[markup])
    tid = eng.tokenizer.token_id(markup)
    sp = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    assert eng.generate("x = ", sp).token_ids[0] == tid  # the control
    for prompt in (fim_prompt("x = ", "\n"), FIM_MIDDLE):
        out = eng.generate(prompt, sp)
        assert tid not in out.token_ids and markup not in out.text


def test_fim_ban_holds_in_a_batch_and_over_http(tool_engine, tmp_path):
    tok = tool_engine.tokenizer
    banned = {tok.token_id(t) for t in TOOL_TOKENS}
    sp = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    outs = tool_engine.generate_batch(
        [fim_prompt("a = ", "\n"), "plain", fim_prompt("b = ", "")], sp
    )
    assert not banned & set(outs[0].token_ids) and not banned & set(outs[2].token_ids)
    assert outs[1].token_ids[0] in banned  # a neighbour's ban does not leak into other rows
    eng = _tool_loving_engine()
    state = build_state({"code-flash": eng}, db=tmp_path / "u.sqlite")
    with ServerThread(state) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        r = c.post("/v1/completions", json={
            "model": "code-flash", "prompt": "def f(x):\n    ", "suffix": "\n    return y\n",
            "max_tokens": 8, "temperature": 0, "ignore_eos": True, "logprobs": 1})  # fmt: skip
    assert r.status_code == 200
    ch = r.json()["choices"][0]
    assert not any(t in ch["text"] for t in TOOL_TOKENS)
    assert not any(t in TOOL_TOKENS for t in ch["logprobs"]["tokens"])


# ---- 5. the router's weights file and training examples ---------------------------------------------
@pytest.mark.parametrize(
    "doc",
    [
        {"weights": {"nll": "x"}},
        {"weights": {"nll": None}},
        {"weights": [1, 2]},
        {"weights": {"nll": float("nan")}},
        {"weights": {"bias": float("inf")}},
        {"threshold": None},
        {"threshold": "abc"},
        {"threshold": float("nan")},
    ],
)
def test_router_file_with_bad_numbers_is_a_clear_error(tmp_path, doc):
    """`serve --router FILE`: a non-number was a bare ValueError/TypeError; NaN or ±inf loaded
    and made every difficulty score NaN (so `auto` silently sent everything to code-flash)."""
    from hillclimb.serve.router import Router

    p = tmp_path / "router.json"
    p.write_text(json.dumps({"format": "hillclimb-router-v1", **doc}))
    with pytest.raises(HillclimbError, match="router"):
        Router.load(p, None)


@pytest.mark.parametrize("bad", [float("nan"), float("-inf"), "0.5", None])
def test_router_fit_refuses_bad_features_and_keeps_its_weights(bad):
    from hillclimb.serve.router import DEFAULT_WEIGHTS, FEATURES, Router

    r = Router(None)
    f = dict.fromkeys(FEATURES, 0.5)
    with pytest.raises(HillclimbError, match="nll"):
        r.fit([({**f, "nll": bad}, True), (f, False)], steps=5)
    assert r.weights == DEFAULT_WEIGHTS
    # numpy numbers are numbers: a fit on float32 features works and stays finite
    import numpy as np

    g = {k: np.float32(0.25) for k in FEATURES}
    out = r.fit([(g, True), (f, False)], steps=5)
    assert all(np.isfinite(v) for v in r.weights.values()) and out["n"] == 2


# ---- 6. keys files: a rate limit of NaN is not "no limit" ---------------------------------------------
@pytest.mark.parametrize("field", ["rate_limit_rpm", "credits"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_keys_file_non_finite_numbers_are_refused(tmp_path, field, value):
    """TOML has `nan` and `inf`: `rate_limit_rpm = nan` passed the `>= 0` check and was stored
    as NULL, so the key silently had no rate limit at all."""
    from hillclimb.serve.auth import load_keys_file

    p = tmp_path / "keys.toml"
    p.write_text(f'[keys.sk-abcdefgh12]\nname = "a"\n{field} = {value}\n')
    with pytest.raises(HillclimbError, match=f"{field} must be a finite number"):
        load_keys_file(p)


# ---- 7. a checkpoint's thinking profile with an infinite p90 ------------------------------------------
@pytest.mark.parametrize("p90", ["Infinity", "1e999", "1" + "0" * 400, "true"])
def test_effort_with_a_malformed_thinking_profile_is_ignored(tmp_path, p90):
    """`hillclimb.json` is read with Python's json, which takes `Infinity`; the profile was
    accepted and every `reasoning_effort` low/medium request then failed with OverflowError
    (math.ceil of inf). A malformed profile is ignored, as its docstring says."""
    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.serve.budget import checkpoint_profile

    d = tmp_path / "thinking"
    save_checkpoint(build_model(get_preset("thinking-micro"), seed=0), d)
    info = json.loads((d / "hillclimb.json").read_text())
    text = json.dumps({**info, "thinking_profile": {"p50": 3, "p90": 12345}})
    (d / "hillclimb.json").write_text(text.replace("12345", p90))
    eng = Engine.from_checkpoint(d, device="cpu", max_batch=1)
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
    out = eng.generate(prompt, SamplingParams(max_tokens=4, reasoning_effort="low"))
    assert out.finish_reason in ("length", "stop") and out.error is None
    assert checkpoint_profile(d) is None


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_prices_file_non_finite_numbers_are_refused(tmp_path, value):
    """`prompt = nan` passed the `>= 0` check; every request then failed while billing
    (math.ceil of NaN) instead of the server refusing the file at start-up."""
    from hillclimb.serve.billing import Price
    from hillclimb.serve.state import load_prices

    p = tmp_path / "prices.toml"
    p.write_text(f"[code-flash]\nprompt = {value}\ncompletion = 1.0\n")
    with pytest.raises(HillclimbError, match="finite"):
        load_prices(p)
    p.write_text("[code-flash]\nprompt = 0.5\ncompletion = 2\n")
    assert load_prices(p) == {"code-flash": Price(0.5, 2.0)}


# ---- 8. account balances and rate limits from the keys CLI ----------------------------------------------
def _keys_cli(*argv: str) -> tuple[int, str]:
    import subprocess

    p = subprocess.run([sys.executable, "-m", "hillclimb", "keys", *argv],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    return p.returncode, p.stdout + p.stderr


def test_keys_cli_huge_credits_and_nan_rate_limit(tmp_path):
    """`keys create --credits 1e13` was an OverflowError traceback (micro-credits past SQLite's
    64-bit INTEGER); `--rpm nan` created an account with no rate limit at all; `keys credit`
    past the limit turned the balance into a float."""
    from hillclimb.serve.billing import UsageDB

    db = str(tmp_path / "u.sqlite")
    rc, out = _keys_cli("create", "--db", db, "--name", "big", "--credits", "1e13")
    assert rc != 0 and "Traceback" not in out and "at most" in out, out
    rc, out = _keys_cli("create", "--db", db, "--name", "nan", "--rpm", "nan")
    assert rc != 0 and "Traceback" not in out and "rate_limit_rpm" in out, out
    rc, out = _keys_cli("create", "--db", db, "--name", "ok", "--credits", "9e11")
    assert rc == 0, out
    rc, out = _keys_cli("credit", "--db", db, "--name", "ok", "--add", "9e11")
    assert rc != 0 and "Traceback" not in out and "largest balance" in out, out
    acc = UsageDB(db).account_by_name("ok")
    assert isinstance(acc.credits_micro, int) and acc.credits == 9e11
    with pytest.raises(HillclimbError, match="no account"):
        UsageDB(db).account_by_name("nan")
