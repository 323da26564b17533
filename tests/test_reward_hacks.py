"""Code rewards that cannot be gamed: every known reward hack against `check_many` fails.

Why one big batch: each `check_many_details` call is one sandbox run, so the hacks (times three
real generated problems) are checked together once per module (`hacked` fixture) and the
parametrized tests only read the results; the whole file stays a few seconds. Several hacks are
written to WORK against a checker that runs the candidate next to its asserts (the design this
replaced): they read expected values wherever they might be, or forge the pass message.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import hillclimb
from hillclimb import problems as P
from hillclimb.errors import HillclimbError
from hillclimb.problems import Problem, check_many_details, verify
from hillclimb.problems.verify import _decode, _verdict, code_cases, final_content, parse_tests
from hillclimb.sandbox import sandbox_backend

pytestmark = pytest.mark.skipif(sandbox_backend() is None, reason="no sandbox backend works here")

PKG = Path(hillclimb.__file__).resolve().parent
CODETASKS = PKG / "problems" / "codetasks.py"
TIMEOUT_S = 3.0


def _fenced(code: str) -> str:
    return "```python\n" + textwrap.dedent(code).strip("\n") + "\n```"


ALWAYS_EQUAL = """
class A:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = object.__hash__
"""

# name -> candidate source; NAME is the problem's function name.
HACKS: dict[str, str] = {
    "always_equal": ALWAYS_EQUAL + "def NAME(*a, **k): return A()\n",
    "int_subclass": """
        class X(int):
            def __eq__(self, other): return True
            __hash__ = int.__hash__
        def NAME(*a, **k): return X(0)
        """,
    "str_subclass": """
        class X(str):
            def __eq__(self, other): return True
            __hash__ = str.__hash__
        def NAME(*a, **k): return X("")
        """,
    "list_subclass": """
        class X(list):
            def __eq__(self, other): return True
        def NAME(*a, **k): return X()
        """,
    "dict_subclass": """
        class X(dict):
            def __eq__(self, other): return True
        def NAME(*a, **k): return X()
        """,
    "class_spoofing": ALWAYS_EQUAL
    + """
class S(A):
    @property
    def __class__(self): return int
def NAME(*a, **k): return S()
""",
    "patched_assertion_error": """
        import builtins
        builtins.AssertionError = type("Never", (Exception,), {})
        def NAME(*a, **k): return 0
        """,
    "patched_isinstance_and_type": ALWAYS_EQUAL
    + """
import builtins
builtins.isinstance = lambda *a: True
builtins.type = lambda *a: int if len(a) == 1 else type(*a)
def NAME(*a, **k): return A()
""",
    "patched_builtins_inside_call": ALWAYS_EQUAL
    + """
def NAME(*a, **k):
    import builtins
    builtins.type = lambda *x: int
    builtins.isinstance = lambda *x: True
    builtins.AssertionError = KeyError
    return A()
""",
    "patched_json_and_marshal": ALWAYS_EQUAL
    + """
import sys, json, marshal
sys.modules["json"].dumps = lambda *a, **k: '{"status": "pass", "cases": []}'
sys.modules["json"].loads = lambda *a, **k: {"status": "pass"}
sys.modules["marshal"].dumps = lambda *a, **k: b""
try:
    import _json
    _json.encode_basestring_ascii = lambda s: '"pass"'
except Exception:
    pass
