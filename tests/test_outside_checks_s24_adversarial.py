"""Session 24 outside checks: the adversarial suite's concurrency item and the shared value codec.

concurrency/1 asks for a counter that stays exact under threads. Its naive answer, a bare
`self.value += 1` without a lock, passed 20 of 20 runs: CPython 3.11 checks for a thread switch
only at calls and backward jumps, and load-add-store has neither, so the GIL made it atomic.
`hammer` now traces the answer's frames per opcode (a switch can fall between any two
bytecodes) and hands the CPU over before every 13th store, because on a loaded machine the OS
sometimes ran no waiting thread during a whole hammer (tracing alone: 1 pass in 100). The naive
answer now fails 40 of 40 (about 5,100 of 40,001 counted), the locked reference passes 40 of
40 at 0.4-0.7 s an item on a busy 2-core machine.

eval/programs.py kept two value codecs (`_CODEC` for function checks, one inside `_RPC` for
object checks); the RPC now uses the shared one with hooks, and these tests pin what both
must still do: exact builtin types only, anything else opaque, the RPC's extras intact.
"""

from __future__ import annotations

import ast
import datetime
import subprocess
import sys
import threading

import pytest

NAIVE_COUNTER = (
    "class _C:\n    def __init__(self):\n        self.value = 0\n"
    "    def increment(self):\n        self.value += 1\n"
    "def make_counter():\n    return _C()\n"
)


def _item(item_id: str):
    from hillclimb.eval.adversarial import ITEMS

    return next(it for it in ITEMS if it.id == item_id)


def test_a_bare_unlocked_increment_fails_concurrency_1_every_time():
    """Before: the naive counter passed 3 of 3 (20 of 20 measured). After: it fails every run,
    the locked reference passes every run, and an item still takes well under 2 s."""
    from hillclimb.eval.adversarial import REFERENCES, score

    item = _item("concurrency/1")
    answers = [NAIVE_COUNTER] * 3 + [REFERENCES[item.id]] * 3
    res = score([item] * len(answers), [f"```python\n{a}\n```" for a in answers], 20.0)
    assert [r.passed for r in res] == [False] * 3 + [True] * 3, [r.detail for r in res]
    assert all(r.status == "fail" and "AssertionError" in r.detail for r in res[:3])
    assert min(r.seconds for r in res[3:]) < 2.0, [r.seconds for r in res]


def test_the_one_process_reader_form_agrees():
    """`check_program` (answer + tests in one interpreter, what a reader runs by hand) uses the
    same traced `hammer`: the naive counter fails there too and the reference passes."""
    from hillclimb.eval.adversarial import REFERENCES, check_program

    item = _item("concurrency/1")
    rcs = [
        subprocess.run(
            [sys.executable, "-I", "-c", check_program(item, code)],
            capture_output=True,
            timeout=60,
        ).returncode
        for code in (NAIVE_COUNTER, REFERENCES[item.id])
    ]
    assert rcs == [1, 0]


def _rpc_namespace() -> dict:
    """The object checks' codec and RPC, loaded here (they are stdlib-only source strings)."""
    from hillclimb.eval import programs

    ns: dict = {"__name__": "codec_under_test"}
    exec(compile(programs._CODEC + programs._RPC, "rpc.py", "exec"), ns)
    return ns


def _top_level_defs(source: str) -> list[str]:
    return [
        n.name
        for n in ast.parse(source).body
        if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name in ("Opaque", "enc", "dec")
    ]


def test_one_codec_serves_both_checkers():
    """Each process of the object checks defines the value codec once, the shared one (before:
    the object runner defined `Opaque` twice, the second copy inside `_RPC` shadowing the
    first, and `Peer` carried its own `enc`/`dec`)."""
    from hillclimb.eval import programs

    assert programs._CHECK_RUNNER_PY.startswith(programs._CODEC)
    assert programs._OBJECT_CANDIDATE_PY.startswith(programs._CODEC)
    for source in (programs._OBJECT_RUNNER_PY, programs._OBJECT_CANDIDATE_PY):
        assert sorted(_top_level_defs(source)) == ["Opaque", "dec", "enc"]
    assert _top_level_defs(programs._RPC) == []


def test_shared_codec_keeps_exact_types_and_the_rpc_extras():
    ns = _rpc_namespace()
    enc, dec, opaque, malformed = ns["enc"], ns["dec"], ns["Opaque"], ns["Malformed"]

    class Liar(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    value = {"a": [1, 2.5, (True, None)], "b": {b"x", "y"}, 3: frozenset({4})}
    assert dec(enc(value)) == value
    back = dec(enc([Liar(1)]))[0]
    assert type(back) is opaque and back != 1 and back != back.type_name
    with pytest.raises(TypeError, match="no truth value"):
        bool(back)
    with pytest.raises(malformed):
        dec(["D", "2024-01-01"])  # the base codec does not know dates
    for bad in (["i", "zz"], ["l", "x"], ["q", 1], [], ["d", [[["l", []], ["n"]]]]):
        with pytest.raises(malformed):
            dec(bad)

    peer = ns["Peer"](None, -1, 1 << 20, False)
    when = [datetime.date(2024, 2, 29), datetime.datetime(2024, 1, 2, 3, 4), datetime.timedelta(1)]
    assert peer.dec(peer.enc(when)) == when
    arg = [1]
    assert peer.dec(peer.enc(arg, args=[(0, arg)]), args=[(0, arg)]) is arg
    with pytest.raises(ValueError):
        peer.dec(["a", 5], args=[(0, arg)])
    with pytest.raises(ValueError):
        peer.dec(["l", [["a", 0]]], args=[(0, arg)])  # identity is top-level only
    fn = len
    node = peer.enc(fn)
    assert node[0] == "h" and peer.dec(["r", node[1]]) is fn
    remote = peer.dec(node)
    assert type(remote) is ns["Remote"] and peer.enc(remote) == ["r", node[1]]
    assert peer.enc(Liar(2))[0] == "u"  # the tester exports only callables


def test_hammer_reports_a_thread_error_and_rejects_bad_sizes():
    """`hammer` on the tester's own function (same `_stress` as the candidate side): an error
    in a thread is raised, not lost on a thread's stderr."""
    ns = _rpc_namespace()

    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        ns["hammer"](boom, 2, 1)
    with pytest.raises(ValueError, match="bad hammer"):
        ns["hammer"](boom, 0, 1)
    lock, counts = threading.Lock(), [0]

    def bump():
        with lock:
            counts[0] += 1

    ns["hammer"](bump, 4, 50)
    assert counts[0] == 200
