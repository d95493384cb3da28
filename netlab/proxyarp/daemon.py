"""The proxy-ARP daemon: one process answers ARP for every appliance of a lab.

    python -m netlab.proxyarp --socket PATH [--iface IF] [--gratuitous-count N]
                              [--gratuitous-interval S]

One thread, one `selectors` loop over:

- one AF_PACKET socket per appliance, bound to ETH_P_ARP (incoming ARP only: no
  frame this namespace sends, no IP traffic), each opened inside its appliance's
  network namespace (a socket keeps its namespace), read with plain `recv()`;
  frames are judged by `frames.decide` on byte slices and replies go out as bytes on
  the same socket. Dissecting with Scapy or calling `sendp()` per reply costs 1-12 ms;
  this path costs tens of µs, and the daemon does not import Scapy at all;
- the control socket (netlab.proxyarp.control; requests in netlab.proxyarp.client);
- a self-pipe for SIGTERM/SIGINT/SIGHUP, so a signal ends the loop between frames
  and the socket file is removed.

Appliances are attached and their sets changed only over the control socket: a set is
prefixes with exceptions (netlab.proxyarp.sets), so a /8 costs what a /30 costs. With
`--iface IF` an appliance named IF on this namespace's IF is attached at start (the
single-appliance use: tests, benchmarks). Ready means the control socket answers
`ping`; it is created only after the `--iface` appliance, if any, is open.

Every address that becomes a member one by one (not a whole prefix) is first probed
for, as `arping -D` does (netlab.proxyarp.probing): conflicts are logged and reported
by the `conflicts` op, and the appliance answers for the address all the same.
Every explicit address that joins a set is announced with the appliance's gratuitous
count of ARP announcements, the first at once, then one per interval. Exit status: 0
after a signal, 1 when it cannot start, 2 for bad arguments. An appliance whose
interface is deleted is detached; the daemon serves the others on.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from netlab.proxyarp import frames
from netlab.proxyarp.appliance import Appliance, AttachError
from netlab.proxyarp.control import MAX_LINE, ControlError, ControlServer
from netlab.proxyarp.sets import MAX_ENTRIES, AddressSet

log = logging.getLogger("netlab.proxyarp")

MAX_APPLIANCES = 1024  # two per NEA pair; a host runs out of other things first
# RFC 5227 §1.1: ANNOUNCE_NUM 2, ANNOUNCE_INTERVAL 2 s. The first goes out at once,
# which is what makes neighbours switch over; the second covers a lost frame.
DEFAULT_GRATUITOUS_COUNT = 2
DEFAULT_GRATUITOUS_INTERVAL = 2.0

CONTROL_OPS = ("attach", "detach", "set", "add", "remove", "announce", "list", "stats",
               "conflicts", "ping")


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


class ProxyArpDaemon:
    """Appliances, their sets, one control socket. `run()` until a signal."""

    def __init__(self, socket_path: str, gratuitous_count: int = DEFAULT_GRATUITOUS_COUNT,
                 gratuitous_interval: float = DEFAULT_GRATUITOUS_INTERVAL) -> None:
        self.socket_path = socket_path
        self.gratuitous_count = gratuitous_count
        self.gratuitous_interval = gratuitous_interval
        self.appliances: dict[str, Appliance] = {}
        # appliances with announcements queued: the loop looks at these only, so serving
        # a hundred appliances costs no more per frame than serving one
        self._announcing: set[Appliance] = set()
        # when the earliest of their probes or announcements is due: frames that arrive
        # before then cost no look at a hundred queues
        self._due_at = 0.0
        self.started_at = time.time()
        self.control_requests = 0
        self.control_errors = 0
        self._sel = selectors.DefaultSelector()
        self._closer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="close")
        self._control = ControlServer(self._sel, socket_path, self._handle_line, self._too_long)
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self.exit_status = 0

    # ---- start and stop -------------------------------------------------------------

    def open(self, iface: str | None = None) -> None:
        """Attach the `iface` appliance if given, then open the control socket (ready)."""
        # Handlers first: a SIGTERM during start-up then ends run() at once and close()
        # still removes the socket file, instead of killing us with the file left behind.
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        if iface:
            try:
                self.attach(iface, None, iface, self.gratuitous_count)
            except AttachError as exc:
                raise StartupError(
                    f"{exc} (start the daemon inside the NEA namespace: "
                    "nsenter --net=/run/netns/NAME)") from None
        try:
            self._control.open()
        except ControlError as exc:
            raise StartupError(str(exc)) from None
        log.info("ready, %d appliances, control %s", len(self.appliances), self.socket_path)
        gc.collect()
        gc.freeze()

    def close(self) -> None:
        """Close every socket and remove the control socket file if it is still ours."""
        self._control.close()
        for name in list(self.appliances):
            self.detach(name)
        self._closer.shutdown(wait=True)
        signal.set_wakeup_fd(-1)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop = True

    # ---- appliances -------------------------------------------------------------------

    def attach(self, name: str, netns: str | None, iface: str, gratuitous_count: int,
               gratuitous_interval: float | None = None) -> Appliance:
        """Serve `iface` in `netns` as appliance `name` (again: reopened, set kept)."""
        old = self.appliances.get(name)
        if old is not None and old.dead is None and (old.netns, old.iface) == (netns or None,
                                                                              iface):
            old.gratuitous_count = gratuitous_count
            return old
        if old is None and len(self.appliances) >= MAX_APPLIANCES:
            raise ValueError(f"at most {MAX_APPLIANCES} appliances per daemon")
        interval = self.gratuitous_interval if gratuitous_interval is None else gratuitous_interval
        appliance = Appliance(name, netns, iface, gratuitous_count, interval)
        appliance.open()
        if old is not None:
            appliance.replace(old.proxied)
            self.detach(name)
        self._note_announcements(appliance)
        self.appliances[name] = appliance
        self._sel.register(appliance.fileno(), selectors.EVENT_READ, appliance)
        log.info("attached %s: %s in %s (%s)", name, iface, netns or "this namespace",
                 frames.mac_to_text(appliance.mac))
        # What exists now (Scapy's modules, the appliances) is moved out of the cyclic
        # collector's reach: a full collection walks every object, and with Scapy
        # loaded that is a pause of milliseconds in the middle of answering ARP. What
        # the hot path allocates dies young and is still collected.
        gc.freeze()
        return appliance

    def _note_announcements(self, appliance: Appliance) -> None:
        if appliance.announce_queue or appliance.probes:
            self._announcing.add(appliance)
            self._due_at = 0.0

    def detach(self, name: str) -> bool:
        appliance = self.appliances.pop(name, None)
        if appliance is None:
            return False
        self._announcing.discard(appliance)
        if appliance.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(appliance.fileno())
        log.info("detached %s", appliance.stats_line())
        # Closing a packet socket waits for an RCU grace period (~10 ms): done aside, so
        # powering a hundred pairs off does not stall the replies of the others.
        self._closer.submit(appliance.close)
        return True

    # ---- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT/SIGHUP."""
        while not self._stop:
            for key, events in self._sel.select(self._next_timeout()):
                what = key.data
                if isinstance(what, Appliance):
                    what.on_readable()
                    if what.dead is not None:
                        self.detach(what.name)
                elif what == "wake":
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(64)
                else:
                    self._control.on_event(what, events)
                if self._stop:
                    break
            if self._announcing and (now := time.monotonic()) >= self._due_at:
                self._send_due(now)
            self._control.expire_idle_clients()
        log.info("stopping")

    def _send_due(self, now: float) -> None:
        """Probes and announcements that are due; when the next ones will be."""
        due_at = float("inf")
        for appliance in list(self._announcing):
            # the probe first: it asks before the announcement claims
            appliance.send_due_probes(now)
            appliance.send_due_announcements(now)
            deadlines = [appliance.announce_queue[0][0]] if appliance.announce_queue else []
            if (probe := appliance.probes.next_deadline()) is not None:
                deadlines.append(probe)
            if deadlines:
                due_at = min(due_at, *deadlines)
            else:
                self._announcing.discard(appliance)
        self._due_at = due_at

    def _next_timeout(self) -> float | None:
        deadlines = [self._due_at] if self._announcing else []
        idle = self._control.next_deadline()
        if idle is not None:
            deadlines.append(idle)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    # ---- control requests ---------------------------------------------------------------

    def _handle_line(self, line: bytes) -> dict:
        self.control_requests += 1
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
        except (ValueError, AttachError) as exc:
            return self._failed(str(exc))

    def _too_long(self) -> dict:
        self.control_requests += 1
        return self._failed(f"request longer than {MAX_LINE} bytes")

    def _failed(self, message: str) -> dict:
        self.control_errors += 1
        return {"ok": False, "error": message}

    def _appliance(self, request: dict) -> Appliance:
        name = request.get("appliance")
        if name is None and len(self.appliances) == 1:
            return next(iter(self.appliances.values()))  # the single-appliance use
        if not isinstance(name, str):
            raise ValueError("'appliance' must name an attached appliance")
        appliance = self.appliances.get(name)
        if appliance is None:
            raise ValueError(f"no appliance {name!r} is attached")
        return appliance

    @staticmethod
    def _addresses_of(request: dict, key: str = "addresses") -> list[int]:
        addresses = request.get(key)
        if not isinstance(addresses, list):
            raise ValueError(f"'{key}' must be a list of IPv4 addresses")
        if len(addresses) > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} addresses per request")
        # All or nothing: one bad address rejects the request before anything changes.
        return [int(frames.proxiable_address(a)) for a in addresses]

    def _op_attach(self, request: dict) -> dict:
        name, iface, netns = request.get("appliance"), request.get("iface"), request.get("netns")
        if not isinstance(name, str) or not name or not isinstance(iface, str) or not iface:
            raise ValueError("attach needs 'appliance' and 'iface' (and 'netns')")
        if netns is not None and (not isinstance(netns, str) or "/" in netns):
            raise ValueError("'netns' must be the name of a namespace in /run/netns")
        count = request.get("gratuitous_count", self.gratuitous_count)
        if not isinstance(count, int) or not 0 <= count <= 100:
            raise ValueError("'gratuitous_count' must be between 0 and 100")
        appliance = self.attach(name, netns, iface, count)
        return {"ok": True, "appliance": name, "mac": frames.mac_to_text(appliance.mac)}

    def _op_detach(self, request: dict) -> dict:
        name = request.get("appliance")
        if not isinstance(name, str):
            raise ValueError("detach needs 'appliance'")
        return {"ok": True, "detached": self.detach(name)}

    def _op_set(self, request: dict) -> dict:
        appliance = self._appliance(request)
        for key in ("prefixes", "addresses", "except"):
            if not isinstance(request.get(key, []), list):
                raise ValueError(f"'{key}' must be a list")
        new = AddressSet.from_spec(request.get("prefixes", []), request.get("addresses", []),
                                   request.get("except", []))
        joined, left = appliance.replace(new)
        self._note_announcements(appliance)
        if joined or left:
            log.info("%s: set %s (+%d, -%d explicit)", appliance.name, new.spec().to_dict(),
                     joined, left)
        return {"ok": True, "proxied": new.size(), "joined": joined, "left": left}

    def _op_add(self, request: dict) -> dict:
        appliance = self._appliance(request)
        added = appliance.add(self._addresses_of(request))
        self._note_announcements(appliance)
        if added:
            log.info("%s: add %s", appliance.name, _summary(added))
        return {"ok": True, "added": [_ip(a) for a in added],
                "proxied": appliance.proxied.size()}

    def _op_announce(self, request: dict) -> dict:
        """Gratuitous ARP again for addresses of the set: the machine that held one left
        the LAN, and its neighbours must switch to this appliance now, not when their
        entries age out (a takeover, as keepalived announces one)."""
        appliance = self._appliance(request)
        members = appliance.take_over(self._addresses_of(request))
        self._note_announcements(appliance)
        return {"ok": True, "announced": [_ip(a) for a in members]}

    def _op_remove(self, request: dict) -> dict:
        appliance = self._appliance(request)
        removed = appliance.remove(self._addresses_of(request))
        if removed:
            log.info("%s: remove %s", appliance.name, _summary(removed))
        return {"ok": True, "removed": [_ip(a) for a in removed],
                "proxied": appliance.proxied.size()}

    def _op_list(self, request: dict) -> dict:
        appliance = self._appliance(request)
        spec = appliance.proxied.spec()
        return {"ok": True, **spec.to_dict(), "proxied": appliance.proxied.size()}

    def _op_stats(self, request: dict) -> dict:
        single = len(self.appliances) == 1 and not request.get("all")
        if request.get("appliance") is not None or single:
            return {"ok": True, "stats": self._appliance(request).stats_dict()
                    | self._daemon_stats()}
        return {"ok": True, "stats": self._daemon_stats(),
                "appliances": {n: a.stats_dict() for n, a in self.appliances.items()}}

    def _op_conflicts(self, request: dict) -> dict:
        """Address conflicts the appliances' probes found, and what is still in probe."""
        single = len(self.appliances) == 1 and not request.get("all")
        if request.get("appliance") is not None or single:
            return {"ok": True, **self._appliance(request).probes.report()}
        return {"ok": True, "appliances": {n: a.probes.report()
                                           for n, a in self.appliances.items()}}

    def _daemon_stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "appliances": len(self.appliances),
                "control_requests": self.control_requests,
                "control_errors": self.control_errors,
                "daemon_started_at": self.started_at}

    def _op_ping(self, _request: dict) -> dict:
        reply: dict[str, Any] = {"ok": True, "pong": True, "pid": os.getpid(),
                                 "appliances": sorted(self.appliances)}
        if len(self.appliances) == 1:
            only = next(iter(self.appliances.values()))
            reply |= {"iface": only.iface, "mac": frames.mac_to_text(only.mac)}
        return reply


