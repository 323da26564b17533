"""The tools an agent gets: read_file, list_dir, search, edit, create_file, run, submit.

Why this small set: it is what production coding assistants expose (view, find, precise edit,
terminal) and what SWE-agent showed matters — a windowed file view with line numbers, a capped
search, and an *exact, unique* search/replace edit that is rejected when it would leave a Python
file unparsable (the linter gate), so the model sees its mistake immediately instead of at test
time. Observations are cut to head + tail with a marker: the end of a traceback matters as much
as its start.

Confinement: every path is resolved (symlinks included) and must stay inside the workspace; `..`
escapes and links pointing out are rejected. Reading and editing files is plain data handling and
happens here; anything that executes (`run`, and `search`, which shells out to grep so a
pathological regex cannot hang the harness) goes through the sandbox.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.harness.patching import IGNORED_DIRS
from hillclimb.sandbox import run_command

# how a small model is shown tools lives with the chat format, so the server renders them alike
from hillclimb.tokenizer.toolcalls import (  # noqa: F401  (re-exported)
    COMPACT_CONTEXT,
    compact_tools,
    use_compact_tools,
)


def _js_syntax_gate(path: Path, text: str) -> None:
    """Reject a JavaScript edit that would not parse (`node --check` parses, never executes).
    Without node on the machine the gate is open: the tests will tell."""
    import shutil
    import subprocess
    import tempfile

    node = shutil.which("node")
    if node is None:
        return
    with tempfile.TemporaryDirectory(prefix="hc-jscheck-") as d:
        f = Path(d) / path.name
        f.write_text(text, encoding="utf-8")
        try:
            r = subprocess.run(
                [node, "--check", str(f)], capture_output=True, text=True, timeout=20
            )
        except subprocess.TimeoutExpired:
            return
    if r.returncode != 0:
        msg = next((ln for ln in r.stderr.splitlines() if "Error" in ln), r.stderr.strip()[-300:])
        err = ToolError(
            f"edit rejected: the result would not parse: {msg}. The file was not changed."
        )
        err.edit_status = "rejected_syntax"  # type: ignore[attr-defined]
        raise err


MAX_OBSERVATION_CHARS = 8000
READ_WINDOW = 200
MAX_SEARCH_MATCHES = 50
MAX_LIST_ENTRIES = 300
MAX_FILE_BYTES = 2_000_000


# An observation's share of a small model's context (issue 13, "observation truncation derived
# from the model's context"): a fixed 8,000 characters is ≈2,000+ tokens of code, the whole of
# code-flash-tiny's 2,048-token context, so one `read_file` ended the episode
# `context_exhausted` instead of showing a shortened file. A quarter of the context at a
# conservative 3 characters per token keeps ≈4 observations in view; never below
# MIN_OBSERVATION_CHARS (an error message and a few lines must fit), never above the cap.
OBSERVATION_SHARE = 0.25
CHARS_PER_TOKEN = 3.0
MIN_OBSERVATION_CHARS = 600


def observation_chars(context_tokens: int | None) -> int:
    """The observation cap for a model with `context_tokens` of context (None: unknown, e.g. an
    HTTP endpoint: the fixed cap). The SFT tool episodes (`climb.sft_mixture`) and live
    episodes (`harness.agent`) use the same function, so training shows what the harness shows."""
    if context_tokens is None:
        return MAX_OBSERVATION_CHARS
    n = int(context_tokens * OBSERVATION_SHARE * CHARS_PER_TOKEN)
    return max(MIN_OBSERVATION_CHARS, min(MAX_OBSERVATION_CHARS, n))


def truncate(text: str, limit: int = MAX_OBSERVATION_CHARS) -> str:
    """Head and tail of `text` with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    head = int(limit * 0.6)
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters omitted ...]\n{text[-tail:]}"


