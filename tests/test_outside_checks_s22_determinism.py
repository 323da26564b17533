"""Outside checks (session 22, determinism): reruns with the same seed, and what must not change
them. Each test failed on the code before its fix."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"


def test_a_harness_task_drawn_twice_in_a_step_gets_fresh_episodes(tmp_path):
    """`rl --harness` draws a step's tasks with replacement; each episode was seeded by (seed,
    step, round, task id, i), so a task drawn twice got the same seeds for its second group and
    the engine replayed the first group token for token: an exact copy, counted twice in the
    update and bringing no new information (the problem collector seeds repeats apart,
    rl.rollout). With one task and two prompts per step, every step draws it twice."""
    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.rl.config import RLConfig
    from hillclimb.rl.train import run_rl
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    shutil.copytree(TINY, tmp_path / "tasks" / "only")
    init = tmp_path / "init"
    cfg = dataclasses.replace(get_preset("code-flash-micro"), max_seq_len=4096)
    save_checkpoint(build_model(cfg, seed=0), init, bytelevel_tokenizer())
    seen: list[str] = []

    def reward(ep) -> float:  # noqa: ANN001 - a harness reward gets the graded Episode
        seen.append(repr([m.get("content") for m in ep.messages if m.get("role") == "assistant"]))
        return 0.0

    rl = RLConfig(
        init=str(init), out=str(tmp_path / "run"), harness=str(tmp_path / "tasks"), steps=1,
        prompts_per_step=2, group_size=2, max_tokens=12, harness_max_steps=1,
        harness_concurrency=2, lr=1e-3, warmup_steps=0, eval_every=0, overlong="none",
        tensorboard=False, threads=1, seed=0, pareto_budgets=[], check_tasks=False,
        dynamic_sampling=False,
    )  # fmt: skip
    run_rl(rl, reward_fn=reward)
    assert len(seen) == 4, seen  # two groups of two episodes on the one task
    assert seen[:2] != seen[2:], "the second group replayed the first"
    assert len(set(seen)) == 4, seen  # four sampled episodes, none a copy of another
