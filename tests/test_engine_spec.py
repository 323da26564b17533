"""Speculative decoding: greedy output identical to plain greedy decoding; sampled output follows
the target's distribution (TV distance against exact / plain sampling, with negative controls that
a wrong acceptance rule is detected); γ adaptation, rollback and metrics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import hillclimb.serve.engine as engine_mod
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.sampling import warp_probs
from hillclimb.serve.speculative import accept_drafts
from hillclimb.tokenizer.io import bytelevel_tokenizer

PROMPTS = [
    "Hello world",
    "def add(a, b):\n",
    "x",
    "Once upon a time",
    "for i in range(10):",
    "<|im_start|>user\nhi<|im_end|>\n",
    "1 + 1 =",
    "import torch",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models():
    target = build_model(get_preset("thinking-micro"), seed=0).eval()
    flash = build_model(get_preset("code-flash-micro"), seed=1).eval()
    # A "near" draft: the target with perturbed weights, so q ≈ p but q != p: acceptance is
    # high but the ratio test and the residual resampling both get exercised.
    near = build_model(get_preset("thinking-micro"), seed=0).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in near.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.004)  # 1/5 of init std
    return {"target": target, "flash": flash, "near": near, "tok": bytelevel_tokenizer()}


def forced(sp: SamplingParams) -> SamplingParams:
    return dataclasses.replace(sp, speculative=True)


def make(models, draft, **kw):
    d = models[draft] if draft else None
    return Engine(models["target"], models["tok"], max_batch=8, draft=d, seed=0, **kw)


@pytest.mark.parametrize("draft", ["flash", "near", "target"])
def test_greedy_identical_to_plain(models, draft):
    plain = make(models, None)
    spec = make(models, draft)
    sp = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    ref = plain.generate_batch(PROMPTS, sp)
    sp = dataclasses.replace(sp, speculative=True)  # forced: the mechanism, not the policy
    for p, r in zip(PROMPTS, ref, strict=True):
        o = spec.generate(p, sp)
        assert o.token_ids == r.token_ids, (draft, p)
        assert o.text == r.text and o.finish_reason == "length"
        s = o.spec
        assert s is not None and s["steps"] > 0 and 0 <= s["accepted"] <= s["drafted"]
        # prefill token + (accepted + 1) per verification step + the odd plain step near the end
        assert (
            s["accepted"] + s["steps"] + 1 <= o.completion_tokens <= s["accepted"] + s["steps"] + 3
        )
    # batched: different prompt lengths share a right-padded prefill (padding holes in the
    # target cache), then every request runs speculative steps with rollbacks across the holes
    batched = make(models, draft, spec_max_running=8).generate_batch(PROMPTS, sp)
    assert [b.token_ids for b in batched] == [r.token_ids for r in ref]
    assert all(b.spec is not None and b.spec["steps"] > 0 for b in batched)
    agg = spec.stats()["speculative"]
    if draft == "target":  # self-draft: everything accepted, γ grows, rollbacks never needed
        assert agg["acceptance_rate"] == 1.0 and agg["mean_accept_len"] > 4
    if draft == "near":
        assert 0.1 < agg["acceptance_rate"] < 1.0


def test_spec_respects_stops_budget_and_logprobs(models):
    plain, spec = make(models, None), make(models, "target")
    prompt = "<|im_start|>assistant\n<think>\n"
    for sp in [
        SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, thinking_token_budget=7),
        SamplingParams(max_tokens=17, temperature=0, ignore_eos=True, logprobs=2),
    ]:
        a, b = plain.generate(prompt, sp), spec.generate(prompt, forced(sp))
        assert a.token_ids == b.token_ids and a.text == b.text
        assert a.reasoning_tokens == b.reasoning_tokens and a.finish_reason == b.finish_reason
        if sp.logprobs:
            for x, y in zip(a.logprobs, b.logprobs, strict=True):
                assert x["token_id"] == y["token_id"] and abs(x["logprob"] - y["logprob"]) < 1e-4
    full = plain.generate(
        "Hello world", SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    )
    stop_tok = full.token_ids[20]
    sp = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True, stop_token_ids=[stop_tok])
    assert (
        spec.generate("Hello world", forced(sp)).token_ids
        == plain.generate("Hello world", sp).token_ids
    )
    # seeded sampling through the speculative path is reproducible
    s1 = spec.generate("abc", SamplingParams(max_tokens=25, seed=3, top_k=20))
    s2 = spec.generate("abc", SamplingParams(max_tokens=25, seed=3, top_k=20))
    assert s1.token_ids == s2.token_ids


def _tv(a: dict, b: dict) -> float:
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in keys)


def _naive_accept(target_logits, draft_tokens, draft_probs, params, generator):
    """A WRONG rule (accepts every draft without the p/q ratio test): the negative control."""
    p = warp_probs(target_logits, params)
    g = len(draft_tokens)
    return g, int(torch.multinomial(p[g], 1, generator=generator))


def _committed_distribution(rule, p, q, n, seed=0):
    """Empirical distribution of the first committed token over n calls (p same at each position)."""
    gamma = q.shape[0]
    params = SamplingParams(temperature=1.0)
    logits = p.log().expand(gamma + 1, -1).clone()
    gen = torch.Generator().manual_seed(seed)
    counts: dict[int, float] = {}
    for _ in range(n):
        drafts = [int(torch.multinomial(q[i], 1, generator=gen)) for i in range(gamma)]
        k, nxt = rule(logits, drafts, q, params, gen)
        first = drafts[0] if k > 0 else nxt
        counts[first] = counts.get(first, 0) + 1
    return {t: c / n for t, c in counts.items()}


def test_acceptance_rule_preserves_target_distribution():
    p = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0])
    q = torch.tensor([[0.1, 0.1, 0.2, 0.3, 0.3]] * 3)  # mass where p has none, too
    exact = {i: float(v) for i, v in enumerate(p) if v > 0}
    good = _committed_distribution(accept_drafts, p, q, 4000)
    bad = _committed_distribution(_naive_accept, p, q, 4000)
    threshold = 0.05  # sampling noise at n=4000 over 4 outcomes is ~0.015
    assert _tv(good, exact) < threshold
    assert good.get(4, 0.0) == 0.0  # never a token the target gives zero probability
    assert _tv(bad, exact) > 3 * threshold  # the statistic detects a wrong rule


def _exact_prefix_dist(model, ids, params, depth):
    """Exact probability of every `depth`-token continuation under warped plain sampling."""
    out = {}
    frontier = [((), 1.0)]
    for _ in range(depth):
        nxt = []
        for pre, pr in frontier:
            with torch.no_grad():
                logits = model(torch.tensor([ids + list(pre)]))[0, -1]
            # the engine samples among real tokens only (not the embedding table's padding)
            probs = warp_probs(logits[: bytelevel_tokenizer().vocab_size], params)
            for t in torch.nonzero(probs).flatten().tolist():
                nxt.append((pre + (t,), pr * float(probs[t])))
        frontier = nxt
    for pre, pr in frontier:
        out[pre] = pr
    return out


@pytest.mark.parametrize("draft", ["near", "flash"])
def test_sampled_speculative_follows_target_distribution(models, draft, monkeypatch):
    depth = 3
    params = dict(max_tokens=4, temperature=1.0, top_k=2, ignore_eos=True)
    ids = models["tok"].encode("The answer is")
    exact = _exact_prefix_dist(models["target"], ids, SamplingParams(**params), depth)
    assert math.isclose(sum(exact.values()), 1.0, rel_tol=1e-5) and len(exact) == 2**depth
    n = 240

    def empirical(engine):
        outs = engine.generate_batch(
            ["The answer is"] * n, [SamplingParams(seed=s, **params) for s in range(n)]
        )
        counts: dict[tuple, float] = {}
        for o in outs:
            k = tuple(o.token_ids[:depth])
            counts[k] = counts.get(k, 0) + 1 / n
        return counts, outs

    spec = make(models, draft, spec_max_running=64)
    emp, outs = empirical(spec)
    assert all(o.spec is not None for o in outs)  # every request really went speculative
    assert set(emp) <= set(exact)
    tv = _tv(emp, exact)
    # Noise at n=240 over 8 outcomes: E[TV] ≈ 0.07, sd ≈ 0.02.
    assert tv < 0.16, (draft, tv, spec.stats()["speculative"])
    if draft == "flash":
        # Negative control on the same engine path: a rule without the ratio test is detected.
        monkeypatch.setattr(engine_mod, "accept_drafts", _naive_accept)
        bad, _ = empirical(make(models, draft, spec_max_running=64))
        bad_tv = _tv(bad, exact)
        assert bad_tv > 0.3 or not set(bad) <= set(exact), bad_tv


def test_gamma_adapts_and_caches_roll_back(models):
    spec = make(models, "near", gamma_init=4, gamma_max=8)
    o = spec.generate("Hello world", SamplingParams(max_tokens=60, temperature=0, ignore_eos=True))
    s = o.spec
    assert s["drafted"] > 0 and s["accepted"] < s["drafted"]  # some rejections happened
    # after the request the draft cache is empty and the target's slot holds exactly the
    # prefix-cache entry: prompt + output minus the last token, rejected drafts rolled back
    ids = spec.tokenizer.encode("Hello world")
    (entry,) = spec.prefix.entries.values()
    assert entry.tokens == (ids + o.token_ids)[: len(ids) + len(o.token_ids) - 1]
    assert int(spec.cache.valid.sum()) == len(entry.tokens) == int(spec.cache.seen.sum())
    assert int(spec.draft.cache.valid.sum()) == 0
    spec2 = make(models, "target", gamma_init=1, gamma_max=8)
    o2 = spec2.generate(
        "Hello world", SamplingParams(max_tokens=60, temperature=0, ignore_eos=True)
    )
    # all accepted: γ grows 1, 3, 5, 7, 8, 8, ... so far fewer target steps than tokens
    assert o2.spec["steps"] < 60 / 4


@pytest.mark.parametrize("plain_ms", [1e-9, 1e9])
def test_auto_speculation_backs_off_when_slower(models, monkeypatch, plain_ms):
    """Default `speculative=None`: a request whose speculative ms per token exceeds the plain
    decode yardstick decodes plainly (with back-off and probes), else keeps speculating; greedy
    output is the same either way. The yardstick is pinned so the decision is deterministic."""
    monkeypatch.setattr(Engine, "_observe_plain", lambda self, ms: None)
    plain = make(models, None)
    sp = SamplingParams(max_tokens=60, temperature=0, ignore_eos=True)
    spec = make(models, "near")
    spec._plain_ms = plain_ms
    # the doubling back-off alone: against a free plain step the loss-sized one would never probe again
    spec.spec_loss_budget = float("inf")
    n_spec = 0
    for p in PROMPTS[:4]:
        o = spec.generate(p, sp)
        assert o.token_ids == plain.generate(p, sp).token_ids
        n_spec += o.spec["steps"] if o.spec else 0
        if plain_ms > 1:  # plain is "slow": every step speculates
            assert o.spec["accepted"] + o.spec["steps"] + 1 >= o.completion_tokens - 2, o.spec
    backoffs = spec.stats()["totals"]["spec_backoffs"]
    if plain_ms < 1:  # plain is "free": 2 probing steps per back-off of 16, 32, 64 … plain steps
        assert backoffs >= 2 and n_spec == 2 * backoffs, (n_spec, backoffs)
        assert spec._spec_backoff == min(256, 16 * 2**backoffs)
    else:
        assert backoffs == 0
    # without a yardstick yet, the first step of a request is plain (it measures one)
    fresh = make(models, "near")
    o = fresh.generate(PROMPTS[0], SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))
    assert (o.spec is None or o.spec["steps"] == 0) and fresh._plain_ms is None  # pinned no-op
