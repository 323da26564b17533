"""Grade a task: apply a patch (or take an agent's workspace), add hidden tests, run, decide.

Rules, per kind (SWE-bench for the test-based ones):

- bugfix / feature: resolved ⇔ every FAIL_TO_PASS test passes (passed: an xfail is not a fix) and
  every PASS_TO_PASS test passes (passed or xfailed; a test missing from the results counts as
  failed). A skip or xfail raised by the code under test (not the test's own module, a conftest
  or an installed package), or reached under another name (`g = pytest.xfail` in the package:
  the test called `g`, not `xfail`), is reported failed by the reporter (pytest_reporter.py).
- refactor: the structural checks hold on the submitted code (checked *before* hidden tests are
  copied in, so they judge the agent's code only) and the tests stay green (per-test rule when the
  task lists tests, else the run must be green: see below); a `called_from` check also needs the
  graded pytest run to have run the caller and seen it call the helper (`_runtime_calls`).
- repo_qa: the normalised answer equals one of the accepted answers; no code runs.
- terminal: the verifier (`test_command`, usually `python tests/verify.py`) exits 0 on the
  workspace the agent's commands left behind.

Grading always works on a private copy (a fresh copy of `repo/` plus the patch, or a copy of the
agent's workspace), so nothing the grader does leaks into the task or the episode, and the test
command runs in the sandbox. Every failure mode is a *result* (`patch_failed`, `patch_rejected`,
`test_error`, `timeout`, ...), never an exception, so one bad submission cannot stop a run.

Where test outcomes come from (the rule). The runner's text output is never evidence: the code
under test writes to the same stdout. For bugfix / feature / refactor tasks (and any task that
lists tests) the grader

1. refuses submissions that add, change or delete test infrastructure — conftest.py, pytest
   configuration files and the pytest sections of pyproject.toml / setup.cfg / tox.ini,
   sitecustomize / usercustomize / `*.pth`, bytecode — status `patch_rejected` (protected.py);
2. runs the command with its own reporters (results_channel.py): a pytest plugin via
   `PYTEST_ADDOPTS=-p ...` for any pytest the command starts, a node:test reporter added to every
   `node --test`; they sign each test's outcome with a one-shot key that the first runner claims
   before any test code runs, and the grader accepts only records whose HMAC verifies;
3. takes the expected values out of the hidden tests before the run (expectations.py's
   `hide_expectations`): in Python each direct `assert X <op> VALUE` (==, !=, <, <=, >, >=, in,
   not in, `is None/True/False`, `== pytest.approx(numbers[, rel=, abs=])`, chained
   `A <= X < B`, `not (X == VALUE)`, each conjunct of `and`, value on either side) and each plain
   `assert X` / `assert not X` of a test function (not xfail-marked) becomes
   `_hillclimb_expect(X, "<slot>")`, where VALUE is anything the test's source fixes: a literal,
   arithmetic and concatenation of literals, `float("inf")`, `date(...)`/`datetime(...)`, a
   name the module binds once to such a value (then deleted from the file when nothing else
   reads it), a row of a `for` loop over such a table (the loop is unrolled, each copy binding
   only the loop variables something still reads) or of a `@pytest.mark.parametrize` table (the
   expected columns leave the table, the rows get a row number and opaque ids that the grader
   maps back to pytest's own). The same holds (session 27) for a `unittest.TestCase`'s own
   `self.assertEqual/NotEqual/Less…/In/Is/IsNone/True/False/AlmostEqual` (and the typed
   `assert*Equal`), for the bodies of `with` blocks whose managers never suppress an exception
   (`open`, `pytest.warns`, `catch_warnings`, `mock.patch`, `tempfile`, `assertLogs`, …) and of
   `try`/`finally`, for `x == A or x == B` of one name or attribute subject, and for module-level
   helpers a test body calls as a statement (`check(3, 9)` calls a copy given slots in place of
   the arguments its assertions only compare against). In node test files (strict assert) each one-line
   `assert.equal/strictEqual/deepEqual/notEqual/.../ok(X, LITERAL)` of a `test()` body becomes
   `__hillclimbExpect(X, '<slot>')`. The helper only logs X (plain builtin values and dates,
   encoded) and its truth value; the operator and the value stay in the grader's memory and
   are applied after the run (`judge_expectations`, with the runner's own semantics: Python
   `==`, pytest.approx's tolerance rule, node's `Object.is` / `deepStrictEqual`): a test that
   passed but whose slots did not all log, or logged values that fail the hidden assertion,
   counts as failed;
4. decides FAIL_TO_PASS / PASS_TO_PASS on those records only (as step 3 corrected them). No
   verified record at all (the command runs neither pytest nor `node --test`, crashed before
   starting, or a hack stopped it) is `test_error`; per-test decisions never fall back to text.
5. A refactor without test lists is green when the command exits 0 and, if a reporter ran, every
   reporter finished with no failed/errored test (and pytest exit status 0). Only when nothing
   could be instrumented does the exit status alone decide; terminal tasks always grade by their
   verifier's exit status (they are verifier scripts, not test suites).

Threat model (what the channel defends, and what not). Defended: printed fake `PASSED` / TAP `ok` /
`✔` lines; fake junit or records files anywhere in the workspace (unsigned or wrongly signed lines
are counted in `reporter.rejected_lines` and ignored); exiting early (`os._exit(0)`, `sys.exit`,
`process.exit` at import: tests that never reported count as failed); skipping or deselecting tests
(skipped is not passed, a missing test is failed); conftest.py / pytest config / startup-hook
tampering (refused before the run; conftest files pytest loaded at run time are checked against the
trusted tree too); shadowing a stdlib or pytest module from the workspace before the plugin loads
(`PYTHONSAFEPATH`, and the plugin refuses to sign if any workspace module was imported before it);
package code the submission adds or changes that names pytest's internals (`_pytest`, `TestReport`,
`pluggy`, `pluginmanager`, `gc.get_objects`), replaces the test API (`pytest.raises = ...`) or
walks up to the calling test's frame (`sys._getframe`, `f_back`, `inspect.stack`) or defines an
`__eq__`/`__ne__` that ignores the other operand (the "always equal" object); a test swapped while
the tests run — another body (`test.__code__ = noop.__code__` from a thread the package starts),
another `pytest` in its module, or `pytest.raises` replaced, names built at run time — is failed
by the reporter (`pytest_reporter._swapped`: the body and module objects noted at collection, the
test API at load, the body's file the test's own or beside it); a test swapped *before* pytest
collects it — the package, imported at the top of the test module, sets a test's `__code__` or
executes edited source into the module's namespace when the module's frame returns, or rewrites
a test file not imported yet, each under the test file's own name (session 27: resolved
`bugfix-inventory-11-0002` with the bug in place) — is failed too: the grader pins the Python
files of the installed test suite (path and sha256, `Channel.pin_tests`), the reporter compiles
them while pytest loads it (before any workspace code runs; plain and with pytest's assertion
rewrite) and a test its file defines with only marks as decorators must be a function of its
module whose code object equals the file's definition; any other body from a pinned file must be
code that file compiles to; a pinned file already changed when pytest starts fails all its tests
(`pytest_reporter._pinned_mismatch`); a name a pinned test file binds once (an import, an
undecorated def or class) swapped in that module only — at collection it must hold what the
module table and the file give, from then to each call it must not change — or a Python trace
or profile hook set when a test function is called (how code under test times a swap to one
test and undoes it before any check after the call; session 28: a `pytest` or helper swapped
that way resolved `bugfix-inventory-11-0002` with the bug in place) fails the test
(`_namespace_mismatch`, `pytest_runtest_call`); so does such a name holding another object at
any opcode of a frame that runs with that module's globals during the call, however the swap
was timed — package code reading `PYTEST_CURRENT_TEST`, a thread polling the interpreter's
frames — and undone before the end (session 29, `_NameGuard`: both resolved that task before),
in pytest functions and unittest TestCase methods alike; a file of a JavaScript suite rewritten on disk
while node runs (code an earlier test file loaded rewrites a later one, which can write the
original back as it loads) fails its tests: the node reporter checks the installed files'
hashes when it loads, their inode change times at the end, and reports nothing before that
(`Channel.watch_tests`); JavaScript code that
loads `node:assert` / `node:test` or V8's stack hooks; any native module it adds
(`runner_tampering` in protected.py: `patch_rejected`). Not defended: pytest runs the tests in its
own interpreter, so code under test that builds those names at run time (or reads the test files
from disk) can still reach the plugin in memory (its key, its hook functions), monkeypatch pytest's
report objects and forge through the real channel (a forged pass still fails a test whose hidden
assertions logged wrong values or none), or copy the expected values the rewrite leaves in the
tests (below); an equality that only pretends to look at the other operand still passes `assert
f(x) == y` where `y` is not a hidden literal (session 24: such disguised forms still resolve);
a swap through the module table itself (`sys.modules` or a package attribute: that is the
package's own code, and graded as such), a swap undone within one opcode-free stretch of
the guard's own trace function (a thread would have to be switched in exactly there), code
that reaches a test frame and turns its opcode tracing off for a while, names a test module
binds more than once or conditionally, a run under a C tracer present before the plugin
loaded (coverage: no guard then); a
decorated test (not only marks) whose wrapper lives outside the pinned files. A test with
nothing hidden in it (`pytest.raises`, `assert.throws`, assertions left as written) passes on
pytest's or node's word alone, which such code can forge, and its input is readable: it still
counts toward resolving, but `GradeResult.value_checked` lists only the passes that a hidden
value confirmed outside the sandbox, the ones partial credit should count (session 26: a feature
stub raising `ValueError` for every input was paid partial RL reward on 5 of 21 generated feature
tasks). Resolution does not require a value-checked FAIL_TO_PASS pass: when any FAIL_TO_PASS
test owns a hidden slot it already must pass, judged outside, and a task whose fix is "raise on
bad input" is a real task. Instead the task generator discards candidates whose FAIL_TO_PASS
tests all hide nothing (`generate_tasks(require_hidden_f2p=True)`, the default) and `hillclimb
harness grade --solution` warns on such a user task (`fail_to_pass_hides_nothing`).
Reading the hidden tests for their expected values (from disk, at import or call time, or
in-process through `sys.modules` and the test functions' code constants, names built at run time;
session 25: 8 of 10 generated Python tasks and 1 of 4 JavaScript tasks resolved that way with the
bug in place, 0 after) now finds only the calls: the values are not in the sandbox. Session 26
extended that to expected values the source fixes without writing them as literals (module
constants, loop and parametrize tables, folded expressions; a harvest of tables and constants, from
disk or in-process through `pytestmark` and module globals, resolved 6/7 and 7/7 generated tasks
rewritten into table form with the bug in place on session 25's code, 0/7 after:
`bench/redteam/hidden_tests.py`). What such reading still reaches: expected values the source does
not fix (`== [b, a]` of objects the test built, a value a fixture or a helper returns, a name
rebound anywhere in the module, a mutable value some use may change, anything in a module that
reaches its namespace dynamically or that another test file imports), the conditions of
branches (session 28 hides the assertions inside `if`/`else` branches, `try` blocks whose
handlers cannot catch an `AssertionError`, a TestCase's `subTest` and test classes' helper
methods; a branch or handler marker forged by calling the helper from code under test can
claim the other branch, as steering the condition in-process can; round 5 the bodies of
`while` loops and of `for` loops over tables the source does not fix, their conditions and
iterables readable, and `try` blocks whose handlers may catch the `AssertionError` when each
such handler surely fails the test: `pytest.fail`, a TestCase's `self.fail`, a `raise`; where
one surely catches it and does nothing, `except Exception: pass` around the last statement,
the comparison is dropped, since its value never decided anything), assertions
in `with` blocks that may suppress (`pytest.raises`, `suppress`, managers the grader
does not know), in `try` with `except Exception`/bare/a class of the code under test whose
handler acts on the failure in another way (`pytest.skip`, logging and going on, `return`;
the rewrite cannot send a wrong value into that handler without the value in the run), a
swallowed assertion before other statements of its `try` (a wrong value skipped them before;
running them now could change what follows), after a possible `return`, in loops that may
`return` or `break` before it, in fixtures, or in helpers called another way
(or whose expected argument is a name bound to a mutable value),
parametrize tables whose ids the grader cannot be sure of (duplicate ids, non-ASCII or escaped
strings, `pytest.param` marks, `indirect`, several parametrize decorators on one test, a command
that selects tests by id or `-k`, a conftest defining `pytest_make_parametrize_id`: the table is
then left as written), `or` of different subjects or of calls (one truth value), TestCase
assertions under a base from another module (Django's) or an override,
`assertCountEqual/SequenceEqual/Regex`, which input
`pytest.raises` expects to raise (of the generated corpus's assertions 292 of 293 Python, in 32
distinct test files, and all 108 non-`throws` node ones are hidden; scheduler's `[b, a]` stays
readable). In node test files the same holds for nested assertions, loose
`node:assert`, suites other than `describe` blocks opened and closed at column 0 with their
inside one level in (round 5 reads those, and `it`; a file with any other suite is left whole),
template strings, top-level loops that create tests named by an expected value (literal tables
looped over in a `test()` body are written out per row since session 27; session 28 reads
assertions and tables written over several lines and writes out top-level loops whose tests are
named by their inputs, round 5 also by non-integer numbers, written as node writes them), and which
input `assert.throws` expects to throw. A truthiness slot can be guessed (one bit per slot). A task instruction that quotes a
failing assertion shows that value to the agent. Node runs each test file in a child process whose
event stream to the parent (node's own serialisation) the test code could imitate; code the test
command runs *before* the runner could read the key file. These need deliberate exploit code rather
than printed text; the sandbox bounds the blast radius (no network, only the throw-away workspace
writable), and trajectories keep the patch for audit. A second, out-of-process check would be the
next step if such exploits show up in RL.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.harness.expectations import (
    HiddenExpectations,
    hide_expectations,
    judge_expectations,
    tests_that_logged_values,
)
from hillclimb.harness.patching import apply_patch, copy_tree
from hillclimb.harness.protected import (
    conftest_digests,
    infrastructure_changes,
    runner_tampering,
    trusted_files,
)
from hillclimb.harness.results_channel import TrustedReport, open_channel
from hillclimb.harness.structural import run_check
from hillclimb.harness.task import Task
from hillclimb.harness.testparse import ERROR, FAIL, PASS, is_pass, normalize_answer
from hillclimb.sandbox import run_command

OUTPUT_TAIL = 4000
EXPECT_LOG = "expect.jsonl"  # the hidden assertions' log, in the channel's fresh directory
TEST_KINDS = ("bugfix", "feature", "refactor")


@dataclass
class GradeResult:
    task_id: str
    kind: str
    resolved: bool
    # resolved | unresolved | patch_failed | patch_rejected | test_error | timeout | no_answer | error
    status: str
    message: str = ""
    fail_to_pass: dict[str, list[str]] = field(default_factory=lambda: {"passed": [], "failed": []})
    pass_to_pass: dict[str, list[str]] = field(default_factory=lambda: {"passed": [], "failed": []})
    tests: dict[str, str] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    answer: str | None = None
    sandbox: dict[str, Any] | None = None  # status, exit_code, duration_s, backend
    output_tail: str = ""
    duration_s: float = 0.0
    # the trusted result channel (results_channel.py): runners that held the key, how many
    # finished, verified records, rejected (forged or damaged) lines; None when no tests decide
    reporter: dict[str, Any] | None = None
    # the tests that passed with at least one hidden assertion judged outside the sandbox
    # (`_value_checked`): a pass the code under test could not produce without the values
    value_checked: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reward(self) -> float:
        return 1.0 if self.resolved else 0.0


def _split(
    ids: tuple[str, ...], outcomes: dict[str, str], *, strict: bool = False
) -> dict[str, list[str]]:
    """Which of `ids` passed: `is_pass` (passed or xfailed), or with `strict` only "passed"."""
    ok = (lambda o: o == PASS) if strict else is_pass
    return {
        "passed": [t for t in ids if ok(outcomes.get(t))],
        "failed": [t for t in ids if not ok(outcomes.get(t))],
    }


def _value_checked(hidden: HiddenExpectations | None, outcomes: dict[str, str]) -> list[str]:
    """The passing tests (ids as the task lists them) that own a hidden assertion.

    Why: such a pass is evidence from outside the sandbox (`judge_expectations` turned it
    into a failure unless every hidden value it asserts was logged and right). Any other pass
    comes from pytest or node in the interpreter the code under test shares, and that code can
    make a test with nothing hidden in it pass without the fix: a `pytest.raises` test's input
    is readable in the test's code, a stub that raises the named exception for everything passes
    it, and a body swapped at run time is caught only when pytest's objects were not forged too
    (session 26: generated feature stubs raising `ValueError` for every input were paid partial
    RL reward on 5 of 21 tasks). A reward for partial progress should count these tests only."""
    if hidden is None:
        return []
    logged = tests_that_logged_values(hidden)  # a test whose hidden values did not run: no
    return sorted(
        t
        for t, o in outcomes.items()
        if o == PASS
        and (hidden.owned(t) or hidden.owned(t.split("[", 1)[0]))
        and (t in logged or t.split("[", 1)[0] in logged)
    )


UNHIDDEN_F2P_WARNING = (
    "no FAIL_TO_PASS test of this task passed with a hidden value (they are all "
    "`pytest.raises`/`assert.throws` checks or assertions the grader cannot hide): pytest or node "
    "alone judges them, in the process the code under test shares, and their inputs are "
    "readable, so code that special-cases those inputs resolves the task without the fix; add "
    "a FAIL_TO_PASS test with a direct `assert f(x) == VALUE` (grading.py, threat model)"
)


def fail_to_pass_hides_nothing(task: Task, reference: GradeResult) -> bool:
    """Whether `reference` (the task's solution, graded) resolved a bugfix/feature task with no
    FAIL_TO_PASS test among `value_checked`: then nothing outside the sandbox confirms the fix.
    Resolution does not require such a pass (a task whose fix is "raise on bad input" is a
    real task, and a value-checked F2P pass is implied whenever an F2P test owns a hidden slot,
    since every F2P test must pass and a passing one with slots is value-checked); the task
    generator discards such candidates and `hillclimb harness grade --solution` warns."""
    return (
        reference.resolved
        and task.kind in ("bugfix", "feature")
        and bool(task.fail_to_pass)
        and not set(task.fail_to_pass) & set(reference.value_checked)
    )


def _tmp_prefix(task: Task) -> str:
    # shell-safe: the reporter's path is spliced into the test command
    return "hc-grade-" + re.sub(r"[^A-Za-z0-9_.-]", "_", task.id[:40]) + "-"


def grade_patch(
    task: Task, patch: str | None, *, answer: str | None = None, unsafe: bool = False
) -> GradeResult:
    """Grade `task.repo` with `patch` applied (None/empty: the untouched repo)."""
    return _grade_copy(task, task.repo, patch, answer=answer, unsafe=unsafe)


def grade_workspace(
    task: Task, workspace: str | Path, *, answer: str | None = None, unsafe: bool = False
) -> GradeResult:
    """Grade an agent's final workspace (copied first; the original is left as it is)."""
    return _grade_copy(task, Path(workspace), None, answer=answer, unsafe=unsafe)


def _grade_copy(
    task: Task, source: Path, patch: str | None, *, answer: str | None, unsafe: bool
) -> GradeResult:
    """Grade a private copy of `source` (with `patch` applied first, if any), timed."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=_tmp_prefix(task)) as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(source, ws)
        if patch and patch.strip():
            applied = apply_patch(ws, patch)
            if not applied.ok:
                return GradeResult(
                    task.id, task.kind, False, "patch_failed",
                    message=f"patch does not apply ({applied.tool}): {applied.message}",
                    duration_s=time.monotonic() - t0,
                )  # fmt: skip
        res = _grade_in_place(task, ws, answer=answer, unsafe=unsafe)
    res.duration_s = time.monotonic() - t0
    return res


def _clear_hidden_only_dirs(task: Task, ws: Path) -> None:
    """Empty each directory the hidden tests bring that `repo/` does not have (the destination
    and its subdirectories): whatever is there, the agent or patch made, and it must not run as
    part of the tests. `python tests/verify.py` puts tests/ first on `sys.path`, so a planted
    `tests/json.py` ran inside a terminal task's verifier and could exit 0 for it; an agent's own
    failing `tests/test_x.py` would count against a refactor's green run. A directory repo/ has
    keeps the agent's files here, for the infrastructure check to see (a planted
    `tests/conftest.py` is refused); `_reset_test_dirs` then removes them before the run."""
    dirs = [Path(task.hidden_tests_dest)] + sorted(
        Path(task.hidden_tests_dest) / p.relative_to(task.hidden_tests)
        for p in task.hidden_tests.rglob("*")
        if p.is_dir() and not p.is_symlink()
    )
    for rel in dirs:
        if (task.repo / rel).is_dir():
            continue
        here = ws / rel
        if here.is_symlink() or here.is_file():
            here.unlink()
        elif here.is_dir():
            shutil.rmtree(here)


def _test_dirs(task: Task) -> list[Path]:
    """The directories that hold the task's test suite once the hidden tests are in: their
    destination, or, when that is the repo's root, each top-level directory they bring."""
    dest = Path(task.hidden_tests_dest)
    if dest.parts:
        return [dest]
    return sorted(p.relative_to(task.hidden_tests) for p in task.hidden_tests.iterdir()
                  if p.is_dir() and not p.is_symlink())  # fmt: skip


