"""`[rl_harness.<model>] flywheel`: a climb's harness RL stage trains on a telemetry export's
tasks (`rl_prompts.jsonl`: the ones the served model failed or users rejected), with the SFT
flywheel's rules — held-out tasks and tasks carrying held-out code refused, repeats once — a stage
hash that follows the export, and clear errors for a missing or damaged export."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from hillclimb.climb.climb_recipe import parse_recipe
from hillclimb.climb.runner import plan
from hillclimb.errors import ConfigError
from hillclimb.rl.harness import load_tasks

ROOT = Path(__file__).resolve().parent.parent
STAGE = "rl-harness-code-flash"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """Train tasks, a held-out task and a stage's own generated task (generation is the slow
    part: once per module)."""
    from hillclimb.harness.taskgen.generate import generate_tasks

    base = tmp_path_factory.mktemp("flyrl")
    generate_tasks(base / "train", 2, seed=5, kinds=["bugfix"], split="train")
    generate_tasks(base / "heldout", 1, seed=3, kinds=["bugfix"], split="heldout")
    generate_tasks(base / "stage" / "tasks", 1, seed=9, kinds=["bugfix"], split="train")
    return {"base": base}


def _dirs(root: Path) -> list[Path]:
    from hillclimb.harness.task import find_task_dirs

    return sorted(find_task_dirs(root))


def _export(dest: Path, task_dirs: list[Path]) -> Path:
    """A telemetry export as `telemetry export` lays it out: export.json, sft.jsonl (empty: no
    resolved episode) and one task reference per line of rl_prompts.jsonl."""
    dest.mkdir(parents=True)
    (dest / "export.json").write_text(json.dumps({"consent_attested_by": "test fixture"}))
    (dest / "sft.jsonl").write_text("")
    refs = [{"task_id": p.name, "kind": "bugfix", "task_dir": str(p)} for p in task_dirs]
    (dest / "rl_prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    return dest


def _recipe(tmp: Path, table: dict) -> object:
    raw = tomllib.loads((ROOT / "recipes" / "smoke.toml").read_text())
    raw["rl_harness"] = {"code-flash": table}
    return parse_recipe(raw, tmp / "recipe.toml")


def harness_tasks(*args: object) -> tuple[Path, dict]:
    """`runner.harness_tasks`, imported per test: each test fails alone on code without it."""
    from hillclimb.climb.runner import harness_tasks as tasks_for_stage

    return tasks_for_stage(*args)


def _stage(recipe: object) -> object:
    return next(s for s in plan(recipe) if s.key == STAGE)


def test_flywheel_tasks_join_the_rl_harness_stage(made, tmp_path) -> None:
    """The export's training tasks, and only those, reach the stage's task file: the held-out
    task and the repeated line are refused and counted; with `n_tasks = 0` they are the whole
    task set, with the default they join the generated ones."""
    train, held = _dirs(made["base"] / "train"), _dirs(made["base"] / "heldout")
    _export(tmp_path / "exp", [train[0], held[0], train[1], train[0]])
    r = _recipe(tmp_path, {"flywheel": ["exp"], "n_tasks": 0, "steps": 1})
    spec = r.rl_harness["code-flash"]
    assert spec["flywheel"] == [str((tmp_path / "exp").resolve())]  # relative to the recipe
    d = tmp_path / "stage0"
    d.mkdir()
    harness, info = harness_tasks(spec, d, None, STAGE)
    want = sorted(p.name for p in train)
    assert [t.id for t in load_tasks(harness)] == want  # what `run_rl` trains on
    assert info["tasks"] == 2 and info["flywheel_tasks"] == 2
    assert info["flywheel"]["task_ids"] == want
    assert info["flywheel"]["refused"] == {"evaluation_only_task": 1, "duplicate": 1}

    # mixed: the stage's own generated task (already there: no generation here) + the export's
    stage = made["base"] / "stage"
    r2 = _recipe(tmp_path, {"flywheel": ["exp"], "n_tasks": 1, "task_seed": 9, "steps": 1})
    harness, info = harness_tasks(r2.rl_harness["code-flash"], stage, None, STAGE)
    own = [p.name for p in _dirs(stage / "tasks")]
    assert sorted(t.id for t in load_tasks(harness)) == sorted(own + want)
    assert info["tasks"] == 3 and info["flywheel_tasks"] == 2
    # without `flywheel`: the generated directory itself, as before the key existed
    r3 = _recipe(tmp_path, {"n_tasks": 1, "task_seed": 9, "steps": 1})
    assert harness_tasks(r3.rl_harness["code-flash"], stage, None, STAGE) == (
        stage / "tasks",
        {"tasks": 1},
    )


def test_stage_hash_follows_the_export(made, tmp_path) -> None:
    """A changed export re-runs the stage (resume correctness); without `flywheel` the stage's
    section is what it was before the key existed (finished climbs' hashes stay valid)."""
    train = _dirs(made["base"] / "train")
    exp = _export(tmp_path / "exp", train[:1])
    plain = _stage(_recipe(tmp_path, {"steps": 1}))
    assert set(plain.section) == {"rl_harness"} and "flywheel" not in plain.section["rl_harness"]
    one = _stage(_recipe(tmp_path, {"flywheel": ["exp"], "steps": 1}))
    assert one.hash != plain.hash and "flywheel" in one.section
    (exp / "rl_prompts.jsonl").write_text(
        "".join(json.dumps({"task_id": p.name, "task_dir": str(p)}) + "\n" for p in train)
    )
    two = _stage(_recipe(tmp_path, {"flywheel": ["exp"], "steps": 1}))
    assert two.hash != one.hash


def test_task_carrying_heldout_code_is_refused(made, tmp_path) -> None:
    """A task whose meta says `train` but whose repository is a held-out project's code (an
    edited export or task tree) is refused as contaminated, as the SFT flywheel refuses such a
    record."""
    from hillclimb.harness.taskgen.common import HELDOUT_PROJECTS
    from hillclimb.harness.taskgen.corpus import JS_PROJECTS, PROJECTS

    train = _dirs(made["base"] / "train")
    fake = tmp_path / "tasks" / "fake"
    shutil.copytree(train[0], fake)
    name = sorted(n for n in {**PROJECTS, **JS_PROJECTS} if n in HELDOUT_PROJECTS)[0]
    for rel, text in {**PROJECTS, **JS_PROJECTS}[name].items():
        (fake / "repo" / f"heldout_{Path(rel).name}").write_text(text)
    _export(tmp_path / "exp", [fake, train[1]])
    r = _recipe(tmp_path, {"flywheel": ["exp"], "n_tasks": 0, "steps": 1})
    d = tmp_path / "stage"
    d.mkdir()
    harness, info = harness_tasks(r.rl_harness["code-flash"], d, None, STAGE)
    assert [t.id for t in load_tasks(harness)] == [train[1].name]
    assert info["flywheel"]["refused"] == {"contaminated": 1}


@pytest.mark.parametrize(
    "damage, match",
    [
        ("no_dir", "not a `hillclimb telemetry export` output"),
        ("no_rl", "has no rl_prompts.jsonl"),
        ("bad_json", "not JSON"),
        ("no_ref", "not a task reference"),
        ("gone", "does not exist"),
        ("not_list", "must be a list of export directories"),
    ],
)
def test_missing_or_damaged_export_is_a_clear_error(made, tmp_path, damage, match) -> None:
    train = _dirs(made["base"] / "train")
    exp = _export(tmp_path / "exp", train[:1])
    value: object = ["exp"]
    if damage == "no_dir":
        value = ["nowhere"]
    elif damage == "no_rl":
        (exp / "rl_prompts.jsonl").unlink()
    elif damage == "bad_json":
        (exp / "rl_prompts.jsonl").write_text("{oops\n")
    elif damage == "no_ref":
        (exp / "rl_prompts.jsonl").write_text('{"task_id": "t"}\n')
    elif damage == "gone":
        (exp / "rl_prompts.jsonl").write_text('{"task_id": "t", "task_dir": "/no/such/task"}\n')
    else:
        value = "exp"
    with pytest.raises(ConfigError, match=match):
        _recipe(tmp_path, {"flywheel": value, "steps": 1})


def test_n_tasks_zero_still_needs_an_export(tmp_path) -> None:
    with pytest.raises(ConfigError, match="n_tasks must be an integer >= 1"):
        _recipe(tmp_path, {"n_tasks": 0, "steps": 1})
