"""Outside checks, session 26 (a read-only audit of issues 12/13): `hillclimb rl --recipe R
--harness T` read the recipe's problem-RL `[rl]` table (whose curriculum keys `--harness` then
refused), not the `[rl_harness.<model>]` table the climb's harness stage runs with; and
`--tiers 2` failed with "start_tier must be in tiers" without naming the flag to pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from hillclimb.errors import ConfigError
from hillclimb.rl.cli import recipe_rl_settings
from hillclimb.rl.config import RLConfig

SMOKE = str(Path(__file__).parents[1] / "recipes" / "smoke.toml")


def test_recipe_with_harness_reads_the_rl_harness_table():
    h = recipe_rl_settings(SMOKE, "code-flash", harness=True)
    assert h["harness_max_steps"] == 2 and h["group_size"] == 2 and "tiers" not in h
    plain = recipe_rl_settings(SMOKE, "code-flash")
    assert plain != h
    with pytest.raises(ConfigError, match="harness RL"):
        recipe_rl_settings(SMOKE, "thinking", harness=True)


def test_start_tier_error_names_the_flag():
    with pytest.raises(ConfigError, match="--start-tier.*2"):
        RLConfig.from_dict({"init": "x", "tiers": [2, 3]})


def test_rl_report_shows_the_held_out_harness_curve(tmp_path):
    """`rl --harness-val` records val points in curve.jsonl; the run's report.md printed none of
    them (it read only problem-val points), so a harness run's report never said how the policy
    did on unseen tasks."""
    import json

    from hillclimb.rl.report import summary_lines

    pts = [
        {"step": s, "split": "harness_val",
         "harness_val": {"tasks": 8, "resolved": k, "resolve_rate": k / 8, "ci95": [0, 1],
                         "mean_reward": r, "completion_tokens": 100 + s}}
        for s, k, r in ((0, 0, 0.0), (5, 2, 0.31))
    ]  # fmt: skip
    (tmp_path / "curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pts))
    (tmp_path / "metrics.jsonl").write_text("")
    text = "\n".join(summary_lines(tmp_path))
    assert "| 0 | 0/8 = 0% [0%, 32%] | 0.000 | 100 |" in text
    assert "| 5 | 2/8 = 25% [7%, 59%] | 0.310 | 105 |" in text


def test_rl_harness_val_tasks_recipe_key():
    """`[rl_harness.<m>] val_tasks = N`: the climb's harness RL stage generates N held-out tasks
    for its val curve; a table without it keeps its stage hash (the key is absent)."""
    from hillclimb.climb.climb_recipe import rl_harness_tables

    def spec(**kw):
        raw = {"rl_harness": {"code-flash": {"steps": 1, **kw}}}
        return rl_harness_tables(raw, ["code-flash", "thinking"], 0)["code-flash"]

    assert "val_tasks" not in spec() and spec(val_tasks=3)["val_tasks"] == 3
    assert "val_tasks" not in spec(val_tasks=3)["rl"]
    with pytest.raises(ConfigError, match="val_tasks must be an integer >= 0"):
        spec(val_tasks=-1)
    with pytest.raises(ConfigError, match="set val_tasks"):
        spec(harness_val="somewhere")


def test_harness_run_refuses_to_resume_under_the_other_tool_call_setting(tmp_path, capsys):
    """A checkpoint run's summary records `settings.guided_tools`; resuming it with the other
    setting would mix guided and raw episodes under one resolve rate, so it is refused before
    any model loads, and the stored results are left as they were."""
    import json

    from hillclimb.cli import main

    out = tmp_path / "out"
    out.mkdir()
    summary = {"tasks": 1, "settings": {"drafter": "none", "guided_tools": False}}
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "results.jsonl").write_text('{"task_id": "t"}\n')
    (tmp_path / "ckpt").mkdir()
    argv = ["harness", "run", "--tasks", str(tmp_path), "--model", str(tmp_path / "ckpt"),
            "--out", str(out)]  # fmt: skip
    assert main(argv) != 0
    assert "holds a run with raw (--no-guided-tools) tool calls" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "results.jsonl").read_text() == '{"task_id": "t"}\n'
