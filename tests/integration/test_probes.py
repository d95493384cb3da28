"""netlab.net.probes on a real lab: the Scapy ARP probe and pyroute2's neighbour table."""

from __future__ import annotations

import pytest

from netlab.net import probes

pytestmark = pytest.mark.root


def _node(lab, name: str):
    return lab._core().plan().node(name)


def _port_on(lab, name: str, segment: str) -> str:
    return next(p.name for p in _node(lab, name).ports if p.segment == segment)


def test_arp_probe_answers_errors_and_silence_in_one_child(netlab_lab) -> None:
    db, sp = _node(netlab_lab, "acme/db"), _node(netlab_lab, "sp/nea-acme-lan")
    answers = probes.arp_probe([
        probes.ArpJob(db.netns, db.port.name, "192.168.10.11"),
        probes.ArpJob(db.netns, db.port.name, "192.168.10.1"),
        probes.ArpJob(db.netns, db.port.name, "192.168.10.99"),  # nobody has it
        probes.ArpJob(db.netns, "nosuchif", "192.168.10.11"),
        probes.ArpJob(sp.netns, _port_on(netlab_lab, sp.name, "sp/acme/lan"),
                      "192.168.10.11"),  # the replica is off
    ])
    assert answers[0].macs == [netlab_lab.mac("acme/web")] and not answers[0].error
    edge_lan = _port_on(netlab_lab, "acme/edge", "acme/lan")
    assert answers[1].macs == [netlab_lab.mac("acme/edge", edge_lan)]
    assert answers[2].macs == [] and not answers[2].error
    assert answers[3].macs == [] and "nosuchif" in answers[3].error
    assert answers[4].macs == [] and not answers[4].error


def test_neighbour_entry_comes_from_the_kernel_table(netlab_lab) -> None:
    db = _node(netlab_lab, "acme/db")
    assert netlab_lab.ping("acme/db", "192.168.10.11").ok
    entry = probes.neighbour_entry(db.netns, "192.168.10.11")
    assert entry is not None and entry["mac"] == netlab_lab.mac("acme/web")
    assert entry["dev"] == db.port.name and entry["state"] in ("REACHABLE", "DELAY", "STALE")
    assert probes.neighbour_entry(db.netns, "192.168.10.98") is None
    assert probes.interface_mac(db.netns, db.port.name) == netlab_lab.mac("acme/db")
