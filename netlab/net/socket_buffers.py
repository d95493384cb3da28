"""Enlarge the UDP socket buffers of a running process (wireguard-go).

wireguard-go 0.0.20220316 (Debian 12's) keeps the default 208 KiB receive
buffer; `net.core.rmem_default` is host-wide and cannot be set inside a
namespace (docs/architecture.md#facts), so a burst through the tunnel overflows the SP NEA's
socket and TCP retransmits. Newer wireguard-go sets 7 MiB on its own sockets
with SO_RCVBUFFORCE; netlab does the same from outside: `pidfd_getfd(2)`
(Linux 5.6) duplicates the process's socket descriptors, and a socket option set
on a duplicate applies to the one socket both share.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket

_SYS_PIDFD_GETFD = 438  # the same number on every architecture (unified syscall table)
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33

_libc = ctypes.CDLL(None, use_errno=True)


def _duplicate(pidfd: int, target_fd: int) -> int:
    fd = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, target_fd, 0)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _socket_fds(pid: int) -> list[int]:
    fds = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                fds.append(int(name))
    return fds


def enlarge_udp_buffers(pidfd: int, pid: int, size: int) -> int:
    """Set send and receive buffers of every UDP socket of process `pid` to `size`.

    `pidfd` (from `os.pidfd_open(pid)`) pins the process, so a recycled pid cannot
    redirect this to another one. Returns how many sockets were changed; raises
    OSError when the process's descriptors cannot be read (not root, ptrace
    restrictions, a kernel before 5.6).
    """
    changed = 0
    for target_fd in _socket_fds(pid):
        try:
            fd = _duplicate(pidfd, target_fd)
        except OSError as exc:
            # closed meanwhile (pidfd_getfd says EBADF): wireguard-go drops a listener
            # it cannot bind while its link comes up
            if exc.errno in (errno.EBADF, errno.ENOENT):
                continue
            raise
        with socket.socket(fileno=fd) as sock:
            if sock.type != socket.SOCK_DGRAM or sock.family not in (
                socket.AF_INET, socket.AF_INET6
            ):
                continue
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
            sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, size)
            changed += 1
    return changed
