"""Run whole Python test programs (benchmark code + its own asserts) in the sandbox, in batches.

Why not `problems.verify.check_many`: that checker accepts only `assert f(literal) == literal`
lines and keeps expected values out of the sandbox — the right design for RL rewards, but
external suites (HumanEval, our adversarial set) define correctness as "this program, with the
benchmark's test code appended, runs to the end". So a program here is the whole thing; it
passes when the interpreter exits 0 *and* its last stdout line is a per-program marker printed
after the tests returned (a completion that calls `sys.exit(0)` / `os._exit(0)` early, or raises,
fails).

One `run_sandboxed` call per batch (a sandbox start costs ≈0.3–0.7 s on 2 busy cores; one per
program would dominate a 164-item suite). Inside, a stdlib-only runner starts one
`python -I -S -` per program (`workers` at a time, own session, wall-clock timeout with a
process-group kill, address-space and file-size limits, stdout/stderr to size-capped files) and
reports one JSON line per program tagged with a per-batch token. The runner turns non-dumpable
first, so programs cannot read or write its memory or file descriptors.

What is not defended here (evaluation, not a reward): a program can read its own marker (it is
in its own code object) and print it without passing, and an always-equal return value passes the
tests' `==`; programs of one batch share a uid, so one written to attack its neighbours can kill
them or (reading their memory: they are dumpable) forge their markers. Installed packages whose
data would reveal answers are hidden (`hide`). So a suite whose tests only call one function
(HumanEval) uses `run_function_checks` below instead, which closes all of that, and tests that
pass callables or objects across (our adversarial set) use `run_object_checks` (the same split
with a two-way RPC); `run_programs` stays for programs that are judged whole.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from collections.abc import Hashable
from dataclasses import dataclass

from hillclimb.errors import HillclimbError

_RUNNER = r"""
import concurrent.futures, json, os, resource, signal, subprocess, sys, time
try:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
except Exception:
    pass
batch = json.loads(sys.stdin.read())
tok = batch["token"]
out_lock = __import__("threading").Lock()

def emit(rec):
    rec["t"] = tok
    with out_lock:
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()

emit({"start": True})

