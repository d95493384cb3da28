"""Hostile packets on the tenant LAN: ARP spoofing from a tenant VM, and an ARP flood.

Plain ARP has no authentication: on a flat LAN any host can claim any address, and
neighbours that believe it send their frames to the spoofer until they learn the right
MAC again. What netlab promises (docs/reliability.md) is narrower and is what these
tests check: the spoofed frames never change the NEA's proxied set, its routes or the
WireGuard peer (the tunnel is keyed, not learned from ARP); the daemon answers none of
them (counted as ignored); and once the victims re-learn the address, acme/db reaches
the replica again through the same tunnel. The measured disruption is printed.

Flood: 100 000 ARP requests (half for the proxied replica address, half for free
addresses, 2000 different sender MACs) sent as prebuilt bytes on a raw socket from
acme/app; the daemon's VmRSS may grow by less than FLOOD_RSS_LIMIT_KB and its answers
stay correct. tests/integration/test_proxyarp_daemon.py floods a bare daemon with
malformed frames; this one floods the daemon of a running lab.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LabEnv
from reliability_helpers import module_lab, pid_of, poll, python_in, run_in, state_of

from netlab.lab import SOCKET_RUN_DIR
from netlab.proxyarp.client import ProxyArpClient

pytestmark = pytest.mark.root

REPLICA = "192.168.10.11"
TENANT_NEA = "192.168.10.250"
SP_NEA = "192.168.10.251"
FLOOD_FRAMES = 100_000
FLOOD_RSS_LIMIT_KB = 8 * 1024

SPOOF = r"""
import sys
from scapy.layers.l2 import ARP, Ether
from scapy.arch import get_if_hwaddr
from scapy.sendrecv import sendp
iface, db_mac, nea_mac = sys.argv[1:4]
me = get_if_hwaddr(iface)
frames = []
for claimed in ("192.168.10.250", "192.168.10.11"):
    # gratuitous ARP, request and reply form
    frames.append(Ether(src=me, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=me, psrc=claimed, hwdst="00:00:00:00:00:00", pdst=claimed))
    frames.append(Ether(src=me, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=2, hwsrc=me, psrc=claimed, hwdst="ff:ff:ff:ff:ff:ff", pdst=claimed))
    # unsolicited replies straight at db and at the tenant NEA
    frames.append(Ether(src=me, dst=db_mac) / ARP(
        op=2, hwsrc=me, psrc=claimed, hwdst=db_mac, pdst="192.168.10.12"))
    frames.append(Ether(src=me, dst=nea_mac) / ARP(
        op=2, hwsrc=me, psrc=claimed, hwdst=nea_mac, pdst="192.168.10.250"))
for _ in range(3):
    sendp(frames, iface=iface, verbose=False)
print(len(frames) * 3)
"""

FLOOD = r"""
import socket, struct, sys, time
iface, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
def request(i):
    mac = bytes([2, 0xfe, 0, 0, (i >> 8) & 0xff, i & 0xff])  # 2000 senders
    sender = bytes([192, 168, 10, 100 + i % 100])
    target = bytes([192, 168, 10, 11]) if i % 2 else bytes([192, 168, 10, 200 + i % 40])
    return (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
            + mac + sender + b"\x00" * 6 + target)
frames = [request(i) for i in range(2000)]  # odd i: for the replica, even: free addresses
started = time.monotonic()
sent = 0
while sent < count:
    try:
        s.send(frames[sent % len(frames)])
        sent += 1
    except BlockingIOError:
        time.sleep(0.0005)
print(sent, round(time.monotonic() - started, 3))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    with module_lab(tmp_path_factory) as lab:
        lab.netlab("failover", "acme/web")
        lab.netlab("vm", "fail", "acme/web")
        yield lab


def iface_and_mac(lab: LabEnv, node: str) -> tuple[str, str]:
    found = next(n for n in lab.status()["nodes"] if n["name"] == node)
    port = next(i for i in found["interfaces"] if i["name"] != "lo")
    return port["name"], port["mac"].lower()


def daemon(lab: LabEnv) -> ProxyArpClient:
    return ProxyArpClient(str(SOCKET_RUN_DIR / lab.name / "proxyarp.sock"),
                          appliance="acme/nea-lan")


