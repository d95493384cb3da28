"""Address conflict detection for an appliance (RFC 5227), pure and Scapy-free.

Before an appliance answers for an address that is new to its set, it asks the LAN
whether anyone else holds it, the way `arping -D` does: an ARP probe, a broadcast
request with sender IP 0.0.0.0, so no neighbour's cache changes (RFC 5227 §2.1.1;
Linux answers a probe for one of its own addresses without learning anything from
it). During the probe's window, any other MAC that

- answers the probe (the usual case: a source VM still on during a failover),
- sends ARP with the address as its sender IP (it uses the address), or
- probes for the same address itself,

is a conflict. A conflict is recorded (address, both MACs, how it was seen, when),
logged, and reported over the control socket (op `conflicts`); it is dropped when a
later probe of the address finds nobody, or when the address leaves the set.

What the appliance does on a conflict: it answers anyway. An appliance answers for an
address because a netlab operation moved that address to it (a failover made the
replica the machine that holds it; an undo gave it back to the tenant side), and the
admin who ran the operation decided that, also when they chose to leave the source
on (`failover` warns and takes over, as Veeam and SRM do). Yielding to whatever else
answers would leave the replica unreachable and the LAN split between two machines;
the operation reports the conflict instead, and `vm fail`/`stop` of the source makes
the appliance announce the address again (a takeover). For the same reason the probe
never delays an answer: RFC 5227's seconds of probing are for a host choosing an
address, not for a proxy told which addresses to hold.

Timing: PROBE_COUNT probes PROBE_INTERVAL apart, answers counted until PROBE_WINDOW
after the first. RFC 5227's defaults (3 probes 1-2 s apart) are sized for lossy
links; on one emulated LAN every answer comes within milliseconds, and a failover
waits for the window before it reports.
"""

from __future__ import annotations

import time
from typing import Any

from netlab.proxyarp.frames import BROADCAST_MAC, ZERO_IP, ZERO_MAC, mac_to_text

PROBE_COUNT = 2
PROBE_INTERVAL = 0.1
PROBE_WINDOW = 0.25
MAX_PROBING = 4096  # addresses in probe at once per appliance; more wait their turn
MAX_CONFLICTS = 1024  # recorded per appliance, the oldest dropped first

# Ethernet type ARP, then htype 1, ptype IPv4, hlen 6, plen 4 (bytes 12-20 of a frame)
_ARP_HEAD = b"\x08\x06\x00\x01\x08\x00\x06\x04"
_OP_REQUEST = b"\x00\x01"
_OP_REPLY = b"\x00\x02"
_PROBE_HEAD = b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01"


def build_probe(our_mac: bytes, address: bytes) -> bytes:
    """An ARP probe (RFC 5227 §2.1.1): broadcast who-has `address`, sender IP 0.0.0.0."""
    return BROADCAST_MAC + our_mac + _PROBE_HEAD + our_mac + ZERO_IP + ZERO_MAC + address


def _ip_text(address: bytes) -> str:
    return ".".join(str(b) for b in address)


class ProbeTable:
    """The addresses one appliance is probing, and the conflicts it found."""

    def __init__(self, appliance: str) -> None:
        self.appliance = appliance
        # address -> [probes left to send, next send due, window end, conflict seen]
        self.active: dict[bytes, list[Any]] = {}
        self.waiting: list[bytes] = []  # over MAX_PROBING: started as others finish
        self.conflicts: dict[bytes, dict[str, Any]] = {}
        self.probes_sent = 0

    def __bool__(self) -> bool:
        return bool(self.active or self.waiting)

    def start(self, address: bytes, now: float | None = None) -> None:
        """Probe `address` from now (again, if it is being probed)."""
        if len(self.active) >= MAX_PROBING and address not in self.active:
            if address not in self.waiting:
                self.waiting.append(address)
            return
        now = time.monotonic() if now is None else now
        self.active[address] = [PROBE_COUNT, now, now + PROBE_WINDOW, False]

    def cancel(self, address: bytes) -> None:
        """`address` left the set: no probe, and its conflict is no longer ours."""
        self.active.pop(address, None)
        if address in self.waiting:
            self.waiting.remove(address)
        self.conflicts.pop(address, None)

    def next_deadline(self) -> float | None:
        if not self.active:
            return None if not self.waiting else 0.0
        return min(min(p[1], p[2]) if p[0] else p[2] for p in self.active.values())

    def due(self, now: float, our_mac: bytes, budget: int) -> list[bytes]:
        """Frames to send now; windows that ended are closed (a clean one clears a
        conflict recorded before)."""
        out: list[bytes] = []
        for address, probe in list(self.active.items()):
            if probe[0] and probe[1] <= now and len(out) < budget:
                out.append(build_probe(our_mac, address))
                probe[0] -= 1
                probe[1] = now + PROBE_INTERVAL
            elif not probe[0] and probe[2] <= now:
                del self.active[address]
                if not probe[3]:
                    self.conflicts.pop(address, None)
        while self.waiting and len(self.active) < MAX_PROBING:
            self.start(self.waiting.pop(0), now)
        self.probes_sent += len(out)
        return out

    def watch(self, frame: bytes, our_mac: bytes) -> dict[str, Any] | None:
        """Look at one frame read while probing; the conflict it shows, if any (new)."""
        if len(frame) < 42 or frame[12:20] != _ARP_HEAD:
            return None
        sender_mac = frame[22:28]
        if sender_mac == our_mac or frame[6:12] == our_mac:
            return None
        op, sender_ip, target_ip = frame[20:22], frame[28:32], frame[38:42]
        if sender_ip in self.active:
            address = sender_ip
            how = "answered the probe" if op == _OP_REPLY else "uses the address"
        elif sender_ip == ZERO_IP and op == _OP_REQUEST and target_ip in self.active:
            address, how = target_ip, "probes for the address too"
        else:
            return None
        probe = self.active[address]
        first = not probe[3]
        probe[3] = True
        known = self.conflicts.get(address)
        if known is not None and known["other_mac"] == mac_to_text(sender_mac) and not first:
            return None
        record = {"appliance": self.appliance, "address": _ip_text(address),
                  "mac": mac_to_text(our_mac), "other_mac": mac_to_text(sender_mac),
                  "how": how, "time": time.time()}
        self.conflicts.pop(address, None)
        self.conflicts[address] = record
        while len(self.conflicts) > MAX_CONFLICTS:
            del self.conflicts[next(iter(self.conflicts))]
        return record

    def report(self) -> dict[str, Any]:
        """The JSON form: conflicts found, addresses still in probe."""
        return {"conflicts": list(self.conflicts.values()),
                "probing": sorted(_ip_text(a) for a in [*self.active, *self.waiting]),
                "probes_sent": self.probes_sent}