def limits():
    mb = batch["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (mb, mb))
    cap = batch["output_cap"]
    resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

def tail(path, n):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""

def one(i):
    item = batch["items"][i]
    so, se = f"o{i}.txt", f"e{i}.txt"
    t0 = time.monotonic()
    with open(so, "wb") as fo, open(se, "wb") as fe:
        p = subprocess.Popen([sys.executable, "-I", "-S", "-"], stdin=subprocess.PIPE,
                             stdout=fo, stderr=fe, start_new_session=True, preexec_fn=limits)
    timed_out = False
    try:
        p.stdin.write(item.encode())
        p.stdin.close()
    except OSError:
        pass
    try:
        rc = p.wait(timeout=batch["timeout_s"])
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        rc = p.wait()
    try:
        os.killpg(p.pid, signal.SIGKILL)  # anything it left behind
    except OSError:
        pass
    last = tail(so, 512).rstrip("\n").rsplit("\n", 1)[-1]
    emit({"i": i, "rc": rc, "timeout": timed_out, "last": last[-200:],
          "stderr": tail(se, 600), "seconds": round(time.monotonic() - t0, 3)})

with concurrent.futures.ThreadPoolExecutor(batch["workers"]) as ex:
    list(ex.map(one, range(len(batch["items"]))))
emit({"done": True})
"""


@dataclass
class ProgramResult:
    passed: bool
    status: str  # pass | fail (raised, exited non-zero or early) | timeout | error (no record)
    detail: str = ""
    seconds: float = 0.0


def _marker(i: int) -> str:
    return f"__hillclimb_program_done_{i}_{secrets.token_hex(8)}__"


def run_programs(
    programs: list[str],
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
    memory_mb: int = 1024,
    batch_size: int = 64,
    hide: tuple[str, ...] = (),
) -> list[ProgramResult]:
    """Run each program in the sandbox; `passed` iff it exits 0 after printing its end marker.

    Raises `HillclimbError` when the sandbox itself fails (no backend, the runner never started):
    a broken harness must not read as a model that fails every test."""
    if timeout_s <= 0:
        raise HillclimbError(f"program timeout must be > 0 s, got {timeout_s}")
    w = workers or max(1, min(4, os.cpu_count() or 1))
    out: list[ProgramResult] = []
    for s in range(0, len(programs), batch_size):
        out.extend(_batch(programs[s : s + batch_size], timeout_s, w, memory_mb, hide))
    return out


def _batch(
    programs: list[str], timeout_s: float, workers: int, memory_mb: int, hide: tuple[str, ...]
) -> list[ProgramResult]:
    if not programs:
        return []
    markers = [_marker(i) for i in range(len(programs))]
    items = [
        f"{p}\n\nimport sys as _hc_sys\n_hc_sys.stdout.write({m!r} + '\\n')\n"
        for p, m in zip(programs, markers, strict=True)
    ]
    recs = _run_batch(
        _RUNNER, items, timeout_s, workers, memory_mb, hide, "program runner", "hillclimb-programs-"
    )
    out = []
    for i, m in enumerate(markers):
        rec = recs.get(i)
        if rec is None:
            out.append(ProgramResult(False, "error", "no result came back from the runner"))
        elif rec["timeout"]:
            out.append(ProgramResult(False, "timeout", f"over {timeout_s:g} s", rec["seconds"]))
        elif rec["rc"] == 0 and rec["last"] == m:
            out.append(ProgramResult(True, "pass", "", rec["seconds"]))
        else:
            why = rec["stderr"].strip().splitlines()[-1:] or [f"exit {rec['rc']}, no end marker"]
            out.append(ProgramResult(False, "fail", why[0][:300], rec["seconds"]))
    return out


def _run_batch(
    runner: str,
    items: list,
    timeout_s: float,
    workers: int,
    memory_mb: int,
    hide: tuple[str, ...],
    label: str,
    prefix: str,
    procs_per_worker: int = 16,
) -> dict[int, dict]:
    """Run one batch runner (`runner`, stdlib-only source) over `items` in one sandbox call and
    return its records by item index. Shared by whole programs and function/object checks so
    the sandbox limits (time for every round of `workers`, a process budget per worker, capped
    output) are worked out in one place. Raises `HillclimbError` when the runner never
    started."""
    from hillclimb.sandbox import SandboxLimits, batch_records, run_sandboxed

    token = secrets.token_hex(16)
    output_cap = 1 << 20
    batch = {
        "token": token,
        "items": items,
        "timeout_s": timeout_s,
        "workers": workers,
        "memory_mb": memory_mb,
        "output_cap": output_cap,
        "reply_cap": 8 << 20,
    }
    rounds = -(-len(items) // workers)
    limits = SandboxLimits(
        timeout_s=timeout_s * rounds + 30.0,
        memory_mb=max(1024, memory_mb),
        max_procs=max(64, procs_per_worker * workers),
        max_file_mb=max(2, 2 * output_cap >> 20),
        max_output_bytes=4096 * len(items) + (64 << 10),
    )
    with tempfile.TemporaryDirectory(prefix=prefix) as ws:
        res = run_sandboxed(
            [sys.executable, "-I", "-S", "-c", runner],
            ws,
            limits,
            stdin=json.dumps(batch),
            hide=[h for h in hide if os.path.exists(h)],
        )
    return batch_records(res, token, len(items), label)


# ------------------------------------------------------------ function checks across processes
#
# `run_programs` runs the candidate in the same interpreter as the benchmark's tests, and there
# the candidate wins without solving anything: it returns an object equal to everything, or reads
# the end marker from its own code object (`sys._getframe().f_code.co_consts`), prints it and
# exits 0 — measured on HumanEval: 157 and 164 of 164 items passed. `run_function_checks` splits
# each program in two processes. The TESTER runs only trusted code (the benchmark's prompt and
# tests) and is forked, never exec'd, from a runner that made itself non-dumpable before anything
# else, so no candidate can read or write its memory or fds. The entry point the tests call is a
# proxy: it sends the arguments as a type-tagged tree of exact builtin types to the CANDIDATE
# process (an exec'd `python -I -S` holding the answer's code and nothing else), which calls the
# function and sends the return value back the same way; the tester rebuilds it from exact
# builtin types, so subclasses, lying `__eq__`s and `__class__` spoofers arrive as an opaque value
# equal only to itself. The verdict goes from the tester to the runner over a private pipe: there
# is no marker for the candidate to print, and its stdout goes nowhere.

_CODEC = r"""
import json as _json


class Opaque:
    '''A value of a type the codec does not carry: equal only to itself, no truth value (an
    object of the candidate's own class passed `assert candidate(x)` until session 23).'''

    __slots__ = ("type_name",)

    def __bool__(self):
        raise TypeError("a value of type %s from the other process has no truth value" % self.type_name)

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return "<unserialisable %s>" % self.type_name


class Malformed(ValueError):
    '''A value tree that no `enc` wrote.'''


def enc(v, depth=0, other=None):
    '''A value -> a tree of JSON types tagged by exact builtin type. A value of any other type
    becomes what `other(v)` returns (the RPC's dates and handles) or, failing that, `Opaque`:
    a subclass or an object with a lying `__eq__` never crosses as itself.'''
    t = type(v)
    if depth > 100:
        return ["u", "nested deeper than 100"]
    if v is None:
        return ["n"]
    if t is bool:
        return ["b", v]
    if t is int:
        return ["i", hex(v)]
    if t is float:
        return ["f", float.hex(v)]
    if t is str:
        return ["s", v]
    if t is bytes:
        return ["y", v.hex()]
    if t is list or t is tuple or t is set or t is frozenset:
        tag = "l" if t is list else "t" if t is tuple else "S" if t is set else "F"
        return [tag, [enc(x, depth + 1, other) for x in v]]
    if t is dict:
        return ["d", [[enc(k, depth + 1, other), enc(x, depth + 1, other)] for k, x in v.items()]]
    node = None if other is None else other(v)
    if node is not None:
        return node
    try:
        name = type.__dict__["__name__"].__get__(t)
    except BaseException:
        name = "?"
    return ["u", str(name)[:80] if type(name) is str else "?"]


def dec(node, depth=0, other=None):
    '''A tree -> a value built only from exact builtin types, `Opaque`, or what `other(tag, x)`
    builds for a tag the base codec does not know (it raises `Malformed` for one it does not
    know either). Any error in the tree raises `Malformed`.'''
    if depth > 101 or type(node) is not list or not node or type(node[0]) is not str:
        raise Malformed("not a value tree")
    tag, rest = node[0], node[1:]
    if tag == "n" and not rest:
        return None
    if len(rest) != 1:
        raise Malformed("bad arity")
    x = rest[0]
    try:
        if tag == "b" and type(x) is bool:
            return True if x else False
        if tag == "i" and type(x) is str:
            return int(x, 16)
        if tag == "f" and type(x) is str:
            return float.fromhex(x)
        if tag == "s" and type(x) is str:
            return str(x)
        if tag == "y" and type(x) is str:
            return bytes.fromhex(x)
        if tag in ("l", "t", "S", "F") and type(x) is list:
            items = [dec(e, depth + 1, other) for e in x]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d" and type(x) is list:
            out = {}
            for kv in x:
                if type(kv) is not list or len(kv) != 2:
                    raise Malformed("bad dict entry")
                out[dec(kv[0], depth + 1, other)] = dec(kv[1], depth + 1, other)
            return out
        if tag == "u" and type(x) is str:
            return Opaque(x[:80])
        if other is not None:
            return other(tag, x)
    except Malformed:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise Malformed(str(exc)[:100]) from None
    raise Malformed("unknown tag")
"""

# The candidate process: reads {"code", "name"}, runs the code, then answers one call per line.
# Its own stdin/stdout are /dev/null (the protocol uses duplicates), so what it prints is lost.
_CANDIDATE_PY = (
    _CODEC
    + r"""
import os, sys


def _main():
    rd = os.fdopen(os.dup(0), "rb")
    wr = os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    def send(obj):
        data = (_json.dumps(obj) + "\n").encode()
        while data:
            data = data[os.write(wr, data):]

    def describe(exc):
        try:
            return (type(exc).__name__ + ": " + str(exc))[:200]
        except BaseException:
            return "exception"

    first = _json.loads(rd.readline())
    ns = {"__name__": "__main__"}
    try:
        exec(compile(first["code"], "solution.py", "exec"), ns)
        fn = ns.get(first["name"])
        if not callable(fn):
            raise NameError("function %s is not defined" % first["name"])
    except BaseException as exc:
        send({"error": "the code raised " + describe(exc)})
        os._exit(0)
    send({"ready": True})
    while True:
        line = rd.readline()
        if not line:
            os._exit(0)
        call = _json.loads(line)
        try:
            value = fn(*dec(call["a"]), **dec(call["k"]))
        except BaseException as exc:
            send({"raise": describe(exc)})
            continue
        try:
            send({"ok": enc(value)})
        except BaseException:
            send({"ok": ["u", "could not be serialised"]})


_main()
"""
)

_CHECK_RUNNER_PY = (
    _CODEC
    + r"""
import ctypes, os, resource, signal, subprocess, sys, time

CANDIDATE_SRC = "CANDIDATE_SRC_HERE"


class CandidateFailed(Exception):
    '''The candidate raised, returned nothing readable, or died.'''


def tester(i, item, wfd, batch):
    # Forked from the non-dumpable runner (never exec'd): no candidate can reach this process.
    verdict = {"status": "error", "detail": "the tester stopped early"}
    try:
        os.setsid()
        os.dup2(wfd, 3)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(4, 1 << 16)
        mem = batch["memory_mb"] << 20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (batch["output_cap"],) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        verdict = run_check(item, batch["reply_cap"])
    except BaseException as exc:
        verdict = {"status": "error", "detail": ("tester: %s: %s" % (type(exc).__name__, exc))[:300]}
    finally:
        try:
            os.write(3, (_json.dumps(verdict) + "\n").encode())
        finally:
            os._exit(0)


def run_check(item, reply_cap):
    cand = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", CANDIDATE_SRC],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    state = {"dead": ""}

    def talk(obj):
        if state["dead"]:
            raise CandidateFailed(state["dead"])
        try:
            cand.stdin.write((_json.dumps(obj) + "\n").encode())
            cand.stdin.flush()
            line = cand.stdout.readline(reply_cap + 1)
        except OSError:
            line = b""
        if not line.endswith(b"\n"):
            state["dead"] = "the candidate died" if not line else "its reply was over the size cap"
            raise CandidateFailed(state["dead"])
        try:
            reply = _json.loads(line)
            if type(reply) is not dict:
                raise ValueError
        except ValueError:
            state["dead"] = "its reply was not a record"
            raise CandidateFailed(state["dead"]) from None
        return reply

    def candidate(*args, **kwargs):
        reply = talk({"a": enc(list(args)), "k": enc(dict(kwargs))})
        if "raise" in reply:
            raise CandidateFailed("it raised " + str(reply["raise"])[:200])
        try:
            return dec(reply["ok"])
        except (KeyError, Malformed) as exc:
            state["dead"] = "its reply was malformed"
            raise CandidateFailed(state["dead"]) from exc

    try:
        first = talk({"code": item["candidate"], "name": item["entry_point"]})
        if "error" in first:
            return {"status": "fail", "detail": str(first["error"])[:300]}
        ns = {"__name__": "__hillclimb_check__"}
        for part in item["harness"]:
            exec(compile(part, "harness.py", "exec"), ns)
            ns[item["entry_point"]] = candidate
        ns["check"](candidate)
    except BaseException as exc:
        msg = str(exc) if isinstance(exc, CandidateFailed) else type(exc).__name__ + ": " + str(exc)
        return {"status": "fail", "detail": msg[:300]}
    finally:
        try:
            cand.kill()
        except OSError:
            pass
    if state["dead"]:  # the tests swallowed the failure; it still fails
        return {"status": "fail", "detail": state["dead"]}
    return {"status": "pass", "detail": ""}


def main():
    if ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0, kept by every fork
        raise SystemExit("could not make the runner non-dumpable")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    batch = _json.loads(sys.stdin.read())
    tok = batch["token"]

    def emit(rec):
        rec["t"] = tok
        data = (_json.dumps(rec) + "\n").encode()
        while data:
            data = data[os.write(1, data):]

    emit({"start": True})
    todo = list(range(len(batch["items"])))[::-1]
    running = {}  # pid -> (i, read fd, start time)
    while todo or running:
        while todo and len(running) < batch["workers"]:
            i = todo.pop()
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                tester(i, batch["items"][i], w, batch)
            os.close(w)
            running[pid] = (i, r, time.monotonic())
        time.sleep(0.005)
        for pid, (i, r, t0) in list(running.items()):
            done, _ = os.waitpid(pid, os.WNOHANG)
            late = not done and time.monotonic() - t0 > batch["timeout_s"]
            if not done and not late:
                continue
            for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, 9)):
                try:
                    kill()
                except OSError:
                    pass
            if late:
                os.waitpid(pid, 0)
            os.set_blocking(r, False)
            try:
                data = os.read(r, 1 << 16)
            except OSError:
                data = b""
            os.close(r)
            del running[pid]
            secs = round(time.monotonic() - t0, 3)
            if late:
                rec = {"status": "timeout", "detail": ""}
            else:
                try:
                    rec = _json.loads(data.decode().splitlines()[0])
                except (ValueError, IndexError, UnicodeDecodeError):
                    rec = {"status": "error", "detail": "the tester left no verdict"}
            emit({"i": i, "status": rec["status"], "detail": rec["detail"], "seconds": secs})
    emit({"done": True})


