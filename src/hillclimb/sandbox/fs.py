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

Disk: the workspace is the one writable host path, so it is also the one way a run can fill the
host's disk (RLIMIT_FSIZE caps each file, not how many). `workspace_bytes` measures what the
workspace holds, which `core` polls against `SandboxLimits.max_workspace_mb`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import site
import stat
import sys
from collections.abc import Iterable, Iterator
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
    """A uid for one run: distinct for concurrent runs in this process (up to 100) and in every
    other process of this PID namespace (its pid, whole: up to 2**22, so the uid stays below
    2**32 - 1). It used to be the pid modulo 100000, so processes 7 and 100007 ran their
    sandboxes as one uid, sharing one RLIMIT_NPROC count: one's fork bomb failed the other's
    honest forks (session 23)."""
    return UID_BASE + os.getpid() * 100 + next(_uid_counter) % 100


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
    # interpreter prefixes inside the workspace: read-only again, mounted over the workspace
    ro_in_workspace: list[str] = field(default_factory=list)
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
    paths = python_paths()
    plan.python_binds = [p for p in paths if not _covered(p, [workspace])]
    # A workspace holding the interpreter (a project's own .venv, run in place) must not make it
    # writable: code planted there (a .pth, a patched module) would run in every later,
    # unsandboxed start of that interpreter. Real paths: the workspace is bound at its real path.
    plan.ro_in_workspace = [os.path.realpath(p) for p in paths if _covered(p, [workspace])]
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


def _keep_owner(st: os.stat_result) -> bool:
    """Entries `WorkspaceOwner` never hands over: files with several hard links (one could be a
    host file outside the workspace), and set-user-ID / set-group-ID files — a chown clears those
    bits for good (an in-place run of `true` stripped them), and restoring them after a run that
    could rewrite the file would make a setuid binary of its code. Left as they are, the run
    cannot write them (unless their mode lets everyone)."""
    if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return False
    return st.st_nlink > 1 or bool(st.st_mode & (stat.S_ISUID | stat.S_ISGID))


class WorkspaceOwner:
    """Hand a workspace to the sandbox uid for one run, then give every path its owner back.

    Symlinks are changed with lchown (never their targets). Regular files with more than one hard
    link, and set-user-ID / set-group-ID files, are left alone (`_keep_owner`). The tree is
    walked by directory file descriptors (`TreeWalk`): a run can nest directories past PATH_MAX,
    where every path-based call fails (it used to crash the caller with ENAMETOOLONG).
    """

    def __init__(self, root: str, uid: int, gid: int, restore: bool) -> None:
        self.root, self.uid, self.gid, self.restore = root, uid, gid, restore
        self.saved: dict[str, tuple[int, int]] = {}
        st = os.lstat(root)
        self.default = (st.st_uid, st.st_gid)

    def give(self) -> None:
        st = os.lstat(self.root)
        if self.restore:
            self.saved[self.root] = (st.st_uid, st.st_gid)
        os.lchown(self.root, self.uid, self.gid)
        for fd, name, key, st in TreeWalk(self.root):
            if _keep_owner(st):
                continue
            if self.restore:
                self.saved[key] = (st.st_uid, st.st_gid)
            os.chown(name, self.uid, self.gid, dir_fd=fd, follow_symlinks=False)

    def take_back(self) -> None:
        if not self.restore:
            return
        uid, gid = self.saved.get(self.root, self.default)
        os.lchown(self.root, uid, gid)
        for fd, name, key, st in TreeWalk(self.root):
            if st.st_uid != self.uid and key not in self.saved:
                continue  # not touched by us nor created by the sandbox
            uid, gid = self.saved.get(key, self.default)
            if (st.st_uid, st.st_gid) != (uid, gid):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)


