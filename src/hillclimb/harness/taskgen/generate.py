"""`hillclimb harness generate`: write N verified tasks of the requested kinds, by seed.

Each task is built from one corpus project (sometimes two, for multi-package repositories) and
*proved* before it is kept: bugfix/feature candidates run the tests on the broken code in the
sandbox and are discarded unless some test fails (those become FAIL_TO_PASS; tests passing both
before and after become PASS_TO_PASS); refactors and terminal tasks check that the reference
solution passes; and finally every task is graded twice through the real grader — untouched it
must be unresolved, with its reference solution (patch or answer) resolved. A task that fails any
check is replaced by another candidate from the same RNG stream, so output is deterministic.

JavaScript tasks (`languages=["javascript"]`: bugfix, feature, repo_qa) are built by js_tasks.py on
the same TaskSpec / sandbox runner (common.py) / proof, with TAP-parsed outcomes instead of pytest's.

Why visible tests lose the FAIL_TO_PASS functions: as in SWE-bench the agent should find the bug
from the report, not from a failing test it can read; the hidden `tests/` restores them.
"""

from __future__ import annotations

import ast
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.harness.patching import diff_trees, unified_file_diff
from hillclimb.harness.task import KINDS, dumps_toml
from hillclimb.harness.taskgen import js_tasks, mutate, terminal
from hillclimb.harness.taskgen.common import (
    HELDOUT_TEMPLATES,
    MUTATION_SPLIT_KINDS,
    ProjectRunner,
    TaskSpec,
    check_task_split,
    edit_site,
    fix_lines,
    heldout_reason,
    in_split,
    keep_mutation,
    pick_projects,
    recorded_site_split,
    split_tests,
    task_difficulty,
    write_files,
)
from hillclimb.harness.taskgen.corpus import PROJECTS
from hillclimb.harness.taskgen.questions import questions
from hillclimb.harness.testparse import is_pass
from hillclimb.io import atomic_dir, write_json_atomic
from hillclimb.sandbox import run_command

MAX_ATTEMPTS = 12
GEN_LANGUAGES = ("python", "javascript")
RENAME_PATTERNS = ["compute_{}", "get_{}", "{}_value", "calc_{}"]


def _source_modules(files: dict[str, str]) -> list[str]:
    return [
        p
        for p in sorted(files)
        if p.endswith(".py") and not p.startswith("tests/") and not p.endswith("__init__.py")
    ]


def _drop_tests(test_files: dict[str, str], ids: list[str]) -> dict[str, str]:
    """Visible test files without the given test functions (node ids `tests/f.py::name`)."""
    out = {}
    for rel, src in test_files.items():
        names = {i.split("::", 1)[1] for i in ids if i.split("::", 1)[0] == f"tests/{rel}"}
        if not names:
            out[rel] = src
            continue
        tree = ast.parse(src)
        lines = src.splitlines(keepends=True)
        spans = []
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in names:
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                spans.append((start, node.end_lineno))
        for start, end in sorted(spans, reverse=True):
            del lines[start - 1 : end]
        text = "".join(lines)
        while "\n\n\n\n" in text:
            text = text.replace("\n\n\n\n", "\n\n\n")
        out[rel] = text.rstrip("\n") + "\n"
    return out


def _fail_messages(output: str, ids: list[str], limit: int = 3) -> list[str]:
    msgs = []
    for line in output.splitlines():
        for tid in ids[:limit]:
            if line.startswith(f"FAILED {tid} - ") or line.startswith(f"ERROR {tid} - "):
                msgs.append(line.split(" - ", 1)[1][:200])
    return msgs


# ---- builders ---------------------------------------------------------------------------------


def _baseline(runner: ProjectRunner, files: dict[str, str], projects: list[str]) -> dict[str, str]:
    outcomes, status, out = runner.run(files)
    if not outcomes or not all(is_pass(o) for o in outcomes.values()):
        raise HillclimbError(
            f"corpus projects {projects} do not pass their own tests ({status}): {out[-500:]}"
        )
    return outcomes


