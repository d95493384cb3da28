"""Probes of what a node sees, and the one place tool output is read.

* **ARP**: who answers ARP for an address on a node's LAN. Scapy sends the
  requests and reads the answers inside the node's namespace, so the verdict
  does not depend on which ``arping`` package is installed (iputils-arping and
  the older ``arping`` print replies differently; parsing either gives a false
  verdict with the other one). Every probe runs in one child process,
  ``python -m netlab.net.probes``, which enters each namespace on its own main
  thread, opens a socket there (a socket keeps the namespace it was made in)
  and serves them all with one selector: callers in any thread get right
  answers, and Scapy is never imported into the CLI's process.
* **ping**: the argv, and the summary lines of iputils ping and busybox ping.
* **curl**: the argv that reports the HTTP status, and its reading.
* **neighbours and MACs**: pyroute2's neighbour and link tables, not ``ip neigh``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netlab.errors import NetlabError
from netlab.run import require_tool, run

# ----- ARP --------------------------------------------------------------------------------

ARP_WINDOW = 1.0  # seconds to listen: a second host claiming the address answers in it too
ARP_REQUESTS = 2  # broadcast requests, spread over the first half of the window


@dataclass(frozen=True)
class ArpJob:
    """Ask on `iface` in namespace `netns` who has `address`."""

    netns: str
    iface: str
    address: str


@dataclass(frozen=True)
class ArpAnswer:
    """Every distinct MAC that answered, in the order they came; two are an IP conflict."""

    address: str
    macs: list[str] = field(default_factory=list)
    error: str = ""  # the probe could not run (no such namespace or interface)

    @property
    def conflict(self) -> bool:
        return len(self.macs) > 1


def arp_probe_argv(jobs: Sequence[ArpJob], window: float = ARP_WINDOW) -> list[str]:
    """The argv of the child that probes `jobs`, to run beside other probes.

    The jobs travel as one JSON argument (~60 bytes a job, far below the 128 KiB
    a single argument may have).
    """
    payload = json.dumps({"window": window,
                          "jobs": [[j.netns, j.iface, j.address] for j in jobs]})
    return [sys.executable, "-m", "netlab.net.probes", payload]


def arp_answers(jobs: Sequence[ArpJob], returncode: int, stdout: str,
                stderr: str) -> list[ArpAnswer]:
    """The child's answers to `jobs`, in their order; raises when the child itself failed."""
    if returncode != 0:
        reason = (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1]
        raise NetlabError(f"the ARP probe failed: {reason}")
    rows = json.loads(stdout)
    return [ArpAnswer(j.address, list(r.get("macs", [])), r.get("error", ""))
            for j, r in zip(jobs, rows, strict=True)]


def arp_probe(jobs: Sequence[ArpJob], window: float = ARP_WINDOW) -> list[ArpAnswer]:
    """Answers to `jobs`, in their order, all probed at once in one child process."""
    if not jobs:
        return []
    done = run(arp_probe_argv(jobs, window), check=False, timeout=window + 20)
    return arp_answers(jobs, done.returncode, done.stdout, done.stderr)


def answering_macs(netns: str, iface: str, address: str) -> list[str]:
    """MACs that answer ARP for `address` on `iface` of `netns`; raises if it cannot probe."""
    [answer] = arp_probe([ArpJob(netns, iface, address)])
    if answer.error:
        raise NetlabError(f"cannot probe ARP for {address} in {netns}: {answer.error}")
    return answer.macs


def _open_probe(netns: str, iface: str) -> tuple[Any, str, str]:
    """(socket, own MAC, own IPv4 address) on `iface` inside `netns` (child process only)."""
    from scapy.arch import get_if_addr, get_if_hwaddr
    from scapy.config import conf

    from netlab.net.namespaces import inside

    with inside(netns):
        mac = get_if_hwaddr(iface)
        ip = get_if_addr(iface)
        # not promiscuous: the answers are sent to this interface's MAC or broadcast
        sock = conf.L2socket(iface=iface, filter="arp", promisc=False)
    return sock, mac.lower(), ip


def _request(mac: str, ip: str, address: str) -> Any:
    from scapy.layers.l2 import ARP, Ether

    # Always broadcast: a unicast request after the first answer (iputils arping
    # without -b) never reaches a second host that claims the same address.
    return Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(
        op=1, hwsrc=mac, psrc=ip, pdst=address)


def _frame(sock: Any) -> Any:
    """The next frame as Ethernet (None for our own): Scapy's own guess of the link type
    looks the interface up in the root namespace, where it does not exist."""
    from scapy.layers.l2 import Ether

    _, data, _ = sock.recv_raw()
    return Ether(data) if data else None


def _answer_of(frame: Any, address: str) -> str | None:
    """The MAC an ARP frame claims `address` for (a reply or a gratuitous ARP), else None."""
    from scapy.layers.l2 import ARP

    if frame is None or ARP not in frame:
        return None
    arp = frame[ARP]
    if arp.op != 2 or arp.psrc != address:
        return None
    return str(arp.hwsrc).lower()


