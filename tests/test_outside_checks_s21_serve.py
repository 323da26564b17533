"""Outside checks, session 21 (serve): requests a real OpenAI client sends, against a live server
on random-weight micro checkpoints — one failed choice of several, `chat_template_kwargs` values
that are not booleans, and more (see each test's docstring)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import httpx
import pytest

from _server_util import load_engines, make_checkpoints
from hillclimb.serve.billing import Price
from hillclimb.serve.server import ServerThread, build_state

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("s21serve"))


@pytest.fixture(scope="module")
def server(ckpts, tmp_path_factory):
    engines = load_engines(ckpts, max_batch=4, speculative=True)
    db = tmp_path_factory.mktemp("s21db") / "usage.sqlite"
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


def _sse(http: httpx.Client, path: str, body: dict) -> list[dict]:
    with http.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(ln[6:]) for ln in lines[:-1]]


# ---- 1. one choice of several fails: not a 200 with finish_reason "stop" ---------------------------
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"prompt": "hi"}),
        ("/v1/chat/completions", {"messages": MSGS}),
    ],
)
def test_one_failed_choice_fails_the_plain_answer(server, http, monkeypatch, path, body):
    """With `n=2`, an engine failure in one choice only: the plain answer was a 200 whose failed
    choice read as an ordinary `"finish_reason": "stop"` with a cut text (the usage row said
    `error` under HTTP 200), while the same request streamed ends with an error object and is
    settled as a 500. A choice the engine could not produce is the server's failure."""
    eng = server.state.models["code-flash"].engine
    sample = eng._sample

    def fail_second(r, logits):  # noqa: ANN001, ANN202
        if r.request_id.endswith("-1"):
            raise RuntimeError("injected sampling failure")
        return sample(r, logits)

    def one_row_at_a_time(reqs, logits):  # noqa: ANN001, ANN202
        raise RuntimeError("sample rows one by one")  # the engine falls back to `_sample`

    monkeypatch.setattr(eng, "_sample", fail_second)
    monkeypatch.setattr(eng, "_sample_many", one_row_at_a_time)
    req = {"model": "code-flash", "max_tokens": 4, "temperature": 1.0, "n": 2, **body}
    objs = _sse(http, path, req)  # the control: the stream fails
    assert "error" in objs[-1]
    r = http.post(path, json=req)
    assert r.status_code == 500, r.text
    assert r.json()["error"]["type"] == "server_error"
    row = _last_row(server)
    assert row["http_status"] == 500 and "error" in row["finish_reason"]
    monkeypatch.undo()
    assert http.post(path, json=req).status_code == 200


# ---- 2. chat_template_kwargs.enable_thinking must be a boolean ------------------------------------
def _prompt_tokens(http: httpx.Client, **extra) -> httpx.Response:
    body = {"model": "thinking", "messages": MSGS, "max_tokens": 1, "temperature": 0, **extra}
    return http.post("/v1/chat/completions", json=body)


def test_enable_thinking_null_is_the_default_and_a_string_is_refused(http):
    """`{"enable_thinking": null}` turned thinking off (Python's `bool(None)`), and the string
    `"false"` left it on (the template tests `is false`): both silently did the opposite of
    what a client means. null is now the default; anything but a boolean is a 400."""
    default = _prompt_tokens(http).json()["usage"]["prompt_tokens"]
    off = _prompt_tokens(http, chat_template_kwargs={"enable_thinking": False})
    on = _prompt_tokens(http, chat_template_kwargs={"enable_thinking": True})
    assert off.json()["usage"]["prompt_tokens"] > default  # the empty think block
    assert on.json()["usage"]["prompt_tokens"] == default
    null = _prompt_tokens(http, chat_template_kwargs={"enable_thinking": None})
    assert null.status_code == 200 and null.json()["usage"]["prompt_tokens"] == default
    for bad in ("false", "true", 0, 1, [], {}):
        r = _prompt_tokens(http, chat_template_kwargs={"enable_thinking": bad})
        assert r.status_code == 400, (bad, r.text)
        err = r.json()["error"]
        assert err["param"] == "chat_template_kwargs.enable_thinking", err
        assert err["code"] == "invalid_type"


