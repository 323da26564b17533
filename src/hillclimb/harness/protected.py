"""Test infrastructure a submission may not change, checked before any test runs.

pytest executes or obeys more than test files: `conftest.py` (hooks that can rewrite reports,
deselect or skip tests), `pytest.ini` / `.pytest.ini` / `pytest.toml` / `.pytest.toml` and the
pytest sections of `pyproject.toml` (`[tool.pytest...]`), `setup.cfg` (`[tool:pytest]`) and
`tox.ini` (`[pytest]`) — `addopts`, `-p`, `python_functions`, `xfail_strict`... Python itself
runs `sitecustomize.py` / `usercustomize.py` and `*.pth` files from path directories, and reads
bytecode from `__pycache__` / `*.pyc` (a binary `git apply` patch can carry some).

Why refuse rather than neutralise: the repository's own configuration is part of the task
(markers, `pythonpath`, fixtures in conftest.py) and is trusted as the task author wrote it;
running with `--noconftest` or `-c /dev/null` would change what the hidden tests mean. What a
submission must not do is *change* it, and no bugfix or feature needs to. So the grader compares
the graded tree (after the hidden tests are copied in) with the trusted tree (`repo/` overlaid
with the hidden tests) and rejects the submission (`patch_rejected`) if any such file was added,
changed or deleted; for the three shared files only their pytest section counts, so an honest
edit elsewhere in `pyproject.toml` is fine. Files a run creates *while* it runs are the in-process
threat (grading.py); the reporter lists the conftest.py files pytest actually loaded and the
grader checks those against the trusted tree too (`untrusted_conftests`).
"""

from __future__ import annotations

import configparser
import hashlib
import os
import tomllib
from pathlib import Path

INFRA_NAMES = frozenset(
    {
        "conftest.py", "pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml",
        "sitecustomize.py", "usercustomize.py",
    }
)  # fmt: skip
SECTIONED = frozenset({"pyproject.toml", "setup.cfg", "tox.ini"})
BYTECODE_SUFFIXES = (".pyc", ".pyo")
SKIP_DIRS = frozenset({".git"})


def _relevant(rel: str) -> bool:
    parts = rel.split("/")
    name = parts[-1]
    return (
        name in INFRA_NAMES
        or name in SECTIONED
        or name.endswith(".pth")
        or name.endswith(BYTECODE_SUFFIXES)
        or "__pycache__" in parts[:-1]
    )


def _walk(root: Path, skip: Path | None = None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [
            d for d in dirnames if d not in SKIP_DIRS and (skip is None or here / d != skip)
        ]
        for name in filenames:
            rel = (here / name).relative_to(root).as_posix()
            if _relevant(rel):
                out[rel] = here / name
    return out


def _content(p: Path) -> bytes:
    if p.is_symlink():
        return b"symlink:" + os.readlink(p).encode()
    try:
        return p.read_bytes()
    except OSError:
        return b"unreadable"


def _bytecode(rel: str) -> bool:
    return rel.endswith(BYTECODE_SUFFIXES) or "__pycache__" in rel.split("/")[:-1]


def pytest_section(name: str, data: bytes) -> object:
    """The part of a shared config file pytest reads (None if it has none)."""
    try:
        text = data.decode("utf-8")
        if name == "pyproject.toml":
            return tomllib.loads(text).get("tool", {}).get("pytest")
        parser = configparser.RawConfigParser(strict=False)
        parser.read_string(text)
        section = "tool:pytest" if name == "setup.cfg" else "pytest"
        return dict(parser.items(section)) if parser.has_section(section) else None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error):
        return ("unparsable", hashlib.sha256(data).hexdigest())


def trusted_files(repo: Path, hidden: Path, dest: str) -> dict[str, Path]:
    """Relevant files of the trusted tree: `repo/`, with the hidden tests overlaid at `dest`.

    Bytecode is never trusted: workspaces are copied without it."""
    out = {r: p for r, p in _walk(repo).items() if not _bytecode(r)}
    prefix = dest.strip("/")
    for rel, p in _walk(hidden).items():
        if not _bytecode(rel):
            out[f"{prefix}/{rel}" if prefix else rel] = p
    return out


def infrastructure_changes(
    trusted: dict[str, Path], ws: Path, skip: Path | None = None
) -> list[str]:
    """`path (added|changed|deleted)` for each protected file that differs from the trusted tree."""
    graded = _walk(ws, skip)
    problems = []
    for rel in sorted(set(trusted) | set(graded)):
        name = rel.rsplit("/", 1)[-1]
        old, new = trusted.get(rel), graded.get(rel)
        if old is not None and new is not None:
            a, b = _content(old), _content(new)
            same = a == b or (
                name in SECTIONED
                and not new.is_symlink()
                and pytest_section(name, a) == pytest_section(name, b)
            )
            if not same:
                problems.append(f"{rel} (changed)")
        elif new is not None:
            no_section = name in SECTIONED and not new.is_symlink()
            if no_section and pytest_section(name, _content(new)) is None:
                continue  # a new pyproject.toml etc. without a pytest section
            problems.append(f"{rel} (added)")
        else:
            if name in SECTIONED and pytest_section(name, _content(old)) is None:
                continue
            problems.append(f"{rel} (deleted)")
    return problems


def conftest_digests(ws: Path, skip: Path | None = None) -> dict[str, str]:
    """realpath -> sha256 of every conftest.py in `ws` (the trusted ones, once checked)."""
    out = {}
    for rel, p in _walk(ws, skip).items():
        if rel.rsplit("/", 1)[-1] == "conftest.py" and not p.is_symlink():
            out[os.path.realpath(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
