"""The sandbox: the only place model-written code runs (harness tools, RL code rewards, code evals).

`run_sandboxed(cmd, workspace, limits)` runs a command with the workspace as its only writable host
path, no network (a fresh network namespace: loopback only), its own PID/mount/IPC/UTS namespaces,
rlimits (address space, CPU time, processes, file size, open files), a wall-clock timeout that kills
the whole process tree, a workspace disk quota (polled; the tree is killed when the workspace holds
more than `max_workspace_mb`), a seccomp filter (`seccomp_program`: no kernel keyring, no
io_uring, no fallocate), a memory cgroup per run where the machine offers one (`memcg`: one cap,
`max_memory_mb`, on its processes and the memory-backed files no rlimit sees — memfd, System V
shared memory, tmpfs in nested namespaces), and stdout/stderr captured concurrently and capped. It returns a
`SandboxResult` that says how the run ended. `hide=[paths]` makes host paths that the mount plan
would show (e.g. a package inside the bound site-packages) empty inside.

Backends, best first (`sandbox_backend()` probes each with a real trial run, once per process):
- "bwrap": bubblewrap builds the namespaces and the mount plan; `setpriv` (host root only) drops to
  a per-run uid and `prlimit` applies the rlimits, both exec'd in place (no extra process, ~ms).
- "unshare": util-linux `unshare` creates the namespaces and `init.py` (stdlib-only Python,
  PID 1 inside) builds the same mount plan, drops privileges, applies rlimits and reaps orphans.
- "unsafe": only on explicit request — rlimits and a process group, as the caller's own uid. No
  filesystem or network isolation, and a child that calls setsid() escapes the timeout kill; as
  root, RLIMIT_NPROC does not bind. Python-level guards are not a sandbox, so there are none.

Why the tree dies for sure: the command runs in a PID namespace whose init is killed with SIGKILL
on timeout (bwrap's --die-with-parent / unshare's --kill-child make the kill reach it), and when a
PID namespace's init dies the kernel kills every process in it — double-forked daemons included.
The same happens on normal exit, so nothing a run starts outlives it.

Why `status` is trusted: a timeout is something we did; "memory" is an exit whose stderr shows an
allocation failure (RLIMIT_AS makes allocations fail with ENOMEM: MemoryError, bad_alloc), or a
kill the run's memory cgroup counted (its OOM kills); a signal death is "killed" (SIGXCPU, the
CPU-time limit, is reported as "timeout", and so is the SIGKILL at the hard CPU limit of a command
that caught SIGXCPU, when the unshare init's rusage shows it past the soft limit); "disk" means the
workspace grew past its quota (we measured it, and killed the tree if it was still running);
"refused" means the sandbox itself could not be set up and the command never ran.

Why a polled quota and not a mount option: the workspace is a bind of a host directory (changes
must persist), so no size= applies to it, and per-user disk quotas or loop-mounted images need a
set-up the design cannot count on. RLIMIT_FSIZE bounds each file; the quota bounds their sum. The
tree is walked every 10-100 ms (more often as a fast writer nears the cap, less often when walking
is slow) and once after the run, so a run overshoots by what it writes between two polls: measured
at ~2 GB/s into the page cache, tens of MB. Files the run unlinked but still holds count too:
open or mapped by its processes (`fs.unlinked_files`) or only as fds in flight in its unix
sockets (`inflight`: peeked; not seen on connections a listener has not accepted). /tmp inside
is a tmpfs sized by `memory_mb`, so it needs no quota of its own (the `unsafe` backend has
neither).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.sandbox.fs import (
    MAX_DEPTH,
    WorkspaceOwner,
    alloc_uid,
    build_plan,
    copy_file,
    remove_tree,
    sandbox_env,
    tree_pids,
    unlinked_files,
    workspace_bytes,
    written_bytes,
)
from hillclimb.sandbox.inflight import InFlightFiles
from hillclimb.sandbox.memcg import MemoryCgroup

BACKENDS = ("bwrap", "unshare")
STATUSES = ("ok", "error", "timeout", "memory", "killed", "disk", "refused")
_INIT_SCRIPT = Path(__file__).with_name("init.py")
_KILL_GRACE_S = 2.0  # after a kill, how long we keep draining pipes before giving up on them
_STDERR_TAIL = 8192  # bytes of stderr kept (beyond the cap) to classify how the run ended
_DISK_POLL_S = (0.01, 0.1)  # bounds of the interval between two measurements of the workspace
_DISK_RATE = 1 << 30  # bytes/s a run is assumed able to write until it is seen writing faster
_IO_CHECK_S = 0.05  # between two reads of the run's write counters (`_DiskQuota.due`)
_WALK_SHARE = 10  # a paced walk waits this many times its own duration after it
_MEMORY_MARKERS = (
    b"MemoryError",
    b"Cannot allocate memory",
    b"std::bad_alloc",
    b"out of memory",
    b"Out of memory",
    b"memory exhausted",
)


_MAX_SECONDS = 1e7  # ~116 days: past any real run, well inside what select() and prlimit take
_MAX_COUNTS = {  # upper bounds per limit (MB values stay far below 2**63 bytes)
    "memory_mb": 1 << 40,
    "max_procs": (1 << 31) - 1,
    "max_file_mb": 1 << 40,
    "max_open_files": 1 << 20,  # the kernel's default fs.nr_open: RLIMIT_NOFILE cannot exceed it
    "max_workspace_mb": 1 << 40,
}


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 30.0  # wall clock; on expiry the WHOLE process tree is killed
    memory_mb: int = 1024  # address-space limit per process (RLIMIT_AS); also sizes /tmp
    cpu_s: int | None = None  # CPU-time rlimit (None: derived from timeout_s)
    max_procs: int = 128  # processes + threads of the sandbox uid (RLIMIT_NPROC)
    max_file_mb: int = 256  # largest file the command may write (RLIMIT_FSIZE)
    max_open_files: int = 512
    max_output_bytes: int = 1 << 20  # per stream, captured and capped
    # what the workspace may hold on disk during a run (all files, du-style); a workspace that is
    # already larger when the run starts may shrink but not grow
    max_workspace_mb: int = 2048
    # all the run's memory together — its processes and the memory-backed files they fill
    # (/tmp, /dev/shm, memfd, shared memory, tmpfs in nested namespaces) — through a memory
    # cgroup where one can be made (`memcg`); None: 4 x memory_mb (/tmp alone may hold memory_mb)
    max_memory_mb: int | None = None

    def validate(self) -> None:
        """Each limit in a range the kernel (and `prlimit`) accepts: a value past it used to make
        prlimit fail before the command ran, reported as the command's own exit 1."""
        if not (0 < self.timeout_s <= _MAX_SECONDS and math.isfinite(self.timeout_s)):
            raise ConfigError(
                f"sandbox timeout_s must be a positive number of at most {_MAX_SECONDS:.0f} s, "
                f"got {self.timeout_s}"
            )
        for name, top in _MAX_COUNTS.items():
            v = getattr(self, name)
            if not 1 <= v <= top:
                raise ConfigError(f"sandbox {name} must be in 1..{top}, got {v}")
        top = _MAX_COUNTS["memory_mb"]
        if self.max_memory_mb is not None and not 1 <= self.max_memory_mb <= top:
            raise ConfigError(
                f"sandbox max_memory_mb must be in 1..{top}, got {self.max_memory_mb}"
            )
        if self.cpu_s is not None and not 1 <= self.cpu_s <= _MAX_SECONDS:
            raise ConfigError(f"sandbox cpu_s must be in 1..{_MAX_SECONDS:.0f}, got {self.cpu_s}")
        if self.max_output_bytes < 0:
            raise ConfigError("sandbox max_output_bytes must be >= 0")

    def total_memory_mb(self) -> int:
        """The cap of the run's memory cgroup (`max_memory_mb`, or 4 x `memory_mb`)."""
        return self.max_memory_mb if self.max_memory_mb is not None else 4 * self.memory_mb

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """(soft, hard) per resource. CPU: soft limit sends SIGXCPU, hard (+1 s) SIGKILL."""
        cpu = self.cpu_s if self.cpu_s is not None else max(1, math.ceil(self.timeout_s)) + 1
        mem = self.memory_mb << 20
        fsize = self.max_file_mb << 20
        return {
            "as": (mem, mem),
            "cpu": (cpu, cpu + 1),
            "nproc": (self.max_procs, self.max_procs),
            "fsize": (fsize, fsize),
            "nofile": (self.max_open_files, self.max_open_files),
            "core": (0, 0),
        }


