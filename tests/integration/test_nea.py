"""acme's NEA pair, judged by what real tools see (docs/architecture.md#the-proxy-arp-daemon).

One lab for the module (`t<6 hex>`, its own NETLAB_STATE_DIR), failed over by the CLI:
`netlab up`, `netlab vm fail acme/web` (the source drops off the LAN, so only the tenant
NEA answers ARP for 192.168.10.11) and `netlab failover acme/web` (the replica on, the
NEA pair on, both appliances served by the lab's one proxy-ARP process).

Then: ARP answered by the right NEA MAC on both sides (and never for an address outside
the proxied set), full-size frames with DF, HTTP, the replica reaching production, the
tenant gateway and the internet through the tunnel, nothing but the tunnel's UDP at the
internet segment, globex untouched, `nea down` / `nea up` (idempotent), a firewall at the
cloud gateway (Failed connectivity, reconnect) and daemons killed with SIGKILL (the
supervisor restarts them). Every test leaves the lab as healthy as it found it.

The flood of malformed ARP frames is in test_proxyarp_daemon.py, not here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wg_backend

from netlab.processes import (
    ProcessRecord,
    is_alive,
    process_start_time,
)
from netlab.run import in_netns
from netlab.state import LabDir

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("arping", "tcpdump", "curl", "ping", "nft")),
        reason="needs arping, tcpdump, curl, ping (iputils) and nft",
    ),
]

TUNNEL = "acme/lan"
REPLICA_IP = "192.168.10.11"  # acme/web, failed over
DB_IP = "192.168.10.12"
APP_IP = "192.168.10.13"
FREE_IP = "192.168.10.77"  # nobody's address on acme's LAN
TENANT_GW = "192.168.10.1"
CLOUD_GW = "198.51.100.10"
ACME_EDGE = "198.51.100.11"
TUNNEL_PORT = 6180
NEA_PROCESSES = (
    *wg_backend.process_records("wireguard:acme/nea-lan", "wireguard:sp/nea-acme-lan"),
    "proxyarp",  # the lab's one proxy-ARP process, serving both appliances
)


def netlab_argv() -> list[str]:
    beside = Path(sys.executable).with_name("netlab")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "netlab.cli"]


@dataclass
class Site:
    """The module's lab, with acme/web failed over by hand."""

    name: str
    env: dict[str, str]
    state_dir: Path
    netns: dict[str, str]  # node name -> namespace
    ifname: dict[str, str]  # node name -> its (first) port
    tenant_wg: str
    sp_wg: str
    tenant_nea_mac: str
    sp_nea_cloud_mac: str
    macs: dict[str, str]  # node name -> MAC of its first port
    page: str  # what the replica's httpd serves

    # ----- the CLI ----------------------------------------------------------

    def netlab(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*netlab_argv(), *args, "--lab", self.name] if args[0] != "exec"
            else [*netlab_argv(), "exec", "--lab", self.name, *args[1:]],
            env=self.env, capture_output=True, text=True, timeout=60, check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"netlab {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done

    def status(self) -> dict[str, Any]:
        return json.loads(self.netlab("status", "--json").stdout)

    def tunnel_status(self) -> dict[str, Any]:
        return self.status()["tunnels"][TUNNEL]

    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / self.name / "state.json").read_text())

    def events(self) -> list[dict[str, Any]]:
        path = self.state_dir / self.name / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def record(self, name: str) -> ProcessRecord | None:
        data = self.state().get("processes", {}).get(name)
        return ProcessRecord.from_dict(data) if data else None

    # ----- commands inside nodes ------------------------------------------------

    def run(self, node: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            in_netns(self.netns[node], list(argv)),
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def ping(self, node: str, address: str, *extra: str, count: int = 1) -> bool:
        done = self.run(node, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", *extra,
                        address)
        return done.returncode == 0 and f"{count} received" in done.stdout

    def arping(self, node: str, target: str, count: int = 3, broadcast: bool = True,
               wait: float | None = None) -> list[str]:
        """MACs (lower case) of every ARP reply `node` got for `target`, one per reply."""
        # iputils arping takes whole seconds for -i: probes go out once a second
        argv = ["arping", "-c", str(count), "-I", self.ifname[node]]
        if broadcast:
            argv.append("-b")  # every probe broadcast: each answerer shows up each time
        if wait is not None:
            argv += ["-w", str(wait)]
        done = self.run(node, *argv, target)
        return parse_arping(done.stdout, target)


def parse_arping(output: str, target: str) -> list[str]:
    macs = re.findall(
        rf"reply from {re.escape(target)} \[([0-9A-Fa-f:]{{17}})\]", output
    )
    return [m.lower() for m in macs]


def poll(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
    """Call `check` until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not true after {timeout} s (last: {last!r})")
        time.sleep(interval)


def live_processes_mentioning(*needles: str) -> list[str]:
    """Running (non-zombie) processes whose command line contains one of `needles`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        text = cmdline.decode(errors="replace")
        if any(n in text for n in needles) and process_start_time(int(entry.name)) is not None:
            found.append(f"{entry.name}: {text.strip()}")
    return found


# ----- the lab ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    name = f"t{secrets.token_hex(3)}"
    base = tmp_path_factory.mktemp(f"nea-{name}")
    state_dir = base / "state"
    env = {**os.environ, "NETLAB_STATE_DIR": str(state_dir)}
    env.pop("NETLAB_LAB", None)
    made: Site | None = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETLAB_STATE_DIR", str(state_dir))
        mp.delenv("NETLAB_LAB", raising=False)
        try:
            subprocess.run([*netlab_argv(), "up", "--lab", name], env=env, check=True,
                           capture_output=True, text=True, timeout=60)
            for command in (["vm", "fail", "acme/web"], ["failover", "acme/web"]):
                subprocess.run([*netlab_argv(), *command, "--lab", name], env=env,
                               check=True, capture_output=True, text=True, timeout=60)
            from netlab.lab import Lab

            plan = Lab(name).plan()
            tunnel = plan.tunnels[TUNNEL]
            page = subprocess.run(in_netns(plan.nodes["acme/web@sp"].netns, [
                "curl", "-sS", "-m", "5", f"http://{REPLICA_IP}/"]), capture_output=True,
                text=True, check=True, timeout=10).stdout
            assert "acme/web" in page, page
            made = Site(
                name=name, env=env, state_dir=state_dir,
                netns={n.name: n.netns for n in plan.nodes.values()},
                ifname={n.name: n.port.name for n in plan.nodes.values()},
                tenant_wg=tunnel.tenant_wg, sp_wg=tunnel.sp_wg,
                tenant_nea_mac="", sp_nea_cloud_mac="", macs={}, page=page,
            )
            nodes = {n["name"]: n for n in made.status()["nodes"]}
            by_if = {i["name"]: i["mac"].lower() for n in nodes.values() for i in n["interfaces"]
                     if i["mac"]}
            made.tenant_nea_mac = by_if[tunnel.tenant_lan_port]
            made.sp_nea_cloud_mac = by_if[tunnel.sp_cloud_port]
            made.macs = {n: by_if[made.ifname[n]] for n in nodes if made.ifname[n] in by_if}
            # db learns .11 afresh, from whoever answers now
            made.run("acme/db", "ip", "neigh", "flush", "all")
            yield made
        finally:
            subprocess.run([*netlab_argv(), "cleanup", "--lab", name], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    left = sorted(n for n in os.listdir("/run/netns") if n.startswith(f"{name}-"))
    assert left == [], f"namespaces left behind: {left}"
    sockets = wg_backend.sockets(f"{name}-")
    assert sockets == [], f"WireGuard control sockets left behind: {sockets}"
    running = live_processes_mentioning(str(state_dir), f"{name}-w", f"--lab {name}",
                                        f"/run/netlab/{name}/")
    assert running == [], f"processes left behind: {running}"


# ----- the extended LAN --------------------------------------------------------------


def test_db_arp_for_the_replica_is_answered_by_the_tenant_nea_only(site: Site) -> None:
    # the classic form first (one broadcast, then unicast to the MAC learned)...
    done = site.run("acme/db", "arping", "-c", "3", "-I", site.ifname["acme/db"], REPLICA_IP)
    macs = parse_arping(done.stdout, REPLICA_IP)
    assert done.returncode == 0, done.stdout + done.stderr
    assert macs and set(macs) == {site.tenant_nea_mac}, done.stdout
    # ...then every probe broadcast, so a second answerer (the source VM) would show
    macs = site.arping("acme/db", REPLICA_IP, count=3)
    assert len(macs) == 3 and set(macs) == {site.tenant_nea_mac}, macs
    assert site.tenant_nea_mac != site.macs["acme/web"]


def test_full_size_frame_with_df_crosses_the_tunnel(site: Site) -> None:
    done = site.run("acme/db", "ping", "-n", "-c", "2", "-M", "do", "-s", "1472", REPLICA_IP)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 received" in done.stdout
    assert re.search(rf"1480 bytes from {re.escape(REPLICA_IP)}", done.stdout), done.stdout


def test_db_gets_the_replicas_page(site: Site) -> None:
    done = site.netlab("exec", "acme/db", "--", "curl", "-sS", "-m", "5",
                       f"http://{REPLICA_IP}/")
    assert done.stdout == site.page


def test_replica_arp_for_db_is_answered_by_the_sp_nea(site: Site) -> None:
    macs = site.arping("acme/web@sp", DB_IP, count=2)
    assert len(macs) == 2 and set(macs) == {site.sp_nea_cloud_mac}, macs
    assert site.sp_nea_cloud_mac != site.macs["acme/db"]


@pytest.mark.parametrize("address", [DB_IP, TENANT_GW, CLOUD_GW],
                         ids=["acme-db", "tenant-gateway", "internet"])
def test_replica_reaches_production_gateway_and_internet(site: Site, address: str) -> None:
    assert site.ping("acme/web@sp", address, count=2)


class Capture:
    """tcpdump in a namespace, started before and stopped after some traffic."""

    def __init__(self, netns: str) -> None:
        argv = ["tcpdump", "--immediate-mode", "-n", "-l", "-i", "any"]
        self.proc = subprocess.Popen(in_netns(netns, argv), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        # stderr read raw: select() knows nothing of a text wrapper's buffer
        err = self.proc.stderr.fileno()  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        seen = b""
        while b"listening on" not in seen:
            ready, _, _ = select.select([err], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(err, 4096) if ready else b""
            if not chunk:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"tcpdump did not start listening: {seen.decode(errors='replace')}")
            seen += chunk

    def stop(self) -> list[str]:
        time.sleep(0.3)  # the last replies are on the wire
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        return [line for line in out.splitlines() if line.strip()]


# `HH:MM:SS.us IFNAME DIR IP SRC > DST: what` as printed with -i any
PACKET = re.compile(r"^\S+ \S+ +\S+ +(?P<proto>IP|ARP),? (?P<rest>.*)$")
_EDGE, _GW = re.escape(ACME_EDGE), re.escape(CLOUD_GW)
TUNNEL_OUT = re.compile(rf"^{_EDGE}\.\d+ > {_GW}\.{TUNNEL_PORT}: UDP")
TUNNEL_IN = re.compile(rf"^{_GW}\.{TUNNEL_PORT} > {_EDGE}\.\d+: UDP")


def classify(lines: list[str]) -> dict[str, list[str]]:
    """Packets seen on the internet segment, sorted into tunnel / arp / other."""
    kinds: dict[str, list[str]] = {"out": [], "in": [], "arp": [], "other": []}
    for line in lines:
        m = PACKET.match(line)
        if m is None:
            kinds["other"].append(line)
        elif m["proto"] == "ARP":
            addresses = re.findall(r"\d+\.\d+\.\d+\.\d+", m["rest"])
            ok = addresses and all(a.startswith("198.51.100.") for a in addresses)
            kinds["arp" if ok else "other"].append(line)
        elif TUNNEL_OUT.match(m["rest"]):
            kinds["out"].append(line)
        elif TUNNEL_IN.match(m["rest"]):
            kinds["in"].append(line)
        else:
            kinds["other"].append(line)
    return kinds


def test_internet_segment_sees_only_the_tunnels_udp(site: Site) -> None:
    capture = Capture(f"{site.name}-inet")
    try:
        assert site.ping("acme/web@sp", DB_IP, count=3)
        assert site.ping("acme/web@sp", TENANT_GW, count=3)
        assert site.ping("acme/db", REPLICA_IP, count=3)
        fetched = site.run("acme/db", "curl", "-sS", "-m", "5", f"http://{REPLICA_IP}/")
        assert fetched.stdout == site.page
    finally:
        lines = capture.stop()
    text = "\n".join(lines)
    assert "192.168.10." not in text, f"production traffic in clear on the internet:\n{text}"
    kinds = classify(lines)
    assert kinds["other"] == [], "not the tunnel:\n" + "\n".join(kinds["other"])
    # 9 pings and a TCP exchange, each way, seen on two bridge ports each
    assert len(kinds["out"]) >= 18 and len(kinds["in"]) >= 18, text


def test_replica_reaches_the_internet_through_the_tenant_gateway(site: Site) -> None:
    capture = Capture(f"{site.name}-inet")
    try:
        assert site.ping("acme/web@sp", CLOUD_GW, count=3)
    finally:
        lines = capture.stop()
    text = "\n".join(lines)
    assert "192.168.10." not in text, text
    # In clear only after acme's edge masqueraded it: the replica's way out to the
    # internet is the tenant's own gateway, through the tunnel.
    requests = [ln for ln in lines if "ICMP echo request" in ln]
    assert requests, text
    assert all(f"IP {ACME_EDGE} > {CLOUD_GW}: ICMP echo request" in ln for ln in requests), text
    kinds = classify([ln for ln in lines if "ICMP" not in ln])
    assert kinds["other"] == [], "\n".join(kinds["other"])
    assert kinds["out"] and kinds["in"], text


def test_tenant_nea_never_answers_outside_its_set(site: Site) -> None:
    assert site.arping("acme/db", FREE_IP, count=2, wait=2) == []
    macs = site.arping("acme/db", APP_IP, count=2)
    assert len(macs) == 2 and set(macs) == {site.macs["acme/app"]}, macs
    assert site.tenant_nea_mac not in macs


def test_globex_is_untouched(site: Site) -> None:
    status = site.status()
    assert status["tunnels"]["globex/lan"]["power"] == "off"
    assert status["tunnels"]["globex/lan"]["connectivity"] == "-"
    power = {n["name"]: n["power"] for n in status["nodes"]}
    assert power["globex/nea-lan"] == power["sp/nea-globex-lan"] == "off"
    assert not [p for p in status["processes"] if "globex/nea" in p or "nea-globex" in p]
    done = site.run("globex/erp", "curl", "-sS", "-m", "5", f"http://{REPLICA_IP}/")
    assert "<h1>globex/web</h1>" in done.stdout, done.stdout + done.stderr
    macs = site.arping("globex/erp", REPLICA_IP, count=2)
    assert macs and set(macs) == {site.macs["globex/web"]}, macs


def test_nea_up_is_idempotent(site: Site) -> None:
    before = {name: site.record(name) for name in NEA_PROCESSES}
    assert all(rec is not None and is_alive(rec) for rec in before.values()), before
    done = site.netlab("nea", "up", "acme", "--json")
    assert json.loads(done.stdout) == {"network": TUNNEL, "seconds": 0.0}
    assert {name: site.record(name) for name in NEA_PROCESSES} == before
    assert site.tunnel_status()["connectivity"] == "Connected"
    assert site.ping("acme/db", REPLICA_IP)


# ----- failures ------------------------------------------------------------------------


BLOCK_TABLE = "nltestblock"


@contextlib.contextmanager
def udp_blocked_at_gateway(site: Site) -> Iterator[None]:
    """Drop the tunnel's UDP at the cloud gateway, before conntrack and DNAT see it."""
    gw = site.netns["sp/cgw"]
    script = (
        f"add table ip {BLOCK_TABLE}\n"
        f"add chain ip {BLOCK_TABLE} pre {{ type filter hook prerouting priority -300; }}\n"
        f"add rule ip {BLOCK_TABLE} pre udp dport {TUNNEL_PORT} drop\n"
    )
    subprocess.run(in_netns(gw, ["nft", "-f", "-"]), input=script, text=True, check=True,
                   capture_output=True)
    try:
        yield
    finally:
        subprocess.run(in_netns(gw, ["nft", "delete", "table", "ip", BLOCK_TABLE]),
                       capture_output=True, check=False)


def wait_connected(site: Site) -> None:
    poll("acme/lan Connected",
         lambda: site.tunnel_status()["connectivity"] == "Connected", timeout=60, interval=0.5)


def failed(site: Site) -> dict[str, Any] | None:
    tunnel = site.tunnel_status()
    return tunnel if tunnel["connectivity"] == "Failed connectivity" else None


def names_the_hop(tunnel: dict[str, Any] | None) -> bool:
    detail = (tunnel or {}).get("detail", "")
    return f"UDP {TUNNEL_PORT}" in detail and CLOUD_GW in detail


def test_blocked_tunnel_udp_fails_connectivity_and_reconnect_restores_it(site: Site) -> None:
    with udp_blocked_at_gateway(site):
        poll("Failed connectivity with UDP 6180 blocked", lambda: failed(site),
             timeout=60, interval=0.5)
        assert not site.ping("acme/db", REPLICA_IP)
        # reconnect while blocked: a fresh tunnel never completes a handshake, and the
        # status says which hop is at fault
        site.netlab("reconnect", "acme")
        tunnel = poll("Failed connectivity naming UDP 6180 and the gateway",
                      lambda: (t := failed(site)) is not None and names_the_hop(t) and t,
                      timeout=60, interval=0.5)
        assert tunnel["latest_handshake"] is None
    site.netlab("reconnect", "acme")
    wait_connected(site)
    poll("db pings the replica again", lambda: site.ping("acme/db", REPLICA_IP), timeout=30)


def test_blocked_tunnel_udp_detail_names_the_gateway_without_reconnect(site: Site) -> None:
    # The tunnel drops mid-failover (a recent handshake is on record): the status says
    # which hop is at fault without waiting for the handshake to age out.
    try:
        with udp_blocked_at_gateway(site):
            tunnel = poll("Failed connectivity naming UDP 6180 and the gateway",
                          lambda: (t := failed(site)) is not None and names_the_hop(t) and t,
                          timeout=60, interval=0.5)
            assert tunnel["latest_handshake"] is not None
    finally:
        site.netlab("reconnect", "acme")
        wait_connected(site)


def restarted_events(site: Site, process: str) -> list[dict[str, Any]]:
    return [e for e in site.events()
            if e.get("event") == "restarted" and e.get("process") == process]


def test_killed_proxy_arp_process_is_restarted_and_both_sides_answer_again(site: Site) -> None:
    name = "proxyarp"
    old = site.record(name)
    assert old is not None and is_alive(old)
    os.kill(old.pid, signal.SIGKILL)
    new = poll(f"{name} restarted with a new pid",
               lambda: (r := site.record(name)) is not None and r.pid != old.pid
               and is_alive(r) and r, timeout=30)
    assert not is_alive(old)
    poll("the restart journaled", lambda: restarted_events(site, name), timeout=30)
    # it relearned both appliances and their sets from the lab state
    macs = poll("arping for .11 answered again",
                lambda: site.arping("acme/db", REPLICA_IP, count=1, wait=1), timeout=30)
    assert set(macs) == {site.tenant_nea_mac}
    macs = poll("arping for db answered again on the cloud side",
                lambda: site.arping("acme/web@sp", DB_IP, count=1, wait=1), timeout=30)
    assert set(macs) == {site.sp_nea_cloud_mac}
    assert is_alive(new)


def test_killed_wireguard_go_is_restarted_and_traffic_recovers(site: Site) -> None:
    name = "wireguard:acme/nea-lan"
    old = site.record(name)
    if not wg_backend.runs_processes():
        pytest.skip(f"the {wg_backend.backend_name()} WireGuard backend runs no process")
    assert old is not None
    assert is_alive(old)
    os.kill(old.pid, signal.SIGKILL)
    poll("ping db -> replica recovers by itself", lambda: site.ping("acme/db", REPLICA_IP),
         timeout=30)
    new = site.record(name)
    assert new is not None and new.pid != old.pid and is_alive(new)
    poll("the restart journaled", lambda: restarted_events(site, name), timeout=30)
    wait_connected(site)
    # status says the tunnel broke and was repaired, not just "Connected"
    tunnel = site.tunnel_status()
    assert [r["process"] for r in tunnel["recent_restarts"]][-1] == name
    assert f"{name} died and was restarted by the supervisor" in tunnel["detail"]
    site.netlab("reconnect", "acme")  # a fresh start: the restart is old news
    wait_connected(site)
    assert site.tunnel_status()["recent_restarts"] == []


def test_nea_down_stops_daemons_a_crash_dropped_from_the_state(site: Site) -> None:
    """A netlab killed while powering a pair off may have removed a daemon's record and
    not yet the daemon: the next nea down finds it in the NEA's namespace, and nea up
    works again."""
    if not wg_backend.runs_processes():
        pytest.skip(f"the {wg_backend.backend_name()} WireGuard backend runs no process")
    names = tuple(wg_backend.process_records("wireguard:acme/nea-lan"))
    orphans = [site.record(name) for name in names]
    assert all(rec is not None and is_alive(rec) for rec in orphans)
    with LabDir(site.name, site.state_dir / site.name).update() as state:
        for name in names:
            state["processes"].pop(name)
    try:
        site.netlab("nea", "down", "acme")
        assert not any(is_alive(rec) for rec in orphans if rec is not None)
    finally:
        site.netlab("nea", "up", "acme")
    wait_connected(site)
    assert site.ping("acme/db", REPLICA_IP)


def test_nea_down_removes_the_tunnel_and_up_brings_it_back(site: Site) -> None:
    site.netlab("nea", "down", "acme")
    state = site.state()
    assert state["neas"][TUNNEL]["power"] == "off"
    assert [p for p in state["processes"] if p.startswith("wireguard:")] == []
    sockets = wg_backend.sockets(f"{site.name}-w")
    assert sockets == [], sockets
    assert live_processes_mentioning(site.tenant_wg, site.sp_wg) == []
    # the lab's proxy-ARP process runs on, serving neither appliance of the pair
    from netlab.proxyarp.client import ProxyArpClient

    served = ProxyArpClient(f"/run/netlab/{site.name}/proxyarp.sock").info()["appliances"]
    assert served == [], served
    for node, wg in (("acme/nea-lan", site.tenant_wg), ("sp/nea-acme-lan", site.sp_wg)):
        assert site.run(node, "ip", "link", "show", "dev", wg).returncode != 0
    # the SP NEA listens on nothing any more
    listening = site.run("sp/nea-acme-lan", "ss", "-Hunl").stdout
    assert ":1195" not in listening, listening
    status = site.tunnel_status()
    assert status["power"] == "off" and status["connectivity"] == "-"
    assert not site.ping("acme/db", REPLICA_IP, count=2)
    assert site.arping("acme/db", REPLICA_IP, count=2, wait=2) == []

    site.netlab("nea", "up", "acme")
    first = {name: site.record(name) for name in NEA_PROCESSES}
    assert all(r is not None and is_alive(r) for r in first.values()), first
    site.netlab("nea", "up", "acme")  # once more: changes nothing
    assert {name: site.record(name) for name in NEA_PROCESSES} == first
    wait_connected(site)
    poll("db pings the replica again", lambda: site.ping("acme/db", REPLICA_IP), timeout=30)
    assert set(site.arping("acme/db", REPLICA_IP, count=2)) == {site.tenant_nea_mac}
