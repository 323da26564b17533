"""PID 1 of the `unshare` sandbox backend: build the sandbox's filesystem, then run the command.

Why this file exists: bubblewrap is not always installed (or usable), but util-linux `unshare` is.
`unshare` only creates namespaces; something running *inside* them still has to build a private
root (tmpfs + read-only binds of the few host paths the command needs), bring up loopback, drop
privileges, apply rlimits, reap orphans as PID 1 and report how the command ended. This script does
exactly that, with the standard library only (it is run as `python -I -S init.py CONFIG`,
so it cannot import hillclimb, and it must start fast: ~15 ms).

Why pivot_root onto a fresh tmpfs instead of hiding paths one by one: a whitelist cannot forget a
private directory; a blacklist can. Bind sources are opened (O_PATH) *before* the staging tmpfs is
mounted, so any host path (even one under the staging directory) can still be bound. Paths the
caller asked to hide are covered last: a directory by an empty read-only tmpfs, a file by a
read-only bind of /dev/null (an ordinary entry at the end of `binds`).

Protocol: argv[1] is the number of an inherited file descriptor (a memfd) holding the JSON config
(see `core.py::_unshare_argv`; not the JSON itself: one argument holds at most 128 KiB). One line of JSON is written to the
inherited `status_fd`: {"exit": N} | {"signal": N} | {"error": "..."}; when this process exits, the
kernel kills every process left in the PID namespace, so nothing outlives the command.
"""

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2
ST_RELATIME = 4096  # statvfs flag value differs from MS_RELATIME
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
RLIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
}

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class SetupError(Exception):
    pass


def _b(s):
    return None if s is None else os.fsencode(s)


def mount(src, target, fstype, flags, data=None):
    if libc.mount(_b(src), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        raise SetupError(f"mount {src!r} on {target!r}: {os.strerror(err)}")


def remount_ro(target, extra=0):
    # A read-only remount of a bind must keep the flags the kernel locked on the source mount
    # (nosuid/nodev/noexec/atime), or it fails with EPERM inside a user namespace.
    f = os.statvfs(target).f_flag
    keep = f & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    if f & ST_RELATIME:
        keep |= MS_RELATIME
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep | extra)


def make_target(path, is_dir):
    if is_dir:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def loopback_up():
    # SIOCGIFFLAGS/SIOCSIFFLAGS on "lo": tests inside the sandbox may talk to their own servers.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), 0x8913, ifr))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14x", b"lo", flags | 0x1 | 0x40))
    finally:
        s.close()


def build_root(cfg):
    stage = cfg["stage"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    fds = []
    for src, _dst, _mode in cfg["binds"]:
        fds.append(os.open(src, os.O_PATH | os.O_CLOEXEC))
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    root = lambda p: stage + p  # noqa: E731 - all sandbox paths are absolute
    for path, size, mode in cfg["tmpfs"]:
        os.makedirs(root(path), exist_ok=True)
        mount("tmpfs", root(path), "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode:o},size={size}")
    for (_src, dst, mode), fd in zip(cfg["binds"], fds, strict=True):
        target = root(dst)
        is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
        make_target(target, is_dir)
        mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        if mode == "ro":
            remount_ro(target, MS_NOSUID | MS_NODEV)
        elif mode == "rw":
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for path in cfg.get("hide_dirs", ()):  # hidden directories: empty, read-only, over the binds
        mount(
            "tmpfs",
            root(path),
            "tmpfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
            "mode=0555,size=4096",
        )
    for target, link in cfg["symlinks"]:
        os.makedirs(os.path.dirname(root(link)), exist_ok=True)
        os.symlink(target, root(link))
    for path, content in cfg["files"]:
        os.makedirs(os.path.dirname(root(path)), exist_ok=True)
        with open(root(path), "w") as f:
            f.write(content)
    if cfg["proc"]:
        os.makedirs(root("/proc"), exist_ok=True)
        try:
            mount("proc", root("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except SetupError:
            pass  # e.g. a user namespace over a masked /proc: run without /proc rather than leak
        else:
            for sub in ("sys", "sysrq-trigger", "irq", "bus"):  # kernel knobs stay read-only
                p = root("/proc/" + sub)
                if os.path.exists(p):
                    mount(p, p, None, MS_BIND | MS_REC)
                    remount_ro(p)
    os.chdir(stage)
    nr = PIVOT_ROOT.get(os.uname().machine)
    if nr is not None and libc.syscall(nr, b".", b".") == 0:
        libc.umount2(b".", MNT_DETACH)  # drop the host's root from this mount namespace
    else:
        os.chroot(".")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_privileges(cfg):
    if cfg["uid"] is not None:  # real root outside: become an unprivileged, per-run uid
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])  # clears every capability
    else:  # root of a user namespace: keep uid 0 inside, but without any capability
        for cap in range(64):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        if libc.prctl(PR_SET_SECUREBITS, 0x2F, 0, 0, 0) != 0:  # NOROOT|NO_SETUID_FIXUP (locked)
            raise SetupError("cannot set securebits: " + os.strerror(ctypes.get_errno()))
        hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)()
        if libc.capset(hdr, data) != 0:
            raise SetupError("cannot drop capabilities: " + os.strerror(ctypes.get_errno()))
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp(program):
    # core.seccomp_program(): raw sock_filter entries of 8 bytes; after NO_NEW_PRIVS, so the
    # unprivileged command may not remove it (and it is inherited by everything it starts)
    if not program:
        return
    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise SetupError("cannot install the seccomp filter: " + os.strerror(ctypes.get_errno()))


