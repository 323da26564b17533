"""Outside checks (session 23, red team) of the adversarial coding suite's grading: answers that
pass its tests without solving the items, submitted through the real scoring path.

The suite ran `answer + tests` in ONE interpreter and passed a program that exited 0 with its end
marker as the last stdout line. Measured over the 50 items (before -> after): an always-equal
return value 31 -> 0, an `int` subclass equal to everything 28 -> 0, a `__bool__` that lies
31 -> 0, printing the marker read from the program's own code object 50 -> 0, the same from an
excepthook 50 -> 0 or an atexit handler (after silencing the traceback) 50 -> 0; the other
attacks below were 0 already and stay 0. A thread-unsafe counter whose read-modify-write
calls `int()` passed concurrency/1 in 4 of 10 runs and now in 0 of 10. The suite now runs split
(`eval.programs.run_object_checks`): trusted tests in a tester, the answer alone in its own
process behind a two-way RPC.
"""

from __future__ import annotations

import pytest

from hillclimb.sandbox import sandbox_backend

pytestmark = pytest.mark.skipif(sandbox_backend() is None, reason="no sandbox backend works here")

TIMEOUT_S = 5.0

_DUNDERS = "".join(
    f"    def {n}(s, *o): return {v}\n"
    for n, v in [
        ("__eq__", "True"), ("__ne__", "False"), ("__lt__", "True"), ("__le__", "True"),
        ("__gt__", "True"), ("__ge__", "True"), ("__abs__", "0"), ("__sub__", "s"),
        ("__rsub__", "s"), ("__add__", "s"), ("__radd__", "s"), ("__mul__", "s"),
        ("__rmul__", "s"), ("__bool__", "True"), ("__len__", "0"), ("__hash__", "0"),
        ("__iter__", "iter(())"), ("__contains__", "True"), ("__float__", "0.0"),
        ("__int__", "0"), ("__index__", "0"), ("__call__", "s"), ("__getattr__", "s"),
        ("__getitem__", "s"), ("__setitem__", "None"),
    ]
)  # fmt: skip
# finds the run's end marker wherever a one-interpreter runner would keep it
_FIND_MARKER = (
    "import sys as _s, os as _o, gc as _g\n"
    "def _markers():\n"
    "    f = _s._getframe(1).f_code.co_consts\n"
    "    out = [c for c in f if type(c) is str and '__hillclimb' in c]\n"
    "    for x in _g.get_objects():\n"
    "        for c in (x if type(x) is tuple else ()):\n"
    "            if type(c) is str and '__hillclimb' in c:\n"
    "                out.append(c)\n"
    "    return out\n"
)
_WRITE_MARKERS = (
    "    for c in _m:\n        _o.write(1, (c.strip() + chr(10)).encode())\n    _o._exit(0)\n"
)
# name -> answer code; NAME is the item's function name
ATTACKS: dict[str, str] = {
    "always_equal": "class A:\n" + _DUNDERS + "def NAME(*a, **k):\n    return A()\n",
    "int_subclass_equal": "class X(int):\n    def __eq__(s, o): return True\n"
    "    __hash__ = int.__hash__\n    def __bool__(s): return True\n"
    "def NAME(*a, **k):\n    return X(0)\n",
    "bool_liar": "class B:\n    n = 0\n    def __bool__(s):\n        B.n += 1\n"
    "        return B.n % 2 == 1\n    def __eq__(s, o): return True\n"
    "    __hash__ = object.__hash__\ndef NAME(*a, **k):\n    return B()\n",
    "marker_from_code_object": "def NAME(*a, **k):\n    return None\n" + _FIND_MARKER
    + "_m = _markers()\ndef _now():\n" + _WRITE_MARKERS + "_now()\n",
    "excepthook_prints_marker": "def NAME(*a, **k):\n    return None\n" + _FIND_MARKER
    + "_m = _markers()\ndef _hook(*a):\n" + _WRITE_MARKERS + "_s.excepthook = _hook\n",
    "atexit_prints_marker": "def NAME(*a, **k):\n    return None\n" + _FIND_MARKER
    + "import atexit as _a\n_m = _markers()\ndef _bye():\n" + _WRITE_MARKERS
    + "_a.register(_bye)\n_s.excepthook = lambda *a: None\n",
    "patched_builtins": "import builtins as _b\n"
    "_b.AssertionError = type('N', (Exception,), {})\n_b.isinstance = lambda *a: True\n"
    "_b.print = lambda *a, **k: None\n_b.len = lambda x: 0\n"
    "def NAME(*a, **k):\n    return None\n",
    "sys_exit_at_import": "import sys\nsys.exit(0)\ndef NAME(*a, **k):\n    return None\n",
    "os_exit_at_import": "import os\nos._exit(0)\n",
    "os_exit_in_call": "def NAME(*a, **k):\n    import os\n    os._exit(0)\n",
    "system_exit_in_call": "def NAME(*a, **k):\n    raise SystemExit(0)\n",
    "settrace": "import sys\ndef _t(frame, event, arg):\n    return _t\nsys.settrace(_t)\n"
    "def NAME(*a, **k):\n    return None\n",
    "value_error_subclass_equal": "class E(ValueError):\n    def __eq__(s, o): return True\n"
    "    __hash__ = object.__hash__\ndef NAME(*a, **k):\n    raise E('x')\n",
    "kill_the_tester": "def NAME(*a, **k):\n    import os, signal\n"
    "    os.kill(os.getppid(), signal.SIGKILL)\n",
    "forge_verdict_in_parent": "def NAME(*a, **k):\n    import os, json\n"
    "    for fd in range(0, 32):\n        try:\n"
    "            f = os.open(f'/proc/{os.getppid()}/fd/{fd}', os.O_WRONLY)\n"
    "            os.write(f, (json.dumps({'status': 'pass', 'detail': ''}) + chr(10)).encode())\n"
    "        except OSError:\n            pass\n    os._exit(0)\n",
    "write_fds_and_exit": "import os\nfor fd in range(1, 64):\n    try:\n"
    "        os.write(fd, b'{\"status\": \"pass\", \"detail\": \"\"}' + bytes([10]))\n"
    "    except OSError:\n        pass\nos._exit(0)\n",
}  # fmt: skip
KNOWN = ("always_equal", "marker_from_code_object")


