"""Rewards: from verifiers only, never from another model; plain callables users can replace.

A reward function takes one `Rollout` (its problem, completion text and ids, the checker's
`passed`/`status`) and returns a float. The default is correctness: 1 when the verifier passes
(exact answer for reasoning; every test in the sandbox for code), 0 otherwise — `no_answer`,
`error`, `timeout` and `truncated` are all 0. `format_reward` adds a small bonus for an
extractable final answer (`The answer is X.` / a fenced code block), which helps a model that
has not yet learned the answer convention; it is off by default because it can be farmed.

Group-level shaping that needs the whole group (the solve-rate-scaled length penalty, DAPO's soft
overlong punishment) lives here too: `shape_group` turns the group's raw rewards into training
rewards and says which completions get no gradient (`overlong = "mask"`).

Custom rewards: `--reward my_pkg.rewards:score` (or `reward = "..."` in a recipe) imports a
callable `score(rollout) -> float`; one that raises or returns a non-finite number stops the
run with a clear error naming the function.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.problems import extract_answer
from hillclimb.rl.rollout import Rollout

RewardFn = Callable[[Rollout], float]


def correctness(r: Rollout) -> float:
    return 1.0 if r.passed else 0.0


def has_format(r: Rollout) -> bool:
    if r.problem.kind == "code":
        return "```" in r.content_text
    return extract_answer(r.problem, r.text) is not None and "answer" in r.text.lower()


def thinking_tokens(r: Rollout) -> int:
    """Tokens inside the think block, tags excluded (what a serve-time budget counts)."""
    if not r.reasoning_tokens:
        return 0
    closed = r.reasoning_tokens >= 2 and not r.truncated
    return max(0, r.reasoning_tokens - (2 if closed else 1))


def load_reward(spec: str | None, format_bonus: float = 0.0) -> RewardFn:
    """The reward function: `spec` = "module:function" or None (correctness), plus the format
    bonus."""
    base: RewardFn = correctness
    if spec:
        mod, _, name = spec.partition(":")
        if not mod or not name:
            raise ConfigError(f"reward must be 'module:function', got {spec!r}")
        try:
            fn = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot load reward function {spec!r}: {exc}") from exc
        if not callable(fn):
            raise ConfigError(f"reward {spec!r} is not callable")
        base = fn
    if not format_bonus:
        return base

    def with_format(r: Rollout) -> float:
        return base(r) + (format_bonus if has_format(r) else 0.0)

    return with_format


def score(fn: RewardFn, r: Rollout) -> float:
    """Call a reward function with the errors a user needs to fix it."""
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        v = float(fn(r))
    except Exception as exc:
        raise HillclimbError(
            f"reward function {name} raised on problem {r.problem.id}: {type(exc).__name__}: {exc}"
        ) from exc
    if not math.isfinite(v):
        raise HillclimbError(f"reward function {name} returned {v} on problem {r.problem.id}")
    return v


def shape_group(
    rollouts: list[Rollout],
    raw: list[float],
    *,
    budget: int,
    overlong: str,
    overlong_buffer: int,
    alp_beta: float,
    budget_beta: float = 0.0,
) -> tuple[list[float], list[bool], dict[str, Any]]:
    """Training rewards for one group and which members train (False: masked out).

    - ALP (`alp_beta > 0`): r − β · (n / budget) · max(p̂, 1/G), p̂ = the group's solve rate, n
      the completion's tokens: easy prompts (p̂ high) pay for every token, hard ones barely.
      Not on rollouts whose prompt carried a thinking budget: the user's budget, not ALP,
      says how long those may think (otherwise a high budget's note would be trained away).
    - overlong "soft" (DAPO): completions within `overlong_buffer` tokens of the budget lose
      linearly up to 1; "mask": truncated completions get no gradient at all.
    - budget conditioning (`budget_beta > 0`, rollouts with a `think_budget` b): L1-max — a
      completion whose thinking t (think-block tokens, tags excluded) exceeds b loses
      β · min(1, (t − b) / b); within budget nothing changes, so the model may think less."""
    g = len(rollouts)
    solved = sum(r.passed for r in rollouts) / g if g else 0.0
    out, keep = list(raw), [True] * g
    for i, r in enumerate(rollouts):
        n = r.completion_tokens
        if alp_beta > 0 and not r.think_budget:  # a noted prompt's length is its budget's
            out[i] -= alp_beta * (n / max(1, budget)) * max(solved, 1.0 / g)
        if overlong == "soft" and n > budget - overlong_buffer:
            out[i] -= min(1.0, (n - (budget - overlong_buffer)) / overlong_buffer)
        if budget_beta > 0 and r.think_budget:
            over = thinking_tokens(r) - r.think_budget
            if over > 0:
                out[i] -= budget_beta * min(1.0, over / r.think_budget)
        if overlong == "mask" and r.truncated:
            keep[i] = False
    return out, keep, {"solve_rate": solved}
