"""Held-out projects: `harness generate --split train|heldout|all` keeps training tasks off the
projects (and terminal templates) that evaluation uses to measure code the coder never saw."""

from __future__ import annotations

import json
import random
import tomllib

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.harness.task import find_task_dirs, load_task
from hillclimb.harness.taskgen import generate as gen
from hillclimb.harness.taskgen import terminal
from hillclimb.harness.taskgen.common import (
    HELDOUT_PROJECTS,
    HELDOUT_TEMPLATES,
    in_split,
    pick_projects,
)
from hillclimb.harness.taskgen.corpus import JS_PROJECTS, PROJECTS


def test_heldout_names_exist_and_leave_most_for_training():
    for corpus in (PROJECTS, JS_PROJECTS):
        held = HELDOUT_PROJECTS & set(corpus)
        assert 2 <= len(held) <= len(corpus) // 3, held
    assert set(PROJECTS) | set(JS_PROJECTS) >= HELDOUT_PROJECTS  # no stale name
    names = {t.__name__ for t in terminal.TEMPLATES}
    assert names > HELDOUT_TEMPLATES and len(names - HELDOUT_TEMPLATES) >= 3


@pytest.mark.parametrize("corpus", [PROJECTS, JS_PROJECTS], ids=["python", "javascript"])
def test_pick_projects_respects_the_split(corpus):
    seen = {"train": set(), "heldout": set(), "all": set()}
    for seed in range(300):
        for split in seen:
            names, files = pick_projects(random.Random(seed), corpus, 0.5, split)
            assert len(set(names)) == len(names) and files
            seen[split] |= set(names)
    assert seen["heldout"] == HELDOUT_PROJECTS & set(corpus)
    assert seen["train"] == set(corpus) - HELDOUT_PROJECTS
    assert seen["all"] == set(corpus)
    # `all` draws exactly as before the split existed (the seed contract of generated tasks)
    for seed in range(50):
        rng_a, rng_b = random.Random(seed), random.Random(seed)
        names = sorted(corpus)
        want = [rng_b.choice(names)]
        if rng_b.random() < 0.5:
            want.append(rng_b.choice([n for n in names if n != want[0]]))
        assert pick_projects(rng_a, corpus, 0.5)[0] == want


def test_unknown_split_is_refused(tmp_path):
    with pytest.raises(HillclimbError, match="unknown task split"):
        gen.generate_tasks(tmp_path / "x", 1, split="test")
    with pytest.raises(HillclimbError, match="unknown task split"):
        in_split("calc", "eval")
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["harness", "generate", "--out", str(tmp_path / "y"), "--n", "1", "--split", "x"])


def test_generated_heldout_and_train_tasks_keep_to_their_projects(tmp_path, capsys):
    out = tmp_path / "held"
    rc = main(["harness", "generate", "--out", str(out), "--n", "3", "--seed", "2",
               "--kinds", "bugfix", "repo_qa", "terminal", "--split", "heldout", "--json"])  # fmt: skip
    s = json.loads(capsys.readouterr().out)
    assert rc == 0 and s["split"] == "heldout" and s["generated"] == 3
    for rec in s["tasks"]:
        assert "-heldout-" in rec["id"] and rec["split"] == "heldout"
        if rec["kind"] == "terminal":
            assert rec["template"] in HELDOUT_TEMPLATES
        else:
            assert set(rec["projects"]) <= HELDOUT_PROJECTS
    for d in find_task_dirs(out):
        doc = tomllib.loads((d / "task.toml").read_text())
        assert doc["meta"]["split"] == "heldout"
        load_task(d)
    # RL refuses to train on them; it takes the train split's tasks
    from hillclimb.errors import ConfigError
    from hillclimb.rl.harness import load_tasks

    with pytest.raises(ConfigError, match="held-out projects"):
        load_tasks(out)
    s = gen.generate_tasks(tmp_path / "train", 3, seed=2, kinds=["bugfix", "repo_qa", "terminal"],
                           split="train")  # fmt: skip
    assert len(load_tasks(tmp_path / "train")) == 3
    assert s["generated"] == 3
    for rec in s["tasks"]:
        if rec["kind"] == "terminal":
            assert rec["template"] not in HELDOUT_TEMPLATES
        else:
            assert not set(rec["projects"]) & HELDOUT_PROJECTS


def test_mutation_sites_split_by_line_about_one_in_four():
    from hillclimb.harness.taskgen import mutate
    from hillclimb.harness.taskgen.common import keep_mutation, mutation_split

    sides: dict[tuple[str, str | None, int], set[str]] = {}
    for files in PROJECTS.values():
        for module, src in files.items():
            if not module.endswith(".py") or module.startswith("tests/"):
                continue
            for e in mutate.bug_edits(src):
                key = (module, e.function, e.extra["line"])
                side = mutation_split(*key)
                sides.setdefault(key, set()).add(side)
                assert keep_mutation(*key, "train") == (side == "train")
                assert keep_mutation(*key, "heldout_mutations") == (side == "heldout")
                assert keep_mutation(*key, "all") and keep_mutation(*key, "heldout")
    assert all(len(s) == 1 for s in sides.values())  # every mutation of a line: one side
    share = sum("heldout" in s for s in sides.values()) / len(sides)
    assert 0.15 < share < 0.35, share
    assert mutation_split("a.py", "f", 3) == mutation_split("a.py", "f", 3)  # pure


