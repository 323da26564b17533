"""Harness episodes are reproducible for a seed: tool observations carry no wall-clock text.

Why: the `run` tool's observation carried its own duration (`exit code 0 (0.3s)`), the test
runners' (`1 passed in 0.01s`, node's `duration_ms`) and the episode's random workspace path, so
two runs of one seeded episode showed the model different tokens — RL could not be resumed or
compared bit for bit, and the SFT data (which fixed these figures) showed other text than eval
and RL (a train/test mismatch). One function, `harness.tools.steady_observation`, now sets them
for both.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.harness.agent import EpisodeLimits, run_episode
from hillclimb.harness.clients import ScriptedClient
from hillclimb.harness.task import load_task
from hillclimb.harness.tools import TOOL_SCHEMAS, ToolBox
from hillclimb.tokenizer.io import bytelevel_tokenizer

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"
FIX = {
    "name": "edit",
    "arguments": {
        "path": "mathx/core.py",
        "old_str": "    if x < lo:\n        return hi",
        "new_str": "    if x < lo:\n        return lo",
    },
}


def _run(command: str) -> dict:
    return {"name": "run", "arguments": {"command": command}}


def test_steady_observation_sets_timings_and_keeps_limits(tmp_path):
    from hillclimb.harness.tools import WORKSPACE_ALIAS, steady_observation

    ws = tmp_path / "hc-episode-x1" / "repo"
    obs = (
        "exit code 1 (12.7s)\nstdout:\nFAILED tests/t.py::a\n1 failed, 2 passed in 62.35s (0:01:02)\n"
        "Ran 3 tests in 0.004s\n==== 1 passed in 1.25s ====\nbuilt in 2.5s, cached in 1s here\n"
        "ok 1 - a\n  ---\n  duration_ms: 0.989173\n  ...\n# duration_ms 91.655671\n"
        "✔ adds (0.98ms)\n✖ subtracts (12.5ms)\nℹ duration_ms 45.2\n"
        f'  File "{ws}/mathx/core.py", line 3\nTIMED OUT after 30s (process tree killed)'
    )
    want = (
        "exit code 1 (0.3s)\nstdout:\nFAILED tests/t.py::a\n1 failed, 2 passed in 0.01s\n"
        "Ran 3 tests in 0.01s\n==== 1 passed in 0.01s ====\nbuilt in 2.5s, cached in 1s here\n"
        "ok 1 - a\n  ---\n  duration_ms: 0.5\n  ...\n# duration_ms 0.5\n"
        "✔ adds (0.5ms)\n✖ subtracts (0.5ms)\nℹ duration_ms 0.5\n"
        f'  File "{WORKSPACE_ALIAS}/mathx/core.py", line 3\n'
        "TIMED OUT after 30s (process tree killed)"
    )
    assert steady_observation(obs, ws) == want
    assert steady_observation(want, ws) == want  # idempotent: the SFT data applies it again
    # the SFT data path uses this very function, not a copy of it
    from hillclimb.climb.sft_mixture import _steady

    assert _steady(obs, ws) == want


def test_a_file_is_shown_exactly_by_read_file_and_search(tmp_path):
    """Only `run` output is made steady: read_file and search show a file's text as it is, so
    an `edit` can quote it (a changed figure would make its old_str miss)."""
    text = "exit code 0 (1.5s)\nmsg = 'done in 2.5s'\nlog = 'ok in 3s'\n"
    (tmp_path / "a.txt").write_text(text)
    box = ToolBox(tmp_path)
    assert "3| log = 'ok in 3s'" in box.call("read_file", {"path": "a.txt"}).observation
    assert "a.txt:3:log = 'ok in 3s'" in box.call("search", {"pattern": "in 3s"}).observation
    edit = {"path": "a.txt", "old_str": "log = 'ok in 3s'", "new_str": "log = 'ok'"}
    assert box.call("edit", edit).ok


def _episode_stream(script: list) -> tuple[list[list[int]], list[int], list[str]]:
    """One scripted episode on the tiny task: each observation's tokens, the whole rendered
    conversation's tokens, and the observations (for the failure message)."""
    tok = bytelevel_tokenizer()
    ep = run_episode(load_task(TINY), ScriptedClient(list(script)), EpisodeLimits())
    assert ep.exit_status == "submitted", ep.error
    obs = [m["content"] for m in ep.messages if m["role"] == "tool"]
    return [tok.encode(o) for o in obs], tok.encode_chat(ep.messages, tools=TOOL_SCHEMAS), obs


def test_two_runs_of_a_scripted_episode_show_identical_tokens():
    """Failing tests, a script naming the workspace path, the fix, passing tests: the same
    workspace states give the same observation tokens, run after run."""
    script = [
        _run("python -m pytest -q tests"),
        _run("python -m unittest discover -s tests 2>&1 | tail -3"),
        _run("python -c 'import mathx.core as m; m.clamp(None, 0, 1)'; pwd"),  # a traceback
        FIX,
        _run("python -m pytest -q tests"),
        {"name": "submit", "arguments": {}},
    ]
    a_obs, a_all, a_text = _episode_stream(script)
    b_obs, b_all, b_text = _episode_stream(script)
    assert a_text == b_text
    assert a_obs == b_obs and a_all == b_all
    assert "passed in 0.01s" in a_text[0] and "passed in 0.01s" in a_text[4]
    assert 'File "/tmp/hc-episode/repo/mathx/core.py"' in a_text[2]  # never a temp path


