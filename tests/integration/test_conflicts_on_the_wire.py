"""A failover while the source VM is still on: the tenant NEA's ARP probe sees the
conflict, the failover names it, status lists it, and production ends on the NEA.

Judged by real tools on a real lab: tcpdump on db's port (what the appliance put on
the wire), `ip neigh` and iputils `arping` from db (who production reaches).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import LabEnv

from netlab.lab import Lab

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("arping", "tcpdump", "ping")),
                       reason="needs arping, tcpdump and ping (iputils)"),
]

APP_IP = "192.168.10.13"


def inside(netns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True,
                          text=True, check=False, timeout=30)


def arping(netns: str, iface: str, target: str, count: int) -> list[str]:
    """MACs of every reply, each request broadcast (-b) so every holder answers each time."""
    done = inside(netns, "arping", "-b", "-c", str(count), "-I", iface, target)
    return [m.lower() for m in
            re.findall(rf"reply from {re.escape(target)} \[([0-9A-Fa-f:]{{17}})\]", done.stdout)]


def neighbour_mac(netns: str, iface: str, address: str) -> str | None:
    done = inside(netns, "ip", "-j", "neigh", "show", address, "dev", iface)
    entries = json.loads(done.stdout or "[]")
    return entries[0].get("lladdr", "").lower() if entries else None


def mac_of(netns: str, iface: str) -> str:
    done = inside(netns, "ip", "-j", "link", "show", iface)
    return json.loads(done.stdout)[0]["address"].lower()


def test_failover_with_the_source_on_reports_the_conflict_and_production_ends_on_the_nea(
        lab_env: LabEnv, tmp_path: Path) -> None:
    lab = lab_env
    lab.netlab("up")
    plan = Lab(lab.name, lab.state_dir).plan()
    tunnel = plan.tunnels["acme/lan"]
    db, app = plan.nodes["acme/db"], plan.nodes["acme/app"]
    nea_mac = mac_of(plan.nodes[tunnel.tenant_nea].netns, tunnel.tenant_lan_port)
    app_mac = mac_of(app.netns, app.port.name)
    # db talks to app before: its neighbour entry points at the source
    assert inside(db.netns, "ping", "-c", "1", "-W", "1", APP_IP).returncode == 0
    assert neighbour_mac(db.netns, db.port.name, APP_IP) == app_mac

    pcap = tmp_path / "db.pcap"
    capture = subprocess.Popen(["ip", "netns", "exec", db.netns, "tcpdump", "-i", db.port.name,
                                "-n", "-U", "--immediate-mode", "-w", str(pcap), "arp"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert capture.stderr is not None
        assert "listening on" in capture.stderr.readline()
        done = lab.netlab("failover", "acme/app")  # the source stays on
        time.sleep(0.5)  # the last probe and announcement reach the capture
    finally:
        capture.terminate()
        capture.wait(timeout=10)
    output = done.stdout + done.stderr
    [line] = [x for x in output.splitlines() if "seen on the wire" in x]
    assert f"{APP_IP} on acme/lan is answered by 2 MACs" in line, output
    assert nea_mac in line.lower() and app_mac in line.lower()
    assert "acme/app" in line  # the other MAC is named

    seen = lab.status()["conflicts"]
    assert [(c["address"], sorted(c["macs"]), c["by"]) for c in seen] == \
        [(APP_IP, sorted([nea_mac, app_mac]), "failover")]

    # On the wire: the appliance's probes carry sender IP 0.0.0.0 (no cache learns the
    # source from them); every other ARP request of the NEA for .13 is an announcement.
    frames = subprocess.run(["tcpdump", "-r", str(pcap), "-e", "-n"], capture_output=True,
                            text=True, check=False).stdout.splitlines()
    from_nea = [f for f in frames if f.lower().startswith(nea_mac) or f" {nea_mac} >" in
                f.lower()]
    probes = [f for f in from_nea if f"who-has {APP_IP} tell 0.0.0.0" in f]
    announcements = [f for f in from_nea if f"who-has {APP_IP} tell {APP_IP}" in f]
    assert probes, frames
    assert announcements, frames
    assert not [f for f in from_nea if f"who-has {APP_IP} " in f
                and f not in probes + announcements]

    # production is on the NEA: db's entry moved with the announcement, and arping
    # from db gets the NEA's answer (the source answers too while it runs)
    assert neighbour_mac(db.netns, db.port.name, APP_IP) == nea_mac
    assert nea_mac in arping(db.netns, db.port.name, APP_IP, count=2)
    assert inside(db.netns, "ping", "-c", "1", "-W", "2", APP_IP).returncode == 0
    # the source leaves: only the NEA answers
    lab.netlab("vm", "fail", "acme/app")
    assert set(arping(db.netns, db.port.name, APP_IP, count=2)) == {nea_mac}
    # the NEA probed again as it took over: nobody else answers, the record is gone
    assert lab.status()["conflicts"] == []