main()
"""
).replace('"CANDIDATE_SRC_HERE"', repr(_CANDIDATE_PY))


@dataclass(frozen=True)
class FunctionCheck:
    """One answer to judge: `candidate` (untrusted source defining `entry_point`) against
    `harness` (trusted sources run in order, the last defining `check(candidate)`; after each
    one the name `entry_point` is rebound to the proxy, so tests that call it by name reach the
    candidate too)."""

    candidate: str
    entry_point: str
    harness: tuple[str, ...]


def run_function_checks(
    checks: list[FunctionCheck],
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
    memory_mb: int = 1024,
    batch_size: int = 64,
    hide: tuple[str, ...] = (),
) -> list[ProgramResult]:
    """Judge each check with the candidate in its own process (see the note above); `passed` iff
    `check(proxy)` returned and every call the tests made came back. Raises `HillclimbError`
    when the sandbox itself fails."""
    if timeout_s <= 0:
        raise HillclimbError(f"program timeout must be > 0 s, got {timeout_s}")
    w = workers or max(1, min(4, os.cpu_count() or 1))
    out: list[ProgramResult | None] = [None] * len(checks)
    for idx in separate_rounds([(c.entry_point, c.harness) for c in checks]):
        for s in range(0, len(idx), batch_size):
            part = idx[s : s + batch_size]
            got = _check_batch([checks[i] for i in part], timeout_s, w, memory_mb, hide)
            for i, r in zip(part, got, strict=True):
                out[i] = r
    return [r for r in out if r is not None]


def separate_rounds(keys: list[Hashable]) -> list[list[int]]:
    """Indices split so that no two items with the same key (the same tests) share a sandbox
    run: the k-th of each key goes to round k; rounds run one after another.

    Why: answers in one run share a uid, /tmp, the workspace and loopback, and each candidate
    process is exec'd (dumpable), so a sample that only returns what a right sample of the same
    item left in /tmp passed beside it (session 22; alone it failed). Samples of other items
    gain nothing from each other, and nothing outlives a run. Cost: one sandbox start per
    round, i.e. per sample when `samples_per_item` > 0."""
    rounds: list[list[int]] = []
    seen: dict[Hashable, int] = {}
    for i, key in enumerate(keys):
        k = seen.get(key, 0)
        seen[key] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds


def _check_batch(
    checks: list[FunctionCheck],
    timeout_s: float,
    workers: int,
    memory_mb: int,
    hide: tuple,
    runner: str = _CHECK_RUNNER_PY,
    procs_per_worker: int = 16,
) -> list[ProgramResult]:
    if not checks:
        return []
    items = [
        {"candidate": c.candidate, "entry_point": c.entry_point, "harness": list(c.harness)}
        for c in checks
    ]
    recs = _run_batch(
        runner,
        items,
        timeout_s,
        workers,
        memory_mb,
        hide,
        "function-check runner",
        "hillclimb-checks-",
        procs_per_worker,
    )
    out = []
    for i in range(len(checks)):
        rec = recs.get(i)
        if rec is None:
            out.append(ProgramResult(False, "error", "no result came back from the runner"))
        elif rec.get("status") == "timeout":
            out.append(ProgramResult(False, "timeout", f"over {timeout_s:g} s", rec["seconds"]))
        elif rec.get("status") == "pass":
            out.append(ProgramResult(True, "pass", "", rec["seconds"]))
        else:
            status = "error" if rec.get("status") == "error" else "fail"
            out.append(ProgramResult(False, status, str(rec.get("detail"))[:300], rec["seconds"]))
    return out


# ------------------------------------------------------------ object checks across processes
#
# `run_function_checks` carries only values of exact builtin types, so it cannot judge tests that
# hand callables to the candidate (`call_once(slow)`), get objects or closures back
# (`make_counter().increment()`), expect a typed exception (`except ValueError`), pass dates, or
# check that an argument was (not) modified. `run_object_checks` keeps its split — trusted tests in
# a tester forked from the non-dumpable runner, the candidate's code alone in an exec'd
# `python -I -S`, the verdict over a private pipe, no marker — and replaces the one-call proxy by
# a small two-way RPC:
# - values cross as type-tagged trees of exact builtin types plus `datetime.date`/`datetime`/
#   `timedelta`; any other object crosses as a HANDLE: the other side gets a proxy whose calls,
#   attribute reads and method calls run in the owner's process (the tester exports only its
#   callables and only lets them be called). A proxy compares equal only to itself and has no
#   truth value, length or iteration, so an object with a lying `__eq__`/`__bool__` proves nothing;
# - every request runs on a thread of its own in the receiving process (a pool that grows), so
#   calls made by several tester threads run concurrently in the candidate, and callbacks the
#   candidate makes from its threads run concurrently in the tester;
# - an exception crosses as its nearest builtin `Exception` class and message (the tests may catch
#   `ValueError`); anything else (`SystemExit`, a dead candidate) fails the check and cannot be
#   swallowed by the tests (`CandidateFailed` is a `BaseException`, and the verdict re-checks);
# - after a call, each list/dict/set argument's new content is copied back into the tester's
#   object, and a return value that IS one of the arguments comes back as that very object.
# - `hammer(method, threads, times)` in the tests runs a stress loop in the candidate's process
#   (an RPC per call is too slow to race: a thread-unsafe counter passed that way), traced per
#   opcode so that a thread switch can fall inside a bare `x += 1` (`_stress`).
# Both ends use the value codec of `run_function_checks` (`_CODEC`) with the RPC's extra tags
# (dates, handles, arguments by identity) plugged in through its `other` hooks.
# Threads count against the sandbox's process limit, hence 64 per worker. Not carried: mutation of
# a returned object by the tester (it changes the tester's copy only), identity below the top
# level of arguments, and iterating a candidate's iterator (it arrives as a handle).

# `_stress` as source: the tester runs it (below, in `_RPC`) and so does the one-process
# program a reader runs by hand (`eval.adversarial.check_program`); it needs `_os` and `_th`
# (os, threading) imported.
STRESS = r"""
def _opcode_trace(frame, event, arg):
    # Per-opcode trace events for every frame under `_stress`: each event is a call into
    # Python, where CPython may switch threads, so a window opens between any two bytecodes.
    frame.f_trace_opcodes = True
    return _opcode_step


