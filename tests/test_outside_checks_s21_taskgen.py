"""Outside checks, session 21: whether generated tasks are honest measurements (repo_qa answers
unique and checked correctly, one mutation never counted twice) and whether telemetry exports
keep evaluation episodes and reversed verdicts straight, with inputs their authors had not tried."""

from __future__ import annotations

import ast
import difflib
import itertools
import json
import shutil
import time
import tomllib
from pathlib import Path

import pytest

from hillclimb.harness.grading import normalize_answer
from hillclimb.harness.taskgen import js_tasks
from hillclimb.harness.taskgen.corpus import JS_PROJECTS, PROJECTS
from hillclimb.harness.taskgen.generate import generate_tasks
from hillclimb.harness.taskgen.questions import questions


def _repos(corpus: dict[str, dict[str, str]]):
    """Every repository a task can be drawn on: each project alone and every ordered pair."""
    names = sorted(corpus)
    for combo in [(n,) for n in names] + list(itertools.permutations(names, 2)):
        files: dict[str, str] = {}
        for n in combo:
            files.update(corpus[n])
        yield combo, files


# ------------------------------------------------------------------------ repo_qa questions


def test_unique_caller_questions_never_count_a_same_named_method_call():
    """gridpath + matrix asked "Which function calls `add`? (matrix's `add(a, b)`)" and accepted
    only `shortest_path`, which calls `seen.add(...)` on a set: any `.add(` counted as a call of
    the top-level `add`, so the one right answer ("nothing calls it") was graded wrong."""
    for combo, files in _repos(PROJECTS):
        trees = {
            p: ast.parse(t)
            for p, t in files.items()
            if p.endswith(".py") and not p.startswith("tests/")
        }
        modules = {  # names bound to imported modules, the only receivers that resolve
            (a.asname or a.name).split(".")[0]
            for t in trees.values()
            for n in ast.walk(t)
            if isinstance(n, ast.Import | ast.ImportFrom)
            for a in n.names
        }
        for q in questions(files):
            if q.kind != "unique_caller":
                continue
            callee = q.text.split("`")[1]
            for t in trees.values():
                for n in ast.walk(t):
                    if (
                        isinstance(n, ast.Call)
                        and isinstance(n.func, ast.Attribute)
                        and n.func.attr == callee
                    ):
                        recv = n.func.value
                        assert isinstance(recv, ast.Name) and recv.id in modules, (combo, q)


def test_defined_in_questions_name_a_name_defined_once():
    """inventory + matrix asked "Which file defines `add`?" accepting only matrix/ops.py, while
    inventory/store.py defines the method `Inventory.add`: two right answers, one graded wrong."""
    for combo, files in _repos(PROJECTS):
        where: dict[str, set[str]] = {}
        for p, t in files.items():
            if p.endswith(".py"):
                for n in ast.walk(ast.parse(t)):
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                        where.setdefault(n.name, set()).add(p)
        for q in questions(files):
            if q.kind == "defined_in":
                name = q.text.split("`")[1]
                assert len(where[name]) == 1, (combo, q, where[name])


def test_repo_qa_answers_survive_the_graders_normalisation():
    """strutil's `truncate(text, width, suffix='...')` gave the question "default value of
    `suffix`?" whose accepted answer `'...'` normalises to the empty string, so any answer of
    only quotes, dots or `!` (".", "!!") graded resolved."""
    for corpus, ask in ((PROJECTS, questions), (JS_PROJECTS, js_tasks.questions)):
        for combo, files in _repos(corpus):
            for q in ask(files):
                for a in q.answers:
                    assert normalize_answer(a), (combo, q)


def test_parameter_questions_on_signatures_the_corpus_does_not_use_yet():
    """`questions()` takes any repository: `def f(a=1, /, b=2)` was a ValueError traceback
    (defaults zipped against `args` only), positional-only parameters were not counted, and a
    property with its setter (one dotted name, 0 and 1 parameters) got a one-answer question."""
    src = (
        "def f(a=1, /, b=2, *, c=3):\n    return a + b + c\n\n\n"
        "def g(x, *rest):\n    return x\n\n\n"
        "class C:\n    @property\n    def v(self):\n        return 1\n\n"
        "    @v.setter\n    def v(self, value):\n        pass\n"
    )
    qs = questions({"pkg/m.py": src})
    got = {q.text.split("`")[3]: q for q in qs if q.kind == "param_count"}
    assert got["f"].answers == ["3"] and "g" not in got and "C.v" not in got
    defaults = {q.text.split("`")[1]: q.answers for q in qs if q.kind == "default_value"}
    assert defaults == {"a": ["1"], "b": ["2"], "c": ["3"]}


