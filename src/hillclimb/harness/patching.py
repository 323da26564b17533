"""Unified diffs between directory trees, and applying them to a workspace.

Why difflib for writing and `git apply` for applying: the diff of an agent's workspace against the
task's `repo/` is the agent's submission (SWE-bench grades patches, not workspaces) and must be
byte-exact — including files without a trailing newline, new files and deleted files — so we emit
git-style headers (`a/`/`b/`, `/dev/null`, the `\\ No newline at end of file` marker) that both
`git apply` and `patch -p1` accept. Applying uses `git apply` (atomic: all hunks or none, refuses
`..` and paths through symlinks) with `patch -p1` as fallback. Applying a patch is parsing data,
not running model code, so it runs as a plain subprocess; caches and bytecode never enter a diff.
"""

from __future__ import annotations

import difflib
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hillclimb.errors import HillclimbError
from hillclimb.sandbox.fs import copy_file

IGNORED_DIRS = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache"}
IGNORED_SUFFIXES = (".pyc", ".pyo")
# Larger files are not diffed (listed in `TreeDiff.skipped_large`): the same bound as what the
# tools let a model view or edit. A workspace may hold gigabytes (its disk quota), and difflib
# over a big log an agent's command wrote ran for minutes in the harness process, outside the
# sandbox's memory limit, and put every line into the trajectory.
MAX_DIFF_FILE_BYTES = 2_000_000


def _special(p: Path) -> bool:
    """A FIFO, socket or device (never a symlink): reading one can block or never end."""
    try:
        mode = os.lstat(p).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))


def iter_files(root: Path) -> dict[str, Path]:
    """Relative posix path -> file, skipping caches. Symlinks are listed as files (not followed);
    FIFOs, sockets and devices are not files of a submission and are skipped."""
    out: dict[str, Path] = {}
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        for name in sorted(filenames):
            if name.endswith(IGNORED_SUFFIXES):
                continue
            p = Path(dirpath) / name
            if _special(p):
                continue
            out[p.relative_to(root).as_posix()] = p
    return out


def _read_text(p: Path | None) -> str | None:
    """File text, '' for absent; None when binary/undecodable (such files are not diffed)."""
    if p is None:
        return ""
    if p.is_symlink():
        return None
    data = p.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _same(a: Path, b: Path) -> bool:
    """Equal content, never reading through a symlink: a link is its target text (it may dangle,
    or point at /dev/zero or a host file — the workspace is the model's)."""
    a_link, b_link = a.is_symlink(), b.is_symlink()
    if a_link or b_link:
        return a_link and b_link and os.readlink(a) == os.readlink(b)
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:  # in blocks: either may be huge
        while True:
            block = fa.read(1 << 20)
            if block != fb.read(1 << 20):
                return False
            if not block:
                return True


def _too_large(p: Path | None) -> bool:
    return p is not None and not p.is_symlink() and os.path.getsize(p) > MAX_DIFF_FILE_BYTES


def _split_lines(text: str) -> list[str]:
    """Lines as diff and `git apply` see them: ended by \n only (str.splitlines would also cut
    at \r, \f, \v, U+2028 ..., and the patch would not apply)."""
    lines = text.split("\n")
    out = [ln + "\n" for ln in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


@dataclass
class TreeDiff:
    patch: str
    changed: list[str]  # the files the patch changes
    skipped_binary: list[str]  # binaries and symlinks: changed, but not in the patch
    skipped_large: list[str] = field(default_factory=list)  # over MAX_DIFF_FILE_BYTES: likewise


def diff_trees(old_root: str | os.PathLike[str], new_root: str | os.PathLike[str]) -> TreeDiff:
    """The unified diff turning `old_root` into `new_root` (text files; binaries listed apart)."""
    old_files, new_files = iter_files(Path(old_root)), iter_files(Path(new_root))
    chunks: list[str] = []
    changed: list[str] = []
    skipped: list[str] = []
    large: list[str] = []
    for rel in sorted(set(old_files) | set(new_files)):
        a_p, b_p = old_files.get(rel), new_files.get(rel)
        if a_p is not None and b_p is not None and _same(a_p, b_p):
            continue
        if _too_large(a_p) or _too_large(b_p):
            large.append(rel)
            continue
        a, b = _read_text(a_p), _read_text(b_p)
        if a is None or b is None:
            skipped.append(rel)
            continue
        changed.append(rel)
        chunks.append(unified_file_diff(rel, a if a_p else None, b if b_p else None))
    return TreeDiff(
        patch="".join(chunks), changed=changed, skipped_binary=skipped, skipped_large=large
    )


_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f",
              "\r": "\\r", '"': '\\"', "\\": "\\\\"}  # fmt: skip


