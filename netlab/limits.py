"""Per-host limits that the userspace WireGuard backend meets, and how many NEA pairs fit.

Each NEA pair runs two wireguard-go processes. Measured here: each takes one inotify
instance (it watches its control socket), 11 threads and ~24 file descriptors, and
netlab gives each of its UDP sockets SOCKET_BUFFER_BYTES of receive buffer.

* `fs.inotify.max_user_instances` (128 on most distributions) is per user: past it
  the next wireguard-go exits with "too many open files" and `wg set` then reports
  "Protocol not supported". It is what binds first: 64 pairs minus what the host's
  other programs (systemd, editors, ...) already hold.
* `kernel.threads-max` and `kernel.pid_max` bound threads host-wide.
* `fs.file-max` bounds open files host-wide.
* `net.ipv4.udp_mem` bounds the memory of all UDP buffers: crossing it drops
  datagrams rather than failing, so it is reported, never a reason to refuse.

The kernel backend has none of these ceilings. Before an operation powers pairs on,
`check_room` refuses with one line naming the limit, its value and the command that
raises it; `raise_for` raises what a lab needs (the user's opt-in: `netlab up
--raise-limits`), and `restore` puts the recorded old values back on `down`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netlab.errors import PreconditionFailed

PROC_SYS = Path("/proc/sys")
# per wireguard-go, with room for the Go runtime to add threads under load
THREADS_PER_DAEMON = 16
FILES_PER_DAEMON = 32
DAEMONS_PER_PAIR = 2
UDP_SOCKETS_PER_DAEMON = 2  # IPv4 and IPv6 listeners
MARGIN = 32  # left for the rest of the host when netlab raises a limit
PAGE = os.sysconf("SC_PAGE_SIZE")


class LimitReached(PreconditionFailed):
    """Powering more NEA pairs on would cross a host limit."""


@dataclass(frozen=True)
class Limit:
    """One host limit: its value, what is used of it, and what one NEA pair takes."""

    key: str  # the sysctl
    value: int
    in_use: int
    per_pair: int
    why: str
    hard: bool = True  # False: crossing it degrades, nothing fails

    @property
    def pairs_left(self) -> int:
        return max(0, self.value - self.in_use) // self.per_pair

    def needed_for(self, pairs: int) -> int:
        """The value that leaves room for `pairs` more pairs and a margin."""
        return self.in_use + pairs * self.per_pair + MARGIN

    def to_dict(self) -> dict[str, Any]:
        return {"sysctl": self.key, "value": self.value, "in_use": self.in_use,
                "per_pair": self.per_pair, "pairs_left": self.pairs_left, "hard": self.hard}


def read_sysctl(key: str) -> str:
    return (PROC_SYS / key.replace(".", "/")).read_text().strip()


def write_sysctl(key: str, value: int) -> None:
    (PROC_SYS / key.replace(".", "/")).write_text(f"{value}\n")


def inotify_instances(uid: int = 0) -> int:
    """Inotify instances held by processes of `uid`: the count the per-user limit checks.

    No library exposes it (psutil lists files, not anonymous inodes), so each process's
    descriptors are read from /proc; processes that exit meanwhile are skipped.
    """
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) == "anon_inode:inotify":
                        count += 1
                except OSError:
                    continue
    return count


def _threads_in_use() -> int:
    # /proc/loadavg's fourth field is "runnable/total" scheduling entities: every thread
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])


def userspace_limits() -> list[Limit]:
    """The limits that bound how many more NEA pairs wireguard-go can run, read now."""
    from netlab.wireguard import SOCKET_BUFFER_BYTES

    threads = _threads_in_use()
    per_pair_threads = DAEMONS_PER_PAIR * THREADS_PER_DAEMON
    udp_max_pages = int(read_sysctl("net.ipv4.udp_mem").split()[2])
    udp_pages = int(Path("/proc/net/sockstat").read_text().split("UDP:")[1].split("mem")[1]
                    .split()[0])
    per_pair_udp = DAEMONS_PER_PAIR * UDP_SOCKETS_PER_DAEMON * SOCKET_BUFFER_BYTES // PAGE
    return [
        Limit("fs.inotify.max_user_instances", int(read_sysctl("fs.inotify.max_user_instances")),
              inotify_instances(), DAEMONS_PER_PAIR,
              "wireguard-go takes one inotify instance per NEA, two per pair"),
        Limit("kernel.threads-max", int(read_sysctl("kernel.threads-max")), threads,
              per_pair_threads, f"wireguard-go runs ~{THREADS_PER_DAEMON} threads per NEA"),
        Limit("kernel.pid_max", int(read_sysctl("kernel.pid_max")), threads, per_pair_threads,
              "every thread takes a pid"),
        Limit("fs.file-max", int(read_sysctl("fs.file-max")),
              int(read_sysctl("fs.file-nr").split()[0]), DAEMONS_PER_PAIR * FILES_PER_DAEMON,
              f"wireguard-go keeps ~{FILES_PER_DAEMON} files open per NEA"),
        Limit("net.ipv4.udp_mem", udp_max_pages, udp_pages, max(1, per_pair_udp),
              "UDP receive buffers of full tunnels (pages); past it datagrams drop",
              hard=False),
    ]


def capacity(backend: str, limits: list[Limit] | None = None) -> dict[str, Any]:
    """How many more NEA pairs fit, and which limit binds (None: no ceiling)."""
    if backend == "kernel":
        return {"backend": backend, "pairs_left": None, "binding": None, "limits": []}
    limits = userspace_limits() if limits is None else limits
    hard = [lim for lim in limits if lim.hard]
    binding = min(hard, key=lambda lim: lim.pairs_left)
    return {"backend": backend, "pairs_left": binding.pairs_left, "binding": binding.key,
            "limits": [lim.to_dict() for lim in limits]}


def refusal(limit: Limit, pairs: int) -> str:
    """One line: which limit, its value, and the command that raises it."""
    return (f"cannot power on {pairs} more NEA pair{'s' if pairs != 1 else ''}: "
            f"{limit.key} is {limit.value} and {limit.in_use} are in use ({limit.why}); "
            f"room for {limit.pairs_left}. Raise it with 'sysctl -w {limit.key}="
            f"{limit.needed_for(pairs)}', or bring the lab up with 'netlab up --raise-limits'")


def check_room(backend: str, pairs: int, limits: list[Limit] | None = None) -> None:
    """Refuse (LimitReached, one line) when `pairs` more NEA pairs would cross a hard limit."""
    if backend == "kernel" or pairs <= 0:
        return
    for limit in userspace_limits() if limits is None else limits:
        if limit.hard and limit.pairs_left < pairs:
            raise LimitReached(refusal(limit, pairs))


def raise_for(pairs: int, limits: list[Limit] | None = None) -> dict[str, dict[str, int]]:
    """Raise every hard limit that leaves room for fewer than `pairs` pairs; return
    {sysctl: {"old": ..., "new": ...}} of what was changed, for `restore`."""
    changed: dict[str, dict[str, int]] = {}
    for limit in userspace_limits() if limits is None else limits:
        if limit.hard and limit.pairs_left < pairs:
            new = limit.needed_for(pairs)
            write_sysctl(limit.key, new)
            changed[limit.key] = {"old": limit.value, "new": new}
    return changed


def restore(changed: dict[str, dict[str, int]]) -> list[str]:
    """Put back the old values of `raise_for`, where nobody changed them since; returns
    the sysctls restored."""
    restored = []
    for key, values in changed.items():
        try:
            if int(read_sysctl(key)) == values["new"]:
                write_sysctl(key, values["old"])
                restored.append(key)
        except (OSError, ValueError):
            continue
    return restored
