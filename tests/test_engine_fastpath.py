"""Fast-path decode variants and batched sampling: same function as the reference, exactly."""

from __future__ import annotations

import pytest
import torch

from hillclimb.model.config import get_preset
from hillclimb.model.kv_cache import KVCache
from hillclimb.model.transformer import build_model
from hillclimb.serve.fastpath import FastForward
from hillclimb.serve.sampling import sample_rows


@pytest.fixture(scope="module")
def model():
    # dense layer + shared expert + 8 routed experts: every branch of the FFN; 6 + 2 = 8 q/kv
    # heads, the length of the compile warm-up's scratch cache (a duck-sizing trap: see _warm)
    cfg = get_preset("thinking-micro").replace(
        n_experts=8,
        n_shared_experts=1,
        n_dense_layers=1,
        n_layers=3,
        d_dense=96,
        n_heads=6,
        n_kv_heads=2,
    )
    return build_model(cfg, seed=5).eval()


@torch.inference_mode()
def test_decode_one_matches_model_forward(model):
    ff = FastForward(model, 64)
    ids = torch.randint(0, 256, (1, 24), generator=torch.Generator().manual_seed(1))
    full = model(ids)
    cache = KVCache(model.cfg, 3, 64)
    slot = 2  # not slot 0: the step must read its own slot's cells
    model(ids[:, :8], cache=cache, slot_ids=torch.tensor([slot]))
    got = torch.cat([ff.decode_one(int(ids[0, t]), cache, slot) for t in range(8, 24)])
    assert torch.allclose(got, full[0, 8:24], atol=1e-5), (got - full[0, 8:24]).abs().max()
    assert int(cache.cursor[slot]) == 24 and int(cache.seen[slot]) == 24
    assert int(cache.cursor[0]) == 0 and not bool(cache.valid[0].any())


@torch.inference_mode()
def test_padded_prefill_matches_model_forward(model):
    """Batched prefill of prompts of different lengths (right padding) through the lean
    forward: each row's logits at its last real token, the cache's cursors, positions, validity
    and K/V as the model's own forward leaves them, and the next decode step agrees."""
    ff = FastForward(model, 64)
    ids = torch.randint(0, 256, (3, 10), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    caches = [KVCache(model.cfg, 4, 64) for _ in range(2)]
    slots = torch.tensor([1, 2, 3])
    h = model(ids, attention_mask=mask, cache=caches[0], slot_ids=slots, return_hidden=True)
    want = model.lm_head(h[torch.arange(3), mask.sum(dim=1) - 1])
    for rng in ((1, 4), None):
        caches[1].reset()
        got = ff(ids, caches[1], slots, slot_range=rng, attention_mask=mask)[:, -1]
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    for name in ("cursor", "seen", "valid"):
        assert torch.equal(getattr(caches[0], name), getattr(caches[1], name)), name
    for a, b in zip(caches[0].k + caches[0].v, caches[1].k + caches[1].v, strict=True):
        v = caches[0].valid[:, None, :, None].expand_as(a)
        assert torch.allclose(a[v], b[v], atol=1e-5)
    nxt = torch.tensor([[5], [6], [7]])
    a, b = (ff(nxt, c, slots, slot_range=(1, 4))[:, -1] for c in caches)
    assert torch.allclose(a, b, atol=1e-5)


@torch.inference_mode()
def test_slot_range_view_equals_gather(model):
    ff = FastForward(model, 64)
    ids = torch.randint(0, 256, (3, 20), generator=torch.Generator().manual_seed(2))
    caches = [KVCache(model.cfg, 5, 64) for _ in range(2)]
    slots = torch.tensor([1, 2, 3])
    outs = []
    for use_range, cache in zip((False, True), caches, strict=True):
        model(ids[:, :6], cache=cache, slot_ids=slots)
        steps = [
            ff(ids[:, t : t + 1], cache, slots, slot_range=(1, 4) if use_range else None)
            for t in range(6, 20)
        ]
        outs.append(torch.cat(steps, dim=1))
    # same arithmetic, but a slot range reads views where an index list reads gathered copies:
    # other memory layouts may pick other kernels, so not bitwise
    assert torch.allclose(outs[0], outs[1], atol=1e-6, rtol=0)
    full = model(ids)[:, -1]
    assert torch.allclose(outs[1][:, -1], full, atol=1e-5)


def test_sample_rows_exact_distribution_and_own_streams():
    p = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0]])
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    n = 6000
    draws = [sample_rows(p, [g1, g2]) for _ in range(n)]
    counts = torch.bincount(torch.tensor([d[0] for d in draws]), minlength=5).double() / n
    assert counts[1] == 0 and counts[4] == 0  # zero-probability tokens never drawn
    assert (counts - p[0].double()).abs().max() < 0.03
    assert all(d[1] == 3 for d in draws)
    # row 0's stream does not depend on what shares the batch
    a = torch.Generator().manual_seed(9)
    b = torch.Generator().manual_seed(9)
    alone = [sample_rows(p[:1], [a])[0] for _ in range(50)]
    other = torch.Generator().manual_seed(3)
    mixed = [sample_rows(p, [b, other])[0] for _ in range(50)]
    assert alone == mixed


