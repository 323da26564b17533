"""Partial RL credit (`GradeResult.value_checked`) counts a passing test only when one of its
hidden values was logged: since session 28 assertions inside an `if` branch are hidden, and a
test whose branch did not run passes with nothing checked outside the sandbox (a branch marker
is not a value)."""

from __future__ import annotations

from test_outside_checks_s26_expect import grade_package, make_task

TESTS = """import pkg


def test_gated():
    if pkg.ready():
        assert pkg.add(2, 3) == 5


def test_plain():
    assert pkg.add(1, 1) == 2
"""
IDS = ["tests/test_pkg.py::test_gated", "tests/test_pkg.py::test_plain"]
BUGGY = "def ready():\n    return True\n\n\ndef add(a, b):\n    return 0\n"


def test_a_branch_that_did_not_run_checks_no_value(tmp_path) -> None:
    task = make_task(tmp_path / "gated", TESTS, IDS, BUGGY)
    skipped = grade_package(
        task, "def ready():\n    return False\n\n\ndef add(a, b):\n    return a + b\n"
    )
    assert skipped.tests == {i: "passed" for i in IDS}, skipped.tests
    assert skipped.value_checked == ["tests/test_pkg.py::test_plain"], skipped.value_checked


def test_a_branch_that_ran_checks_its_value(tmp_path) -> None:
    task = make_task(tmp_path / "gated", TESTS, IDS, BUGGY)
    ran = grade_package(
        task, "def ready():\n    return True\n\n\ndef add(a, b):\n    return a + b\n"
    )
    assert ran.resolved, (ran.status, ran.message, ran.tests)
    assert ran.value_checked == IDS, ran.value_checked
    wrong = grade_package(task, "def ready():\n    return True\n\n\ndef add(a, b):\n    return 7\n")
    assert wrong.value_checked == [], wrong.value_checked
