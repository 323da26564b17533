"""Per-test outcomes from plain pytest output (and node's TAP), for trusted output only.

Not used to grade submissions: code under test can print these lines, so the grader reads
outcomes from its own signed reporters (results_channel.py) instead. The task generator still
reads text, because there the code under test is our own corpus, mutated by us.

Why text (where it is trusted) rather than junit XML: the ids compared against FAIL_TO_PASS /
PASS_TO_PASS are pytest node ids (`tests/test_x.py::TestA::test_b[param]`), which `-rA` prints
verbatim in the "short test summary info" section (`PASSED id`, `FAILED id - message`, `ERROR
id`, `XPASS id`, ...); junit XML would need a lossy class-name mapping back to node ids. We also
read `-v` progress lines (`id PASSED [ 50%]`). When a test id appears more than once (for example
a test that passed its call but errored in teardown) the worst outcome wins. The grader's plugin
reports the same ids and outcomes (tests check the two agree), except that a skipped test, which
`-rA` prints without its id, is reported as `skipped`.

Only outcomes in the summary/progress formats count; a test missing from the output counts as not
passed (SWE-bench rules), which also makes a crashed or timed-out run unresolved.
"""

from __future__ import annotations

import re
import unicodedata

PASS = "passed"
FAIL = "failed"
ERROR = "error"
SKIP = "skipped"
XFAIL = "xfailed"
XPASS = "xpassed"

# When one test has several outcomes (a passed call, an errored teardown), the worst wins.
SEVERITY = {PASS: 0, XFAIL: 1, SKIP: 1, XPASS: 2, FAIL: 3, ERROR: 4}
_SEVERITY = SEVERITY
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


# ---- node:test TAP ------------------------------------------------------------------------------
#
# `node --test --test-reporter=tap FILE` prints one `ok N - name` / `not ok N - name` line per test
# and per suite, nested subtests indented four spaces under a `# Subtest: name` line, with
# `# SKIP` / `# TODO` directives. Node 20 does not name the file a test came from, so the harness's
# JavaScript test command runs one file at a time and prints `# hillclimb-file: tests/x.test.js`
# before each; ids are then `tests/x.test.js::suite::name` (pytest's `file::Class::test` shape).
# A file that fails to load is reported by node as one failing test named by its absolute path,
# which we record under the file's own id (like pytest's `ERROR tests/x.py` collection error).

FILE_MARKER = "# hillclimb-file: "
_TAP_RESULT = re.compile(r"^( *)(not ok|ok)\b(?: +\d+)?(?: +-)?(?: +(.*))?$")
_TAP_SUBTEST = re.compile(r"^( *)# Subtest: (.*)$")
_TAP_DIRECTIVE = re.compile(r"\s+#\s+(SKIP|TODO)\b.*$", re.IGNORECASE)


def _tap_unescape(name: str) -> str:
    # node escapes `\`, `#` and line breaks in test names (`\\`, `\#`, `\n`).
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m[1], m[1]), name)


def parse_tap_output(text: str) -> dict[str, str]:
    """Map `file::suite::test` -> outcome from `node --test --test-reporter=tap` output."""
    results: dict[str, str] = {}
    current_file = ""
    stack: list[str] = []  # names of the open subtests, by nesting level

    def put(test_id: str, outcome: str) -> None:
        prev = results.get(test_id)
        if prev is None or _SEVERITY[outcome] > _SEVERITY[prev]:
            results[test_id] = outcome

    for raw in text.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        if line.startswith(FILE_MARKER):
            current_file = line[len(FILE_MARKER) :].strip()
            stack = []
            continue
        m = _TAP_SUBTEST.match(line)
        if m:
            depth = len(m.group(1)) // 4
            del stack[depth:]
            stack += [""] * (depth - len(stack))
            stack.append(_tap_unescape(m.group(2).strip()))
            continue
        m = _TAP_RESULT.match(line)
        if not m or (len(m.group(1)) % 4):
            continue
        depth = len(m.group(1)) // 4
        rest = m.group(3) or ""
        directive = _TAP_DIRECTIVE.search(rest)
        name = _tap_unescape((rest[: directive.start()] if directive else rest).strip())
        if not name:
            continue
        if m.group(2) == "not ok":
            outcome = XFAIL if directive and directive[1].upper() == "TODO" else FAIL
        elif directive:
            outcome = SKIP if directive[1].upper() == "SKIP" else PASS
        else:
            outcome = PASS
        path = [p for p in stack[:depth] if p] + [name]
        if current_file and depth == 0 and name.startswith("/") and name.endswith(current_file):
            put(current_file, outcome)  # the file itself failed (syntax error, failed require)
            continue
        put("::".join(([current_file] if current_file else []) + path), outcome)
    return results


def parse_test_output(text: str, language: str = "python") -> dict[str, str]:
    """Per-test outcomes of a task's test command: TAP for JavaScript (`node --test`), pytest
    otherwise."""
    if language == "javascript":
        return parse_tap_output(text)
    return parse_pytest_output(text)


def normalize_answer(text: str) -> str:
    """Case-, space-, quote- and trailing-punctuation-insensitive form of a short answer (repo_qa
    grading; here, below `task` and `grading`, because loading a task checks its answers too)."""
    s = unicodedata.normalize("NFKC", text).strip().lower()
    s = re.sub(r"\s+", " ", s)
    for _ in range(3):
        s = s.strip().strip("`'\"").rstrip(".!").strip()
    if s.endswith("()"):
        s = s[:-2]
    return s
