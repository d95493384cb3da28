"""The lab as a picture: Graphviz DOT text and a plain-text tree, from a plan and a state.

Pure functions of (plan, state): no root, no namespaces, no Graphviz needed to
build the DOT text, so they are unit-tested with a synthetic state dict.

What is drawn:

* one cluster per tenant site (its LAN segments, edge router, VMs and tenant
  NEAs), one for the provider (cloud gateway, SP core, and a cluster per tenant
  cloud network with its SP NEA and replicas), and the internet segment;
* L2 segments as ellipses, nodes as boxes with their addresses; each veth is an
  edge from a node to its segment;
* VMs and replicas filled with the colour of the replica state (``Normal``,
  ``Failover``, ...); powered-off nodes dashed and grey;
* the WireGuard tunnel of each NEA pair as a dashed bold edge from the tenant
  NEA to the cloud gateway (UDP tunnel port, e.g. 6180) and on to the SP NEA
  (the gateway's DNAT to UDP 1195).

``state`` is the lab's state.json as a dict (``nodes``, ``neas``, ``replicas``,
``leases``); ``None`` draws the plan as it is right after ``up``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from netlab.plan import LabPlan, Node, NodeKind

# Fill colours of replica states (the status table uses the same hues).
STATE_COLORS = {
    "Normal": "#c6efce",
    "Failover": "#ffd966",
    "Ready to switch": "#bdd7ee",
    "Failback": "#9fc5e8",
    "Permanent failover": "#e4b9e4",
}
KIND_COLORS = {
    NodeKind.GATEWAY: "#f4cccc",
    NodeKind.EDGE: "#fce5cd",
    NodeKind.TENANT_NEA: "#d9d2e9",
    NodeKind.SP_NEA: "#d9d2e9",
    NodeKind.VM: "#ffffff",
    NodeKind.REPLICA: "#ffffff",
    NodeKind.RECEIVER: "#cfe2f3",
}
OFF_FILL = "#eeeeee"
OFF_LINE = "#999999"
TUNNEL_ON = "#1f4e9a"
NEA_KINDS = (NodeKind.TENANT_NEA, NodeKind.SP_NEA)


# ----- what the state says about a node -----------------------------------------------


def node_power(node: Node, state: dict[str, Any] | None) -> str:
    """"on" or "off", as `netlab status` reports it (without a state: as after `up`)."""
    if node.kind in NEA_KINDS:
        if state is None:
            return "off"
        return state.get("neas", {}).get(f"{node.tenant}/{node.network}", {}).get("power", "off")
    default = "on" if node.link_up_at_start else "off"
    if state is None:
        return default
    return state.get("nodes", {}).get(node.name, {}).get("power", default)


def replica_state(node: Node, plan: LabPlan, state: dict[str, Any] | None) -> str | None:
    """Replica state of a VM or replica node; None for nodes without a replica."""
    if node.kind not in (NodeKind.VM, NodeKind.REPLICA):
        return None
    vm = node.name.removesuffix("@sp")
    if plan.replica_of(vm) is None:
        return None  # a DHCP VM, or a network without an NEA
    if state is None:
        return "Normal"
    return state.get("replicas", {}).get(vm, {}).get("state")


def node_addresses(node: Node, state: dict[str, Any] | None) -> list[str]:
    """Addresses of a node without prefix length; a DHCP VM's is its lease, if any."""
    found = [cidr.split("/")[0] for port in node.ports for cidr in port.addresses]
    if not found and node.dhcp:
        lease = (state or {}).get("leases", {}).get(node.name)
        found.append(f"{lease} (DHCP)" if lease else "DHCP")
    return found


