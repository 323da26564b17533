"""Outside checks of the engine (session 22): the padded part of the vocabulary, stop strings
over think tags, per-choice seeds, slot accounting when admission fails, and more (micro models
and the byte-level tokenizer, whose 271 tokens sit in a 512-row embedding table)."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.tokenizer.io import bytelevel_tokenizer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return bytelevel_tokenizer()


@pytest.fixture(scope="module")
def model():
    return build_model(get_preset("thinking-micro"), seed=0).eval()


@pytest.fixture(scope="module")
def engine(model, tok):
    return Engine(model, tok, max_batch=8, seed=0)


def _padded(ids: list[int], tok) -> list[int]:
    return [t for t in ids if t >= tok.vocab_size]


PROMPTS = ["Hello", "def f(x):\n    return", "a", "The quick brown fox"]


# ---- 1. the padded rows of the embedding table are not tokens ------------------------------------
def test_model_vocab_is_padded(model, tok):
    """The premise of the checks below: ids 271..511 have no token."""
    assert tok.vocab_size < model.cfg.vocab_size


@pytest.mark.parametrize("fast_path", [True, False])
def test_padded_ids_are_never_generated(model, tok, fast_path):
    """A random-weight micro model put most of its mass on the 241 padded ids: greedy and
    sampled answers were full of ids with no token (decoded as nothing), and the logprob
    records listed them as alternatives. Every path now chooses among real tokens only."""
    e = Engine(model, tok, max_batch=8, seed=0, fast_path=fast_path)
    for sp in (
        SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, logprobs=5),
        SamplingParams(max_tokens=30, seed=3, ignore_eos=True, logprobs=5),
        SamplingParams(max_tokens=30, seed=3, top_k=7, top_p=0.9, ignore_eos=True, logprobs=5),
    ):
        for o in [e.generate(PROMPTS[0], sp), *e.generate_batch(PROMPTS, sp)]:
            assert not _padded(o.token_ids, tok), o.token_ids
            for rec in o.logprobs:
                assert not _padded([a["token_id"] for a in rec["top_logprobs"]], tok)


def test_padded_ids_are_never_drafted_into_the_answer(model, tok):
    """Speculative paths: a draft model (sampled and greedy) and prompt lookup over a prompt
    made of padded ids (legal input ids) verified alone and batched."""
    draft = build_model(get_preset("thinking-micro"), seed=1).eval()
    spec = Engine(model, tok, max_batch=4, seed=0, draft=draft)
    look = Engine(model, tok, max_batch=4, seed=0, drafter="lookup", spec_batch="always")
    pad_prompt = [300, 301, 302, 300, 301, 302, 300, 301]
    for sp in (
        SamplingParams(max_tokens=24, temperature=0, ignore_eos=True, speculative=True),
        SamplingParams(max_tokens=24, seed=5, ignore_eos=True, speculative=True),
    ):
        assert not _padded(spec.generate(PROMPTS[1], sp).token_ids, tok)
        for o in look.generate_batch([pad_prompt, PROMPTS[2], pad_prompt], sp):
            assert not _padded(o.token_ids, tok), o.token_ids


def test_logprobs_are_the_real_vocabulary_softmax(model, tok, engine):
    """Ground truth: the model's own forward, softmax over the real tokens (the distribution the
    engine samples from); the echoed prompt's records agree with the generated ones."""
    ids = tok.encode(PROMPTS[1])
    o = engine.generate(
        ids, SamplingParams(max_tokens=6, temperature=0, ignore_eos=True, logprobs=3)
    )
    with torch.no_grad():
        logits = model(torch.tensor([ids + o.token_ids]))[0, len(ids) - 1 : -1]
    ref = torch.log_softmax(logits[:, : tok.vocab_size].float(), dim=-1)
    for k, rec in enumerate(o.logprobs):
        assert rec["token_id"] == int(ref[k].argmax())
        assert rec["logprob"] == pytest.approx(float(ref[k].max()), abs=1e-4)
    echo = engine.prompt_logprobs(ids + o.token_ids, 3)
    for rec, e in zip(o.logprobs, echo[len(ids) - 1 :], strict=True):
        assert e["token_id"] == rec["token_id"]
        assert e["logprob"] == pytest.approx(rec["logprob"], abs=1e-4)
        assert not _padded([a["token_id"] for a in e["top_logprobs"]], tok)


