"""Outside checks, session 22 (serve, second pass): a new user's walkthrough of `auto` with IDE
fill-in-the-middle, predicted outputs' usage, a cold compiled start and `hillclimb chat --url`
against a server with keys; then the IDE paths of `/v1/completions` (suffix / FIM, token healing
at every kind of prompt boundary, echo, stop, logprobs, batches, the thinking model) — against
random-weight micro checkpoints (see each test's docstring)."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest

from _server_util import load_engines, make_checkpoints
from hillclimb.serve.router import Router
from hillclimb.serve.server import ServerThread, build_state

COMP = "/v1/completions"
PREFIX, SUFFIX = "def area(w, h):\n    ", "\n    return w * h + 1 - 2 / 3\n"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("s22serve2"))


@pytest.fixture(scope="module")
def engines(ckpts):
    return load_engines(ckpts, max_batch=4, speculative=True)


@pytest.fixture(scope="module")
def server(engines, tmp_path_factory):
    """Both micro models and the default Router, as `hillclimb serve --thinking --flash` has."""
    db = tmp_path_factory.mktemp("s22serve2db") / "usage.sqlite"
    state = build_state(engines, db=db, router=Router(engines["code-flash"]), owns_engines=False)
    with ServerThread(state) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _sse(http: httpx.Client, path: str, body: dict) -> list[dict]:
    with http.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(ln[6:]) for ln in lines[:-1]]


# ---- 1. fill-in-the-middle to `auto` ----------------------------------------------------------
FIM_BODIES = {
    "suffix": {"prompt": PREFIX, "suffix": SUFFIX},
    "raw": {"prompt": f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"},
    "batch": {"prompt": ["x = 1\n", PREFIX], "suffix": SUFFIX},
}


@pytest.mark.parametrize("how", sorted(FIM_BODIES))
def test_auto_sends_fill_in_the_middle_to_code_flash(http, how):
    """`model: "auto"` with a `suffix` (or a raw `<|fim_prefix|>…<|fim_middle|>` prompt) went to
    thinking with reason `math=0.86`: the router decoded the FIM marker tokens and counted their
    `<`, `>` and `|` as math. FIM is code-flash's job (thinking answers it with a think block);
    now it goes there and the reason says why."""
    body = {"model": "auto", "max_tokens": 3, "temperature": 0, **FIM_BODIES[how]}
    r = http.post(COMP, json=body)
    assert r.status_code == 200, r.text
    hc = r.json()["hillclimb"]
    assert hc["routed_to"] == "code-flash" and r.headers["x-hillclimb-routed-to"] == "code-flash"
    assert "fill-in-the-middle" in hc["reason"]
    # streamed alike
    last = _sse(http, COMP, {**body, "stream_options": {"include_usage": True}})[-1]
    assert last["hillclimb"]["routed_to"] == "code-flash"


def test_router_text_features_never_see_special_token_markup(engines):
    """A raw prompt in chat markup (`<|im_start|>user\\n…<|im_end|>`) scored `math` from the
    markers' own `<`, `|`, `>`: the features describe the user's text, not the template."""
    tok = engines["code-flash"].tokenizer
    router = Router(engines["code-flash"])
    plain = router.features(tok.encode("hello there, say something nice"))
    marked = router.features(
        tok.encode("<|im_start|>user\nhello there, say something nice<|im_end|>\n")
    )
    assert plain["math"] == 0.0 and marked["math"] == 0.0


def test_auto_without_fim_is_still_scored(http):
    """An ordinary completion to `auto` still goes through the router's score."""
    r = http.post(COMP, json={"model": "auto", "prompt": "x = 1\n", "max_tokens": 2}).json()
    assert "difficulty" in r["hillclimb"]["reason"]


# ---- 2. predicted outputs in usage -----------------------------------------------------------
def _details(usage: dict) -> tuple[int, int]:
    d = usage["completion_tokens_details"]
    return d["accepted_prediction_tokens"], d["rejected_prediction_tokens"]


