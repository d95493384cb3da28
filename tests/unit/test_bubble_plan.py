"""Bubbles without root: masquerade addresses, names, checks in the topology, JUnit output."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from xml.etree import ElementTree

import pytest

from netlab.errors import PreconditionFailed, TopologyError
from netlab.orchestrator.bubble_plan import (
    Names,
    check_argv,
    check_bubble_name,
    check_label,
    check_verdict,
    checks_of,
    default_bubble_name,
    free_masquerade,
    free_slot,
    junit_xml,
    masquerade_address,
    masquerade_network,
    masquerade_subnet,
    proxy_address,
    proxy_mac,
    proxy_ruleset,
)
from netlab.topology import parse_topology
from netlab.topology.loader import default_topology_text
from netlab.topology.model import AppCheck, HttpCheck

DEFAULT = default_topology_text()
BASE = IPv4Network("172.18.0.0/16")
WEB = "web: {network: lan, address: 192.168.10.11}"
DB = "db: {network: lan, address: 192.168.10.12}"
WEB_CHECKS = ("web: {network: lan, address: 192.168.10.11, checks: [{ping: true}, {tcp: 80}, "
              "{http: {port: 80, path: /, contains: acme/web}}]}")


def edited(old: str, new: str, text: str = DEFAULT) -> str:
    assert old in text, f"the default topology no longer contains {old!r}"
    return text.replace(old, new, 1)


WITH_CHECKS = edited(WEB, WEB_CHECKS)


# ----- masquerade addresses ----------------------------------------------------------------


def test_production_address_keeps_its_host_bits_in_the_masquerade_prefix() -> None:
    assert masquerade_address(BASE, "192.168.10.11") == IPv4Address("172.18.10.11")
    assert masquerade_address(BASE, "192.168.200.7") == IPv4Address("172.18.200.7")
    assert masquerade_address(IPv4Network("10.77.5.0/24"), "192.168.10.11") == \
        IPv4Address("10.77.5.11")
    assert masquerade_subnet(BASE, IPv4Network("192.168.10.0/24")) == \
        IPv4Network("172.18.10.0/24")


def test_second_bubble_takes_the_next_free_prefix() -> None:
    assert masquerade_network(BASE, 1) == IPv4Network("172.19.0.0/16")
    assert free_masquerade(BASE, set(), []) == BASE
    assert free_masquerade(BASE, {BASE}, []) == IPv4Network("172.19.0.0/16")
    # a prefix a network of the lab overlaps is skipped
    assert free_masquerade(BASE, {BASE}, [IPv4Network("172.19.4.0/24")]) == \
        IPv4Network("172.20.0.0/16")
    with pytest.raises(PreconditionFailed, match="no free masquerade"):
        free_masquerade(BASE, {masquerade_network(BASE, i) for i in range(16)}, [])


def test_proxy_takes_the_highest_address_nothing_uses() -> None:
    topology = parse_topology(DEFAULT)
    net = topology.tenants["acme"].networks["lan"]
    vms = [v.address for v in topology.tenants["acme"].vms.values() if v.address]
    assert proxy_address(net, vms, set()) == IPv4Address("192.168.10.254")
    assert proxy_address(net, vms, {IPv4Address("192.168.10.254")}) == \
        IPv4Address("192.168.10.253")
    # the NEA addresses (.250, .251) are never taken
    taken = {IPv4Address(f"192.168.10.{n}") for n in (252, 253, 254)}
    assert proxy_address(net, vms, taken) == IPv4Address("192.168.10.249")


def test_proxy_mac_is_fixed_per_address_and_locally_administered() -> None:
    mac = proxy_mac("lab1", "acme/lan", "192.168.10.254")
    assert mac == proxy_mac("lab1", "acme/lan", "192.168.10.254")
    assert mac != proxy_mac("lab1", "acme/lan", "192.168.10.253")
    first = int(mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast


# ----- names ---------------------------------------------------------------------------------


def test_names_are_under_the_lab_prefix_and_fit_the_kernel() -> None:
    names = Names("abcdefgh", "b1", 9)
    assert names.vm_netns("acme/web") == "abcdefgh-bb.b1.acme.web"
    assert names.proxy_netns("acme", "lan") == "abcdefgh-bb.b1.acme.lan.proxy"
    assert names.bridge_netns("acme", "lan") == "abcdefgh-bb.b1.acme.lan.sw"
    longest = names.interface("x", 9999)
    assert longest == "abcdefgh-x99999" and len(longest) == 15
    # two bubbles (two slots) never share an interface name
    assert Names("lab1", "b1", 1).interface("x", 12) != Names("lab1", "b2", 2).interface("x", 2)
    with pytest.raises(ValueError):
        names.interface("v", 1)  # roles of the lab itself are not the bubble's
    with pytest.raises(ValueError):
        names.interface("x", 10000)


def test_bubble_namespaces_never_collide_with_a_tenant_named_bb() -> None:
    # tenant namespaces have at most two dots after the prefix; a bubble's have three or more
    names = Names("lab", "web", 1)
    tenant_like = {"lab-bb.web", "lab-bb.edge", "lab-bb.lan.sw", "lab-bb.nea-lan", "lab-bb.web@sp"}
    ours = {names.vm_netns("acme/web"), names.proxy_netns("acme", "lan"),
            names.bridge_netns("acme", "lan")}
    assert not ours & tenant_like
    assert all(n.count(".") >= 3 for n in ours)


def test_bubble_names_and_slots() -> None:
    assert check_bubble_name("b1") == "b1"
    for bad in ("", "B1", "1b", "a-b", "toolongname", "a.b"):
        with pytest.raises(PreconditionFailed):
            check_bubble_name(bad)
    assert default_bubble_name(set()) == "b1"
    assert default_bubble_name({"b1", "b3"}) == "b2"
    assert free_slot({1, 2}) == 3
    with pytest.raises(PreconditionFailed, match="9 bubbles"):
        free_slot(set(range(1, 10)))


# ----- topology: checks and masquerade -------------------------------------------------------


def test_checks_parse_from_the_topology() -> None:
    web = parse_topology(WITH_CHECKS).tenants["acme"].vms["web"]
    assert [check_label(c) for c in web.checks] == [
        "ping", "tcp 80", "http :80/ contains 'acme/web'"]
    app = parse_topology(DEFAULT).tenants["acme"].vms["app"]
    assert [check_label(c) for c in checks_of(app.checks)] == ["ping"]  # the default


@pytest.mark.parametrize("check, reason", [
    ("{ping: true, tcp: 80}", "exactly one of"),
    ("{}", "exactly one of"),
    ("{tcp: 0}", "greater than or equal to 1"),
    ("{http: {path: /}}", "contains"),
    ("{http: {path: 'no-slash', contains: x}}", "pattern"),
    ("{smtp: 25}", "smtp"),
])
def test_bad_checks_are_refused(check: str, reason: str) -> None:
    text = edited(DB, f"db: {{network: lan, address: 192.168.10.12, checks: [{check}]}}")
    with pytest.raises(TopologyError, match=reason):
        parse_topology(text, source="broken.yaml")


@pytest.mark.parametrize("prefix, reason", [
    ("192.168.0.0/16", "overlaps network acme/lan"),
    ("198.51.100.0/24", "overlaps the internet segment"),
    ("10.0.0.0/8", "overlaps the SP core network"),
])
def test_bad_masquerade_prefix_is_refused(prefix: str, reason: str) -> None:
    text = edited("masquerade: 172.18.0.0/16", f"masquerade: {prefix}")
    with pytest.raises(TopologyError, match=reason):
        parse_topology(text, source="broken.yaml")


def test_a_network_larger_than_the_masquerade_refuses_only_its_bubbles() -> None:
    # a /8 or /16 tenant network is a valid topology (issue of provider scale); only a
    # bubble of that tenant needs a masquerade network as large as its networks
    from netlab.orchestrator.bubble import _check_masquerade_fits

    topology = parse_topology(edited("masquerade: 172.18.0.0/16", "masquerade: 172.18.10.0/25"))
    with pytest.raises(PreconditionFailed, match=r"acme/lan .* larger than the masquerade"):
        _check_masquerade_fits(topology, "acme")


def test_masquerade_and_boot_timeout_are_configurable() -> None:
    text = edited("masquerade: 172.18.0.0/16", "masquerade: 10.200.0.0/16")
    text = text.replace("boot_timeout: 120", "boot_timeout: 30", 1)
    bubbles = parse_topology(text).bubbles
    assert bubbles.masquerade == IPv4Network("10.200.0.0/16")
    assert bubbles.boot_timeout == 30


# ----- checks: argv and verdicts ---------------------------------------------------------------


def test_check_commands_and_verdicts() -> None:
    http = AppCheck(http=HttpCheck(port=8080, path="/health", contains="ok"))
    assert check_argv(http, "192.168.10.11")[-1] == "http://192.168.10.11:8080/health"
    assert check_verdict(http, 0, "all ok") is None
    assert check_verdict(http, 0, "error") == "the page does not contain 'ok'"
    assert "curl exit status 7" in (check_verdict(http, 7, "") or "")
    tcp = AppCheck(tcp=5432)
    argv = check_argv(tcp, "192.168.10.12")
    assert argv[-2:] == ["192.168.10.12", "5432"]  # arguments, never shell text
    assert check_verdict(tcp, 1, "") == "port 5432 does not accept connections"
    assert check_verdict(AppCheck(ping=True), 0, "") is None


def test_proxy_ruleset_translates_each_vm_and_forwards_nothing_the_bubble_starts() -> None:
    rules = proxy_ruleset("l-x12", "l-x11", "192.168.10.254",
                          [("acme/web", "172.18.10.11", "192.168.10.11")])
    assert 'iifname "l-x12" ip daddr 172.18.10.11 dnat ip to 192.168.10.11' in rules
    assert "snat ip to 192.168.10.254" in rules
    assert "policy drop;" in rules
    assert 'iifname "l-x11" counter name from_bubble drop' in rules


# ----- JUnit XML -------------------------------------------------------------------------------


def test_junit_has_one_testcase_per_check_and_failures_as_failure() -> None:
    rows = [
        {"vm": "acme/web", "check": "ping", "passed": True, "reason": None, "seconds": 0.01},
        {"vm": "acme/web", "check": "http :80/ contains '<acme & co>'", "passed": False,
         "reason": "no HTTP answer from port 80 (curl exit status 7)", "seconds": 0.02},
    ]
    root = ElementTree.fromstring(junit_xml("b1", rows))
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("acme/web", "ping"), ("acme/web", "http :80/ contains '<acme & co>'")]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and "curl exit status 7" in failure.get("message", "")