# ---- 3. `hillclimb chat --url` that the HTTP client cannot use ------------------------------------
@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("localhost:8000", "http:// or https://"),  # the usual slip: no scheme
        ("127.0.0.1:8000", "http:// or https://"),
        ("ftp://example.org", "http:// or https://"),
        ("http://:8000", "with a host"),
        ("", "with a host"),
        ("http://[::1", "not a valid URL"),
        ("http://127.0.0.1:99999", "outside 1-65535"),
    ],
)
def test_chat_url_that_cannot_work_is_one_clear_error(url, match):
    """`localhost:8000` started the chat, then every turn failed with "unsupported protocol
    'localhost://'"; `http://[::1` ended `hillclimb chat` in httpx's InvalidURL traceback."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "hillclimb", "chat", "--url", url],
                       input="hello\n", capture_output=True, text=True, timeout=120)  # fmt: skip
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "Traceback" not in out, out
    assert match in out and "you>" not in out, out


def test_chat_url_forms_that_work_are_kept():
    from hillclimb.serve.chat_cli import normalize_url

    assert normalize_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert normalize_url("https://h.example/v1/") == "https://h.example/v1"
    assert normalize_url("http://[::1]:8000/") == "http://[::1]:8000/v1"


# ---- 4. a seeded sampled request's tokens do not depend on whether lookup drafts ran -------------
def _ab_engine():
    """A code-flash micro model that answers `a` (p ≈ 0.7) or `b` (p ≈ 0.3) at every step, so
    prompt lookup over "abab…" finds drafts that are often right and often wrong."""
    import torch

    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.drafters import LookupConfig
    from hillclimb.serve.engine import Engine
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    model = build_model(get_preset("code-flash-micro"), seed=0)
    with torch.no_grad():
        model.embed_tokens.weight[:, 0] = 30.0
        model.lm_head.weight[:, 0] = 0.0
        for ch, w in (("a", 1.0), ("b", 0.97)):
            model.lm_head.weight[tok.encode(ch)[0], 0] = w
    # a loose loss budget: the doubling back-off alone, so a 40-token request probes again after a
    # losing draft (the loss-sized wait of session 25 would stop drafting for the rest of it)
    return Engine(model, tok, device="cpu", max_batch=2, name="code-flash", seed=0,
                  drafter="lookup", lookup=LookupConfig(loss_budget=0.99))  # fmt: skip


@pytest.mark.parametrize("prediction", [None, "ab" * 30])
def test_seeded_sampled_request_is_the_same_with_or_without_lookup_drafts(prediction):
    """Verifying a one-hot draft drew `len(drafts)` uniforms at once and then a correction
    with `torch.multinomial`, so a seeded sampled request spent its random stream differently
    when drafts ran: the first such request on a fresh engine (which explores) and the same
    request later (gated by the engine-wide prior) got different tokens, and both differed from
    `drafter: "none"`. The engine docs promise a seed fixes the output, and the lookup docs that
    prompt lookup keeps a seeded request reproducible on any engine. Each position is now drawn
    exactly as plain sampling draws it, the draft kept while they agree."""
    from hillclimb.serve.engine import SamplingParams

    prompt = "ab" * 20
    sp = SamplingParams(max_tokens=40, temperature=1.0, seed=11, ignore_eos=True,
                        drafter="lookup", prediction=prediction)  # fmt: skip
    eng = _ab_engine()
    first = eng.generate(prompt, sp)
    assert first.spec["drafted"] > first.spec["accepted"] > 0  # drafts ran, some rejected
    again = eng.generate(prompt, sp)
    plain = _ab_engine().generate(prompt, dataclasses.replace(sp, drafter="none", prediction=None))
    assert plain.spec is None or plain.spec["drafted"] == 0
    assert first.token_ids == plain.token_ids
    assert again.token_ids == plain.token_ids
    # another seed, another answer (the control: the seed is really used)
    other = eng.generate(prompt, dataclasses.replace(sp, seed=12))
    assert other.token_ids != first.token_ids


# ---- 5. assistant prefill: the continuation keeps its whitespace ----------------------------------
@pytest.fixture(scope="module")
def spacey_http(tmp_path_factory):
    """A server on a code-flash micro model that writes `a`, spaces and newlines in about equal
    parts (sampled with a seed)."""
    import torch

    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.engine import Engine
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    model = build_model(get_preset("code-flash-micro"), seed=0)
    with torch.no_grad():
        model.embed_tokens.weight[:, 0] = 30.0
        model.lm_head.weight[:, 0] = 0.0
        for ch in (" ", "a", "\n"):
            model.lm_head.weight[tok.encode(ch)[0], 0] = 1.0
    eng = Engine(model, tok, device="cpu", max_batch=2, name="code-flash", seed=0)
    state = build_state({"code-flash": eng}, db=tmp_path_factory.mktemp("s21ws") / "u.sqlite")
    with ServerThread(state) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        c.tok = tok
        yield c


@pytest.mark.parametrize(
    ("prefill", "key"), [("Sure,", "content"), ("<think>\nHmm,", "reasoning_content")]
)
def test_continue_final_message_keeps_the_continuations_whitespace(spacey_http, prefill, key):
    """`continue_final_message` (vLLM's assistant prefill): the client appends the answer to its
    own prefix, but the answer had its leading and trailing whitespace stripped like a fresh
    turn's — "Sure," + " a\\n a" came back as "a\\n a", so the joined text read "Sure,a\\n a".
    The continued section is now returned as the model wrote it (plain and streamed); a fresh
    section (the answer after `</think>`) is still trimmed."""
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": prefill}]
    ids = spacey_http.tok.encode_chat(msgs, add_generation_prompt=False,
                                      continue_final_message=True)  # fmt: skip
    trimmed = 0
    for seed in range(6):
        common = {"model": "code-flash", "max_tokens": 8, "temperature": 1.0, "seed": seed,
                  "ignore_eos": True}  # fmt: skip
        raw = spacey_http.post("/v1/completions", json={**common, "prompt": ids,
                               "token_healing": False}).json()["choices"][0]["text"]  # fmt: skip
        body = {**common, "messages": msgs, "continue_final_message": True}
        msg = spacey_http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
        assert msg[key] == raw, (seed, msg, raw)
        objs = _sse(spacey_http, "/v1/chat/completions", body)
        streamed = "".join(ch["delta"].get(key) or "" for o in objs for ch in o["choices"])
        assert streamed == raw, (seed, streamed, raw)
        trimmed += raw != raw.strip()
    assert trimmed >= 3  # the control: most answers start or end with whitespace
    # a fresh turn is still trimmed
    fresh = {"model": "code-flash", "max_tokens": 8, "temperature": 1.0, "ignore_eos": True,
             "messages": msgs[:1]}  # fmt: skip
    for seed in range(4):
        c = spacey_http.post("/v1/chat/completions", json={**fresh, "seed": seed}).json()
        text = c["choices"][0]["message"]["content"]
        assert text == text.strip()
