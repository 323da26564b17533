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
callable `score(rollout) -> float`; one that raises, returns no real number (a string, None)
or a non-finite one stops the run with a clear error naming the function (`score`). With `--harness TASKS` the callable receives a graded
`harness.agent.Episode` instead of a `Rollout` (`resolved`, `grade`, `edits`, `exit_status`,
`turns`, `completion_tokens`, `token_ids`/`loss_mask`, ...; the default there is
`rl.harness.episode_reward`) and goes through the same `score` checks. The module is found on
`sys.path` and, failing that, in the current directory (as `python -m` would), so
`--reward myreward:fn` works beside `myreward.py`; an installed module of the same name wins.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.problems import extract_answer
from hillclimb.problems.steps import fmt, parse_number
from hillclimb.problems.verify import _ANSWER_RE, _FENCE_RE, _after_think
from hillclimb.rl.rollout import Rollout

RewardFn = Callable[[Rollout], float]


def _reads_only(fn: Callable[..., float]) -> Callable[..., float]:
    """Mark one of our own rewards as read-only: `score` passes it the rollout itself, not a
    deep copy (the copy guards the run against a custom reward that edits what it is given;
    ours do not, and copying every rollout of every step for them is pure overhead)."""
    fn._hillclimb_reads_only = True  # type: ignore[attr-defined]
    return fn


@_reads_only
def correctness(r: Rollout) -> float:
    return 1.0 if r.passed else 0.0


@_reads_only
def placebo(r: Rollout) -> float:
    """A fair coin per completion, blind to correctness: `--reward hillclimb.rl.rewards:placebo`.

    Why: a control for any RL result. With it, every step has the same size and the same
    sampling noise as real RL, and no signal, so "RL vs placebo" separates what the verifier's
    reward taught from what the updates' noise alone did to the model (on the tiny recipe's 20
    steps: noise alone cost 7–10 points of held-out accuracy, real rewards 0.5–3; LOG.md session
    19). Random rewards are also what "Spurious Rewards" (Shao et al. 2025) found to *raise*
    some models' scores through the clip's bias, a thing worth checking before trusting a
    gain. Deterministic: the coin is a hash of the problem, the sample index and the sampled
    ids, so a rerun with the same seed gives the same run."""
    h = hashlib.sha256(
        f"{r.problem.id}\0{r.sample}\0{','.join(map(str, r.completion_ids))}".encode()
    ).digest()
    return float(h[0] & 1)


def has_format(r: Rollout) -> bool:
    """Whether the final content (after the think block, as the checker reads it) follows the
    answer convention: an answer statement the checker extracts ("The answer is X.") for
    reasoning, a fenced code block with code in it for code. Why not "answer" anywhere in the
    text: the word in the reasoning ("<think>the answer needs care</think> 5") or in any
    sentence ("I answered 5") earned the bonus without the convention, and so did an empty
    fence for code. Nor any word after "answer is": on an item with choices (logic: a name,
    yes/no, True/False) "The answer is that it depends." extracted "that" and was paid the
    bonus (session 23); a final answer there is one of the choices."""
    final = _after_think(r.text)
    if r.problem.kind == "code":
        return any(body.strip() for _, body in _FENCE_RE.findall(final))
    if _ANSWER_RE.search(final) is None:
        return False
    got = extract_answer(r.problem, r.text)
    choices = r.problem.meta.get("choices") or []
    return got is not None and (not choices or got in _normalised_choices(choices))


def _normalised_choices(choices: list[Any]) -> set[str]:
    """An item's choices in the form `extract_answer` returns (a number canonical, a word
    casefolded)."""
    out = set()
    for c in choices:
        value = parse_number(str(c))
        out.add(fmt(value) if value is not None else str(c).casefold())
    return out