MAX_DEPTH = 256  # directory levels a walk descends; deeper is a tree no task needs
MIN_ENTRY_BYTES = 4096  # one block: an empty file or a directory still costs an inode and a block
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeWalk:
    """Every entry under `root` as (parent directory fd, name, path, lstat), depth first.

    Why file descriptors: every call is relative to an open parent directory, so no path is
    longer than one name and a tree nested past PATH_MAX is walked like any other (the `path`
    yielded is a key, never opened). Symlinks are never followed (O_NOFOLLOW), entries that vanish
    are skipped, and one fd is open per level, at most `MAX_DEPTH` levels: deeper directories are
    not entered and `too_deep` says so. `make_readable`: a directory the caller owns but cannot
    list or search (a run sharing the caller's uid can chmod its own) gets u+rwx back first,
    through the directory's own fd, so a symlink swapped in cannot redirect the chmod.
    """

    def __init__(self, root: str, make_readable: bool = False) -> None:
        self.root, self.make_readable, self.too_deep = root, make_readable, False

    def __iter__(self) -> Iterator[tuple[int, str, str, os.stat_result]]:
        top = self._open(None, self.root)
        if top is None:
            return
        stack = [(top, self.root, iter(self._names(top)))]
        try:
            while stack:
                fd, key, names = stack[-1]
                name = next(names, None)
                if name is None:
                    os.close(stack.pop()[0])
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                path = f"{key}/{name}"
                yield fd, name, path, st
                if not stat.S_ISDIR(st.st_mode):
                    continue
                if len(stack) >= MAX_DEPTH:
                    self.too_deep = True
                    continue
                child = self._open(fd, name)
                if child is not None:
                    stack.append((child, path, iter(self._names(child))))
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    @staticmethod
    def _names(fd: int) -> list[str]:
        try:
            return sorted(os.listdir(fd))
        except OSError:
            return []

    def _open(self, parent: int | None, name: str) -> int | None:
        """An O_RDONLY fd of directory `name` (relative to `parent`), or None."""
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except PermissionError:
            return self._reopen_readable(parent, name) if self.make_readable else None
        except OSError:
            return None
        if self.make_readable:
            with contextlib.suppress(OSError):
                st = os.fstat(fd)
                if st.st_uid == os.geteuid() and st.st_mode & 0o700 != 0o700:
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
        return fd

    @staticmethod
    def _reopen_readable(parent: int | None, name: str) -> int | None:
        """A directory opened O_PATH (no read permission needed), made u+rwx through
        /proc/self/fd if it is ours, then opened for reading through that same link."""
        flags = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
        try:
            p = os.open(name, flags, dir_fd=parent)
        except OSError:
            return None
        try:
            st = os.fstat(p)
            if st.st_uid != os.geteuid():
                return None
            os.chmod(f"/proc/self/fd/{p}", stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
            return os.open(f"/proc/self/fd/{p}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        finally:
            os.close(p)


def workspace_bytes(root: str) -> tuple[int, bool]:
    """(bytes the tree under `root` occupies on disk, du-style; whether it is deeper than
    `MAX_DEPTH` levels), for the workspace quota.

    Allocated blocks, not apparent sizes (a sparse file does not fill a disk), every entry counted
    as at least one 4 KiB block (so a flood of empty files counts too), each hard-linked inode
    once, symlinks never followed, other file systems not entered (`TreeWalk`). Directories the
    run made unreadable are made readable to their owner again to be counted: the run could
    have done the same itself.
    """
    try:
        top = os.lstat(root)
    except OSError:
        return 0, False
    seen: set[tuple[int, int]] = set()
    total = max(top.st_blocks * 512, MIN_ENTRY_BYTES)
    walk = TreeWalk(root, make_readable=True)
    for _, _, _, st in walk:
        if st.st_dev != top.st_dev:
            continue  # a mount point inside the workspace: another file system's space
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        total += max(st.st_blocks * 512, MIN_ENTRY_BYTES)
    return total, walk.too_deep


def remove_tree(path: str) -> None:
    """Delete the directory `path` and everything under it, however deep (a missing path is
    fine).

    Why not `shutil.rmtree`: it recurses once per level, so a run that nested ~1000 directories
    in its throw-away copy (`mkdir -p` of 1000 levels a few times: milliseconds) made the
    cleanup raise RecursionError out of `run_sandboxed` and left the whole tree in /tmp
    (session 25). Here a pass walks at most `MAX_DEPTH` levels by directory fds (`TreeWalk`'s
    opening, which also gives u+rwx back to directories the caller owns but the run locked),
    unlinking as it goes; a directory at that depth is renamed up to the top, to be emptied by
    the next pass. Symlinks are removed, never followed."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        pfd = os.open(parent, _DIR_FLAGS)
    except FileNotFoundError:
        return
    try:
        while _exists(pfd, name):
            if not stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=pfd)
            elif not _remove_pass(pfd, name) and _exists(pfd, name):
                raise OSError(errno.ENOTEMPTY, f"cannot remove {path!r}: entries remain")
    finally:
        os.close(pfd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _remove_pass(pfd: int, name: str) -> bool:
    """One pass of `remove_tree` over directory `name` in `pfd`; True when it moved a subtree
    up (another pass is needed), False when it found nothing more to move."""
    opener = TreeWalk("", make_readable=True)
    top = opener._open(pfd, name)
    if top is None:
        raise OSError(errno.EACCES, f"cannot open {name!r} to remove it")
    stack = [(top, pfd, name, iter(TreeWalk._names(top)))]
    moved = False
    try:
        while stack:
            fd, up, here, names = stack[-1]
            entry = next(names, None)
            if entry is None:
                os.close(stack.pop()[0])
                try:
                    os.rmdir(here, dir_fd=up)
                except OSError as exc:  # ENOTEMPTY: a subtree was moved up into it
                    if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                        raise
                continue
            try:
                st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry, dir_fd=fd)
            elif len(stack) >= MAX_DEPTH:
                _move_up(fd, entry, top)
                moved = True
            else:
                child = opener._open(fd, entry)
                if child is None:
                    raise OSError(errno.EACCES, f"cannot open {entry!r} to remove it")
                stack.append((child, fd, entry, iter(TreeWalk._names(child))))
    finally:
        for fd, _, _, _ in stack:
            os.close(fd)
    return moved


def _move_up(fd: int, entry: str, top: int) -> None:
    """Rename directory `entry` of `fd` into `top` under a name not taken there."""
    for n in itertools.count():
        try:
            os.rename(entry, f".removing-{n}", src_dir_fd=fd, dst_dir_fd=top)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise


def tree_pids(root_pid: int) -> list[int]:
    """`root_pid` and every process below it, from each /proc entry's parent pid (one scan).

    Why ppids: every process of a sandbox run descends from the backend we started (an orphan is
    reparented to the PID namespace's init, itself below it), and /proc/PID/task/*/children is
    not in every kernel."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rpartition(b")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _proc_links(pid: int) -> Iterator[str]:
    """/proc links to the files a process holds: open fds of each thread (a thread can unshare
    its fd table) and its file mappings (map_files; readable by root only, skipped otherwise)."""
    dirs = [f"/proc/{pid}/map_files"]
    with contextlib.suppress(OSError):
        dirs += [f"/proc/{pid}/task/{t}/fd" for t in os.listdir(f"/proc/{pid}/task")]
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        yield from (f"{d}/{n}" for n in names)


def unlinked_bytes(root_pid: int, dev: int) -> int:
    """Blocks (bytes, each file at least one 4 KiB block) of files on device `dev` that the
    processes under `root_pid` hold open or mapped but that no directory names any more."""
    return sum(unlinked_files(tree_pids(root_pid), dev).values())


def unlinked_files(pids: Iterable[int], dev: int) -> dict[int, int]:
    """inode -> bytes (each file at least one 4 KiB block) of the files on device `dev` that the
    processes `pids` hold open or mapped but that no directory names any more.

    Why: an unlinked file keeps its blocks for as long as a process holds it, and the tree walk
    (`workspace_bytes`) cannot see it — a run wrote 80 MB this way past a 5 MB quota, and
    max_open_files x max_file_mb per process could fill any disk. Files still linked are the
    walk's (counted there once). Files whose only reference is an fd in flight in a unix socket
    (SCM_RIGHTS) are `inflight.InFlightFiles`'."""
    out: dict[int, int] = {}
    for pid in pids:
        for link in _proc_links(pid):
            try:
                st = os.stat(link)
            except OSError:
                continue
            if st.st_dev != dev or st.st_nlink or not stat.S_ISREG(st.st_mode):
                continue
            out[st.st_ino] = max(st.st_blocks * 512, MIN_ENTRY_BYTES)
    return out


def written_bytes(pids: Iterable[int]) -> int | None:
    """Bytes the processes `pids` (and the children they reaped) sent towards storage, from
    /proc/PID/io (`write_bytes`, counted when a page is dirtied, less `cancelled_write_bytes`,
    dirty pages truncated away); None when no process's counters can be read.

    Why: a cheap measure of how fast a run fills its workspace, O(processes) where the tree walk
    is O(files). It only over-states growth (deleted files are not subtracted), so it is used to
    decide when a walk is due, never as the measurement itself."""
    total, readable = 0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io", "rb") as f:
                lines = f.read().splitlines()
        except OSError:
            continue  # gone, or not ours to read
        fields = dict(line.split(b": ", 1) for line in lines if b": " in line)
        with contextlib.suppress(KeyError, ValueError):
            total += int(fields[b"write_bytes"]) - int(fields[b"cancelled_write_bytes"])
            readable = True
    return total if readable else None


def _copy_data(fi: int, fo: int, start: int, end: int) -> None:
    os.lseek(fi, start, os.SEEK_SET)
    os.lseek(fo, start, os.SEEK_SET)
    while start < end:
        chunk = memoryview(os.read(fi, min(1 << 20, end - start)))
        if not chunk:
            break
        start += len(chunk)
        while chunk:
            chunk = chunk[os.write(fo, chunk) :]


def copy_file(src: str, dst: str, *, follow_symlinks: bool = True) -> str:
    """`shutil.copy2` that keeps holes as holes, for every copy of a workspace (the sandbox's
    throw-away copy, the harness's episode and grading copies). A sparse file (`truncate -s
    250M`) holds next to no blocks, so the disk quota (allocated blocks) allows a thousand of
    them, and a plain copy — grading's runs outside the sandbox — wrote every zero. Data ranges
    come from SEEK_DATA/SEEK_HOLE (a file system without them reports one range: all data)."""
    if not follow_symlinks and os.path.islink(src):
        return shutil.copy2(src, dst, follow_symlinks=False)
    if not stat.S_ISREG(os.stat(src).st_mode):  # a FIFO: opening it would block; shutil refuses
        return shutil.copy2(src, dst)
    fi = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # never blocks on a swap
    try:
        st = os.fstat(fi)
        if not stat.S_ISREG(st.st_mode) or st.st_blocks * 512 >= st.st_size:
            return shutil.copy2(src, dst)  # dense (the common case): the fast path
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            pos = 0
            while pos < st.st_size:
                try:
                    start = os.lseek(fi, pos, os.SEEK_DATA)
                except OSError:  # ENXIO: only a hole is left
                    break
                end = os.lseek(fi, start, os.SEEK_HOLE)
                _copy_data(fi, fo, start, end)
                pos = end
            os.ftruncate(fo, st.st_size)
        finally:
            os.close(fo)
    finally:
        os.close(fi)
    shutil.copystat(src, dst)
    return dst
