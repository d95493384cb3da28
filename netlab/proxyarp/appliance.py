"""One appliance served by the proxy-ARP daemon: its packet socket, set, counters, announcements.

The packet socket is opened inside the appliance's network namespace (a `setns` of the
daemon's only thread there and back): a socket keeps the namespace it was created in,
so one process serves appliances of any number of namespaces from one selector.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netlab.proxyarp import frames
from netlab.proxyarp.probing import ProbeTable
from netlab.proxyarp.sets import AddressSet

log = logging.getLogger("netlab.proxyarp")

# Frames handled per wake-up before the other sockets get a turn, so a flood on one
# appliance cannot starve the others or the control socket.
FRAME_BUDGET = 256
ANNOUNCE_BUDGET = 256
# Ethernet + ARP is 42 bytes; a re-inserted VLAN tag adds 4. Longer frames are cut,
# which is harmless: nothing after byte 42 is read.
RECV_SIZE = 128
# Room for a burst of a few thousand small frames; root may exceed rmem_max. Memory is
# taken only while frames wait, so 100 idle appliances cost nothing for it.
RCVBUF_BYTES = 4 * 1024 * 1024
SO_RCVBUFFORCE = 33  # not exported by the socket module
SOL_PACKET = 263
PACKET_STATISTICS = 6
ARPHRD_ETHER = 1
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


class AttachError(Exception):
    """An appliance cannot be served; the message says why."""


@contextlib.contextmanager
def in_namespace(netns: str | None) -> Iterator[None]:
    """Run the block with this thread in network namespace `netns` (None: stay).

    The daemon has one thread, so nothing else runs in the other namespace meanwhile.
    """
    if not netns:
        yield
        return
    try:
        target = os.open(NETNS_DIR / netns, os.O_RDONLY)
    except FileNotFoundError:
        raise AttachError(f"no network namespace {netns!r}") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@dataclass
class Stats:
    """Counters of one appliance. Every frame read is exactly one of: replied, send
    error, or ignored (for one reason), so frames_seen == replies_sent + send_errors +
    ignored."""

    started_at: float = field(default_factory=time.time)
    frames_seen: int = 0
    requests_seen: int = 0
    replies_sent: int = 0
    send_errors: int = 0
    ignored_by_reason: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(frames.IGNORED_REASONS, 0)
    )
    gratuitous_sent: int = 0
    gratuitous_errors: int = 0
    kernel_drops: int = 0


class Appliance:
    """One interface in one namespace, one proxied set."""

    def __init__(self, name: str, netns: str | None, iface: str, gratuitous_count: int,
                 gratuitous_interval: float) -> None:
        self.name, self.netns, self.iface = name, netns or None, iface
        self.gratuitous_count = gratuitous_count
        self.gratuitous_interval = gratuitous_interval
        self.proxied = AddressSet()
        self.stats = Stats()
        self.mac = b""
        self.sock: socket.socket | None = None
        self.ifindex = 0
        self.dead: str | None = None  # why the socket can never see a frame again
        # Announcements still to send: a FIFO of (due, address, generation). The
        # interval is constant, so appending keeps it sorted by due time.
        self.announce_queue: collections.deque[tuple[float, bytes, int]] = collections.deque()
        self._announce_left: dict[bytes, tuple[int, int]] = {}
        self._generation = 0
        self.probes = ProbeTable(name)  # duplicate address detection (RFC 5227)
        self._send_error_logged = 0.0

    # ---- the socket ---------------------------------------------------------------

    def open(self) -> None:
        """Open the packet socket in the appliance's namespace and learn the MAC."""
        with in_namespace(self.netns):
            try:
                self.ifindex = socket.if_nametoindex(self.iface)
            except OSError:
                where = f"namespace {self.netns}" if self.netns else "this network namespace"
                raise AttachError(f"no interface {self.iface!r} in {where}") from None
            # Made for protocol 0 it is never on the receive path; then bound to ETH_P_ARP
            # it starts receiving ARP only. Binding costs ~0.15 ms that way, where
            # re-binding a receiving socket waits for an RCU grace period (8-15 ms each:
            # seconds for a hundred pairs). Bound to one protocol, not ETH_P_ALL, the
            # socket is no tap: the kernel hands it incoming ARP only, never the frames
            # this namespace sends (our own replies would otherwise come back, one
            # wake-up and one read each) nor the tunnel's IP traffic to filter out.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:
                sock.bind((self.iface, frames.ETH_P_ARP))
            except OSError as exc:
                sock.close()  # an open socket would keep the namespace alive
                raise AttachError(f"cannot open a packet socket on {self.iface}: {exc}") from exc
        self.sock = sock
        # The MAC comes from the bound socket itself: /sys/class/net shows the
        # namespace of whoever mounted /sys, not the appliance's.
        _name, _proto, _pkttype, hatype, addr = sock.getsockname()
        if hatype != ARPHRD_ETHER or len(addr) != 6:
            self.close()
            raise AttachError(f"{self.iface} is not an Ethernet interface; ARP needs one")
        self.mac = bytes(addr)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        sock.setblocking(False)
        self.read_kernel_drops()  # starts the kernel's counters from zero

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        """Close the socket: the namespace is no longer held by this process."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # ---- the hot path ---------------------------------------------------------------

    def on_readable(self) -> None:
        """Answer what arrived, at most FRAME_BUDGET frames."""
        recv = self.sock.recv
        send = self.sock.send
        decide = frames.decide
        mac = self.mac
        proxied = self.proxied
        stats = self.stats
        probes = self.probes
        for _ in range(FRAME_BUDGET):
            try:
                frame = recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._on_error(exc)
                return
            stats.frames_seen += 1
            if probes.active:
                self._watch(frame)
            verdict, reply = decide(frame, mac, proxied)
            if reply is None:
                if verdict.is_request:
                    stats.requests_seen += 1
                stats.ignored_by_reason[verdict.value] += 1
                continue
            stats.requests_seen += 1
            try:
                send(reply)
            except OSError as exc:
                stats.send_errors += 1
                self._log_send_error(exc)
            else:
                stats.replies_sent += 1

    def _watch(self, frame: bytes) -> None:
        conflict = self.probes.watch(frame, self.mac)
        if conflict is not None:
            # Reported, and still answered: see netlab.proxyarp.probing for why.
            log.warning("%s: address conflict: %s is also held by %s (%s); this appliance "
                        "keeps answering for it", self.name, conflict["address"],
                        conflict["other_mac"], conflict["how"])

    def _on_error(self, exc: OSError) -> None:
        try:
            with in_namespace(self.netns):
                index = socket.if_nametoindex(self.iface)
        except (OSError, AttachError):
            index = 0
        if index != self.ifindex:
            # Bound to an interface that no longer exists: it will never see a frame
            # again. The daemon detaches us; whoever powers the appliance on re-attaches.
            self.dead = f"interface {self.iface} disappeared ({exc})"
            log.error("%s: %s", self.name, self.dead)
            return
        # ENETDOWN when the link goes down: the socket resumes when it comes back up.
        log.warning("%s: packet socket on %s: %s", self.name, self.iface, exc)

    def _log_send_error(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._send_error_logged >= 5.0:
            self._send_error_logged = now
            errors = self.stats.send_errors + self.stats.gratuitous_errors
            log.warning("%s: cannot send on %s: %s (%d so far)", self.name, self.iface, exc,
                        errors)

    # ---- the set and its announcements ------------------------------------------------

    def replace(self, new: AddressSet) -> tuple[int, int]:
        """Take `new` as the set; probe the addresses that became members and announce
        the explicit ones that joined. Returns (joined, left) counts of explicit addresses."""
        old = self.proxied
        before = old.explicit_members()
        after = new.explicit_members()
        self.proxied = new
        joined = sorted(after - before)
        left = before - after
        for ip in joined:
            self.schedule_announcements(ip.to_bytes(4, "big"))
        for ip in left:
            self.cancel_announcements(ip.to_bytes(4, "big"))
        # What changes one by one is probed, never a whole prefix: explicit addresses
        # that joined, and exceptions that ended (an SP appliance's /16 gets an address
        # back when its replica stops at the SP).
        for ip in sorted(set(joined) | (old.exceptions - new.exceptions)):
            if new.has(ip) and not old.has(ip):
                self.probes.start(ip.to_bytes(4, "big"))
        for ip in (left | (new.exceptions - old.exceptions)):
            if not new.has(ip):
                self.probes.cancel(ip.to_bytes(4, "big"))
        return len(joined), len(left)

    def add(self, ips: list[int]) -> list[int]:
        added = self.proxied.add(ips)
        for ip in added:
            self.probes.start(ip.to_bytes(4, "big"))
            self.schedule_announcements(ip.to_bytes(4, "big"))
        return added

    def remove(self, ips: list[int]) -> list[int]:
        removed = self.proxied.remove(ips)
        for ip in removed:
            self.cancel_announcements(ip.to_bytes(4, "big"))
            self.probes.cancel(ip.to_bytes(4, "big"))
        return removed

    def take_over(self, ips: list[int]) -> list[int]:
        """Probe and announce again the members of `ips` (another machine held them)."""
        members = [ip for ip in ips if self.proxied.has(ip)]
        for ip in members:
            self.probes.start(ip.to_bytes(4, "big"))
            self.schedule_announcements(ip.to_bytes(4, "big"))
        return members

    def send_due_probes(self, now: float) -> None:
        for probe in self.probes.due(now, self.mac, ANNOUNCE_BUDGET):
            try:
                self.sock.send(probe)
            except OSError as exc:
                self.stats.gratuitous_errors += 1
                self._log_send_error(exc)

    def schedule_announcements(self, address: bytes) -> None:
        if self.gratuitous_count <= 0:
            return
        self._generation += 1
        self._announce_left[address] = (self._generation, self.gratuitous_count)
        self.announce_queue.append((time.monotonic(), address, self._generation))
        self._compact_announcements()

    def cancel_announcements(self, address: bytes) -> None:
        self._announce_left.pop(address, None)
        self._compact_announcements()

    def _compact_announcements(self) -> None:
        # Each add/remove cycle can leave one stale queue entry; rebuild before they
        # outnumber the live ones so the queue stays O(proxied set).
        if len(self.announce_queue) > 2 * len(self._announce_left) + 64:
            left = self._announce_left
            self.announce_queue = collections.deque(
                item for item in self.announce_queue if left.get(item[1], (None,))[0] == item[2]
            )

    def send_due_announcements(self, now: float) -> None:
        queue = self.announce_queue
        sent = 0
        while queue and queue[0][0] <= now and sent < ANNOUNCE_BUDGET:
            _due, address, generation = queue.popleft()
            entry = self._announce_left.get(address)
            if entry is None or entry[0] != generation:
                continue  # removed or re-added since
            sent += 1
            try:
                self.sock.send(frames.build_gratuitous(self.mac, address))
            except OSError as exc:
                self.stats.gratuitous_errors += 1
                self._log_send_error(exc)
            else:
                self.stats.gratuitous_sent += 1
            left = entry[1] - 1
            if left > 0:
                self._announce_left[address] = (generation, left)
                queue.append((now + self.gratuitous_interval, address, generation))
            else:
                del self._announce_left[address]

    # ---- counters -------------------------------------------------------------------

    def read_kernel_drops(self) -> None:
        # Frames the kernel dropped because our receive buffer was full: the one loss
        # the counters above cannot see. Reading the statistics resets them.
        if self.sock is None:
            return
        with contextlib.suppress(OSError):
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            _packets, drops = struct.unpack("II", raw)
            self.stats.kernel_drops += drops

    def stats_dict(self) -> dict[str, Any]:
        """The counters as plain JSON-able values."""
        s = self.stats
        self.read_kernel_drops()
        return {
            "appliance": self.name,
            "netns": self.netns,
            "iface": self.iface,
            "mac": frames.mac_to_text(self.mac),
            "pid": os.getpid(),
            "started_at": s.started_at,
            "uptime": round(time.time() - s.started_at, 3),
            "proxied": self.proxied.size(),
            "frames_seen": s.frames_seen,
            "requests_seen": s.requests_seen,
            "replies_sent": s.replies_sent,
            "send_errors": s.send_errors,
            "ignored": sum(s.ignored_by_reason.values()),
            "ignored_by_reason": dict(s.ignored_by_reason),
            "gratuitous_sent": s.gratuitous_sent,
            "gratuitous_errors": s.gratuitous_errors,
            "gratuitous_pending": len(self._announce_left),
            "probes_sent": self.probes.probes_sent,
            "conflicts": len(self.probes.conflicts),
            "kernel_drops": s.kernel_drops,
        }

    def stats_line(self) -> str:
        s = self.stats
        return (
            f"{self.name}: frames {s.frames_seen}, requests {s.requests_seen}, replies "
            f"{s.replies_sent}, ignored {sum(s.ignored_by_reason.values())}, gratuitous "
            f"{s.gratuitous_sent}"
        )
