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
import fcntl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from netlab import limits, wireguard
from netlab.errors import PreconditionFailed, UnknownNode
from netlab.lab import Lab, Progress, _quiet
from netlab.lab_daemons import PROXY_ARP
from netlab.net import links
from netlab.net.namespaces import Netlink, pids_in_namespaces
from netlab.plan import CLOUD_ROUTE_TABLE, CLOUD_RULE_PRIORITY, LabPlan, Node, Tunnel
from netlab.processes import (
    ProcessRecord,
    command_line,
    is_alive,
    record_of,
    stop_process,
)
from netlab.proxyarp.client import DaemonNotRunning, ProxyArpClient
from netlab.proxyarp.control import ControlError, remove_stale_socket
from netlab.proxyarp.sets import SetSpec
from netlab.replica_state import RUNNING_AT_SP


def tunnel_of(lab: Lab, key: str) -> Tunnel:
    plan = lab.plan()
    if key in plan.tunnels:
        return plan.tunnels[key]
    # "acme" is enough when the tenant has one extended network
    matches = [t for t in plan.tunnels.values() if t.tenant == key]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(plan.tunnels) or "none"
    raise UnknownNode(f"no NEA pair {key!r} in lab {lab.name} (NEA pairs: {known})")


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


def plan_sets(tunnel: Tunnel, at_sp: list[str], gateway_role: bool = False
              ) -> dict[str, SetSpec]:
    """The sets of both sides as prefixes with exceptions, whatever the subnet size.

    The SP NEA answers for its subnet minus what answers on the SP side itself: the
    replicas running there, its own address, and the gateway's address while a cloud
    failover plan gives the SP that role. The tenant NEA answers for the replicas.
    """
    exceptions = set(at_sp) | {tunnel.sp_nea_address}
    if gateway_role:
        exceptions.add(tunnel.gateway_address)
    in_subnet = IPv4Network(tunnel.subnet)
    ordered = sorted((a for a in exceptions if IPv4Address(a) in in_subnet), key=IPv4Address)
    return {
        "sp": SetSpec(prefixes=(str(in_subnet),), exceptions=tuple(ordered)),
        "tenant": SetSpec(addresses=tuple(sorted(at_sp, key=IPv4Address))),
    }


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


def check_room_for(lab: Lab, keys: list[str]) -> None:
    """Refuse, before anything changes, when powering the pairs of `keys` that are off
    on would cross a host limit of the WireGuard backend (netlab.limits)."""
    neas = lab.dir.read().get("neas", {})
    off = [key for key in dict.fromkeys(keys) if neas.get(key, {}).get("power") != "on"]
    if off:
        limits.check_room(backend_for(lab).name, len(off))


# ----- tunnel ------------------------------------------------------------------


# NEA pairs of different networks power on and off together: the waiting (processes
# starting, `wg` subprocesses, control sockets) overlaps in a bounded pool; netlink stays
# on the main thread (pyroute2 switches namespaces per thread), in one pass per phase.
POOL_SIZE = 8


def _pool(count: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, min(POOL_SIZE, count)))


def _side_node(plan: LabPlan, tunnel: Tunnel, side: str) -> tuple[Node, str]:
    node = plan.nodes[tunnel.sp_nea if side == "sp" else tunnel.tenant_nea]
    return node, tunnel.sp_wg if side == "sp" else tunnel.tenant_wg


def start_tunnel_side(lab: Lab, tunnel: Tunnel, side: str) -> None:
    """Create and configure one side's WireGuard interface and the routes that use it."""
    start_sides(lab, [tunnel], side)


def start_sides(lab: Lab, tunnels: list[Tunnel], side: str) -> None:
    """One side ("sp" or "tenant") of several pairs: WireGuard interfaces created and
    configured, links up, routes that use them. Start the SP sides before the tenant
    sides of the same pairs: the server listens before its client handshakes."""
    if not tunnels:
        return
    plan = lab.plan()
    backend = backend_for(lab)
    targets = [_side_node(plan, t, side) for t in tunnels]
    with _pool(len(tunnels)) as pool:
        keys = list(pool.map(lambda t: _keys(lab, t), tunnels))
        if backend.name == "kernel":  # a netlink link: main thread
            records = [backend.create(node.netns, ifname) for node, ifname in targets]
        else:
            records = list(pool.map(lambda target: backend.create(target[0].netns, target[1]),
                                    targets))
        with lab.dir.update() as state:
            state.setdefault("processes", {}).update({
                f"wireguard:{node.name}": _renamed(rec, f"wireguard:{node.name}").to_dict()
                | {"supervised": True}
                for (node, _), rec in zip(targets, records, strict=True) if rec is not None})
        list(pool.map(lambda job: _configure(side, *job),
                      zip(tunnels, targets, keys, strict=True)))
    state = lab.dir.read()
    with Netlink() as nl:
        for tunnel, (node, ifname), rec in zip(tunnels, targets, records, strict=True):
            wireguard.set_up(node.netns, ifname, nl=nl)
            backend.tune(rec)
            _add_routes(nl[node.netns], tunnel, side, replicas_at_sp(plan, state, tunnel))