def test_the_workspace_alias_an_observation_shows_works_in_calls(tmp_path):
    """Observations name the workspace by its alias, so the model may copy that path into a
    call: it must reach the real workspace (read_file, run), and nothing outside it."""
    from hillclimb.harness.tools import WORKSPACE_ALIAS

    (tmp_path / "a.py").write_text("x = 1\n")
    box = ToolBox(tmp_path, run_timeout_s=20.0)
    read = box.call("read_file", {"path": f"{WORKSPACE_ALIAS}/a.py"})
    assert read.ok and "x = 1" in read.observation
    out = box.call("run", {"command": f"cat {WORKSPACE_ALIAS}/a.py && cd {WORKSPACE_ALIAS} && pwd"})
    assert out.observation == f"exit code 0 (0.3s)\nstdout:\nx = 1\n{WORKSPACE_ALIAS}\n"
    bad = box.call("read_file", {"path": f"{WORKSPACE_ALIAS}/../../../etc/passwd"})
    assert not bad.ok and "outside the repository" in bad.observation


def test_a_timeout_cut_by_the_episode_deadline_names_no_measured_time(tmp_path):
    """`TIMED OUT after N s` names the run's limit; when the episode's deadline cut the run
    shorter, the seconds left were a clock reading, so the observation says so instead."""
    box = ToolBox(tmp_path, run_timeout_s=1.0)
    assert box.call("run", {"command": "sleep 5"}).observation.startswith(
        "TIMED OUT after 1s (process tree killed)"
    )
    box = ToolBox(tmp_path, run_timeout_s=30.0, deadline=time.monotonic() + 1.6)
    assert box.call("run", {"command": "sleep 5"}).observation.startswith(
        "TIMED OUT at the episode's time limit (process tree killed)"
    )


@pytest.fixture(scope="module")
def engine_tasks(tmp_path_factory):
    """A random micro coder with room for an agent's prompt, one engine, two generated tasks."""
    pytest.importorskip("hillclimb.serve.engine")
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.serve.engine import Engine

    tasks = tmp_path_factory.mktemp("repro") / "tasks"
    assert main(["harness", "generate", "--out", str(tasks), "--n", "2", "--seed", "3"]) == 0
    cfg = dataclasses.replace(get_preset("code-flash-micro"), max_seq_len=6144)
    eng = Engine(build_model(cfg, seed=0), bytelevel_tokenizer(), max_batch=4, seed=0)
    return eng, [load_task(p) for p in sorted(p for p in tasks.iterdir() if p.is_dir())]


def test_sampled_concurrent_episodes_match_sequential_ones(engine_tasks):
    """Temperature 1, a seed per episode: run together on one engine (its batched decode) the
    episodes sample the same tokens as one after the other — each request draws from its own
    seeded generator, whatever its batch neighbours."""
    from hillclimb.harness.clients import LocalClient

    eng, tasks = engine_tasks
    lims = [
        EpisodeLimits(max_steps=2, temperature=1.0, seed=100 * (i + 1), max_tokens_per_turn=16)
        for i in range(len(tasks))
    ]

    def episode(i: int) -> tuple[list[int], list[float]]:
        ep = run_episode(tasks[i], LocalClient(engine=eng), lims[i])
        assert ep.token_faithful is True and ep.token_ids is not None
        return ep.token_ids, ep.token_logprobs

    seq = [episode(i) for i in range(len(tasks))]
    out: list = [None] * len(tasks)

    def go(i: int) -> None:
        out[i] = episode(i)

    eng.start()
    try:
        th = [threading.Thread(target=go, args=(i,)) for i in range(len(tasks))]
        for t in th:
            t.start()
        for t in th:
            t.join()
    finally:
        eng.stop()
    assert all(x is not None for x in out)
    assert [ids for ids, _ in out] == [ids for ids, _ in seq]
    for (_, lp_c), (_, lp_s) in zip(out, seq, strict=True):  # batched numerics: close, not equal
        assert max(abs(a - b) for a, b in zip(lp_c, lp_s, strict=True)) <= 1e-4
    # sampling happened: another seed draws other tokens
    other = dataclasses.replace(lims[0], seed=7)
    again = run_episode(tasks[0], LocalClient(engine=eng), other).token_ids
    assert again != seq[0][0]


def test_search_lists_matches_by_path_and_line_whatever_the_directory_order(tmp_path):
    """grep walks directories in readdir order (ext4: the file system's hash seed; tmpfs: newest
    first), so the same repository listed its matches in another order on another machine."""
    names = ["m.py", "c.py", "x.py", "a.py", "q.py", "f.py", "z.py", "b.py"]  # not sorted
    for name in names:
        (tmp_path / name).write_text("hit = 1\n\nhit = 2\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "k.py").write_text("hit = 3\n")
    out = ToolBox(tmp_path).call("search", {"pattern": "hit"}).observation.splitlines()
    found = [(n, 1, 1) for n in names] + [(n, 3, 2) for n in names] + [("pkg/k.py", 1, 3)]
    want = [f"{n}:{line}:hit = {v}" for n, line, v in sorted(found)]
    assert out == [f"{len(want)} match(es):", *want]
