"""Outside checks of the harness and sandbox with user-written tasks (session 19).

Each test is a regression for a defect found by driving the harness with task directories and
scripted agents the generator never produces: a temp-file symlink planted by the model (the edit
tool wrote through it, as root, outside the workspace), FIFOs and dangling or device symlinks in a
workspace (reads that hung or exhausted memory outside the sandbox), CRLF files and form feeds
(edits and recorded patches that silently changed bytes), non-UTF-8 file names (telemetry crashed
the run), and task.toml values that passed validation but broke grading.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.harness.agent import EpisodeLimits, run_episode
from hillclimb.harness.clients import ScriptedClient
from hillclimb.harness.grading import grade_workspace
from hillclimb.harness.patching import apply_patch, copy_tree, diff_trees
from hillclimb.harness.structural import run_check
from hillclimb.harness.task import StructuralCheck, load_task
from hillclimb.harness.telemetry import Telemetry
from hillclimb.harness.tools import ToolBox

SUBMIT = {"name": "submit", "arguments": {}}


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when a call blocks, e.g. on a FIFO."""

    def boom(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds}s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def user_task(root: Path, *, toml_extra: str = "", kind: str = "bugfix") -> Path:
    """A hand-written task: a src/ layout package, a data file, pytest and unittest tests."""
    d = root / "task"
    (d / "repo" / "src" / "pkg").mkdir(parents=True)
    (d / "tests").mkdir()
    (d / "repo" / "src" / "pkg" / "__init__.py").write_text("def add(a, b):\n    return a - b\n")
    (d / "repo" / "data.txt").write_text("42\n")
    (d / "tests" / "test_add.py").write_text(
        "import unittest\nfrom pathlib import Path\nfrom pkg import add\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n"
        "def test_data():\n    assert Path('data.txt').read_text().strip() == '42'\n\n"
        "class TestU(unittest.TestCase):\n    def test_u(self):\n        self.assertEqual(add(2, 2), 4)\n"
    )
    (d / "task.toml").write_text(
        f'id = "user-task"\nkind = "{kind}"\ninstruction = "fix add"\n'
        'FAIL_TO_PASS = ["tests/test_add.py::test_add", "tests/test_add.py::TestU::test_u"]\n'
        'PASS_TO_PASS = ["tests/test_add.py::test_data"]\n'
        + toml_extra
        + '[env]\nPYTHONPATH = "src"\n'
    )
    (d / "solution.patch").write_text(
        "diff --git a/src/pkg/__init__.py b/src/pkg/__init__.py\n"
        "--- a/src/pkg/__init__.py\n+++ b/src/pkg/__init__.py\n@@ -1,2 +1,2 @@\n"
        " def add(a, b):\n-    return a - b\n+    return a + b\n"
    )
    return d


FIX = {
    "name": "edit",
    "arguments": {"path": "src/pkg/__init__.py", "old_str": "a - b", "new_str": "a + b"},
}


def run_cmd(command: str) -> dict:
    return {"name": "run", "arguments": {"command": command}}


# ---- the edit tool --------------------------------------------------------------------------


def test_edit_never_writes_through_a_temp_name_the_model_planted(tmp_path):
    """`edit` wrote `.NAME.hc-tmp` beside the file and renamed it: a model that had made that
    name a symlink (`run`: ln -s /etc/x .a.py.hc-tmp) got its edit written, by the harness
    process (root, outside the sandbox), to any host path."""
    ws, outside = tmp_path / "ws", tmp_path / "outside.txt"
    ws.mkdir()
    (ws / "a.py").write_text("x = 1\n")
    (ws / ".a.py.hc-tmp").symlink_to(outside)
    box = ToolBox(ws)
    out = box.call("edit", {"path": "a.py", "old_str": "x = 1", "new_str": "x = 2"})
    assert out.ok, out.observation
    assert not outside.exists()
    assert (ws / "a.py").read_text() == "x = 2\n" and not (ws / "a.py").is_symlink()
    out = box.call("create_file", {"path": "b.py", "content": "y = 1\n"})
    assert out.ok and not outside.exists()
    assert sorted(p.name for p in ws.iterdir()) == [".a.py.hc-tmp", "a.py", "b.py"]