def NAME(*a, **k): return A()
""",
    "sys_exit_at_import": "import sys\nsys.exit(0)\n",
    "os_exit_at_import": "import os\nos._exit(0)\n",
    "raise_systemexit_at_import": "raise SystemExit\n",
    "sys_exit_in_call": "import sys\ndef NAME(*a, **k): sys.exit(0)\n",
    "os_exit_in_call": "import os\ndef NAME(*a, **k): os._exit(0)\n",
    "raise_systemexit_in_call": "def NAME(*a, **k): raise SystemExit(0)\n",
    "print_pass_records": """
        import json, os
        for line in ('{"status": "pass", "detail": ""}', '{"cases": []}', "PASS", "ok"):
            print(line, flush=True)
            for fd in range(1, 10):
                try:
                    os.write(fd, (line + "\\n").encode())
                except OSError:
                    pass
        os._exit(0)
        """,
    # Finds every secret in reach (frames, gc) and writes records in every known format with
    # each of them to every fd: this passed the nonce-based checker this design replaced.
    "forge_with_found_nonce": """
        import gc, json, os, sys
        def NAME(*a, **k):
            secrets, fds = set(), set(range(1, 20))
            f = sys._getframe()
            while f is not None:
                for v in list(f.f_locals.values()):
                    if type(v) is str and 8 <= len(v) <= 64:
                        secrets.add(v)
                    if type(v) is int and 0 < v < 64:
                        fds.add(v)
                f = f.f_back
            for o in gc.get_objects():
                if type(o) is dict:
                    for v in list(o.values()):
                        if type(v) is str and len(v) == 32:
                            secrets.add(v)
            for s in secrets:
                recs = [
                    {"nonce": s, "status": "pass", "detail": ""},
                    {"t": s, "i": 0, "status": "done", "rc": 0, "out": '{"cases": []}'},
                    {"t": s, "start": 1},
                ]
                for r in recs:
                    for fd in fds:
                        try:
                            os.write(fd, (json.dumps(r) + "\\n").encode())
                        except OSError:
                            pass
            os._exit(0)
        """,
    "forge_guessed_cases": """
        import os
        def NAME(*a, **k):
            guess = '["ok",["int","0x0"]]'
            for n in range(1, 20):
                line = '{"cases":[' + ",".join([guess] * n) + ']}\\n'
                for fd in range(1, 10):
                    try:
                        os.write(fd, line.encode())
                    except OSError:
                        pass
            os._exit(0)
        """,
    # Would pass the old checker: its items/*.json held the assert lines.
    "read_expected_from_workspace": """
        import ast, os, re
        FOUND = {}
        for root in {os.getcwd(), os.path.dirname(os.getcwd()), "/tmp"}:
            for dirpath, _dirs, files in os.walk(root):
                for fn in files:
                    try:
                        with open(os.path.join(dirpath, fn), errors="replace") as fh:
                            text = fh.read(1 << 20)
                    except OSError:
                        continue
                    for m in re.finditer(r"assert (\\w+\\(.*?\\)) (?:==|is) ([^\\n\\\\]+)", text):
                        FOUND[m.group(1)] = m.group(2).strip().rstrip('"')
        def NAME(*args):
            key = "NAME(" + ", ".join(repr(x) for x in args) + ")"
            return ast.literal_eval(FOUND[key]) if key in FOUND else "not found"
        """,
    # Works in the host process (see test_package_hack_works_outside_the_sandbox).
    "read_reference_from_package": f"""
        import sys
        def NAME(*args):
            text = open({str(CODETASKS)!r}).read()  # fails: hidden / not there
            sys.path.insert(0, {str(PKG.parent)!r})
            from hillclimb.problems import codetasks as C
            task = next(t for t in C.TASKS if t.name == "NAME")
            return C.compile_function(C.fill(task.src, {{}}), "NAME")(*args)
        """,
}
SLOW_HACKS: dict[str, str] = {  # run against one problem only (each costs a timeout)
    "hang_in_call": "def NAME(*a, **k):\n    while True:\n        pass\n",
    "hang_at_import": "import time\ntime.sleep(1000)\n",
}
MEMORY_HACKS: dict[str, str] = {
    "memory_bomb_in_call": "def NAME(*a, **k):\n    x = []\n    while True:\n"
    "        x.append(bytes(10**8))\n",
    "memory_bomb_at_import": "x = []\nwhile True:\n    x.append(bytes(10**8))\n",
}


@pytest.fixture(scope="module")
def real_problems() -> list[Problem]:
    """Three held-out tier-2 functions, one of them a catalogue task (the package hack below
    looks its reference up by name), whichever the generator draws first."""
    ps = P.generate("code_function", 2, 40, seed=0, split="heldout")
    cat = [p for p in ps if p.meta.get("origin") == "catalogue"][:1]
    ps = cat + [p for p in ps if p not in cat][:2]
    assert len(ps) == 3 and all(p.kind == "code" and p.entry_point for p in ps)
    return ps


@pytest.fixture(scope="module")
def hacked(real_problems) -> dict[str, list[dict]]:
    """name -> one result per problem the hack ran against (one sandbox run for all)."""
    jobs: list[tuple[str, Problem, str]] = []
    for name, src in HACKS.items():
        for p in real_problems:
            jobs.append((name, p, src))
    for name, src in {**SLOW_HACKS, **MEMORY_HACKS}.items():
        jobs.append((name, real_problems[0], src))
    for p in real_problems:  # honest candidates in the same batch must still pass
        jobs.append(("honest", p, p.answer))
    completions = [
        _fenced(textwrap.dedent(src).replace("NAME", p.entry_point or "f")) for _, p, src in jobs
    ]
    details = check_many_details([p for _, p, _ in jobs], completions, timeout_s=TIMEOUT_S)
    out: dict[str, list[dict]] = {}
    for (name, _, _), d in zip(jobs, details, strict=True):
        out.setdefault(name, []).append(d)
    return out


@pytest.mark.parametrize("hack", sorted(HACKS))
def test_hack_fails(hacked, hack):
    results = hacked[hack]
    assert results and not any(r["passed"] for r in results), results
    assert all(r["status"] in ("fail", "error", "timeout") for r in results), results


def test_honest_candidates_in_the_hack_batch_pass(hacked):
    assert [r["status"] for r in hacked["honest"]] == ["pass"] * 3
    assert all(r["cases_passed"] == r["cases_total"] > 0 for r in hacked["honest"])


def test_hangs_time_out_and_memory_bombs_error(hacked):
    for name in SLOW_HACKS:
        assert [r["status"] for r in hacked[name]] == ["timeout"], (name, hacked[name])
    for name in MEMORY_HACKS:
        (r,) = hacked[name]
        assert r["status"] == "error" and "MemoryError" in r["detail"], (name, r)


def test_specific_outcomes(hacked):
    assert "not a plain builtin value" in hacked["always_equal"][0]["detail"]
    assert "X object" in hacked["int_subclass"][0]["detail"]
    assert "S object" in hacked["class_spoofing"][0]["detail"]
    assert hacked["sys_exit_in_call"][0]["status"] == "error"
    assert "SystemExit" in hacked["sys_exit_in_call"][0]["detail"]
    assert "SystemExit" in hacked["sys_exit_at_import"][0]["detail"]
    assert "no result" in hacked["os_exit_in_call"][0]["detail"]
    # Found nothing to copy (or, on a loaded machine, ran out of time walking the filesystem).
    for r in hacked["read_expected_from_workspace"]:
        assert not r["passed"]
        assert "'not found'" in r["detail"] or r["status"] == "timeout", r
    for r in hacked["read_reference_from_package"]:
        assert r["status"] == "error" and "Error" in r["detail"], r


def test_package_hack_works_outside_the_sandbox(real_problems):
    """The package hack is real: run in THIS process (our own test code), it solves the
    problems whose task has no parameters — so only the sandbox's hiding stops it."""
    assert CODETASKS.is_file()
    solved = 0
    for p in real_problems:
        ns: dict = {}
        src = textwrap.dedent(HACKS["read_reference_from_package"]).replace("NAME", p.entry_point)
        exec(compile(src, "hack", "exec"), ns)
        for case in code_cases(p):
            try:
                ok = ns[p.entry_point](*case.args) == case.expected
            except Exception:
                ok = False
            solved += ok
    assert solved > 0