def _describe(node: Node, plan: LabPlan, state: dict[str, Any] | None) -> list[str]:
    """Short facts shown next to a node: power, replica state, role."""
    facts = []
    replica = replica_state(node, plan, state)
    if replica:
        facts.append(replica)
    if node.kind in NEA_KINDS:
        facts.append("tenant NEA" if node.kind is NodeKind.TENANT_NEA else "SP NEA")
    elif node.kind is NodeKind.GATEWAY:
        facts.append("cloud gateway")
    elif node.kind is NodeKind.RECEIVER:
        facts.append("replication receiver")
    elif node.kind is NodeKind.EDGE:
        facts.append("edge router, NAT")
    facts.append(f"power {node_power(node, state)}")
    return facts


# ----- DOT ---------------------------------------------------------------------------


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _seg_id(segment: str) -> str:
    # segment and node names share a namespace in DOT; segments never contain '@'
    return _q(f"segment:{segment}")


def _node_attrs(node: Node, plan: LabPlan, state: dict[str, Any] | None) -> str:
    on = node_power(node, state) == "on"
    replica = replica_state(node, plan, state)
    fill = STATE_COLORS.get(replica or "", KIND_COLORS[node.kind])
    lines = [node.name, *node_addresses(node, state)]
    if replica:
        lines.append(replica)
    if node.kind in NEA_KINDS:
        lines.append("tenant NEA" if node.kind is NodeKind.TENANT_NEA else "SP NEA")
    if not on:
        power = node_power(node, state)
        # "failed" (a simulated disaster) says more than "off"
        lines.append("(powered off)" if power == "off" else f"({power})")
    attrs = {"label": "\n".join(lines), "fillcolor": fill}
    if on:
        attrs["style"] = "rounded,filled"
    else:
        # a powered-off replica keeps its state's colour only as a faint border
        attrs.update(style="rounded,filled,dashed", fillcolor=OFF_FILL, color=OFF_LINE,
                     fontcolor="#666666")
        if replica in STATE_COLORS and replica != "Normal":
            attrs["color"] = STATE_COLORS[replica]
    return ", ".join(f"{k}={_q(v)}" for k, v in attrs.items())


def _segment_line(plan: LabPlan, name: str, label: str, indent: str) -> str:
    seg = plan.segments[name]
    text = _q(label + "\n" + seg.subnet)
    return (f"{indent}{_seg_id(name)} [label={text}, shape=ellipse, "
            f'style=filled, fillcolor="#e8e8e8", color="#777777"];')


def to_dot(plan: LabPlan, state: dict[str, Any] | None = None) -> str:
    """The lab as a Graphviz digraph (DOT text)."""
    out = [
        f"digraph {_q('netlab ' + plan.lab)} {{",
        f"  graph [label={_q(_title(plan, state))}, labelloc=t, fontsize=16, "
        'fontname="Helvetica", rankdir=LR, compound=true, nodesep=0.25, ranksep=0.7, '
        'newrank=true];',
        '  node [shape=box, fontname="Helvetica", fontsize=10, style="rounded,filled"];',
        '  edge [fontname="Helvetica", fontsize=9, arrowhead=none, color="#555555"];',
        "",
    ]
    out += _DotSites(plan, state).lines()
    out.append("")
    out += _dot_links(plan, state)
    out.append("")
    out += _dot_tunnels(plan, state)
    out.append("")
    out.append(_legend())
    out.append("}")
    return "\n".join(out) + "\n"


