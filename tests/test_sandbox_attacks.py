"""Attack suite for the sandbox: every attack must be contained, reported, and leave the host as it was.

Parametrized over every isolation backend that works on this machine (bubblewrap and/or unshare),
so CI exercises whichever it has. Bombs are kept small (256 MB, 32 processes, 1-2 s) so the whole
file runs in a few seconds per backend.
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed

BACKENDS = [b for b in ("bwrap", "unshare") if probe_backend(b)[0]]
pytestmark = pytest.mark.skipif(not BACKENDS, reason="no sandbox isolation backend works here")
PY = sys.executable
FAST = SandboxLimits(timeout_s=10, memory_mb=256, max_procs=32)


@pytest.fixture(params=BACKENDS or ["none"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    (d / "hello.txt").write_text("hello\n")
    return d


def py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def test_no_network_to_the_internet(ws, backend):
    code = """
    import socket
    print("interfaces", sorted(n for _, n in socket.if_nameindex()))
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2)
        print("CONNECTED")
    except OSError as e:
        print("BLOCKED", e.errno)
    """
    r = run_sandboxed(py(code), ws, FAST, backend=backend)
    assert r.status == "ok", r.stderr
    assert "interfaces ['lo']" in r.stdout  # no interface but loopback
    assert "BLOCKED" in r.stdout and "CONNECTED" not in r.stdout


def test_no_network_to_a_host_localhost_server(ws, backend):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    accepted: list = []
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                accepted.append(1)
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from host
        code = f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("CONNECTED")
        except OSError as e:
            print("BLOCKED", e.errno)
        """
        r = run_sandboxed(py(code), ws, FAST, backend=backend)
    finally:
        stop.set()
        t.join()
        srv.close()
    assert r.status == "ok", r.stderr
    assert "BLOCKED" in r.stdout and "CONNECTED" not in r.stdout
    assert accepted == [1]  # only the host's own sanity connection arrived


