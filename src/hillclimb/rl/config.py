"""`RLConfig`: what `hillclimb rl` and the climb's `rl-<model>` stages run, with documented defaults.

It extends `TrainConfig` (the optimizer, schedule, device, checkpointing and resume fields mean the
same as in pre-training and SFT; `init` is the policy to start from, `steps` the number of RL
steps) with the rollout, reward and loss settings. Each default names where its number comes
from; where it is ours (tuned on the tiny models), it says so.

One RL step: `prompts_per_step` prompts from the curriculum × `group_size` sampled completions
each → rewards → group advantages → (dynamic sampling drops groups whose rewards are all equal and
refills from the curriculum) → `epochs` passes of `minibatches` optimizer steps each → the engine
syncs the new weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hillclimb.errors import ConfigError
from hillclimb.rl.grpo import AGGREGATIONS
from hillclimb.serve.drafter_choice import MODEL_FREE_DRAFTERS
from hillclimb.train.config import TrainConfig

OVERLONG = ("mask", "soft", "none")
MAX_GROUP = 1024  # samples per prompt (ours: 16x DeepSeekMath's 64)
MAX_ROLLOUTS = 65536  # prompts_per_step x group_size held at once (ours)
LENGTH_PENALTIES = ("none", "alp")
# settings of the problem curriculum (`rl.curriculum`), which harness mode does not read
PROBLEM_CURRICULUM = ("families", "tiers", "start_tier", "promote_at", "pool_size")
# settings of the problem evaluations (the val curve, the Pareto points), which harness mode
# does not run: each with its "off" value, which a harness config may still name
PROBLEM_EVALS = {"eval_every": 0, "eval_n_per_tier": None, "pareto_budgets": []}


def problem_evals_set(d: dict[str, Any]) -> list[str]:
    """The problem-evaluation settings in `d` that ask for work harness mode never does: any
    value but the setting's "off" one (`PROBLEM_EVALS`; `eval_n_per_tier` has none)."""
    return [k for k, off in PROBLEM_EVALS.items() if k in d and (off is None or d[k] != off)]


def changed_from_default(cfg: object, names: tuple[str, ...]) -> list[str]:
    """The fields among `names` whose value differs from the dataclass default (for the run's
    note when a config built in code, not through `from_dict`, sets settings it ignores)."""
    import dataclasses

    out = []
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        if f.name not in names:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(cfg, f.name) != default:
            out.append(f.name)
    return out


