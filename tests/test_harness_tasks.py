"""Task generator: every kind verifies (solution resolved, nothing unresolved), determinism, CLI."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.harness.grading import grade_patch
from hillclimb.harness.task import (
    DEFAULT_TEST_COMMAND,
    JS_TEST_COMMAND,
    KINDS,
    find_task_dirs,
    load_task,
)
from hillclimb.harness.taskgen import generate as gen
from hillclimb.harness.taskgen import js_tasks, mutate
from hillclimb.harness.taskgen.common import ProjectRunner
from hillclimb.harness.taskgen.corpus import (
    JS_PROJECTS,
    PROJECTS,
    load_projects,
    projects_root,
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    s = gen.generate_tasks(out, 6, seed=7, multi_project_prob=0.5)
    assert s["generated"] == 6 and not s["failures"]
    return out


def test_every_kind_solution_resolves_and_empty_does_not(generated):
    tasks = [load_task(d) for d in find_task_dirs(generated)]
    assert {t.kind for t in tasks} == set(KINDS)
    for t in tasks:
        patch = t.solution_patch.read_text() if t.solution_patch else None
        answer = t.answers[0] if t.answers else None
        solved = grade_patch(t, patch, answer=answer)
        empty = grade_patch(t, None)
        assert solved.resolved, (t.id, solved.status, solved.message)
        assert not empty.resolved, (t.id, empty.status)
        if t.kind in ("bugfix", "feature"):
            assert t.fail_to_pass and set(empty.fail_to_pass["failed"]) == set(t.fail_to_pass)
            # FAIL_TO_PASS tests are hidden from the agent's copy of the tests
            visible = "".join(p.read_text() for p in (t.repo / "tests").glob("*.py"))
            assert all(f"def {tid.split('::')[1]}(" not in visible for tid in t.fail_to_pass)
        if t.kind == "refactor":
            assert (
                t.checks and any(not c["ok"] for c in empty.checks) or empty.fail_to_pass["failed"]
            )


def test_generation_is_deterministic(tmp_path):
    a = gen.generate_tasks(tmp_path / "a", 2, seed=3, kinds=["repo_qa", "terminal"])
    b = gen.generate_tasks(tmp_path / "b", 2, seed=3, kinds=["repo_qa", "terminal"])
    assert a["tasks"] == b["tasks"]
    for t in a["tasks"]:
        for name in ("task.toml", "solution.patch"):
            pa, pb = tmp_path / "a" / t["id"] / name, tmp_path / "b" / t["id"] / name
            assert pa.exists() == pb.exists()
            if pa.exists():
                assert pa.read_text() == pb.read_text()
    c = gen.generate_tasks(tmp_path / "c", 2, seed=4, kinds=["repo_qa", "terminal"])
    assert c["tasks"] != a["tasks"]


def test_bug_that_fails_no_test_is_discarded(monkeypatch):
    # A "bug" that only edits a comment cannot make any test fail: it must be discarded.
    def harmless(src):
        return [mutate.Edit("wrong_operator", "noop", "f", src + "\n# harmless\n")]

    monkeypatch.setattr(mutate, "bug_edits", harmless)
    import random

    spec = gen._broken_code_task("bugfix", random.Random(0), ProjectRunner(False), "x", 0.0)
    assert spec is None


def test_bug_edits_are_minimal():
    src = PROJECTS["inventory"]["inventory/store.py"]
    edits = mutate.bug_edits(src)
    kinds = {e.kind for e in edits}
    assert {"wrong_operator", "off_by_one", "missing_case", "wrong_variable"} <= kinds
    for e in edits[:40]:
        changed = [
            ln
            for a, ln in zip(src.splitlines(), e.new_source.splitlines(), strict=False)
            if a != ln
        ]
        assert len(e.new_source.splitlines()) <= len(src.splitlines())
        if e.kind != "missing_case":
            assert len(changed) == 1, e.description


def test_cli_generate_and_grade(tmp_path, capsys):
    out = tmp_path / "tasks"
    assert (
        main(
            [
                "harness",
                "generate",
                "--out",
                str(out),
                "--n",
                "1",
                "--seed",
                "1",
                "--kinds",
                "bugfix",
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    task_dir = out / s["tasks"][0]["id"]
    assert main(["harness", "grade", "--task", str(task_dir), "--solution", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "resolved"
    assert main(["harness", "grade", "--task", str(task_dir)]) == 1
    assert "UNRESOLVED" in capsys.readouterr().out
    bad = tmp_path / "bad.patch"
    bad.write_text("--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-x\n+y\n")
    assert main(["harness", "grade", "--task", str(task_dir), "--patch", str(bad), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "patch_failed"
    (task_dir / "task.toml").write_text("kind = ")
    assert main(["harness", "grade", "--task", str(task_dir)]) == 2
    assert "malformed task.toml" in capsys.readouterr().err


# ---- the corpus as files (issue 16) -----------------------------------------------------------


TEST_DEF = {"python": r"^def (test_\w+)\(", "javascript": r"^test\('([^']+)'"}


@pytest.mark.parametrize(
    ("language", "name"),
    [("python", n) for n in sorted(PROJECTS)] + [("javascript", n) for n in sorted(JS_PROJECTS)],
)
def test_corpus_project_passes_its_own_tests(language, name):
    """What is stored is the correct version: every module parses (`node --check` for
    JavaScript) and every test the project defines runs and passes, in the sandbox, as the
    generator runs them."""
    if language == "python":
        files, cmd = PROJECTS[name], DEFAULT_TEST_COMMAND
    else:
        if js_tasks.node_version() is None:
            pytest.skip("node does not run inside the sandbox here")
        files = JS_PROJECTS[name]
        checks = " && ".join(f"node --check '{p}'" for p in sorted(files) if p.endswith(".js"))
        cmd = f"{checks} || exit 99; {JS_TEST_COMMAND}"
    outcomes, status, out = ProjectRunner(False).run(files, cmd, language)
    defined = {
        f"{rel}::{m}"
        for rel, text in files.items()
        if rel.startswith("tests/")
        for m in re.findall(TEST_DEF[language], text, re.M)
    }
    assert status == "ok" and defined and set(outcomes) == defined, (status, out[-800:])
    assert set(outcomes.values()) == {"passed"}, out[-800:]


def test_corpus_is_read_from_files_and_skips_caches(tmp_path):
    proj = tmp_path / "python" / "demo"
    (proj / "demo").mkdir(parents=True)
    (proj / "demo" / "m.py").write_bytes(b"x = 1\r\n")  # stored bytes, no newline translation
    (proj / "tests").mkdir()
    (proj / "tests" / "test_m.py").write_text("def test_x():\n    pass\n")
    for junk in ("__pycache__/m.cpython-311.pyc", ".pytest_cache/v", "demo/__pycache__/m.pyc"):
        (proj / junk).parent.mkdir(parents=True, exist_ok=True)
        (proj / junk).write_text("junk")
    assert load_projects("python", tmp_path) == {
        "demo": {"demo/m.py": "x = 1\r\n", "tests/test_m.py": "def test_x():\n    pass\n"}
    }
    with pytest.raises(HillclimbError, match="no javascript projects|missing"):
        load_projects("javascript", tmp_path)
    with pytest.raises(HillclimbError, match="unknown corpus language"):
        load_projects("go", tmp_path)


def test_corpus_files_are_package_data():
    """Every file of the data tree is covered by a pyproject package-data pattern, so a wheel
    (not only a checkout) carries the corpus."""
    root = Path(str(projects_root()))
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["hillclimb"]
    suffixes = {
        p.suffix
        for p in root.rglob("*")
        if p.is_file() and not any(x.startswith(".") or x == "__pycache__" for x in p.parts)
    }
    for suffix in suffixes:
        assert f"harness/taskgen/projects/**/*{suffix}" in patterns or f"**/*{suffix}" in patterns
