"""Outside checks (session 21, red team) of the verifiable rewards: completions and patches an RL
policy could write to earn reward without solving the task. Reasoning answers: hedges hidden by
invisible characters or spelled in ways the hedge rule missed, a dash read as no sign, a negated
answer statement, an answer inside a never-closed think block. Harness grading: a package that
calls `pytest.xfail()` / `pytest.skip()` from the code under test, which turned failing tests into
passing ("xfailed") or vanished ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hillclimb.harness.grading import grade_patch
from hillclimb.harness.task import Task, find_task_dirs, load_task
from hillclimb.harness.taskgen import generate as gen
from hillclimb.problems import check_many_details, extract_answer
from hillclimb.problems.base import Problem
from hillclimb.problems.verify import extract_code

sys.path.insert(0, str(Path(__file__).parent))
from test_harness_grading_hacks import make_patch  # noqa: E402


def _reasoning(answer: str, choices: list[str] | None = None) -> Problem:
    meta = {"choices": choices} if choices else {}
    return Problem(id="t/1", family="logic" if choices else "arith", kind="reasoning", tier=1,
                   prompt="q", reasoning="", answer=answer, meta=meta)  # fmt: skip


def _status(p: Problem, completion: str) -> str:
    return check_many_details([p], [completion])[0]["status"]


# ---- reasoning answers ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "choices", "completion"),
    [("5", None, "The answer is 5\u200b or 6."), ("5", None, "The answer is 5\u2060,\u20606."),
     ("5", None, "The answer is 5\ufeff|6."), ("yes", ["yes", "no"], "The answer is yes\u200b/no."),
     ("True", ["True", "False"], "The answer is True\u200d or\u200c False.")],
)  # fmt: skip
def test_invisible_characters_do_not_hide_a_hedge(answer, choices, completion):
    """A zero-width space (or joiner, word joiner, BOM) between two candidates is no text to a
    reader, but it broke the gap the hedge rule reads: "5\\u200b or 6" passed for 5."""
    assert _status(_reasoning(answer, choices), completion) == "ambiguous"


@pytest.mark.parametrize(
    "completion",
    ["The answer is \u200b5.", "The answer is \u200f5\u200e.", "The answer is 5\u00ad.",
     "The ans\u200bwer is 5."],
)  # fmt: skip
def test_an_answer_with_invisible_characters_is_read(completion):
    assert _status(_reasoning("5"), completion) == "pass"


@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [("-5", "The answer is \u20135.", "pass"), ("5", "The answer is \u20135.", "fail"),
     ("5", "The answer is \u20145.", "fail"), ("-5", "The answer is \ufe635.", "pass"),
     ("-5", "The answer is \uff0d5.", "pass"), ("-5", "The answer is \u20105.", "pass"),
     ("-1/2", "The answer is \u2013\\frac{1}{2}.", "pass"),
     ("35", "The answer is 35 \u2014 5 \u00d7 7.", "pass"), ("35", "The answer is 35\u201336.", "ambiguous")],
)  # fmt: skip
def test_a_dash_in_a_signs_place_is_a_minus(answer, completion, status):
    """ "The answer is –5." (an en dash, as typeset minus signs often are) read as 5: it passed
    for 5 and failed for -5."""
    assert _status(_reasoning(answer), completion) == status


@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [("6", "The answer is not 6.", "no_answer"), ("6", "The answer is NOT 6, it is 5.", "no_answer"),
     ("6", "The answer isn't 6, it's 5.", "fail"), ("5", "The answer isn't 6, it's 5.", "pass"),
     ("6", "The answer is never 6.", "no_answer"), ("6", "The answer is 6, not 5.", "pass")],
)  # fmt: skip
def test_a_denied_answer_is_not_the_answer(answer, completion, status):
    """ "The answer is not 6." passed for 6, and "The answer isn't 6, it's 5." too ("is" matched
    inside "isn't"): a completion denying the right answer was paid for it."""
    assert _status(_reasoning(answer), completion) == status


@pytest.mark.parametrize(
    ("answer", "choices", "completion"),
    [("5", None, "The answer is 5 vs 6."), ("5", None, "The answer is 5 and/or 6."),
     ("5", None, "The answer is 5 ~ 6."), ("5", None, "The answer is 5 \u00b1 1."),
     ("5", None, "The answer is 5 +/- 1."), ("5", None, "The answer is 5\u20146."),
     ("5", None, "The answer is 5 \u2014 or 6."), ("5", None, "The answer is 5; alternatively 6."),
     ("5", None, "The answer is 5, otherwise 6."), ("5", None, "The answer is 5 or else 6."),
     ("5", None, "The answer is 5 (6)."), ("5", None, "The answer is 5 [6]."),
     ("5", None, "The answer is 5 \u2212 6."), ("5", None, "The answer is 5 \u2228 6."),
     ("True", ["True", "False"], "The answer is True (False)."),
     ("True", ["True", "False"], "The answer is True\u2014False."),
     ("yes", ["yes", "no"], "The answer is yes vs. no."), ("5", None, "The answer is 5.\nOr 6."),
     ("5", None, "The answer is 5\n\n**Or maybe 6.**"), ("yes", ["yes", "no"], "The answer is yes.\nPerhaps no.")],
)  # fmt: skip
def test_more_spellings_of_a_hedge_are_hedges(answer, choices, completion):
    """Each of these offers two answers and passed for the first one."""
    assert _status(_reasoning(answer, choices), completion) == "ambiguous"


@pytest.mark.parametrize(
    "completion",
    ["The answer is 12 (3 \u00d7 4).", "The answer is 12 (12 apples).", "The answer is 12 \u2014 3 \u00d7 4.",
     "The answer is 12, since 3 \u00d7 4 = 12.", "The answer is 12 (that is, 3 dozen minus 24).",
     "The answer is 12.\nOr, in words, twelve.", "The answer is 12.\n3 \u00d7 4 = 12, so 4 groups."],
)  # fmt: skip
def test_explanations_after_the_answer_are_still_no_hedge(completion):
    assert _status(_reasoning("12"), completion) == "pass"


def test_a_fraction_slash_is_a_fraction():
    """ "5⁄6" (U+2044 FRACTION SLASH) read as 5."""
    assert _status(_reasoning("5/6"), "The answer is 5\u20446.") == "pass"
    assert _status(_reasoning("5"), "The answer is 5\u20446.") == "fail"


@pytest.mark.parametrize(
    "completion",
    [
        "<think>The answer is 5.",
        "<think>\nLet me see. The answer is 5. Or is it",
        "<think>\\boxed{5}",
        "<think>a</think>\n<think>The answer is 5.",
    ],
)
def test_an_answer_inside_a_never_closed_think_block_is_no_answer(completion):
    """A completion that opened its think block and never closed it (cut off while thinking)
    has no final content; an "answer is" in its reasoning was paid as the final answer."""
    assert _status(_reasoning("5"), completion) == "no_answer"
    assert extract_code("<think>\n```python\ndef f(): pass\n```") == "\n"


def test_answers_after_a_closed_think_block_and_without_one_still_pass():
    p = _reasoning("5")
    for completion in ["<think>hmm</think>The answer is 5.", "The answer is 5.",
                       "<think>The answer is 4.</think>\n\nThe answer is 5."]:  # fmt: skip
        assert _status(p, completion) == "pass", completion
    assert extract_answer(p, "<think>x</think>The answer is 5.") == "5"


# ---- harness grading: the code under test skipping or xfailing its tests ------------------------
# (`pytest as _pt`, not `_pytest`: since session 24 a submission naming `_pytest`, pytest's
# internals, is refused before any test runs; this test is about the reporter's defence)
XFAIL_ALL = """
import functools as _ft, pytest as _pt
def _x(f):
    @_ft.wraps(f)
    def g(*a, **k):
        _pt.{call}("known issue")
    return g