def _configure(side: str, tunnel: Tunnel, target: tuple[Node, str],
               keys: tuple[wireguard.KeyPair, wireguard.KeyPair]) -> None:
    (node, ifname), (tenant_keys, sp_keys) = target, keys
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


def _add_routes(sock: Any, tunnel: Tunnel, side: str, at_sp: list[str]) -> None:
    if side == "sp":
        links.add_route(sock, tunnel.subnet, dev=tunnel.sp_wg)
        links.add_route(sock, "default", dev=tunnel.sp_wg, table=CLOUD_ROUTE_TABLE)
        links.add_rule(sock, tunnel.sp_cloud_port, CLOUD_ROUTE_TABLE, CLOUD_RULE_PRIORITY)
        for address in at_sp:
            links.add_route(sock, f"{address}/32", dev=tunnel.sp_cloud_port)
    else:
        links.add_route(sock, f"{tunnel.sp_nea_address}/32", dev=tunnel.tenant_wg)
        for address in at_sp:
            links.add_route(sock, f"{address}/32", dev=tunnel.tenant_wg)


def _renamed(rec: ProcessRecord, name: str) -> ProcessRecord:
    return ProcessRecord(name=name, pid=rec.pid, start_time=rec.start_time, argv=rec.argv,
                         netns=rec.netns)


def stop_tunnel_side(lab: Lab, tunnel: Tunnel, side: str) -> None:
    stop_sides(lab, [tunnel], side)


def stop_sides(lab: Lab, tunnels: list[Tunnel], side: str) -> None:
    """One side of several pairs: WireGuard daemons stopped (together), links and the
    SP's policy rule removed. Idempotent."""
    if not tunnels:
        return
    plan = lab.plan()
    targets = [_side_node(plan, t, side) for t in tunnels]
    names = [f"wireguard:{node.name}" for node, _ in targets]
    with lab.dir.update() as state:
        records = [_records(state, name) for name in names]
        for name in names:
            state.get("processes", {}).pop(name, None)
    backend = backend_for(lab)

    def stop(job: tuple[tuple[Node, str], list[ProcessRecord]]) -> None:
        (node, ifname), recs = job
        if not recs:
            recs = _unrecorded(node.netns, ["wireguard-go", "-f", ifname])
        if recs:
            backend.destroy(node.netns, ifname, recs[0])

    if backend.name == "kernel":  # netlink: main thread
        for node, ifname in targets:
            backend.destroy(node.netns, ifname, None)
    else:
        with _pool(len(tunnels)) as pool:
            list(pool.map(stop, zip(targets, records, strict=True)))
    if side == "sp":
        with Netlink() as nl:
            for tunnel, (node, _) in zip(tunnels, targets, strict=True):
                links.delete_rule(nl[node.netns], tunnel.sp_cloud_port, CLOUD_ROUTE_TABLE,
                                  CLOUD_RULE_PRIORITY)


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


# ----- proxy ARP: one process of the lab serves every appliance ------------------------


def proxy_sets(plan: LabPlan, state: dict[str, Any], tunnel: Tunnel) -> dict[str, SetSpec]:
    """What each side of the pair answers ARP for, from the lab state."""
    return plan_sets(tunnel, replicas_at_sp(plan, state, tunnel),
                     gateway_at_sp(plan, state, tunnel))


def gateway_at_sp(plan: LabPlan, state: dict[str, Any], tunnel: Tunnel) -> bool:
    """True while a running cloud failover plan gives the SP NEA the gateway's address."""
    record = state.get("plans", {}).get(tunnel.tenant, {})
    if record.get("status") != "running" or not record.get("gateway_taken", True):
        return False
    return any(plan.nodes[vm].network == tunnel.network
               for vm in record.get("vms", []) if vm in plan.nodes)


