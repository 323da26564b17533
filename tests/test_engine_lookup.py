"""Model-free drafting (prompt lookup) and OpenAI predicted outputs: greedy output identical to
plain decoding (with no prediction, a right one and a wrong one); sampled output follows the
target distribution (chi-square against the exact distribution, with a negative control); the
back-off policy; the server's `prediction` parameter (accepted on both endpoints, 400s)."""

from __future__ import annotations

import dataclasses
import math

import httpx
import pytest
import torch

import hillclimb.serve.engine as engine_mod
from _server_util import make_checkpoints
from hillclimb.errors import HillclimbError
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.drafters import LookupConfig, LookupDrafter, NgramIndex
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.serve.sampling import warp_probs
from hillclimb.serve.server import ServerThread, build_state
from hillclimb.serve.speculative import accept_drafts
from hillclimb.tokenizer.io import bytelevel_tokenizer
from test_engine_spec import _exact_prefix_dist, one_thread  # noqa: F401 (autouse fixture)

PROMPTS = [
    "Hello world",
    "def add(a, b):\n    return a + b\n\ndef add(a, b):\n",
    "x",
    "for i in range(10):\n    print(i)\nfor i in range(10):\n",
    "<|im_start|>user\nhi<|im_end|>\n",
    "abc abc abc abc abc",
]
GREEDY = SamplingParams(max_tokens=48, temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def setup():
    target = build_model(get_preset("thinking-micro"), seed=0).eval()
    tok = bytelevel_tokenizer()
    plain = Engine(target, tok, max_batch=8, seed=0)
    # an optimistic prior, so requests without a prediction draft from their first step (the
    # default prior does not pay at the measured step costs: test_first_probe_is_gated)
    look = Engine(target, tok, max_batch=8, seed=0, drafter="lookup", spec_max_running=8,
                  lookup=LookupConfig(prior=0.8))  # fmt: skip
    return {"model": target, "tok": tok, "plain": plain, "lookup": look}


def test_ngram_index_longest_latest_and_aligned():
    ix = NgramIndex(1, 3)
    ix.extend([1, 2, 3, 9, 1, 2, 4, 1, 2, 3, 5])
    assert ix.find([7, 2, 3]) == 10  # "2 3" most recently at 8..9 → continuation at 10
    assert ix.find([1, 2, 3]) == 10  # the longest suffix wins
    assert ix.find([0, 1, 2]) == 9  # "1 2" last seen at 7..8
    assert ix.find([1, 2], after=3) == 6  # first occurrence at or after 3
    assert ix.find([8, 6]) is None
    # periodic text: the latest occurrence is one period back (3 tokens to propose); asking for a
    # longer draft takes the latest occurrence that has that many tokens after it
    per = NgramIndex(2, 2)
    per.extend([1, 2, 3] * 5 + [1, 2])
    assert per.match([1, 2]) == (14, 2) and per.match([1, 2], want=5) == (11, 2)
    assert per.match([1, 2], want=100) == (2, 2)  # none long enough: the most tokens after it
    # the last n-gram of a growing sequence has no continuation yet: not indexed
    ix2 = NgramIndex(2, 2)
    ix2.extend([4, 5, 6])
    assert ix2.find([5, 6]) is None and ix2.find([4, 5]) == 2


@pytest.mark.parametrize("forced", [False, True])
def test_lookup_greedy_identical_to_plain(setup, forced):
    plain, look = setup["plain"], setup["lookup"]
    sp = dataclasses.replace(GREEDY, speculative=True if forced else None)
    ref = plain.generate_batch(PROMPTS, GREEDY)
    outs = [look.generate(p, sp) for p in PROMPTS]
    for p, r, o in zip(PROMPTS, ref, outs, strict=True):
        assert o.token_ids == r.token_ids and o.text == r.text, p
        assert o.spec is not None and o.spec["drafter"] == "lookup"
    assert sum(o.spec["steps"] for o in outs) > 0  # lookup really drafted
    assert any(o.spec["accepted"] > 0 for o in outs)
    # batched: several lookup requests share the engine (right-padded prefill, holes)
    batched = look.generate_batch(PROMPTS, sp)
    assert [b.token_ids for b in batched] == [r.token_ids for r in ref]


def test_prediction_right_and_wrong_give_plain_greedy_output(setup):
    plain, look, tok = setup["plain"], setup["lookup"], setup["tok"]
    for p in PROMPTS[:4]:
        ref = plain.generate(p, GREEDY)
        right = look.generate(p, dataclasses.replace(GREEDY, prediction=list(ref.token_ids)))
        assert right.token_ids == ref.token_ids
        # a right prediction is drafted in long runs: few verification forwards
        assert right.spec["accepted"] >= len(ref.token_ids) - 8
        assert right.spec["steps"] <= len(ref.token_ids) // 4, right.spec
        wrong_ids = list(reversed(ref.token_ids))[:20] + tok.encode("completely different")
        wrong = look.generate(p, dataclasses.replace(GREEDY, prediction=wrong_ids))
        assert wrong.token_ids == ref.token_ids
        half = ref.token_ids[:20] + tok.encode("then it goes wrong") + ref.token_ids[20:]
        mixed = look.generate(p, dataclasses.replace(GREEDY, prediction=half))
        assert mixed.token_ids == ref.token_ids
        text = look.generate(p, dataclasses.replace(GREEDY, prediction="def f(x):\n    return x"))
        assert text.token_ids == ref.token_ids
    # a prediction picks the lookup drafter even on an engine whose default is none
    o = plain.generate(PROMPTS[0], dataclasses.replace(GREEDY, prediction=[1, 2, 3]))
    assert o.spec is not None and o.spec["drafter"] == "lookup"
    # ...unless speculation is off for the request
    o = look.generate(PROMPTS[0], dataclasses.replace(GREEDY, speculative=False, prediction=[1]))
    assert o.spec is None


def test_bad_drafter_and_prediction_inputs(setup):
    plain = setup["plain"]
    with pytest.raises(HillclimbError, match="no draft model"):
        plain.generate("x", dataclasses.replace(GREEDY, drafter="model"))
    with pytest.raises(HillclimbError, match="drafter must be"):
        plain.generate("x", dataclasses.replace(GREEDY, drafter="oracle"))
    with pytest.raises(HillclimbError, match="prediction must be"):
        plain.generate("x", dataclasses.replace(GREEDY, prediction=[1, -2]))
    with pytest.raises(HillclimbError, match="out of range"):
        plain.generate("x", dataclasses.replace(GREEDY, prediction=[10**6]))
    with pytest.raises(HillclimbError, match="context"):
        plain.generate("x", dataclasses.replace(GREEDY, prediction="y" * 1000))
    with pytest.raises(HillclimbError):
        Engine(setup["model"], setup["tok"], drafter="model")  # no draft model given
    with pytest.raises(HillclimbError):
        LookupConfig(ngram_min=3, ngram_max=2)


def test_first_probe_is_gated_by_the_prior(setup):
    """Before any verification a request drafts only if its prior pays at the configured step
    costs: the plain prior does not, a prediction's does; at the engine level a short greedy
    answer with the default config then costs no verification at all, output unchanged."""
    d = LookupDrafter(2, LookupConfig(explore_every=16))
    d.start(0, 3, None)
    d.start(1, 3, [5, 6, 7])
    assert not d.pays(0) and d.gamma(0) == d.gamma_max  # the engine's first gated request probes
    assert d.slot_stats(0).get("explored") == 1 and d.gamma(0) == d.gamma_max  # till a match
    d.start(0, 3, None)  # the next one is gated: no evidence yet that drafting pays
    assert not d.pays(0) and d.gamma(0) == 0 and d.slot_stats(0)["gated"] == 1
    assert d.pays(1) and d.gamma(1) == d.gamma_max
    d.start(0, 3, None, forced=True)
    assert d.gamma(0) == d.gamma_max  # speculative=True always drafts
    eng = Engine(setup["model"], setup["tok"], max_batch=2, seed=0, drafter="lookup",
                 lookup=LookupConfig(explore_every=10**6))  # fmt: skip
    eng.lookup.gated_requests = 1  # the exploration probe already spent
    ref = setup["plain"].generate(PROMPTS[1], GREEDY)
    o = eng.generate(PROMPTS[1], GREEDY)
    assert o.token_ids == ref.token_ids and o.spec["steps"] == 0


def test_engine_wide_prior_learns_whether_lookup_pays():
    """New requests start from the acceptance of earlier requests' context drafts: after probes
    whose drafts were all accepted the next request drafts from its first match; after probes
    that all failed requests stay gated, and only every `explore_every`-th gated request probes.
    Prediction and forced requests are not evidence about prompt lookup."""
    cfg = LookupConfig(explore_every=16)
    d = LookupDrafter(1, cfg)
    d.start(0, 3, None)
    assert d.gamma(0) == d.gamma_max  # exploration
    d.slots[0].last = (1, 0)
    d.adapt(0, 10, 10)  # every draft token accepted
    d.reset(0)
    assert d.seen_prior() > cfg.prior and d.seen_accepted + d.seen_rejected >= cfg.seen_min
    d.start(0, 3, None)
    assert d.pays(0) and d.gamma(0) == d.gamma_max and "explored" not in d.slot_stats(0)
    for _ in range(40):  # the workload changes: drafts now fail
        d.slots[0].last = (1, 0)
        d.adapt(0, 4, 0)
    d.reset(0)
    assert d.seen_prior() < cfg.prior
    probes = 0
    for _ in range(32):
        d.start(0, 3, None)
        probes += d.gamma(0) > 0
        d.reset(0)
    assert probes == 2  # requests 17 and 33 of the gated ones (the 1st explored above)
    before = (d.seen_accepted, d.seen_rejected)
    d.start(0, 3, [1, 2, 3])
    d.slots[0].last = (0, 0)
    d.adapt(0, 4, 4)
    d.start(0, 3, None, forced=True)
    d.slots[0].last = (1, 0)
    d.adapt(0, 4, 4)
    assert (d.seen_accepted, d.seen_rejected) == before


def test_policy_backs_off_when_drafts_lose_and_recovers():
    # a loose loss budget: the doubling floor alone (the loss-sized back-off is s25_specserve's)
    cfg = LookupConfig(backoff_min=4, backoff_max=16, prior=0.8, loss_budget=0.99)
    d = LookupDrafter(1, cfg)
    d.start(0, 3, None)
    assert d.gamma(0) == cfg.gamma_max
    skips = []
    for _ in range(6):  # every draft rejected
        d.adapt(0, 2, 0)
        n = 0
        while d.gamma(0) == 0:
            n += 1
        skips.append(n)
    assert skips[0] == 0 or skips[0] >= 4  # the prior may absorb the first rejection
    tail = [s for s in skips if s]
    assert tail == sorted(tail) and tail[-1] == 16  # doubling back-off, capped
    for _ in range(30):  # drafts accepted again: the estimate recovers and the back-off resets
        d.adapt(0, 4, 4)
    assert d.slots[0].backoff == cfg.backoff_min
    pending = [d.gamma(0) for _ in range(cfg.backoff_max + 1)]  # a back-off set on the way up
    assert pending[-1] == cfg.gamma_max and pending.count(0) <= cfg.backoff_max
    forced = LookupDrafter(1, cfg)
    forced.start(0, 3, None, forced=True)
    for _ in range(5):
        forced.adapt(0, 2, 0)
    assert forced.gamma(0) > 0  # speculative=True never backs off


def test_no_match_costs_no_verification(setup):
    """Steps without an n-gram match decode plainly: a prompt of all-distinct tokens and a
    model that does not repeat them gives (almost) no verification forwards."""
    look = setup["lookup"]
    o = look.generate(list(range(3, 40)), SamplingParams(max_tokens=3, temperature=0))
    assert o.spec["steps"] == 0


def chi2_crit(dof: int, z: float = 3.09) -> float:
    """Upper 0.999 quantile of chi-square(dof) (Wilson–Hilferty; z = the normal 0.999 quantile);
    2-3% above the exact value at dof 1-7 (dof 3: 16.5 vs 16.3)."""
    a = 2 / (9 * dof)
    return dof * (1 - a + z * math.sqrt(a)) ** 3


def test_one_hot_rule_preserves_target_distribution():
    """accept_drafts with a deterministic draft (q = one-hot): the first committed token is
    distributed as p, whether the draft is the likeliest token, an unlikely one or impossible."""
    p = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0])
    params = SamplingParams(temperature=1.0)
    logits = p.log().expand(3, -1).clone()
    gen = torch.Generator().manual_seed(0)
    n = 4000
    for draft in (0, 2, 4):
        counts = torch.zeros(5)
        for _ in range(n):
            k, nxt = accept_drafts(logits, [draft, draft], None, params, gen)
            counts[draft if k > 0 else nxt] += 1
        stat = float(((counts[:4] - n * p[:4]) ** 2 / (n * p[:4])).sum())
        assert counts[4] == 0 and stat < chi2_crit(3), (draft, counts)


