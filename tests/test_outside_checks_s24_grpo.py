"""Outside checks (session 24) of the RL loss math against reference implementations written here
from the papers' formulas (plain torch, float64), not from `rl.grpo`:

- GRPO (DeepSeekMath, arXiv 2402.03300): Â_i = (r_i − mean r) / (std r + ε), every token of o_i
  carries Â_i; GRPO's loss is the mean over sequences of the per-sequence token mean.
- Dr. GRPO (arXiv 2503.20783): no std division; Σ_tokens ℓ / (sequences × MAX_TOKENS).
- DAPO (arXiv 2503.14476): token-mean over the whole batch, clip-higher (ε_low 0.2, ε_high 0.28),
  dynamic sampling, overlong filtering and the soft overlong punishment
  R = 0 (|y| ≤ L_max − L_cache), (L_max − L_cache − |y|) / L_cache (up to L_max), −1 beyond.
- PPO (Schulman 2017): per token A·min(r, 1+ε_high) for A ≥ 0 and A·max(r, 1−ε_low) for A < 0
  (the min of the clipped and unclipped surrogate, written per sign of A), r = π_θ / π_old.
- k3 (Schulman, "Approximating KL divergence"): k3 = ρ − 1 − log ρ, ρ = π_ref / π_θ.
- ALP (arXiv 2506.05256): r − β · N · max(p_solved, 1/K) (N normalised by the cell budget here).

Values and gradients are compared on small random inputs at 1e-6."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hillclimb.rl.grpo import PolicyLoss, group_advantages, k3, step_stats, tally_group
from hillclimb.rl.rewards import shape_group
from hillclimb.rl.rollout import Rollout

TOL = 1e-6


# ---- reference implementations ----------------------------------------------------------------
def ref_advantages(rewards: list[float], std_norm: bool, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's group-normalised advantage (population std, + ε in the denominator); Dr. GRPO
    without the division."""
    r = torch.tensor(rewards, dtype=torch.float64)
    a = r - r.mean()
    return a / (r.std(unbiased=False) + eps) if std_norm else a


def ref_surrogate(ratio: torch.Tensor, a: float, lo: float, hi: float) -> torch.Tensor:
    """PPO's clipped objective per token, written per sign of the advantage (the min becomes an
    upper bound on the ratio for A ≥ 0 and a lower bound for A < 0)."""
    if a >= 0:
        return torch.clamp(ratio, max=1.0 + hi) * a
    return torch.clamp(ratio, min=1.0 - lo) * a


