"""Find a recipe by name or path and read its `[data]` table.

Why a resolver: `hillclimb data build --recipe smoke` must work from a source checkout (recipes/
in the working directory or in the repo root above the package) and from an installed package
(a packaged copy beside `hillclimb/`). Full climb recipes carry many tables; the data stage reads
only `[data]` and ignores the rest, so one recipe drives every stage.
"""

from __future__ import annotations

import os
import re
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

from hillclimb.data.config import DataConfig, data_config_from_dict
from hillclimb.errors import ConfigError, HillclimbError


def _candidates(name: str) -> list[Path]:
    pkg = Path(__file__).resolve().parent.parent  # .../hillclimb
    file = name if name.endswith(".toml") else f"{name}.toml"
    return [
        Path.cwd() / "recipes" / file,
        pkg.parent.parent / "recipes" / file,  # repo root in a src-layout checkout
        pkg / "recipes" / file,  # packaged copy
    ]


def resolve_recipe(name: str | os.PathLike[str]) -> Path:
    """A recipe file: `name` itself if it is a file, else recipes/NAME.toml (cwd, repo, package)."""
    p = Path(name)
    if p.is_file():
        return p
    if p.exists() and not p.is_dir():
        # `--recipe <(...)`: a pipe can be read once, and relative source paths are relative to
        # the recipe's own directory, which a pipe does not have
        raise HillclimbError(
            f"recipe {str(name)!r} is not a regular file (a pipe or a device): save it to a "
            ".toml file and pass that path"
        )
    tried = [p]
    if p.parent == Path(".") or str(name) == p.name:
        for c in _candidates(str(name)):
            if c.is_file():
                return c
            if c not in tried:  # cwd = the repo root: one path, listed once
                tried.append(c)
    if p.is_dir():
        raise HillclimbError(
            f"recipe {str(name)!r} is a directory: pass a recipe file (a .toml) or a built-in "
            f"recipe's name (looked at: {', '.join(str(t) for t in tried)})"
        )
    raise HillclimbError(
        f"recipe {str(name)!r} not found (looked at: {', '.join(str(t) for t in tried)})"
    )


def load_recipe(name: str | os.PathLike[str]) -> dict[str, Any]:
    path = resolve_recipe(name)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc}") from exc


_ENV_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))", re.ASCII)


def _expand_env(value: str) -> str:
    """`$NAME` / `${NAME}` replaced by the environment variable's value. Why: a recipe's
    `path = "$DATA/code"` was read literally (`<recipe dir>/$DATA/code`), every file of the
    source became one `missing_source` skip, and the message never named the variable. An unset
    variable is an error here, not a path that cannot exist."""

    def value_of(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in os.environ:
            raise ConfigError(
                f"path {value!r}: environment variable {name} is not set (set it, or write "
                "the path out)"
            )
        return os.environ[name]

    return _ENV_VAR.sub(value_of, value)


def expand_source_path(value: str, recipe_dir: Path) -> str:
    """`$NAME` / `${NAME}` environment variables (unset: ConfigError); `{hillclimb}` (this
    package's directory) and `{stdlib}` placeholders; `~`; relative paths are relative to the
    recipe file (the same rules as the climb's recipe loader)."""
    import hillclimb

    v = _expand_env(value).replace("{hillclimb}", str(Path(hillclimb.__file__).resolve().parent))
    v = v.replace("{stdlib}", str(Path(sysconfig.get_paths()["stdlib"]).resolve()))
    p = Path(v).expanduser()
    if not p.is_absolute():
        p = (recipe_dir / p).resolve()
    return str(p)


def expand_data_paths(table: dict[str, Any], recipe_dir: Path) -> dict[str, Any]:
    """A copy of a `[data]` table with every path expanded by `expand_source_path`: source
    `path`s and `decontaminate.files` (malformed values are left for validation to report)."""
    if not isinstance(table, dict):
        return table
    table = dict(table)
    sources = table.get("sources")
    if isinstance(sources, list):
        table["sources"] = [
            {**s, "path": expand_source_path(s["path"], recipe_dir)}
            if isinstance(s, dict) and isinstance(s.get("path"), str) and s["path"]
            else s
            for s in sources
        ]
    decon = table.get("decontaminate")
    if isinstance(decon, dict) and isinstance(decon.get("files"), list):
        table["decontaminate"] = {
            **decon,
            "files": [
                expand_source_path(f, recipe_dir) if isinstance(f, str) and f else f
                for f in decon["files"]
            ],
        }
    return table


def load_data_config(name: str | os.PathLike[str]) -> DataConfig:
    """The `DataConfig` of a recipe (its `[data]` table; other tables are ignored). Paths are
    expanded with `expand_data_paths`."""
    path = resolve_recipe(name)
    recipe = load_recipe(path)
    if "data" not in recipe:
        raise ConfigError(f"recipe {path} has no [data] table")
    return data_config_from_dict(expand_data_paths(recipe["data"], path.parent))
