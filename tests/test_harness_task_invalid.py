"""A task whose untouched repository already grades resolved is not scored (`task_invalid`):
a model that did nothing used to score it as resolved (`harness run`, `eval --suite harness`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hillclimb.harness.agent import EpisodeLimits
from hillclimb.harness.clients import ScriptedClient
from hillclimb.harness.patching import apply_patch
from hillclimb.harness.task_runner import run_tasks

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"
SUBMIT = {"name": "submit", "arguments": {}}


@pytest.fixture
def tasks(tmp_path) -> Path:
    root = tmp_path / "tasks"
    shutil.copytree(TINY, root / "open")
    solved = root / "solved"
    shutil.copytree(TINY, solved)
    assert apply_patch(solved / "repo", (TINY / "solution.patch").read_text()).ok
    toml = (solved / "task.toml").read_text().replace('"tiny-bugfix"', '"tiny-bugfix-solved"')
    (solved / "task.toml").write_text(toml)
    return root


def _run(tasks: Path, out: Path, **kw):
    return run_tasks(tasks, lambda: ScriptedClient([SUBMIT]), out, EpisodeLimits(), **kw)


def test_a_task_solved_untouched_is_invalid_and_left_out_of_the_rate(tasks, tmp_path):
    rep = _run(tasks, tmp_path / "run")
    rows = {r["task_id"]: r for r in rep.rows}
    assert rows["tiny-bugfix-solved"]["exit_status"] == "task_invalid"
    assert not rows["tiny-bugfix-solved"]["resolved"]
    assert "untouched repository already grades resolved" in rows["tiny-bugfix-solved"]["error"]
    assert rows["tiny-bugfix"]["exit_status"] == "submitted" and not rows["tiny-bugfix"]["resolved"]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["tasks"] == 2 and s["invalid"] == 1 and s["resolve_rate"] == 0.0
    assert s["errors"] == 0 and s["by_kind"]["bugfix"]["tasks"] == 1
    traj = json.loads((tmp_path / "run" / "trajectories" / "tiny-bugfix-solved.json").read_text())
    assert traj["untouched_grade"]["resolved"] and traj["model"] == "scripted"


def test_without_the_check_doing_nothing_scores_the_solved_task(tasks, tmp_path):
    rep = _run(tasks, tmp_path / "run", check_tasks=False)
    rows = {r["task_id"]: r for r in rep.rows}
    assert rows["tiny-bugfix-solved"]["resolved"]  # what the check exists for
    assert rep.summary["invalid"] == 0 and rep.summary["resolve_rate"] == 0.5


def test_an_invalid_task_is_checked_again_on_resume(tasks, tmp_path):
    """Like a task error, `task_invalid` is retried: the task may have been fixed since."""
    _run(tasks, tmp_path / "run")
    shutil.rmtree(tasks / "solved" / "repo")
    shutil.copytree(TINY / "repo", tasks / "solved" / "repo")  # the bug is back: a real task
    rep = _run(tasks, tmp_path / "run")
    assert rep.skipped == 1
    rows = {r["task_id"]: r for r in rep.rows}
    assert rows["tiny-bugfix-solved"]["exit_status"] == "submitted"
    assert rep.summary["invalid"] == 0


def test_the_harness_suite_leaves_invalid_tasks_out_and_lists_them(tasks, monkeypatch):
    from hillclimb.errors import HillclimbError
    from hillclimb.eval import harness_suite as HS
    from hillclimb.eval.suite_common import SuiteConfig
    from hillclimb.eval.suites import run_suite

    monkeypatch.setattr(
        HS, "_client_factory", lambda backend, *_: (lambda: ScriptedClient([SUBMIT]), None)
    )

    class NoModel:
        kind, name = "scripted", "scripted"

        def close(self) -> None:
            pass

    res = run_suite("harness", "scripted", SuiteConfig(tasks=[str(tasks)]), backend=NoModel())
    assert res["invalid_tasks"] == ["tiny-bugfix-solved"] and res["n_items"] == 1
    assert res["metrics"]["resolve_rate"]["value"] == 0.0  # not 0.5: doing nothing scores 0
    shutil.rmtree(tasks / "open")
    with pytest.raises(HillclimbError, match="every task .1. already grades resolved"):
        run_suite("harness", "scripted", SuiteConfig(tasks=[str(tasks)]), backend=NoModel())
