"""Episode runner, clients' failure modes, runner resume/bad tasks, telemetry flywheel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.harness.agent import EpisodeLimits, run_episode
from hillclimb.harness.clients import LocalClient, ModelError, ScriptedClient, reference_actions
from hillclimb.harness.task import load_task
from hillclimb.harness.task_runner import run_tasks
from hillclimb.harness.telemetry import Telemetry

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"
FIX = {
    "name": "edit",
    "arguments": {
        "path": "mathx/core.py",
        "old_str": "    if x < lo:\n        return hi",
        "new_str": "    if x < lo:\n        return lo",
    },
}


def test_reference_agent_resolves_and_records(tmp_path):
    task = load_task(TINY)
    with Telemetry(tmp_path / "t.db") as tel:
        ep = run_episode(task, ScriptedClient(reference_actions(task)), EpisodeLimits(), tel)
        assert ep.exit_status == "submitted" and ep.resolved and ep.reward == 1.0
        assert "return lo" in ep.patch and ep.changed_files == ["mathx/core.py"]
        assert ep.messages[0]["role"] == "system" and ep.messages[-1]["role"] == "tool"
        rows = tel.query("SELECT status, verdict FROM edits WHERE episode_id=?", (ep.episode_id,))
        assert rows == [("applied", "tests_passed")]
        assert tel.query("SELECT status, resolved FROM episodes")[0] == ("submitted", 1)


def test_text_format_edit_syntax_rejection_then_fix(tmp_path):
    task = load_task(TINY)
    bad = {
        "name": "edit",
        "arguments": {
            "path": "mathx/core.py",
            "old_str": "        return hi\n    if",
            "new_str": "        return (lo\n    if",
        },
    }
    script = [
        '<think>look first</think><tool_call>{"name": "read_file", "arguments": {"path": "mathx/core.py"}}</tool_call>',
        bad,
        {"name": "run", "arguments": {"command": "python -m pytest -q tests"}},
        FIX,
        '<tool_call>{"name": "submit", "arguments": {}}</tool_call>',
    ]
    with Telemetry(tmp_path / "t.db") as tel:
        ep = run_episode(task, ScriptedClient(script), EpisodeLimits(), tel)
        assert ep.resolved and ep.turns == 5
        assert ep.messages[2]["reasoning_content"] == "look first"
        assert "SyntaxError" in ep.steps[1]["calls"][0]["observation"]
        assert "2 passed" in ep.steps[2]["calls"][0]["observation"]  # visible tests only
        statuses = tel.query("SELECT status, verdict FROM edits ORDER BY id")
        assert statuses == [("rejected_syntax", None), ("applied", "tests_passed")]


def test_garbage_model_hits_error_cap():
    task = load_task(TINY)
    ep = run_episode(
        task,
        ScriptedClient(
            ["I think the answer is 42.", "<tool_call>{oops</tool_call>", '{"name": 1}'] * 3
        ),
        EpisodeLimits(max_consecutive_errors=3),
    )
    assert ep.exit_status == "format_error" and ep.turns == 3 and not ep.resolved
    assert ep.grade["status"] == "unresolved"  # graded anyway: the untouched repo fails


def test_model_error_and_limits():
    task = load_task(TINY)
    ep = run_episode(task, ScriptedClient([FIX, ModelError("endpoint down")]), EpisodeLimits())
    assert ep.exit_status == "model_error" and "endpoint down" in ep.error
    assert ep.resolved  # the fix made before the failure still counts (SWE-bench grades the patch)
    read = {"name": "list_dir", "arguments": {}}
    ep = run_episode(task, ScriptedClient([read] * 10), EpisodeLimits(max_steps=3))
    assert ep.exit_status == "max_steps" and ep.turns == 3
    ep = run_episode(task, ScriptedClient([read] * 10), EpisodeLimits(max_total_tokens=50))
    assert ep.exit_status == "max_tokens"
    ep = run_episode(task, ScriptedClient([read] * 10), EpisodeLimits(wall_s=0.0))
    assert ep.exit_status == "timeout" and ep.turns == 0


def test_local_client_bad_checkpoint_is_a_clear_error(tmp_path):
    # Without hillclimb.serve: "local checkpoints need hillclimb.serve"; with it: the engine's
    # own error for a directory that is not a checkpoint. Either way a HillclimbError.
    with pytest.raises(HillclimbError):
        LocalClient(tmp_path)


def _tasks_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tasks"
    shutil.copytree(TINY, d / "tiny")
    shutil.copytree(TINY, d / "tiny2")
    toml = (d / "tiny2" / "task.toml").read_text().replace('id = "tiny-bugfix"', 'id = "tiny-two"')
    (d / "tiny2" / "task.toml").write_text(toml)
    (d / "broken" / "repo").mkdir(parents=True)
    (d / "broken" / "task.toml").write_text("id = 'broken'\nkind = 'bugfix'\n")  # no instruction
    return d


def test_runner_bad_task_resume_and_telemetry(tmp_path):
    tasks = _tasks_dir(tmp_path)
    out = tmp_path / "out"
    rep = run_tasks(tasks, lambda: __import__("hillclimb.harness.clients", fromlist=["x"]).ReferenceClient(), out,
                    telemetry_path=out / "tel.db", concurrency=2)  # fmt: skip
    by_id = {r["task_id"]: r for r in rep.rows}
    assert by_id["tiny-bugfix"]["resolved"] and by_id["tiny-two"]["resolved"]
    assert (
        by_id["broken"]["exit_status"] == "task_error" and "instruction" in by_id["broken"]["error"]
    )
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads((out / "summary.json").read_text())["resolved"] == 2
    first = (out / "trajectories" / "tiny-bugfix.json").read_text()
    # resume: finished tasks are skipped (their files untouched), the broken one is retried
    rep2 = run_tasks(tasks, lambda: ScriptedClient([]), out, telemetry_path=out / "tel.db")
    assert rep2.skipped == 2 and (out / "trajectories" / "tiny-bugfix.json").read_text() == first
    with Telemetry(out / "tel.db") as tel:
        st = tel.stats()
        assert st["episodes"] == 2 and st["resolved"] == 2 and st["edits"] == {"applied": 2}
        ep_ids = [r[0] for r in tel.query("SELECT id FROM episodes ORDER BY task_id")]
        # the edit of the first task's episode (episodes ran concurrently: pick by task, not id)
        edit_id = tel.query("SELECT id FROM edits WHERE episode_id = ?", (ep_ids[0],))[0][0]
        # a user rejects one episode's edit: it leaves SFT and becomes an RL prompt
        tel.record_feedback(edit_id, False, source="user")
        with pytest.raises(HillclimbError):
            tel.record_feedback(9999, True)
        with pytest.raises(HillclimbError):
            tel.record_feedback("no-such-episode", True)
        s = tel.export(tmp_path / "export")
        assert s["sft_examples"] == 1 and s["rl_prompts"] == 1
        tel.record_feedback(ep_ids[1], True)
        assert tel.export(tmp_path / "export2", require_accepted=True)["sft_examples"] == 1
    sft = [json.loads(x) for x in (tmp_path / "export" / "sft.jsonl").read_text().splitlines()]
    msgs = sft[0]["messages"]
    assert [m["role"] for m in msgs[:2]] == ["system", "user"]
    call = next(m for m in msgs if m.get("tool_calls"))["tool_calls"][0]
    assert isinstance(call["function"]["arguments"], dict) and sft[0]["tools"]
    rl = [
        json.loads(x) for x in (tmp_path / "export" / "rl_prompts.jsonl").read_text().splitlines()
    ]
    assert rl[0]["task_dir"].endswith("tiny") or rl[0]["task_dir"].endswith("tiny2")


def test_telemetry_cli(tmp_path, capsys):
    db = tmp_path / "t.db"
    task = load_task(TINY)
    with Telemetry(db) as tel:
        run_episode(
            task, ScriptedClient([FIX, {"name": "submit", "arguments": {}}]), EpisodeLimits(), tel
        )
        run_episode(task, ScriptedClient(["nothing"] * 3), EpisodeLimits(), tel)
    assert main(["telemetry", "stats", "--db", str(db), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (
        st["episodes"] == 2
        and st["resolved"] == 1
        and st["by_status"] == {"format_error": 1, "submitted": 1}
    )
    assert main(["telemetry", "stats", "--db", str(db)]) == 0  # for a person: tables, not JSON
    text = capsys.readouterr().out
    flat = " ".join(text.split())  # the console wraps prose at 80 columns, where the db path
    # (tmp_path: its length differs per machine and user) decides the break
    assert "2 finished episodes" in flat and "1 resolved (50.0%)" in flat
    assert "per model" in text and "per task kind" in text and not text.lstrip().startswith("{")
    assert main(["telemetry", "feedback", "--db", str(db), "--edit", "1", "--accept"]) == 0
    assert (
        main(["telemetry", "export", "--db", str(db), "--out", str(tmp_path / "x"), "--json"]) == 0
    )
    s = json.loads(capsys.readouterr().out.split("recorded\n")[-1])
    assert s["sft_examples"] == 1 and s["rl_prompts"] == 1
    assert main(["telemetry", "stats", "--db", str(tmp_path / "missing.db")]) == 2
    (tmp_path / "junk.db").write_text("not sqlite" * 100)
    assert main(["telemetry", "stats", "--db", str(tmp_path / "junk.db")]) == 2
