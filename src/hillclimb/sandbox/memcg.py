"""A memory cgroup per sandbox run: one cap on everything the run holds in memory, where possible.

Why: RLIMIT_AS bounds each process's address space, but memory that no process maps is outside
it — memfd files, System V shared memory (an IPC namespace of its own has no useful shmall) and
tmpfs mounted inside a nested user namespace (which the code checker's runner needs, so it cannot
be refused). Session 24 measured 800 MB held each of these ways by one run with memory_mb=200 (the
probe's own stop, not a limit). A memory cgroup charges every page the run's processes allocate —
anonymous memory, page cache, and all of those memory-backed files — wherever they are mounted,
so one cap covers them; over it the kernel fails the allocation or OOM-kills inside the group,
and the run is reported as "memory".

Where: a child of the caller's own memory cgroup (cgroup v1's memory hierarchy, or cgroup v2
when the caller's cgroup may hand the memory controller to children), created per run and removed
after it. Best effort: cgroups are not writable in every container or as a non-root user, and
then `MemoryCgroup.create` returns None and the run goes on with the rlimits alone (as before);
`memcg_report` says which. A process of the run joins the group before it forks — the unshare
init first thing, for bwrap a tiny interpreter that then becomes bwrap (`join_argv`) — so every
process of the command is in it from its start; a failed join refuses the run.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sys
import time

_PREFIX = "hillclimb-sandbox-"
_counter = itertools.count()
# The first process of the run: joins the group, then becomes the backend (exec, same pid).
# Isolated (-I -S): no variable or site directory of the command's can steer it.
_JOIN_SRC = (
    "import os,sys\n"
    "try:\n"
    "    with open(sys.argv[1], 'w') as f: f.write(str(os.getpid()))\n"
    "except OSError as e:\n"
    "    sys.stderr.write(f'sandbox: cannot join the memory cgroup: {e}\\n'); os._exit(125)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _own_cgroups() -> dict[str, str]:
    """controller (or "" for cgroup v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in ctrls.split(",") if ctrls else [""]:
                    out[c] = path
    except (OSError, ValueError):
        pass
    return out


def _mounts() -> list[tuple[str, str, str, str]]:
    """(mount point, root inside the hierarchy, fs type, super options) of every mount."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rfields = left.split(), right.split()
                if len(fields) >= 5 and len(rfields) >= 3:
                    point = fields[4].replace("\\040", " ")
                    out.append((point, fields[3], rfields[0], rfields[2]))
    except OSError:
        pass
    return out


def _base_dir() -> tuple[str, int] | None:
    """(directory under which per-run groups are made, cgroup version), or None."""
    own = _own_cgroups()
    mounts = _mounts()
    if "memory" in own:  # v1 memory hierarchy
        for point, root, fstype, opts in mounts:
            if fstype == "cgroup" and "memory" in opts.split(","):
                rel = os.path.relpath(own["memory"], root) if root != "/" else own["memory"]
                d = os.path.normpath(os.path.join(point, rel.lstrip("/")))
                if os.path.isfile(os.path.join(d, "memory.limit_in_bytes")):
                    return d, 1
    if "" in own:
        for point, root, fstype, _ in mounts:
            if fstype == "cgroup2":
                rel = os.path.relpath(own[""], root) if root != "/" else own[""]
                d = os.path.normpath(os.path.join(point, rel.lstrip("/")))
                if _v2_delegates_memory(d):
                    return d, 2
    return None


def _v2_delegates_memory(d: str) -> bool:
    """Whether children of `d` get the memory controller (enabling it if `d` may)."""
    try:
        with open(os.path.join(d, "cgroup.controllers")) as f:
            if "memory" not in f.read().split():
                return False
        with open(os.path.join(d, "cgroup.subtree_control")) as f:
            if "memory" in f.read().split():
                return True
        with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
            f.write("+memory")  # fails (EBUSY) for a non-root group holding processes
        return True
    except OSError:
        return False


@functools.cache
def _probe() -> tuple[str, int] | None:
    """The base directory when a per-run group can really be made and capped here (once per
    process: a trial group is created, capped and removed); stale groups of dead callers go."""
    base = _base_dir()
    if base is None:
        return None
    _remove_stale(base[0])
    trial = MemoryCgroup._make(base, 64 << 20)
    if trial is None:
        return None
    trial.remove()
    return base


def _remove_stale(base: str) -> None:
    """Empty per-run groups whose creating process is gone (a caller killed mid-run)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            if not name.startswith(_PREFIX):
                continue
            pid = name[len(_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(base, name))


def memcg_report() -> dict[str, object]:
    """Whether runs get a memory cgroup here, and where (for `hillclimb sandbox check`)."""
    base = _probe()
    if base is None:
        return {"available": False, "reason": "no writable memory cgroup (rlimits only)"}
    return {"available": True, "reason": f"cgroup v{base[1]} under {base[0]}"}


class MemoryCgroup:
    """One run's memory cgroup: `limit` bytes for all its processes and the memory-backed files
    they fill (tmpfs, memfd, shared memory), swap included where the kernel accounts it."""

    def __init__(self, path: str, version: int) -> None:
        self.path, self.version = path, version

    @classmethod
    def create(cls, limit: int) -> MemoryCgroup | None:
        """A fresh group capped at `limit` bytes, or None when this machine offers none."""
        base = _probe()
        return cls._make(base, limit) if base is not None else None

    @classmethod
    def _make(cls, base: tuple[str, int], limit: int) -> MemoryCgroup | None:
        d, version = base
        path = os.path.join(d, f"{_PREFIX}{os.getpid()}-{next(_counter)}")
        try:
            os.mkdir(path)
        except OSError:
            return None
        cg = cls(path, version)
        try:
            if version == 1:
                cg._write("memory.limit_in_bytes", limit)
                if os.path.exists(os.path.join(path, "memory.memsw.limit_in_bytes")):
                    cg._write("memory.memsw.limit_in_bytes", limit)  # no escape into swap
            else:
                cg._write("memory.max", limit)
                with contextlib.suppress(OSError):
                    cg._write("memory.swap.max", 0)
        except OSError:
            cg.remove()
            return None
        return cg

    def _write(self, name: str, value: int) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(str(value))

    def _read(self, name: str) -> str:
        try:
            with open(os.path.join(self.path, name)) as f:
                return f.read()
        except OSError:
            return ""

    def procs_file(self) -> str:
        """The file a process writes its pid to, to join the group."""
        return os.path.join(self.path, "cgroup.procs")

    def join_argv(self) -> list[str]:
        """The prefix that moves the run's first process into this group before it runs on
        (bwrap; the unshare init joins by itself, sparing this interpreter start: ~20-40 ms)."""
        return [sys.executable, "-I", "-S", "-c", _JOIN_SRC, self.procs_file()]

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over the cap."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in self._read(name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def peak(self) -> int:
        """The most bytes the group held at once (0 when the kernel does not say)."""
        text = self._read("memory.max_usage_in_bytes" if self.version == 1 else "memory.peak")
        return int(text) if text.strip().isdigit() else 0

    def remove(self) -> None:
        """Remove the group; its processes are gone or going (their namespace's init died), so
        a busy group is retried briefly. Pages still charged to it move to its parent."""
        for i in range(50):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if i == 49:
                    return  # left for `_remove_stale` of a later process
                time.sleep(0.01)
