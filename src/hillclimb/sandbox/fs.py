"""What a sandboxed command sees: the mount plan, its environment, its identity, workspace ownership.

Both isolation backends (bubblewrap and the `unshare` init) build the same view from one
`MountPlan`, so they cannot drift apart: an empty root, read-only binds of the system directories
(/usr and the merged-/usr symlinks), a short whitelist of /etc, the Python interpreter's prefixes
(so `python -m pytest` from the host venv works), fresh tmpfs for /tmp and /dev/shm, synthesized
/etc/passwd, /etc/group and /etc/hosts, and the workspace as the only writable host path.
Everything else — /root, /home, /work, other users' files, /etc/shadow, the host's /tmp — simply
does not exist inside. A whitelist, because a blacklist always forgets a directory.

Hiding (`hidden_targets`): a caller can also name host paths that must not be readable inside even
though a bind would show them — e.g. the code checker hides the installed `hillclimb` package
(its generators and reference solutions sit in the bound site-packages). A hidden directory gets
an empty read-only tmpfs mounted over it, a hidden file a read-only bind of /dev/null, both after
every other mount. Only paths a bind actually shows need it; others are already absent. The
mount target is the path *inside* the sandbox (relative to the covering bind's destination), so a
symlinked host prefix cannot make the mount land beside the file it was meant to cover.

Identity: when the host process is root, the command runs as a fresh unprivileged uid per run
(`alloc_uid`), not as root-without-capabilities. Root would still own most of the bound files,
could write root-owned /proc knobs, and is exempt from RLIMIT_NPROC (the kernel never applies it to
uid 0), so a fork bomb would be unbounded. A per-run uid makes RLIMIT_NPROC count only this
sandbox's processes. The price: the workspace must be writable by that uid, so `WorkspaceOwner`
chowns it for the run and restores the recorded owners afterwards (O(files), ~1 ms per 1000).
"""

from __future__ import annotations

import itertools
import os
import site
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from hillclimb.errors import ConfigError

# /etc entries a command plausibly needs (dynamic linker, time zone, name-service config). Everything
# else in /etc (shadow, ssh host keys, ssl/private, credentials in config files) stays hidden.
ETC_WHITELIST = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "alternatives",
    "mime.types",
    "os-release",
    "protocols",
    "services",
    "locale.alias",
    "python3",
    f"python{sys.version_info.major}.{sys.version_info.minor}",
)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEV_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")

UID_BASE = 1_200_000  # far above any real account; never in /etc/passwd
_uid_counter = itertools.count()


def alloc_uid() -> int:
    """A uid for one run: distinct for concurrent runs in this and (almost surely) other processes."""
    return UID_BASE + (os.getpid() % 100_000) * 100 + next(_uid_counter) % 100


@dataclass
class MountPlan:
    """The sandbox's filesystem, in mount order (later entries are mounted over earlier ones)."""

    ro_binds: list[tuple[str, str]] = field(default_factory=list)  # (host src, sandbox dst)
    symlinks: list[tuple[str, str]] = field(default_factory=list)  # (target, link path)
    files: list[tuple[str, str]] = field(default_factory=list)  # (sandbox path, content)
    tmpfs: list[tuple[str, int]] = field(default_factory=list)  # (sandbox path, size bytes)
    dev_binds: list[str] = field(default_factory=list)  # device nodes bound read-write
    python_binds: list[str] = field(default_factory=list)  # interpreter prefixes, read-only
    workspace: str = "/"
    hidden: list[tuple[str, bool]] = field(default_factory=list)  # (sandbox path, is_dir), last


def _covered(path: str, kept: list[str]) -> bool:
    real = os.path.realpath(path)
    for k in kept:
        rk = os.path.realpath(k)
        if real == rk or real.startswith(rk.rstrip("/") + "/"):
            return True
    return False


