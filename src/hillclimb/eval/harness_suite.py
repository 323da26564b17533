"""The harness suite — `hillclimb eval --model CKPT|URL --suite harness --tasks [NAME=]DIR ...`:
resolve rate on generated repository tasks, through the same agent loop users run.

Why a suite and not only `harness run`: a resolve rate is an accuracy like any other, so it gets
the suite envelope (bootstrap interval, truncated share, per-item records, `--out`) and can be a
target or a gate of `hillclimb promote`. Tasks come in named groups, one per `--tasks` flag, so
the two held-out questions the coder's training raises are answered side by side: tasks made by
*new mutations of projects the model trained on* and tasks from *projects never used in
training* (`harness generate --split heldout`, docs/areas/harness.md). Each group gets its own
rate and interval; `resolve_rate` pools them, and tasks that carry a project split (`train` /
`heldout` in their meta) also get `resolve_rate/projects:<split>` whatever group they are in.

A checkpoint runs on one started engine shared by `--concurrency` episodes (the engine batches
their turns, as RL rollouts do); a URL runs through the OpenAI-compatible client. Episodes are
greedy (temperature 0, seed `--seed`) with `--max-steps` turns of at most `--max-tokens`
completion tokens each (default: what the context leaves). An episode that ran out of turns,
context or tokens counts as truncated; `truncated_by` says which limit, since "the context filled
up" and "a turn was cut at max_tokens" call for different fixes. Tasks whose untouched
repository already grades resolved are left out of every rate and listed in `invalid_tasks`
(`harness.task_runner`: a model that did nothing would score them).

The no-training baseline (`baseline`) is a do-nothing agent — it submits the untouched repository
(no answer for repo_qa) — graded by the same grader on the same tasks, beside every rate (pooled,
per group, per project split) with its n and interval. Its grade is the `task_invalid` check
itself, so it costs nothing extra; with task_invalid tasks excluded it is 0 by construction, and
`baseline.task_invalid` counts them and says what doing nothing would score had they counted.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.eval.backends import Backend
from hillclimb.eval.suite_common import SuiteConfig, check_keep_dir, metric

# episode endings that mean "stopped by a limit", not "gave an answer"
TRUNCATED = ("max_steps", "max_tokens", "timeout", "context_exhausted")


def parse_task_groups(specs: list[str] | None) -> dict[str, str]:
    """`["heldout=DIR", "DIR2"]` → {"heldout": DIR, "DIR2's name": DIR2}; names are unique."""
    groups: dict[str, str] = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name or spec, spec
        if not name or not path:
            raise HillclimbError(f"--tasks {spec!r}: expected [NAME=]DIR")
        if name in groups:
            raise HillclimbError(f"--tasks: group name {name!r} given twice")
        if not Path(path).is_dir():
            raise HillclimbError(f"--tasks {spec!r}: {path} is not a directory")
        groups[name] = path
    return groups


def _client_factory(backend: Backend, guided_tools: bool = True) -> tuple[Any, Any]:
    """(a factory of per-thread model clients, the engine to start/stop or None)."""
    from hillclimb.harness.clients import LocalClient, OpenAIClient

    engine = getattr(backend, "engine", None)
    if engine is not None:
        return (lambda: LocalClient(engine=engine, guided_tools=guided_tools)), engine
    url, model = getattr(backend, "url", None), getattr(backend, "model", None)
    if url is None or model is None:
        raise HillclimbError(f"the harness suite cannot drive a {backend.kind!r} backend")
    key = getattr(backend, "api_key", None)
    return (lambda: OpenAIClient(url, model, key)), None


def do_nothing_grades(task_dirs: list[Path], concurrency: int, unsafe: bool) -> dict[str, bool]:
    """{task id: resolved} for the do-nothing agent, which submits at once without editing (an
    empty answer for repo_qa), graded by the same grader as the model's episodes.

    This is also the runner's `task_invalid` check (`harness.task_runner`: the untouched repository
    graded), so doing it here and running the episodes with `check_tasks=False` costs nothing
    extra: one untouched grade per task, as before (a repo_qa task without an answer is `no_answer`
    without running anything)."""
    from concurrent.futures import ThreadPoolExecutor

    from hillclimb.harness import grading
    from hillclimb.harness.task import load_task

    def grade(d: Path) -> tuple[str, bool]:
        task = load_task(d)
        if task.kind == "repo_qa":
            return str(task.id), False  # `grading`: no answer is never resolved
        return str(task.id), bool(grading.grade_patch(task, None, unsafe=unsafe).resolved)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return dict(pool.map(grade, task_dirs))


def baseline_metrics(
    items: list[dict[str, Any]], keys: list[tuple[str, Any]], cfg: SuiteConfig
) -> dict[str, Any]:
    """The do-nothing agent's resolve rate (`item["do_nothing"]`) under every metric key the
    model has, each on the same items (`keys`: (metric name, item filter)) with the same salt."""
    return {
        name: metric([float(i["do_nothing"]) for i in items if keep(i)], cfg, salt=k)
        for k, (name, keep) in enumerate(keys)
    }


def _keep_dir(path: str | None) -> Path | None:
    """`--keep-episodes DIR`, checked again just before use (`check_keep_dir`) and created."""
    if path is None:
        return None
    check_keep_dir(path)
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def run_harness(backend: Backend, cfg: SuiteConfig) -> dict[str, Any]:
    from hillclimb.harness.agent import EpisodeLimits
    from hillclimb.harness.task import find_task_dirs, load_task
    from hillclimb.harness.task_runner import run_tasks
    from hillclimb.serve.engine import running_for_episodes

    groups = parse_task_groups(cfg.tasks)
    if not groups:
        raise HillclimbError(
            "--suite harness needs --tasks [NAME=]DIR (a `harness generate` output)"
        )
    # which projects each task was drawn from (`harness generate --split`): "all" when unsplit
    split_of: dict[str, str] = {}
    group_of: dict[str, str] = {}
    id_of: dict[Path, str] = {}
    chosen: dict[str, list[Path]] = {}  # each group's task dirs, the first `--limit` by task id
    for name, path in groups.items():
        dirs = find_task_dirs(Path(path))
        if not dirs:
            raise HillclimbError(f"--tasks {name}={path}: no task directories found")
        by_id: list[tuple[str, Path]] = []
        for d in dirs:
            t = load_task(d)
            by_id.append((str(t.id), d))
            id_of[d] = str(t.id)
            # a task in two groups (the same DIR twice, a DIR and its parent, a copy) ran twice
            # and counted twice in the pooled resolve rate
            if group_of.setdefault(t.id, name) != name:
                raise HillclimbError(
                    f"--tasks: task {t.id!r} is in both group {group_of[t.id]!r} and {name!r}; "
                    "each task may be in one group only (it would be run and counted twice)"
                )
            split_of[t.id] = str(t.meta.get("split", "all"))
        # `--limit N` runs N tasks per group (it ran every task and then kept N: no quicker)
        chosen[name] = [d for _, d in sorted(by_id)[: cfg.limit]]
    if cfg.harness_max_steps < 1 or cfg.harness_concurrency < 1:
        raise HillclimbError("--max-steps and --concurrency must be >= 1")
    # `--max-tokens` / `[eval] suite_max_tokens` cap each turn, as every other suite caps an
    # answer; without it a turn may fill what the context leaves and episodes end
    # `context_exhausted` after a few verbose turns
    limits = EpisodeLimits(
        max_steps=cfg.harness_max_steps,
        max_tokens_per_turn=cfg.max_tokens,
        temperature=0.0,
        seed=cfg.seed,
    )
    factory, engine = _client_factory(backend, cfg.harness_guided_tools)
    # the no-training baseline, which is also the `task_invalid` check: a task its untouched
    # repository resolves measures nothing and is left out of every rate (and counted)
    untouched = do_nothing_grades(
        [d for dirs in chosen.values() for d in dirs], cfg.harness_concurrency, limits.unsafe
    )
    invalid = sorted(t for t, ok in untouched.items() if ok)
    items: list[dict[str, Any]] = []
    running = running_for_episodes(engine) if engine is not None else contextlib.nullcontext()
    keep = _keep_dir(cfg.harness_keep)
    with running, tempfile.TemporaryDirectory(prefix="hillclimb-harness-suite-") as tmp:
        base = keep if keep is not None else Path(tmp)
        for name, path in groups.items():
            valid = [d for d in chosen[name] if not untouched[id_of[d]]]
            if not valid:
                continue
            report = run_tasks(
                path,
                factory,
                base / name,
                limits,
                concurrency=cfg.harness_concurrency,
                check_tasks=False,  # checked above
                task_dirs=valid,
            )
            rows = sorted(report.rows, key=lambda r: str(r["task_id"]))
            for r in rows:
                items.append(
                    {
                        "id": r["task_id"],
                        "group": name,
                        "project_split": split_of.get(str(r["task_id"]), "all"),
                        "kind": r["kind"],
                        "passed": bool(r["resolved"]),
                        "status": r["grade_status"] or r["exit_status"],
                        "exit_status": r["exit_status"],
                        "turns": r["turns"],
                        "completion_tokens": r["completion_tokens"],
                        "do_nothing": untouched[str(r["task_id"])],
                    }
                )
    if invalid and not items:
        raise HillclimbError(
            f"--suite harness: every task ({len(invalid)}) already grades resolved on its "
            "untouched repository, so none measures anything (task_invalid)"
        )
    keys = _metric_keys(list(groups), items)
    metrics = {
        name: metric([float(i["passed"]) for i in items if keep(i)], cfg, salt=k)
        for k, (name, keep) in enumerate(keys)
    }
    n = len(items)
    baseline = {
        "what": (
            "a do-nothing agent (submits the untouched repository, or no answer for repo_qa, "
            "graded by the same grader) on the same tasks; task_invalid tasks excluded"
        ),
        **baseline_metrics(items, keys, cfg),
        "task_invalid": {
            "excluded": True,
            "count": len(invalid),
            "ids": invalid,
            # what doing nothing would have scored had they been counted
            "do_nothing_rate_if_counted": metric(
                [1.0] * len(invalid) + [float(i["do_nothing"]) for i in items], cfg, salt=99
            ),
        },
    }
    ends: dict[str, int] = {}
    for i in items:
        ends[i["exit_status"]] = ends.get(i["exit_status"], 0) + 1
    return {
        "n_items": n,
        "metrics": metrics,
        "baseline": baseline,
        "groups": dict(groups),
        "truncated_share": sum(ends.get(t, 0) for t in TRUNCATED) / n if n else 0.0,
        # which limit ended them: a context that filled up is not a `max_tokens` cut
        "truncated_by": {t: ends[t] / n for t in TRUNCATED if ends.get(t)},
        "finish_reasons": dict(sorted(ends.items())),
        "mean_completion_tokens": sum(i["completion_tokens"] for i in items) / n if n else 0.0,
        "items": items,
        # tasks left out: their untouched repository already grades resolved
        "invalid_tasks": invalid,
    }


def _metric_keys(groups: list[str], items: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(metric name, which items it is over): pooled, per `--tasks` group, per project split
    (seen vs never-trained-on projects); the model's rates and the baseline's use the same."""
    keys: list[tuple[str, Any]] = [("resolve_rate", lambda i: True)]
    keys += [(f"resolve_rate/{g}", lambda i, g=g: i["group"] == g) for g in groups]
    splits = sorted({i["project_split"] for i in items} - {"all"})
    keys += [(f"resolve_rate/projects:{s}", lambda i, s=s: i["project_split"] == s) for s in splits]
    return keys
