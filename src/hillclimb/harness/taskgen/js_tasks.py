"""JavaScript task builders for `hillclimb harness generate --languages javascript`.

The same recipe as the Python generator (generate.py), on the Node.js corpus (corpus.py) with
the token-level mutator (js_mutate.py): every candidate bug or feature is validated in the
sandbox — `node --check` on the changed module, then `node --test` file by file — and kept only
if the module still parses, every baseline test still *runs* (a mutation that stops a test file
from loading is discarded as degenerate), and at least one test fails; those become FAIL_TO_PASS,
the rest PASS_TO_PASS. Kinds: `bugfix`, `feature` (a stubbed or deleted function) and `repo_qa`
(token-derived questions with unique answers). Refactors and terminal tasks stay Python-only:
their structural checks are `ast`-based.

Why a probe for node instead of `shutil.which`: what matters is whether node runs *inside the
sandbox* (it must live under a read-only mount such as /usr), so `node_version` asks the sandbox.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable

from hillclimb.errors import HillclimbError
from hillclimb.harness.task import JS_TEST_COMMAND
from hillclimb.harness.taskgen import js_mutate
from hillclimb.harness.taskgen.common import (
    ProjectRunner,
    TaskSpec,
    edit_site,
    keep_mutation,
    pick_projects,
    recorded_site_split,
    split_tests,
)
from hillclimb.harness.taskgen.corpus import JS_PROJECTS
from hillclimb.harness.taskgen.mutate import Edit
from hillclimb.harness.taskgen.questions import Question, gradable
from hillclimb.harness.testparse import FILE_MARKER, is_pass
from hillclimb.sandbox import run_command

JS_KINDS = ("bugfix", "feature", "repo_qa")
MAX_CANDIDATES = 6
_NODE: dict[bool, str | None] = {}


def node_version(unsafe: bool = False) -> str | None:
    """`node --version` as seen inside the sandbox, or None when node cannot run there."""
    if unsafe not in _NODE:
        with tempfile.TemporaryDirectory(prefix="hc-node-") as tmp:
            try:
                res = run_command("node --version", tmp, timeout_s=30, unsafe=unsafe)
            except Exception:  # no sandbox backend: nothing JavaScript can be validated
                _NODE[unsafe] = None
            else:
                out = res.stdout.strip()
                _NODE[unsafe] = out if res.status == "ok" and out.startswith("v") else None
    return _NODE[unsafe]


def _pick_js_repo(
    rng: random.Random, multi_prob: float, split: str = "all"
) -> tuple[list[str], dict[str, str]]:
    """`pick_projects` on the JavaScript corpus, plus the `package.json` every repo has."""
    chosen, files = pick_projects(rng, JS_PROJECTS, multi_prob, split)
    pkg = {
        "name": "-".join(chosen),
        "version": "1.0.0",
        "private": True,
        "license": "MIT",
        "scripts": {"test": "node --test tests/"},
    }
    files["package.json"] = json.dumps(pkg, indent=2) + "\n"
    return chosen, files


def _source_modules(files: dict[str, str], project: str) -> list[str]:
    return sorted(
        p for p in JS_PROJECTS[project] if p.endswith(".js") and not p.startswith("tests/")
    )


def _baseline(runner: ProjectRunner, files: dict[str, str], projects: list[str]) -> dict[str, str]:
    outcomes, status, out = runner.run(files, JS_TEST_COMMAND, "javascript")
    if not outcomes or not all(is_pass(o) for o in outcomes.values()):
        raise HillclimbError(
            f"JS corpus projects {projects} do not pass their own tests ({status}): {out[-500:]}"
        )
    return outcomes


def _interleave(rng: random.Random, edits: list[tuple[str, Edit]]) -> list[tuple[str, Edit]]:
    """Shuffle within each mutation kind, then alternate kinds, so one prolific kind (there are
    many more variable reads than guards) does not crowd out the others."""
    by_kind: dict[str, list[tuple[str, Edit]]] = defaultdict(list)
    for m, e in edits:
        by_kind[e.kind].append((m, e))
    kinds = sorted(by_kind)
    rng.shuffle(kinds)
    for k in kinds:
        rng.shuffle(by_kind[k])
    out = []
    for i in range(max((len(v) for v in by_kind.values()), default=0)):
        out += [by_kind[k][i] for k in kinds if i < len(by_kind[k])]
    return out


def tap_fail_messages(output: str, ids: list[str], limit: int = 3) -> list[str]:
    """The first line of each failing test's `error:` from TAP output (first `limit` ids)."""
    wanted = set(ids[:limit])
    msgs: list[str] = []
    lines = output.splitlines()
    current = ""
    for i, line in enumerate(lines):
        if line.startswith(FILE_MARKER):
            current = line[len(FILE_MARKER) :].strip()
            continue
        m = re.match(r"^not ok \d+ - (.*)$", line)
        if not m or f"{current}::{m.group(1).strip()}" not in wanted:
            continue
        for j in range(i + 1, min(i + 40, len(lines))):
            body = lines[j].strip()
            if body == "...":
                break
            if body.startswith("error:"):
                rest = body[len("error:") :].strip()
                if rest in ("|-", "|", ">-", ">"):
                    nxt = [x.strip() for x in lines[j + 1 : j + 6] if x.strip()]
                    rest = " ".join(nxt[:2])
                msgs.append(f"{m.group(1).strip()}: {rest.strip(chr(39) + chr(34))}"[:200])
                break
    return msgs


