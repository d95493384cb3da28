"""Plan: the topology model turned into concrete Linux names, addresses and routes.

A pure function of (lab name, topology): no root, no side effects, the same
input always gives the same plan, so it is unit-tested with no namespaces.

Naming scheme
-------------
Lab names are 1-8 lowercase letters or digits with no '-', so that the prefix
``<lab>-`` identifies every object of one lab and of no other lab.

Namespaces (one per node and one per L2 segment; '.' cannot occur in topology
names, so these never collide):

=====================  ==============================  =========================
what                   namespace                       node name (CLI, status)
=====================  ==============================  =========================
internet segment       ``<lab>-inet``                  (segment ``inet``)
SP core segment        ``<lab>-sp.core``               (segment ``sp/core``)
cloud gateway          ``<lab>-sp.cgw``                ``sp/cgw``
replication receiver   ``<lab>-sp.repl``               ``sp/repl``
tenant LAN segment     ``<lab>-<t>.<net>.sw``          (segment ``<t>/<net>``)
tenant edge router     ``<lab>-<t>.edge``              ``<t>/edge``
tenant VM              ``<lab>-<t>.<vm>``              ``<t>/<vm>``
tenant NEA             ``<lab>-<t>.nea-<net>``         ``<t>/nea-<net>``
cloud network segment  ``<lab>-sp.<t>.<net>.sw``       (segment ``sp/<t>/<net>``)
SP NEA                 ``<lab>-sp.<t>.<net>.nea``      ``sp/nea-<t>-<net>``
replica of a VM        ``<lab>-<t>.<vm>@sp``           ``<t>/<vm>@sp``
=====================  ==============================  =========================

Bubbles (netlab.orchestrator.bubble_plan) add ``<lab>-bb.<bubble>.<t>.<vm>``,
``<lab>-bb.<bubble>.<t>.<net>.sw`` and ``<lab>-bb.<bubble>.<t>.<net>.proxy``
(three dots or more after the prefix; the namespaces above have at most two)
and interfaces ``<lab>-{x,y,z}<slot><n>``, under the same prefix.

Interfaces are named ``<lab>-<role><n>``: at most 8 + 1 + 1 + 5 = 15
characters, the kernel's limit, and unique across labs because the prefix is.
``n`` counts links in plan order (deterministic for a topology). Roles: ``v``
a VM's or replica's NIC, ``e`` an edge router port, ``n`` an NEA port, ``g`` a
gateway port, ``r`` the replication receiver's port, ``p`` the bridge-side end
of any veth, ``b`` a bridge, ``w`` a
WireGuard interface (its name also names wireguard-go's control socket
``/var/run/wireguard/<name>.sock``, shared by all namespaces).

Ports: tenant NEA -> cloud gateway UDP ``tunnel_port`` of the network (6180,
6181, ...); the gateway DNATs it to the SP NEA's ``nea_listen_port`` (1195).
Replication: tenant edge -> cloud gateway TCP ``REPLICATION_PORT`` (6180), DNATed
to the rsync daemon of ``sp/repl`` on the same port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from netlab.errors import TopologyError
from netlab.topology.model import Network, Tenant, Topology, replication_address

LAB_NAME_PATTERN = re.compile(r"^[a-z0-9]{1,8}$")
MAX_LINKS = 99_999
# Table for traffic that enters the SP NEA from its cloud network: everything
# not local goes into the tunnel, while the SP NEA's own tunnel packets keep the
# main table's default route via the SP core.
CLOUD_ROUTE_TABLE = 100
CLOUD_RULE_PRIORITY = 1000
NFT_TABLE = "netlab"
# The tunnel's MTU is 1500 so that a full-size frame crosses as over the real
# appliance's L2 tunnel (netlab.wireguard.TUNNEL_MTU), at the cost of fragmented
# outer datagrams, which each NAT hop reassembles and splits again. TCP need not
# pay that: its SYNs are clamped to what fits a 1420-byte inner packet (1420 - 40).
TUNNEL_TCP_MSS = 1380
# Packets that a running cloud failover plan lets through the gateway and the SP NEA.
# nftables runs every base chain of a hook, and a drop in the `netlab` table still
# drops a packet that another table accepted; so the static tables accept this mark,
# and only a plan's own table (`netlab_plan_<tenant>`, created by `plan start` in a
# chain of lower priority on the same hook, deleted whole by `plan undo`) sets it.
# With no plan running nothing carries the mark and the rule matches nothing.
PLAN_MARK = 0x6E6C0001
PLAN_MARK_RULE = f'    meta mark {PLAN_MARK:#x} accept comment "cloud failover plan"'
REPLICATION_PORT = 6180  # TCP, at the cloud gateway and at sp/repl's rsync daemon


class NodeKind(StrEnum):
    GATEWAY = "gateway"
    EDGE = "edge"
    VM = "vm"
    REPLICA = "replica"
    TENANT_NEA = "tenant-nea"
    SP_NEA = "sp-nea"
    RECEIVER = "receiver"


@dataclass(frozen=True)
class Segment:
    """An L2 segment: one Linux bridge in a namespace of its own."""

    name: str
    netns: str
    bridge: str
    subnet: str


@dataclass(frozen=True)
class Port:
    """One end of a veth in a node; its peer `bridge_port` is enslaved to `segment`'s bridge."""

    name: str
    segment: str
    bridge_port: str
    addresses: tuple[str, ...] = ()
    # no prefix route for the address: routes for the subnet are set explicitly
    no_prefix_route: bool = False


