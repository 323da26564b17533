"""Prefix cache (`serve/prefix_cache.py`): greedy output with the cache equals output without it
(fast, model-forward, batched, lookup-speculative and compiled paths), hit accounting, GRPO
groups prefilled once, reuse from a running request, eviction under slot pressure, pinning of a
copy's source, invalidation on weight sync, recorded routes of reused tokens, the off switch."""

from __future__ import annotations

import time

import pytest
import torch

from hillclimb.model.config import get_preset
from hillclimb.model.kv_cache import KVCache
from hillclimb.model.transformer import build_model
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.prefix_cache import PrefixCache, common_prefix
from hillclimb.tokenizer.io import bytelevel_tokenizer

GREEDY = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
SYSTEM = "System: you are a careful assistant who answers briefly. "


@pytest.fixture(scope="module")
def tok():
    """The tokenizer every engine here uses; while it lives, one intra-op thread (tiny decode
    steps are latency-bound: two threads on a busy 2-core box are many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield bytelevel_tokenizer()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    return build_model(get_preset("thinking-micro"), seed=0).eval()


def engines(model, tok, **kw):
    return Engine(model, tok, seed=0, **kw), Engine(model, tok, seed=0, prefix_cache=False, **kw)


def conversation(on, off, tok, turns=4):
    """Token-faithful turns (as the harness builds them): prompt_{k+1} = prompt_k + answer_k +
    new user text. Returns (outputs with cache, outputs without)."""
    hist = tok.encode(SYSTEM + "User: hello, what is two plus two?")
    a_outs, b_outs = [], []
    for k in range(turns):
        a, b = on.generate(hist, GREEDY), off.generate(hist, GREEDY)
        a_outs.append((list(hist), a))
        b_outs.append(b)
        hist = hist + a.token_ids + tok.encode(f" User: and then {k}?")
    return a_outs, b_outs


def test_common_prefix():
    a = list(range(300))
    assert common_prefix(a, a) == 300
    assert common_prefix(a, a, limit=299) == 299
    for cut in (0, 1, 63, 64, 65, 130, 299):
        b = a[:cut] + [-1] + a[cut + 1 :]
        assert common_prefix(a, b) == cut
    assert common_prefix(a, a[:70]) == 70 and common_prefix([], a) == 0


def test_lru_victim_skips_pinned_entries():
    pc = PrefixCache(min_tokens=2)
    assert not pc.put(0, [1])  # too short to keep
    for slot in (3, 1, 2):
        assert pc.put(slot, [slot, 9, 9])
    assert pc.victim() == 3  # least recently stored
    pc.touch(3)
    assert pc.victim() == 1
    pc.pin(1)
    assert pc.victim() == 2 and pc.evictable == 2
    with pytest.raises(RuntimeError):
        pc.evict(1)
    with pytest.raises(RuntimeError):
        pc.take(1)
    pc.pin(2), pc.pin(3)
    assert pc.victim() is None
    pc.unpin(1)
    assert pc.victim() == 1
    assert pc.best([2, 9, 9, 5], limit=3) == (pc.entries[2], 3)
    assert pc.best([2, 9], limit=1) == (None, 0)  # below min_tokens
    assert pc.clear() == [1, 2, 3] and pc.stats.invalidations == 3


@torch.inference_mode()
def test_copy_prefix_drops_padding_holes_exactly(model):
    """A right-padded slot (holes after its prompt, then decoded tokens) copied to another slot
    continues exactly like a fresh slot prefilled with the same real tokens."""
    cfg = model.cfg
    cache = KVCache(cfg, 3, 64)
    ids = torch.tensor([[5, 6, 7, 0, 0], [9, 8, 7, 6, 5]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    model(ids, attention_mask=mask, cache=cache, slot_ids=torch.tensor([0, 1]))
    model(torch.tensor([[11], [12]]), cache=cache, slot_ids=torch.tensor([0, 1]))
    assert int(cache.cursor[0]) == 6 and int(cache.seen[0]) == 4  # two holes in slot 0
    cells = cache.copy_prefix(0, 2, 4)
    assert cells.tolist() == [0, 1, 2, 5]
    assert int(cache.cursor[2]) == 4 and bool(cache.valid[2, :4].all())
    fresh = KVCache(cfg, 1, 64)
    model(torch.tensor([[5, 6, 7, 11]]), cache=fresh, slot_ids=torch.tensor([0]))
    got = model(torch.tensor([[13]]), cache=cache, slot_ids=torch.tensor([2]))[0, -1]
    want = model(torch.tensor([[13]]), cache=fresh, slot_ids=torch.tensor([0]))[0, -1]
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    cache.copy_prefix(0, 0, 4)  # in place: compacted, same continuation
    got0 = model(torch.tensor([[13]]), cache=cache, slot_ids=torch.tensor([0]))[0, -1]
    assert torch.allclose(got0, want, atol=1e-5)
    with pytest.raises(ValueError):
        cache.copy_prefix(1, 2, 99)


@pytest.mark.parametrize("fast_path", [True, False])
def test_multi_turn_same_tokens_and_history_not_prefilled(model, tok, fast_path):
    on, off = engines(model, tok, max_batch=4, fast_path=fast_path)
    a_outs, b_outs = conversation(on, off, tok)
    for (_, a), b in zip(a_outs, b_outs, strict=True):
        assert a.token_ids == b.token_ids and len(a.token_ids) == 12
        assert b.cached_tokens == 0
    assert a_outs[0][1].cached_tokens == 0
    for (prev, pa), (_, a) in zip(a_outs, a_outs[1:], strict=False):
        # the whole previous turn (prompt + answer but its last, never fed, token) is reused
        assert a.cached_tokens == len(prev) + len(pa.token_ids) - 1
    s = on.prefix_stats()
    assert s["enabled"] and s["lookups"] == 4 and s["hits"] == 3 and s["adopted"] == 3
    saved = sum(a.cached_tokens for _, a in a_outs)
    assert s["reused_tokens"] == saved
    t_on, t_off = on.stats()["totals"], off.stats()["totals"]
    assert t_on["prompt_tokens"] == t_off["prompt_tokens"]
    assert t_on["prefill_tokens"] == t_off["prefill_tokens"] - saved
    assert off.prefix_stats() == {"enabled": False}
    assert int(off.cache.valid.sum()) == 0  # off: retired slots are emptied as before


def test_batched_shared_system_prompt_same_tokens(model, tok):
    """Concurrent requests sharing a system prompt: copied from a cached entry (which stays),
    right-padded group prefill of the rests, batched decode; same tokens as without."""
    on, off = engines(model, tok, max_batch=6)
    first = SYSTEM + "User: warm the cache."
    assert on.generate(first, GREEDY).token_ids == off.generate(first, GREEDY).token_ids
    prompts = [SYSTEM + f"User: question {i}" + " with more words" * i for i in range(5)]
    a = on.generate_batch(prompts, GREEDY)
    b = off.generate_batch(prompts, GREEDY)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    n_sys = len(tok.encode(SYSTEM + "User: "))
    assert all(x.cached_tokens >= n_sys - 1 for x in a)  # every one reused the system prompt
    s = on.prefix_stats()
    assert s["copied"] >= 1 and s["hits"] == 5
    assert on.stats()["totals"]["batched_steps"] > 0


def test_grpo_group_prefilled_once_and_seeded_samples_unchanged(model, tok):
    on, off = engines(model, tok, max_batch=8)
    prompt = tok.encode(SYSTEM + "Solve: 17 * 3 = ?")
    params = [
        SamplingParams(max_tokens=10, temperature=1.0, seed=s, ignore_eos=True) for s in range(8)
    ]
    a, b = on.generate_batch([prompt] * 8, params), off.generate_batch([prompt] * 8, params)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert len({tuple(x.token_ids) for x in a}) > 1  # really different samples
    s = on.prefix_stats()
    assert s["shared_in_batch"] == 7 and s["shared_logits"] == 7
    assert on.stats()["totals"]["prefill_tokens"] == len(prompt)
    assert off.stats()["totals"]["prefill_tokens"] == 8 * len(prompt)
    assert [x.cached_tokens for x in a] == [0] + [len(prompt)] * 7


def test_reuse_from_running_request_and_eviction_under_pressure(model, tok):
    """Two slots, a loop thread and many requests arriving while others run: prefixes are
    copied from running requests and cached entries, entries are evicted for new requests, and
    no running request's output changes."""
    on, off = engines(model, tok, max_batch=2)
    long = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    base = SYSTEM + "User: tell me a long story about a cat"
    want = {}
    prompts = [base] + [base + f" and {w}" for w in ("a dog", "a bird", "a fish")]
    prompts += [f"Unrelated prompt number {i}, nothing shared at all." for i in range(3)]
    for p in prompts:
        want[p] = off.generate(p, long).token_ids
    on.start()
    try:
        h0 = on.submit(prompts[0], long)
        while not h0.done() and not h0._events:
            time.sleep(0.001)
        handles = [(p, on.submit(p, long)) for p in prompts[1:]]
        got = {prompts[0]: h0.result(timeout=120)}
        got.update({p: h.result(timeout=120) for p, h in handles})
    finally:
        on.stop()
    for p in prompts:
        assert got[p].token_ids == want[p], p
    s = on.prefix_stats()
    assert s["from_running"] >= 1 and s["evictions"] >= 1, s
    assert s["entries"] <= 2


