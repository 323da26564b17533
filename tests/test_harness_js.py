"""JavaScript tasks: TAP parsing, the token-level mutator, generated JS tasks (solution resolves,
nothing does not), node inside both sandbox backends, the reference agent through the real tools,
and the clear skip when node is missing."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.harness.grading import grade_patch
from hillclimb.harness.task import JS_TEST_COMMAND, find_task_dirs, load_task
from hillclimb.harness.taskgen import generate as gen
from hillclimb.harness.taskgen import js_mutate, js_tasks
from hillclimb.harness.taskgen.common import ProjectRunner
from hillclimb.harness.taskgen.corpus import JS_PROJECTS
from hillclimb.harness.taskgen.mutate import Edit
from hillclimb.harness.testparse import parse_tap_output, parse_test_output
from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or js_tasks.node_version() is None,
    reason="node does not run inside the sandbox here",
)

TAP = """\
# hillclimb-file: tests/a.test.js
TAP version 13
# Subtest: adds
ok 1 - adds
  ---
  duration_ms: 0.8
  ...
# Subtest: fails \\# sometimes
not ok 2 - fails \\# sometimes
  ---
  error: |-
    Expected values to be strictly equal:
  ...
# Subtest: grp
    # Subtest: inner
    ok 1 - inner
    # Subtest: skipme
    ok 2 - skipme # SKIP
    # Subtest: later
    not ok 3 - later # TODO
    1..3