# Wall-clock figures that runs print, each set to one typical value: our own `exit code 0
# (0.3s)`, a summary line's closing `in 0.01s` (pytest's `1 passed in 0.01s`, past a minute with
# `(0:01:02)`; unittest's `Ran 3 tests in 0.01s`), node:test's `duration_ms` (TAP and spec
# reporters) and the spec reporter's per-test `(0.5ms)`. Only at the end of a line: a file shown
# by `cat` keeps its text mid-line. A limit is no measurement: `TIMED OUT after 30s` stays.
_TIMINGS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(exit code -?\d+) \(\d+(?:\.\d+)?s\)", re.M), r"\1 (0.3s)"),
    (re.compile(r" in \d+(?:\.\d+)?s(?: \(\d+:\d\d:\d\d\))?(?= =+$|$)", re.M), " in 0.01s"),
    (re.compile(r"\bduration_ms(:? )\d+(?:\.\d+)?(?:e-?\d+)?$", re.M), r"duration_ms\g<1>0.5"),
    (re.compile(r"^(\s*[✔✖﹣] .*) \(\d+(?:\.\d+)?ms\)$", re.M), r"\1 (0.5ms)"),
)

# The workspace path as observations show it: one fixed name of the shape of the harness's own
# episode workspace (`hc-episode-XXXX/repo`) instead of a random temporary directory.
WORKSPACE_ALIAS = "/tmp/hc-episode/repo"


def steady_observation(text: str, workspace: Path | None = None) -> str:
    """`text` with its wall-clock figures set to typical values and `workspace`'s path (as
    given and resolved) to `WORKSPACE_ALIAS`. Why: an episode's observations must be a function
    of the workspace state alone — else a seeded episode (eval, RL rollouts) cannot be replayed
    or resumed bit for bit — and the SFT data (`climb.sft_mixture`) shows the model the same
    text the live harness does. Idempotent, and line-local (apply it before truncating)."""
    for pat, rep in _TIMINGS:
        text = pat.sub(rep, text)
    return alias_workspace(text, workspace) if workspace is not None else text


def alias_workspace(text: str, workspace: Path) -> str:
    """`text` with `workspace`'s path (as given and resolved) spelled `WORKSPACE_ALIAS`."""
    for p in dict.fromkeys((str(workspace.resolve()), str(workspace))):
        if p != WORKSPACE_ALIAS:
            text = text.replace(p, WORKSPACE_ALIAS)
    return text


def _schema(name: str, description: str, props: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


TOOL_SCHEMAS: list[dict[str, Any]] = [
    _schema(
        "read_file",
        "Show a file with line numbers, 200 lines at a time. Use start_line/end_line to page.",
        {
            "path": {"type": "string", "description": "file path relative to the repository root"},
            "start_line": {"type": "integer", "description": "first line (1-based)", "minimum": 1},
            "end_line": {"type": "integer", "description": "last line (inclusive)", "minimum": 1},
        },
        ["path"],
    ),
    _schema(
        "list_dir",
        "List a directory of the repository (directories end with '/').",
        {
            "path": {
                "type": "string",
                "description": "directory relative to the root (default '.')",
            },
            "depth": {"type": "integer", "description": "levels to descend (1-3, default 2)"},
        },
        [],
    ),
    _schema(
        "search",
        "Search the repository for a string (or a regular expression with regex=true); "
        "prints path:line: text for up to 50 matches.",
        {
            "pattern": {"type": "string"},
            "path": {"type": "string", "description": "file or directory to search (default '.')"},
            "regex": {"type": "boolean", "description": "treat pattern as an extended regex"},
        },
        ["pattern"],
    ),
    _schema(
        "edit",
        "Replace an exact snippet of a file. old_str must occur exactly once (include enough "
        "context). Python edits that do not parse are rejected.",
        {
            "path": {"type": "string"},
            "old_str": {
                "type": "string",
                "description": "exact text to replace (unique in the file)",
            },
            "new_str": {"type": "string", "description": "replacement text"},
        },
        ["path", "old_str", "new_str"],
    ),
    _schema(
        "create_file",
        "Create a new file with the given content (set overwrite=true to replace an existing one).",
        {
            "path": {"type": "string"},
            "content": {"type": "string"},
            "overwrite": {"type": "boolean"},
        },
        ["path", "content"],
    ),
    _schema(
        "run",
        "Run a shell command in the repository root inside a sandbox (no network), e.g. "
        "`python -m pytest -q tests`. Returns exit status and output.",
        {
            "command": {"type": "string"},
            "timeout": {
                "type": "number",
                "description": "seconds (default and maximum: the task's limit)",
            },
        },
        ["command"],
    ),
    _schema(
        "submit",
        "Finish the task. For questions about the repository pass the answer; otherwise the "
        "current state of the repository is your submission.",
        {"answer": {"type": "string", "description": "the answer (question tasks only)"}},
        [],
    ),
]
TOOL_NAMES = [t["function"]["name"] for t in TOOL_SCHEMAS]


_PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOL_SCHEMAS}
_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}


