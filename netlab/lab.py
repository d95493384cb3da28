"""A whole lab: bring-up (apply the plan, roll back on error), teardown, cleanup, status.

Everything a lab creates is named ``<lab>-...`` (see netlab.plan) or lives in its
state directory, and every process it starts is recorded by pid, so `down`
removes exactly what the lab made and `cleanup` finds all of it even with the
state lost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netlab import limits, storage
from netlab.errors import LabError, NetlabError, NothingToDo, NotRoot, UnknownLab
from netlab.lab_daemons import (
    PROXY_ARP,
    PROXY_ARP_SOCKET,
    SUPERVISOR,
    find_proxy_arp,
    find_supervisors,
    start_proxy_arp,
    start_supervisor,
)
from netlab.net import links
from netlab.net.namespaces import (
    NETNS_DIR,
    Netlink,
    delete_namespace,
    inside,
    list_namespaces,
    namespace_exists,
    pids_in_namespaces,
    write_sysctl,
)
from netlab.net.nft import start_rulesets
from netlab.net.nic import tune_nea_links
from netlab.plan import NFT_TABLE, LabPlan, Node, NodeKind, Port, build_plan, lab_prefix
from netlab.processes import (
    ProcessRecord,
    is_alive,
    record_of,
    stop_processes,
)
from netlab.proxyarp.client import ProxyArpClient
from netlab.receiver import start_receiver
from netlab.replica_state import RUNNING_AT_SP
from netlab.run import require_tool
from netlab.state import LabDir
from netlab.topology import Topology, load_topology, parse_topology
from netlab.topology.loader import default_topology_text
from netlab.wan import apply_topology_wan
from netlab.workloads import lease_address, start_dhcp_server, start_http_server

Progress = Callable[[str], None]
WIREGUARD_RUN_DIR = Path("/var/run/wireguard")
# Control sockets live here, not in the state directory: a Unix socket path is
# limited to 108 bytes and NETLAB_STATE_DIR can be as long as a user likes.
SOCKET_RUN_DIR = Path("/run/netlab")
BRIDGE_NETFILTER_SYSCTLS = Path("/proc/sys/net/bridge")  # present while br_netfilter is loaded

REPLICA_NORMAL = "Normal"
LOOPBACK_INDEX = 1  # lo is always the first link of a namespace


def _quiet(_: str) -> None:
    pass


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRoot(
            "netlab creates namespaces, links and mounts and must run as root "
            "(try: sudo netlab ...)"
        )


@dataclass
class CleanupReport:
    processes: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    state_removed: bool = False

    def empty(self) -> bool:
        return not (self.processes or self.namespaces or self.mounts or self.sockets)


def namespace_sysctls(node: Node | None) -> dict[str, str | int]:
    """Sysctls of a new namespace, set before any link exists in it."""
    sysctls: dict[str, str | int] = {
        # IPv4 only: no IPv6 link-local chatter (router solicitations, DAD) in captures
        "net.ipv6.conf.all.disable_ipv6": 1,
        "net.ipv6.conf.default.disable_ipv6": 1,
    }
    if node is not None and node.forwarding:
        sysctls["net.ipv4.ip_forward"] = 1
    if node is not None and node.kind in (NodeKind.TENANT_NEA, NodeKind.SP_NEA):
        # Replies to proxied addresses leave by another interface than the request
        # came in on; strict reverse-path filtering would drop them.
        sysctls["net.ipv4.conf.all.rp_filter"] = 0
        sysctls["net.ipv4.conf.default.rp_filter"] = 0
        sysctls["net.ipv4.conf.all.send_redirects"] = 0
        sysctls["net.ipv4.conf.default.send_redirects"] = 0
    return sysctls


def segment_sysctls() -> dict[str, str | int]:
    """Sysctls of a LAN segment's namespace: a plain L2 switch.

    Where br_netfilter is loaded (Docker loads it), every bridged frame would
    also walk the IP netfilter hooks: a cost on each hop of the tunnel path and
    nothing a switch does.
    """
    sysctls = namespace_sysctls(None)
    if BRIDGE_NETFILTER_SYSCTLS.exists():
        for family in ("iptables", "ip6tables", "arptables"):
            sysctls[f"net.bridge.bridge-nf-call-{family}"] = 0
    return sysctls


FIRST_FREE_INDEX = 2  # in a fresh namespace, lo is 1
BRIDGE_INDEX = FIRST_FREE_INDEX


def _plumb(plan: LabPlan) -> None:
    """Namespaces, bridges, veths, addresses and routes of the plan, in fresh namespaces.

    One netlink batch per namespace (netlab.net.batch), interface indexes fixed
    by the plan's order: a node's ports from 2, a segment's bridge 2 and its ports
    from 3. Nodes first, so that each segment can make its veths straight into them.
    """
    # here, not at the top: pyroute2's message classes cost every other command ~0.2 s
    # of CPU at start (netlab.net.pyroute)
    from netlab.net.batch import Batch

    sockets: dict[str, socket.socket] = {}
    try:
        for node in plan.nodes.values():
            sockets[node.netns] = _create_namespace(node.netns, namespace_sysctls(node))
        for seg in plan.segments.values():
            sockets[seg.netns] = _create_namespace(seg.netns, segment_sysctls())
        node_index = {
            (node.name, port.name): FIRST_FREE_INDEX + i
            for node in plan.nodes.values() for i, port in enumerate(node.ports)
        }
        ports_of: dict[str, list[tuple[Node, Port]]] = {name: [] for name in plan.segments}
        for node in plan.nodes.values():
            for port in node.ports:
                ports_of[port.segment].append((node, port))
        for seg in plan.segments.values():
            segment = Batch(sockets[seg.netns], seg.netns)
            segment.add_bridge(seg.bridge, BRIDGE_INDEX)
            with contextlib.ExitStack() as fds:
                for i, (node, port) in enumerate(ports_of[seg.name]):
                    fd = os.open(NETNS_DIR / node.netns, os.O_RDONLY)
                    fds.callback(os.close, fd)
                    segment.add_veth(port.bridge_port, BRIDGE_INDEX + 1 + i, BRIDGE_INDEX,
                                     port.name, node_index[node.name, port.name], fd)
                segment.send()
        for node in plan.nodes.values():
            batch = Batch(sockets[node.netns], node.netns)
            batch.link_up(LOOPBACK_INDEX, "lo")
            for port in node.ports:
                index = node_index[node.name, port.name]
                if node.link_up_at_start:
                    batch.link_up(index, port.name)
                for cidr in port.addresses:
                    batch.add_address(index, cidr, port.name, port.no_prefix_route)
            if node.link_up_at_start:
                for route in node.routes:
                    oif = node_index[node.name, route.dev] if route.dev else None
                    batch.add_route(route.dst, route.via, oif, route.table, route.dev or "")
            batch.send()
    finally:
        for sock in sockets.values():
            sock.close()  # a held socket would keep a deleted namespace alive


def _create_namespace(name: str, sysctls: dict[str, str | int]) -> socket.socket:
    from netlab.net.batch import open_socket  # see _plumb

    with inside(name, create=True):
        for key, value in sysctls.items():
            write_sysctl(key, value)
        return open_socket()


class Lab:
    """One lab on this machine, by name."""

    def __init__(self, name: str, state_root: Path | None = None) -> None:
        lab_prefix(name)  # validates the name
        self.name = name
        self.dir = LabDir.of(name, state_root)
        self._plan: LabPlan | None = None

    # ----- what the lab is -------------------------------------------------

    @property
    def prefix(self) -> str:
        return f"{self.name}-"

    def is_up(self) -> bool:
        return self.dir.read().get("status") == "up"

    def require_up(self) -> dict[str, Any]:
        state = self.dir.read()
        if state.get("status") != "up":
            if state.get("status"):
                raise LabError(
                    f"lab {self.name} is {state['status']} (interrupted?); run 'netlab cleanup "
                    f"--lab {self.name}' then 'netlab up --lab {self.name}'"
                )
            raise UnknownLab(f"lab {self.name} is not up; run 'netlab up --lab {self.name}' first")
        return state

    def topology(self) -> Topology:
        try:
            text = self.dir.topology_file.read_text()
        except FileNotFoundError:
            raise UnknownLab(
                f"lab {self.name} is not up; run 'netlab up --lab {self.name}'"
            ) from None
        return parse_topology(text, source=str(self.dir.topology_file))

    def plan(self) -> LabPlan:
        if self._plan is None:
            self._plan = build_plan(self.name, self.topology())
        return self._plan

    @property
    def socket_dir(self) -> Path:
        """Root-only directory of the lab's control sockets (short paths, see SOCKET_RUN_DIR)."""
        path = SOCKET_RUN_DIR / self.name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
        return path

    @property
    def proxy_arp_socket(self) -> Path:
        """Control socket of the lab's one proxy-ARP process."""
        return self.socket_dir / PROXY_ARP_SOCKET

    def disk_dir(self, vm_node: str) -> Path:
        tenant, vm = vm_node.split("/", 1)
        return self.dir.root / "disks" / tenant / vm

    def replica_dir(self, vm_node: str) -> Path:
        tenant, vm = vm_node.split("/", 1)
        return self.dir.root / "sp" / tenant / vm

    # ----- up --------------------------------------------------------------

    def up(self, topology_path: str | Path | None = None, progress: Progress = _quiet,
           raise_limits: bool = False) -> str:
        """Bring the lab up; return "created" or "already up". Roll back on any failure.

        With `raise_limits` (the user's consent), host limits that would keep the lab's
        NEA pairs from all running at once (netlab.limits) are raised, the old values
        recorded and put back by `down`."""
        require_root()
        for tool in ("nsenter", "nft", "busybox"):
            require_tool(tool)
        topology = load_topology(topology_path)  # refuses unreadable files with one line
        text = Path(topology_path).read_text() if topology_path else default_topology_text()
        plan = build_plan(self.name, topology)
        if plan.dhcp_servers:
            require_tool("dnsmasq")
        backend = "kernel"
        if plan.tunnels:
            from netlab import wireguard

            # NETLAB_WG=kernel on a kernel without the module fails here, before anything exists
            backend = wireguard.select_backend().name

        with self.dir.locked():
            state = self.dir.read()
            status = state.get("status")
            if status == "up":
                if self.dir.topology_file.read_text() != text:
                    raise LabError(
                        f"lab {self.name} is up with another topology; run 'netlab down "
                        f"--lab {self.name}' first, or use another --lab name"
                    )
                missing = [ns for ns in plan.namespaces if not namespace_exists(ns)]
                if missing:
                    raise LabError(
                        f"lab {self.name} is up but {len(missing)} namespaces are gone "
                        f"(e.g. {missing[0]}); run 'netlab down' and 'netlab up' again"
                    )
                return "already up"
            if status is not None:
                progress(f"lab {self.name} was left {status} by an interrupted command; cleanup")
            elif list_namespaces(self.prefix):
                progress(f"leftovers of lab {self.name} found without state: cleaning up")
        if status is not None or list_namespaces(self.prefix):
            self.cleanup(progress)

        self.dir.create()
        self.dir.topology_file.write_text(text)
        self.dir.write({"lab": self.name, "status": "bringing-up", "since": time.time()})
        self.dir.journal("up-started", lab=self.name)
        self._plan = plan
        try:
            if raise_limits and plan.tunnels and backend != "kernel":
                self._raise_limits(len(plan.tunnels), progress)
            self._apply(plan, progress)
        except BaseException as exc:
            progress(f"bring-up failed ({exc}); removing what was created")
            self.cleanup(_quiet)
            raise
        self.dir.journal("up-finished", lab=self.name)
        return "created"

    def _raise_limits(self, pairs: int, progress: Progress) -> None:
        changed = limits.raise_for(pairs)
        with self.dir.update() as state:
            state["limits_raised"] = changed
        for key, values in changed.items():
            progress(f"{key} raised from {values['old']} to {values['new']} for {pairs} NEA "
                     "pairs (put back by 'netlab down')")
            self.dir.journal("limit-raised", sysctl=key, **values)

    def _apply(self, plan: LabPlan, progress: Progress) -> None:
        started = time.monotonic()
        vms = plan.vms()
        replicated = [vm for vm in vms if plan.replica_of(vm.name) is not None]
        # Disk work (copies, fsyncs) runs in threads while this thread does netlink,
        # which must stay on the main thread (netlab.net.namespaces).
        with ThreadPoolExecutor(max_workers=4) as pool:
            seeds = [pool.submit(storage.seed_disk, self.disk_dir(vm.name), vm.tenant or "",
                                 vm.vm or "") for vm in vms]
            points = {vm.name: pool.submit(self._first_restore_point, plan, vm, seed)
                      for vm, seed in zip(vms, seeds, strict=True) if vm in replicated}
            _plumb(plan)
            self.dir.journal("up:plumbed", namespaces=len(plan.namespaces))
            links_tuned = tune_nea_links(plan.nea_links)
            progress(f"{len(plan.namespaces)} namespaces plumbed in "
                     f"{time.monotonic() - started:.2f} s")
            # Waited for before the DHCP lease and before the lab is marked up: no traffic
            # but the bring-up's own crosses the lab in between.
            rulesets_applied = start_rulesets(plan.nft_rulesets, NFT_TABLE)
            logs, run_dir = self.dir.sub("logs"), self.dir.sub("run", 0o700)
            records: list[ProcessRecord] = []
            try:
                for server in plan.dhcp_servers:
                    name = f"dnsmasq:{server.tenant}/{server.network}"
                    records.append(start_dhcp_server(name, server, run_dir, logs))
                for vm, seed in zip(vms, seeds, strict=True):
                    seed.result()
                    records.append(
                        start_http_server(f"httpd:{vm.name}", vm.netns, self.disk_dir(vm.name),
                                          logs))
            finally:
                # One write for all: every process of the lab is found by namespace
                # anyway should netlab die before this line.
                with self.dir.update() as state:
                    state.setdefault("processes", {}).update(
                        {r.name: r.to_dict() | {"supervised": True} for r in records})
            rulesets_applied()
            # the provider's replication receiver, and the WAN profiles of the topology
            records.append(start_receiver(plan, self.dir.root, run_dir, logs))
            with self.dir.update() as state:
                state["processes"][records[-1].name] = records[-1].to_dict() | {"supervised": True}
                state["wan"] = apply_topology_wan(plan)
            for warning in links_tuned():
                progress(f"warning: {warning}")
                self.dir.journal("warning", message=warning)
            leases = {vm.name: lease_address(vm.netns, vm.port.name, run_dir)
                      for vm in vms if vm.dhcp}
            replicas = {name: {"state": REPLICA_NORMAL, "replication": "active",
                               "first_restore_point": job.result()}
                        for name, job in points.items()}
        self.dir.journal("replicated", vms=sorted(replicas),
                         message="first restore point of every static VM")
        progress(f"workloads started in {time.monotonic() - started:.2f} s")
        with self.dir.update() as state:
            state.update(
                {
                    "status": "up",
                    "since": time.time(),
                    "nodes": {
                        n.name: {"power": "on" if n.link_up_at_start else "off"}
                        for n in plan.nodes.values()
                        if n.kind not in (NodeKind.TENANT_NEA, NodeKind.SP_NEA)
                    },
                    "neas": {key: {"power": "off"} for key in plan.tunnels},
                    "replicas": replicas,
                    "leases": leases,
                }
            )
        if plan.tunnels:
            self.start_proxy_arp()
        self.ensure_supervisor()

    def _first_restore_point(self, plan: LabPlan, vm: Node, seeded: Future) -> int:
        seeded.result()
        retention = plan.topology.tenants[vm.tenant or ""].replication.retention
        return storage.replicate(self.disk_dir(vm.name), self.replica_dir(vm.name), retention).id

    def ensure_supervisor(self) -> None:
        """Start the lab's supervisor unless it runs (it restarts daemons that die)."""
        with self.dir.update() as state:
            data = state.get("processes", {}).get(SUPERVISOR)
            if data and is_alive(ProcessRecord.from_dict(data)):
                return
            rec = start_supervisor(self.name, self.dir.sub("logs"), self.dir.root.parent)
            state.setdefault("processes", {})[SUPERVISOR] = rec.to_dict() | {"supervised": False}

    def start_proxy_arp(self) -> ProcessRecord:
        """Start the lab's proxy-ARP process, record it (supervised) and wait until it
        answers. It serves no appliance yet: powering an NEA pair on attaches its two."""
        rec = start_proxy_arp(self.proxy_arp_socket, self.dir.sub("logs"))
        with self.dir.update() as state:
            state.setdefault("processes", {})[PROXY_ARP] = rec.to_dict() | {"supervised": True}
        try:
            ProxyArpClient(str(self.proxy_arp_socket)).wait_ready(timeout=10, process=rec)
        except NetlabError as exc:
            raise LabError(f"{exc} (log: {self.dir.sub('logs') / 'proxyarp.log'})") from None
        return rec

    # ----- down and cleanup -----------------------------------------------

    def down(self, progress: Progress = _quiet) -> CleanupReport:
        require_root()
        if not self.dir.exists() and not list_namespaces(self.prefix):
            raise NothingToDo(f"lab {self.name} is not up (nothing to take down)")
        return self.cleanup(progress)

    def cleanup(self, progress: Progress = _quiet) -> CleanupReport:
        """Remove every leftover of this lab, from its state if there is one, else by name."""
        require_root()
        report = CleanupReport()
        state = self.dir.read()
        recorded = [ProcessRecord.from_dict(r) for r in state.get("processes", {}).values()]
        found = [*find_supervisors(self.name),
                 *find_proxy_arp(SOCKET_RUN_DIR / self.name / PROXY_ARP_SOCKET)]
        by_pid = {r.pid: r for r in [*found, *recorded]}
        records = list(by_pid.values())
        # The supervisor first, so that it restarts nothing while the rest goes.
        supervisors = [r for r in records if r.name == SUPERVISOR]
        others = [r for r in records if r.name != SUPERVISOR]
        for group in (supervisors, others):
            for rec in stop_processes(group):
                report.processes.append(f"{rec.name} (pid {rec.pid})")
        self._cleanup_step("cleanup:processes")
        namespaces = list_namespaces(self.prefix)
        # Processes inside the lab's namespaces that the state no longer knows of
        # (state lost in a crash): found by namespace, so nothing else is touched.
        strays = [rec for pid, netns in pids_in_namespaces(namespaces).items()
                  if (rec := record_of(pid, f"process in {netns}")) is not None]
        for rec in stop_processes(strays):
            report.processes.append(f"pid {rec.pid} in {rec.name.removeprefix('process in ')}")
        restored = limits.restore(state.get("limits_raised", {}))
        if restored:
            progress(f"put back {', '.join(restored)} as they were before 'up --raise-limits'")
        for sock in sorted(WIREGUARD_RUN_DIR.glob(f"{self.prefix}w*.sock")):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
            report.sockets.append(str(sock))
        sockets = SOCKET_RUN_DIR / self.name
        if sockets.exists():
            report.sockets += [str(p) for p in sockets.iterdir()]
            shutil.rmtree(sockets, ignore_errors=True)
        self._cleanup_step("cleanup:sockets")
        if self.dir.root.exists():
            report.mounts = storage.cleanup_mounts_under(self.dir.root)
        self._cleanup_step("cleanup:mounts")
        for netns in namespaces:
            if delete_namespace(netns):
                report.namespaces.append(netns)
        self._cleanup_step("cleanup:namespaces")
        if self.dir.root.exists():
            shutil.rmtree(self.dir.root, ignore_errors=True)
            report.state_removed = True
        progress(
            f"removed {len(report.namespaces)} namespaces, {len(report.processes)} processes, "
            f"{len(report.mounts)} mounts, {len(report.sockets)} sockets"
        )
        return report

    def _cleanup_step(self, event: str) -> None:
        # journaled only into a state directory that is still there: a cleanup by name
        # must not create one
        if self.dir.root.exists():
            self.dir.journal(event, lab=self.name)

    # ----- status ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.require_up()
        plan = self.plan()
        nodes = []
        with Netlink() as nl:
            for node in plan.nodes.values():
                try:
                    ifaces = links.interfaces(nl[node.netns])
                except LabError:
                    ifaces = []
                nodes.append(
                    {
                        "name": node.name,
                        "kind": str(node.kind),
                        "namespace": node.netns,
                        "power": self.node_power(state, node),
                        "interfaces": ifaces,
                    }
                )
        vms = []
        for vm in plan.vms():
            replica = state.get("replicas", {}).get(vm.name)
            address = vm.address or state.get("leases", {}).get(vm.name)
            vms.append(
                {
                    "name": vm.name,
                    "address": address,
                    "dhcp": vm.dhcp,
                    "power": state.get("nodes", {}).get(vm.name, {}).get("power", "off"),
                    "replica": f"{vm.name}@sp" if replica is not None else None,
                    "replica_state": replica["state"] if replica else None,
                    "replication": replica.get("replication") if replica else None,
                    "restore_points": len(storage.list_restore_points(self.replica_dir(vm.name)))
                    if replica
                    else 0,
                    "rpo": self._rpo_status(plan, state, vm) if replica else None,
                }
            )
        processes = {
            name: {"pid": rec["pid"], "alive": is_alive(ProcessRecord.from_dict(rec))}
            for name, rec in state.get("processes", {}).items()
        }
        return {
            "lab": self.name,
            "status": state["status"],
            "state_dir": str(self.dir.root),
            "nodes": nodes,
            "vms": vms,
            "neas": state.get("neas", {}),
            "wireguard": self.wireguard_capacity(state) if plan.tunnels else None,
            "processes": processes,
            # seen on the wire by validate or failover (netlab.orchestrator.conflicts)
            "conflicts": [c for seen in state.get("conflicts", {}).values() for c in seen],
            "bubbles": {name: {k: b.get(k) for k in ("tenant", "status", "masquerade")}
                        for name, b in state.get("bubbles", {}).items()},
            "warnings": [
                f"IP conflict: {vm['name']} is powered on while its replica runs at the SP; "
                f"two machines answer ARP for {vm['address']} (disconnect the source: "
                f"'netlab vm fail {vm['name']}')"
                for vm in vms
                if vm["power"] == "on"
                and vm["replica_state"] in RUNNING_AT_SP
            ],
        }

    def wireguard_capacity(self, state: dict[str, Any]) -> dict[str, Any]:
        """Which WireGuard backend runs, how many NEA pairs are on and how many more fit
        on this host (netlab.limits; pairs_left None: no ceiling)."""
        from netlab import wireguard

        try:
            backend = wireguard.select_backend().name
        except NetlabError as exc:  # status still shows the rest of the lab
            return {"backend": None, "error": str(exc), "pairs_left": 0, "binding": None,
                    "limits": [], "pairs_on": 0}
        # the host's inotify holders as counted within the last seconds, and the lab's
        # own wireguard-go started since (a /proc scan per call cost 0.1-0.4 s)
        wireguard_go = [p["pid"] for name, p in state.get("processes", {}).items()
                        if name.startswith("wireguard:")]
        info = limits.capacity(backend, max_age=limits.STATUS_COUNT_AGE, recorded=wireguard_go)
        info["pairs_on"] = sum(1 for n in state.get("neas", {}).values()
                               if n.get("power") == "on")
        return info
    def _rpo_status(self, plan: LabPlan, state: dict[str, Any], vm: Node) -> dict[str, Any]:
        """Age of the newest restore point (the RPO if the VM failed now), the last job."""
        points = storage.list_restore_points(self.replica_dir(vm.name))
        age = time.time() - points[-1].created.timestamp() if points else None
        tenant = plan.topology.tenants[vm.tenant or ""]
        own = tenant.vms[vm.vm or ""].replication
        goal = (own.rpo_goal if own and own.rpo_goal else None) or tenant.replication.rpo_goal
        interval = (own.interval if own and own.interval else None) or tenant.replication.interval
        return {"newest_point": points[-1].id if points else None,
                "age_seconds": round(age, 1) if age is not None else None,
                "goal_seconds": goal, "interval_seconds": interval,
                "over_goal": goal is not None and (age is None or age > goal),
                "last_job": state.get("replication_jobs", {}).get(vm.name)}

    def node_power(self, state: dict[str, Any], node: Node) -> str:
        if node.kind in (NodeKind.TENANT_NEA, NodeKind.SP_NEA):
            key = f"{node.tenant}/{node.network}"
            return state.get("neas", {}).get(key, {}).get("power", "off")
        return state.get("nodes", {}).get(node.name, {}).get("power", "on")
