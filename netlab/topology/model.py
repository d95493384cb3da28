"""The topology model: what a lab contains, validated, with no knowledge of Linux.

Structure (types, ranges, unknown keys) is checked by pydantic; the relations
between fields (an address inside its subnet, unique addresses and ports,
references that resolve) by `check_topology`, which reports the exact field
path, e.g. ``tenants.acme.vms.web.address``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from netlab.errors import TopologyError
from netlab.topology.units import parse_duration, parse_loss, parse_rate

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,13}[a-z0-9]$|^[a-z]$")
NAME_RULE = (
    "must be 1-15 characters of lowercase letters, digits and '-', starting with a letter "
    "and not ending with '-' (it becomes part of namespace names)"
)
RESERVED_TENANT_NAMES = {"sp", "inet"}
RESERVED_VM_NAMES = {"edge"}


def _check_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError(f"{value!r} {NAME_RULE}")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
# Strict: `true` is not a port and '6180' is a typo worth reporting, not a number.
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(ge=0, le=3600)]
# 30, "30s", "500ms", "2m": seconds as a float
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, le=86400)]
WanDelay = Annotated[float, BeforeValidator(lambda v: parse_duration(v, "ms")), Field(le=10)]


class _Strict(BaseModel):
    # A typo in a topology key must be an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Wan(_Strict):
    """Conditions of an internet link, applied with tc (see netlab.wan)."""

    rate: Annotated[int, BeforeValidator(parse_rate)] | None = None  # bit/s
    delay: WanDelay | None = None  # seconds
    jitter: WanDelay | None = None
    loss: Annotated[float, BeforeValidator(parse_loss)] | None = None  # percent


class Internet(_Strict):
    subnet: IPv4Network


class Provider(_Strict):
    gateway: IPv4Address = Field(description="public address of the cloud gateway sp/cgw")
    core_subnet: IPv4Network
    core_gateway: IPv4Address = Field(description="address of sp/cgw on the SP core network")
    nea_listen_port: Port = 1195
    replication_address: IPv4Address | None = Field(
        None, description="sp/repl, the replication receiver, on the SP core network "
        "(default: the last address of core_subnet)")
    wan: Wan | None = Field(None, description="the provider's uplink (sp/cgw to the internet)")


class NeaPair(_Strict):
    """The network extension appliances that stretch one tenant network into the cloud."""

    address: IPv4Address = Field(description="tenant NEA on the production network")
    sp_address: IPv4Address = Field(description="SP NEA on the cloud network")
    sp_core_address: IPv4Address = Field(description="SP NEA on the SP core network")
    tunnel_port: Port = Field(description="UDP port at the cloud gateway for this tunnel")


class Network(_Strict):
    subnet: IPv4Network
    gateway: IPv4Address = Field(description="the tenant edge router on this network")
    nea: NeaPair | None = None
    dhcp_range: tuple[IPv4Address, IPv4Address] | None = None


class VmReplication(_Strict):
    """A VM's own schedule and RPO goal, over its tenant's."""

    interval: Duration | None = Field(None, gt=0)
    rpo_goal: Duration | None = Field(None, gt=0)


class HttpCheck(_Strict):
    port: Port = 80
    path: str = Field("/", pattern=r"^/[^\s]*$", max_length=200)
    contains: str = Field(min_length=1, max_length=200)


class AppCheck(_Strict):
    """One application check of a VM in a bubble: exactly one of ping, tcp, http."""

    ping: StrictBool = False
    tcp: Port | None = None
    http: HttpCheck | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AppCheck:
        if sum((self.ping, self.tcp is not None, self.http is not None)) != 1:
            raise ValueError("a check is exactly one of 'ping: true', 'tcp: PORT' or "
                             "'http: {port, path, contains}'")
        return self


class Vm(_Strict):
    network: Name
    address: IPv4Address | None = None
    dhcp: StrictBool = False
    replication: VmReplication | None = None
    # run by `netlab bubble up/check` on the VM's copy; none: a ping, as a heartbeat
    checks: list[AppCheck] = Field(default_factory=list, max_length=20)


def _record_interval(seconds: float) -> float:
    if 0 < seconds < 0.1:
        raise ValueError("records more often than every 0.1 s would be a load test, not a "
                         "workload; use 0 for no records")
    return seconds


class BubbleSettings(_Strict):
    """Isolated test labs (`netlab bubble`): how production reaches them, how long VMs boot."""

    # a VM at 192.168.10.11 is reached from production at 172.18.10.11: the host bits of
    # this prefix are kept; a second bubble of the tenant takes the next prefix (172.19/16)
    masquerade: IPv4Network = IPv4Network("172.18.0.0/16")
    boot_timeout: Seconds = 120


class Replication(_Strict):
    retention: StrictInt = Field(3, ge=1, le=100, description="restore points kept per VM")
    interval: Duration | None = Field(
        None, gt=0, description="a replication job per VM this often while the lab is up")
    rpo_goal: Duration | None = Field(None, gt=0, description="status flags a VM over it")
    record_interval: Annotated[Duration, AfterValidator(_record_interval)] = Field(
        1.0, description="each static VM appends a record to its disk this often (0: never)")


class Tenant(_Strict):
    edge: IPv4Address = Field(description="public address of the tenant edge router")
    networks: dict[Name, Network] = Field(min_length=1)
    vms: dict[Name, Vm] = Field(default_factory=dict)
    replication: Replication = Field(default_factory=Replication)
    wan: Wan | None = Field(None, description="the edge's internet link")


class PlanStep(_Strict):
    """One VM of a cloud failover plan, and how long to wait after starting it."""

    vm: Name
    delay: Seconds = 0


class PublishedEndpoint(_Strict):
    """A replica's service published at a provider public address during a plan."""

    vm: Name
    port: Port
    public: IPv4Address
    public_port: Port | None = None  # default: the same as port
    protocol: Literal["tcp", "udp"] = "tcp"