def test_planned_copy_source_is_pinned_against_eviction(model, tok):
    """One admission: A copies part of cached entry E; B needs a slot and the only other
    entry is gone. Without the pin B would evict E before A's copy; with it B waits a step."""
    on, off = engines(model, tok, max_batch=2)
    e_prompt = SYSTEM + "User: first conversation here"
    f_prompt = "Another conversation, unrelated, longer than eight tokens."
    on.generate(f_prompt, GREEDY)  # entry F (older)
    on.generate(e_prompt, GREEDY)  # entry E (newer), both slots are entries now
    assert on.prefix_stats()["entries"] == 2
    a_prompt = SYSTEM + "User: second conversation"  # shares only part of E: a copy
    b_prompt = "Yet another prompt with nothing in common at all."
    a, b = on.generate_batch([a_prompt, b_prompt], GREEDY)
    assert a.token_ids == off.generate(a_prompt, GREEDY).token_ids
    assert b.token_ids == off.generate(b_prompt, GREEDY).token_ids
    assert a.cached_tokens == common_prefix(tok.encode(a_prompt), tok.encode(e_prompt))
    assert a.cached_tokens >= 8
    s = on.prefix_stats()
    assert s["copied"] == 1 and s["evictions"] >= 1


def test_sync_weights_invalidates_cached_kv(tok):
    m = build_model(get_preset("thinking-micro"), seed=1).eval()
    on = Engine(m, tok, max_batch=2, seed=0)
    prompt = tok.encode(SYSTEM + "User: hi")
    first = on.generate(prompt, GREEDY)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    on.sync_weights()
    s = on.prefix_stats()
    assert s["entries"] == 0 and s["invalidations"] == 1
    nxt = prompt + first.token_ids + tok.encode(" User: again")
    got = on.generate(nxt, GREEDY)
    want = Engine(m, tok, max_batch=2, seed=0, prefix_cache=False).generate(nxt, GREEDY)
    assert got.cached_tokens == 0 and got.token_ids == want.token_ids