def broken_code_task(
    kind: str,
    rng: random.Random,
    runner: ProjectRunner,
    tid: str,
    multi_prob: float,
    split: str = "all",
    made: Callable[[str, str], bool] | None = None,
) -> TaskSpec | None:
    """A JavaScript bugfix or feature task, validated in the sandbox; None if no candidate held.
    `made(module, broken_source)` says a mutation this run already holds (passed over)."""
    projects, files = _pick_js_repo(rng, multi_prob, split)
    base = _baseline(runner, files, projects)
    cands: list[tuple[str, Edit]] = []
    for module in _source_modules(files, projects[0]):
        src = files[module]
        if kind == "bugfix":
            edits = js_mutate.bug_edits(src)
        else:
            edits = js_mutate.stub_edits(src) + js_mutate.remove_edits(src)
        cands += [
            (module, e)
            for e in edits
            if keep_mutation(module, e.function, edit_site(e.extra, e.new_source), split)
        ]
    order = _interleave(rng, cands)
    fresh = [c for c in order if not (made and made(c[0], c[1].new_source))]
    for module, edit in fresh[:MAX_CANDIDATES]:
        broken = dict(files, **{module: edit.new_source})
        cmd = f"node --check '{module}' || exit 99; {JS_TEST_COMMAND}"
        outcomes, status, output = runner.run(broken, cmd, "javascript")
        if status == "timeout" or not set(base) <= set(outcomes):
            continue  # does not parse, or a test file no longer loads: not a realistic bug
        f2p = sorted(t for t in base if not is_pass(outcomes.get(t)))
        p2p = sorted(t for t in base if is_pass(outcomes.get(t)))
        if not f2p:
            continue  # the mutation makes no test fail: useless, discard
        code, tests = split_tests(broken)
        visible = {}
        for rel, text in tests.items():
            names = {t.split("::", 1)[1] for t in f2p if t.split("::", 1)[0] == f"tests/{rel}"}
            visible[rel] = js_mutate.drop_tests(text, names) if names else text
        repo = dict(code, **{f"tests/{k}": v for k, v in visible.items()})
        _, hidden = split_tests(files)
        fn = edit.function or "?"
        doc = edit.extra.get("doc", "")
        if kind == "bugfix":
            if not doc:
                doc = next(
                    (f.doc for f in js_mutate.parse_module(files[module]).functions if f.name == fn),
                    "",
                )  # fmt: skip
            msgs = tap_fail_messages(output, f2p)
            instruction = (
                f"Bug report: `{fn}` in `{module}` does not behave as documented"
                + (f' ("{doc}")' if doc else "") + ".\n"
                f"Failing tests: {', '.join(f2p[:5])}" + (" ..." if len(f2p) > 5 else "") + ".\n"
                + (("Errors seen:\n" + "\n".join(f"  {m}" for m in msgs) + "\n") if msgs else "")
                + "Find and fix the bug in the library code (the tests are correct). "
                "The tests run with `node --test tests/`."
            )  # fmt: skip
        elif edit.kind == "stub_function":
            instruction = (
                f"Implement `{fn}` in `{module}`; it currently throws "
                f'"{fn.split(".")[-1]} is not implemented yet".\n'
                f"Specification (its JSDoc): {doc}\n"
                "Hidden tests will exercise it; keep the rest of the behaviour unchanged."
            )
        else:
            instruction = (
                f"Add a function `{edit.extra['signature']}` to `{module}` and export it "
                "(add it to `module.exports`).\n"
                f"Specification: {doc}\n"
                "Hidden tests will exercise it; keep the rest of the behaviour unchanged."
            )
        return TaskSpec(
            tid, kind, instruction, repo, hidden, {module: files[module]}, f2p, p2p,
            test_command=JS_TEST_COMMAND, language="javascript",
            meta={"projects": projects, "module": module, "function": fn, "mutation": edit.kind,
                  "description": edit.description, "multi_project": len(projects) > 1,
                  "site_split": recorded_site_split(
                      module, edit.function, edit_site(edit.extra, edit.new_source))},
        )  # fmt: skip
    return None


