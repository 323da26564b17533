"""Files a sandbox run holds only as file descriptors in flight in unix sockets (SCM_RIGHTS).

Why: the workspace disk quota (`core._DiskQuota`) counts what the workspace's tree holds and the
unlinked files the run's processes hold open (`fs.unlinked_files`). A file descriptor sent over a
unix socket and not yet received belongs to no process: a run wrote a file, sent its fd to
itself, closed and unlinked it, and the blocks stayed allocated where neither count saw them
(session 24 measured 65 files of max_file_mb each held past the quota; the kernel caps fds in
flight per uid at RLIMIT_NOFILE, so up to max_open_files x max_file_mb: 128 GB by default).

How they are found: for every unix socket a process of the run holds, a duplicate is taken with
pidfd_getfd(2) and its receive queue is read with MSG_PEEK, which hands this process copies of the
fds in each message (the queue is left as it was); SO_PEEK_OFF walks past the first message and is
restored afterwards (a run that peeks at offsets itself may see its offset move during a scan). Sockets found in flight are searched the same way (a socket can carry the
socket that carries the files). Regular files on the workspace's device that no directory names
any more are counted, each as at least one 4 KiB block.

Once counted, a file stays counted until the run ends (`held`): a zero-length datagram that was
peeked once is skipped by later offset peeks (the kernel marks it), so it would vanish from the
count while still holding its file. The count may therefore stay above what the run holds after
it receives and frees such a file — a run is never let through for less than it holds.

Not seen: fds queued on a connection that a listening socket has not accepted yet (no fd of that
embryo socket can be had without accepting it, which would take the connection from the run;
session 25 measured 80 MB held so past a 5 MB quota; bounded, as every in-flight fd, by
max_open_files x max_file_mb, and freed when the run ends), and — stated, not silent: the
quota warns, from `InFlightFiles.blind` — everything when pidfd_getfd is refused
(kernels before 5.6; a caller without ptrace rights over the run — root has them; a non-root
caller usually has them over its own user namespace's processes, unless Yama or a non-dumpable
process refuses). The kernel frees all of them when the run's processes are gone.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import os
import socket
import stat
from collections.abc import Iterable, Iterator

_PIDFD_GETFD = 438  # the same number on every architecture (the unified syscall table, 5.6+)
_SO_PEEK_OFF = 42
_SO_DOMAIN = 39
_MAX_FDS = 253  # SCM_MAX_FD: the most fds one message carries
_PEEK_BYTES = 1 << 18  # a peek copies at most this much data (the offset advances by what it got)
_PEEK_BUDGET = 8192  # peeks per scan, all sockets together: bounds the cost of one poll
_EMPTY_RUN = 2  # empty peeks in a row that end a socket's walk (a closed SEQPACKET peer, ...)
MIN_ENTRY_BYTES = 4096

_libc = ctypes.CDLL(None, use_errno=True)


class InFlightFiles:
    """The in-flight unlinked files of one run on device `dev`, counted across polls."""

    def __init__(self, dev: int) -> None:
        self.dev = dev
        self.held: dict[int, int] = {}  # inode -> bytes, for the rest of the run
        self.blind: str | None = None  # why sockets could not be searched, once seen

    def scan(self, pids: Iterable[int]) -> dict[int, int]:
        """Search the unix sockets of `pids`; return every file counted so far (inode -> bytes)."""
        seen: set[int] = set()
        todo: list[int] = []
        try:
            for pid in pids:
                todo += self._sockets_of(pid, seen)
            budget = [_PEEK_BUDGET]
            while todo:
                fd = todo.pop()
                try:
                    for got in _peeked_fds(fd, budget):
                        kept = self._count(got, seen)
                        if kept:
                            todo.append(got)
                        else:
                            os.close(got)
                finally:
                    os.close(fd)
        finally:
            for fd in todo:
                os.close(fd)
        return self.held

    def _sockets_of(self, pid: int, seen: set[int]) -> list[int]:
        """Duplicates of the unix-socket fds of process `pid` not yet in `seen`."""
        try:
            names = os.listdir(f"/proc/{pid}/fd")
            pidfd = os.pidfd_open(pid)
        except OSError:
            return []  # gone meanwhile
        out: list[int] = []
        try:
            for name in names:
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{name}")
                except OSError:
                    continue
                if not link.startswith("socket:[") or not link[8:-1].isdigit():
                    continue
                ino = int(link[8:-1])
                if ino in seen:
                    continue
                seen.add(ino)
                fd = _libc.syscall(_PIDFD_GETFD, pidfd, int(name), 0)
                if fd >= 0:
                    out.append(fd)
                    continue
                err = ctypes.get_errno()
                if err not in (errno.EBADF, errno.ESRCH):  # closed or exited meanwhile
                    self.blind = f"pidfd_getfd: {os.strerror(err)}"
        finally:
            os.close(pidfd)
        return out

    def _count(self, fd: int, seen: set[int]) -> bool:
        """Count `fd` if it is an unlinked file of the device; True if it is a socket to search
        (the caller then owns it)."""
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        if stat.S_ISSOCK(st.st_mode):
            if st.st_ino in seen:
                return False
            seen.add(st.st_ino)
            return True
        if stat.S_ISREG(st.st_mode) and st.st_dev == self.dev and st.st_nlink == 0:
            self.held[st.st_ino] = max(st.st_blocks * 512, MIN_ENTRY_BYTES)
        return False


def _peeked_fds(fd: int, budget: list[int]) -> Iterator[int]:
    """The fds in the messages queued on socket `fd` (ours to close), read with MSG_PEEK from
    the first message on; `budget[0]` peeks at most (shared by the scan)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return  # not a socket we can use
    try:
        if sock.family != socket.AF_UNIX:
            return
        stream = sock.type == socket.SOCK_STREAM
        try:
            old = sock.getsockopt(socket.SOL_SOCKET, _SO_PEEK_OFF)
            sock.setsockopt(socket.SOL_SOCKET, _SO_PEEK_OFF, 0)
        except OSError:
            old = None  # no peek offset: only the first message can be seen
        try:
            yield from _walk_queue(sock, stream, old is not None, budget)
        finally:
            if old is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, _SO_PEEK_OFF, old)
    finally:
        sock.detach()  # the caller closes `fd`


def _walk_queue(sock: socket.socket, stream: bool, walks: bool, budget: list[int]) -> Iterator[int]:
    flags = socket.MSG_PEEK | socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
    empty = 0
    while budget[0] > 0:
        budget[0] -= 1
        try:
            data, anc, _, _ = sock.recvmsg(_PEEK_BYTES, socket.CMSG_SPACE(4 * _MAX_FDS), flags)
        except OSError:
            return  # EAGAIN: the queue is walked; EINVAL/ENOTCONN: a listener, unconnected
        fds = _rights(anc)
        yield from fds
        if not walks or (stream and not data):
            return
        empty = 0 if (data or fds) else empty + 1
        if empty >= _EMPTY_RUN:
            return


def _rights(anc: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return fds.tolist()