def _chi_square(counts: dict, exact: dict, n: int) -> tuple[float, int]:
    """Pearson's statistic with outcomes of expected count < 5 pooled → (stat, dof)."""
    stat, pool_obs, pool_exp, cells = 0.0, 0.0, 0.0, 0
    for k, pr in exact.items():
        e, o = n * pr, counts.get(k, 0)
        if e < 5:
            pool_obs, pool_exp = pool_obs + o, pool_exp + e
            continue
        stat += (o - e) ** 2 / e
        cells += 1
    if pool_exp > 0:
        stat += (pool_obs - pool_exp) ** 2 / pool_exp
        cells += 1
    return stat, cells - 1


def _wrong_accept(target_logits, draft_tokens, draft_probs, params, generator):
    """WRONG for one-hot drafts: accepts every draft (no p(d) test) — the negative control."""
    p = warp_probs(target_logits, params)
    g = len(draft_tokens)
    return g, int(torch.multinomial(p[g], 1, generator=generator))


def sampled_case(model, tok, depth: int = 3) -> tuple[dict, list[int], dict, list[int]]:
    """The engine-level distribution tests' case: 3-token samples (top-k 2) of "The answer is"
    → (sampling params, prompt ids, the exact distribution of the first `depth` tokens, the
    likeliest continuation)."""
    # one token more than scored, so a step after the first token can draft 2
    params = dict(max_tokens=depth + 1, temperature=1.0, top_k=2, ignore_eos=True)
    ids = tok.encode("The answer is")
    exact = _exact_prefix_dist(model, ids, SamplingParams(**params), depth)
    assert math.isclose(sum(exact.values()), 1.0, rel_tol=1e-5) and len(exact) == 2**depth
    return params, ids, exact, list(max(exact, key=exact.get))