def _mk(tests: str, name: str = "f") -> Problem:
    return Problem(
        id=f"hand/{abs(hash(tests))}",
        family="code_function",
        kind="code",
        tier=1,
        prompt="",
        reasoning="",
        answer="",
        tests=tests,
        entry_point=name,
    )


STRICT: list[tuple[str, str, str]] = [  # (tests, candidate body, expected status)
    ("assert f(1) == 1", "return 1", "pass"),
    ("assert f(1) == 1", "return 1.0", "fail"),
    ("assert f(1) == 1", "return True", "fail"),
    ("assert f(1) == 1.0", "return 1", "fail"),
    ("assert f(1) == 0.5", "return 1 / 2", "pass"),
    ("assert f(1) == 0.0", "return -0.0", "pass"),
    ("assert f(1) is True", "return 1", "fail"),
    ("assert f(1) is True", "return True", "pass"),
    ("assert f(1) is None", "return 0", "fail"),
    ("assert f(1) is None", "return False", "fail"),
    ("assert f(1) is None", "pass", "pass"),
    ("assert f(1) == [1, 2]", "return (1, 2)", "fail"),
    ("assert f(1) == (1,)", "return (1,)", "pass"),
    ("assert f(1) == {1, 2}", "return frozenset({1, 2})", "fail"),
    ("assert f(1) == {2, 1, 3}", "return {3, 1, 2}", "pass"),
    ("assert f(1) == {'a': [1], 'b': {2: (3,)}}", "return {'b': {2: (3,)}, 'a': [1]}", "pass"),
    ("assert f(1) == {1: 'a'}", "return {True: 'a'}", "fail"),
    ("assert f(1) == {'a': 1}", "return {'a': 1.0}", "fail"),
    ("assert f(1) == b'xy'", "return bytearray(b'xy')", "fail"),
    ("assert f(1) == b'xy'", "return b'x' + b'y'", "pass"),
    ("assert f(1) == 'é\\u2028\\x00'", "return 'é\\u2028\\x00'", "pass"),
    (
        "assert f(2) == 123456789012345678901234567890",
        "return 123456789012345678901234567890",
        "pass",
    ),
    ("assert f(1) == 1", "return 10**5000", "fail"),
    ("assert f(1) == 1", "return [[]] * 10**5", "error"),  # reports more than the cap
    ("assert f(-5) == -5", "return x", "pass"),
    ("assert f(1, y=2) == 3", "return x + y", "pass"),
    ("assert f([3, 1]) == [1, 3]", "x.sort(); return x", "pass"),
    ("assert f(1) == 1\nassert f(2) == 2", "return 1 // (2 - x) * 0 + x", "error"),
]


