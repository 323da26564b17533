"""Outside checks of the harness and sandbox with adversarial agents and hand-made tasks (session 21).

Each test is a regression for a defect found by driving the harness the way its authors had not:
an agent that plants a module next to a terminal task's verifier (the verifier imported it and
the episode graded resolved without doing the task), a resumed `harness run` after a broken
task.toml was fixed (the old error record stayed beside the new result: 1 task counted as 2),
damaged trajectory files (resume crashed with a traceback), task.toml environments the OS cannot
pass to a process (accepted at load, then every run and grade failed), and an agent that leaves a
huge file behind (the recorded patch held all of it: seconds to minutes of difflib and gigabytes
of memory in the harness process, outside the sandbox).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hillclimb
from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.harness.agent import run_episode
from hillclimb.harness.clients import ScriptedClient
from hillclimb.harness.task import load_task
from hillclimb.harness.task_runner import run_tasks

SUBMIT = {"name": "submit", "arguments": {}}


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def terminal_task(root: Path) -> Path:
    """A terminal task as `harness generate` writes them: a data file, a hidden verifier."""
    d = root / "term"
    (d / "repo" / "logs").mkdir(parents=True)
    (d / "tests").mkdir()
    (d / "repo" / "logs" / "app.log").write_text("1 INFO a\n2 ERROR b\n3 INFO c\n")
    (d / "tests" / "verify.py").write_text(
        "import json\nimport pathlib\nimport sys\n\n"
        "p = pathlib.Path('errors.log')\n"
        "if not p.is_file() or p.read_text().splitlines() != ['2 ERROR b']:\n"
        "    print(json.dumps({'ok': False}))\n    sys.exit(1)\n"
        "print('OK')\n"
    )
    (d / "task.toml").write_text(
        'id = "term"\nkind = "terminal"\ninstruction = "copy ERROR lines to errors.log"\n'
        'test_command = "python tests/verify.py"\n'
    )
    (d / "solution.sh").write_text("grep ERROR logs/app.log > errors.log\n")
    return d


def bugfix_task(root: Path, name: str = "task", task_id: str = "fix-add") -> Path:
    """A hand-written bugfix task whose hidden tests go where the repo has no tests/."""
    d = root / name
    (d / "repo" / "pkg").mkdir(parents=True)
    (d / "tests").mkdir()
    (d / "repo" / "pkg" / "__init__.py").write_text("def add(a, b):\n    return a - b\n")
    (d / "tests" / "test_add.py").write_text(
        "from pkg import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    (d / "task.toml").write_text(
        f'id = "{task_id}"\nkind = "bugfix"\ninstruction = "fix add"\n'
        'FAIL_TO_PASS = ["tests/test_add.py::test_add"]\n'
    )
    (d / "solution.patch").write_text(
        "diff --git a/pkg/__init__.py b/pkg/__init__.py\n"
        "--- a/pkg/__init__.py\n+++ b/pkg/__init__.py\n@@ -1,2 +1,2 @@\n"
        " def add(a, b):\n-    return a - b\n+    return a + b\n"
    )
    return d


def create(path: str, content: str) -> dict:
    return {"name": "create_file", "arguments": {"path": path, "content": content}}


def run_cmd(command: str) -> dict:
    return {"name": "run", "arguments": {"command": command}}


# ---- grading: the hidden tests' directory is theirs -------------------------------------------


def test_a_module_planted_beside_the_verifier_does_not_fake_a_pass(tmp_path):
    """`python tests/verify.py` puts tests/ first on sys.path; the agent could create
    `tests/json.py` (`os._exit(0)`), the verifier imported it and exited 0: resolved, with the
    task not done. The hidden tests' directory, absent from repo/, now holds only them."""
    task = load_task(terminal_task(tmp_path))
    hack = ScriptedClient([create("tests/json.py", "import os\nos._exit(0)\n"), SUBMIT])
    ep = run_episode(task, hack)
    assert ep.exit_status == "submitted"
    assert not ep.resolved and ep.grade["status"] == "unresolved"
    # the same trick as a package, and an honest solution next to a planted file
    pkg = ScriptedClient([create("tests/json/__init__.py", "import os\nos._exit(0)\n"), SUBMIT])
    assert not run_episode(task, pkg).resolved
    honest = ScriptedClient(
        [run_cmd("grep ERROR logs/app.log > errors.log"), create("tests/notes.txt", "x\n"), SUBMIT]
    )
    assert run_episode(task, honest).resolved


