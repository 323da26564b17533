"""Outside checks, session 23 (sandbox red team, third pass): the host side of a run — the tools
the sandbox itself starts as the caller (bwrap, unshare, setpriv, prlimit) — and what exec can
pass, attacked through the arguments a caller hands over (env=, a long command)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys

import pytest

from hillclimb.errors import ConfigError
from hillclimb.sandbox import SandboxLimits, probe_backend, run_sandboxed

BACKENDS = [b for b in ("bwrap", "unshare") if probe_backend(b)[0]]
needs_backend = pytest.mark.skipif(not BACKENDS, reason="no sandbox isolation backend works here")
LIM = SandboxLimits(timeout_s=20, memory_mb=512)
_TOOLS = ("bwrap", "unshare", "setpriv", "prlimit")


def _plant_tools(bindir, marker) -> None:
    """Executables named like the sandbox's own tools: each notes that it ran (on stderr, and in
    `marker` when it can reach it: only from the host), then runs the real tool."""
    bindir.mkdir()
    for name in _TOOLS:
        real = shutil.which(name)
        if real is None:
            continue
        f = bindir / name
        f.write_text(
            f"#!/bin/sh\necho HIJACKED-{name} uid=$(id -u) >&2\n"
            f'echo {name} >> {marker} 2>/dev/null\nexec {real} "$@"\n'
        )
        f.chmod(0o755)


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_path_in_env_cannot_pick_the_sandboxs_own_tools(tmp_path, backend):
    """env={"PATH": ...} (a task's environment, e.g. one that puts the project's `.venv/bin`
    first) was also the PATH that found bwrap / unshare / setpriv / prlimit: an executable named
    `setpriv` in the workspace — written there by an earlier run — ran on the HOST as the
    caller (root), outside every namespace, and inside the sandbox before the privilege drop
    and the rlimits. The sandbox's tools are absolute paths now."""
    ws = tmp_path / "ws"
    marker = tmp_path / "marker"
    ws.mkdir()
    _plant_tools(ws / "bin", marker)
    env = {"PATH": f"{ws / 'bin'}:/usr/bin:/bin"}
    r = run_sandboxed("echo hi", ws, LIM, env=env, backend=backend)
    assert r.status == "ok" and r.stdout == "hi\n", (r.status, r.stderr)
    assert "HIJACKED" not in r.stderr, r.stderr
    assert not marker.exists(), marker.read_text()
    # the command itself still gets the PATH it was given
    r = run_sandboxed("command -v setpriv", ws, LIM, env=env, backend=backend)
    assert r.stdout.strip() == str(ws / "bin" / "setpriv"), (r.status, r.stdout, r.stderr)


_PRELOAD_C = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void hit(void) {
    int fd = open("%s", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { write(fd, "loaded\n", 7); close(fd); }
}
"""


@needs_backend
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("backend", BACKENDS)
def test_loader_variables_in_env_do_not_reach_the_host_side_tools(tmp_path, backend):
    """env= was the whole environment of bwrap and the outer setpriv, which run on the host as
    the caller: LD_PRELOAD naming a library in the workspace ran its code there as root. The
    host-side tools get a fixed environment now; the command still gets env= (its own
    LD_PRELOAD works inside, where the host marker path does not exist)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    marker = tmp_path / "preload-marker"
    src = tmp_path / "p.c"
    src.write_text(_PRELOAD_C % marker)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(ws / "p.so"), str(src)], check=True)
    r = run_sandboxed(
        "echo $LD_PRELOAD", ws, LIM, env={"LD_PRELOAD": str(ws / "p.so")}, backend=backend
    )
    assert r.status == "ok" and r.stdout.strip() == str(ws / "p.so"), (r.status, r.stderr)
    assert not marker.exists(), "a host-side sandbox tool loaded the workspace's library"


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_environment_of_160_kb_runs_on_every_backend(tmp_path, backend):
    """The unshare backend passed its whole config (argv + env) to init.py as ONE argument, and
    the kernel caps one argument at 128 KiB: 40 variables of 4 KB (fine with bwrap) raised a bare
    OSError (E2BIG) there. The config goes through a pipe now."""
    env = {f"V{i}": "x" * 4000 for i in range(40)}
    r = run_sandboxed('echo "${#V0} ${#V39}"', tmp_path, LIM, env=env, backend=backend)
    assert r.status == "ok" and r.stdout == "4000 4000\n", (r.status, r.stderr)
    args = ["y" * 100] * 2000  # 200 KB of arguments
    r = run_sandboxed([sys.executable, "-c", "import sys; print(len(sys.argv))", *args], tmp_path,
                      LIM, backend=backend)  # fmt: skip
    assert r.status == "ok" and r.stdout == "2001\n", (r.status, r.stderr)


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "cmd,env",
    [
        (["echo"] + ["y" * 4000] * 1000, None),  # 4 MB: past ARG_MAX
        (["echo", "z" * 200_000], None),  # one argument past the kernel's 128 KiB
        ("true", {"BIG": "v" * 200_000}),  # one variable past it
    ],
)
def test_a_command_exec_cannot_pass_is_a_clear_error(tmp_path, backend, cmd, env):
    """Past the kernel's exec limits Popen raised a bare OSError (E2BIG: "Argument list too
    long: 'setpriv'", naming a tool the caller never called). It is a ConfigError with the
    limit now, before anything runs — still an OSError, which the harness's `run` tool catches
    and shows to the model."""
    with pytest.raises(ConfigError, match="too long for exec") as info:
        run_sandboxed(cmd, tmp_path, LIM, env=env, backend=backend)
    assert isinstance(info.value, OSError)
    assert os.listdir(tmp_path) == []