# ---- repository questions ----------------------------------------------------------------------


def questions(files: dict[str, str]) -> list[Question]:
    """Questions with unique, mechanically derived answers about a JavaScript repository."""
    mods = {
        p: js_mutate.parse_module(t)
        for p, t in sorted(files.items())
        if p.endswith(".js") and not p.startswith("tests/")
    }
    out: list[Question] = []
    defined: Counter[str] = Counter(f.name for m in mods.values() for f in m.functions)
    for path, mod in mods.items():
        for f in mod.functions:
            if f.bare == "constructor" or defined[f.name] != 1:
                continue
            kind = "method" if "." in f.name else "function"
            out.append(Question("where_defined",
                                f"In which file is the {kind} `{f.name}` defined? Give its path.",
                                [path, path[: -len(".js")]]))  # fmt: skip
            n = len(f.param_names(mod.code))
            out.append(Question("param_count",
                                f"How many parameters does the {kind} `{f.name}` in `{path}` take?",
                                [str(n)]))  # fmt: skip
    for top in sorted({p.split("/")[0] for p in mods if "/" in p}):
        n = sum(len(m.classes) for p, m in mods.items() if p.startswith(top + "/"))
        out.append(Question("class_count", f"How many classes are defined in `{top}/`?", [str(n)]))
    throwers: dict[str, set[str]] = defaultdict(set)
    callers: dict[str, set[str | None]] = defaultdict(set)
    top_level = {f.bare for m in mods.values() for f in m.functions if f.top_level}
    for mod in mods.values():
        c = mod.code
        for i, t in enumerate(c[:-1]):
            owner = mod.owner(i)
            if t.text == "throw" and i + 2 < len(c) and c[i + 1].text == "new":
                throwers[c[i + 2].text].add(owner.name if owner else None)  # type: ignore[arg-type]
            if (
                t.kind == "ident"
                and t.text in top_level
                and c[i + 1].text == "("
                and (i == 0 or c[i - 1].text not in (".", "function"))
            ):
                callers[t.text].add(owner.name if owner else None)
    for err, who in sorted(throwers.items()):
        if len(who) == 1 and None not in who:
            (name,) = who
            spell = [name] + ([name.split(".")[-1]] if "." in name else [])
            art = "an" if err[:1] in "AEIOU" else "a"
            out.append(Question("raises", f"Which function or method throws {art} `{err}`?", spell))
    for callee, who in sorted(callers.items()):
        if len(who) == 1 and None not in who:
            (name,) = who
            spell = [name] + ([name.split(".")[-1]] if "." in name else [])
            out.append(Question("unique_caller",
                                f"Which function or method calls `{callee}`? (There is exactly one.)",
                                spell))  # fmt: skip
    return gradable(out)


def qa_task(rng: random.Random, tid: str, multi_prob: float, split: str = "all") -> TaskSpec | None:
    projects, files = _pick_js_repo(rng, multi_prob, split)
    qs = questions(files)
    if not qs:
        return None
    kind = rng.choice(sorted({q.kind for q in qs}))
    q = rng.choice([q for q in qs if q.kind == kind])
    return TaskSpec(
        tid, "repo_qa", q.text, files, answers=q.answers, test_command=JS_TEST_COMMAND,
        language="javascript",
        meta={"projects": projects, "question": q.kind, "multi_project": len(projects) > 1},
    )  # fmt: skip