def _broken_code_task(
    kind: str,
    rng: random.Random,
    runner: ProjectRunner,
    tid: str,
    multi_prob: float,
    split: str = "all",
    made: Callable[[str, str], bool] | None = None,
) -> TaskSpec | None:
    """A bugfix or feature task on a drawn project, or None. Passed over after the shuffle, so
    the order of the other candidates is unchanged: a mutation this run already holds
    (`made(module, broken_source)`) and a `wrong_variable` swap to a name not bound there
    (`mutate._bound_before`: a NameError whose message names the injected token)."""
    projects, files = pick_projects(rng, PROJECTS, multi_prob, split)
    base = _baseline(runner, files, projects)
    primary = [
        m
        for m in _source_modules(files)
        if m.split("/")[0] in {p.split("/")[0] for p in PROJECTS[projects[0]]}
    ]
    cands = []
    for module in primary:
        edits = (
            mutate.bug_edits(files[module])
            if kind == "bugfix"
            else mutate.stub_edits(files[module])
        )
        cands += [
            (module, e)
            for e in edits
            if keep_mutation(module, e.function, edit_site(e.extra, e.new_source), split)
        ]
    if not cands:
        return None
    rng.shuffle(cands)
    fresh = [
        c
        for c in cands
        if not c[1].extra.get("out_of_scope") and not (made and made(c[0], c[1].new_source))
    ]
    for module, edit in fresh[:6]:
        broken = dict(files, **{module: edit.new_source})
        outcomes, status, output = runner.run(broken)
        if status == "timeout":
            continue
        f2p = sorted(t for t in base if not is_pass(outcomes.get(t)))
        p2p = sorted(t for t in base if is_pass(outcomes.get(t)))
        if not f2p:
            continue  # the bug does not make any test fail: useless, discard
        code, tests = split_tests(broken)
        visible = _drop_tests(tests, f2p)
        repo = dict(code, **{f"tests/{k}": v for k, v in visible.items()})
        _, hidden = split_tests(files)
        fn = edit.function or "?"
        if kind == "bugfix":
            doc = _docstring(files[module], fn)
            msgs = _fail_messages(output, f2p)
            instruction = (
                f"Bug report: `{fn}` in `{module}` does not behave as documented"
                + (f" (\"{doc}\")" if doc else "") + ".\n"
                f"Failing tests: {', '.join(f2p[:5])}" + (" ..." if len(f2p) > 5 else "") + ".\n"
                + (("Errors seen:\n" + "\n".join(f"  {m}" for m in msgs) + "\n") if msgs else "")
                + "Find and fix the bug in the library code (the tests are correct)."
            )  # fmt: skip
        else:
            doc = edit.extra.get("doc", "")
            instruction = (
                f"Implement `{fn}` in `{module}`; it currently raises NotImplementedError.\n"
                f"Specification (its docstring): {doc}\n"
                "Hidden tests will exercise it; keep the rest of the behaviour unchanged."
            )
        meta = {"projects": projects, "module": module, "function": fn, "mutation": edit.kind,
                "description": edit.description, "multi_project": len(projects) > 1}  # fmt: skip
        if "line" in edit.extra:  # the mutation site (`common.mutation_split`)
            meta["line"] = int(edit.extra["line"])
        # which side of the site split this task fell on, recorded whatever --split drew it:
        # a stub's site is the mutated source, which meta does not keep (`heldout_reason`), and
        # a removed guard's every line, of which `line` is the first (`common.edit_split`)
        meta["site_split"] = recorded_site_split(
            module, edit.function, edit_site(edit.extra, edit.new_source)
        )
        return TaskSpec(
            tid, kind, instruction, repo, hidden, {module: files[module]}, f2p, p2p, meta=meta
        )
    return None


def _docstring(src: str, dotted: str) -> str:
    tree = ast.parse(src)
    for name, fn in mutate._functions(tree):
        if name == dotted:
            return (ast.get_docstring(fn) or "").strip()
    return ""


