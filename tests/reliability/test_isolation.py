"""Isolation of overlapping tenants, of the SP core and of the gateway; secrets stay secret.

One lab with BOTH acme/web and globex/web failed over (two replicas at 192.168.10.11,
each in its own cloud network, each behind its own tunnel). A throwaway probe
namespace `<lab>-probe` is attached to the internet segment's bridge for the scan
and removed at the end (the lab's cleanup would remove it too: it has the prefix).

tests/integration/test_bringup.py already proves that production VMs reach neither
the SP core nor the other tenant, and that a dozen chosen ports are not forwarded by
the gateway; this file adds the replicas, a listener on the gateway itself, a full
scan (TCP and UDP 1-2000 and 6170-6190) and the secrets.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import wg_backend
from conftest import LabEnv
from reliability_helpers import in_netns, module_lab, python_in, run_in

from netlab.lab import SOCKET_RUN_DIR

pytestmark = pytest.mark.root

GATEWAY = "198.51.100.10"
PROBE_ADDRESS = "198.51.100.200"
SCAN_PORTS = [*range(1, 2001), *range(6170, 6191)]
TUNNEL_PORTS = {6180: "10.99.0.11", 6181: "10.99.0.12"}
NEA_LISTEN_PORT = 1195
REPLICATION_PORT = 6180

LISTENER = r"""
import socket, sys, time
socks = []
for port in (22, 80):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    socks.append(s)
print("listening", flush=True)
time.sleep(600)
"""

SCAN = r"""
import json, sys
from scapy.layers.inet import IP, TCP, UDP
from scapy.sendrecv import sr
gateway, ports = sys.argv[1], json.loads(sys.argv[2])
probes = [IP(dst=gateway) / TCP(sport=47001, dport=p, flags="S") for p in ports]
probes += [IP(dst=gateway) / UDP(sport=47002, dport=p) / b"probe" for p in ports]
answered, _ = sr(probes, timeout=2, verbose=0)
open_tcp = sorted(r[TCP].sport for _, r in answered
                  if r.haslayer(TCP) and (int(r[TCP].flags) & 0x12) == 0x12)
print(json.dumps({"sent": len(probes), "answered": len(answered), "syn_ack": open_tcp}))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    with module_lab(tmp_path_factory) as lab:
        lab.netlab("failover", "acme/web", "globex/web")
        lab.netlab("vm", "fail", "acme/web")
        lab.netlab("vm", "fail", "globex/web")
        yield lab


def reaches(lab: LabEnv, node: str, address: str) -> bool:
    return lab.lab_exec(node, "ping", "-n", "-c", "1", "-W", "1", address).returncode == 0


def page(lab: LabEnv, node: str, address: str = "192.168.10.11") -> str:
    return lab.lab_exec(node, "curl", "-sS", "-m", "5", f"http://{address}/").stdout


def test_tenants_and_replicas_reach_neither_each_other_nor_the_sp_core(lab: LabEnv) -> None:
    # the same address, two tenants, two replicas: each tenant gets its own
    assert "<h1>acme/web</h1>" in page(lab, "acme/db")
    assert "<h1>globex/web</h1>" in page(lab, "globex/erp")
    must_fail = [
        (node, address)
        for node in ("acme/db", "acme/app", "acme/web@sp")
        for address in ("192.168.10.20", "10.99.0.1", "10.99.0.11", "10.99.0.12")
    ] + [("globex/web@sp", "192.168.10.12"), ("globex/web@sp", "192.168.10.13"),
         ("globex/erp", "192.168.10.13"), ("globex/web@sp", "10.99.0.1")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: reaches(lab, *c), must_fail))
    leaks = [c for c, ok in zip(must_fail, results, strict=True) if ok]
    assert not leaks, f"reachable across the isolation: {leaks}"
    # and the replicas do reach their own production side (the test would be vacuous if not)
    assert reaches(lab, "acme/web@sp", "192.168.10.12")
    assert reaches(lab, "globex/web@sp", "192.168.10.20")


