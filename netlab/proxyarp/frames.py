"""ARP frames as bytes: parse, decide whether a proxy answers, build replies and announcements.

Pure and Scapy-free: the daemon's hot loop reads raw frames and must not dissect them
with Scapy (~1 ms per frame against a few µs here, docs/architecture.md#facts).

Only Ethernet + IPv4 ARP is handled: a 14-byte Ethernet header and a 28-byte ARP
body, 42 bytes in all. Frames from real NICs arrive padded to the 60-byte Ethernet
minimum; anything after byte 42 is ignored.

The decision (`decide`) answers "who-has T tell S" with our MAC only when all hold:

- the frame is a well-formed Ethernet/IPv4 ARP *request* (op 1);
- neither its Ethernet source nor its ARP sender MAC is our own MAC: our own NEA's
  requests (and echoes of our own announcements) are never answered;
- the sender MAC is a unicast address: a reply to a multicast or all-zero MAC
  would be flooded or dropped;
- it is addressed to us: Ethernet destination broadcast or our MAC. A *unicast*
  request to another MAC is that host's neighbour revalidating an entry that
  points elsewhere (e.g. the source VM still up); answering it would steal the
  address from under a live host. The kernel drops such frames too (PACKET_OTHERHOST);
- S != T: a request with S == T is a gratuitous ARP (an announcement by T itself);
- T is in the proxied set.

ARP probes (RFC 5227: S = 0.0.0.0) for a proxied address *are* answered. A probe
is a host asking "is T in use?" before configuring T; T is in use (the replica
behind the tunnel owns it), and answering is how duplicate address detection
keeps a second host from taking it. The reply then carries target IP 0.0.0.0,
exactly as Linux answers a probe for one of its own addresses. (The kernel's
proxy ARP does *not* answer probes; for an address that lives elsewhere that is a
hole a DR provider should not copy.)
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Container
from typing import NamedTuple

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
ETH_HEADER_LEN = 14
ARP_FRAME_LEN = 42

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ZERO_IP = b"\x00" * 4

# Ethernet dst, src, type; ARP htype, ptype, hlen, plen, op, sha, spa, tha, tpa.
_FRAME = struct.Struct("!6s6sHHHBBH6s4s6s4s")
_ETH_P_ARP_BYTES = ETH_P_ARP.to_bytes(2, "big")
# Bytes 12-22 of an Ethernet/IPv4 ARP request: type ARP, htype 1, ptype IPv4, hlen 6,
# plen 4, op 1; of a reply, bytes 12-22 likewise with op 2.
_REQUEST_HEAD = b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01"
_REPLY_HEAD = b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x02"


class Verdict(enum.Enum):
    """What the daemon does with one frame; every verdict but REPLY is an 'ignored' reason."""

    REPLY = "reply"
    # A frame leaving this namespace. The daemon's sockets are bound to ETH_P_ARP, and
    # the kernel hands those incoming frames only: kept so the counters keep their keys.
    OUTGOING = "outgoing"
    TRUNCATED = "truncated"
    NOT_ARP = "not_arp"
    NOT_ETHERNET = "not_ethernet"
    NOT_IPV4 = "not_ipv4"
    BAD_LENGTHS = "bad_lengths"
    NOT_REQUEST = "not_request"
    # From here on the frame was a well-formed ARP request.
    OWN_MAC = "own_mac"
    BAD_SENDER_MAC = "bad_sender_mac"
    NOT_FOR_US = "not_for_us"
    GRATUITOUS = "gratuitous"
    NOT_PROXIED = "not_proxied"

    @property
    def is_request(self) -> bool:
        """True when the frame was a well-formed Ethernet/IPv4 ARP request."""
        return self in _REQUEST_VERDICTS


_REQUEST_VERDICTS = frozenset(
    {
        Verdict.REPLY,
        Verdict.OWN_MAC,
        Verdict.BAD_SENDER_MAC,
        Verdict.NOT_FOR_US,
        Verdict.GRATUITOUS,
        Verdict.NOT_PROXIED,
    }
)

IGNORED_REASONS: tuple[str, ...] = tuple(v.value for v in Verdict if v is not Verdict.REPLY)


class ArpFrame(NamedTuple):
    """The fields of a 42-byte Ethernet/ARP frame, addresses as raw bytes."""

    eth_dst: bytes
    eth_src: bytes
    ethertype: int
    htype: int
    ptype: int
    hlen: int
    plen: int
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes


def parse(frame: bytes) -> ArpFrame | Verdict:
    """The frame's fields, or the Verdict that says why it is not Ethernet/IPv4 ARP."""
    if len(frame) < ETH_HEADER_LEN:
        return Verdict.TRUNCATED
    if frame[12:14] != _ETH_P_ARP_BYTES:
        return Verdict.NOT_ARP
    if len(frame) < ARP_FRAME_LEN:
        return Verdict.TRUNCATED
    arp = ArpFrame._make(_FRAME.unpack_from(frame))
    if arp.htype != ARPHRD_ETHER:
        return Verdict.NOT_ETHERNET
    if arp.ptype != ETH_P_IP:
        return Verdict.NOT_IPV4
    # With other lengths the address fields sit at other offsets: not a frame we know.
    if arp.hlen != 6 or arp.plen != 4:
        return Verdict.BAD_LENGTHS
    return arp


