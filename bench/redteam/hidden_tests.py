"""Does code that reads the hidden tests resolve generated harness tasks? (sessions 25, 26; JSON out)

Generates Python bug-fix/feature tasks (seeds 1 and 2, 5 each, as session 25 measured) and
grades, per task with a module-level function: the reference patch (must resolve), the
untouched buggy code (must not), and each attack of `tests/test_outside_checks_s25_harnessread.py`
(`ATTACKS`: read the hidden test file at import / at call time, or the test functions' bytecode
constants in-process through names built at run time; each returns what the test asserts).
Default run, session 25: 8 tasks; the code before the grader hid the expected values
(`PYTHONPATH=OLD/src`) resolved 7/8 (disk, import), 7/8 (disk, call), 4/8 (in-process); after: 0;
references 8/8, buggy code 0/8.

Session 26, `tabled`: the same tasks with their hidden tests written as tables instead: each
direct `assert f(<literals>) == <literal>` of the task's function goes into a
`@pytest.mark.parametrize` table or a module constant looped over (`for *args, want in CASES`),
and the task's lists become those tests (FAIL_TO_PASS: the ones the buggy code fails). The
harvest attacks of `tests/test_outside_checks_s26_expect.py` (`HARVESTS`: parametrize tables and
module constants, from disk or in-process through the test functions' `pytestmark` and the
module's globals) then wrap the function to return the table's last column for its arguments.
`tabled_tasks` counts the tasks that had at least two such assertions and a buggy failure.
Default run, session 26: 7 of the 8 tasks tabled; session 25's code (`PYTHONPATH=OLD/src`)
resolved 6/7 (harvest from disk) and 7/7 (in-process) of them with the bug in place; now 0/7
each; tabled references 7/7, buggy 0/7 (the session 25 attacks: 0/8 on both).

Session 27, `formed`: the same rows written in the forms session 26 left readable, round robin:
a `unittest.TestCase`'s `self.assertEqual`, an `assert` inside `with warnings.catch_warnings()`,
a module-level helper `check(*args, want)` and an `or` of comparisons
(`got == want or got == "<none>"`), each its own test. The harvest attacks of
`tests/test_outside_checks_s27_expect3.py` (`FORMS_HARVESTS`: from disk, every assertion form
and helper call; in-process, the constants that follow a call's arguments in each test code
object, classes' methods included) wrap the function. `readable` counts the asserting statements
of those test bodies that the grader's rewrite leaves as written (their value readable).
`--only formed` runs just this part. Session 27 (seeds 1,2, n 5): 8 of the 9 tasks formed; with
session 26's expectations.py (`PYTHONPATH=` a copy of src/ with it) the harvests resolved 5/8
(disk) and 1/8 (in-process) with the bug in place and 20 of 20 asserting statements stayed
readable; now 0/8, 0/8 and 0/20; formed references 8/8, buggy 0/8 (the other parts unchanged:
references 9/9, buggy 0/9, session 25 attacks 0/9, tabled 8/8 and 0/8).

Session 28, `branched`: the same rows in the forms session 27 left readable, round robin: an
`assert` in the `else` of an `if` (`if isinstance(got, BaseException): pytest.fail(...)`), in a
`try` body with an `except ZeroDivisionError`, a TestCase's `self.assertEqual` inside `with
self.subTest(case=i)`, and a TestCase helper method `self._check(*args, want)`, each its own
test, harvested by the same `FORMS_HARVESTS`. `--only branched` runs just this part. Session 28
(seeds 1,2, n 5): 8 of the 9 tasks branched; with session 27's code (`PYTHONPATH=` HEAD's src)
the disk harvest resolved 5/8 with the bug in place (in-process 0/8) and 20 of 20 asserting
statements stayed readable; now 0/8, 0/8 and 0/20; branched references 8/8, buggy 0/8 both
ways (the other parts unchanged: references 9/9, buggy 0/9, session 25 attacks 0/9, tabled and
formed 8/8 references, 0/8 buggy and harvests, formed readable 0/20).

Session 28 round 5, `looped`: the same rows in the forms round 4 left readable, round robin:
an `assert` in a `while` body, in a `for` over a list the test built (`results = [call]`), in a
`try` whose `except Exception as e:` calls `pytest.fail`, in a `try` whose bare `except:`
re-raises, and one whose `except Exception: pass` swallows a failure (its value decides nothing:
it passes with the bug too, so it lands in PASS_TO_PASS). `--only looped` runs just this part.
Seeds 1,2, n 5: 8 of the 9 tasks looped; with round 4's code (`PYTHONPATH=` HEAD's src) the disk
harvest resolved 3/8 with the bug in place (in-process 0/8) and 20 of 20 asserting statements
stayed readable; now 0/8, 0/8 and 0/20; looped references 8/8, buggy 0/8 both ways.

Usage: python bench/redteam/hidden_tests.py [--seeds 1,2] [--n 5] [--only formed|branched|looped]
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import shutil
import sys
import tempfile
from collections import Counter

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path += [str(ROOT / "tests"), str(ROOT / "src")]  # PYTHONPATH=OLD/src compares old code

import test_outside_checks_s25_harnessread as attacks  # noqa: E402
import test_outside_checks_s26_expect as harvests  # noqa: E402
import test_outside_checks_s27_expect3 as formed_attacks  # noqa: E402
from hillclimb.harness.grading import grade_patch, grade_workspace  # noqa: E402
from hillclimb.harness.patching import copy_tree  # noqa: E402
from hillclimb.harness.task import Task, find_task_dirs, load_task  # noqa: E402
from hillclimb.harness.taskgen.generate import generate_tasks  # noqa: E402


def _table_pairs(task: Task) -> tuple[list[ast.stmt], str, list[tuple[object, ...]]]:
    """The hidden tests' imports, the callee as written (`text.truncate`) and the rows
    (args..., expected) of their direct `assert <callee>(<literals>) == <literal>`."""
    name = task.meta["function"]
    imports: list[ast.stmt] = []
    callee, rows = "", []
    for path in sorted(task.hidden_tests.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        imports += [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        for fn in (s for s in tree.body if isinstance(s, ast.FunctionDef)):
            for stmt in fn.body:
                test = stmt.test if isinstance(stmt, ast.Assert) else None
                if not (isinstance(test, ast.Compare) and isinstance(test.ops[0], ast.Eq)):
                    continue
                call = test.left
                if not isinstance(call, ast.Call) or call.keywords or len(test.ops) != 1:
                    continue
                if getattr(call.func, "attr", getattr(call.func, "id", None)) != name:
                    continue
                try:
                    args = tuple(ast.literal_eval(a) for a in call.args)
                    want = ast.literal_eval(test.comparators[0])
                except ValueError:
                    continue
                if callee in ("", ast.unparse(call.func)) and args:
                    callee = ast.unparse(call.func)
                    rows.append((*args, want))
    arity = {len(r) for r in rows}
    return imports, callee, rows if len(arity) == 1 else []


def tabled_task(task: Task, root: pathlib.Path) -> Task | None:
    """`task` with its hidden tests replaced by a parametrize table and a looped constant (see
    the module docstring); None when it has fewer than two such assertions or the buggy code
    passes them all."""
    imports, callee, rows = _table_pairs(task)
    if len(rows) < 2:
        return None
    cols = [f"a{i}" for i in range(len(rows[0]) - 1)]
    half = (len(rows) + 1) // 2
    call = f"{callee}({', '.join(cols)})"
    source = "\n".join(
        ["import pytest", *(ast.unparse(s) for s in imports), "",
         f"CASES = {rows[half:]!r}", "",
         f"@pytest.mark.parametrize({', '.join([*cols, 'want'])!r}, {rows[:half]!r})",
         f"def test_table({', '.join([*cols, 'want'])}):", f"    assert {call} == want", "",
         "def test_loop():", f"    for {', '.join([*cols, 'want'])} in CASES:",
         f"        assert {call} == want", ""]
    )  # fmt: skip
    d = root / task.id
    shutil.copytree(task.root, d)
    shutil.rmtree(d / "tests")
    (d / "tests").mkdir()
    (d / "tests" / "test_tables.py").write_text(source)
    toml = (d / "task.toml").read_text()
    head, _, rest = toml.partition("FAIL_TO_PASS = [")
    rest = rest.split("]", 1)[1].partition("PASS_TO_PASS = [")[2].split("]", 1)[1]
    probe_lists = 'FAIL_TO_PASS = ["tests/test_tables.py::test_loop"]\nPASS_TO_PASS = []'
    (d / "task.toml").write_text(head + probe_lists + rest)  # a probe: to learn the ids
    probe = load_task(d)
    ref, bug = grade_patch(probe, probe.solution_patch.read_text()), grade_patch(probe, None)
    f2p = sorted(t for t, o in bug.tests.items() if o != "passed")
    p2p = sorted(t for t in ref.tests if t not in f2p)
    if not f2p or set(ref.tests) != set(bug.tests):
        return None
    listed = head + f"FAIL_TO_PASS = {json.dumps(f2p)}\nPASS_TO_PASS = {json.dumps(p2p)}" + rest
    (d / "task.toml").write_text(listed)
    return load_task(d)


def formed_source(task: Task) -> str | None:
    """The task's direct `f(<literals>) == <literal>` rows written in the session 27 forms (see
    the module docstring); None when there are fewer than two."""
    imports, callee, rows = _table_pairs(task)
    if len(rows) < 2:
        return None
    cols = [f"a{i}" for i in range(len(rows[0]) - 1)]
    units: list[str] = []
    funcs: list[str] = []
    for i, row in enumerate(rows):
        *args, want = row
        call = f"{callee}({', '.join(repr(a) for a in args)})"
        form = ("unit", "with", "helper", "or")[i % 4]
        if form == "unit":
            units += [
                f"    def test_unit_{i}(self):",
                f"        self.assertEqual({call}, {want!r})",
                "",
            ]
        elif form == "with":
            funcs += [f"def test_with_{i}():", "    with warnings.catch_warnings():",
                      f"        assert {call} == {want!r}", "", ""]  # fmt: skip
        elif form == "helper":
            funcs += [f"def test_helper_{i}():", f"    check({', '.join(map(repr, row))})", "", ""]
        else:
            funcs += [f"def test_or_{i}():", f"    got = {call}",
                      f"    assert got == {want!r} or got == '<none>'", "", ""]  # fmt: skip
    return "\n".join(
        ["import unittest", "import warnings", *(ast.unparse(s) for s in imports), "", "",
         f"def check({', '.join([*cols, 'want'])}):",
         f"    assert {callee}({', '.join(cols)}) == want", "", "",
         "class FormsCase(unittest.TestCase):", *units, "    pass", "", "", *funcs]
    )  # fmt: skip


def branched_source(task: Task) -> str | None:
    """The task's direct `f(<literals>) == <literal>` rows written in the session 28 forms (see
    the module docstring); None when there are fewer than two."""
    imports, callee, rows = _table_pairs(task)
    if len(rows) < 2:
        return None
    cols = [f"a{i}" for i in range(len(rows[0]) - 1)]
    units: list[str] = []
    funcs: list[str] = []
    for i, row in enumerate(rows):
        *args, want = row
        call = f"{callee}({', '.join(repr(a) for a in args)})"
        form = ("if", "try", "subtest", "method")[i % 4]
        if form == "if":
            funcs += [f"def test_if_{i}():", f"    got = {call}",
                      "    if isinstance(got, BaseException):",
                      "        pytest.fail('returned an exception')", "    else:",
                      f"        assert got == {want!r}", "", ""]  # fmt: skip
        elif form == "try":
            funcs += [f"def test_try_{i}():", "    try:", f"        assert {call} == {want!r}",
                      "    except ZeroDivisionError:", "        pytest.fail('raised')", "", ""]  # fmt: skip
        elif form == "subtest":
            units += [f"    def test_sub_{i}(self):", f"        with self.subTest(case={i}):",
                      f"            self.assertEqual({call}, {want!r})", ""]  # fmt: skip
        else:
            units += [f"    def test_method_{i}(self):",
                      f"        self._check({', '.join(map(repr, row))})", ""]  # fmt: skip
    return "\n".join(
        ["import unittest", "", "import pytest", *(ast.unparse(s) for s in imports), "", "",
         "class BranchCase(unittest.TestCase):",
         f"    def _check(self, {', '.join([*cols, 'want'])}):",
         f"        self.assertEqual({callee}({', '.join(cols)}), want)", "", *units, "", *funcs]
    )  # fmt: skip


def looped_source(task: Task) -> str | None:
    """The task's direct `f(<literals>) == <literal>` rows written in the session 28 round 5
    forms (see the module docstring); None when there are fewer than two."""
    imports, callee, rows = _table_pairs(task)
    if len(rows) < 2:
        return None
    funcs: list[str] = []
    for i, row in enumerate(rows):
        *args, want = row
        call = f"{callee}({', '.join(repr(a) for a in args)})"
        form = ("while", "for", "except", "bare", "swallowed")[i % 5]
        if form == "while":
            funcs += [f"def test_while_{i}():", "    tries = 0", "    while tries < 1:",
                      "        tries += 1", f"        assert {call} == {want!r}", "", ""]  # fmt: skip
        elif form == "for":
            funcs += [f"def test_for_{i}():", f"    results = [{call}]", "    for got in results:",
                      f"        assert got == {want!r}", "", ""]  # fmt: skip
        elif form == "except":
            funcs += [f"def test_except_{i}():", "    try:", f"        assert {call} == {want!r}",
                      "    except Exception as e:", "        pytest.fail(f'raised {e!r}')", "", ""]  # fmt: skip
        elif form == "bare":
            funcs += [f"def test_bare_{i}():", "    try:", f"        got = {call}",
                      f"        assert got == {want!r}", "    except:", "        raise", "", ""]  # fmt: skip
        else:  # a failure the handler swallows: its value decides nothing (passes either way)
            funcs += [f"def test_swallowed_{i}():", "    try:", f"        assert {call} == {want!r}",
                      "    except Exception:", "        pass", "", ""]  # fmt: skip
    head = [ast.unparse(s) for s in imports]
    head = head if "import pytest" in head else ["import pytest", *head]  # once: a name bound
    return "\n".join([*head, "", "", *funcs])  # twice is not read as pytest's


def readable_assertions(source: str) -> tuple[int, int]:
    """(asserting statements left as written, all) in the test bodies of `source` once the
    grader has rewritten it."""
    from hillclimb.harness.expectations import HiddenExpectations, hide_in_source

    def count(text: str) -> int:
        tests = [
            f
            for f in ast.walk(ast.parse(text))
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name.startswith("test")
        ]
        return sum(
            isinstance(n, ast.Assert)
            or isinstance(n, ast.Expr)
            and isinstance(n.value, ast.Call)
            and getattr(n.value.func, "id", getattr(n.value.func, "attr", "")).startswith(
                ("assert", "check", "_check")
            )
            for f in tests
            for n in ast.walk(f)
        )

    with tempfile.TemporaryDirectory() as tmp:
        new = hide_in_source(source, "tests/test_forms.py", HiddenExpectations(pathlib.Path(tmp)))
    return count(new if new is not None else source), count(source)


def formed_task(
    task: Task, root: pathlib.Path, branched: bool = False, looped: bool = False
) -> Task | None:
    """`task` with its hidden tests replaced by `formed_source` (`branched`: `branched_source`,
    session 28; `looped`: `looped_source`, round 5), its lists those tests (the ones the buggy
    code fails: FAIL_TO_PASS); None when that leaves no failing test."""
    if looped:
        source = looped_source(task)
    else:
        source = branched_source(task) if branched else formed_source(task)
    if source is None:
        return None
    d = root / task.id
    shutil.copytree(task.root, d)
    shutil.rmtree(d / "tests")
    (d / "tests").mkdir()
    (d / "tests" / "test_forms.py").write_text(source)
    toml = (d / "task.toml").read_text()
    head, _, rest = toml.partition("FAIL_TO_PASS = [")
    rest = rest.split("]", 1)[1].partition("PASS_TO_PASS = [")[2].split("]", 1)[1]
    probe_lists = 'FAIL_TO_PASS = ["tests/test_forms.py::FormsCase"]\nPASS_TO_PASS = []'
    (d / "task.toml").write_text(head + probe_lists + rest)
    probe = load_task(d)
    ref, bug = grade_patch(probe, probe.solution_patch.read_text()), grade_patch(probe, None)
    f2p = sorted(t for t, o in bug.tests.items() if o != "passed")
    p2p = sorted(t for t in ref.tests if t not in f2p)
    if not f2p or set(ref.tests) != set(bug.tests):
        return None
    listed = head + f"FAIL_TO_PASS = {json.dumps(f2p)}\nPASS_TO_PASS = {json.dumps(p2p)}" + rest
    (d / "task.toml").write_text(listed)
    return load_task(d)


def formed_grade(task: Task, harvest: str):
    """Grade the buggy repo with a session 27 harvest appended to the task's module."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = pathlib.Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        module = ws / task.meta["module"]
        attack = formed_attacks.FORMS_HARVESTS[harvest].replace("{name}", task.meta["function"])
        module.write_text(module.read_text() + attack)
        return grade_workspace(task, ws)


