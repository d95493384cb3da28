"""The daemon's control socket: root-only Unix stream, one JSON object per line each way.

Non-blocking and driven by the daemon's selector, so a slow or stuck client never
delays an ARP reply. Memory is bounded: at most MAX_CLIENTS connections, each with one
request line of at most MAX_LINE bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netlab.processes import is_exiting

log = logging.getLogger("netlab.proxyarp")

MAX_CLIENTS = 8
MAX_LINE = 256 * 1024  # ~14 000 addresses per request; the client sends 4096 at most
CLIENT_IDLE_TIMEOUT = 30.0

Handler = Callable[[bytes], dict]


class ControlError(Exception):
    """The control socket cannot be created; the message says why."""


@dataclass
class _Client:
    sock: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    last_active: float = field(default_factory=time.monotonic)
    eof: bool = False
    closing: bool = False  # close once outbuf is flushed
    closed: bool = False


class ControlServer:
    """Accepts clients on `path` and answers each request line with `handler(line)`."""

    def __init__(self, sel: selectors.BaseSelector, path: str, handler: Handler,
                 too_long: Callable[[], dict]) -> None:
        self.sel, self.path, self.handler, self.too_long = sel, path, handler, too_long
        self._server: socket.socket | None = None
        self._server_id: tuple[int, int] | None = None
        self.clients: dict[int, _Client] = {}

    def open(self) -> None:
        path = self.path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o700, exist_ok=True)
        remove_stale_socket(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The umask makes bind() create the file 0600 in the first place: a chmod
        # afterwards would leave a window in which anyone could connect.
        old = os.umask(0o177)
        try:
            server.bind(path)
        except OSError as exc:
            server.close()
            raise ControlError(f"cannot create control socket {path}: {exc}") from exc
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        info = os.stat(path)
        self._server_id = (info.st_dev, info.st_ino)
        server.listen(MAX_CLIENTS)
        server.setblocking(False)
        self._server = server
        self.sel.register(server, selectors.EVENT_READ, self)

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client)
        if self._server is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self._server)
            self._server.close()
            self._server = None
            self._unlink_own_socket()

    def _unlink_own_socket(self) -> None:
        # A restarted daemon may already own a new file at this path: remove only ours.
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) == self._server_id:
            os.unlink(self.path)

    def next_deadline(self) -> float | None:
        if not self.clients:
            return None
        return min(c.last_active for c in self.clients.values()) + CLIENT_IDLE_TIMEOUT

    def on_event(self, data: object, events: int) -> None:
        """Dispatch a selector event registered by this server."""
        if data is self:
            self._accept()
        elif isinstance(data, _Client) and not data.closed:
            self._on_client(data, events)

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
            if len(self.clients) >= MAX_CLIENTS:
                with contextlib.suppress(OSError):
                    sock.send(encode({"ok": False, "error": "too many control connections"}))
                sock.close()
                continue
            client = _Client(sock)
            self.clients[sock.fileno()] = client
            self.sel.register(sock, selectors.EVENT_READ, client)

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
                    self._reply(client, self.too_long())
                    client.closing = True
                elif client.eof and client.inbuf.strip():
                    # A last request without a newline, e.g. from `nc -N`: still answer it.
                    line = bytes(client.inbuf)
                    client.inbuf.clear()
                    self._reply(client, self.handler(line))
                    continue
                break
            line = bytes(client.inbuf[:end])
            del client.inbuf[: end + 1]
            if len(line) > MAX_LINE:
                self._reply(client, self.too_long())
                client.closing = True
                break
            if line.strip():
                self._reply(client, self.handler(line))
        if client.closed:
            return
        if client.outbuf:
            self.sel.modify(client.sock, selectors.EVENT_WRITE, client)
        elif client.closing or client.eof:
            self._drop(client)
        else:
            self.sel.modify(client.sock, selectors.EVENT_READ, client)

    def _reply(self, client: _Client, reply: dict) -> None:
        client.outbuf += encode(reply)
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
        self.clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.sock)
        client.sock.close()
        client.inbuf.clear()
        client.outbuf.clear()

    def expire_idle_clients(self) -> None:
        if not self.clients:
            return
        limit = time.monotonic() - CLIENT_IDLE_TIMEOUT
        for client in list(self.clients.values()):
            if client.last_active < limit:
                self._drop(client)


def remove_stale_socket(path: str) -> None:
    """Remove `path` if no daemon answers there any more (dead, or exiting);
    ControlError if a live one listens or the path is not a socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlError(f"{path} exists and is not a socket; remove it or pick another")
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
        probe.close()
        raise ControlError(f"cannot check existing socket {path}: {exc}") from exc
    try:
        listener = _peer_pid(probe)
    finally:
        probe.close()
    if listener and is_exiting(listener):
        # A daemon killed with many appliances still listens while the kernel closes
        # its packet sockets (over a second for a hundred; the listener goes last), but
        # it will never answer again: take the path over now.
        log.info("the daemon listening on %s (pid %d) is exiting; replacing it", path, listener)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    raise ControlError(f"another daemon is already listening on {path}")


def _peer_pid(sock: socket.socket) -> int:
    """The pid of the process that listens at the other end (0 if unknown)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return 0
    return struct.unpack("3i", raw)[0]


def encode(reply: dict) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"
