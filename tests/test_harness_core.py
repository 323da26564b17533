"""Harness building blocks: task.toml, test-output parsing, patches, tools, tool calls, checks."""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.harness.grading import grade_patch, normalize_answer
from hillclimb.harness.patching import apply_patch, diff_trees
from hillclimb.harness.structural import run_check
from hillclimb.harness.task import StructuralCheck, dumps_toml, load_task
from hillclimb.harness.testparse import parse_pytest_output
from hillclimb.harness.tools import ToolBox, truncate
from hillclimb.tokenizer.toolcalls import parse_assistant_text

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"


def _task_dir(tmp_path: Path, toml: str, tests: bool = True) -> Path:
    d = tmp_path / "t"
    (d / "repo").mkdir(parents=True)
    (d / "repo" / "a.py").write_text("x = 1\n")
    if tests:
        (d / "tests").mkdir()
        (d / "tests" / "test_a.py").write_text("def test_a():\n    assert True\n")
    (d / "task.toml").write_text(toml)
    return d


# ---- task.toml ----------------------------------------------------------------------------------


def test_load_fixture_task():
    t = load_task(TINY)
    assert t.id == "tiny-bugfix" and t.kind == "bugfix"
    assert t.fail_to_pass == ("tests/test_mathx.py::test_clamp_low",)
    assert t.limits.max_steps == 10 and t.limits.test_timeout_s == 60.0
    assert t.solution_patch is not None


@pytest.mark.parametrize(
    "toml, msg",
    [
        (None, "missing task.toml"),
        ("id = [", "malformed task.toml"),
        ('id = "x"\nkind = "poem"\ninstruction = "i"\n', "`kind` must be one of"),
        ('id = "x"\nkind = "bugfix"\ninstruction = "i"\n', "non-empty FAIL_TO_PASS"),
        ('id = "x"\nkind = "repo_qa"\ninstruction = "i"\n', "need `answer`"),
        ('id = "x"\nkind = "refactor"\ninstruction = "i"\n', "[[checks]]"),
        ('kind = "repo_qa"\ninstruction = "i"\nanswer = "a"\n', "`id` is required"),
        (
            'id = "x"\nkind = "repo_qa"\ninstruction = "i"\nanswer = "a"\nfoo = 1\n',
            "unknown task.toml keys",
        ),
        (
            'id = "x"\nkind = "repo_qa"\ninstruction = "i"\nanswer = "a"\n[limits]\nmax_steps = -1\n',
            "positive",
        ),
        (
            'id = "x"\nkind = "refactor"\ninstruction = "i"\n[[checks]]\ntype = "called_from"\nname = "f"\nmodule = "a.py"\n',
            "needs `caller`",
        ),
        (
            'id = "x"\nkind = "repo_qa"\ninstruction = "i"\nanswer = "a"\nhidden_tests_dest = "../x"\n',
            "relative path",
        ),
    ],
)
def test_bad_task_toml(tmp_path, toml, msg):
    d = _task_dir(tmp_path, toml or "")
    if toml is None:
        (d / "task.toml").unlink()
    with pytest.raises(HillclimbError, match=None) as ei:
        load_task(d)
    assert msg in str(ei.value) and str(d.resolve()) in str(ei.value)


def test_dumps_toml_roundtrip():
    doc = {
        "id": "a\"b\\c\u007f", "kind": "bugfix", "instruction": "line1\nline2\t`x` ünï 🎉",
        "FAIL_TO_PASS": ["t::a[x - y]"], "PASS_TO_PASS": [], "n": 3, "f": 0.5, "b": True,
        "checks": [{"type": "name_absent", "name": "old"}], "limits": {"max_steps": 4},
    }  # fmt: skip
    assert tomllib.loads(dumps_toml(doc)) == doc


# ---- pytest output --------------------------------------------------------------------------------


