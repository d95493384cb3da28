"""Proof that failed-over replicas answer: each VM's recovery time is its own first reply.

The pings run together (subprocesses in a pool: no netlink), so a failover of a
hundred VMs waits about as long as one for its proof, and a VM that answers late
does not delay the others' measurements.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from netlab.lab import Lab
from netlab.plan import Node
from netlab.run import run

PROBE_POOL = 16  # pings proving replicas at once


def _neighbour(lab: Lab, vm: Node, excluded: set[str], state: dict[str, Any]) -> Node | None:
    """A powered-on production VM on the same network, to prove reachability from."""
    for other in lab.plan().vms():
        if (other.tenant, other.network) != (vm.tenant, vm.network) or other.name in excluded:
            continue
        if other.address and state.get("nodes", {}).get(other.name, {}).get("power") == "on":
            return other
    return None


def _first_reply(node: Node, address: str, timeout: float = 10.0) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = run(["ping", "-c", "1", "-W", "1", address], netns=node.netns, check=False)
        if done.returncode == 0:
            return time.monotonic()
    return None


def prove(lab: Lab, vms: list[Node], started: float) -> dict[str, dict[str, Any]]:
    """Per VM: {"proved_from", "recovery_seconds"} (since `started`), or {"warning"}."""
    plan, state = lab.plan(), lab.dir.read()
    excluded = {v.name for v in vms}
    provers = {vm.name: _neighbour(lab, vm, excluded, state) or plan.nodes[f"{vm.tenant}/edge"]
               for vm in vms}
    with ThreadPoolExecutor(max_workers=max(1, min(PROBE_POOL, len(vms)))) as pool:
        replies = list(pool.map(lambda vm: _first_reply(provers[vm.name], vm.address or ""),
                                vms))
    proofs: dict[str, dict[str, Any]] = {}
    for vm, replied in zip(vms, replies, strict=True):
        prover = provers[vm.name]
        if replied is None:
            proofs[vm.name] = {"warning": f"no reply from {vm.address} seen from {prover.name}"}
        else:
            proofs[vm.name] = {"proved_from": prover.name,
                               "recovery_seconds": round(replied - started, 4)}
    return proofs
