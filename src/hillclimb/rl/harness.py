"""Agentic RL inside the harness: groups of episodes on one task, rewards from the grader.

`hillclimb rl --harness TASKS` trains on the harness's own episodes instead of single-turn
problems: every RL step draws tasks from TASKS (a `harness generate` directory), runs G episodes
of each with the policy (`harness.agent.run_episode` through `LocalClient(engine=...)`, the same
loop `harness run` evaluates with, concurrently on the trainer's engine), grades them with the
harness grader and turns each group into advantages. The loss sees each episode's token
transcript exactly as sampled (`Episode.token_ids`, `loss_mask`, `token_logprobs`): only tokens
the model wrote train; the system prompt, task text, tool observations and template markup never
do (harness/agent.py, clients.py: token-faithful episodes).

Reward (`episode_reward`), from graders that code under test cannot forge (the trusted result
channel; a forged test report is `patch_rejected` and earns nothing):
  1 if resolved; else `partial` × (share of FAIL_TO_PASS tests passing with a hidden value
  checked, `grade.value_checked`) when no PASS_TO_PASS test broke; minus `syntax_penalty` per
  edit rejected for breaking syntax (at most 0.5 in total). A FAIL_TO_PASS test with nothing
  hidden in it (`with pytest.raises(ValueError)`, `assert.throws`) still counts toward
  resolving, never toward partial credit: code under test can pass it without the fix (a stub
  raising `ValueError` for every input was paid on 5 of 21 generated feature tasks, session 26).
Curriculum (`TaskCurriculum`): tasks are drawn with weight p̂(1 − p̂) + 0.05 from the EMA of
their group rate (mean reward clipped to [0, 1], so partial fixes count; informative tasks,
strictly between 0 and 1, first); an untried task takes the mean p̂ of its pool, (kind,
difficulty) when the task records `meta.difficulty` (`taskgen.common.task_difficulty`), else its
kind's (0.5 before any task of its kind was tried); its state rides in the checkpoint like the
problem curriculum's.

Held-out curve (`HarnessVal`, `--harness-val DIR --harness-val-every K`): a greedy episode per
val task at step 0, every K steps and at the end, on the same engine with the same limits;
resolve rate with its Wilson interval and the mean `episode_reward` go to curve.jsonl. The val
set is refused when it shares a task id, a task's content or a mutation site with the training
tasks (`val_overlap`); val episodes never reach the curriculum or the loss.

Tasks that need no work (`drop_resolved_untouched`): before the first step each task's
*untouched* repository is graded, as `harness run` does; a task that already grades resolved
would pay an episode that changes nothing the full reward, so it is left out of training (named
in the log and in `rl.json`'s `invalid_tasks`); `--no-check-tasks` skips the check (one test run
per task).

Truncated episodes (`EPISODE_CUT`: the context ran out, or the episode hit max_steps, its token
limit or its wall time before submitting) follow `overlong` as truncated single-turn completions
do: "mask" (the default, DAPO's overlong filtering) keeps them in their group's reward statistics
but gives them no gradient — a cut episode's reward says where it stopped, not how it would have
ended; "none" trains them as they are; "soft" (length shaping) is refused by `RLConfig`.

Not here: routing replay for episodes (a transcript mixes prefilled and sampled turns; the rollout
engine's routes would need stitching per turn — the log-prob gap is still logged) and KV reuse
between turns (each turn prefills its whole prompt).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.problems.base import derive_seed
from hillclimb.rl.grpo import empty_batch, gather_groups, step_stats, tally_group

# how an episode ends when a limit cut it short (harness.agent `_loop`), not the model: the
# episode counterpart of a single-turn completion cut at its token budget
EPISODE_CUT = ("context_exhausted", "max_steps", "max_tokens", "timeout")


def episode_truncated(ep: Any) -> bool:
    """Whether a limit ended the episode before the model submitted (`EPISODE_CUT`)."""
    return getattr(ep, "exit_status", None) in EPISODE_CUT


def load_tasks(root: str | Path) -> list[Any]:
    """The tasks to train on, sorted by id: every task directory under `root` (a `harness
    generate` output), or the tasks a telemetry export names (`rl_prompts.jsonl`, or the export
    directory holding it: the flywheel's unresolved and user-rejected tasks)."""
    from hillclimb.harness.task import find_task_dirs, load_task

    root = Path(root)
    refs = root / "rl_prompts.jsonl" if root.is_dir() else root
    if refs.is_file() and refs.suffix == ".jsonl":
        return _no_heldout(_exported_tasks(refs), str(refs))
    dirs = find_task_dirs(root) if root.is_dir() else []
    if not dirs:
        raise ConfigError(
            f"--harness {root}: no task directories found (run `harness generate`) and no "
            "rl_prompts.jsonl (run `telemetry export`)"
        )
    return _no_heldout(sorted((load_task(d) for d in dirs), key=lambda t: t.id), str(root))


def _no_heldout(tasks: list[Any], where: str) -> list[Any]:
    """Refuse tasks from the held-out projects, terminal templates or mutation sites
    (`taskgen.common.heldout_reason`: `--split heldout|heldout_mutations`, and `--split all`
    tasks that happen to use them): they are how an evaluation measures what the model never
    trained on."""
    from hillclimb.harness.taskgen.common import heldout_reason

    held = [(t.id, r) for t in tasks if (r := heldout_reason(t.meta))]
    if held:
        raise ConfigError(
            f"--harness {where}: {len(held)} of {len(tasks)} task(s) come from the held-out "
            f"projects, terminal templates or mutation sites, which are for evaluation only (e.g. "
            f"{held[0][0]}: {held[0][1]}); generate training tasks with "
            "`harness generate --split train`"
        )
    return tasks


def _exported_tasks(refs: Path) -> list[Any]:
    """Tasks named by a telemetry export's `rl_prompts.jsonl` (one `{"task_id", "task_dir"}`
    per line); a line whose task directory is gone is a clear error, not a silent skip. A task
    named twice (files of several exports concatenated) is loaded once: the curriculum draws
    by weight per entry, so a repeat would double its share of the steps."""
    from hillclimb.harness.task import load_task

    try:
        text = refs.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--harness {refs}: not UTF-8 text ({exc})") from None
    tasks, seen = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            ref = json.loads(line)
            task_dir = Path(ref["task_dir"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{refs}:{n}: not a task reference ({exc})") from None
        if not task_dir.is_dir():
            raise ConfigError(f"{refs}:{n}: task directory {task_dir} does not exist")
        if task_dir.resolve() in seen:
            continue
        seen.add(task_dir.resolve())
        tasks.append(load_task(task_dir))
    if not tasks:
        raise ConfigError(f"--harness {refs}: no task references (nothing failed or was rejected)")
    return sorted(tasks, key=lambda t: t.id)


def drop_resolved_untouched(tasks: list[Any], info: Any) -> tuple[list[Any], list[str]]:
    """(the tasks to train on, the ids left out): a task whose untouched repository already
    grades resolved is left out (see the module docstring); repo_qa tasks need an answer, so
    they cannot resolve untouched. Rank 0 grades and broadcasts the verdict, so DDP ranks train
    on the same tasks even if a test is flaky. Every task resolving untouched is an error."""
    from hillclimb.harness.grading import grade_patch

    bad: list[str] = []
    if info.is_main:
        bad = [t.id for t in tasks if t.kind != "repo_qa" and grade_patch(t, None).resolved]
    if info.world > 1:
        bad = list(info.broadcast_object(bad))
    keep = [t for t in tasks if t.id not in set(bad)]
    if not keep:
        raise ConfigError(
            f"--harness: all {len(tasks)} task(s) already grade resolved on their untouched "
            "repository (an episode that changes nothing would earn the full reward); fix the "
            "tasks, or pass --no-check-tasks"
        )
    return keep, bad


def episode_reward(ep: Any, partial: float = 0.5, syntax_penalty: float = 0.1) -> float:
    """The reward of one graded episode (see the module docstring)."""
    g = ep.grade or {}
    if ep.resolved:
        r = 1.0
    else:
        f2p, p2p = g.get("fail_to_pass") or {}, g.get("pass_to_pass") or {}
        n = len(f2p.get("passed", [])) + len(f2p.get("failed", []))
        intact = not p2p.get("failed") and g.get("status") not in ("patch_rejected", "error")
        passed = f2p.get("passed", [])
        if "value_checked" in g:  # graded since session 26: only passes the sandbox cannot fake
            checked = set(g["value_checked"])
            passed = [t for t in passed if t in checked]
        r = partial * len(passed) / n if n and intact else 0.0
    broken = sum(1 for e in ep.edits if e.get("status") == "rejected_syntax")
    return r - min(0.5, syntax_penalty * broken)


def episode_rewards(reward_fn: Callable[[Any], float] | None, episodes: list[Any]) -> list[float]:
    """The rewards of one group: `reward_fn` (a custom `--reward`, called on each graded
    `Episode`) or `episode_reward`. A custom one goes through `rewards.score`, as in problem RL,
    so a reward written for a `Rollout`, one that raises or one that returns NaN stops the run
    with an error naming the function and the task, not a bare traceback or a NaN loss."""
    if reward_fn is None:
        return [episode_reward(e) for e in episodes]
    from hillclimb.rl.rewards import score

    return [score(reward_fn, e) for e in episodes]


def group_rate(rewards: list[float]) -> float:
    """A group's success in [0, 1] for the curriculum: the mean of its rewards clipped to
    [0, 1]. Why the rewards, not the resolved share: a group of partial fixes (F2P tests
    passing, nothing resolved yet) has reward variance to learn from, but a resolve rate of 0
    ranked it with the groups that got nothing; clipped, because a syntax penalty (or a custom
    reward's scale) would otherwise push p̂ outside the range p̂(1 − p̂) is a weight on."""
    if not rewards:
        raise HillclimbError("group_rate needs at least one reward")
    return sum(min(1.0, max(0.0, r)) for r in rewards) / len(rewards)


def pool_key(task: Any) -> tuple[str, str | None]:
    """The curriculum pool of `task`: (kind, difficulty), difficulty None when the task does
    not record one (hand-written tasks, task dirs generated before `meta.difficulty`)."""
    d = getattr(task, "difficulty", None)
    return task.kind, d if isinstance(d, str) else None


class TaskCurriculum:
    """Tasks weighted by how informative their groups are: p̂(1 − p̂) + `FLOOR`, where p̂ is
    the EMA of the task's group rate (`group_rate`: mean clipped reward). Tasks whose groups
    are all-solved or all-failed (p̂ at 0 or 1) keep only the floor; those strictly between
    are drawn most. A task not yet tried takes the mean p̂ of the tried tasks of its pool
    (`pool_key`: same kind and same difficulty, when the task records one: a hard feature is
    not as likely solved as an easy one), else of the tried tasks of its kind (bugfix, feature,
    repo_qa, ...: alike for the policy), or `PRIOR` when no task of its kind has been tried."""

    FLOOR = 0.05  # every task keeps a chance: its rate may have moved since it was last drawn
    PRIOR = 0.5  # an unknown task is assumed maximally informative

    def __init__(self, tasks: list[Any], seed: int, ema: float = 0.3):
        self.tasks, self.seed, self.alpha = tasks, seed, ema
        self.rate: dict[str, float] = {}

    def kind_rate(self, kind: str, difficulty: str | None = None) -> float | None:
        """The mean p̂ of the tried tasks of `kind` (and of `difficulty`, when given; None:
        none tried yet)."""
        rates = [
            self.rate[t.id]
            for t in self.tasks
            if t.id in self.rate
            and t.kind == kind
            and (difficulty is None or pool_key(t)[1] == difficulty)
        ]
        return sum(rates) / len(rates) if rates else None

    def estimate(self, task: Any) -> float:
        """p̂ of `task`: its own EMA, else its (kind, difficulty) pool's, else its kind's,
        else `PRIOR`."""
        p = self.rate.get(task.id)
        kind, difficulty = pool_key(task)
        if p is None and difficulty is not None:
            p = self.kind_rate(kind, difficulty)
        if p is None:
            p = self.kind_rate(kind)
        return self.PRIOR if p is None else p

    def pools(self) -> dict[str, dict[str, Any]]:
        """Per pool (`kind/difficulty`, `kind/unknown`): tasks, tried, mean p̂ of the tried
        (None: none yet), for the run's summary (`rl.json` `curriculum_pools`)."""
        out: dict[str, dict[str, Any]] = {}
        for t in self.tasks:
            kind, d = pool_key(t)
            e = out.setdefault(f"{kind}/{d or 'unknown'}", {"tasks": 0, "tried": 0, "rates": []})
            e["tasks"] += 1
            if t.id in self.rate:
                e["tried"] += 1
                e["rates"].append(self.rate[t.id])
        return {
            k: {"tasks": e["tasks"], "tried": e["tried"],
                "mean_rate": sum(e["rates"]) / len(e["rates"]) if e["rates"] else None}
            for k, e in sorted(out.items())
        }  # fmt: skip

    def weight(self, task: Any) -> float:
        p = self.estimate(task)
        return p * (1 - p) + self.FLOOR

    def draw(self, step: int, n: int, round_: int = 0) -> list[Any]:
        rng = random.Random(derive_seed("rl-harness-draw", self.seed, step, round_))
        return rng.choices(self.tasks, weights=[self.weight(t) for t in self.tasks], k=n)

    def observe(self, task: Any, rate: float) -> None:
        """Fold one group's rate (`group_rate`, in [0, 1]) into the task's EMA."""
        if not 0.0 <= rate <= 1.0:
            raise HillclimbError(f"task {task.id}: group rate must be in [0, 1], got {rate}")
        prev = self.rate.get(task.id)
        self.rate[task.id] = rate if prev is None else (1 - self.alpha) * prev + self.alpha * rate

    def promote(self) -> list[str]:
        """Nothing unlocks: every task is in the draw from the start, weighted by its rate
        (the problem curriculum's tiers have no counterpart among harness tasks)."""
        return []

    def state(self) -> dict[str, Any]:
        return {"task_rate": dict(self.rate)}

    def load(self, st: dict[str, Any]) -> None:
        self.rate.update({k: float(v) for k, v in (st or {}).get("task_rate", {}).items()})


def run_group_episodes(
    engine: Any,
    jobs: list[tuple[Any, int]],
    limits: Any,
    concurrency: int,
    threads: int | None = None,
    guided: bool = True,
) -> list[Any]:
    """Episodes for (task, seed) jobs on one engine, `concurrency` at a time (each with its own
    token-faithful client; the engine batches their turns). Order follows `jobs`. `threads`:
    torch intra-op threads while they run (None: one for a small CPU model, else unchanged).
    `guided`: tool calls decoded under the tools' schema (`LocalClient(guided_tools=...)`)."""
    from dataclasses import replace

    from hillclimb.harness.agent import run_episode
    from hillclimb.harness.clients import LocalClient
    from hillclimb.serve.engine import running_for_episodes

    out: list[Any] = [None] * len(jobs)
    lock = threading.Lock()
    nxt = [0]

    def worker() -> None:
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(jobs):
                return
            task, seed = jobs[i]
            client = LocalClient(engine=engine, guided_tools=guided)
            out[i] = run_episode(task, client, replace(limits, seed=seed))

    # the process's thread count comes back for the RL update after
    with running_for_episodes(engine, threads):
        workers = [threading.Thread(target=worker) for _ in range(max(1, concurrency))]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    missing = [jobs[i][0].id for i, e in enumerate(out) if e is None]
    if missing:
        raise HillclimbError(f"episodes did not finish for tasks {missing}")
    return out


def episode_jobs(
    tasks: list[Any], seed: int, step: int, rnd: int, group_size: int
) -> list[tuple[Any, int]]:
    """(task, episode seed) for every group of a round's draw, `group_size` per task drawn.

    The curriculum draws with replacement, so a task may come up twice in one round; its k-th
    occurrence (numbered over the whole draw, so every rank agrees) is seeded with episodes
    i + k·G. Seeded by the task alone, the second group replayed the first token for token (the
    engine gives the same tokens for the same seed): a copy counted twice in the update. The
    first occurrence keeps its seeds, so a draw without repeats is unchanged."""
    from hillclimb.rl.rollout import repeat_index

    return [
        (t, derive_seed("rl-episode", seed, step, rnd, t.id, i + k * group_size) >> 33)
        for t, k in zip(tasks, repeat_index(tasks), strict=True)
        for i in range(group_size)
    ]


def collect_episodes(
    cfg: Any,
    engine: Any,
    cur: TaskCurriculum,
    reward_fn: Callable[[Any], float] | None,
    step: int,
    info: Any,
    limits: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One RL step's groups: tasks from the curriculum × `group_size` episodes each (this rank's
    share, gathered across ranks), rewards, advantages; dynamic sampling drops (and refills)
    groups whose rewards are all equal. Same stats keys as the problem collector."""
    import time

    st = step_stats()
    groups: list[dict[str, Any]] = []
    G = cfg.group_size
    for rnd in range(cfg.refill_rounds + 1):
        need = cfg.prompts_per_step - len(groups)
        if need <= 0 or (rnd > 0 and not cfg.dynamic_sampling):
            break
        tasks = cur.draw(step, need if rnd else cfg.prompts_per_step, rnd)
        t0 = time.perf_counter()
        jobs = [
            job for gi, job in enumerate(episode_jobs(tasks, cfg.seed, step, rnd, G))
            if gi // G % info.world == info.rank
        ]  # fmt: skip
        eps = run_group_episodes(
            engine,
            jobs,
            limits,
            cfg.harness_concurrency,
            guided=getattr(cfg, "harness_guided_tools", True),
        )
        t1 = time.perf_counter()
        # scored by the rank that ran them, the rewards travel with the episodes: every rank
        # trains on the same rewards even when the reward is not a pure function of its input
        mine = [
            r for k in range(0, len(eps), G) for r in episode_rewards(reward_fn, eps[k : k + G])
        ]
        st["reward_s"] += time.perf_counter() - t1
        t2 = time.perf_counter()
        eps, all_rewards = gather_groups(info, eps, mine, len(tasks), G)
        st["rollout_s"] += t1 - t0 + time.perf_counter() - t2
        h = st.setdefault("harness", {"episodes": 0, "model_s": 0.0, "tool_s": 0.0, "grade_s": 0.0})
        h["episodes"] += len(eps)
        for e in eps:  # where an episode's time went: model turns / tools and tests / grading
            h["model_s"] += e.model_s
            h["tool_s"] += e.tool_s
            h["grade_s"] += e.grade_s
        t1 = time.perf_counter()
        for gi, task in enumerate(tasks):
            g = eps[gi * G : (gi + 1) * G]
            if any(e.token_faithful is False for e in g):  # None: no turn ran (no tokens)
                raise HillclimbError(
                    f"task {task.id}: an episode's prompts stopped extending its token "
                    "transcript; agentic RL needs the local engine's token-faithful client"
                )
            rewards = all_rewards[gi * G : (gi + 1) * G]
            cur.observe(task, group_rate(rewards))
            cut = [episode_truncated(e) for e in g]
            adv = tally_group(
                st,
                f"harness/{task.kind}",
                [e.resolved for e in g],
                cut,
                [e.completion_tokens for e in g],
                rewards,
                rewards,
                dynamic_sampling=cfg.dynamic_sampling,
                std_norm=cfg.std_norm,
            )
            if adv is None:
                continue
            keep = [not (c and cfg.overlong == "mask") for c in cut]
            groups.append({"episodes": g, "adv": adv, "keep": keep})
        st["reward_s"] += time.perf_counter() - t1
    st["groups"] = len(groups)
    return groups, st


def episode_batch(
    groups: list[dict[str, Any]], pad_rows_to: int, max_len: int, guide: Any = None
) -> dict[str, np.ndarray]:
    """Rows = episode transcripts (right-padded): `mask` = the episode's loss mask (sampled
    tokens only), `old_lp` = the sampling log-probs, `adv` per episode — the keys `build_batch`
    makes for single-turn rollouts, so `PolicyLoss` and `Trainer.update` take both. A member
    whose `keep` is False (a truncated episode under overlong "mask") gets no row. With `guide`
    (an `rl.guided.GuideTable`), `gidx` holds each schema-guided token's mask row (−1: none),
    so the loss scores it over the tokens the rollout could draw."""
    rows = [
        (e, a)
        for g in groups
        for e, a, k in zip(
            g["episodes"], g["adv"], g.get("keep") or [True] * len(g["episodes"]), strict=True
        )
        if k
    ]
    rows = [(e, a) for e, a in rows if e.token_ids and any(e.loss_mask)]
    b = empty_batch(len(rows), max([len(e.token_ids) for e, _ in rows] + [2]), pad_rows_to, max_len)
    ids, mask, valid, old, adv = (b[k] for k in ("ids", "mask", "valid", "old_lp", "adv"))
    if guide is not None:
        from hillclimb.rl.guided import episode_guide, fill_gidx

        b["gidx"] = np.full(ids.shape, -1, dtype=np.int64)
    for i, (e, a) in enumerate(rows):
        if guide is not None:
            fill_gidx(b["gidx"], i, episode_guide(e, guide))
        k = len(e.token_ids)
        ids[i, :k] = e.token_ids
        valid[i, :k] = 1
        m = np.asarray(e.loss_mask, dtype=np.float32)
        lp = np.asarray(e.token_logprobs, dtype=np.float64)
        ok = (m > 0) & np.isfinite(lp)
        mask[i, :k] = ok.astype(np.float32)
        old[i, :k] = np.where(ok, lp, 0.0).astype(np.float32)
        adv[i] = a
    return b


# ---- the held-out curve (`--harness-val`) -----------------------------------------------------

VAL_KEY = "harness_val"  # a val point's record in curve.jsonl: {"step", "split", VAL_KEY: {...}}


def task_site(task: Any) -> tuple[Any, ...] | None:
    """Where a generated task broke its project: ("mutation", language, module, function,
    line) for a bugfix / feature (a stub has no line: its fix rewrites the whole function),
    ("refactor", language, module, refactor, name) for a refactor; None for tasks with no code
    site (repo_qa, terminal, hand-written ones). The module path starts with the project's
    folder, so the key names the project too."""
    m = task.meta if isinstance(getattr(task, "meta", None), dict) else {}
    module = m.get("module")
    if not isinstance(module, str):
        return None
    lang = getattr(task, "language", "python")
    if task.kind in ("bugfix", "feature"):
        return ("mutation", lang, module, m.get("function"), m.get("line"))
    if task.kind == "refactor":
        return ("refactor", lang, module, m.get("refactor"), m.get("old") or m.get("helper"))
    return None


def _sites_clash(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """The same site; a stub (line None) clashes with every mutation of its function."""
    if a[:4] != b[:4]:
        return False
    return a[4] == b[4] or (a[0] == "mutation" and None in (a[4], b[4]))


def _content(task: Any) -> tuple[Any, ...]:
    """What makes two tasks the same under other ids (a task dir copied and renamed, or the
    same mutation drawn by two `harness generate` runs with other seeds or splits): the
    reference patch, or (no patch: repo_qa) the question and its answers."""
    patch = task.solution_patch
    if patch is not None:
        return (task.kind, patch.read_text(encoding="utf-8", errors="replace"))
    return (task.kind, task.instruction, tuple(task.answers))


def val_overlap(train: list[Any], val: list[Any]) -> list[str]:
    """Why val tasks are not held out from `train` (one line per clash; empty: disjoint): the
    same task id, the same task under another id (`_content`), or the same mutation site of
    the same project (`task_site`) — a val task fixed at a line the policy trained on fixing
    measures memory, not the skill."""
    ids = {t.id for t in train}
    content = {_content(t): t.id for t in train}
    sites = [(s, t.id) for t in train if (s := task_site(t)) is not None]
    out = []
    for v in val:
        if v.id in ids:
            out.append(f"{v.id}: the same task id is in the training set")
        elif _content(v) in content:
            out.append(f"{v.id}: the same task as training task {content[_content(v)]}")
        elif (s := task_site(v)) is not None:
            hit = next((tid for ts, tid in sites if _sites_clash(s, ts)), None)
            if hit is not None:
                where = f"{s[2]}:{s[3]}" + (f" line {s[4]}" if s[4] is not None else "")
                out.append(f"{v.id}: mutates the site of training task {hit} ({where})")
    return out


def load_val_tasks(root: str | Path, train: list[Any]) -> list[Any]:
    """The held-out tasks of `--harness-val`, sorted by id; refused (ConfigError naming the
    clashes) when any shares an id, its content or a mutation site with the training tasks
    (`val_overlap`). Held-out splits are welcome here (`harness generate --split heldout` /
    `heldout_mutations`): that is what they are for."""
    from hillclimb.harness.task import find_task_dirs, load_task

    root = Path(root)
    try:
        tasks = sorted((load_task(d) for d in find_task_dirs(root)), key=lambda t: t.id)
    except HillclimbError as exc:
        raise ConfigError(f"--harness-val {root}: {exc}") from None
    dup = sorted({t.id for t in tasks if [u.id for u in tasks].count(t.id) > 1})
    if dup:
        raise ConfigError(f"--harness-val {root}: task ids {dup} appear more than once")
    clash = val_overlap(train, tasks)
    if clash:
        more = f" (and {len(clash) - 3} more)" if len(clash) > 3 else ""
        raise ConfigError(
            f"--harness-val {root}: {len(clash)} of {len(tasks)} val task(s) are not held out "
            f"from --harness: {'; '.join(clash[:3])}{more}; generate val tasks with "
            "`harness generate --split heldout_mutations` (or `heldout`)"
        )
    return tasks


def val_point(
    engine: Any,
    tasks: list[Any],
    limits: Any,
    seed: int,
    concurrency: int,
    info: Any,
    guided: bool = True,
) -> dict[str, Any]:
    """One point of the held-out curve: one greedy episode per val task on the trainer's engine
    (the same `EpisodeLimits` as the rollouts, temperature 0), graded, scored with
    `episode_reward` whatever `--reward` trains on (so points of runs with other rewards compare).
    Rank r runs tasks r, r + world, ...; every rank gets the whole point. Nothing here touches
    the curriculum or a batch: val episodes never train."""
    import time
    from dataclasses import replace

    from hillclimb.rl.grpo import gather_groups
    from hillclimb.stats import wilson_ci

    t0 = time.perf_counter()
    engine.sync_weights()  # after an update: measure the weights just trained
    # seeded by the task alone: every point runs the same episodes but for the weights
    jobs = [(t, derive_seed("rl-harness-val", seed, t.id) >> 33) for t in tasks]
    mine = [j for i, j in enumerate(jobs) if i % info.world == info.rank]
    eps = run_group_episodes(
        engine, mine, replace(limits, temperature=0.0), concurrency, guided=guided
    )
    eps, rewards = gather_groups(info, eps, [episode_reward(e) for e in eps], len(tasks), 1)
    n, k = len(eps), sum(bool(e.resolved) for e in eps)
    lo, hi = wilson_ci(k, n)
    pools: dict[str, dict[str, Any]] = {}
    status: dict[str, int] = {}
    for t, e, r in zip(tasks, eps, rewards, strict=True):
        kind, d = pool_key(t)
        p = pools.setdefault(f"{kind}/{d or 'unknown'}", {"n": 0, "resolved": 0, "reward": 0.0})
        p["n"] += 1
        p["resolved"] += int(bool(e.resolved))
        p["reward"] += r
        status[str(e.exit_status)] = status.get(str(e.exit_status), 0) + 1
    for p in pools.values():
        p["mean_reward"] = p.pop("reward") / p["n"]
    return {
        "tasks": n,
        "resolved": k,
        "resolve_rate": k / n,
        "ci95": [lo, hi],
        "mean_reward": sum(rewards) / n,
        "completion_tokens": sum(e.completion_tokens for e in eps),
        "pools": dict(sorted(pools.items())),
        "exit_status": dict(sorted(status.items())),
        "wall_s": time.perf_counter() - t0,  # this rank's: episodes, grading and the gather
    }


def logged_val_steps(out: Path) -> set[int]:
    """Steps with a held-out point already in `out`'s curve.jsonl (a resumed run that stopped
    after its last point must not record the same numbers twice)."""
    from hillclimb.train.logging import read_jsonl

    return {
        r.get("step")
        for r in read_jsonl(out / "curve.jsonl")
        if isinstance(r, dict) and VAL_KEY in r
    }


class HarnessVal:
    """The held-out curve of a harness run: a `val_point` at step 0, every `every` steps
    (0: only the ends) and at the last step, each recorded once in curve.jsonl as
    `{"step", "split": "harness_val", "harness_val": {...}}` (the single-turn curve's file,
    beside its `cells` records; `rl.json` gathers them under `harness_val`)."""

    def __init__(self, tasks: list[Any], every: int, limits: Any, cfg: Any, info: Any):
        self.tasks, self.every, self.limits, self.cfg, self.info = tasks, every, limits, cfg, info
        self.last: int | None = None  # the step of the last point measured in this process

    def measure(self, tr: Any, engine: Any, step: int, logged: Collection[int] = ()) -> None:
        """Measure and record the point of `step`, unless it was measured (here, or logged
        before a resume)."""
        if self.last == step or step in logged:
            self.last = step
            return
        rec = val_point(
            engine, self.tasks, self.limits, self.cfg.seed, self.cfg.harness_concurrency,
            self.info, guided=self.cfg.harness_guided_tools,
        )  # fmt: skip
        self.last = step
        lo, hi = rec["ci95"]
        tr.log.record(
            "curve.jsonl",
            {"step": step, "split": VAL_KEY, VAL_KEY: rec},
            line=f"step {step} harness val resolve rate {rec['resolve_rate']:.1%} "
            f"[{lo:.0%}, {hi:.0%}] ({rec['resolved']}/{rec['tasks']} tasks, greedy), "
            f"mean reward {rec['mean_reward']:.3f}",
        )

    def due(self, step: int, last_step: int) -> bool:
        """Whether a point falls after `step` (between the ends: the ends are always measured)."""
        return bool(self.every) and step % self.every == 0 and step < last_step