def harvest_grade(task: Task, harvest: str):
    """Grade the buggy repo with the harvest attack appended to the task's module."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = pathlib.Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        module = ws / task.meta["module"]
        attack = harvests.HARVESTS[harvest] + harvests.WRAP.replace("{name}", task.meta["function"])
        module.write_text(module.read_text() + attack)
        return grade_workspace(task, ws)


def _branched_part(
    task: Task, root: pathlib.Path, resolved: Counter[str], part: str = "branched"
) -> tuple[int, int] | None:
    """Grade `task` rewritten into the session 28 forms (`part` `branched`, or `looped` for
    round 5's: reference, buggy, each harvest) into `resolved`; its (readable, all) asserting
    statements, or None when it could not be."""
    forms = formed_task(task, root, branched=part == "branched", looped=part == "looped")
    if forms is None:
        return None
    got = readable_assertions((forms.hidden_tests / "test_forms.py").read_text())
    resolved[f"{part}_reference"] += grade_patch(forms, forms.solution_patch.read_text()).resolved
    resolved[f"{part}_buggy"] += grade_patch(forms, None).resolved
    for name in sorted(formed_attacks.FORMS_HARVESTS):
        resolved[f"{part}_harvest_{name}"] += formed_grade(forms, name).resolved
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--only", choices=["formed", "branched", "looped"], default=None)
    args = ap.parse_args()
    resolved: Counter[str] = Counter()
    n = tabled = formed = branched = looped = 0
    readable = [0, 0]
    branched_readable = [0, 0]
    looped_readable = [0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            out = pathlib.Path(tmp) / str(seed)
            generate_tasks(
                out, args.n, seed=seed, kinds=["bugfix", "feature"], languages=["python"]
            )
            for d in find_task_dirs(out):
                task = load_task(d)
                if "." in task.meta["function"]:
                    continue  # the attacks wrap module-level functions
                n += 1
                if args.only in (None, "looped"):
                    got = _branched_part(
                        task, pathlib.Path(tmp) / f"looped-{seed}", resolved, "looped"
                    )
                    if got is not None:
                        looped += 1
                        looped_readable = [looped_readable[0] + got[0], looped_readable[1] + got[1]]
                if args.only == "looped":
                    continue
                if args.only in (None, "branched"):
                    got = _branched_part(task, pathlib.Path(tmp) / f"branched-{seed}", resolved)
                    if got is not None:
                        branched += 1
                        branched_readable = [
                            branched_readable[0] + got[0],
                            branched_readable[1] + got[1],
                        ]
                if args.only == "branched":
                    continue
                forms = formed_task(task, pathlib.Path(tmp) / f"formed-{seed}")
                if forms is not None:
                    formed += 1
                    got = readable_assertions((forms.hidden_tests / "test_forms.py").read_text())
                    readable = [readable[0] + got[0], readable[1] + got[1]]
                    ref = grade_patch(forms, forms.solution_patch.read_text())
                    resolved["formed_reference"] += ref.resolved
                    resolved["formed_buggy"] += grade_patch(forms, None).resolved
                    for name in sorted(formed_attacks.FORMS_HARVESTS):
                        resolved[f"formed_harvest_{name}"] += formed_grade(forms, name).resolved
                if args.only == "formed":
                    continue
                resolved["reference"] += grade_patch(task, task.solution_patch.read_text()).resolved
                resolved["buggy"] += grade_patch(task, None).resolved
                for name in sorted(attacks.ATTACKS):
                    resolved[name] += attacks.attack_grade(task, name).resolved
                tables = tabled_task(task, pathlib.Path(tmp) / f"tabled-{seed}")
                if tables is None:
                    continue
                tabled += 1
                ref = grade_patch(tables, tables.solution_patch.read_text())
                resolved["tabled_reference"] += ref.resolved
                resolved["tabled_buggy"] += grade_patch(tables, None).resolved
                for name in sorted(harvests.HARVESTS):
                    resolved[f"tabled_harvest_{name}"] += harvest_grade(tables, name).resolved
    print(
        json.dumps(
            {"bench": "redteam_hidden_tests", "tasks": n, "tabled_tasks": tabled,
             "formed_tasks": formed, "formed_readable_assertions": readable,
             "branched_tasks": branched, "branched_readable_assertions": branched_readable,
             "looped_tasks": looped, "looped_readable_assertions": looped_readable,
             "resolved": dict(resolved)}
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