def test_recorded_routes_of_reused_tokens(model, tok):
    """RL routing replay: a request whose prompt KV was reused (copied from a cached entry, or
    from a group member's prefill) reports the routes that produced that KV, i.e. the routes a
    full prefill records (RL's engine: record_routing=True)."""
    on, off = engines(model, tok, max_batch=4, record_routing=True)
    sp = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True, policy_logprobs=True)
    prompt = tok.encode(SYSTEM + "User: route me")
    on.generate(prompt, sp)
    nxt = prompt[:-2] + tok.encode(" elsewhere")  # part of the entry: copied to another slot
    a2, b2 = on.generate(nxt, sp), off.generate(nxt, sp)
    assert a2.cached_tokens == len(prompt) - 2 and on.prefix_stats()["copied"] == 1
    group = tok.encode("A group prompt, sampled four times for GRPO.")
    outs = [e.generate_batch([group] * 4, sp) for e in (on, off)]
    assert on.prefix_stats()["shared_logits"] == 3
    for a, b in [(a2, b2), *zip(*outs, strict=True)]:
        assert a.token_ids == b.token_ids
        assert a.routes is not None and a.routes.shape == b.routes.shape
        assert torch.equal(a.routes, b.routes)
        lp_a, lp_b = torch.tensor(a.policy_logprobs), torch.tensor(b.policy_logprobs)
        assert torch.allclose(lp_a, lp_b, atol=1e-4)


def test_lookup_speculation_with_cache_same_tokens(model, tok):
    from hillclimb.serve.drafters import LookupConfig

    # a prior that drafts from the first step (the default one is gated: test_engine_lookup)
    on, off = engines(model, tok, max_batch=2, drafter="lookup", lookup=LookupConfig(prior=0.8))
    a_outs, b_outs = conversation(on, off, tok, turns=3)
    assert [a.token_ids for _, a in a_outs] == [b.token_ids for b in b_outs]
    assert on.stats()["lookup"]["steps"] > 0 and on.prefix_stats()["hits"] == 2


def test_off_switch_constructor_and_environment(model, tok, monkeypatch):
    off = Engine(model, tok, max_batch=2, prefix_cache=False)
    assert off.prefix is None and off.stats()["prefix"] == {"enabled": False}
    monkeypatch.setenv("HILLCLIMB_PREFIX_CACHE", "0")
    assert Engine(model, tok, max_batch=2).prefix is None
    monkeypatch.setenv("HILLCLIMB_PREFIX_CACHE", "1")
    assert Engine(model, tok, max_batch=2).prefix is not None
    short = Engine(model, tok, max_batch=2, prefix_min_tokens=10_000)
    short.generate(SYSTEM, GREEDY)
    assert short.prefix_stats()["entries"] == 0 and int(short.cache.valid.sum()) == 0


@pytest.mark.slow
def test_compiled_engine_with_cache_same_tokens(tok):
    m = build_model(get_preset("thinking-micro"), seed=2).eval()
    on = Engine(m, tok, max_batch=2, max_len=256, seed=0, compile=True)
    off = Engine(m, tok, max_batch=2, max_len=256, seed=0, compile=False, prefix_cache=False)
    assert on.compiled, on.compile_error
    a_outs, b_outs = conversation(on, off, tok, turns=3)
    assert [a.token_ids for _, a in a_outs] == [b.token_ids for b in b_outs]
    prompts = [SYSTEM + f"User: {i}" for i in range(2)]
    assert [x.token_ids for x in on.generate_batch(prompts, GREEDY)] == [
        x.token_ids for x in off.generate_batch(prompts, GREEDY)
    ]
    assert on.prefix_stats()["hits"] >= 3 and on.compile_error is None
