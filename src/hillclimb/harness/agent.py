"""The episode runner: one task, one model, the tool loop, the grade.

`run_episode(task, client, limits, telemetry) -> Episode` is the library entry point shared by
evaluation (`hillclimb harness run`) and RL rollouts: it copies `repo/` to a private workspace,
converses with the model through the tools until it submits or a limit hits (steps, tokens, wall
time, consecutive malformed turns), then grades the workspace and returns the whole trajectory
with the facts a reward needs (resolved, tokens, steps, exit status).

Why the loop never raises for model or task trouble: a run over hundreds of tasks (or an RL
batch) must survive a model that emits garbage or an endpoint that dies; each such episode ends
with a clear `exit_status` and `error`, and is still graded on whatever it left behind.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hillclimb.harness.clients import ContextExhausted, ModelClient, ModelError
from hillclimb.harness.grading import GradeResult, grade_workspace
from hillclimb.harness.patching import copy_tree, diff_trees
from hillclimb.harness.task import Task
from hillclimb.harness.tools import (
    SURROGATE_HINT,
    TOOL_NAMES,
    TOOL_SCHEMAS,
    ToolBox,
    has_surrogate,
    observation_chars,
    utf8_text,
)
from hillclimb.sandbox.fs import remove_tree
from hillclimb.tokenizer.toolcalls import ToolCall, assistant_message, tool_message


class EpisodeRecorder(Protocol):
    """What the runner tells a recorder (`harness.telemetry.Telemetry` is the one we have).

    A protocol rather than an import: telemetry stores `Episode`s, so it sits above this module;
    the runner only needs these three calls (issue 16: no import cycle agent <-> telemetry).
    """

    def start_episode(self, ep: Episode, source: str = "harness") -> None: ...

    def finish_episode(self, ep: Episode) -> None: ...

    def record_edit(
        self,
        *,
        episode_id: str | None,
        task_id: str | None,
        model: str,
        tool: str,
        path: str,
        status: str,
        error: str | None = None,
        turn: int | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        arguments: dict[str, Any] | None = None,
    ) -> int: ...


SYSTEM_PROMPT = (
    "You are a coding agent working in a software repository. The repository root is the current "
    "directory for every tool. Inspect the code with the tools, make the changes the task asks "
    "for, run the tests to check your work, then call `submit`. Make minimal, correct changes."
)

EXIT_STATUSES = (
    "submitted", "max_steps", "max_tokens", "timeout", "format_error", "model_error", "error",
    "context_exhausted",
)  # fmt: skip


@dataclass(frozen=True)
class EpisodeLimits:
    max_steps: int = 30  # model turns
    # completion tokens asked for per turn; None: what the model's context leaves (a local
    # checkpoint: its context minus the conversation; an endpoint: its own default/cap)
    max_tokens_per_turn: int | None = None
    max_total_tokens: int = 200_000  # prompt + completion summed over turns (what an API bills)
    wall_s: float = 900.0
    max_consecutive_errors: int = 3  # malformed turns in a row before giving up
    temperature: float = 0.0
    seed: int | None = 0
    run_timeout_s: float | None = None  # cap for the `run` tool (None: task limit)
    unsafe: bool = False  # pass through to the sandbox (no isolation available)

    def for_task(self, task: Task) -> EpisodeLimits:
        """The tighter of these limits and the task's own."""
        from dataclasses import replace

        return replace(
            self,
            max_steps=min(self.max_steps, task.limits.max_steps),
            max_total_tokens=min(self.max_total_tokens, task.limits.max_tokens),
            wall_s=min(self.wall_s, task.limits.wall_s),
        )