def _patch_name(prefix: str, rel: str) -> str:
    """`prefix + rel` as a diff header names it: C-quoted, as git writes it, when it holds a
    control character (a raw tab or newline splits the header line, and `git apply` refused the
    whole patch); other names, UTF-8 included, stay as they are (both readers accept them)."""
    name = prefix + rel
    if not any(ord(c) < 0x20 or c == "\x7f" for c in name):
        return name
    out = []
    for c in name:
        if c in _C_ESCAPES:
            out.append(_C_ESCAPES[c])
        elif ord(c) < 0x20 or c == "\x7f":
            out.append(f"\\{ord(c):03o}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def unified_file_diff(rel: str, old: str | None, new: str | None) -> str:
    """A git-style diff for one file; `None` means the file does not exist on that side."""
    header = f"diff --git {_patch_name('a/', rel)} {_patch_name('b/', rel)}\n"
    if old is None:
        header += "new file mode 100644\n"
    elif new is None:
        header += "deleted file mode 100644\n"
    a_lines = _split_lines(old or "")
    b_lines = _split_lines(new or "")
    fromfile = _patch_name("a/", rel) if old is not None else "/dev/null"
    tofile = _patch_name("b/", rel) if new is not None else "/dev/null"
    body = []
    for line in difflib.unified_diff(a_lines, b_lines, fromfile=fromfile, tofile=tofile, n=3):
        if line.startswith(("--- ", "+++ ")):
            body.append(line.rstrip("\n") + "\n")
            continue
        body.append(line)
        if not line.endswith("\n"):
            body.append("\n\\ No newline at end of file\n")
    if not body:  # e.g. a new empty file
        return header
    return header + "".join(body)


@dataclass
class ApplyResult:
    ok: bool
    message: str
    tool: str


def apply_patch(
    workspace: str | os.PathLike[str], patch: str, timeout_s: float = 60.0
) -> ApplyResult:
    """Apply `patch` (unified diff, -p1 paths) inside `workspace`; never raises for a bad patch."""
    ws = Path(workspace)
    if not patch.strip():
        return ApplyResult(True, "empty patch", "none")
    with tempfile.NamedTemporaryFile("w", suffix=".patch", delete=False, encoding="utf-8") as f:
        f.write(patch if patch.endswith("\n") else patch + "\n")
        pfile = f.name
    env = dict(os.environ)
    # Never let git discover (and apply relative to) a repository above the workspace.
    env["GIT_CEILING_DIRECTORIES"] = str(ws.resolve().parent)
    try:
        if shutil.which("git"):
            cmd = ["git", "apply", "--whitespace=nowarn", "-p1", pfile]
            tool = "git apply"
        elif shutil.which("patch"):
            cmd = ["patch", "-p1", "--batch", "--forward", "--silent", "-i", pfile]
            tool = "patch"
        else:
            raise HillclimbError("neither git nor patch is installed: cannot apply patches")
        try:
            proc = subprocess.run(
                cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            return ApplyResult(False, f"{tool} timed out", tool)
        msg = (proc.stderr or proc.stdout).strip()
        if proc.returncode != 0:
            return ApplyResult(False, msg[-2000:] or f"{tool} exited {proc.returncode}", tool)
        return ApplyResult(True, msg[-2000:], tool)
    finally:
        os.unlink(pfile)


def _ignore(directory: str, names: list[str]) -> set[str]:
    """Caches and bytecode, and FIFOs/sockets/devices (a model's `mkfifo` must not make the
    copy fail or block)."""
    skip = set(_IGNORE_CACHES(directory, names))
    return skip | {n for n in names if n not in skip and _special(Path(directory) / n)}


_IGNORE_CACHES = shutil.ignore_patterns(*IGNORED_DIRS, "*.pyc")


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory tree (symlinks copied as links, caches and special files skipped, sparse
    files kept sparse) into `dst` (merging)."""
    shutil.copytree(
        src, dst, symlinks=True, dirs_exist_ok=True, ignore=_ignore, copy_function=copy_file
    )
