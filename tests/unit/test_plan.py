"""The plan: concrete names, addresses, ports and nftables rulesets of a lab (no root)."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest

from netlab.errors import TopologyError
from netlab.plan import LabPlan, NodeKind, build_plan, check_lab_name, lab_prefix
from netlab.topology import load_topology, parse_topology

IFNAMSIZ = 15  # the kernel's limit on interface names (16 with the NUL)

DEFAULT_LAB_NODES = {
    "sp/cgw", "sp/repl",
    "acme/edge", "acme/web", "acme/db", "acme/app", "acme/kiosk", "acme/nea-lan",
    "acme/web@sp", "acme/db@sp", "acme/app@sp", "sp/nea-acme-lan",
    "globex/edge", "globex/web", "globex/erp", "globex/nea-lan",
    "globex/web@sp", "globex/erp@sp", "sp/nea-globex-lan",
}


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    return build_plan("demo", load_topology())


def interface_names(plan: LabPlan) -> list[str]:
    names = [seg.bridge for seg in plan.segments.values()]
    for node in plan.nodes.values():
        for port in node.ports:
            names += [port.name, port.bridge_port]
    for tunnel in plan.tunnels.values():
        names += [tunnel.tenant_wg, tunnel.sp_wg]
    return names


def generated(tenants: int, vms: int) -> str:
    """tenants x static VMs, one network with an NEA pair each, all on one subnet."""
    lines = [
        "internet: {subnet: 198.51.100.0/24}",
        "provider: {gateway: 198.51.100.10, core_subnet: 10.99.0.0/24, core_gateway: 10.99.0.1}",
        "tenants:",
    ]
    for t in range(tenants):
        lines += [
            f"  ten{t}:",
            f"    edge: 198.51.100.{11 + t}",
            "    networks:",
            "      lan:",
            "        subnet: 192.168.10.0/24",
            "        gateway: 192.168.10.1",
            "        nea: {address: 192.168.10.250, sp_address: 192.168.10.251, "
            f"sp_core_address: 10.99.0.{11 + t}, tunnel_port: {6180 + t}}}",
            "    vms:",
            *(f"      vm{v}: {{network: lan, address: 192.168.10.{11 + v}}}" for v in range(vms)),
        ]
    return "\n".join(lines) + "\n"


# ----- names ----------------------------------------------------------------------


def test_node_names_are_those_of_the_design(plan: LabPlan) -> None:
    assert set(plan.nodes) == DEFAULT_LAB_NODES
    assert plan.nodes["acme/nea-lan"].kind is NodeKind.TENANT_NEA
    assert plan.nodes["sp/nea-acme-lan"].kind is NodeKind.SP_NEA
    assert plan.nodes["acme/web@sp"].kind is NodeKind.REPLICA
    assert plan.nodes["sp/cgw"].kind is NodeKind.GATEWAY
    assert plan.nodes["sp/repl"].kind is NodeKind.RECEIVER
    assert plan.nodes["acme/edge"].kind is NodeKind.EDGE
    assert plan.replica_of("acme/kiosk") is None  # DHCP VMs have no replica


def test_namespaces_follow_the_naming_scheme(plan: LabPlan) -> None:
    netns = {name: node.netns for name, node in plan.nodes.items()}
    assert netns["sp/cgw"] == "demo-sp.cgw"
    assert netns["acme/edge"] == "demo-acme.edge"
    assert netns["acme/web"] == "demo-acme.web"
    assert netns["acme/nea-lan"] == "demo-acme.nea-lan"
    assert netns["sp/nea-acme-lan"] == "demo-sp.acme.lan.nea"
    assert netns["acme/web@sp"] == "demo-acme.web@sp"
    segments = {name: seg.netns for name, seg in plan.segments.items()}
    assert segments == {
        "inet": "demo-inet",
        "sp/core": "demo-sp.core",
        "acme/lan": "demo-acme.lan.sw",
        "sp/acme/lan": "demo-sp.acme.lan.sw",
        "globex/lan": "demo-globex.lan.sw",
        "sp/globex/lan": "demo-sp.globex.lan.sw",
    }


def test_every_namespace_has_the_lab_prefix_and_is_unique(plan: LabPlan) -> None:
    assert all(ns.startswith("demo-") for ns in plan.namespaces)
    assert len(plan.namespaces) == len(set(plan.namespaces)) == 25


def test_interface_names_fit_the_kernel_and_are_unique(plan: LabPlan) -> None:
    names = interface_names(plan)
    too_long = [n for n in names if len(n) > IFNAMSIZ]
    assert not too_long
    assert [n for n, c in Counter(names).items() if c > 1] == []
    assert all(n.startswith("demo-") for n in names)


@pytest.mark.parametrize("lab", ["a", "12345678", "zzzzzzzz"])
def test_longest_names_fit_in_a_large_lab(lab: str) -> None:
    big = build_plan(lab, parse_topology(generated(10, 10)))
    names = interface_names(big)
    assert max(len(n) for n in names) <= IFNAMSIZ
    assert len(names) == len(set(names))
    assert len(big.namespaces) == len(set(big.namespaces))
    assert sum(1 for n in big.nodes.values() if n.kind is NodeKind.VM) == 100


def test_plan_is_deterministic() -> None:
    first = build_plan("demo", load_topology())
    second = build_plan("demo", load_topology())
    assert first == second
    assert interface_names(first) == interface_names(second)
    assert first.namespaces == second.namespaces
    assert first.nft_rulesets == second.nft_rulesets


@pytest.mark.parametrize(("a", "b"), [("demo", "demo2"), ("t", "t1"), ("a1", "a12"), ("x", "y")])
def test_two_labs_share_no_name(a: str, b: str) -> None:
    topology = load_topology()
    first, second = build_plan(a, topology), build_plan(b, topology)
    assert not set(first.namespaces) & set(second.namespaces)
    assert not set(interface_names(first)) & set(interface_names(second))
    # and the prefix of one lab never matches a name of the other (cleanup finds by prefix)
    for mine, other in ((first, second), (second, first)):
        prefix = lab_prefix(mine.lab)
        assert not [n for n in other.namespaces + interface_names(other) if n.startswith(prefix)]


def test_namespaces_unique_for_any_valid_topology() -> None:
    text = """
