"""Outside checks, session 25 (sandbox red team, fifth pass): disk the quota did not see, a
system call that bypassed the seccomp filter, and a throw-away copy the cleanup could not remove.

Before: files whose only reference was an fd in flight in a unix socket (SCM_RIGHTS; sent, closed,
unlinked) held 80 MB past a 5 MB quota and the run ended "ok"; io_uring_setup worked inside the
sandbox (IORING_OP_FALLOCATE reserves blocks as the refused fallocate did, unseen by seccomp); a
copy-mode run that nested 6000 directories made `run_sandboxed` raise RecursionError and left
its copy in the temporary directory. Now the quota peeks into the run's unix sockets
(`sandbox/inflight.py`), io_uring's calls fail with ENOSYS, and the copy is removed by
`fs.remove_tree` (no recursion).
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed
from hillclimb.sandbox.fs import MAX_DEPTH

BACKENDS = [b for b in ("bwrap", "unshare") if probe_backend(b)[0]]
needs_backend = pytest.mark.skipif(not BACKENDS, reason="no sandbox isolation backend works here")
# pidfd_getfd over the run's processes: root always may (a non-root caller usually may too, but
# Yama or a non-dumpable process can refuse: then `InFlightFiles.blind` says so)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="peeking needs ptrace rights (root)")

QUOTA = SandboxLimits(timeout_s=30, max_workspace_mb=5, max_file_mb=4, max_open_files=64)

# 20 files of 4 MB (each under the 5 MB quota), each sent over a unix socket, closed and unlinked:
# 80 MB held by fds in flight only; then the run waits (it is killed at the quota's next scan)
_WRITE_AND_PASS = """
import array, os, socket, time
def park(sock, data=b"x"):
    for i in range(20):
        fd = os.open(f"f{i}", os.O_CREAT | os.O_RDWR, 0o600)
        os.write(fd, b"x" * (4 << 20))
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        sock.sendmsg([data], rights)
        os.close(fd)
        os.unlink(f"f{i}")