def test_parse_pytest_output():
    out = """
tests/test_a.py::test_v PASSED                                      [ 50%]
tests/test_a.py::test_w FAILED                                      [100%]
=========================== short test summary info ============================
PASSED tests/test_a.py::test_ok
PASSED tests/test_a.py::test_p[a - b]
FAILED tests/test_a.py::test_bad - AssertionError: assert 1 == 2
ERROR tests/test_a.py::test_ok - RuntimeError: teardown
XFAIL tests/test_a.py::test_xf - reason
SKIPPED [1] tests/test_a.py:10: skipped for a reason
\x1b[32mPASSED\x1b[0m tests/test_b.py::TestK::test_m
"""
    got = parse_pytest_output(out)
    assert got == {
        "tests/test_a.py::test_v": "passed",
        "tests/test_a.py::test_w": "failed",
        "tests/test_a.py::test_ok": "error",  # worst outcome wins
        "tests/test_a.py::test_p[a - b]": "passed",
        "tests/test_a.py::test_bad": "failed",
        "tests/test_a.py::test_xf": "xfailed",
        "tests/test_b.py::TestK::test_m": "passed",
    }


# ---- patches ------------------------------------------------------------------------------------


def test_diff_and_apply_roundtrip(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "pkg").mkdir(parents=True)
    (a / "pkg" / "m.py").write_text("one\ntwo\nthree")  # no trailing newline
    (a / "gone.txt").write_text("bye\n")
    (a / "same.txt").write_text("same\n")
    (a / "__pycache__").mkdir()
    (a / "__pycache__" / "x.pyc").write_bytes(b"\0junk")
    shutil.copytree(a, b)
    (b / "pkg" / "m.py").write_text("one\nTWO\nthree\n")
    (b / "gone.txt").unlink()
    (b / "new" / "deep").mkdir(parents=True)
    (b / "new" / "deep" / "f.py").write_text("print('hi')\n")
    (b / "blob.bin").write_bytes(b"\0\1\2")
    d = diff_trees(a, b)
    assert sorted(d.changed) == ["gone.txt", "new/deep/f.py", "pkg/m.py"]
    assert d.skipped_binary == ["blob.bin"]
    assert "\\ No newline at end of file" in d.patch
    c = tmp_path / "c"
    shutil.copytree(a, c)
    res = apply_patch(c, d.patch)
    assert res.ok, res.message
    assert (c / "pkg" / "m.py").read_text() == "one\nTWO\nthree\n"
    assert not (c / "gone.txt").exists() and (c / "new" / "deep" / "f.py").is_file()
    bad = apply_patch(c, d.patch)  # already applied: must fail cleanly, change nothing
    assert not bad.ok and (c / "pkg" / "m.py").read_text() == "one\nTWO\nthree\n"


def test_grade_bad_patch_and_missing_command(tmp_path):
    task = load_task(TINY)
    res = grade_patch(task, "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    assert res.status == "patch_failed" and not res.resolved and "does not apply" in res.message
    res = grade_patch(task, "this is not a diff at all")
    assert res.status == "patch_failed"
    d = tmp_path / "task"
    shutil.copytree(TINY, d)
    toml = (d / "task.toml").read_text().replace("python -m pytest", "no-such-test-runner-xyz")
    (d / "task.toml").write_text(toml)
    res = grade_patch(load_task(d), None)
    assert res.status == "test_error" and not res.resolved and "not runnable" in res.message


def test_grade_escape_attempt_patch(tmp_path):
    task = load_task(TINY)
    evil = "diff --git a/../evil.txt b/../evil.txt\nnew file mode 100644\n--- /dev/null\n+++ b/../evil.txt\n@@ -0,0 +1 @@\n+x\n"
    res = grade_patch(task, evil)
    assert res.status == "patch_failed"


# ---- tools --------------------------------------------------------------------------------------


@pytest.fixture
def box(tmp_path):
    ws = tmp_path / "ws"
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "m.py").write_text("".join(f"x{i} = {i}\n" for i in range(1, 301)))
    (ws / "notes.txt").write_text("alpha\nbeta alpha\n")
    (tmp_path / "secret.txt").write_text("top secret\n")
    os.symlink(tmp_path / "secret.txt", ws / "link.txt")
    return ToolBox(ws, run_timeout_s=30)


def test_paths_confined(box, tmp_path):
    for path in (
        "../secret.txt",
        str(tmp_path / "secret.txt"),
        "link.txt",
        "pkg/../../secret.txt",
        "/etc/passwd",
    ):
        out = box.call("read_file", {"path": path})
        assert not out.ok and "outside the repository" in out.observation, path
    out = box.call("create_file", {"path": "../escape.py", "content": "x = 1\n"})
    assert not out.ok and not (tmp_path / "escape.py").exists()


