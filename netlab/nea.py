"""Network extension appliances: power an NEA pair on and off, and keep its proxies in sync.

Per tenant network, the tenant NEA (WireGuard client, behind the edge's NAT)
and the SP NEA (WireGuard server behind the cloud gateway's DNAT) make the
production LAN and the cloud network look like one segment:

* the tenant NEA answers ARP on the LAN for every replica running at the SP
  and routes each one's /32 into the tunnel;
* the SP NEA answers ARP on the cloud network for every other address of the
  subnet (production VMs, the tenant gateway, ...), sends what its cloud
  network hands it into the tunnel (policy rule: `iif <cloud> lookup 100`)
  and keeps its main table's default route via the SP core for its own
  tunnel packets.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from typing import Any

from netlab import wireguard
from netlab.errors import NetlabError, PreconditionFailed
from netlab.lab import Lab, Progress, _quiet
from netlab.net import links
from netlab.net.namespaces import Netlink, pids_in_namespaces
from netlab.orchestrator.states import RUNNING_AT_SP
from netlab.plan import CLOUD_ROUTE_TABLE, CLOUD_RULE_PRIORITY, LabPlan, Tunnel
from netlab.processes import (
    ProcessRecord,
    command_line,
    is_alive,
    record_of,
    start_process,
    stop_process,
)
from netlab.proxyarp.client import ProxyArpClient
from netlab.run import run

CONNECTED = "Connected"
FAILED = "Failed connectivity"
# How long `status` names a daemon of the pair that died and was restarted: the
# supervisor repairs it within a second, and an admin looking a little later should
# still learn that the tunnel broke.
RECENT_RESTART_SECONDS = 300
_FRESH_START_EVENTS = ("nea-up", "nea-down", "reconnected")  # restarts before these are old news


def tunnel_of(lab: Lab, key: str) -> Tunnel:
    plan = lab.plan()
    if key in plan.tunnels:
        return plan.tunnels[key]
    # "acme" is enough when the tenant has one extended network
    matches = [t for t in plan.tunnels.values() if t.tenant == key]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(plan.tunnels) or "none"
    raise PreconditionFailed(f"no NEA pair {key!r} in lab {lab.name} (NEA pairs: {known})")


def replicas_at_sp(plan: LabPlan, state: dict[str, Any], tunnel: Tunnel) -> list[str]:
    """Production addresses of the network's replicas that currently run at the SP."""
    addresses = []
    for vm_name, replica in state.get("replicas", {}).items():
        node = plan.nodes.get(f"{vm_name}@sp")
        if node is None or node.tenant != tunnel.tenant or node.network != tunnel.network:
            continue
        if replica.get("state") in RUNNING_AT_SP and node.address:
            addresses.append(node.address)
    return sorted(addresses)


def sp_proxied(tunnel: Tunnel, at_sp: list[str]) -> list[str]:
    """Every address of the subnet but the local replicas and the SP NEA itself."""
    skip = set(at_sp) | {tunnel.sp_nea_address}
    return [str(a) for a in IPv4Network(tunnel.subnet).hosts() if str(a) not in skip]


def _socket_path(lab: Lab, node: str) -> str:
    return str(lab.socket_dir / f"proxyarp-{node.replace('/', '.')}.sock")


def _keys(lab: Lab, tunnel: Tunnel) -> tuple[wireguard.KeyPair, wireguard.KeyPair]:
    key_dir = lab.dir.sub("keys", 0o700)
    base = tunnel.key.replace("/", ".")
    return (
        wireguard.ensure_keypair(key_dir, f"{base}.tenant"),
        wireguard.ensure_keypair(key_dir, f"{base}.sp"),
    )


def _record(lab: Lab, rec: ProcessRecord | None) -> None:
    if rec is None:
        return
    with lab.dir.update() as state:
        state.setdefault("processes", {})[rec.name] = rec.to_dict() | {"supervised": True}