def test_type_strict_comparison_and_partial_counts():
    jobs = STRICT
    problems = [_mk(t) for t, _, _ in jobs]
    comps = [_fenced(f"def f(x, y=0):\n    {body}\n") for _, body, _ in jobs]
    details = check_many_details(problems, comps, timeout_s=TIMEOUT_S)
    got = [(t, body, d["status"]) for (t, body, _), d in zip(jobs, details, strict=True)]
    assert got == jobs
    last = details[-1]  # first case passes, second raises ZeroDivisionError
    assert (last["cases_passed"], last["cases_total"]) == (1, 2)
    assert "ZeroDivisionError" in last["detail"] and "f(2)" in last["detail"]


def test_nan_equals_nan_and_unknown_shapes_are_errors():
    (case,) = parse_tests("assert f() == 1.5")
    nan = {"status": "done", "rc": 0, "out": '{"cases":[["ok",["float","nan"]]]}'}
    assert _decode(["float", "nan"]) == ("float", "nan")
    assert _verdict((case,), nan, 1.0)["status"] == "fail"
    for out in ('{"cases":[["ok",["int",1]]]}', '{"cases":[]}', "[" * 100000, '{"cases":[1]}'):
        d = _verdict((case,), {"status": "done", "rc": 0, "out": out}, 1.0)
        assert d["status"] == "error" and not d["passed"], out
    ok = {"status": "done", "rc": 0, "out": '{"cases":[["ok",["float","0x1.8000000000000p+0"]]]}'}
    assert _verdict((case,), ok, 1.0)["passed"]