@pytest.mark.parametrize("path", [COMP, "/v1/chat/completions"])
def test_prediction_token_counts_are_in_usage(http, path):
    """With `prediction`, `usage.completion_tokens_details.accepted_prediction_tokens` and
    `rejected_prediction_tokens` were missing (OpenAI's Predicted Outputs fill them; the counts
    were only in `hillclimb.speculative`). Now: accepted = prediction tokens the model verified
    and kept (they are in the completion), rejected = prediction tokens it verified and
    discarded; 0 and 0 without a prediction, and the same numbers streamed."""
    if path == COMP:  # the random micro model continues this prompt with "MMMMMMZ>" + bytes
        base = {"model": "code-flash", "prompt": "def f(x):\n    return M", "token_healing": False}
    else:
        base = {"model": "code-flash", "messages": [{"role": "user", "content": "hi"}]}
    base.update(max_tokens=12, temperature=0, ignore_eos=True)
    plain = http.post(path, json=base).json()
    assert _details(plain["usage"]) == (0, 0)
    ch = plain["choices"][0]
    # its own greedy text, up to the first byte that is not whole UTF-8 (no text can carry it)
    own = (ch["text"] if path == COMP else ch["message"]["content"]).split("\ufffd")[0]
    # a wrong guess that starts like the answer (so it is drafted), and the answer itself
    cases = [(own[:2] + "zzzz qqqq " * 8, False)] + ([(own, True)] if path == COMP else [])
    assert path != COMP or len(own) >= 4
    for prediction, want_accepted in cases:
        body = {**base, "prediction": {"type": "content", "content": prediction}}
        r = http.post(path, json=body).json()
        acc, rej = _details(r["usage"])
        spec = r["hillclimb"]["speculative"]
        assert 0 <= acc <= r["usage"]["completion_tokens"]
        assert acc + rej <= spec["drafted"] and acc <= spec["accepted"]
        if want_accepted:
            assert acc >= 4 and acc > rej, (acc, rej, spec)
        elif path == COMP:  # the model did look at the wrong guess, and threw most of it away
            assert rej > acc, (acc, rej, spec)
        usage = _sse(http, path, {**body, "stream_options": {"include_usage": True}})[-1]["usage"]
        assert _details(usage) == (acc, rej)


# ---- 3. a cold compiled start says it is alive -------------------------------------------------
@pytest.mark.slow
def test_compiled_start_logs_a_line_per_graph(ckpts, caplog):
    """`hillclimb serve` on CPU logged "compiling … ≈10–15 s each" and then nothing for minutes
    on a loaded machine. Now each compiled graph is one line: the model, which graph, seconds."""
    from hillclimb.serve.engine import Engine

    with caplog.at_level(logging.INFO, logger="hillclimb.serve"):
        eng = Engine.from_checkpoint(
            ckpts["code-flash"], device="cpu", max_batch=2, name="code-flash", compile=True
        )
    assert eng.compiled and eng.compiled_batch, eng.compile_error
    lines = [r.getMessage() for r in caplog.records if "compiled the" in r.getMessage()]
    assert len(lines) == 3, lines
    assert all(ln.startswith("code-flash: compiled the ") and " s (" in ln for ln in lines)
    assert [ln.rsplit("(", 1)[1] for ln in lines] == ["1 of 3)", "2 of 3)", "3 of 3)"]
    assert any("batched" in ln for ln in lines) and any("single-stream" in ln for ln in lines)


# ---- 4. `hillclimb chat --url` against a server with keys --------------------------------------
KEY = "hc-s22-serve2-key-0001"


@pytest.fixture(scope="module")
def keyed_server(engines, tmp_path_factory):
    from hillclimb.serve.auth import KeySpec

    db = tmp_path_factory.mktemp("s22serve2keys") / "usage.sqlite"
    state = build_state(
        {"code-flash": engines["code-flash"]},
        db=db,
        keys=[KeySpec(KEY, "alice")],
        owns_engines=False,
    )
    with ServerThread(state) as srv:
        yield srv


def _chat_requests(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        float(ln.rsplit(" ", 1)[1])
        for ln in text.splitlines()
        if ln.startswith('hillclimb_requests_total{endpoint="chat"')
    )


