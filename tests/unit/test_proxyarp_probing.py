"""Duplicate address detection of an appliance (netlab.proxyarp.probing) on crafted frames.

Frames are built and read with Scapy, apart from the byte code under test.
"""

from __future__ import annotations

import ipaddress

from scapy.layers.l2 import ARP, Ether

from netlab.proxyarp import probing
from netlab.proxyarp.frames import mac_from_text
from netlab.proxyarp.probing import ProbeTable, build_probe

OUR_MAC = "02:00:00:00:0a:fa"
OUR = mac_from_text(OUR_MAC)
SOURCE_MAC = "02:00:00:00:0b:01"
ADDRESS = "192.0.2.13"
PACKED = ipaddress.IPv4Address(ADDRESS).packed


def reply_from_source(address: str = ADDRESS, to: str = OUR_MAC) -> bytes:
    """What Linux sends when it holds `address` and sees a probe for it: a unicast reply
    with target IP 0.0.0.0."""
    return bytes(Ether(dst=to, src=SOURCE_MAC)
                 / ARP(op=2, hwsrc=SOURCE_MAC, psrc=address, hwdst=to, pdst="0.0.0.0"))


def test_probe_is_a_broadcast_request_with_sender_ip_zero() -> None:
    frame = Ether(build_probe(OUR, PACKED))
    arp = frame[ARP]
    assert frame.dst == "ff:ff:ff:ff:ff:ff" and frame.src == OUR_MAC
    assert arp.op == 1 and arp.hwsrc == OUR_MAC
    # RFC 5227 2.1.1: sender IP zero, so no neighbour's cache learns from it
    assert arp.psrc == "0.0.0.0" and arp.pdst == ADDRESS and arp.hwdst == "00:00:00:00:00:00"
    assert len(bytes(frame)) == 42


def test_probes_go_out_then_the_window_closes() -> None:
    table = ProbeTable("acme.nea")
    table.start(PACKED, now=100.0)
    assert table and table.report()["probing"] == [ADDRESS]
    sent = table.due(100.0, OUR, 10)
    assert sent == [build_probe(OUR, PACKED)]
    assert table.due(100.05, OUR, 10) == []  # the next one is PROBE_INTERVAL later
    assert len(table.due(100.0 + probing.PROBE_INTERVAL, OUR, 10)) == 1
    assert table.due(100.0 + probing.PROBE_INTERVAL + 0.01, OUR, 10) == []
    assert table  # still listening until the window ends
    table.due(100.0 + probing.PROBE_WINDOW, OUR, 10)
    assert not table and table.report() == {"conflicts": [], "probing": [],
                                            "probes_sent": probing.PROBE_COUNT}


def test_an_answer_to_the_probe_is_a_conflict_naming_both_macs() -> None:
    table = ProbeTable("acme.nea")
    table.start(PACKED, now=0.0)
    table.due(0.0, OUR, 10)
    found = table.watch(reply_from_source(), OUR)
    assert found is not None
    assert (found["address"], found["mac"], found["other_mac"]) == (ADDRESS, OUR_MAC, SOURCE_MAC)
    assert found["how"] == "answered the probe" and found["appliance"] == "acme.nea"
    assert table.watch(reply_from_source(), OUR) is None  # the second answer: known
    table.due(10.0, OUR, 10)
    table.due(20.0, OUR, 10)
    # the window closed with the conflict seen: it stays recorded
    assert [c["other_mac"] for c in table.report()["conflicts"]] == [SOURCE_MAC]


def test_a_clean_probe_clears_a_recorded_conflict_and_leaving_the_set_drops_it() -> None:
    table = ProbeTable("acme.nea")
    table.start(PACKED, now=0.0)
    table.watch(reply_from_source(), OUR)
    for t in (0.0, 1.0, 2.0):
        table.due(t, OUR, 10)
    assert len(table.report()["conflicts"]) == 1
    table.start(PACKED, now=5.0)  # probed again (a takeover), nobody answers this time
    for t in (5.0, 6.0, 7.0):
        table.due(t, OUR, 10)
    assert table.report()["conflicts"] == []
    table.start(PACKED, now=8.0)
    table.watch(reply_from_source(), OUR)
    table.cancel(PACKED)
    assert table.report() == {"conflicts": [], "probing": [], "probes_sent": 4}


def test_use_of_the_address_and_a_rival_probe_are_conflicts_too() -> None:
    table = ProbeTable("nea")
    table.start(PACKED, now=0.0)
    uses = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=SOURCE_MAC)
                 / ARP(op=1, hwsrc=SOURCE_MAC, psrc=ADDRESS, pdst="192.0.2.1"))
    assert table.watch(uses, OUR)["how"] == "uses the address"
    table = ProbeTable("nea")
    table.start(PACKED, now=0.0)
    rival = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=SOURCE_MAC)
                  / ARP(op=1, hwsrc=SOURCE_MAC, psrc="0.0.0.0", pdst=ADDRESS))
    assert table.watch(rival, OUR)["how"] == "probes for the address too"


def test_frames_that_are_no_conflict() -> None:
    table = ProbeTable("nea")
    table.start(PACKED, now=0.0)
    others = [
        build_probe(OUR, PACKED),  # our own probe
        reply_from_source(address="192.0.2.14"),  # another address
        bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=SOURCE_MAC)  # someone asking for it
              / ARP(op=1, hwsrc=SOURCE_MAC, psrc="192.0.2.1", pdst=ADDRESS)),
        reply_from_source()[:41],  # truncated
        b"",
    ]
    assert [table.watch(f, OUR) for f in others] == [None] * len(others)
    assert table.report()["conflicts"] == []


def test_at_most_max_probing_at_once_the_rest_wait_their_turn(monkeypatch) -> None:
    monkeypatch.setattr(probing, "MAX_PROBING", 2)
    table = ProbeTable("nea")
    addresses = [ipaddress.IPv4Address(f"192.0.2.{i}").packed for i in range(1, 6)]
    for a in addresses:
        table.start(a, now=0.0)
    assert len(table.active) == 2 and len(table.report()["probing"]) == 5
    t = 0.0
    while table:
        table.due(t, OUR, 100)
        t += 0.05
    assert table.probes_sent == 5 * probing.PROBE_COUNT