def _records(state: dict[str, Any], *names: str) -> list[ProcessRecord]:
    out = []
    for name in names:
        data = state.get("processes", {}).get(name)
        if data:
            out.append(ProcessRecord.from_dict(data))
    return out


def backend_for(lab: Lab) -> wireguard.WireGuardBackend:
    return wireguard.select_backend(log_dir=lab.dir.sub("logs"))


# ----- tunnel ------------------------------------------------------------------


def start_tunnel_side(lab: Lab, tunnel: Tunnel, side: str) -> None:
    """Create and configure one side's WireGuard interface and the routes that use it."""
    plan = lab.plan()
    backend = backend_for(lab)
    tenant_keys, sp_keys = _keys(lab, tunnel)
    state = lab.dir.read()
    at_sp = replicas_at_sp(plan, state, tunnel)
    node = plan.nodes[tunnel.sp_nea if side == "sp" else tunnel.tenant_nea]
    ifname = tunnel.sp_wg if side == "sp" else tunnel.tenant_wg
    rec = backend.create(node.netns, ifname)
    if rec is not None:
        _record(lab, _renamed(rec, f"wireguard:{node.name}"))
    if side == "sp":
        wireguard.configure_server(
            node.netns, ifname, sp_keys.private_key_path, tunnel.listen_port,
            tenant_keys.public_key, ["0.0.0.0/0"],
        )
    else:
        wireguard.configure_client(
            node.netns, ifname, tenant_keys.private_key_path, sp_keys.public_key,
            tunnel.endpoint, [tunnel.subnet],
        )
    wireguard.set_up(node.netns, ifname)
    backend.tune(rec)
    if side == "sp":
        with Netlink() as nl:
            sock = nl[node.netns]
            links.add_route(sock, tunnel.subnet, dev=tunnel.sp_wg)
            links.add_route(sock, "default", dev=tunnel.sp_wg, table=CLOUD_ROUTE_TABLE)
            links.add_rule(sock, tunnel.sp_cloud_port, CLOUD_ROUTE_TABLE, CLOUD_RULE_PRIORITY)
            for address in at_sp:
                links.add_route(sock, f"{address}/32", dev=tunnel.sp_cloud_port)
    else:
        with Netlink() as nl:
            sock = nl[node.netns]
            links.add_route(sock, f"{tunnel.sp_nea_address}/32", dev=tunnel.tenant_wg)
            for address in at_sp:
                links.add_route(sock, f"{address}/32", dev=tunnel.tenant_wg)


def _renamed(rec: ProcessRecord, name: str) -> ProcessRecord:
    return ProcessRecord(name=name, pid=rec.pid, start_time=rec.start_time, argv=rec.argv,
                         netns=rec.netns)


def stop_tunnel_side(lab: Lab, tunnel: Tunnel, side: str) -> None:
    plan = lab.plan()
    node = plan.nodes[tunnel.sp_nea if side == "sp" else tunnel.tenant_nea]
    ifname = tunnel.sp_wg if side == "sp" else tunnel.tenant_wg
    name = f"wireguard:{node.name}"
    with lab.dir.update() as state:
        records = _records(state, name)
        state.get("processes", {}).pop(name, None)
    backend = backend_for(lab)
    if backend.name != "kernel" and not records:
        records = _unrecorded(node.netns, ["wireguard-go", "-f", ifname])
    if backend.name == "kernel" or records:
        backend.destroy(node.netns, ifname, records[0] if records else None)
    if side == "sp":
        with Netlink() as nl:
            links.delete_rule(nl[node.netns], tunnel.sp_cloud_port, CLOUD_ROUTE_TABLE,
                              CLOUD_RULE_PRIORITY)


# ----- proxy-ARP daemons -------------------------------------------------------------