_SURROGATES = re.compile("[\ud800-\udfff]")


# what a model is told when its call spells `\ud800`-style escapes (json.loads makes them lone
# surrogates, which no file, process argument or tokenizer takes: they ended the episode)
SURROGATE_HINT = (
    "contains a lone surrogate escape (\\ud800-\\udfff), which is not text; write the "
    "character itself"
)


def has_surrogate(text: str) -> bool:
    """Whether `text` holds a lone surrogate (not encodable as UTF-8)."""
    return _SURROGATES.search(text) is not None


def utf8_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD. A file name that is not UTF-8 comes back
    from the OS as surrogate escapes (and a model's JSON may spell `\\udXXX`); such a string
    cannot be encoded as UTF-8 — not by the tokenizer, SQLite, or a UTF-8 file."""
    return _SURROGATES.sub("\ufffd", text)


def _lines(text: str) -> list[str]:
    """Lines as pytest, editors and `edit` count them: split at \n only (str.splitlines also
    splits at \r, \f, \v, \x1c-\x1e, \x85, U+2028/9, which would shift line numbers), with a
    CRLF's \r dropped for display."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in parts]


def _matches_in_order(stdout: str) -> list[str]:
    """`grep -rnZ` output (`path\\0N:text` per match; `N:text` for one file) as `path:N:text`
    lines sorted by path, then line number. Why: grep walks directories in readdir order, which
    on ext4 follows the file system's hash seed, so the same repository listed its matches (and
    chose the 50 shown) in another order on another machine."""
    found: list[tuple[str, int, str]] = []
    for rec in stdout.split("\n"):
        if not rec:
            continue
        path, sep, rest = rec.partition("\0")
        if not sep:  # a single file: no path, already in line order
            path, rest = "", rec
        path = path[2:] if path.startswith("./") else path
        num = rest.split(":", 1)[0]
        found.append((path, int(num) if num.isdigit() else 0, f"{path}:{rest}" if sep else rest))
    found.sort(key=lambda m: (m[0], m[1]))
    return [m[2] for m in found]


class ToolError(Exception):
    """A tool call the model got wrong; its message becomes the observation."""


def _no_nul(name: str, value: str) -> None:
    """A NUL byte cannot be part of a process argument: the OS call raises ValueError, which
    would escape the tool and end the episode as a harness error instead of telling the model."""
    if "\0" in value:
        raise ToolError(f"{name} contains a NUL character")


@dataclass
class ToolOutcome:
    observation: str
    ok: bool = True  # False: the call itself was invalid (a model mistake), not a failing command
    done: bool = False
    answer: str | None = None
    edit: dict[str, Any] | None = None  # for telemetry: path, status, error, sizes
    malformed: bool = False  # unknown tool or arguments not matching its schema


@dataclass
class ToolBox:
    """Tools bound to one workspace. `run_timeout_s`/`memory_mb` come from the task limits."""

    workspace: Path
    run_timeout_s: float = 120.0
    memory_mb: int = 2048
    env: dict[str, str] = field(default_factory=dict)
    unsafe: bool = False
    max_observation_chars: int = MAX_OBSERVATION_CHARS
    # time.monotonic() by which the episode must end (run_episode sets it from its wall limit):
    # `run` and `search` stop there, so one long command cannot stretch the episode past it
    deadline: float | None = None

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace).resolve()

    # ---- dispatch -----------------------------------------------------------------------------
    def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Validate and execute one call; model mistakes come back as ok=False observations."""
        try:
            if name not in _PARAMS:
                raise ToolError(f"unknown tool {name!r}; available: {', '.join(TOOL_NAMES)}")
            self._validate(name, arguments)
        except ToolError as exc:
            return ToolOutcome(f"Error: {exc}", ok=False, malformed=True)
        try:
            out = getattr(self, f"_tool_{name}")(**arguments)
        except (ToolError, OSError) as exc:  # an OSError names the real path: alias it
            out = ToolOutcome(alias_workspace(f"Error: {exc}", self.workspace), ok=False)
            if name in ("edit", "create_file"):
                out.edit = {
                    "tool": name,
                    "path": str(arguments.get("path", "")),
                    "status": getattr(exc, "edit_status", "rejected_invalid"),
                    "error": str(exc),
                }
        out.observation = utf8_text(truncate(out.observation, self.max_observation_chars))
        return out

    def steady(self, text: str) -> str:
        """`steady_observation` for this workspace: what a `run` observation goes through (not
        read_file or search: a file's text is shown exactly, for `edit` to quote)."""
        return steady_observation(text, self.workspace)

    def _real_paths(self, command: str) -> str:
        """`command` with `WORKSPACE_ALIAS` (the only workspace path observations show) spelled
        as the real workspace, so a path copied from an observation works in a command."""
        return command.replace(WORKSPACE_ALIAS, str(self.workspace))

    @staticmethod
    def _validate(name: str, args: dict[str, Any]) -> None:
        if not isinstance(args, dict):
            raise ToolError("arguments must be a JSON object")
        params = _PARAMS[name]
        props = params["properties"]
        unknown = sorted(set(args) - set(props))
        if unknown:
            raise ToolError(f"{name}: unknown argument(s) {unknown}; expected {sorted(props)}")
        missing = [r for r in params["required"] if r not in args]
        if missing:
            raise ToolError(f"{name}: missing required argument(s) {missing}")
        for k, v in args.items():
            want = _TYPES[props[k]["type"]]
            if isinstance(v, bool) and props[k]["type"] != "boolean" or not isinstance(v, want):
                raise ToolError(f"{name}: argument {k!r} must be a {props[k]['type']}")
            low = props[k].get("minimum")
            if low is not None and v < low:  # start_line=-5 read "lines 1--1", hinting line 0
                raise ToolError(f"{name}: argument {k!r} must be at least {low}, got {v}")
            if isinstance(v, str) and has_surrogate(v):
                raise ToolError(f"{name}: argument {k!r} {SURROGATE_HINT}")

    # ---- paths --------------------------------------------------------------------------------
    def resolve(self, path: str, *, must_exist: bool = True) -> Path:
        if "\0" in path:
            raise ToolError("path contains a NUL byte")
        aliased = path == WORKSPACE_ALIAS or path.startswith(WORKSPACE_ALIAS + "/")
        p = Path(self._real_paths(path) if aliased else path)
        candidate = p if p.is_absolute() else self.workspace / p
        try:
            resolved = candidate.resolve()
        except RuntimeError:  # Python 3.11 reports a symlink loop (`ln -s x x`) this way
            raise ToolError(f"path {path!r} is a symbolic link loop") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ToolError(f"path {path!r} is a symbolic link loop") from None
            raise
        if resolved != self.workspace and not resolved.is_relative_to(self.workspace):
            raise ToolError(f"path {path!r} is outside the repository")
        if must_exist and not resolved.exists():
            raise ToolError(f"{path!r} does not exist")
        return resolved

    def _time_left(self, want: float) -> float:
        """`want` seconds, or fewer if the episode's deadline comes first (at least 1 s)."""
        if self.deadline is None:
            return want
        return max(1.0, min(want, self.deadline - time.monotonic()))

    def rel(self, p: Path) -> str:
        r = p.relative_to(self.workspace).as_posix()
        return r or "."

    # ---- tools --------------------------------------------------------------------------------
    def _tool_read_file(
        self, path: str, start_line: int = 1, end_line: int | None = None
    ) -> ToolOutcome:
        p = self.resolve(path)
        if p.is_dir():
            raise ToolError(f"{path!r} is a directory; use list_dir")
        if not p.is_file():  # a FIFO, socket or device: reading could block forever
            raise ToolError(f"{path!r} is not a regular file")
        if end_line is not None and end_line < start_line:
            raise ToolError(f"end_line {end_line} is before start_line {start_line}")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ToolError(f"{path!r} is too large to view ({p.stat().st_size} bytes); use search")
        data = p.read_bytes()
        if b"\0" in data:
            raise ToolError(f"{path!r} is a binary file")
        lines = _lines(data.decode("utf-8", errors="replace"))
        n = len(lines)
        start = max(1, start_line)
        end = min(n, end_line if end_line is not None else start + READ_WINDOW - 1)
        if n == 0:
            return ToolOutcome(f"[{self.rel(p)}: empty file]")
        if start > n:
            raise ToolError(f"start_line {start} is past the end of the file ({n} lines)")
        width = len(str(end))
        body = "\n".join(f"{i:>{width}}| {lines[i - 1]}" for i in range(start, end + 1))
        more = (
            f"\n[lines {start}-{end} of {n}; more below: read_file start_line={end + 1}]"
            if end < n
            else ""
        )
        return ToolOutcome(f"[{self.rel(p)}: lines {start}-{end} of {n}]\n{body}{more}")

    def _tool_list_dir(self, path: str = ".", depth: int = 2) -> ToolOutcome:
        root = self.resolve(path)
        if not root.is_dir():
            raise ToolError(f"{path!r} is not a directory")
        depth = max(1, min(3, depth))
        out: list[str] = []

        def walk(d: Path, level: int) -> None:
            for child in sorted(d.iterdir(), key=lambda c: c.name):
                if child.name in IGNORED_DIRS or child.name.endswith(".pyc"):
                    continue
                if len(out) >= MAX_LIST_ENTRIES:
                    return
                is_dir = child.is_dir() and not child.is_symlink()
                out.append("  " * (level - 1) + child.name + ("/" if is_dir else ""))
                if is_dir and level < depth:
                    walk(child, level + 1)

        walk(root, 1)
        if len(out) >= MAX_LIST_ENTRIES:
            out.append(f"[... listing capped at {MAX_LIST_ENTRIES} entries]")
        return ToolOutcome(f"{self.rel(root)}/\n" + ("\n".join(out) if out else "(empty)"))

    def _tool_search(self, pattern: str, path: str = ".", regex: bool = False) -> ToolOutcome:
        if not pattern:
            raise ToolError("pattern must not be empty")
        _no_nul("pattern", pattern)
        if "\n" in pattern:
            # grep takes each line as a pattern of its own: "x\n" matched every line (its empty
            # second line matches all), a pasted snippet matched each of its lines anywhere
            raise ToolError(
                "search matches one line at a time: the pattern must not contain a line break "
                "(search for one line of the snippet)"
            )
        found = self.resolve(path)
        if not (found.is_dir() or found.is_file()):  # grep would block on a FIFO
            raise ToolError(f"{path!r} is not a regular file or directory")
        target = self.rel(found)
        cmd = ["grep", "-rnIZ", "-E" if regex else "-F", "--color=never"]
        cmd += [f"--exclude-dir={d}" for d in sorted(IGNORED_DIRS)]
        cmd += ["-e", pattern, "--", target]
        res = run_command(
            cmd, self.workspace, timeout_s=self._time_left(20), memory_mb=512, unsafe=self.unsafe
        )
        if res.status == "timeout":
            raise ToolError("search timed out; use a simpler pattern")
        if res.exit_code == 2:
            raise ToolError(f"bad search: {res.stderr.strip()[:500]}")
        lines = _matches_in_order(res.stdout)
        if not lines:
            return ToolOutcome(f"No matches for {pattern!r} in {target}")
        shown = [ln if len(ln) <= 300 else ln[:300] + "…" for ln in lines[:MAX_SEARCH_MATCHES]]
        more = (
            f"\n[{len(lines) - MAX_SEARCH_MATCHES} more matches not shown; narrow the search]"
            if len(lines) > MAX_SEARCH_MATCHES
            else ""
        )
        return ToolOutcome(f"{len(lines)} match(es):\n" + "\n".join(shown) + more)

    @staticmethod
    def _syntax_gate(path: Path, text: str) -> None:
        if path.suffix in (".js", ".cjs", ".mjs"):
            _js_syntax_gate(path, text)
            return
        if path.suffix != ".py":
            return
        try:
            ast.parse(text, filename=path.name)
        except SyntaxError as exc:
            err = ToolError(
                f"edit rejected: the result would not parse: SyntaxError: {exc.msg} "
                f"(line {exc.lineno}{f', column {exc.offset}' if exc.offset else ''}). "
                "The file was not changed."
            )
            err.edit_status = "rejected_syntax"  # type: ignore[attr-defined]
            raise err from None
        except (ValueError, RecursionError, MemoryError) as exc:
            err = ToolError(f"edit rejected: the result would not parse: {exc}")
            err.edit_status = "rejected_syntax"  # type: ignore[attr-defined]
            raise err from None

    def _write(self, p: Path, text: str) -> None:
        """Replace `p` atomically with `text` (exact bytes: no newline translation), keeping
        its permission bits. The temporary file gets a fresh name, created exclusively: the
        workspace is the model's, and a fixed name could already be a symlink pointing out of it
        (the harness runs outside the sandbox, so following it would write anywhere)."""
        try:
            mode = stat.S_IMODE(os.stat(p).st_mode)
        except FileNotFoundError:
            mode = 0o644  # a new file (os.umask is process-wide: not read from threads)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".hc-tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _tool_edit(self, path: str, old_str: str, new_str: str) -> ToolOutcome:
        p = self.resolve(path)
        if not p.is_file():
            raise ToolError(f"{path!r} is not a file")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:  # read whole in the harness process, outside the sandbox
            raise ToolError(f"{path!r} is too large to edit ({size} bytes); use run")
        try:
            # exact text: no newline translation, so CRLF files and lone CRs stay as they are
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{path!r} is not a UTF-8 text file") from None
        if old_str == "":
            raise ToolError("old_str must not be empty (use create_file to write a whole file)")
        count = text.count(old_str)
        if count == 0 and "\r\n" in text and "\n" in old_str and "\r" not in old_str:
            # a CRLF file: read_file shows its lines without the CR, so the model writes \n
            crlf = old_str.replace("\n", "\r\n")
            if crlf in text:
                old_str, count = crlf, text.count(crlf)
                if "\r" not in new_str:
                    new_str = new_str.replace("\n", "\r\n")
        if count == 0:
            hint = ""
            if text.count(old_str.strip()) == 1:
                hint = (
                    " (it matches once after stripping surrounding whitespace: check indentation)"
                )
            raise ToolError(
                f"old_str not found in {path!r}{hint}; read the file and copy the text exactly"
            )
        if count > 1:
            raise ToolError(
                f"old_str occurs {count} times in {path!r}; include more context to make it unique"
            )
        new_text = text.replace(old_str, new_str, 1)
        self._syntax_gate(p, new_text)
        self._write(p, new_text)
        start = text[: text.index(old_str)].count("\n") + 1
        new_lines = _lines(new_text)
        lo, hi = max(1, start - 3), min(len(new_lines), start + new_str.count("\n") + 3)
        snippet = "\n".join(f"{i:>5}| {new_lines[i - 1]}" for i in range(lo, hi + 1))
        return ToolOutcome(
            f"Edited {self.rel(p)} (lines {start}-{start + new_str.count(chr(10))}):\n{snippet}",
            edit={"tool": "edit", "path": self.rel(p), "status": "applied", "error": None,
                  "old_chars": len(old_str), "new_chars": len(new_str)},
        )  # fmt: skip

    def _tool_create_file(self, path: str, content: str, overwrite: bool = False) -> ToolOutcome:
        p = self.resolve(path, must_exist=False)
        if p.exists() and not overwrite:
            raise ToolError(f"{path!r} already exists; use edit, or pass overwrite=true")
        if p.is_dir():
            raise ToolError(f"{path!r} is a directory")
        self._syntax_gate(p, content)
        p.parent.mkdir(parents=True, exist_ok=True)
        # mkdir may have followed nothing (resolve() already checked), but re-check the parent
        if not p.parent.resolve().is_relative_to(self.workspace):
            raise ToolError(f"path {path!r} is outside the repository")
        self._write(p, content)
        return ToolOutcome(
            f"Wrote {self.rel(p)} ({content.count(chr(10)) + (0 if content.endswith(chr(10)) or not content else 1)} lines)",
            edit={"tool": "create_file", "path": self.rel(p), "status": "applied", "error": None,
                  "old_chars": 0, "new_chars": len(content)},
        )  # fmt: skip

    def _tool_run(self, command: str, timeout: float | None = None) -> ToolOutcome:
        if not command.strip():
            raise ToolError("command must not be empty")
        _no_nul("command", command)
        t = (
            self.run_timeout_s
            if timeout is None
            else max(1.0, min(float(timeout), self.run_timeout_s))
        )
        left = self._time_left(t)
        res = run_command(
            self._real_paths(command), self.workspace, timeout_s=left, memory_mb=self.memory_mb,
            env=self.env, max_output_bytes=256 * 1024, unsafe=self.unsafe,
        )  # fmt: skip
        # the limit, not the time that was left: that is a measurement of the episode's clock
        limit = f"after {t:.0f}s" if left >= t else "at the episode's time limit"
        head = {
            "ok": f"exit code 0 ({res.duration_s:.1f}s)",
            "error": f"exit code {res.exit_code} ({res.duration_s:.1f}s)",
            "timeout": f"TIMED OUT {limit} (process tree killed)",
            "memory": "KILLED: memory limit exceeded",
            "disk": "KILLED: workspace disk quota exceeded (delete files to go on)",
            "killed": f"KILLED by a signal (exit {res.exit_code})",
            "refused": "REFUSED by the sandbox",
        }.get(res.status, res.status)
        parts = [head]
        # steady before the cut: a timing's length would otherwise move where the text is cut
        out, err = (self.steady(x) for x in (res.stdout, res.stderr))
        if out:
            parts.append("stdout:\n" + truncate(out, self.max_observation_chars * 2 // 3))
        if err:
            parts.append("stderr:\n" + truncate(err, self.max_observation_chars // 3))
        if res.stdout_truncated or res.stderr_truncated:
            parts.append("[output capped by the sandbox]")
        return ToolOutcome(self.steady("\n".join(parts)))

    def _tool_submit(self, answer: str | None = None) -> ToolOutcome:
        return ToolOutcome("Submitted.", done=True, answer=answer)