class _DotSites:
    """The clusters: internet, each tenant's site, the provider with its cloud networks."""

    def __init__(self, plan: LabPlan, state: dict[str, Any] | None) -> None:
        self.plan = plan
        self.state = state
        self.out: list[str] = []
        self.placed: set[str] = set()

    def node_line(self, node: Node, indent: str) -> None:
        self.out.append(f"{indent}{_q(node.name)} [{_node_attrs(node, self.plan, self.state)}];")
        self.placed.add(node.name)

    def lines(self) -> list[str]:
        plan, out = self.plan, self.out
        out.append("  subgraph cluster_internet {")
        out.append('    label="internet"; style="rounded,dashed"; color="#777777";')
        out.append(_segment_line(plan, "inet", "inet", "    "))
        out.append("  }")
        for tenant_name in plan.topology.tenants:
            self.tenant(tenant_name)
        self.provider()
        # anything a future node kind adds still appears, outside the clusters
        for node in plan.nodes.values():
            if node.name not in self.placed:
                self.node_line(node, "  ")
        return out

    def tenant(self, tenant_name: str) -> None:
        plan, out = self.plan, self.out
        out.append(f"  subgraph {_q('cluster_tenant_' + tenant_name)} {{")
        out.append(f"    label={_q(f'tenant {tenant_name} (production site)')}; "
                   'style="rounded,filled"; fillcolor="#f7fbff"; color="#6fa8dc";')
        for net_name in plan.topology.tenants[tenant_name].networks:
            out.append(_segment_line(plan, f"{tenant_name}/{net_name}",
                                     f"LAN {tenant_name}/{net_name}", "    "))
        for node in plan.nodes.values():
            if node.tenant == tenant_name and node.kind in (
                NodeKind.EDGE, NodeKind.VM, NodeKind.TENANT_NEA
            ):
                self.node_line(node, "    ")
        out.append("  }")

    def provider(self) -> None:
        plan, out = self.plan, self.out
        out.append("  subgraph cluster_provider {")
        out.append('    label="service provider (sp)"; style="rounded,filled"; '
                   'fillcolor="#fffaf0"; color="#e69138";')
        out.append(_segment_line(plan, "sp/core", "SP core", "    "))
        self.node_line(plan.nodes["sp/cgw"], "    ")
        for key, tunnel in plan.tunnels.items():
            out.append(f"    subgraph {_q('cluster_cloud_' + key)} {{")
            out.append(f"      label={_q(f'cloud network {key}')}; style=\"rounded,filled\"; "
                       'fillcolor="#fff2cc"; color="#bf9000";')
            out.append(_segment_line(plan, f"sp/{key}", f"cloud {key}", "      "))
            self.node_line(plan.nodes[tunnel.sp_nea], "      ")
            for node in plan.nodes.values():
                if (node.kind is NodeKind.REPLICA
                        and f"{node.tenant}/{node.network}" == key):
                    self.node_line(node, "      ")
            out.append("    }")
        out.append("  }")


def _dot_links(plan: LabPlan, state: dict[str, Any] | None) -> list[str]:
    out = []
    for node in plan.nodes.values():
        off = node_power(node, state) != "on"
        for port in node.ports:
            attrs = [f"tooltip={_q(port.name)}"]
            if off:
                attrs.append(f'style=dashed, color="{OFF_LINE}"')
            # edges point along the path VM -> LAN -> edge -> internet -> gateway -> core
            # -> SP NEA -> cloud network -> replica, so that dot lays the sites out left
            # to right in that order (the arrowheads are hidden)
            ends = [_q(node.name), _seg_id(port.segment)]
            if _rank(node) > _segment_rank(port.segment):
                ends.reverse()
            out.append(f"  {ends[0]} -> {ends[1]} [{', '.join(attrs)}];")
    return out


def _dot_tunnels(plan: LabPlan, state: dict[str, Any] | None) -> list[str]:
    out = []
    for key, tunnel in plan.tunnels.items():
        on = (state or {}).get("neas", {}).get(key, {}).get("power") == "on"
        color = TUNNEL_ON if on else OFF_LINE
        common = (f'style="dashed,bold", penwidth=2, color="{color}", fontcolor="{color}", '
                  "arrowhead=normal, constraint=false")
        note = "" if on else " (off)"
        label = _q(f"WireGuard {key}{note}" + "\n" + f"udp/{tunnel.tunnel_port}")
        out.append(f"  {_q(tunnel.tenant_nea)} -> {_q('sp/cgw')} [label={label}, {common}];")
        out.append(
            f"  {_q('sp/cgw')} -> {_q(tunnel.sp_nea)} "
            f"[label={_q(f'DNAT {tunnel.tunnel_port} -> {tunnel.listen_port}')}, {common}];"
        )
    return out