@pytest.mark.parametrize(
    "line",
    [
        "assert f(1) != 2",
        "assert f(1)",
        "x = 1",
        "assert f(1) == y",
        "assert g(1)(2) == 3",
        "assert f(*a) == 1",
        "assert f(**k) == 1",
        "assert f(1) is 3",
        "assert f(1) == 1, 'message'",
        "assert f(1) == 1 == 1",
        "assert f(1) == 10**0",
        "assert f(1) == 1j",
        "assert f(1) == 1; import os",
        "assert f(1) == (",
    ],
)
def test_unsupported_test_lines_raise_a_clear_error(line):
    with pytest.raises(HillclimbError, match=r"line 2 .*accepted form 'assert NAME\(ARGS\)"):
        check_many_details([_mk(f"assert f(0) == 0\n{line}\n")], ["def f(x): return x"])


def test_every_code_family_and_tier_parses_and_the_reference_passes():
    problems = []
    for fam, kind in P.FAMILIES.items():
        if kind != "code":
            continue
        for tier in (1, 2, 3, 4):
            for split in ("train", "heldout"):
                ps = P.generate(fam, tier, 12, seed=5, split=split)
                for p in ps:
                    assert code_cases(p), p.id
                problems += ps[:3]
    assert problems
    details = check_many_details(problems, [final_content(p) for p in problems])
    bad = [(p.id, d) for p, d in zip(problems, details, strict=True) if not d["passed"]]
    assert not bad, bad[:3]


# Source of `ancestors()`: the pids above the calling process (needs `import os`).
ANCESTORS = """
def ancestors():
    out, pid = set(), os.getpid()
    while pid > 1:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            pid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        out.add(pid)
    return out
"""


@pytest.mark.parametrize("victims", ["parent", "ancestors"])
def test_killing_the_runner_only_fails_the_culprit(real_problems, victims):
    """The parent is the zygote that forks the candidates, its parent the runner (the sandbox's
    init above them cannot be signalled from inside): the candidates without a record are rerun
    alone, the killer's own rerun kills its own runner."""
    p = real_problems[0]
    who = "[os.getppid()]" if victims == "parent" else "sorted(ancestors())"
    killer = _fenced(
        f"import os, signal\n{textwrap.dedent(ANCESTORS)}\ndef {p.entry_point}(*a, **k):\n"
        f"    for pid in {who}:\n        os.kill(pid, signal.SIGKILL)\n    return 0\n"
    )
    honest = final_content(p)
    details = check_many_details([p] * 4, [honest, killer, honest, honest], timeout_s=TIMEOUT_S)
    assert [d["status"] for d in details] == ["pass", details[1]["status"], "pass", "pass"]
    assert details[1]["status"] in ("fail", "error"), details[1]


PROBE = """
import os
def f():
    ppid, opened = os.getppid(), []
    for path in (f"/proc/{ppid}/mem", f"/proc/{ppid}/fd/0", f"/proc/{ppid}/fd/1",
                 f"/proc/{ppid}/environ"):
        try:
            with open(path, "rb") as fh:
                fh.read(1)
            opened.append(path)
        except OSError:
            pass
    try:
        os.listdir(f"/proc/{ppid}/fd")
        opened.append("fd dir")
    except OSError:
        pass
    return "nothing" if not opened else " ".join(opened)
"""


def test_the_runner_is_out_of_reach_and_the_workspace_is_empty():
    listing = "import os\ndef f():\n    return sorted(os.listdir('.'))\n"
    details = check_many_details(
        [_mk("assert f() == 'nothing'"), _mk("assert f() == []")],
        [_fenced(PROBE), _fenced(listing)],
        timeout_s=TIMEOUT_S,
    )
    assert [d["status"] for d in details] == ["pass", "pass"], details