_STORES = frozenset(
    __import__("opcode").opmap[n]
    for n in ("STORE_ATTR", "STORE_SUBSCR", "STORE_GLOBAL", "STORE_DEREF", "STORE_NAME")
)
_ticks = [0]


def _opcode_step(frame, event, arg):
    # On a busy machine the OS may not run a waiting thread for a whole hammer (1 run in 100 of
    # a bare `+=` lost nothing): before every 13th store, hand the CPU over (GIL released).
    if event == "opcode" and frame.f_code.co_code[frame.f_lasti] in _STORES:
        _ticks[0] += 1
        if _ticks[0] % 13 == 0:
            _os.sched_yield()
    return _opcode_step


def _stress(fn, threads, times):
    '''Call fn() `times` times in each of `threads` threads started together, with a thread
    switch possible between any two bytecodes of the code it runs. Without the trace, CPython
    3.11 checks for a switch only at calls and backward jumps, so a bare `self.value += 1` (load,
    add, store: none of them a call) never lost an update: it passed concurrency/1 in 20 of 20
    runs (session 24); traced, it loses most of 40,000. Raises the first error a thread hit.'''
    import sys

    if type(threads) is not int or type(times) is not int:
        raise ValueError("bad hammer")
    if not (0 < threads <= 64 and 0 <= times <= 10**6):
        raise ValueError("bad hammer")
    errors, start = [], _th.Barrier(threads)

    def run():
        try:
            start.wait()
            sys.settrace(_opcode_trace)
            try:
                for _ in range(times):
                    fn()
            finally:
                sys.settrace(None)
        except BaseException as exc:
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        ts = [_th.Thread(target=run) for _ in range(threads)]
        for x in ts:
            x.start()
        for x in ts:
            x.join()
    finally:
        sys.setswitchinterval(old)
    if errors:
        raise errors[0]

