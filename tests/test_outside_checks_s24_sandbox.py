"""Outside checks, session 24 (sandbox red team, fourth pass): memory that no process maps —
memfd files, System V shared memory, tmpfs in a nested user namespace, memfds parked in flight
in a unix socket (SCM_RIGHTS) — and a command that catches SIGXCPU.

Before: with memory_mb=200 each of the four held 800 MB (the probe's own stop) and the run
ended "ok"; a command catching SIGXCPU was SIGKILLed at the hard CPU limit and read "killed".
Now a per-run memory cgroup (`sandbox/memcg.py`, where the machine offers one) caps them all
(status "memory"), and the unshare init's rusage tells the hard CPU limit's kill ("timeout").
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from hillclimb.errors import ConfigError
from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed

BACKENDS = [b for b in ("bwrap", "unshare") if probe_backend(b)[0]]
needs_backend = pytest.mark.skipif(not BACKENDS, reason="no sandbox isolation backend works here")
CAP_MB = 128


def _cap_limits() -> SandboxLimits:
    """memory_mb=200 and a 128 MB cap on the run's memory; without the cap (code from before
    session 24 has no such limit) the tests run on and show what gets through."""
    try:
        return SandboxLimits(timeout_s=30, memory_mb=200, max_memory_mb=CAP_MB, max_file_mb=64)
    except TypeError:
        return SandboxLimits(timeout_s=30, memory_mb=200, max_file_mb=64)


LIM = _cap_limits()
# each attack holds 8 MB more per step, printing its total, and stops by itself at 512 MB
_STEP = "print('HELD', held, flush=True)"
ATTACKS = {
    "memfd": f"""
        import os
        fds, held = [], 0
        while held < 512:
            fd = os.memfd_create('x')
            os.write(fd, b'x' * (8 << 20))
            fds.append(fd); held += 8; {_STEP}
    """,
    "sysv_shm": f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        held = 0
        while held < 512:
            sid = libc.shmget(0, 8 << 20, 0o1000 | 0o600)
            p = libc.shmat(sid, None, 0)
            ctypes.memset(p, 1, 8 << 20); libc.shmdt(ctypes.c_void_p(p))  # kept, not mapped
            held += 8; {_STEP}
    """,
    "nested_tmpfs": f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(0x10000000 | 0x00020000) != 0:
            print('NOUSERNS'); raise SystemExit
        open('/proc/self/setgroups', 'w').write('deny')
        open('/proc/self/uid_map', 'w').write(f'0 {{uid}} 1')
        open('/proc/self/gid_map', 'w').write(f'0 {{gid}} 1')
        os.makedirs('/tmp/m', exist_ok=True)
        if libc.mount(b'tmpfs', b'/tmp/m', b'tmpfs', 0, b'size=4g') != 0:
            print('NOUSERNS'); raise SystemExit
        held = 0
        while held < 512:
            with open(f'/tmp/m/f{{held}}', 'wb') as f:
                f.write(b'x' * (8 << 20))
            held += 8; {_STEP}
    """,
    "scm_rights": f"""
        import os, socket
        a, b = socket.socketpair()
        held = 0
        while held < 512:
            fd = os.memfd_create('y')
            os.write(fd, b'x' * (8 << 20))
            socket.send_fds(a, [b'x'], [fd]); os.close(fd)  # only the socket holds it now
            held += 8; {_STEP}
    """,
}


def _memcg_available() -> bool:
    """Whether this machine gives runs a memory cgroup (before session 24 there was no such
    module: the tests then run, and fail, wherever the sandbox itself runs)."""
    try:
        from hillclimb.sandbox.memcg import memcg_report
    except ImportError:
        return True
    return bool(memcg_report()["available"])


needs_memcg = pytest.mark.skipif(
    not _memcg_available(), reason="no writable memory cgroup here (rlimits only)"
)


def _held(stdout: str) -> int:
    return max(
        (int(ln.split()[1]) for ln in stdout.splitlines() if ln.startswith("HELD ")), default=0
    )


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@needs_backend
@needs_memcg
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_unmapped_memory_is_capped_and_reported(tmp_path, backend, attack) -> None:
    """Each way of holding memory outside every process's address space stops at the run's
    memory cap and reads "memory" (before: 512 MB held past memory_mb=200, status ok)."""
    r = run_sandboxed(_py(ATTACKS[attack]), tmp_path, LIM, backend=backend)
    if "NOUSERNS" in r.stdout:
        pytest.skip("no nested user namespaces inside the sandbox here")
    assert r.status == "memory", (r.status, r.stdout[-200:], r.stderr[-300:])
    assert _held(r.stdout) <= CAP_MB, r.stdout[-200:]
    assert f"max_memory_mb={CAP_MB}" in r.stderr


@needs_backend
@needs_memcg
def test_memory_backed_files_within_the_cap_still_work(tmp_path) -> None:
    """The cap does not get in the way of honest use: /tmp, /dev/shm and a memfd, 90 MB in
    all under a 128 MB cap, and each run's cgroup is gone afterwards."""
    code = """
        import os
        with open('/tmp/a', 'wb') as f: f.write(b'x' * (40 << 20))
        with open('/dev/shm/b', 'wb') as f: f.write(b'x' * (20 << 20))
        fd = os.memfd_create('c'); os.write(fd, b'x' * (30 << 20))
        print('done')
    """
    r = run_sandboxed(_py(code), tmp_path, LIM)
    assert r.status == "ok" and "done" in r.stdout, r.stderr[-300:]
    from hillclimb.sandbox import memcg

    base = memcg._probe()
    assert base is not None
    mine = [n for n in os.listdir(base[0]) if n.startswith(f"hillclimb-sandbox-{os.getpid()}-")]
    assert mine == []


@pytest.mark.skipif(not probe_backend("unshare")[0], reason="the unshare backend does not work")
def test_a_command_catching_sigxcpu_reads_as_timeout(tmp_path) -> None:
    """SIGXCPU caught at the soft CPU limit, the kernel's SIGKILL a second later at the hard
    one: a CPU time limit, not a crash (before: status "killed", exit -9)."""
    code = """
        import signal
        signal.signal(signal.SIGXCPU, lambda *a: print('SIGXCPU', flush=True))
        while True: pass
    """
    lim = SandboxLimits(timeout_s=30, cpu_s=1, memory_mb=256)
    r = run_sandboxed(_py(code), tmp_path, lim, backend="unshare")
    assert "SIGXCPU" in r.stdout  # it did catch it
    assert (r.status, r.exit_code) == ("timeout", -9), (r.status, r.exit_code, r.stderr)
    assert "CPU time limit" in r.stderr
    assert r.duration_s < 20  # the hard limit, not the wall clock, ended it


@pytest.mark.skipif(not probe_backend("unshare")[0], reason="the unshare backend does not work")
def test_an_early_sigkill_is_still_killed(tmp_path) -> None:
    """The CPU-limit reading needs the CPU: a command that kills itself at once stays "killed"."""
    lim = SandboxLimits(timeout_s=30, cpu_s=5, memory_mb=256)
    r = run_sandboxed(["/bin/sh", "-c", "kill -9 $$"], tmp_path, lim, backend="unshare")
    assert (r.status, r.exit_code) == ("killed", -9), (r.status, r.stderr)


def test_max_memory_mb_is_validated() -> None:
    with pytest.raises(ConfigError, match="max_memory_mb"):
        SandboxLimits(max_memory_mb=0).validate()
    assert SandboxLimits(memory_mb=300).total_memory_mb() == 1200
    assert SandboxLimits(memory_mb=300, max_memory_mb=50).total_memory_mb() == 50
