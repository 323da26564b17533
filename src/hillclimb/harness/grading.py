"""Grade a task: apply a patch (or take an agent's workspace), add hidden tests, run, decide.

Rules, per kind (SWE-bench for the test-based ones):

- bugfix / feature: resolved ⇔ every FAIL_TO_PASS test passes and every PASS_TO_PASS test passes
  (passed or xfailed; a test missing from the output counts as failed).
- refactor: the structural checks hold on the submitted code (checked *before* hidden tests are
  copied in, so they judge the agent's code only) and the tests stay green (per-test rule when the
  task lists tests, else the test command must exit 0).
- repo_qa: the normalised answer equals one of the accepted answers; no code runs.
- terminal: the verifier (`test_command`, usually `python tests/verify.py`) exits 0 on the
  workspace the agent's commands left behind.

Grading always works on a private copy (a fresh copy of `repo/` plus the patch, or a copy of the
agent's workspace), so nothing the grader does leaks into the task or the episode, and the test
command runs in the sandbox. Every failure mode is a *result* (`patch_failed`, `test_error`,
`timeout`, ...), never an exception, so one bad submission cannot stop a run.
"""

from __future__ import annotations

import re
import tempfile
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.harness.execution import run_command
from hillclimb.harness.patching import apply_patch, copy_tree
from hillclimb.harness.structural import run_check
from hillclimb.harness.task import Task
from hillclimb.harness.testparse import is_pass, parse_test_output

OUTPUT_TAIL = 4000


@dataclass
class GradeResult:
    task_id: str
    kind: str
    resolved: bool
    status: str  # resolved | unresolved | patch_failed | test_error | timeout | no_answer | error
    message: str = ""
    fail_to_pass: dict[str, list[str]] = field(default_factory=lambda: {"passed": [], "failed": []})
    pass_to_pass: dict[str, list[str]] = field(default_factory=lambda: {"passed": [], "failed": []})
    tests: dict[str, str] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    answer: str | None = None
    sandbox: dict[str, Any] | None = None  # status, exit_code, duration_s, backend
    output_tail: str = ""
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reward(self) -> float:
        return 1.0 if self.resolved else 0.0


def normalize_answer(text: str) -> str:
    """Case-, space-, quote- and trailing-punctuation-insensitive form of a short answer."""
    s = unicodedata.normalize("NFKC", text).strip().lower()
    s = re.sub(r"\s+", " ", s)
    for _ in range(3):
        s = s.strip().strip("`'\"").rstrip(".!").strip()
    if s.endswith("()"):
        s = s[:-2]
    return s


def _split(ids: tuple[str, ...], outcomes: dict[str, str]) -> dict[str, list[str]]:
    return {
        "passed": [t for t in ids if is_pass(outcomes.get(t))],
        "failed": [t for t in ids if not is_pass(outcomes.get(t))],
    }


def grade_patch(
    task: Task, patch: str | None, *, answer: str | None = None, unsafe: bool = False
) -> GradeResult:
    """Grade `task.repo` with `patch` applied (None/empty: the untouched repo)."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"hc-grade-{task.id[:40]}-") as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        if patch and patch.strip():
            applied = apply_patch(ws, patch)
            if not applied.ok:
                return GradeResult(
                    task.id, task.kind, False, "patch_failed",
                    message=f"patch does not apply ({applied.tool}): {applied.message}",
                    duration_s=time.monotonic() - t0,
                )  # fmt: skip
        res = _grade_in_place(task, ws, answer=answer, unsafe=unsafe)
    res.duration_s = time.monotonic() - t0
    return res


def grade_workspace(
    task: Task, workspace: str | Path, *, answer: str | None = None, unsafe: bool = False
) -> GradeResult:
    """Grade an agent's final workspace (copied first; the original is left as it is)."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"hc-grade-{task.id[:40]}-") as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(Path(workspace), ws)
        res = _grade_in_place(task, ws, answer=answer, unsafe=unsafe)
    res.duration_s = time.monotonic() - t0
    return res


def _grade_in_place(task: Task, ws: Path, *, answer: str | None, unsafe: bool) -> GradeResult:
    if task.kind == "repo_qa":
        if answer is None or not answer.strip():
            return GradeResult(
                task.id, task.kind, False, "no_answer", message="no answer submitted"
            )
        got = normalize_answer(answer)
        ok = any(got == normalize_answer(a) for a in task.answers)
        return GradeResult(
            task.id, task.kind, ok, "resolved" if ok else "unresolved", answer=answer,
            message="" if ok else "answer does not match",
        )  # fmt: skip

    checks = [run_check(ws, c).to_json() for c in task.checks]

    if task.hidden_tests.is_dir():
        copy_tree(task.hidden_tests, ws / task.hidden_tests_dest)
    try:
        sb = run_command(
            task.test_command, ws, timeout_s=task.limits.test_timeout_s,
            memory_mb=task.limits.memory_mb, env=task.env, unsafe=unsafe,
        )  # fmt: skip
    except Exception as exc:  # the sandbox refused (no backend) or crashed: a result, not a crash
        return GradeResult(
            task.id, task.kind, False, "error", message=f"sandbox: {exc}", checks=checks
        )
    output = sb.stdout + ("\n" + sb.stderr if sb.stderr else "")
    outcomes = parse_test_output(output, task.language)
    res = GradeResult(
        task.id, task.kind, False, "unresolved", tests=outcomes, checks=checks, answer=answer,
        sandbox={"status": sb.status, "exit_code": sb.exit_code, "duration_s": round(sb.duration_s, 3), "backend": sb.backend},
        output_tail=output[-OUTPUT_TAIL:],
    )  # fmt: skip
    res.fail_to_pass = _split(task.fail_to_pass, outcomes)
    res.pass_to_pass = _split(task.pass_to_pass, outcomes)
    checks_ok = all(c["ok"] for c in checks)

    if sb.status == "timeout":
        res.status, res.message = (
            "timeout",
            f"test command timed out after {task.limits.test_timeout_s}s",
        )
        return res
    if sb.status == "refused":
        res.status, res.message = "error", "sandbox refused to run the test command"
        return res
    if sb.exit_code in (126, 127) and not outcomes:
        res.status = "test_error"
        res.message = f"test command not runnable (exit {sb.exit_code}): {sb.stderr.strip()[-300:]}"
        return res

    if task.fail_to_pass or task.pass_to_pass:
        if not outcomes:
            res.status = "test_error"
            res.message = f"no test outcomes in the output (exit {sb.exit_code}, {sb.status})"
            return res
        tests_ok = not res.fail_to_pass["failed"] and not res.pass_to_pass["failed"]
    else:
        tests_ok = sb.status == "ok"
    res.resolved = bool(tests_ok and checks_ok)
    res.status = "resolved" if res.resolved else "unresolved"
    if not res.resolved:
        why = []
        if res.fail_to_pass["failed"]:
            why.append(f"{len(res.fail_to_pass['failed'])} FAIL_TO_PASS failing")
        if res.pass_to_pass["failed"]:
            why.append(f"{len(res.pass_to_pass['failed'])} PASS_TO_PASS failing")
        if not (task.fail_to_pass or task.pass_to_pass) and sb.status != "ok":
            why.append(f"command exited {sb.exit_code}")
        why += [f"check failed: {c['check']} ({c['detail']})" for c in checks if not c["ok"]]
        res.message = "; ".join(why)
    return res