def _reset_test_dirs(task: Task, ws: Path) -> None:
    """Make each test directory (`_test_dirs`) exactly what `repo/` has there (nothing, if it
    has none) before the hidden tests are copied over it: whatever else is there, the agent or
    patch made, and the hidden tests must not run it. A hidden test importing a helper the repo
    keeps beside it (`from helpers import check`) ran the patch's version, and a `check` that
    asserted nothing resolved the task (session 21); a module planted there (`tests/pkg.py`)
    shadows the package for tests that put their directory first on `sys.path`. Code outside
    these directories (the package, new modules) is kept."""
    for rel in _test_dirs(task):
        here = ws / rel
        if here.is_symlink() or here.is_file():
            here.unlink()
        elif here.is_dir():
            shutil.rmtree(here)
        trusted = task.repo / rel
        if trusted.is_dir() and not trusted.is_symlink():
            copy_tree(trusted, here)


def _install_hidden_tests(task: Task, ws: Path, *, reset: bool = False) -> None:
    """Copy the hidden tests in. A symlink on their way (a patch or an agent can leave
    `tests -> /somewhere` or `tests/test_x.py -> ...`) is removed first: copying follows links,
    and the grader runs outside the sandbox. With `reset` (test-graded kinds, after the
    infrastructure check, which must see what the submission did there in order to refuse it),
    the test directories are first made what repo/ has there (`_reset_test_dirs`). Terminal
    tasks keep the agent's files in a directory repo/ has: their verifier judges the workspace
    the agent left, which may rightly include files there."""
    if not task.hidden_tests.is_dir():
        return
    dest = ws / task.hidden_tests_dest
    targets = [(dest, True)] + [
        (dest / p.relative_to(task.hidden_tests), p.is_dir()) for p in task.hidden_tests.rglob("*")
    ]
    for target, is_dir in targets:
        here = ws
        for part in target.relative_to(ws).parts[:-1]:
            here = here / part
            if here.is_symlink() or (here.exists() and not here.is_dir()):
                here.unlink()  # the hidden tests are authoritative
        if target.is_symlink() or (is_dir and target.exists() and not target.is_dir()):
            target.unlink()
        elif not is_dir and target.is_dir():
            shutil.rmtree(target)  # copying a file onto a directory would land inside it
    # after the loop: no symlink is left on these paths
    (_reset_test_dirs if reset else _clear_hidden_only_dirs)(task, ws)
    copy_tree(task.hidden_tests, dest)