def test_heldout_mutation_tasks_never_share_a_site_with_training_tasks(tmp_path):
    from hillclimb.errors import ConfigError
    from hillclimb.harness.taskgen.common import mutation_split
    from hillclimb.rl.harness import load_tasks

    def sites(root):
        out = set()
        for d in find_task_dirs(root):
            meta = load_task(d).meta
            assert not set(meta["projects"]) & HELDOUT_PROJECTS
            out.add((meta["module"], meta["function"], meta["line"]))
        return out

    gen.generate_tasks(tmp_path / "hm", 3, seed=4, kinds=["bugfix"], split="heldout_mutations")
    gen.generate_tasks(tmp_path / "tr", 3, seed=4, kinds=["bugfix"], split="train")
    held, train = sites(tmp_path / "hm"), sites(tmp_path / "tr")
    assert len(held) == 3 and len(train) == 3
    assert {mutation_split(*s) for s in held} == {"heldout"}
    assert {mutation_split(*s) for s in train} == {"train"}
    assert all("-heldout_mutations-" in d.name for d in find_task_dirs(tmp_path / "hm"))
    with pytest.raises(ConfigError, match="mutation"):
        load_tasks(tmp_path / "hm")  # evaluation only
    with pytest.raises(HillclimbError, match="heldout_mutations"):
        gen.generate_tasks(tmp_path / "x", 1, kinds=["repo_qa"], split="heldout_mutations")
    assert not (tmp_path / "x").exists()


def test_split_all_tasks_on_heldout_projects_templates_or_sites_are_evaluation_only(tmp_path):
    """`--split all` (the default) draws from every project, template and site, so a task's
    recorded split is not enough: `heldout_reason` reads its projects, template and mutation
    site, and `rl --harness` refuses such a task."""
    from hillclimb.errors import ConfigError
    from hillclimb.harness.taskgen.common import heldout_reason, mutation_split
    from hillclimb.rl.harness import load_tasks

    summary = gen.generate_tasks(tmp_path / "all", 10, seed=1)
    metas = {d.name: load_task(d).meta for d in find_task_dirs(tmp_path / "all")}
    for name, meta in metas.items():
        expected = bool(set(meta.get("projects", [])) & HELDOUT_PROJECTS) or (
            meta.get("template") in HELDOUT_TEMPLATES
        ) or meta.get("site_split") == "heldout"  # fmt: skip
        if "line" in meta:  # the recorded side is the one its site gives
            site = mutation_split(meta["module"], meta["function"], meta["line"])
            assert meta["site_split"] == site, name
        assert bool(heldout_reason(meta)) == expected, name
    flagged = [n for n, m in metas.items() if heldout_reason(m)]
    assert flagged and len(flagged) < len(metas)  # seed 1: some of each
    # the generator says so, in the manifest and in a note
    assert summary["evaluation_only"] == len(flagged)
    assert sorted(t["id"] for t in summary["tasks"] if "evaluation_only" in t) == sorted(flagged)
    assert any(f"{len(flagged)} of 10 tasks are evaluation-only" in n for n in summary["notes"])
    with pytest.raises(ConfigError, match=f"{len(flagged)} of {len(metas)} task"):
        load_tasks(tmp_path / "all")
    # a held-out mutation site is found without the recorded split: from the recorded side of
    # the site split (bugfix and feature — a stub's site is its mutated source), or the line
    gen.generate_tasks(
        tmp_path / "hm", 4, seed=4, kinds=["bugfix", "feature"], split="heldout_mutations"
    )
    gen.generate_tasks(tmp_path / "tr", 4, seed=4, kinds=["bugfix", "feature"], split="train")
    kinds = set()
    for d in find_task_dirs(tmp_path / "hm"):
        meta = dict(load_task(d).meta)
        kinds.add(d.name.split("-")[0])
        assert "--split heldout_mutations" in heldout_reason(meta)
        meta.pop("split")
        assert meta["site_split"] == "heldout" and "held-out site" in heldout_reason(meta)
        if "line" in meta:
            meta.pop("site_split")
            assert "held-out site" in heldout_reason(meta)
    assert kinds == {"bugfix", "feature"}
    for d in find_task_dirs(tmp_path / "tr"):
        meta = load_task(d).meta
        assert meta["site_split"] == "train" and heldout_reason(meta) is None
    assert heldout_reason({}) is None and heldout_reason(None) is None


@pytest.mark.parametrize("split", [["heldout"], {"heldout": True}, "Heldout", "test", 1])
def test_a_split_that_is_not_a_known_value_is_evaluation_only(split):
    """A hand-edited `split = ["heldout"]` (or a misspelt one) read as a training task, so
    `rl --harness` would train on it: an unknown split now fails closed (session 23)."""
    from hillclimb.harness.taskgen.common import heldout_reason

    assert "is not one of" in heldout_reason({"split": split})
    for known in ("all", "train"):
        assert heldout_reason({"split": known}) is None
