"""Client of the proxy-ARP daemon's control socket (no Scapy: the CLI imports this).

Protocol: one JSON object per line each way, over a root-only Unix stream socket.
Requests about one appliance name it with "appliance" (optional while only one is
attached).

    {"op": "attach", "appliance": A, "netns": NS, "iface": IF, "gratuitous_count": N}
                                               -> {"ok": true, "mac": ...}
    {"op": "detach", "appliance": A}           -> {"ok": true, "detached": bool}
    {"op": "set", "appliance": A, "prefixes": [...], "addresses": [...], "except": [...]}
                                               -> {"ok": true, "proxied": N, ...}
    {"op": "add", "addresses": ["192.0.2.7"]}  -> {"ok": true, "added": [...], "proxied": N}
    {"op": "remove", "addresses": [...]}       -> {"ok": true, "removed": [...], "proxied": N}
    {"op": "announce", "addresses": [...]}     -> {"ok": true, "announced": [...]}
                                                  (gratuitous ARP again for those in the set)
    {"op": "list"}                             -> {"ok": true, "prefixes": [...],
                                                   "addresses": [...], "except": [...]}
    {"op": "conflicts"}                        -> {"ok": true, "conflicts": [...], "probing": [...]}
                                                  (what its ARP probes found; no appliance:
                                                   "appliances": {A: {...}})
    {"op": "stats"}                            -> {"ok": true, "stats": {...}}
                                                  (no appliance: "appliances": {A: {...}})
    {"op": "ping"}                             -> {"ok": true, "pong": true, "pid": ..,
                                                   "appliances": [...]}
    anything wrong                             -> {"ok": false, "error": "..."}

A set is prefixes minus exceptions plus addresses (netlab.proxyarp.sets): never a
list of every address of a subnet. Each call opens its own connection: a client holds
no state that a daemon restart could invalidate.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterable
from typing import Any

from netlab.errors import NetlabError
from netlab.processes import ProcessRecord, is_alive
from netlab.proxyarp.frames import proxiable_address

# Requests stay well under the daemon's line limit (256 KiB ≈ 14 000 addresses).
ADDRESSES_PER_REQUEST = 4096
MAX_REPLY = 4 * 1024 * 1024  # a list of 65 536 addresses is ~1.1 MB
# Requests sent together on one connection: the daemon answers them one after another
# before it reads its ARP sockets again, and an attach costs it ~0.4 ms.
PIPELINE_CHUNK = 8


class ProxyArpError(NetlabError):
    """A proxy-ARP daemon could not be reached or refused a request."""


class DaemonNotRunning(ProxyArpError):
    """Nobody answers on the control socket."""


class DaemonNotResponding(ProxyArpError):
    """The daemon accepted the connection but did not answer in time."""


class RequestRejected(ProxyArpError):
    """The daemon answered {"ok": false}; the message is its reason."""


class ProxyArpClient:
    """Talks to one daemon through its control socket at `socket_path`."""

    def __init__(self, socket_path: str, timeout: float = 5.0,
                 appliance: str | None = None) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self.appliance = appliance

    def for_appliance(self, appliance: str) -> ProxyArpClient:
        """A client of the same daemon whose requests are about `appliance`."""
        return ProxyArpClient(self.socket_path, self.timeout, appliance)

    def attach(self, netns: str | None, iface: str, gratuitous_count: int = 0) -> str:
        """Serve `iface` in namespace `netns` as this client's appliance; returns its MAC.
        Attaching again what is attached changes nothing (its set is kept)."""
        request: dict[str, Any] = {"op": "attach", "netns": netns, "iface": iface,
                                   "gratuitous_count": gratuitous_count}
        return str(self._call(request)["mac"])

    def detach(self) -> bool:
        """Stop serving this client's appliance; False if it was not attached."""
        return bool(self._call({"op": "detach"})["detached"])

    def set(self, prefixes: Iterable[str] = (), addresses: Iterable[str] = (),
            exceptions: Iterable[str] = ()) -> int:
        """Replace the set with prefixes minus exceptions plus addresses; returns its size.
        Explicit addresses that joined are announced by gratuitous ARP."""
        request = {"op": "set", "prefixes": list(prefixes), "addresses": list(addresses),
                   "except": list(exceptions)}
        return int(self._call(request)["proxied"])

    def describe(self) -> dict[str, Any]:
        """The set: {"prefixes", "addresses", "except", "proxied" (its size)}."""
        reply = self._call({"op": "list"})
        return {key: reply[key] for key in ("prefixes", "addresses", "except", "proxied")}

    def all_stats(self) -> dict[str, dict[str, Any]]:
        """The counters of every attached appliance, by name."""
        reply = self._call({"op": "stats", "all": True}, about_appliance=False)
        return dict(reply.get("appliances", {}))

    def add(self, addresses: Iterable[str]) -> list[str]:
        """Proxy `addresses` from now on; returns those that were not proxied before.

        Every address is checked before the first one is sent, so a typo changes
        nothing. Batches of ADDRESSES_PER_REQUEST are applied one after another.
        """
        added: list[str] = []
        for batch in self._batches(addresses):
            added += self._call({"op": "add", "addresses": batch})["added"]
        return added

    def announce(self, addresses: Iterable[str]) -> list[str]:
        """Gratuitous ARP again for those of `addresses` in the set (a takeover)."""
        return list(self._call({"op": "announce", "addresses": list(addresses)})["announced"])

    def conflicts(self) -> dict[str, Any]:
        """What this appliance's ARP probes found: {"conflicts": [{"address", "mac",
        "other_mac", "how", "time", ...}], "probing": [addresses still in probe]}."""
        reply = self._call({"op": "conflicts"})
        return {"conflicts": list(reply.get("conflicts", [])),
                "probing": list(reply.get("probing", []))}

    def wait_probed(self, wanted: dict[str, list[str]],
                    timeout: float = 2.0) -> dict[str, list[dict]]:
        """Wait until none of the addresses in `wanted` (appliance -> addresses) is still
        in probe (at most `timeout`); the conflicts found for them, by appliance. One
        request per look, whatever the number of appliances."""
        deadline = time.monotonic() + timeout
        while True:
            reports = dict(self._call({"op": "conflicts", "all": True},
                                      about_appliance=False).get("appliances", {}))
            busy = any(set(addresses) & set(reports.get(name, {}).get("probing", []))
                       for name, addresses in wanted.items())
            if not busy or time.monotonic() >= deadline:
                return {name: [c for c in reports.get(name, {}).get("conflicts", [])
                               if c["address"] in addresses]
                        for name, addresses in wanted.items()}
            time.sleep(0.02)

    def remove(self, addresses: Iterable[str]) -> list[str]:
        """Stop proxying `addresses`; returns those that were proxied. Absent ones are fine."""
        removed: list[str] = []
        for batch in self._batches(addresses):
            removed += self._call({"op": "remove", "addresses": batch})["removed"]
        return removed

    def list(self) -> list[str]:
        """The addresses proxied one by one (not those of prefixes), in numeric order."""
        return list(self._call({"op": "list"})["addresses"])

    def stats(self) -> dict[str, Any]:
        """The daemon's counters (frames_seen, requests_seen, replies_sent, ignored, ...)."""
        return dict(self._call({"op": "stats"})["stats"])

    def ping(self) -> bool:
        """True when the daemon answers; never raises."""
        try:
            return bool(self._call({"op": "ping"}).get("pong"))
        except ProxyArpError:
            return False

    def info(self) -> dict[str, Any]:
        """The daemon's ping answer: pid, interface, MAC."""
        return self._call({"op": "ping"})

    def wait_ready(self, timeout: float = 5.0, process: ProcessRecord | None = None) -> None:
        """Return once the daemon answers ping; raise DaemonNotRunning after `timeout`.

        With `process` (its record from start_process) a daemon that exits during
        start-up is reported at once instead of after the whole timeout.
        """
        deadline = time.monotonic() + timeout
        last: ProxyArpError | None = None
        while True:
            try:
                self._call({"op": "ping"}, timeout=min(self.timeout, 1.0))
                return
            except ProxyArpError as exc:
                last = exc
            if process is not None and not is_alive(process):
                raise DaemonNotRunning(
                    f"proxy-ARP daemon (pid {process.pid}) exited during start-up; "
                    "its stderr says why"
                )
            if time.monotonic() >= deadline:
                raise DaemonNotRunning(
                    f"proxy-ARP daemon at {self.socket_path} not ready after {timeout} s: {last}"
                )
            time.sleep(0.01)

    # ---- transport --------------------------------------------------------------------

    def _batches(self, addresses: Iterable[str]) -> Iterable[list[str]]:
        if isinstance(addresses, str):
            addresses = [addresses]
        checked = []
        for address in addresses:
            try:
                checked.append(str(proxiable_address(address)))
            except ValueError as exc:
                raise RequestRejected(f"proxy ARP: {exc}") from None
        for start in range(0, len(checked), ADDRESSES_PER_REQUEST):
            yield checked[start : start + ADDRESSES_PER_REQUEST]

    def _call(self, request: dict, timeout: float | None = None,
              about_appliance: bool = True) -> dict:
        if about_appliance and self.appliance is not None and request["op"] != "ping":
            request = request | {"appliance": self.appliance}
        return self._exchange([request], timeout)[0]

    def pipeline(self, requests: list[dict]) -> list[dict]:
        """Several requests (each naming its appliance) on one connection, in chunks of
        PIPELINE_CHUNK: the daemon answers a chunk, then serves its ARP sockets again.
        Returns every reply in order; raises RequestRejected for the first refused one
        (the requests of its chunk were all applied)."""
        return self._exchange(requests, None)

    def _connect(self, timeout: float | None) -> socket.socket:
        path = self.socket_path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            sock.connect(path)
        except FileNotFoundError:
            sock.close()
            raise DaemonNotRunning(
                f"proxy-ARP daemon is not running at {path} (no control socket)"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise DaemonNotRunning(
                f"proxy-ARP daemon is not running at {path} "
                "(stale socket: the daemon died without removing it)"
            ) from None
        except PermissionError:
            sock.close()
            raise ProxyArpError(
                f"permission denied on {path}: the control socket is root-only"
            ) from None
        except TimeoutError:
            sock.close()
            raise DaemonNotResponding(f"proxy-ARP daemon at {path} accepts no connection") from None
        except OSError as exc:
            sock.close()
            raise DaemonNotRunning(f"cannot reach proxy-ARP daemon at {path}: {exc}") from None
        return sock

    def _exchange(self, requests: list[dict], timeout: float | None) -> list[dict]:
        path = self.socket_path
        replies: list[dict] = []
        sock = self._connect(timeout)
        try:
            reader = _LineReader(sock)
            for start in range(0, len(requests), PIPELINE_CHUNK):
                chunk = requests[start : start + PIPELINE_CHUNK]
                try:
                    # A daemon that refuses the connection (too many clients) writes its
                    # reason and hangs up before reading: read the reason anyway.
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in chunk))
                    lines = [reader.line() for _ in chunk]
                except TimeoutError:
                    raise DaemonNotResponding(
                        f"proxy-ARP daemon at {path} did not answer {chunk[0]['op']!r} in time"
                    ) from None
                except OSError as exc:
                    raise DaemonNotRunning(
                        f"proxy-ARP daemon at {path} hung up: {exc}") from None
                replies += [_decode(path, line) for line in lines]
        finally:
            sock.close()
        return replies


def _decode(path: str, line: bytes) -> dict:
    try:
        reply = json.loads(line)
    except ValueError:
        raise ProxyArpError(f"proxy-ARP daemon at {path} sent a garbled reply") from None
    if not isinstance(reply, dict):
        raise ProxyArpError(f"proxy-ARP daemon at {path} sent a garbled reply")
    if not reply.get("ok"):
        raise RequestRejected(f"proxy-ARP daemon at {path}: {reply.get('error', 'refused')}")
    return reply


class _LineReader:
    """Reply lines of one connection (pipelined replies may arrive in one read)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > MAX_REPLY:
                raise ConnectionResetError("reply too long")
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError("connection closed before a full reply")
            self.buffer += data