def _installed_tests(task: Task, ws: Path) -> list[Path]:
    """Every file of the test suite as the grader installed it (`_installed_python_tests`, any
    language; not bytecode, which the runner itself may write), for the channel to watch while
    the tests run (`Channel.watch_tests`)."""
    dest = ws / task.hidden_tests_dest
    files = {dest / p.relative_to(task.hidden_tests) for p in task.hidden_tests.rglob("*")}
    for rel in _test_dirs(task):
        if (ws / rel).is_dir() and not (ws / rel).is_symlink():
            files.update((ws / rel).rglob("*"))
    files = {f for f in files if "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo")}
    return sorted(f for f in files if f.is_file() and not f.is_symlink())


def _installed_python_tests(task: Task, ws: Path) -> list[Path]:
    """The Python files of the test suite as the grader installed it: every `.py` file under
    the test directories (`_test_dirs`, which `_reset_test_dirs` made the task's own) and each
    one the hidden tests brought, for the reporter to pin (`Channel.pin_tests`)."""
    dest = ws / task.hidden_tests_dest
    files = {dest / p.relative_to(task.hidden_tests) for p in task.hidden_tests.rglob("*.py")}
    for rel in _test_dirs(task):
        if (ws / rel).is_dir() and not (ws / rel).is_symlink():
            files.update((ws / rel).rglob("*.py"))
    return sorted(f for f in files if f.is_file() and not f.is_symlink())