def _refactor_task(
    rng: random.Random, runner: ProjectRunner, tid: str, multi_prob: float, split: str = "all"
) -> TaskSpec | None:
    projects, files = pick_projects(rng, PROJECTS, multi_prob, split)
    base = _baseline(runner, files, projects)
    primary = [
        m
        for m in _source_modules(files)
        if m.split("/")[0] in {p.split("/")[0] for p in PROJECTS[projects[0]]}
    ]
    code, tests = split_tests(files)
    if rng.random() < 0.5:
        cands = [(m, d, n) for m in primary for d, n in mutate.renameable(files, m)]
        rng.shuffle(cands)
        for module, dotted, old in cands[:4]:
            new = rng.choice(RENAME_PATTERNS).format(old)
            if any(new in t for t in files.values()):
                continue
            renamed = {
                p: (mutate.rename_tokens(t, old, new) if p.endswith(".py") else t)
                for p, t in files.items()
            }
            outcomes, _, _ = runner.run(renamed)
            if not outcomes or not all(is_pass(o) for o in outcomes.values()):
                continue
            _, hidden = split_tests(renamed)
            old_with_new_tests, _, _ = runner.run(
                dict(code, **{f"tests/{k}": v for k, v in hidden.items()})
            )
            f2p = sorted(t for t in outcomes if not is_pass(old_with_new_tests.get(t)))
            p2p = sorted(t for t in outcomes if t not in f2p)
            new_dotted = dotted.rsplit(".", 1)[0] + "." + new if "." in dotted else new
            instruction = (
                f"Rename `{dotted}` in `{module}` to `{new}` throughout the repository: the "
                f"definition, every call site and the tests. `{old}` must not remain anywhere. "
                "Behaviour must not change."
            )
            changed = {p: t for p, t in renamed.items() if t != files[p]}
            return TaskSpec(
                tid, "refactor", instruction, files, hidden, changed, f2p, p2p,
                checks=[{"type": "function_exists", "name": new_dotted, "module": module},
                        {"type": "name_absent", "name": old}],
                meta={"projects": projects, "module": module, "refactor": "rename", "old": old, "new": new,
                      "multi_project": len(projects) > 1},
            )  # fmt: skip
        return None
    cands = [(m, e) for m in primary for e in mutate.extract_edits(files[m])]
    rng.shuffle(cands)
    for module, edit in cands[:4]:
        after = dict(files, **{module: edit.new_source})
        outcomes, _, _ = runner.run(after)
        if set(outcomes) != set(base) or not all(is_pass(o) for o in outcomes.values()):
            continue
        helper, params = edit.extra["helper"], edit.extra["params"]
        instruction = (
            f"Refactor `{edit.function}` in `{module}`: extract the expression `{edit.extra['expr']}` "
            f"into a new module-level function `{helper}({', '.join(params)})` in `{module}` that "
            f"returns its value, and call `{helper}` from `{edit.function}` in its place. "
            "Behaviour must not change and the tests must keep passing."
        )
        return TaskSpec(
            tid, "refactor", instruction, files, tests, {module: edit.new_source}, [], sorted(base),
            checks=[{"type": "function_exists", "name": helper, "module": module},
                    {"type": "called_from", "name": helper, "module": module, "caller": str(edit.function),
                     "expr": edit.extra["expr"]}],
            meta={"projects": projects, "module": module, "refactor": "extract_function", "helper": helper,
                  "multi_project": len(projects) > 1},
        )  # fmt: skip
    return None


def _qa_task(
    rng: random.Random, tid: str, multi_prob: float, split: str = "all"
) -> TaskSpec | None:
    projects, files = pick_projects(rng, PROJECTS, multi_prob, split)
    qs = questions(files)
    if not qs:
        return None
    kinds = sorted({q.kind for q in qs})
    kind = rng.choice(kinds)
    q = rng.choice([q for q in qs if q.kind == kind])
    return TaskSpec(
        tid, "repo_qa", q.text, files, answers=q.answers,
        meta={"projects": projects, "question": q.kind, "multi_project": len(projects) > 1},
    )  # fmt: skip