@pytest.mark.parametrize("index", [50, 54, 64, 74])
def test_a_wrong_variable_bug_never_names_itself_in_the_report(index):
    """`wrong_variable` swapped in any name stored anywhere in the function: a comprehension's
    loop variable (gone outside it) or a local assigned only later. The bug was then a
    NameError / UnboundLocalError whose message, quoted under "Errors seen", named the very
    token injected (`NameError: name 'name' is not defined`): the report pointed at the line.
    Seed 5 (`--split train`) tasks 50, 54, 64 and 74 were such bugs."""
    import random

    from hillclimb.harness.taskgen.common import ProjectRunner
    from hillclimb.harness.taskgen.generate import _broken_code_task

    spec = _broken_code_task(
        "bugfix", random.Random(f"5:{index}"), ProjectRunner(False), "", 0.3, "train"
    )
    assert spec is not None
    for err in ("NameError", "UnboundLocalError"):
        assert err not in spec.instruction, spec.instruction


# ------------------------------------------------------------------------ one mutation, one id


def test_one_run_never_makes_the_same_mutation_under_two_ids(tmp_path):
    """Seed 3 `--kinds feature --split train` stubbed `truncate` in strutil/text.py as task 0
    and again as task 3: one success counted twice in a resolve rate, and the same example
    twice in training. 80 tasks of seed 5 held 13 such repeats."""
    s = generate_tasks(tmp_path, 4, seed=3, kinds=["feature"], split="train")
    assert s["generated"] == 4
    seen: dict[tuple[str, str], str] = {}
    for t in s["tasks"]:
        meta = tomllib.loads((tmp_path / t["id"] / "task.toml").read_text())["meta"]
        key = (meta["module"], meta["function"])
        assert key not in seen, f"{t['id']} repeats {seen[key]}: {key}"
        seen[key] = t["id"]


def test_a_kind_named_twice_does_not_skew_the_mix(tmp_path):
    """`--kinds repo_qa repo_qa terminal --n 2` made two repo_qa tasks and no terminal one (the
    round-robin ran over the repeated list; `--languages` was already deduplicated)."""
    s = generate_tasks(tmp_path, 2, seed=1, kinds=["repo_qa", "repo_qa", "terminal"])
    assert s["kinds"] == ["repo_qa", "terminal"]
    assert [t["kind"] for t in s["tasks"]] == ["repo_qa", "terminal"]


def _touched(src: str, new: str) -> set[int]:
    """Lines of `src` (1-based) that an edit changes or removes."""
    out: set[int] = set()
    sm = difflib.SequenceMatcher(a=src.splitlines(), b=new.splitlines(), autojunk=False)
    for tag, i1, i2, _, _ in sm.get_opcodes():
        if tag != "equal":
            out |= set(range(i1 + 1, max(i2, i1 + 1) + 1))
    return out


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_no_training_bug_touches_a_line_a_heldout_mutation_touches(language):
    """A removed guard spans lines (`if owner in self.accounts:` + its `raise`) but its site
    was its first line only: `Bank.open`'s guard fell on the training side while a held-out
    mutation broke the `raise` line below it, so a training task's fix rewrote the very line a
    `--split heldout_mutations` task asks to repair (5 such guards in the Python corpus)."""
    from hillclimb.harness.taskgen import js_mutate, mutate
    from hillclimb.harness.taskgen.common import HELDOUT_PROJECTS, keep_mutation

    corpus, bugs = (PROJECTS, mutate.bug_edits) if language == "python" else (
        JS_PROJECTS, js_mutate.bug_edits)  # fmt: skip
    ext = ".py" if language == "python" else ".js"
    for name, files in corpus.items():
        if name in HELDOUT_PROJECTS:
            continue
        for module, src in files.items():
            if not module.endswith(ext) or module.startswith("tests/"):
                continue
            side: dict[str, set[int]] = {"train": set(), "heldout_mutations": set()}
            for e in bugs(src):
                site = e.extra.get("lines") or e.extra["line"]
                for split, lines in side.items():
                    if keep_mutation(module, e.function, site, split):
                        lines |= _touched(src, e.new_source)
            both = side["train"] & side["heldout_mutations"]
            assert not both, (module, sorted(both))


