"""The GRPO family: group-relative advantages and a clipped policy-gradient loss with the
published fixes as options.

For each prompt, G completions are sampled and rewarded; a completion's advantage is its reward
minus the group mean, divided by the group's standard deviation (GRPO, DeepSeekMath, arXiv
2402.03300) or not (`std_norm=False`: Dr. GRPO, arXiv 2503.20783, which shows the division
over-weights easy and hard prompts). Every token of a completion carries its sequence's advantage.

The std is the population std (ddof 0). DeepSeekMath writes std(r) without saying which; TRL's
`GRPOTrainer` and verl call `torch.std` (the sample std, ddof 1), so their advantages are
sqrt((G − 1)/G) of ours (0.935 at G = 8): a constant factor per G, which the learning rate absorbs
and which leaves every ordering, sign and dynamic-sampling decision unchanged. Kept as documented
(docs/areas/rl.md) rather than switched: a switch would change every run's numbers for a scale.

A length penalty with its own scale (ALP's, `length_pen` of `tally_group`) is added AFTER the
std division, centred but not divided: divided by the group std, an all-correct group's only
variation is the penalty, which the division rescales to unit size whatever the solve rate, so
ALP's "easy prompts pay more per token" cancelled (see `tally_group`).

The loss per token is PPO's clipped surrogate with asymmetric clipping (DAPO "clip-higher",
arXiv 2503.14476: ε_low 0.2, ε_high 0.28, so unlikely tokens can grow and entropy does not
collapse):

    ratio = exp(logπ_θ(a) − logπ_old(a)),   ℓ = −min(ratio·A, clip(ratio, 1−ε_low, 1+ε_high)·A)

aggregated over the batch in one of three ways (`agg`):
- `token-mean` (DAPO): Σ_tokens ℓ / (number of loss tokens in the global batch) — every token
  weighs the same, so long completions are not under-weighted;
- `seq-mean` (GRPO): Σ_seq (Σ_t ℓ / |seq|) / (number of sequences) — the original per-sequence
  mean, which under-weights long correct and long wrong answers alike;
- `dr-grpo`: Σ_tokens ℓ / (sequences × max_tokens) — Dr. GRPO's constant normaliser, no length
  bias at all.
Optional KL to a frozen reference policy with the k3 estimator (Schulman 2020: k3 = r − 1 −
log r with r = π_ref/π_θ, unbiased and ≥ 0), weight `kl_beta` (default 0: DAPO and Dr. GRPO drop
it for verifiable rewards).

`logπ_θ` is computed at the rollout temperature (logits / T), the distribution tokens were
sampled from, so the importance ratio starts at 1 (up to rounding; the rollout-vs-train gap is
logged). Forced tokens (the engine's reasoning-budget `</think>`) and prompt tokens are masked.
The loss object follows `train.loop.Trainer.update`'s protocol: `denominator(global batch)` and
`__call__(logits, micro-batch, model) → (sum, stats)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hillclimb.errors import ConfigError, HillclimbError

AGGREGATIONS = ("token-mean", "seq-mean", "dr-grpo")


def group_advantages(rewards: list[float], std_norm: bool = True, eps: float = 1e-6) -> list[float]:
    """Advantages of one group: (r − mean) [/ (std + eps)] (the population std: see the module
    docstring for why not the sample std TRL uses)."""
    if not rewards:
        return []
    r = np.asarray(rewards, dtype=np.float64)
    if std_norm:
        # computed on r / max|r| (the same value: a / (std + eps) = u / (std_u + eps / s)):
        # finite rewards above ~1e154 overflowed the squares in the std to inf, and every
        # advantage silently became 0 (or NaN)
        s = float(np.abs(r).max())
        if s == 0.0:
            return [0.0] * len(rewards)
        u = r / s
        return ((u - u.mean()) / (u.std() + eps / s)).tolist()
    return (r - r.mean()).tolist()


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_θ ‖ π_ref) from samples of π_θ: r − 1 − log r, r = π_ref/π_θ."""
    d = ref_logp - logp
    return torch.exp(d) - 1.0 - d


