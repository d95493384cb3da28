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

import contextlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netlab.errors import PreconditionFailed
from netlab.processes import process_start_time

PROC_SYS = Path("/proc/sys")
# Where the last inotify count is kept (netlab's root-only run directory) and how old a
# count `status` takes: other programs' instances change slowly, and every operation
# that powers pairs on counts afresh before it checks.
COUNT_CACHE = Path("/run/netlab/inotify-count.json")
STATUS_COUNT_AGE = 30.0
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


def inotify_instances(uid: int = 0, max_age: float = 0.0,
                      recorded: Iterable[int] = ()) -> int:
    """Inotify instances held by processes of `uid`: the count the per-user limit checks.

    No library exposes it (psutil lists files, not anonymous inodes), so each process's
    descriptors are read from /proc: 0.1-0.4 s on a host running a large lab. With
    `max_age` (what `status` uses) the holders found by a scan any netlab process made
    within that many seconds (COUNT_CACHE) are counted again if they still run, plus
    the `recorded` pids (the lab's wireguard-go, one instance each) that started since:
    a stat per holder instead of a readlink per descriptor of the host. Checks before
    an operation powers pairs on always scan.
    """
    if max_age > 0:
        holders = _cached_holders(uid, max_age)
        if holders is not None:
            alive = {pid: n for pid, (started, n) in holders.items()
                     if process_start_time(pid) == started}
            return sum(alive.values()) + sum(1 for pid in set(recorded) - set(holders)
                                             if process_start_time(pid) is not None)
    found: dict[int, tuple[int | None, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        base = f"/proc/{name}/fd/"
        try:
            fds = os.listdir(base)
        except OSError:
            continue  # exited meanwhile, or a kernel thread
        count = 0
        for fd in fds:
            try:
                if os.readlink(base + fd) == "anon_inode:inotify":
                    count += 1
            except OSError:
                continue
        # the owner is looked up only for the few processes that hold one
        with contextlib.suppress(OSError):
            if count and os.stat(f"/proc/{name}").st_uid == uid:
                found[int(name)] = (process_start_time(int(name)), count)
    _store_holders(uid, found)
    return sum(n for _, n in found.values())


def _cached_holders(uid: int, max_age: float) -> dict[int, tuple[int | None, int]] | None:
    try:
        entry = json.loads(COUNT_CACHE.read_text())[str(uid)]
        if 0 <= time.time() - float(entry["time"]) <= max_age:
            return {int(pid): (started, int(n)) for pid, (started, n) in entry["holders"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _store_holders(uid: int, holders: dict[int, tuple[int | None, int]]) -> None:
    # Best effort: a host cache, root-only like the rest of /run/netlab.
    with contextlib.suppress(OSError):
        COUNT_CACHE.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = COUNT_CACHE.with_name(f"{COUNT_CACHE.name}.{os.getpid()}")
        tmp.write_text(json.dumps({str(uid): {"time": time.time(), "holders": holders}}))
        os.replace(tmp, COUNT_CACHE)


def _threads_in_use() -> int:
    # /proc/loadavg's fourth field is "runnable/total" scheduling entities: every thread
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])


def userspace_limits(max_age: float = 0.0, recorded: Iterable[int] = ()) -> list[Limit]:
    """The limits that bound how many more NEA pairs wireguard-go can run, read now
    (the inotify holders may be `max_age` seconds old: see inotify_instances)."""
    from netlab.wireguard import SOCKET_BUFFER_BYTES

    threads = _threads_in_use()
    per_pair_threads = DAEMONS_PER_PAIR * THREADS_PER_DAEMON
    udp_max_pages = int(read_sysctl("net.ipv4.udp_mem").split()[2])
    udp_pages = int(Path("/proc/net/sockstat").read_text().split("UDP:")[1].split("mem")[1]
                    .split()[0])
    per_pair_udp = DAEMONS_PER_PAIR * UDP_SOCKETS_PER_DAEMON * SOCKET_BUFFER_BYTES // PAGE
    return [
        Limit("fs.inotify.max_user_instances", int(read_sysctl("fs.inotify.max_user_instances")),
              inotify_instances(max_age=max_age, recorded=recorded), DAEMONS_PER_PAIR,
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


def capacity(backend: str, limits: list[Limit] | None = None, max_age: float = 0.0,
             recorded: Iterable[int] = ()) -> dict[str, Any]:
    """How many more NEA pairs fit, and which limit binds (None: no ceiling)."""
    if backend == "kernel":
        return {"backend": backend, "pairs_left": None, "binding": None, "limits": []}
    limits = userspace_limits(max_age, recorded) if limits is None else limits
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