def _terminal_task(
    rng: random.Random, runner: ProjectRunner, tid: str, split: str = "all"
) -> TaskSpec | None:
    templates = [t for t in terminal.TEMPLATES if in_split(t.__name__, split, HELDOUT_TEMPLATES)]
    template = rng.choice(templates)
    t = template(rng)
    return TaskSpec(
        tid,
        "terminal",
        t.instruction,
        t.files,
        {"verify.py": t.verify},
        test_command="python tests/verify.py",
        solution_sh=t.solution,
        meta={"template": t.name},
    )


# ---- writing and verifying --------------------------------------------------------------------


def _solution_patch(spec: TaskSpec, repo_dir: Path, unsafe: bool) -> str | None:
    if spec.kind == "repo_qa":
        return None
    if spec.solution is not None:
        parts = []
        for rel in sorted(spec.solution):
            new = spec.solution[rel]
            old = spec.repo.get(rel)
            if new != old:
                parts.append(unified_file_diff(rel, old, new))
        return "".join(parts)
    if spec.solution_sh is not None:  # terminal: run the reference commands, diff the result
        with tempfile.TemporaryDirectory(prefix="hc-gen-sol-") as tmp:
            ws = Path(tmp) / "ws"
            shutil.copytree(repo_dir, ws)
            res = run_command(spec.solution_sh, ws, timeout_s=60, unsafe=unsafe)
            if res.status != "ok":
                return None
            return diff_trees(repo_dir, ws).patch
    return None


def _write_task(spec: TaskSpec, dest: Path, unsafe: bool, require_hidden_f2p: bool = True) -> bool:
    """Write `spec` to `dest` atomically if it verifies; False if it does not.

    With `require_hidden_f2p`, a bugfix/feature task also needs a FAIL_TO_PASS test that the
    reference passes with a hidden value judged outside the sandbox (`GradeResult.value_checked`).
    Why: a task whose FAIL_TO_PASS tests are all `pytest.raises` / `assert.throws` checks (or
    assertions the grader cannot hide) is judged by the test runner alone, in the interpreter the
    code under test shares, and their inputs are readable: code that special-cases them (or
    swaps the tests) resolves the task with the bug in place (sessions 26-27:
    `bugfix-inventory-11-0002`, seed 11). Such a candidate is discarded and another drawn."""
    from hillclimb.harness.grading import fail_to_pass_hides_nothing, grade_patch
    from hillclimb.harness.task import load_task

    try:
        with atomic_dir(dest) as tmp:
            write_files(tmp / "repo", spec.repo)
            (tmp / "repo").mkdir(exist_ok=True)
            if spec.hidden:
                write_files(tmp / "tests", spec.hidden)
            patch = _solution_patch(spec, tmp / "repo", unsafe)
            if spec.kind != "repo_qa" and not patch:
                raise _Discard("no reference solution")
            if patch:
                (tmp / "solution.patch").write_text(patch, encoding="utf-8")
            if spec.solution_sh:
                (tmp / "solution.sh").write_text(spec.solution_sh, encoding="utf-8")
            doc: dict[str, Any] = {
                "id": spec.id, "kind": spec.kind, "instruction": spec.instruction,
                "test_command": spec.test_command, "FAIL_TO_PASS": spec.f2p, "PASS_TO_PASS": spec.p2p,
            }  # fmt: skip
            if spec.language != "python":
                doc["language"] = spec.language
            if spec.answers:
                doc["answer"] = spec.answers
            if spec.checks:
                doc["checks"] = spec.checks
            doc["limits"] = {"max_steps": 30, "test_timeout_s": 60.0}
            # what the curriculum pools group rates by beside the kind (`common.task_difficulty`)
            spec.meta["fix_lines"] = fix_lines(patch, spec.solution_sh)
            spec.meta["difficulty"] = task_difficulty(
                spec.meta["fix_lines"], bool(spec.meta.get("multi_project"))
            )
            doc["meta"] = {
                k: v for k, v in spec.meta.items() if isinstance(v, str | int | float | bool | list)
            }
            (tmp / "task.toml").write_text(dumps_toml(doc), encoding="utf-8")
            task = load_task(tmp)
            # The proof: untouched -> unresolved; reference solution -> resolved.
            answer = spec.answers[0] if spec.answers else None
            empty = grade_patch(task, None, unsafe=unsafe)
            solved = grade_patch(task, patch, answer=answer, unsafe=unsafe)
            if empty.resolved or not solved.resolved:
                raise _Discard(
                    f"verification failed: empty={empty.status}, solution={solved.status} {solved.message}"
                )
            if require_hidden_f2p and fail_to_pass_hides_nothing(task, solved):
                raise _Discard("no FAIL_TO_PASS test hides a value")
    except _Discard:
        return False
    return True


