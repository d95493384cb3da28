"""Bring-up of a whole lab with real namespaces: reachability, isolation, gateway filtering,
status, idempotence, errors that create nothing, teardown, crash recovery.

Read-only checks share one default lab (the session fixture `default_lab`); tests
that bring labs up, down or kill them get their own (`lab_env`). Every lab is
leak-checked when its fixture ends (see tests/conftest.py). Traffic goes only to
addresses inside the lab's namespaces.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from conftest import (
    LabEnv,
    leftovers,
    namespace_inodes,
    netlab_argv,
    pids_in,
)

from netlab.plan import NodeKind, build_plan
from netlab.topology import load_topology
from netlab.topology.loader import default_topology_text

pytestmark = pytest.mark.root

ACME_PAGE = "<h1>acme/web</h1>"
GLOBEX_PAGE = "<h1>globex/web</h1>"
GATEWAY = "198.51.100.10"
ACME_EDGE = "198.51.100.11"
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def ping(lab: LabEnv, node: str, address: str, wait: int = 2) -> subprocess.CompletedProcess:
    return lab.lab_exec(node, "ping", "-n", "-q", "-c", "1", "-W", str(wait), address)


def curl(lab: LabEnv, node: str, url: str, timeout: int = 5) -> subprocess.CompletedProcess:
    return lab.lab_exec(node, "curl", "-sS", "--connect-timeout", str(timeout),
                        "--max-time", str(timeout), url)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    return lines[0]


def in_netns(netns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}", *argv]


def nodes_by_name(status: dict) -> dict[str, dict]:
    return {n["name"]: n for n in status["nodes"]}


def macs(status: dict) -> dict[str, str]:
    return {i["name"]: i["mac"] for n in status["nodes"] for i in n["interfaces"]}


# ----- reachability and isolation (shared default lab) ------------------------------


def test_same_tenant_ping_and_http(default_lab: LabEnv) -> None:
    assert ping(default_lab, "acme/db", "192.168.10.11").returncode == 0
    page = curl(default_lab, "acme/db", "http://192.168.10.11/")
    assert page.returncode == 0, page.stderr
    assert ACME_PAGE in page.stdout
    assert "globex" not in page.stdout


def test_overlapping_tenant_reaches_its_own_vm(netlab_lab) -> None:
    # a lab of its own from the pytest plugin (netlab.pytest_plugin), as users' tests get
    page = netlab_lab.curl("globex/erp", "http://192.168.10.11/")
    assert page.ok, page.error
    assert GLOBEX_PAGE in page.body
    assert "acme" not in page.body


def test_dhcp_vm_holds_a_lease(default_lab: LabEnv) -> None:
    status = default_lab.status()
    kiosk = next(vm for vm in status["vms"] if vm["name"] == "acme/kiosk")
    assert kiosk["dhcp"] is True
    address = IPv4Address(kiosk["address"])
    assert IPv4Address("192.168.10.100") <= address <= IPv4Address("192.168.10.199")
    shown = default_lab.lab_exec("acme/kiosk", "ip", "-4", "-o", "addr", "show")
    assert shown.returncode == 0
    assert f"inet {address}/24" in shown.stdout
    (iface,) = nodes_by_name(status)["acme/kiosk"]["interfaces"]
    assert f"{address}/24" in iface["addresses"]
    # dnsmasq's lease file agrees: the kiosk's MAC holds that address
    leases = "".join(p.read_text() for p in (default_lab.lab_dir / "run").glob("*.leases"))
    assert any(
        line.split()[1:3] == [iface["mac"], str(address)] for line in leases.splitlines()
    ), leases
    # and it routes through its edge like a static VM
    assert ping(default_lab, "acme/kiosk", "192.168.10.11").returncode == 0


def test_every_edge_reaches_the_cloud_gateway(default_lab: LabEnv) -> None:
    edges = [n["name"] for n in default_lab.status()["nodes"] if n["kind"] == "edge"]
    assert edges == ["acme/edge", "globex/edge"]
    for edge in edges:
        done = ping(default_lab, edge, GATEWAY)
        assert done.returncode == 0, f"{edge}: {done.stdout}{done.stderr}"


def test_vms_reach_neither_the_sp_core_nor_the_other_tenant(default_lab: LabEnv) -> None:
    probes = {
        "acme/web -> SP core gateway": ("acme/web", "ping", "10.99.0.1"),
        "acme/web -> SP NEA core address": ("acme/web", "ping", "10.99.0.11"),
        "globex/erp -> SP core gateway": ("globex/erp", "ping", "10.99.0.1"),
        "acme/db -> SP NEA cloud address": ("acme/db", "ping", "192.168.10.251"),
        "acme/db -> globex/erp": ("acme/db", "ping", "192.168.10.20"),
        "globex/erp -> acme/db": ("globex/erp", "ping", "192.168.10.12"),
        "acme/db -> globex/erp http": ("acme/db", "curl", "http://192.168.10.20/"),
    }

    def attempt(probe: tuple[str, str, str]) -> subprocess.CompletedProcess:
        node, tool, target = probe
        if tool == "ping":
            return ping(default_lab, node, target, wait=1)
        return curl(default_lab, node, target, timeout=1)

    with ThreadPoolExecutor(max_workers=len(probes) + 1) as pool:
        control = pool.submit(attempt, ("acme/db", "ping", "192.168.10.11"))
        results = dict(zip(probes, pool.map(attempt, probes.values()), strict=True))
    assert control.result().returncode == 0, "the control ping inside acme failed"
    reached = [name for name, done in results.items() if done.returncode == 0]
    assert reached == [], f"reachable but must not be: {reached}"


# ----- the cloud gateway forwards nothing but the tunnel ports -------------------------

PROBE_SCRIPT = r"""
import json, socket, sys, time
sockets = []
for proto, dst, dport, sport in json.loads(sys.argv[1]):
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], sport))
    if proto == "udp":
        s.sendto(b"netlab probe", (dst, dport))
    else:
        s.setblocking(False)
        s.connect_ex((dst, dport))  # sends the SYN; no answer is awaited
    sockets.append(s)