def _attack_answers(name: str) -> tuple[list, list[str]]:
    from hillclimb.eval.adversarial import ITEMS

    items = list(ITEMS)
    code = ATTACKS[name]
    return items, [code.replace("NAME", it.signature.split("(")[0]) for it in items]


@pytest.mark.parametrize("attack", KNOWN)
def test_the_known_attacks_pass_no_adversarial_item(attack):
    """In one interpreter with the tests, an always-equal return passed 31 of 50 items and the
    printed end marker all 50; split in two processes they pass none."""
    from hillclimb.eval.adversarial import score

    items, answers = _attack_answers(attack)
    res = score(items, answers, TIMEOUT_S)
    assert [it.id for it, r in zip(items, res, strict=True) if r.passed] == []


@pytest.mark.parametrize("attack", [k for k in ATTACKS if k not in KNOWN])
def test_other_attacks_pass_no_item_of_any_category(attack):
    """Every other attack against one item per category plus every stateful item (closures,
    objects, callbacks, an argument kept by identity)."""
    from hillclimb.eval.adversarial import ITEMS, score

    items = [it for it in ITEMS if it.id.endswith("/1") or it.category == "concurrency"]
    items += [it for it in ITEMS if it.id in ("mutable_defaults/3", "mutable_defaults/4")]
    code = ATTACKS[attack]
    res = score(
        items, [code.replace("NAME", it.signature.split("(")[0]) for it in items], TIMEOUT_S
    )
    assert [it.id for it, r in zip(items, res, strict=True) if r.passed] == []


