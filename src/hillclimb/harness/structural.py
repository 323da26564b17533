"""Structural checks for refactor tasks, evaluated with `ast` (never by importing the code).

A refactor is "tests stay green *and* the code has the new shape": the extracted function exists
and is called from where the code used to be, the old name is gone everywhere. Parsing is safe on
untrusted code (nothing executes), so these checks run in-process; a file that does not parse
fails the check with the SyntaxError as its detail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from hillclimb.harness.patching import MAX_DIFF_FILE_BYTES, iter_files
from hillclimb.harness.task import StructuralCheck

# ast.parse costs ~400x a file's size in memory (12 MB of `x = 1` lines: 4.7 GB, a minute), in
# the harness process, outside the sandbox; an agent's command may write 256 MB files. Larger
# files fail the check, at the bound the tools and the recorded patch use.
MAX_PARSE_BYTES = MAX_DIFF_FILE_BYTES


@dataclass
class CheckResult:
    check: str
    ok: bool
    detail: str

    def to_json(self) -> dict:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


class _NotInRepo(Exception):
    """A path that is a symlink out of the workspace, or not a regular file."""


def _parse(path: Path, workspace: Path) -> ast.Module:
    """Parse a workspace file. The workspace is the model's and this runs outside the sandbox,
    so a symlink is followed only to a regular file inside the workspace (never to /dev/zero, a
    FIFO or a host file)."""
    real = path.resolve()
    if not real.is_relative_to(workspace.resolve()) or not real.is_file():
        raise _NotInRepo(f"{path.relative_to(workspace).as_posix()} is not a regular file inside the repository")  # fmt: skip
    size = real.stat().st_size
    if size > MAX_PARSE_BYTES:  # the check fails closed: a name could hide in an unread file
        raise ValueError(
            f"{path.relative_to(workspace).as_posix()} is {size} bytes, more than the "
            f"{MAX_PARSE_BYTES} a structural check parses"
        )
    return ast.parse(real.read_bytes().decode("utf-8"), filename=str(path))


def _find_def(tree: ast.Module, dotted: str) -> ast.AST | None:
    """Top-level function/class `name`, or method `Class.method`."""
    parts = dotted.split(".")
    body: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    for part in parts:
        node = next(
            (
                n
                for n in body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and n.name == part
            ),
            None,
        )
        if node is None:
            return None
        body = getattr(node, "body", [])
    return node


def _calls(node: ast.AST, name: str) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            if (isinstance(f, ast.Name) and f.id == name) or (
                isinstance(f, ast.Attribute) and f.attr == name
            ):
                return True
    return False


def identifiers(tree: ast.AST) -> set[str]:
    """Every identifier a module mentions: defs, classes, names, attributes, args, imports."""
    out: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(n.name)
        elif isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.arg) or isinstance(n, ast.keyword) and n.arg:
            out.add(n.arg)
        elif isinstance(n, ast.alias):
            out.update(n.name.split("."))
            if n.asname:
                out.add(n.asname)
    return out


def run_check(
    workspace: Path, check: StructuralCheck, exclude: tuple[str, ...] = ()
) -> CheckResult:
    """Evaluate one check on `workspace`; `exclude` are path prefixes ignored by name checks."""
    desc = check.describe()
    try:
        if check.type in ("function_exists", "class_exists", "called_from"):
            mod = workspace / str(check.module)
            if not mod.is_file():
                return CheckResult(desc, False, f"{check.module} does not exist")
            tree = _parse(mod, workspace)
            if check.type == "called_from":
                caller = _find_def(tree, str(check.caller))
                if caller is None:
                    return CheckResult(desc, False, f"{check.caller} not found in {check.module}")
                ok = _calls(caller, check.name.split(".")[-1])
                return CheckResult(
                    desc, ok, "" if ok else f"{check.caller} does not call {check.name}"
                )
            node = _find_def(tree, check.name)
            want = (
                ast.ClassDef
                if check.type == "class_exists"
                else (ast.FunctionDef, ast.AsyncFunctionDef)
            )
            ok = isinstance(node, want)
            return CheckResult(
                desc, ok, "" if ok else f"{check.name} not defined in {check.module}"
            )
        # name_absent / name_present over every .py file under `path`
        base = workspace / (check.path or ".")
        found_in: list[str] = []
        if not base.resolve().is_relative_to(workspace.resolve()):
            files = {}  # a link out of the repository (`path -> /` would walk the host)
        else:
            files = {base.name: base} if base.is_file() else iter_files(base)
        for rel, p in files.items():
            full_rel = (p.relative_to(workspace)).as_posix()
            if not rel.endswith(".py") or any(full_rel.startswith(e) for e in exclude):
                continue
            try:
                tree = _parse(p, workspace)
            except _NotInRepo:
                continue  # not code in the repository (a link out of it, a FIFO)
            if check.name in identifiers(tree):
                found_in.append(full_rel)
        if check.type == "name_absent":
            ok = not found_in
            return CheckResult(
                desc, ok, "" if ok else f"{check.name} still appears in {found_in[:5]}"
            )
        ok = bool(found_in)
        return CheckResult(desc, ok, "" if ok else f"{check.name} appears nowhere")
    except _NotInRepo as exc:
        return CheckResult(desc, False, str(exc))
    except (SyntaxError, ValueError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
        return CheckResult(desc, False, f"cannot parse: {type(exc).__name__}: {exc}")
