"""Session 25 (issue 15 §1): drafters that do not pay cost at most ≈2% over plain decoding, the
engine can drop its draft model itself, and an "auto" engine chooses the draft source per request.

Why: with a forced draft model the runtime back-off lost 5–19% (0.95× and 0.81× measured): its
fixed waits (≤ 256 plain steps) were short next to what a probe costs. The back-offs are now sized
by the measured loss of the run before them (`drafters.loss_bounded_wait`). The loss is checked
with injected step costs (a fake clock for the engine, the cost model for the lookup), never wall
time.
"""

from __future__ import annotations

import types

import pytest
import torch

import hillclimb.serve.engine as engine_mod
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.drafters import LookupConfig, LookupDrafter
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.tokenizer.io import bytelevel_tokenizer

BUDGET = 0.02  # issue 15: "never slower than plain decoding by more than 2%"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models():
    return {
        "target": build_model(get_preset("thinking-micro"), seed=0).eval(),
        "flash": build_model(get_preset("code-flash-micro"), seed=1).eval(),
        "tok": bytelevel_tokenizer(),
    }


# ---- 1. the back-off bounds the loss ---------------------------------------------------------------
def _true_token(i: int) -> int:
    """The output a losing lookup meets: "A B x_i" repeated with a fresh x_i each time, so the
    bigram "A B" always matches and its proposed continuation (an earlier x) is always wrong."""
    return (7, 8, 1000 + i)[i % 3]


def _lookup_run(cfg: LookupConfig, n_tokens: int) -> tuple[float, int, int]:
    """Decode `n_tokens` of `_true_token` with the lookup policy, charging its cost model: a
    plain step (or a step without a match) costs 1, a verification of T tokens `cfg.cost(T)`
    → (cost, tokens committed, verifications)."""
    d = LookupDrafter(1, cfg, gamma_max=12)
    prompt = [1, 2, 3, 4]
    d.start(0, len(prompt), None)
    out = [_true_token(0)]  # the prefill's token
    cost, verifies = 0.0, 0
    while len(out) < n_tokens:
        g = d.gamma(0)
        drafts = d.propose(0, prompt + out, g)[0] if g >= 1 else []
        if not drafts:
            cost += 1.0
            out.append(_true_token(len(out)))
            continue
        verifies += 1
        n = 0
        while n < len(drafts) and drafts[n] == _true_token(len(out) + n):
            n += 1
        cost += cfg.cost(len(drafts) + 1)
        d.adapt(0, len(drafts), n)
        out += [_true_token(len(out) + k) for k in range(n + 1)]
    return cost, len(out) - 1, verifies


@pytest.mark.parametrize("verify_base", [2.0, 2.5, 4.0])
def test_losing_lookup_costs_at_most_the_budget(verify_base):
    """Whatever a verification costs (measured ≈2–2.5 plain steps on an idle machine, more on a
    busy one), a lookup that never wins costs ≤ 2% over plain decoding in the long run. The
    fixed 4 … 64-step back-off lost (cost(2) − 1) / 65: 2.5% at 2.5, 4.8% at 4.0."""
    cfg = LookupConfig(verify_base=verify_base)
    cost, tokens, verifies = _lookup_run(cfg, 30_000)
    assert verifies >= 3  # it kept probing (a losing drafter is not switched off for good)
    overhead = cost / tokens - 1
    assert overhead <= BUDGET * 1.05, (overhead, verifies)


def test_loss_bounded_wait_rule():
    from hillclimb.serve.drafters import WAIT_CAP, loss_bounded_wait

    assert loss_bounded_wait(0.0, 16) == 16  # nothing lost: the doubling back-off
    assert loss_bounded_wait(0.1, 16) == 16
    assert loss_bounded_wait(3.0, 16) == 150  # 3 plain steps lost / 2%
    assert loss_bounded_wait(3.0, 16, budget=0.05) == 60
    assert loss_bounded_wait(float("inf"), 16) == WAIT_CAP
    # the lookup config refuses a budget that cannot bound anything
    from hillclimb.errors import HillclimbError

    with pytest.raises(HillclimbError, match="loss_budget"):
        LookupConfig(loss_budget=0.0)


