"""What every standard suite shares: its settings, a metric with its interval, generation
statistics and the per-item record of a code suite.

Why a module of its own: `suites.py` dispatches to `humaneval.py`, `ifeval.py` and
`adversarial.py`, and each of those needs these helpers; with the helpers in `suites.py` the
modules imported each other (issue 16). Now all four import downward, into this module.
"""

from __future__ import annotations

import ast
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import Completion
from hillclimb.eval.metrics import bootstrap_ci


def check_keep_dir(path: str | None) -> None:
    """`--keep-episodes DIR` must be a new or empty directory: `run_tasks` resumes what an output
    directory already holds, so a second evaluation into the same one would skip its tasks and
    score the first one's episodes."""
    p = None if path is None else Path(path)
    if p is not None and p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise HillclimbError(
            f"--keep-episodes {path}: must be a new or empty directory (a run's episodes "
            "there would be resumed, not rerun)"
        )


@dataclass
class SuiteConfig:
    limit: int | None = None  # first N items only (quick runs)
    samples_per_item: int = 0  # sampled completions per item for pass@k (0: greedy only)
    pass_k: list[int] = field(default_factory=lambda: [1])
    temperature: float = 0.8  # for the sampled completions; greedy is temperature 0
    top_p: float = 0.95
    max_tokens: int | None = None  # None: the suite's default
    seed: int = 0  # item generation, sampling and bootstrap seed
    timeout_s: float = 10.0  # per program (code suites)
    bootstrap: int = 1000  # bootstrap resamples
    form: str = "completion"  # humaneval: completion (raw prompt) | chat (one user turn)
    n_items: int | None = None  # generated suites (ifeval): how many prompts (None: default)
    # problems suite: which families / tiers / evaluation splits (None: all families and tiers)
    families: list[str] | None = None
    tiers: list[int] | None = None
    splits: list[str] = field(default_factory=lambda: ["heldout", "heldout_phrasing"])
    # harness suite: task groups ("[NAME=]DIR"), turns per episode, episodes in flight
    tasks: list[str] | None = None
    harness_max_steps: int = 30
    harness_concurrency: int = 4
    # a checkpoint's `<tool_call>` bodies decoded under the tools' JSON schema
    # (`serve.tool_grammar`); False: the model's raw calls (recorded in the suite's settings)
    harness_guided_tools: bool = True
    # keep the episodes (trajectories, results.jsonl, telemetry per task group) in this new
    # directory instead of a temporary one; None: discarded after scoring
    harness_keep: str | None = None

    def validate(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise HillclimbError(f"--limit must be >= 1, got {self.limit}")
        if self.samples_per_item < 0:
            raise HillclimbError(f"--samples-per-item must be >= 0, got {self.samples_per_item}")
        if any(k < 1 for k in self.pass_k):
            raise HillclimbError(f"pass@k needs k >= 1, got {self.pass_k}")
        if self.samples_per_item and max(self.pass_k) > self.samples_per_item:
            raise HillclimbError(
                f"pass@{max(self.pass_k)} needs --samples-per-item >= {max(self.pass_k)}"
            )
        if not self.samples_per_item and any(k != 1 for k in self.pass_k):
            raise HillclimbError(
                f"pass@{max(self.pass_k)} needs sampled completions: "
                f"pass --samples-per-item >= {max(self.pass_k)}"
            )
        if self.max_tokens is not None and self.max_tokens < 1:
            raise HillclimbError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        # `not > 0` rather than `<= 0`: NaN compares false both ways and slipped through to the
        # sandbox, which refused it only after every answer had been generated
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise HillclimbError(f"--timeout must be a finite number of seconds > 0, got "
                                 f"{self.timeout_s}")  # fmt: skip
        from hillclimb.eval.tasks import check_sampling

        check_sampling(self.temperature, self.top_p)
        if self.harness_max_steps < 1 or self.harness_concurrency < 1:
            raise HillclimbError(
                f"--max-steps and --concurrency must be >= 1, got {self.harness_max_steps} and "
                f"{self.harness_concurrency}"
            )
        check_keep_dir(self.harness_keep)
        if self.form not in ("completion", "chat"):
            raise HillclimbError(f"--form must be completion or chat, got {self.form!r}")
        if self.n_items is not None and self.n_items < 1:
            raise HillclimbError(f"--n-items must be >= 1, got {self.n_items}")
        if self.families or self.tiers or self.splits != ["heldout", "heldout_phrasing"]:
            # checked before a model is loaded or a URL reached, by the generator eval's own rule
            from hillclimb.eval.tasks import TaskEvalConfig

            TaskEvalConfig(families=self.families, tiers=self.tiers, splits=self.splits).validate()


def metric(
    values: list[float], cfg: SuiteConfig, weights: list[float] | None = None, salt: int = 0
) -> dict[str, Any]:
    """A mean (or a ratio of sums with `weights`) with its 95% interval (`bootstrap_ci`: Wilson for
    pass/fail items, else a seeded bootstrap)."""
    n = len(values)
    den = sum(weights) if weights is not None else n
    value = sum(values) / den if den else 0.0
    lo, hi = bootstrap_ci(values, weights, seed=cfg.seed * 1000 + salt, resamples=cfg.bootstrap)
    return {"value": value, "ci95": [lo, hi], "n": n}


def generation_stats(comps: list[Completion]) -> dict[str, Any]:
    reasons = Counter(c.finish_reason for c in comps)
    n = len(comps)
    return {
        "n_generations": n,
        "finish_reasons": dict(sorted(reasons.items())),
        "truncated_share": reasons.get("length", 0) / n if n else 0.0,
        "prompt_too_long": reasons.get("prompt_too_long", 0),
        "mean_completion_tokens": sum(c.completion_tokens for c in comps) / n if n else 0.0,
    }


def program_item(item_id: str, result: Any, comp: Completion, **extra: Any) -> dict[str, Any]:
    """The per-item record of a code suite: a failing answer stopped by `max_tokens` (or with no
    room in the context) says so in `status` instead of reading as plainly wrong."""
    status = result.status
    if not result.passed and comp.finish_reason in ("length", "prompt_too_long"):
        status = "truncated" if comp.finish_reason == "length" else "prompt_too_long"
    return {
        "id": item_id,
        **extra,
        "passed": result.passed,
        "status": status,
        "detail": result.detail,
        "finish_reason": comp.finish_reason,
        "completion_tokens": comp.completion_tokens,
        "completion": comp.text,
    }


def check_assert_programs(
    ids: list[str], codes: list[str], tests: list[str], timeout_s: float
) -> list[Any]:
    """`ProgramResult`s of candidate sources `codes` against our own tests (`assert f(literal) ==
    literal` lines), judged by the RL reward's checker (`problems.verify.check_code_details`).

    Why not `programs.run_programs(code + tests)`: a candidate sharing an interpreter with the
    asserts passes them by returning an object equal to everything, or by printing the run's
    end marker (it is in its own code object) and exiting 0 — measured on the completion and
    FIM test sets, every item passed that way. The checker keeps the expected values out of the
    candidate's process and compares type-strictly, as the chat-form evaluation does."""
    from hillclimb.eval.programs import ProgramResult
    from hillclimb.problems.base import Problem
    from hillclimb.problems.verify import check_code_details

    problems = [
        Problem(id=i, family="suite", kind="code", tier=0, prompt="", reasoning="", answer="",
                tests=t)
        for i, t in zip(ids, tests, strict=True)
    ]  # fmt: skip
    return [
        ProgramResult(bool(d["passed"]), d["status"], d.get("detail", ""))
        for d in check_code_details(problems, codes, timeout_s=timeout_s)
    ]


# The no-training baseline of the code suites: a function whose body is `return EXPR` for each of
# these (the last one returns its first parameter). A suite whose tests such a function passes
# rewards nothing; the best single one is the score of a model that learned only the signature.
TRIVIAL_RETURNS: dict[str, str] = {
    "return None": "None",
    "return 0": "0",
    "return ''": "''",
    "return []": "[]",
    "return True": "True",
    "return False": "False",
    "return the first argument": "{first}",
}


def first_param(source: str, name: str) -> str | None:
    """The first positional parameter of function `name` in `source` (a prompt that ends inside
    the function, or a `def` line), or None when there is none or it does not parse."""
    for text in (source + "    pass\n", source + "\n    pass\n", source):
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
                args = node.args.posonlyargs + node.args.args
                return args[0].arg if args else None
        return None
    return None


def trivial_returns(first: str | None) -> dict[str, str]:
    """{answer name: return expression} of the trivial answers for a function."""
    return {k: v.format(first=first) for k, v in TRIVIAL_RETURNS.items() if first or "{" not in v}


def trivial_baseline(
    firsts: list[str | None],
    make: Callable[[int, str], str],
    run: Callable[[list[int], list[str]], list[bool]],
    metric_name: str,
    cfg: SuiteConfig,
) -> dict[str, Any]:
    """The baseline record of items whose functions have first parameters `firsts`: every
    trivial answer of each item as a program `make(item index, return expression)`, all of them
    judged in one `run(item indices, programs)` (passed per program); the best single answer as
    `metric_name`, which one, and how many items some trivial answer passes (a test-strength
    check: should be 0)."""
    idx, names, progs = [], [], []
    for i, first in enumerate(firsts):
        for name, expr in trivial_returns(first).items():
            idx.append(i)
            names.append(name)
            progs.append(make(i, expr))
    passed = {k: [False] * len(firsts) for k in TRIVIAL_RETURNS}  # False: does not apply
    for i, k, ok in zip(idx, names, run(idx, progs), strict=True):
        passed[k][i] = bool(ok)
    best = max(TRIVIAL_RETURNS, key=lambda k: sum(passed[k]))  # ties: the first listed
    return {
        "what": f"a function that does nothing but `{best}` (the best of {len(TRIVIAL_RETURNS)} "
        "trivial bodies)",
        metric_name: metric([float(x) for x in passed[best]], cfg, salt=77),
        "items_passed_by_some_trivial_answer": sum(
            any(v) for v in zip(*passed.values(), strict=True)
        ),
    }


def suite_baseline(result: dict[str, Any]) -> dict[str, float]:
    """{metric: value} of a suite result's no-training `baseline` (HumanEval, completion,
    adversarial: trivial function bodies; IFEval: echoing the prompt; FIM: repeating the previous
    line) for the metrics it has; {} when the result has none."""
    b = result.get("baseline")
    if not isinstance(b, dict):
        return {}
    out: dict[str, float] = {}
    for k, v in b.items():
        x = v.get("value") if isinstance(v, dict) else v  # older results: a flat {metric: value}
        if isinstance(x, int | float) and not isinstance(x, bool):
            out[k] = float(x)
    return out
