"""Provider scale on real namespaces: a /16 tenant network failed over and back, and the
lab's one proxy-ARP process killed during a failover of several tenants.

Every lab is failed over by the CLI. ARP is judged by real arping replies: the MAC
that answers, never a daemon's own word for it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import wg_backend
from conftest import LabEnv, netlab_argv

pytestmark = [pytest.mark.root]

FAR = "172.16.255.200"  # far from the others in the /16, a VM there


def topology(tenants: int) -> str:
    lines = ["internet: {subnet: 198.51.100.0/24}",
             "provider: {gateway: 198.51.100.10, core_subnet: 10.99.0.0/24, "
             "core_gateway: 10.99.0.1}", "tenants:"]
    for t in range(tenants):
        lines += [
            f"  t{t}:",
            f"    edge: 198.51.100.{11 + t}",
            "    networks:",
            "      lan:",
            "        subnet: 172.16.0.0/16",
            "        gateway: 172.16.0.1",
            "        nea: {address: 172.16.0.250, sp_address: 172.16.0.251, "
            f"sp_core_address: 10.99.0.{11 + t}, tunnel_port: {6180 + t}}}",
            "    vms:",
            "      a: {network: lan, address: 172.16.0.11}",
            "      b: {network: lan, address: 172.16.7.12}",
            f"      far: {{network: lan, address: {FAR}}}",
        ]
    return "\n".join(lines) + "\n"


def up(lab: LabEnv, tmp_path: Path, tenants: int) -> None:
    path = tmp_path / f"scale-{tenants}.yaml"
    path.write_text(topology(tenants))
    lab.netlab("up", str(path))


def macs(lab: LabEnv) -> dict[str, str]:
    """MAC of every interface of the lab, by interface name."""
    return {i["name"]: i["mac"].lower() for n in lab.status()["nodes"] for i in n["interfaces"]
            if i.get("mac")}


def answering(lab: LabEnv, node: str, address: str, count: int = 2) -> set[str]:
    done = lab.lab_exec(node, "arping", "-b", "-c", str(count), "-w", str(count + 1), address)
    return {m.lower() for m in re.findall(
        rf"reply from {re.escape(address)} \[([0-9A-Fa-f:]{{17}})\]", done.stdout)}


def tunnel_ports(lab: LabEnv, tenant: str) -> tuple[str, str]:
    """(tenant NEA LAN port, SP NEA cloud port) of `tenant`'s network."""
    from netlab.lab import Lab

    tunnel = Lab(lab.name).plan().tunnels[f"{tenant}/lan"]
    return tunnel.tenant_lan_port, tunnel.sp_cloud_port


def test_a_16_network_fails_over_and_back(lab_env: LabEnv, tmp_path: Path) -> None:
    lab = lab_env
    up(lab, tmp_path, 1)
    lab.netlab("vm", "fail", "t0/a")
    lab.netlab("failover", "t0/a")
    tenant_port, sp_port = tunnel_ports(lab, "t0")
    mac = macs(lab)
    # production asks for the replica: the tenant NEA answers
    assert answering(lab, "t0/b", "172.16.0.11") == {mac[tenant_port]}
    # the replica asks for a production VM far away in the /16: the SP NEA answers
    assert answering(lab, "t0/a@sp", FAR) == {mac[sp_port]}
    # and for an address nobody has, also in the /16: still the SP NEA (the whole prefix)
    assert answering(lab, "t0/a@sp", "172.16.200.77") == {mac[sp_port]}
    page = lab.lab_exec("t0/b", "curl", "-sS", "-m", "5", "http://172.16.0.11/")
    assert "t0/a" in page.stdout, page.stdout + page.stderr
    page = lab.lab_exec("t0/a@sp", "curl", "-sS", "-m", "5", f"http://{FAR}/")
    assert "t0/far" in page.stdout, page.stdout + page.stderr

    lab.netlab("undo", "t0/a")
    lab.netlab("vm", "start", "t0/a")
    source_mac = macs(lab)[_port_of(lab, "t0/a")]
    assert answering(lab, "t0/b", "172.16.0.11") == {source_mac}
    assert lab.status()["neas"]["t0/lan"]["power"] == "off"


def _port_of(lab: LabEnv, node: str) -> str:
    from netlab.lab import Lab

    return Lab(lab.name).plan().nodes[node].port.name