def _is_test_module(name: str, language: str) -> bool:
    """Only test modules are rewritten: pytest's default `python_files`, node's `*.test.js`
    (a conftest.py is checked against its digest at run time and holds fixtures, not asserts)."""
    if language == "javascript":
        return name.endswith((".test.js", ".test.cjs"))
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _hide_expected_values(task: Task, ws: Path, log: Path) -> HiddenExpectations | None:
    """Take the literal expected values out of the installed hidden tests (expectations.py's
    `hide_expectations`): code under test that reads the test files, or the test module's
    constants, then finds only the calls, never what they must return."""
    if task.language not in ("python", "javascript") or not task.hidden_tests.is_dir():
        return None
    dest = ws / task.hidden_tests_dest
    files = sorted(
        dest / p.relative_to(task.hidden_tests)
        for p in task.hidden_tests.rglob("*")
        if p.is_file() and not p.is_symlink() and _is_test_module(p.name, task.language)
    )
    # a command that selects tests by id (`pytest tests/t.py::test_f[1-2]`, `-k`) needs the
    # parametrize ids as written, and a conftest's `pytest_make_parametrize_id` makes ids the
    # grader cannot predict: then they are not replaced by opaque ones
    words = task.test_command.split()
    rename_ids = "::" not in task.test_command and not {"-k", "--deselect"} & set(words)
    trusted = [task.repo, task.hidden_tests]  # the workspace's own conftests are refused anyway
    for conftest in (c for root in trusted for c in root.rglob("conftest.py")):
        try:
            if "pytest_make_parametrize_id" in conftest.read_text(
                encoding="utf-8", errors="replace"
            ):
                rename_ids = False
        except OSError:
            rename_ids = False
    files = [f for f in files if f.is_file() and not f.is_symlink()]
    return hide_expectations(ws, files, log, rename_ids=rename_ids)


