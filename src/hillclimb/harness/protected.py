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

import ast
import configparser
import filecmp
import hashlib
import os
import re
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


# What code under test has no business naming. A package that does may be rewriting the run from
# inside it (session 24, each resolved a task with the bug still in place):
# - pytest's internals, pluggy, plugin registration: three lines in `__init__.py` patching
#   `_pytest.reports.TestReport.from_item_and_call` made every test "passed", through the
#   grader's own signed channel;
# - the public test API replaced (`pytest.raises = ...`, `unittest.TestCase.assertEqual = ...`);
# - the caller's frames (`sys._getframe(1)`, `f_back`, `inspect.stack()`, `extract_stack`):
#   a function that reads the asserting line of the test calling it and returns the expected
#   value;
# - the garbage collector's object walks (how one finds pytest's classes without naming them).
# (No entry for hook names or the grader's channel: a hook only runs once registered, which
# takes the plugin manager or a conftest.py, checked when pytest loads it; records are signed
# with a key claimed before any of this code runs, so forged lines are rejected anyway.)
RUNNER_INTERNALS = re.compile(
    rb"_pytest|pluggy|pluginmanager|TestReport|CallInfo|from_item_and_call"
    rb"|\b(?:pytest|unittest|TestCase)(?:\s*\.\s*\w+)+\s*=(?!=)"
    rb"|setattr\(\s*(?:pytest|unittest|TestCase)\b|sys\.modules\s*\[\s*[\"'](?:pytest|unittest)"
    rb"|_getframe|\bf_back\b|\btb_frame\b|currentframe|getouterframes|inspect\.stack"
    rb"|inspect\.trace|extract_stack|walk_stack|format_stack|settrace|setprofile"
    rb"|gc\.get_(?:objects|referrers|referents)"
)
# The same for JavaScript code under test: node's assertion and test modules (a module that
# loaded `node:assert/strict` and emptied its `equal` made every test of a generated JS task
# pass, session 24) and V8's stack hooks (how a function finds the test calling it).
JS_RUNNER_INTERNALS = re.compile(
    rb"(?:\b(?:require|import)\s*\(\s*|\b(?:from|import)\s*)"
    rb"[\"'](?:node:)?(?:assert(?:/strict)?|test)[\"']|prepareStackTrace|captureStackTrace"
    rb"|\bError\(\s*\)\s*\.\s*stack\b"
)
JS_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts")
SOURCE_SUFFIXES = (".py", ".pyw", ".pyi")
NATIVE_SUFFIXES = (".so", ".pyd")
MAX_SCAN_BYTES = 8 << 20  # larger sources are refused, not read: no honest fix needs one


def _internals(data: bytes, pattern: re.Pattern[bytes] = RUNNER_INTERNALS) -> dict[bytes, int]:
    """How often each runner-internal name (`pattern`) occurs in `data`."""
    out: dict[bytes, int] = {}
    for m in pattern.finditer(data):
        out[m.group(0)] = out.get(m.group(0), 0) + 1
    return out


EQUALITY_DUNDERS = frozenset({"__eq__", "__ne__"})


