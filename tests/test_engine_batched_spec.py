"""Speculation inside batched decoding: model-free drafts of several rows (different lengths, some
rows without drafts) verified in one ragged forward. Checked here: greedy output equals plain
decoding for a batch of mixed rows (right, wrong and no prediction, different max_tokens so rows
finish mid-batch); sampled output follows the exact target distribution (chi-square, with a
negative control on the same path); the KV cache after rejections equals a fresh prefill;
max_tokens, stop strings and cancellation inside accepted runs; the cost model's decisions."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

import hillclimb.serve.engine as engine_mod
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.speculative import BatchCostConfig, BatchVerifyCost
from hillclimb.tokenizer.io import bytelevel_tokenizer
from test_engine_lookup import PROMPTS as LOOKUP_PROMPTS
from test_engine_lookup import _chi_square, _wrong_accept, chi2_crit, sampled_case
from test_engine_spec import one_thread  # noqa: F401 (autouse fixture)

PROMPTS = [
    *LOOKUP_PROMPTS,
    "The answer is",
    "zzz yyy zzz yyy",
    "import os\nimport sys\n",
    "a = 1\nb = 2\na = 1\n",
]
GREEDY = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def setup():
    model = build_model(get_preset("thinking-micro"), seed=0).eval()
    tok = bytelevel_tokenizer()
    plain = Engine(model, tok, max_batch=12, seed=0, prefix_cache=False)
    return {"model": model, "tok": tok, "plain": plain}


def _mixed(tok, ref, base=GREEDY):
    """Per prompt: the plain answer as prediction (right), an unrelated one (wrong), or none
    (prompt lookup only); max_tokens varied so rows finish at different steps."""
    sps = []
    for i, r in enumerate(ref):
        pred = [list(r.token_ids), tok.encode("an unrelated prediction, wrong"), None][i % 3]
        sps.append(
            dataclasses.replace(base, prediction=pred, drafter="lookup", max_tokens=24 + 2 * i)
        )
    return sps


@pytest.mark.parametrize("mode", ["always", "auto"])
def test_greedy_batched_drafting_equals_plain(setup, mode):
    plain, tok, model = setup["plain"], setup["tok"], setup["model"]
    n = len(PROMPTS)
    lens = [dataclasses.replace(GREEDY, max_tokens=24 + 2 * i) for i in range(n)]
    ref = plain.generate_batch(PROMPTS, lens)
    eng = Engine(model, tok, max_batch=12, seed=0, spec_batch=mode, prefix_cache=False)
    outs = eng.generate_batch(PROMPTS, _mixed(tok, ref))
    for p, r, o in zip(PROMPTS, ref, outs, strict=True):
        assert o.token_ids == r.token_ids and o.text == r.text, p
        assert o.finish_reason == "length"
    t = eng.stats()["totals"]
    if mode == "always":
        assert t["verify_steps"] > 0 and t["verify_rows"] > t["verify_steps"]
        right = [o for i, o in enumerate(outs) if i % 3 == 0]
        assert all(o.spec["accepted"] > 0 for o in right)
        assert any(o.spec["steps"] > 0 for i, o in enumerate(outs) if i % 3 == 1)
    # more than spec_max_running (4) requests drafted: the cap no longer applies to lookup
    assert sum(o.spec["steps"] > 0 for o in outs) > eng.spec_max_running or mode == "auto"


def test_off_mode_keeps_the_light_load_cap(setup):
    plain, tok, model = setup["plain"], setup["tok"], setup["model"]
    ref = plain.generate_batch(PROMPTS[:6], GREEDY)
    eng = Engine(model, tok, max_batch=8, seed=0, spec_batch="off", spec_max_running=2)
    outs = eng.generate_batch(PROMPTS[:6], _mixed(tok, ref)[:6])
    assert [o.token_ids for o in outs] == [r.token_ids[: len(o.token_ids)] for o, r in
                                            zip(outs, ref, strict=True)]  # fmt: skip
    assert eng.stats()["totals"]["verify_steps"] == 0


def test_sampled_batched_drafting_follows_target_distribution(setup, monkeypatch):
    """3-token samples (top-k 2) of unseeded, unforced requests (so the batch decides), half
    with a prediction drafting one fixed continuation, half without: chi-square against the
    exact distribution; a rule without the p(d) test is detected on the same path."""
    model, tok = setup["model"], setup["tok"]
    depth, n = 3, 300
    params, ids, exact, likely = sampled_case(model, tok, depth)
    prediction = ids[-2:] + likely + likely

    def empirical():
        eng = Engine(model, tok, max_batch=16, seed=0, spec_batch="always", prefix_cache=False)
        sps = [SamplingParams(prediction=prediction if i % 2 else None, drafter="lookup",
                              **params) for i in range(n)]  # fmt: skip
        outs = eng.generate_batch(["The answer is"] * n, sps)
        counts: dict[tuple, int] = {}
        for o in outs:
            k = tuple(o.token_ids[:depth])
            counts[k] = counts.get(k, 0) + 1
        return counts, outs, eng

    counts, outs, eng = empirical()
    assert set(counts) <= set(exact)
    assert eng.stats()["totals"]["verify_steps"] > 0
    assert sum(o.spec["drafted"] for o in outs) >= n // 4
    stat, dof = _chi_square(counts, exact, n)
    assert stat < chi2_crit(dof), (stat, dof, counts)
    monkeypatch.setattr(engine_mod, "accept_drafts", _wrong_accept)
    bad, _, _ = empirical()
    bad_stat, bad_dof = _chi_square(bad, exact, n)
    assert bad_stat > chi2_crit(bad_dof), (bad_stat, bad)


def test_seeded_sampled_rows_reproducible_in_any_batch(setup):
    model, tok = setup["model"], setup["tok"]
    eng = Engine(model, tok, max_batch=8, seed=0, spec_batch="auto", prefix_cache=False,
                 drafter="lookup")  # fmt: skip
    sp = SamplingParams(max_tokens=30, seed=7, top_k=5, temperature=0.7, prediction=PROMPTS[0])
    a = eng.generate(PROMPTS[0], sp)
    others = [dataclasses.replace(GREEDY, prediction=p) for p in PROMPTS[1:6]]
    b = eng.generate_batch(PROMPTS[:6], [sp, *others])[0]
    assert a.token_ids == b.token_ids


def test_kv_cache_after_rejections_equals_fresh_prefill(setup):
    """Drive batched verification steps by hand (wrong and half-right predictions, so drafts
    are rejected and fillers rolled back), then compare each running slot's next-token logits
    with a fresh forward over its whole sequence."""
    model, tok = setup["model"], setup["tok"]
    eng = Engine(model, tok, max_batch=8, seed=0, spec_batch="always", prefix_cache=False)
    ref = setup["plain"].generate_batch(PROMPTS[:8], GREEDY)
    sps = []
    for i, r in enumerate(ref):
        half = list(r.token_ids[:10]) + tok.encode(" diverges here and then some")
        pred = [half, tok.encode("wrong wrong wrong"), None, list(r.token_ids)][i % 4]
        sps.append(dataclasses.replace(GREEDY, prediction=pred, drafter="lookup"))
    reqs = [eng._make_request(p, sp, None) for p, sp in zip(PROMPTS[:8], sps, strict=True)]
    eng._waiting.extend(reqs)
    with torch.inference_mode():
        for _ in range(6):
            eng._step()
        assert eng.stats()["totals"]["verify_steps"] > 0
        assert sum(r.spec.drafted - r.spec.accepted for r in reqs) > 0  # rejections happened
        for r in eng._running:
            seq = r.prompt_ids + r.out_ids
            s = r.slot
            assert int(eng.cache.seen[s]) == len(seq) - 1
            assert int(eng.cache.valid[s].sum()) == len(seq) - 1
            fresh = model(torch.tensor([seq]))[0, -1]
            ids = torch.tensor([[r.pending]])
            got = eng.fast(ids, eng.cache, torch.tensor([s]), single_slot=s)[0, -1]
            eng.cache.truncate(s, len(seq) - 1)
            assert torch.allclose(got, fresh, atol=1e-4), (r.prompt_ids, s)
        while eng._running or eng._waiting:
            eng._step()
    assert [r.out_ids for r in reqs] == [list(o.token_ids) for o in ref]


def test_max_tokens_and_stop_inside_an_accepted_run(setup):
    """A right prediction drafts long runs; max_tokens and a stop string fall inside them:
    the same tokens, text and finish reason as plain decoding, for every row of the batch."""
    plain, tok, model = setup["plain"], setup["tok"], setup["model"]
    full = plain.generate_batch(PROMPTS[:8], GREEDY)
    eng = Engine(model, tok, max_batch=8, seed=0, spec_batch="always", prefix_cache=False)
    sps, refs = [], []
    for i, r in enumerate(full):
        text = r.text
        stop = [text[12:15]] if i % 2 and len(text) > 16 and text[12:15].strip() else None
        sp = dataclasses.replace(GREEDY, max_tokens=7 + i, stop=stop)
        refs.append(sp)
        sps.append(dataclasses.replace(sp, prediction=list(r.token_ids), drafter="lookup"))
    ref = plain.generate_batch(PROMPTS[:8], refs)
    outs = eng.generate_batch(PROMPTS[:8], sps)
    for r, o in zip(ref, outs, strict=True):
        assert (o.token_ids, o.text, o.finish_reason) == (r.token_ids, r.text, r.finish_reason)
    assert any(o.finish_reason == "stop" for o in outs)
    assert any(o.spec["accepted"] >= 4 for o in outs)


def test_cancellation_while_batched_drafting(setup):
    plain, tok, model = setup["plain"], setup["tok"], setup["model"]
    ref = plain.generate_batch(PROMPTS[:8], dataclasses.replace(GREEDY, max_tokens=60))
    eng = Engine(model, tok, max_batch=8, seed=0, spec_batch="always", prefix_cache=False)
    eng.start()
    try:
        sps = [dataclasses.replace(GREEDY, max_tokens=60, prediction=list(r.token_ids),
                                   drafter="lookup") for r in ref]  # fmt: skip
        hs = [eng.submit(p, sp) for p, sp in zip(PROMPTS[:8], sps, strict=True)]
        next(iter(hs[3]))  # it started
        hs[3].cancel()
        outs = [h.result(timeout=60) for h in hs]
    finally:
        eng.stop()
    assert outs[3].finish_reason in ("cancelled", "length")
    assert outs[3].token_ids == ref[3].token_ids[: len(outs[3].token_ids)]
    for i, (r, o) in enumerate(zip(ref, outs, strict=True)):
        if i != 3:
            assert o.token_ids == r.token_ids


def test_cost_model_plans_and_refits():
    cost = BatchVerifyCost(BatchCostConfig(base=1.3, per_token=0.15))
    # high acceptance on most rows: verify, and the cap keeps the long drafts
    assert cost.plan(8, [(8, 0.95)] * 6, []) >= 4
    # low acceptance: decode plainly
    assert cost.plan(8, [(4, 0.1)] * 2, []) == 0
    assert cost.declined == 1
    # a forced row wins even when the model says no, with at least its own length
    assert cost.plan(8, [(4, 0.1)], [(3, 0.1)]) >= 3
    assert cost.plan(8, [(4, 0.1)], [], probe=True) == 4
    # refit: plain steps at 10 ms, verifications at 30 ms → the cost rises, drafting stops
    cost.observe_plain(8, 10.0)
    for _ in range(30):
        cost.observe_verify(cost.x([4] * 8, 8, 4), 8, 30.0)
    assert cost.cost(cost.x([4] * 8, 8, 4)) == pytest.approx(3.0, rel=0.1)
    assert cost.plan(8, [(4, 0.6)] * 8, []) == 0
    assert cost.plain(4) is not None and cost.plain(4) < 10.0


def test_auto_declines_when_verification_is_measured_slow(setup):
    plain, tok, model = setup["plain"], setup["tok"], setup["model"]
    ref = plain.generate_batch(PROMPTS[:8], GREEDY)
    eng = Engine(model, tok, max_batch=8, seed=0, spec_batch="auto", prefix_cache=False,
                 batch_cost=BatchCostConfig(base=20.0, per_token=5.0, probe_every=10**9))  # fmt: skip
    eng.batch_cost.theta = [20.0, 5.0]  # pinned: verification "costs" 20+ plain steps
    eng.batch_cost.P = [[0.0, 0.0], [0.0, 0.0]]
    t0 = time.perf_counter()
    outs = eng.generate_batch(PROMPTS[:8], _mixed(tok, ref))
    assert time.perf_counter() - t0 < 60
    assert [o.token_ids for o in outs] == [r.token_ids[: len(o.token_ids)] for o, r in
                                            zip(outs, ref, strict=True)]  # fmt: skip
    t = eng.stats()["totals"]
    assert t["verify_steps"] == 0 and t["verify_declined"] > 0
