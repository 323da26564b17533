"""Cache scopes (session 25): cached KV and the suffix drafter's output history never cross API
accounts. Before, Bob got 165/166 `cached_tokens` on Alice's exact 166-token prompt (39 on a
wrong guess): an oracle for another user's prompt text. Now a request only reuses KV of its own
scope (the account, narrowed by `cache_salt`), while same-account requests and in-process
callers (a GRPO group: one prefill) still share."""

from __future__ import annotations

import time

import httpx
import pytest
import torch

from _server_util import load_engines, make_checkpoints
from hillclimb.errors import HillclimbError
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.auth import KeySpec
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.server import ServerThread, build_state
from hillclimb.serve.suffix import HistoryConfig, OutputHistory, SuffixDrafter
from hillclimb.tokenizer.io import bytelevel_tokenizer

ALICE, BOB = "hc-test-alice-key-0001", "hc-test-bob-key-000002"
SECRET = "Alice's private contract: the price is 41,337 dollars, payable to account 99-1234. " * 2
NOBODY = "Zebra crossing notes, written by nobody else: stripes, lights, and a long wait. " * 2


@pytest.fixture(scope="module")
def micro():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_model(get_preset("thinking-micro"), seed=0).eval(), bytelevel_tokenizer()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("cachescope")
    ckpts = make_checkpoints(root)
    engines = load_engines({"thinking": ckpts["thinking"]}, max_batch=4, speculative=False)
    keys = [KeySpec(ALICE, "alice"), KeySpec(BOB, "bob")]
    state = build_state(engines, db=root / "usage.sqlite", keys=keys)
    with ServerThread(state) as srv:
        yield srv


def _post(srv, key: str, prompt: str, **extra) -> httpx.Response:  # noqa: ANN001
    body = {"model": "thinking", "prompt": prompt, "max_tokens": 2, "temperature": 0, **extra}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(srv.url + "/v1/completions", headers=headers, json=body, timeout=120)


def _cached(srv, key: str, prompt: str, **extra) -> int:  # noqa: ANN001
    r = _post(srv, key, prompt, **extra)
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens_details"]["cached_tokens"]


def test_other_account_cannot_confirm_a_prompt_through_cached_tokens(server):
    """The audit's probe: Bob's count on Alice's exact prompt equals his count on a prompt
    nobody sent; Alice's own repeat still reuses her KV; a salt narrows her scope."""
    _cached(server, ALICE, SECRET)
    bob_exact = _cached(server, BOB, SECRET)
    bob_nobody = _cached(server, BOB, NOBODY)
    assert bob_exact == bob_nobody, (bob_exact, bob_nobody)
    assert _cached(server, ALICE, SECRET) > 0  # same account: still shared
    # a salt is a narrower scope: Alice's salted request sees none of her unsalted KV ...
    salted = _cached(server, ALICE, SECRET, cache_salt="tenant-7")
    assert salted == _cached(server, ALICE, NOBODY, cache_salt="tenant-8")
    # ... and salted requests with the same salt share
    assert _cached(server, ALICE, SECRET, cache_salt="tenant-7") > 0


@pytest.mark.parametrize("salt", [123, ["a"], "", "s" * 257])
def test_cache_salt_validation(server, salt):
    r = _post(server, ALICE, "hello there", cache_salt=salt)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "cache_salt"
    assert _post(server, ALICE, "hello there", cache_salt="s" * 256).status_code == 200


def test_sampling_params_cache_scope_validation():
    SamplingParams(cache_scope="account:1").validate()
    with pytest.raises(HillclimbError, match="cache_scope"):
        SamplingParams(cache_scope=7).validate()  # type: ignore[arg-type]
    with pytest.raises(HillclimbError, match="cache_scope"):
        SamplingParams(cache_scope="x" * 10_000).validate()


def _greedy(scope: str | None, max_tokens: int = 6) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True, cache_scope=scope)


def test_same_step_joiners_of_other_scopes_prefill_separately(micro):
    """Identical prompts admitted in one step: shared within a scope (one prefill, as a GRPO
    group), never across scopes — same tokens either way."""
    model, tok = micro
    prompt = tok.encode("System: a shared step. User: what is the secret number?")
    eng = Engine(model, tok, seed=0, max_batch=4)
    outs = eng.generate_batch(
        [prompt] * 4, [_greedy("a"), _greedy("b"), _greedy("a"), _greedy(None)]
    )
    assert [o.cached_tokens for o in outs] == [0, 0, len(prompt), 0]
    assert len({tuple(o.token_ids) for o in outs}) == 1
    assert eng.stats()["totals"]["prefill_tokens"] == 3 * len(prompt)