def test_sampled_lookup_follows_target_distribution(setup, monkeypatch):
    """Engine level: 3-token samples (top-k 2) with a prediction that drafts one fixed
    continuation at every position against the exact target distribution (chi-square, p >
    0.001), and a rule that skips the p(d) test is detected on the same path."""
    model, tok = setup["model"], setup["tok"]
    depth, n = 3, 300
    params, ids, exact, likely = sampled_case(model, tok, depth)
    # the prompt's last 2 tokens + the likeliest continuation: drafted from the first step on
    prediction = ids[-2:] + likely + likely

    def empirical(engine):
        sps = [SamplingParams(seed=s, speculative=True, prediction=prediction, **params)
               for s in range(n)]  # fmt: skip
        outs = engine.generate_batch(["The answer is"] * n, sps)
        counts: dict[tuple, int] = {}
        for o in outs:
            k = tuple(o.token_ids[:depth])
            counts[k] = counts.get(k, 0) + 1
        return counts, outs

    look = Engine(model, tok, max_batch=16, seed=0, drafter="lookup", spec_max_running=16)
    counts, outs = empirical(look)
    assert set(counts) <= set(exact)
    # drafts really were verified (when the first token leaves the prediction, nothing matches)
    assert sum(o.spec["drafted"] for o in outs) >= n // 2
    stat, dof = _chi_square(counts, exact, n)
    assert stat < chi2_crit(dof), (stat, dof, counts)
    monkeypatch.setattr(engine_mod, "accept_drafts", _wrong_accept)
    bad, _ = empirical(Engine(model, tok, max_batch=16, seed=0, drafter="lookup",
                              spec_max_running=16))  # fmt: skip
    bad_stat, bad_dof = _chi_square(bad, exact, n)
    assert bad_stat > chi2_crit(bad_dof), (bad_stat, bad)