def _ignores_other(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> bool:
    """Whether an `__eq__`/`__ne__` never looks at what it is compared with (its second
    argument, or its `*args`): its answer is fixed, so `assert f(x) == y` passes whatever `y`
    is (the "always equal" object). No honest equality ignores the other operand."""
    args = fn.args
    names = [a.arg for a in (*args.posonlyargs, *args.args)][1:2]
    if args.vararg is not None:
        names.append(args.vararg.arg)
    body = fn.body if isinstance(fn.body, list) else [fn.body]
    used = {n.id for part in body for n in ast.walk(part) if isinstance(n, ast.Name)}
    return not names or not (set(names) & used)


def _fixed_equalities(data: bytes) -> int:
    """How many `__eq__` / `__ne__` definitions in `data` ignore the other operand: a `def` or
    a lambda bound to the name in a class body, and (session 30) one reaching the name any other
    way a class can get it — a dict key (`type("X", (int,), {"__eq__": ...})`), a keyword
    (`dict(__eq__=...)`), `setattr(cls, "__eq__", ...)` or `cls.__eq__ = ...` — as a lambda or as
    a function of the file defined under another name. Why: the fake of a red-team round built
    its class through `type()` with a dict literal, and this count saw none of it."""
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 0  # not importable as it is: the tests will tell
    fixed_defs = {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and _ignores_other(n)
    }

    def fixed(value: ast.AST | None) -> bool:
        if isinstance(value, ast.Lambda):
            return _ignores_other(value)
        return isinstance(value, ast.Name) and value.id in fixed_defs

    def dunder(node: ast.AST | None) -> bool:
        if isinstance(node, ast.Name):
            return node.id in EQUALITY_DUNDERS
        if isinstance(node, ast.Attribute):
            return node.attr in EQUALITY_DUNDERS
        return isinstance(node, ast.Constant) and node.value in EQUALITY_DUNDERS

    count = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            count += node.name in EQUALITY_DUNDERS and _ignores_other(node)
        elif isinstance(node, ast.Assign):
            count += any(dunder(t) for t in node.targets) and fixed(node.value)
        elif isinstance(node, ast.AnnAssign):
            count += dunder(node.target) and fixed(node.value)
        elif isinstance(node, ast.Dict):
            count += sum(
                dunder(k) and fixed(v) for k, v in zip(node.keys, node.values, strict=True)
            )
        elif isinstance(node, ast.Call):
            count += sum(k.arg in EQUALITY_DUNDERS and fixed(k.value) for k in node.keywords)
            is_setattr = isinstance(node.func, ast.Name) and node.func.id == "setattr"
            if is_setattr and len(node.args) == 3:
                count += dunder(node.args[1]) and fixed(node.args[2])
    return count


def _runner_problem(rel: str, new: Path, old: Path | None) -> str | None:
    """Why the submitted file `new` (trusted version `old`, None if it is new) is refused."""
    if new.is_symlink() or not new.is_file():
        return None  # a link's target is checked where it lies (links out: not importable code)
    if old is not None and not old.is_symlink() and filecmp.cmp(old, new, shallow=False):
        return None  # unchanged (compared in chunks: a big trusted file is never read whole)
    if rel.endswith(NATIVE_SUFFIXES):
        return f"{rel} (native module added or changed)"
    if new.stat().st_size > MAX_SCAN_BYTES:
        return f"{rel} (source over {MAX_SCAN_BYTES >> 20} MB)"
    data = _content(new)
    trusted = _content(old) if old is not None and not old.is_symlink() else b""
    pattern = JS_RUNNER_INTERNALS if rel.endswith(JS_SUFFIXES) else RUNNER_INTERNALS
    before, after = _internals(trusted, pattern), _internals(data, pattern)
    added = sorted(n.decode() for n, k in after.items() if k > before.get(n, 0))
    if pattern is RUNNER_INTERNALS and _fixed_equalities(data) > _fixed_equalities(trusted):
        added.insert(0, "an __eq__/__ne__ that ignores the other operand")
    if not added:
        return None
    return f"{rel} ({', '.join(added[:3])})"


def runner_tampering(
    repo: Path, hidden: Path, dest: str, ws: Path, test_dirs: list[str]
) -> list[str]:
    """`path (why)` for each Python or JavaScript source or native module outside `test_dirs`
    that the submission added or changed and that names test-runner internals its trusted
    version does not.

    Why: pytest runs the tests in the same interpreter as the code under test, so a package can
    patch pytest's report objects (a JS module, node's `assert`) and every failing test is
    reported passed through the grader's own signed channel (grading.py's threat model). Code that does so by name is refused here;
    disguised forms (names built at run time) are not caught by a text check. Test directories
    are skipped: the grader replaces what the submission put there before the run."""
    prefix = dest.strip("/")
    skip = [d.strip("/") for d in test_dirs if d.strip("/")]
    problems = []
    for dirpath, dirnames, filenames in os.walk(ws):
        here = Path(dirpath)
        rel_dir = here.relative_to(ws).as_posix()
        # every other directory counts, hidden ones too: code there can be loaded by path
        dirnames[:] = [
            d for d in dirnames if (f"{rel_dir}/{d}" if rel_dir != "." else d) not in skip
        ]
        for name in filenames:
            if not name.endswith(SOURCE_SUFFIXES + JS_SUFFIXES + NATIVE_SUFFIXES):
                continue
            rel = (here / name).relative_to(ws).as_posix()
            old = repo / rel
            if prefix == "" or rel.startswith(prefix + "/"):
                in_hidden = hidden / rel[len(prefix) + 1 :] if prefix else hidden / rel
                if in_hidden.is_file():
                    old = in_hidden
            problem = _runner_problem(rel, here / name, old if old.is_file() else None)
            if problem:
                problems.append(problem)
    return sorted(problems)


def conftest_digests(ws: Path, skip: Path | None = None) -> dict[str, str]:
    """realpath -> sha256 of every conftest.py in `ws` (the trusted ones, once checked)."""
    out = {}
    for rel, p in _walk(ws, skip).items():
        if rel.rsplit("/", 1)[-1] == "conftest.py" and not p.is_symlink():
            out[os.path.realpath(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
