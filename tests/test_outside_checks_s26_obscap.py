"""Outside check, session 26 (issue 13 §1, context discipline): tool observations are capped by
the model's context, not by a fixed 8,000 characters.

Before: `ToolBox` always cut at 8,000 characters (≈2,000+ tokens of code), the whole 2,048-token
context of code-flash-tiny, so one `read_file` of a modest file ended the episode
`context_exhausted`. Now `run_episode` caps each observation at `observation_chars(context)`
(a quarter of the context at 3 characters per token) for a client that knows its context, and
the SFT tool episodes use the same cap."""

from __future__ import annotations

import shutil
from pathlib import Path

from hillclimb.harness.agent import EpisodeLimits, run_episode
from hillclimb.harness.clients import ScriptedClient
from hillclimb.harness.task import load_task
from hillclimb.harness.tools import MAX_OBSERVATION_CHARS, observation_chars

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"


class _SmallContext(ScriptedClient):
    context_tokens = 2048


def _read_big(tmp_path: Path, client_cls) -> str:
    root = tmp_path / "task"
    shutil.copytree(TINY, root)
    big = "".join(
        f"value_{i} = {i} * 1234567  # a long line of code number {i}\n" for i in range(180)
    )
    (root / "repo" / "mathx" / "big.py").write_text(big, encoding="utf-8")
    task = load_task(root)
    read = {"name": "read_file", "arguments": {"path": "mathx/big.py"}}
    ep = run_episode(task, client_cls([read, {"name": "submit", "arguments": {}}]), EpisodeLimits())
    return next(m["content"] for m in ep.messages if m["role"] == "tool")


def test_observation_cap_follows_the_context():
    assert observation_chars(None) == MAX_OBSERVATION_CHARS
    assert observation_chars(2048) == 1536
    assert observation_chars(10) == 600  # an error message and a few lines still fit
    assert observation_chars(1 << 20) == MAX_OBSERVATION_CHARS


def test_a_small_model_sees_a_shortened_file(tmp_path):
    small = _read_big(tmp_path / "a", _SmallContext)
    assert "characters omitted" in small and len(small) <= 1536 + 80
    full = _read_big(tmp_path / "b", ScriptedClient)  # context unknown: the fixed cap
    assert len(full) > 6000
