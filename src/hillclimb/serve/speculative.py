"""Speculative decoding: a draft model proposes γ tokens, the target verifies them in one forward.

The acceptance rule is Leviathan et al. 2023 / Chen et al. 2023: draft token x_i drawn from the
draft's (warped) distribution q_i is kept with probability min(1, p_i(x_i) / q_i(x_i)) where p_i
is the target's warped distribution at the same position; at the first rejection the token is
resampled from norm(max(0, p_i − q_i)); if all γ are kept a bonus token is drawn from p_{γ+1}.
The committed tokens are then distributed exactly as plain sampling from p — the property the
statistical test checks. With temperature 0 the rule degenerates to "argmax equal", so greedy
speculative output is identical to plain greedy decoding of the target.

Both distributions go through the same `warp_probs` (temperature, top-k, top-p) so the guarantee
holds for the warped target distribution the user asked for.

Why per sequence (batch 1) with the draft's own KV cache: acceptance lengths differ per sequence,
so batching verification would need ragged rollbacks; at the batch sizes where speculation pays
(one or a few streams) a per-sequence step is what HF assisted generation does too. The draft
cache is kept lazily: it remembers how many tokens of each slot's sequence it holds and catches up
on the rest (prompt, tokens committed by plain steps, the last bonus token) in one forward before
drafting. Rejected drafts are rolled back in both caches with `KVCache.truncate`.

γ adapts per request as in HF assisted generation's "heuristic" schedule: +2 after a step where
every draft token was accepted, −1 otherwise, bounded to [1, gamma_max].
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch

from hillclimb.model.kv_cache import KVCache
from hillclimb.serve.fastpath import FastForward
from hillclimb.serve.sampling import SamplingParams, sample_from, warp_probs


@dataclass
class SpecStats:
    drafted: int = 0
    accepted: int = 0
    steps: int = 0  # verification forwards of the target

    def add(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        self.steps += 1

    def merge(self, other: SpecStats) -> None:
        self.drafted += other.drafted
        self.accepted += other.accepted
        self.steps += other.steps

    def as_dict(self) -> dict[str, Any]:
        """acceptance_rate = accepted / drafted; mean_accept_len = tokens committed per target
        verification forward (accepted drafts + the corrected or bonus token)."""
        return {
            "drafted": self.drafted,
            "accepted": self.accepted,
            "steps": self.steps,
            "acceptance_rate": self.accepted / self.drafted if self.drafted else 0.0,
            "mean_accept_len": (self.accepted + self.steps) / self.steps if self.steps else 0.0,
        }


def accept_drafts(
    target_logits: torch.Tensor,
    draft_tokens: list[int],
    draft_probs: torch.Tensor | None,
    params: SamplingParams,
    generator: torch.Generator,
) -> tuple[int, int]:
    """Verify γ draft tokens. target_logits [γ+1, V] (raw), draft_probs [γ, V] (warped q; None
    when greedy or when the draft is deterministic). Returns (n_accepted, next_token): the first
    n drafts are kept and next_token is the correction (on a rejection) or the bonus token (all
    accepted).

    A deterministic draft (prompt lookup, a prediction) is q = one-hot(d): d is kept with
    probability min(1, p(d) / 1) = p(d), and the residual norm(max(0, p − q)) is p with d
    removed, renormalised. That is the same as drawing each position from p exactly as plain
    sampling does (`sample_from`: one uniform from the request's generator) and keeping d while
    the draw equals it, the first other draw being the correction — which is how it is done, so
    a seeded request spends its random stream identically whether drafts ran or not, and its
    tokens never depend on the drafter's policy or the engine's history (drawing γ uniforms at
    once and a `torch.multinomial` correction gave a seeded request different tokens when the
    lookup drafted)."""
    g = len(draft_tokens)
    if params.greedy:
        target_arg = torch.argmax(target_logits, dim=-1).tolist()
        n = 0
        while n < g and target_arg[n] == draft_tokens[n]:
            n += 1
        return n, int(target_arg[n])
    p = warp_probs(target_logits, params)  # [γ+1, V]
    if draft_probs is None:
        return _accept_one_hot(p, draft_tokens, generator)
    idx = torch.tensor(draft_tokens, device=p.device)
    rows = torch.arange(g, device=p.device)
    px = p[rows, idx]
    r = torch.rand(g, generator=generator, device=p.device)
    ok = (r * draft_probs[rows, idx] < px).tolist()  # r < p/q without dividing by a tiny q
    n = 0
    while n < g and ok[n]:
        n += 1
    if n == g:
        return n, int(torch.multinomial(p[g], 1, generator=generator))
    residual = (p[n] - draft_probs[n]).clamp_min(0.0)
    total = float(residual.sum())
    dist = residual / total if total > 0 else p[n]
    return n, int(torch.multinomial(dist, 1, generator=generator))


def _accept_one_hot(
    p: torch.Tensor, draft_tokens: list[int], generator: torch.Generator
) -> tuple[int, int]:
    """`accept_drafts` for one-hot drafts on warped probabilities p [γ+1, V]: each position
    drawn as plain sampling draws it, the draft kept while the draws agree."""
    g = len(draft_tokens)
    for n in range(g):
        x = sample_from(p[n], generator)
        if x != draft_tokens[n]:
            return n, x
    return g, sample_from(p[g], generator)


def expected_tokens(gamma: int, alpha: float) -> float:
    """Expected tokens one verification of γ drafts commits at per-token acceptance α
    (accepted drafts + the correction or bonus token): (1 − α^(γ+1)) / (1 − α)."""
    return gamma + 1.0 if alpha >= 1 else (1 - alpha ** (gamma + 1)) / (1 - alpha)


@dataclass
class BatchCostConfig:
    """The cost of a batched verification step, in plain batched decode steps of the same rows:
    c = `base` + `per_token` · x, x = draft tokens per row (all rows, plain ones too), the
    fillers of shorter rows at `filler` weight (they run attention but skip the FFN and LM
    head). The priors are measured (`bench/serve_batched_spec.py`, code-flash-tiny, 32 rows, one
    core, whole engine steps); the engine refits both numbers online from its own steps."""

    base: float = 1.3
    per_token: float = 0.15
    filler: float = 0.3
    min_gain: float = 1.05  # verify only when expected tokens per cost beat plain by this
    forget: float = 0.97  # recursive least squares forgetting factor per observed step
    # declined decisions (each followed by the engine's skip: 4 … 64 steps, or longer when the
    # drafting before it lost more, `Engine._batch_back_off`) before one verification step
    # re-measures anyway
    probe_every: int = 8


class BatchVerifyCost:
    """When a batched verification step pays over a plain batched decode step.

    Why measured: whether verifying B rows × (γ + 1) tokens beats B one-token steps depends on
    the model, the batch and the machine (on CPU a decode step of a small MoE is mostly
    per-kernel overhead, so extra tokens are cheap; a big model at a big batch is compute-bound
    and they are not). The engine feeds it the wall time of its plain batched steps (an EMA per
    row count) and of its verification steps; the verification's relative cost is refitted by
    recursive least squares on c = base + per_token · x. `plan` then picks, per step, the draft
    length cap Γ that maximises expected committed tokens per cost, or 0 (decode plainly)."""

    def __init__(self, config: BatchCostConfig | None = None) -> None:
        self.cfg = config or BatchCostConfig()
        self.theta = [self.cfg.base, self.cfg.per_token]
        self.P = [[0.5, 0.0], [0.0, 0.05]]  # prior covariance: a few steps move it
        self.plain_ms: dict[int, float] = {}
        self.declined = 0
        self.observed = 0

    def observe_plain(self, rows: int, ms: float) -> None:
        old = self.plain_ms.get(rows)
        self.plain_ms[rows] = ms if old is None else 0.8 * old + 0.2 * ms

    def plain(self, rows: int) -> float | None:
        """EMA ms of a plain batched step of `rows` rows (the nearest measured row count,
        scaled linearly in rows when it is not this one)."""
        if rows in self.plain_ms:
            return self.plain_ms[rows]
        if not self.plain_ms:
            return None
        k = min(self.plain_ms, key=lambda b: abs(b - rows))
        return self.plain_ms[k] * (0.5 + 0.5 * rows / k)

    def x(self, draft_lens: list[int], rows: int, cap: int) -> float:
        """Draft tokens per row of a verification with lengths capped at `cap`."""
        real = sum(min(g, cap) for g in draft_lens)
        fill = rows * cap - real
        return (real + self.cfg.filler * fill) / rows

    def cost(self, x: float) -> float:
        return max(1.0, self.theta[0] + self.theta[1] * x)

    def observe_verify(self, x: float, rows: int, ms: float) -> None:
        base = self.plain(rows)
        if base is None or base <= 0:
            return
        c = ms / base
        lam = self.cfg.forget
        P, th = self.P, self.theta
        phi = (1.0, x)
        Pphi = (P[0][0] + P[0][1] * x, P[1][0] + P[1][1] * x)
        den = lam + phi[0] * Pphi[0] + phi[1] * Pphi[1]
        k = (Pphi[0] / den, Pphi[1] / den)
        err = c - (th[0] + th[1] * x)
        th[0] = min(10.0, max(0.5, th[0] + k[0] * err))
        th[1] = min(5.0, max(0.0, th[1] + k[1] * err))
        self.P = [[(P[i][j] - k[i] * Pphi[j]) / lam for j in range(2)] for i in range(2)]
        self.observed += 1

    def plan(
        self,
        rows: int,
        free: list[tuple[int, float]],
        must: list[tuple[int, float]],
        probe: bool = False,
    ) -> int:
        """The draft-length cap Γ for this step (0: decode plainly). `rows`: every row of the
        step; `free`: (γ, α) of the rows whose drafts may be capped or skipped; `must`: those
        that may not (seeded sampled or forced rows: their random stream must not depend on
        their batch), so Γ ≥ their γ. `probe`: verify even when the model says no."""
        lens = [g for g, _ in free] + [g for g, _ in must]
        if not lens:
            return 0
        lo = max((g for g, _ in must), default=1)
        best, best_ratio = 0, 0.0 if must else self.cfg.min_gain
        for cap in range(lo, max(lens) + 1):
            gain = sum(expected_tokens(min(g, cap), a) - 1 for g, a in free)
            gain += sum(expected_tokens(g, a) - 1 for g, a in must)
            ratio = (rows + gain) / (rows * self.cost(self.x(lens, rows, cap)))
            if ratio > best_ratio:
                best, best_ratio = cap, ratio
        if best == 0 and probe:
            best = max(lens)
        self.declined = 0 if best else self.declined + 1
        return best

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": round(self.theta[0], 3),
            "per_token": round(self.theta[1], 3),
            "observed": self.observed,
            "plain_ms": {b: round(v, 3) for b, v in sorted(self.plain_ms.items())},
        }


@dataclass
class _DraftSlot:
    held: int = 0  # tokens of the slot's sequence that the draft cache holds
    gamma: int = 4


class DraftRunner:
    """The draft model with its own KV cache (one slot per target slot); a `drafters.Drafter`."""

    name = "model"
    deterministic = False

    def __init__(
        self,
        model: torch.nn.Module,
        n_slots: int,
        max_len: int,
        device: torch.device,
        lock: threading.RLock | None = None,
        gamma_init: int = 4,
        gamma_max: int = 12,
        fast_path: bool = True,
        fast: FastForward | None = None,
        compile: bool = False,
        real_vocab: int | None = None,
    ):
        self.model = model
        # ids from here on are the embedding table's padding, never drafted (`Engine._real_vocab`)
        self.real_vocab = real_vocab
        dtype = next(model.parameters()).dtype
        # sharing the draft engine's steps: the same cache length too, so a compiled step
        # (static cache shape) serves both caches
        if fast is not None and fast_path:
            max_len = max(max_len, fast.max_len)
        self.cache = KVCache(model.cfg, n_slots, max_len, device=device, dtype=dtype)
        if fast is not None and fast_path:
            self.fast: FastForward | None = fast  # shared with the draft's own engine
        else:
            self.fast = FastForward(model, max_len) if fast_path else None
        if compile and self.fast is not None and self.fast.lean:
            # drafting (T = 1) and catch-up (T ≥ 2), for this cache's shape
            self.fast.enable_compile(multi=True, cache=self.cache)
        self.device = device
        self.lock = lock or threading.RLock()
        self.gamma_init = gamma_init
        self.gamma_max = gamma_max
        self.slots: list[_DraftSlot] = [_DraftSlot(gamma=gamma_init) for _ in range(n_slots)]
        self.stats = SpecStats()

    def start(self, slot: int, prompt_len: int, prediction: list[int] | None) -> None:
        """A request took the slot (its cache was reset when the last one left)."""

    def reset(self, slot: int) -> None:
        self.cache.reset([slot])
        self.slots[slot] = _DraftSlot(gamma=self.gamma_init)

    def gamma(self, slot: int) -> int:
        return self.slots[slot].gamma

    def adapt(self, slot: int, drafted: int, accepted: int) -> None:
        s = self.slots[slot]
        s.gamma = min(self.gamma_max, s.gamma + 2) if accepted == drafted else max(1, s.gamma - 1)

    def room(self, slot: int, seq_len: int) -> int:
        """How many draft tokens the draft cache can still take for a sequence of seq_len."""
        s = self.slots[slot]
        need_catchup = seq_len - s.held
        return self.cache.max_len - int(self.cache.cursor[slot]) - need_catchup

    def propose(
        self,
        slot: int,
        seq: list[int],
        gamma: int,
        params: SamplingParams,
        generator: torch.Generator,
    ) -> tuple[list[int], torch.Tensor | None]:
        """Draft `gamma` tokens continuing `seq` (the full sequence incl. the pending token).
        Returns (tokens, q) with q the warped draft distributions [gamma, V] (None if greedy)."""
        s = self.slots[slot]
        slot_ids = torch.tensor([slot], device=self.device)
        new = seq[s.held :]
        assert new, "draft cache is ahead of the sequence"
        tokens: list[int] = []
        qs: list[torch.Tensor] = []
        lean = self.fast is not None and self.fast.lean
        with self.lock:
            if lean:
                assert self.fast is not None
                logits = self.fast.extend_one(new, self.cache, slot)[-1]
            else:
                logits = self._forward(torch.tensor([new], device=self.device), slot_ids, slot)
            s.held = len(seq)
            for i in range(gamma):
                if self.real_vocab is not None and self.real_vocab < logits.shape[-1]:
                    logits = logits.clone()
                    logits[self.real_vocab :] = float("-inf")
                if params.greedy:
                    t = int(torch.argmax(logits))
                else:
                    q = warp_probs(logits, params)
                    t = int(torch.multinomial(q, 1, generator=generator))
                    qs.append(q)
                tokens.append(t)
                if i < gamma - 1:
                    if lean:
                        assert self.fast is not None
                        logits = self.fast.decode_one(t, self.cache, slot)[0]
                    else:
                        x = torch.tensor([[t]], device=self.device)
                        logits = self._forward(x, slot_ids, slot)
                    s.held += 1
        return tokens, (torch.stack(qs) if qs else None)

    def _forward(self, x: torch.Tensor, slot_ids: torch.Tensor, slot: int) -> torch.Tensor:
        if self.fast is not None:  # the draft cache never holds padding: dense
            return self.fast(x, self.cache, slot_ids, single_slot=slot, dense=True)[0, -1]
        return self.model(x, cache=self.cache, slot_ids=slot_ids, last_only=True)[0, -1]

    def rollback(self, slot: int, keep: int) -> None:
        """Keep only the first `keep` tokens of the slot's sequence in the draft cache."""
        s = self.slots[slot]
        if keep < s.held:
            self.cache.truncate(slot, keep)
            s.held = keep


# ---- whether a draft model is worth attaching at all ---------------------------------------------
# The start-up rule of `hillclimb serve` (issue 15: speculation must not cost more than 2% where it
# does not pay). A per-token acceptance of 0.6 is what a well-matched pair reaches on text it was
# tuned for (this repository's climb pair measured 0.36–0.42; published pairs 0.6–0.8), and 1.05×
# leaves room for what the cost model omits (the draft's catch-up forward, host-side acceptance,
# cache rollback: ≈5% of a step at tiny size). A pair that cannot clear 1.05× even there can only
# lose, and the runtime back-off (`Engine._observe_spec`) bounds that loss to ≈5%, not 2%.
ASSUMED_ACCEPTANCE = 0.6
MIN_EXPECTED_SPEEDUP = 1.05


@dataclass
class StepCosts:
    """Measured wall times (ms) of the steps speculative decoding is made of: one target decode
    step (t), one draft decode step (d), and the target scoring T = γ + 1 tokens at once (v(T))."""

    target_ms: float
    draft_ms: float
    verify_ms: dict[int, float]  # T → ms

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_decode_ms": round(self.target_ms, 4),
            "draft_decode_ms": round(self.draft_ms, 4),
            "draft_over_target": round(self.draft_ms / self.target_ms, 3),
            "verify_ms": {str(k): round(v, 4) for k, v in sorted(self.verify_ms.items())},
        }