@dataclass
class Episode:
    episode_id: str
    task_id: str
    task_kind: str
    task_dir: str
    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    turns: int = 0
    malformed_turns: int = 0
    exit_status: str = "error"
    error: str | None = None
    answer: str | None = None
    patch: str = ""
    changed_files: list[str] = field(default_factory=list)
    grade: dict[str, Any] | None = None
    resolved: bool = False
    reward: float = 0.0
    started_at: float = 0.0
    wall_s: float = 0.0
    model_s: float = 0.0
    tool_s: float = 0.0
    grade_s: float = 0.0
    limits: dict[str, Any] = field(default_factory=dict)
    tools: list[str] = field(default_factory=lambda: list(TOOL_NAMES))
    # Token-faithful clients (LocalClient): the episode exactly as the model saw and wrote it —
    # every token id in order, `loss_mask` 1 where the model sampled the token (0: system, task,
    # tool observations, template markup, forced tokens), and each sampled token's log-prob
    # under the sampling distribution (0 elsewhere). `token_faithful` False: a later turn's
    # prompt did not extend the recorded ids (the client re-rendered), so they stop there.
    token_ids: list[int] | None = None
    loss_mask: list[int] | None = None
    token_logprobs: list[float] | None = None
    token_faithful: bool | None = None
    # [start, end) of each turn's sampled completion in `token_ids`, and whether its
    # `<tool_call>` bodies were decoded under the tools' schema (`serve.tool_grammar`): what a
    # trainer needs to rebuild the masks each token was drawn under (`rl.harness`)
    completion_spans: list[list[int]] | None = None
    guided_spans: list[bool] | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = "hillclimb-trajectory-v1"
        return d


def task_prompt(task: Task) -> str:
    if task.kind == "repo_qa":
        tail = "Answer the question by calling `submit` with `answer` set to a short answer."
    elif task.kind == "terminal":
        tail = "Use the `run` tool for shell commands. Call `submit` when the task is done."
    else:
        tail = "Edit the files in the repository; call `submit` when you are done."
    return f"{task.instruction.strip()}\n\n{tail}"


def run_episode(
    task: Task,
    client: ModelClient,
    limits: EpisodeLimits = EpisodeLimits(),
    telemetry: EpisodeRecorder | None = None,
    *,
    keep_workspace: str | Path | None = None,
) -> Episode:
    """Run one episode and grade it. Never raises for model/endpoint/tool trouble."""
    lim = limits.for_task(task)
    ep = Episode(
        episode_id=f"{task.id}-{uuid.uuid4().hex[:12]}",
        task_id=task.id, task_kind=task.kind, task_dir=str(task.root),
        model=getattr(client, "name", type(client).__name__),
        started_at=time.time(), limits=asdict(lim),
    )  # fmt: skip
    t_start = time.monotonic()
    if telemetry is not None:
        telemetry.start_episode(ep)
    tmp = Path(tempfile.mkdtemp(prefix="hc-episode-"))
    try:
        _play_and_grade(ep, task, client, lim, telemetry, t_start, tmp / "repo", keep_workspace)
    finally:  # also when interrupted (Ctrl-C): the workspace copy never outlives the episode
        remove_tree(str(tmp))  # no depth limit: a model's 1,000-level tree cannot crash it
    if telemetry is not None:
        telemetry.finish_episode(ep)
    return ep


