"""Token healing (`serve/healing.py`): prompts that end at every kind of token boundary, with a
small trained BPE tokenizer so that "\\n    " and identifiers really are merged tokens (the
byte-level test tokenizer has no merges). Checks the plan (what is cut), the constraint mask
(exactly the tokens consistent with the cut text), the engine (first tokens extend the cut text,
the output never repeats it, honest token counts, healing off = unchanged) and the HTTP switch."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
import torch

from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.healing import HealIndex, StripPrefix
from hillclimb.serve.server import ServerThread, build_state
from hillclimb.tokenizer.specials import FIM_MIDDLE, IM_END, fim_prompt

CODE = (
    "def add(a, b):\n    return a + b\n\n"
    "def total(items):\n    result = 0\n    for item in items:\n        result += item\n"
    "    return result\n\n"
    'class Point:\n    """A point."""\n\n    def __init__(self, x, y):\n        self.x = x\n'
    "        self.y = y\n"
)

# prompt → (kind of boundary, the text healing should cut)
BOUNDARIES = {
    "def add(a, b):\n": ("newline", None),
    "def add(a, b):\n    ": ("newline + indent", None),
    "def add(a, b):\n    return a +": ("before a space", None),
    "def add(a, b):\n    return a + ": ("space", None),
    "def total(items):\n    res": ("partial identifier", None),
    "def total(items):\n    result": ("complete identifier", None),
}


@pytest.fixture(scope="module")
def tok():
    from hillclimb.tokenizer.train import train_tokenizer

    return train_tokenizer([CODE] * 60, vocab_size=512)


@pytest.fixture(scope="module")
def index(tok):
    return HealIndex(tok, 512)


@pytest.fixture(scope="module")
def engine(tok):
    cfg = dataclasses.replace(get_preset("code-flash-micro"), vocab_size=512)
    return Engine(build_model(cfg, seed=0), tok, device="cpu", max_batch=4, name="code-flash",
                  seed=0, token_healing=True)  # fmt: skip


def _bytes(index: HealIndex, ids: list[int]) -> bytes:
    return b"".join(index.bytes[i] or b"" for i in ids)


def test_tokenizer_really_merges(tok):
    """The fixture is meaningful: indentation after a newline and identifiers are single tokens."""
    pieces = [tok.decode([i]) for i in tok.encode("def add(a, b):\n    ")]
    assert pieces[-1] == "\n    "
    pieces = [tok.decode([i]) for i in tok.encode("def total(items):\n    result")]
    assert pieces[-1] == "\n    result"  # newline, indentation and identifier: one token


@pytest.mark.parametrize("prompt", list(BOUNDARIES))
def test_plan_cuts_last_token_at_every_boundary(tok, index, prompt):
    ids = tok.encode(prompt)
    plan = index.plan(ids)
    assert plan is not None and plan.n_removed == 1
    assert plan.ids == ids[:-1]
    assert plan.text == tok.decode(ids[-1:]) and plan.removed == plan.text.encode()
    assert tok.decode(plan.ids) + plan.text == prompt


def test_plan_never_heals_special_tokens_or_empties(tok, index):
    im_end = tok.token_id(IM_END)
    assert index.plan(tok.encode("x = 1" + IM_END)) is None  # after a special token
    assert index.plan([im_end]) is None
    assert index.plan([]) is None  # empty prompt
    assert index.plan(tok.encode("x")) is None  # one token: nothing would be left to prefill
    # several tokens, but never across a special token
    ids = tok.encode("<|im_start|>def")
    plan = index.plan(ids, max_tokens=8)
    assert plan is not None and plan.ids == ids[:1]
    # a prompt ending in <|fim_middle|> without the PSM layout: nothing to heal
    assert index.plan(tok.encode("def f():\n" + FIM_MIDDLE)) is None


def test_plan_fim_heals_the_prefix_end(tok, index):
    prompt = fim_prompt("def total(items):\n    res", "\n    return result\n")
    ids = tok.encode(prompt)
    plan = index.plan(ids)
    assert plan is not None and plan.n_removed == 1
    sfx = tok.token_id("<|fim_suffix|>")
    j = ids.index(sfx)
    assert plan.ids == ids[: j - 1] + ids[j:]
    assert plan.text == tok.decode([ids[j - 1]])
    assert plan.ids[-1] == tok.token_id(FIM_MIDDLE)  # the markers are untouched


@pytest.mark.parametrize("rest", [b"\n", b"\n    ", b" ", b"res", b"result", b"a + b"])
def test_mask_is_exactly_the_consistent_tokens(index, rest):
    allowed = set(index.allowed_ids(rest))
    expect = {
        i for i, b in enumerate(index.bytes)
        if b and (b.startswith(rest) or rest.startswith(b))
    }  # fmt: skip
    assert allowed == expect and allowed
    m = index.mask(rest)
    assert set(torch.nonzero(m)[:, 0].tolist()) == expect
    for sid in index.special:  # EOS, FIM markers, im_end, think tags: never allowed
        if sid < len(m):
            assert not m[sid]


def test_mask_overrides_what_the_model_prefers(engine, index, tok):
    """A model whose logits we control: all mass on EOS and on a token inconsistent with the
    removed text — the constrained choice still extends the removed text."""
    req = engine._make_request("def total(items):\n    ", SamplingParams(temperature=0), None)
    rest = req.heal_left
    assert rest == b"\n    "
    logits = torch.zeros(512)
    logits[tok.eos_id] = 100.0
    logits[tok.encode("x")[0]] = 90.0
    masked = engine._heal_mask(req, logits)
    tid = int(torch.argmax(masked))
    assert index.bytes[tid].startswith(rest) or rest.startswith(index.bytes[tid])
    assert torch.isinf(masked[tok.eos_id])


def _check_output(tok, index, engine, prompt, out):
    ids = tok.encode(prompt)
    plan = index.plan(ids)
    assert out.healed_tokens == 1
    assert out.prompt_tokens == len(ids) - 1
    assert out.completion_tokens == len(out.token_ids)
    gen = _bytes(index, out.token_ids)
    # the first generated token(s) reproduce the removed text (unless max_tokens ran out)
    n = len(plan.removed)
    assert gen[:n] == plan.removed[: len(gen)]
    full = tok.decode(out.token_ids)
    if out.finish_reason == "length":
        assert out.text == full[len(plan.text) :]  # exactly what follows the user's prompt


@pytest.mark.parametrize("prompt", list(BOUNDARIES))
def test_engine_greedy_heals_and_never_repeats(tok, index, engine, prompt):
    sp = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    out = engine.generate(prompt, sp)
    _check_output(tok, index, engine, prompt, out)
    assert out.text == tok.decode(out.token_ids)[len(index.plan(tok.encode(prompt)).text) :]


def test_engine_sampled_heals(tok, index, engine):
    prompt = "def total(items):\n    res"
    for seed in range(6):
        sp = SamplingParams(max_tokens=6, temperature=1.0, seed=seed, ignore_eos=True)
        _check_output(tok, index, engine, prompt, engine.generate(prompt, sp))


def test_streamed_deltas_equal_text(engine):
    engine.start()
    try:
        h = engine.submit("def add(a, b):\n    ", SamplingParams(max_tokens=10, temperature=0,
                                                               ignore_eos=True))  # fmt: skip
        text = "".join(ev.text for ev in h)
        assert text == h.result(30).text
    finally:
        engine.stop()


def test_healing_off_is_unchanged(tok, engine):
    """Off (per request, or the engine default) generates exactly what it did before: the full
    prompt is prefilled, nothing is constrained or stripped."""
    cfg = dataclasses.replace(get_preset("code-flash-micro"), vocab_size=512)
    plain = Engine(build_model(cfg, seed=0), tok, device="cpu", max_batch=4, seed=0)
    for prompt in BOUNDARIES:
        sp = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
        a = plain.generate(prompt, sp)  # engine default: off
        b = engine.generate(prompt, dataclasses.replace(sp, token_healing=False))
        assert a.token_ids == b.token_ids and a.text == b.text and a.healed_tokens == 0
        assert a.prompt_tokens == len(tok.encode(prompt)) == b.prompt_tokens


def test_no_heal_after_special_and_empty_prompt(tok, engine):
    from hillclimb.errors import HillclimbError

    out = engine.generate("x = 1" + IM_END, SamplingParams(max_tokens=3, temperature=0))
    assert out.healed_tokens == 0
    with pytest.raises(HillclimbError):
        engine.generate("", SamplingParams(max_tokens=3))
    with pytest.raises(HillclimbError):
        SamplingParams(token_healing="yes").validate()  # type: ignore[arg-type]


def test_strip_prefix_gives_back_on_divergence():
    class Fake:
        ids: list[int] = []

        def __init__(self, parts):
            self.parts = iter(parts)

        def add(self, t):
            return next(self.parts)

        def flush(self):
            return ""

    s = StripPrefix(Fake(["\n", "   x"]), "\n    ")
    assert s.add(0) == "" and s.add(1) == "\n   x"  # diverged: nothing lost
    s = StripPrefix(Fake(["\n  ", "  return"]), "\n    ")
    assert s.add(0) == "" and s.add(1) == "return"


# ---- HTTP ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http(tok, tmp_path_factory):
    cfg = dataclasses.replace(get_preset("code-flash-micro"), vocab_size=512)
    eng = Engine(build_model(cfg, seed=0), tok, device="cpu", max_batch=4, name="code-flash",
                 seed=0, token_healing=True)  # fmt: skip
    state = build_state({"code-flash": eng}, db=tmp_path_factory.mktemp("heal") / "u.sqlite")
    with ServerThread(state) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


def _complete(http, **kw):
    body = {"model": "code-flash", "max_tokens": 6, "temperature": 0, "ignore_eos": True, **kw}
    return http.post("/v1/completions", json=body)


def test_http_default_on_and_switch(http, tok, index):
    prompt = "def total(items):\n    res"
    n = len(tok.encode(prompt))
    on = _complete(http, prompt=prompt).json()
    off = _complete(http, prompt=prompt, token_healing=False).json()
    explicit = _complete(http, prompt=prompt, token_healing=True).json()
    assert on["choices"][0]["text"] == explicit["choices"][0]["text"]
    assert on["usage"]["prompt_tokens"] == n - 1 and off["usage"]["prompt_tokens"] == n
    assert on["usage"]["completion_tokens"] == off["usage"]["completion_tokens"] == 6
    # streamed deltas are stripped the same way
    with http.stream("POST", "/v1/completions", json={
        "model": "code-flash", "prompt": prompt, "max_tokens": 6, "temperature": 0,
        "ignore_eos": True, "stream": True}) as r:  # fmt: skip
        import json

        text = "".join(
            json.loads(line[6:])["choices"][0]["text"]
            for line in r.iter_lines()
            if line.startswith("data: {") and json.loads(line[6:])["choices"]
        )
    assert text == on["choices"][0]["text"]


def test_http_fim_heals_both_paths_alike(http):
    pre, suf = "def total(items):\n    res", "\n    return result\n"
    a = _complete(http, prompt=pre, suffix=suf).json()
    b = _complete(http, prompt=fim_prompt(pre, suf)).json()
    assert a["choices"][0]["text"] == b["choices"][0]["text"]
    # the same tokens are billed; the second request found the first's prompt in the cache
    cached = [u["usage"].pop("prompt_tokens_details")["cached_tokens"] for u in (a, b)]
    assert a["usage"] == b["usage"] and cached[1] >= cached[0]


@pytest.mark.parametrize("bad", ["yes", 1, [True], {"on": True}])
def test_http_bad_token_healing_is_400(http, bad):
    r = _complete(http, prompt="x = 1", token_healing=bad)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "token_healing"


def test_http_chat_does_not_take_token_healing(http):
    r = http.post("/v1/chat/completions", json={
        "model": "code-flash", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2, "token_healing": True})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "token_healing"
    ok = http.post("/v1/chat/completions", json={
        "model": "code-flash", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2, "temperature": 0})  # fmt: skip
    assert ok.status_code == 200