def thinking_tokens(r: Rollout) -> int:
    """Tokens inside the think block, tags excluded (what a serve-time budget counts). From
    the sampled ids where the rollout counted them; otherwise estimated from `reasoning_tokens`
    (tags included), which cannot tell a block closed and then truncated from an open one."""
    if r.think_tokens is not None:
        return r.think_tokens
    if not r.reasoning_tokens:
        return 0
    closed = r.reasoning_tokens >= 2 and not r.truncated
    return max(0, r.reasoning_tokens - (2 if closed else 1))


def budget_tokens(r: Rollout) -> int:
    """What a thinking budget is charged for: the think block's tokens, plus the tokens outside
    it beyond what the answer needs (`Rollout.answer_allowance`). Why: counting the block alone
    let a policy skip or close `<think>` early and reason in the content, unpenalised (found by
    the session-21 red team)."""
    extra = 0
    if r.content_tokens is not None:
        extra = max(0, r.content_tokens - r.answer_allowance)
    return thinking_tokens(r) + extra


def load_reward(spec: str | None, format_bonus: float = 0.0) -> RewardFn:
    """The reward function: `spec` = "module:function" or None (correctness), plus the format
    bonus."""
    base: RewardFn = correctness
    if spec:
        mod, name = split_reward_spec(spec)
        try:
            fn = getattr(_import_reward_module(mod), name)
        except (ImportError, AttributeError) as exc:
            hint = ""
            if isinstance(exc, ModuleNotFoundError) and exc.name == mod.partition(".")[0]:
                hint = (
                    f" (looked on sys.path and in the current directory {os.getcwd()}; set "
                    "PYTHONPATH to the directory holding the module)"
                )
            raise ConfigError(f"cannot load reward function {spec!r}: {exc}{hint}") from exc
        except (Exception, SystemExit) as exc:  # the module's own code: a SyntaxError, a raise
            raise ConfigError(
                f"cannot load reward function {spec!r}: importing {mod!r} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not callable(fn):
            raise ConfigError(f"reward {spec!r} is not callable")
        base = fn
    if not format_bonus:
        return base

    def with_format(r: Rollout) -> float:
        return base(r) + (format_bonus if has_format(r) else 0.0)

    return (
        _reads_only(with_format) if getattr(base, "_hillclimb_reads_only", False) else with_format
    )


def split_reward_spec(spec: str) -> tuple[str, str]:
    """`"module:function"` -> (module, function), or a `ConfigError` saying what shape is
    expected (shared with the climb recipe's check, so both refuse the same values)."""
    mod, _, name = spec.partition(":")
    if not mod or not name:
        raise ConfigError(f"reward must be 'module:function', got {spec!r}")
    return mod, name


def _local_module(top: str) -> bool:
    """Whether the current directory holds top-level module `top` (`top.py` or a package
    directory): the rule `_import_reward_module` falls back on."""
    here = Path(os.getcwd())
    return (here / f"{top}.py").is_file() or (here / top).is_dir()


def reward_module_found(mod: str) -> bool:
    """Whether `load_reward` would find module `mod`, decided WITHOUT importing user code.

    Why: a climb recipe's `[rl] reward` is otherwise checked only when the RL stage starts, after
    pre-training and SFT. `find_spec` of a dotted name imports its parents (running their code),
    so only the top-level name is looked up — on `sys.path`, then in the current directory as
    the loader does — and a deeper name only where its parent is already imported. False means
    the import is certain to fail; True does not promise the function exists."""
    parts = mod.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[:i])
        if i and name not in sys.modules:
            return True  # checking deeper would import the parent: leave it to the loader
        full = ".".join(parts[: i + 1])
        try:
            found = importlib.util.find_spec(full) is not None
        except ModuleNotFoundError:  # a parent that is not a package: the import fails too
            return False
        except (ImportError, ValueError):  # e.g. a module in sys.modules without __spec__
            return True
        if not found:
            return i == 0 and _local_module(full)
    return True