@dataclass
class RLConfig(TrainConfig):
    # ---- what to train on ----------------------------------------------------------------------
    families: list[str] = field(default_factory=list)  # default: the model's kind (see rl.train)
    tiers: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    start_tier: int = 1  # curriculum: tiers above this unlock as lower ones saturate
    promote_at: float = 0.8  # unlock the next tier when a tier's pass rate (EMA) reaches this
    pool_size: int = 2000  # train-split problems drawn per family x tier to sample prompts from
    # agentic RL in the harness (rl/harness.py): a `harness generate` task directory; groups of
    # `group_size` episodes per task instead of single-turn problems
    harness: str | None = None
    harness_max_steps: int = 6  # model turns per episode (ours: tiny contexts fill fast)
    harness_concurrency: int = 8  # episodes in flight on the engine at once
    check_tasks: bool = True  # grade each untouched repo first; leave out tasks it resolves
    # tool calls decoded under the tools' JSON schema (`serve.tool_grammar`); the loss then
    # scores each guided token over the same allowed set (`rl.guided`). False: raw calls
    harness_guided_tools: bool = True
    # the held-out curve of harness RL (rl/harness.py `HarnessVal`): a task dir disjoint from
    # `harness` (ids, content, mutation sites), one greedy episode per task at step 0, every
    # `harness_val_every` steps (0: only at the start and the end) and at the end
    harness_val: str | None = None
    harness_val_every: int = 10  # as eval_every, the single-turn curve's
    # ---- rollouts --------------------------------------------------------------------------------
    prompts_per_step: int = 8
    group_size: int = 8  # G: DeepSeekMath used 64, DAPO 16; 8 keeps a CPU step short (ours)
    temperature: float = 1.0  # sample from the policy itself (DAPO, Dr. GRPO use 1.0)
    max_tokens: int | None = None  # None: per family x tier, 1.5x the longest reference + 16
    engine_batch: int = 64  # concurrent rollouts in the engine (KV-cache slots)
    # model-free draft source of the rollout engine (serve/drafters.py: "lookup", "suffix"),
    # as `hillclimb eval --drafter`: drafts are verified by the exact acceptance rule, which
    # for these one-hot drafts draws every position from the policy exactly as plain sampling
    # does (`speculative.accept_drafts`), so the same seed gives the same token ids and
    # log-probs; only the speed changes. "none" (default): plain decoding
    drafter: str = "none"
    # ---- rewards -----------------------------------------------------------------------------
    reward: str | None = None  # "module:function" (Rollout -> float); None: correctness 1/0
    format_reward: float = 0.0  # bonus for an extractable final answer (0: off)
    # truncated completions: "mask" (no gradient: DAPO's overlong filtering), "soft" (DAPO's
    # soft punishment), "none". Harness episodes cut by a limit (`rl.harness.EPISODE_CUT`:
    # context exhausted, max_steps, max_tokens, wall time) follow "mask" and "none" the same
    # way; "soft" shapes single-turn rewards by length and is refused there
    overlong: str = "mask"
    overlong_buffer: int = 16  # "soft": tokens before the budget where the penalty ramps to -1
    # "alp": solve-rate-scaled length penalty (ALP, arXiv 2506.05256): r − β·(n/budget)·max(p̂,
    # 1/G). Order (ours, from the math): the penalty is subtracted from the reward for dynamic
    # sampling, but the advantage is norm(r) − (pen − mean(pen)) — the group-std division
    # (GRPO) applies to the task reward only, the penalty is centred and kept at its own scale.
    # Divided by the std too, an all-correct group's only variation is the penalty, rescaled to
    # unit size whatever p̂, so the "easy prompts pay more" scaling cancelled. Dr. GRPO (arXiv
    # 2503.20783, no std division) gives the same advantages either way (`grpo.tally_group`)
    length_penalty: str = "none"
    alp_beta: float = 0.5  # ALP's β with length normalised by the cell's budget (ours)
    length_start_step: int = 0  # ALP switches on at this RL step (after accuracy is established)
    # budget conditioning (L1, arXiv 2503.04697, "max" variant): each prompt carries a thinking
    # budget drawn from `budget_fracs` × the cell's token budget (shared by its group), and a
    # completion loses `budget_beta` × the overshoot / budget (at most `budget_beta`); a
    # fraction of 0 draws "no note" for that group, which ALP (if on) then governs alone
    budget_conditioning: bool = False
    budget_fracs: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])  # ours
    budget_beta: float = 1.0  # ours: a full overshoot (2x the budget) costs a correct answer
    # accuracy vs tokens at these forced thinking budgets, at the start and the end (Pareto plot;
    # empty: off); the unlimited point is the curve's own evaluation
    pareto_budgets: list[int] = field(default_factory=lambda: [4, 8, 16, 32])  # ours (tiny)
    # ---- loss --------------------------------------------------------------------------------
    clip_low: float = 0.2  # PPO ε (Schulman 2017; DAPO keeps 0.2 for the low side)
    clip_high: float = 0.28  # DAPO clip-higher
    loss_agg: str = "token-mean"  # DAPO; "seq-mean" = GRPO; "dr-grpo" = constant normaliser
    # GRPO divides advantages by the group std; Dr. GRPO (arXiv 2503.20783) removes both that
    # division and the length normaliser. None (the default): on, except with loss_agg
    # "dr-grpo", which then is Dr. GRPO in full (it needed an explicit --no-std-norm, so
    # `--loss-agg dr-grpo` alone ran half of it); an explicit true/false is honoured
    std_norm: bool | None = None
    kl_beta: float = 0.0  # KL to the initial policy (k3); 0 as in DAPO / Dr. GRPO
    epochs: int = 1  # μ policy epochs per batch (1: on-policy, the ratio stays ≈ 1)
    minibatches: int = 1  # optimizer steps per epoch
    dynamic_sampling: bool = True  # DAPO: skip groups whose rewards are all equal
    refill_rounds: int = 2  # dynamic sampling: extra rollout rounds to refill dropped groups
    update_bias: bool = True  # keep the auxiliary-loss-free expert-bias updates during RL
    aux_scale: float = 1.0  # weight of the MoE aux/z losses in the RL loss
    # route each token through the experts that generated it (Rollout Routing Replay,
    # arXiv 2510.11370: prevents MoE RL collapse from rollout/training routing mismatch)
    routing_replay: bool = True
    # ---- monitoring ------------------------------------------------------------------------------
    eval_every: int = 10  # RL steps between greedy evaluations on the val split (the curve)
    eval_n_per_tier: int = 8
    # ---- TrainConfig defaults that differ for RL ------------------------------------------------
    # ours: on thinking-tiny after SFT, 3e-5 raised held-out tier 2 by 8-9 points in 80-200 steps
    # with tier 1 intact; 1e-4 and 2e-4 cost tier 1 2 and 9 points (BENCHMARKS.md, RL sweep)
    lr: float = 3e-5
    schedule: str = "constant"
    warmup_steps: int = 3
    weight_decay: float = 0.0
    steps: int = 40
    val_every: int = 0
    val_tokens: int = 0
    log_every: int = 1
    batch_size: int = 64  # set from prompts_per_step x group_size / minibatches
    micro_batch_size: int | None = 16  # rows per forward (bounded activations; ours)
    seq_len: int = 1024  # set from the model's context when training starts

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.std_norm is None:
            self.std_norm = self.loss_agg != "dr-grpo"
        self.batch_size = max(
            1, self.prompts_per_step * self.group_size // max(1, self.minibatches)
        )
        self.validate_rl()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """As `TrainConfig.from_dict`, and refuses problem-curriculum keys beside `harness`.

        Why here: `d` holds only what the user wrote (CLI flags given, `--config` / `--recipe`
        tables, `[rl_harness.<model>]`), so a setting named with `--harness` is refused even at
        its default value — it has no effect there: harness mode draws tasks by their group
        resolve rate (`rl.harness.TaskCurriculum`), and `--tiers`, `--families`, ... were
        accepted and silently did nothing. The val curve and Pareto settings likewise
        (`problem_evals_set`), except at their "off" values."""
        ignored = [k for k in PROBLEM_CURRICULUM if k in d] if d.get("harness") else []
        if ignored:
            raise ConfigError(
                f"invalid RL config: {', '.join(ignored)} set the problem curriculum (families "
                "x tiers), which harness episodes do not use: tasks are drawn by their group "
                "resolve rate (informative ones, strictly between 0 and 1, first); leave them "
                "out with --harness"
            )
        evals = problem_evals_set(d) if d.get("harness") else []
        if evals:
            # the val curve and the Pareto points are greedy problem evaluations: with
            # `--harness` the run skipped them and `--eval-every 5` silently gave no curve
            raise ConfigError(
                f"invalid RL config: {', '.join(evals)} set the val-split problem evaluations "
                "(the curve, the Pareto points), which harness RL does not run; leave them out "
                "with --harness (or set eval_every 0, pareto_budgets []) and evaluate the final "
                "checkpoint with `hillclimb eval --suite harness`"
            )
        return super().from_dict(d)

    def validate_rl(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"invalid RL config: {msg}")

        need(self.group_size >= 2, f"group_size (G) must be >= 2, got {self.group_size}")
        # every rollout of a step is held at once (tokens, log-probs, routes): a typo such as
        # 80000 for 8 ran out of memory mid-rollout instead of failing here; published GRPO
        # runs use 8-64 (DeepSeekMath 64)
        need(
            self.group_size <= MAX_GROUP
            and self.prompts_per_step * self.group_size <= MAX_ROLLOUTS,
            f"group_size (G) must be <= {MAX_GROUP} and prompts_per_step x group_size <= "
            f"{MAX_ROLLOUTS} rollouts per step, got {self.prompts_per_step} x {self.group_size}",
        )
        need(
            not (self.copy_fraction or self.copy_warmup_steps or self.fim_rate),
            "copy_fraction, copy_warmup_steps and fim_rate are pre-training options",
        )
        need(self.prompts_per_step >= 1, "prompts_per_step must be >= 1")
        # the rollout engine runs on the trainer's own weights on every rank; FSDP2 leaves each
        # rank a shard of them (a DTensor traceback in the first rollout, after all the setup)
        need(
            self.distributed != "fsdp",
            "distributed=fsdp is not supported (the in-process rollout engine needs every "
            "rank's whole weights); use ddp",
        )
        need(self.temperature > 0, "temperature must be > 0 (a policy gradient needs sampling)")
        need(self.max_tokens is None or self.max_tokens >= 1, "max_tokens must be >= 1")
        need(self.engine_batch >= 1, "engine_batch must be >= 1")
        need(
            self.drafter in MODEL_FREE_DRAFTERS,
            f"drafter must be one of {', '.join(MODEL_FREE_DRAFTERS)}, got {self.drafter!r}",
        )
        need(self.overlong in OVERLONG, f"overlong must be one of {OVERLONG}")
        need(self.overlong_buffer >= 1, "overlong_buffer must be >= 1")
        # DAPO's soft punishment ramps over the last `overlong_buffer` tokens before the budget;
        # a budget inside the buffer made the ramp start at (or before) the first token, so
        # every completion lost reward by its length: a length penalty, not an overlong one
        need(
            self.overlong != "soft"
            or self.max_tokens is None
            or self.max_tokens > self.overlong_buffer,
            f"overlong 'soft' needs max_tokens ({self.max_tokens}) above overlong_buffer "
            f"({self.overlong_buffer}), or every completion is punished as overlong; use "
            "overlong 'mask' or 'none', or a larger max_tokens",
        )
        need(self.length_penalty in LENGTH_PENALTIES, f"length_penalty: one of {LENGTH_PENALTIES}")
        need(self.alp_beta >= 0 and self.length_start_step >= 0, "alp_beta, length_start_step >= 0")
        need(0 <= self.clip_low < 1 and self.clip_high >= 0, "clip_low in [0, 1), clip_high >= 0")
        need(self.loss_agg in AGGREGATIONS, f"loss_agg must be one of {AGGREGATIONS}")
        need(self.kl_beta >= 0, "kl_beta must be >= 0")
        need(self.aux_scale >= 0, "aux_scale must be >= 0")
        need(
            bool(self.budget_fracs)
            and all(0 <= f <= 1 for f in self.budget_fracs)
            and any(f > 0 for f in self.budget_fracs),
            f"budget_fracs must be fractions in [0, 1] (0: no note), at least one above 0, "
            f"got {self.budget_fracs}",
        )
        need(self.budget_beta >= 0, "budget_beta must be >= 0")
        need(self.harness_max_steps >= 1, "harness_max_steps must be >= 1")
        # the bonus reads a single-turn answer; an episode's reward is its graded resolve, so
        # accepting the flag there would silently do nothing
        need(
            self.harness is None or self.format_reward == 0,
            "format_reward applies to single-turn problems, not to harness episodes",
        )
        # harness episodes are shaped by nothing but their graded reward: these options were
        # silently ignored there, and `budget_conditioning` still marked the checkpoint, so the
        # server put a thinking-budget note before a model that never trained on one
        for name, off in (("budget_conditioning", False), ("length_penalty", "none")):
            need(
                self.harness is None or getattr(self, name) == off,
                f"{name} applies to single-turn problems, not to harness episodes",
            )
        # DAPO's soft overlong punishment is reward shaping of single-turn completions
        # (`rewards.shape_group`), which harness episodes never go through: `--overlong soft`
        # with `--harness` trained exactly as `none`, with no penalty and no word of it
        need(
            self.harness is None or self.overlong != "soft",
            "overlong 'soft' applies to single-turn problems, not to harness episodes (their "
            "reward is the graded resolve); use overlong 'mask' (episodes cut by a limit get "
            "no gradient) or 'none'",
        )
        need(self.harness_concurrency >= 1, "harness_concurrency must be >= 1")
        # a val set without training tasks has nothing to be held out from, and problem RL
        # has its own curve (eval_every): accepted, it would silently measure nothing
        need(
            self.harness_val is None or self.harness is not None,
            "harness_val is the held-out curve of harness RL; pass harness (the training "
            "tasks) too, or use eval_every for the single-turn val curve",
        )
        need(self.harness_val_every >= 0, "harness_val_every must be >= 0 (0: only the ends)")
        need(
            all(b >= 1 for b in self.pareto_budgets),
            f"pareto_budgets must be >= 1 token, got {self.pareto_budgets}",
        )
        need(self.epochs >= 1 and self.minibatches >= 1, "epochs and minibatches must be >= 1")
        need(self.refill_rounds >= 0, "refill_rounds must be >= 0")
        need(self.eval_every >= 0 and self.eval_n_per_tier >= 1, "eval_every >= 0, n >= 1")
        need(0 < self.promote_at <= 1, "promote_at must be in (0, 1]")
        need(self.pool_size >= self.prompts_per_step, "pool_size must be >= prompts_per_step")
        need(bool(self.tiers), "tiers must not be empty")
        need(
            self.start_tier in self.tiers,
            f"start_tier {self.start_tier} (default 1) is not one of tiers {self.tiers}: pass "
            f"--start-tier (start_tier = ...) with one of them, e.g. {min(self.tiers or [1])}",
        )
        from hillclimb import problems as P

        for t in self.tiers:
            need(t in P.TIERS, f"tier {t} not in {list(P.TIERS)}")
        for f in self.families:
            need(f in P.FAMILIES, f"unknown family {f!r}; families: {sorted(P.FAMILIES)}")
            need(
                f not in P.HELDOUT_FAMILIES,
                f"{f!r} is a held-out family (evaluation only); trainable: {list(P.TRAIN_FAMILIES)}",
            )
        # a repeated tier or family made a second curriculum cell for the same problems (twice
        # the sampling weight) and counted each val problem twice in the curve
        for name, values in (("tiers", self.tiers), ("families", self.families)):
            dup = sorted({v for v in values if list(values).count(v) > 1}, key=str)
            need(not dup, f"{name} lists {dup} more than once")
        # an infinite/NaN weight passed the checks above (`inf >= 0`) and surfaced mid-run as a
        # NaN loss blamed on the learning rate, or as "rewards too large"
        for name in ("temperature", "format_reward", "alp_beta", "budget_beta", "clip_high",
                     "kl_beta", "aux_scale"):  # fmt: skip
            v = getattr(self, name)
            need(math.isfinite(v), f"{name} must be a finite number, got {v}")
        # the engine refuses more (serve.sampling) — at the first rollout, after setup
        need(self.temperature <= 100, f"temperature must be <= 100, got {self.temperature}")