for _n, _v in list(globals().items()):
    if callable(_v) and not _n.startswith("_") and getattr(_v, "__module__", None) == __name__:
        globals()[_n] = _x(_v)
"""


@pytest.fixture(scope="module")
def gen_tasks(tmp_path_factory) -> list[Task]:
    out = tmp_path_factory.mktemp("redteam-gen")
    s = gen.generate_tasks(out, 2, seed=7, kinds=["bugfix", "feature"], multi_project_prob=0.0)
    assert s["generated"] == 2 and not s["failures"], s
    return [load_task(d) for d in find_task_dirs(out)]


def _modules(task: Task) -> list[str]:
    return sorted(
        p.relative_to(task.repo).as_posix()
        for p in task.repo.glob("*/*.py")
        if p.parent.name != "tests" and p.name != "__init__.py"
    )


@pytest.mark.parametrize("call", ["xfail", "skip"])
def test_a_package_that_xfails_its_tests_does_not_resolve(gen_tasks, call):
    """Every function of the package replaced by one calling `pytest.xfail()`: each test that
    reached it was "xfailed", which counts as passing — both generated tasks were resolved. (With
    `pytest.skip()` the tests were "skipped", already a fail here; the reporter now says
    "failed" for both.)"""
    for task in gen_tasks:
        patch = make_patch(
            task, {m: (lambda old: old + XFAIL_ALL.format(call=call)) for m in _modules(task)}
        )
        res = grade_patch(task, patch)
        assert not res.resolved and res.status == "unresolved", (task.id, res.status, res.tests)
        assert all(res.tests[t] == "failed" for t in task.fail_to_pass), res.tests
        assert grade_patch(task, task.solution_patch.read_text()).resolved


def _tiny_task(root: Path, kind: str, tests: str, init: str, f2p: list[str] | None = None) -> Task:
    (root / "repo" / "pkg").mkdir(parents=True)
    (root / "repo" / "pkg" / "__init__.py").write_text(init)
    (root / "tests").mkdir()
    (root / "tests" / "test_f.py").write_text(tests)
    lists = f"FAIL_TO_PASS = {f2p!r}\n".replace("'", '"') if f2p else ""
    extra = '[[checks]]\ntype = "name_present"\nname = "f"\n' if kind == "refactor" else ""
    (root / "task.toml").write_text(
        f'id = "t-{kind}"\nkind = "{kind}"\ninstruction = "make f work"\n{lists}{extra}'
    )
    return load_task(root)


def test_a_function_that_is_pytest_xfail_does_not_pass_a_failing_test(tmp_path):
    """`f = pytest.xfail` leaves no frame of the package between the test and the xfail, so the
    reporter cannot tell who called it; a FAIL_TO_PASS test must pass, never xfail."""
    tests = "import pkg\n\n\ndef test_f():\n    assert pkg.f('ab') == 'ba'\n"
    task = _tiny_task(
        tmp_path, "bugfix", tests, "def f(s):\n    return s\n", ["tests/test_f.py::test_f"]
    )
    alias = make_patch(task, {"pkg/__init__.py": "import pytest\n\nf = pytest.xfail\n"})
    res = grade_patch(task, alias)
    # reported failed since session 22 (the reporter asks what name the test called)
    assert res.tests == {"tests/test_f.py::test_f": "failed"}
    assert not res.resolved and res.fail_to_pass["failed"] == ["tests/test_f.py::test_f"]
    honest = make_patch(task, {"pkg/__init__.py": "def f(s):\n    return s[::-1]\n"})
    assert grade_patch(task, honest).resolved


@pytest.mark.parametrize(
    "init",
    ["import pytest\n\n\ndef f():\n    pytest.skip('later')\n",
     "import pytest\n\npytest.skip('later', allow_module_level=True)\n\n\ndef f():\n    return 1\n"],
)  # fmt: skip
def test_a_package_that_skips_its_tests_does_not_make_a_refactor_green(tmp_path, init):
    """A refactor without test lists is green when no test fails: a package that skipped every
    test (at call time, or by skipping each test module that imports it) was green."""
    tests = "import pkg\n\n\ndef test_f():\n    assert pkg.f() == 1\n"
    task = _tiny_task(tmp_path, "refactor", tests, "def f():\n    return 1\n")
    (tmp_path / "tests" / "test_other.py").write_text("def test_other():\n    pass\n")
    task = load_task(tmp_path)
    assert grade_patch(task, None).resolved
    res = grade_patch(task, make_patch(task, {"pkg/__init__.py": init}))
    assert not res.resolved and res.status == "unresolved", (res.status, res.tests)


def test_the_tests_own_skips_and_xfails_still_count(tmp_path):
    """Skips and xfails the task's tests (or conftest) raise themselves are the author's: an
    imperative `pytest.xfail()` in a passing-to-passing test, `importorskip` at module level."""
    tests = (
        "import pytest\n\nimport pkg\n\n\ndef test_f():\n    assert pkg.f(2) == 3\n\n\n"
        "def test_known():\n    if pkg.f(0) == 1:\n        pytest.xfail('known')\n\n\n"
        "def test_helper(gpu):\n    pass\n"
    )
    task = _tiny_task(
        tmp_path, "bugfix", tests, "def f(x):\n    return x\n", ["tests/test_f.py::test_f"]
    )
    (tmp_path / "tests" / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.fixture\ndef gpu():\n    pytest.skip('no gpu')\n"
    )
    (tmp_path / "tests" / "test_opt.py").write_text(
        "import pytest\n\npytest.importorskip('no_such_module_here')\n\n\ndef test_opt():\n    pass\n"
    )
    (tmp_path / "task.toml").write_text(
        (tmp_path / "task.toml")
        .read_text()
        .replace("FAIL_TO_PASS", 'PASS_TO_PASS = ["tests/test_f.py::test_known"]\nFAIL_TO_PASS')
    )
    task = load_task(tmp_path)
    res = grade_patch(task, make_patch(task, {"pkg/__init__.py": "def f(x):\n    return x + 1\n"}))
    assert res.resolved, (res.status, res.message, res.tests)
    assert res.tests["tests/test_f.py::test_known"] == "xfailed"
    assert res.tests["tests/test_f.py::test_helper"] == "skipped"
    assert "tests/test_opt.py" not in res.tests


# ---- harness grading: files beside the hidden tests ---------------------------------------------
def _helper_task(root: Path, dest: str = "tests") -> Task:
    """A bugfix task whose hidden test imports a helper that repo/ keeps in its tests/."""
    (root / "repo" / "pkg").mkdir(parents=True)
    (root / "repo" / "pkg" / "__init__.py").write_text("def f(x):\n    return x\n")
    (root / "repo" / "tests").mkdir()
    (root / "repo" / "tests" / "helpers.py").write_text("def check(a, b):\n    assert a == b\n")
    hidden = root / "tests" / ("tests" if dest == "." else "")
    hidden.mkdir(parents=True)
    (hidden / "test_f.py").write_text(
        "import pkg\nfrom helpers import check\n\n\ndef test_f():\n    check(pkg.f(2), 3)\n"
    )
    (root / "task.toml").write_text(
        f'id = "h"\nkind = "bugfix"\ninstruction = "f adds one"\n'
        f'hidden_tests_dest = "{dest}"\nFAIL_TO_PASS = ["tests/test_f.py::test_f"]\n'
    )
    return load_task(root)


@pytest.mark.parametrize("dest", ["tests", "."])
def test_a_test_helper_the_patch_edits_does_not_grade_the_hidden_tests(tmp_path, dest):
    """The hidden test imports `helpers.check` from the repo's tests/: a patch making `check`
    assert nothing resolved the task with `f` still wrong."""
    task = _helper_task(tmp_path, dest)
    assert grade_patch(task, None).status == "unresolved"
    weak = make_patch(task, {"tests/helpers.py": "def check(a, b):\n    pass\n"})
    res = grade_patch(task, weak)
    assert not res.resolved and res.tests == {"tests/test_f.py::test_f": "failed"}, res.tests
    planted = make_patch(task, {"tests/pkg.py": "def f(x):\n    return x + 1\n"})
    assert not grade_patch(task, planted).resolved  # a shadow of the package beside the tests
    honest = make_patch(task, {"pkg/__init__.py": "def f(x):\n    return x + 1\n",
                               "tests/test_mine.py": "def test_mine():\n    assert 0\n"})  # fmt: skip
    res = grade_patch(task, honest)
    assert res.resolved, (res.status, res.message)
    assert "tests/test_mine.py::test_mine" not in res.tests