internet: {subnet: 198.51.100.0/24}
provider: {gateway: 198.51.100.10, core_subnet: 10.99.0.0/24, core_gateway: 10.99.0.1}
tenants:
  nea:
    edge: 198.51.100.11
    networks:
      x:
        subnet: 192.168.10.0/24
        gateway: 192.168.10.1
        nea: {address: 192.168.10.250, sp_address: 192.168.10.251,
              sp_core_address: 10.99.0.11, tunnel_port: 6180}
  x:
    edge: 198.51.100.12
    networks:
      sw:
        subnet: 192.168.20.0/24
        gateway: 192.168.20.1
        nea: {address: 192.168.20.250, sp_address: 192.168.20.251,
              sp_core_address: 10.99.0.12, tunnel_port: 6181}
"""
    try:
        topology = parse_topology(text)
    except TopologyError:
        return  # refusing the topology is a fine fix too
    plan = build_plan("demo", topology)
    assert len(plan.namespaces) == len(set(plan.namespaces))


# ----- overlapping tenants, replicas, addresses --------------------------------------


def test_overlapping_tenants_are_kept_apart(plan: LabPlan) -> None:
    acme, globex = plan.segments["acme/lan"], plan.segments["globex/lan"]
    assert acme.subnet == globex.subnet == "192.168.10.0/24"
    assert acme.netns != globex.netns
    assert acme.bridge != globex.bridge
    cloud_a, cloud_g = plan.segments["sp/acme/lan"], plan.segments["sp/globex/lan"]
    assert len({acme.netns, globex.netns, cloud_a.netns, cloud_g.netns}) == 4
    assert len({acme.bridge, globex.bridge, cloud_a.bridge, cloud_g.bridge}) == 4
    web_a, web_g = plan.nodes["acme/web"], plan.nodes["globex/web"]
    assert web_a.address == web_g.address == "192.168.10.11"
    assert web_a.netns != web_g.netns
    assert web_a.port.segment == "acme/lan" and web_g.port.segment == "globex/lan"


def test_replicas_start_with_their_link_down(plan: LabPlan) -> None:
    replicas = [n for n in plan.nodes.values() if n.kind is NodeKind.REPLICA]
    assert {r.name for r in replicas} == {
        "acme/web@sp", "acme/db@sp", "acme/app@sp", "globex/web@sp", "globex/erp@sp",
    }
    for replica in replicas:
        assert replica.link_up_at_start is False
        source = plan.nodes[replica.name.removesuffix("@sp")]
        assert replica.address == source.address
        assert replica.port.segment == f"sp/{replica.tenant}/{replica.network}"
    others = [n for n in plan.nodes.values() if n.kind is not NodeKind.REPLICA]
    assert all(n.link_up_at_start for n in others)


def test_addresses_of_the_default_lab(plan: LabPlan) -> None:
    def addresses(node: str) -> list[str]:
        return [a for p in plan.nodes[node].ports for a in p.addresses]

    assert addresses("sp/cgw") == ["198.51.100.10/24", "10.99.0.1/24"]
    assert addresses("acme/edge") == ["198.51.100.11/24", "192.168.10.1/24"]
    assert addresses("globex/edge") == ["198.51.100.12/24", "192.168.10.1/24"]
    assert addresses("acme/nea-lan") == ["192.168.10.250/24"]
    assert addresses("sp/nea-acme-lan") == ["10.99.0.11/24", "192.168.10.251/24"]
    assert addresses("sp/nea-globex-lan") == ["10.99.0.12/24", "192.168.10.251/24"]
    assert addresses("globex/erp") == ["192.168.10.20/24"]
    assert addresses("acme/kiosk") == []  # from DHCP
    assert plan.nodes["sp/nea-acme-lan"].ports[1].no_prefix_route is True
    (dhcp,) = plan.dhcp_servers
    assert (dhcp.tenant, dhcp.network, dhcp.netns) == ("acme", "lan", "demo-acme.edge")
    assert (dhcp.range_start, dhcp.range_end, dhcp.router) == (
        "192.168.10.100", "192.168.10.199", "192.168.10.1",
    )
    assert dhcp.interface == plan.nodes["acme/edge"].ports[1].name


def test_tunnel_ports(plan: LabPlan) -> None:
    acme, globex = plan.tunnel_for("acme", "lan"), plan.tunnel_for("globex", "lan")
    assert (acme.tunnel_port, acme.listen_port, acme.endpoint) == (6180, 1195,
                                                                   "198.51.100.10:6180")
    assert (globex.tunnel_port, globex.listen_port, globex.endpoint) == (6181, 1195,
                                                                         "198.51.100.10:6181")
    assert (acme.tenant_nea, acme.sp_nea) == ("acme/nea-lan", "sp/nea-acme-lan")
    assert acme.tenant_wg != acme.sp_wg != globex.tenant_wg


# ----- nftables ------------------------------------------------------------------------


def chains(ruleset: str) -> dict[str, list[str]]:
    """chain name -> its lines (the 'type ... policy' line first), whitespace-normalized."""
    found: dict[str, list[str]] = {}
    current = None
    for raw in ruleset.splitlines():
        line = " ".join(raw.split())
        if m := re.fullmatch(r"chain (\w+) \{", line):
            current = found.setdefault(m.group(1), [])
        elif line == "}":
            current = None
        elif current is not None and line:
            current.append(line)
    return found


def test_gateway_forwards_only_the_tunnel_ports_and_replication(plan: LabPlan) -> None:
    gw = plan.nodes["sp/cgw"]
    inet, core = gw.ports[0].name, gw.ports[1].name
    ruleset = plan.nft_rulesets["demo-sp.cgw"]
    assert ruleset.startswith("table ip netlab {")
    c = chains(ruleset)
    assert c["forward"] == [
        "type filter hook forward priority 0; policy drop;",
        "ct state established,related accept",
        f'iifname "{inet}" oifname "{core}" ip daddr 10.99.0.11 udp dport 1195 '
        'ct status dnat accept comment "tunnel acme/lan"',
        f'iifname "{inet}" oifname "{core}" ip daddr 10.99.0.12 udp dport 1195 '
        'ct status dnat accept comment "tunnel globex/lan"',
        f'iifname "{inet}" oifname "{core}" ip daddr 10.99.0.254 tcp dport 6180 '
        'ct status dnat accept comment "replication"',
        # inert unless a cloud failover plan's own table marks packets (netlab.plan)
        'meta mark 0x6e6c0001 accept comment "cloud failover plan"',
    ]
    assert c["prerouting"] == [
        "type nat hook prerouting priority -100; policy accept;",
        f'iifname "{inet}" ip daddr 198.51.100.10 udp dport 6180 '
        'dnat ip to 10.99.0.11:1195 comment "tunnel acme/lan"',
        f'iifname "{inet}" ip daddr 198.51.100.10 udp dport 6181 '
        'dnat ip to 10.99.0.12:1195 comment "tunnel globex/lan"',
        f'iifname "{inet}" ip daddr 198.51.100.10 tcp dport 6180 '
        'dnat ip to 10.99.0.254:6180 comment "replication"',
    ]
    assert c["input"][0] == "type filter hook input priority 0; policy drop;"


def test_edge_masquerades_and_drops_inbound(plan: LabPlan) -> None:
    edge = plan.nodes["acme/edge"]
    c = chains(plan.nft_rulesets["demo-acme.edge"])
    assert c["forward"][0] == "type filter hook forward priority 0; policy drop;"
    assert f'iifname {{ "{edge.ports[1].name}" }} accept' in c["forward"]
    assert c["postrouting"][1:] == [f'oifname "{edge.ports[0].name}" masquerade']


def test_neas_forward_only_through_the_tunnel(plan: LabPlan) -> None:
    tunnel = plan.tunnel_for("acme", "lan")
    tenant = chains(plan.nft_rulesets["demo-acme.nea-lan"])
    assert tenant["forward"] == [
        "type filter hook forward priority 0; policy drop;",
        f'iifname "{tunnel.tenant_lan_port}" oifname "{tunnel.tenant_wg}" accept',
        f'iifname "{tunnel.tenant_wg}" oifname "{tunnel.tenant_lan_port}" accept',
    ]
    sp = chains(plan.nft_rulesets["demo-sp.acme.lan.nea"])
    assert sp["forward"][0].endswith("policy drop;")
    assert f'iifname "{tunnel.sp_cloud_port}" drop' in sp["input"]


def test_every_filtering_node_has_a_ruleset(plan: LabPlan) -> None:
    kinds = {NodeKind.GATEWAY, NodeKind.EDGE, NodeKind.TENANT_NEA, NodeKind.SP_NEA}
    expected = {n.netns for n in plan.nodes.values() if n.kind in kinds}
    assert set(plan.nft_rulesets) == expected


# ----- lab names --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["demo-2", "toolongname", "", "Demo", "a b", "a/b", "x.y",
                                 "../x", "a;b"])
def test_bad_lab_names_are_refused(bad: str) -> None:
    with pytest.raises(TopologyError) as caught:
        check_lab_name(bad)
    message = str(caught.value)
    assert repr(bad) in message
    assert "1-8 lowercase letters or digits" in message
    with pytest.raises(TopologyError):
        build_plan(bad, load_topology())


@pytest.mark.parametrize("good", ["a", "demo", "t0a1b2c", "12345678"])
def test_good_lab_names(good: str) -> None:
    assert check_lab_name(good) == good
    assert lab_prefix(good) == f"{good}-"


def test_lab_name_pairs_never_prefix_each_other() -> None:
    names = ["a", "a1", "a12", "ab", "b"]
    for x, y in itertools.permutations(names, 2):
        assert not lab_prefix(y).startswith(lab_prefix(x))


def test_tcp_through_the_tunnel_is_clamped_to_fit_without_fragments(plan: LabPlan) -> None:
    tunnel = plan.tunnel_for("acme", "lan")
    for netns, wg in (("demo-acme.nea-lan", tunnel.tenant_wg),
                      ("demo-sp.acme.lan.nea", tunnel.sp_wg)):
        clamp = chains(plan.nft_rulesets[netns])["clamp"]
        assert f'oifname "{wg}" tcp flags syn tcp option maxseg size set 1380' in clamp