def python_paths() -> list[str]:
    """Host directories the current interpreter needs: prefixes, site-packages, its real binary."""
    cands = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    cands += site.getsitepackages()
    if site.ENABLE_USER_SITE and site.USER_SITE and site.USER_SITE in sys.path:
        cands.append(site.USER_SITE)
    cands.append(os.path.dirname(os.path.realpath(sys.executable)))
    kept: list[str] = [d for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    out: list[str] = []
    for c in sorted({os.path.abspath(c) for c in cands if c and os.path.isdir(c)}, key=len):
        if not _covered(c, kept):
            kept.append(c)
            out.append(c)
    return out


def passwd_files(uid: int, gid: int) -> list[tuple[str, str]]:
    users = "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    groups = "root:x:0:\n"
    if uid != 0:
        users += f"sandbox:x:{uid}:{gid}:sandbox:/tmp:/bin/sh\n"
        groups += f"sandbox:x:{gid}:\n"
    users += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    groups += "nogroup:x:65534:\n"
    hosts = "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost\n"
    return [("/etc/passwd", users), ("/etc/group", groups), ("/etc/hosts", hosts)]


def _under(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


def hidden_targets(
    paths: Iterable[str | os.PathLike[str]], binds: list[tuple[str, str]], workspace: str
) -> list[tuple[str, bool]]:
    """(sandbox path, is_dir) to cover for each host path in `paths` that a bind would show.

    `binds` are the plan's (host source, sandbox destination) pairs. Paths that do not exist, or
    that no bind shows, need nothing. Hiding the workspace (or a directory holding it) is refused.
    """
    ws_real = os.path.realpath(workspace)
    roots = [(os.path.realpath(src), dst) for src, dst in binds]
    out: list[tuple[str, bool]] = []
    for p in paths:
        path = os.path.abspath(os.fspath(p))
        if not os.path.lexists(path):
            continue
        real = os.path.realpath(path)
        if _under(ws_real, real):
            raise ConfigError(f"sandbox: cannot hide {path!r}: the workspace is inside it")
        covering = [(src, dst) for src, dst in roots if _under(real, src)]
        if not covering:
            continue  # no bind shows it: already absent inside
        src, dst = max(covering, key=lambda x: len(x[0]))  # the innermost bind shows it
        rel = os.path.relpath(real, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        if (target, os.path.isdir(real)) not in out:
            out.append((target, os.path.isdir(real)))
    return out


def build_plan(
    workspace: str,
    uid: int,
    gid: int,
    tmpfs_bytes: int,
    hide: Iterable[str | os.PathLike[str]] = (),
) -> MountPlan:
    plan = MountPlan(workspace=workspace)
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            plan.symlinks.append((os.readlink(d), d))
        elif os.path.isdir(d):
            plan.ro_binds.append((d, d))
    for name in ETC_WHITELIST:
        p = "/etc/" + name
        if os.path.exists(p):
            plan.ro_binds.append((p, p))
    plan.files = passwd_files(uid, gid)
    plan.tmpfs = [("/tmp", tmpfs_bytes), ("/dev/shm", min(tmpfs_bytes, 64 << 20))]
    plan.dev_binds = [d for d in DEV_NODES if os.path.exists(d)]
    plan.python_binds = [p for p in python_paths() if not _covered(p, [workspace])]
    binds = plan.ro_binds + [(p, p) for p in plan.python_binds + plan.dev_binds]
    plan.hidden = hidden_targets(hide, binds + [(workspace, workspace)], workspace)
    return plan


def sandbox_env(extra: dict[str, str] | None, user: str) -> dict[str, str]:
    """A minimal, fixed environment: the host's variables (API keys, tokens) never leak inside.

    Thread pools are pinned to one thread: BLAS/OpenMP threads count against max_procs and each
    reserves address space that RLIMIT_AS charges. PYTHONHASHSEED is fixed for reproducible runs.
    Caller-supplied `extra` variables override these.
    """
    path = [os.path.dirname(os.path.abspath(sys.executable))]
    path += ["/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin"]
    env = {
        "PATH": ":".join(dict.fromkeys(path)),
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


class WorkspaceOwner:
    """Hand a workspace to the sandbox uid for one run, then give every path its owner back.

    Symlinks are changed with lchown (never their targets). Regular files with more than one hard
    link are left alone: a hard link could point at a host file outside the workspace.
    """

    def __init__(self, root: str, uid: int, gid: int, restore: bool) -> None:
        self.root, self.uid, self.gid, self.restore = root, uid, gid, restore
        self.saved: dict[str, tuple[int, int]] = {}
        st = os.lstat(root)
        self.default = (st.st_uid, st.st_gid)

    def _walk(self):
        yield self.root
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                yield os.path.join(dirpath, name)

    def give(self) -> None:
        for path in self._walk():
            st = os.lstat(path)
            if st.st_nlink > 1 and not os.path.isdir(path) and not os.path.islink(path):
                continue
            if self.restore:
                self.saved[path] = (st.st_uid, st.st_gid)
            os.lchown(path, self.uid, self.gid)

    def take_back(self) -> None:
        if not self.restore:
            return
        for path in self._walk():
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if st.st_uid != self.uid and path not in self.saved:
                continue  # not touched by us nor created by the sandbox
            uid, gid = self.saved.get(path, self.default)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.lchown(path, uid, gid)