def ref_k3(logp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """k3 = ρ − 1 − log ρ with ρ = π_ref / π_θ."""
    rho = torch.exp(ref - logp)
    return rho - 1.0 - torch.log(rho)


def ref_objective(
    logits: torch.Tensor,
    seqs: list[dict],
    *,
    T: float,
    lo: float,
    hi: float,
    agg: str,
    beta: float = 0.0,
    real_vocab: int | None = None,
    max_len: int | None = None,
) -> torch.Tensor:
    """The loss (−J) of sequences given as lists: `seqs[i]` holds `row` (batch row of its
    logits), `pos` (the logits positions that predict its trained tokens), `tok` (those tokens),
    `old`, `ref` (per token) and `adv`. Computed in float64 from the logits."""
    per_seq = []
    for s in seqs:
        if not s["pos"]:
            continue
        lg = logits[s["row"], s["pos"]].double()
        if real_vocab is not None:
            lg = lg[:, :real_vocab]
        logp = torch.log_softmax(lg / T, dim=-1)[torch.arange(len(s["tok"])), s["tok"]]
        ratio = torch.exp(logp - torch.tensor(s["old"], dtype=torch.float64))
        obj = ref_surrogate(ratio, s["adv"], lo, hi)
        if beta:
            obj = obj - beta * ref_k3(logp, torch.tensor(s["ref"], dtype=torch.float64))
        per_seq.append(-obj)
    if not per_seq:
        return logits.sum().double() * 0.0
    if agg == "token-mean":
        return torch.cat(per_seq).sum() / sum(len(x) for x in per_seq)
    if agg == "seq-mean":
        return torch.stack([x.mean() for x in per_seq]).mean()
    assert agg == "dr-grpo" and max_len is not None
    return torch.cat(per_seq).sum() / (len(per_seq) * max_len)


# ---- random batches -----------------------------------------------------------------------------
def random_case(
    seed: int,
    *,
    lens: list[int],
    V: int = 11,
    T1: int = 14,
    spread: float = 0.4,
    real: int | None = None,
) -> tuple[dict[str, np.ndarray], list[dict], torch.Tensor]:
    """A batch (the arrays `PolicyLoss` reads) and the same data as per-sequence lists. Row i has
    a prompt of 2 tokens and `lens[i]` completion tokens, some masked (forced); old and ref
    log-probs are the current ones plus noise of `spread` nats (ratios land on both sides of
    both clips); masked positions hold junk the loss must ignore."""
    g = torch.Generator().manual_seed(seed)
    B = len(lens)
    logits = torch.randn(B, T1 - 1, V, generator=g) * 2
    ids = torch.randint(0, real or V, (B, T1), generator=g)  # sampled ids are real tokens
    mask = np.zeros((B, T1), dtype=np.float32)
    old = np.full((B, T1), 40.0, dtype=np.float32)
    ref = np.full((B, T1), -90.0, dtype=np.float32)
    adv = (torch.randn(B, generator=g, dtype=torch.float64) * 1.5).numpy().astype(np.float32)
    lp_all = torch.log_softmax(logits[..., :real].double(), -1)
    seqs = []
    for i, n in enumerate(lens):
        s = {"row": i, "pos": [], "tok": [], "old": [], "ref": [], "adv": float(adv[i])}
        for j in range(2, 2 + n):
            if torch.rand(1, generator=g).item() < 0.15:  # forced token: no gradient
                continue
            lp = float(lp_all[i, j - 1, ids[i, j]])
            mask[i, j] = 1.0
            old[i, j] = lp + float(torch.randn(1, generator=g)) * spread
            ref[i, j] = lp + float(torch.randn(1, generator=g)) * spread
            s["pos"].append(j - 1)
            s["tok"].append(int(ids[i, j]))
            s["old"].append(float(old[i, j]))
            s["ref"].append(float(ref[i, j]))
        seqs.append(s)
    batch = {
        "ids": ids.numpy(),
        "mask": mask,
        "old_lp": old,
        "ref_lp": ref,
        "adv": adv,
        "max_len": np.full((B,), 37, dtype=np.int64),
    }
    return batch, seqs, logits


def ours(loss: PolicyLoss, batch: dict[str, np.ndarray], logits: torch.Tensor, micro: int = 0):
    """Our loss as `Trainer.update` computes it: Σ over micro-batches of the loss's sum, divided
    by the denominator of the whole batch (`micro` rows per call; 0: one call)."""
    B = batch["ids"].shape[0]
    step = micro or B
    total = logits.sum() * 0.0
    for s in range(0, B, step):
        mb = {k: torch.from_numpy(np.ascontiguousarray(v[s : s + step])) for k, v in batch.items()}
        part, _ = loss(logits[s : s + step], mb, None)
        total = total + part
    return total / max(loss.denominator(batch), 1.0)


def _both(loss, batch, seqs, logits, *, micro=0, **kw):
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    got = ours(loss, batch, a, micro)
    want = ref_objective(b, seqs, **kw)
    got.backward()
    want.backward()
    return got.detach(), want.detach(), a.grad, b.grad


# ---- advantages -----------------------------------------------------------------------------------
@pytest.mark.parametrize("std_norm", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_group_advantages_match_grpo_and_dr_grpo(std_norm, seed):
    rng = np.random.default_rng(seed)
    G = int(rng.integers(2, 17))
    scale = 10.0 ** rng.integers(-3, 4)
    rewards = (rng.normal(size=G) * scale).tolist()
    if seed % 2:  # binary verifier rewards, the common case
        rewards = rng.integers(0, 2, size=G).astype(float).tolist()
    got = torch.tensor(group_advantages(rewards, std_norm=std_norm), dtype=torch.float64)
    want = ref_advantages(rewards, std_norm)
    assert torch.allclose(got, want, atol=TOL, rtol=TOL), (got, want)


def test_the_std_epsilon_is_added_to_the_std_not_under_the_root():
    """At a reward spread comparable to ε the placement of ε shows: (r−μ)/(σ+ε) vs /√(σ²+ε)."""
    rewards = [0.0, 2e-6]
    got = group_advantages(rewards)
    assert got == pytest.approx(ref_advantages(rewards, True).tolist(), abs=TOL)
    assert got[1] == pytest.approx(1e-6 / (1e-6 + 1e-6), abs=TOL)  # 0.5, not ~1


@pytest.mark.parametrize("value", [0.0, 1.0, -3.5, 0.1, 1e-12])
@pytest.mark.parametrize("std_norm", [True, False])
def test_identical_rewards_give_zero_advantage_and_are_dropped(value, std_norm):
    G = 7
    adv = group_advantages([value] * G, std_norm=std_norm)
    assert all(abs(a) <= TOL for a in adv)
    st = step_stats()
    kw = dict(dynamic_sampling=True, std_norm=std_norm)
    assert (
        tally_group(st, "c", [False] * G, [False] * G, [3] * G, [value] * G, [value] * G, **kw)
        is None
    )
    assert st["dropped"] == 1
    st = step_stats()
    kw["dynamic_sampling"] = False
    kept = tally_group(st, "c", [False] * G, [False] * G, [3] * G, [value] * G, [value] * G, **kw)
    assert kept is not None and all(abs(a) <= TOL for a in kept) and st["dropped"] == 0


# ---- the policy loss ---------------------------------------------------------------------------------
LENS = [1, 9, 3, 11, 0, 6]  # very different lengths, and an empty row (all masked)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean", "dr-grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("T", [1.0, 0.7])
@pytest.mark.parametrize("seed", range(3))
def test_loss_and_gradient_equal_the_reference(agg, beta, T, seed):
    real = 9 if seed == 1 else None  # logits past the tokenizer's size are padding
    batch, seqs, logits = random_case(seed, lens=LENS, real=real)
    loss = PolicyLoss(temperature=T, agg=agg, kl_beta=beta, real_vocab=real)
    kw = dict(T=T, lo=0.2, hi=0.28, agg=agg, beta=beta, real_vocab=real, max_len=37)
    got, want, ga, gb = _both(loss, batch, seqs, logits, **kw)
    assert abs(float(got) - float(want)) <= TOL, (float(got), float(want))
    assert torch.isfinite(ga).all()
    assert (ga.double() - gb).abs().max() <= TOL, (ga.double() - gb).abs().max()
    # micro-batching (Trainer.update's split) gives the same value: sums over the whole batch
    got2, _, ga2, _ = _both(loss, batch, seqs, logits, micro=2, **kw)
    assert abs(float(got2) - float(want)) <= TOL
    assert (ga2.double() - gb).abs().max() <= TOL


def test_token_mean_is_not_a_mean_of_sequence_means():
    """DAPO weighs every token the same: with unequal lengths its value differs from GRPO's mean
    of per-sequence means, and each option equals its own reference (so a swap would fail)."""
    batch, seqs, logits = random_case(4, lens=[1, 12])
    vals = {}
    for agg in ("token-mean", "seq-mean"):
        got, want, _, _ = _both(
            PolicyLoss(agg=agg), batch, seqs, logits, T=1.0, lo=0.2, hi=0.28, agg=agg
        )
        assert abs(float(got) - float(want)) <= TOL
        vals[agg] = float(got)
    assert abs(vals["token-mean"] - vals["seq-mean"]) > 1e-3


def test_dr_grpo_divides_by_the_constant_max_tokens_not_the_length():
    """Doubling one completion's length doubles its summed loss under dr-grpo (constant
    normaliser) but leaves seq-mean's per-sequence mean unchanged."""
    B, T1, V = 1, 10, 5
    logits = torch.zeros(B, T1 - 1, V)
    ids = np.zeros((B, T1), dtype=np.int64)
    base = {"ids": ids, "old_lp": np.full((B, T1), -math.log(V), dtype=np.float32),
            "adv": np.ones(B, dtype=np.float32), "max_len": np.full(B, 50, dtype=np.int64)}  # fmt: skip
    out = {}
    for n in (3, 6):
        mask = np.zeros((B, T1), dtype=np.float32)
        mask[0, 2 : 2 + n] = 1
        b = {**base, "mask": mask}
        for agg in ("dr-grpo", "seq-mean"):
            out[agg, n] = float(ours(PolicyLoss(agg=agg), b, logits))
    # ratio 1, A = 1: −1 per token
    assert out["dr-grpo", 3] == pytest.approx(-3 / 50, abs=TOL)
    assert out["dr-grpo", 6] == pytest.approx(-6 / 50, abs=TOL)
    assert out["seq-mean", 3] == pytest.approx(-1.0, abs=TOL)
    assert out["seq-mean", 6] == pytest.approx(-1.0, abs=TOL)


@pytest.mark.parametrize(
    "ratio,a,grad_zero",
    [
        (1.25, 1.0, False),  # inside 1 + 0.28: A > 0 still pushes up
        (1.30, 1.0, True),  # above 1 + ε_high: clipped
        (0.50, 1.0, False),  # A > 0 has no lower clip
        (0.79, -1.0, True),  # below 1 − ε_low: clipped for A < 0
        (0.81, -1.0, False),
        (3.00, -1.0, False),  # A < 0 has no upper clip (PPO's min keeps the unclipped term)
    ],
)
def test_asymmetric_clip_switches_with_the_sign_of_the_advantage(ratio, a, grad_zero):
    V = 4
    logits = torch.tensor([[[0.3, -0.2, 0.9, 0.0]]])
    lp = float(torch.log_softmax(logits[0, 0].double(), -1)[2])
    b = {"ids": np.array([[0, 2]]), "mask": np.array([[0, 1]], dtype=np.float32),
         "old_lp": np.array([[0, lp - math.log(ratio)]], dtype=np.float32),
         "adv": np.array([a], dtype=np.float32), "max_len": np.array([V])}  # fmt: skip
    x = logits.clone().requires_grad_(True)
    val = ours(PolicyLoss(clip_low=0.2, clip_high=0.28), b, x)
    val.backward()
    val = val.detach()
    r = torch.tensor(ratio, dtype=torch.float64)
    assert float(val) == pytest.approx(-float(ref_surrogate(r, a, 0.2, 0.28)), abs=1e-5)
    assert (x.grad.abs().max() == 0) == grad_zero


# ---- k3 -------------------------------------------------------------------------------------------
def test_k3_value_sign_and_gradient():
    g = torch.Generator().manual_seed(0)
    logp = (torch.randn(50, generator=g, dtype=torch.float64) - 2).requires_grad_(True)
    ref = torch.randn(50, generator=g, dtype=torch.float64) - 2
    got = k3(logp, ref)
    want = ref_k3(logp.detach(), ref)
    assert torch.allclose(got.detach(), want, atol=TOL)
    assert (got.detach() >= 0).all()
    assert k3(ref, ref).abs().max() == 0
    got.sum().backward()
    # d k3 / d log π_θ = 1 − π_ref / π_θ: positive where π_θ > π_ref (descent lowers it)
    assert torch.allclose(logp.grad, 1 - torch.exp(ref - logp.detach()), atol=TOL)
    assert ((logp.grad > 0) == (logp.detach() > ref)).all()


def test_k3_is_an_unbiased_kl_estimate_and_its_expected_gradient_closes_the_gap():
    """Exact expectations on a categorical: E_{a~π}[k3(a)] = KL(π ‖ π_ref); the expected
    per-sample gradient E_{a~π}[∇k3(a)] (samples not differentiated, as in the loss) equals
    ∇ KL(π_ref ‖ π) = π − π_ref in logit space, and a small step along −it shrinks the KL."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, generator=g, dtype=torch.float64).requires_grad_(True)
    ref = torch.log_softmax(torch.randn(7, generator=g, dtype=torch.float64), -1)
    logp = torch.log_softmax(z, -1)
    p = logp.exp()
    kl = (p * (logp - ref)).sum()
    assert float((p * k3(logp, ref)).sum().detach()) == pytest.approx(float(kl.detach()), abs=TOL)
    (p.detach() * k3(logp, ref)).sum().backward()
    assert torch.allclose(z.grad, p.detach() - ref.exp(), atol=TOL)
    with torch.no_grad():
        lp2 = torch.log_softmax(z - 0.05 * z.grad, -1)
        assert float((lp2.exp() * (lp2 - ref)).sum()) < float(kl)


def test_kl_term_has_no_gradient_through_the_reference_or_masked_positions():
    batch, seqs, logits = random_case(7, lens=[4, 5])
    mb = {k: torch.from_numpy(v).clone() for k, v in batch.items()}
    for k in ("old_lp", "ref_lp"):
        mb[k] = mb[k].float().requires_grad_(True)
    x = logits.clone().requires_grad_(True)
    part, _ = PolicyLoss(kl_beta=0.5)(x, mb, None)
    part.backward()
    # the loss reads them as constants; a gradient there would mean it trains through them
    for k in ("old_lp", "ref_lp"):
        gk = mb[k].grad
        assert gk is None or (gk[:, 1:][batch["mask"][:, 1:] == 0] == 0).all()
    # positions outside the mask get exactly no gradient even with junk old/ref there
    ids = torch.from_numpy(batch["ids"])
    for i in range(2):
        for t in range(batch["ids"].shape[1] - 1):
            if batch["mask"][i, t + 1] == 0:
                assert (x.grad[i, t] == 0).all(), (i, t)
    del ids


def test_a_rollouts_batch_holds_no_tensors_that_could_carry_gradient():
    """Advantages, rewards, old and reference log-probs reach the loss as NumPy arrays (built by
    `build_batch` / `_ref_logprobs`), so no gradient can flow into them."""
    from hillclimb.rl.train import build_batch

    b = build_batch([_group([[5, 6], [7]], [[-1.0, -2.0], [-0.5]], [0.3, -0.3])], 1, 8)
    assert all(isinstance(v, np.ndarray) for v in b.values())


# ---- masks and batches ---------------------------------------------------------------------------
def _problem():
    return SimpleNamespace(id="p", family="arith", tier=1, kind="reasoning")


def _roll(comp, lps, forced=None, finish="stop", prompt=(1, 2, 3)):
    return Rollout(
        problem=_problem(), sample=0, prompt_ids=list(prompt), completion_ids=list(comp),
        finish_reason=finish, completion_tokens=len(comp), logprobs=list(lps),
        forced=forced if forced is not None else [False] * len(comp),
    )  # fmt: skip


def _group(comps, lps, adv, keep=None, forced=None, finish=None):
    n = len(comps)
    rolls = [
        _roll(c, lp, None if forced is None else forced[i], (finish or ["stop"] * n)[i])
        for i, (c, lp) in enumerate(zip(comps, lps, strict=True))
    ]
    return {"rollouts": rolls, "adv": list(adv), "keep": keep or [True] * n}


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean", "dr-grpo"])
def test_built_batch_trains_only_sampled_kept_tokens(agg):
    """Forced tokens, tokens with a non-finite log-prob and masked (truncated) members get no
    gradient; the rest equal the reference built straight from the rollouts."""
    from hillclimb.rl.train import build_batch

    comps = [[4, 5, 6, 7, 8], [6], [7, 7, 7, 7, 7, 7, 7, 7], [5, 4]]
    lps = [[-1.1, -0.2, -2.0, -0.7, -1.5], [-0.9], [-0.3] * 8, [-1.0, float("-inf")]]
    forced = [[False, False, True, False, False], [False], [False] * 8, [False, False]]
    finish = ["stop", "stop", "length", "stop"]
    keep = [True, True, False, True]
    adv = [0.8, -1.2, 0.5, 0.3]
    grp = _group(comps, lps, adv, keep=keep, forced=forced, finish=finish)
    b = build_batch([grp], 1, 12)
    B, T1 = b["ids"].shape
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(B, T1 - 1, 10, generator=g)
    seqs, row = [], 0
    for c, lp, f, k, a in zip(comps, lps, forced, keep, adv, strict=True):
        if not k:
            continue  # overlong filtering: the truncated member is not a row at all
        pos = [3 + j - 1 for j in range(len(c)) if not f[j] and math.isfinite(lp[j])]
        tok = [c[j] for j in range(len(c)) if not f[j] and math.isfinite(lp[j])]
        old = [lp[j] for j in range(len(c)) if not f[j] and math.isfinite(lp[j])]
        seqs.append({"row": row, "pos": pos, "tok": tok, "old": old, "ref": old, "adv": a})
        row += 1
    assert B == 3
    got, want, ga, gb = _both(
        PolicyLoss(agg=agg), b, seqs, logits, T=1.0, lo=0.2, hi=0.28, agg=agg, max_len=12
    )
    assert abs(float(got) - float(want)) <= TOL
    assert (ga.double() - gb).abs().max() <= TOL


def test_harness_rows_train_only_the_models_sampled_tokens():
    """Tool observations, the task and forced tokens (loss_mask 0) get no gradient; the old
    log-probs are the episode's own per-token ones."""
    from hillclimb.rl.harness import episode_batch

    ep = SimpleNamespace(
        token_ids=[1, 2, 3, 8, 9, 4, 4, 4, 6, 7],
        loss_mask=[0, 0, 0, 1, 1, 0, 0, 0, 1, 0],  # task, turn 1, tool output, turn 2, forced
        token_logprobs=[0, 0, 0, -0.4, -1.3, 0, 0, 0, -0.8, 0],
    )
    b = episode_batch([{"episodes": [ep], "adv": [0.7]}], 1, 64)
    assert b["mask"][0].tolist()[:10] == [float(x) for x in ep.loss_mask]
    logits = torch.randn(1, b["ids"].shape[1] - 1, 12, generator=torch.Generator().manual_seed(2))
    seqs = [{"row": 0, "pos": [2, 3, 7], "tok": [8, 9, 6], "old": [-0.4, -1.3, -0.8],
             "ref": [0, 0, 0], "adv": 0.7}]  # fmt: skip
    got, want, ga, gb = _both(
        PolicyLoss(), b, seqs, logits, T=1.0, lo=0.2, hi=0.28, agg="token-mean"
    )
    assert abs(float(got) - float(want)) <= TOL and (ga.double() - gb).abs().max() <= TOL


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean", "dr-grpo"])
def test_all_masked_rows_and_batches_make_no_nan(agg):
    batch, _, logits = random_case(5, lens=[0, 0, 4])
    loss = PolicyLoss(agg=agg, kl_beta=0.2)
    assert loss.denominator(batch) == {"token-mean": batch["mask"][:, 1:].sum(),
                                       "seq-mean": 1, "dr-grpo": 37}[agg]  # fmt: skip
    empty = {**batch, "mask": np.zeros_like(batch["mask"])}
    assert loss.denominator(empty) == 0
    x = logits.clone().requires_grad_(True)
    val = ours(loss, empty, x)
    val.backward()
    assert float(val.detach()) == 0.0 and torch.isfinite(x.grad).all() and x.grad.abs().max() == 0


# ---- temperature and the sampling distribution -----------------------------------------------------
@pytest.mark.parametrize("T", [0.3, 1.0, 1.7])
def test_training_log_probs_are_the_engines_sampling_log_probs(T):
    """The ratio's numerator (`token_logp`) and the engine's recorded log-prob
    (`serve.sampling.policy_logprob` on the engine's padded-vocab logits) are the same number for
    the same logits: the ratio starts at 1."""
    from hillclimb.serve.sampling import SamplingParams, policy_logprob

    g = torch.Generator().manual_seed(0)
    V, real = 12, 9
    logits = torch.randn(1, 5, V, generator=g) * 3
    ids = torch.randint(0, real, (1, 6), generator=g)
    ours_lp = PolicyLoss(temperature=T, real_vocab=real).token_logp(logits, ids)
    sp = SamplingParams(temperature=T, max_tokens=4)
    for t in range(5):
        row = logits[0, t].clone()
        row[real:] = float("-inf")  # what Engine._real_vocab hands the sampler
        assert float(ours_lp[0, t]) == pytest.approx(
            policy_logprob(row, int(ids[0, t + 1]), sp), abs=1e-5
        )
        want = torch.log_softmax(logits[0, t, :real].double() / T, -1)[ids[0, t + 1]]
        # float32 log-probs: 1e-6 relative (a rare token at T = 0.3 sits near −30 nats)
        assert float(ours_lp[0, t]) == pytest.approx(float(want), rel=TOL, abs=TOL)


# ---- reward shaping --------------------------------------------------------------------------------
def ref_soft_overlong(n: int, L: int, C: int) -> float:
    """DAPO eq. 13: 0 up to L − C, linear to −1 at L, −1 beyond."""
    if n <= L - C:
        return 0.0
    if n <= L:
        return (L - C - n) / C
    return -1.0


@pytest.mark.parametrize("alp", [0.0, 0.5])
@pytest.mark.parametrize("n_solved", [0, 3])  # 0: ALP's floor max(p, 1/K) applies
def test_soft_overlong_and_alp_follow_their_papers(alp, n_solved):
    L, C = 40, 16
    lengths = [1, 10, 24, 25, 30, 39, 40]
    passed = [i in (0, 2, 4)[:n_solved] for i in range(len(lengths))]
    rolls = [
        Rollout(problem=_problem(), sample=i, prompt_ids=[1], completion_ids=[3] * n,
                completion_tokens=n, finish_reason="length" if n == L else "stop", passed=ok)
        for i, (n, ok) in enumerate(zip(lengths, passed, strict=True))
    ]  # fmt: skip
    raw = [1.0 if ok else 0.0 for ok in passed]
    shaped, keep, _ = shape_group(
        rolls, raw, budget=L, overlong="soft", overlong_buffer=C, alp_beta=alp
    )
    p = sum(passed) / len(passed)
    for n, r, s in zip(lengths, raw, shaped, strict=True):
        want = r + ref_soft_overlong(n, L, C) - alp * (n / L) * max(p, 1 / len(passed))
        assert s == pytest.approx(want, abs=TOL), (n, s, want)
    assert all(keep)  # soft punishes, never masks
    _, keep_m, _ = shape_group(rolls, raw, budget=L, overlong="mask", overlong_buffer=C, alp_beta=0)
    assert keep_m == [n != L for n in lengths]


def test_soft_overlong_punishes_a_completion_the_context_cut_short_of_the_budget():
    """The engine caps a completion at min(budget, context − prompt): with a budget the context
    cannot hold (thinking-micro: context 512, `--max-tokens 2000` → budget 511, a 41-token
    prompt) a completion was cut at 471 tokens — its generation limit, where DAPO gives −1 —
    and was neither punished (0, below 511 − 16) nor masked. Completions that stopped on their
    own keep the ramp relative to the budget."""
    L, C = 511, 16
    cases = [(471, "length"), (471, "stop"), (500, "stop"), (511, "length")]
    rolls = [
        Rollout(problem=_problem(), sample=i, prompt_ids=[1] * 41, completion_ids=[3] * n,
                completion_tokens=n, finish_reason=f)
        for i, (n, f) in enumerate(cases)
    ]  # fmt: skip
    shaped, keep, _ = shape_group(
        rolls, [0.0] * 4, budget=L, overlong="soft", overlong_buffer=C, alp_beta=0.0
    )
    # a truncated completion sits at its own limit L_eff = n: R = −1
    want = [ref_soft_overlong(n, n if f == "length" else L, C) for n, f in cases]
    assert want[0] == -1.0 and want[1] == 0.0
    assert shaped == pytest.approx(want, abs=TOL) and all(keep)


# ---- μ > 1: the pipeline reuses the rollout's log-probs -----------------------------------------------
@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from hillclimb.cli import main

    d = tmp_path_factory.mktemp("s24grpo") / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


def test_policy_epochs_use_the_rollouts_log_probs_and_a_frozen_reference(
    micro, tmp_path, monkeypatch
):
    """μ = 2 epochs × 2 minibatches: every update sees the same old log-probs, advantages and
    reference log-probs (NumPy, built once from the rollout), and the second epoch's ratio has
    moved away from 1 (its old log-probs are not the current policy's); the reference equals the
    initial policy's log-probs at the rollout temperature."""
    from hillclimb.rl import train as rl_train
    from hillclimb.rl.config import RLConfig
    from hillclimb.train.loop import Trainer

    seen: list[dict] = []
    real_update = Trainer.update

    def spy(self, mb, loss, *a, **kw):
        seen.append({k: v.copy() for k, v in mb.items()})
        out = real_update(self, mb, loss, *a, **kw)
        seen[-1]["gap"] = out["sums"]["abs_logp_gap"] / max(out["sums"]["loss_tokens"], 1)
        return out

    monkeypatch.setattr(Trainer, "update", spy)
    cfg = RLConfig(
        init=micro, out=tmp_path / "run", steps=1, prompts_per_step=4, group_size=4,
        families=["arith"], tiers=[1], max_tokens=4, lr=5e-2, warmup_steps=0, eval_every=0,
        overlong="none", tensorboard=False, threads=1, pool_size=64, seed=0, pareto_budgets=[],
        epochs=2, minibatches=2, kl_beta=0.1, temperature=0.8, dynamic_sampling=False,
    )  # fmt: skip
    rl_train.run_rl(
        cfg, reward_fn=lambda r: float(r.completion_ids[0] % 2) if r.completion_ids else 0.0
    )
    assert len(seen) == 4  # 2 epochs × 2 minibatches
    for k in ("old_lp", "adv", "ref_lp", "mask", "ids"):
        assert all(isinstance(s[k], np.ndarray) for s in seen)
        assert np.array_equal(seen[0][k], seen[2][k]) and np.array_equal(seen[1][k], seen[3][k])
    assert seen[0]["gap"] < 1e-4  # on-policy at the first update
    assert seen[2]["gap"] > 10 * max(seen[0]["gap"], 1e-7)  # epoch 2: old ≠ current policy
    # the reference is the initial policy at the rollout temperature: it matches the rollout
    # log-probs on trained tokens (same weights at sampling time)
    for s in seen[:2]:
        m = s["mask"] > 0
        assert np.abs(s["ref_lp"][m] - s["old_lp"][m]).max() < 1e-4


# ---- options that must not be silently ignored ---------------------------------------------------------
def test_soft_overlong_with_harness_episodes_is_refused(tmp_path):
    """Harness episodes never go through `shape_group`, so `--overlong soft` trained as `none`:
    no DAPO punishment and no word of it. It is refused, naming the option; the default (mask)
    and `none` still start."""
    from hillclimb.errors import ConfigError
    from hillclimb.rl.config import RLConfig

    with pytest.raises(ConfigError, match="overlong 'soft'.*harness"):
        RLConfig(out=tmp_path / "a", harness=str(tmp_path), overlong="soft", max_tokens=64)
    for mode in ("mask", "none"):
        assert RLConfig(out=tmp_path / "b", harness=str(tmp_path), overlong=mode).overlong == mode
    assert RLConfig(out=tmp_path / "c", overlong="soft", max_tokens=64).overlong == "soft"