def start_proxy_daemon(lab: Lab, tunnel: Tunnel, side: str) -> Callable[[], None]:
    """Start one side's proxy-ARP daemon; call the result to wait until it answers.

    Starting both sides before waiting for either overlaps their start-up
    (Python and Scapy imports, ~0.13 s each).
    """
    plan = lab.plan()
    state = lab.dir.read()
    at_sp = replicas_at_sp(plan, state, tunnel)
    if side == "sp":
        node, iface = plan.nodes[tunnel.sp_nea], tunnel.sp_cloud_port
        addresses, gratuitous = sp_proxied(tunnel, at_sp), 0
    else:
        node, iface = plan.nodes[tunnel.tenant_nea], tunnel.tenant_lan_port
        # neighbours switch to the NEA's MAC at once instead of when their entry ages out
        addresses, gratuitous = at_sp, 3
    sock = _socket_path(lab, node.name)
    argv = [sys.executable, "-m", "netlab.proxyarp", "--iface", iface, "--socket", sock,
            "--gratuitous-count", str(gratuitous)]
    if addresses:
        argv += ["--address", ",".join(addresses)]
    log = lab.dir.sub("logs") / f"proxyarp-{node.name.replace('/', '.')}.log"
    rec = start_process(f"proxyarp:{node.name}", argv, netns=node.netns, log_path=log)
    _record(lab, rec)

    def wait_ready() -> None:
        try:
            ProxyArpClient(sock).wait_ready(timeout=10, process=rec)
        except NetlabError as exc:
            raise NetlabError(f"{exc} (log: {log})") from None

    return wait_ready


def stop_proxy_daemon(lab: Lab, node_name: str) -> None:
    name = f"proxyarp:{node_name}"
    with lab.dir.update() as state:
        records = _records(state, name)
        state.get("processes", {}).pop(name, None)
    if not records:
        node = lab.plan().nodes[node_name]
        records = _unrecorded(node.netns, [sys.executable, "-m", "netlab.proxyarp"])
    for rec in records:
        stop_process(rec)


def _unrecorded(netns: str, argv_prefix: list[str]) -> list[ProcessRecord]:
    """Processes of an NEA that a crash dropped from the state before it stopped them
    (the record goes first, so that the supervisor does not restart what is being
    stopped): found in the NEA's namespace by the command line netlab gave them."""
    found = []
    for pid in pids_in_namespaces([netns]):
        argv = command_line(pid)
        if argv is not None and argv[:len(argv_prefix)] == argv_prefix:
            rec = record_of(pid, f"{argv_prefix[-1]} in {netns}")
            if rec is not None:
                found.append(rec)
    return found


# ----- the pair ----------------------------------------------------------------------


def nea_up(lab: Lab, key: str, progress: Progress = _quiet) -> float:
    """Power the NEA pair of network `key` on; return the seconds it took. Idempotent."""
    lab.require_up()
    tunnel = tunnel_of(lab, key)
    state = lab.dir.read()
    if state.get("neas", {}).get(tunnel.key, {}).get("power") == "on":
        return 0.0
    started = time.monotonic()
    backend = backend_for(lab)
    lab.dir.journal("nea-up-started", network=tunnel.key, backend=backend.name)
    # a pair recorded off may still have a side up: an nea up killed half-way
    _power_off(lab, tunnel, quiet=True)
    try:
        start_tunnel_side(lab, tunnel, "sp")
        start_tunnel_side(lab, tunnel, "tenant")
        lab.dir.journal("nea-up:tunnel", network=tunnel.key)
        waiters = [start_proxy_daemon(lab, tunnel, side) for side in ("sp", "tenant")]
        for wait_ready in waiters:
            wait_ready()
    except BaseException:
        _power_off(lab, tunnel)
        raise
    with lab.dir.update() as state:
        state.setdefault("neas", {})[tunnel.key] = {"power": "on", "backend": backend.name}
    elapsed = time.monotonic() - started
    lab.dir.journal("nea-up", network=tunnel.key, seconds=round(elapsed, 4))
    progress(f"NEA pair {tunnel.key} on ({backend.name} WireGuard) in {elapsed:.2f} s")
    return elapsed


def nea_down(lab: Lab, key: str, progress: Progress = _quiet) -> None:
    """Power the NEA pair of network `key` off: daemons, tunnel, routes. Idempotent."""
    lab.require_up()
    tunnel = tunnel_of(lab, key)
    _power_off(lab, tunnel)
    lab.dir.journal("nea-down", network=tunnel.key)
    progress(f"NEA pair {tunnel.key} off")