def child(cfg, err_w):
    try:
        os.setsid()
        oom_first()
        os.chdir(cfg["cwd"])
        for name, (soft, hard) in cfg["rlimits"].items():
            resource.setrlimit(RLIMITS[name], (soft, hard))
        drop_privileges(cfg)
        install_seccomp(bytes.fromhex(cfg.get("seccomp", "")))
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores some; the command must not
        argv = cfg["argv"]
        os.execvpe(argv[0], argv, cfg["env"])
    except OSError as exc:
        code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        os.write(err_w, f"{code} {exc}".encode())
    except BaseException as exc:  # setup failure in the child: refuse, do not run anything
        os.write(err_w, f"125 {exc}".encode())
    os._exit(127)


def report(fd, obj):
    os.write(fd, (json.dumps(obj) + "\n").encode())


def read_config(fd):
    data = b""
    while chunk := os.read(fd, 1 << 20):
        data += chunk
    os.close(fd)  # the command must not inherit it
    return json.loads(data)


def oom_first():
    # The command and all it starts are the OOM killer's first choice (a run over its memory
    # cgroup's cap, or a host short of memory): not this init, whose death would lose the status
    # line of the command's end (raising the score needs no privilege; lowering it below the
    # default would need CAP_SYS_RESOURCE, which containers often lack).
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")


def join_cgroup(procs):
    # The run's memory cgroup (core/memcg.py), joined before the command is forked so it and all
    # it starts are charged there; the host's cgroup files are still visible before build_root.
    if procs:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))


def main():
    cfg = read_config(int(sys.argv[1]))
    status_fd = cfg["status_fd"]
    os.set_inheritable(status_fd, False)
    try:
        join_cgroup(cfg.get("cgroup_procs"))
    except OSError as exc:
        report(status_fd, {"error": f"sandbox setup failed: cannot join the memory cgroup: {exc}"})
        return 125
    try:
        build_root(cfg)
        with contextlib.suppress(OSError):
            loopback_up()
    except (OSError, SetupError) as exc:
        report(status_fd, {"error": f"sandbox setup failed: {exc}"})
        return 125
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        child(cfg, err_w)
    os.close(err_w)
    msg = b""
    while chunk := os.read(err_r, 4096):
        msg += chunk
    os.close(err_r)
    rusage = None
    while True:  # PID 1 reaps every orphan until the command itself ends
        try:
            wpid, status, ru = os.wait3(0)
        except ChildProcessError:
            break
        if wpid == pid:
            rusage = ru
            break
    if msg:
        code, _, text = msg.decode(errors="replace").partition(" ")
        if code == "125":
            report(status_fd, {"error": f"sandbox setup failed: {text}"})
        else:
            report(status_fd, {"exec_error": text, "exit": int(code)})
        return 125
    # CPU seconds of the command (and the children it waited for): a SIGKILL at the hard
    # RLIMIT_CPU (a command that caught SIGXCPU and ran on) is told apart from any other kill
    cpu = {} if rusage is None else {"cpu_s": round(rusage.ru_utime + rusage.ru_stime, 3)}
    if os.WIFSIGNALED(status):
        report(status_fd, {"signal": os.WTERMSIG(status), **cpu})
    else:
        report(status_fd, {"exit": os.WEXITSTATUS(status), **cpu})
    return 0


if __name__ == "__main__":
    sys.exit(main())
