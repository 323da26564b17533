"""Outside checks (session 22) of the RL algorithm against independent reference implementations
written from the papers' formulas — GRPO (arXiv 2402.03300), DAPO (arXiv 2503.14476), Dr. GRPO
(arXiv 2503.20783), the k3 KL estimator (Schulman, "Approximating KL divergence") — comparing
losses AND gradients on small random inputs and edge cases; the curriculum against the problems
package's split; reward values and the format bonus as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hillclimb.errors import HillclimbError
from hillclimb.rl.grpo import PolicyLoss, group_advantages, step_stats, tally_group


# ---- reference implementations (scalar loops, straight from the papers) ------------------------
def ref_advantages(rewards: list[float], std_norm: bool, eps: float = 1e-6) -> list[float]:
    """GRPO outcome supervision: Â_i = (r_i − mean(r)) / std(r); Dr. GRPO drops the division."""
    g = len(rewards)
    mean = sum(rewards) / g
    if not std_norm:
        return [r - mean for r in rewards]
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / g)
    return [(r - mean) / (std + eps) for r in rewards]


def ref_loss(logits, ids, mask, old, adv, *, T, lo, hi, agg, beta=0.0, ref=None, max_len=None):
    """−J(θ), one token at a time. Per token: min(r·A, clip(r, 1−ε_low, 1+ε_high)·A) − β·k3,
    r = π_θ/π_old, k3 = π_ref/π_θ − log(π_ref/π_θ) − 1. Aggregation: DAPO token-mean
    (1/Σ|o_i| Σ_i Σ_t), GRPO seq-mean (1/G Σ_i 1/|o_i| Σ_t), Dr. GRPO (1/G Σ_i Σ_t / MAX)."""
    B, T1 = ids.shape
    rows, n_tok = [], 0
    for i in range(B):
        terms = []
        for t in range(1, T1):
            if mask[i, t] <= 0:
                continue
            row = logits[i, t - 1]
            row = row if row.dtype == torch.float64 else row.float()
            lp = torch.log_softmax(row / T, -1)[ids[i, t]]
            r = torch.exp(lp - float(old[i, t]))
            a = float(adv[i])
            obj = torch.minimum(r * a, torch.clamp(r, 1 - lo, 1 + hi) * a)
            if beta:
                lr = float(ref[i, t]) - lp  # log(π_ref / π_θ)
                obj = obj - beta * (torch.exp(lr) - lr - 1)
            terms.append(obj)
        if terms:
            rows.append(terms)
            n_tok += len(terms)
    if not rows:
        return logits.sum() * 0.0
    if agg == "token-mean":
        return -sum(sum(r) for r in rows) / n_tok
    if agg == "seq-mean":
        return -sum(sum(r) / len(r) for r in rows) / len(rows)
    return -sum(sum(r) for r in rows) / (len(rows) * max_len)


def ours(logits, mb, loss):
    total, stats = loss(logits, mb, None)
    np_mb = {k: v.detach().float().numpy() for k, v in mb.items()}
    return total / max(loss.denominator(np_mb), 1.0), stats


def random_batch(seed, B=4, T=6, V=9, spread=0.3, far=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g)
    ids = torch.randint(0, V, (B, T + 1), generator=g)
    mask = (torch.rand(B, T + 1, generator=g) > 0.3).float()
    mask[:, 0] = 0
    mask[0] = 0  # an all-masked row
    mask[1] = 0
    mask[1, -1] = 1  # a one-token completion
    with torch.no_grad():
        lp = torch.log_softmax(logits / 0.8, -1).gather(-1, ids[:, 1:, None])[..., 0]
    old = torch.zeros(B, T + 1)
    noise = torch.randn(B, T, generator=g) * spread
    if far:  # ratios e^±3: far outside [0.8, 1.28] on both sides
        noise = torch.sign(noise) * 3.0
    old[:, 1:] = lp + noise
    ref = torch.zeros(B, T + 1)
    ref[:, 1:] = lp + torch.randn(B, T, generator=g) * 0.5
    adv = torch.randn(B, generator=g)
    mb = {"ids": ids, "mask": mask, "old_lp": old, "adv": adv, "ref_lp": ref,
          "max_len": torch.full((B,), 11)}  # fmt: skip
    return logits, mb


# ---- advantages -----------------------------------------------------------------------------------
@pytest.mark.parametrize("std_norm", [True, False])
@pytest.mark.parametrize(
    "rewards",
    [[1.0, 0.0, 0.0, 1.0], [0.3, 0.7, 0.2], [5.0, 5.0, 5.0], [0.1 + 0.2, 0.3], [2.5], [-1.0, 3.0]],
)
def test_advantages_equal_the_papers_formulas(rewards, std_norm):
    got = group_advantages(rewards, std_norm=std_norm)
    assert all(math.isfinite(a) for a in got)  # a zero-std group gives 0, never NaN
    assert got == pytest.approx(ref_advantages(rewards, std_norm), abs=1e-9)


def test_zero_std_groups_train_nothing_and_make_no_nan():
    for dyn in (True, False):
        st = step_stats()
        adv = tally_group(st, "a/1", [False] * 4, [False] * 4, [3] * 4, [0.0] * 4, [0.0] * 4,
                          dynamic_sampling=dyn, std_norm=True)  # fmt: skip
        assert (adv is None) if dyn else (adv == [0.0] * 4)
        assert st["dropped"] == int(dyn)


# ---- the policy loss: value and gradient against the reference ---------------------------------
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean", "dr-grpo"])
@pytest.mark.parametrize("far", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_policy_loss_and_gradient_equal_the_reference(agg, far, beta, seed):
    logits, mb = random_batch(seed, far=far)
    if not beta:
        mb.pop("ref_lp")
    loss = PolicyLoss(temperature=0.8, clip_low=0.2, clip_high=0.28, agg=agg, kl_beta=beta)
    a = logits.clone().requires_grad_(True)
    got, _ = ours(a, mb, loss)
    got.backward()
    b = logits.clone().requires_grad_(True)
    want = ref_loss(b, mb["ids"], mb["mask"], mb["old_lp"], mb["adv"], T=0.8, lo=0.2, hi=0.28,
                    agg=agg, beta=beta, ref=mb.get("ref_lp"), max_len=11)  # fmt: skip
    want.backward()
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5, abs=1e-7)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)


def test_the_clip_is_one_sided_per_sign_of_the_advantage():
    """min(r·A, clip(r)·A): for A > 0 only r > 1 + ε_high is cut, for A < 0 only r < 1 − ε_low;
    a ratio far out on the other side keeps its full (unbounded) gradient."""
    V = 5
    logits = torch.zeros(1, 1, V)
    ids = torch.tensor([[0, 3]])
    lp = math.log(1 / V)
    for log_r, adv, cut in [(3.0, 1.0, True), (3.0, -1.0, False), (-3.0, -1.0, True),
                            (-3.0, 1.0, False), (0.27, 1.0, True), (0.2, 1.0, False),
                            (-0.3, -1.0, True), (-0.2, -1.0, False)]:  # fmt: skip
        x = logits.clone().requires_grad_(True)
        mb = {"ids": ids, "mask": torch.tensor([[0.0, 1.0]]),
              "old_lp": torch.tensor([[0.0, lp - log_r]]), "adv": torch.tensor([adv])}  # fmt: skip
        total, st = PolicyLoss()(x, mb, None)
        total.backward()
        r = math.exp(log_r)
        assert float(total.detach()) == pytest.approx(
            -min(r * adv, min(max(r, 0.8), 1.28) * adv), rel=1e-5
        )
        assert (float(x.grad.abs().sum()) == 0.0) == cut, (log_r, adv)
        assert st["clipped_tokens"] == float(cut)


@pytest.mark.parametrize("junk", [200.0, math.nan])
def test_masked_positions_never_reach_the_gradient(junk):
    """Prompt, padding and forced positions hold whatever the batch left there (the reference
    log-probs cover every position, padding included): a masked position whose policy and
    reference log-probs differ by more than float32's exp range (~88 nats, e.g. at a low rollout
    temperature) made k3 inf there, and torch.where's zero gradient times inf was NaN in every
    weight — the run stopped with a non-finite gradient norm."""
    logits, mb = random_batch(5)
    masked = mb["mask"] == 0
    mb["ref_lp"] = torch.where(masked, torch.full_like(mb["ref_lp"], junk), mb["ref_lp"])
    mb["old_lp"] = torch.where(masked, torch.full_like(mb["old_lp"], -junk), mb["old_lp"])
    for agg in ("token-mean", "seq-mean", "dr-grpo"):
        x = logits.clone().requires_grad_(True)
        got, st = ours(x, mb, PolicyLoss(temperature=0.8, agg=agg, kl_beta=0.5))
        got.backward()
        assert torch.isfinite(x.grad).all() and math.isfinite(float(got.detach())), agg
        assert math.isfinite(st["kl_sum"]) and math.isfinite(st["abs_logp_gap"])
        y = logits.clone().requires_grad_(True)
        want = ref_loss(y, mb["ids"], mb["mask"], mb["old_lp"], mb["adv"], T=0.8, lo=0.2,
                        hi=0.28, agg=agg, beta=0.5, ref=mb["ref_lp"], max_len=11)  # fmt: skip
        want.backward()
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-7)


def test_an_all_masked_batch_is_zero_with_a_zero_gradient():
    logits, mb = random_batch(3)
    mb["mask"].zero_()
    for agg in ("token-mean", "seq-mean", "dr-grpo"):
        x = logits.clone().requires_grad_(True)
        got, st = ours(x, mb, PolicyLoss(agg=agg, kl_beta=0.1))
        got.backward()
        assert (
            float(got.detach()) == 0.0
            and float(x.grad.abs().sum()) == 0.0
            and st["loss_tokens"] == 0
        )


def test_bf16_autocast_keeps_the_loss_and_advantages_in_float32():
    logits, mb = random_batch(4)
    want, _ = ours(logits.clone(), mb, PolicyLoss(temperature=0.8))
    mb16 = {**mb, "adv": mb["adv"].to(torch.bfloat16)}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = logits.to(torch.bfloat16).requires_grad_(True)
        got, _ = ours(x, mb16, PolicyLoss(temperature=0.8))
    assert got.dtype == torch.float32
    got.backward()
    assert x.grad is not None and torch.isfinite(x.grad.float()).all()
    # bf16 logits round to 3 significant digits; the loss follows within that
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=0.05, abs=0.02)


# ---- rewards --------------------------------------------------------------------------------------
def _rollout(text="The answer is 5.", family="arith", **kw):
    from hillclimb.problems import generate
    from hillclimb.rl.rollout import Rollout

    p = generate(family, 1, 1, 0)[0]
    content = text.rsplit("</think>", 1)[1] if "</think>" in text else text  # as the engine
    return Rollout(problem=p, sample=0, prompt_ids=[1], text=text, content_text=content, **kw)


class _RaisingFloat:
    def __float__(self):
        raise ZeroDivisionError("no value yet")


@pytest.mark.parametrize(
    "value",
    [
        np.array("1"),
        np.array(b"1"),
        np.array("0.5", dtype=object),
        np.array(None, dtype=object),
        np.array("2020-01-01", dtype="datetime64[D]"),
        _RaisingFloat(),
    ],  # fmt: skip
    ids=["str-array", "bytes-array", "object-str", "object-none", "datetime", "raising-float"],
)
def test_a_reward_that_is_no_real_number_is_an_error_not_a_reward(value):
    """`float(np.array("1"))` is 1.0: a reward function that returned text inside a NumPy array
    trained on it silently (a plain "1" has always been refused); a value whose own __float__
    raised was a bare traceback instead of the error naming the function and the problem."""
    from hillclimb.rl.rewards import score

    with pytest.raises(HillclimbError, match="reward function .* a reward must be a real number"):
        score(lambda r: value, _rollout())


@pytest.mark.parametrize(
    "value, want",
    [
        (True, 1.0),
        (np.bool_(False), 0.0),
        (np.float32(0.25), 0.25),
        (np.int64(2), 2.0),
        (np.array(0.5), 0.5),
        (np.array(0.5, dtype=object), 0.5),
        (torch.tensor(0.75), 0.75),
    ],  # fmt: skip
)
def test_real_numbers_of_every_documented_kind_are_read(value, want):
    from hillclimb.rl.rewards import score

    assert score(lambda r: value, _rollout()) == want


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float16("inf"), None, "1"])
def test_non_finite_none_and_text_rewards_stop_the_run(value):
    from hillclimb.rl.rewards import score

    with pytest.raises(HillclimbError, match="reward function"):
        score(lambda r: value, _rollout())


@pytest.mark.parametrize(
    "text, paid",
    [("The answer is 5.", True), ("<think>work</think>\n\nThe answer is 5.", True),
     ("Answer: 7", True), ("<think>the answer needs care</think>\n5", False),
     ("I answered 5", False), ("<think>The answer is 5.</think>", False),
     ("<think>The answer is 5.", False), ("The answer is 5 or 6.", False), ("5", False)],
)  # fmt: skip
def test_format_bonus_needs_the_answer_convention_in_the_final_content(text, paid):
    """The bonus is for an extractable final answer in the convention ("The answer is X."): the
    word "answer" in the reasoning, or "answered" in a sentence, earned it before."""
    from hillclimb.rl.rewards import has_format, load_reward

    r = _rollout(text)
    assert has_format(r) is paid
    assert load_reward(None, format_bonus=0.1)(r) == pytest.approx(0.1 if paid else 0.0)


@pytest.mark.parametrize(
    "text, paid",
    [("```python\ndef f():\n    return 1\n```", True),
     ("<think>plan</think>\n```python\nx = 1\n```", True), ("```", False),
     ("```python\n```", False), ("<think>```python\nx = 1\n```</think>\nx = 1", False),
     ("def f():\n    return 1", False)],
)  # fmt: skip
def test_format_bonus_for_code_is_a_fenced_block_with_code(text, paid):
    from hillclimb.rl.rewards import has_format

    assert has_format(_rollout(text, family="code_function")) is paid


# ---- overlong handling -------------------------------------------------------------------------
def _sized(n, truncated, passed=False):
    return _rollout(completion_tokens=n, finish_reason="length" if truncated else "stop",
                    passed=passed, completion_ids=list(range(n)))  # fmt: skip


def ref_soft_overlong(n: int, l_max: int, l_cache: int) -> float:
    """DAPO eq. 13: 0 up to L_max − L_cache, then ((L_max − L_cache) − |y|) / L_cache, −1 beyond."""
    if n <= l_max - l_cache:
        return 0.0
    if n <= l_max:
        return ((l_max - l_cache) - n) / l_cache
    return -1.0


@pytest.mark.parametrize("mode", ["mask", "soft", "none"])
def test_overlong_modes_follow_dapo(mode):
    from hillclimb.rl.rewards import shape_group

    budget, buf = 40, 8
    lens = [1, 31, 32, 33, 36, 39, 40, 41, 55]
    group = [_sized(n, truncated=n >= budget, passed=i % 2 == 0) for i, n in enumerate(lens)]
    raw = [float(r.passed) for r in group]
    shaped, keep, info = shape_group(group, raw, budget=budget, overlong=mode,
                                     overlong_buffer=buf, alp_beta=0.0)  # fmt: skip
    assert info["solve_rate"] == pytest.approx(5 / 9)
    if mode == "soft":
        want = [x + ref_soft_overlong(n, budget, buf) for x, n in zip(raw, lens, strict=True)]
        assert shaped == pytest.approx(want, abs=1e-12)
    else:
        assert shaped == raw
    # "mask" (DAPO's overlong filtering): exactly the truncated completions get no gradient
    assert keep == [not (mode == "mask" and r.truncated) for r in group]


# ---- curriculum -----------------------------------------------------------------------------------
def _curriculum(**kw):
    from hillclimb.rl.curriculum import Curriculum

    args = dict(families=["arith", "logic"], tiers=[1, 2, 3, 4], start_tier=1, promote_at=0.8,
                pool_size=200, seed=7)  # fmt: skip
    args.update(kw)
    return Curriculum(args.pop("families"), args.pop("tiers"), **args)


def test_the_curriculum_draws_only_training_problems():
    """Every drawn problem is of the train split: its key is in the train bucket and is no key
    (and no prompt) of the val or held-out splits the evaluation uses, for any seed."""
    from hillclimb import problems as P
    from hillclimb.problems.base import key_bucket

    cur = _curriculum(start_tier=4)
    drawn = [p for step in range(4) for p in cur.draw(step, 64)]
    assert {p.split for p in drawn} == {"train"}
    assert all(key_bucket(p.family, p.key) == "train" for p in drawn)
    for f in ("arith", "logic"):
        for t in (1, 2, 3, 4):
            held = [q for split in ("val", "heldout", "heldout_phrasing") for seed in (0, 7)
                    for q in P.generate(f, t, 30, seed, split)]  # fmt: skip
            mine = [p for p in drawn if (p.family, p.tier) == (f, t)]
            assert not {p.key for p in mine} & {q.key for q in held}
            assert not {p.prompt for p in mine} & {q.prompt for q in held}


def test_start_tier_unlocks_every_tier_up_to_it():
    """`--start-tier 2` with `--tiers 1,2` is "both tiers unlocked" (BENCHMARKS.md, RL sweep):
    the tiers up to the start train from the first step, the ones above unlock in turn."""
    cur = _curriculum(start_tier=3)
    assert cur.cells() == [(f, t) for f in ("arith", "logic") for t in (1, 2, 3)]
    assert {p.tier for p in cur.draw(0, 64)} == {1, 2, 3}
    assert _curriculum(start_tier=1).cells() == [("arith", 1), ("logic", 1)]


def test_promotion_unlocks_one_tier_when_the_top_tier_saturates():
    cur = _curriculum()
    arith1, logic1 = _curriculum().pool("arith", 1)[0], _curriculum().pool("logic", 1)[0]
    cur.observe(arith1, 0.79)
    assert cur.promote() == []
    cur.observe(arith1, 1.0)  # EMA 0.7 · 0.79 + 0.3 · 1 = 0.853 ≥ 0.8
    cur.observe(logic1, 0.5)
    assert cur.promote() == ["arith/2"]
    assert cur.unlocked == {"arith": [1, 2], "logic": [1]}
    assert cur.promote() == []  # tier 2 not tried yet: nothing more moves
    for t in (2, 3, 4):
        cur.observe(_curriculum().pool("arith", t)[0], 1.0)
        cur.promote()
    assert cur.unlocked["arith"] == [1, 2, 3, 4] and cur.promote() == []  # no tier 5
    # weights: p(1 − p) + 0.05, untried 0.3
    assert cur.weight("logic", 1) == pytest.approx(0.5 * 0.5 + 0.05)
    assert cur.weight("logic", 2) == pytest.approx(0.3)


def test_the_curriculum_is_deterministic_in_its_seed_and_resumes_from_its_state():
    a, b = _curriculum(), _curriculum()
    for cur in (a, b):
        cur.observe(cur.pool("arith", 1)[0], 1.0)
        cur.promote()
    assert [p.id for p in a.draw(3, 32, 1)] == [p.id for p in b.draw(3, 32, 1)]
    assert [p.id for p in a.draw(3, 32)] != [p.id for p in a.draw(4, 32)]
    assert [p.id for p in a.draw(3, 32)] != [p.id for p in _curriculum(seed=8).draw(3, 32)]
    c = _curriculum()
    c.load(a.state())
    assert c.state() == a.state()
    assert [p.id for p in c.draw(5, 32)] == [p.id for p in a.draw(5, 32)]


# ---- a built batch: forced tokens, non-finite rollout log-probs, one-token completions ------------
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean", "dr-grpo"])
def test_a_built_batch_trains_exactly_the_sampled_tokens(agg):
    """Rows from rollouts (`rl.train.build_batch`) through `PolicyLoss` equal the reference
    computed from the rollouts themselves: completion token j of a prompt of p tokens is predicted
    by logit row p + j − 1; forced tokens, tokens without a finite rollout log-prob, the members
    overlong masking dropped and prompt tokens carry nothing."""
    from hillclimb.rl.train import build_batch

    g = torch.Generator().manual_seed(11)
    V, budget = 13, 9
    spec = [  # (prompt length, completion length, forced positions, keep, advantage)
        (3, 5, {4}, True, 0.7), (4, 1, set(), True, -1.2), (2, 6, set(), False, 0.3),
        (3, 2, {0, 1}, True, 0.9), (5, 4, {1}, True, -0.4),
    ]  # fmt: skip
    rolls, advs, keeps = [], [], []
    for i, (p, c, forced, keep, a) in enumerate(spec):
        ids = torch.randint(0, V, (p + c,), generator=g).tolist()
        lps = (-torch.rand(c, generator=g) * 2).tolist()
        if i == 4:
            lps[2] = -math.inf  # a token the rollout cannot have sampled: no gradient
        r = _rollout(completion_tokens=c, finish_reason="stop", completion_ids=ids[p:],
                     logprobs=lps, forced=[j in forced for j in range(c)])  # fmt: skip
        r.prompt_ids = ids[:p]
        rolls.append(r)
        advs.append(a)
        keeps.append(keep)
    batch = build_batch([{"rollouts": rolls, "adv": advs, "keep": keeps}], 1, budget)
    B, T1 = batch["ids"].shape
    logits = torch.randn(B, T1 - 1, V, generator=g)
    x = logits.clone().requires_grad_(True)
    mb = {k: torch.from_numpy(v) for k, v in batch.items()}
    loss = PolicyLoss(temperature=0.9, agg=agg)
    got, _ = ours(x, mb, loss)
    got.backward()
    # the reference, from the rollouts: which logit row scores which sampled token
    y = logits.clone().requires_grad_(True)
    rows = []
    for b, (r, a) in enumerate((r, a) for r, a, k in zip(rolls, advs, keeps, strict=True) if k):
        p, terms = len(r.prompt_ids), []
        for j, tok in enumerate(r.completion_ids):
            if r.forced[j] or not math.isfinite(r.logprobs[j]):
                continue
            lp = torch.log_softmax(y[b, p + j - 1] / 0.9, -1)[tok]
            ratio = torch.exp(lp - r.logprobs[j])
            terms.append(torch.minimum(ratio * a, ratio.clamp(0.8, 1.28) * a))
        if terms:
            rows.append(terms)
    if agg == "token-mean":
        want = -sum(sum(t) for t in rows) / sum(len(t) for t in rows)
    elif agg == "seq-mean":
        want = -sum(sum(t) / len(t) for t in rows) / len(rows)
    else:
        want = -sum(sum(t) for t in rows) / (len(rows) * budget)
    want.backward()
    assert len(rows) == 3  # the dropped member and the all-forced row train nothing
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-7)


def test_a_ratio_beyond_float32_on_the_clipped_side_is_clipped_not_nan():
    """A token whose ratio overflows float32 (log-ratio > 88: a stale or mismatched rollout
    log-prob, several epochs of drift) is clipped for A > 0 and worth 0 for A = 0 — its gradient
    is exactly 0 — but exp gave inf, and 0 · inf made the gradient (A > 0) or the loss (A = 0)
    NaN, stopping the run. The reference runs in float64, where the ratio is finite."""
    logits, mb = random_batch(8, B=3)
    mb["mask"][:, :] = 0
    mb["mask"][:, 3:5] = 1
    mb["adv"] = torch.tensor([1.0, 0.0, 0.5])
    with torch.no_grad():
        lp = torch.log_softmax(logits / 0.8, -1).gather(-1, mb["ids"][:, 1:, None])[..., 0]
    mb["old_lp"][:, 1:] = lp - 0.1
    mb["old_lp"][:, 4] = lp[:, 3] - 100.0  # ratio e^100 at position 4 of every row
    for agg in ("token-mean", "seq-mean", "dr-grpo"):
        x = logits.clone().requires_grad_(True)
        got, _ = ours(x, mb, PolicyLoss(temperature=0.8, agg=agg))
        got.backward()
        y = logits.double().requires_grad_(True)
        want = ref_loss(y, mb["ids"], mb["mask"], mb["old_lp"].double(), mb["adv"], T=0.8,
                        lo=0.2, hi=0.28, agg=agg, max_len=11)  # fmt: skip
        want.backward()
        assert math.isfinite(float(got.detach())) and torch.isfinite(x.grad).all(), agg
        assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
        torch.testing.assert_close(x.grad, y.grad.float(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("budget", [48, 64])
def test_soft_overlong_with_a_cell_budget_inside_its_buffer_is_refused(budget):
    """With max_tokens unset each cell's budget comes from its reference solutions (48 tokens
    for arith tier 1 on the tiny tokenizer): `--overlong soft --overlong-buffer 64` passed the
    config check and then punished every completion of such a cell by its length (an empty
    one lost 0.25), silently a length penalty."""
    from hillclimb.rl.rewards import shape_group

    group = [_sized(5, False, True), _sized(9, False)]
    with pytest.raises(HillclimbError, match=r"overlong 'soft' needs the token budget \(arith/1\)"):
        shape_group(group, [1.0, 0.0], budget=budget, overlong="soft", overlong_buffer=64,
                    alp_beta=0.0)  # fmt: skip
    shaped, _, _ = shape_group(group, [1.0, 0.0], budget=budget, overlong="mask",
                               overlong_buffer=64, alp_beta=0.0)  # fmt: skip
    assert shaped == [1.0, 0.0]
    shaped, _, _ = shape_group(group, [1.0, 0.0], budget=65, overlong="soft",
                               overlong_buffer=64, alp_beta=0.0)  # fmt: skip
    assert shaped == [1.0 - 4 / 64, -8 / 64]  # just above the buffer: the ramp from token 1


# ---- report ---------------------------------------------------------------------------------------
def test_the_report_plots_a_router_agreement_of_zero(tmp_path, monkeypatch):
    """The panel's router-agreement line skipped steps whose agreement was 0.0 (a falsy test):
    the collapse the panel exists to show was left out of it."""
    import json

    from hillclimb.rl import report

    steps = [
        {"step": i, "reward": 0.5, "pass_rate": 0.5, "logp_gap": 1e-6, "completion_tokens": 10,
         "mean_tokens": 5.0, "router_agreement": a,
         "time": {"rollout_s": 1.0, "reward_s": 0.1, "update_s": 1.0, "sync_s": 0.01}}
        for i, a in ((1, 1.0), (2, 0.0), (3, None), (4, 0.5))
    ]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    figs = []
    real_save = report._save
    monkeypatch.setattr(report, "_save", lambda fig, path: (figs.append(fig), real_save(fig, path)))
    assert report.plot_rl(tmp_path, tmp_path / "rl.png", "t")
    twins = [a for a in figs[0].axes if a.get_ylabel() == "router agreement"]
    xs, ys = twins[0].lines[0].get_data()
    assert list(xs) == [1, 2, 4] and list(ys) == [1.0, 0.0, 0.5]
    assert "min 0.0000" in "\n".join(report.summary_lines(tmp_path))
