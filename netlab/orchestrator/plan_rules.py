"""What a cloud failover plan does to the network, as nftables rulesets and addresses.

Pure (no root, unit-tested): netlab.orchestrator.cloud_plan applies what these return.
"""

from __future__ import annotations

from dataclasses import dataclass

from netlab.plan import PLAN_MARK, LabPlan, Tunnel, chain
from netlab.topology.model import FailoverPlan

# Priority of the plan tables' filter chains: before the `netlab` tables' chains
# (priority 0) on the same hook, so that the mark is set when those run.
MARK_PRIORITY = -10


def plan_table(tenant: str) -> str:
    # nft identifiers take no '-', tenant names may
    return "netlab_plan_" + tenant.replace("-", "_")


@dataclass(frozen=True)
class Endpoint:
    """One published service: public:public_port at sp/cgw -> core_port at the SP NEA -> VM."""

    vm: str  # node name, e.g. acme/web
    address: str  # the replica's address
    port: int
    public: str
    public_port: int
    protocol: str
    tunnel: str  # key of the VM's network
    core_port: int  # port on the SP NEA's core address


def plan_tunnels(lab_plan: LabPlan, tenant: str, fp: FailoverPlan) -> list[Tunnel]:
    """The NEA pairs of the networks the plan's VMs are on, in plan order."""
    keys = dict.fromkeys(
        f"{tenant}/{lab_plan.topology.tenants[tenant].vms[s.vm].network}" for s in fp.steps)
    return [lab_plan.tunnels[k] for k in keys]


def endpoints(lab_plan: LabPlan, tenant: str, fp: FailoverPlan) -> list[Endpoint]:
    found: list[Endpoint] = []
    used: set[tuple[str, int, str]] = set()
    for index, e in enumerate(fp.publish):
        vm = lab_plan.nodes[f"{tenant}/{e.vm}"]
        tunnel = f"{tenant}/{vm.network}"
        public_port = e.public_port or e.port
        # The SP NEA sees only its own core address: two public addresses published on
        # the same port need two ports there.
        core_port = public_port
        if (tunnel, core_port, e.protocol) in used:
            core_port = 40000 + index
        used.add((tunnel, core_port, e.protocol))
        found.append(Endpoint(vm.name, vm.address or "", e.port, str(e.public), public_port,
                              e.protocol, tunnel, core_port))
    return found


def snat_address(lab_plan: LabPlan, fp: FailoverPlan) -> str:
    """The public address the site leaves with (default: the gateway's own)."""
    return str(fp.snat_address or lab_plan.topology.provider.gateway)


def public_addresses(lab_plan: LabPlan, fp: FailoverPlan) -> list[str]:
    """Addresses the plan adds to sp/cgw's internet port (not its own, it has that one)."""
    wanted = [snat_address(lab_plan, fp), *(str(e.public) for e in fp.publish)]
    own = str(lab_plan.topology.provider.gateway)
    return [a for a in dict.fromkeys(wanted) if a != own]


def _core_address(lab_plan: LabPlan, tunnel: Tunnel) -> str:
    return lab_plan.nodes[tunnel.sp_nea].ports[0].addresses[0].split("/")[0]


def _table(name: str, *chains: list[str]) -> str:
    body = [line for c in chains for line in c]
    return "\n".join([f"table ip {name} {{", *body, "}"]) + "\n"


def sp_nea_plan_ruleset(lab_plan: LabPlan, tenant: str, fp: FailoverPlan,
                        tunnel: Tunnel) -> str:
    """The SP NEA as the site's router: SNAT out to its core address, DNAT in to replicas."""
    node = lab_plan.nodes[tunnel.sp_nea]
    core_if, cloud = node.ports[0].name, tunnel.sp_cloud_port
    core = _core_address(lab_plan, tunnel)
    core_subnet = lab_plan.topology.provider.core_subnet
    mark = f"meta mark set {PLAN_MARK:#x}"
    dnat = [
        f'    iifname "{core_if}" ip daddr {core} {e.protocol} dport {e.core_port} '
        f'dnat ip to {e.address}:{e.port} comment "publish {e.vm}:{e.port}"'
        for e in endpoints(lab_plan, tenant, fp) if e.tunnel == tunnel.key
    ]
    return _table(
        plan_table(tenant),
        chain("forward", "filter", "forward", MARK_PRIORITY, "accept", [
            # the internet, never the SP core network (other tenants' NEAs live there)
            f'    iifname "{cloud}" oifname "{core_if}" ip daddr != {core_subnet} {mark}',
            f'    iifname "{core_if}" oifname "{cloud}" ct state established,related {mark}',
            f'    iifname "{core_if}" oifname "{cloud}" ct status dnat {mark}',
        ]),
        chain("input", "filter", "input", MARK_PRIORITY, "accept", [
            # the site's gateway address answers the replicas (ping, replies to our pings)
            f'    iifname "{cloud}" ip daddr {tunnel.gateway_address} {mark}',
        ]),
        chain("prerouting", "nat", "prerouting", -100, "accept", dnat),
        chain("postrouting", "nat", "postrouting", 100, "accept", [
            f'    oifname "{core_if}" ip saddr {tunnel.subnet} snat ip to {core} '
            f'comment "site {tunnel.key} to the internet"',
        ]),
    )


def gateway_plan_ruleset(lab_plan: LabPlan, tenant: str, fp: FailoverPlan) -> str:
    """sp/cgw: public endpoints DNATed to the SP NEAs, the site SNATed to the public address."""
    gateway = lab_plan.nodes["sp/cgw"]
    inet_if, core_if = gateway.ports[0].name, gateway.ports[1].name
    mark = f"meta mark set {PLAN_MARK:#x}"
    dnat, forward, snat = [], [], []
    for e in endpoints(lab_plan, tenant, fp):
        core = _core_address(lab_plan, lab_plan.tunnels[e.tunnel])
        dnat.append(
            f'    iifname "{inet_if}" ip daddr {e.public} {e.protocol} dport {e.public_port} '
            f'dnat ip to {core}:{e.core_port} comment "publish {e.vm}:{e.port}"')
        forward.append(
            f'    iifname "{inet_if}" oifname "{core_if}" ip daddr {core} {e.protocol} dport '
            f'{e.core_port} ct status dnat {mark}')
    public = snat_address(lab_plan, fp)
    for tunnel in plan_tunnels(lab_plan, tenant, fp):
        core = _core_address(lab_plan, tunnel)
        forward.append(f'    iifname "{core_if}" oifname "{inet_if}" ip saddr {core} {mark}')
        snat.append(f'    oifname "{inet_if}" ip saddr {core} snat ip to {public} '
                    f'comment "site {tunnel.key} to the internet"')
    return _table(
        plan_table(tenant),
        chain("prerouting", "nat", "prerouting", -100, "accept", dnat),
        chain("forward", "filter", "forward", MARK_PRIORITY, "accept", forward),
        chain("postrouting", "nat", "postrouting", 100, "accept", snat),
    )
