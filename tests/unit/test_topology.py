"""The topology model: the default lab loads, and each broken topology is refused with a
message that names the exact field path and the reason (no root needed).

Broken topologies are the default text with one small edit, so each case shows
exactly what a user would have typed wrong.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from netlab.errors import TopologyError
from netlab.topology import load_topology, parse_topology
from netlab.topology.loader import default_topology_text
from netlab.topology.model import node_names

DEFAULT = default_topology_text()


def edited(old: str, new: str, text: str = DEFAULT) -> str:
    """The default topology with the first `old` replaced by `new` (which must be there)."""
    assert old in text, f"the default topology no longer contains {old!r}: update the test"
    return text.replace(old, new, 1)


def refused(text: str) -> str:
    with pytest.raises(TopologyError) as caught:
        parse_topology(text, source="broken.yaml")
    message = str(caught.value)
    assert "\n" not in message, "a topology error is one line"
    assert message.startswith("broken.yaml:"), "the message names the file"
    return message


# ----- the default lab ----------------------------------------------------------


def test_default_topology_loads_as_designed() -> None:
    topology = load_topology()
    assert topology.internet.subnet == IPv4Network("198.51.100.0/24")
    assert topology.provider.gateway == IPv4Address("198.51.100.10")
    assert topology.provider.core_subnet == IPv4Network("10.99.0.0/24")
    assert topology.provider.core_gateway == IPv4Address("10.99.0.1")
    assert topology.provider.nea_listen_port == 1195
    assert list(topology.tenants) == ["acme", "globex"]
    acme, globex = topology.tenants["acme"], topology.tenants["globex"]
    assert acme.edge == IPv4Address("198.51.100.11")
    assert globex.edge == IPv4Address("198.51.100.12")
    # the same subnet on purpose: tenants are isolated from each other
    assert acme.networks["lan"].subnet == globex.networks["lan"].subnet
    assert acme.networks["lan"].nea.tunnel_port == 6180
    assert globex.networks["lan"].nea.tunnel_port == 6181
    assert {n: str(v.address) for n, v in acme.vms.items() if not v.dhcp} == {
        "web": "192.168.10.11", "db": "192.168.10.12", "app": "192.168.10.13",
    }
    assert acme.vms["kiosk"].dhcp and acme.vms["kiosk"].address is None
    assert {n: str(v.address) for n, v in globex.vms.items()} == {
        "web": "192.168.10.11", "erp": "192.168.10.20",
    }
    assert [t for t, _, _ in topology.static_vms()].count("acme") == 3


def test_default_topology_file_and_text_agree(tmp_path: Path) -> None:
    path = tmp_path / "copy.yaml"
    path.write_text(DEFAULT)
    assert load_topology(path) == load_topology()


def test_node_names_are_those_of_the_design() -> None:
    names = node_names(load_topology())
    for name in ("sp/cgw", "acme/edge", "acme/web", "acme/nea-lan", "acme/web@sp",
                 "sp/nea-acme-lan", "globex/erp@sp", "sp/nea-globex-lan", "acme/kiosk"):
        assert name in names
    assert "acme/kiosk@sp" not in names  # a DHCP VM has no replica
    assert len(names) == len(set(names))


# ----- broken topologies ----------------------------------------------------------

# (id, old text, new text, expected substrings of the message: field path first)
BROKEN = [
    ("bad-cidr-prefix", "subnet: 192.168.10.0/24", "subnet: 192.168.10.0/33",
     ["tenants.acme.networks.lan.subnet:", "not a valid IPv4 network", "192.168.10.0/33"]),
    ("cidr-host-bits", "subnet: 192.168.10.0/24", "subnet: 192.168.10.1/24",
     ["tenants.acme.networks.lan.subnet:", "not a valid IPv4 network"]),
    ("bad-internet-cidr", "subnet: 198.51.100.0/24", "subnet: 198.51.100.0/99",
     ["internet.subnet:", "not a valid IPv4 network"]),
    ("address-outside-subnet", "web: {network: lan, address: 192.168.10.11}",
     "web: {network: lan, address: 192.168.11.11}",
     ["tenants.acme.vms.web.address:", "192.168.11.11 is outside network acme/lan"]),
    ("edge-outside-internet", "edge: 198.51.100.11", "edge: 198.51.101.11",
     ["tenants.acme.edge:", "outside the internet segment"]),
    ("invalid-address", "web: {network: lan, address: 192.168.10.11}",
     "web: {network: lan, address: 192.168.10.300}",
     ["tenants.acme.vms.web.address:", "not a valid IPv4 address"]),
    ("broadcast-address", "web: {network: lan, address: 192.168.10.11}",
     "web: {network: lan, address: 192.168.10.255}",
     ["tenants.acme.vms.web.address:", "network or broadcast address"]),
    ("duplicate-address", "db: {network: lan, address: 192.168.10.12}",
     "db: {network: lan, address: 192.168.10.11}",
     ["tenants.acme.vms.db.address:", "already used by tenants.acme.vms.web.address"]),
    ("vm-address-of-nea", "db: {network: lan, address: 192.168.10.12}",
     "db: {network: lan, address: 192.168.10.250}",
     ["tenants.acme.vms.db.address:", "already used by tenants.acme.networks.lan.nea.address"]),
    ("duplicate-sp-core-address", "sp_core_address: 10.99.0.12", "sp_core_address: 10.99.0.11",
     ["tenants.globex.networks.lan.nea.sp_core_address:", "already used"]),
    ("duplicate-edge-address", "edge: 198.51.100.12", "edge: 198.51.100.11",
     ["tenants.globex.edge:", "already used by tenants.acme.edge"]),
    ("vm-named-edge", "app: {network: lan", "edge: {network: lan",
     ["tenants.acme.vms.edge:", "reserved"]),
    ("vm-named-like-nea", "app: {network: lan", "nea-lan: {network: lan",
     ["tenants.acme.vms.nea-lan:", "reserved"]),
    ("tenant-named-sp", "  globex:\n", "  sp:\n", ["tenants.sp:", "reserved"]),
    ("unknown-network", "web: {network: lan,", "web: {network: lna,",
     ["tenants.acme.vms.web.network:", "unknown network 'lna'", "has: lan"]),
    ("tunnel-port-twice", "tunnel_port: 6181", "tunnel_port: 6180",
     ["tenants.globex.networks.lan.nea.tunnel_port:", "6180 is already the tunnel port of "
      "acme/lan"]),
    ("name-16-chars", "  acme:\n", "  acmeacmeacmeacme:\n",
     ["tenants.acmeacmeacmeacme:", "1-15 characters"]),
    ("name-with-slash", "app: {network", "we/b: {network",
     ["tenants.acme.vms.we/b:", "'we/b' must be 1-15 characters of lowercase letters"]),
    ("name-dot-dot", "app: {network", "'..': {network",
     ["tenants.acme.vms...:", "'..' must be 1-15 characters"]),
    ("name-shell-semicolon", "app: {network", "'app;reboot': {network",
     ["tenants.acme.vms.app;reboot:", "must be 1-15 characters"]),
    ("name-shell-subst", "app: {network", "'$(id)': {network",
     ["tenants.acme.vms.$(id):", "must be 1-15 characters"]),
    ("name-uppercase", "app: {network", "App: {network",
     ["tenants.acme.vms.App:", "lowercase"]),
    ("unknown-key", "retention: 3", "retenton: 3",
     ["tenants.acme.replication.retenton:", "unknown field (a typo?)"]),
    # a typo in a required key: the missing field is reported first
    ("typo-in-required-key", "tunnel_port: 6180", "tunel_port: 6180",
     ["tenants.acme.networks.lan.nea.tunnel_port:", "Field required (and 1 more)"]),
    ("bad-yaml", "web: {network: lan, address: 192.168.10.11}",
     "web: {network: lan, address: 192.168.10.11",
     ["line 28", "not valid YAML"]),
    ("static-vm-without-address", "db: {network: lan, address: 192.168.10.12}",
     "db: {network: lan}",
     ["tenants.acme.vms.db.address:", "a static VM needs an address"]),
    ("dhcp-vm-with-address", "kiosk: {network: lan, dhcp: true}",
     "kiosk: {network: lan, dhcp: true, address: 192.168.10.150}",
     ["tenants.acme.vms.kiosk.address:", "a DHCP VM gets its address from the edge"]),
    ("dhcp-range-holds-vm", "dhcp_range: [192.168.10.100, 192.168.10.199]",
     "dhcp_range: [192.168.10.10, 192.168.10.199]",
     ["tenants.acme.vms.web.address:", "192.168.10.11 is inside the DHCP range"]),
    ("dhcp-range-holds-nea", "dhcp_range: [192.168.10.100, 192.168.10.199]",
     "dhcp_range: [192.168.10.100, 192.168.10.250]",
     ["tenants.acme.networks.lan.dhcp_range:", "contains 192.168.10.250 of "
      "tenants.acme.networks.lan.nea.address"]),
    ("dhcp-range-reversed", "dhcp_range: [192.168.10.100, 192.168.10.199]",
     "dhcp_range: [192.168.10.199, 192.168.10.100]",
     ["tenants.acme.networks.lan.dhcp_range:", "comes after"]),
    ("retention-word", "retention: 3", "retention: three",
     ["tenants.acme.replication.retention:", "valid integer", "'three'"]),
    ("retention-fraction", "retention: 3", "retention: 3.5",
     ["tenants.acme.replication.retention:", "valid integer"]),
    ("retention-zero", "retention: 3", "retention: 0",
     ["tenants.acme.replication.retention:", "greater than or equal to 1"]),
    ("negative-port", "tunnel_port: 6180", "tunnel_port: -1",
     ["tenants.acme.networks.lan.nea.tunnel_port:", "greater than or equal to 1", "-1"]),
    ("huge-port", "tunnel_port: 6180", "tunnel_port: 70000",
     ["tenants.acme.networks.lan.nea.tunnel_port:", "less than or equal to 65535"]),
    ("huge-listen-port", "nea_listen_port: 1195", "nea_listen_port: 99999",
     ["provider.nea_listen_port:", "less than or equal to 65535"]),
    ("core-gateway-outside-core", "core_subnet: 10.99.0.0/24", "core_subnet: 10.98.0.0/24",
     ["provider.core_gateway:", "outside the SP core network"]),
]


@pytest.mark.parametrize(("old", "new", "expected"), [c[1:] for c in BROKEN],
                         ids=[c[0] for c in BROKEN])
def test_broken_topology_names_field_and_reason(old: str, new: str, expected: list[str]) -> None:
    message = refused(edited(old, new))
    # the field path comes right after the source, before the reason
    assert message.startswith(f"broken.yaml: {expected[0]}"), message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_core_overlapping_internet_is_refused() -> None:
    text = edited("core_subnet: 10.99.0.0/24", "core_subnet: 198.51.100.128/25")
    text = edited("core_gateway: 10.99.0.1", "core_gateway: 198.51.100.129", text)
    message = refused(text)
    assert message.startswith("broken.yaml: provider.core_subnet:"), message
    assert "overlaps the internet segment" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected a mapping"),
        ("- a\n- b\n", "expected a mapping"),
        ("just words", "expected a mapping"),
        ("internet: {subnet: 198.51.100.0/24}\n", "provider: Field required (and 1 more)"),
        ("{unclosed: [1, 2}\n", "not valid YAML"),
    ],
    ids=["empty", "list", "scalar", "missing-sections", "bad-flow"],
)
def test_not_a_topology_at_all(text: str, expected: str) -> None:
    assert expected in refused(text)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="no such topology file"):
        load_topology(tmp_path / "absent.yaml")
    with pytest.raises(TopologyError, match="cannot read it"):
        load_topology(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TopologyError, match="cannot read it"):
        load_topology(binary)


def test_duplicate_vm_key_is_refused() -> None:
    text = edited(
        "      db: {network: lan, address: 192.168.10.12}\n",
        "      web: {network: lan, address: 192.168.10.14}\n"
        "      db: {network: lan, address: 192.168.10.12}\n",
    )
    message = refused(text)
    assert "tenants.acme.vms.web" in message


def test_boolean_retention_is_refused() -> None:
    assert "tenants.acme.replication.retention" in refused(
        edited("retention: 3", "retention: true")
    )
