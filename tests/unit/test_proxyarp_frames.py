"""The proxy-ARP decision on crafted frames: which requests get an answer, and what it says.

Frames are built with Scapy, independently of the struct code under test, and
replies are read back with Scapy.
"""

from __future__ import annotations

import ipaddress
import random

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from netlab.proxyarp import frames
from netlab.proxyarp.frames import Verdict, build_gratuitous, decide, parse, proxiable_address

OUR_MAC = "02:00:00:00:0a:fa"
OUR = bytes.fromhex(OUR_MAC.replace(":", ""))
HOST_MAC = "02:00:00:00:0b:01"
OTHER_MAC = "02:00:00:00:0c:02"
PROXIED_IP = "192.0.2.50"
FREE_IP = "192.0.2.99"
HOST_IP = "192.0.2.1"
PROXIED = {ipaddress.IPv4Address(PROXIED_IP).packed, ipaddress.IPv4Address("192.0.2.51").packed}


def request(
    target: str = PROXIED_IP,
    sender_ip: str = HOST_IP,
    sender_mac: str = HOST_MAC,
    eth_src: str | None = None,
    eth_dst: str = "ff:ff:ff:ff:ff:ff",
    **arp: object,
) -> bytes:
    """A who-has request as a host would send it."""
    fields = {"op": 1, "hwsrc": sender_mac, "psrc": sender_ip, "pdst": target, **arp}
    return bytes(Ether(dst=eth_dst, src=eth_src or sender_mac) / ARP(**fields))


def verdict_of(frame: bytes) -> Verdict:
    return decide(frame, OUR, PROXIED)[0]


def test_request_for_proxied_address_is_answered_with_our_mac() -> None:
    verdict, reply = decide(request(), OUR, PROXIED)
    assert verdict is Verdict.REPLY
    assert reply is not None and len(reply) == 42
    eth = Ether(reply)
    arp = eth[ARP]
    assert eth.dst == HOST_MAC  # unicast back to the requester
    assert eth.src == OUR_MAC
    assert eth.type == 0x0806
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (1, 0x0800, 6, 4)
    assert arp.op == 2
    assert (arp.hwsrc, arp.psrc) == (OUR_MAC, PROXIED_IP)
    assert (arp.hwdst, arp.pdst) == (HOST_MAC, HOST_IP)


def test_reply_goes_to_arp_sender_mac_not_ethernet_source() -> None:
    # The ARP sender field is what the requester wants the answer at (as the kernel does).
    _, reply = decide(request(eth_src=OTHER_MAC), OUR, PROXIED)
    assert reply is not None
    assert Ether(reply).dst == HOST_MAC
    assert Ether(reply)[ARP].hwdst == HOST_MAC


def test_frame_padded_to_60_bytes_is_answered_like_a_42_byte_one() -> None:
    frame = request()
    padded = frame + b"\x00" * (60 - len(frame))
    assert len(frame) == 42
    assert decide(padded, OUR, PROXIED) == decide(frame, OUR, PROXIED)


def test_unicast_request_to_our_mac_is_answered() -> None:
    # Neighbours revalidate a cached entry with a unicast request to the cached MAC.
    assert verdict_of(request(eth_dst=OUR_MAC)) is Verdict.REPLY


def test_unicast_request_to_another_mac_is_not_answered() -> None:
    # That neighbour's entry points at a live host (e.g. the source VM): leave it alone.
    assert verdict_of(request(eth_dst=OTHER_MAC)) is Verdict.NOT_FOR_US


def test_address_outside_the_set_is_never_answered() -> None:
    assert decide(request(target=FREE_IP), OUR, PROXIED) == (Verdict.NOT_PROXIED, None)
    assert decide(request(), OUR, set()) == (Verdict.NOT_PROXIED, None)


def test_gratuitous_arp_from_the_proxied_address_itself_is_ignored() -> None:
    frame = request(sender_ip=PROXIED_IP, target=PROXIED_IP)
    assert decide(frame, OUR, PROXIED) == (Verdict.GRATUITOUS, None)


def test_probe_for_proxied_address_is_answered_to_defend_it() -> None:
    # RFC 5227 probe: S = 0.0.0.0. The address is in use behind the tunnel; saying so
    # is what keeps a second host from configuring it.
    verdict, reply = decide(request(sender_ip="0.0.0.0"), OUR, PROXIED)
    assert verdict is Verdict.REPLY
    assert reply is not None
    arp = Ether(reply)[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc) == (2, OUR_MAC, PROXIED_IP)
    assert (arp.hwdst, arp.pdst) == (HOST_MAC, "0.0.0.0")