def _ip(ip: int) -> str:
    return str(ipaddress.IPv4Address(ip))


def _summary(ips: list[int]) -> str:
    shown = ", ".join(_ip(a) for a in ips[:4])
    return shown if len(ips) <= 4 else f"{shown} and {len(ips) - 4} more"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m netlab.proxyarp",
        description="Answer ARP for appliances attached over the control socket (proxy ARP).",
    )
    parser.add_argument("--socket", required=True, help="path of the root-only control socket")
    parser.add_argument("--iface", help="attach this interface of this namespace at start")
    parser.add_argument(
        "--gratuitous-count", type=int, default=DEFAULT_GRATUITOUS_COUNT, metavar="N",
        help=f"default gratuitous ARPs per added address (default {DEFAULT_GRATUITOUS_COUNT})",
    )
    parser.add_argument(
        "--gratuitous-interval", type=float, default=DEFAULT_GRATUITOUS_INTERVAL,
        metavar="SECONDS",
        help=f"time between them (default {DEFAULT_GRATUITOUS_INTERVAL}, RFC 5227)",
    )
    parser.add_argument(
        "--realtime", type=int, default=0, metavar="PRIORITY",
        help="run under SCHED_FIFO at this priority (1-99; default 0: normal scheduling)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.realtime <= 99:
        parser.error("--realtime must be between 0 and 99")
    if not 0 <= args.gratuitous_count <= 100:
        parser.error("--gratuitous-count must be between 0 and 100")
    if not 0 <= args.gratuitous_interval <= 3600:
        parser.error("--gratuitous-interval must be between 0 and 3600 seconds")
    return args


def _take_realtime(priority: int) -> None:
    """Answer before the host's ordinary work. On a busy host a woken process waits
    milliseconds for a CPU (p99 2-8 ms measured at load 8 on 2 cores); a real-time one
    runs at once. Safe to grant: the loop sleeps until a frame arrives and handles at
    most FRAME_BUDGET frames per socket before it looks at the others, and the kernel
    keeps 5 % of each CPU for everything else (sched_rt_runtime_us) even under a flood."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
                              os.sched_param(priority))
    except (OSError, AttributeError) as exc:
        log.warning("cannot run at real-time priority %d (%s); answering at normal "
                    "priority", priority, exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m netlab.proxyarp`; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"proxyarp[{os.getpid()}]: %(levelname)s %(message)s",
    )
    if args.realtime:
        _take_realtime(args.realtime)
    daemon = ProxyArpDaemon(args.socket, gratuitous_count=args.gratuitous_count,
                            gratuitous_interval=args.gratuitous_interval)
    try:
        daemon.open(args.iface)
        daemon.run()
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    finally:
        daemon.close()
    return daemon.exit_status


if __name__ == "__main__":
    sys.exit(main())