def expected_speedup(costs: StepCosts, gamma: int, alpha: float) -> float:
    """Plain ms per token over speculative ms per token for γ drafts at acceptance α:
    t · E(γ, α) / (γ · d + v(γ + 1)) (Leviathan et al. 2023, eq. 1 with measured costs)."""
    v = costs.verify_ms.get(gamma + 1)
    if v is None:
        raise ValueError(f"no verification cost measured for {gamma + 1} tokens")
    return costs.target_ms * expected_tokens(gamma, alpha) / (gamma * costs.draft_ms + v)


@dataclass
class DraftDecision:
    """Whether thinking gets code-flash as its draft model, and the numbers behind it."""

    attach: bool
    policy: str  # "auto" (measured), "forced" (--draft), "off" (--no-speculative)
    reason: str
    costs: StepCosts | None = None
    gamma: int | None = None  # the γ that maximises the expected speedup at `alpha`
    expected: float | None = None  # that speedup at the assumed acceptance
    ceiling: float | None = None  # the best speedup with a perfect draft (α = 1)
    alpha: float = ASSUMED_ACCEPTANCE
    min_speedup: float = MIN_EXPECTED_SPEEDUP
    measure_ms: float | None = None  # how long the start-up measurement took

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attached": self.attach,
            "policy": self.policy,
            "reason": self.reason,
            "assumed_acceptance": self.alpha,
            "min_expected_speedup": self.min_speedup,
        }
        if self.costs is not None:
            out |= {
                **self.costs.as_dict(),
                "gamma": self.gamma,
                "expected_speedup": round(self.expected or 0.0, 3),
                "ceiling_speedup": round(self.ceiling or 0.0, 3),
            }
        if self.measure_ms is not None:
            out["measure_ms"] = round(self.measure_ms, 1)
        return out