ok 3 - grp
1..3
# hillclimb-file: tests/b.test.js
# Subtest: adds
ok 1 - adds
# hillclimb-file: tests/c.test.js
# Subtest: /tmp/ws/tests/c.test.js
not ok 1 - /tmp/ws/tests/c.test.js
"""


def test_tap_parser_ids_outcomes_and_dispatch():
    got = parse_tap_output(TAP)
    assert got == {
        "tests/a.test.js::adds": "passed",
        "tests/a.test.js::fails # sometimes": "failed",
        "tests/a.test.js::grp::inner": "passed",
        "tests/a.test.js::grp::skipme": "skipped",
        "tests/a.test.js::grp::later": "xfailed",
        "tests/a.test.js::grp": "passed",
        "tests/b.test.js::adds": "passed",
        "tests/c.test.js": "failed",
    }
    assert parse_test_output(TAP, "javascript") == got
    assert parse_test_output(TAP, "python") == {}  # no pytest lines in TAP
    # without file markers ids are the bare nesting path; a duplicate id keeps the worst outcome
    assert parse_tap_output("ok 1 - x\nnot ok 2 - x\n") == {"x": "failed"}


def _task_dir(tmp_path: Path, **extra: str) -> Path:
    (tmp_path / "repo" / "tests").mkdir(parents=True)
    (tmp_path / "repo" / "tests" / "a.test.js").write_text("")
    body = 'id = "t"\nkind = "bugfix"\ninstruction = "fix"\nFAIL_TO_PASS = ["tests/a.test.js::x"]\n'
    body += "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    (tmp_path / "task.toml").write_text(body)
    return tmp_path


def test_language_field_picks_default_command_and_is_validated(tmp_path):
    t = load_task(_task_dir(tmp_path / "a", language="javascript"))
    assert t.language == "javascript" and t.test_command == JS_TEST_COMMAND
    assert load_task(_task_dir(tmp_path / "b")).language == "python"
    with pytest.raises(HillclimbError, match="language"):
        load_task(_task_dir(tmp_path / "c", language="cobol"))


def test_tokenizer_leaves_strings_comments_regex_and_templates_alone():
    src = (
        "// a - b < c\n/** doc: x + y */\nfunction f(a, b) {\n"
        "  const s = 'a + b' + `t ${a - 1} <`;\n  const r = /a+b\\/c/g;\n"
        "  if (a < b) {\n    return a / 2;\n  }\n  return b - a;\n}\n"
        "module.exports = { f };\n"
    )
    mod = js_mutate.parse_module(src)
    assert [f.name for f in mod.functions] == ["f"] and mod.functions[0].doc == "doc: x + y"
    kinds = [t.kind for t in mod.toks]
    assert kinds.count("regex") == 1 and kinds.count("template") == 1
    assert kinds.count("comment") == 2
    edits = js_mutate.bug_edits(src)
    assert {"wrong_operator", "off_by_one", "missing_case", "wrong_variable"} <= {
        e.kind for e in edits
    }
    for e in edits:
        # nothing inside a string, template, regex or comment ever changes
        for keep in ("// a - b < c", "'a + b'", "`t ${a - 1} <`", "/a+b\\/c/g", "x + y"):
            assert keep in e.new_source, (e.description, keep)
        if e.kind != "missing_case":
            diff = [
                (x, y)
                for x, y in zip(src.splitlines(), e.new_source.splitlines(), strict=True)
                if x != y
            ]  # fmt: skip
            assert len(diff) == 1, e.description
    with pytest.raises(js_mutate.JSSyntaxError):
        js_mutate.tokenize("const s = 'unterminated;\n")


def test_feature_edits_and_test_removal():
    src = JS_PROJECTS["router"]["router/path.js"]
    removed = {e.function: e for e in js_mutate.remove_edits(src)}
    join = removed["join"].new_source
    assert "function join" not in join and "module.exports = { segments, match };" in join
    assert removed["join"].extra["signature"] == "join(...parts)"
    stubs = {e.function: e for e in js_mutate.stub_edits(JS_PROJECTS["cart"]["cart/cart.js"])}
    assert "Cart.constructor" not in stubs
    assert (
        'throw new Error("subtotal is not implemented yet");' in stubs["Cart.subtotal"].new_source
    )
    tests = JS_PROJECTS["router"]["tests/router.test.js"]
    names = js_mutate.test_names(tests)
    assert len(names) == 5 and "join normalises slashes" in names
    kept = js_mutate.drop_tests(tests, {"join normalises slashes"})
    assert js_mutate.test_names(kept) == [n for n in names if n != "join normalises slashes"]


def test_questions_have_unique_answers():
    files = dict(JS_PROJECTS["ledger"], **JS_PROJECTS["heap"])
    qs = {(q.kind, q.text): q.answers for q in js_tasks.questions(files)}
    assert qs[("class_count", "How many classes are defined in `ledger/`?")] == ["2"]
    assert qs[("raises", "Which function or method throws an `InsufficientFunds`?")] == [
        "Account.withdraw",
        "withdraw",
    ]
    where = "In which file is the method `MinHeap.pop` defined? Give its path."
    assert qs[("where_defined", where)] == ["pqueue/heap.js", "pqueue/heap"]
    assert qs[("unique_caller", "Which function or method calls `transfer`? (There is exactly one.)")] == ["settle"]  # fmt: skip


@pytest.fixture(scope="module")
def js_generated(tmp_path_factory) -> Path:
    if shutil.which("node") is None or js_tasks.node_version() is None:
        pytest.skip("node does not run inside the sandbox here")
    out = tmp_path_factory.mktemp("jsgen")
    s = gen.generate_tasks(
        out, 4, seed=11, kinds=["bugfix", "feature", "repo_qa"], languages=["javascript"],
        multi_project_prob=0.5,
    )  # fmt: skip
    # `all` draws held-out projects and sites too: the summary says how many (not a failure)
    notes = [n for n in s["notes"] if "evaluation-only" not in n]
    assert s["generated"] == 4 and not s["failures"] and not notes, s
    assert s["evaluation_only"] == sum("evaluation_only" in t for t in s["tasks"])
    return out


@needs_node
def test_every_js_kind_solution_resolves_and_empty_does_not(js_generated):
    tasks = [load_task(d) for d in find_task_dirs(js_generated)]
    assert {t.kind for t in tasks} == set(js_tasks.JS_KINDS)
    for t in tasks:
        assert t.language == "javascript" and "-js-" in t.id
        patch = t.solution_patch.read_text() if t.solution_patch else None
        answer = t.answers[0] if t.answers else None
        solved = grade_patch(t, patch, answer=answer)
        empty = grade_patch(t, None)
        assert solved.resolved, (t.id, solved.status, solved.message, solved.output_tail)
        assert not empty.resolved, (t.id, empty.status)
        if t.kind in ("bugfix", "feature"):
            assert set(empty.fail_to_pass["failed"]) == set(t.fail_to_pass)
            assert not empty.pass_to_pass["failed"]
            assert set(solved.tests) >= set(t.fail_to_pass) | set(t.pass_to_pass)
            visible = "".join(p.read_text() for p in (t.repo / "tests").glob("*.test.js"))
            assert all(f"test('{tid.split('::')[1]}'" not in visible for tid in t.fail_to_pass)


@needs_node
def test_reference_agent_resolves_js_task_through_tools(js_generated, tmp_path):
    bug = next(d for d in find_task_dirs(js_generated) if d.name.startswith("bugfix-"))
    out = tmp_path / "run"
    rc = main(["harness", "run", "--tasks", str(bug), "--model", "reference", "--out", str(out),
               "--no-telemetry", "--json"])  # fmt: skip
    traj = json.loads(next((out / "trajectories").glob("*.json")).read_text())
    assert rc == 0 and traj["resolved"] and traj["exit_status"] == "submitted", traj.get("grade")
    assert any(s["calls"] and s["calls"][0]["name"] == "create_file" for s in traj["steps"])


@needs_node
def test_mutations_that_break_parsing_or_fail_nothing_are_discarded(monkeypatch):
    def bad(src):
        return [
            Edit("wrong_operator", "syntax error", "f", src.replace("{", "{{", 1)),
            Edit("wrong_operator", "noop", "f", src + "\n// harmless\n"),
        ]

    monkeypatch.setattr(js_mutate, "bug_edits", bad)
    spec = js_tasks.broken_code_task("bugfix", random.Random(0), ProjectRunner(False), "x", 0.0)
    assert spec is None


@needs_node
@pytest.mark.parametrize("backend", ["bwrap", "unshare"])
def test_node_test_runs_in_each_sandbox_backend(backend, tmp_path):
    if not probe_backend(backend)[0]:
        pytest.skip(f"{backend} unavailable")
    for rel, text in JS_PROJECTS["ranges"].items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    res = run_sandboxed(JS_TEST_COMMAND, tmp_path, SandboxLimits(timeout_s=60), backend=backend)
    outcomes = parse_tap_output(res.stdout)
    assert res.status == "ok" and len(outcomes) == 5, res.stderr[-500:]
    assert set(outcomes.values()) == {"passed"}


def test_javascript_skipped_with_a_note_when_node_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(js_tasks, "node_version", lambda unsafe=False: None)
    with pytest.raises(HillclimbError, match="node"):
        gen.generate_tasks(tmp_path / "a", 1, kinds=["repo_qa"], languages=["javascript"])
    s = gen.generate_tasks(tmp_path / "b", 1, kinds=["repo_qa"], languages=["python", "javascript"])
    assert s["languages"] == ["python"] and "node" in s["notes"][0]
    assert [t["language"] for t in s["tasks"]] == ["python"]


@needs_node
def test_cli_generate_languages(tmp_path, capsys):
    rc = main(["harness", "generate", "--out", str(tmp_path), "--n", "2", "--kinds", "repo_qa",
               "--languages", "python", "javascript", "--json"])  # fmt: skip
    s = json.loads(capsys.readouterr().out)
    assert rc == 0 and [t["language"] for t in s["tasks"]] == ["python", "javascript"]
    assert (
        main(["harness", "generate", "--out", str(tmp_path), "--n", "1", "--languages", "go"]) == 2
    )


@needs_node
def test_js_generation_is_deterministic(tmp_path):
    kw = {"kinds": ["repo_qa"], "languages": ["javascript"], "multi_project_prob": 0.5}
    a = gen.generate_tasks(tmp_path / "a", 3, seed=5, **kw)
    b = gen.generate_tasks(tmp_path / "b", 3, seed=5, **kw)
    assert a["tasks"] == b["tasks"]
    for t in a["tasks"]:
        for name in ("task.toml", "repo/package.json"):
            assert (tmp_path / "a" / t["id"] / name).read_text() == (
                tmp_path / "b" / t["id"] / name
            ).read_text()


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_js_edit_that_breaks_syntax_is_rejected(tmp_path):
    from hillclimb.harness.tools import ToolBox

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.js").write_text("function f(x) {\n  return x + 1;\n}\nmodule.exports = { f };\n")
    box = ToolBox(ws, run_timeout_s=30)
    out = box.call(
        "edit", {"path": "a.js", "old_str": "return x + 1;", "new_str": "return (x + 1;"}
    )
    assert not out.ok and "would not parse" in out.observation
    assert "return x + 1;" in (ws / "a.js").read_text()
    out = box.call("edit", {"path": "a.js", "old_str": "return x + 1;", "new_str": "return x + 2;"})
    assert out.ok and "x + 2" in (ws / "a.js").read_text()


@needs_node
def test_js_mutation_tasks_record_their_side_of_the_site_split(js_generated):
    """JavaScript edits carry no line, so `heldout_reason` reads the side recorded at
    generation: the one `common.mutation_split` gives the task's own site."""
    from hillclimb.harness.taskgen.common import HELDOUT_PROJECTS, heldout_reason

    tasks = [load_task(d) for d in find_task_dirs(js_generated)]
    mutated = [t for t in tasks if t.kind in ("bugfix", "feature")]
    assert mutated and all(t.meta["site_split"] in ("train", "heldout") for t in mutated)
    for t in mutated:
        meta = dict(t.meta)
        assert (heldout_reason(meta) is not None) == (
            meta["site_split"] == "heldout" or bool(set(meta["projects"]) & HELDOUT_PROJECTS)
        )