time.sleep(0.3)
"""

TCPDUMP_LINE = re.compile(
    r"\bIP (?P<src>\d+\.\d+\.\d+\.\d+)(?:\.(?P<sport>\d+))? > "
    r"(?P<dst>\d+\.\d+\.\d+\.\d+)(?:\.(?P<dport>\d+))?: (?P<what>.*)"
)


class Capture:
    """tcpdump on every interface of a namespace, started before and read after the probes."""

    def __init__(self, netns: str, bpf: str) -> None:
        argv = in_netns(netns, "tcpdump", "-i", "any", "-n", "-l", "--immediate-mode", bpf)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # raw reads: a buffered readline could swallow the line select() waits for
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + 10
        seen = b""
        while b"listening on" not in seen:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                seen += os.read(fd, 4096)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"tcpdump did not start in {netns}: {seen.decode()}")

    def stop(self) -> list[dict[str, str]]:
        time.sleep(0.3)  # let the last forwarded packets arrive
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        lines = out.decode(errors="replace").splitlines()
        return [m.groupdict() for m in map(TCPDUMP_LINE.search, lines) if m]


@pytest.mark.skipif(shutil.which("tcpdump") is None,
                    reason="tcpdump not installed (apt-get install tcpdump)")
def test_gateway_forwards_only_the_tunnel_ports(default_lab: LabEnv) -> None:
    # (proto, destination, port, source port): the source port tells the probes apart
    # the tunnels' UDP ports, and replication's TCP 6180 (forwarded to sp/repl)
    tunnel = [("udp", GATEWAY, 6180, 40001), ("udp", GATEWAY, 6181, 40002),
              ("tcp", GATEWAY, 6180, 40017)]
    refused = [
        ("udp", GATEWAY, 6182, 40011),
        ("udp", GATEWAY, 1195, 40012),
        ("udp", GATEWAY, 53, 40013),
        ("udp", GATEWAY, 51820, 40014),
        ("tcp", GATEWAY, 22, 40015),
        ("tcp", GATEWAY, 80, 40016),
        ("tcp", GATEWAY, 6181, 40022),
        # straight at the SP core, routed via the gateway: not DNATed, so never forwarded
        ("udp", "10.99.0.11", 1195, 40018),
        ("udp", "10.99.0.12", 1195, 40019),
        ("tcp", "10.99.0.11", 22, 40020),
        ("tcp", "10.99.0.1", 22, 40021),
    ]
    edge = "acme/edge"
    # a route to the SP core for the direct probes only; removed at the end
    added = default_lab.lab_exec(edge, "ip", "route", "add", "10.99.0.0/24", "via", GATEWAY)
    assert added.returncode == 0, added.stderr
    try:
        capture = Capture(default_lab.netns("sp.core"),
                          f"ip and src host {ACME_EDGE} and (udp or tcp or icmp)")
        try:
            sent = default_lab.lab_exec(edge, sys.executable, "-c", PROBE_SCRIPT,
                                        json.dumps(tunnel + refused), ACME_EDGE)
            assert sent.returncode == 0, sent.stderr
            icmp = ping(default_lab, edge, "10.99.0.11", wait=1)
        finally:
            seen = capture.stop()
    finally:
        default_lab.lab_exec(edge, "ip", "route", "del", "10.99.0.0/24", "via", GATEWAY)
    assert icmp.returncode != 0, "a ping from outside reached an SP NEA through the gateway"
    arrived = {(p["sport"], p["dst"], p["dport"]) for p in seen}
    assert arrived == {("40001", "10.99.0.11", "1195"), ("40002", "10.99.0.12", "1195"),
                       ("40017", "10.99.0.254", "6180")}, (
        f"in the SP core from {ACME_EDGE}: {seen}"
    )
    assert all(p["what"].startswith("UDP") or p["dport"] == "6180" for p in seen)


def test_gateway_ruleset_is_loaded(default_lab: LabEnv) -> None:
    listed = default_lab.lab_exec("sp/cgw", "nft", "list", "chain", "ip", "netlab", "forward")
    assert listed.returncode == 0, listed.stderr
    lines = [line.strip() for line in listed.stdout.splitlines()]
    assert "type filter hook forward priority filter; policy drop;" in lines
    rules = [line for line in lines
             if line and not line.startswith(("table ", "chain ", "type ", "}"))]
    assert rules[0] == "ct state established,related accept"
    # the two tunnels, replication, then the accept of packets a running cloud failover
    # plan marks (nothing carries that mark while no plan runs)
    assert len(rules) == 5, rules
    for rule, key in zip(rules[1:3], ("acme/lan", "globex/lan"), strict=True):
        assert "udp dport 1195 ct status dnat accept" in rule, rule
        assert rule.endswith(f'comment "tunnel {key}"'), rule
    assert "tcp dport 6180 ct status dnat accept" in rules[3], rules
    assert rules[4] == 'meta mark 0x6e6c0001 accept comment "cloud failover plan"', rules


# ----- status -------------------------------------------------------------------------


def ethtool_features(netns: str, ifname: str) -> dict[str, bool]:
    from pyroute2.ethtool.ioctl import IoctlEthtool

    from netlab.net.namespaces import inside

    with inside(netns):
        ethtool = IoctlEthtool(ifname)
    try:
        features = ethtool.get_features()
        # iterating the list itself yields tuples, its keys() the names
        return {name: features.is_active(name) for name in features.keys()}  # noqa: SIM118
    finally:
        ethtool.close()


def test_nea_links_receive_like_nics(default_lab: LabEnv) -> None:
    plan = build_plan(default_lab.name, load_topology())
    links = plan.nea_links
    assert len(links) == 6  # per tenant network: the tenant NEA's LAN, the SP NEA's two
    for link in links:
        segment_end = ethtool_features(link.segment_netns, link.segment_ifname)
        assert segment_end["rx-gro"] and segment_end["rx-udp-gro-forwarding"], link
        threaded = subprocess.run(
            ["ip", "netns", "exec", link.segment_netns, "cat",
             f"/sys/class/net/{link.segment_ifname}/threaded"],
            capture_output=True, text=True, check=True).stdout.strip()
        assert threaded in ("1", "enabled"), link
        nea_end = ethtool_features(link.netns, link.ifname)
        assert not any(on for name, on in nea_end.items()
                       if name.startswith("tx-tcp") and name.endswith("-segmentation")), link
        qdisc = subprocess.run(in_netns(link.netns, "tc", "qdisc", "show", "dev", link.ifname),
                               capture_output=True, text=True, check=True).stdout
        assert qdisc.startswith("qdisc pfifo_fast "), qdisc
    # other links keep the veth defaults: a VM's port has no NAPI thread
    vm_port = plan.nodes["acme/db"].ports[0]
    segment = plan.segments[vm_port.segment].netns
    assert not ethtool_features(segment, vm_port.bridge_port)["rx-gro"]


def test_status_lists_every_node_and_vm(default_lab: LabEnv) -> None:
    status = default_lab.status()
    plan = build_plan(default_lab.name, load_topology())
    assert status["lab"] == default_lab.name
    assert status["status"] == "up"
    nodes = nodes_by_name(status)
    assert set(nodes) == set(plan.nodes)
    for name, node in plan.nodes.items():
        shown = nodes[name]
        assert shown["namespace"] == node.netns
        assert shown["kind"] == str(node.kind)
        expected_power = "on" if node.kind in (NodeKind.GATEWAY, NodeKind.EDGE,
                                               NodeKind.VM, NodeKind.RECEIVER) else "off"
        assert shown["power"] == expected_power, name
        ifaces = {i["name"]: i for i in shown["interfaces"]}
        assert set(ifaces) == {p.name for p in node.ports}, name
        for port in node.ports:
            iface = ifaces[port.name]
            assert MAC.match(iface["mac"]), iface
            if not node.dhcp:
                assert iface["addresses"] == list(port.addresses), name
    assert len(set(macs(status).values())) == len(macs(status))
    vms = {vm["name"]: vm for vm in status["vms"]}
    assert set(vms) == {vm.name for vm in plan.vms()}
    for name, vm in vms.items():
        if name == "acme/kiosk":
            assert vm["replica_state"] is None and vm["replica"] is None
        else:
            assert vm["replica_state"] == "Normal", name
            assert vm["replica"] == f"{name}@sp"
            assert vm["address"] == plan.nodes[name].address
            assert vm["restore_points"] == 1
        assert vm["power"] == "on"
    assert all(p["alive"] for p in status["processes"].values()), status["processes"]


def test_status_text_view(default_lab: LabEnv) -> None:
    done = default_lab.netlab("status")
    for name in ("acme/web", "acme/web@sp", "sp/cgw", "globex/erp"):
        assert name in done.stdout


def test_replicas_are_down_and_run_nothing(default_lab: LabEnv) -> None:
    status = default_lab.status()
    replicas = [n for n in status["nodes"] if n["kind"] == "replica"]
    assert len(replicas) == 5
    for replica in replicas:
        assert replica["power"] == "off"
        assert [i["state"] for i in replica["interfaces"]] == ["down"], replica
        assert not pids_in(namespace_inodes([replica["namespace"]])), replica["name"]
        routes = subprocess.run(in_netns(replica["namespace"], "ip", "-4", "route", "show"),
                                capture_output=True, text=True, check=True)
        assert routes.stdout.strip() == "", routes.stdout


def test_up_again_is_idempotent(default_lab: LabEnv) -> None:
    before = default_lab.status()
    namespaces = default_lab.namespaces()
    done = default_lab.netlab("up")
    assert "already up" in done.stdout
    as_json = json.loads(default_lab.netlab("up", "--json").stdout)
    assert as_json["result"] == "already up"
    after = default_lab.status()
    assert macs(after) == macs(before)
    assert {k: v["pid"] for k, v in after["processes"].items()} == {
        k: v["pid"] for k, v in before["processes"].items()}
    assert default_lab.namespaces() == namespaces


# ----- netlab exec --------------------------------------------------------------------------


def test_exec_passes_the_exit_status_through(default_lab: LabEnv) -> None:
    assert default_lab.lab_exec("acme/web", "sh", "-c", "exit 7").returncode == 7
    done = default_lab.lab_exec("acme/web", "sh", "-c", "echo hello; exit 0")
    assert (done.returncode, done.stdout) == (0, "hello\n")


def test_exec_on_an_unknown_node(default_lab: LabEnv) -> None:
    done = default_lab.lab_exec("acme/nosuch", "true")
    assert done.returncode != 0
    assert done.stdout == ""
    line = one_line(done.stderr)
    assert "unknown node 'acme/nosuch'" in line


# ----- refusals that create nothing ------------------------------------------------------


def assert_nothing_created(lab: LabEnv) -> None:
    assert lab.namespaces() == []
    assert not lab.state_dir.exists(), sorted(p.name for p in lab.state_dir.iterdir())


def test_up_as_non_root_is_refused(lab_env: LabEnv) -> None:
    if shutil.which("setpriv"):
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    elif shutil.which("runuser"):
        drop = ["runuser", "-u", "nobody", "--"]
    else:
        pytest.skip("neither setpriv nor runuser is installed (util-linux)")
    done = subprocess.run([*drop, *netlab_argv(), "up"], env=lab_env.env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode != 0
    line = one_line(done.stderr)
    assert "root" in line and line.startswith("netlab:"), line
    assert_nothing_created(lab_env)


def edited(old: str, new: str) -> str:
    text = default_topology_text()
    assert old in text, old
    return text.replace(old, new, 1)


BROKEN_FILES = {
    "bad-cidr": (edited("subnet: 192.168.10.0/24", "subnet: 192.168.10.0/33"),
                 "tenants.acme.networks.lan.subnet"),
    "outside-subnet": (edited("address: 192.168.10.11}", "address: 192.168.11.11}"),
                       "tenants.acme.vms.web.address"),
    "duplicate-address": (edited("address: 192.168.10.12}", "address: 192.168.10.11}"),
                          "tenants.acme.vms.db.address"),
    "vm-named-edge": (edited("app: {network", "edge: {network"), "tenants.acme.vms.edge"),
    "unknown-network": (edited("web: {network: lan,", "web: {network: lna,"),
                        "tenants.acme.vms.web.network"),
    "tunnel-port-twice": (edited("tunnel_port: 6181", "tunnel_port: 6180"),
                          "tenants.globex.networks.lan.nea.tunnel_port"),
    "name-16-chars": (edited("  acme:\n", "  acmeacmeacmeacme:\n"), "tenants.acmeacmeacmeacme"),
    "shell-metachars": (edited("app: {network", "'a;rm -rf /': {network"),
                        "tenants.acme.vms.a;rm -rf /"),
    "unknown-key": (edited("retention: 3", "retenton: 3"),
                    "tenants.acme.replication.retenton"),
    "bad-yaml": (edited("address: 192.168.10.11}", "address: 192.168.10.11"), "line 28"),
    "static-without-address": (edited("db: {network: lan, address: 192.168.10.12}",
                                      "db: {network: lan}"), "tenants.acme.vms.db.address"),
    "retention-type": (edited("retention: 3", "retention: three"),
                       "tenants.acme.replication.retention"),
}


def test_broken_topology_files_create_nothing(lab_env: LabEnv, tmp_path: Path) -> None:
    def attempt(case: str) -> str | None:
        text, field = BROKEN_FILES[case]
        path = tmp_path / f"{case}.yaml"
        path.write_text(text)
        done = lab_env.netlab("up", str(path), check=False)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        if done.returncode == 0 or len(lines) != 1 or field not in lines[0]:
            return f"{case}: exit {done.returncode}, stderr {done.stderr!r}"
        return None

    # every attempt must fail before creating anything, so they can run side by side
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(attempt, BROKEN_FILES) if f]
    assert not failures, "\n".join(failures)
    assert_nothing_created(lab_env)


@pytest.mark.parametrize("bad", ["demo-2", "toolongname", "UPPER"])
def test_bad_lab_name_on_the_command_line(lab_env: LabEnv, bad: str) -> None:
    done = lab_env.netlab("up", "--lab", bad, check=False)
    assert done.returncode != 0
    assert "1-8 lowercase letters or digits" in one_line(done.stderr)
    assert_nothing_created(lab_env)
    assert not list(Path("/run/netns").glob(f"{bad}-*"))


@pytest.mark.parametrize("kind", ["missing", "not-utf8"])
def test_unreadable_topology_file_is_one_line(lab_env: LabEnv, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "topology.yaml"
    if kind == "not-utf8":
        path.write_bytes(b"\xff\xfe\x00 not text")
    done = lab_env.netlab("up", str(path), check=False)
    assert done.returncode != 0
    assert "topology.yaml" in one_line(done.stderr)
    assert_nothing_created(lab_env)


# ----- down, cleanup, crashes ---------------------------------------------------------------


def test_down_leaves_no_namespace(lab_env: LabEnv) -> None:
    lab_env.netlab("up")
    namespaces = lab_env.namespaces()
    assert len(namespaces) == 25  # with sp/repl, the replication receiver
    inodes = namespace_inodes(namespaces)
    assert pids_in(inodes), "a lab that is up runs its workloads"
    done = lab_env.netlab("down")
    assert f"lab {lab_env.name} is down" in done.stdout
    assert leftovers(lab_env, inodes) == []
    again = lab_env.netlab("down", check=False)
    # an idempotent no-op: exit 0 with a line that says so (README, Conventions)
    assert again.returncode == 0, again.stderr
    assert "not up (nothing to take down)" in one_line(again.stdout)


def test_down_of_a_lab_that_does_not_exist(lab_env: LabEnv) -> None:
    done = lab_env.netlab("down", check=False)
    assert done.returncode == 0, done.stderr
    line = one_line(done.stdout)
    assert f"lab {lab_env.name} is not up" in line
    assert_nothing_created(lab_env)


def listed_namespaces(prefix: str) -> list[str]:
    """/run/netns read directly: cheap enough to poll every millisecond."""
    try:
        return [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    except FileNotFoundError:
        return []


def kill_up_halfway(lab: LabEnv, stage: str, tmp_path: Path) -> None:
    """Start `netlab up`, SIGKILL it once `stage` is reached, leave the wreck behind."""
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen([*netlab_argv(), "up"], env=lab.env, stdout=log, stderr=log)

    def reached() -> bool:
        if stage == "namespaces":
            return len(listed_namespaces(lab.prefix)) >= 3
        try:
            state = json.loads((lab.lab_dir / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return len(state.get("processes", {})) >= 2

    deadline = time.monotonic() + 60
    try:
        while not reached():
            assert proc.poll() is None, "netlab up ended before it could be killed"
            assert time.monotonic() < deadline, "netlab up never reached the stage"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert lab.namespaces(), "the kill left nothing: it came too late to test anything"


@pytest.mark.parametrize("stage", ["namespaces", "workloads"])
def test_kill_9_halfway_then_cleanup_leaves_nothing(
    lab_env: LabEnv, stage: str, tmp_path: Path
) -> None:
    lab = lab_env
    kill_up_halfway(lab, stage, tmp_path)
    inodes = namespace_inodes(lab.namespaces())
    if stage == "workloads":
        assert pids_in(inodes), "processes started before the kill are still running"
    status = lab.netlab("status", check=False)
    assert status.returncode != 0
    assert "cleanup" in one_line(status.stderr)
    done = lab.netlab("cleanup")
    assert f"lab {lab.name} cleaned up" in done.stdout
    assert leftovers(lab, inodes) == []


def test_up_after_a_crash_recovers_by_itself(lab_env: LabEnv, tmp_path: Path) -> None:
    lab = lab_env
    kill_up_halfway(lab, "namespaces", tmp_path)
    done = lab.netlab("up")
    assert "interrupted" in done.stderr and "cleanup" in done.stderr, done.stderr
    assert f"lab {lab.name} is up" in done.stdout
    page = curl(lab, "acme/db", "http://192.168.10.11/")
    assert ACME_PAGE in page.stdout, page.stderr
    assert len(lab.namespaces()) == 25


def test_cleanup_of_one_lab_leaves_another_untouched(
    lab_env: LabEnv, default_lab: LabEnv
) -> None:
    other = default_lab
    lab_env.netlab("up")
    other_namespaces = other.namespaces()
    other_pids = set(pids_in(namespace_inodes(other_namespaces)))
    other_status = other.status()
    assert other_pids
    mine = namespace_inodes(lab_env.namespaces())
    lab_env.netlab("cleanup")
    assert leftovers(lab_env, mine) == []
    assert other.namespaces() == other_namespaces
    assert set(pids_in(namespace_inodes(other_namespaces))) == other_pids
    status = other.status()
    assert all(p["alive"] for p in status["processes"].values())
    assert macs(status) == macs(other_status)
    page = curl(other, "acme/db", "http://192.168.10.11/")
    assert ACME_PAGE in page.stdout, page.stderr