@pytest.mark.slow
@torch.inference_mode()
def test_compiled_step_equals_eager_and_engine_output(model):
    """The inductor-compiled one-token step computes the eager step's logits over many
    positions (dense layer, shared expert, selection bias: every branch of its FFN), and an
    engine with `compile=True` decodes the same greedy tokens and logprobs as one without."""
    from hillclimb.serve.engine import Engine, SamplingParams
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    biased = build_model(model.cfg, seed=5).eval()
    for layer in biased.layers:
        if layer.is_moe:
            layer.mlp.gate.expert_bias.copy_(torch.linspace(-0.05, 0.05, model.cfg.n_experts))
    ff, ref = FastForward(biased, 64), FastForward(biased, 64)
    assert ff.enable_compile(multi=True), ff.compile_error
    caches = [KVCache(biased.cfg, 2, 64) for _ in range(2)]
    ids = torch.randint(0, 256, (30,), generator=torch.Generator().manual_seed(4)).tolist()
    for f, c in zip((ff, ref), caches, strict=True):
        f.extend_one(ids[:5], c, 1)
    for t in ids[5:15]:
        a, b = ff.decode_one(t, caches[0], 1), ref.decode_one(t, caches[1], 1)
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    ref._compiled = None  # the reference stays eager (it never compiled)
    for lo, hi, last in ((15, 18, False), (18, 23, True), (23, 30, False)):  # T = 3, 5, 7
        a = ff.extend_one(ids[lo:hi], caches[0], 1, last_only=last)
        b = ref.extend_one(ids[lo:hi], caches[1], 1, last_only=last)
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert ff._compiled_multi and ff.compile_error is None  # no silent fallback to eager
    for a, b in zip(caches[0].k + caches[0].v, caches[1].k + caches[1].v, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert int(caches[0].cursor[1]) == 30 and not bool(caches[0].valid[0].any())
    outs = []
    for comp in (True, False):
        eng = Engine(biased, bytelevel_tokenizer(), max_batch=2, max_len=64, compile=comp, seed=0)
        assert eng.compiled is comp
        sp = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True, logprobs=2)
        outs.append(eng.generate(ids[:6], sp))
        assert eng.fast.compile_error is None and (eng.fast._compiled is not None) is comp
    assert outs[0].token_ids == outs[1].token_ids and len(outs[0].token_ids) == 20
    lp = [[e["logprob"] for e in o.logprobs] for o in outs]
    assert torch.allclose(torch.tensor(lp[0]), torch.tensor(lp[1]), atol=1e-4)


@pytest.mark.slow
@torch.inference_mode()
def test_compiled_step_not_specialised_to_warmup_cache_length():
    """Regression: thinking-tiny's shapes (8 experts = the warm-up cache's 8 cells) once made
    the compiled graph assume 8 cache cells, so every real step failed (then fell back to
    eager). The step must run compiled on a cache of another length."""
    m = build_model(get_preset("thinking-tiny").replace(n_layers=2), seed=0).eval()
    ff, ref = FastForward(m, 214), FastForward(m, 214)
    assert ff.enable_compile(), ff.compile_error
    caches = [KVCache(m.cfg, 1, 214) for _ in range(2)]
    for f, c in zip((ff, ref), caches, strict=True):
        f.extend_one(list(range(10, 40)), c, 0)
    for t in range(50, 60):
        a, b = ff.decode_one(t, caches[0], 0), ref.decode_one(t, caches[1], 0)
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    # a cache of another length (static shapes in the graph): compiled again, not an error
    other = KVCache(m.cfg, 2, 100)
    ref.extend_one(list(range(10, 40)), other, 1)
    a = ff.decode_one(77, other, 1)
    caches[1].truncate(0, 30)
    assert torch.allclose(a, ref.decode_one(77, caches[1], 0), atol=1e-5)
    assert ff._compiled is not None and ff.compile_error is None