def take_over(lab: Lab, vm: Node) -> list[str]:
    """The source `vm` left its LAN while its replica runs at the SP: the tenant NEA
    announces the address again, so neighbours that still hold the source's MAC (it
    answered ARP while it ran beside its replica) switch to the NEA at once."""
    tunnel = lab.plan().tunnel_for(vm.tenant or "", vm.network or "")
    state = lab.dir.read()
    if (tunnel is None or not vm.address
            or state.get("neas", {}).get(tunnel.key, {}).get("power") != "on"):
        return []
    with contextlib.suppress(DaemonNotRunning):
        return _daemon_client(lab).for_appliance(tunnel.tenant_nea).announce([vm.address])
    return []


def _daemon_client(lab: Lab) -> ProxyArpClient:
    return ProxyArpClient(str(lab.proxy_arp_socket))


@contextlib.contextmanager
def _daemon_lock(lab: Lab) -> Iterator[None]:
    """Serialises (re)starting the daemon and pushing sets to it: each holder reads the
    state inside the lock, so the last set pushed is always made from the latest state,
    whether it comes from a command or from the supervisor relearning after a restart."""
    path = lab.dir.sub("locks") / "_proxyarp-daemon.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_proxy_daemon(lab: Lab) -> bool:
    """Make sure the lab's proxy-ARP process runs and knows every powered-on appliance;
    True when it had to be (re)started."""
    with _daemon_lock(lab):
        data = lab.dir.read().get("processes", {}).get(PROXY_ARP)
        rec = ProcessRecord.from_dict(data) if data else None
        if rec is not None and is_alive(rec) and _daemon_client(lab).ping():
            return False
        if rec is not None:
            stop_process(rec)  # a stuck one would keep the control socket
        # A killed daemon's socket may still accept while its exit closes a hundred
        # packet sockets: a ping of the new one would wait there for nothing.
        with contextlib.suppress(ControlError):
            remove_stale_socket(str(lab.proxy_arp_socket))
        new = lab.start_proxy_arp()
        state = lab.dir.read()  # once: a large lab's state costs milliseconds to read
        learned = [t for t in lab.plan().tunnels.values()
                   if state.get("neas", {}).get(t.key, {}).get("power") == "on"]
        _push_all(lab, learned, attach=True, state=state)
        lab.dir.journal("proxyarp-relearned", pid=new.pid, pairs=[t.key for t in learned],
                        message=f"proxy-ARP process (re)started; it serves the appliances of "
                                f"{len(learned)} powered-on NEA pairs")
        return True


def _push(lab: Lab, tunnel: Tunnel, attach: bool, state: dict[str, Any] | None = None) -> None:
    _push_all(lab, [tunnel], attach, lab.dir.read() if state is None else state)


def _push_all(lab: Lab, tunnels: list[Tunnel], attach: bool, state: dict[str, Any]) -> None:
    """Send both sides' sets of every pair (and attach them first): the SP side first, so
    a replica's address is never claimed by a proxy on both sides at once. `state` read
    under the daemon lock. One connection for all: a relearn of a hundred pairs is four
    hundred requests."""
    plan = lab.plan()
    requests: list[dict[str, Any]] = []
    for tunnel in tunnels:
        sets = proxy_sets(plan, state, tunnel)
        for side in ("sp", "tenant"):
            node_name = tunnel.sp_nea if side == "sp" else tunnel.tenant_nea
            if attach:
                iface = tunnel.sp_cloud_port if side == "sp" else tunnel.tenant_lan_port
                # the tenant side announces its replicas, so neighbours switch to its MAC
                # at once instead of when their entry ages out
                requests.append({"op": "attach", "appliance": node_name,
                                 "netns": plan.nodes[node_name].netns, "iface": iface,
                                 "gratuitous_count": 0 if side == "sp" else 3})
            spec = sets[side]
            requests.append({"op": "set", "appliance": node_name,
                             "prefixes": list(spec.prefixes), "addresses": list(spec.addresses),
                             "except": list(spec.exceptions)})
    if requests:
        _daemon_client(lab).pipeline(requests)


def attach_pairs(lab: Lab, tunnels: list[Tunnel]) -> None:
    """The pairs' appliances answer ARP from now on, each for its set."""
    ensure_proxy_daemon(lab)
    with _daemon_lock(lab):
        _push_all(lab, tunnels, attach=True, state=lab.dir.read())


def attach_pair(lab: Lab, tunnel: Tunnel) -> None:
    attach_pairs(lab, [tunnel])


def detach_pairs(lab: Lab, tunnels: list[Tunnel]) -> None:
    """The pairs' appliances answer no ARP any more (nothing to do if the daemon is gone:
    the next start learns only powered-on pairs)."""
    daemon = _daemon_client(lab)
    with _daemon_lock(lab):
        for tunnel in tunnels:
            for node_name in (tunnel.tenant_nea, tunnel.sp_nea):
                with contextlib.suppress(DaemonNotRunning):
                    daemon.for_appliance(node_name).detach()