def test_probe_for_free_address_is_not_answered() -> None:
    assert verdict_of(request(sender_ip="0.0.0.0", target=FREE_IP)) is Verdict.NOT_PROXIED


def test_request_with_our_sender_mac_is_never_answered() -> None:
    assert decide(request(sender_mac=OUR_MAC), OUR, PROXIED) == (Verdict.OWN_MAC, None)


def test_request_from_our_ethernet_source_is_never_answered() -> None:
    assert verdict_of(request(eth_src=OUR_MAC)) is Verdict.OWN_MAC


@pytest.mark.parametrize(
    "sender_mac", ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"]
)
def test_request_from_multicast_or_zero_sender_mac_is_ignored(sender_mac: str) -> None:
    assert verdict_of(request(sender_mac=sender_mac, eth_src=HOST_MAC)) is Verdict.BAD_SENDER_MAC


@pytest.mark.parametrize("op", [2, 3, 4, 0, 0xFFFF])
def test_replies_and_other_operations_are_ignored(op: int) -> None:
    assert verdict_of(request(op=op)) is Verdict.NOT_REQUEST


def test_reply_for_a_proxied_address_is_ignored() -> None:
    # Another host's reply claiming a proxied address must not trigger anything.
    frame = bytes(
        Ether(dst=OUR_MAC, src=OTHER_MAC)
        / ARP(op=2, hwsrc=OTHER_MAC, psrc=PROXIED_IP, hwdst=OUR_MAC, pdst=HOST_IP)
    )
    assert decide(frame, OUR, PROXIED) == (Verdict.NOT_REQUEST, None)


@pytest.mark.parametrize("length", [0, 1, 13, 14, 20, 41])
def test_truncated_frames_are_ignored(length: int) -> None:
    assert decide(request()[:length], OUR, PROXIED) == (Verdict.TRUNCATED, None)


def test_non_arp_ethertype_is_ignored() -> None:
    ip_frame = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=HOST_MAC) / IP(dst=PROXIED_IP))
    assert verdict_of(ip_frame) is Verdict.NOT_ARP
    short_ip = ip_frame[:20]  # a short non-ARP frame is "not ARP", whatever its length
    assert verdict_of(short_ip) is Verdict.NOT_ARP


def test_vlan_tagged_arp_is_ignored() -> None:
    tagged = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=HOST_MAC)
        / Dot1Q(vlan=10)
        / ARP(op=1, hwsrc=HOST_MAC, psrc=HOST_IP, pdst=PROXIED_IP)
    )
    assert verdict_of(tagged) is Verdict.NOT_ARP


def test_non_ethernet_hardware_type_is_ignored() -> None:
    assert verdict_of(request(hwtype=6)) is Verdict.NOT_ETHERNET


def test_non_ipv4_protocol_type_is_ignored() -> None:
    assert verdict_of(request(ptype=0x86DD)) is Verdict.NOT_IPV4


def test_wrong_address_lengths_are_ignored() -> None:
    # Raw bytes: Scapy would size the address fields after hwlen/plen and build a
    # different frame; here the lengths lie about a normal 42-byte layout.
    frame = bytearray(request())
    frame[18] = 8  # hlen
    assert verdict_of(bytes(frame)) is Verdict.BAD_LENGTHS
    frame = bytearray(request())
    frame[19] = 16  # plen
    assert verdict_of(bytes(frame)) is Verdict.BAD_LENGTHS


def scapy_would_answer(frame: bytes) -> bool:
    """The decision rule restated on Scapy's dissection: an oracle independent of struct."""
    if len(frame) < 42:
        return False
    if frame[12:14] != b"\x08\x06":  # Ether() would turn type <= 1500 into Dot3
        return False
    eth = Ether(frame)
    if ARP not in eth:
        return False
    arp = eth[ARP]
    if (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) != (1, 0x0800, 6, 4, 1):
        return False
    sender = frames.mac_from_text(arp.hwsrc)
    return (
        OUR_MAC not in (arp.hwsrc, eth.src)
        and not sender[0] & 1
        and sender != frames.ZERO_MAC
        and eth.dst in ("ff:ff:ff:ff:ff:ff", OUR_MAC)
        and arp.psrc != arp.pdst
        and ipaddress.IPv4Address(arp.pdst).packed in PROXIED
    )


