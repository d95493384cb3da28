"""What the lab's state says runs where right now: the L2 segments probes can see.

Pure functions of (plan, state): the checks ask this module what must hold, so
that they follow every state the lab can be in.

* **At home**, each tenant network is one segment: its powered-on VMs and its
  edge (the gateway) when the edge is on.
* **Partial failover** (a replica in Failover, Ready to switch or Permanent
  failover, its NEA pair on) stretches the segment: the replicas at the SP
  answer at their production addresses through the tunnel, the tenant NEA
  proxying ARP for them; the edge stays the gateway.
* **A cloud failover plan** (the tenant's plan running) splits it: the site is
  lost, its NEA pair is off, and the cloud network is a segment of its own,
  where the replicas run with the SP NEA holding the gateway address. The
  site's VMs, if still on, are a segment without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netlab.orchestrator.states import RUNNING_AT_SP, ReplicaState
from netlab.plan import LabPlan, Node, NodeKind, Tunnel

SITE = "site"  # production LAN (stretched to the SP while its NEA pair is on)
CLOUD = "cloud"  # the cloud network of a running plan, on its own
PLAN_RUNNING = "running"


@dataclass(frozen=True)
class Endpoint:
    """A node that answers at an address on a tenant network right now."""

    node: Node
    address: str
    static: bool

    @property
    def name(self) -> str:
        return self.node.name


@dataclass
class Segment:
    """One L2 domain as a probe sees it: who answers there, and who is the gateway."""

    tenant: str
    network: str
    where: str  # SITE or CLOUD
    members: list[Endpoint] = field(default_factory=list)
    gateway: Endpoint | None = None  # the powered-on holder of the gateway address
    tunnel: Tunnel | None = None
    stretched: bool = False  # its NEA pair is on: replicas at the SP are members

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.network}"

    @property
    def label(self) -> str:
        return self.key if self.where == SITE else f"the cloud network {self.key}"


def power(state: dict[str, Any], name: str, default: str = "on") -> str:
    return str(state.get("nodes", {}).get(name, {}).get("power", default))


def replica_state(state: dict[str, Any], vm: str) -> str | None:
    return state.get("replicas", {}).get(vm, {}).get("state")


def pair_on(state: dict[str, Any], key: str) -> bool:
    return state.get("neas", {}).get(key, {}).get("power") == "on"


def running_plan(plan: LabPlan, state: dict[str, Any], tenant: str) -> bool:
    record = state.get("plans", {}).get(tenant) or {}
    return record.get("status") == PLAN_RUNNING and tenant in plan.topology.failover_plans


def plan_networks(plan: LabPlan, state: dict[str, Any], tenant: str) -> set[str]:
    """The networks a running plan of `tenant` moved to the SP (none when it does not run)."""
    if not running_plan(plan, state, tenant):
        return set()
    fp = plan.topology.failover_plans[tenant]
    vms = plan.topology.tenants[tenant].vms
    return {vms[s.vm].network for s in fp.steps if s.vm in vms}


def at_sp(state: dict[str, Any], vm: str) -> bool:
    return replica_state(state, vm) in RUNNING_AT_SP


def role_holder(plan: LabPlan, state: dict[str, Any], node: Node) -> Node:
    """The node that *is* this VM now: its replica when the replica took its place.

    That is when a plan runs its site at the SP, when the replica is production
    (Permanent failover), or when it runs at the SP while the source is not on.
    """
    if node.kind is not NodeKind.VM or not at_sp(state, node.name):
        return node
    replica = plan.replica_of(node.name)
    if replica is None:
        return node
    tenant, network = node.tenant or "", node.network or ""
    if (network in plan_networks(plan, state, tenant)
            or replica_state(state, node.name) == ReplicaState.PERMANENT.value
            or power(state, node.name) != "on"):
        return replica
    return node


def _production(plan: LabPlan, state: dict[str, Any], tenant: str,
                network: str) -> list[Endpoint]:
    found = []
    for node in plan.nodes.values():
        if node.kind is not NodeKind.VM or (node.tenant, node.network) != (tenant, network):
            continue
        if power(state, node.name) != "on":
            continue
        address = node.address or state.get("leases", {}).get(node.name)
        if address:
            found.append(Endpoint(node, address, not node.dhcp))
    return found


def _replicas(plan: LabPlan, state: dict[str, Any], tenant: str, network: str) -> list[Endpoint]:
    return [
        Endpoint(node, node.address, True) for node in plan.nodes.values()
        if node.kind is NodeKind.REPLICA and (node.tenant, node.network) == (tenant, network)
        and node.address and power(state, node.name, "off") == "on"
        and at_sp(state, node.name.removesuffix("@sp"))
    ]


def segments(plan: LabPlan, state: dict[str, Any]) -> list[Segment]:
    """Every segment of every tenant network, as the state says it is now."""
    found = []
    for tenant, t in plan.topology.tenants.items():
        moved = plan_networks(plan, state, tenant)
        edge = plan.nodes.get(f"{tenant}/edge")
        for network, net in t.networks.items():
            tunnel = plan.tunnel_for(tenant, network)
            site = Segment(tenant, network, SITE, _production(plan, state, tenant, network),
                           tunnel=tunnel)
            if edge is not None and power(state, edge.name) == "on":
                site.gateway = Endpoint(edge, str(net.gateway), True)
            replicas = _replicas(plan, state, tenant, network)
            if network in moved and tunnel is not None:
                cloud = Segment(tenant, network, CLOUD, replicas, tunnel=tunnel)
                cloud.gateway = Endpoint(plan.nodes[tunnel.sp_nea], tunnel.gateway_address, True)
                found += [site, cloud]
                continue
            # Replicas at the SP belong to the LAN they extend. With the pair off that is
            # broken, and the checks say so instead of pretending the replicas are away.
            site.members += replicas
            site.stretched = tunnel is not None and pair_on(state, tunnel.key)
            found.append(site)
    return found