def test_private_host_files_are_unreadable(ws, backend, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    secret = private / "secret.txt"
    secret.write_text("TOPSECRET\n")
    secret.chmod(0o600)
    home = os.path.expanduser("~")
    code = f"""
    import os
    for p in [{str(secret)!r}, "/etc/shadow", {home + "/.bashrc"!r}, "/proc/1/environ"]:
        try:
            print("READ", p, open(p).read()[:20].strip())
        except OSError as e:
            print("DENIED", p, e.errno)
    try:
        print("HOME", os.listdir({home!r}))
    except OSError as e:  # a non-root caller's home is not in the sandbox at all
        print("DENIED home", e.errno)
    try:
        print("LISTED", os.listdir({str(tmp_path)!r}))
    except OSError as e:
        print("DENIED listing", e.errno)
    """
    r = run_sandboxed(py(code), ws, FAST, backend=backend)
    assert r.status == "ok", r.stderr
    assert "TOPSECRET" not in r.stdout
    assert "READ" not in r.stdout.replace("READ /proc/1/environ", "")
    assert r.stdout.rstrip().endswith("['ws']")  # the workspace's private sibling does not exist


def test_nothing_outside_the_workspace_is_writable(ws, backend, tmp_path):
    tag = uuid.uuid4().hex[:8]
    targets = [
        str(tmp_path / f"outside-{tag}"),
        f"/tmp/hc-outside-{tag}",
        f"/outside-{tag}",
        f"{PY}-{tag}",  # next to the interpreter (the venv is bound read-only)
        f"/usr/hc-{tag}",
    ]
    code = f"""
    for p in {targets!r}:
        try:
            open(p, "w").write("x")
            print("WROTE", p)
        except OSError as e:
            print("DENIED", p, e.errno)
    open("inside.txt", "w").write("ok")
    """
    r = run_sandboxed(py(code), ws, FAST, backend=backend)
    assert r.status == "ok", r.stderr
    for p in targets:
        assert not os.path.exists(p), p
    assert (ws / "inside.txt").read_text() == "ok"  # the workspace itself is writable
    # /tmp inside is private: a write there succeeds but never reaches the host's /tmp
    assert f"DENIED /outside-{tag}" in r.stdout


def test_ctypes_libc_system_is_contained(ws, backend, tmp_path):
    tag = uuid.uuid4().hex[:8]
    outside = tmp_path / f"pwned-{tag}"
    code = f"""
    import ctypes
    rc = ctypes.CDLL(None).system(b"touch /outside-{tag}; touch {outside}; touch {PY}-{tag}; echo ran")
    print("rc", rc)
    """
    r = run_sandboxed(py(code), ws, FAST, backend=backend)
    assert r.status == "ok", r.stderr
    assert "ran" in r.stdout  # system() itself works, just inside the sandbox
    assert not os.path.exists(f"/outside-{tag}")
    assert not outside.exists()
    assert not os.path.exists(f"{PY}-{tag}")


def test_fork_bomb_is_bounded_and_cleaned_up(ws, backend):
    marker = f"31.{uuid.uuid4().int % 10**8}"
    code = f"""
    import os, time
    n = fails = 0
    t = time.time()
    while time.time() - t < 1.0:
        try:
            pid = os.fork()
        except OSError:
            fails += 1
            continue
        if pid == 0:
            try:
                os.execvp("sleep", ["sleep", "{marker}"])
            finally:
                os._exit(0)
        n += 1
    print("forked", n, "failed", fails)
    """
    limits = SandboxLimits(timeout_s=10, memory_mb=256, max_procs=32)
    r = run_sandboxed(py(code), ws, limits, backend=backend)
    assert r.status == "ok", r.stderr
    forked, failed = int(r.stdout.split()[1]), int(r.stdout.split()[3])
    assert forked < 32 and failed > 0  # RLIMIT_NPROC bit
    assert host_processes_with(marker) == []  # the sleepers died with the sandbox


def test_memory_bomb_reports_memory(ws, backend):
    r = run_sandboxed(py("x = bytearray(2 * 1024**3)"), ws, FAST, backend=backend)
    assert r.status == "memory" and r.exit_code == 1
    grow = "l = []\nwhile True: l.append(bytearray(10**7))"
    r = run_sandboxed(py(grow), ws, FAST, backend=backend)
    assert r.status == "memory"


def test_infinite_loop_times_out(ws, backend):
    limits = SandboxLimits(timeout_s=1.0, memory_mb=256, max_procs=32)
    r = run_sandboxed(py("while True: pass"), ws, limits, backend=backend)
    assert r.status == "timeout" and r.exit_code is None
    assert 1.0 <= r.duration_s < 3.0


def test_cpu_limit_reports_timeout(ws, backend):
    # Two busy processes with a 1 s CPU-time limit each: SIGXCPU long before the wall clock.
    limits = SandboxLimits(timeout_s=20, cpu_s=1, memory_mb=256, max_procs=32)
    r = run_sandboxed(py("while True: pass"), ws, limits, backend=backend)
    assert r.status == "timeout" and r.exit_code == -24  # SIGXCPU
    assert r.duration_s < 5


def test_gigabytes_of_output_are_streamed_and_capped(ws, backend):
    limits = SandboxLimits(timeout_s=30, memory_mb=256, max_output_bytes=1 << 20)
    cmd = "head -c 1G /dev/zero >&2 & head -c 1G /dev/zero; wait"
    r = run_sandboxed(cmd, ws, limits, backend=backend)
    assert r.status == "ok", r.stderr[-200:]
    assert len(r.stdout) == 1 << 20 and len(r.stderr) == 1 << 20
    assert r.stdout_truncated and r.stderr_truncated


def test_double_forked_child_dies_on_timeout(ws, backend):
    marker = f"47.{uuid.uuid4().int % 10**8}"
    code = f"""
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "{marker}"])
        os._exit(0)
    time.sleep(60)
    """
    limits = SandboxLimits(timeout_s=1.0, memory_mb=256, max_procs=32)
    r = run_sandboxed(py(code), ws, limits, backend=backend)
    assert r.status == "timeout"
    assert host_processes_with(marker) == []


def test_daemon_does_not_outlive_a_normal_exit(ws, backend):
    marker = f"53.{uuid.uuid4().int % 10**8}"
    r = run_sandboxed(f"(setsid sleep {marker} &) ; echo done", ws, FAST, backend=backend)
    assert r.status == "ok" and r.stdout == "done\n"
    assert r.duration_s < 5  # we did not wait for the daemon holding stdout
    assert host_processes_with(marker) == []


def test_file_size_limit(ws, backend):
    limits = SandboxLimits(timeout_s=10, memory_mb=256, max_file_mb=1)
    r = run_sandboxed(py("open('big', 'wb').write(b'x' * (2 << 20))"), ws, limits, backend=backend)
    assert r.status == "error" and "File too large" in r.stderr
    assert (ws / "big").stat().st_size <= 1 << 20
