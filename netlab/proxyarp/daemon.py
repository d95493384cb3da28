"""The proxy-ARP daemon: answers ARP on one interface for a run-time set of addresses.

    python -m netlab.proxyarp --iface IF --socket PATH [--address A ...]
                              [--gratuitous-count N] [--gratuitous-interval S]

Runs inside the NEA's network namespace (started with `nsenter --net=...`). One
thread, one `selectors` loop over three things:

- one persistent AF_PACKET socket on IF (Scapy's L2Socket, kernel BPF filter
  `arp`, not promiscuous), read with `recv_raw()`; frames are judged by
  `frames.decide` with `struct` and replies go out as bytes on the same socket.
  Dissecting with Scapy or calling `sendp()` per reply costs 1-12 ms (docs/architecture.md#facts);
  this path costs tens of µs;
- the control socket: Unix stream, mode 0600, newline-delimited JSON (see
  `netlab.proxyarp.client` for the requests and replies);
- a self-pipe for SIGTERM/SIGINT, so a signal ends the loop between frames and
  the socket file is removed.

Ready means: the control socket exists and answers `ping`. It is created only
after the L2 socket is open and the MAC is known, so a client that gets a pong
knows ARP is being answered.

Every address that enters the set (from --address at start or a later `add`) is
announced with --gratuitous-count ARP announcements, the first at once, then one
per --gratuitous-interval; a restarted daemon thus re-announces its set. `remove`
sends nothing: whoever owns the address next (the source VM after undo) announces
itself. Exit status: 0 after SIGTERM/SIGINT/SIGHUP, 1 when it cannot start or its
interface was deleted (the socket can never see a frame again), 2 for bad arguments.

Memory is bounded whatever arrives: no per-frame allocation survives the frame,
the proxied set is capped at MAX_PROXIED, the control side at MAX_CLIENTS
connections with one request line of at most MAX_LINE bytes each, and pending
announcements are at most one entry per proxied address (plus stale entries,
compacted).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ipaddress
import json
import logging
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import time
from dataclasses import dataclass, field

from netlab.proxyarp import frames

log = logging.getLogger("netlab.proxyarp")

MAX_PROXIED = 65536  # a /16: more than any emulated LAN segment
MAX_CLIENTS = 8
MAX_LINE = 256 * 1024  # ~14 000 addresses per request; the client sends 4096 at most
CLIENT_IDLE_TIMEOUT = 30.0
# RFC 5227 §1.1: ANNOUNCE_NUM 2, ANNOUNCE_INTERVAL 2 s. The first goes out at once,
# which is what makes neighbours switch over; the second covers a lost frame.
DEFAULT_GRATUITOUS_COUNT = 2
DEFAULT_GRATUITOUS_INTERVAL = 2.0
# Frames handled per wake-up before control requests and announcements get a turn,
# so a flood cannot starve the control socket (and vice versa).
FRAME_BUDGET = 256
ANNOUNCE_BUDGET = 256
# Ethernet + ARP is 42 bytes; a re-inserted VLAN tag adds 4. Longer frames are cut,
# which is harmless: nothing after byte 42 is read.
RECV_SIZE = 128
# Room for a burst of a few thousand small frames; root may exceed rmem_max.
RCVBUF_BYTES = 4 * 1024 * 1024

CONTROL_OPS = ("add", "remove", "list", "stats", "ping")

SO_RCVBUFFORCE = 33  # not exported by the socket module
SOL_PACKET = 263
PACKET_STATISTICS = 6
ARPHRD_ETHER = 1


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


@dataclass
class Stats:
    """Counters exposed by `stats`. Every frame read is exactly one of: replied,
    send error, or ignored (for one reason), so
    frames_seen == replies_sent + send_errors + ignored."""

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
    control_requests: int = 0
    control_errors: int = 0
    kernel_drops: int = 0


@dataclass
class _Client:
    sock: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    last_active: float = field(default_factory=time.monotonic)
    eof: bool = False
    closing: bool = False  # close once outbuf is flushed
    closed: bool = False


class ProxyArpDaemon:
    """One interface, one proxied set, one control socket. `run()` until a signal."""

    def __init__(
        self,
        iface: str,
        socket_path: str,
        addresses: list[ipaddress.IPv4Address] | None = None,
        gratuitous_count: int = DEFAULT_GRATUITOUS_COUNT,
        gratuitous_interval: float = DEFAULT_GRATUITOUS_INTERVAL,
    ) -> None:
        self.iface = iface
        self.socket_path = socket_path
        self.gratuitous_count = gratuitous_count
        self.gratuitous_interval = gratuitous_interval
        self.proxied: set[bytes] = set()
        self.stats = Stats()
        self.mac = b""
        self._initial = list(addresses or [])
        self._l2 = None  # scapy L2Socket
        self._ifindex = 0
        self._server: socket.socket | None = None
        self._server_id: tuple[int, int] | None = None
        self._clients: dict[int, _Client] = {}
        self._sel = selectors.DefaultSelector()
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        # Announcements still to send: a FIFO of (due, address, generation). The
        # interval is constant, so appending keeps it sorted by due time.
        self._announce_queue: collections.deque[tuple[float, bytes, int]] = collections.deque()
        self._announce_left: dict[bytes, tuple[int, int]] = {}  # address -> (generation, left)
        self._generation = 0
        self._send_error_logged = 0.0
        self.exit_status = 0

    # ---- start and stop -------------------------------------------------------------

    def open(self) -> None:
        """Open the L2 socket, then the control socket (that order is the ready signal)."""
        # Handlers first: a SIGTERM during start-up then ends run() at once and close()
        # still removes the socket file, instead of killing us with the file left behind.
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._open_l2()
        if self._initial:
            self._add([frames.proxiable_address(str(a)).packed for a in self._initial])
        self._open_control()
        log.info(
            "ready on %s (%s), %d proxied, control %s",
            self.iface,
            frames.mac_to_text(self.mac),
            len(self.proxied),
            self.socket_path,
        )

    def _open_l2(self) -> None:
        try:
            self._ifindex = socket.if_nametoindex(self.iface)
        except OSError:
            raise StartupError(
                f"no interface {self.iface!r} in this network namespace "
                "(start the daemon inside the NEA namespace: nsenter --net=/run/netns/NAME)"
            ) from None
        # Scapy is imported here, not at module level: only the daemon process pays
        # for it (~0.25 s), never the CLI or the client. scapy.all is not needed.
        import scapy.config  # noqa: F401
        from scapy.arch.linux import L2Socket

        # Without scapy.layers.l2 loaded, L2Socket warns that it cannot guess the link
        # type; the daemon never dissects, so the warning is noise and the import
        # would cost ~25 ms more.
        scapy_log = logging.getLogger("scapy.runtime")
        level = scapy_log.level
        scapy_log.setLevel(logging.ERROR)
        try:
            self._l2 = L2Socket(iface=self.iface, filter="arp", promisc=False)
        except OSError as exc:
            raise StartupError(f"cannot open a packet socket on {self.iface}: {exc}") from exc
        finally:
            scapy_log.setLevel(level)
        # The MAC comes from the bound socket itself, in this namespace. /sys/class/net
        # would show the namespace of whoever mounted /sys, which under nsenter --net
        # is the root namespace: the wrong interface, or none.
        _name, _proto, _pkttype, hatype, addr = self._l2.ins.getsockname()
        if hatype != ARPHRD_ETHER or len(addr) != 6:
            raise StartupError(f"{self.iface} is not an Ethernet interface; ARP needs one")
        self.mac = bytes(addr)
        ins = self._l2.ins
        with contextlib.suppress(OSError):
            ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        ins.setblocking(False)
        self._read_kernel_drops()  # starts the kernel's counters from zero
        self._sel.register(ins, selectors.EVENT_READ, "l2")

    def _open_control(self) -> None:
        path = self.socket_path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o700, exist_ok=True)
        self._remove_stale_socket(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The umask makes bind() create the file 0600 in the first place: a chmod
        # afterwards would leave a window in which anyone could connect.
        old = os.umask(0o177)
        try:
            server.bind(path)
        except OSError as exc:
            server.close()
            raise StartupError(f"cannot create control socket {path}: {exc}") from exc
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        info = os.stat(path)
        self._server_id = (info.st_dev, info.st_ino)
        server.listen(MAX_CLIENTS)
        server.setblocking(False)
        self._server = server
        self._sel.register(server, selectors.EVENT_READ, "accept")

    @staticmethod
    def _remove_stale_socket(path: str) -> None:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise StartupError(f"{path} exists and is not a socket; remove it or pick another")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            # Left by a daemon that died without cleaning up: safe to replace.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        except OSError as exc:
            raise StartupError(f"cannot check existing socket {path}: {exc}") from exc
        finally:
            probe.close()
        raise StartupError(f"another daemon is already listening on {path}")

    def close(self) -> None:
        """Close every socket and remove the control socket file if it is still ours."""
        for client in list(self._clients.values()):
            self._drop(client)
        if self._server is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(self._server)
            self._server.close()
            self._server = None
            self._unlink_own_socket()
        if self._l2 is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(self._l2.ins)
            self._l2.close()
            self._l2 = None
        signal.set_wakeup_fd(-1)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _unlink_own_socket(self) -> None:
        # A restarted daemon may already own a new file at this path: remove only ours.
        try:
            info = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) == self._server_id:
            os.unlink(self.socket_path)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop = True

    # ---- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT/SIGHUP."""
        while not self._stop:
            timeout = self._next_timeout()
            for key, events in self._sel.select(timeout):
                what = key.data
                if what == "l2":
                    self._on_l2_readable()
                elif what == "accept":
                    self._accept()
                elif what == "wake":
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(64)
                elif isinstance(what, _Client) and not what.closed:
                    self._on_client(what, events)
                if self._stop:
                    break
            self._send_due_announcements()
            self._expire_idle_clients()
        log.info("stopping: %s", self._stats_line())

    def _next_timeout(self) -> float | None:
        now = time.monotonic()
        deadline = None
        if self._announce_queue:
            deadline = self._announce_queue[0][0]
        if self._clients:
            idle = min(c.last_active for c in self._clients.values()) + CLIENT_IDLE_TIMEOUT
            deadline = idle if deadline is None else min(deadline, idle)
        if deadline is None:
            return None
        return max(0.0, deadline - now)

    def _on_l2_readable(self) -> None:
        recv_raw = self._l2.recv_raw
        send = self._l2.outs.send
        decide = frames.decide
        mac = self.mac
        proxied = self.proxied
        stats = self.stats
        ignored = stats.ignored_by_reason
        for _ in range(FRAME_BUDGET):
            try:
                _cls, frame, _ts = recv_raw(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._on_l2_error(exc)
                return
            stats.frames_seen += 1
            if frame is None:
                # Scapy reports frames leaving this namespace (PACKET_OUTGOING) as None:
                # our own kernel's requests, which the NEA must never answer.
                ignored["outgoing"] += 1
                continue
            verdict, reply = decide(frame, mac, proxied)
            if verdict.is_request:
                stats.requests_seen += 1
            if reply is None:
                ignored[verdict.value] += 1
                continue
            try:
                send(reply)
            except OSError as exc:
                stats.send_errors += 1
                self._log_send_error(exc)
            else:
                stats.replies_sent += 1

    def _on_l2_error(self, exc: OSError) -> None:
        try:
            index = socket.if_nametoindex(self.iface)
        except OSError:
            index = 0
        if index != self._ifindex:
            # The socket was bound to an interface that no longer exists; it will
            # never see a frame again. Exit so the supervisor restarts us on the new one.
            log.error("interface %s disappeared (%s); exiting", self.iface, exc)
            self._stop = True
            self.exit_status = 1
            return
        # ENETDOWN when the link goes down: the socket resumes when it comes back up.
        log.warning("packet socket on %s: %s", self.iface, exc)

    def _log_send_error(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._send_error_logged >= 5.0:
            self._send_error_logged = now
            errors = self.stats.send_errors + self.stats.gratuitous_errors
            log.warning("cannot send on %s: %s (%d so far)", self.iface, exc, errors)

    # ---- announcements ----------------------------------------------------------------

    def _schedule_announcements(self, address: bytes) -> None:
        if self.gratuitous_count <= 0:
            return
        self._generation += 1
        self._announce_left[address] = (self._generation, self.gratuitous_count)
        self._announce_queue.append((time.monotonic(), address, self._generation))
        self._compact_announcements()

    def _cancel_announcements(self, address: bytes) -> None:
        self._announce_left.pop(address, None)
        self._compact_announcements()

    def _compact_announcements(self) -> None:
        # Each add/remove cycle can leave one stale queue entry; rebuild before they
        # outnumber the live ones so the queue stays O(proxied set).
        if len(self._announce_queue) > 2 * len(self._announce_left) + 64:
            left = self._announce_left
            self._announce_queue = collections.deque(
                item for item in self._announce_queue if left.get(item[1], (None,))[0] == item[2]
            )

    def _send_due_announcements(self) -> None:
        queue = self._announce_queue
        now = time.monotonic()
        sent = 0
        while queue and queue[0][0] <= now and sent < ANNOUNCE_BUDGET:
            _due, address, generation = queue.popleft()
            entry = self._announce_left.get(address)
            if entry is None or entry[0] != generation:
                continue  # removed or re-added since
            sent += 1
            try:
                self._l2.outs.send(frames.build_gratuitous(self.mac, address))
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

    # ---- the proxied set --------------------------------------------------------------

    def _add(self, packed: list[bytes]) -> list[bytes]:
        new = [a for a in dict.fromkeys(packed) if a not in self.proxied]
        if len(self.proxied) + len(new) > MAX_PROXIED:
            raise ValueError(
                f"would proxy {len(self.proxied) + len(new)} addresses; the limit is {MAX_PROXIED}"
            )
        for address in new:
            self.proxied.add(address)
            self._schedule_announcements(address)
        return new

    def _remove(self, packed: list[bytes]) -> list[bytes]:
        gone = [a for a in dict.fromkeys(packed) if a in self.proxied]
        for address in gone:
            self.proxied.discard(address)
            self._cancel_announcements(address)
        return gone

    # ---- control socket ---------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("control accept: %s", exc)
                return
            sock.setblocking(False)
            if len(self._clients) >= MAX_CLIENTS:
                with contextlib.suppress(OSError):
                    sock.send(_encode({"ok": False, "error": "too many control connections"}))
                sock.close()
                continue
            client = _Client(sock)
            self._clients[sock.fileno()] = client
            self._sel.register(sock, selectors.EVENT_READ, client)

    def _on_client(self, client: _Client, events: int) -> None:
        client.last_active = time.monotonic()
        if events & selectors.EVENT_READ and not client.outbuf and not client.eof:
            try:
                data = client.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._drop(client)
                return
            if data == b"":
                client.eof = True
            elif data:
                client.inbuf += data
        if events & selectors.EVENT_WRITE and not self._flush(client):
            return
        self._serve(client)

    def _serve(self, client: _Client) -> None:
        """Answer complete request lines, one at a time, while replies go out at once."""
        while not client.outbuf and not client.closing and not client.closed:
            end = client.inbuf.find(b"\n")
            if end < 0:
                if len(client.inbuf) > MAX_LINE:
                    self._reply(client, self._too_long())
                    client.closing = True
                elif client.eof and client.inbuf.strip():
                    # A last request without a newline, e.g. from `nc -N`: still answer it.
                    line = bytes(client.inbuf)
                    client.inbuf.clear()
                    self._reply(client, self._handle_line(line))
                    continue
                break
            line = bytes(client.inbuf[:end])
            del client.inbuf[: end + 1]
            if len(line) > MAX_LINE:
                self._reply(client, self._too_long())
                client.closing = True
                break
            if line.strip():
                self._reply(client, self._handle_line(line))
        if client.closed:
            return
        if client.outbuf:
            self._sel.modify(client.sock, selectors.EVENT_WRITE, client)
        elif client.closing or client.eof:
            self._drop(client)
        else:
            self._sel.modify(client.sock, selectors.EVENT_READ, client)

    def _reply(self, client: _Client, reply: dict) -> None:
        client.outbuf += _encode(reply)
        self._flush(client)

    def _flush(self, client: _Client) -> bool:
        """Send what the socket takes now; False if the client is gone."""
        while client.outbuf:
            try:
                sent = client.sock.send(client.outbuf)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self._drop(client)
                return False
            del client.outbuf[:sent]
        return True

    def _drop(self, client: _Client) -> None:
        if client.closed:
            return
        client.closed = True
        self._clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(client.sock)
        client.sock.close()
        client.inbuf.clear()
        client.outbuf.clear()

    def _expire_idle_clients(self) -> None:
        if not self._clients:
            return
        limit = time.monotonic() - CLIENT_IDLE_TIMEOUT
        for client in list(self._clients.values()):
            if client.last_active < limit:
                self._drop(client)

    def _handle_line(self, line: bytes) -> dict:
        self.stats.control_requests += 1
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._failed(f"not a JSON object: {exc}")
        if not isinstance(request, dict):
            return self._failed('a request is a JSON object like {"op": "list"}')
        op = request.get("op")
        if op not in CONTROL_OPS:
            return self._failed(f"unknown op {op!r}; expected one of {', '.join(CONTROL_OPS)}")
        try:
            return getattr(self, f"_op_{op}")(request)
        except ValueError as exc:
            return self._failed(str(exc))

    def _too_long(self) -> dict:
        self.stats.control_requests += 1
        return self._failed(f"request longer than {MAX_LINE} bytes")

    def _failed(self, message: str) -> dict:
        self.stats.control_errors += 1
        return _error(message)

    def _addresses_of(self, request: dict) -> list[bytes]:
        addresses = request.get("addresses")
        if not isinstance(addresses, list):
            raise ValueError("'addresses' must be a list of IPv4 addresses")
        if len(addresses) > MAX_PROXIED:
            raise ValueError(f"at most {MAX_PROXIED} addresses per request")
        # All or nothing: one bad address rejects the request before anything changes.
        return [frames.proxiable_address(a).packed for a in addresses]

    def _op_add(self, request: dict) -> dict:
        added = self._add(self._addresses_of(request))
        if added:
            log.info("add %s (%d proxied)", _summary(added), len(self.proxied))
        return {"ok": True, "added": [_ip(a) for a in added], "proxied": len(self.proxied)}

    def _op_remove(self, request: dict) -> dict:
        removed = self._remove(self._addresses_of(request))
        if removed:
            log.info("remove %s (%d proxied)", _summary(removed), len(self.proxied))
        return {"ok": True, "removed": [_ip(a) for a in removed], "proxied": len(self.proxied)}

    def _op_list(self, _request: dict) -> dict:
        # Sorting the packed form is numeric order for IPv4.
        return {"ok": True, "addresses": [_ip(a) for a in sorted(self.proxied)]}

    def _op_stats(self, _request: dict) -> dict:
        return {"ok": True, "stats": self.stats_dict()}

    def _op_ping(self, _request: dict) -> dict:
        return {
            "ok": True,
            "pong": True,
            "pid": os.getpid(),
            "iface": self.iface,
            "mac": frames.mac_to_text(self.mac),
        }

    def stats_dict(self) -> dict:
        """The counters as plain JSON-able values."""
        s = self.stats
        self._read_kernel_drops()
        return {
            "iface": self.iface,
            "mac": frames.mac_to_text(self.mac),
            "pid": os.getpid(),
            "started_at": s.started_at,
            "uptime": round(time.time() - s.started_at, 3),
            "proxied": len(self.proxied),
            "frames_seen": s.frames_seen,
            "requests_seen": s.requests_seen,
            "replies_sent": s.replies_sent,
            "send_errors": s.send_errors,
            "ignored": sum(s.ignored_by_reason.values()),
            "ignored_by_reason": dict(s.ignored_by_reason),
            "gratuitous_sent": s.gratuitous_sent,
            "gratuitous_errors": s.gratuitous_errors,
            "gratuitous_pending": len(self._announce_left),
            "control_requests": s.control_requests,
            "control_errors": s.control_errors,
            "kernel_drops": s.kernel_drops,
        }

    def _read_kernel_drops(self) -> None:
        # Frames the kernel dropped because our receive buffer was full: the one loss
        # the counters above cannot see. Reading the statistics resets them.
        if self._l2 is None:
            return
        with contextlib.suppress(OSError):
            raw = self._l2.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            _packets, drops = struct.unpack("II", raw)
            self.stats.kernel_drops += drops

    def _stats_line(self) -> str:
        s = self.stats
        return (
            f"frames {s.frames_seen}, requests {s.requests_seen}, replies {s.replies_sent}, "
            f"ignored {sum(s.ignored_by_reason.values())}, gratuitous {s.gratuitous_sent}"
        )


def _encode(reply: dict) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def _error(message: str) -> dict:
    return {"ok": False, "error": message}


def _ip(packed: bytes) -> str:
    return str(ipaddress.IPv4Address(packed))


def _summary(packed: list[bytes]) -> str:
    shown = ", ".join(_ip(a) for a in packed[:4])
    return shown if len(packed) <= 4 else f"{shown} and {len(packed) - 4} more"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m netlab.proxyarp",
        description="Answer ARP on IFACE for a run-time set of IPv4 addresses (proxy ARP).",
    )
    parser.add_argument("--iface", required=True, help="interface to answer on (in this netns)")
    parser.add_argument("--socket", required=True, help="path of the root-only control socket")
    parser.add_argument(
        "--address",
        action="extend",
        nargs="+",
        default=[],
        metavar="A",
        help="address to proxy from the start (repeatable)",
    )
    parser.add_argument(
        "--gratuitous-count",
        type=int,
        default=DEFAULT_GRATUITOUS_COUNT,
        metavar="N",
        help=f"gratuitous ARPs per added address (default {DEFAULT_GRATUITOUS_COUNT}; 0: none)",
    )
    parser.add_argument(
        "--gratuitous-interval",
        type=float,
        default=DEFAULT_GRATUITOUS_INTERVAL,
        metavar="SECONDS",
        help=f"time between them (default {DEFAULT_GRATUITOUS_INTERVAL}, RFC 5227)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.gratuitous_count <= 100:
        parser.error("--gratuitous-count must be between 0 and 100")
    if not 0 <= args.gratuitous_interval <= 3600:
        parser.error("--gratuitous-interval must be between 0 and 3600 seconds")
    addresses = []
    for text in args.address:
        for part in text.split(","):
            try:
                addresses.append(frames.proxiable_address(part))
            except ValueError as exc:
                parser.error(f"--address: {exc}")
    if len(addresses) > MAX_PROXIED:
        parser.error(f"at most {MAX_PROXIED} addresses")
    args.address = addresses
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m netlab.proxyarp`; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"proxyarp[{os.getpid()}] {args.iface}: %(levelname)s %(message)s",
    )
    daemon = ProxyArpDaemon(
        args.iface,
        args.socket,
        args.address,
        gratuitous_count=args.gratuitous_count,
        gratuitous_interval=args.gratuitous_interval,
    )
    try:
        daemon.open()
        daemon.run()
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    finally:
        daemon.close()
    return daemon.exit_status


if __name__ == "__main__":
    sys.exit(main())