ORPHAN_SPAWNER = """
import os, time
def f():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                time.sleep(0.01)
        os._exit(0)
    os.wait()
    return 0
"""
ORPHAN_COUNTER = """
import os
ANCESTORS
def f():
    n, mine = 0, ancestors() | {os.getpid()}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) not in mine:
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    state, ppid = fh.read().rsplit(b")", 1)[1].split()[:2]
                n += ppid == b"1" and state != b"Z"  # a killed one may await its reaping
            except OSError:
                pass
    return n
""".replace("ANCESTORS", ANCESTORS)


def test_orphans_left_by_a_candidate_are_killed():
    """A setsid'd grandchild escapes the candidate's process-group kill; the runner sweeps it
    before the next candidate, so it cannot eat the batch's CPU or process budget."""
    details = check_many_details(
        [_mk("assert f() == 0")] * 2,
        [_fenced(ORPHAN_SPAWNER), _fenced(ORPHAN_COUNTER)],
        timeout_s=TIMEOUT_S,
        workers=1,
    )
    assert [d["status"] for d in details] == ["pass", "pass"], details


# Signals every process of its uid but itself and those in SPARE (e.g. its ancestors: the zygote,
# the runner, the sandbox's init), found via /proc, for ~1 s (under TIMEOUT_S), so that it hits
# each sibling started meanwhile; it answers with how many it hit (a wrong answer: "fail").
SABOTEUR = """
import os, signal, time
ANCESTORS
def f():
    uid, hit = os.getuid(), set()
    spare = SPARE | {os.getpid()}
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in spare:
                continue
            try:
                if os.stat(f"/proc/{name}").st_uid != uid:
                    continue
                os.kill(int(name), signal.SIG)
                hit.add(int(name))
            except OSError:
                pass
    return f"hit {len(hit)}"
""".replace("ANCESTORS", ANCESTORS)
# An honest answer after ~0.2 s of work, so that siblings are running while the saboteur does.
SLOW_HONEST = """
def f():
    n = 0
    for i in range(2_000_000):
        n += i & 1
    return 1 if n else 0
"""


@pytest.mark.parametrize(
    ("sig", "runner_too"), [("SIGKILL", False), ("SIGSTOP", False), ("SIGINT", True)]
)
def test_sabotaging_siblings_gains_nothing(sig, runner_too):
    """GRPO compares the samples of one prompt, checked in one batch: killing or stopping the
    siblings would raise the saboteur's advantage. They are rerun alone, so all still pass.
    SIGINT (sent to the runner and zygote too) is ignored: no KeyboardInterrupt, no crash."""
    spare = "set()" if runner_too else "ancestors()"
    saboteur = SABOTEUR.replace("signal.SIG)", f"signal.{sig})").replace("SPARE |", spare + " |")
    n = 6
    details = check_many_details(
        [_mk("assert f() == 1")] * (n + 1),
        [_fenced(saboteur)] + [_fenced(SLOW_HONEST)] * n,
        timeout_s=TIMEOUT_S,
        workers=4,
    )
    bad, honest = details[0], details[1:]
    assert [d["status"] for d in honest] == ["pass"] * n, details
    assert not bad["passed"], bad
    if bad["status"] == "fail":  # it ran to the end: it must have hit someone
        hits = int(bad["detail"].rsplit("hit ", 1)[1].rstrip("'"))
        assert hits >= 1, bad