# ---- 2. stop strings see the think tags ----------------------------------------------------------
THINK_PROMPT = "<|im_start|>assistant\n<think>\n"


def _events(engine, prompt, sp):
    engine.start()
    try:
        h = engine.submit(prompt, sp)
        evs = list(h)
        return evs, h.result(timeout=60)
    finally:
        engine.stop()


@pytest.mark.parametrize("stop", ["</think>", "</think>\n", "think>", "</thi"])
def test_stop_string_at_a_think_tag_fires(engine, tok, stop):
    """The answer's text holds the tags (`/v1/completions` returns them), but stop strings were
    searched in the text without them: stop=["</think>"] never fired and the answer ran to
    max_tokens. A stop string that begins inside the tag cuts the whole tag."""
    base = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, thinking_token_budget=4)
    full = engine.generate(THINK_PROMPT, base)
    assert full.token_ids[4] == tok.token_id("</think>")  # forced by the budget
    reasoning = full.text[: full.text.index("</think>")]
    sp = dataclasses.replace(base, stop=[stop])
    o = engine.generate(THINK_PROMPT, sp)
    assert o.finish_reason == "stop"
    assert o.text == reasoning and o.content_text == ""
    assert o.token_ids == full.token_ids[: 5 + stop.endswith("\n")]
    evs, out = _events(engine, THINK_PROMPT, sp)
    assert "".join(e.raw_text for e in evs) == out.text == reasoning
    assert all("</think>" not in e.raw_text for e in evs)


def test_stop_string_after_a_think_tag_keeps_the_tag(engine):
    """A stop string that starts after the tag cuts there: the tag and the reasoning stay."""
    base = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, thinking_token_budget=4)
    full = engine.generate(THINK_PROMPT, base)
    cut = full.text.index("</think>") + len("</think>")
    o = engine.generate(THINK_PROMPT, dataclasses.replace(base, stop=["\n\n"]))
    assert o.finish_reason == "stop" and o.text == full.text[:cut]
    evs, out = _events(engine, THINK_PROMPT, dataclasses.replace(base, stop=["\n\n"]))
    assert "".join(e.raw_text for e in evs) == out.text == o.text


# ---- 4. a failing admission frees its slot and ends its request -------------------------------
def test_drafter_start_failure_fails_only_its_request_and_frees_the_slot(model, tok, monkeypatch):
    """`drafter.start` raising at admission escaped `_admit`: the joiner was neither running nor
    waiting, so its slot was never freed and its handle never finished (the caller waited
    forever; `generate_batch` looped forever), and the other joiners of the step were lost too."""
    e = Engine(model, tok, max_batch=3, seed=0, drafter="lookup", prefix_cache=False)
    real_start = e.lookup.start
    calls = []

    def flaky(slot, *a, **kw):
        calls.append(slot)
        if len(calls) == 2:
            raise RuntimeError("injected start failure")
        return real_start(slot, *a, **kw)

    monkeypatch.setattr(e.lookup, "start", flaky)
    sp = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    e.start()
    try:
        hs = [e.submit(p, sp) for p in PROMPTS[:3]]
        outs = [h.result(timeout=10) for h in hs]
    finally:
        e.stop()
    assert [o.finish_reason for o in outs] == ["length", "error", "length"]
    assert "injected start failure" in outs[1].error
    assert sorted(e._free) == [0, 1, 2] and not e._running
    again = e.generate_batch(PROMPTS[:3], sp)
    assert [o.token_ids for o in again] == [
        outs[0].token_ids,
        again[1].token_ids,
        outs[2].token_ids,
    ]
    assert again[1].finish_reason == "length"