def _identity(spec: TaskSpec) -> tuple[Any, ...]:
    """What makes two tasks the same task, whatever their ids: the broken code and its fix
    (one mutation on one site, whichever second project was drawn beside it), the question and
    its answers, the terminal data and its verifier. Independent seeds per task index redraw
    popular sites (80 bug/feature tasks of one seed held 13 repeats): a repeat counts one
    success several times in a resolve rate and one example several times in training."""
    if spec.kind == "terminal":
        return (spec.kind, spec.instruction, tuple(sorted(spec.repo.items())), spec.solution_sh)
    if spec.solution:  # bugfix, feature, refactor: the files as given and as fixed
        fix = tuple(sorted(spec.solution.items(), key=lambda kv: kv[0]))
        return (spec.kind, spec.language, fix, tuple(spec.repo.get(p) for p, _ in fix))
    return (spec.kind, spec.language, spec.instruction, tuple(spec.answers))


class _Discard(Exception):
    pass


def generate_tasks(
    out_dir: str | Path,
    n: int,
    *,
    seed: int = 0,
    kinds: list[str] | None = None,
    languages: list[str] | None = None,
    multi_project_prob: float = 0.3,
    unsafe: bool = False,
    progress: Callable[[str], None] | None = None,
    split: str = "all",
    require_hidden_f2p: bool = True,
) -> dict[str, Any]:
    """Generate `n` verified tasks into `out_dir` (round-robin over the supported (kind,
    language) pairs of `kinds` x `languages`); returns the manifest.

    JavaScript supports bugfix, feature and repo_qa (js_tasks.py); it is skipped, with a note in
    the manifest, when node does not run inside the sandbox. Existing task directories with the
    same id are kept (generation is deterministic, so a rerun with the same seed only fills in
    what is missing).

    `split` (`common.TASK_SPLITS`): `train` draws only projects and terminal templates outside
    `common.HELDOUT_PROJECTS` / `HELDOUT_TEMPLATES`, and only the training mutation sites
    (`common.mutation_split`); `heldout` only the held-out projects and templates;
    `heldout_mutations` (bugfix and feature) the held-out sites of the training projects; `all`
    every one. The split is part of each task's id (`-heldout-`, `-train-`; none for `all`) and
    its meta.

    `require_hidden_f2p` (default on): every bugfix/feature task has a FAIL_TO_PASS test with a
    hidden value (`_write_task`); off only for red-team benches and tests that need tasks whose
    FAIL_TO_PASS tests hide nothing."""
    check_task_split(split)
    kinds = list(dict.fromkeys(kinds or KINDS))  # a repeated kind would skew the round-robin
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise HillclimbError(f"unknown task kinds {bad}; choose from {list(KINDS)}")
    languages = list(dict.fromkeys(languages or ["python"]))
    bad = [lang for lang in languages if lang not in GEN_LANGUAGES]
    if bad or not languages:
        raise HillclimbError(f"unknown languages {bad}; choose from {list(GEN_LANGUAGES)}")
    if n < 1:
        raise HillclimbError("--n must be at least 1")
    if split == "heldout_mutations" and set(kinds) - set(MUTATION_SPLIT_KINDS):
        raise HillclimbError(
            f"--split heldout_mutations holds out mutation sites, so it makes only "
            f"{list(MUTATION_SPLIT_KINDS)} tasks; got kinds {kinds} (use --kinds bugfix feature)"
        )
    notes: list[str] = []
    if "javascript" in languages and js_tasks.node_version(unsafe) is None:
        languages.remove("javascript")
        notes.append(
            "javascript skipped: `node` does not run inside the sandbox (install Node.js >= 18 "
            "under /usr, e.g. the Debian package `nodejs`)"
        )
    combos = [
        (k, lang)
        for k in kinds
        for lang in languages
        if lang == "python" or k in ("bugfix", "feature", "repo_qa")
    ]
    if not combos:
        raise HillclimbError(
            f"no task can be generated for kinds {kinds} in languages {languages}"
            + (f" ({'; '.join(notes)})" if notes else "")
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runner = ProjectRunner(unsafe)
    manifest: list[dict[str, Any]] = []
    failures: list[str] = []
    made: set[tuple[Any, ...]] = set()  # `_identity` of every task kept so far
    made_edits: set[tuple[str, str, str, str | None]] = set()  # (kind, language, file, broken)
    for i in range(n):
        kind, lang = combos[i % len(combos)]
        rng = random.Random(f"{seed}:{i}")
        done = False
        repeats = 0

        def repeated(module: str, broken: str, kind: str = kind, lang: str = lang) -> bool:
            return (kind, lang, module, broken) in made_edits

        for attempt in range(MAX_ATTEMPTS):
            if lang == "javascript":
                if kind == "repo_qa":
                    spec = js_tasks.qa_task(rng, "", multi_project_prob, split)
                else:
                    spec = js_tasks.broken_code_task(
                        kind, rng, runner, "", multi_project_prob, split, repeated
                    )
            elif kind in ("bugfix", "feature"):
                spec = _broken_code_task(kind, rng, runner, "", multi_project_prob, split, repeated)
            elif kind == "refactor":
                spec = _refactor_task(rng, runner, "", multi_project_prob, split)
            elif kind == "repo_qa":
                spec = _qa_task(rng, "", multi_project_prob, split)
            else:
                spec = _terminal_task(rng, runner, "", split)
            if spec is None:
                continue
            identity = _identity(spec)
            if identity in made:
                repeats += 1
                continue  # this run already holds the same task under another id: draw again
            label = spec.meta.get("template") or "+".join(spec.meta.get("projects", []))
            if lang != "python":
                label = f"js-{label}"
            if split != "all":
                spec.meta["split"] = split
            tag = "" if split == "all" else f"{split}-"
            spec.id = f"{kind}-{label}-{tag}{seed}-{i:04d}"
            dest = out / spec.id
            if dest.exists() or _write_task(spec, dest, unsafe, require_hidden_f2p):
                made.add(identity)
                made_edits.update((kind, lang, m, spec.repo.get(m)) for m in spec.solution or {})
                manifest.append({"id": spec.id, "kind": kind, "language": lang, "attempts": attempt + 1, **{
                    k: v for k, v in spec.meta.items() if k in ("projects", "mutation", "refactor", "question", "template", "split", "difficulty")}})  # fmt: skip
                why = heldout_reason(spec.meta)
                if why:
                    manifest[-1]["evaluation_only"] = why
                if progress:
                    progress(spec.id)
                done = True
                break
        if not done:
            failures.append(
                f"task {i} ({kind}): no verifiable candidate in {MAX_ATTEMPTS} attempts"
                + (f" ({repeats} repeated a task already made)" if repeats else "")
            )
    held = sum("evaluation_only" in t for t in manifest)
    if held and split == "all":
        notes.append(
            f"{held} of {len(manifest)} tasks are evaluation-only (held-out projects, terminal "
            "templates or mutation sites; `rl --harness` refuses them): generate training tasks "
            "with --split train"
        )
    summary = {
        "seed": seed, "n": n, "split": split, "kinds": kinds, "languages": languages, "generated": len(manifest),
        "evaluation_only": held, "failures": failures, "notes": notes, "tasks": manifest,
    }  # fmt: skip
    write_json_atomic(out / "manifest.json", summary)
    return summary
