"""Per-test outcomes from plain pytest output.

Why parse text instead of a plugin or junit XML: the grader must work with any repo's own pytest
and configuration, and the test ids it compares against FAIL_TO_PASS / PASS_TO_PASS are pytest
node ids (`tests/test_x.py::TestA::test_b[param]`), which `-rA` prints verbatim in the "short
test summary info" section (`PASSED id`, `FAILED id - message`, `ERROR id`, `XPASS id`, ...);
junit XML would need a lossy class-name mapping back to node ids. We also read `-v` progress lines
(`id PASSED [ 50%]`) so commands without `-rA` still grade. When a test id appears more than once
(for example a test that passed its call but errored in teardown) the worst outcome wins.

Only outcomes in the summary/progress formats count; a test missing from the output counts as not
passed (SWE-bench rules), which also makes a crashed or timed-out run unresolved.
"""

from __future__ import annotations

import re

PASS = "passed"
FAIL = "failed"
ERROR = "error"
SKIP = "skipped"
XFAIL = "xfailed"
XPASS = "xpassed"

_SEVERITY = {PASS: 0, XFAIL: 1, SKIP: 1, XPASS: 2, FAIL: 3, ERROR: 4}
_SUMMARY = re.compile(r"^(PASSED|FAILED|ERROR|XPASS|XFAIL|SKIPPED)\s+(\S.*?)\s*$")
_VERBOSE = re.compile(
    r"^(\S+::\S.*?)\s+(PASSED|FAILED|ERROR|XPASS|XFAIL|SKIPPED)(?:\s+\[\s*\d+%\])?\s*$"
)
_WORD = {
    "PASSED": PASS,
    "FAILED": FAIL,
    "ERROR": ERROR,
    "XPASS": XPASS,
    "XFAIL": XFAIL,
    "SKIPPED": SKIP,
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _strip_message(nodeid: str) -> str:
    # `FAILED tests/t.py::test_a - AssertionError: ...`: the message follows " - ".
    # Parametrize ids live in [...] and may contain " - ", so only cut outside brackets.
    depth = 0
    for i, ch in enumerate(nodeid):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif depth == 0 and nodeid.startswith(" - ", i):
            return nodeid[:i]
    return nodeid


def parse_pytest_output(text: str) -> dict[str, str]:
    """Map pytest node id -> outcome (passed/failed/error/skipped/xfailed/xpassed)."""
    results: dict[str, str] = {}

    def put(nodeid: str, outcome: str) -> None:
        nodeid = nodeid.strip()
        if "::" not in nodeid and not nodeid.endswith(".py"):
            return  # `SKIPPED [1] file:line: reason` and other non-id lines
        prev = results.get(nodeid)
        if prev is None or _SEVERITY[outcome] > _SEVERITY[prev]:
            results[nodeid] = outcome

    for raw in text.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        m = _SUMMARY.match(line)
        if m:
            put(_strip_message(m.group(2)), _WORD[m.group(1)])
            continue
        m = _VERBOSE.match(line)
        if m:
            put(m.group(1), _WORD[m.group(2)])
    return results


def is_pass(outcome: str | None) -> bool:
    """SWE-bench counts passed and xfailed as passing; anything else (or absent) as failing."""
    return outcome in (PASS, XFAIL)