# ------------------------------------------------------------------------ telemetry export


@pytest.fixture(scope="module")
def qa_tasks(tmp_path_factory) -> dict[str, Path]:
    """A training and a held-out repo_qa task (no code runs to generate or grade them)."""
    out = tmp_path_factory.mktemp("qa")
    got = {}
    for split in ("train", "heldout"):
        s = generate_tasks(out / split, 1, seed=1, kinds=["repo_qa"], split=split)
        got[split] = out / split / s["tasks"][0]["id"]
    return got


def _episode(tel, ep_id: str, task: Path, *, task_id: str | None = None, resolved: int = 1):
    traj = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    tel._exec(
        "INSERT INTO episodes (id, task_id, task_kind, task_dir, model, status, resolved,"
        " started_at, trajectory) VALUES (?,?,?,?,?,?,?,?,?)",
        (ep_id, task_id or task.name, "repo_qa", str(task), "m", "submitted", resolved,
         time.time(), json.dumps(traj)),
    )  # fmt: skip


def test_export_leaves_out_episodes_whose_task_directory_now_holds_another_task(tmp_path, qa_tasks):
    """An evaluation run on a held-out task, then its directory reused for a training task
    (tasks regenerated into the same path): export read the *new* task's meta, judged the
    held-out episode a training one and put it into sft.jsonl (and a failed one into the RL
    prompts, pointing RL at a task the episode never saw)."""
    from hillclimb.harness.telemetry import Telemetry

    d = tmp_path / "tasks" / "t"
    shutil.copytree(qa_tasks["heldout"], d)
    held_id = qa_tasks["heldout"].name
    with Telemetry(tmp_path / "t.db") as tel:
        _episode(tel, "ok", d, task_id=held_id)
        _episode(tel, "failed", d, task_id=held_id, resolved=0)
        shutil.rmtree(d)
        shutil.copytree(qa_tasks["train"], d)  # same path, another (training) task
        _episode(tel, "now", d, task_id=qa_tasks["train"].name)  # the task it holds now: fine
        s = tel.export(tmp_path / "x")
    sft = [json.loads(x) for x in (tmp_path / "x" / "sft.jsonl").read_text().splitlines()]
    assert [r["meta"]["episode_id"] for r in sft] == ["now"]
    assert (tmp_path / "x" / "rl_prompts.jsonl").read_text() == ""
    assert s["evaluation_only_tasks_excluded"] == 1
    assert "holds task" in s["evaluation_only_examples"][held_id]


@pytest.mark.parametrize("verdicts,exported", [((False, True), 1), ((True, False), 0)])
def test_the_latest_verdict_on_an_edit_decides(tmp_path, qa_tasks, verdicts, exported):
    """A user who rejected an edit and then accepted it (a mis-click undone) kept its episode
    out of every export forever: any rejection of an edit ever recorded counted, not the
    edit's latest verdict as for episode feedback and served requests."""
    from hillclimb.harness.telemetry import Telemetry

    with Telemetry(tmp_path / "t.db") as tel:
        _episode(tel, "e", qa_tasks["train"])
        edit = tel.record_edit(
            episode_id="e", task_id="t", model="m", tool="edit", path="a.py", status="applied"
        )
        for v in verdicts:
            tel.record_feedback(edit, v)
        s = tel.export(tmp_path / "x")
    assert s["sft_examples"] == exported


def test_served_export_survives_feedback_whose_request_row_was_deleted(tmp_path):
    """An operator who deleted an account's `served` rows by hand (purging its data) left its
    feedback behind, and `telemetry export --served` ended in an IndexError traceback,
    exporting nothing for anyone: the orphaned verdict is now counted as malformed."""
    from hillclimb.serve.flywheel import FlywheelStore

    with FlywheelStore(tmp_path / "f.sqlite") as s:
        for account in ("a", "b"):
            s.set_consent(account, True)
            s.record_served(
                f"r-{account}", account=account, endpoint="chat", model="m",
                request={"messages": [{"role": "user", "content": "q"}]},
                response={"choices": [{"content": "answer"}]},
            )  # fmt: skip
            s.record_feedback(f"r-{account}", account=account, accepted=True)
        s._exec("DELETE FROM served WHERE account='b'")
        recs, counts = s.training_records()
    assert [r["meta"]["request_id"] for r in recs] == ["r-a"]
    assert counts["malformed"] == 1 and counts["exported"] == 1