def decide_draft(
    costs: StepCosts,
    gammas: range | list[int],
    alpha: float = ASSUMED_ACCEPTANCE,
    min_speedup: float = MIN_EXPECTED_SPEEDUP,
) -> DraftDecision:
    """Attach the draft when its best expected speedup over the engine's γ range at acceptance
    `alpha` reaches `min_speedup`. Why a start-up rule on top of the runtime back-off: with the
    tiny pair the draft step is 50–64% of a target step, so even a perfect draft tops out at
    ≈1.24× and a realistic one loses; the back-off then still pays for its probes (measured
    0.95× on reasoning prompts), while not attaching costs nothing."""
    gs = [g for g in gammas if g + 1 in costs.verify_ms]
    if not gs or costs.target_ms <= 0 or costs.draft_ms <= 0:
        return DraftDecision(False, "auto", "step costs could not be measured", costs)
    best = max(gs, key=lambda g: expected_speedup(costs, g, alpha))
    expected = expected_speedup(costs, best, alpha)
    ceiling = max(expected_speedup(costs, g, 1.0) for g in gs)
    ok = expected >= min_speedup
    why = (
        f"expected {expected:.2f}x at acceptance {alpha:g} (gamma {best}; draft step "
        f"{costs.draft_ms / costs.target_ms:.0%} of a target step; {ceiling:.2f}x with a perfect "
        f"draft) {'>=' if ok else '<'} {min_speedup:g}x"
    )
    return DraftDecision(ok, "auto", why, costs, best, expected, ceiling, alpha, min_speedup)