def test_grpo_group_without_scope_still_prefills_once(micro):
    model, tok = micro
    prompt = tok.encode("Solve: 17 * 3 = ? Think step by step.")
    eng = Engine(model, tok, seed=0, max_batch=8)
    params = [SamplingParams(max_tokens=6, temperature=1.0, seed=s) for s in range(8)]
    outs = eng.generate_batch([prompt] * 8, params)
    assert eng.stats()["totals"]["prefill_tokens"] == len(prompt)
    assert [o.cached_tokens for o in outs] == [0] + [len(prompt)] * 7


def test_running_request_of_another_scope_is_not_copied(micro):
    """A request admitted while another scope's request with the same prompt runs (or after it
    was cached) reuses nothing; the same scope's does."""
    model, tok = micro
    prompt = "System: long running secret request. User: tell me a long story about a cat"
    eng = Engine(model, tok, seed=0, max_batch=4)
    eng.start()
    try:
        h0 = eng.submit(prompt, _greedy("alice", max_tokens=60))
        while not h0.done() and not h0._events:
            time.sleep(0.001)
        bob = eng.submit(prompt, _greedy("bob")).result(timeout=120)
        alice = eng.submit(prompt, _greedy("alice")).result(timeout=120)
        h0.result(timeout=120)
    finally:
        eng.stop()
    assert bob.cached_tokens == 0
    assert alice.cached_tokens > 0


def test_suffix_drafter_drafts_only_from_its_scopes_history():
    """A history draft shows in the answer's speed and `hillclimb.speculative` counts, so it
    must come only from outputs of the request's own scope."""
    g = torch.Generator().manual_seed(0)
    sp = SamplingParams(temperature=0)
    d = SuffixDrafter(
        1, history=OutputHistory(HistoryConfig(ngram_min=2, ngram_max=4, min_match=2))
    )
    d.remember([7, 8, 9, 10, 11], "alice")
    for scope, want in (("bob", []), (None, []), ("alice", [9, 10, 11])):
        d.start(0, prompt_len=3, prediction=None, forced=True)
        d.set_scope(0, scope)
        toks, _ = d.propose(0, [4, 7, 8], 4, sp, g)
        assert toks == want, scope
    assert d.history.stats()["added"] == 0  # the in-process (None) history got nothing


def test_scoped_histories_are_bounded():
    from hillclimb.serve.suffix import MAX_SCOPED_HISTORIES

    d = SuffixDrafter(1)
    for i in range(MAX_SCOPED_HISTORIES + 5):
        d.remember([1, 2, 3], f"account:{i}")
    assert len(d.scoped) == MAX_SCOPED_HISTORIES
    assert d.history_for("account:0") is None  # the least recently used went first
    assert d.history_for(f"account:{MAX_SCOPED_HISTORIES + 4}") is not None


def test_engine_feeds_each_scope_its_own_history(micro):
    model, tok = micro
    prompts = ["def add(a, b):\n", "Hello world"]
    eng = Engine(model, tok, max_batch=4, seed=0, drafter="suffix", spec_max_running=4,
                 prefix_cache=False)  # fmt: skip
    greedy = {s: _greedy(s, max_tokens=40) for s in ("alice", "bob")}
    first = [eng.generate(p, greedy["alice"]) for p in prompts]
    bob = [eng.generate(p, greedy["bob"]) for p in prompts]
    again = [eng.generate(p, greedy["alice"]) for p in prompts]
    assert [o.token_ids for o in bob] == [o.token_ids for o in first]
    assert [o.token_ids for o in again] == [o.token_ids for o in first]
    added = {s: eng.suffix.history_for(s).stats()["added"] for s in ("alice", "bob", None)}
    assert added == {"alice": 4, "bob": 2, None: 0}
    # alice's second run drafts from her history; bob's never saw it
    assert sum(o.spec["accepted"] for o in again) > sum(o.spec["accepted"] for o in bob)
