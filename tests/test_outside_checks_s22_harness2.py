"""Outside checks of the agent harness as a new user and a model drive it (session 22, harness2).

Each test is a regression for a defect found here: `harness run --tasks` on the climb's own
held-out task folder (its tasks sit in groups one level down: "no task directories"), a served
export that exported nothing without saying why, tool calls whose paths are symlink loops or
whose JSON spells a lone surrogate (`\\ud800`: the episode ended in a harness error, and the
conversation could no longer be tokenized), task limits the sandbox refuses (loaded fine, then
every `run` and every grade failed), and tool arguments below the minimum their schema states.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.harness.agent import EpisodeLimits, run_episode
from hillclimb.harness.clients import ScriptedClient
from hillclimb.harness.task import find_task_dirs, load_task
from hillclimb.harness.tools import TOOL_SCHEMAS, ToolBox

SUBMIT = {"name": "submit", "arguments": {}}
S, E = "<tool_call>", "</tool_call>"


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def qa_task(root: Path, task_id: str) -> Path:
    """A repo_qa task: graded without running anything, so a reference run takes milliseconds."""
    d = root / task_id
    (d / "repo").mkdir(parents=True)
    (d / "repo" / "m.py").write_text("def answer():\n    return 42\n")
    (d / "task.toml").write_text(
        f'id = "{task_id}"\nkind = "repo_qa"\ninstruction = "What does answer() return?"\n'
        'answer = "42"\n'
    )
    return d


def repo_task(root: Path, toml_extra: str = "") -> Path:
    d = qa_task(root, "qa")
    with (d / "task.toml").open("a") as f:
        f.write(toml_extra)
    return d


# ---- Part A 1: the climb's grouped task folders ------------------------------------------------


def test_harness_run_finds_tasks_in_group_folders(tmp_path, capsys):
    """`harness run --tasks runs/X/12-eval/harness-tasks` (the climb writes its held-out tasks as
    harness-tasks/new-mutations/<task>, harness-tasks/unseen-projects/<task>) said "no task
    directories (with task.toml)": every task sits one level down. Now group folders are
    searched (a few levels, never through a symlink loop) and both groups run."""
    root = tmp_path / "harness-tasks"
    qa_task(root / "new-mutations", "qa-a")
    qa_task(root / "unseen-projects", "qa-b")
    (root / "new-mutations" / "manifest.json").write_text("{}")
    (root / "unseen-projects" / "loop").symlink_to(root)  # a link back up: no endless walk
    found = find_task_dirs(root)
    assert [p.name for p in found] == ["qa-a", "qa-b"]
    out = tmp_path / "out"
    rc = run_cli(["harness", "run", "--tasks", str(root), "--model", "reference", "--out",
                  str(out), "--no-telemetry", "--json"])  # fmt: skip
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"] == 2 and summary["resolved"] == 2


def test_no_tasks_error_names_the_folders_it_looked_in(tmp_path, capsys):
    root = tmp_path / "tasks"
    (root / "group-a" / "not-a-task").mkdir(parents=True)
    (root / "group-b").mkdir()
    with pytest.raises(HillclimbError, match="group-a") as exc:
        find_task_dirs(root)
    assert "group-b" in str(exc.value)


# ---- Part A 2: an export that exports nothing says why -----------------------------------------


def test_served_export_says_why_an_accepted_answer_was_not_exported(tmp_path, capsys):
    """`telemetry export --served F` printed "0 SFT examples (0 harness, 0 API)" while
    export.json recorded one accepted answer left out for lack of consent: the operator had no
    hint that `keys consent` exists. The reason and the command are printed now."""
    from hillclimb.serve.flywheel import FlywheelStore

    db = tmp_path / "flywheel.sqlite"
    with FlywheelStore(db) as s:
        s.record_served(
            "r1", account="alice", endpoint="chat", model="m",
            request={"messages": [{"role": "user", "content": "q"}]},
            response={"choices": [{"content": "a"}]},
        )  # fmt: skip
        s.record_feedback("r1", account="alice", accepted=True)
    out = tmp_path / "export"
    assert run_cli(["telemetry", "export", "--served", str(db), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0 SFT examples" in text
    assert "1 accepted API answer" in text and "consent" in text
    assert "hillclimb keys consent --name NAME --on" in text
    assert json.loads((out / "export.json").read_text())["api"]["no_consent"] == 1


# ---- Part B: tool calls a model can make -------------------------------------------------------


@pytest.fixture
def box(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text("x = 1\n")
    os.symlink("loop2", ws / "loop1")
    os.symlink("loop1", ws / "loop2")
    os.symlink("self", ws / "self")
    return ToolBox(ws, run_timeout_s=10)


@pytest.mark.parametrize(
    "name, args",
    [
        ("read_file", {"path": "loop1"}),
        ("read_file", {"path": "self"}),
        ("edit", {"path": "loop1", "old_str": "a", "new_str": "b"}),
        ("create_file", {"path": "loop1/x.py", "content": "x = 1\n"}),
        ("create_file", {"path": "self", "content": "x\n", "overwrite": True}),
        ("list_dir", {"path": "loop2"}),
        ("search", {"pattern": "x", "path": "self"}),
    ],
)
def test_a_symlink_loop_is_an_observation_not_a_harness_error(box, name, args):
    """`ln -s self self` then `read_file self`: Path.resolve raised RuntimeError("Symlink loop"),
    which no tool handler caught, and the whole episode ended `error` (a harness error)."""
    out = box.call(name, args)
    assert not out.ok and "symbolic link" in out.observation


def test_an_episode_survives_a_model_that_makes_a_symlink_loop(tmp_path):
    d = qa_task(tmp_path, "qa")
    actions = [
        {"name": "run", "arguments": {"command": "ln -s me me"}},
        {"name": "read_file", "arguments": {"path": "me"}},
        {"name": "submit", "arguments": {"answer": "42"}},
    ]
    ep = run_episode(load_task(d), ScriptedClient(actions), EpisodeLimits(max_steps=5))
    assert ep.exit_status == "submitted" and ep.resolved, ep.error
    assert "symbolic link" in ep.steps[1]["calls"][0]["observation"]


@pytest.mark.parametrize(
    "name, args",
    [
        ("run", {"command": "echo \ud800"}),
        ("search", {"pattern": "\udcff"}),
        ("create_file", {"path": "s\ud800.txt", "content": "x\n"}),
        ("create_file", {"path": "t.txt", "content": "x\ud800\n"}),
        ("edit", {"path": "a.py", "old_str": "x = 1", "new_str": "x = '\ud800'"}),
    ],
)
def test_a_lone_surrogate_in_an_argument_is_an_observation(box, name, args):
    """A model's JSON may spell `"\\ud800"`; json.loads turns it into a lone surrogate, which no
    file, process argument or UTF-8 text can hold: UnicodeEncodeError escaped the tool and the
    episode ended `error`. Now it is a malformed call the model is told about."""
    out = box.call(name, args)
    assert not out.ok and out.malformed and "surrogate" in out.observation
    assert not any("\ufffd" in p.name or p.name == "t.txt" for p in box.workspace.iterdir())
    assert (box.workspace / "a.py").read_text() == "x = 1\n"


def test_an_episode_with_surrogate_escapes_in_its_calls_stays_renderable(tmp_path):
    """The same call written as text (how our models call tools): the episode ended `error`, and
    the conversation, holding the surrogate in the call's name or arguments, could no longer be
    rendered by the tokenizer (the next turn of a local model failed the same way)."""
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    d = qa_task(tmp_path, "qa")
    actions = [
        f'{S}{{"name": "run", "arguments": {{"command": "echo \\ud800"}}}}{E}',
        f'{S}{{"name": "run\\udc80", "arguments": {{}}}}{E}',
        f'{S}{{"name": "list_dir", "arguments": {{"path": "\\ud83d"}}}}{E}',
        {"name": "submit", "arguments": {"answer": "42"}},
    ]
    lim = EpisodeLimits(max_steps=6, max_consecutive_errors=4)
    ep = run_episode(load_task(d), ScriptedClient(actions), lim)
    assert ep.exit_status == "submitted" and ep.resolved, ep.error
    calls = [c for s in ep.steps[:3] for c in s["calls"]]
    assert all(c["malformed"] and "surrogate" in c["observation"] for c in calls)
    tok = bytelevel_tokenizer()
    ids = tok.encode_chat(ep.messages, tools=TOOL_SCHEMAS, add_generation_prompt=True)
    first = next(i for i, m in enumerate(ep.messages) if m["role"] == "assistant")
    head = tok.encode_chat(ep.messages[: first + 1], tools=TOOL_SCHEMAS)
    assert head + tok.encode_chat_tail(ep.messages, first + 1, tools=TOOL_SCHEMAS) == ids
    json.dumps(ep.to_json(), ensure_ascii=False).encode("utf-8")  # an SFT export can write it


@pytest.mark.parametrize(
    "args",
    [{"path": "a.py", "start_line": 0}, {"path": "a.py", "start_line": -5, "end_line": -1}],
)
def test_arguments_below_their_schemas_minimum_are_refused(box, args):
    """read_file's schema says `start_line`/`end_line` >= 1, but the check ignored `minimum`:
    start_line=-5, end_line=-1 answered "[a.py: lines 1--1 of 1]" and "more below: read_file
    start_line=0" — a hint to make another invalid call."""
    out = box.call("read_file", args)
    assert not out.ok and out.malformed and "at least 1" in out.observation
    assert "--1" not in out.observation