def _play_and_grade(
    ep: Episode,
    task: Task,
    client: ModelClient,
    lim: EpisodeLimits,
    telemetry: EpisodeRecorder | None,
    t_start: float,
    ws: Path,
    keep_workspace: str | Path | None,
) -> None:
    """The tool loop in workspace `ws`, then the grade of what it left (run_episode's body)."""
    try:
        copy_tree(task.repo, ws)
        tools = ToolBox(
            ws, run_timeout_s=min(lim.run_timeout_s or task.limits.test_timeout_s, task.limits.test_timeout_s),
            memory_mb=task.limits.memory_mb, env=dict(task.env), unsafe=lim.unsafe,
            deadline=t_start + lim.wall_s,
            max_observation_chars=observation_chars(getattr(client, "context_tokens", None)),
        )  # fmt: skip
        ep.messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": task_prompt(task)},
        ]
        _loop(ep, task, client, lim, tools, telemetry, t_start)
    except Exception as exc:  # a harness bug must not kill a whole run; record it
        ep.exit_status, ep.error = "error", f"harness error: {type(exc).__name__}: {exc}"
    # Grade whatever the agent left behind (SWE-bench grades the final patch, whatever the exit).
    try:
        if ws.is_dir():
            d = diff_trees(task.repo, ws)
            ep.patch, ep.changed_files = d.patch, d.changed
            g0 = time.monotonic()
            grade = grade_workspace(task, ws, answer=ep.answer, unsafe=lim.unsafe)
            ep.grade_s = time.monotonic() - g0
        else:
            grade = GradeResult(task.id, task.kind, False, "error", message="no workspace")
    except Exception as exc:
        grade = GradeResult(task.id, task.kind, False, "error", message=f"grading failed: {exc}")
    ep.grade = grade.to_json()
    ep.resolved = grade.resolved
    ep.reward = grade.reward
    ep.wall_s = time.monotonic() - t_start
    if keep_workspace is not None:
        dest = Path(keep_workspace)
        remove_tree(str(dest))
        copy_tree(ws, dest)  # links as links; a model's FIFOs and sockets are left out