def _import_reward_module(mod: str) -> Any:
    """Import `mod` from sys.path, else from the current directory.

    Why the fallback: the `hillclimb` console script, unlike `python -m`, does not put the
    current directory on sys.path, so `--reward myreward:fn` beside `myreward.py` failed with
    "No module named 'myreward'". The directory is appended (not prepended) and only after the
    normal import found nothing, so it never shadows an installed or standard-library module."""
    try:
        return importlib.import_module(mod)
    except ModuleNotFoundError as exc:
        top = mod.partition(".")[0]
        cwd = os.getcwd()
        if exc.name != top or not _local_module(top) or cwd in sys.path:
            raise
        sys.path.append(cwd)  # kept: the module may import its neighbours later
        importlib.invalidate_caches()
        return importlib.import_module(mod)


def _subject(r: Any) -> str:
    """What a reward was scored on, for its error: a problem (a `Rollout`) or a harness task
    (an `Episode`, `--harness` mode)."""
    problem = getattr(r, "problem", None)
    if problem is not None:
        return f"problem {problem.id}"
    task = getattr(r, "task_id", None)
    return f"harness task {task} (an Episode)" if task is not None else type(r).__name__


def score(fn: Callable[[Any], float], r: Any) -> float:
    """Call a reward function with the errors a user needs to fix it: on a `Rollout` (problem
    RL) or a graded `harness.agent.Episode` (`--harness`), the same checks either way.

    A custom function gets a deep copy of `r` (ours, marked `_reads_only`, get `r`): the run keeps using `r` (its token ids build the
    training rows, `passed` the pass rate, solve rate and curriculum), so a reward that edits
    what it is given (`r.completion_ids.append(...)`, `r.passed = True`) changed the batch
    (a shape traceback) or the logged pass rate. What it prints goes to stderr: stdout carries
    `hillclimb rl --json`'s result. It must return a real number (a bool, an int, a float, a
    NumPy scalar or a one-element tensor); a string, None or `sys.exit` in it is an error."""
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            own = getattr(fn, "_hillclimb_reads_only", False)
            out = fn(r if own else copy.deepcopy(r))
    except (Exception, SystemExit) as exc:
        hint = ""
        if isinstance(exc, AttributeError) and getattr(r, "task_id", None) is not None:
            # the usual cause: a reward written for a Rollout (`r.passed`, `r.content_text`)
            hint = (
                "; with --harness a reward receives a harness Episode (resolved, grade, edits, "
                "exit_status, turns, completion_tokens, ...), not a Rollout (docs/areas/rl.md)"
            )
        raise HillclimbError(
            f"reward function {name} raised on {_subject(r)}: {type(exc).__name__}: {exc}{hint}"
        ) from exc
    try:
        v = _real(out)
    # the value's own __float__ may raise anything (a ZeroDivisionError was a bare traceback)
    except Exception as exc:
        raise HillclimbError(
            f"reward function {name} returned {_short(out)} ({type(out).__name__}) on "
            f"{_subject(r)}: a reward must be a real number ({exc})"
        ) from exc
    if not math.isfinite(v):
        raise HillclimbError(f"reward function {name} returned {v} on {_subject(r)}")
    return v


def _real(out: Any) -> float:
    """`out` as a float, or TypeError when it is no real number. Why not plain `float()`: it
    reads text as a number — `float("0.5")`, and a NumPy array of text (`np.array("1")`, an
    object array holding "1"), which trained as 1.0 — and keeps a complex value's real part."""
    import numpy as np

    if isinstance(out, np.ndarray):
        if out.dtype.kind == "O" and out.size == 1:  # an object array: judge what it holds
            return _real(out.reshape(()).item())
        if out.dtype.kind not in "biuf":  # bool, int, unsigned, float; not text, dates, objects
            raise TypeError(f"an array of {out.dtype}")
    if isinstance(out, str | bytes | bytearray) or out is None or _is_complex(out):
        raise TypeError(type(out).__name__)
    return float(out.detach() if callable(getattr(out, "detach", None)) else out)