def test_edit_keeps_the_files_mode_and_line_endings(tmp_path):
    """An edited executable lost its x bit (the replacement file got 0644), and a CRLF file came
    back LF in every line (text-mode read and write)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    script = ws / "run.sh"
    script.write_bytes(b"#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (ws / "m.py").write_bytes(b"def f():\r\n    return 1\r\n\r\nX = 2\r\n")
    box = ToolBox(ws)
    assert box.call("edit", {"path": "run.sh", "old_str": "hi", "new_str": "ho"}).ok
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    out = box.call(
        "edit",
        {"path": "m.py", "old_str": "def f():\n    return 1", "new_str": "def f():\n    return 3"},
    )
    assert out.ok, out.observation
    assert (ws / "m.py").read_bytes() == b"def f():\r\n    return 3\r\n\r\nX = 2\r\n"
    assert box.call("edit", {"path": "m.py", "old_str": "X = 2", "new_str": "X = 5"}).ok
    assert (ws / "m.py").read_bytes().endswith(b"\r\nX = 5\r\n")


def test_read_file_and_search_refuse_fifos_and_inverted_ranges(tmp_path):
    """`read_file` on a FIFO the model made (`mkfifo p`) blocked the harness forever."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("one\ntwo\n")
    os.mkfifo(ws / "p")
    box = ToolBox(ws)
    with deadline(10):
        out = box.call("read_file", {"path": "p"})
        assert not out.ok and "not a regular file" in out.observation
        out = box.call("search", {"pattern": "x", "path": "p"})
        assert not out.ok and "not a regular file" in out.observation
    out = box.call("read_file", {"path": "a.txt", "start_line": 2, "end_line": 1})
    assert not out.ok and "before start_line" in out.observation