@pytest.mark.parametrize("key", [None, "hc-wrong-key-0000000"])
def test_chat_without_the_servers_key_says_how_before_the_first_message(
    keyed_server, monkeypatch, capsys, key
):
    """`hillclimb chat --url URL` without a key (or with a wrong one) against a server with keys
    started, read the first message, and only then printed the server's curl-style hint
    ("Authorization: Bearer YOUR_KEY"), after every message. Now it checks `/v1/models` first
    and stops with the CLI's own way to pass a key."""
    from hillclimb.cli import main

    monkeypatch.delenv("HILLCLIMB_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("hello there\n"))
    before = _chat_requests(keyed_server.url)
    argv = ["chat", "--url", keyed_server.url + "/v1"] + (["--api-key", key] if key else [])
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "--api-key KEY" in err and "$HILLCLIMB_API_KEY" in err, err
    assert ("rejected" in err) == (key is not None) and "Traceback" not in err
    assert _chat_requests(keyed_server.url) == before  # no message was sent


def test_chat_with_the_key_from_the_environment_chats(keyed_server, monkeypatch, capsys):
    from hillclimb.cli import main

    monkeypatch.setenv("HILLCLIMB_API_KEY", KEY)
    monkeypatch.setattr("sys.stdin", io.StringIO("hello there\n"))
    before = _chat_requests(keyed_server.url)
    assert main(["chat", "--url", keyed_server.url, "--max-tokens", "2"]) == 0
    assert _chat_requests(keyed_server.url) == before + 1


# ---- B1. echo + logprobs over a prompt with characters split across tokens ----------------------
@pytest.mark.parametrize("prompt", ["s = 'café'", "# 计算 x", "x = '😀' + 1", "plain ascii"])
def test_echo_logprob_offsets_index_the_echoed_prompt(http, prompt):
    """`echo` + `logprobs` with a prompt whose characters span several tokens (é, CJK, emoji
    with a byte-level vocabulary): each such token's own text is U+FFFD, and the prompt's
    `text_offset` counted those, so they ran past the prompt and the first generated token's
    offset went *backwards* (a client slicing the echoed text by offset cut the wrong places).
    Now a prompt token's offset is the character of the prompt where its bytes start."""
    body = {"model": "code-flash", "prompt": prompt, "max_tokens": 3, "temperature": 0,
            "echo": True, "logprobs": 1, "token_healing": False}  # fmt: skip
    ch = http.post(COMP, json=body).json()["choices"][0]
    lp = ch["logprobs"]
    n_prompt = len(prompt.encode("utf-8"))  # one token a byte (micro byte-level tokenizer)
    offs = lp["text_offset"]
    assert offs == sorted(offs), offs
    assert ch["text"].startswith(prompt)
    head, head_tokens = offs[:n_prompt], lp["tokens"][:n_prompt]
    assert max(head) < len(prompt) <= offs[n_prompt]
    for off, t in zip(head, head_tokens, strict=True):
        # a byte token that is not UTF-8 is spelt "bytes:\\xNN" (OpenAI's convention; it was
        # U+FFFD before session 24): its text is not a slice of the prompt
        if not t.startswith("bytes:"):
            assert prompt[off : off + len(t)] == t


# ---- B2. a FIM middle never holds think tags ---------------------------------------------------
def _think_loving_engine(markup: str):
    """A code-flash micro model whose logits strongly prefer one special token (as s20's
    tool-loving model): one residual dimension is a large constant, and that token's output
    row reads it three times as strongly as any other's."""
    import torch

    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.engine import Engine
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    model = build_model(get_preset("code-flash-micro"), seed=0)
    with torch.no_grad():
        model.embed_tokens.weight[:, 0] = 30.0
        model.lm_head.weight[:, 0] = 1.0
        model.lm_head.weight[tok.token_id(markup), 0] = 3.0
    return Engine(model, tok, device="cpu", max_batch=2, name="code-flash", seed=0)


@pytest.mark.parametrize("markup", ["<think>", "</think>"])
def test_fim_middle_never_holds_think_tags(markup, tmp_path):
    """A FIM middle is pasted into the user's file: `<think>` / `</think>` there is never code,
    like the tool-call and FIM markup already forbidden (the trained tiny code-flash answered
    the FIM prompt of "   " with "…xs:\\n<think>"). Now the think tags are forbidden in a middle
    too; outside FIM the model may still think."""
    from hillclimb.serve.engine import SamplingParams
    from hillclimb.tokenizer.specials import fim_prompt

    eng = _think_loving_engine(markup)
    tid = eng.tokenizer.token_id(markup)
    sp = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    assert tid in eng.generate("x = ", sp).token_ids  # the control: it loves the tag
    out = eng.generate(fim_prompt("x = ", "\n"), sp)
    assert tid not in out.token_ids and markup not in out.text
    state = build_state({"code-flash": eng}, db=tmp_path / "u.sqlite")
    with ServerThread(state) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        body = {"model": "code-flash", "prompt": "x = ", "suffix": "\n", "max_tokens": 6,
                "temperature": 0, "ignore_eos": True, "token_healing": False}  # fmt: skip
        text = c.post(COMP, json=body).json()["choices"][0]["text"]
        assert markup not in text and len(text) > 0