_KEY_READER = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
ring, name = int(sys.argv[1]), sys.argv[2].encode()
if len(sys.argv) > 3:  # add_key(type, description, payload, plen, keyring)
    k = libc.syscall(248, b"user", name, sys.argv[3].encode(), len(sys.argv[3]), ctypes.c_long(ring))
else:  # keyctl(KEYCTL_SEARCH, keyring, type, description, 0)
    k = libc.syscall(250, 10, ctypes.c_long(ring), b"user", name, 0)
buf = ctypes.create_string_buffer(64)
n = libc.syscall(250, 11, k, buf, 64) if k > 0 else -1  # KEYCTL_READ
print(k > 0, ctypes.get_errno(), buf.raw[: max(n, 0)].decode())
"""

_CALLER_WITH_A_SESSION_KEY = """
import ctypes, sys
from hillclimb.sandbox import SandboxLimits, run_sandboxed
libc = ctypes.CDLL(None, use_errno=True)
assert libc.syscall(250, 1, b"hc-s23-session") > 0  # KEYCTL_JOIN_SESSION_KEYRING
assert libc.syscall(248, b"user", b"hc-s23", b"CALLERSECRET", 12, ctypes.c_long(-3)) > 0
r = run_sandboxed([sys.executable, "-c", sys.argv[1], "-3", "hc-s23"], sys.argv[2],
                  SandboxLimits(timeout_s=20), backend=sys.argv[3])