def time_step_costs(
    target_step: Any,
    draft_step: Any,
    verify_step: Any,
    verify_lens: list[int],
    reps: int = 7,
    sync: Any = None,
) -> StepCosts:
    """Fastest wall times of `target_step()`, `draft_step()` and `verify_step(T)` for each T,
    interleaved per round. The minimum, not the median: other processes only ever add time, and
    on a shared 2-core box a third of the verification samples were 5–150× too slow (the median
    of 7 read 36 ms for a 1.1 ms step), while the minima were stable to ≈5%. Each
    callable runs one step and undoes its cache effect; one warm-up round runs first (a
    compiled step's first call for a new shape compiles). `sync`: called before each clock read
    (`torch.cuda.synchronize` on a GPU)."""
    import time

    def clock(fn: Any, *a: Any) -> float:
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        fn(*a)
        if sync is not None:
            sync()
        return (time.perf_counter() - t0) * 1e3

    target_step(), draft_step()
    for T in verify_lens:
        verify_step(T)
    ts: list[float] = []
    ds: list[float] = []
    vs: dict[int, list[float]] = {T: [] for T in verify_lens}
    for _ in range(max(1, reps)):
        ts.append(clock(target_step))
        ds.append(clock(draft_step))
        for T in verify_lens:
            vs[T].append(clock(verify_step, T))
    return StepCosts(min(ts), min(ds), {T: min(x) for T, x in vs.items()})