def _watched_calls(task: Task) -> list[dict[str, str]]:
    """The `called_from` checks for the reporter to watch at run time (`Channel.watch_calls`)."""
    return [
        {"module": str(c.module), "caller": str(c.caller), "name": c.name}
        for c in task.checks
        if c.type == "called_from"
    ]


def _runtime_calls(task: Task, checks: list[dict[str, Any]], report: TrustedReport) -> None:
    """Fail a `called_from` check unless the graded tests ran its caller and the caller called
    the helper (the reporter's record: `pytest_reporter._CallWatch`); say on each check what
    the run showed (`runtime`).

    Why: the static check cannot fold every value-dead condition (`if len(()):`, `if 1 > 2:`,
    `if os.environ.get("X"):`, a loop over an empty tuple), and a caller that kept its inline
    code with the helper's call under one met it (session 28). The caller must have run, not
    only "if it ran": otherwise a submission keeps the checked def with its dead call and puts
    a copy in its place at run time (`f = _f_copy`), or stops calling it, and the tests never
    reach it (`graders_s28.rebind_caller`). A task whose tests never run the caller cannot be
    resolved at all, so the task generator's proof (the reference must resolve) discards it.
    No record (the run stopped before its end, or pytest did not run): the check fails too."""
    called = [c for c in checks if c["check"].startswith("called_from(")]
    watched = [c for c in task.checks if c.type == "called_from"]
    if len(called) != len(watched):
        return
    for i, (c, w) in enumerate(zip(called, watched, strict=True)):
        if report.calls is None or i >= len(report.calls):
            c["runtime"] = "no record of the calls made in the tests"
        else:
            ran, hit = report.calls[i]
            if hit:
                c["runtime"] = f"{w.name} ran from {w.caller}"
                continue
            if ran:
                c["runtime"] = f"{w.caller} ran in the tests without calling {w.name}"
            else:
                c["runtime"] = f"{w.caller} did not run in the tests"
        if c["ok"]:
            c["ok"] = False
            c["detail"] = c["runtime"]