# ---- task.toml limits the sandbox cannot apply -------------------------------------------------


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("[limits]\ntest_timeout_s = 1e12\n", "limits.test_timeout_s"),
        ("[limits]\nmemory_mb = 1_000_000_000_000_000\n", "limits.memory_mb"),
    ],
)
def test_limits_the_sandbox_refuses_are_refused_at_load(tmp_path, extra, needle):
    """`test_timeout_s = 1e12` (or a memory limit past 2**40 MB) loaded, then every `run` call
    raised the sandbox's ConfigError out of the tool (the episode ended `error`) and every grade
    failed: the task could never be solved. It is refused when it loads, naming the field."""
    d = repo_task(tmp_path, extra)
    with pytest.raises(HillclimbError, match=needle):
        load_task(d)


@pytest.mark.parametrize("answer", ['""', '"..."', '["42", "`!`"]'])
def test_an_accepted_answer_that_normalises_to_nothing_is_refused_at_load(tmp_path, answer):
    """`answer = "..."` loaded, and the grader's normalisation (quotes, trailing `.`/`!`
    stripped) made it "": any answer that also normalised to nothing ("!") resolved the task,
    and `answer = ""` could never be matched. Such a task measures nothing: refused at load."""
    d = qa_task(tmp_path, "qa")
    toml = (d / "task.toml").read_text().replace('answer = "42"', f"answer = {answer}")
    (d / "task.toml").write_text(toml)
    with pytest.raises(HillclimbError, match="answer"):
        load_task(d)


