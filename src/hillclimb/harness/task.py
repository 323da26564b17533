"""The harness task directory: parse and validate `task.toml`, find tasks, write them.

A task directory (DESIGN.md contract; schema in docs/areas/harness.md) is

    task.toml        what to do and how it is graded
    repo/            what the agent sees (copied to a fresh workspace per episode)
    tests/           hidden tests, copied into the workspace only at grading
    solution.patch   optional reference patch (unified diff, `git apply`-able)
    solution.sh      optional reference shell commands (terminal tasks)

Why a frozen dataclass validated up front: a malformed task must fail loudly *for that task*
(a `HillclimbError` naming the file and field), before any sandbox or model time is spent, while
a run over many tasks carries on with the others. TOML because it is human-editable, typed and in
the standard library (`tomllib`); we write it with a tiny serializer for the few types we use.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError

KINDS = ("bugfix", "feature", "refactor", "repo_qa", "terminal")
CHECK_TYPES = ("function_exists", "class_exists", "called_from", "name_absent", "name_present")
DEFAULT_TEST_COMMAND = "python -m pytest -q -rA -p no:cacheprovider tests"
# node 20's TAP reporter does not name a test's file, so files run one at a time behind a marker
# line that `testparse.parse_tap_output` reads (ids `tests/x.test.js::name`). The grader runs its
# reporter-instrumented equivalent instead (results_channel.SINGLE_RUN_JS_COMMAND).
JS_TEST_COMMAND = (
    'for f in tests/*.test.js; do echo "# hillclimb-file: $f"; '
    'node --test --test-reporter=tap "$f" || s=1; done; exit ${s:-0}'
)
# `language` picks the default test command and how per-test outcomes are read from its output.
LANGUAGES = ("python", "javascript")
DEFAULT_TEST_COMMANDS = {"python": DEFAULT_TEST_COMMAND, "javascript": JS_TEST_COMMAND}
# `meta.difficulty` levels, set by the generator (`taskgen.common.task_difficulty`); a task
# without one (hand-written, or generated before the field existed) has difficulty None
DIFFICULTIES = ("easy", "medium", "hard")


@dataclass(frozen=True)
class TaskLimits:
    """Per-task limits; `hillclimb harness run` flags may tighten them."""

    max_steps: int = 30
    max_tokens: int = 65536  # completion + prompt tokens over the whole episode
    wall_s: float = 900.0  # whole episode
    test_timeout_s: float = 120.0  # one grading / `run` command
    memory_mb: int = 2048


@dataclass(frozen=True)
class StructuralCheck:
    """One refactor check, evaluated with `ast` on the graded workspace (harness/structural.py).

    - function_exists: `module` defines function `name` (top level, or a method when `name` is
      `Class.method`).
    - class_exists: `module` defines class `name`.
    - called_from: function `caller` in `module` contains a call to `name` (`f(...)` or `x.f(...)`)
      that runs from the tests, and (session 29, `structural.moved_out`) the code moved: the
      caller no longer holds the helper's returned value and a returned value is kept.
      Optional `expr` (session 30; written by the task generator): the source of the expression
      the task asks to extract; with it the check needs that expression (normalised, locals
      renamed alike) gone from the caller and computed by the helper. Without it (older task
      files) the check is session 29's.
    - name_absent / name_present: identifier `name` does (not) appear in any `*.py` under `path`
      (default the whole workspace; hidden tests excluded), as a def, class, import, name,
      attribute or argument.
    """

    type: str
    name: str
    module: str | None = None
    caller: str | None = None
    path: str | None = None
    expr: str | None = None

    def describe(self) -> str:
        where = self.module or self.path or "."
        extra = f" from {self.caller}" if self.caller else ""
        return f"{self.type}({self.name}{extra} @ {where})"


@dataclass(frozen=True)
class Task:
    id: str
    kind: str
    instruction: str
    root: Path
    test_command: str = DEFAULT_TEST_COMMAND
    fail_to_pass: tuple[str, ...] = ()
    pass_to_pass: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()  # repo_qa: accepted answers (compared normalised)
    checks: tuple[StructuralCheck, ...] = ()
    hidden_tests_dest: str = "tests"
    language: str = "python"
    env: dict[str, str] = field(default_factory=dict)
    limits: TaskLimits = field(default_factory=TaskLimits)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def hidden_tests(self) -> Path:
        return self.root / "tests"

    @property
    def solution_patch(self) -> Path | None:
        p = self.root / "solution.patch"
        return p if p.is_file() else None

    @property
    def solution_script(self) -> Path | None:
        p = self.root / "solution.sh"
        return p if p.is_file() else None

    @property
    def difficulty(self) -> str | None:
        """`meta.difficulty` (one of `DIFFICULTIES`), or None when the task does not say:
        task directories written before the generator recorded it still load and train,
        pooled by kind alone in the harness curriculum (`rl.harness.TaskCurriculum`)."""
        d = self.meta.get("difficulty")
        return d if d in DIFFICULTIES else None

    def ref(self) -> dict[str, Any]:
        """A small JSON reference to this task (RL prompts, telemetry)."""
        return {"task_id": self.id, "kind": self.kind, "task_dir": str(self.root)}


def _err(path: Path, msg: str) -> HillclimbError:
    return HillclimbError(f"task {path}: {msg}")


def _str_list(raw: dict, key: str, path: Path) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(path, f"`{key}` must be a list of non-empty strings")
    return tuple(value)


def _rel_path_ok(p: str) -> bool:
    parts = Path(p).parts
    return bool(p) and "\0" not in p and not Path(p).is_absolute() and ".." not in parts


def _check_expr(path: Path, i: int, ctype: object, expr: object) -> None:
    """`checks[i].expr`: only on `called_from`, one Python expression (as a source segment may
    be written, over lines), of a size the check compares; the harness parses it at every grade,
    so it is refused when the task loads."""
    import ast  # only tasks that name an expression pay for it

    if ctype != "called_from":
        raise _err(path, f"checks[{i}].expr is only for called_from checks, not {ctype}")
    if not isinstance(expr, str) or not expr.strip() or "\0" in expr or len(expr) > 10_000:
        raise _err(path, f"checks[{i}].expr must be a non-empty string of Python (at most 10000 characters)")  # fmt: skip
    try:
        ast.parse("(\n" + expr + "\n)", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise _err(path, f"checks[{i}].expr is not one Python expression: {exc}") from None


def _env_ok(env: object) -> bool:
    """A table of strings the OS can pass to a process: names non-empty, without `=` or NUL,
    values without NUL. Anything else fails in `execve` — at every grade and every `run` call,
    after the model's turns are spent — so it is refused when the task loads."""
    return isinstance(env, dict) and all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
        for k, v in env.items()
    )