@dataclass
class PolicyLoss:
    """The clipped policy-gradient loss over a batch of rollouts.

    Batch arrays (ids axis, `[B, T + 1]`, as `Trainer.update` slices them): `ids`, `mask` (1 on
    completion tokens that get a gradient), `old_lp` (each token's log-prob under the rollout
    policy), `adv` (`[B]`), optional `ref_lp`; `max_len` (one number) for `dr-grpo`; optional
    `gidx` (row of `guide_table` each token was drawn under, −1 = the full vocabulary: tokens of
    schema-guided tool calls, `rl.guided`)."""

    temperature: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.28
    agg: str = "token-mean"
    kl_beta: float = 0.0
    name: str = "pg"
    # the tokenizer's size: logits from here on are the embedding table's padding, which the
    # engine never samples (`Engine._real_vocab`), so log π is the softmax over the real tokens
    real_vocab: int | None = None
    # bool [K, V]: the grammar masks of this update's guided tokens (`rl.guided.GuideTable`),
    # set by the harness RL loop before each update; log π is then renormalised over the
    # allowed tokens, the distribution the rollout sampled from
    guide_table: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.agg not in AGGREGATIONS:
            raise ConfigError(f"loss aggregation must be one of {AGGREGATIONS}, got {self.agg!r}")
        if not (0 <= self.clip_low < 1 and self.clip_high >= 0):
            raise ConfigError("clip_low must be in [0, 1) and clip_high >= 0")
        if self.temperature <= 0:
            raise ConfigError("the rollout temperature must be > 0 for a policy gradient")

    def denominator(self, batch: dict[str, Any]) -> float:
        mask = batch["mask"][:, 1:]
        if self.agg == "token-mean":
            return float(mask.sum())
        if self.agg == "seq-mean":
            return float((mask.sum(axis=1) > 0).sum())
        return float((mask.sum(axis=1) > 0).sum() * int(batch["max_len"][0]))

    def token_logp(
        self, logits: torch.Tensor, ids: torch.Tensor, gidx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log π_θ of each target token at the rollout temperature: [B, T]; tokens with a
        `gidx` row are scored over that row's allowed tokens only (`guide_table`)."""
        z = logits[..., : self.real_vocab].float() / self.temperature
        if gidx is not None and self.guide_table is not None:
            g = gidx[:, 1:].to(torch.long)
            sel = g >= 0
            if bool(sel.any()):
                table = self.guide_table.to(z.device)[:, : z.shape[-1]]
                allowed = torch.ones(z.shape, dtype=torch.bool, device=z.device)
                allowed[sel] = table[g[sel]]
                z = z.masked_fill(~allowed, float("-inf"))
        lp = torch.log_softmax(z, dim=-1)
        return lp.gather(-1, ids[:, 1:, None])[..., 0]

    def __call__(
        self, logits: torch.Tensor, mb: dict[str, torch.Tensor], model: Any
    ) -> tuple[torch.Tensor, dict[str, float]]:
        mask = mb["mask"][:, 1:].to(torch.float32)
        logp = self.token_logp(logits, mb["ids"], mb.get("gidx"))
        old = mb["old_lp"][:, 1:].to(torch.float32)
        adv = mb["adv"].to(torch.float32)[:, None]
        diff = torch.where(mask > 0, logp - old, torch.zeros_like(logp))
        # for A >= 0 a ratio above 1 + ε_high is clipped (zero gradient) or worth 0 (A = 0), so
        # bounding its log there changes neither value nor gradient — but exp(diff) overflowed
        # float32 beyond ~88 nats, and 0 · inf made the gradient (A > 0) or the loss (A = 0) NaN
        cap = math.log1p(self.clip_high) + 1.0
        ratio = torch.exp(torch.where(adv >= 0, diff.clamp(max=cap), diff))
        surr = torch.minimum(
            ratio * adv, torch.clamp(ratio, 1.0 - self.clip_low, 1.0 + self.clip_high) * adv
        )
        per_tok = -surr
        kl = torch.zeros_like(logp)
        if self.kl_beta > 0 and mb.get("ref_lp") is not None:
            ref = mb["ref_lp"][:, 1:].to(torch.float32)
            # masked before the exp, as the ratio is: prompt and padding positions hold any
            # log-probs, and a k3 that overflowed to inf there (a gap > 88 nats, e.g. at a low
            # temperature) turned torch.where's zero gradient into NaN (0 · inf) in every weight
            kl = k3(logp, torch.where(mask > 0, ref, logp.detach()))
            per_tok = per_tok + self.kl_beta * kl
        per_tok = per_tok * mask
        if self.agg == "seq-mean":
            lens = mask.sum(dim=1).clamp_min(1.0)
            total = (per_tok.sum(dim=1) / lens).sum()
        else:
            total = per_tok.sum()
        with torch.no_grad():
            clipped = ((ratio < 1.0 - self.clip_low) & (adv < 0)) | (
                (ratio > 1.0 + self.clip_high) & (adv > 0)
            )
            stats = {
                "pg_loss": float(total.detach()),
                "loss_tokens": float(mask.sum()),
                "clipped_tokens": float((clipped.float() * mask).sum()),
                "abs_logp_gap": float((diff.abs() * mask).sum()),
                "kl_sum": float((kl * mask).sum()),
                "entropy_proxy": float((-logp * mask).sum()),
            }
        return total, stats


def empty_batch(n_rows: int, length: int, pad_rows_to: int, max_len: int) -> dict[str, np.ndarray]:
    """Zeroed arrays of the batch `PolicyLoss` reads, rows padded up to a multiple of
    `pad_rows_to`: `ids`, `mask` (tokens that train), `valid` (real tokens), `old_lp`, `adv`,
    `max_len` (dr-grpo's constant normaliser)."""
    n = -(-max(n_rows, 1) // pad_rows_to) * pad_rows_to
    T1 = max(length, 2)
    return {
        "ids": np.zeros((n, T1), dtype=np.int64),
        "mask": np.zeros((n, T1), dtype=np.float32),
        "valid": np.zeros((n, T1), dtype=np.int64),
        "old_lp": np.zeros((n, T1), dtype=np.float32),
        "adv": np.zeros((n,), dtype=np.float32),
        "max_len": np.full((n,), max_len, dtype=np.int64),
    }


def step_stats() -> dict[str, Any]:
    """The counters one RL step's collector fills (`tally_group`), read by the step record."""
    return {"groups": 0, "dropped": 0, "samples": 0, "passed": 0, "truncated": 0,
            "completion_tokens": 0, "correct_tokens": 0, "reward_sum": 0.0, "by_cell": {},
            "rollout_s": 0.0, "reward_s": 0.0, "length_pen": 0.0}  # fmt: skip


def tally_group(
    st: dict[str, Any],
    cell: str,
    passed: list[bool],
    truncated: list[bool],
    tokens: list[int],
    raw: list[float],
    shaped: list[float],
    *,
    dynamic_sampling: bool,
    std_norm: bool,
    length_pen: list[float] | None = None,
) -> list[float] | None:
    """Count one group (per member: passed, truncated, completion tokens, raw reward) into the
    step's stats and return its advantages from the `shaped` rewards — or None when dynamic
    sampling drops it (all shaped rewards equal: no gradient).

    `length_pen` (per member, already subtracted in `shaped`): ALP's penalty. It is taken out
    before the std normalisation and added back centred, unscaled: A = norm(shaped + pen) −
    (pen − mean(pen)). Why: normalised together, an all-correct group (its only variation the
    penalty) got advantages of unit size whatever its solve rate — the same as an all-wrong
    group of the same lengths — so ALP's solve-rate scaling did nothing (ALP, arXiv
    2506.05256: easy prompts pay for every token, hard ones barely). Without std_norm (Dr.
    GRPO) the two forms are the same number."""
    c = st["by_cell"].setdefault(cell, [0, 0])
    c[0] += sum(passed)
    c[1] += len(passed)
    st["samples"] += len(passed)
    st["passed"] += sum(passed)
    st["truncated"] += sum(truncated)
    st["completion_tokens"] += sum(tokens)
    st["correct_tokens"] += sum(t for t, ok in zip(tokens, passed, strict=True) if ok)
    st["reward_sum"] += sum(raw)
    st["length_pen"] = st.get("length_pen", 0.0) + sum(length_pen or [])
    # equal up to float rounding, relative to the rewards' size: an absolute 1e-9 dropped
    # every group of a reward scaled below 1e-9 (it never trained) — while exact equality
    # would keep groups that differ only by rounding (0.1 * 3 vs 0.3), whose std-normalised
    # advantages are noise blown up to +-1
    if dynamic_sampling and max(shaped) - min(shaped) <= 1e-9 * max(abs(x) for x in shaped):
        st["dropped"] += 1
        return None
    adv = _advantages_with_length(shaped, length_pen, std_norm)
    big = max(abs(a) for a in adv)
    if not big <= float(np.finfo(np.float32).max):  # the batch holds advantages as float32
        raise HillclimbError(
            f"advantages of {big:.3g} in {cell} do not fit the training batch (float32): the "
            f"rewards are too large ({max(abs(x) for x in shaped):.3g}); scale the reward down "
            "or keep the group std normalisation on"
        )
    return adv


def _advantages_with_length(
    shaped: list[float], length_pen: list[float] | None, std_norm: bool
) -> list[float]:
    """Group advantages with the length penalty outside the std normalisation (`tally_group`)."""
    if not length_pen or not std_norm or not any(length_pen):
        return group_advantages(shaped, std_norm=std_norm)
    pen = np.asarray(length_pen, dtype=np.float64)
    task = np.asarray(shaped, dtype=np.float64) + pen
    base = np.asarray(group_advantages(task.tolist(), std_norm=True))
    return (base - (pen - pen.mean())).tolist()


def gather_groups(
    info: Any, items: list[Any], rewards: list[float], n_groups: int, group_size: int
) -> tuple[list[Any], list[float]]:
    """Every rank's samples and their rewards, back in group order (group i was made by rank
    i mod world, `group_size` samples each); one process: as given.

    Why the rewards travel with the samples instead of every rank scoring every sample: a
    reward that is not a pure function of its input (a test runner's wall-clock timeout, a judge
    model, anything reading the clock or the process) gave the ranks different rewards, so
    dynamic sampling kept different groups on each: their batches differed, and a rank with no
    group left skipped the update while the others waited in its gradient all-reduce until the
    process-group timeout. Scored once, the reward also runs once per sample, not once per
    rank."""
    if info.world <= 1:
        return items, rewards
    by_rank = [list(x) for x in info.all_gather_object(list(zip(items, rewards, strict=True)))]
    pairs: list[tuple[Any, float]] = []
    for i in range(n_groups):
        src = by_rank[i % info.world]
        pairs.extend(src[:group_size])
        by_rank[i % info.world] = src[group_size:]
    return [p for p, _ in pairs], [r for _, r in pairs]