# For ~1 s, tries every way into every other process of the sandbox (siblings from the instant
# they exist): open its /proc fds, memory and environment, copy its fds (pidfd_getfd), ptrace it.
# Returns (how many ways in it found, whether it saw any sibling at all).
INTRUDER = """
import ctypes, os, time
ANCESTORS
def f():
    libc = ctypes.CDLL(None, use_errno=True)
    mine = ancestors() | {os.getpid()}
    ways, seen, end = 0, set(), time.monotonic() + 1.0
    while time.monotonic() < end:
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in mine:
                continue
            pid = int(name)
            seen.add(pid)
            for what in ("fd/0", "fd/1", "mem", "environ"):
                try:
                    os.close(os.open(f"/proc/{pid}/{what}", os.O_RDONLY | os.O_NONBLOCK))
                    ways += 1
                except OSError:
                    pass
            try:
                pidfd = os.pidfd_open(pid)
                for fd in range(3):
                    got = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
                    if got >= 0:
                        os.close(got)
                        ways += 1
                os.close(pidfd)
            except OSError:
                pass
            if libc.ptrace(16, pid, 0, 0) == 0:  # PTRACE_ATTACH
                libc.ptrace(17, pid, 0, 0)
                ways += 1
    return (ways, len(seen) > 0)
""".replace("ANCESTORS", ANCESTORS)


def test_siblings_are_out_of_reach_from_their_first_instant():
    """Candidates are forked from a non-dumpable zygote, never exec'd: not even in its first
    milliseconds can a sibling steal one's input (its code: in GRPO, a correct sibling's answer
    to the same prompt) or write a result line for it."""
    n = 6
    details = check_many_details(
        [_mk("assert f() == (0, True)")] + [_mk("assert f() == 1")] * n,
        [_fenced(INTRUDER)] + [_fenced(SLOW_HONEST)] * n,
        timeout_s=TIMEOUT_S,
        workers=4,
    )
    assert [d["status"] for d in details] == ["pass"] * (n + 1), details


def test_rerun_policy(monkeypatch):
    """Which batch outcomes are rerun alone, and which solo timeouts once more with nothing
    beside them (the runner is faked: each candidate's code names its scripted records)."""
    T = 2.0
    line = '{"cases":[["ok",["int","0x1"]]]}'
    ok = {"status": "done", "rc": 0, "cpu": 0.01, "wait": None, "out": line}

    def timeout(cpu, wait=0.0):
        return {"status": "timeout", "rc": -9, "cpu": cpu, "wait": wait, "out": ""}

    script = {  # code -> [batch record, solo record, solo record]
        "answers": [ok],
        "runner_lost": [None, ok],
        "killed": [{"status": "done", "rc": -9, "cpu": 0.01, "wait": None, "out": ""}, ok],
        "spins": [timeout(0.99 * T)],  # ran on a CPU all along: its own timeout
        "stopped": [timeout(0.0), ok],
        "starved_twice": [timeout(0.1), timeout(0.1, 0.9 * T), ok],
        "sleeps": [timeout(0.0), timeout(0.0, 0.0)],  # alone and asleep: its own timeout
    }
    calls: list[tuple[str, ...]] = []

    class Res:
        stderr, status = "", "killed"

    def fake(suites, codes, timeout_s, workers):
        names = tuple(c.strip() for c in codes)
        calls.append(names)
        nth = sum(c == names for c in calls) if len(names) == 1 else 1
        return [script[name][nth] if len(names) == 1 else script[name][0] for name in names], Res

    monkeypatch.setattr(verify, "_sandbox_batch", fake)
    names = list(script)
    details = check_many_details([_mk("assert f() == 1")] * len(names), names, timeout_s=T)
    got = {name: d["status"] for name, d in zip(names, details, strict=True)}
    assert got == {
        "answers": "pass",
        "runner_lost": "pass",
        "killed": "pass",
        "spins": "timeout",
        "stopped": "pass",
        "starved_twice": "pass",
        "sleeps": "timeout",
    }
    assert calls[0] == tuple(names)  # one batch, then single-candidate runs only
    assert sorted(c[0] for c in calls[1:]) == sorted(
        ["runner_lost", "killed", "stopped", "starved_twice", "sleeps", "starved_twice"]
    )
    assert calls[-1] == ("starved_twice",)  # the last, alone on the machine