"""
ATTACKS = {
    "dgram": """
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        park(a)
    """,
    "zero_length_dgram": """
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        park(a, b"")
    """,
    "stream": """
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        park(a)
    """,
    # the socket holding the files is itself in flight in another socket, and closed here
    "socket_in_flight": """
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        park(a)
        c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        c.sendmsg([b"s"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [b.fileno()]))])
        a.close(); b.close()
    """,
}


@needs_backend
@needs_root
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_files_held_only_in_flight_in_a_unix_socket_count_against_the_disk_quota(
    tmp_path, backend, attack
):
    """Each file is under the quota while it is written (the walk sees 4 MB at most); after the
    fd is sent and the name removed, only the socket's queue holds it. The quota's scan peeks
    into the queue and counts what it finds (and keeps counting it: a zero-length message
    peeked once is skipped by later peeks)."""
    code = _WRITE_AND_PASS + textwrap.dedent(ATTACKS[attack]) + "print('HELD 80 MB')\n"
    code += "time.sleep(10)\n"
    res = run_sandboxed([sys.executable, "-c", code], tmp_path, QUOTA, backend=backend)
    assert res.status == "disk", (res.status, res.stdout, res.stderr[-500:])
    assert "disk quota exceeded" in res.stderr


@needs_backend
@needs_root
@pytest.mark.xfail(strict=True, reason="known gap: an unaccepted connection's queue is unseen")
def test_files_in_flight_on_an_unaccepted_connection_are_not_seen(tmp_path):
    """The one way in flight that the scan cannot search (documented in `sandbox/inflight.py`):
    a client connects to the run's own listener, sends the fds and closes; the server never
    accepts. Strict: a fix makes this pass and must then drop the mark."""
    code = _WRITE_AND_PASS + textwrap.dedent("""
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind("\\0hillclimb-s25"); srv.listen(64)
        for i in range(20):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect("\\0hillclimb-s25")
            fd = os.open(f"f{i}", os.O_CREAT | os.O_RDWR, 0o600); os.write(fd, b"x" * (4 << 20))
            c.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            os.close(fd); os.unlink(f"f{i}"); c.close()
        time.sleep(1)
    """)
    res = run_sandboxed([sys.executable, "-c", code], tmp_path, QUOTA)
    assert res.status == "disk", (res.status, res.stderr[-500:])


@needs_backend
def test_a_scan_that_cannot_see_into_the_sockets_says_so(tmp_path, monkeypatch):
    """Where pidfd_getfd is refused (a kernel before 5.6 answers ENOSYS, as a number no kernel
    has does here; a caller without ptrace rights, EPERM) the files in flight go uncounted: the
    run must say so, not pass for checked."""
    from hillclimb.sandbox import inflight

    monkeypatch.setattr(inflight, "_PIDFD_GETFD", 1 << 20)
    code = _WRITE_AND_PASS + textwrap.dedent(ATTACKS["dgram"]) + "time.sleep(0.5)\n"
    with pytest.warns(RuntimeWarning, match="cannot be counted against the workspace disk quota"):
        res = run_sandboxed([sys.executable, "-c", code], tmp_path, QUOTA)
    assert res.status == "ok", res.stderr  # what is not seen is not counted


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_passing_fds_within_the_quota_still_works(tmp_path, backend):
    """An honest use of SCM_RIGHTS (a small file handed to another process) is left alone and
    the run's own queue is intact after the quota's peeks: every message arrives, in order."""
    code = _WRITE_AND_PASS.replace("range(20)", "range(3)").replace("4 << 20", "1 << 16")
    code += textwrap.dedent("""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        park(a)
        time.sleep(0.5)  # several polls peek meanwhile
        got = []
        for i in range(3):
            data, anc, _, _ = b.recvmsg(16, socket.CMSG_SPACE(4))
            fd = array.array("i", anc[0][2])[0]
            got.append((data, os.fstat(fd).st_size))
        print(got)
    """)
    res = run_sandboxed([sys.executable, "-c", code], tmp_path, QUOTA, backend=backend)
    assert res.status == "ok", (res.status, res.stderr[-500:])
    assert res.stdout.strip() == str([(b"x", 1 << 16)] * 3)


def _host_io_uring() -> bool:
    """Whether this kernel lets an ordinary process set up an io_uring (else nothing to refuse)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(425, 4, ctypes.create_string_buffer(120))
    if fd >= 0:
        os.close(fd)
    return fd >= 0


_IO_URING_SETUP = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print(libc.syscall(425, 4, ctypes.create_string_buffer(120)), ctypes.get_errno())
"""


@needs_backend
@pytest.mark.skipif(not _host_io_uring(), reason="io_uring is off on this machine")
@pytest.mark.parametrize("backend", BACKENDS)
def test_io_uring_is_refused_inside(tmp_path, backend):
    """io_uring's requests run in kernel workers that the seccomp filter never sees: its
    IORING_OP_FALLOCATE reserved blocks as the refused fallocate did. Setting up a ring fails
    with ENOSYS now, as on a kernel without io_uring."""
    res = run_sandboxed([sys.executable, "-c", _IO_URING_SETUP], tmp_path, backend=backend)
    assert res.status == "ok", res.stderr
    assert res.stdout.split() == ["-1", str(errno.ENOSYS)]


def _nest(root: os.PathLike, levels: int) -> None:
    """`levels` directories "d" one in another under `root` (by fds: past PATH_MAX too)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        fd, up = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(up)
    os.close(fd)


@pytest.fixture(autouse=True)
def _no_deep_trees_left(tmp_path):
    """Deep trees are removed here (coreutils `rm` walks them without recursion): pytest's own
    cleanup of old temporary directories is shutil.rmtree, and one left behind would make every
    later pytest session of this user fail at its end with RecursionError."""
    yield
    for name in os.listdir(tmp_path):
        subprocess.run(["rm", "-rf", "--", str(tmp_path / name)], check=False)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The temporary directory where `run_sandboxed` makes its copies, to see what is left."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@needs_backend