def test_random_frames_never_raise_and_agree_with_scapy() -> None:
    rng = random.Random(5227)
    proxied = sorted(PROXIED)
    answered = 0
    for i in range(6000):
        if i % 3 == 0:
            frame = rng.randbytes(rng.randrange(0, 80))
        else:
            # Random ARP bodies, often with a valid header, a proxied target, our MAC
            # or a broadcast sender mixed in, so every rule gets exercised.
            body = bytearray(rng.randbytes(rng.randrange(0, 50)))
            if len(body) >= 8 and rng.random() < 0.7:
                body[0:8] = b"\x00\x01\x08\x00\x06\x04\x00" + bytes([rng.choice([1, 1, 2])])
            if len(body) >= 28 and rng.random() < 0.7:
                body[24:28] = rng.choice(proxied)
            if len(body) >= 14 and rng.random() < 0.1:
                body[8:14] = rng.choice([OUR, b"\xff" * 6, b"\x01\x00\x5e\x00\x00\x01"])
            eth_dst = rng.choice([b"\xff" * 6, b"\xff" * 6, OUR, frames.mac_from_text(OTHER_MAC)])
            frame = eth_dst + frames.mac_from_text(HOST_MAC) + b"\x08\x06" + bytes(body)
        verdict, reply = decide(frame, OUR, PROXIED)
        # the hot path's byte slices and the field-by-field reference agree exactly
        assert (verdict, reply) == frames.decide_parsed(frame, OUR, PROXIED), frame.hex()
        assert isinstance(verdict, Verdict)
        assert (reply is not None) == (verdict is Verdict.REPLY)
        assert (verdict is Verdict.REPLY) == scapy_would_answer(frame), frame.hex()
        if reply is not None:
            answered += 1
            asked = Ether(frame)[ARP]
            answer = Ether(reply)[ARP]
            assert (answer.psrc, answer.hwdst, answer.pdst) == (asked.pdst, asked.hwsrc, asked.psrc)
    assert answered > 100  # the oracle really was exercised on both sides


def test_parse_returns_fields_of_a_well_formed_frame() -> None:
    arp = parse(request())
    assert isinstance(arp, frames.ArpFrame)
    assert arp.op == 1
    assert arp.sender_ip == ipaddress.IPv4Address(HOST_IP).packed
    assert arp.target_ip == ipaddress.IPv4Address(PROXIED_IP).packed
    assert arp.sender_mac == frames.mac_from_text(HOST_MAC)


def test_is_request_separates_well_formed_requests_from_the_rest() -> None:
    requests = {v for v in Verdict if v.is_request}
    assert requests == {
        Verdict.REPLY,
        Verdict.OWN_MAC,
        Verdict.BAD_SENDER_MAC,
        Verdict.NOT_FOR_US,
        Verdict.GRATUITOUS,
        Verdict.NOT_PROXIED,
    }
    assert verdict_of(request(target=FREE_IP)).is_request
    assert not verdict_of(request(op=2)).is_request
    assert "reply" not in frames.IGNORED_REASONS
    assert set(frames.IGNORED_REASONS) == {v.value for v in Verdict} - {"reply"}


def test_gratuitous_frame_is_a_broadcast_announcement_from_our_mac() -> None:
    address = ipaddress.IPv4Address("192.0.2.51").packed
    frame = build_gratuitous(OUR, address)
    assert len(frame) == 42
    eth = Ether(frame)
    arp = eth[ARP]
    assert (eth.dst, eth.src, eth.type) == ("ff:ff:ff:ff:ff:ff", OUR_MAC, 0x0806)
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 1)
    assert (arp.hwsrc, arp.psrc) == (OUR_MAC, "192.0.2.51")
    assert (arp.hwdst, arp.pdst) == ("00:00:00:00:00:00", "192.0.2.51")


def test_our_own_gratuitous_frame_is_not_answered_by_us_or_another_instance() -> None:
    frame = build_gratuitous(OUR, ipaddress.IPv4Address(PROXIED_IP).packed)
    assert verdict_of(frame) is Verdict.OWN_MAC
    other = frames.mac_from_text(OTHER_MAC)
    assert decide(frame, other, PROXIED)[0] is Verdict.GRATUITOUS


@pytest.mark.parametrize(
    "text",
    ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "192.0.2.300", "abc", "::1", "", 7],
)
def test_proxiable_address_rejects_what_arp_never_asks_for(text: object) -> None:
    with pytest.raises(ValueError):
        proxiable_address(text)


def test_proxiable_address_accepts_unicast_ipv4() -> None:
    assert str(proxiable_address("192.0.2.7")) == "192.0.2.7"
    assert str(proxiable_address(" 10.0.0.1 ")) == "10.0.0.1"


def test_mac_text_round_trip() -> None:
    assert frames.mac_to_text(frames.mac_from_text(OUR_MAC)) == OUR_MAC
    with pytest.raises(ValueError):
        frames.mac_from_text("02:00:00")