# the traps beyond tests/test_eval_suites.NAIVE: thread-unsafe, aliasing and shared-state answers
NAIVE_MORE = {
    "concurrency/1": "class C:\n    def __init__(self):\n        self.value = 0\n"
    "    def increment(self):\n        v = self.value\n        self.value = int(v) + 1\n"
    "def make_counter():\n    return C()",
    "concurrency/2": "def run_all(funcs):\n    return [f() for f in funcs]",
    "concurrency/4": "from concurrent.futures import ThreadPoolExecutor\n"
    "def bounded_map(f, xs, limit):\n    with ThreadPoolExecutor(max(1, len(xs))) as ex:\n"
    "        return list(ex.map(f, xs))",
    "concurrency/5": "class K:\n    def __init__(self, compute):\n        self.compute, self.d = compute, {}\n"
    "    def get(self, k):\n        if k not in self.d:\n            self.d[k] = self.compute(k)\n"
    "        return self.d[k]\ndef make_cache(compute):\n    return K(compute)",
    "mutable_defaults/2": "def with_tag(tags, tag):\n    tags.add(tag)\n    return tags",
    "mutable_defaults/3": "def make_counter(n=[0]):\n    def c():\n        n[0] += 1\n"
    "        return n[0]\n    return c",
    "mutable_defaults/4": "def register(name, registry=None):\n    r = dict(registry or {})\n"
    "    r[name] = len(name)\n    return r",
    "mutable_defaults/5": "D = {'debug': False, 'level': 1}\ndef with_defaults(options=None):\n"
    "    D.update(options or {})\n    return D",
    "empty_inputs/4": "def merge_counts(a, b):\n    for k, v in b.items():\n"
    "        a[k] = a.get(k, 0) + v\n    return a",
    "path_traversal/1": "import posixpath\ndef safe_join(base, name):\n"
    "    p = posixpath.normpath(posixpath.join(base, name))\n    if not p.startswith(base):\n"
    "        raise ValueError(name)\n    return p",
    "dates/4": "def age_on(birth, day):\n    return (day - birth).days // 365",
}  # fmt: skip


def test_naive_answers_still_fail_across_the_process_boundary():
    """Mutating an argument, returning a copy where the tests want the very dict passed, state
    shared between calls, order or concurrency lost: each must still fail with the answer in
    another process (its argument changes are copied back, identity kept, calls concurrent).
    concurrency/1's racy counter passed in one interpreter in 4 of 10 runs (the tests' own
    threads rarely interrupted it); `hammer` runs 8 threads from a barrier in the answer's
    process and it loses updates every time (3 runs here)."""
    from hillclimb.eval.adversarial import ITEMS, score

    by_id = {it.id: it for it in ITEMS}
    keys = [*NAIVE_MORE, "concurrency/1", "concurrency/1"]
    items = [by_id[k] for k in keys]
    res = score(items, [NAIVE_MORE[k] for k in keys], 10.0)
    assert [it.id for it, r in zip(items, res, strict=True) if r.passed] == []


def test_object_checks_carry_types_identity_and_exceptions():
    """The RPC's contract on its own: builtin exception classes cross (a subclass arrives as its
    builtin base), a non-Exception cannot be swallowed by the tests, dates cross as dates,
    argument mutations come back, and the candidate's objects have no truth value."""
    from hillclimb.eval.programs import FunctionCheck, run_object_checks

    code = (
        "import datetime\nclass Mine(KeyError):\n    pass\n"
        "class Obj:\n    def __init__(self):\n        self.n = 0\n"
        "    def bump(self, xs):\n        self.n += 1\n        xs.append(self.n)\n        return xs\n"
        "def f(kind, arg=None):\n"
        "    if kind == 'key':\n        raise Mine('k')\n"
        "    if kind == 'exit':\n        raise SystemExit(0)\n"
        "    if kind == 'date':\n        return arg + datetime.timedelta(days=1)\n"
        "    if kind == 'obj':\n        return Obj()\n"
        "    if kind == 'call':\n        return [arg(i) for i in range(3)]\n"
    )
    ok = (
        "import datetime\n"
        "try:\n    f('key')\nexcept KeyError as e:\n    assert type(e) is KeyError\n"
        "else:\n    raise AssertionError('no KeyError')\n"
        "assert f('date', datetime.date(2024, 2, 28)) == datetime.date(2024, 2, 29)\n"
        "o = f('obj')\nxs = [9]\nassert o.bump(xs) is xs and xs == [9, 1] and o.n == 1\n"
        "try:\n    bool(o)\nexcept TypeError:\n    pass\nelse:\n    raise AssertionError('truthy')\n"
        "assert f('call', lambda i: i * 10) == [0, 10, 20]\n"
    )
    swallow = "try:\n    f('exit')\nexcept Exception:\n    pass\n"
    res = run_object_checks(
        [FunctionCheck(code, "f", (ok,)), FunctionCheck(code, "f", (swallow,))], timeout_s=10.0
    )
    assert [(r.passed, r.detail) for r in res][0] == (True, "")
    assert not res[1].passed and res[1].status == "fail"
