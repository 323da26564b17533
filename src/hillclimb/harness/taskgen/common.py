"""What the Python and JavaScript task generators share: the task record, the sandboxed test
runner, the file split and the project draw.

Why a module of its own: `generate.py` drives generation and dispatches to `js_tasks.py` for
JavaScript, while `js_tasks.py` builds on the same `TaskSpec`, test runner, file split and project
draw. With those in `generate.py` the two modules imported each other (issue 16); here both import
downward, and each piece has one implementation.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.harness.task import DEFAULT_TEST_COMMAND
from hillclimb.harness.testparse import parse_test_output
from hillclimb.io import HELDOUT_MARKER
from hillclimb.sandbox import run_command


@dataclass
class TaskSpec:
    id: str
    kind: str
    instruction: str
    repo: dict[str, str]
    hidden: dict[str, str] = field(default_factory=dict)  # relative to tests/
    solution: dict[str, str | None] | None = (
        None  # files the reference solution changes (None: delete)
    )
    f2p: list[str] = field(default_factory=list)
    p2p: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    checks: list[dict[str, str]] = field(default_factory=list)
    test_command: str = DEFAULT_TEST_COMMAND
    solution_sh: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    language: str = "python"


class ProjectRunner:
    """Runs a project's tests in the sandbox, with a cache for unchanged file sets."""

    def __init__(self, unsafe: bool) -> None:
        self.unsafe = unsafe
        self.cache: dict[int, tuple[dict[str, str], str, str]] = {}

    def run(
        self, files: dict[str, str], cmd: str = DEFAULT_TEST_COMMAND, language: str = "python"
    ) -> tuple[dict[str, str], str, str]:
        key = hash((tuple(sorted(files.items())), cmd, language))
        if key in self.cache:
            return self.cache[key]
        with tempfile.TemporaryDirectory(prefix="hc-gen-") as tmp:
            write_files(Path(tmp), files)
            res = run_command(cmd, tmp, timeout_s=60, memory_mb=2048, unsafe=self.unsafe)
        out = res.stdout + "\n" + res.stderr
        val = (parse_test_output(out, language) if res.status != "timeout" else {}, res.status, out)
        self.cache[key] = val
        return val


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def split_tests(files: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(non-test files, test files keyed relative to tests/)."""
    code = {p: t for p, t in files.items() if not p.startswith("tests/")}
    tests = {p[len("tests/") :]: t for p, t in files.items() if p.startswith("tests/")}
    return code, tests


# Projects and terminal templates never used for training tasks: `harness generate --split
# heldout` draws only from them, `--split train` never does (`all`, the default, draws from every
# project, as before the split existed: the same seed keeps giving the same tasks). An agent
# trained on `train` tasks and evaluated on `heldout` ones is measured on code it never saw, not on
# new mutations of code it learned (docs/areas/harness.md, "Held-out projects").
# The held-out projects are the ones whose directory carries `io.HELDOUT_MARKER` (Python
# gridpath, roman, textstats; JavaScript ranges, semver): the same file keeps them out of the
# pre-training corpus when a recipe ingests this package's own source tree.
#
# Within the training projects, bug and stub *sites* are split too: one site in four (a line of
# a module, or a function for a stub) is held out (`mutation_split`). `--split train` never draws
# a held-out site and `--split heldout_mutations` draws only those (from the training projects),
# so "new mutations of projects the model trained on" means a line no training task broke, not
# merely another seed that may redraw a training task.
TASK_SPLITS: tuple[str, ...] = ("all", "train", "heldout", "heldout_mutations")
MUTATION_SPLIT_KINDS = ("bugfix", "feature")  # the kinds built from mutation sites


def _marked_projects() -> frozenset[str]:
    from hillclimb.harness.taskgen.corpus import LANGUAGES, projects_root

    root = projects_root()
    return frozenset(
        p.name
        for lang in LANGUAGES
        for p in (root / lang).iterdir()
        if p.is_dir() and (p / HELDOUT_MARKER).is_file()
    )


HELDOUT_PROJECTS: frozenset[str] = _marked_projects()
HELDOUT_TEMPLATES: frozenset[str] = frozenset({"grep_errors", "json_value"})  # terminal: 2 of 6


def check_task_split(split: str) -> None:
    if split not in TASK_SPLITS:
        raise HillclimbError(f"unknown task split {split!r}; choose from {list(TASK_SPLITS)}")


def in_split(name: str, split: str, heldout: frozenset[str] = HELDOUT_PROJECTS) -> bool:
    """Whether project (or terminal template) `name` may be drawn for `split`
    (`heldout_mutations` draws from the training projects)."""
    check_task_split(split)
    return split == "all" or (name in heldout) == (split == "heldout")


def mutation_split(module: str, function: str | None, site: object) -> str:
    """`heldout` for one mutation site in four, else `train`: a pure function of the module
    path, the enclosing function and the site (a line number, or the mutated source when a
    transform has no line), so every mutation of one line falls on the same side."""
    key = f"{module}\0{function}\0{site}".encode()
    return "heldout" if hashlib.sha256(key).digest()[0] % 4 == 0 else "train"


HELDOUT_SPLITS = ("heldout", "heldout_mutations")
TASK_SPLITS = ("all", "train", *HELDOUT_SPLITS)  # `harness generate --split` choices


def heldout_reason(meta: dict[str, Any] | None) -> str | None:
    """Why a task with this `task.toml` meta is evaluation-only, or None for a training task.

    Not only its recorded split: `--split all` (the default) draws from every project and site,
    so an `all` task can still break a held-out project, use a held-out terminal template or
    mutate a held-out line — training on it would teach what the harness suite measures."""
    meta = meta or {}
    if not isinstance(meta, dict):  # a hand-edited export: nothing shows it is a training task
        return f"task meta is not a table ({type(meta).__name__})"
    split = meta.get("split")
    if split in HELDOUT_SPLITS:
        return f"generated with --split {split}"
    # fail closed: `split = ["heldout"]` or a misspelt split read as a training task (session 23)
    if split is not None and split not in TASK_SPLITS:
        return f"its split {split!r} is not one of {', '.join(TASK_SPLITS)}"
    projects = meta.get("projects")
    if isinstance(projects, str):  # one project written as a string, not a list
        projects = [projects]
    if projects is not None and (
        not isinstance(projects, list) or not all(isinstance(p, str) for p in projects)
    ):
        return f"its projects {projects!r} are not a list of project names"
    held = sorted(p for p in projects or [] if p in HELDOUT_PROJECTS)
    if held:
        return f"uses the held-out project {held[0]}"
    template = meta.get("template")
    if template is not None and not isinstance(template, str):
        return f"its terminal template {template!r} is not a template name"
    if template in HELDOUT_TEMPLATES:
        return f"uses the held-out terminal template {template}"
    site_split = meta.get("site_split")  # recorded at generation (bugfix / feature tasks)
    if site_split == "heldout":
        return "mutates a held-out site"
    if site_split is not None and site_split != "train":
        return f"its site split {site_split!r} is neither train nor heldout"
    module, function, line = meta.get("module"), meta.get("function"), meta.get("line")
    if "line" in meta and (not isinstance(line, int) or isinstance(line, bool)):
        # the site cannot be placed on either side of the split: not shown to be training
        return f"its mutation site's line {line!r} is not a line number"
    if (
        isinstance(module, str)
        and isinstance(line, int)
        and not isinstance(line, bool)
        and mutation_split(module, function, line) == "heldout"
    ):
        return f"mutates a held-out site ({module}:{line})"
    return None


def edit_site(extra: dict[str, Any], new_source: str) -> object:
    """An edit's site for the split: the lines it spans, its line, or (a transform without
    one: a stub) the mutated source."""
    return extra.get("lines") or extra.get("line", new_source)


def edit_split(module: str, function: str | None, site: object) -> str:
    """`mutation_split` of an edit at `site`, or at every line of `site` when it is a list (a
    removed guard spans its `if` line and the `raise`/`return` below): `train` or `heldout`
    when every line falls on that side, else `mixed`. A guard whose first line is a training
    site may cover a held-out line, so keying it by its first line alone let a training task's
    fix rewrite a line a held-out mutation breaks."""
    sites = site if isinstance(site, list) else [site]
    sides = {mutation_split(module, function, s) for s in sites}
    return sides.pop() if len(sides) == 1 else "mixed"


def recorded_site_split(module: str, function: str | None, site: object) -> str:
    """What `meta.site_split` records: `train` only when every line of the edit is a training
    site (a mixed edit touches a held-out line, so its task is evaluation-only)."""
    return "train" if edit_split(module, function, site) == "train" else "heldout"


def keep_mutation(module: str, function: str | None, site: object, split: str) -> bool:
    """Whether a mutation at `site` (one site, or the list of lines an edit spans) may be drawn
    for `split`: `train` keeps edits wholly on training sites, `heldout_mutations` those wholly
    on held-out ones (a mixed edit is neither), `all` and `heldout` (unseen projects) every
    one."""
    if split not in ("train", "heldout_mutations"):
        return True
    want = "heldout" if split == "heldout_mutations" else "train"
    return edit_split(module, function, site) == want


def pick_projects(
    rng: random.Random, projects: dict[str, dict[str, str]], multi_prob: float, split: str = "all"
) -> tuple[list[str], dict[str, str]]:
    """One project, and with probability `multi_prob` a second, different one: (names, merged
    files), both from `split`'s projects. The draws (`choice`, `random`, `choice`) are part of the
    seed contract: the same seed must keep drawing the same projects, so their order and number
    do not change."""
    names = sorted(n for n in projects if in_split(n, split))
    chosen = [rng.choice(names)]
    if rng.random() < multi_prob:
        chosen.append(rng.choice([n for n in names if n != chosen[0]]))
    files: dict[str, str] = {}
    for n in chosen:
        files.update(projects[n])
    return chosen, files


# `task_difficulty`: the reference fix's size (lines) up to which a task is easy / medium
DIFFICULTY_FIX_LINES = (2, 8)


def fix_lines(patch: str | None, solution_sh: str | None = None) -> int:
    """The size of the reference solution in lines: max(lines added, lines removed) of its
    unified diff (a one-line bug swap is 1, a stub replaced by an 8-line body 8), or the
    commands of a terminal task's `solution.sh`; 0 for none (repo_qa: the answer is a name)."""
    if solution_sh:  # the agent types commands; its files' diff is their output, not its work
        return sum(1 for ln in solution_sh.splitlines() if ln.strip() and not ln.startswith("#"))
    if patch:
        body = [ln for ln in patch.splitlines() if not ln.startswith(("+++", "---"))]
        return max(sum(ln.startswith("+") for ln in body), sum(ln.startswith("-") for ln in body))
    return 0


def task_difficulty(fix: int, multi_project: bool) -> str:
    """`meta.difficulty` of a generated task: `easy`, `medium` or `hard`.

    Why these signals: they are what the generator knows for every kind without running a
    model, and they are what a small policy pays for in a tiny context. The reference fix's
    size (`fix_lines`) is how many lines the model must write correctly token by token (a
    swapped operator: 1; a stubbed function: its whole body) — up to `DIFFICULTY_FIX_LINES[0]`
    easy, up to `[1]` medium, else hard; a second project in the repository doubles the code to
    search and read through tool observations, so it raises the level by one (at most hard).
    Not the number of FAIL_TO_PASS tests: one broken helper fails many tests yet is one line to
    fix, so that count measures the project's test coverage more than the task's work. Coarse
    on purpose: the curriculum pools the group rate of the tasks sharing (kind, difficulty), so
    each level must hold several tasks."""
    level = sum(fix > t for t in DIFFICULTY_FIX_LINES) + int(multi_project)
    return ("easy", "medium", "hard")[min(level, 2)]