def _record_tokens(ep: Episode, result: Any) -> None:
    """Extend the episode's token transcript by this turn: the prompt tokens the model had not
    seen yet (tool observations, template markup; no loss) and the tokens it sampled."""
    p, c = result.prompt_ids, result.completion_ids
    if p is None or c is None or ep.token_faithful is False:
        return
    if ep.token_ids is None:
        ep.token_ids, ep.loss_mask, ep.token_logprobs = [], [], []
        ep.completion_spans, ep.guided_spans = [], []
        ep.token_faithful = True
    assert ep.loss_mask is not None and ep.token_logprobs is not None
    n = len(ep.token_ids)
    if p[:n] != ep.token_ids:
        ep.token_faithful = False
        return
    new = list(p[n:])
    ep.token_ids += new
    ep.loss_mask += [0] * len(new)
    ep.token_logprobs += [0.0] * len(new)
    lps = result.logprobs if result.logprobs is not None else [0.0] * len(c)
    forced = result.forced if result.forced is not None else [False] * len(c)
    assert ep.completion_spans is not None and ep.guided_spans is not None
    ep.completion_spans.append([len(ep.token_ids), len(ep.token_ids) + len(c)])
    ep.guided_spans.append(bool(getattr(result, "guided", False)))
    ep.token_ids += list(c)
    ep.loss_mask += [0 if f else 1 for f in forced]
    ep.token_logprobs += [float(x) for x in lps]


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return has_surrogate(value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _text_call(call: ToolCall) -> ToolCall:
    """`call`, or a malformed copy of it when its name or arguments hold a lone surrogate (a
    model's JSON spelling `\\ud800`): kept as it was, the conversation could no longer be
    tokenized, written as UTF-8 or sent, and the episode ended in a harness error."""
    if not (_has_surrogate(call.name) or _has_surrogate(call.raw_arguments)
            or _has_surrogate(call.arguments)):  # fmt: skip
        return call
    return ToolCall(
        call.id, utf8_text(call.name), None, utf8_text(call.raw_arguments),
        f"the call {SURROGATE_HINT}",
    )  # fmt: skip


def _loop(
    ep: Episode,
    task: Task,
    client: ModelClient,
    lim: EpisodeLimits,
    tools: ToolBox,
    telemetry: EpisodeRecorder | None,
    t_start: float,
) -> None:
    consecutive_bad = 0
    if hasattr(client, "deadline"):  # clients that can bound a request (OpenAIClient)
        client.deadline = t_start + lim.wall_s  # type: ignore[attr-defined]
    while True:
        if ep.turns >= lim.max_steps:
            ep.exit_status = "max_steps"
            return
        if ep.total_tokens >= lim.max_total_tokens:
            ep.exit_status = "max_tokens"
            return
        if time.monotonic() - t_start >= lim.wall_s:
            ep.exit_status = "timeout"
            return
        seed = None if lim.seed is None else lim.seed + ep.turns
        t0 = time.monotonic()
        try:
            result = client.chat(
                ep.messages, TOOL_SCHEMAS, max_tokens=lim.max_tokens_per_turn,
                temperature=lim.temperature, seed=seed,
            )  # fmt: skip
        except ContextExhausted as exc:
            ep.model_s += time.monotonic() - t0
            ep.exit_status, ep.error = "context_exhausted", str(exc)
            return
        except ModelError as exc:
            ep.model_s += time.monotonic() - t0
            # a request cut at the episode's deadline is the wall limit, not a failing service
            late = time.monotonic() - t_start >= lim.wall_s
            ep.exit_status, ep.error = ("timeout" if late else "model_error"), str(exc)
            return
        ep.model_s += time.monotonic() - t0
        _record_tokens(ep, result)
        ep.turns += 1
        ep.prompt_tokens += result.usage.prompt_tokens
        ep.completion_tokens += result.usage.completion_tokens
        calls = [_text_call(c) for c in result.tool_calls]
        reasoning = utf8_text(result.reasoning) if result.reasoning else result.reasoning
        ep.messages.append(assistant_message(utf8_text(result.content or ""), reasoning, calls))
        step: dict[str, Any] = {
            "turn": ep.turns,
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "model_s": round(time.monotonic() - t0, 4),
            "finish_reason": result.finish_reason,
            "calls": [],
        }
        ep.steps.append(step)

        valid_calls = 0
        done = False
        if not calls:
            ep.messages.append({
                "role": "user",
                "content": "Error: your reply contained no tool call. Call one of the tools "
                f"({', '.join(TOOL_NAMES)}); call `submit` when you are done.",
            })  # fmt: skip
            step["calls"].append({"name": None, "error": "no tool call", "malformed": True})
        for call in calls:
            rec: dict[str, Any] = {"id": call.id, "name": call.name, "arguments": call.arguments}
            if call.error or call.arguments is None:
                obs = f"Error: {call.error or 'malformed tool call'}. Expected " \
                      '{"name": <tool>, "arguments": {...}} with a JSON object of arguments.'  # fmt: skip
                rec.update(error=call.error, malformed=True, observation=obs)
                if call.name:
                    ep.messages.append(tool_message(call, obs))
                else:
                    ep.messages.append({"role": "user", "content": obs})
                step["calls"].append(rec)
                continue
            t1 = time.monotonic()
            out = tools.call(call.name, call.arguments)
            dt = time.monotonic() - t1
            ep.tool_s += dt
            rec.update(
                ok=out.ok, malformed=out.malformed, observation=out.observation, tool_s=round(dt, 4)
            )
            step["calls"].append(rec)
            ep.messages.append(tool_message(call, out.observation))
            if not out.malformed:
                valid_calls += 1
            if out.edit is not None:
                edit = dict(out.edit, turn=ep.turns, call_id=call.id)
                ep.edits.append(edit)
                if telemetry is not None:
                    edit["edit_id"] = telemetry.record_edit(
                        episode_id=ep.episode_id, task_id=task.id, model=ep.model, turn=ep.turns,
                        tool=edit["tool"], path=edit["path"], status=edit["status"], error=edit.get("error"),
                        prompt_tokens=result.usage.prompt_tokens, completion_tokens=result.usage.completion_tokens,
                        arguments=call.arguments,
                    )  # fmt: skip
            if out.done:
                ep.answer = out.answer
                done = True
                break
        if done:
            ep.exit_status = "submitted"
            return
        if valid_calls == 0:
            ep.malformed_turns += 1
            consecutive_bad += 1
            if consecutive_bad >= lim.max_consecutive_errors:
                ep.exit_status = "format_error"
                ep.error = f"{consecutive_bad} consecutive turns without a valid tool call"
                return
        else:
            consecutive_bad = 0
