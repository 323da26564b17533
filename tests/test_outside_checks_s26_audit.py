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