@dataclass
class SandboxResult:
    status: str  # "ok" | "error" | "timeout" | "memory" | "killed" | "disk" | "refused"
    exit_code: (
        int | None
    )  # exit status; -N when killed by signal N; None on timeout/refusal/quota kill
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    backend: str  # "bwrap" | "unshare" | "unsafe"

    def to_json(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------ backends


def _is_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def probe_backend(name: str) -> tuple[bool, str]:
    """(works, reason) for one backend, from a real trial run of `true` (cached per process)."""
    needs = {"bwrap": ["bwrap", "prlimit"], "unshare": ["unshare"]}.get(name)
    if needs is None:
        return False, f"unknown backend {name!r}"
    if name == "bwrap" and _is_root():
        needs.append("setpriv")
    missing = [t for t in needs if _tool(t) is None]
    if missing:
        return False, f"not installed: {', '.join(missing)}"
    with tempfile.TemporaryDirectory(prefix="hillclimb-probe-") as ws:
        try:
            res = _run(name, ["true"], ws, SandboxLimits(timeout_s=10), None, None, False)
        except OSError as exc:
            return False, f"trial run failed: {exc}"
    if res.status != "ok":
        why = (res.stderr.strip().splitlines() or [res.status])[-1]
        return False, f"trial run failed ({res.status}): {why}"
    return True, f"trial run ok in {res.duration_s * 1000:.0f} ms"


def sandbox_backend() -> str | None:
    """The best isolation backend that works on this machine, or None if none does.

    `HILLCLIMB_SANDBOX_BACKEND=bwrap|unshare` restricts the choice to one backend.
    """
    forced = os.environ.get("HILLCLIMB_SANDBOX_BACKEND")
    for name in (forced,) if forced else BACKENDS:
        if probe_backend(name)[0]:
            return name
    return None


def _no_backend_error() -> HillclimbError:
    """Why no isolation backend was chosen. A `HILLCLIMB_SANDBOX_BACKEND` naming no backend (a
    typo, or "unsafe") used to read as "no backend works on this machine (bwrap: trial run ok;
    ...)" — true backends listed as working; the variable is named now."""
    forced = os.environ.get("HILLCLIMB_SANDBOX_BACKEND")
    if forced and forced not in BACKENDS:
        return ConfigError(
            f"HILLCLIMB_SANDBOX_BACKEND={forced!r} is not a sandbox backend (one of "
            f"{', '.join(BACKENDS)}; the unsafe mode is only chosen by --unsafe / unsafe=True); "
            "unset it to use the best backend that works"
        )
    if forced:
        return HillclimbError(
            f"HILLCLIMB_SANDBOX_BACKEND={forced} forces a sandbox backend that does not work "
            f"here: {probe_backend(forced)[1]}; unset it to use the best backend that works"
        )
    reasons = "; ".join(f"{n}: {r['reason']}" for n, r in backend_report().items())
    return HillclimbError(
        f"no sandbox isolation backend works on this machine ({reasons}); install bubblewrap, "
        "or pass --unsafe / unsafe=True to run WITHOUT isolation"
    )


def backend_report() -> dict[str, dict]:
    """Every backend with whether it works and why (for `hillclimb sandbox check`)."""
    return {
        name: {"available": ok, "reason": why}
        for name in BACKENDS
        for ok, why in [probe_backend(name)]
    }


# --------------------------------------------------------------------------- command building


# Where the sandbox's own tools are looked up when they run inside it (before the privilege drop)
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The whole environment of unshare (the command's comes through the config memfd) and of the
# setpriv probe: the command's variables (LD_PRELOAD, PATH, ...) never reach a host-side tool.
_HOST_TOOL_ENV = {"PATH": _SYSTEM_PATH}
# Variables that steer a program's loader and libc (glibc's list of those it strips for
# set-user-ID programs, `elf/dl-unsecvars.h`, plus PATH): the command's values must not reach a
# tool running on the host as the caller.
_LOADER_VARS = frozenset(
    {"GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH",
     "MALLOC_TRACE", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR",
     "PATH"}
)  # fmt: skip


def _steers_host_tools(name: str) -> bool:
    return name in _LOADER_VARS or name.startswith(("LD_", "MALLOC_"))


def _bwrap_env(env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(bwrap's own environment, --setenv arguments) that give the command exactly `env`.

    bwrap hands its environment on to the command, and it and the outer setpriv run on the
    host as the caller: LD_PRELOAD in `env` ran a workspace library there as root (session 23).
    Loader variables travel as --setenv (applied only in the sandbox); the rest stay in the
    environment, which unlike arguments no other host user can read (`ps`)."""
    own = {k: v for k, v in env.items() if not _steers_host_tools(k)}
    own["PATH"] = _SYSTEM_PATH  # replaced by the command's PATH below (cmd_env always has one)
    args: list[str] = []
    for k, v in env.items():
        if _steers_host_tools(k):
            args += ["--setenv", k, v]
    return own, args


def _tool(name: str) -> str | None:
    """The absolute path of one of the sandbox's own tools (bwrap, unshare, setpriv, prlimit),
    found on the caller's own PATH (a few stat calls; not cached: the caller may change PATH).

    Why absolute: exec looked each one up on the PATH of the environment it was handed, which
    was the command's (`env=` included). A task environment with a PATH through the workspace
    (a project's `.venv/bin` first) ran a `setpriv` that an earlier run had planted there as the
    caller (host root), outside every namespace (session 23)."""
    found = shutil.which(name)
    return os.path.abspath(found) if found else None


def _inner_tool(name: str) -> str:
    """A tool that runs inside the bwrap sandbox: a host path the mount plan shows (/usr, the
    merged-usr links), so only the system PATH is searched; the bare name when absent (the
    backend's trial run then fails and says so)."""
    return shutil.which(name, path=_SYSTEM_PATH) or name


@functools.cache
def _die_with_caller() -> list[str]:
    """`setpriv --pdeathsig KILL --`, when this util-linux has it: the backend process gets
    SIGKILL when its caller dies, so a caller killed mid-run (OOM killer, `kill -9`) does not
    leave the sandbox running with no one left to enforce its timeout. Neither `unshare` nor the
    outer `bwrap` (its --die-with-parent covers only the processes below it) did that: a
    `sleep` outlived a killed caller for as long as it liked. The namespace's init dies with the
    backend (bwrap --die-with-parent, unshare --kill-child), and every process in it with that."""
    setpriv = _tool("setpriv")
    if setpriv is None:
        return []
    try:
        ok = (
            subprocess.run(
                [setpriv, "--pdeathsig", "KILL", "--", "true"],
                capture_output=True,
                timeout=10,
                env=_HOST_TOOL_ENV,
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        ok = False
    return [setpriv, "--pdeathsig", "KILL", "--"] if ok else []


def _inner_chain(
    limits: SandboxLimits, uid: int | None, argv: list[str], inside: bool = True
) -> list[str]:
    """setpriv (drop to the run's uid) + prlimit (rlimits), exec'd in place before the command;
    `inside`: in the bwrap sandbox (else on the host: the unsafe backend)."""
    find = _inner_tool if inside else (lambda name: _tool(name) or name)
    chain: list[str] = []
    if uid is not None:
        chain += [find("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        chain += ["--inh-caps=-all", "--no-new-privs", "--"]
    chain.append(find("prlimit"))
    for name, (soft, hard) in limits.rlimits().items():
        chain.append(f"--{name}={soft}:{hard}")
    return chain + ["--"] + argv


def _data_fd(text: str | bytes) -> int:
    """A pipe's read end holding `text` (for bwrap --ro-bind-data / --seccomp; < 64 KiB)."""
    r, w = os.pipe()
    os.write(w, text.encode() if isinstance(text, str) else text)
    os.close(w)
    return r


# System calls the sandbox refuses, per audit architecture (seccomp_data.arch): the kernel
# keyring's (add_key, request_key, keyctl), fallocate, and io_uring's (setup, enter, register:
# 425-427 on every architecture). x32 shares x86_64's numbers with bit 30 set, hence the mask.
_IO_URING = (425, 426, 427)
_DENIED_SYSCALLS = (
    (0xC000003E, 0xBFFFFFFF, (248, 249, 250, 285, *_IO_URING)),  # x86_64 (and x32)
    (0x40000003, 0xFFFFFFFF, (286, 287, 288, 324, *_IO_URING)),  # i386 (32-bit on x86_64)
    (0xC00000B7, 0xFFFFFFFF, (217, 218, 219, 47, *_IO_URING)),  # aarch64
    (0x40000028, 0xFFFFFFFF, (309, 310, 311, 352, *_IO_URING)),  # arm (32-bit on aarch64)
    (0xC00000F3, 0xFFFFFFFF, (217, 218, 219, 47, *_IO_URING)),  # riscv64
)
# how each of the calls above fails, in the same order
_DENIED_ERRNOS = (errno.ENOSYS,) * 3 + (errno.EOPNOTSUPP,) + (errno.ENOSYS,) * 3


@functools.cache
def seccomp_program() -> bytes:
    """The sandbox's seccomp filter (raw `struct sock_filter` array, for bwrap --seccomp and the
    unshare init): the kernel keyring's and io_uring's calls fail with ENOSYS, fallocate with
    EOPNOTSUPP (as on a file system without it), everything else is allowed.

    Why the keyring: it belongs to no namespace. A key a run added to its user keyring (`@u`)
    stayed in the kernel after the run, and the next run with the same per-run uid (they
    recycle) read it — a channel between RL samples (session 23); the caller's session keyring,
    where it has one, was inherited and possessed. Docker's default profile denies them too.
    Why fallocate: it reserves blocks at ~50 GB/s without writing them, so between two polls of
    the disk quota (10-100 ms) a run reserved gigabytes (6.4 GB past a 2 GB quota in 80 ms);
    refused, programs fall back to writing (glibc's posix_fallocate does so itself), which the
    quota's pacing allows for. Why io_uring: its requests run in kernel workers that no seccomp
    filter sees, so IORING_OP_FALLOCATE reserved blocks as fallocate did (session 25: a run set
    up a ring inside); refused with ENOSYS, programs use the plain calls (liburing users and
    runtimes such as libuv and tokio fall back so already: io_uring is off in many kernels).
    Architectures not listed pass unfiltered (their numbers differ)."""
    ld_abs, jeq, ret, alu_and = 0x20, 0x15, 0x06, 0x54
    allow, ret_errno = 0x7FFF0000, 0x00050000
    prog: list[tuple[int, int, int, int]] = [(ld_abs, 0, 0, 4)]  # A = seccomp_data.arch
    for arch, mask, nrs in _DENIED_SYSCALLS:
        body = [(ld_abs, 0, 0, 0), (alu_and, 0, 0, mask)]  # A = nr (x32 bit cleared)
        for nr, err in zip(nrs, _DENIED_ERRNOS, strict=True):
            body += [(jeq, 0, 1, nr), (ret, 0, 0, ret_errno | err)]
        body.append((ret, 0, 0, allow))
        prog.append((jeq, 0, len(body), arch))  # another arch: skip this block
        prog += body
    prog.append((ret, 0, 0, allow))
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


def _bwrap_argv(plan, limits, uid, argv, env, status_fd, fds) -> list[str]:
    """bwrap's command line; `env`: the --setenv arguments of `_bwrap_env`."""
    a = [
        _tool("bwrap") or "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-ipc",
        "--unshare-pid",
    ]
    a += ["--unshare-net", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if uid is None:
        a += ["--unshare-user", "--disable-userns"]
    else:
        a += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    made = {"/"}

    def parents(target: str) -> None:
        # bwrap creates missing parents of a target mode 0700 (unusable by the sandbox uid):
        # create them ourselves, world-traversable, first.
        todo = []
        d = os.path.dirname(target)
        while d not in made:
            todo.append(d)
            made.add(d)
            d = os.path.dirname(d)
        for d in reversed(todo):
            a.extend(["--perms", "0755", "--dir", d])
        made.add(target)

    for src, dst in plan.ro_binds:
        parents(dst)
        a += ["--ro-bind", src, dst]
    for target, link in plan.symlinks:
        parents(link)
        a += ["--symlink", target, link]
    a += ["--dev", "/dev", "--proc", "/proc"]
    made |= {"/dev", "/proc"}
    for path, size in plan.tmpfs:
        parents(path)
        a += ["--perms", "1777", "--size", str(size), "--tmpfs", path]
    for path, content in plan.files:
        fd = _data_fd(content)
        fds.append(fd)
        parents(path)
        a += ["--perms", "0644", "--ro-bind-data", str(fd), path]
    for p in plan.python_binds:
        parents(p)
        a += ["--ro-bind", p, p]
    parents(plan.workspace)
    a += ["--bind", plan.workspace, plan.workspace, "--chdir", plan.workspace]
    for p in plan.ro_in_workspace:
        a += ["--ro-bind", p, p]
    for path, is_dir in plan.hidden:  # last: over whatever bind shows them
        if is_dir:
            a += ["--perms", "0555", "--size", "4096", "--tmpfs", path, "--remount-ro", path]
        else:
            a += ["--ro-bind", "/dev/null", path]
    a += env
    seccomp = _data_fd(seccomp_program())
    fds.append(seccomp)
    a += ["--seccomp", str(seccomp)]
    a += ["--remount-ro", "/", "--json-status-fd", str(status_fd), "--"]
    return a + _inner_chain(limits, uid, argv)


def _unshare_argv(plan, limits, uid, argv, env, status_fd, fds, cgroup=None) -> list[str]:
    """unshare's command line; init.py reads its config (argv and env included) from an
    inherited memfd: one argument holds at most 128 KiB, and as one argument the config made a
    160 KB environment (fine with bwrap) fail with E2BIG."""
    binds = [[s, d, "ro"] for s, d in plan.ro_binds]
    binds += [[d, d, "dev"] for d in plan.dev_binds]
    binds += [[p, p, "ro"] for p in plan.python_binds]
    binds.append([plan.workspace, plan.workspace, "rw"])
    binds += [[p, p, "ro"] for p in plan.ro_in_workspace]
    binds += [["/dev/null", path, "ro"] for path, is_dir in plan.hidden if not is_dir]
    symlinks = [list(x) for x in plan.symlinks]
    symlinks += [
        ["/proc/self/fd", "/dev/fd"],
        ["/proc/self/fd/0", "/dev/stdin"],
        ["/proc/self/fd/1", "/dev/stdout"],
        ["/proc/self/fd/2", "/dev/stderr"],
    ]
    cfg = {
        "stage": "/tmp",  # private mount namespace: mounting over the host's /tmp is invisible
        "binds": binds,
        "symlinks": symlinks,
        "files": [list(x) for x in plan.files],
        "tmpfs": [[p, size, 0o1777] for p, size in plan.tmpfs],
        "hide_dirs": [path for path, is_dir in plan.hidden if is_dir],
        "proc": True,
        "cwd": plan.workspace,
        "uid": uid,
        "gid": uid,
        "rlimits": {k: list(v) for k, v in limits.rlimits().items()},
        "argv": argv,
        "env": env,
        "seccomp": seccomp_program().hex(),
        "status_fd": status_fd,
        "cgroup_procs": cgroup,  # the init joins the run's memory cgroup before anything else
    }
    cfg_fd = _memfd_with(json.dumps(cfg).encode())
    fds.append(cfg_fd)
    a = [_tool("unshare") or "unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork"]
    a += ["--kill-child", "--propagation", "private"]
    if uid is None:
        a += ["--user", "--map-root-user"]
    return a + ["--", sys.executable, "-I", "-S", str(_INIT_SCRIPT), str(cfg_fd)]


def _memfd_with(data: bytes) -> int:
    """A read-only-by-convention memory file holding `data`, positioned at 0 (unlike a pipe it
    takes any size without a reader)."""
    fd = os.memfd_create("hillclimb-sandbox-config")  # CLOEXEC: only pass_fds hands it on
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


# ------------------------------------------------------------------------------------- running


@dataclass
class _Raw:
    returncode: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    stderr_tail: bytes
    timed_out: bool
    duration_s: float
    status_lines: list[dict]
    disk_exceeded: bool = False  # the quota check killed the tree while it ran


class _DiskQuota:
    """The workspace's disk quota for one run: measured at the start, polled, measured at the end.

    The cap is `max_workspace_mb`, or the size at the start when that is larger: a workspace that
    is over its quota already may still be cleaned up (`rm` shrinks it) but not grown. A run that
    nests directories deeper than `fs.MAX_DEPTH` levels is over it too (below that depth its files
    would go uncounted), unless the tree was that deep before it started.

    Pacing: a walk is O(files), so the next one waits at least `_WALK_SHARE` times as long as
    the last took. A workspace of many small files (200k empty files walk in ~1.5 s here) thus
    spaced the polls ~15 s apart, and a run wrote gigabytes past its quota in between (session
    25). Between walks, every `_IO_CHECK_S`, the bytes the run's processes have written since
    the last walk began (`fs.written_bytes`, O(processes)) are added to what it measured; past
    the cap, a walk is due at once (waiting only as long as the last one took).
    """

    def __init__(self, root: str, limit_mb: int) -> None:
        self.root, self.limit_mb = root, limit_mb
        self.pid: int | None = None  # the backend's pid, once started: its tree's open files count
        self.dev = os.lstat(root).st_dev
        self.start, self.deep_at_start = workspace_bytes(root)
        self.used, self.too_deep = self.start, False
        self.cap = max(limit_mb << 20, self.start)
        self.last = time.monotonic()
        self.next = self.last + _DISK_POLL_S[0]  # then as planned by `over`
        self.unlinked, self.unlinked_at = 0, float("-inf")  # the /proc scan, at most every 0.1 s
        self.inflight = InFlightFiles(self.dev)  # fds in flight in the run's unix sockets
        self.warned = False  # whether a blind in-flight scan was reported
        self.walk_s = 0.0  # how long the last walk took
        self.written: int | None = None  # the run's write counters when the last walk began
        self.check_at = self.next  # the next read of the write counters
        self.pids: list[int] = []  # `_tree`'s last scan: of which backend pid, and when
        self.pids_of: int | None = None
        self.pids_at = float("-inf")

    def _tree(self) -> list[int]:
        """The run's processes (`fs.tree_pids`, a scan of /proc), reused for `_IO_CHECK_S`: a
        stale list only misses a process's bytes in a baseline, which over-states growth."""
        if self.pid is None:
            return []
        now = time.monotonic()
        if self.pids_of != self.pid or now - self.pids_at >= _IO_CHECK_S:
            self.pids, self.pids_of, self.pids_at = tree_pids(self.pid), self.pid, now
        return self.pids

    def wake(self) -> float:
        """When `due` should next be asked."""
        return min(self.next, self.check_at)

    def due(self, now: float) -> bool:
        """Whether a measurement (`over`) is due: at the paced time, or sooner when the run has
        written more since the last walk began than the room that walk left."""
        if now >= self.next:
            return True
        if now < self.check_at or self.pid is None:
            return False
        t = time.monotonic()
        written = written_bytes(self._tree())
        # at most ~10% of a core: reading /proc is O(processes on the host)
        self.check_at = now + max(_IO_CHECK_S, _WALK_SHARE * (time.monotonic() - t))
        if written is None or self.written is None:
            return False
        grown = self.used + written - self.written > self.cap
        return grown and now >= self.last + self.walk_s

    def over(self) -> bool:
        """Measure now and plan the next poll: sooner when, at the rate just seen, the cap is
        near (the overshoot is what is written between two polls); never so often that walking
        the tree takes over ~10% of a core."""
        pids = self._tree()
        self.written = written_bytes(pids) if pids else None
        t = time.monotonic()
        used, deep = workspace_bytes(self.root)
        walked = time.monotonic()
        self.walk_s = walked - t
        # files the run unlinked but still holds fill the disk too; scanning its process tree in
        # /proc costs more than a small workspace's walk, so it runs at most every `hi` seconds
        # and the poll's own pace is set by the walk (session 22: timing both slowed the polls
        # on a loaded machine and a writer overshot a 3 MB quota by 100 MB)
        if self.pid is None:
            self.unlinked = 0  # the run is over: what it held is freed (or no longer its own)
        elif t - self.unlinked_at >= _DISK_POLL_S[1]:
            self.unlinked, self.unlinked_at = self._held(pids), t
        used += self.unlinked
        self.too_deep = deep and not self.deep_at_start
        now = time.monotonic()
        rate = max(0, used - self.used) / max(now - self.last, 1e-3)
        self.used, self.last = used, now
        lo, hi = _DISK_POLL_S
        soon = (self.cap - used) / max(rate, _DISK_RATE) / 2
        self.next = now + max(_WALK_SHARE * self.walk_s, min(hi, max(lo, soon)))
        self.check_at = now + _IO_CHECK_S
        return used > self.cap or self.too_deep

    def _held(self, pids: list[int]) -> int:
        """Bytes of the unlinked files the run's processes `pids` hold: open or mapped, or in
        flight in their unix sockets (each file once)."""
        held = dict(self.inflight.scan(pids))
        if self.inflight.blind and not self.warned:
            self.warned = True  # said once per run, not once per poll
            warnings.warn(
                "hillclimb sandbox: files held only by fds in flight in the run's unix sockets "
                "cannot be counted against the workspace disk quota here "
                f"({self.inflight.blind}; it needs ptrace rights over the run and Linux 5.6+)",
                RuntimeWarning,
                stacklevel=2,
            )
        held.update(unlinked_files(pids, self.dev))
        return sum(held.values())

    def note(self) -> str:
        if self.too_deep:
            return (
                f"sandbox: workspace disk quota exceeded: directories nested deeper than "
                f"{MAX_DEPTH} levels cannot be measured; delete them"
            )
        return (
            f"sandbox: workspace disk quota exceeded: it holds {self.used / 2**20:.1f} MB, more "
            f"than its quota of {self.cap / 2**20:.0f} MB (max_workspace_mb={self.limit_mb}); "
            "delete files to free space"
        )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _execute(argv, env, stdin, limits, pass_fds, status_r, cwd=None, quota=None) -> _Raw:
    """Run argv, feeding stdin and draining both pipes in one selector loop (no deadlock on
    gigabytes of output: bytes past the cap are read and dropped), until EOF or the deadline.
    `quota` (a `_DiskQuota`) is polled in the same loop; going over it kills the tree."""
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            pass_fds=pass_fds,
            start_new_session=True,  # our kill reaches the backend's processes as a group
        )
    except OSError as exc:
        if exc.errno != errno.E2BIG:
            raise
        raise CommandTooLongError(
            "sandbox: the command and its environment are too long for exec (E2BIG); pass "
            "large inputs through files in the workspace or stdin"
        ) from None
    if quota is not None:
        quota.pid = proc.pid
    try:
        raw = _collect(proc, stdin, limits, pass_fds, status_r, quota, t0)
        if quota is not None:
            quota.pid = None  # reaped: the number may now be another process's
        return raw
    except BaseException:
        # Interrupted (Ctrl-C, an error in this loop): the command must not outlive us. The
        # group holds the backend (bwrap, or unshare and the namespace's init, whose death ends
        # every process in it); unshare has no parent-death signal, so without this kill a
        # `sleep 1000` in it ran on after the harness had stopped.
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            proc.wait(timeout=_KILL_GRACE_S)
        for f in (proc.stdout, proc.stderr, proc.stdin):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        raise


def _collect(proc, stdin, limits, pass_fds, status_r, quota, t0) -> _Raw:
    """The I/O loop of `_execute` for a started `proc`, until EOF or the deadline."""
    cap = limits.max_output_bytes
    # The child has its copies; ours would keep data pipes open. Close each exactly once and drop
    # it from the caller's list: closing an fd twice could close another thread's reused number.
    for fd in [fd for fd in pass_fds if fd != status_r]:
        os.close(fd)
        pass_fds.remove(fd)
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    trunc = dict.fromkeys(bufs, False)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    tail = bytearray()
    sel = selectors.DefaultSelector()
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin) if stdin is not None else None
    if stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        if len(pending):
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
    deadline = t0 + limits.timeout_s
    timed_out = disk_exceeded = False
    while sel.get_map():
        now = time.monotonic()
        if quota is not None and not (timed_out or disk_exceeded) and quota.due(now):
            if quota.over():
                disk_exceeded = True
                _kill_group(proc.pid)
                deadline = time.monotonic() + _KILL_GRACE_S
            now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            if timed_out or disk_exceeded:
                break  # still open after the grace period: a pipe holder escaped; stop reading
            timed_out = True
            _kill_group(proc.pid)
            deadline = time.monotonic() + _KILL_GRACE_S
            continue
        wait = remaining
        if quota is not None and not (timed_out or disk_exceeded):
            wait = max(0.0, min(wait, quota.wake() - now))
        for key, _ in sel.select(timeout=wait):
            fd = key.fd
            if key.events & selectors.EVENT_WRITE:
                try:
                    n = os.write(fd, pending[:65536])
                    pending = pending[n:]
                except BrokenPipeError:
                    pending = pending[:0]
                if not len(pending):
                    sel.unregister(fd)
                    proc.stdin.close()
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                sel.unregister(fd)
                continue
            buf = bufs[fd]
            room = cap - len(buf)
            if room > 0:
                buf += chunk[:room]
            if len(chunk) > room:
                trunc[fd] = True
            if fd == err_fd:
                tail += chunk
                del tail[:-_STDERR_TAIL]
    sel.close()
    if not (timed_out or disk_exceeded):
        timed_out, disk_exceeded = _wait_out(proc, deadline, quota)
    try:
        rc = proc.wait(timeout=_KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        timed_out = not disk_exceeded
        _kill_group(proc.pid)
        rc = proc.wait()
    _kill_group(proc.pid)  # stragglers in the group (only possible for the unsafe backend)
    for f in (proc.stdout, proc.stderr, proc.stdin):
        if f is not None and not f.closed:
            f.close()
    status_lines = []
    if status_r is not None:
        os.set_blocking(status_r, False)
        data = b""
        try:
            while chunk := os.read(status_r, 65536):
                data += chunk
        except BlockingIOError:
            pass
        os.close(status_r)
        dec = json.JSONDecoder()
        text, i = data.decode(errors="replace"), 0
        while i < len(text):  # bwrap writes several JSON documents back to back
            while i < len(text) and text[i].isspace():
                i += 1
            if i >= len(text):
                break
            try:
                obj, i = dec.raw_decode(text, i)
            except json.JSONDecodeError:
                break
            status_lines.append(obj)
    return _Raw(
        returncode=rc,
        stdout=bytes(bufs[out_fd]),
        stderr=bytes(bufs[err_fd]),
        stdout_truncated=trunc[out_fd],
        stderr_truncated=trunc[err_fd],
        stderr_tail=bytes(tail),
        timed_out=timed_out,
        duration_s=time.monotonic() - t0,
        status_lines=status_lines,
        disk_exceeded=disk_exceeded,
    )


def _wait_out(proc, deadline: float, quota: _DiskQuota | None) -> tuple[bool, bool]:
    """Wait for a command whose output pipes are closed but which may still run, until its
    deadline, polling the disk quota meanwhile; (timed out, over the quota), the tree killed
    in either case.

    Why: the pipes' end used to be read as the command's end, given `_KILL_GRACE_S` to exit and
    then killed as "timeout". Under an isolation backend the backend holds the pipes until the
    command ends, but under the unsafe backend a command that closed them (`exec >/dev/null
    2>&1; sleep 3`) was killed after 2 s of its 30 s timeout (session 25)."""
    while True:
        now = time.monotonic()
        if quota is not None and quota.due(now) and quota.over():
            _kill_group(proc.pid)
            return False, True
        if now >= deadline:
            _kill_group(proc.pid)
            return True, False
        step = deadline - now if quota is None else min(deadline, quota.wake()) - now
        try:
            proc.wait(timeout=max(step, 0.001))
            return False, False
        except subprocess.TimeoutExpired:
            continue


def _cpu_limit_kill(sig: int, info: dict, limits: SandboxLimits) -> bool:
    """Whether a SIGKILL was the hard CPU-time limit: the command caught (or ignored) SIGXCPU at
    the soft limit and ran on until the kernel killed it a second later (it used to read as
    "killed", a crash). A command past its soft limit has had SIGXCPU and survived it, so the
    SIGKILL is the hard limit's. The unshare init reports the command's CPU seconds (rusage,
    which reads up to ~10% below the kernel's tick-based limit clock: measured 1.81 s at a 2 s
    hard limit); bwrap does not, so there such a kill still reads as "killed"."""
    cpu = info.get("cpu_s")
    soft = limits.rlimits()["cpu"][0]
    return sig == signal.SIGKILL and isinstance(cpu, int | float) and cpu >= 0.9 * soft


def _classify(
    raw: _Raw, backend: str, limits: SandboxLimits | None = None
) -> tuple[str, int | None, str]:
    """(status, exit_code, extra stderr note) from how the process ended."""
    if raw.disk_exceeded:
        return "disk", None, ""
    if raw.timed_out:
        return "timeout", None, ""
    exit_code: int | None
    sig: int | None = None
    info: dict = {}
    if backend == "unshare":
        info = {k: v for d in raw.status_lines for k, v in d.items()}
        if "error" in info:
            return "refused", None, info["error"]
        if "signal" in info:
            sig = int(info["signal"])
        elif "exit" in info:
            exit_code = int(info["exit"])
            if "exec_error" in info:
                return "error", exit_code, f"sandbox: cannot run command: {info['exec_error']}"
        else:
            return "refused", None, f"sandbox init ended without a status (rc={raw.returncode})"
    elif backend == "bwrap":
        info = {k: v for d in raw.status_lines for k, v in d.items()}
        if "child-pid" not in info:
            return "refused", None, "sandbox setup failed (bwrap did not start the command)"
        code = int(info.get("exit-code", raw.returncode))
        if 128 < code <= 128 + 64:  # bwrap reports a signal death as 128 + signal
            sig = code - 128
        else:
            exit_code = code
    else:
        if raw.returncode < 0:
            sig = -raw.returncode
        else:
            exit_code = raw.returncode
    memory = any(m in raw.stderr_tail for m in _MEMORY_MARKERS)
    if sig is not None:
        if sig == signal.SIGXCPU:
            return "timeout", -sig, "sandbox: CPU time limit exceeded"
        if limits is not None and _cpu_limit_kill(sig, info, limits):
            return "timeout", -sig, "sandbox: CPU time limit exceeded (SIGXCPU was caught)"
        if memory:
            return "memory", -sig, ""
        return "killed", -sig, ""
    if exit_code == 0:
        return "ok", 0, ""
    return ("memory" if memory else "error"), exit_code, ""


def _run(backend, cmd, workspace, limits, env, stdin, restore_owner, hide=()) -> SandboxResult:
    argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]
    # Unsafe mode keeps the caller's uid: a private uid could not even reach an interpreter under
    # a 0700 home directory without the mount namespace to bind it in.
    uid = alloc_uid() if _is_root() and backend != "unsafe" else None
    inner_uid = uid if uid is not None else (0 if backend == "unshare" else os.getuid())
    plan = build_plan(workspace, inner_uid, inner_uid, limits.memory_mb << 20, hide)
    user = "sandbox" if inner_uid != 0 else "root"
    cmd_env = sandbox_env(env, user)
    owner = WorkspaceOwner(workspace, uid, uid, restore_owner) if uid is not None else None
    data = stdin.encode() if isinstance(stdin, str) else stdin
    fds: list[int] = []
    status_r = None
    cwd = None
    memcg: MemoryCgroup | None = None
    oom_kills = 0
    try:
        if backend in BACKENDS:
            status_r, status_w = os.pipe()
            fds.append(status_w)
            memcg = MemoryCgroup.create(limits.total_memory_mb() << 20)
        if backend == "bwrap":
            popen_env, setenv = _bwrap_env(cmd_env)
            full = _bwrap_argv(plan, limits, uid, argv, setenv, status_w, fds)
        elif backend == "unshare":
            procs = memcg.procs_file() if memcg is not None else None
            full = _unshare_argv(plan, limits, uid, argv, cmd_env, status_w, fds, procs)
            popen_env = _HOST_TOOL_ENV
        else:
            full = _inner_chain(limits, uid, argv, inside=False)
            popen_env = cmd_env
            cwd = workspace
        if backend in BACKENDS:
            full = _die_with_caller() + full
            if memcg is not None and backend == "bwrap":  # (the unshare init joins by itself)
                full = memcg.join_argv() + full
        quota = _DiskQuota(workspace, limits.max_workspace_mb)
        if owner is not None:
            owner.give()
        try:
            raw = _execute(full, popen_env, data, limits, fds, status_r, cwd, quota)
            status_r = None
            # a run that wrote fast and ended between two polls is caught here
            over = raw.disk_exceeded or quota.over()
        finally:
            if owner is not None:
                owner.take_back()
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if status_r is not None:
            os.close(status_r)
        if memcg is not None:
            oom_kills = memcg.oom_kills()
            memcg.remove()
    status, exit_code, note = _classify(raw, backend, limits)
    if over and status != "refused":
        status, note = "disk", quota.note()
    elif oom_kills and status in ("killed", "error", "refused"):
        # the kernel killed a process of the run (perhaps the init) for the group's cap
        status, note = "memory", _memory_note(limits, oom_kills)
    stderr = raw.stderr.decode("utf-8", errors="replace")
    if note:
        stderr = stderr + ("\n" if stderr and not stderr.endswith("\n") else "") + note + "\n"
    return SandboxResult(
        status=status,
        exit_code=exit_code,
        stdout=raw.stdout.decode("utf-8", errors="replace"),
        stderr=stderr,
        stdout_truncated=raw.stdout_truncated,
        stderr_truncated=raw.stderr_truncated,
        duration_s=round(raw.duration_s, 6),
        backend=backend,
    )


def _memory_note(limits: SandboxLimits, kills: int) -> str:
    return (
        f"sandbox: memory limit exceeded: the run's processes and memory-backed files (/tmp, "
        f"/dev/shm, memfd, shared memory) held more than max_memory_mb="
        f"{limits.total_memory_mb()} MB; {kills} process(es) killed"
    )


# System directories never usable as a workspace: the workspace is bound read-write over them and
# (as root) handed to the sandbox uid for the run — chown clears setuid bits, so even a restored
# owner would leave the host broken.
SYSTEM_DIRS = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
     "/sbin", "/sys", "/usr", "/var"}
)  # fmt: skip


# Directories every process (and user) of the host shares: as a workspace, every file in them —
# other runs' throw-away copies included — would be handed to the run's uid, readable and
# writable for the run, and counted against its quota (session 23: an in-place run on /tmp could
# rewrite a concurrent run's copy under /tmp/hillclimb-sandbox-*).
SHARED_DIRS = frozenset({"/tmp", "/var/tmp", "/dev/shm", "/home"})


def _check_workspace(ws: Path, copy_workspace: bool) -> None:
    real = ws.resolve()
    if str(real) in SYSTEM_DIRS:
        raise HillclimbError(
            f"sandbox workspace {str(ws)!r} is the system directory {str(real)!r}; use a "
            "project directory"
        )
    tmp = Path(tempfile.gettempdir()).resolve()
    if str(real) in SHARED_DIRS or real == tmp:
        raise HillclimbError(
            f"sandbox workspace {str(ws)!r} is the shared directory {str(real)!r}: every other "
            "process's files in it would be open to the run; use a directory of its own in it"
        )
    if copy_workspace and tmp.is_relative_to(real):
        # the throw-away copy would be made inside the tree being copied, copying itself
        raise HillclimbError(
            f"sandbox workspace {str(ws)!r} contains the temporary directory {str(tmp)!r}, "
            "where its copy would be made; use a smaller directory"
        )


class CommandTooLongError(ConfigError, OSError):
    """A command (with its environment) past the kernel's exec limits. Also an OSError: that is
    what exec's E2BIG was before, and callers catch it (the harness's `run` tool shows it to the
    model as a failed call)."""


_MAX_ARG_STRLEN = 32 * 4096  # the kernel's cap on one argument or one NAME=value, NUL included
_ARGS_RESERVE = 256 << 10  # of ARG_MAX, kept for the backend's own arguments (the mount plan)


def _check_passable(cmd: list[str] | str, env: dict[str, str] | None) -> None:
    """Arguments and variables exec() can pass: no NUL byte anywhere, no '=' in (or empty)
    variable names, no string over the kernel's 128 KiB and not more than ARG_MAX in all. Past
    them bwrap's run raised a bare ValueError / OSError (E2BIG) from subprocess, and the
    unshare init's exec failed inside, read as "refused" (a broken sandbox, not bad input)."""
    args = [str(cmd)] if isinstance(cmd, str) else [str(os.fspath(c)) for c in cmd]
    for a in args:
        if "\0" in a:
            raise ConfigError(f"sandbox: the command holds a NUL byte: {a[:80]!r}")
    strings = list(args)
    for k, v in (env or {}).items():
        k, v = str(k), str(v)
        if not k or "=" in k or "\0" in k:
            raise ConfigError(f"sandbox: {k[:80]!r} cannot be an environment variable name")
        if "\0" in v:
            raise ConfigError(f"sandbox: environment variable {k!r} holds a NUL byte")
        strings.append(f"{k}={v}")
    sizes = [len(os.fsencode(s)) + 1 for s in strings]
    longest = max(sizes, default=0)
    if longest > _MAX_ARG_STRLEN:
        raise CommandTooLongError(
            f"sandbox: one argument or variable of the command is too long for exec ({longest} "
            f"bytes, at most {_MAX_ARG_STRLEN}); pass large inputs through a file or stdin"
        )
    total = sum(sizes) + 8 * len(sizes)
    top = max(os.sysconf("SC_ARG_MAX") - _ARGS_RESERVE, _ARGS_RESERVE)
    if total > top:
        raise CommandTooLongError(
            f"sandbox: the command and its environment are too long for exec ({total} bytes, "
            f"at most {top}); pass large inputs through a file or stdin"
        )


def run_sandboxed(
    cmd: list[str] | str,
    workspace: str | os.PathLike,
    limits: SandboxLimits = SandboxLimits(),
    *,
    copy_workspace: bool = False,
    env: dict[str, str] | None = None,
    stdin: str | bytes | None = None,
    unsafe: bool = False,
    backend: str | None = None,
    hide: Sequence[str | os.PathLike[str]] = (),
) -> SandboxResult:
    """Run `cmd` (a list, or a string for /bin/sh -c) with cwd = `workspace`, isolated.

    copy_workspace: run on a throw-away copy (the original is untouched). env: extra variables on
    top of a minimal fixed environment. backend: force "bwrap" | "unshare" | "unsafe" (default:
    the best that works). hide: host paths that must be unreadable inside although a bind would
    show them (a directory becomes empty and read-only, a file cannot be opened; e.g. an installed
    package under the bound site-packages); refused with the unsafe backend, which cannot hide.
    Raises HillclimbError when no isolation backend works and not `unsafe`.
    """
    limits.validate()
    ws = Path(workspace)
    if not ws.is_dir():
        raise HillclimbError(f"sandbox workspace {str(ws)!r} is not a directory")
    _check_workspace(ws, copy_workspace)
    if isinstance(cmd, list | tuple) and not cmd:
        raise HillclimbError("sandbox: empty command")
    _check_passable(cmd, env)
    if backend is None:
        backend = sandbox_backend()
        if backend is None:
            if not unsafe:
                raise _no_backend_error()
            backend = "unsafe"
    elif backend == "unsafe":
        if not unsafe:
            raise HillclimbError("sandbox backend 'unsafe' requires unsafe=True")
    elif backend in BACKENDS:
        ok, why = probe_backend(backend)
        if not ok:
            raise HillclimbError(f"sandbox backend {backend!r} does not work here: {why}")
    else:
        raise ConfigError(f"unknown sandbox backend {backend!r} (bwrap, unshare, unsafe)")
    if backend == "unsafe" and hide:
        raise ConfigError("sandbox: hide= needs an isolating backend; 'unsafe' cannot hide paths")
    if backend == "unsafe":
        warnings.warn(
            "hillclimb sandbox: UNSAFE mode — the command runs WITHOUT filesystem or network "
            "isolation (rlimits and a process group only)",
            RuntimeWarning,
            stacklevel=2,
        )
    if not copy_workspace:
        # the real directory: the owner hand-over and the quota walk never follow a symlink, so
        # through a symlinked path the run could not write its workspace and the quota saw nothing
        return _run(backend, cmd, os.path.realpath(ws), limits, env, stdin, True, hide)
    # not TemporaryDirectory: its rmtree recursed per level, and a run nesting ~1000 levels in
    # the copy made the cleanup raise RecursionError and leave the tree behind (`remove_tree`)
    tmp = tempfile.mkdtemp(prefix="hillclimb-sandbox-")
    try:
        copy = os.path.join(tmp, ws.resolve().name or "workspace")
        _copy_workspace(ws, copy)
        return _run(backend, cmd, copy, limits, env, stdin, False, hide)
    finally:
        remove_tree(tmp)


def _copy_workspace(ws: Path, copy: str) -> None:
    """The throw-away copy; a tree that cannot be copied (a named pipe or socket in it, an
    unreadable file) is a clear error naming the first path, not a shutil traceback."""
    try:
        shutil.copytree(ws, copy, symlinks=True, copy_function=copy_file)
    except shutil.Error as exc:
        errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        first = f"{errors[0][0]}: {errors[0][2]}" if errors and len(errors[0]) == 3 else str(exc)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise HillclimbError(
            f"sandbox: cannot copy workspace {str(ws)!r}: {first}{more}; remove it, or run "
            "--in-place"
        ) from None
    except OSError as exc:
        raise HillclimbError(f"sandbox: cannot copy workspace {str(ws)!r}: {exc}") from None
    except RecursionError:
        # shutil.copytree recurses once per level: an in-place run may nest deeper than that
        # (the quota lets a workspace that started deep grow deeper), and a copy run of it
        # raised RecursionError (session 25)
        raise HillclimbError(
            f"sandbox: cannot copy workspace {str(ws)!r}: its directories are nested too deep "
            f"to copy (more than {MAX_DEPTH} levels is more than any task needs); delete them, "
            "or run --in-place"
        ) from None


def batch_records(
    res: SandboxResult,
    token: str,
    n: int,
    runner: str,
    accept: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[int, dict[str, Any]]:
    """The records a batch runner printed from inside one `run_sandboxed` call, by item index.

    A batch runner (code checks in `problems/verify.py`, test programs in `eval/programs.py`)
    writes one JSON object a line, each tagged `"t": token` with the batch's secret token (so a
    candidate's own stdout cannot pass for a record), first `{"start": true}`, then one record
    per item `"i"` in 0..n-1. The first record of an index that `accept` takes is kept. Raises
    HillclimbError, naming `runner`, when the runner never started or the sandbox refused: a
    broken harness must not read as candidates that all fail.
    """
    started = False
    recs: dict[int, dict[str, Any]] = {}
    for line in res.stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if type(rec) is not dict or rec.get("t") != token:
            continue
        started = started or "start" in rec
        i = rec.get("i")
        if type(i) is int and 0 <= i < n and i not in recs and (accept is None or accept(rec)):
            recs[i] = rec
    if not started or res.status == "refused":
        raise HillclimbError(
            f"{runner} failed in the sandbox ({res.status}, backend {res.backend}): "
            f"{res.stderr.strip()[-500:]}"
        )
    return recs