"""

_RPC = (
    r"""
import builtins as _builtins, datetime as _dt, json as _json, os as _os, threading as _th


class CandidateFailed(BaseException):
    '''The other process died, replied with garbage, or raised a non-`Exception`.'''


def _no_truth(self):
    raise TypeError("a value from the other process has no truth value")


class Remote:
    '''An object living in the other process: calls and attribute reads go there.'''

    __slots__ = ("_peer", "_h", "_attr", "_methods")
    __bool__ = _no_truth

    def __init__(self, peer, h, attr=None):
        object.__setattr__(self, "_peer", peer)
        object.__setattr__(self, "_h", h)
        object.__setattr__(self, "_attr", attr)
        object.__setattr__(self, "_methods", {})

    def __call__(self, *args, **kwargs):
        return self._peer.call(self._h, self._attr, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or self._attr is not None:
            raise AttributeError(name)
        m = self._methods.get(name)
        if m is not None:
            return m
        value, method = self._peer.getattr(self._h, name)
        if method:  # later calls skip the attribute read
            value = Remote(self._peer, self._h, name)
            self._methods[name] = value
        return value

    def __setattr__(self, name, value):
        raise AttributeError("cannot set attributes of an object in the other process")

    def __repr__(self):
        return "<object in the other process #%s%s>" % (self._h, "." + self._attr if self._attr else "")


"""
    + STRESS.strip("\n")
    + r"""


def hammer(fn, threads, times):
    '''Call fn() `times` times in each of `threads` threads at once (`_stress`). A method of an
    object in the other process runs there (an RPC per call is too slow to race).'''
    if type(fn) is Remote:
        return fn._peer.hammer(fn._h, fn._attr, threads, times)
    _stress(fn, threads, times)


def _exc_name(exc):
    for k in type(exc).__mro__:
        try:
            if getattr(_builtins, k.__name__, None) is k and issubclass(k, Exception):
                return k.__name__
        except BaseException:
            break
    return ""


def _describe(exc):
    try:
        return str(exc)[:300]
    except BaseException:
        return "?"


class Peer:
    '''One end of the RPC: sends requests, serves the other end's requests on a thread pool.'''

    def __init__(self, rfile, wfd, reply_cap, exports_all):
        self.rfile, self.wfd, self.cap, self.exports_all = rfile, wfd, reply_cap, exports_all
        self.wlock, self.lock = _th.Lock(), _th.Lock()
        self.waiting, self.next_id = {}, 0
        self.exports, self.export_ids = {}, {}
        self.jobs, self.idle, self.dead = [], 0, ""
        self.cv = _th.Condition(self.lock)

    # -- values
    def export(self, v):
        with self.lock:
            h = self.export_ids.get(id(v))
            if h is None or self.exports[h] is not v:
                h = len(self.exports)
                self.exports[h], self.export_ids[id(v)] = v, h
            return h

    def enc(self, v, args=None):
        '''The shared codec's tree, plus: a top-level list/dict/set that IS one of the call's
        `args` (pairs (j, object)) as ["a", j], dates, and handles (`_enc_other`).'''
        if args is not None and type(v) in (list, dict, set):
            for j, a in args:
                if v is a:
                    return ["a", j]
        return enc(v, 0, self._enc_other)

    def _enc_other(self, v):
        t = type(v)
        if t is _dt.date or t is _dt.datetime:
            return ["D" if t is _dt.date else "T", v.isoformat()]
        if t is _dt.timedelta:
            return ["Z", [v.days, v.seconds, v.microseconds]]
        if t is Remote and v._peer is self and v._attr is None:
            return ["r", v._h]
        if self.exports_all or callable(v):
            return ["h", self.export(v)]
        return None

    def dec(self, node, args=None):
        '''The inverse of `enc`; raises `Malformed` (a `ValueError`) on a bad tree.'''
        if args is not None and type(node) is list and len(node) == 2 and node[0] == "a":
            if type(node[1]) is int:
                for j, a in args:
                    if j == node[1]:
                        return a
            raise Malformed("unknown argument")
        return dec(node, 0, self._dec_other)

    def _dec_other(self, tag, x):
        if tag in ("D", "T") and type(x) is str:
            return (_dt.date if tag == "D" else _dt.datetime).fromisoformat(x)
        if tag == "Z" and type(x) is list and len(x) == 3 and all(type(e) is int for e in x):
            return _dt.timedelta(x[0], x[1], x[2])
        if tag == "h" and type(x) is int:
            return Remote(self, x)
        if tag == "r" and type(x) is int:
            with self.lock:
                if x in self.exports:
                    return self.exports[x]
            raise Malformed("unknown handle")
        raise Malformed("unknown tag")

    # -- transport
    def send(self, obj):
        data = (_json.dumps(obj) + "\n").encode()
        with self.wlock:
            while data:
                data = data[_os.write(self.wfd, data):]

    def fail(self, why):
        with self.lock:
            if not self.dead:
                self.dead = why
            for box in self.waiting.values():
                box[0].set()

    def request(self, msg):
        ev = _th.Event()
        box = [ev, None]
        with self.lock:
            if self.dead:
                raise CandidateFailed(self.dead)
            self.next_id += 1
            rid = msg["id"] = self.next_id
            self.waiting[rid] = box
        try:
            self.send(msg)
        except OSError:
            self.fail("the other process died")
        ev.wait()
        with self.lock:
            self.waiting.pop(rid, None)
        if box[1] is None:
            raise CandidateFailed(self.dead or "no reply")
        return box[1]

    def read_loop(self):
        try:
            while True:
                line = self.rfile.readline(self.cap + 1)
                if not line.endswith(b"\n"):
                    self.fail("the other process died" if not line else "a reply over the size cap")
                    return
                msg = _json.loads(line)
                if type(msg) is not dict:
                    raise ValueError
                if "re" in msg:
                    with self.lock:
                        box = self.waiting.get(msg["re"])
                    if box is not None:
                        box[1] = msg
                        box[0].set()
                    continue
                with self.cv:
                    self.jobs.append(msg)
                    if self.idle:
                        self.cv.notify()
                    else:
                        _th.Thread(target=self.work, daemon=True).start()
        except BaseException as exc:
            self.fail("the other process sent garbage: %s" % type(exc).__name__)

    def work(self):
        while True:
            with self.cv:
                while not self.jobs:
                    self.idle += 1
                    self.cv.wait()
                    self.idle -= 1
                msg = self.jobs.pop(0)
            self.send(self.serve(msg))

    # -- calls
    def call(self, h, attr, args, kwargs):
        ins = list(args) + list(kwargs.values())
        tree = self.enc([list(args), dict(kwargs)])
        reply = self.request({"op": "call", "h": h, "n": attr, "x": tree})
        if "raise" in reply:
            self.reraise(reply["raise"])
        try:
            back = reply.get("back") or []
            for a, b in zip(ins, back):
                if b is not None and type(a) in (list, dict, set) and self.enc(a) != b:
                    new = self.dec(b)
                    if type(new) is not type(a):
                        raise ValueError("an argument changed type")
                    if type(a) is list:
                        a[:] = new
                    else:
                        a.clear()
                        a.update(new)
            return self.dec(reply["ok"], args=list(enumerate(ins)))
        except (KeyError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            self.fail("its reply was malformed")
            raise CandidateFailed(self.dead) from exc

    def hammer(self, h, attr, threads, times):
        reply = self.request({"op": "hammer", "h": h, "n": attr, "t": threads, "k": times})
        if "raise" in reply:
            self.reraise(reply["raise"])

    def getattr(self, h, name):
        reply = self.request({"op": "get", "h": h, "n": name})
        if "raise" in reply:
            self.reraise(reply["raise"])
        try:
            return self.dec(reply["ok"]), reply.get("method") is True
        except (KeyError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            self.fail("its reply was malformed")
            raise CandidateFailed(self.dead) from exc

    def reraise(self, r):
        name, text = (r + ["", ""])[:2] if type(r) is list else ("", "")
        cls = getattr(_builtins, name, None) if type(name) is str else None
        if type(cls) is type and issubclass(cls, Exception) and type(text) is str:
            raise cls(text[:300])
        self.fail("it raised %s" % (str(text)[:200] or "a non-Exception"))
        raise CandidateFailed(self.dead)

    def serve(self, msg):
        rid = msg.get("id")
        try:
            with self.lock:
                obj = self.exports[msg["h"]]
            name = msg.get("n")
            if msg.get("op") == "get" and self.exports_all and type(name) is str:
                value = getattr(obj, name)
                method = callable(value) and not isinstance(value, type)
                return {"re": rid, "ok": self.enc(value), "method": method}
            if msg.get("op") == "hammer" and self.exports_all:
                _stress(getattr(obj, name) if name else obj, msg.get("t"), msg.get("k"))
                return {"re": rid, "ok": ["n"]}
            if msg.get("op") != "call" or (name is not None and not self.exports_all):
                raise PermissionError("only calls are served here")
            fn = obj if name is None else getattr(obj, name)
            a, k = self.dec(msg["x"])
            ins = list(a) + list(k.values())
            value = fn(*a, **k)
            back = [self.enc(x) if type(x) in (list, dict, set) else None for x in ins]
            return {"re": rid, "ok": self.enc(value, args=list(enumerate(ins))), "back": back}
        except BaseException as exc:
            return {"re": rid, "raise": [_exc_name(exc), _describe(exc)]}
"""
)

# The candidate process: reads {"code", "name"}, runs the code, exports the function as handle 0,
# then serves requests. Its own stdin/stdout/stderr are /dev/null (the RPC uses duplicates).
_OBJECT_CANDIDATE_PY = (
    _CODEC
    + _RPC
    + r"""
import sys


def _main():
    rd = _os.fdopen(_os.dup(0), "rb")
    wr = _os.dup(1)
    null = _os.open("/dev/null", _os.O_RDWR)
    for fd in (0, 1, 2):
        _os.dup2(null, fd)
    sys.setswitchinterval(1e-5)  # thread switches as often as the tests ask of their own threads
    peer = Peer(rd, wr, 8 << 20, True)
    first = _json.loads(rd.readline())
    ns = {"__name__": "__main__"}
    try:
        exec(compile(first["code"], "solution.py", "exec"), ns)
        fn = ns.get(first["name"])
        if not callable(fn):
            raise NameError("function %s is not defined" % first["name"])
        peer.export(fn)
    except BaseException as exc:
        peer.send({"error": "the code raised %s: %s" % (type(exc).__name__, _describe(exc))})
        _os._exit(0)
    peer.send({"ready": True})
    peer.read_loop()
    _os._exit(0)


_main()
"""
)

_OBJECT_RUN_CHECK = r"""

OBJECT_CANDIDATE_SRC = "OBJECT_CANDIDATE_SRC_HERE"


def run_check(item, reply_cap):
    import subprocess

    cand = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", OBJECT_CANDIDATE_SRC],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    try:
        first = (_json.dumps({"code": item["candidate"], "name": item["entry_point"]}) + "\n")
        data = first.encode()
        try:
            while data:
                data = data[_os.write(cand.stdin.fileno(), data):]
            line = cand.stdout.readline(reply_cap + 1)
        except OSError:
            line = b""
        try:
            first = _json.loads(line)
        except ValueError:
            return {"status": "fail", "detail": "the candidate died before it was ready"}
        if type(first) is not dict or "ready" not in first:
            err = first.get("error") if type(first) is dict else None
            return {"status": "fail", "detail": str(err or "the candidate was not ready")[:300]}
        peer = Peer(cand.stdout, cand.stdin.fileno(), reply_cap, False)
        _th.Thread(target=peer.read_loop, daemon=True).start()
        ns = {"__name__": "__hillclimb_check__", item["entry_point"]: Remote(peer, 0),
              "hammer": hammer}
        try:
            for part in item["harness"]:
                exec(compile(part, "tests.py", "exec"), ns)
        except BaseException as exc:
            if isinstance(exc, CandidateFailed):
                return {"status": "fail", "detail": str(exc)[:300]}
            return {"status": "fail", "detail": (type(exc).__name__ + ": " + _describe(exc))[:300]}
        if peer.dead:  # the tests swallowed the failure; it still fails
            return {"status": "fail", "detail": peer.dead}
        return {"status": "pass", "detail": ""}
    finally:
        try:
            cand.kill()
        except OSError:
            pass


main()
"""

_MAIN_CALL = "\n\nmain()\n"
assert _CHECK_RUNNER_PY.endswith(_MAIN_CALL)
_OBJECT_RUNNER_PY = (
    _CHECK_RUNNER_PY[: -len(_MAIN_CALL)]
    + "\n"
    + _RPC
    + _OBJECT_RUN_CHECK.replace('"OBJECT_CANDIDATE_SRC_HERE"', repr(_OBJECT_CANDIDATE_PY))
)


def run_object_checks(
    checks: list[FunctionCheck],
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
    memory_mb: int = 1024,
    batch_size: int = 64,
    hide: tuple[str, ...] = (),
) -> list[ProgramResult]:
    """Judge each check with the candidate in its own process behind the two-way RPC above:
    `harness` is free-form test code run in the tester with `entry_point` bound to a proxy of the
    candidate's function; `passed` iff the tests ran to the end and the candidate never died or
    replied with garbage. Raises `HillclimbError` when the sandbox itself fails."""
    if timeout_s <= 0:
        raise HillclimbError(f"program timeout must be > 0 s, got {timeout_s}")
    w = workers or max(1, min(4, os.cpu_count() or 1))
    out: list[ProgramResult | None] = [None] * len(checks)
    for idx in separate_rounds([(c.entry_point, c.harness) for c in checks]):
        for s in range(0, len(idx), batch_size):
            part = idx[s : s + batch_size]
            got = _check_batch(
                [checks[i] for i in part], timeout_s, w, memory_mb, hide, _OBJECT_RUNNER_PY, 64
            )
            for i, r in zip(part, got, strict=True):
                out[i] = r
    return [r for r in out if r is not None]