class _FakeClock:
    """`time` for the engine module: perf_counter reads a clock the test advances (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def advance_ms(self, ms: float) -> None:
        self.now += ms / 1e3

    def module(self) -> types.SimpleNamespace:
        import time as real

        ns = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real) if k[:2] != "__"})
        ns.perf_counter = lambda: self.now
        return ns


def _timed_engine(
    models, monkeypatch, clock: _FakeClock, draft_ms: float, verify_ms: float, catchup_ms: float
):
    """A target + draft engine whose steps cost injected ms on the fake clock: a plain decode
    step 1.0, a draft proposal `draft_ms` per draft forward (γ + 1: catch-up and drafting) plus
    `catchup_ms` per token the draft's cache is behind (the tokens decoded plainly since its
    last proposal), a verification `verify_ms` (no wall time is read anywhere)."""
    monkeypatch.setattr(engine_mod, "time", clock.module())
    eng = Engine(models["target"], models["tok"], max_batch=2, draft=models["flash"], seed=0)
    plain_fwd = eng._decode_forward

    def decode_forward(reqs):
        clock.advance_ms(1.0)
        return plain_fwd(reqs)

    runner = eng.draft
    propose = runner.propose

    def draft_propose(slot, seq, gamma, *a):
        behind = len(seq) - runner.slots[slot].held
        clock.advance_ms(draft_ms * (gamma + 1) + catchup_ms * behind)
        return propose(slot, seq, gamma, *a)

    accept_commit = eng._accept_commit

    def verify(x, logits, L):
        clock.advance_ms(verify_ms)
        return accept_commit(x, logits, L)

    monkeypatch.setattr(eng, "_decode_forward", decode_forward)
    monkeypatch.setattr(runner, "propose", draft_propose)
    monkeypatch.setattr(eng, "_accept_commit", verify)
    return eng


@pytest.mark.parametrize(
    "draft_ms,verify_ms,catchup_ms", [(0.6, 2.0, 0.0), (1.0, 3.0, 0.0), (0.6, 2.0, 0.05)]
)
def test_losing_draft_model_costs_at_most_the_budget(
    models, monkeypatch, draft_ms, verify_ms, catchup_ms
):
    """A draft model attached although it loses (`--draft`; the random micro pair rarely
    agrees), default `speculative=None`: over a long run the engine spends ≤ ≈2% more than plain
    decoding would (1.0 per token)."""
    clock = _FakeClock()
    eng = _timed_engine(models, monkeypatch, clock, draft_ms, verify_ms, catchup_ms)
    sp = SamplingParams(max_tokens=440, temperature=0, ignore_eos=True)
    plain_equiv, spec_steps = 0.0, 0
    for p in ["Hello world", "def add(a, b):\n", "Once upon a time", "import torch"] * 2:
        o = eng.generate(p, sp)
        plain_equiv += o.completion_tokens - 1  # the prefill samples the first token
        spec_steps += o.spec["steps"] if o.spec else 0
    spent = clock.now * 1e3
    assert spec_steps >= 2  # it did probe
    assert eng.stats()["totals"]["spec_backoffs"] >= 1
    overhead = spent / plain_equiv - 1
    # ≤ the budget per probe-and-wait cycle; the first probe (the draft's prompt catch-up
    # included) runs before any wait and adds ≈0.1–0.5% over this 3.5k-token run: measured
    # 2.1–2.5% here, against 2.9%, 5.2% and 6.4% with the fixed back-off
    assert overhead <= BUDGET * 1.5, (overhead, spec_steps)


def test_detach_draft_serves_plainly_and_host_uses_it(models):
    from hillclimb.serve.host import detach_draft

    eng = Engine(models["target"], models["tok"], max_batch=2, draft=models["flash"], seed=0)
    plain = Engine(models["target"], models["tok"], max_batch=2, seed=0)
    sp = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True, speculative=True)
    assert eng.generate("x = 1", sp).spec["steps"] >= 1
    eng.detach_draft()
    assert eng.draft is None and eng.default_drafter == "none"
    assert eng.stats()["speculative"] is None
    free = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    o = eng.generate("x = 1", free)
    assert o.spec is None and o.token_ids == plain.generate("x = 1", free).token_ids
    from hillclimb.errors import HillclimbError

    with pytest.raises(HillclimbError, match="no draft model"):
        eng.generate("x = 1", SamplingParams(max_tokens=4, drafter="model"))
    # host's helper is the engine's method (a running request's "model" source goes plain too)
    other = Engine(models["target"], models["tok"], max_batch=2, draft=models["flash"], seed=0)
    sp8 = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True, speculative=True)
    req = other._make_request("abc", sp8, None)
    other._waiting.append(req)
    with torch.inference_mode():
        other._step()  # admitted
        other._step()  # a speculative step with the model
        assert req.spec.steps >= 1 and not req.finished
        detach_draft(other)
        while not req.finished:
            other._step()
    assert other.draft is None and req.drafter == "none"
    assert req.handle.result().token_ids == plain.generate("abc", sp8_plain()).token_ids


def sp8_plain() -> SamplingParams:
    return SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)


# ---- 2. per-request drafter choice ------------------------------------------------------------------
CODE_EDIT = (
    "Rename x to total in this function:\n```python\ndef f(xs):\n    x = 0\n    for v in xs:\n"
    "        x += v\n    return x\n```\n"
)
FILE_CONTENT = (
    "Add a docstring.\n\ndef area(w, h):\n    if w < 0:\n        raise ValueError(w)\n"
    "    return w * h\n"
)
OPEN = "Why is the sky blue? Explain it simply."


def test_choose_drafter_rules():
    from hillclimb.serve.drafter_choice import choose_drafter

    def pick(text, **kw):
        args = {"fim": False, "tool_observation": False, "has_model": False, **kw}
        c = choose_drafter(text, **args)
        return c.drafter, c.reason

    assert pick(CODE_EDIT) == ("lookup", "code_block")
    assert pick(FILE_CONTENT) == ("lookup", "file_content")
    assert pick("x", fim=True) == ("lookup", "fim")
    assert pick(OPEN, tool_observation=True) == ("suffix", "tool_observation")
    assert pick(OPEN) == ("none", "open")
    assert pick(OPEN, has_model=True) == ("model", "open_model")
    assert pick(CODE_EDIT, has_model=True) == ("lookup", "code_block")
    assert pick(OPEN, forced=True) == ("lookup", "open_forced")
    # prose with a colon-ended line or two is not file content
    assert pick("Two things:\nfirst, the sky.\nSecond: the sea.\n") == ("none", "open")


def _tool_turn(tok) -> list[int]:
    from hillclimb.tokenizer.specials import TOOL_RESPONSE_START

    assert tok.token_id(TOOL_RESPONSE_START) is not None
    return tok.encode("<tool_response>\nfile.py: 3 passed, 1 failed\n</tool_response>\n")


@pytest.mark.parametrize("with_model", [False, True])
def test_auto_engine_chooses_per_request_and_greedy_is_identical(models, with_model):
    from hillclimb.serve.metrics import engine_collector

    tok = models["tok"]
    draft = models["flash"] if with_model else None
    auto = Engine(models["target"], tok, max_batch=2, draft=draft, drafter="auto", seed=0)
    plain = Engine(models["target"], tok, max_batch=2, seed=0)
    sp = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    cases = [
        (CODE_EDIT, "lookup", "code_block"),
        (FILE_CONTENT, "lookup", "file_content"),
        (_tool_turn(tok), "suffix", "tool_observation"),
        (OPEN, "model" if with_model else "none", "open_model" if with_model else "open"),
    ]
    for prompt, drafter, reason in cases:
        o = auto.generate(prompt, sp)
        assert o.token_ids == plain.generate(prompt, sp).token_ids, reason
        if drafter == "none":
            assert o.spec is None
        else:
            assert o.spec["drafter"] == drafter and o.spec["drafter_choice"] == reason
    # a request that names its source or brings a prediction is not chosen for
    o = auto.generate(OPEN, SamplingParams(max_tokens=8, temperature=0, drafter="lookup"))
    assert o.spec["drafter"] == "lookup" and "drafter_choice" not in o.spec
    st = auto.stats()["drafter_choice"]
    assert st["lookup"] == 2 and st["suffix"] == 1
    assert st["model" if with_model else "none"] == 1
    assert st["reasons"] == {"code_block": 1, "file_content": 1, "tool_observation": 1,
                             "open_model" if with_model else "open": 1}  # fmt: skip
    text = "\n".join(engine_collector({"thinking": auto})())
    assert 'hillclimb_drafter_auto_lookup_requests_total{model="thinking"} 2' in text
    assert 'hillclimb_drafter_auto_suffix_requests_total{model="thinking"} 1' in text
    # after the draft is dropped, "auto" never picks it
    auto.detach_draft()
    assert auto.default_drafter == "auto"
    o = auto.generate(OPEN, sp)
    assert o.spec is None and o.token_ids == plain.generate(OPEN, sp).token_ids


def test_auto_engine_validation_and_server_default(models):
    from hillclimb.errors import HillclimbError
    from hillclimb.serve.host import EngineOptions

    with pytest.raises(HillclimbError, match="drafter must be one of"):
        Engine(models["target"], models["tok"], max_batch=1, drafter="autoo")
    auto = Engine(models["target"], models["tok"], max_batch=1, drafter="auto", seed=0)
    # a forced request on an engine without a draft model drafts by lookup, never fails
    o = auto.generate(OPEN, SamplingParams(max_tokens=6, temperature=0, speculative=True))
    assert o.spec["drafter"] == "lookup" and o.spec["drafter_choice"] == "open_forced"
    with pytest.raises(HillclimbError, match="no draft model"):
        auto.generate(OPEN, SamplingParams(max_tokens=4, drafter="model"))
    assert EngineOptions().thinking_drafter == "auto"


def test_forced_requests_do_not_lengthen_the_back_off(models, monkeypatch):
    """A request that must speculate (`speculative=True`) loses by its own choice: its steps do
    not size the back-off that requests left to the policy then wait out."""
    monkeypatch.setattr(Engine, "_observe_plain", lambda self, ms: None)
    eng = Engine(models["target"], models["tok"], max_batch=2, draft=models["flash"], seed=0)
    eng._plain_ms = 1e-9  # plain decoding is "free": every speculative step is a loss
    sp = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True, speculative=True)
    assert eng.generate("abc", sp).spec["steps"] >= 2
    assert eng._spec_debt_ms == 0.0
    # the same steps of a request left to the policy: a back-off longer than any fixed one
    fresh = Engine(models["target"], models["tok"], max_batch=2, draft=models["flash"], seed=0)
    fresh._plain_ms = 1e-9
    auto = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
    assert fresh.generate("abc", auto).spec["steps"] == 2  # two probing steps, then the wait
    assert fresh.stats()["totals"]["spec_backoffs"] == 1
    assert fresh._spec_probe_at - fresh._plain_count > 256
