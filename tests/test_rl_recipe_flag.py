"""`hillclimb rl --recipe R [--for M]`: the climb's RL settings for one model, by hand.

Why: `--config` refuses a climb recipe (its per-model tables cannot be chosen between), so
rerunning or varying the climb's `rl-<model>` stage meant copying `[rl]` and `[rl.<model>]` into
a file of one's own. The settings must be exactly the climb's (the recipe's `Recipe.rl`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.climb.climb_recipe import load_recipe
from hillclimb.errors import ConfigError
from hillclimb.rl.cli import recipe_rl_settings

RECIPE = """
[climb]
seed = 3
[data]
seed = 0
[[data.sources]]
kind = "generators"
per_tier = 2
tiers = [1]
[models.code-flash]
preset = "code-flash-micro"
[models.thinking]
preset = "thinking-micro"
[rl]
steps = 7
lr = 1e-5
[rl.thinking]
group_size = 4
[rl.code-flash]
steps = 2
"""


def _recipe(tmp_path: Path, text: str = RECIPE) -> Path:
    f = tmp_path / "mine.toml"
    f.write_text(text)
    return f


def test_the_settings_are_the_climbs(tmp_path: Path) -> None:
    f = _recipe(tmp_path)
    rec = load_recipe(f)
    got = recipe_rl_settings(str(f), "thinking")
    assert got == rec.rl["thinking"]
    assert got["steps"] == 7 and got["group_size"] == 4 and got["lr"] == 1e-5
    assert got["seed"] == 3  # the climb's seed, as the climb fills it
    assert recipe_rl_settings(str(f), "code-flash")["steps"] == 2
    tiny = recipe_rl_settings("tiny", None)  # the packaged recipe: RL for thinking only
    assert tiny == load_recipe("tiny").rl["thinking"]


def test_a_choice_is_needed_and_checked(tmp_path: Path) -> None:
    f = _recipe(tmp_path)
    with pytest.raises(ConfigError, match="choose one with --for"):
        recipe_rl_settings(str(f), None)
    with pytest.raises(ConfigError, match="runs no RL for 'nope'"):
        recipe_rl_settings(str(f), "nope")
    off = _recipe(
        tmp_path, RECIPE.replace("[rl.code-flash]\nsteps = 2", "[rl.code-flash]\nenabled = false")
    )
    assert recipe_rl_settings(str(off), None)["group_size"] == 4  # the only RL model left
    none = _recipe(tmp_path, RECIPE.split("[rl]")[0])
    with pytest.raises(ConfigError, match="runs no RL stage"):
        recipe_rl_settings(str(none), None)


def test_the_cli_refuses_mixed_sources_in_one_line(tmp_path: Path, capsys) -> None:
    f = _recipe(tmp_path)
    cfg = tmp_path / "rl.toml"
    cfg.write_text("[rl]\nsteps = 1\n")
    base = ["rl", "--model", str(tmp_path / "ck"), "--out", str(tmp_path / "out")]
    assert main([*base, "--recipe", str(f), "--for", "thinking", "--config", str(cfg)]) == 2
    assert "pass one" in capsys.readouterr().err
    assert main([*base, "--for", "thinking"]) == 2
    assert "pass --recipe too" in capsys.readouterr().err
    assert main([*base, "--recipe", str(f)]) == 2
    assert "choose one with --for" in capsys.readouterr().err
