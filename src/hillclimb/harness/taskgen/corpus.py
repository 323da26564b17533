"""The generator's library: small, realistic, tested projects, read from the package data tree
`projects/<language>/<project>/` (one repository root per project).

Why hand-written projects rather than scraped code: every task the generator derives must be
*verifiable* — the original code passes its tests, a mutation makes specific tests fail — and
licensing must be clean (BRIEF.md: commercially licensed data). These projects are ours, small
enough to validate in a sandbox in well under a second, and varied in shape: classes and
functions, several multi-module packages whose modules import each other, branches that raise,
arithmetic and comparisons for bugs to hide in.

Why real files rather than Python strings (issue 16): as files they are read, linted
(`projects/ruff.toml`) and tested as code — `tests/test_harness_tasks.py` and
`tests/test_harness_js.py` run each project's own tests on the stored sources, which must pass
(the generator mutates them later; what is stored is the correct version). They ship as package
data (pyproject `package-data`) and are read through `importlib.resources`, so an installed wheel
generates the same tasks as a checkout. A project is every file under its directory, keyed by
its path relative to that directory (`inventory/store.py`, `tests/test_inventory.py`); caches
(`__pycache__`, `*.pyc`, dot-directories) are skipped, so running a project's tests in place
changes nothing. A corpus given as `root` is held to what a task repository can be: UTF-8 text
files of at most `MAX_FILE_BYTES`, and no symlinks (a task stores file contents by relative path,
so a link cannot be kept as a link, and following one would copy files from outside the tree —
a link to /etc put the host's files into generated tasks — or loop forever); each is a clear
error naming the file.

Python (`PROJECTS`): one package per project; `tests/test_<name>.py` imports modules
(`from pkg import mod`) and calls `mod.func`, so removing or renaming one function fails only the
tests that use it.

JavaScript (`JS_PROJECTS`, CommonJS): no npm packages (only `node:test` and `node:assert`, built
into Node >= 18). Conventions the token-level mutator (js_mutate.py; no JS AST library is
available) relies on to stay exact:

- each function or method carries a JSDoc comment (`/** ... */`), used as the specification in
  bug reports and feature requests;
- top-level functions are `function name(a, b) { ... }` declarations exported with
  `module.exports = { ... };`, methods live in `class` bodies;
- tests are flat top-level `test('name', () => { ... });` blocks in `tests/<project>.test.js`,
  with unique names, so a test can be removed from the visible copy by its id
  `tests/<project>.test.js::name`.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from hillclimb.errors import HillclimbError

LANGUAGES = ("python", "javascript")
_SKIP_DIRS = {"__pycache__", "node_modules"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
MAX_FILE_BYTES = 1 << 20  # a task's files are read whole, shown to models and tested in seconds


def projects_root() -> Traversable:
    """The data tree holding one directory per language."""
    return files(__package__) / "projects"


def _walk(node: Traversable, prefix: str, out: dict[str, str]) -> None:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name.startswith(".") or child.name in _SKIP_DIRS:
            continue
        rel = f"{prefix}{child.name}"
        if isinstance(child, Path) and child.is_symlink():
            raise HillclimbError(
                f"task corpus file {child} is a symlink; a project must hold its files itself"
            )
        if child.is_dir():
            _walk(child, rel + "/", out)
        elif not child.name.endswith(_SKIP_SUFFIXES):
            out[rel] = _read(child)


def _read(child: Traversable) -> str:
    """A corpus file's text: bytes, not read_text, so no newline translation — the text is
    exactly what is stored."""
    if isinstance(child, Path) and child.stat().st_size > MAX_FILE_BYTES:
        raise HillclimbError(
            f"task corpus file {child} is larger than {MAX_FILE_BYTES >> 10} KiB; projects must "
            "be small enough to test in seconds"
        )
    data = child.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise HillclimbError(f"task corpus file {child} is larger than {MAX_FILE_BYTES >> 10} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HillclimbError(f"task corpus file {child} is not UTF-8 text ({exc})") from None


def load_projects(language: str, root: Traversable | None = None) -> dict[str, dict[str, str]]:
    """{project name: {relative path: text}} for one language, projects and files sorted.
    `root` (default: the package's data tree) holds one directory per language."""
    if language not in LANGUAGES:
        raise HillclimbError(f"unknown corpus language {language!r}; choose from {LANGUAGES}")
    root = (root or projects_root()) / language
    if not root.is_dir():
        raise HillclimbError(f"the task corpus is missing from the installed package: {root}")
    out: dict[str, dict[str, str]] = {}
    for proj in sorted(root.iterdir(), key=lambda c: c.name):
        if proj.is_dir() and not proj.name.startswith(".") and proj.name not in _SKIP_DIRS:
            tree: dict[str, str] = {}
            _walk(proj, "", tree)
            if tree:
                out[proj.name] = tree
    if not out:
        raise HillclimbError(f"no {language} projects under {root}")
    return out


PROJECTS: dict[str, dict[str, str]] = load_projects("python")
JS_PROJECTS: dict[str, dict[str, str]] = load_projects("javascript")