def arping_macs(lab: LabEnv, node: str, address: str) -> set[str]:
    iface, _ = iface_and_mac(lab, node)
    done = lab.lab_exec(node, "arping", "-c", "2", "-w", "2", "-I", iface, address)
    return {m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", done.stdout)}


def tunnel_probe(lab: LabEnv, wg: str) -> bool:
    done = run_in(lab.netns("acme.nea-lan"), "ping", "-n", "-c", "1", "-W", "1", "-I", wg,
                  SP_NEA)
    return done.returncode == 0


def wg_iface(lab: LabEnv) -> str:
    # not `wg show interfaces`: wireguard-go's sockets are shared by all namespaces, so
    # it lists every lab's interfaces; the NEA's own is the one in its namespace
    done = run_in(lab.netns("acme.nea-lan"), "ip", "-o", "link", "show", check=True)
    return re.findall(rf"\d+: ({re.escape(lab.prefix)}w\d+)", done.stdout)[0]


def nea_view(lab: LabEnv, wg: str) -> dict:
    ns = lab.netns("acme.nea-lan")
    return {
        "proxied": sorted(daemon(lab).list()),
        "routes": run_in(ns, "ip", "-4", "route", "show", check=True).stdout,
        "peer": run_in(ns, "wg", "show", wg, "endpoints", check=True).stdout,
        "allowed": run_in(ns, "wg", "show", wg, "allowed-ips", check=True).stdout,
    }


def neigh(lab: LabEnv, node: str, address: str) -> str:
    return lab.lab_exec(node, "ip", "neigh", "show", address).stdout.strip()


def test_arp_spoofing_from_a_vm_does_not_redirect_the_tunnel(lab: LabEnv) -> None:
    app_if, _app_mac = iface_and_mac(lab, "acme/app")
    _, db_mac = iface_and_mac(lab, "acme/db")
    _, nea_mac = iface_and_mac(lab, "acme/nea-lan")
    wg = wg_iface(lab)
    assert poll("db reaches the replica", lambda: lab.lab_exec(
        "acme/db", "ping", "-c", "1", "-W", "1", REPLICA).returncode == 0)
    before, stats = nea_view(lab, wg), daemon(lab).stats()
    assert before["proxied"] == [REPLICA]

    sent = int(python_in(lab.netns("acme.app"), SPOOF, app_if, db_mac, nea_mac))
    spoofed_at = time.monotonic()
    # 18 of the frames reach the NEA (broadcast and the ones sent to it): wait until the
    # daemon has read them, with a generous timeout rather than a fixed pause
    after = poll("the daemon read the spoofed frames", lambda: (
        now := daemon(lab).stats())["frames_seen"] - stats["frames_seen"] >= sent * 3 // 4
        and now, timeout=30)
    print(f"{sent} spoofed ARP frames from acme/app; daemon: frames seen "
          f"+{after['frames_seen'] - stats['frames_seen']}, replies "
          f"+{after['replies_sent'] - stats['replies_sent']}, ignored "
          f"+{after['ignored'] - stats['ignored']}")
    print(f"  db's entry for {REPLICA}: {neigh(lab, 'acme/db', REPLICA)!r}")
    print(f"  edge's entry for {TENANT_NEA}: {neigh(lab, 'acme/edge', TENANT_NEA)!r}")
    # the NEA learnt nothing from the spoofer: same set, routes, peer
    assert nea_view(lab, wg) == before
    # 18 of the frames reach the NEA (broadcast and the ones sent to it); none answered
    assert after["replies_sent"] == stats["replies_sent"]
    assert after["ignored"] - stats["ignored"] >= sent * 3 // 4
    # the tunnel itself: keyed, not learned from ARP; its underlay via the edge heals
    poll("the tunnel answers again", lambda: tunnel_probe(lab, wg), timeout=60)
    print(f"  tunnel probe answered {time.monotonic() - spoofed_at:.2f} s after the spoofing")
    # db believed the spoofer (plain ARP); once it re-learns .11, the NEA answers again
    lab.lab_exec("acme/db", "ip", "neigh", "del", REPLICA, "dev", iface_and_mac(lab, "acme/db")[0])
    assert arping_macs(lab, "acme/db", REPLICA) == {nea_mac}
    poll("db reaches the replica again", lambda: lab.lab_exec(
        "acme/db", "ping", "-c", "1", "-W", "1", REPLICA).returncode == 0, timeout=60)
    print(f"  db reaches the replica {time.monotonic() - spoofed_at:.2f} s after the spoofing")


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1])


def test_arp_flood_keeps_the_daemon_bounded_and_correct(lab: LabEnv) -> None:
    pid = pid_of(lab, "proxyarp")
    assert pid
    app_if, _ = iface_and_mac(lab, "acme/app")
    _, nea_mac = iface_and_mac(lab, "acme/nea-lan")
    rss_before, stats = rss_kb(pid), daemon(lab).stats()
    out = python_in(lab.netns("acme.app"), FLOOD, app_if, str(FLOOD_FRAMES), timeout=120)
    sent, seconds = out.split()

    def settled() -> dict | None:
        first = daemon(lab).stats()
        time.sleep(0.3)
        second = daemon(lab).stats()
        return second if second["frames_seen"] == first["frames_seen"] else None

    final = poll("the daemon has read the flood", settled, timeout=120)
    rss_after = rss_kb(pid)
    seen = final["frames_seen"] - stats["frames_seen"]
    print(f"flood: {sent} ARP requests in {seconds} s; daemon saw {seen}, replied "
          f"{final['replies_sent'] - stats['replies_sent']}, ignored "
          f"{final['ignored'] - stats['ignored']} {final['ignored_by_reason']}, kernel drops "
          f"{final['kernel_drops'] - stats['kernel_drops']}; VmRSS {rss_before} kB -> "
          f"{rss_after} kB")
    assert pid_of(lab, "proxyarp") == pid, "the daemon died under the flood"
    assert int(sent) == FLOOD_FRAMES
    # every frame of the flood was read by the daemon or counted as dropped by the kernel
    # (its receive buffer full): none vanished unaccounted
    drops = final["kernel_drops"] - stats["kernel_drops"]
    assert seen + drops >= FLOOD_FRAMES, (seen, drops)
    # every frame it read was a request for the replica (answered) or for a free address
    assert final["replies_sent"] - stats["replies_sent"] > 0
    assert rss_after - rss_before < FLOOD_RSS_LIMIT_KB
    assert daemon(lab).list() == [REPLICA]
    assert poll("arping for the replica answered by the NEA",
                lambda: arping_macs(lab, "acme/db", REPLICA)) == {nea_mac}
    assert state_of(lab)["replicas"]["acme/web"]["state"] == "Failover"
