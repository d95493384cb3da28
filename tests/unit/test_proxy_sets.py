"""Proxied sets as prefixes with exceptions, and the NEA pair's plan of them (no root)."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest

from netlab.errors import TopologyError
from netlab.nea import gateway_at_sp, plan_sets, replicas_at_sp
from netlab.plan import build_plan
from netlab.proxyarp.sets import MAX_PREFIXES, AddressSet
from netlab.topology import parse_topology


def packed(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def members(spec: AddressSet, *texts: str) -> list[bool]:
    return [packed(t) in spec for t in texts]


@pytest.mark.parametrize(
    ("prefix", "inside", "outside"),
    [
        ("10.0.0.0/8", ["10.0.0.1", "10.128.7.9", "10.255.255.254"],
         ["10.0.0.0", "10.255.255.255", "11.0.0.1", "9.255.255.254"]),
        ("172.16.0.0/16", ["172.16.0.1", "172.16.255.200", "172.16.128.0"],
         ["172.16.0.0", "172.16.255.255", "172.17.0.1"]),
        ("192.0.2.4/30", ["192.0.2.5", "192.0.2.6"],
         ["192.0.2.4", "192.0.2.7", "192.0.2.8", "192.0.2.3"]),
        ("192.0.2.4/31", ["192.0.2.4", "192.0.2.5"], ["192.0.2.6", "192.0.2.3"]),
        ("192.0.2.9/32", ["192.0.2.9"], ["192.0.2.8", "192.0.2.10"]),
    ],
)
def test_a_prefix_holds_its_hosts_only(prefix: str, inside: list[str], outside: list[str]) -> None:
    spec = AddressSet.from_spec([prefix])
    assert members(spec, *inside) == [True] * len(inside)
    assert members(spec, *outside) == [False] * len(outside)


@pytest.mark.parametrize(("prefix", "hosts"), [("10.0.0.0/8", 2**24 - 2),
                                               ("172.16.0.0/16", 2**16 - 2),
                                               ("192.0.2.4/30", 2)])
def test_size_is_computed_never_enumerated(prefix: str, hosts: int) -> None:
    network = ipaddress.IPv4Network(prefix)
    first = str(network.network_address + 1)
    spec = AddressSet.from_spec([prefix], exceptions=[first], addresses=["203.0.113.9"])
    assert spec.size() == hosts - 1 + 1
    # memory is the exceptions and addresses, whatever the prefix length
    assert len(spec.exceptions) + len(spec.addresses) == 2


def test_exceptions_win_over_the_prefix_and_addresses_over_exceptions() -> None:
    spec = AddressSet.from_spec(["10.1.0.0/16"], addresses=["10.2.0.5"],
                                exceptions=["10.1.0.251", "10.1.3.3"])
    assert members(spec, "10.1.0.251", "10.1.3.3", "10.1.3.4", "10.2.0.5") == [
        False, False, True, True]


def test_add_and_remove_keep_the_description_small() -> None:
    spec = AddressSet.from_spec(["10.1.0.0/16"])
    assert spec.remove([int(ipaddress.IPv4Address("10.1.2.3"))]) == [
        int(ipaddress.IPv4Address("10.1.2.3"))]
    assert packed("10.1.2.3") not in spec
    assert spec.exceptions == {int(ipaddress.IPv4Address("10.1.2.3"))}
    assert spec.remove([int(ipaddress.IPv4Address("10.1.2.3"))]) == []  # not a member
    spec.add([int(ipaddress.IPv4Address("10.1.2.3"))])
    assert packed("10.1.2.3") in spec and not spec.exceptions and not spec.addresses
    outside = int(ipaddress.IPv4Address("10.9.9.9"))
    assert spec.add([outside]) == [outside]
    assert spec.addresses == {outside}
    assert spec.add([outside]) == []
    spec.remove([outside])
    assert not spec.addresses and not spec.exceptions


@pytest.mark.parametrize("bad", ["10.1.0.1/16", "0.0.0.0/0", "10.0.0.0/7", "224.0.0.0/8",
                                 "nope", 7])
def test_bad_prefixes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        AddressSet.from_spec([bad])


def test_prefix_count_is_bounded() -> None:
    with pytest.raises(ValueError, match=str(MAX_PREFIXES)):
        AddressSet.from_spec([f"10.{i}.0.0/16" for i in range(MAX_PREFIXES + 1)])


def test_membership_ignores_anything_but_four_bytes() -> None:
    spec = AddressSet.from_spec(["10.0.0.0/8"])
    assert b"\x0a\x00\x00" not in spec
    assert "10.0.0.1" not in spec


# ----- the NEA pair's sets -------------------------------------------------------------


def topology(subnet: str, gateway: str, nea: tuple[str, str] | None, vms: dict[str, str]) -> str:
    lines = [
        "internet: {subnet: 198.51.100.0/24}",
        "provider: {gateway: 198.51.100.10, core_subnet: 172.31.0.0/24, core_gateway: 172.31.0.1}",
        "tenants:",
        "  t0:",
        "    edge: 198.51.100.11",
        "    networks:",
        "      lan:",
        f"        subnet: {subnet}",
        f"        gateway: {gateway}",
    ]
    if nea:
        lines.append(f"        nea: {{address: {nea[0]}, sp_address: {nea[1]}, "
                     "sp_core_address: 172.31.0.11, tunnel_port: 6180}")
    lines.append("    vms:")
    lines += [f"      {name}: {{network: lan, address: {address}}}"
              for name, address in vms.items()]
    return "\n".join(lines) + "\n"


def failed_over(*vms: str) -> dict:
    return {"replicas": {f"t0/{vm}": {"state": "Failover"} for vm in vms}}


@pytest.mark.parametrize(
    ("subnet", "gateway", "nea", "near", "far"),
    [
        ("10.0.0.0/8", "10.0.0.1", ("10.0.0.250", "10.0.0.251"), "10.0.0.11", "10.255.255.200"),
        ("10.1.0.0/16", "10.1.0.1", ("10.1.0.250", "10.1.0.251"), "10.1.0.11", "10.1.255.200"),
        ("192.0.2.0/29", "192.0.2.1", ("192.0.2.2", "192.0.2.3"), "192.0.2.4", "192.0.2.6"),
    ],
)
def test_large_and_small_networks_are_planned(subnet: str, gateway: str,
                                              nea: tuple[str, str], near: str, far: str) -> None:
    plan = build_plan("sz", parse_topology(topology(subnet, gateway, nea,
                                                    {"near": near, "far": far})))
    tunnel = plan.tunnels["t0/lan"]
    state = failed_over("near")
    assert replicas_at_sp(plan, state, tunnel) == [near]
    sets = plan_sets(tunnel, replicas_at_sp(plan, state, tunnel))
    sp = AddressSet.from_spec(sets["sp"].prefixes, sets["sp"].addresses, sets["sp"].exceptions)
    tenant = AddressSet.from_spec(sets["tenant"].prefixes, sets["tenant"].addresses,
                                  sets["tenant"].exceptions)
    # the SP NEA answers for production far away, never for the replica or itself
    assert members(sp, far, gateway, nea[0]) == [True, True, True]
    assert members(sp, near, nea[1]) == [False, False]
    assert members(tenant, near, far, gateway) == [True, False, False]
    assert sets["sp"].prefixes == (subnet,)
    assert sets["sp"].exceptions == tuple(sorted((near, nea[1]), key=ipaddress.IPv4Address))
    assert sp.size() == ipaddress.IPv4Network(subnet).num_addresses - 2 - 2


def test_a_30_network_is_accepted_and_too_small_for_an_nea_pair() -> None:
    plan = build_plan("sz", parse_topology(topology("192.0.2.4/30", "192.0.2.5", None,
                                                    {"only": "192.0.2.6"})))
    assert plan.nodes["t0/only"].address == "192.0.2.6"
    # gateway, tenant NEA and SP NEA need three host addresses; a /30 has two
    with pytest.raises(TopologyError, match="nea"):
        parse_topology(topology("192.0.2.4/30", "192.0.2.5", ("192.0.2.6", "192.0.2.7"),
                                {"only": "192.0.2.6"}))


def test_a_30_pair_set_excludes_the_replica_and_the_sp_nea() -> None:
    tunnel = SimpleNamespace(subnet="192.0.2.4/30", sp_nea_address="192.0.2.6",
                             gateway_address="192.0.2.5")
    sets = plan_sets(tunnel, ["192.0.2.5"])  # type: ignore[arg-type]
    sp = AddressSet.from_spec(sets["sp"].prefixes, exceptions=sets["sp"].exceptions)
    assert sp.size() == 0
    assert sets["tenant"].addresses == ("192.0.2.5",)


def test_the_gateway_leaves_the_sp_set_while_a_plan_gives_the_sp_its_role() -> None:
    plan = build_plan("sz", parse_topology(topology(
        "10.1.0.0/16", "10.1.0.1", ("10.1.0.250", "10.1.0.251"), {"a": "10.1.0.11"})))
    tunnel = plan.tunnels["t0/lan"]
    running = {"plans": {"t0": {"status": "running", "vms": ["t0/a"], "gateway_taken": True}}}
    assert gateway_at_sp(plan, running, tunnel)
    assert "10.1.0.1" in plan_sets(tunnel, [], True)["sp"].exceptions
    assert "10.1.0.1" not in plan_sets(tunnel, [], False)["sp"].exceptions
    undone = {"plans": {"t0": {"status": "running", "vms": ["t0/a"], "gateway_taken": False}}}
    assert not gateway_at_sp(plan, undone, tunnel)
    assert not gateway_at_sp(plan, {"plans": {"t0": {"status": "stopped"}}}, tunnel)