def test_read_file_window_and_list(box):
    out = box.call("read_file", {"path": "pkg/m.py"})
    assert out.ok and "  1| x1 = 1" in out.observation and "200| x200 = 200" in out.observation
    assert "start_line=201" in out.observation and "x201" not in out.observation
    out = box.call("read_file", {"path": "pkg/m.py", "start_line": 299, "end_line": 400})
    assert "300| x300 = 300" in out.observation
    out = box.call("list_dir", {})
    assert "pkg/" in out.observation and "  m.py" in out.observation


def test_edit_rules(box):
    ws = box.workspace
    out = box.call("edit", {"path": "notes.txt", "old_str": "alpha", "new_str": "gamma"})
    assert not out.ok and "occurs 2 times" in out.observation
    out = box.call("edit", {"path": "notes.txt", "old_str": "zeta", "new_str": "x"})
    assert not out.ok and "not found" in out.observation
    out = box.call("edit", {"path": "pkg/m.py", "old_str": "x7 = 7\n", "new_str": "x7 = (7\n"})
    assert (
        not out.ok and "SyntaxError" in out.observation and out.edit["status"] == "rejected_syntax"
    )
    assert "x7 = 7\n" in (ws / "pkg" / "m.py").read_text()
    out = box.call("edit", {"path": "pkg/m.py", "old_str": "x7 = 7\n", "new_str": "x7 = 70\n"})
    assert (
        out.ok
        and out.edit["status"] == "applied"
        and "x7 = 70" in (ws / "pkg" / "m.py").read_text()
    )
    out = box.call("create_file", {"path": "pkg/new.py", "content": "def f(:\n"})
    assert not out.ok and not (ws / "pkg" / "new.py").exists()
    out = box.call("create_file", {"path": "pkg/sub/new.py", "content": "def f():\n    return 1\n"})
    assert out.ok and (ws / "pkg" / "sub" / "new.py").is_file()
    out = box.call("create_file", {"path": "pkg/sub/new.py", "content": ""})
    assert not out.ok and "already exists" in out.observation


def test_malformed_calls(box):
    assert box.call("nope", {}).malformed
    assert box.call("read_file", {}).malformed
    assert box.call("read_file", {"path": 3}).malformed
    assert box.call("read_file", {"path": "a", "bogus": 1}).malformed
    assert not box.call("read_file", {"path": "missing.py"}).malformed  # a valid call that fails


def test_search_and_run_sandboxed(box):
    out = box.call("search", {"pattern": "alpha"})
    assert "notes.txt:1:alpha" in out.observation and "notes.txt:2:beta alpha" in out.observation
    out = box.call("search", {"pattern": "x1[0-9]{2} =", "regex": True, "path": "pkg"})
    assert "100 match(es)" in out.observation and "more matches not shown" in out.observation
    out = box.call("run", {"command": "echo hello; echo oops >&2; exit 3"})
    assert (
        out.ok
        and "exit code 3" in out.observation
        and "hello" in out.observation
        and "oops" in out.observation
    )
    out = box.call("run", {"command": "python -c \"print('x' * 100000)\""})
    assert "characters omitted" in out.observation and len(out.observation) < 9000
    out = box.call("run", {"command": "sleep 5", "timeout": 1})
    assert "TIMED OUT" in out.observation


def test_truncate():
    s = "".join(f"{i}\n" for i in range(10000))
    t = truncate(s, 1000)
    assert (
        t.startswith("0\n1\n")
        and t.endswith("9999\n")
        and "characters omitted" in t
        and len(t) < 1100
    )
    assert truncate("short", 1000) == "short"


# ---- tool-call text format ----------------------------------------------------------------------


def test_parse_assistant_text():
    text = (
        "<think>\nplan it\n</think>\n\nLet me look.\n"
        '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>\n'
        '<tool_call>{"name": "run", "arguments": "{\\"command\\": \\"ls\\"}"}</tool_call>\n'
        "<tool_call>{not json}</tool_call>\n"
        '<tool_call>{"name": "edit", "arguments": {"path": '
    )
    p = parse_assistant_text(text)
    assert p.reasoning == "plan it" and p.content == "Let me look."
    assert [c.name for c in p.tool_calls] == ["read_file", "run", "", ""]
    assert p.tool_calls[0].arguments == {"path": "a.py"} and p.tool_calls[1].arguments == {
        "command": "ls"
    }
    assert "not valid JSON" in p.tool_calls[2].error and "unterminated" in p.tool_calls[3].error