@pytest.mark.slow
@torch.inference_mode()
def test_compiled_batched_step_equals_eager(model):
    """The compiled batched one-token step (continuous batching) computes the eager batched
    step's logits and leaves the same cache state: rows at different lengths, right-padding
    holes from a batched prefill, every branch of the FFN (dense layer, shared expert,
    selection bias), batches of several sizes at several slot offsets without recompiling,
    and an engine decodes the same tokens with and without it."""
    from torch._dynamo.utils import counters

    from hillclimb.serve.engine import Engine, SamplingParams
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    biased = build_model(model.cfg, seed=6).eval()
    for layer in biased.layers:
        if layer.is_moe:
            layer.mlp.gate.expert_bias.copy_(torch.linspace(0.05, -0.05, model.cfg.n_experts))
    ff, ref = FastForward(biased, 80), FastForward(biased, 80)
    caches = [KVCache(biased.cfg, 6, 80) for _ in range(2)]
    assert ff.enable_compile_batch(caches[0]), ff.compile_error
    g = torch.Generator().manual_seed(8)
    ids = torch.randint(0, 256, (6, 12), generator=g)
    mask = torch.ones(6, 12, dtype=torch.long)
    for b in range(6):
        mask[b, 12 - b :] = 0  # right padding: rows 1..5 keep masked holes in their cells
    for c in caches:
        biased(ids, attention_mask=mask, cache=c, slot_ids=torch.arange(6))
    graphs = counters["stats"]["unique_graphs"]
    for a, B in ((0, 6), (1, 4), (2, 2), (0, 5), (3, 3), (0, 6)):
        for _ in range(2):
            toks = torch.randint(0, 256, (B,), generator=g).tolist()
            got = ff.decode_batch(toks, caches[0], a)
            want = ref.decode_batch(toks, caches[1], a)  # never compiled: the eager step
            assert got.shape == (B, biased.cfg.vocab_size)
            assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
            for name in ("cursor", "seen", "valid"):
                assert torch.equal(getattr(caches[0], name), getattr(caches[1], name)), name
    assert counters["stats"]["unique_graphs"] == graphs, "a batch size or offset recompiled"
    assert ff.compiled_batch and ff.compile_error is None  # no silent fallback to eager
    for x, y in zip(caches[0].k + caches[0].v, caches[1].k + caches[1].v, strict=True):
        assert torch.allclose(x, y, atol=1e-5)
    outs = []
    prompts = [ids[b, : 3 + b].tolist() for b in range(4)]
    for comp in (True, False):
        eng = Engine(biased, bytelevel_tokenizer(), max_batch=4, max_len=64, compile=comp, seed=0)
        assert eng.compiled_batch is comp
        sp = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
        outs.append([o.token_ids for o in eng.generate_batch(prompts, sp)])
        totals = eng.stats()["totals"]
        assert totals["batched_compiled_steps"] == (totals["batched_steps"] if comp else 0)
        assert totals["batched_steps"] > 0
    assert outs[0] == outs[1]


def test_two_model_structures_compile_side_by_side_in_one_process():
    """Compiled graphs keep only tensor guards, so a graph traced for one model must never be
    replayed for another of a different structure (here: a selection-bias tensor vs None, same
    shapes). Both engines compile, and each matches its own eager engine."""
    import dataclasses

    from hillclimb.serve.engine import Engine, SamplingParams
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    base = get_preset("thinking-micro")
    tok = bytelevel_tokenizer()
    sp = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    for cfg in (base, dataclasses.replace(base, bias_balancing=True)):
        m = build_model(cfg, seed=3).eval()
        if cfg.bias_balancing:
            with torch.no_grad():
                for mod in m.modules():
                    if getattr(mod, "expert_bias", None) is not None:
                        mod.expert_bias.uniform_(-0.5, 0.5)
        comp = Engine(m, tok, max_batch=2, seed=0, compile=True)
        if not comp.compiled and not cfg.bias_balancing:  # the first model: is there a compiler?
            pytest.skip(f"no compiler here: {comp.compile_error}")
        # the second structure must compile too (it failed when graphs were shared)
        assert comp.compiled and comp.compiled_batch, comp.compile_error
        eager = Engine(m, tok, max_batch=2, seed=0)
        for p in ("def f(x):", "Hello"):
            assert comp.generate(p, sp).token_ids == eager.generate(p, sp).token_ids
        assert comp.compile_error is None
