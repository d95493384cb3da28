"""Power of VMs and replicas: NIC state, routes and the HTTP workload on the right disk."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from netlab import storage
from netlab.lab import Lab
from netlab.net import links
from netlab.net.namespaces import Netlink
from netlab.plan import Node
from netlab.processes import ProcessRecord, stop_process
from netlab.run import in_netns, require_tool
from netlab.workloads import start_http_server


def _set_power(lab: Lab, node: Node, power: str) -> None:
    with lab.dir.update() as state:
        state.setdefault("nodes", {})[node.name] = {"power": power}


def _stop_workload(lab: Lab, node: Node, force: bool = False) -> None:
    name = f"httpd:{node.name}"
    if name not in lab.dir.read().get("processes", {}):
        return  # the usual case at power-on: no state write
    with lab.dir.update() as state:
        data = state.get("processes", {}).pop(name, None)
    if data:
        stop_process(ProcessRecord.from_dict(data), timeout=0.0 if force else 2.0)


def _start_workload(lab: Lab, node: Node, root: Path) -> None:
    # one that is recorded already (a power-on interrupted after it) would hold port 80
    _stop_workload(lab, node, force=True)
    rec = start_http_server(f"httpd:{node.name}", node.netns, root, lab.dir.sub("logs"))
    with lab.dir.update() as state:
        state.setdefault("processes", {})[rec.name] = rec.to_dict() | {"supervised": True}


def stop_workload(lab: Lab, node: Node) -> None:
    """The first half of a power-off (the workload), journaled apart by `vm stop`."""
    _stop_workload(lab, node)


def _link(node: Node, up: bool) -> None:
    with Netlink() as nl:
        sock = nl[node.netns]
        links.set_link_state(sock, node.port.name, up)
        if up:
            for route in node.routes:
                links.add_route(sock, route.dst, route.via, route.dev, route.table)


def power_on(lab: Lab, node: Node, root: Path) -> None:
    _link(node, True)
    _start_workload(lab, node, root)
    _set_power(lab, node, "on")


def power_off(lab: Lab, node: Node, power: str = "off", force: bool = False) -> None:
    """Stop the workload and take the NIC down; `power` "failed" records a disaster."""
    _stop_workload(lab, node, force=force)
    _link(node, False)
    _set_power(lab, node, power)


def start_vm(lab: Lab, vm: Node) -> None:
    power_on(lab, vm, lab.disk_dir(vm.name))
    announce(vm)


def announce(*vms: Node) -> None:
    """Gratuitous ARP from each VM, all at once, so neighbours switch to its MAC now."""
    arping = require_tool("arping")
    running = [
        subprocess.Popen(
            in_netns(vm.netns, [arping, "-U", "-c", "2", "-w", "1", "-I", vm.port.name,
                                vm.address]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for vm in vms
        if vm.address
    ]
    for proc in running:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_replicas(lab: Lab, replicas: list[Node]) -> None:
    """Power several replicas on at once, as start_replica does one: links and routes in
    one netlink pass (main thread), the HTTP servers started together, one state write.

    A failover of a hundred VMs otherwise rewrites the (large) state file four times
    per VM."""
    with Netlink() as nl:
        for node in replicas:
            sock = nl[node.netns]
            links.set_link_state(sock, node.port.name, True)
            for route in node.routes:
                links.add_route(sock, route.dst, route.via, route.dev, route.table)
    names = {f"httpd:{node.name}" for node in replicas}
    with lab.dir.update() as state:  # any recorded already would hold port 80
        stale = [state.get("processes", {}).pop(n) for n in list(state.get("processes", {}))
                 if n in names]
    for data in stale:
        stop_process(ProcessRecord.from_dict(data), timeout=0.0)
    logs = lab.dir.sub("logs")

    def start(node: Node) -> ProcessRecord:
        root = replica_root(lab, node.name.removesuffix("@sp"))
        return start_http_server(f"httpd:{node.name}", node.netns, root, logs)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(replicas)))) as pool:
        records = list(pool.map(start, replicas))
    with lab.dir.update() as state:
        state.setdefault("processes", {}).update(
            {rec.name: rec.to_dict() | {"supervised": True} for rec in records})
        state.setdefault("nodes", {}).update({node.name: {"power": "on"} for node in replicas})


def power_off_many(lab: Lab, nodes: list[Node], force: bool = False) -> None:
    """Power several nodes off at once, as power_off does one: one state write for all,
    the workloads stopped together, the links down in one netlink pass."""
    names = {f"httpd:{node.name}" for node in nodes}
    with lab.dir.update() as state:
        records = [state.get("processes", {}).pop(n) for n in list(state.get("processes", {}))
                   if n in names]
    timeout = 0.0 if force else 2.0
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(records)))) as pool:
        list(pool.map(lambda data: stop_process(ProcessRecord.from_dict(data), timeout=timeout),
                      records))
    with Netlink() as nl:
        for node in nodes:
            links.set_link_state(nl[node.netns], node.port.name, False)
    with lab.dir.update() as state:
        state.setdefault("nodes", {}).update({node.name: {"power": "off"} for node in nodes})


def replica_root(lab: Lab, vm_name: str) -> Path:
    return storage.replica_serving_path(lab.replica_dir(vm_name))


def start_replica(lab: Lab, replica: Node) -> None:
    power_on(lab, replica, replica_root(lab, replica.name.removesuffix("@sp")))