def test_agent_files_in_a_hidden_test_directory_are_not_graded(tmp_path):
    """A pytest task whose repo has no tests/: an agent's own file there (here one that fails)
    is not the task's test suite; a directory the repo has keeps the agent's files."""
    task = load_task(bugfix_task(tmp_path))
    fix = {
        "name": "edit",
        "arguments": {"path": "pkg/__init__.py", "old_str": "a - b", "new_str": "a + b"},
    }
    extra = create("tests/test_mine.py", "def test_mine():\n    assert False\n")
    helper = create("pkg/helper.py", "X = 1\n")
    ep = run_episode(task, ScriptedClient([fix, extra, helper, SUBMIT]))
    assert ep.resolved
    assert "tests/test_mine.py::test_mine" not in ep.grade["tests"]
    assert "pkg/helper.py" in ep.changed_files


# ---- `harness run`: resume ---------------------------------------------------------------------


def test_resume_after_fixing_a_broken_task_counts_it_once(tmp_path):
    """A broken task.toml is recorded under the directory's name; once fixed, its result is
    recorded under its id, and the old error record stayed: 2 tasks, 1/2 resolved, and an error
    counted for a task that now ran. The task's stale record goes when its new one is written."""
    tasks = tmp_path / "tasks"
    d = bugfix_task(tasks, name="mytask", task_id="fix-add")
    toml = d / "task.toml"
    good = toml.read_text()
    toml.write_text(good.replace('kind = "bugfix"', 'kind = "bugfx"'))
    out = tmp_path / "out"
    first = run_tasks(tasks, lambda: ScriptedClient([]), out, check_tasks=False)
    assert first.summary["exit_statuses"] == {"task_error": 1}
    toml.write_text(good)
    fix = {
        "name": "edit",
        "arguments": {"path": "pkg/__init__.py", "old_str": "a - b", "new_str": "a + b"},
    }
    again = run_tasks(tasks, lambda: ScriptedClient([fix, SUBMIT]), out, check_tasks=False)
    assert again.summary["tasks"] == 1 and again.summary["resolve_rate"] == 1.0
    assert again.summary["errors"] == 0
    assert sorted(p.name for p in (out / "trajectories").iterdir()) == ["fix-add.json"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    # and back: a task that breaks again replaces its old result instead of adding a row
    toml.write_text(good.replace('kind = "bugfix"', 'kind = "bugfx"'))
    third = run_tasks(tasks, lambda: ScriptedClient([]), out, check_tasks=False)
    assert third.summary["tasks"] == 1 and third.summary["exit_statuses"] == {"task_error": 1}


@pytest.mark.parametrize("damage", [b"[1, 2]", b"\xff\xfe\x00", b'"text"', b"{broken"])
def test_resume_over_a_damaged_trajectory_file_reruns_the_task(tmp_path, damage, capsys):
    """A trajectory file that is valid JSON but not an object, or not UTF-8 (a disk error, a
    hand edit) crashed `harness run` with a traceback; such a file is now rerun and replaced."""
    tasks = tmp_path / "tasks"
    bugfix_task(tasks, task_id="fix-add")
    out = tmp_path / "out"
    (out / "trajectories").mkdir(parents=True)
    (out / "trajectories" / "fix-add.json").write_bytes(damage)
    (out / "trajectories" / "stray.json").write_bytes(damage)  # no task of this run
    argv = ["harness", "run", "--tasks", str(tasks), "--model", "reference", "--out", str(out)]
    assert run_cli(argv + ["--no-telemetry", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"] == 1 and summary["resolved"] == 1
    traj = json.loads((out / "trajectories" / "fix-add.json").read_text())
    assert traj["resolved"] is True


# ---- task.toml: what the OS cannot run is refused at load -------------------------------------


@pytest.mark.parametrize(
    "toml_tail, needle",
    [
        ('[env]\n"A=B" = "x"\n', "env"),
        ('[env]\n"" = "x"\n', "env"),
        ('[env]\nX = "a\\u0000b"\n', "env"),
        ('[env]\n"X\\u0000" = "1"\n', "env"),
        ('test_command = "python -m pytest tests\\u0000"\n', "test_command"),
    ],
)
def test_env_and_commands_the_os_cannot_pass_are_refused_at_load(tmp_path, toml_tail, needle):
    """A NUL byte or `=` in an environment name, or a NUL in the command, loaded fine and then
    failed inside every grade (`error: sandbox: embedded null byte`) and every `run` call (a
    harness error), after the model's turns were spent; `harness grade` exited 1 as if the
    submission were wrong. It is a bad task: one error naming the field, exit 2."""
    d = bugfix_task(tmp_path)
    toml = d / "task.toml"
    if toml_tail.startswith("test_command"):
        toml.write_text(toml.read_text().replace('kind = "bugfix"', toml_tail + 'kind = "bugfix"'))
    else:
        toml.write_text(toml.read_text() + toml_tail)
    with pytest.raises(HillclimbError, match=needle):
        load_task(d)
    assert run_cli(["harness", "grade", "--task", str(d), "--solution"]) == 2


# ---- tools: a model's NUL byte is its mistake, not the harness's -------------------------------


def test_a_nul_byte_in_a_command_or_pattern_is_an_observation(tmp_path):
    """`run` and `search` passed a NUL byte on to the OS, whose ValueError escaped the tool and
    ended the episode as a harness `error` (retried on every resume); it is now a tool error the
    model reads, and the episode goes on to submit."""
    task = load_task(bugfix_task(tmp_path))
    actions = [
        run_cmd("echo a\0b"),
        {"name": "search", "arguments": {"pattern": "add\0"}},
        {"name": "search", "arguments": {"pattern": "return", "path": "pkg\0"}},
        SUBMIT,
    ]
    ep = run_episode(task, ScriptedClient(actions))
    assert ep.exit_status == "submitted", ep.error
    observations = [c["observation"] for s in ep.steps for c in s["calls"]][:3]
    assert all(o.startswith("Error:") and "NUL" in o for o in observations), observations


# ---- huge files an agent leaves behind ----------------------------------------------------------


def test_a_huge_file_left_in_the_workspace_stays_out_of_the_patch(tmp_path):
    """An agent whose command writes a big file (a log, `yes > out`) made the recorded patch
    hold every line of it: difflib over it in the harness process (outside the sandbox's memory
    limit; 50 MB took 14 s and 1.3 GB), and the patch copied into the trajectory and telemetry.
    Files past the size the tools show are listed apart, as binaries are; `edit` refuses them."""
    task = load_task(bugfix_task(tmp_path))
    fix = {
        "name": "edit",
        "arguments": {"path": "pkg/__init__.py", "old_str": "a - b", "new_str": "a + b"},
    }
    big = "python -c \"open('big.log', 'w').write('line\\n' * 700_000)\""
    edit_big = {"name": "edit", "arguments": {"path": "big.log", "old_str": "x", "new_str": "y"}}
    ep = run_episode(task, ScriptedClient([fix, run_cmd(big), edit_big, SUBMIT]))
    assert ep.resolved
    assert ep.changed_files == ["pkg/__init__.py"]
    assert "big.log" not in ep.patch and len(ep.patch) < 1000
    refused = ep.steps[2]["calls"][0]["observation"]
    assert refused.startswith("Error:") and "too large" in refused


# ---- the sandbox: the installed package is not the agent's to read -----------------------------

AGENT_PROBE = """
import json, sys
from pathlib import Path
import hillclimb
from hillclimb.harness.tools import ToolBox

pkg = Path(hillclimb.__file__).parent
projects = pkg / "harness" / "taskgen" / "projects" / "python"
assert projects.is_dir()
out = ToolBox(Path(sys.argv[1])).call("run", {"command": f"ls {projects}; cat {projects}/*/*.py"})
print(json.dumps(out.observation))
"""


def test_the_run_tool_cannot_read_the_installed_package(tmp_path):
    """With a regular (non-editable) install the package lies in the site-packages the sandbox
    binds, and an agent's `run` could list and copy the task generator's projects: the correct
    code (and full tests) of every generated task. The code checker hid the package; the
    harness's commands did not. Here a venv holds a regular copy of this package."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
    )
    site = next((venv / "lib").glob("python*/site-packages"))
    shutil.copytree(
        Path(hillclimb.__file__).parent,
        site / "hillclimb",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "mine.py").write_text("def ok():\n    return 1\n")
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-c", AGENT_PROBE, str(ws)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},  # the copy, only
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    observation = json.loads(res.stdout)
    assert "def " not in observation and "roman" not in observation, observation[:500]


# ---- endpoints that answer nonsense ---------------------------------------------------------------


@pytest.mark.parametrize(
    "usage",
    [[1, 2], "many", {"prompt_tokens": "abc"}, {"prompt_tokens": -500, "completion_tokens": 2}],
)
def test_an_endpoints_malformed_usage_is_a_model_error(tmp_path, usage):
    """`usage` that is not an object, or counts that are not non-negative integers, raised
    AttributeError/ValueError out of the client (the episode ended `error`, "harness error"), or
    was summed as is: negative counts lowered the episode's token total below its budget."""
    import httpx

    from hillclimb.harness.clients import OpenAIClient

    def handler(request: httpx.Request) -> httpx.Response:
        call = {"id": "c1", "type": "function",
                "function": {"name": "submit", "arguments": "{}"}}  # fmt: skip
        msg = {"role": "assistant", "content": "", "tool_calls": [call]}
        body = {"choices": [{"message": msg, "finish_reason": "tool_calls"}], "usage": usage}
        return httpx.Response(200, json=body)

    client = OpenAIClient("http://test/v1", "m", retries=0)
    client._client = httpx.Client(transport=httpx.MockTransport(handler))
    ep = run_episode(load_task(bugfix_task(tmp_path)), client)
    assert ep.exit_status == "model_error", (ep.exit_status, ep.error)
    assert "usage" in ep.error and "harness error" not in ep.error
    assert ep.prompt_tokens >= 0 and ep.completion_tokens >= 0


# ---- recorded patches of files with odd names ---------------------------------------------------


def test_patches_of_files_named_with_tabs_or_newlines_apply(tmp_path):
    """A name with a tab or newline went into the diff headers raw: `git apply` refused the
    whole recorded patch (every file of it). Such names are C-quoted, as git writes them."""
    from hillclimb.harness.patching import apply_patch, copy_tree, diff_trees

    names = ["tab\there.py", "new\nline.txt", 'quo"te\tand\\slash.py', "dir\tx/inner.txt",
             "modülé.py", "plain.py"]  # fmt: skip
    old, new, out = tmp_path / "old", tmp_path / "new", tmp_path / "out"
    for root in (old, new):
        root.mkdir()
    for i, name in enumerate(names):
        for root, text in ((old, "one\ntwo\n"), (new, "one\nTWO\n")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        (new / f"added{i}\t{name.replace('/', '_')}").write_text("fresh\n")
    d = diff_trees(old, new)
    assert len(d.changed) == 2 * len(names)
    copy_tree(old, out)
    res = apply_patch(out, d.patch)
    assert res.ok, res.message
    assert diff_trees(out, new).patch == ""


# ---- the sandbox: an interrupted run leaves nothing running -----------------------------------

INTERRUPTED_RUN = """
import os, signal, sys, threading
from hillclimb.sandbox import SandboxLimits, run_sandboxed

signal.signal(signal.SIGINT, signal.default_int_handler)
threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    run_sandboxed(["sleep", sys.argv[3]], sys.argv[1], SandboxLimits(timeout_s=60), backend=sys.argv[2])
except KeyboardInterrupt:
    print("interrupted")
"""


def _processes_with(token: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if token.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


@pytest.mark.parametrize(
    "backend",
    [
        b
        for b in ("bwrap", "unshare")
        if __import__("hillclimb.sandbox").sandbox.probe_backend(b)[0]
    ],
)
def test_an_interrupted_sandbox_run_leaves_no_process_behind(tmp_path, backend):
    """Ctrl-C (or any exception) while a command ran: the command was started in its own
    session, so the interrupt never reached it, and nothing killed it; with the unshare backend
    (no parent-death signal) a `sleep` ran on for its full length after the harness stopped."""
    token = f"{600 + os.getpid() % 1000}.{len(backend)}{os.urandom(3).hex().translate(str.maketrans('abcdef', '123456'))}"
    ws = tmp_path / "ws"
    ws.mkdir()
    res = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_RUN, str(ws), backend, token],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "interrupted" in res.stdout, res.stderr[-2000:]
    for _ in range(40):  # bwrap's --die-with-parent teardown may take a moment
        left = _processes_with(token)
        if not left:
            break
        time.sleep(0.05)
    for pid in left:  # ours: started by this test
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    assert left == []


INTERRUPTED_EPISODE = """
import os, signal, sys, threading
from hillclimb.harness.agent import run_episode
from hillclimb.harness.clients import ScriptedClient
from hillclimb.harness.task import load_task

signal.signal(signal.SIGINT, signal.default_int_handler)
threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
actions = [{"name": "run", "arguments": {"command": "sleep 30"}}, {"name": "submit", "arguments": {}}]
try:
    run_episode(load_task(sys.argv[1]), ScriptedClient(actions))
except KeyboardInterrupt:
    print("interrupted")
"""


def test_an_interrupted_episode_removes_its_workspace(tmp_path):
    """Ctrl-C during an episode (here in a `run` call) left its `hc-episode-*` copy of the
    repository in the temp directory — with whatever the agent wrote there, up to the disk
    quota — once per interrupted run."""
    task = bugfix_task(tmp_path)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    res = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_EPISODE, str(task)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, TMPDIR=str(tmpdir)),
    )  # fmt: skip
    assert "interrupted" in res.stdout, res.stderr[-2000:]
    assert list(tmpdir.glob("hc-episode-*")) == []


def test_one_long_command_does_not_stretch_the_episode_past_its_wall_limit(tmp_path):
    """`wall_s` was checked only between turns, and a `run` call could take the task's whole
    test timeout (120 s by default): a 2 s episode ran 15 s. Commands now stop at the deadline."""
    d = bugfix_task(tmp_path)
    (d / "task.toml").write_text((d / "task.toml").read_text() + "[limits]\nwall_s = 2\n")
    task = load_task(d)
    t0 = time.monotonic()
    ep = run_episode(task, ScriptedClient([run_cmd("sleep 15"), SUBMIT]))
    assert ep.exit_status == "timeout"
    assert time.monotonic() - t0 < 12  # the grade's own test run included
    assert "TIMED OUT" in ep.steps[0]["calls"][0]["observation"]


def test_tasks_with_ids_in_other_scripts_run_side_by_side(tmp_path, capsys):
    """Ids were made file names by an ASCII-only rule: `修复加法` and `测试加法` both became
    `_.json`, and `harness run` refused the whole task set as colliding. Letters of any script
    now stay (ASCII ids keep the names they had), cut to what a file name may hold."""
    from hillclimb.harness.task_runner import _safe_name

    tasks = tmp_path / "tasks"
    bugfix_task(tasks, name="任务一", task_id="修复加法")
    bugfix_task(tasks, name="任务二", task_id="测试加法")
    out = tmp_path / "out"
    argv = ["harness", "run", "--tasks", str(tasks), "--model", "reference", "--out", str(out)]
    assert run_cli(argv + ["--no-telemetry", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resolved"] == 2
    assert sorted(p.name for p in (out / "trajectories").iterdir()) == [
        "修复加法.json",
        "测试加法.json",
    ]
    assert _safe_name("a/b c:d") == "a_b_c_d"
    long = _safe_name("é" * 200)
    assert len(long.encode()) <= 150 and long == "é" * 75


@pytest.mark.skipif(os.geteuid() != 0, reason="the per-run uid (and its chown) is used as root")
def test_an_in_place_run_keeps_set_id_bits(tmp_path):
    """Handing the workspace to the run's uid chowned every file, and a chown clears set-user-ID
    and set-group-ID bits for good: `sandbox run --in-place -- true` stripped them from a
    project's files. Such files are now left with their owner (the run cannot write them)."""
    from hillclimb.sandbox import SandboxLimits, run_sandboxed, sandbox_backend

    if sandbox_backend() is None:
        pytest.skip("no isolation backend")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "suid").write_text("#!/bin/sh\n")
    (ws / "sgid").write_text("#!/bin/sh\n")
    (ws / "suid").chmod(0o4755)
    (ws / "sgid").chmod(0o2755)
    res = run_sandboxed("echo x >> suid; echo $? > rc; true", ws, SandboxLimits(timeout_s=30))
    assert res.status == "ok", res.stderr
    assert (ws / "suid").stat().st_mode & 0o7777 == 0o4755
    assert (ws / "sgid").stat().st_mode & 0o7777 == 0o2755
    assert (ws / "suid").read_text() == "#!/bin/sh\n"  # not the run's to write
    assert (ws / "rc").read_text().strip() != "0"


def test_workspace_copies_keep_sparse_files_sparse(tmp_path):
    """An agent's `truncate -s 250M f1 ... f1000` holds next to no blocks, so the disk quota
    (allocated blocks) lets it through; but every copy the harness makes of the workspace —
    grading's, outside the sandbox and its quota — wrote the full size: 250 GB of zeros for
    that one command. Copies now keep holes as holes (and the bytes exact)."""
    from hillclimb.harness.patching import copy_tree

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    with open(src / "sparse.bin", "wb") as f:
        f.write(b"head")
        f.seek(32 << 20)
        f.write(b"middle")
        f.truncate(64 << 20)
    (src / "plain.txt").write_bytes(b"x" * 10_000)
    (src / "empty").write_bytes(b"")
    (src / "plain.txt").chmod(0o640)
    copy_tree(src, dst)
    copied = dst / "sparse.bin"
    assert copied.stat().st_size == 64 << 20
    assert copied.stat().st_blocks * 512 < (4 << 20)
    with open(copied, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(32 << 20)
        assert f.read(6) == b"middle" and f.read(10) == b"\0" * 10
    assert (dst / "plain.txt").read_bytes() == b"x" * 10_000
    assert (dst / "plain.txt").stat().st_mode & 0o777 == 0o640
    assert (dst / "empty").read_bytes() == b""


def test_structural_checks_do_not_parse_huge_files(tmp_path):
    """A refactor's `name_absent` parses every .py file of the agent's workspace with `ast`, in
    the harness process: a 12 MB file of `x = 1` lines took a minute and 4.7 GB there, and the
    sandbox lets a command write 256 MB files. Past the size bound the check fails, saying why
    (failing closed: the old name could hide in a file that is not read)."""
    from hillclimb.harness.structural import run_check
    from hillclimb.harness.task import StructuralCheck

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "mod.py").write_text("def new_name():\n    return 1\n")
    (ws / "junk.py").write_text("x = 1\n" * 420_000)  # 2.5 MB
    t0 = time.monotonic()
    absent = run_check(ws, StructuralCheck("name_absent", "old_name"))
    exists = run_check(ws, StructuralCheck("function_exists", "x", module="junk.py"))
    assert time.monotonic() - t0 < 5
    assert not absent.ok and "junk.py" in absent.detail and "bytes" in absent.detail
    assert not exists.ok and "bytes" in exists.detail
    assert run_check(ws, StructuralCheck("function_exists", "new_name", module="mod.py")).ok


def test_the_sandboxs_throw_away_copy_keeps_sparse_files_sparse(tmp_path):
    """`hillclimb sandbox run` (copy mode) copied the workspace with a plain copytree: a 1 GB
    sparse file (a disk image, a database) cost 1 GB of the temp directory for every run."""
    from hillclimb.sandbox import SandboxLimits, run_sandboxed, sandbox_backend

    if sandbox_backend() is None:
        pytest.skip("no isolation backend")
    ws = tmp_path / "ws"
    ws.mkdir()
    with open(ws / "image.bin", "wb") as f:
        f.truncate(64 << 20)
    res = run_sandboxed(["du", "-k", "image.bin"], ws, SandboxLimits(timeout_s=30),
                        copy_workspace=True)  # fmt: skip
    assert res.status == "ok", res.stderr
    assert int(res.stdout.split()[0]) < 1024  # KiB allocated in the copy
