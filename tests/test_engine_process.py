"""The engines in a child process (`hillclimb.serve.host`): same outputs as in-process engines,
streaming, cancellation, RPC (stats, router scoring), bad input refused in the parent, and a
dying or failing engine process turned into errors instead of hangs."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from _server_util import make_checkpoints, wait_for
from hillclimb.errors import HillclimbError
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.host import EngineOptions, start_engine_process


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("host"))


@pytest.fixture(scope="module")
def remote(ckpts):
    opts = EngineOptions(max_batch=4, device="cpu", compile=False)
    engines, spec_on = start_engine_process(ckpts["thinking"], ckpts["code-flash"], opts)
    assert spec_on and set(engines) == {"thinking", "code-flash"}
    yield engines
    engines["thinking"].stop()


def test_same_tokens_as_in_process_engine(remote, ckpts):
    # the served code-flash heals completion prompts by default (EngineOptions)
    local = Engine.from_checkpoint(ckpts["code-flash"], device="cpu", max_batch=4,
                                   token_healing=EngineOptions().flash_token_healing)  # fmt: skip
    prompts = ["def add(a, b):", "hello", "x = [1, 2"]
    sp = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True, logprobs=1)
    want = local.generate_batch(prompts, sp)
    handles = [remote["code-flash"].submit(p, sp) for p in prompts]
    got = [h.result(timeout=60) for h in handles]
    for g, w in zip(got, want, strict=True):
        assert g.token_ids == w.token_ids and g.text == w.text
        assert g.finish_reason == "length" and g.completion_tokens == 12
        lp = torch.tensor([e["logprob"] for e in g.logprobs])
        assert torch.allclose(lp, torch.tensor([e["logprob"] for e in w.logprobs]), atol=1e-4)
    # seeded sampling reproduces across processes too
    sp = SamplingParams(max_tokens=10, temperature=0.9, seed=7, ignore_eos=True)
    a = remote["code-flash"].submit("seed", sp).result(timeout=60)
    assert a.token_ids == local.generate("seed", sp).token_ids
    assert remote["code-flash"].running_count == 0


def test_streaming_events_and_speculative_thinking(remote):
    sp = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
    h = remote["thinking"].submit("stream me", sp)
    events = list(h)  # the synchronous iterator, fed by the reader thread
    out = h.result(timeout=60)
    assert events[-1].finished and sum(len(e.token_ids) for e in events) == 16
    assert "".join(e.text for e in events) == out.text
    assert out.spec is not None  # eligible for drafting: stats always reported


def test_async_stream_and_cancel(remote):
    import asyncio

    async def go():
        sp = SamplingParams(max_tokens=400, temperature=0, ignore_eos=True)
        h = remote["code-flash"].submit("cancel me", sp)
        n = 0
        async for ev in h.aiter():
            n += len(ev.token_ids)
            if n >= 3:
                h.cancel()
            if ev.finished:
                return ev, h.result(timeout=30)
        raise AssertionError("stream ended without a final event")

    ev, out = asyncio.run(go())
    assert out.finish_reason == "cancelled" and out.completion_tokens < 400
    assert wait_for(lambda: remote["code-flash"].running_count == 0, timeout=10)


def test_rpc_stats_and_router_scores(remote, ckpts):
    st = remote["thinking"].stats()
    assert st["engine_process"] and st["loop_alive"] and st["totals"]["requests"] >= 1
    ids = remote["code-flash"].tokenizer.encode("def f(x): return x")
    got = remote["code-flash"].score_stats(ids)
    want = Engine.from_checkpoint(ckpts["code-flash"], device="cpu").score_stats(ids)
    assert set(got) == set(want)
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-5), k
    # echo + logprobs in /v1/completions: prompt logprobs through the process boundary
    local = Engine.from_checkpoint(ckpts["code-flash"], device="cpu").prompt_logprobs(ids, 2)
    remote_lps = remote["code-flash"].prompt_logprobs(ids, 2)
    assert len(remote_lps) == len(local) == len(ids) - 1
    assert [r["logprob"] for r in remote_lps] == pytest.approx([r["logprob"] for r in local])


def test_bad_input_refused_in_parent(remote):
    eng = remote["code-flash"]
    with pytest.raises(HillclimbError, match="context"):
        eng.submit(list(range(5)) * 1000, SamplingParams(max_tokens=4))
    with pytest.raises(HillclimbError, match="out of range"):
        eng.submit([10**9], SamplingParams(max_tokens=4))
    # code-flash drafts with prompt lookup (the serve default), but it has no draft model
    with pytest.raises(HillclimbError, match="no draft"):
        eng.submit("x", SamplingParams(max_tokens=4, speculative=True, drafter="model"))
    assert eng.running_count == 0
    assert eng.submit("still serving", SamplingParams(max_tokens=2)).result(timeout=30)


def test_dead_engine_process_fails_requests_not_hangs(ckpts):
    opts = EngineOptions(max_batch=2, device="cpu", compile=False)
    engines, _ = start_engine_process(None, ckpts["code-flash"], opts)
    eng = engines["code-flash"]
    assert eng.submit("warm", SamplingParams(max_tokens=2)).result(timeout=30)
    os.kill(eng.host.proc.pid, signal.SIGSTOP)  # frozen: the next request stays open
    h = eng.submit("long", SamplingParams(max_tokens=400, temperature=0, ignore_eos=True))
    assert eng.running_count == 1
    os.kill(eng.host.proc.pid, signal.SIGKILL)
    out = h.result(timeout=30)
    assert out.finish_reason == "error" and "engine process ended" in out.error
    assert eng.running_count == 0
    with pytest.raises(HillclimbError, match="not running"):
        eng.submit("x", SamplingParams(max_tokens=2))
    with pytest.raises(HillclimbError):
        eng.stats()
    eng.stop()


def test_engine_process_load_failure_is_reported(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(HillclimbError, match="loading the engines failed"):
        start_engine_process(None, tmp_path, EngineOptions(device="cpu", compile=False))