def _is_complex(v: Any) -> bool:
    """A complex value of any kind. Why: `float()` of a NumPy complex scalar keeps the real part
    with only a warning (a reward of 1+2j trained as 1.0), and of a complex tensor raises a
    RuntimeError that was a traceback; Python's own complex is a TypeError already."""
    import numpy as np

    if isinstance(v, complex | np.complexfloating):
        return True
    if isinstance(v, np.ndarray):
        return bool(np.iscomplexobj(v))
    is_complex = getattr(v, "is_complex", None)  # torch tensors
    return callable(is_complex) and bool(is_complex())


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def soft_overlong_penalty(n: int, truncated: bool, budget: int, buffer: int) -> float:
    """DAPO's soft overlong punishment (as a positive amount to subtract): 0 up to
    `budget − buffer` tokens, rising linearly to 1 at `budget`, and 1 for a completion the
    engine cut at its limit (`truncated`), whatever its length.

    Why the truncated case: the engine caps a completion at min(budget, context − prompt), so a
    cell budget the context cannot hold (`--max-tokens` above it) cut completions short of
    `budget − buffer`: they were neither punished nor masked, and trained as ordinary wrong
    answers (thinking-micro, context 512, budget 511, a 41-token prompt: cut at 471 tokens,
    penalty 0). DAPO gives −1 at and beyond the generation limit."""
    if truncated:
        return 1.0
    return min(1.0, max(0.0, (n - (budget - buffer)) / buffer))


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
      The penalties are also returned apart (`info["alp"]`) so the advantage can leave them out
      of the std normalisation (`grpo.tally_group`).
      Not on rollouts whose prompt carried a thinking budget: the user's budget, not ALP,
      says how long those may think (otherwise a high budget's note would be trained away).
    - overlong "soft" (DAPO): completions within `overlong_buffer` tokens of the budget lose
      linearly up to 1, truncated ones 1 (`soft_overlong_penalty`); "mask": truncated
      completions get no gradient at all.
    - budget conditioning (`budget_beta > 0`, rollouts with a `think_budget` b): L1-max — a
      completion whose thinking t (think-block tokens, tags excluded, plus tokens outside the
      block beyond what the answer needs: `budget_tokens`) exceeds b loses
      β · min(1, (t − b) / b); within budget nothing changes, so the model may think less."""
    if overlong == "soft" and budget <= overlong_buffer:
        # the ramp would start at (or before) the first token: every completion loses reward
        # by its length, a length penalty rather than an overlong one. RLConfig refuses this
        # for an explicit max_tokens; a cell's own budget (sized from its reference solutions,
        # 48 tokens for arith tier 1) is only known here
        cell = f" ({rollouts[0].problem.family}/{rollouts[0].problem.tier})" if rollouts else ""
        raise HillclimbError(
            f"overlong 'soft' needs the token budget{cell} ({budget}) above overlong_buffer "
            f"({overlong_buffer}), or every completion is punished as overlong; use a smaller "
            "overlong_buffer, a larger max_tokens, or overlong 'mask'"
        )
    g = len(rollouts)
    solved = sum(r.passed for r in rollouts) / g if g else 0.0
    out, keep, alp = list(raw), [True] * g, [0.0] * g
    for i, r in enumerate(rollouts):
        n = r.completion_tokens
        if alp_beta > 0 and not r.think_budget:  # a noted prompt's length is its budget's
            alp[i] = alp_beta * (n / max(1, budget)) * max(solved, 1.0 / g)
            out[i] -= alp[i]
        if overlong == "soft":
            out[i] -= soft_overlong_penalty(n, r.truncated, budget, overlong_buffer)
        if budget_beta > 0 and r.think_budget:
            over = budget_tokens(r) - r.think_budget
            if over > 0:
                out[i] -= budget_beta * min(1.0, over / r.think_budget)
        if overlong == "mask" and r.truncated:
            keep[i] = False
    # the ALP share of each reduction travels apart: `grpo.tally_group` keeps it out of the
    # group-std normalisation, which otherwise cancels its solve-rate scaling
    return out, keep, {"solve_rate": solved, "alp": alp}
