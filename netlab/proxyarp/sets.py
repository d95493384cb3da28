"""Proxied address sets as prefixes with exceptions (pure, no Scapy).

An SP NEA answers for its whole subnet but a few addresses (the replicas running at
the SP, its own address, the gateway while a plan gives the SP that role); a tenant
NEA answers for a handful of replicas. Listing every address of a /16 would cost
65k entries per appliance and cannot go on a command line (MAX_ARG_STRLEN), so a set
is described as

    members = (hosts of `prefixes` - `exceptions`) | `addresses`

Membership costs a couple of integer operations whatever the subnet size, and memory
grows only with the exceptions and explicit addresses, which are bounded by the
number of VMs, never by the prefix length.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from netlab.proxyarp.frames import proxiable_address

MAX_PREFIXES = 16  # a few networks per appliance at most: membership stays O(1)
MAX_ENTRIES = 65536  # explicit addresses plus exceptions


def _host_range(network: ipaddress.IPv4Network) -> tuple[int, int]:
    """First and last address of `network` a host can have (RFC 3021 for /31)."""
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.prefixlen <= 30:
        return first + 1, last - 1
    return first, last


@dataclass(frozen=True)
class SetSpec:
    """A set as text, the way it travels over the control socket."""

    prefixes: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    exceptions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        """The JSON form: {"prefixes": [...], "addresses": [...], "except": [...]}."""
        return {"prefixes": list(self.prefixes), "addresses": list(self.addresses),
                "except": list(self.exceptions)}


@dataclass
class AddressSet:
    """Membership of 4-byte packed IPv4 addresses in prefixes minus exceptions plus addresses.

    `in` takes the packed bytes a frame carries, so the daemon's hot path never builds
    an ipaddress object.
    """

    # (first host, last host, network, mask): a range check is cheaper than mask and compare
    prefixes: list[tuple[int, int, ipaddress.IPv4Network]] = field(default_factory=list)
    addresses: set[int] = field(default_factory=set)
    exceptions: set[int] = field(default_factory=set)

    @classmethod
    def from_spec(cls, prefixes: Iterable[object] = (), addresses: Iterable[object] = (),
                  exceptions: Iterable[object] = ()) -> AddressSet:
        """Build from text (checked: ValueError names the first bad entry)."""
        result = cls()
        for text in prefixes:
            network = _network(text)
            first, last = _host_range(network)
            result.prefixes.append((first, last, network))
        if len(result.prefixes) > MAX_PREFIXES:
            raise ValueError(f"at most {MAX_PREFIXES} prefixes per appliance")
        result.addresses = {int(_address(a)) for a in addresses}
        result.exceptions = {int(_address(a)) for a in exceptions}
        if len(result.addresses) + len(result.exceptions) > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} addresses and exceptions per appliance")
        return result

    def __contains__(self, packed: object) -> bool:
        if not isinstance(packed, bytes | bytearray) or len(packed) != 4:
            return False
        ip = int.from_bytes(packed, "big")
        if ip in self.addresses:
            return True
        if ip in self.exceptions:
            return False
        # a loop, not any(generator): this runs for every request the daemon reads
        for first, last, _ in self.prefixes:  # noqa: SIM110
            if first <= ip <= last:
                return True
        return False

    def covers(self, ip: int) -> bool:
        """True when a prefix holds `ip` (whatever the exceptions say)."""
        return any(first <= ip <= last for first, last, _ in self.prefixes)

    def has(self, ip: int) -> bool:
        """Membership of an address given as an integer."""
        return self.__contains__(ip.to_bytes(4, "big"))

    def add(self, ips: Iterable[int]) -> list[int]:
        """Make each address a member; return those that were not before."""
        added = []
        for ip in dict.fromkeys(ips):
            if self.has(ip):
                continue
            self.exceptions.discard(ip)
            if not self.covers(ip):
                self._check_room(1)
                self.addresses.add(ip)
            added.append(ip)
        return added

    def remove(self, ips: Iterable[int]) -> list[int]:
        """Make each address a non-member; return those that were members."""
        removed = []
        for ip in dict.fromkeys(ips):
            if not self.has(ip):
                continue
            self.addresses.discard(ip)
            if self.covers(ip):
                self._check_room(1)
                self.exceptions.add(ip)
            removed.append(ip)
        return removed

    def _check_room(self, more: int) -> None:
        if len(self.addresses) + len(self.exceptions) + more > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} addresses and exceptions per appliance")

    def size(self) -> int:
        """How many addresses are members (computed from the ranges, never enumerated)."""
        total = 0
        ranges = sorted((first, last) for first, last, _ in self.prefixes)
        merged: list[list[int]] = []
        for first, last in ranges:
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        total = sum(last - first + 1 for first, last in merged)
        total -= sum(1 for ip in self.exceptions if self.covers(ip))
        total += sum(1 for ip in self.addresses if not self.covers(ip) or ip in self.exceptions)
        return total

    def spec(self) -> SetSpec:
        """The set as text, addresses in numeric order."""
        return SetSpec(
            prefixes=tuple(str(network) for _, _, network in self.prefixes),
            addresses=tuple(_text(ip) for ip in sorted(self.addresses)),
            exceptions=tuple(_text(ip) for ip in sorted(self.exceptions)),
        )

    def explicit_members(self) -> set[int]:
        """The members named one by one (announced with gratuitous ARP when they join)."""
        return set(self.addresses)


def _text(ip: int) -> str:
    return str(ipaddress.IPv4Address(ip))


def _address(text: object) -> ipaddress.IPv4Address:
    # the same rules as a single address anywhere else in the daemon
    return proxiable_address(text)


def _network(text: object) -> ipaddress.IPv4Network:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an IPv4 prefix (expected a string like '10.1.0.0/16')")
    try:
        network = ipaddress.IPv4Network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an IPv4 prefix: {exc}") from None
    if network.prefixlen < 8:
        raise ValueError(f"{network} is larger than a /8; no LAN segment is that large")
    if network.is_multicast or network.is_loopback:
        raise ValueError(f"{network} is not a unicast prefix; ARP never asks for it")
    return network