def _power_off(lab: Lab, tunnel: Tunnel, quiet: bool = False) -> None:
    with lab.dir.update() as state:
        state.setdefault("neas", {})[tunnel.key] = {"power": "off"}
    stop_proxy_daemon(lab, tunnel.tenant_nea)
    stop_proxy_daemon(lab, tunnel.sp_nea)
    if not quiet:
        lab.dir.journal("nea-down:proxies", network=tunnel.key)
    stop_tunnel_side(lab, tunnel, "tenant")
    stop_tunnel_side(lab, tunnel, "sp")
    plan = lab.plan()
    with Netlink() as nl:
        sp = nl[plan.nodes[tunnel.sp_nea].netns]
        for route in sp.get_routes(family=2):
            dst = route.get_attr("RTA_DST")
            if dst and route["dst_len"] == 32:
                links.delete_route(sp, f"{dst}/32")


def sync_proxies(lab: Lab, key: str) -> dict[str, list[str]]:
    """Make routes and proxied sets of a powered-on pair follow the replicas' states."""
    plan = lab.plan()
    tunnel = tunnel_of(lab, key)
    state = lab.dir.read()
    at_sp = replicas_at_sp(plan, state, tunnel)
    tenant_node, sp_node = plan.nodes[tunnel.tenant_nea], plan.nodes[tunnel.sp_nea]
    with Netlink() as nl:
        tenant_sock, sp_sock = nl[tenant_node.netns], nl[sp_node.netns]
        for vm in plan.nodes.values():
            if vm.tenant != tunnel.tenant or vm.network != tunnel.network or not vm.address:
                continue
            if vm.kind.value != "replica":
                continue
            host = f"{vm.address}/32"
            if vm.address in at_sp:
                links.add_route(tenant_sock, host, dev=tunnel.tenant_wg)
                links.add_route(sp_sock, host, dev=tunnel.sp_cloud_port)
            else:
                links.delete_route(tenant_sock, host)
                links.delete_route(sp_sock, host)
    tenant = ProxyArpClient(_socket_path(lab, tenant_node.name))
    sp = ProxyArpClient(_socket_path(lab, sp_node.name))
    # The SP NEA stops answering for a replica before the tenant NEA starts, so the
    # replica's address is never claimed by a proxy on both sides at once.
    sp.remove(at_sp)
    stale_tenant = [a for a in tenant.list() if a not in at_sp]
    tenant.remove(stale_tenant)
    tenant.add(at_sp)
    sp.add([a for a in sp_proxied(tunnel, at_sp) if a not in at_sp])
    return {"tenant": at_sp, "sp_removed": at_sp}


def reconnect(lab: Lab, tenant: str, progress: Progress = _quiet) -> list[str]:
    """Restart the tunnel on both NEAs of every powered-on network of `tenant`."""
    lab.require_up()
    plan = lab.plan()
    tunnels = [t for t in plan.tunnels.values() if t.tenant == tenant]
    if not tunnels:
        raise PreconditionFailed(f"tenant {tenant!r} has no NEA pair in lab {lab.name}")
    state = lab.dir.read()
    done = []
    for tunnel in tunnels:
        if state.get("neas", {}).get(tunnel.key, {}).get("power") != "on":
            progress(f"{tunnel.key}: NEA pair is off, nothing to reconnect")
            continue
        restart_tunnel(lab, tunnel)
        lab.dir.journal("reconnected", network=tunnel.key)
        progress(f"{tunnel.key}: tunnel restarted on both NEAs")
        done.append(tunnel.key)
    return done


def restart_tunnel(lab: Lab, tunnel: Tunnel) -> None:
    for side in ("tenant", "sp"):
        stop_tunnel_side(lab, tunnel, side)
    start_tunnel_side(lab, tunnel, "sp")
    start_tunnel_side(lab, tunnel, "tenant")