@dataclass(frozen=True)
class Route:
    dst: str  # "default" or a CIDR
    via: str | None = None
    dev: str | None = None
    table: int | None = None


@dataclass(frozen=True)
class Node:
    name: str
    kind: NodeKind
    netns: str
    ports: tuple[Port, ...]
    routes: tuple[Route, ...] = ()
    forwarding: bool = False
    tenant: str | None = None
    network: str | None = None
    vm: str | None = None
    address: str | None = None  # production address of a VM or replica
    dhcp: bool = False
    # a replica's NIC is down and it runs nothing until failover
    link_up_at_start: bool = True

    @property
    def port(self) -> Port:
        return self.ports[0]


@dataclass(frozen=True)
class Tunnel:
    """The NEA pair of one tenant network and the WireGuard tunnel between them."""

    key: str  # "<tenant>/<network>"
    tenant: str
    network: str
    subnet: str
    tenant_nea: str  # node names
    sp_nea: str
    tenant_wg: str  # interface names
    sp_wg: str
    tenant_lan_port: str
    sp_cloud_port: str
    tenant_nea_address: str
    sp_nea_address: str
    gateway_address: str  # the tenant's default gateway on this network
    endpoint: str  # cloud gateway public address:tunnel port
    tunnel_port: int
    listen_port: int


@dataclass(frozen=True)
class NeaLink:
    """One link of an NEA: its end in the NEA, and the end enslaved to a segment's bridge."""

    netns: str
    ifname: str
    segment_netns: str
    segment_ifname: str


@dataclass(frozen=True)
class DhcpServer:
    tenant: str
    network: str
    netns: str
    interface: str
    range_start: str
    range_end: str
    netmask: str
    router: str