def _events(lab: LabEnv) -> list[dict]:
    path = lab.lab_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _proxyarp_pid(lab: LabEnv) -> int:
    state = json.loads((lab.lab_dir / "state.json").read_text())
    return int(state["processes"]["proxyarp"]["pid"])


def test_killing_the_proxy_arp_process_during_a_multi_tenant_failover(
        lab_env: LabEnv, tmp_path: Path) -> None:
    lab = lab_env
    tenants = 4
    up(lab, tmp_path, tenants)
    for t in range(tenants):
        lab.netlab("vm", "fail", f"t{t}/a")
    old = _proxyarp_pid(lab)
    failover = subprocess.Popen(
        [*netlab_argv(), "failover", *(f"t{t}/a" for t in range(tenants)), "--json"],
        env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # as soon as the pairs are being powered on, the one process serving them dies
        deadline = time.monotonic() + 60
        while not any(e.get("event") == "failover:sp-nea" for e in _events(lab)):
            assert failover.poll() is None, failover.communicate()
            assert time.monotonic() < deadline, "the failover never reached its SP NEA step"
            time.sleep(0.01)
        os.kill(old, signal.SIGKILL)
        _out, err = failover.communicate(timeout=120)
    finally:
        if failover.poll() is None:
            failover.kill()
            failover.wait()
    print(f"failover exited {failover.returncode}: {err.strip()[-300:]}")
    state = json.loads((lab.lab_dir / "state.json").read_text())
    assert state.get("operation") is None, state.get("operation")
    replicas = {t: state["replicas"][f"t{t}/a"]["state"] for t in range(tenants)}
    if failover.returncode == 0:
        assert set(replicas.values()) == {"Failover"}, replicas
    else:  # rolled back cleanly: every replica Normal, every pair off
        assert set(replicas.values()) == {"Normal"}, (replicas, err)
        assert {n["power"] for n in state["neas"].values()} == {"off"}, err
        return
    new = _proxyarp_pid(lab)
    assert new != old
    mac = macs(lab)
    deadline = time.monotonic() + 30
    for t in range(tenants):
        tenant_port, sp_port = tunnel_ports(lab, f"t{t}")
        # every appliance answers again, from the set the restarted process relearned
        while answering(lab, f"t{t}/b", "172.16.0.11", count=1) != {mac[tenant_port]}:
            assert time.monotonic() < deadline, f"t{t}'s tenant NEA answers no ARP"
        while answering(lab, f"t{t}/a@sp", FAR, count=1) != {mac[sp_port]}:
            assert time.monotonic() < deadline, f"t{t}'s SP NEA answers no ARP"
    relearned = [e for e in _events(lab) if e.get("event") == "proxyarp-relearned"]
    assert relearned and relearned[-1]["pid"] == new, relearned
    lab.netlab("down")
    assert lab.namespaces() == []


@pytest.mark.parametrize("fault", ["failover:sp-nea:raise", "failover:tenant-nea:raise",
                                   "failover:delta:raise"])
def test_a_failover_that_fails_half_way_rolls_back_every_pair(
        lab_env: LabEnv, tmp_path: Path, fault: str) -> None:
    """An unexpected error while two pairs power on: no appliance left served, no tunnel
    left running, replicas Normal, and the same failover works afterwards."""
    lab = lab_env
    up(lab, tmp_path, 2)
    vms = ["t0/a", "t1/a"]
    done = subprocess.run([*netlab_argv(), "failover", *vms], env={**lab.env,
                          "NETLAB_FAULT": fault}, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stdout
    state = json.loads((lab.lab_dir / "state.json").read_text())
    assert state.get("operation") is None
    assert {state["replicas"][vm]["state"] for vm in vms} == {"Normal"}
    assert {n["power"] for n in state["neas"].values()} == {"off"}
    assert not [p for p in state["processes"] if p.startswith("wireguard:")]
    from netlab.proxyarp.client import ProxyArpClient

    served = ProxyArpClient(f"/run/netlab/{lab.name}/proxyarp.sock").info()["appliances"]
    assert served == []
    assert not wg_backend.sockets(f"{lab.name}-")
    assert answering(lab, "t0/b", "172.16.0.11", count=1) == {macs(lab)[_port_of(lab, "t0/a")]}
    lab.netlab("failover", *vms)
    tenant_port, _ = tunnel_ports(lab, "t1")
    lab.netlab("vm", "fail", "t1/a")
    assert answering(lab, "t1/b", "172.16.0.11") == {macs(lab)[tenant_port]}
