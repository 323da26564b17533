"""Session 24 (issue 15): `hillclimb serve` attaches code-flash as thinking's draft model only when
the measured step costs say speculation can pay; `--draft` still forces it.

Why: the draft used to be attached by default, and with the tiny pair (draft step 50–64% of a
target step) the runtime back-off still lost ≈5% on open-ended prompts (BENCHMARKS.md 0.95×).
"""

from __future__ import annotations

import pytest

from _server_util import make_checkpoints
from hillclimb.serve.speculative import (
    ASSUMED_ACCEPTANCE,
    MIN_EXPECTED_SPEEDUP,
    StepCosts,
    decide_draft,
    expected_speedup,
)


def _affine_costs(t: float, d: float, base: float, per: float, gmax: int = 12) -> StepCosts:
    """Costs with verification v(T) = t · (base + per · T)."""
    return StepCosts(t, d, {T: t * (base + per * T) for T in range(2, gmax + 2)})


def test_rule_refuses_the_tiny_pair_and_takes_a_cheap_draft():
    # the climb pair's measured costs (BENCHMARKS.md): t 0.66, d 0.41 ms, v(2/5/13) 0.80/1.17/1.97
    tiny = StepCosts(0.66, 0.41, {2: 0.80, 5: 1.17, 13: 1.97})
    dec = decide_draft(tiny, range(1, 13))
    assert not dec.attach and dec.policy == "auto"
    assert dec.expected is not None and dec.expected < MIN_EXPECTED_SPEEDUP
    # the documented ceiling (perfect draft) of that pair is ≈1.26×
    assert dec.ceiling == pytest.approx(1.26, abs=0.02)
    # a draft at 8% of a target step with cheap verification clears the margin
    cheap = _affine_costs(1.0, 0.08, 1.0, 0.05)
    dec = decide_draft(cheap, range(1, 13))
    assert dec.attach and dec.gamma is not None and dec.gamma > 1
    want = max(
        (1 - ASSUMED_ACCEPTANCE ** (g + 1))
        / (1 - ASSUMED_ACCEPTANCE)
        / (g * 0.08 + 1 + 0.05 * (g + 1))
        for g in range(1, 13)
    )
    assert dec.expected == pytest.approx(want, rel=1e-9)
    d = dec.as_dict()
    assert d["attached"] and d["draft_over_target"] == pytest.approx(0.08)


def test_rule_threshold_is_the_documented_one():
    # γ = 1 only: speedup = t · 1.6 / (d + v(2)); with t = v(2) = 1 it reaches 1.05 at d = 0.5238
    for d, attach in ((0.50, True), (0.52, True), (0.53, False), (0.60, False)):
        costs = StepCosts(1.0, d, {2: 1.0})
        assert expected_speedup(costs, 1, 0.6) == pytest.approx(1.6 / (d + 1.0))
        assert decide_draft(costs, [1]).attach is attach, d
    # no measured verification → never attached, with a reason
    assert not decide_draft(StepCosts(1.0, 0.1, {}), range(1, 5)).attach


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("specauto"))


def _pair(ckpts):
    from hillclimb.serve.engine import Engine

    flash = Engine.from_checkpoint(ckpts["code-flash"], device="cpu", max_batch=2, seed=0)
    target = Engine.from_checkpoint(ckpts["thinking"], device="cpu", max_batch=2, draft=flash)
    return target


def test_choose_draft_detaches_a_losing_draft_and_keeps_a_forced_one(ckpts):
    from hillclimb.errors import HillclimbError
    from hillclimb.serve.engine import SamplingParams
    from hillclimb.serve.host import choose_draft

    losing = _affine_costs(1.0, 0.6, 1.3, 0.15)
    paying = _affine_costs(1.0, 0.05, 1.0, 0.05)
    calls = []

    def measure(costs):
        return lambda eng: calls.append(eng) or costs

    # --draft: attached without measuring, even for a pair the rule would refuse
    target = _pair(ckpts)
    dec = choose_draft(target, True, measure(losing))
    assert dec.attach and dec.policy == "forced" and not calls
    assert target.draft is not None and target.default_drafter == "model"
    # auto, paying: kept
    dec = choose_draft(target, None, measure(paying))
    assert dec.attach and len(calls) == 1 and target.draft is not None
    # auto, losing: served without a draft model, and it still generates
    dec = choose_draft(target, None, measure(losing))
    assert not dec.attach and target.draft is None and target.default_drafter == "none"
    sp = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    out = target.generate("hello", sp)
    assert len(out.token_ids) == 6 and out.spec is None
    with pytest.raises(HillclimbError, match="no draft model"):
        target.generate("hello", SamplingParams(max_tokens=4, speculative=True))
    assert target.stats()["speculative"] is None


def test_load_engines_measures_by_default_and_draft_flag_forces(ckpts):
    from hillclimb.serve.host import EngineOptions, load_engines

    opts = EngineOptions(max_batch=2, device="cpu", compile=False, speculative=None)
    engines, on = load_engines(ckpts["thinking"], ckpts["code-flash"], opts)
    dec = engines["thinking"].draft_decision
    assert dec["policy"] == "auto" and dec["attached"] is on
    assert (engines["thinking"].draft is not None) is on
    assert dec["target_decode_ms"] > 0 and dec["draft_decode_ms"] > 0
    assert set(dec["verify_ms"]) == {str(T) for T in range(2, engines["thinking"].gamma_max + 2)}
    # the measurement left both caches empty
    assert int(engines["thinking"].cache.cursor.sum()) == 0
    if on:
        assert int(engines["thinking"].draft.cache.cursor.sum()) == 0
    # the start-up line printed before the banner says the same
    from types import SimpleNamespace

    from hillclimb.serve.cli import draft_line

    line = draft_line(
        SimpleNamespace(models={"thinking": SimpleNamespace(engine=engines["thinking"])})
    )
    assert line is not None and "(auto)" in line
    assert ("code-flash drafts for thinking" in line) is on and dec["reason"] in line
    forced = EngineOptions(max_batch=2, device="cpu", compile=False, speculative=True)
    engines, on = load_engines(ckpts["thinking"], ckpts["code-flash"], forced)
    assert on and engines["thinking"].draft is not None
    assert engines["thinking"].draft_decision["policy"] == "forced"


def test_serve_flags_map_to_the_policy(monkeypatch):
    import hillclimb.serve.server as server
    from hillclimb.cli import main

    seen: dict = {}

    def fake_load_state(*a, **kw):
        seen.update(kw)
        return object()

    monkeypatch.setattr(server, "load_state", fake_load_state)
    monkeypatch.setattr(server, "serve_forever", lambda *a, **kw: None)
    base = ["serve", "--thinking", "ck", "--flash", "ck2", "--port", "0"]
    for extra, want in (([], None), (["--draft"], True), (["--no-speculative"], False)):
        seen.clear()
        assert main([*base, *extra]) == 0
        assert seen["speculative"] is want, extra
    with pytest.raises(SystemExit):
        main([*base, "--draft", "--no-speculative"])