@dataclass(frozen=True)
class LabPlan:
    lab: str
    topology: Topology
    segments: dict[str, Segment]
    nodes: dict[str, Node]
    tunnels: dict[str, Tunnel]
    dhcp_servers: tuple[DhcpServer, ...]
    nft_rulesets: dict[str, str] = field(default_factory=dict)  # netns -> ruleset

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the lab: segments first (bridges exist before ports join)."""
        return [s.netns for s in self.segments.values()] + [n.netns for n in self.nodes.values()]

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            from netlab.errors import UnknownNode

            raise UnknownNode(
                f"unknown node {name!r}; nodes of lab {self.lab}: {', '.join(self.nodes)}"
            ) from None

    def vms(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind is NodeKind.VM]

    def replica_of(self, vm_node: str) -> Node | None:
        return self.nodes.get(f"{vm_node}@sp")

    def tunnel_for(self, tenant: str, network: str) -> Tunnel | None:
        return self.tunnels.get(f"{tenant}/{network}")

    @property
    def nea_links(self) -> list[NeaLink]:
        """Every link of every NEA: the tenant NEA's LAN, the SP NEA's core and cloud."""
        found = []
        for tunnel in self.tunnels.values():
            for name in (tunnel.tenant_nea, tunnel.sp_nea):
                node = self.nodes[name]
                found += [NeaLink(node.netns, port.name, self.segments[port.segment].netns,
                                  port.bridge_port) for port in node.ports]
        return found


def check_lab_name(lab: str) -> str:
    if not LAB_NAME_PATTERN.match(lab):
        raise TopologyError(
            f"lab name {lab!r} must be 1-8 lowercase letters or digits (no '-': it prefixes "
            "every namespace and interface name of the lab)"
        )
    return lab


def lab_prefix(lab: str) -> str:
    return f"{check_lab_name(lab)}-"


class _Namer:
    def __init__(self, lab: str) -> None:
        self.lab = lab
        self.count = 0

    def link(self, role: str) -> tuple[str, str]:
        """Names of a new veth: (node end, bridge end)."""
        self.count += 1
        if self.count > MAX_LINKS:
            raise TopologyError(f"the topology needs more than {MAX_LINKS} links")
        return f"{self.lab}-{role}{self.count}", f"{self.lab}-p{self.count}"

    def single(self, role: str) -> str:
        self.count += 1
        return f"{self.lab}-{role}{self.count}"


def build_plan(lab: str, topology: Topology) -> LabPlan:
    """Turn a validated topology into the concrete plan of lab `lab`."""
    check_lab_name(lab)
    builder = _PlanBuilder(lab, topology)
    builder.provider_core()
    for tenant_name, tenant in topology.tenants.items():
        builder.tenant(tenant_name, tenant)
    builder.receiver()  # last: the names of every other link stay as they were
    plan = LabPlan(lab, topology, builder.segments, builder.nodes, builder.tunnels,
                   tuple(builder.dhcp))
    namespaces = plan.namespaces
    if len(set(namespaces)) != len(namespaces):
        twice = sorted({n for n in namespaces if namespaces.count(n) > 1})
        raise TopologyError(f"tenants: names that map to the same namespace: {', '.join(twice)}")
    plan.nft_rulesets.update(nft_rulesets(plan))
    return plan


class _PlanBuilder:
    """Collects the segments, nodes and tunnels of one plan.

    The order of the calls is the order of the names: `_Namer` numbers links as
    they are made, so the same topology always gives the same interface names.
    """

    def __init__(self, lab: str, topology: Topology) -> None:
        self.lab = lab
        self.topology = topology
        self.namer = _Namer(lab)
        self.segments: dict[str, Segment] = {}
        self.nodes: dict[str, Node] = {}
        self.tunnels: dict[str, Tunnel] = {}
        self.dhcp: list[DhcpServer] = []

    def segment(self, name: str, netns: str, subnet: IPv4Network) -> Segment:
        seg = Segment(name=name, netns=f"{self.lab}-{netns}", bridge=self.namer.single("b"),
                      subnet=str(subnet))
        self.segments[name] = seg
        return seg

    def port(self, role: str, seg: Segment, address: IPv4Address | None, **kw: bool) -> Port:
        node_end, bridge_end = self.namer.link(role)
        subnet = IPv4Network(seg.subnet)
        addresses = (str(IPv4Interface(f"{address}/{subnet.prefixlen}")),) if address else ()
        return Port(node_end, seg.name, bridge_end, addresses, **kw)

    def add(self, name: str, kind: NodeKind, netns: str, ports: tuple[Port, ...],
            routes: tuple[Route, ...] = (), **facts: Any) -> None:
        self.nodes[name] = Node(name, kind, f"{self.lab}-{netns}", ports, routes, **facts)

    def provider_core(self) -> None:
        provider = self.topology.provider
        inet = self.segment("inet", "inet", self.topology.internet.subnet)
        sp_core = self.segment("sp/core", "sp.core", provider.core_subnet)
        gw_inet = self.port("g", inet, provider.gateway)
        gw_core = self.port("g", sp_core, provider.core_gateway)
        self.add("sp/cgw", NodeKind.GATEWAY, "sp.cgw", (gw_inet, gw_core), forwarding=True)

    def receiver(self) -> None:
        provider = self.topology.provider
        port = self.port("r", self.segments["sp/core"], replication_address(provider))
        self.add("sp/repl", NodeKind.RECEIVER, "sp.repl", (port,),
                 (Route("default", via=str(provider.core_gateway)),))

    def tenant(self, tenant_name: str, tenant: Tenant) -> None:
        lan_segments = {
            net_name: self.segment(f"{tenant_name}/{net_name}",
                                   f"{tenant_name}.{net_name}.sw", net.subnet)
            for net_name, net in tenant.networks.items()
        }
        self.edge(tenant_name, tenant, lan_segments)
        for vm_name, vm in tenant.vms.items():
            net = tenant.networks[vm.network]
            vm_port = self.port("v", lan_segments[vm.network], vm.address)
            routes = () if vm.dhcp else (Route("default", via=str(net.gateway)),)
            self.add(f"{tenant_name}/{vm_name}", NodeKind.VM, f"{tenant_name}.{vm_name}",
                     (vm_port,), routes, tenant=tenant_name, network=vm.network, vm=vm_name,
                     address=str(vm.address) if vm.address else None, dhcp=vm.dhcp)
        for net_name, net in tenant.networks.items():
            # Every static VM has a replica on its tenant's cloud network; the NEA pair
            # that extends the network is optional (without it, no partial failover).
            cloud = self.segment(f"sp/{tenant_name}/{net_name}",
                                 f"sp.{tenant_name}.{net_name}.sw", net.subnet)
            if net.nea is not None:
                self.nea_pair(tenant_name, net_name, net, lan_segments[net_name], cloud)
            for vm_name, vm in tenant.vms.items():
                if vm.network == net_name and not vm.dhcp:
                    self.add(f"{tenant_name}/{vm_name}@sp", NodeKind.REPLICA,
                             f"{tenant_name}.{vm_name}@sp", (self.port("v", cloud, vm.address),),
                             (Route("default", via=str(net.gateway)),), tenant=tenant_name,
                             network=net_name, vm=vm_name, address=str(vm.address),
                             link_up_at_start=False)

    def edge(self, tenant_name: str, tenant: Tenant, lan_segments: dict[str, Segment]) -> None:
        edge_uplink = self.port("e", self.segments["inet"], tenant.edge)
        edge_lan_ports = {
            net_name: self.port("e", lan_segments[net_name], net.gateway)
            for net_name, net in tenant.networks.items()
        }
        self.add(f"{tenant_name}/edge", NodeKind.EDGE, f"{tenant_name}.edge",
                 (edge_uplink, *edge_lan_ports.values()), forwarding=True, tenant=tenant_name)
        for net_name, net in tenant.networks.items():
            if net.dhcp_range is not None:
                self.dhcp.append(DhcpServer(
                    tenant=tenant_name, network=net_name, netns=f"{self.lab}-{tenant_name}.edge",
                    interface=edge_lan_ports[net_name].name,
                    range_start=str(net.dhcp_range[0]), range_end=str(net.dhcp_range[1]),
                    netmask=str(net.subnet.netmask), router=str(net.gateway)))

    def nea_pair(self, tenant_name: str, net_name: str, net: Network, lan: Segment,
                 cloud: Segment) -> None:
        key = f"{tenant_name}/{net_name}"
        provider = self.topology.provider
        tenant_nea_name = f"{tenant_name}/nea-{net_name}"
        sp_nea_name = f"sp/nea-{tenant_name}-{net_name}"
        nea_lan = self.port("n", lan, net.nea.address)
        self.add(tenant_nea_name, NodeKind.TENANT_NEA, f"{tenant_name}.nea-{net_name}",
                 (nea_lan,), (Route("default", via=str(net.gateway)),), forwarding=True,
                 tenant=tenant_name, network=net_name)
        sp_core_port = self.port("n", self.segments["sp/core"], net.nea.sp_core_address)
        # The cloud-side address gets no prefix route: production addresses of the
        # subnet are reached through the tunnel, failed-over replicas by /32 routes.
        sp_cloud_port = self.port("n", cloud, net.nea.sp_address, no_prefix_route=True)
        self.add(sp_nea_name, NodeKind.SP_NEA, f"sp.{tenant_name}.{net_name}.nea",
                 (sp_core_port, sp_cloud_port), (Route("default", via=str(provider.core_gateway)),),
                 forwarding=True, tenant=tenant_name, network=net_name)
        tenant_wg = self.namer.single("w")
        sp_wg = self.namer.single("w")
        self.tunnels[key] = Tunnel(
            key=key, tenant=tenant_name, network=net_name, subnet=str(net.subnet),
            tenant_nea=tenant_nea_name, sp_nea=sp_nea_name, tenant_wg=tenant_wg, sp_wg=sp_wg,
            tenant_lan_port=nea_lan.name, sp_cloud_port=sp_cloud_port.name,
            tenant_nea_address=str(net.nea.address), sp_nea_address=str(net.nea.sp_address),
            gateway_address=str(net.gateway),
            endpoint=f"{provider.gateway}:{net.nea.tunnel_port}",
            tunnel_port=net.nea.tunnel_port, listen_port=provider.nea_listen_port)


def nft_rulesets(plan: LabPlan) -> dict[str, str]:
    """The nftables ruleset of every node that filters or translates, by namespace."""
    rulesets: dict[str, str] = {}
    gateway = plan.nodes["sp/cgw"]
    rulesets[gateway.netns] = gateway_ruleset(plan)
    for node in plan.nodes.values():
        if node.kind is NodeKind.EDGE:
            rulesets[node.netns] = edge_ruleset(node)
    for tunnel in plan.tunnels.values():
        rulesets[plan.nodes[tunnel.tenant_nea].netns] = tenant_nea_ruleset(tunnel)
        rulesets[plan.nodes[tunnel.sp_nea].netns] = sp_nea_ruleset(plan, tunnel)
    return rulesets


def gateway_ruleset(plan: LabPlan) -> str:
    """Cloud gateway: forward only each registered tunnel port, DNATed to its SP NEA."""
    gateway = plan.nodes["sp/cgw"]
    inet_if, core_if = gateway.ports[0].name, gateway.ports[1].name
    public = plan.topology.provider.gateway
    dnat, forward = [], []
    for tunnel in plan.tunnels.values():
        sp_core = plan.nodes[tunnel.sp_nea].ports[0].addresses[0].split("/")[0]
        dnat.append(
            f'    iifname "{inet_if}" ip daddr {public} udp dport {tunnel.tunnel_port} '
            f"dnat ip to {sp_core}:{tunnel.listen_port} comment \"tunnel {tunnel.key}\""
        )
        forward.append(
            f'    iifname "{inet_if}" oifname "{core_if}" ip daddr {sp_core} '
            f"udp dport {tunnel.listen_port} ct status dnat accept comment \"tunnel {tunnel.key}\""
        )
    receiver = plan.nodes["sp/repl"].port.addresses[0].split("/")[0]
    dnat.append(f'    iifname "{inet_if}" ip daddr {public} tcp dport {REPLICATION_PORT} '
                f'dnat ip to {receiver}:{REPLICATION_PORT} comment "replication"')
    forward.append(f'    iifname "{inet_if}" oifname "{core_if}" ip daddr {receiver} tcp dport '
                   f'{REPLICATION_PORT} ct status dnat accept comment "replication"')
    return _ruleset(
        chain("prerouting", "nat", "prerouting", -100, "accept", dnat),
        chain(
            "forward",
            "filter",
            "forward",
            0,
            "drop",
            ["    ct state established,related accept", *forward, PLAN_MARK_RULE],
        ),
        chain(
            "input",
            "filter",
            "input",
            0,
            "drop",
            [
                "    ct state established,related accept",
                '    iifname "lo" accept',
                "    icmp type echo-request accept",
            ],
        ),
    )


def edge_ruleset(edge: Node) -> str:
    """Tenant edge: masquerade outbound, a stateful firewall towards the internet."""
    uplink = edge.ports[0].name
    lans = ", ".join(f'"{p.name}"' for p in edge.ports[1:])
    return _ruleset(
        chain(
            "forward",
            "filter",
            "forward",
            0,
            "drop",
            [
                "    ct state established,related accept",
                f"    iifname {{ {lans} }} accept",
            ],
        ),
        chain(
            "input",
            "filter",
            "input",
            0,
            "drop",
            [
                "    ct state established,related accept",
                '    iifname "lo" accept',
                f"    iifname {{ {lans} }} accept",
                "    icmp type echo-request accept",
            ],
        ),
        chain(
            "postrouting",
            "nat",
            "postrouting",
            100,
            "accept",
            [f'    oifname "{uplink}" masquerade'],
        ),
    )


def tenant_nea_ruleset(tunnel: Tunnel) -> str:
    """Tenant NEA: forward only between the production LAN and the tunnel."""
    lan, wg = tunnel.tenant_lan_port, tunnel.tenant_wg
    return _ruleset(
        chain(
            "forward",
            "filter",
            "forward",
            0,
            "drop",
            [
                f'    iifname "{lan}" oifname "{wg}" accept',
                f'    iifname "{wg}" oifname "{lan}" accept',
            ],
        ),
        mss_clamp_chain(wg),
    )


def sp_nea_ruleset(plan: LabPlan, tunnel: Tunnel) -> str:
    """SP NEA: the cloud network reaches only the tunnel, never the SP core."""
    sp_nea = plan.nodes[tunnel.sp_nea]
    core_if = sp_nea.ports[0].name
    cloud, wg = tunnel.sp_cloud_port, tunnel.sp_wg
    return _ruleset(
        chain(
            "forward",
            "filter",
            "forward",
            0,
            "drop",
            [
                f'    iifname "{cloud}" oifname "{wg}" accept',
                f'    iifname "{wg}" oifname "{cloud}" accept',
                PLAN_MARK_RULE,
            ],
        ),
        chain(
            "input",
            "filter",
            "input",
            0,
            "accept",
            [
                PLAN_MARK_RULE,
                # management of the SP NEA is not reachable from a tenant's cloud network
                f'    iifname "{cloud}" ip daddr != {tunnel.sp_nea_address} drop',
                f'    iifname "{cloud}" icmp type echo-request accept',
                f'    iifname "{cloud}" drop',
                f'    iifname "{core_if}" udp dport {tunnel.listen_port} accept',
            ],
        ),
        mss_clamp_chain(wg),
    )


def mss_clamp_chain(wg: str) -> list[str]:
    """Clamp the MSS of TCP connections set up through the tunnel (see TUNNEL_TCP_MSS)."""
    return chain(
        "clamp",
        "filter",
        "forward",
        -150,
        "accept",
        [f'    oifname "{wg}" tcp flags syn tcp option maxseg size set {TUNNEL_TCP_MSS}'],
    )


def chain(
    name: str, kind: str, hook: str, priority: int, policy: str, rules: list[str]
) -> list[str]:
    return [
        f"  chain {name} {{",
        f"    type {kind} hook {hook} priority {priority}; policy {policy};",
        *rules,
        "  }",
    ]


def _ruleset(*chains: list[str]) -> str:
    body = [line for c in chains for line in c]
    return "\n".join([f"table ip {NFT_TABLE} {{", *body, "}"]) + "\n"