def test_a_copy_run_nesting_a_thousand_more_directories_leaves_nothing_behind(
    tmp_path, private_tmp
):
    """A workspace that is deep already (MAX_DEPTH levels: the quota lets it grow deeper) gets
    1000 more levels from one `mkdir -p`; shutil.rmtree recursed once per level, raised
    RecursionError out of `run_sandboxed` and left the copy behind."""
    ws = tmp_path / "ws"
    ws.mkdir()
    _nest(ws, MAX_DEPTH)  # the deepest level is still handed to the run's uid
    down = "/".join(["d"] * MAX_DEPTH)
    more = "/".join(["d"] * 1000)
    res = run_sandboxed(f"cd {down} && mkdir -p {more}", ws, copy_workspace=True)
    assert res.status == "ok", res.stderr
    assert os.listdir(private_tmp) == []


@needs_backend
def test_a_workspace_too_deep_to_copy_is_a_clear_error(tmp_path, private_tmp):
    """shutil.copytree recurses too: 1100 levels raised RecursionError, and the partial copy
    stayed in the temporary directory."""
    ws = tmp_path / "ws"
    ws.mkdir()
    _nest(ws, 1100)
    with pytest.raises(HillclimbError, match="nested too deep to copy"):
        run_sandboxed(["true"], ws, copy_workspace=True)
    assert os.listdir(private_tmp) == []


def test_remove_tree_removes_deep_and_locked_trees(tmp_path):
    """The remover itself: 600 levels, a locked directory, a symlink out (never followed)."""
    from hillclimb.sandbox.fs import remove_tree

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    root = tmp_path / "root"
    root.mkdir()
    _nest(root, 600)  # three passes of MAX_DEPTH levels
    (root / "d" / "f").write_text("x")
    (root / "locked").mkdir()
    (root / "locked" / "f").write_text("x")
    (root / "out").symlink_to(outside)
    os.chmod(root / "locked", 0)
    remove_tree(str(root))
    assert not root.exists()
    assert (outside / "keep").read_text() == "k"
    remove_tree(str(root))  # already gone: nothing to do


def test_an_unsafe_run_that_closes_its_output_keeps_its_whole_timeout(tmp_path):
    """The end of the output pipes was taken for the command's end: 2 s later it was killed and
    reported "timeout" although its timeout_s was 30 (only the unsafe backend shows it: there the
    command holds the pipes itself)."""
    cmd = "exec >/dev/null 2>&1; sleep 2.5; exit 3"
    with pytest.warns(RuntimeWarning, match="UNSAFE"):
        res = run_sandboxed(
            cmd, tmp_path, SandboxLimits(timeout_s=30), backend="unsafe", unsafe=True
        )
    assert (res.status, res.exit_code) == ("error", 3), res.stderr


_WRITE_ON_CUE = """
import sys
sys.stdin.readline()
with open("big", "wb") as f:
    f.write(b"x" * (16 << 20))
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="no per-process I/O counters")
def test_bytes_written_since_the_last_walk_make_a_walk_due_at_once(tmp_path):
    """A walk is O(files) and paced at 10x its own duration: 200k empty files (a legal
    workspace) spaced the polls ~15 s apart, and a run wrote 640 MB past a 137 MB quota before
    the next (measured with 30k files; now 160 MB). The write counters of the run's processes,
    read every 50 ms, now make a walk due as soon as they pass the room the last walk left.
    Here: a real writer process, and the paced poll put out of reach as a slow walk would."""
    from hillclimb.sandbox.core import _DiskQuota

    quota = _DiskQuota(str(tmp_path), 8)
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITE_ON_CUE],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        quota.pid = child.pid
        assert not quota.over()  # the walk, and the counters as it began
        quota.next = float("inf")
        later = quota.last + 3600.0
        assert not quota.due(later)  # nothing written yet: no walk before its time
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        assert quota.due(later + 1.0)  # 16 MB written past an 8 MB quota: due now
        assert quota.over()
    finally:
        child.kill()
        child.wait()
