"""Engine core: greedy correctness vs a cache-free reference, batching, seeds, stops, logprobs,
streaming, cancellation, error isolation, validation, reasoning budget (micro models only)."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from hillclimb.errors import HillclimbError
from hillclimb.model.checkpoint import save_checkpoint
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.detok import IncrementalDetokenizer, StopMatcher
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.tokenizer.io import bytelevel_tokenizer

REAL = bytelevel_tokenizer().vocab_size  # the model's rows beyond it are padding
PROMPTS = ["Hello world", "def f(x):\n    return", "a", "The quick brown fox jumps over"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny decode steps are latency-bound: one intra-op thread is much faster on a busy CPU.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine") / "thinking"
    save_checkpoint(build_model(get_preset("thinking-micro"), seed=0), d)
    return d


@pytest.fixture(scope="module")
def engine(ckpt):
    return Engine.from_checkpoint(ckpt, device="cpu", max_batch=8, seed=0)


@torch.no_grad()
def reference_greedy(model, ids, n):
    x = list(ids)
    out = []
    for _ in range(n):
        t = int(model(torch.tensor([x]))[0, -1, :REAL].argmax())  # padded ids are no tokens
        out.append(t)
        x.append(t)
    return out


def test_greedy_matches_cache_free_reference(engine):
    for p in PROMPTS[:2]:
        o = engine.generate(p, SamplingParams(max_tokens=24, temperature=0, ignore_eos=True))
        ids = engine.tokenizer.encode(p)
        assert o.token_ids == reference_greedy(engine.model, ids, 24)
        assert o.finish_reason == "length" and o.completion_tokens == 24
        assert o.prompt_tokens == len(ids)


def test_batched_equals_single_and_seeds_ignore_neighbours(engine):
    sp = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True)
    batch = engine.generate_batch(PROMPTS, sp)  # different lengths: right-padded prefill
    for p, b in zip(PROMPTS, batch, strict=True):
        assert b.token_ids == engine.generate(p, sp).token_ids
    alone = engine.generate("abc", SamplingParams(max_tokens=20, seed=7, ignore_eos=True))
    mixed = engine.generate_batch(
        ["zz", "abc", "longer neighbour prompt"],
        [SamplingParams(max_tokens=20, seed=s, ignore_eos=True, top_p=0.9) for s in (1, 7, 3)][:1]
        + [SamplingParams(max_tokens=20, seed=7, ignore_eos=True)]
        + [SamplingParams(max_tokens=5, seed=3, top_k=5)],
    )
    assert mixed[1].token_ids == alone.token_ids
    other = engine.generate("abc", SamplingParams(max_tokens=20, seed=8, ignore_eos=True))
    assert other.token_ids != alone.token_ids


def test_top_k_restricts_support(engine):
    ids = engine.tokenizer.encode("Hello")
    with torch.no_grad():
        logits = engine.model(torch.tensor([ids]))[0, -1, :REAL]
    top3 = set(torch.topk(logits, 3).indices.tolist())
    firsts = {
        engine.generate("Hello", SamplingParams(max_tokens=1, seed=s, top_k=3)).token_ids[0]
        for s in range(25)
    }
    assert firsts <= top3 and len(firsts) >= 2


def test_stop_token_ids_and_ignore_eos(engine):
    tok = engine.tokenizer
    stop_ids = set(tok.stop_ids)
    hit = None
    for seed in range(40):  # random weights emit a stop id now and then; find a seed that does
        o = engine.generate("x", SamplingParams(max_tokens=200, seed=seed, temperature=1.5))
        if o.finish_reason == "stop":
            hit = (seed, o)
            break
    assert hit is not None, "no seed produced EOS in 40 tries"
    seed, o = hit
    assert o.token_ids[-1] in stop_ids and all(t not in stop_ids for t in o.token_ids[:-1])
    assert tok.decode([o.token_ids[-1]]) not in o.text
    cont = engine.generate(
        "x",
        SamplingParams(
            max_tokens=len(o.token_ids) + 5, seed=seed, temperature=1.5, ignore_eos=True
        ),
    )
    assert cont.token_ids[: len(o.token_ids)] == o.token_ids
    assert cont.finish_reason == "length"
    # explicit stop_token_ids are honoured even with ignore_eos
    g = engine.generate(
        "Hello world", SamplingParams(max_tokens=20, temperature=0, ignore_eos=True)
    )
    target = g.token_ids[5]
    first = g.token_ids.index(target)
    s = engine.generate(
        "Hello world",
        SamplingParams(max_tokens=20, temperature=0, ignore_eos=True, stop_token_ids=[target]),
    )
    assert s.finish_reason == "stop" and s.token_ids == g.token_ids[: first + 1]


def test_stop_string_split_across_tokens_never_streamed(engine):
    engine.start()
    try:
        sp = SamplingParams(max_tokens=60, temperature=0, ignore_eos=True)
        full = engine.generate("The quick brown fox jumps over", sp).text
        clean = [i for i in range(10, len(full) - 3) if "\ufffd" not in full[i : i + 3]]
        assert clean, f"no clean 3-char window in {full!r}"
        stop = full[clean[0] : clean[0] + 3]
        cut = full.find(stop)
        sp2 = SamplingParams(
            max_tokens=60, temperature=0, ignore_eos=True, stop=[stop, "\x00never"]
        )
        h = engine.submit("The quick brown fox jumps over", sp2)
        streamed = ""
        for ev in h:
            streamed += ev.text
            assert stop not in streamed
        out = h.result()
        assert out.finish_reason == "stop" and out.text == full[:cut] == streamed
    finally:
        engine.stop()


def test_stop_matcher_and_utf8_detok():
    m = StopMatcher(["END", "xy"])
    assert m.find("abcEN", 0) is None and m.safe_end("abcEN") == 3
    assert m.find("abcEND!", 3) == 3 and m.safe_end("abx") == 2
    tok = bytelevel_tokenizer()
    text = "héllo 😀 wörld ✓"
    ids = tok.encode(text)
    assert len(ids) > len(text)  # multi-byte characters span several tokens
    d = IncrementalDetokenizer(tok.decode)
    deltas = [d.add(t) for t in ids] + [d.flush()]
    assert all("\ufffd" not in x for x in deltas)
    assert "".join(deltas) == text
    # an invalid byte sequence is eventually emitted instead of stalling the stream
    d2 = IncrementalDetokenizer(tok.decode)
    bad = [0xF0] * 6 + list(b"ok")
    out = "".join(d2.add(t) for t in bad) + d2.flush()
    assert out.endswith("ok") and "\ufffd" in out


def test_logprobs_match_reference(engine):
    o = engine.generate(
        "Hello", SamplingParams(max_tokens=4, temperature=0, logprobs=3, ignore_eos=True)
    )
    assert o.logprobs is not None and len(o.logprobs) == 4
    ids = engine.tokenizer.encode("Hello") + o.token_ids
    with torch.no_grad():
        lp = torch.log_softmax(engine.model(torch.tensor([ids]))[0, :, :REAL].float(), -1)
    n = len(engine.tokenizer.encode("Hello"))
    for i, e in enumerate(o.logprobs):
        assert e["token_id"] == o.token_ids[i]
        assert abs(e["logprob"] - float(lp[n - 1 + i, e["token_id"]])) < 1e-4
        assert len(e["top_logprobs"]) == 3
        assert e["top_logprobs"][0]["token_id"] == e["token_id"]  # greedy picks the top one
        vals = [t["logprob"] for t in e["top_logprobs"]]
        assert vals == sorted(vals, reverse=True)


def test_streaming_sync_async_and_continuous_batching(engine):
    sp = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True)
    expected = {p: engine.generate(p, sp).token_ids for p in PROMPTS}
    small = Engine(engine.model, engine.tokenizer, max_batch=2, seed=0)  # fewer slots than requests
    small.start()
    try:
        handles = []
        for p in PROMPTS:
            handles.append((p, small.submit(p, sp)))
            time.sleep(0.01)  # join at different steps
        for p, h in handles:
            evs = list(h)
            out = h.result(timeout=60)
            assert out.token_ids == expected[p]
            assert [t for ev in evs for t in ev.token_ids] == out.token_ids
            assert "".join(ev.text for ev in evs) == out.text
            assert evs[-1].finished and evs[-1].finish_reason == "length"
            assert sum(ev.finished for ev in evs) == 1

        async def consume():
            h = small.submit("async", sp)
            evs = [ev async for ev in h.aiter()]
            return evs, h.result()

        evs, out = asyncio.run(consume())
        assert [t for ev in evs for t in ev.token_ids] == out.token_ids
        st = small.stats()
        assert st["running"] == 0 and st["queue_depth"] == 0
        assert st["totals"]["finished"] == len(PROMPTS) + 1
    finally:
        small.stop()


def test_cancel_frees_slot_and_others_continue(engine):
    e = Engine(engine.model, engine.tokenizer, max_batch=2, seed=0)
    e.start()
    try:
        long = e.submit("cancel me", SamplingParams(max_tokens=400, ignore_eos=True, seed=1))
        other = e.submit("keep me", SamplingParams(max_tokens=20, ignore_eos=True, seed=2))
        it = iter(long)
        next(it)
        long.cancel()
        out = long.result(timeout=30)
        assert out.finish_reason == "cancelled" and out.completion_tokens < 400
        assert other.result(timeout=30).finish_reason == "length"
        third = e.submit("after", SamplingParams(max_tokens=5, seed=3))  # a freed slot is reused
        assert third.result(timeout=30).completion_tokens >= 1
        assert e.stats()["totals"]["cancelled"] == 1
    finally:
        e.stop()


def test_failure_in_one_request_does_not_kill_the_loop(engine, monkeypatch):
    e = Engine(engine.model, engine.tokenizer, max_batch=4, seed=0)
    real = e._sample

    def flaky(r, logits):
        if r.request_id == "boom" and len(r.out_ids) >= 3:
            raise RuntimeError("injected failure")
        return real(r, logits)

    real_many = e._sample_many

    def flaky_many(rs, logits):  # the batched decode path samples groups of rows at once
        if any(r.request_id == "boom" and len(r.out_ids) >= 3 for r in rs):
            raise RuntimeError("injected failure")
        return real_many(rs, logits)

    monkeypatch.setattr(e, "_sample", flaky)
    monkeypatch.setattr(e, "_sample_many", flaky_many)
    e.start()
    try:
        sp = SamplingParams(max_tokens=15, ignore_eos=True, seed=4)
        good = e.submit("fine", sp)
        bad = e.submit("explode", sp, request_id="boom")
        out = bad.result(timeout=30)
        assert out.finish_reason == "error" and "injected failure" in out.error
        assert out.completion_tokens == 3
        assert good.result(timeout=30).finish_reason == "length"
        assert e.submit("later", sp).result(timeout=30).finish_reason == "length"
        assert e.stats()["loop_alive"] and e.stats()["totals"]["errors"] == 1
    finally:
        e.stop()


def test_validation_errors_before_queueing(engine):
    ctx = engine.max_context
    bad = [
        ("x" * ctx, SamplingParams(max_tokens=1)),
        ("x" * 10, SamplingParams(max_tokens=ctx)),
        ("", SamplingParams()),
        ("x", SamplingParams(max_tokens=0)),
        ("x", SamplingParams(temperature=-1)),
        ("x", SamplingParams(top_p=-0.1)),  # (top_p=0 is valid: only the most likely token)
        ("x", SamplingParams(top_p=1.5)),
        ("x", SamplingParams(top_k=-2)),
        ("x", SamplingParams(logprobs=99)),
        ("x", SamplingParams(reasoning_effort="extreme")),
        ("x", SamplingParams(thinking_token_budget=-1)),
        ("x", SamplingParams(stop=[""])),
        ([1, 2, 10_000], SamplingParams()),
        ("x", SamplingParams(speculative=True)),  # no draft model
    ]
    for prompt, sp in bad:
        with pytest.raises(HillclimbError):
            engine.generate(prompt, sp)
    with pytest.raises(HillclimbError, match="start"):
        Engine(engine.model, engine.tokenizer, max_batch=1).submit("x", SamplingParams())
    assert engine.stats()["running"] == 0 and engine.stats()["queue_depth"] == 0
    # a KV cache bigger than the machine: refused by name before anything is allocated
    with pytest.raises(
        HillclimbError, match=r"KV cache for 100000000 batch slots .*\(--max-batch\)"
    ):
        Engine(engine.model, engine.tokenizer, max_batch=100_000_000)


def test_reasoning_budget_forces_think_end(engine):
    tok = engine.tokenizer
    te = tok.token_id("</think>")
    prompt = "<|im_start|>assistant\n<think>\n"
    o = engine.generate(
        prompt,
        SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, thinking_token_budget=5),
    )
    free = o.token_ids[:5]
    assert te not in free
    assert o.token_ids[5:8] == [te, *tok.encode("\n\n")]
    assert o.reasoning_tokens == 6
    assert o.reasoning_text == tok.decode(free).strip("\n")
    assert o.content_text == tok.decode(o.token_ids[8:])
    assert "</think>" in o.text and o.text.index("</think>") == len(tok.decode(free))
    # streamed reasoning/content flags
    engine.start()
    try:
        h = engine.submit(
            prompt,
            SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, reasoning_effort="low"),
        )
        evs = list(h)
        out = h.result()
    finally:
        engine.stop()
    assert engine.max_context // 8 == 64  # low effort on a 512-token model: min(256, 512/8)
    te_pos = out.token_ids.index(te) if te in out.token_ids else len(out.token_ids)
    assert te_pos <= 64  # the model may close the block itself; the budget caps it at 64
    assert out.reasoning_tokens == min(te_pos + 1, len(out.token_ids))
    reasoning = "".join(ev.text for ev in evs if ev.is_reasoning)
    content = "".join(ev.text for ev in evs if not ev.is_reasoning)
    assert reasoning.strip("\n") == out.reasoning_text
    assert content.lstrip("\n") == out.content_text
    seen_ids = [t for ev in evs for t in ev.token_ids]
    assert seen_ids == out.token_ids
    # with the checkpoint's thinking profile, low effort is a quarter of its p90 (the server's
    # mapping lives in the engine, so every caller gets it)
    engine.thinking_profile = {"p50": 10, "p90": 20}
    try:
        low = engine.generate(
            prompt,
            SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, reasoning_effort="low"),
        )
    finally:
        engine.thinking_profile = None
    te_pos = low.token_ids.index(te) if te in low.token_ids else len(low.token_ids)
    assert te_pos <= 5 and low.reasoning_tokens <= 6


@torch.no_grad()
def test_fast_path_matches_model_forward():
    from hillclimb.model.kv_cache import KVCache
    from hillclimb.serve.fastpath import FastForward

    # 8 experts, top-2: 1-2 tokens take the GEMV loop, more the sorted expert kernels
    cfg = get_preset("thinking-micro").replace(
        n_experts=8, n_shared_experts=1, n_dense_layers=1, n_layers=3, d_dense=96
    )
    model = build_model(cfg, seed=3).eval()
    ff = FastForward(model, 128)
    ids = torch.randint(0, 256, (3, 30), generator=torch.Generator().manual_seed(0))
    full = model(ids)
    for B, T in [(1, 1), (2, 1), (3, 1), (1, 4), (3, 3)]:
        cache = KVCache(cfg, 3, 128)
        slots = torch.arange(3)[:B]
        model(ids[:B, :10], cache=cache, slot_ids=slots)
        outs = []
        for t in range(10, 22, T):
            single = int(slots[0]) if B == 1 else None
            outs.append(
                ff(
                    ids[:B, t : t + T],
                    cache,
                    slots,
                    last_only=False,
                    single_slot=single,
                    dense=single is not None,
                )
            )
        got = torch.cat(outs, dim=1)
        ref = full[:B, 10 : 10 + got.shape[1]]
        assert torch.allclose(got, ref, atol=1e-5), (B, T, (got - ref).abs().max())
        assert int(cache.seen[0]) == 22 and int(cache.cursor[0]) == 22


def test_fast_path_off_gives_same_tokens(engine):
    slow = Engine(engine.model, engine.tokenizer, max_batch=4, fast_path=False)
    sp = SamplingParams(max_tokens=20, ignore_eos=True, seed=11, top_p=0.95)
    for a, b in zip(
        slow.generate_batch(PROMPTS, sp), engine.generate_batch(PROMPTS, sp), strict=True
    ):
        assert a.token_ids == b.token_ids


def test_think_state_only_looks_at_the_current_turn():
    from hillclimb.serve.budget import ThinkState
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    earlier = tok.encode(
        "<|im_start|>assistant\n<think>\nx<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    )
    now = tok.encode("<|im_start|>assistant\n")
    assert not ThinkState.for_prompt(tok, earlier + now, None).in_think
    assert ThinkState.for_prompt(tok, now + tok.encode("<think>\n"), None).in_think
