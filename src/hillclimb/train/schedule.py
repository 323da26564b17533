"""Learning-rate schedules as pure functions of the step.

Why pure functions and not `torch.optim.lr_scheduler` objects: the multiplier for step `s` is
recomputed from (config, s) alone, so resuming needs no scheduler state beyond the step counter
and can never drift from an uninterrupted run. Each optimizer param group keeps its peak rate in
`group["initial_lr"]` and gets `initial_lr * lr_multiplier(step)` before every step.

- `cosine`: linear warmup, then half-cosine from 1 down to `min_lr_ratio` at the last step.
- `wsd` (warmup-stable-decay, MiniCPM / DeepSeek practice): warmup, a flat stretch, then a linear
  decay to `min_lr_ratio` over the final `decay_frac` of steps. A stable phase lets a run be
  extended or branched (the hill-climbing machine's "absorb more compute") without restarting.
- `constant`: warmup then flat.
"""

from __future__ import annotations

import math


def lr_multiplier(
    step: int,
    total_steps: int,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.1,
    decay_frac: float = 0.2,
) -> float:
    """Multiplier in [min_lr_ratio, 1] for optimizer step `step` (0-based) of `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    if schedule == "cosine":
        span = max(1, total_steps - 1 - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "wsd":
        decay_steps = max(1, int(round(decay_frac * total_steps)))
        decay_start = max(warmup_steps, total_steps - decay_steps)
        if step < decay_start:
            return 1.0
        t = min(1.0, (step - decay_start + 1) / max(1, total_steps - decay_start))
        return 1.0 - (1 - min_lr_ratio) * t
    raise ValueError(f"unknown schedule {schedule!r}")


def lr_multiplier_with_hold(
    step: int,
    total_steps: int,
    hold_steps: int,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.1,
    decay_frac: float = 0.2,
) -> float:
    """`lr_multiplier` after a first phase of `hold_steps` steps held at the peak (after its own
    warmup), the schedule then running over the remaining steps from its own start.

    Why: pre-training's copy warm-up (`copy_warmup_steps`) is a different task whose loss sits on
    a plateau until in-context copying forms; under one cosine over the whole run its rate is
    already decaying there. Measured (code-flash-tiny, copy rows only): seeds 0 and 3 left the
    plateau at ≈ 285 steps with the rate near its peak, while seed 0 under a cosine over 1,000
    steps had not after 600 (docs/LOG.md, session 11). The corpus phase then starts as a fresh
    pre-training would (warmup, then the schedule)."""
    hold = max(0, hold_steps)
    if step < hold:
        return lr_multiplier(step, hold, "constant", warmup_steps)
    return lr_multiplier(
        step - hold, total_steps - hold, schedule, warmup_steps, min_lr_ratio, decay_frac
    )


def apply_lr(optimizers: list, multiplier: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
