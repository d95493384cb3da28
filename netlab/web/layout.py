"""The lab as cytoscape elements, laid out as `netlab graph` lays it out (pure).

Columns run left to right along the path a packet takes (VM -> LAN -> edge ->
internet -> cloud gateway -> SP core -> SP NEA -> cloud network -> replica), the
same ranks as netlab.graph's DOT. Rows: each tenant network gets a band, and
its cloud network at the SP sits in the same band, so that a VM and its
replica face each other. Positions are computed here ("preset" layout in the
page): the picture does not move when a state changes, only colours do.

Sites are compound nodes (tenant, provider, cloud network), segments are
ellipses, each veth an edge to its segment, each NEA pair's tunnel two dashed
edges through the cloud gateway.
"""

from __future__ import annotations

from typing import Any

from netlab.graph import (
    KIND_COLORS,
    OFF_FILL,
    STATE_COLORS,
    node_addresses,
    node_power,
    replica_state,
)
from netlab.plan import LabPlan, Node, NodeKind

COLUMN = 172  # pixels between two columns
ROW = 66  # pixels between two nodes of a column
RANKS = {
    NodeKind.VM: 0, NodeKind.TENANT_NEA: 0, NodeKind.EDGE: 2, NodeKind.GATEWAY: 4,
    NodeKind.SP_NEA: 6, NodeKind.REPLICA: 8, NodeKind.RECEIVER: 6,
}
INET_RANK, CORE_RANK, LAN_RANK, CLOUD_RANK = 3, 5, 1, 7


def segment_id(name: str) -> str:
    # segment names never contain '@' or ':', node names never start with "segment:"
    return f"segment:{name}"


def node_data(node: Node, plan: LabPlan, state: dict[str, Any] | None) -> dict[str, Any]:
    """What the page needs of a node: label, colour, power, replica state."""
    power = node_power(node, state)
    replica = replica_state(node, plan, state)
    addresses = node_addresses(node, state)
    role = {NodeKind.TENANT_NEA: "tenant NEA", NodeKind.SP_NEA: "SP NEA",
            NodeKind.GATEWAY: "cloud gateway", NodeKind.EDGE: "edge router",
            NodeKind.RECEIVER: "replication receiver"}.get(node.kind)
    lines = [node.name, *addresses[:1]]
    if replica:
        lines.append(replica)
    elif role:
        lines.append(role)
    if power != "on":
        lines.append(f"({'powered off' if power == 'off' else power})")
    fill = STATE_COLORS.get(replica or "", KIND_COLORS[node.kind])
    return {
        "id": node.name, "label": "\n".join(lines), "kind": str(node.kind),
        "power": power, "state": replica, "addresses": addresses,
        "fill": fill if power == "on" else OFF_FILL,
        "border": STATE_COLORS.get(replica or "", "#555555"),
    }


def _column_rows(plan: LabPlan) -> tuple[dict[str, float], dict[str, float]]:
    """The y of every node and segment: a band of rows per tenant network."""
    node_y: dict[str, float] = {}
    seg_y: dict[str, float] = {}
    y = 0.0
    tenant_bands: dict[str, list[float]] = {}
    for tenant_name, tenant in plan.topology.tenants.items():
        for net_name in tenant.networks:
            key = f"{tenant_name}/{net_name}"
            left = [n for n in plan.nodes.values() if n.kind in (NodeKind.VM, NodeKind.TENANT_NEA)
                    and n.tenant == tenant_name and n.network == net_name]
            right = [n for n in plan.nodes.values() if n.kind is NodeKind.REPLICA
                     and n.tenant == tenant_name and n.network == net_name]
            tunnel = plan.tunnels.get(key)
            rows = max(len(left), len(right) + (1 if tunnel else 0), 1)
            for i, node in enumerate(left):
                node_y[node.name] = y + i * ROW
            middle = y + (rows - 1) * ROW / 2
            seg_y[key] = middle
            if tunnel:
                seg_y[f"sp/{key}"] = middle
                node_y[tunnel.sp_nea] = middle
                for i, node in enumerate(right):
                    node_y[node.name] = y + i * ROW
            tenant_bands.setdefault(tenant_name, []).append(middle)
            y += rows * ROW + ROW  # a gap between bands
    for tenant_name, middles in tenant_bands.items():
        edge = plan.nodes.get(f"{tenant_name}/edge")
        if edge is not None:
            node_y[edge.name] = sum(middles) / len(middles)
    centre = (y - 2 * ROW) / 2 if y else 0.0
    seg_y.setdefault("inet", centre)
    seg_y.setdefault("sp/core", centre)
    for node in plan.nodes.values():
        node_y.setdefault(node.name, centre)
    return node_y, seg_y