def decide(frame: bytes, our_mac: bytes, proxied: Container[bytes]) -> tuple[Verdict, bytes | None]:
    """Whether to answer `frame` (see the module docstring), and the reply frame if so.

    `our_mac` is 6 bytes; `proxied` holds 4-byte packed IPv4 addresses.
    """
    # The daemon's hot path: a well-formed request is recognised by one comparison of
    # its fixed header bytes and judged on slices, without unpacking every field.
    if frame[12:22] == _REQUEST_HEAD and len(frame) >= ARP_FRAME_LEN:
        sender_mac = frame[22:28]
        if sender_mac == our_mac or frame[6:12] == our_mac:
            return Verdict.OWN_MAC, None
        if sender_mac[0] & 1 or sender_mac == ZERO_MAC:
            return Verdict.BAD_SENDER_MAC, None
        eth_dst = frame[:6]
        if eth_dst != BROADCAST_MAC and eth_dst != our_mac:
            return Verdict.NOT_FOR_US, None
        sender_ip, target_ip = frame[28:32], frame[38:42]
        if sender_ip == target_ip:
            return Verdict.GRATUITOUS, None
        if target_ip not in proxied:
            return Verdict.NOT_PROXIED, None
        return Verdict.REPLY, (sender_mac + our_mac + _REPLY_HEAD + our_mac + target_ip
                               + sender_mac + sender_ip)
    # Anything else is ignored for a reason `parse` names (a well-formed request never
    # gets here); the unit tests hold both paths to the same verdicts.
    return decide_parsed(frame, our_mac, proxied)


def _decide_parsed(arp: ArpFrame, our_mac: bytes,
                   proxied: Container[bytes]) -> tuple[Verdict, bytes | None]:
    """The same decision from parsed fields (the reference the fast path is tested against)."""
    if arp.sender_mac == our_mac or arp.eth_src == our_mac:
        return Verdict.OWN_MAC, None
    if arp.sender_mac[0] & 1 or arp.sender_mac == ZERO_MAC:
        return Verdict.BAD_SENDER_MAC, None
    if arp.eth_dst != BROADCAST_MAC and arp.eth_dst != our_mac:
        return Verdict.NOT_FOR_US, None
    if arp.sender_ip == arp.target_ip:
        return Verdict.GRATUITOUS, None
    if arp.target_ip not in proxied:
        return Verdict.NOT_PROXIED, None
    return Verdict.REPLY, build_reply(our_mac, arp.sender_mac, arp.sender_ip, arp.target_ip)


def decide_parsed(frame: bytes, our_mac: bytes,
                  proxied: Container[bytes]) -> tuple[Verdict, bytes | None]:
    """`decide` through `parse` only, field by field (for tests of the fast path)."""
    arp = parse(frame)
    if isinstance(arp, Verdict):
        return arp, None
    if arp.op != ARPOP_REQUEST:
        return Verdict.NOT_REQUEST, None
    return _decide_parsed(arp, our_mac, proxied)


def build_reply(
    our_mac: bytes, requester_mac: bytes, requester_ip: bytes, target_ip: bytes
) -> bytes:
    """'target_ip is-at our_mac', unicast to the requester (42 bytes, like the kernel's)."""
    return _FRAME.pack(
        requester_mac,
        our_mac,
        ETH_P_ARP,
        ARPHRD_ETHER,
        ETH_P_IP,
        6,
        4,
        ARPOP_REPLY,
        our_mac,
        target_ip,
        requester_mac,
        requester_ip,
    )


def build_gratuitous(our_mac: bytes, address: bytes) -> bytes:
    """An ARP announcement (RFC 5227 §2.3) for `address`: a broadcast request with S = T.

    A request rather than a gratuitous reply because every stack handles it the same
    way: Linux updates an existing neighbour entry from it at once, even within
    `locktime` (it counts as a GARP), while unsolicited replies are dropped by stacks
    that only accept replies to their own requests. Target MAC zero, as RFC 5227 says.
    """
    return _FRAME.pack(
        BROADCAST_MAC,
        our_mac,
        ETH_P_ARP,
        ARPHRD_ETHER,
        ETH_P_IP,
        6,
        4,
        ARPOP_REQUEST,
        our_mac,
        address,
        ZERO_MAC,
        address,
    )


def proxiable_address(text: object) -> ipaddress.IPv4Address:
    """`text` as an IPv4 address a proxy may answer for, or ValueError saying why not."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an IPv4 address (expected a string like '192.0.2.7')")
    try:
        address = ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address") from None
    if address.is_unspecified or address.is_loopback or address.is_multicast:
        raise ValueError(f"{address} is not a unicast address; ARP never asks for it")
    if address == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"{address} is the broadcast address; ARP never asks for it")
    return address


def mac_to_text(mac: bytes) -> str:
    """'aa:bb:cc:dd:ee:ff' for 6 raw bytes."""
    return mac.hex(":")


def mac_from_text(text: str) -> bytes:
    """6 raw bytes for 'aa:bb:cc:dd:ee:ff' (or ValueError)."""
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return raw