def test_read_file_counts_lines_like_pytest(tmp_path):
    """Line numbers split at form feeds / U+2028 (str.splitlines), so they disagreed with the
    tracebacks the model was fixing."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text('x = 1\n\x0c\ny = "p\u2028q"\nz = 3\n', encoding="utf-8")
    out = ToolBox(ws).call("read_file", {"path": "a.py"})
    assert "of 4]" in out.observation and "4| z = 3" in out.observation


# ---- workspaces the model shaped ------------------------------------------------------------


def test_diff_trees_never_reads_through_links_or_fifos(tmp_path):
    """A dangling symlink in a task's repo crashed every diff (FileNotFoundError: `harness run
    --model reference` died with a traceback); a FIFO in the workspace hung it; a symlink put where
    a file was got read through (to /dev/zero: the harness's memory)."""
    old, new = tmp_path / "old", tmp_path / "new"
    for d in (old, new):
        d.mkdir()
        (d / "dangling").symlink_to("../nowhere")
        (d / "same.py").write_text("a = 1\n")
    (old / "f.py").write_text("x = 1\n")
    (new / "f.py").symlink_to("/dev/zero")
    os.mkfifo(new / "pipe")
    with deadline(10):
        d = diff_trees(old, new)
    assert d.changed == [] and d.skipped_binary == ["f.py"]


def test_patches_of_form_feeds_and_lone_carriage_returns_apply(tmp_path):
    """The recorded patch split lines at \\f, \\v, U+2028 and lone \\r like str.splitlines and
    added `\\ No newline` markers mid-file: the trajectory's patch did not apply."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    text = 'x = 1\n\x0c\ny = "p\u2028q"\nk\rl\nz = 3\n'
    for d in (a, c):
        (d / "f.py").write_text(text, encoding="utf-8", newline="")
    (b / "f.py").write_text(text.replace("z = 3", "z = 4"), encoding="utf-8", newline="")
    res = apply_patch(c, diff_trees(a, b).patch)
    assert res.ok, res.message
    assert (c / "f.py").read_bytes() == (b / "f.py").read_bytes()


def test_an_agents_fifo_neither_hangs_nor_breaks_grading(tmp_path):
    task = load_task(user_task(tmp_path))
    with deadline(60):
        ep = run_episode(task, ScriptedClient([FIX, run_cmd("mkfifo pipe src/pipe2"), SUBMIT]))
    assert ep.exit_status == "submitted" and ep.error is None
    assert ep.grade["status"] == "resolved" and ep.changed_files == ["src/pkg/__init__.py"]
    ws = tmp_path / "ws"
    copy_tree(task.repo, ws)
    os.mkfifo(ws / "p")
    copy_tree(ws, tmp_path / "copy")  # skipped, not an error
    assert not (tmp_path / "copy" / "p").exists()


def test_a_directory_where_a_hidden_test_goes_does_not_hide_it(tmp_path):
    """copytree put the hidden test file *inside* a directory the model had made at its path,
    so the hidden tests never ran as written."""
    task = load_task(user_task(tmp_path))
    ws = tmp_path / "ws"
    copy_tree(task.repo, ws)
    init = ws / "src" / "pkg" / "__init__.py"
    init.write_text(init.read_text().replace("a - b", "a + b"))
    (ws / "tests" / "test_add.py").mkdir(parents=True)
    (ws / "tests" / "test_add.py" / "x.txt").write_text("x")
    g = grade_workspace(task, ws)
    assert g.status == "resolved", g.message


def test_non_utf8_file_names_do_not_crash_the_episode(tmp_path):
    """A file name that is not UTF-8 (in the task's repo, or made by the model) reached the
    observations as surrogate escapes; Telemetry's INSERT raised UnicodeEncodeError out of
    run_episode and the whole run died."""
    d = user_task(tmp_path)
    with open(os.fsencode(d / "repo") + b"/caf\xe9.py", "wb") as f:
        f.write(b"x = 1\n")
    task = load_task(d)
    script = [
        {"name": "list_dir", "arguments": {}},
        run_cmd("ls"),
        {"name": "create_file", "arguments": {"path": "n\udcff.py", "content": "y = 2\n"}},
        FIX,
        SUBMIT,
    ]
    with Telemetry(tmp_path / "t.db") as tel:
        ep = run_episode(task, ScriptedClient(script), EpisodeLimits(), tel)
        assert ep.resolved
        assert "caf\ufffd.py" in ep.steps[0]["calls"][0]["observation"]
        (status,) = tel.query("SELECT status FROM episodes")[0]
        assert status == "submitted"
        assert tel.export(tmp_path / "exp")["sft_examples"] == 1


# ---- structural checks ----------------------------------------------------------------------


def test_structural_checks_judge_only_files_inside_the_repo(tmp_path):
    """Checks parsed files outside the sandbox through symlinks: a link to a FIFO or /dev/zero
    blocked or ate memory, and a link to a host file could satisfy `function_exists`."""
    ws, host = tmp_path / "ws", tmp_path / "host"
    (ws / "pkg").mkdir(parents=True)
    host.mkdir()
    (host / "mod.py").write_text("def new_name():\n    return 1\n")
    os.mkfifo(host / "fifo")
    (ws / "pkg" / "mod.py").symlink_to(host / "mod.py")
    (ws / "pkg" / "zz.py").symlink_to(host / "fifo")
    (ws / "pkg" / "ok.py").write_text("def other():\n    return 2\n")
    with deadline(10):
        exists = run_check(ws, StructuralCheck("function_exists", "new_name", module="pkg/mod.py"))
        absent = run_check(ws, StructuralCheck("name_absent", "old_name"))
    assert not exists.ok and "not a regular file inside the repository" in exists.detail
    assert absent.ok
    (ws / "vendor").symlink_to(host)
    present = run_check(ws, StructuralCheck("name_present", "new_name", path="vendor"))
    assert not present.ok


# ---- task.toml and the CLI ------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("[limits]\ntest_timeout_s = nan\n", "limits.test_timeout_s must be a positive number"),
        ("[limits]\nmemory_mb = 0.5\n", "limits.memory_mb must be a whole number"),
        ("[limits]\nmax_steps = 2.5\n", "limits.max_steps must be a whole number"),
    ],
)
def test_limits_that_would_break_grading_are_refused_at_load(tmp_path, extra, needle):
    """nan passed `v <= 0` (every grade became a sandbox error), and 0.5 MB / 0.5 steps were
    truncated to 0."""
    d = user_task(tmp_path)
    text = (d / "task.toml").read_text().replace("[env]", extra + "[env]")
    (d / "task.toml").write_text(text)
    with pytest.raises(HillclimbError, match=needle):
        load_task(d)


def test_whole_number_limits_written_as_floats_still_load(tmp_path):
    d = user_task(tmp_path, toml_extra="[limits]\nmax_steps = 4.0\nwall_s = 0.5\n")
    t = load_task(d)
    assert t.limits.max_steps == 4 and t.limits.wall_s == 0.5


def test_a_check_caller_must_be_a_string(tmp_path):
    d = tmp_path / "t"
    (d / "repo").mkdir(parents=True)
    (d / "task.toml").write_text(
        'id = "r"\nkind = "refactor"\ninstruction = "i"\n'
        '[[checks]]\ntype = "called_from"\nmodule = "a.py"\ncaller = 3\nname = "f"\n'
    )
    with pytest.raises(HillclimbError, match=r"checks\[0\].caller must be a non-empty string"):
        load_task(d)


def test_grade_solution_that_is_not_utf8_is_one_error_line(tmp_path, capsys):
    d = user_task(tmp_path)
    with open(d / "solution.patch", "ab") as f:
        f.write(b"\xe9\n")
    assert run_cli(["harness", "grade", "--task", str(d), "--solution"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "solution.patch is not UTF-8" in err
    assert run_cli(["harness", "grade", "--task", str(d), "--patch", str(tmp_path)]) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_reference_run_over_a_repo_with_links_and_odd_names(tmp_path, capsys):
    """`harness run --model reference` crashed with a traceback on a repo holding a dangling
    symlink; a deleted file whose name has a quote broke the reference's `rm` command."""
    d = user_task(tmp_path)
    repo = d / "repo"
    (repo / "dangling").symlink_to("../nowhere")
    (repo / "outside").symlink_to("/etc/hostname")
    (repo / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (repo / "with space ü.txt").write_text("hi\n")
    (repo / "it's.txt").write_text("remove me\n")
    with open(d / "tests" / "test_add.py", "a") as f:
        f.write('\ndef test_removed():\n    assert not Path("it\'s.txt").exists()\n')
    text = (d / "task.toml").read_text().replace('"tests/test_add.py::test_add"', '"tests/test_add.py::test_add", "tests/test_add.py::test_removed"')  # fmt: skip
    (d / "task.toml").write_text(text)
    with open(d / "solution.patch", "a") as f:
        f.write(
            "diff --git a/it's.txt b/it's.txt\ndeleted file mode 100644\n"
            "--- a/it's.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-remove me\n"
        )
    out = tmp_path / "out"
    rc = run_cli(["harness", "run", "--tasks", str(d), "--model", "reference", "--out", str(out),
                  "--no-telemetry", "--json"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    traj = (out / "trajectories" / "user-task.json").read_text()
    assert '"resolved": true' in traj


# ---- the sandbox ----------------------------------------------------------------------------


def test_sandbox_refuses_system_directories_and_self_copies(tmp_path, monkeypatch):
    """`hillclimb sandbox run --workspace /` copied the root file system into /tmp (itself
    included); `--in-place --workspace /usr` handed /usr to the sandbox uid (chown clears the
    setuid bits that restoring the owner does not bring back). Nothing is run here: both the copy
    and the run are replaced, so the test is safe on the old code too."""
    import hillclimb.sandbox.core as core

    def never(*a, **k):
        raise AssertionError("the sandbox went ahead with a system directory")

    monkeypatch.setattr(core, "_run", never)
    monkeypatch.setattr(core.shutil, "copytree", never)
    for ws, copy in (("/", True), ("/", False), ("/usr", False), ("/etc", True)):
        with pytest.raises(HillclimbError, match="system directory"):
            core.run_sandboxed(["true"], ws, copy_workspace=copy)
    monkeypatch.setattr(core.tempfile, "gettempdir", lambda: str(tmp_path / "inner" / "tmp"))
    with pytest.raises(HillclimbError, match="contains the temporary directory"):
        core.run_sandboxed(["true"], tmp_path, copy_workspace=True)