# ---- the episode's wall-clock limit covers the model's turns too ------------------------------


@pytest.fixture
def slow_endpoint():
    """An OpenAI-compatible endpoint that answers each chat request after 4 s."""
    import http.server
    import threading

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(4)
            body = json.dumps({"choices": [{"message": {"content": "thinking"}}]}).encode()
            with contextlib.suppress(OSError):  # the client may have given up already
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *a):  # quiet
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_a_slow_endpoint_cannot_stretch_an_episode_past_its_wall_limit(tmp_path, slow_endpoint):
    """`--wall 1` was checked only between turns: an endpoint that took 4 s per reply (or hung
    for the whole `--request-timeout`, 300 s) kept the episode running that long. The request now
    ends at the episode's deadline, and the episode ends `timeout`, not `model_error`."""
    from hillclimb.harness.clients import OpenAIClient

    d = qa_task(tmp_path, "qa")
    client = OpenAIClient(slow_endpoint, "m", timeout_s=30, retries=1, backoff_s=0.1)
    t0 = time.monotonic()
    ep = run_episode(load_task(d), client, EpisodeLimits(max_steps=3, wall_s=1.0))
    assert time.monotonic() - t0 < 3.0
    assert ep.exit_status == "timeout", (ep.exit_status, ep.error)


@pytest.mark.parametrize("pattern", ["zzz\n", "def f():\n    return 1"])
def test_a_multi_line_search_pattern_is_refused_not_matched_line_by_line(tmp_path, pattern):
    """grep reads a pattern with a newline as several patterns, one per line: searching for
    "zzz\\n" (a trailing newline, as models write) answered "5 match(es)", every line of the
    repository (the empty second pattern matches all), for a string that is nowhere in it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text("def f():\n    return 1\n\ndef g():\n    return 2\n")
    out = ToolBox(ws).call("search", {"pattern": pattern})
    assert not out.ok and "one line" in out.observation and "match(es)" not in out.observation
