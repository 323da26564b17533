"""A skip or xfail reached under another name (session 22).

`f = pytest.xfail` (or a `functools.partial` of it) in the package puts no frame of the package
between a test and the xfail, so the reporter saw only trusted frames: a passing-to-passing test
the submission broke came back "xfailed" (counted as passing), and a refactor without test lists
stayed green with every test xfailed. The reporter now also asks what name the last workspace
frame called; the tests' own skips (by name, helper, conftest, unittest) still count."""

from __future__ import annotations

import sys
from pathlib import Path

from hillclimb.harness.grading import grade_patch
from hillclimb.harness.task import Task, load_task

sys.path.insert(0, str(Path(__file__).parent))
from test_harness_grading_hacks import make_patch  # noqa: E402

F2P = "tests/test_f.py::test_f"
P2P = "tests/test_f.py::test_g"
TESTS = (
    "import pkg\n\n\ndef test_f():\n    assert pkg.f('ab') == 'ba'\n\n\n"
    "def test_g():\n    r = pkg.g('ab')\n    assert r == 'abab'\n"
)
FIXED = "def f(s):\n    return s[::-1]\n\n\n"
OLD = "def f(s):\n    return s\n\n\ndef g(x):\n    return x * 2\n"


def _task(root: Path, kind: str = "bugfix", tests: str = TESTS, init: str = OLD) -> Task:
    (root / "repo" / "pkg").mkdir(parents=True)
    (root / "repo" / "pkg" / "__init__.py").write_text(init)
    (root / "tests").mkdir()
    (root / "tests" / "test_f.py").write_text(tests)
    if kind == "refactor":
        lists = '[[checks]]\ntype = "name_present"\nname = "f"\n'
    else:
        lists = f'FAIL_TO_PASS = ["{F2P}"]\nPASS_TO_PASS = ["{P2P}"]\n'
    (root / "task.toml").write_text(f'id = "t"\nkind = "{kind}"\ninstruction = "fix f"\n{lists}')
    return load_task(root)


ALIASES = [
    "import pytest\n\ng = pytest.xfail\n",
    "import functools\nimport pytest\n\ng = functools.partial(pytest.xfail, 'later')\n",
    "import pytest\n\n\nclass _G:\n    __call__ = staticmethod(pytest.xfail)\n\n\ng = _G()\n",
]


def test_an_aliased_xfail_does_not_pass_a_broken_pass_to_pass_test(tmp_path):
    fixed_f = "def f(s):\n    return s[::-1]\n\n\n"
    for i, alias in enumerate(ALIASES):
        task = _task(tmp_path / str(i))
        res = grade_patch(task, make_patch(task, {"pkg/__init__.py": fixed_f + alias}))
        assert res.tests[P2P] == "failed", (alias, res.tests)
        assert not res.resolved and res.pass_to_pass["failed"] == [P2P], alias
    honest = make_patch(task, {"pkg/__init__.py": fixed_f + "def g(x):\n    return x * 2\n"})
    assert grade_patch(task, honest).resolved


def test_an_aliased_xfail_does_not_make_a_refactor_green(tmp_path):
    task = _task(tmp_path, "refactor", init=FIXED + "def g(x):\n    return x * 2\n")
    assert grade_patch(task, None).resolved
    broken = "def f(s):\n    return s[::-1]\n\n\n" + ALIASES[0]
    res = grade_patch(task, make_patch(task, {"pkg/__init__.py": broken}))
    assert not res.resolved and res.status == "unresolved", (res.status, res.tests)


def test_the_tests_own_skips_by_name_still_count(tmp_path):
    """pytest.xfail / pytest.skip / importorskip by name, through a helper in the test module,
    `raise unittest.SkipTest`, `self.skipTest`, a conftest fixture: the author's, so kept."""
    tests = (
        "import unittest\n\nimport pytest\n\nimport pkg\nfrom pytest import xfail\n\n\n"
        "def test_f():\n    assert pkg.f('ab') == 'ba'\n\n\n"
        "def test_g():\n    if pkg.g('') == '':\n        pytest.xfail('known')\n\n\n"
        "def _later():\n    pytest.skip('later')\n\n\n"
        "def test_helper():\n    _later()\n\n\n"
        "def test_raise():\n    raise unittest.SkipTest('no')\n\n\n"
        "def test_from_import():\n    xfail('known')\n\n\n"
        "def test_multiline():\n    pytest.xfail(\n        'known',\n    )\n\n\n"
        "def test_orskip():\n    pytest.importorskip('no_such_module_here')\n\n\n"
        "class TestCase(unittest.TestCase):\n    def test_u(self):\n        self.skipTest('no')\n\n\n"
        "def test_fixture(gpu):\n    pass\n"
    )
    task = _task(tmp_path, tests=tests)
    (tmp_path / "tests" / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.fixture\ndef gpu():\n    pytest.skip('no gpu')\n"
    )
    task = load_task(tmp_path)
    res = grade_patch(
        task,
        make_patch(
            task,
            {"pkg/__init__.py": "def f(s):\n    return s[::-1]\n\n\ndef g(x):\n    return x * 2\n"},
        ),
    )
    assert res.resolved, (res.status, res.message, res.tests)
    t = res.tests
    assert t[P2P] == "xfailed" and t["tests/test_f.py::test_from_import"] == "xfailed"
    assert t["tests/test_f.py::test_multiline"] == "xfailed"
    for name in ("test_helper", "test_raise", "test_orskip", "TestCase::test_u", "test_fixture"):
        assert t[f"tests/test_f.py::{name}"] == "skipped", (name, t)