def test_seeded_sampled_lookup_is_reproducible(setup):
    look = setup["lookup"]
    sp = SamplingParams(max_tokens=30, seed=7, top_k=5, temperature=0.7)
    a = look.generate(PROMPTS[1], sp)
    b = look.generate_batch([PROMPTS[1], PROMPTS[3]], sp)[0]
    assert a.token_ids == b.token_ids


# ---- the server's `prediction` ---------------------------------------------------------------
@pytest.fixture(scope="module")
def http(tmp_path_factory):
    root = tmp_path_factory.mktemp("lookup_server")
    ckpts = make_checkpoints(root)
    # default drafter none: a request's prediction alone turns lookup on
    flash = Engine.from_checkpoint(ckpts["code-flash"], device="cpu", max_batch=4,
                                   name="code-flash", seed=0)  # fmt: skip
    state = build_state({"code-flash": flash}, db=root / "usage.sqlite",
                        checkpoints={"code-flash": ckpts["code-flash"]})  # fmt: skip
    with ServerThread(state) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


MSG = [{"role": "user", "content": "def add(a, b):\n    return a + b\n"}]


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_server_prediction_is_used_and_output_unchanged(http, endpoint):
    base = {"model": "code-flash", "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    base |= {"prompt": "def add(a, b):\n"} if endpoint == "completions" else {"messages": MSG}
    url = f"/v1/{'chat/completions' if endpoint == 'chat' else 'completions'}"

    def text(r: httpx.Response) -> str:
        assert r.status_code == 200, r.text
        c = r.json()["choices"][0]
        return c["message"]["content"] if endpoint == "chat" else c["text"]

    plain = http.post(url, json=base)
    ref = text(plain)
    assert "speculative" not in plain.json()["hillclimb"]
    # (a random model's text need not survive decode → encode, so acceptance is the engine
    # tests' business; here: accepted, drafted with, and the answer unchanged)
    for pred in (ref, "    return a + b\n", "nothing like it", [{"type": "text", "text": ref}]):
        r = http.post(url, json=base | {"prediction": {"type": "content", "content": pred}})
        assert text(r) == ref
        assert r.json()["hillclimb"]["speculative"]["steps"] >= 0
    r = http.post(url, json=base | {"prediction": {"type": "content", "content": ref},
                                    "drafter": "none"})  # fmt: skip
    assert text(r) == ref and "speculative" not in r.json()["hillclimb"]


@pytest.mark.parametrize(
    "prediction, param",
    [
        ("just a string", "prediction"),
        ({"type": "text", "content": "x"}, "prediction.type"),
        ({"content": "x"}, "prediction.type"),
        ({"type": "content", "content": 5}, "prediction.content"),
        ({"type": "content"}, "prediction.content"),
        ({"type": "content", "content": [{"type": "image_url"}]}, "prediction.content[0]"),
        ({"type": "content", "content": "x", "extra": 1}, "prediction.extra"),
        ({"type": "content", "content": "x" * 5000}, "prediction.content"),  # > context tokens
        ({"type": "content", "content": "x" * (2**20 + 1)}, "prediction.content"),
    ],
)  # fmt: skip
def test_server_bad_prediction_is_400(http, prediction, param):
    for url, extra in (("/v1/completions", {"prompt": "x"}), ("/v1/chat/completions",
                                                              {"messages": MSG})):  # fmt: skip
        r = http.post(url, json={"model": "code-flash", "prediction": prediction} | extra)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == param
        assert "prediction" in err["message"]
    r = http.post("/v1/completions", json={"model": "code-flash", "prompt": "x",
                                           "drafter": "oracle"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "drafter"