class FailoverPlan(_Strict):
    """Full site failover of one tenant (Veeam's cloud failover plan)."""

    steps: list[PlanStep] = Field(min_length=1)
    publish: list[PublishedEndpoint] = Field(default_factory=list)
    snat_address: IPv4Address | None = Field(
        None, description="provider public address the replicas leave with"
    )
    max_parallel: StrictInt = Field(10, ge=1, le=100)
    undo_batch_size: StrictInt = Field(5, ge=1, le=100)
    undo_batch_pause: Seconds = 10


class Expectation(_Strict):
    exit_code: StrictInt | None = 0
    contains: str | None = None
    not_contains: str | None = None


class ValidateTest(_Strict):
    """A named check of the `validate:` section, run by `netlab validate`."""

    name: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=1000)
    nodes: list[str] = Field(min_length=1, max_length=1000)
    command: str | Annotated[list[str], Field(max_length=100)] = Field(max_length=4096)
    expect: Expectation = Field(default_factory=Expectation)
    retry: StrictInt = Field(0, ge=0, le=100)
    wait: Seconds = 1
    pass_message: str = Field("", max_length=1000)
    fail_message: str = Field("", max_length=1000)


class Topology(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field("lab", max_length=200)
    internet: Internet
    provider: Provider
    tenants: dict[Name, Tenant] = Field(min_length=1)
    failover_plans: dict[Name, FailoverPlan] = Field(default_factory=dict)
    # "validate" would shadow pydantic's BaseModel.validate: keep it as the YAML key only
    validate_tests: list[ValidateTest] = Field(default_factory=list, alias="validate")
    bubbles: BubbleSettings = Field(default_factory=BubbleSettings)

    def static_vms(self) -> Iterator[tuple[str, str, Vm]]:
        """(tenant, vm, model) of every VM with a static address, in file order."""
        for tenant_name, tenant in self.tenants.items():
            for vm_name, vm in tenant.vms.items():
                if not vm.dhcp:
                    yield tenant_name, vm_name, vm


def replication_address(provider: Provider) -> IPv4Address:
    """Where sp/repl, the replication receiver, sits on the SP core network."""
    if provider.replication_address is not None:
        return provider.replication_address
    return provider.core_subnet.broadcast_address - 1


def node_names(topology: Topology) -> list[str]:
    """Every node name a user can type, in a stable order (see netlab.plan for the scheme)."""
    names = ["sp/cgw", "sp/repl"]
    for tenant_name, tenant in topology.tenants.items():
        names.append(f"{tenant_name}/edge")
        for net_name, net in tenant.networks.items():
            if net.nea is not None:
                names.append(f"{tenant_name}/nea-{net_name}")
                names.append(f"sp/nea-{tenant_name}-{net_name}")
        for vm_name, vm in tenant.vms.items():
            names.append(f"{tenant_name}/{vm_name}")
            if not vm.dhcp:
                names.append(f"{tenant_name}/{vm_name}@sp")
    return names


class _AddressBook:
    """Addresses already taken on one segment, to report the first holder of a duplicate."""

    def __init__(self, segment: str, subnet: IPv4Network) -> None:
        self.segment = segment
        self.subnet = subnet
        self.holders: dict[IPv4Address, str] = {}

    def take(self, address: IPv4Address, field: str) -> None:
        if address not in self.subnet:
            raise TopologyError(f"{field}: {address} is outside {self.segment} ({self.subnet})")
        if self.subnet.prefixlen < 31 and address in (
            self.subnet.network_address,
            self.subnet.broadcast_address,
        ):
            raise TopologyError(
                f"{field}: {address} is the network or broadcast address of {self.subnet}"
            )
        if address in self.holders:
            raise TopologyError(
                f"{field}: {address} is already used by {self.holders[address]} on {self.segment}"
            )
        self.holders[address] = field


def check_topology(topology: Topology) -> Topology:
    """Check every relation between fields; raise TopologyError naming the field."""
    internet = _AddressBook("the internet segment", topology.internet.subnet)
    internet.take(topology.provider.gateway, "provider.gateway")
    core = _AddressBook("the SP core network", topology.provider.core_subnet)
    core.take(topology.provider.core_gateway, "provider.core_gateway")
    core.take(replication_address(topology.provider), "provider.replication_address")
    _check_wan(topology.provider.wan, "provider.wan")
    if topology.internet.subnet.overlaps(topology.provider.core_subnet):
        raise TopologyError(
            f"provider.core_subnet: {topology.provider.core_subnet} overlaps the internet "
            f"segment {topology.internet.subnet}"
        )
    tunnel_ports: dict[int, str] = {}
    for tenant_name, tenant in topology.tenants.items():
        where = f"tenants.{tenant_name}"
        if tenant_name in RESERVED_TENANT_NAMES:
            raise TopologyError(f"{where}: the tenant name {tenant_name!r} is reserved")
        internet.take(tenant.edge, f"{where}.edge")
        _check_wan(tenant.wan, f"{where}.wan")
        books = _check_networks(topology, tenant_name, tenant, core, tunnel_ports)
        _check_vms(tenant_name, tenant, books)
    names = node_names(topology)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise TopologyError(f"tenants: two nodes would both be named {name!r}; rename one")
        seen.add(name)
    _check_failover_plans(topology, internet)
    _check_masquerade(topology)
    for index, test in enumerate(topology.validate_tests):
        for node in test.nodes:
            if node not in seen:
                raise TopologyError(
                    f"validate.{index}.nodes: unknown node {node!r} in test {test.name!r}"
                )
    return topology


def _check_wan(wan: Wan | None, where: str) -> None:
    if wan is not None and wan.jitter and not wan.delay:
        raise TopologyError(f"{where}.jitter: jitter varies a delay; set {where}.delay too")


def _check_masquerade(topology: Topology) -> None:
    masquerade = topology.bubbles.masquerade
    outside = [("the internet segment", topology.internet.subnet),
               ("the SP core network", topology.provider.core_subnet)]
    for tenant_name, tenant in topology.tenants.items():
        for net_name, net in tenant.networks.items():
            label = f"network {tenant_name}/{net_name}"
            outside.append((label, net.subnet))
    for label, subnet in outside:
        if subnet.overlaps(masquerade):
            raise TopologyError(f"bubbles.masquerade: {masquerade} overlaps {label} ({subnet})")


def _check_failover_plans(topology: Topology, internet: _AddressBook) -> None:
    public_ports: set[tuple[IPv4Address, int, str]] = set()
    for tenant_name, plan in topology.failover_plans.items():
        where = f"failover_plans.{tenant_name}"
        tenant = topology.tenants.get(tenant_name)
        if tenant is None:
            raise TopologyError(f"{where}: unknown tenant {tenant_name!r}")
        seen: set[str] = set()
        for index, step in enumerate(plan.steps):
            vm = tenant.vms.get(step.vm)
            if vm is None:
                raise TopologyError(f"{where}.steps.{index}.vm: tenant {tenant_name} has no "
                                    f"VM {step.vm!r}")
            if vm.dhcp:
                raise TopologyError(f"{where}.steps.{index}.vm: {step.vm} is a DHCP VM and has "
                                    "no replica")
            if tenant.networks[vm.network].nea is None:
                raise TopologyError(f"{where}.steps.{index}.vm: network {vm.network} of "
                                    f"{step.vm} has no NEA pair to act as the site's gateway")
            if step.vm in seen:
                raise TopologyError(f"{where}.steps.{index}.vm: {step.vm} is in the plan twice")
            seen.add(step.vm)
        if plan.snat_address is not None:
            internet.take(plan.snat_address, f"{where}.snat_address")
        for index, endpoint in enumerate(plan.publish):
            field = f"{where}.publish.{index}"
            if endpoint.vm not in seen:
                raise TopologyError(f"{field}.vm: {endpoint.vm} is not a step of the plan")
            if endpoint.public not in topology.internet.subnet:
                raise TopologyError(f"{field}.public: {endpoint.public} is outside the internet "
                                    f"segment ({topology.internet.subnet})")
            if endpoint.public in internet.holders and endpoint.public != plan.snat_address:
                raise TopologyError(f"{field}.public: {endpoint.public} is already used by "
                                    f"{internet.holders[endpoint.public]}")
            key = (endpoint.public, endpoint.public_port or endpoint.port, endpoint.protocol)
            if key in public_ports:
                raise TopologyError(f"{field}: {endpoint.public}:{key[1]}/{key[2]} is "
                                    "published twice")
            public_ports.add(key)


def _check_networks(
    topology: Topology,
    tenant_name: str,
    tenant: Tenant,
    core: _AddressBook,
    tunnel_ports: dict[int, str],
) -> dict[str, _AddressBook]:
    books: dict[str, _AddressBook] = {}
    for net_name, net in tenant.networks.items():
        where = f"tenants.{tenant_name}.networks.{net_name}"
        for other_name, other in books.items():
            if net.subnet.overlaps(other.subnet):
                raise TopologyError(
                    f"{where}.subnet: {net.subnet} overlaps network {other_name} "
                    f"({other.subnet}) of the same tenant; the edge routes between them"
                )
        for label, outside in (
            ("the internet segment", topology.internet.subnet),
            ("the SP core network", topology.provider.core_subnet),
        ):
            if net.subnet.overlaps(outside):
                raise TopologyError(f"{where}.subnet: {net.subnet} overlaps {label} ({outside})")
        book = _AddressBook(f"network {tenant_name}/{net_name}", net.subnet)
        book.take(net.gateway, f"{where}.gateway")
        if net.nea is not None:
            book.take(net.nea.address, f"{where}.nea.address")
            book.take(net.nea.sp_address, f"{where}.nea.sp_address")
            core.take(net.nea.sp_core_address, f"{where}.nea.sp_core_address")
            port = net.nea.tunnel_port
            if port in tunnel_ports:
                raise TopologyError(
                    f"{where}.nea.tunnel_port: {port} is already the tunnel port of "
                    f"{tunnel_ports[port]}; each tunnel needs its own port at the gateway"
                )
            tunnel_ports[port] = f"{tenant_name}/{net_name}"
        if net.dhcp_range is not None:
            first, last = net.dhcp_range
            for address, end in ((first, "first"), (last, "last")):
                if address not in net.subnet:
                    raise TopologyError(
                        f"{where}.dhcp_range: the {end} address {address} is outside {net.subnet}"
                    )
            if first > last:
                raise TopologyError(f"{where}.dhcp_range: {first} comes after {last}")
            for address, holder in book.holders.items():
                if first <= address <= last:
                    raise TopologyError(
                        f"{where}.dhcp_range: {first}-{last} contains {address} of {holder}"
                    )
        books[net_name] = book
    return books


def _check_vms(tenant_name: str, tenant: Tenant, books: dict[str, _AddressBook]) -> None:
    for vm_name, vm in tenant.vms.items():
        where = f"tenants.{tenant_name}.vms.{vm_name}"
        if vm_name in RESERVED_VM_NAMES or vm_name.startswith("nea-"):
            raise TopologyError(
                f"{where}: the VM name {vm_name!r} is reserved for the tenant's edge and NEAs"
            )
        if vm.network not in tenant.networks:
            known = ", ".join(tenant.networks)
            raise TopologyError(
                f"{where}.network: unknown network {vm.network!r}; tenant {tenant_name} "
                f"has: {known}"
            )
        net = tenant.networks[vm.network]
        if vm.dhcp:
            if vm.address is not None:
                raise TopologyError(
                    f"{where}.address: a DHCP VM gets its address from the edge; remove it "
                    "or set dhcp: false"
                )
            if net.dhcp_range is None:
                raise TopologyError(
                    f"{where}.dhcp: network {vm.network} has no dhcp_range to lease from"
                )
            continue
        if vm.address is None:
            raise TopologyError(f"{where}.address: a static VM needs an address (or dhcp: true)")
        book = books[vm.network]
        book.take(vm.address, f"{where}.address")
        if net.dhcp_range is not None and net.dhcp_range[0] <= vm.address <= net.dhcp_range[1]:
            raise TopologyError(
                f"{where}.address: {vm.address} is inside the DHCP range of network {vm.network}"
            )