def _sandbox_can_apply(root: Path, limits: TaskLimits) -> None:
    """Refuse the limits every `run` call and every grade passes to the sandbox when it would
    refuse them (`test_timeout_s = 1e12` loaded, then each `run` ended the episode in a harness
    error and each grade failed: a task nobody could solve)."""
    from hillclimb.errors import ConfigError
    from hillclimb.sandbox.core import SandboxLimits

    for key, kw in (
        ("test_timeout_s", {"timeout_s": limits.test_timeout_s}),
        ("memory_mb", {"memory_mb": limits.memory_mb}),
    ):
        try:
            SandboxLimits(**kw).validate()
        except ConfigError as exc:
            raise _err(root, f"limits.{key} is more than the sandbox takes ({exc})") from None


def load_task(task_dir: str | os.PathLike[str]) -> Task:
    """Parse and validate `task_dir/task.toml`; raise HillclimbError naming what is wrong."""
    root = Path(task_dir).resolve()
    toml_path = root / "task.toml"
    if not root.is_dir():
        raise HillclimbError(f"task {root}: not a directory")
    if not toml_path.is_file():
        raise _err(root, "missing task.toml")
    try:
        raw = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _err(root, f"malformed task.toml: {exc}") from None

    known = {
        "id", "kind", "instruction", "test_command", "FAIL_TO_PASS", "PASS_TO_PASS", "answer",
        "checks", "hidden_tests_dest", "language", "env", "limits", "meta",
    }  # fmt: skip
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _err(root, f"unknown task.toml keys: {unknown}")
    for key in ("id", "kind", "instruction"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise _err(root, f"`{key}` is required (non-empty string)")
    kind = raw["kind"]
    if kind not in KINDS:
        raise _err(root, f"`kind` must be one of {list(KINDS)}, got {kind!r}")
    language = raw.get("language", "python")
    if language not in LANGUAGES:
        raise _err(root, f"`language` must be one of {list(LANGUAGES)}, got {language!r}")
    test_command = raw.get("test_command", DEFAULT_TEST_COMMANDS[language])
    if not isinstance(test_command, str) or not test_command.strip():
        raise _err(root, "`test_command` must be a non-empty string")
    if "\0" in test_command:
        raise _err(root, "`test_command` must not contain a NUL character")
    f2p = _str_list(raw, "FAIL_TO_PASS", root)
    p2p = _str_list(raw, "PASS_TO_PASS", root)

    answer = raw.get("answer")
    if isinstance(answer, str):
        answers: tuple[str, ...] = (answer,)
    elif isinstance(answer, list) and answer and all(isinstance(a, str) for a in answer):
        answers = tuple(answer)
    elif answer is None:
        answers = ()
    else:
        raise _err(root, "`answer` must be a string or a non-empty list of strings")
    from hillclimb.harness.testparse import normalize_answer

    # the grader compares normalised answers: one that normalises to "" ("", "...", "`!`") is
    # matched by junk like "!" and by nothing a real answer would be
    empty = [a for a in answers if not normalize_answer(a)]
    if empty:
        raise _err(
            root,
            f"`answer` {empty[0]!r} is empty once normalised (case, spaces, quotes and a "
            "trailing . or ! dropped): junk answers would match it",
        )

    checks = []
    raw_checks = raw.get("checks", [])
    if not isinstance(raw_checks, list):
        raise _err(root, "`checks` must be an array of tables ([[checks]])")
    for i, c in enumerate(raw_checks):
        if not isinstance(c, dict):
            raise _err(root, f"checks[{i}] must be a table")
        extra = sorted(set(c) - {"type", "name", "module", "caller", "path", "expr"})
        if extra:
            raise _err(root, f"checks[{i}]: unknown keys {extra}")
        ctype, name = c.get("type"), c.get("name")
        if ctype not in CHECK_TYPES:
            raise _err(root, f"checks[{i}].type must be one of {list(CHECK_TYPES)}, got {ctype!r}")
        if not isinstance(name, str) or not name:
            raise _err(root, f"checks[{i}].name is required")
        if ctype in ("function_exists", "class_exists", "called_from") and not c.get("module"):
            raise _err(root, f"checks[{i}] ({ctype}) needs `module`")
        if ctype == "called_from" and not c.get("caller"):
            raise _err(root, f"checks[{i}] (called_from) needs `caller`")
        for key in ("module", "path"):
            if c.get(key) is not None and not (isinstance(c[key], str) and _rel_path_ok(c[key])):
                raise _err(root, f"checks[{i}].{key} must be a relative path inside the repo")
        if c.get("caller") is not None and not (isinstance(c["caller"], str) and c["caller"]):
            raise _err(root, f"checks[{i}].caller must be a non-empty string")
        if c.get("expr") is not None:
            _check_expr(root, i, ctype, c["expr"])
        checks.append(
            StructuralCheck(
                type=ctype,
                name=name,
                module=c.get("module"),
                caller=c.get("caller"),
                path=c.get("path"),
                expr=c.get("expr"),
            )  # fmt: skip
        )

    # Kind-specific requirements: a task that could never be graded is rejected now.
    if kind in ("bugfix", "feature") and not f2p:
        raise _err(root, f"{kind} tasks need a non-empty FAIL_TO_PASS")
    if kind == "repo_qa" and not answers:
        raise _err(root, "repo_qa tasks need `answer`")
    if kind == "refactor" and not checks and not f2p:
        raise _err(root, "refactor tasks need at least one [[checks]] entry or FAIL_TO_PASS")

    dest = raw.get("hidden_tests_dest", "tests")
    if not isinstance(dest, str) or not _rel_path_ok(dest):
        raise _err(root, "`hidden_tests_dest` must be a relative path inside the repo")
    env = raw.get("env", {})
    if not _env_ok(env):
        raise _err(
            root,
            "`env` must be a table of strings (names non-empty, without `=` or NUL; values "
            "without NUL)",
        )
    raw_limits = raw.get("limits", {})
    if not isinstance(raw_limits, dict):
        raise _err(root, "`limits` must be a table")
    lim_fields = {f for f in TaskLimits.__dataclass_fields__}
    bad = sorted(set(raw_limits) - lim_fields)
    if bad:
        raise _err(root, f"unknown [limits] keys {bad} (known: {sorted(lim_fields)})")
    int_limits = ("max_steps", "max_tokens", "memory_mb")
    for k, v in raw_limits.items():
        # nan passes `v <= 0`; a fraction of an integer limit would truncate (0.5 steps -> 0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise _err(root, f"limits.{k} must be a positive number, got {v!r}")
        if k in int_limits and v != int(v):
            raise _err(root, f"limits.{k} must be a whole number, got {v!r}")
    limits = TaskLimits(**{k: (int(v) if k in int_limits else float(v)) for k, v in raw_limits.items()})  # fmt: skip
    _sandbox_can_apply(root, limits)
    meta = raw.get("meta", {})
    if not isinstance(meta, dict):
        raise _err(root, "`meta` must be a table")
    # a misspelt level ("Hard", 3) would silently pool the task with the unknown-difficulty
    # ones; absent is fine (older tasks)
    if "difficulty" in meta and meta["difficulty"] not in DIFFICULTIES:
        raise _err(
            root,
            f"meta.difficulty must be one of {list(DIFFICULTIES)}, got {meta['difficulty']!r}",
        )

    if not (root / "repo").is_dir():
        raise _err(root, "missing repo/ directory")
    # tests may also live in repo/, so this is only an error when nothing could run them
    if (
        (f2p or p2p)
        and kind != "terminal"
        and not (root / "tests").is_dir()
        and not any((root / "repo").rglob("test*.py"))
        and not any((root / "repo").rglob("*.test.js"))
    ):
        raise _err(root, "FAIL_TO_PASS/PASS_TO_PASS given but no tests/ nor repo tests")
    return Task(
        id=raw["id"], kind=kind, instruction=raw["instruction"], root=root,
        test_command=test_command, fail_to_pass=f2p, pass_to_pass=p2p, answers=answers,
        checks=tuple(checks), hidden_tests_dest=dest, language=language,
        env=dict(env), limits=limits, meta=dict(meta),
    )  # fmt: skip


# How many folder levels below `--tasks` are searched for tasks: the climb writes its held-out
# tasks as `harness-tasks/<group>/<task>`, and `--tasks` may name the eval stage above them.
MAX_TASK_DEPTH = 3


def _is_task_dir(p: Path) -> bool:
    return (p / "task.toml").exists() or (p / "repo").is_dir()


def find_task_dirs(tasks_dir: str | os.PathLike[str]) -> list[Path]:
    """Task directories under `tasks_dir`: itself, or the directories below it holding a
    task.toml or repo/, searched through group folders up to `MAX_TASK_DEPTH` levels down
    (`harness-tasks/new-mutations/<task>`, as the climb writes them); hidden folders are
    skipped, a task's own folders are never searched, and a folder reached twice (a symlink
    back up, a link to another group) is searched once.

    Directories that *look* like tasks but have a broken task.toml are returned too, so the
    runner reports them as errors instead of silently skipping them.
    """
    root = Path(tasks_dir)
    if not root.is_dir():
        raise HillclimbError(f"tasks directory {root} does not exist")
    if (root / "task.toml").is_file():
        return [root]
    out: list[Path] = []
    seen: set[Path] = set()

    def walk(d: Path, depth: int) -> None:
        try:
            real = d.resolve()
            children = sorted(d.iterdir())
        except (OSError, RuntimeError):  # unreadable, or a symlink loop
            return
        if real in seen:
            return
        seen.add(real)
        for p in children:
            if p.name.startswith(".") or not p.is_dir():
                continue
            if _is_task_dir(p):
                if p.resolve() not in seen:
                    seen.add(p.resolve())
                    out.append(p)
            elif depth < MAX_TASK_DEPTH:
                walk(p, depth + 1)

    walk(root, 1)
    if not out:
        subs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        more = " ..." if len(subs) > 10 else ""
        where = f"; its folders: {', '.join(subs[:10])}{more}" if subs else ""
        raise HillclimbError(
            f"no task directories (with task.toml) under {root}, searched {MAX_TASK_DEPTH} "
            f"folder levels down{where}"
        )
    return out


# ---- writing ------------------------------------------------------------------------------------


def _toml_str(s: str) -> str:
    # json's escapes (\" \\ \n \t \uXXXX) are valid TOML basic-string escapes; DEL must be escaped too.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("non-finite float in task.toml")
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list | tuple):
        if not v:
            return "[]"
        return "[\n" + "".join(f"  {_toml_value(x)},\n" for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else _toml_str(k)


def dumps_toml(data: dict[str, Any]) -> str:
    """Serialize the subset of TOML task.toml uses: scalars, lists, tables, arrays of tables."""
    lines: list[str] = []
    tables: list[tuple[str, dict]] = []
    arrays: list[tuple[str, list[dict]]] = []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, items in arrays:
        for item in items:
            lines.append(f"\n[[{_toml_key(k)}]]")
            lines += [
                f"{_toml_key(ik)} = {_toml_value(iv)}" for ik, iv in item.items() if iv is not None
            ]
    for k, table in tables:
        lines.append(f"\n[{_toml_key(k)}]")
        for ik, iv in table.items():
            if isinstance(iv, dict):
                raise TypeError("nested tables are not supported in task.toml")
            if iv is not None:
                lines.append(f"{_toml_key(ik)} = {_toml_value(iv)}")
    return "\n".join(lines) + "\n"