# ----- the pair ----------------------------------------------------------------------


def nea_up(lab: Lab, key: str, progress: Progress = _quiet) -> float:
    """Power the NEA pair of network `key` on; return the seconds it took. Idempotent."""
    return power_on(lab, [key], progress)


def power_on(lab: Lab, keys: list[str], progress: Progress = _quiet) -> float:
    """Power the NEA pairs of networks `keys` on together (those already on stay as they
    are); return the seconds it took. On any failure every pair it started goes off."""
    lab.require_up()
    state = lab.dir.read()
    tunnels = [t for t in dict.fromkeys(tunnel_of(lab, key) for key in keys)
               if state.get("neas", {}).get(t.key, {}).get("power") != "on"]
    if not tunnels:
        return 0.0
    check_room_for(lab, [t.key for t in tunnels])
    started = time.monotonic()
    backend = backend_for(lab)
    for tunnel in tunnels:
        lab.dir.journal("nea-up-started", network=tunnel.key, backend=backend.name)
    # a pair recorded off may still have a side up (an nea up killed half-way): settle it
    leftover = [t for t in tunnels
                if _records(state, f"wireguard:{t.tenant_nea}", f"wireguard:{t.sp_nea}")]
    if leftover:
        power_off_pairs(lab, leftover, quiet=True)
    try:
        start_sides(lab, tunnels, "sp")
        start_sides(lab, tunnels, "tenant")
        for tunnel in tunnels:
            lab.dir.journal("nea-up:tunnel", network=tunnel.key)
        with lab.dir.update() as state:
            for tunnel in tunnels:
                state.setdefault("neas", {})[tunnel.key] = {"power": "on",
                                                            "backend": backend.name}
        attach_pairs(lab, tunnels)
    except BaseException:
        power_off_pairs(lab, tunnels)
        raise
    elapsed = time.monotonic() - started
    for tunnel in tunnels:
        lab.dir.journal("nea-up", network=tunnel.key, seconds=round(elapsed, 4))
        progress(f"NEA pair {tunnel.key} on ({backend.name} WireGuard) in {elapsed:.2f} s")
    return elapsed


def nea_down(lab: Lab, key: str, progress: Progress = _quiet) -> None:
    """Power the NEA pair of network `key` off: daemons, tunnel, routes. Idempotent."""
    power_off(lab, [key], progress)


def power_off(lab: Lab, keys: list[str], progress: Progress = _quiet) -> None:
    """Power the NEA pairs of networks `keys` off together. Idempotent."""
    lab.require_up()
    tunnels = list(dict.fromkeys(tunnel_of(lab, key) for key in keys))
    power_off_pairs(lab, tunnels)
    for tunnel in tunnels:
        lab.dir.journal("nea-down", network=tunnel.key)
        progress(f"NEA pair {tunnel.key} off")


def power_off_pairs(lab: Lab, tunnels: list[Tunnel], quiet: bool = False) -> None:
    """Appliances detached, tunnels stopped (tenant sides, then SP sides), the SP's
    host routes removed; also what a pair cut short half-way left. `quiet`: no journal
    step (settling before a start)."""
    with lab.dir.update() as state:
        for tunnel in tunnels:
            state.setdefault("neas", {})[tunnel.key] = {"power": "off"}
    detach_pairs(lab, tunnels)
    if not quiet:
        for tunnel in tunnels:
            lab.dir.journal("nea-down:proxies", network=tunnel.key)
    stop_sides(lab, tunnels, "tenant")
    stop_sides(lab, tunnels, "sp")
    plan = lab.plan()
    with Netlink() as nl:
        for tunnel in tunnels:
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
    ensure_proxy_daemon(lab)
    with _daemon_lock(lab):
        _push(lab, tunnel, attach=False)
    return {"tenant": at_sp, "sp_removed": at_sp}


def reconnect(lab: Lab, tenant: str, progress: Progress = _quiet) -> list[str]:
    """Restart the tunnel on both NEAs of every powered-on network of `tenant`."""
    lab.require_up()
    plan = lab.plan()
    tunnels = [t for t in plan.tunnels.values() if t.tenant == tenant]
    if not tunnels:
        if tenant not in {t.tenant for t in plan.tunnels.values()} | {
                n.tenant for n in plan.nodes.values()}:
            raise UnknownNode(f"unknown tenant {tenant!r} in lab {lab.name}")
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