print(r.status, r.stdout, r.stderr)
"""


@needs_backend
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 syscall numbers")
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_kernel_keyring_is_no_channel_out_of_or_between_runs(tmp_path, backend, monkeypatch):
    """Keyrings belong to no namespace. A key one run added to its user keyring stayed in the
    kernel, and a later run with the same per-run uid (they recycle every 100 runs of a
    process) read it back; and the caller's session keyring, when it had one (a login
    session), was inherited: the sandboxed command read a key the caller had stored there.
    The keyring calls fail with ENOSYS inside now (a seccomp filter, as Docker's profile)."""
    import hillclimb.sandbox.core as core

    uid = core.alloc_uid()
    monkeypatch.setattr(core, "alloc_uid", lambda: uid)  # two runs, one uid (as after recycling)
    put = run_sandboxed([sys.executable, "-c", _KEY_READER, "-4", "hc-s23", "ANSWER42"],
                        tmp_path, LIM, backend=backend)  # fmt: skip
    get = run_sandboxed([sys.executable, "-c", _KEY_READER, "-4", "hc-s23"], tmp_path, LIM,
                        backend=backend)  # fmt: skip
    assert put.status == get.status == "ok", (put.stderr, get.stderr)
    assert put.stdout.split() == ["False", "38"], put.stdout  # ENOSYS
    assert "ANSWER42" not in get.stdout
    caller = subprocess.run(
        [sys.executable, "-c", _CALLER_WITH_A_SESSION_KEY, _KEY_READER, str(tmp_path), backend],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if caller.returncode != 0 and "AssertionError" in caller.stderr:
        pytest.skip("this host does not let a process join a session keyring")
    assert caller.returncode == 0, caller.stderr
    assert caller.stdout.startswith("ok ") and "CALLERSECRET" not in caller.stdout, caller.stdout


def test_processes_whose_pids_differ_by_100000_get_distinct_sandbox_uids(monkeypatch):
    """The per-run uid was UID_BASE + (pid % 100000) * 100 + a counter: two workers with pids
    7 and 100007 ran their sandboxes as the same uid, so RLIMIT_NPROC (counted per uid) was
    shared and one run's fork bomb made the other's forks fail. The whole pid is used now,
    and every uid stays a valid one (below 2**32 - 1) up to the kernel's largest pid."""
    from hillclimb.sandbox import fs

    uids = []
    for pid in (7, 100_007, 4_194_304):
        monkeypatch.setattr(fs.os, "getpid", lambda pid=pid: pid)
        monkeypatch.setattr(fs, "_uid_counter", itertools.count())  # each its first run
        uids.append(fs.alloc_uid())
    assert uids[0] != uids[1]
    assert all(fs.UID_BASE <= u < 2**32 - 1 for u in uids), uids


def _cmdlines_with(token: bytes) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if token in f.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_env_values_are_not_in_any_host_command_line(tmp_path, backend):
    """A command's command line is world-readable on the host (`ps`), its environment is not.
    The unshare backend put the whole config, env= included, in init.py's arguments: a token
    a caller passed in env= was readable by every host user for the whole run. It travels
    through a memfd now; bwrap gets loader variables only as arguments (they steer no secret)."""
    import threading
    import uuid

    token = uuid.uuid4().hex
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.extend(_cmdlines_with(token.encode()))

    t = threading.Thread(target=watch)
    t.start()
    try:
        r = run_sandboxed('sleep 1; echo "$HC_TOKEN"', tmp_path, LIM, env={"HC_TOKEN": token},
                          backend=backend)  # fmt: skip
    finally:
        done.set()
        t.join()
    assert r.status == "ok" and r.stdout.strip() == token, (r.status, r.stderr)
    assert not seen, f"the token was in the command line of pids {sorted(set(seen))}"


@needs_backend
def test_the_shared_temporary_directory_is_refused_as_a_workspace(tmp_path, monkeypatch):
    """An in-place run on the temporary directory itself (/tmp) was allowed: every file in it
    — a concurrent run's throw-away copy under hillclimb-sandbox-*, other users' files — was
    handed to the run's uid for the run and could be read and rewritten. The temporary
    directory, /tmp, /var/tmp, /dev/shm and /home are refused like the system directories."""
    import tempfile

    from hillclimb.errors import HillclimbError

    shared = tmp_path / "shared-tmp"
    other = shared / "hillclimb-sandbox-other" / "ws"
    other.mkdir(parents=True)
    (other / "answer.txt").write_text("42\n")
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    with pytest.raises(HillclimbError, match="shared directory"):
        run_sandboxed("cat hillclimb-sandbox-other/ws/answer.txt", shared, LIM)
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(d) and not os.path.islink(d):
            with pytest.raises(HillclimbError, match="shared directory"):
                run_sandboxed("true", d, LIM)
    r = run_sandboxed("echo ok", other, LIM)  # a directory of its own inside it: fine
    assert r.status == "ok" and r.stdout == "ok\n", (r.status, r.stderr)


_FALLOCATE = """
import os, sys
with open("small", "wb") as f:  # an honest use: posix_fallocate still works (emulated)
    os.posix_fallocate(f.fileno(), 0, 1 << 20)
print("small", os.path.getsize("small"), flush=True)
for i in range(int(sys.argv[1])):
    fd = os.open(f"big{i}", os.O_CREAT | os.O_WRONLY, 0o600)
    os.posix_fallocate(fd, 0, 64 << 20)
    os.close(fd)
print("reserved all", flush=True)
"""


@needs_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_fallocate_cannot_outrun_the_disk_quota(tmp_path, backend):
    """fallocate reserves blocks at ~50 GB/s without writing them: between two polls of the
    quota a run reserved 1.3 GB past a 100 MB quota (6.4 GB past the default 2 GB, in 80 ms).
    The sandbox refuses the call now (EOPNOTSUPP, as a file system without it), so glibc's
    posix_fallocate writes the blocks itself, at a pace the quota's polls keep up with."""
    (tmp_path / "p.py").write_text(_FALLOCATE)
    lim = SandboxLimits(timeout_s=30, memory_mb=512, max_workspace_mb=50)
    r = run_sandboxed([sys.executable, "p.py", "40"], tmp_path, lim, backend=backend)
    assert r.status == "disk" and "small 1048576" in r.stdout, (r.status, r.stdout, r.stderr)
    assert "reserved all" not in r.stdout
    held = float(r.stderr.split("it holds ")[1].split(" MB")[0])
    assert held < 150, r.stderr  # 50 MB quota; what a run writes between two polls on top


_I386 = """
import ctypes, mmap, struct, sys
def i386(nr, a=0, b=0, c=0):  # push rbx; mov eax/ebx/ecx/edx; int 0x80; pop rbx; ret
    code = b"\\x53\\xb8" + struct.pack("<i", nr) + b"\\xbb" + struct.pack("<i", a) + b"\\xb9"
    code += struct.pack("<i", b) + b"\\xba" + struct.pack("<i", c) + b"\\xcd\\x80\\x5b\\xc3"
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(code)
    return ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()
print(i386(20) > 0, i386(288, 0, -4, 1), i386(324, 99, 0, 0))  # getpid, keyctl @u, fallocate
"""


@needs_backend
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 only")
@pytest.mark.parametrize("backend", BACKENDS)
def test_32_bit_system_calls_pass_the_same_filter(tmp_path, backend):
    """A filter written for x86_64's numbers alone is passed by `int 0x80` (the i386 table,
    other numbers): the keyring and fallocate calls are refused there too."""
    host = subprocess.run([sys.executable, "-c", _I386], capture_output=True, text=True)
    if host.returncode != 0 or not host.stdout.startswith("True"):
        pytest.skip("no 32-bit system calls on this kernel")
    r = run_sandboxed([sys.executable, "-c", _I386], tmp_path, LIM, backend=backend)
    assert r.status == "ok" and r.stdout.split() == ["True", "-38", "-95"], (r.stdout, r.stderr)