class Capture:
    """tcpdump in a namespace, started before the probes and read after them."""

    LINE = re.compile(r"IP (?P<src>[\d.]+)\.(?P<sport>\d+) > (?P<dst>[\d.]+)\.(?P<dport>\d+): "
                      r"(?P<proto>\w+)")

    def __init__(self, netns: str, bpf: str) -> None:
        self.proc = subprocess.Popen(
            in_netns(netns, "tcpdump", "-i", "any", "-n", "-l", "--immediate-mode", bpf),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        fd, seen, deadline = self.proc.stderr.fileno(), b"", time.monotonic() + 10
        while b"listening on" not in seen:
            if select.select([fd], [], [], 0.5)[0]:
                seen += os.read(fd, 4096)
            assert self.proc.poll() is None and time.monotonic() < deadline, seen

    def stop(self, until: Callable[[list[dict[str, str]]], bool],
             timeout: float = 30) -> list[dict[str, str]]:
        """Read packets until `until(packets)` holds (or `timeout` passed), then stop:
        no fixed wait that a slow machine could outlast."""
        fd, out, deadline = self.proc.stdout.fileno(), b"", time.monotonic() + timeout
        while not until(self._parse(out)) and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out += chunk
        self.proc.send_signal(signal.SIGINT)
        rest, _ = self.proc.communicate(timeout=10)
        return self._parse(out + rest)

    def _parse(self, out: bytes) -> list[dict[str, str]]:
        packets = [m.groupdict() for m in map(self.LINE.search, out.decode().splitlines()) if m]
        for packet in packets:  # tcpdump writes "UDP, length N" but "Flags [S], ..." for TCP
            packet["proto"] = "TCP" if packet["proto"] == "Flags" else packet["proto"]
        return packets


@pytest.fixture
def probe(lab: LabEnv) -> Iterator[str]:
    """A namespace on the internet segment (veth into <lab>-inet's bridge), removed after."""
    ns, inet = lab.netns("probe"), lab.netns("inet")
    bridge = re.findall(r"\d+: (\S+?):", run_in(inet, "ip", "-o", "link", "show", "type",
                                                "bridge", check=True).stdout)[0]
    inner, outer = f"{lab.name}-q0", f"{lab.name}-q1"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        run_in(ns, "ip", "link", "add", inner, "type", "veth", "peer", "name", outer, "netns",
               inet, check=True)
        run_in(inet, "ip", "link", "set", outer, "master", bridge, "up", check=True)
        run_in(ns, "ip", "addr", "add", f"{PROBE_ADDRESS}/24", "dev", inner, check=True)
        run_in(ns, "ip", "link", "set", inner, "up", check=True)
        run_in(ns, "ip", "link", "set", "lo", "up", check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)  # takes the veth pair along


def test_gateway_forwards_only_the_tunnel_ports_and_hides_its_management(
    lab: LabEnv, probe: str
) -> None:
    listener = subprocess.Popen(in_netns(lab.netns("sp.cgw"), "python3", "-c", LISTENER),
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "listening"
        # from the edges: the gateway's own services are not reachable
        for edge in ("acme/edge", "globex/edge"):
            for port in (22, 80):
                done = lab.lab_exec(edge, "curl", "-s", "--connect-timeout", "1",
                                    f"http://{GATEWAY}:{port}/")
                assert done.returncode == 28, f"{edge} -> {GATEWAY}:{port}: {done.returncode}"
        capture = Capture(lab.netns("sp.core"), f"ip and src host {PROBE_ADDRESS}")
        try:
            result = json.loads(python_in(probe, SCAN, GATEWAY, json.dumps(SCAN_PORTS),
                                          timeout=120))
        finally:
            # the two forwarded tunnel ports, then anything else that came with them
            seen = capture.stop(until=lambda packets: len(
                {(p["dst"], p["dport"]) for p in packets}) >= len(TUNNEL_PORTS) + 1)
    finally:
        os.kill(listener.pid, signal.SIGKILL)
        listener.wait()
    forwarded = {(p["proto"], p["dst"], p["dport"]) for p in seen}
    print(f"scan: {result['sent']} probes, {result['answered']} answered, SYN-ACK from "
          f"{result['syn_ack']}; in the SP core: {sorted(forwarded)}")
    # TCP 6180 is the cloud gateway's replication port (Veeam's too): forwarded to the
    # receiver on the SP core, and the one TCP port that answers
    receiver = next(n for n in lab.status()["nodes"] if n["name"] == "sp/repl")
    receiver_address = receiver["interfaces"][0]["addresses"][0].split("/")[0]
    assert result["syn_ack"] == [REPLICATION_PORT], "a TCP port besides replication answered"
    assert forwarded == ({("UDP", dst, str(NEA_LISTEN_PORT)) for dst in TUNNEL_PORTS.values()}
                         | {("TCP", receiver_address, str(REPLICATION_PORT))})


# ----- secrets -----------------------------------------------------------------------


def private_keys(lab: LabEnv) -> list[str]:
    keys = [p.read_text().strip() for p in (lab.lab_dir / "keys").glob("*.key")]
    assert len(keys) == 4, "two NEA pairs, two private keys each"
    return keys


def test_private_keys_and_control_sockets_are_root_only(lab: LabEnv) -> None:
    keys_dir = lab.lab_dir / "keys"
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for key in keys_dir.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert key.stat().st_uid == 0
    run_dir = SOCKET_RUN_DIR / lab.name
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((lab.lab_dir / "run").stat().st_mode) == 0o700
    sockets = list(run_dir.glob("proxyarp*.sock"))
    assert len(sockets) == 1  # one proxy-ARP process serves every appliance of the lab
    for sock in sockets:
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600, sock
    # four WireGuard interfaces (two pairs); their control sockets, if the backend makes
    # any, are not accessible to group or others
    found = wg_backend.artefacts(lab.prefix, lab.namespaces())
    interfaces = {link.split(":")[1]: link.split(":")[0] for link in found["links"]}
    assert len(interfaces) == 4 and found == wg_backend.expected(interfaces), found
    for sock in wg_backend.socket_paths(f"{lab.prefix}w"):
        assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0, sock


def test_no_command_output_or_log_contains_a_private_key(lab: LabEnv) -> None:
    keys = private_keys(lab)
    outputs = {
        "status --json": lab.netlab("status", "--json").stdout,
        "status": lab.netlab("status").stdout,
        "events --json": lab.netlab("events", "--json").stdout,
        "events": lab.netlab("events").stdout,
    }
    for path in lab.lab_dir.rglob("*"):
        if path.is_file() and path.parent.name != "keys" and "disks" not in path.parts \
                and "sp" not in path.relative_to(lab.lab_dir).parts[:1]:
            outputs[str(path.relative_to(lab.lab_dir))] = path.read_text(errors="replace")
    assert "state.json" in outputs and any(k.startswith("logs/") for k in outputs)
    found = [where for where, text in outputs.items() if any(key in text for key in keys)]
    assert not found, f"a private key appears in: {found}"


def test_no_private_key_on_any_command_line_while_the_tunnels_run(lab: LabEnv) -> None:
    """Keys reach wg as files (`private-key FILE`), never as arguments: every process of
    the machine is read while both tunnels are up."""
    keys = private_keys(lab)
    assert lab.status()["neas"]["acme/lan"]["power"] == "on"
    assert lab.status()["neas"]["globex/lan"]["power"] == "on"
    seen, found = 0, []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        seen += 1
        if any(key in cmdline for key in keys):
            found.append(f"pid {entry.name}: {cmdline[:80]}")
    assert seen > 10, "could not read the processes' command lines"
    assert not found, f"a private key is on a command line: {found}"
