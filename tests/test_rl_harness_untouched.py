"""`rl --harness`: a task whose untouched repository already grades resolved is left out of
training (an episode that changes nothing would earn the full reward), as `harness run` leaves
it out of resolve rates; `--no-check-tasks` keeps it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from hillclimb.errors import ConfigError
from hillclimb.harness.patching import apply_patch
from hillclimb.rl.harness import drop_resolved_untouched, load_tasks
from hillclimb.train.distributed import DistInfo

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"


def _solved_copy(dst: Path, task_id: str) -> None:
    shutil.copytree(TINY, dst)
    assert apply_patch(dst / "repo", (TINY / "solution.patch").read_text()).ok
    toml = (dst / "task.toml").read_text().replace('"tiny-bugfix"', f'"{task_id}"')
    (dst / "task.toml").write_text(toml)


@pytest.fixture
def tasks(tmp_path) -> Path:
    root = tmp_path / "tasks"
    shutil.copytree(TINY, root / "open")
    _solved_copy(root / "solved", "tiny-bugfix-solved")
    return root


def test_tasks_resolved_untouched_are_left_out(tasks):
    keep, dropped = drop_resolved_untouched(load_tasks(tasks), DistInfo())
    assert [t.id for t in keep] == ["tiny-bugfix"]
    assert dropped == ["tiny-bugfix-solved"]


def test_all_tasks_resolved_untouched_is_an_error(tmp_path):
    _solved_copy(tmp_path / "tasks" / "a", "solved-a")
    _solved_copy(tmp_path / "tasks" / "b", "solved-b")
    with pytest.raises(ConfigError, match="all 2 task.*untouched.*--no-check-tasks"):
        drop_resolved_untouched(load_tasks(tmp_path / "tasks"), DistInfo())


def _rl(tasks: Path, out: Path, tmp_path: Path, **kw) -> dict:
    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.rl.config import RLConfig
    from hillclimb.rl.train import run_rl
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    init = tmp_path / "init"
    if not init.exists():
        cfg = dataclasses.replace(get_preset("code-flash-micro"), max_seq_len=4096)
        save_checkpoint(build_model(cfg, seed=0), init, bytelevel_tokenizer())
    rl = RLConfig(
        init=str(init), out=str(out), harness=str(tasks), steps=1, prompts_per_step=1,
        group_size=2, max_tokens=8, harness_max_steps=1, harness_concurrency=2, lr=1e-3,
        warmup_steps=0, eval_every=0, overlong="none", tensorboard=False, threads=1, seed=0,
        pareto_budgets=[], **kw,
    )  # fmt: skip
    run_rl(rl, reward_fn=lambda ep: float(ep.resolved))
    return json.loads((out / "rl.json").read_text())


def test_rl_trains_only_on_tasks_that_need_work(tasks, tmp_path):
    s = _rl(tasks, tmp_path / "run", tmp_path)
    assert s["invalid_tasks"] == ["tiny-bugfix-solved"]
    assert list(s["curriculum"]["task_rate"]) == ["tiny-bugfix"]  # the only task drawn


def test_no_check_tasks_keeps_them(tasks, tmp_path):
    s = _rl(tasks, tmp_path / "run", tmp_path, check_tasks=False)
    assert s["invalid_tasks"] == []
    assert s["config"]["check_tasks"] is False