# ---- 3. per-choice seeds do not overlap other requests' seeds --------------------------------
def test_choice_seeds_do_not_repeat_a_neighbouring_seed(engine):
    """`n` choices took seeds seed + i: choice 1 of (seed=s, n=2) was the request (seed=s+1),
    token for token. `choice_seed` keeps choice 0 = seed and hashes the others."""
    from hillclimb.serve.sampling import choice_seed

    assert [choice_seed(s, 0) for s in (0, 7, 2**63 - 1)] == [0, 7, 2**63 - 1]
    seeds = {choice_seed(s, i) for s in range(200) for i in range(8)}
    assert len(seeds) == 1600 and all(0 <= x < 2**63 for x in seeds)
    assert choice_seed(5, 1) == choice_seed(5, 1) != 6  # deterministic, not seed + 1
    sp = SamplingParams(max_tokens=16, ignore_eos=True)
    second = engine.generate("Hi", dataclasses.replace(sp, seed=choice_seed(5, 1)))
    other = engine.generate("Hi", dataclasses.replace(sp, seed=6))
    assert second.token_ids != other.token_ids


# ---- seeded sampling with a draft model does not depend on the load ------------------------------
def test_seeded_sample_with_a_draft_model_ignores_its_neighbours(model, tok):
    """A seeded sampled request speculates with the draft model (its random stream is spent
    drawing and verifying drafts) — but only while at most `spec_max_running` requests ran:
    with 6 neighbours it decoded plainly and drew other tokens for the same seed."""
    draft = build_model(get_preset("thinking-micro"), seed=1).eval()
    e = Engine(model, tok, max_batch=8, seed=0, draft=draft, spec_max_running=4)
    sp = SamplingParams(max_tokens=20, seed=7, ignore_eos=True)
    alone = e.generate("Hello", sp)
    greedy = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True)
    crowd = e.generate_batch(["Hello", "x", "yy", "zzz", "w", "v", "u"], [sp] + [greedy] * 6)
    assert crowd[0].token_ids == alone.token_ids
    assert crowd[0].spec["steps"] > 0
    assert crowd[1].token_ids == e.generate("x", greedy).token_ids


def test_streamed_stop_strings_across_tags_and_tokens(engine):
    """Random stop strings cut from real answers (across token boundaries, U+FFFD, think tags,
    forced budgets): the streamed raw deltas join into the answer, which is a prefix of the
    answer without the stop and never holds the stop string; reasoning deltas join into the
    reasoning."""
    rng = random.Random(1)
    cases = []
    for it in range(24):
        prompt = [rng.randrange(3, 262) for _ in range(4)] + [259] * (it % 2)
        budget = rng.choice([None, 2, 5])
        sp = SamplingParams(max_tokens=24, seed=it, ignore_eos=True, thinking_token_budget=budget)
        o = engine.generate(prompt, sp)
        a = rng.randrange(max(1, len(o.text)))
        cases.append(
            (prompt, dataclasses.replace(sp, stop=[o.text[a : a + rng.randrange(1, 9)]]), o)
        )
    engine.start()
    try:
        hs = [(engine.submit(p, sp), sp, o) for p, sp, o in cases if sp.stop[0]]
        for h, sp, o in hs:
            evs, out = list(h), h.result(timeout=30)
            assert "".join(e.raw_text for e in evs) == out.text
            assert sp.stop[0] not in out.text and o.text.startswith(out.text)
            assert out.token_ids == o.token_ids[: len(out.token_ids)]
            reasoning = "".join(e.text for e in evs if e.is_reasoning)
            assert reasoning.strip("\n") == out.reasoning_text
    finally:
        engine.stop()
