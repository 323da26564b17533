"""Session 26 (issue 13 §3): harness RL's held-out curve (`--harness-val`) and task difficulty.

- A generated task records `meta.difficulty` (from the reference fix's size and the search
  scope, `taskgen.common.task_difficulty`); task dirs without it still load (difficulty None),
  a misspelt level is refused.
- `TaskCurriculum` pools untried tasks by (kind, difficulty) where known.
- `--harness-val DIR` runs one greedy episode per val task on the trainer's engine at step 0,
  every `--harness-val-every` steps and at the end, and records resolve rate, Wilson CI and
  mean reward in curve.jsonl / rl.json; a val set sharing a task id, a task's content or a
  mutation site with the training tasks is refused; val episodes never reach the curriculum.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from hillclimb.errors import ConfigError, HillclimbError

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"


def _copy_task(dst: Path, task_id: str, meta: str = "") -> Path:
    """A copy of the fixture task under another id, with extra `[meta]` lines."""
    shutil.copytree(TINY, dst)
    toml = (dst / "task.toml").read_text().replace('"tiny-bugfix"', f'"{task_id}"')
    (dst / "task.toml").write_text(toml + (f"\n[meta]\n{meta}\n" if meta else ""))
    return dst


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """Real generated tasks: 2 training bugfix/feature tasks, 2 held-out-site bugfix tasks."""
    from hillclimb.harness.taskgen.generate import generate_tasks

    root = tmp_path_factory.mktemp("gen")
    kw = {"multi_project_prob": 0.0}
    generate_tasks(root / "train", 2, seed=3, kinds=["bugfix", "feature"], split="train", **kw)
    generate_tasks(root / "val", 2, seed=4, kinds=["bugfix"], split="heldout_mutations", **kw)
    return {k: root / k for k in ("train", "val")}


# ---- difficulty -------------------------------------------------------------------------------


def test_difficulty_levels_follow_fix_size_and_scope():
    from hillclimb.harness.taskgen.common import fix_lines, task_difficulty

    one = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"
    body = "--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,10 @@\n-    raise NotImplementedError\n" + "".join(
        f"+    x{i} = {i}\n" for i in range(10)
    )
    assert fix_lines(one) == 1 and fix_lines(body) == 10
    assert fix_lines(None, "# comment\nsort a | uniq > b\n\nwc -l b\n") == 2
    assert fix_lines(None) == 0
    assert task_difficulty(1, False) == "easy"
    assert task_difficulty(5, False) == "medium"
    assert task_difficulty(10, False) == "hard"
    assert task_difficulty(1, True) == "medium"  # a second project to search: one level up
    assert task_difficulty(10, True) == "hard"  # capped


def test_generated_tasks_record_difficulty(generated):
    from hillclimb.harness.task import DIFFICULTIES, find_task_dirs, load_task
    from hillclimb.harness.taskgen.common import fix_lines, task_difficulty

    tasks = [load_task(d) for d in find_task_dirs(generated["train"])]
    manifest = json.loads((generated["train"] / "manifest.json").read_text())
    assert len(tasks) == 2
    for t in tasks:
        assert t.difficulty in DIFFICULTIES
        patch = t.solution_patch.read_text()
        assert t.meta["fix_lines"] == fix_lines(patch) >= 1
        assert t.difficulty == task_difficulty(t.meta["fix_lines"], t.meta["multi_project"])
    assert {m["id"]: m["difficulty"] for m in manifest["tasks"]} == {
        t.id: t.difficulty for t in tasks
    }


def test_old_task_dirs_load_without_difficulty_and_bad_levels_are_refused(tmp_path):
    from hillclimb.harness.task import load_task

    assert load_task(TINY).difficulty is None  # written before the field existed
    t = load_task(_copy_task(tmp_path / "ok", "ok", 'difficulty = "hard"'))
    assert t.difficulty == "hard"
    with pytest.raises(HillclimbError, match="meta.difficulty must be one of"):
        load_task(_copy_task(tmp_path / "bad", "bad", 'difficulty = "Hard"'))


def test_curriculum_pools_untried_tasks_by_kind_and_difficulty(tmp_path):
    from hillclimb.harness.task import load_task
    from hillclimb.rl.harness import TaskCurriculum

    def task(name: str, level: str | None) -> object:
        meta = f'difficulty = "{level}"' if level else ""
        return load_task(_copy_task(tmp_path / name, name, meta))

    easy_a, easy_b = task("easy-a", "easy"), task("easy-b", "easy")
    hard_a, hard_b = task("hard-a", "hard"), task("hard-b", "hard")
    old = task("old", None)
    cur = TaskCurriculum([easy_a, easy_b, hard_a, hard_b, old], seed=0)
    cur.observe(easy_a, 0.9)
    cur.observe(hard_a, 0.1)
    # an untried task takes its own pool's rate, not the mean of every bugfix (0.5)
    assert cur.estimate(easy_b) == pytest.approx(0.9)
    assert cur.estimate(hard_b) == pytest.approx(0.1)
    # no difficulty recorded: the kind's pooled rate, as before
    assert cur.estimate(old) == pytest.approx(0.5)
    pools = cur.pools()
    assert pools["bugfix/easy"] == {"tasks": 2, "tried": 1, "mean_rate": pytest.approx(0.9)}
    assert pools["bugfix/unknown"] == {"tasks": 1, "tried": 0, "mean_rate": None}
    # a pool with no tried task falls back to its kind
    medium = task("medium", "medium")
    cur2 = TaskCurriculum([easy_a, medium], seed=0)
    cur2.observe(easy_a, 0.8)
    assert cur2.estimate(medium) == pytest.approx(0.8)


# ---- the val set is held out -------------------------------------------------------------------


def test_val_sharing_id_content_or_site_is_refused(generated, tmp_path):
    from hillclimb.rl.harness import load_tasks, load_val_tasks

    train = load_tasks(generated["train"])
    # disjoint (held-out mutation sites of the training projects): accepted
    assert len(load_val_tasks(generated["val"], train)) == 2
    # the training tasks themselves
    with pytest.raises(ConfigError, match="same task id"):
        load_val_tasks(generated["train"], train)
    bug = next(t for t in train if t.kind == "bugfix")

    def renamed(where: str) -> Path:
        d = tmp_path / where / "x"
        shutil.copytree(bug.root, d)
        toml = (d / "task.toml").read_text().replace(f'"{bug.id}"', '"renamed"')
        (d / "task.toml").write_text(toml)
        return d

    # the same task under another id (a copied task dir)
    renamed("copy")
    with pytest.raises(ConfigError, match="1 of 1 val task.*the same task as training task"):
        load_val_tasks(tmp_path / "copy", train)
    # another fix of the same mutation site (module, function, line)
    d = renamed("site")
    (d / "solution.patch").write_text((bug.root / "solution.patch").read_text() + "\n")
    with pytest.raises(ConfigError, match="mutates the site of training task"):
        load_val_tasks(tmp_path / "site", train)


def test_harness_val_settings_are_checked():
    from hillclimb.rl.config import RLConfig

    with pytest.raises(ConfigError, match="harness_val is the held-out curve of harness RL"):
        RLConfig(harness_val="x")
    with pytest.raises(ConfigError, match="harness_val_every must be >= 0"):
        RLConfig(harness="x", harness_val="y", harness_val_every=-1)
    cfg = RLConfig.from_dict(
        {"harness": "x", "harness_val": "y", "harness_val_every": 3, "eval_every": 0}
    )
    assert (cfg.harness_val, cfg.harness_val_every) == ("y", 3)


def test_cli_flags_reach_the_config():
    from hillclimb.cli import build_parser

    args = build_parser().parse_args(
        ["rl", "--harness", "t", "--harness-val", "v", "--harness-val-every", "4"]
    )
    assert (args.harness_val, args.harness_val_every) == ("v", 4)


# ---- the curve in a run ---------------------------------------------------------------------------


def _init(tmp_path: Path) -> Path:
    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    init = tmp_path / "init"
    cfg = dataclasses.replace(get_preset("code-flash-micro"), max_seq_len=4096)
    save_checkpoint(build_model(cfg, seed=0), init, bytelevel_tokenizer())
    return init


def _rl(init: Path, out: Path, train: Path, val: Path, **kw) -> dict:
    from hillclimb.rl.config import RLConfig
    from hillclimb.rl.train import run_rl

    rl = RLConfig(
        init=str(init), out=str(out), harness=str(train), harness_val=str(val), steps=2,
        prompts_per_step=1, group_size=2, max_tokens=8, harness_max_steps=1,
        harness_concurrency=2, lr=1e-3, warmup_steps=0, eval_every=0, overlong="none",
        tensorboard=False, threads=1, seed=0, pareto_budgets=[], dynamic_sampling=False, **kw,
    )  # fmt: skip
    run_rl(rl, reward_fn=lambda ep: float(ep.resolved))
    return json.loads((out / "rl.json").read_text())


def test_held_out_curve_at_start_every_k_and_end(generated, tmp_path, monkeypatch):
    from hillclimb.serve import engine as engine_mod
    from hillclimb.stats import wilson_ci

    made = []
    real_init = engine_mod.Engine.__init__

    def counting_init(self, *a, **k):  # the val episodes must reuse the trainer's engine
        made.append(self)
        real_init(self, *a, **k)

    monkeypatch.setattr(engine_mod.Engine, "__init__", counting_init)
    train = tmp_path / "train"
    shutil.copytree(TINY, train / "tiny")
    init = _init(tmp_path)
    s = _rl(init, tmp_path / "run", train, generated["val"], harness_val_every=1)
    assert len(made) == 1
    recs = [
        json.loads(ln)
        for ln in (tmp_path / "run" / "curve.jsonl").read_text().splitlines()
        if "harness_val" in ln
    ]
    assert [r["step"] for r in recs] == [0, 1, 2]  # start, every step, end (not twice)
    val_ids = sorted(p.name for p in generated["val"].iterdir() if p.is_dir())
    for r in recs:
        v = r["harness_val"]
        assert r["split"] == "harness_val" and v["tasks"] == len(val_ids) == 2
        assert v["resolve_rate"] == v["resolved"] / 2
        assert v["ci95"] == pytest.approx(list(wilson_ci(v["resolved"], 2)))
        assert -0.5 <= v["mean_reward"] <= 1.0
        assert sum(v["exit_status"].values()) == 2
        assert sum(p["n"] for p in v["pools"].values()) == 2
    assert [p["step"] for p in s["harness_val"]] == [0, 1, 2]
    # val episodes never feed the curriculum or the step's episode count
    assert list(s["curriculum"]["task_rate"]) == ["tiny-bugfix"]
    steps = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [st["harness"]["episodes"] for st in steps if "harness" in st] == [2, 2]
    rate = s["curriculum"]["task_rate"]["tiny-bugfix"]
    assert s["curriculum_pools"] == {"bugfix/unknown": {"tasks": 1, "tried": 1, "mean_rate": rate}}

    # K = 0: the two ends only; a val set holding a training task: refused before any step
    s0 = _rl(init, tmp_path / "run0", train, generated["val"], harness_val_every=0)
    assert [p["step"] for p in s0["harness_val"]] == [0, 2]
    with pytest.raises(ConfigError, match="same task id"):
        _rl(init, tmp_path / "run_bad", train, train)
    assert not (tmp_path / "run_bad" / "metrics.jsonl").exists()


def test_recipe_rl_table_takes_the_val_settings(tmp_path):
    from hillclimb.rl.cli import recipe_rl_settings

    f = tmp_path / "mine.toml"
    f.write_text(
        '[climb]\nseed = 3\n[data]\nseed = 0\n[[data.sources]]\nkind = "generators"\n'
        'per_tier = 2\ntiers = [1]\n[models.code-flash]\npreset = "code-flash-micro"\n'
        '[rl]\nsteps = 2\n[rl.code-flash]\nharness = "t"\nharness_val = "v"\n'
        "harness_val_every = 2\neval_every = 0\npareto_budgets = []\n"
    )
    got = recipe_rl_settings(str(f), "code-flash")
    assert (got["harness_val"], got["harness_val_every"]) == ("v", 2)
    f.write_text(f.read_text().replace('harness = "t"\n', ""))
    with pytest.raises(ConfigError, match="harness_val is the held-out curve"):
        recipe_rl_settings(str(f), "code-flash")