def _grade_in_place(task: Task, ws: Path, *, answer: str | None, unsafe: bool) -> GradeResult:
    if task.kind == "repo_qa":
        if answer is None or not answer.strip():
            return GradeResult(
                task.id, task.kind, False, "no_answer", message="no answer submitted"
            )
        got = normalize_answer(answer)
        ok = any(got == normalize_answer(a) for a in task.answers)
        return GradeResult(
            task.id, task.kind, ok, "resolved" if ok else "unresolved", answer=answer,
            message="" if ok else "answer does not match",
        )  # fmt: skip

    checks = [run_check(ws, c, baseline=task.repo).to_json() for c in task.checks]
    per_test = bool(task.fail_to_pass or task.pass_to_pass)
    trusted_run = task.kind in TEST_KINDS or per_test

    try:
        _install_hidden_tests(task, ws)
    except (OSError, shutil.Error) as exc:
        return GradeResult(
            task.id, task.kind, False, "error", message=f"hidden tests: {exc}", checks=checks
        )
    command, env, node_runs = task.test_command, task.env, 0
    channel = None
    hidden: HiddenExpectations | None = None
    conftests: dict[str, str] = {}
    if trusted_run:
        try:
            trusted = trusted_files(task.repo, task.hidden_tests, task.hidden_tests_dest)
            changed = infrastructure_changes(trusted, ws)
            if changed:
                return GradeResult(
                    task.id, task.kind, False, "patch_rejected", checks=checks, answer=answer,
                    message="the submission changes test infrastructure, which is not allowed: "
                    + ", ".join(changed[:10]),
                )  # fmt: skip
            test_dirs = [p.as_posix() for p in _test_dirs(task)]
            reaching = runner_tampering(
                task.repo, task.hidden_tests, task.hidden_tests_dest, ws, test_dirs
            )
            if reaching:
                return GradeResult(
                    task.id, task.kind, False, "patch_rejected", checks=checks, answer=answer,
                    message="the submission's code tampers with the test run (it names the test "
                    "runner's internals, replaces the test API, reads the calling test's frames "
                    "or fakes equality), which is not allowed: " + ", ".join(reaching[:10]),
                )  # fmt: skip
            _install_hidden_tests(task, ws, reset=True)
            conftests = conftest_digests(ws)
            channel = open_channel(ws, task.env)
            hidden = _hide_expected_values(task, ws, channel.directory / EXPECT_LOG)
            if task.language == "python":
                channel.pin_tests(_installed_python_tests(task, ws))
                channel.watch_calls(_watched_calls(task))
            if task.language == "javascript":
                channel.watch_tests(_installed_tests(task, ws))
            command, env, node_runs = channel.instrument(task.test_command, task.env)
        except OSError as exc:
            return GradeResult(
                task.id, task.kind, False, "error", message=f"grader setup: {exc}", checks=checks
            )
    try:
        sb = run_command(
            command, ws, timeout_s=task.limits.test_timeout_s,
            memory_mb=task.limits.memory_mb, env=env, unsafe=unsafe,
        )  # fmt: skip
    except Exception as exc:  # the sandbox refused (no backend) or crashed: a result, not a crash
        return GradeResult(
            task.id, task.kind, False, "error", message=f"sandbox: {exc}", checks=checks
        )
    report = channel.read() if channel is not None else TrustedReport()
    outcomes, turned = report.outcomes, []
    if hidden is not None:
        outcomes, turned = judge_expectations(hidden, outcomes)
    output = sb.stdout + ("\n" + sb.stderr if sb.stderr else "")
    res = GradeResult(
        task.id, task.kind, False, "unresolved", tests=outcomes, checks=checks, answer=answer,
        sandbox={"status": sb.status, "exit_code": sb.exit_code, "duration_s": round(sb.duration_s, 3), "backend": sb.backend},
        output_tail=output[-OUTPUT_TAIL:],
        reporter=report.summary(node_runs) if channel is not None else None,
    )  # fmt: skip
    # A FAIL_TO_PASS test must pass: an xfail is the test's author expecting it to fail, which
    # a fix never needs (an xfail-marked test failing before the fix is xfailed, i.e. not a
    # FAIL_TO_PASS test). Counting xfailed paid a package whose functions were `pytest.xfail`
    # itself (`slugify = pytest.xfail`: no frame of the package for the reporter to see).
    if channel is not None and task.language == "python":
        _runtime_calls(task, checks, report)
    res.value_checked = _value_checked(hidden, outcomes)
    res.fail_to_pass = _split(task.fail_to_pass, outcomes, strict=True)
    res.pass_to_pass = _split(task.pass_to_pass, outcomes)
    checks_ok = all(c["ok"] for c in checks)

    if sb.status == "timeout":
        res.status, res.message = (
            "timeout",
            f"test command timed out after {task.limits.test_timeout_s}s",
        )
        return res
    if sb.status == "refused":
        res.status, res.message = "error", "sandbox refused to run the test command"
        return res
    if sb.exit_code in (126, 127) and not outcomes:
        res.status = "test_error"
        res.message = f"test command not runnable (exit {sb.exit_code}): {sb.stderr.strip()[-300:]}"
        return res
    untrusted = sorted(p for p, digest in report.conftests.items() if conftests.get(p) != digest)
    if untrusted:
        res.status = "patch_rejected"
        rel = [os.path.relpath(p, ws.resolve()) for p in untrusted]
        res.message = "a conftest.py that is not part of the task was loaded: " + ", ".join(rel)
        return res

    ran_to_end = report.started > 0 and report.finished >= report.started
    if per_test:
        if not outcomes:
            res.status = "test_error"
            if report.started:
                why = "the test run reported no test (it stopped before any finished)"
            else:
                why = (
                    "no test results came through the grader's reporter (the command must run "
                    "pytest or `node --test`)"
                )
            hint = report.explain_missing()
            res.message = f"{why}; exit {sb.exit_code}, {sb.status}" + (f"; {hint}" if hint else "")
            return res
        tests_ok = not res.fail_to_pass["failed"] and not res.pass_to_pass["failed"]
    elif report.started:
        tests_ok = (
            sb.status == "ok"
            and ran_to_end
            and bool(outcomes)
            and not any(o in (FAIL, ERROR) for o in outcomes.values())
            and all(code == 0 for code in report.exit_statuses)
        )
    else:
        tests_ok = sb.status == "ok"
    res.resolved = bool(tests_ok and checks_ok)
    res.status = "resolved" if res.resolved else "unresolved"
    if not res.resolved:
        why = []
        if res.fail_to_pass["failed"]:
            why.append(f"{len(res.fail_to_pass['failed'])} FAIL_TO_PASS failing")
        if res.pass_to_pass["failed"]:
            why.append(f"{len(res.pass_to_pass['failed'])} PASS_TO_PASS failing")
        if not per_test and not tests_ok:
            why.append(f"tests not green (command exited {sb.exit_code})")
        if report.started and not ran_to_end:
            why.append("the test run ended early (no end record)")
        if turned:
            why.append(f"{len(turned)} tests failed the grader's hidden assertions")
        if report.rejected:
            why.append(f"{report.rejected} unsigned or forged result lines ignored")
        hint = report.explain_missing()
        if hint:
            why.append(hint)
        why += [f"check failed: {c['check']} ({c['detail']})" for c in checks if not c["ok"]]
        res.message = "; ".join(why)
    return res