def probe_here(jobs: list[tuple[str, str, str]], window: float) -> list[dict[str, Any]]:
    """The child side: probe every (netns, iface, address) at once; a row per job."""
    import select

    rows: list[dict[str, Any]] = [{"macs": []} for _ in jobs]
    socks: dict[int, tuple[Any, list[int]]] = {}  # one socket per (netns, iface)
    opened: dict[tuple[str, str], tuple[Any, str, str]] = {}
    for i, (netns, iface, _) in enumerate(jobs):
        try:
            if (netns, iface) not in opened:
                opened[(netns, iface)] = _open_probe(netns, iface)
        except Exception as exc:  # a row says why this probe cannot run
            rows[i]["error"] = f"{netns} {iface}: {exc or type(exc).__name__}"
            continue
        sock = opened[(netns, iface)][0]
        socks.setdefault(sock.fileno(), (sock, []))[1].append(i)
    live = [i for i in range(len(jobs)) if "error" not in rows[i]]
    start = time.monotonic()
    sent = 0
    while (now := time.monotonic() - start) < window:
        if sent < ARP_REQUESTS and now >= sent * window / (2 * ARP_REQUESTS):
            for i in live:
                netns, iface, address = jobs[i]
                sock, mac, ip = opened[(netns, iface)]
                sock.send(_request(mac, ip, address))
            sent += 1
        wait = min(window / (2 * ARP_REQUESTS), window - now)
        ready, _, _ = select.select(list(socks), [], [], max(0.0, wait))
        for fd in ready:
            sock, indexes = socks[fd]
            frame = _frame(sock)
            for i in indexes:
                mac = _answer_of(frame, jobs[i][2])
                if mac and mac not in rows[i]["macs"]:
                    rows[i]["macs"].append(mac)
    for sock, _, _ in opened.values():
        sock.close()
    return rows


def main() -> int:
    request = json.loads(sys.argv[1])
    rows = probe_here([tuple(j) for j in request["jobs"]], float(request["window"]))
    json.dump(rows, sys.stdout)
    return 0


# ----- ping ---------------------------------------------------------------------------

# iputils: "2 packets transmitted, 2 received, +1 errors, 0% packet loss, time 1001ms"
# busybox: "2 packets transmitted, 2 packets received, 0% packet loss"
_PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
# iputils: "rtt min/avg/max/mdev = 0.040/0.050/0.060/0.010 ms"
# busybox: "round-trip min/avg/max = 0.067/0.079/0.092 ms"
_PING_RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/mdev)? = [\d.]+/([\d.]+)/")


@dataclass(frozen=True)
class PingSummary:
    transmitted: int
    received: int
    rtt_ms: float | None  # average round trip of the replies

    @property
    def ok(self) -> bool:
        return self.received > 0


def parse_ping(output: str) -> PingSummary:
    """The summary of iputils or busybox ping (nothing sent when there is none)."""
    counts = _PING_COUNTS.search(output)
    sent, got = (int(counts[1]), int(counts[2])) if counts else (0, 0)
    rtt = _PING_RTT.search(output)
    return PingSummary(sent, got, float(rtt[1]) if rtt else None)


def ping_argv(address: str, count: int = 1, wait: float = 1) -> list[str]:
    return [require_tool("ping"), "-n", "-c", str(count), "-W", str(max(1, round(wait))),
            address]


# ----- curl ---------------------------------------------------------------------------

_CURL_STATUS_MARK = "\nnetlab-http-status:"


def curl_argv(url: str, timeout: float = 2, with_status: bool = False) -> list[str]:
    argv = [require_tool("curl"), "-sS", "-m", str(timeout)]
    if with_status:
        argv += ["-w", _CURL_STATUS_MARK + "%{http_code}"]
    return [*argv, url]


def parse_curl(stdout: str) -> tuple[int | None, str]:
    """(HTTP status or None when nothing answered, body) of curl_argv(with_status=True)."""
    body, _, code = stdout.rpartition(_CURL_STATUS_MARK)
    status = int(code) if code.strip().isdigit() and int(code) > 0 else None
    return status, body


# ----- neighbour and link tables (pyroute2; main thread, DESIGN of netlab.net) ----------

_NUD_STATES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY",
               0x10: "PROBE", 0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}


def neighbour_entry(netns: str, address: str) -> dict[str, str] | None:
    """The neighbour (ARP) entry of `netns` for `address`: {address, mac, state, dev}."""
    from netlab.net.namespaces import Netlink

    with Netlink() as nl:
        sock = nl[netns]
        for entry in sock.get_neighbours(family=2, dst=address):
            index = entry["ifindex"]
            names = [link.get_attr("IFLA_IFNAME") for link in sock.get_links(index)]
            return {
                "address": address,
                "mac": str(entry.get_attr("NDA_LLADDR") or "").lower(),
                "state": _NUD_STATES.get(entry["state"], str(entry["state"])),
                "dev": names[0] if names else str(index),
            }
    return None


def interface_mac(netns: str, ifname: str) -> str:
    """The MAC of `ifname` in `netns`."""
    from netlab.net.namespaces import Netlink

    with Netlink() as nl:
        for link in nl[netns].get_links(ifname=ifname):
            return str(link.get_attr("IFLA_ADDRESS")).lower()
    raise NetlabError(f"{netns} has no interface {ifname}")


if __name__ == "__main__":
    sys.exit(main())