def _parent(node: Node) -> str | None:
    if node.kind in (NodeKind.VM, NodeKind.TENANT_NEA, NodeKind.EDGE) and node.tenant:
        return f"site:{node.tenant}"
    if node.kind in (NodeKind.SP_NEA, NodeKind.REPLICA) and node.tenant:
        return f"site:sp/{node.tenant}/{node.network}"
    if node.kind is NodeKind.GATEWAY:
        return "site:sp"
    return None


def _segment_parent(name: str) -> str | None:
    if name == "inet":
        return None
    if name == "sp/core":
        return "site:sp"
    if name.startswith("sp/"):
        return f"site:{name}"
    return f"site:{name.split('/')[0]}"


def elements(plan: LabPlan, state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Cytoscape elements (sites, segments, nodes, links, tunnels) with preset positions."""
    node_y, seg_y = _column_rows(plan)
    out: list[dict[str, Any]] = []
    for tenant_name in plan.topology.tenants:
        out.append({"group": "nodes", "classes": "site tenant",
                    "data": {"id": f"site:{tenant_name}",
                             "label": f"tenant {tenant_name} (production site)"}})
    out.append({"group": "nodes", "classes": "site provider",
                "data": {"id": "site:sp", "label": "service provider (sp)"}})
    for key in plan.tunnels:
        out.append({"group": "nodes", "classes": "site cloud",
                    "data": {"id": f"site:sp/{key}", "parent": "site:sp",
                             "label": f"cloud network {key}"}})
    for name, seg in plan.segments.items():
        rank = (INET_RANK if name == "inet" else CORE_RANK if name == "sp/core"
                else CLOUD_RANK if name.startswith("sp/") else LAN_RANK)
        label = ("internet" if name == "inet" else "SP core" if name == "sp/core"
                 else f"cloud {name[3:]}" if name.startswith("sp/") else f"LAN {name}")
        data = {"id": segment_id(name), "label": f"{label}\n{seg.subnet}", "kind": "segment"}
        if parent := _segment_parent(name):
            data["parent"] = parent
        out.append({"group": "nodes", "classes": "segment", "data": data,
                    "position": {"x": rank * COLUMN, "y": seg_y.get(name, 0.0)}})
    for node in plan.nodes.values():
        data = node_data(node, plan, state)
        if parent := _parent(node):
            data["parent"] = parent
        classes = "node " + str(node.kind) + ("" if data["power"] == "on" else " off")
        out.append({"group": "nodes", "classes": classes, "data": data,
                    "position": {"x": RANKS.get(node.kind, 9) * COLUMN,
                                 "y": node_y[node.name]}})
        for port in node.ports:
            out.append({"group": "edges", "classes": "link" + ("" if data["power"] == "on"
                                                               else " off"),
                        "data": {"id": f"link:{node.name}:{port.name}", "source": node.name,
                                 "target": segment_id(port.segment)}})
    for key, tunnel in plan.tunnels.items():
        for i, (source, target) in enumerate(((tunnel.tenant_nea, "sp/cgw"),
                                              ("sp/cgw", tunnel.sp_nea))):
            out.append({"group": "edges", "classes": "tunnel",
                        "data": {"id": f"tunnel:{key}:{i}", "source": source, "target": target,
                                 "tunnel": key, "label": ""}})
    return out