def test_a_call_one_bracket_short_is_read_closed_and_nothing_else_is_guessed():
    """The tiny coder's common slip — the final `}` missing before `</tool_call>` — is read
    closed; an unterminated string, a stray closer or a non-object stays an error."""
    from hillclimb.tokenizer.toolcalls import close_json, parse_call_json

    c = parse_call_json('{"name": "read_file", "arguments": {"path": "a.py"}', "c0")
    assert c.name == "read_file" and c.arguments == {"path": "a.py"} and c.error is None
    c = parse_call_json(
        '{"name": "edit", "arguments": {"path": "a.py", "old": "x}", "new": "[y"', "c1"
    )
    assert c.arguments == {"path": "a.py", "old": "x}", "new": "[y"}  # brackets in strings: text
    assert close_json('{"a": [1, {"b": 2') == '{"a": [1, {"b": 2}]}'
    assert close_json('{"a": "open') is None and close_json('{"a": 1}}') is None
    assert close_json('{"a": 1]') is None and close_json('{"a": 1}') is None
    for body in ('{"name": "run", "arguments": {"command": "ls', '{"name": "run"}}', "[1, 2"):
        assert parse_call_json(body, "c").error, body


def test_chat_template_renders_trajectory_messages():
    from hillclimb.harness.telemetry import sft_messages
    from hillclimb.tokenizer.io import _compiled_template
    from hillclimb.tokenizer.specials import CHAT_TEMPLATE
    from hillclimb.tokenizer.toolcalls import ToolCall, assistant_message, tool_message

    call = ToolCall("c1", "read_file", {"path": "a.py"}, '{"path": "a.py"}')
    msgs = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "fix it"},
        assistant_message("", None, [call]),
        tool_message(call, "1| x = 1"),
    ]
    text = _compiled_template(CHAT_TEMPLATE).render(
        messages=sft_messages(msgs), tools=None, add_generation_prompt=False
    )
    assert "<tool_response>\n1| x = 1\n</tool_response>" in text
    rendered_turn = text.split("<|im_start|>assistant")[1].split("<|im_end|>")[0]
    calls = parse_assistant_text(rendered_turn).tool_calls
    assert [(c.name, c.arguments) for c in calls] == [("read_file", {"path": "a.py"})]


# ---- structural checks and answers --------------------------------------------------------------


def test_structural_checks(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "def helper(a):\n    return a + 1\n\n\nclass K:\n    def run(self, x):\n        return helper(x)\n"
    )
    (tmp_path / "pkg" / "bad.py").write_text("def broken(:\n")
    ok = [
        StructuralCheck("function_exists", "helper", module="pkg/m.py"),
        StructuralCheck("function_exists", "K.run", module="pkg/m.py"),
        StructuralCheck("class_exists", "K", module="pkg/m.py"),
        StructuralCheck("called_from", "helper", module="pkg/m.py", caller="K.run"),
        StructuralCheck("name_absent", "old_name", path="pkg/m.py"),
    ]
    for c in ok:
        assert run_check(tmp_path, c).ok, c
    assert not run_check(tmp_path, StructuralCheck("function_exists", "K", module="pkg/m.py")).ok
    assert not run_check(
        tmp_path, StructuralCheck("called_from", "nothing", module="pkg/m.py", caller="K.run")
    ).ok
    assert not run_check(tmp_path, StructuralCheck("name_absent", "helper", path="pkg/m.py")).ok
    r = run_check(tmp_path, StructuralCheck("name_absent", "x", path="pkg"))
    assert not r.ok and "cannot parse" in r.detail


def test_normalize_answer():
    assert normalize_answer("  `Inventory.Restock()`. ") == normalize_answer("inventory.restock")
    assert normalize_answer('"lru/cache.py"') == "lru/cache.py"
    assert normalize_answer("3") != normalize_answer("4")