# ----- connectivity ------------------------------------------------------------------


def probe(lab: Lab, tunnel: Tunnel, timeout: float = 1.0) -> bool:
    """One ping from the tenant NEA to the SP NEA's cloud address, through the tunnel."""
    node = lab.plan().nodes[tunnel.tenant_nea]
    done = run(
        ["ping", "-c", "1", "-W", str(max(1, int(timeout))), "-I", tunnel.tenant_wg,
         tunnel.sp_nea_address],
        netns=node.netns, check=False, timeout=timeout + 3,
    )
    return done.returncode == 0


def recent_restarts(lab: Lab, tunnel: Tunnel) -> list[dict[str, Any]]:
    """Supervisor restarts of the pair's daemons in the last RECENT_RESTART_SECONDS,
    since the pair was last powered on or reconnected (oldest first)."""
    names = {f"{kind}:{node}" for kind in ("wireguard", "proxyarp")
             for node in (tunnel.tenant_nea, tunnel.sp_nea)}
    since = time.time() - RECENT_RESTART_SECONDS
    found: list[dict[str, Any]] = []
    for event in lab.dir.events():
        if event.get("time", 0) < since:
            continue
        if event.get("network") == tunnel.key and event.get("event") in _FRESH_START_EVENTS:
            found = []
        elif event.get("event") == "restarted" and event.get("process") in names:
            found.append({"process": event["process"], "time": event["time"]})
    return found


def connectivity(lab: Lab, key: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Connected / Failed connectivity of a pair, and which hop is at fault."""
    tunnel = tunnel_of(lab, key)
    state = state or lab.dir.read()
    info: dict[str, Any] = dict(state.get("neas", {}).get(tunnel.key, {"power": "off"}))
    plan = lab.plan()
    info["tenant_proxied"] = replicas_at_sp(plan, state, tunnel)
    if info.get("power") != "on":
        info["connectivity"] = "-"
        return info
    tenant_node = plan.nodes[tunnel.tenant_nea]
    dead = [
        rec.name for rec in _records(
            state, f"wireguard:{tunnel.tenant_nea}", f"wireguard:{tunnel.sp_nea}",
            f"proxyarp:{tunnel.tenant_nea}", f"proxyarp:{tunnel.sp_nea}",
        ) if not is_alive(rec)
    ]
    handshake = None
    with contextlib.suppress(Exception):
        handshake = wireguard.latest_handshake(tenant_node.netns, tunnel.tenant_wg)
    info["latest_handshake"] = handshake
    restarts = recent_restarts(lab, tunnel)
    info["recent_restarts"] = restarts
    if probe(lab, tunnel):
        info["connectivity"] = CONNECTED
        info["detail"] = "probe across the tunnel answered"
        if restarts:
            last = restarts[-1]
            info["detail"] += (
                f"; {last['process']} died and was restarted by the supervisor "
                f"{time.time() - last['time']:.0f} s ago"
                + (f" ({len(restarts)} restarts in {RECENT_RESTART_SECONDS // 60} min)"
                   if len(restarts) > 1 else "")
            )
        return info
    info["connectivity"] = FAILED
    if dead:
        info["detail"] = (f"not running: {', '.join(dead)} (the supervisor restarts it; "
                          "'netlab events' lists its restarts)")
        return info
    gateway = plan.topology.provider.gateway
    reach = run(["ping", "-c", "1", "-W", "1", str(gateway)], netns=tenant_node.netns,
                check=False, timeout=4)
    age = f"last handshake {time.time() - handshake:.0f} s ago" if handshake else "no handshake"
    if reach.returncode != 0:
        info["detail"] = (f"the tenant NEA cannot reach the cloud gateway {gateway} "
                          f"(tenant edge or internet segment down; {age})")
    else:
        info["detail"] = (f"the gateway {gateway} answers but nothing comes back through the "
                          f"tunnel: UDP {tunnel.tunnel_port} is blocked at the gateway or not "
                          f"forwarded to the SP NEA ({age})")
    return info
