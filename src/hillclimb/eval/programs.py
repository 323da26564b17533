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

What is not defended (evaluation, not a reward): a program can read its own marker (it is in its
own code object) and print it without passing; programs of one batch share a uid, so one written
to attack its neighbours can kill them or (reading their memory: they are dumpable) forge their
markers. Installed packages whose data would reveal answers are hidden (`hide`).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
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