_NODE_RANKS = {
    NodeKind.VM: 0, NodeKind.TENANT_NEA: 0, NodeKind.EDGE: 2, NodeKind.GATEWAY: 4,
    NodeKind.SP_NEA: 6, NodeKind.REPLICA: 8, NodeKind.RECEIVER: 6,
}


def _rank(node: Node) -> int:
    return _NODE_RANKS[node.kind]


def _segment_rank(segment: str) -> int:
    if segment == "inet":
        return 3
    if segment == "sp/core":
        return 5
    return 7 if segment.startswith("sp/") else 1


def _title(plan: LabPlan, state: dict[str, Any] | None) -> str:
    if state is None:
        return f"netlab lab {plan.lab} (plan)"
    return f"netlab lab {plan.lab} ({state.get('status', 'unknown')})"


def _legend() -> str:
    rows = "".join(
        f'<TR><TD BGCOLOR="{color}">{state}</TD></TR>' for state, color in STATE_COLORS.items()
    )
    rows += f'<TR><TD BGCOLOR="{OFF_FILL}"><FONT COLOR="#666666">powered off</FONT></TD></TR>'
    return (
        '  legend [shape=plaintext, style="", label=<<TABLE BORDER="0" CELLBORDER="1" '
        'CELLSPACING="0" CELLPADDING="3"><TR><TD><B>replica state</B></TD></TR>'
        f"{rows}</TABLE>>];"
    )


# ----- text --------------------------------------------------------------------------


def _render_tree(tree: Any) -> str:
    """A rich Tree as plain text: no colour, no wrapping, no trailing blanks."""
    from rich.console import Console

    out = io.StringIO()
    # wide enough that no label wraps; a terminal or a pipe scrolls sideways
    console = Console(file=out, width=1000, color_system=None, emoji=False, highlight=False,
                      markup=False, legacy_windows=False)
    console.print(tree)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def _node_text(
    node: Node, plan: LabPlan, state: dict[str, Any] | None, width: int, segment: str
) -> str:
    # only the address the node has on this segment: the tree is drawn per segment
    on_segment = [a.split("/")[0] for p in node.ports if p.segment == segment for a in p.addresses]
    addresses = ", ".join(on_segment or node_addresses(node, state)) or "-"
    return f"{node.name:<{width}} {addresses:<22} {', '.join(_describe(node, plan, state))}"


def _members(plan: LabPlan, segment: str) -> Iterable[Node]:
    return (n for n in plan.nodes.values() if any(p.segment == segment for p in n.ports))


def to_ascii(plan: LabPlan, state: dict[str, Any] | None = None) -> str:
    """The lab as a text tree per site, for a terminal (drawn by rich's Tree)."""
    from rich.tree import Tree

    width = max(len(n) for n in plan.nodes)
    root = Tree(_title(plan, state), guide_style="")

    def segment(parent: Any, label: str, name: str) -> None:
        branch = parent.add(f"{label} {plan.segments[name].subnet}")
        for n in _members(plan, name):
            branch.add(_node_text(n, plan, state, width, name))

    segment(root, "internet", "inet")
    for tenant_name, tenant in plan.topology.tenants.items():
        site = root.add(f"tenant {tenant_name} (production site)")
        for net in tenant.networks:
            segment(site, f"LAN {tenant_name}/{net}", f"{tenant_name}/{net}")
    provider = root.add("service provider (sp)")
    segment(provider, "SP core", "sp/core")
    for key in plan.tunnels:
        segment(provider, f"cloud network {key}", f"sp/{key}")
    tunnels = root.add("WireGuard tunnels (NEA pairs)")
    for key, t in plan.tunnels.items():
        on = (state or {}).get("neas", {}).get(key, {}).get("power") == "on"
        tunnels.add(f"{key}: {t.tenant_nea} ==udp/{t.tunnel_port}==> sp/cgw "
                    f"{t.endpoint.split(':')[0]} ==DNAT udp/{t.listen_port}==> {t.sp_nea}  "
                    f"[{'on' if on else 'off'}]")
    return _render_tree(root)
