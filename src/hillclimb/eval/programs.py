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
(HumanEval) uses `run_function_checks` below instead, which closes all of that; `run_programs`
stays for tests that pass callables or objects across (our adversarial set).
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
    from hillclimb.sandbox import SandboxLimits, batch_records, run_sandboxed

    if not programs:
        return []
    token = secrets.token_hex(16)
    markers = [_marker(i) for i in range(len(programs))]
    items = [
        f"{p}\n\nimport sys as _hc_sys\n_hc_sys.stdout.write({m!r} + '\\n')\n"
        for p, m in zip(programs, markers, strict=True)
    ]
    output_cap = 1 << 20
    batch = {
        "token": token,
        "items": items,
        "timeout_s": timeout_s,
        "workers": workers,
        "memory_mb": memory_mb,
        "output_cap": output_cap,
    }
    rounds = -(-len(programs) // workers)
    limits = SandboxLimits(
        timeout_s=timeout_s * rounds + 30.0,
        memory_mb=max(1024, memory_mb),
        max_procs=max(64, 16 * workers),
        max_file_mb=max(2, 2 * output_cap >> 20),
        max_output_bytes=4096 * len(programs) + (64 << 10),
    )
    with tempfile.TemporaryDirectory(prefix="hillclimb-programs-") as ws:
        res = run_sandboxed(
            [sys.executable, "-I", "-S", "-c", _RUNNER],
            ws,
            limits,
            stdin=json.dumps(batch),
            hide=[h for h in hide if os.path.exists(h)],
        )
    recs = batch_records(res, token, len(programs), "program runner")
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
    '''A value of a type the codec does not carry: equal only to itself.'''

    __slots__ = ("type_name",)

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return "<unserialisable %s>" % self.type_name


def enc(v, depth=0):
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
        return [tag, [enc(x, depth + 1) for x in v]]
    if t is dict:
        return ["d", [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]]
    try:
        name = type.__dict__["__name__"].__get__(t)
    except BaseException:
        name = "?"
    return ["u", str(name)[:80] if type(name) is str else "?"]


class Malformed(Exception):
    pass


def dec(node, depth=0):
    '''A tree -> a value built only from exact builtin types (or `Opaque`).'''
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
            items = [dec(e, depth + 1) for e in x]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d" and type(x) is list:
            out = {}
            for kv in x:
                if type(kv) is not list or len(kv) != 2:
                    raise Malformed("bad dict entry")
                out[dec(kv[0], depth + 1)] = dec(kv[1], depth + 1)
            return out
        if tag == "u" and type(x) is str:
            return Opaque(x[:80])
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
    checks: list[FunctionCheck], timeout_s: float, workers: int, memory_mb: int, hide: tuple
) -> list[ProgramResult]:
    from hillclimb.sandbox import SandboxLimits, batch_records, run_sandboxed

    if not checks:
        return []
    token = secrets.token_hex(16)
    batch = {
        "token": token,
        "items": [
            {"candidate": c.candidate, "entry_point": c.entry_point, "harness": list(c.harness)}
            for c in checks
        ],
        "timeout_s": timeout_s,
        "workers": workers,
        "memory_mb": memory_mb,
        "output_cap": 1 << 20,
        "reply_cap": 8 << 20,
    }
    rounds = -(-len(checks) // workers)
    limits = SandboxLimits(
        timeout_s=timeout_s * rounds + 30.0,
        memory_mb=max(1024, memory_mb),
        max_procs=max(64, 16 * workers),
        max_file_mb=2,
        max_output_bytes=4096 * len(checks) + (64 << 10),
    )
    with tempfile.TemporaryDirectory(prefix="hillclimb-checks-") as ws:
        res = run_sandboxed(
            [sys.executable, "-I", "-S", "-c", _CHECK_RUNNER_PY],
            ws,
            limits,
            stdin=json.dumps(batch),
            hide=[h for h in hide if os.path.exists(h)],
        )
    recs = batch_records(res, token, len(checks), "function-check runner")
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
