"""Type checks of config values read from TOML / JSON against dataclass field annotations.

Why: recipe tables, `--config` files and `--problems` specs are filled into dataclasses with
`cls(**table)`, which takes any value; a string where an integer belongs then fails deep in
validation (`'>=' not supported between 'str' and 'int'`, a traceback from the CLI) or, worse,
mid-run after an hour of work. Checking each value against its field's annotation up front turns
that into one line naming the key and what it needs. Annotations are the strings that
`from __future__ import annotations` leaves (`"int | None"`, `"list[str]"`); ones this module
does not know (nested dataclasses) are not checked here — their own filler checks them.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable
from typing import Any

from hillclimb.errors import ConfigError

_SCALARS: dict[str, tuple[str, Any]] = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "Path": ("a path", lambda v: isinstance(v, str | os.PathLike)),
    "None": ("none", lambda v: v is None),
    "Any": ("anything", lambda v: True),
}


def _check(annotation: str, value: Any) -> tuple[bool, str] | None:
    """(fits, description) for an annotation string; None when the annotation is not one we know."""
    ann = annotation.strip()
    if " | " in ann:
        parts = [_check(a, value) for a in ann.split(" | ")]
        if any(p is None for p in parts):
            return None
        known = [p for p in parts if p is not None]
        return any(ok for ok, _ in known), " or ".join(d for _, d in known if d != "none")
    if ann in _SCALARS:
        desc, fits = _SCALARS[ann]
        return bool(fits(value)), desc
    if ann == "dict" or ann.startswith("dict["):
        return isinstance(value, dict), "a table"
    if ann.startswith(("list[", "tuple[")) and ann.endswith("]"):
        inner = ann[ann.index("[") + 1 : -1]
        if ann.startswith("tuple") or "," in inner:
            return isinstance(value, list | tuple), "a list"
        probe = _check(inner, None)
        if probe is None:
            return None
        desc = f"a list of {probe[1].removeprefix('an ').removeprefix('a ')}s"
        if not isinstance(value, list | tuple):
            return False, desc
        return all((_check(inner, x) or (True, ""))[0] for x in value), desc
    return None


def check_values(annotations: dict[str, Any], table: dict[str, Any], where: str) -> None:
    """ConfigError naming the first key of `table` whose value does not fit its annotation in
    `annotations` (keys without one are left to the caller's unknown-key check)."""
    for key, value in table.items():
        ann = annotations.get(key)
        if not isinstance(ann, str):
            continue
        res = _check(ann, value)
        if res is not None and not res[0]:
            raise ConfigError(f"{where}: {key} must be {res[1]}, got {value!r}")


def check_field_types(cls: type, table: dict[str, Any], where: str) -> None:
    """`check_values` against the field annotations of the dataclass `cls`."""
    check_values({f.name: f.type for f in dataclasses.fields(cls)}, table, where)


def require_table(value: Any, where: str) -> dict[str, Any]:
    """`value` as a dict, or a ConfigError saying `where` must be a table (TOML `x = 5` where
    `[x]` was meant would otherwise fail as "'int' object is not iterable")."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, got {type(value).__name__} {value!r}")
    return dict(value)


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to a misspelt `name` (`stps` -> `steps`, `Python` -> `python`), or
    None when nothing is close (sorted first: the same answer whatever the set's order)."""
    known = sorted(known)
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    hit = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return hit[0] if hit else None


def check_known_keys(
    table: dict[str, Any], known: Iterable[str], where: str, what: str = "key(s)"
) -> None:
    """ConfigError naming the keys of `table` that are not in `known`, each with its nearest
    valid key (`what`: how the message names them, e.g. "TrainConfig keys:"). Why: a misspelt
    key (`stps`) listed beside dozens of valid ones, or named alone, left the user to find the
    one they meant. The full list is shown when no valid key is near, or when it is short."""
    known = sorted(known)
    bad = sorted(set(table) - set(known), key=str)
    if not bad:
        return
    hints = [f"{k!r}: did you mean {n!r}?" for k in bad if (n := nearest(str(k), known))]
    msg = f"{where}: unknown {what} {bad}"
    if hints:
        msg += f" ({'; '.join(hints)})"
    if len(hints) < len(bad) or len(known) <= 20:
        msg += f"; known: {', '.join(known)}"
    raise ConfigError(msg)
