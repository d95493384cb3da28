"""What a bubble is made of, as pure functions (unit-tested without root).

A bubble is an isolated copy of a tenant's networks where copies of replicas run
at their production addresses (netlab.orchestrator.bubble does the work). This
module names its objects, maps production addresses to masquerade addresses,
writes the proxy's nftables ruleset, and turns application checks into argv and
JUnit XML.

Names (the reference table is in netlab.plan's docstring):

* namespaces ``<lab>-bb.<bubble>.<t>.<vm>`` (a VM's copy),
  ``<lab>-bb.<bubble>.<t>.<net>.sw`` (the bubble's bridge of one network) and
  ``<lab>-bb.<bubble>.<t>.<net>.proxy`` (the proxy of that network). Tenant
  namespaces have at most two dots, so these never collide with them;
* interfaces ``<lab>-x<slot><n>`` (node end of a veth), ``<lab>-y<slot><n>``
  (bridge end), ``<lab>-z<slot><n>`` (bridge): 8 + 1 + 1 + 1 + 4 = 15 characters.
  ``slot`` (1-9) is the bubble's number among the lab's live bubbles, so that two
  bubbles never share an interface name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from xml.etree import ElementTree

from netlab.errors import PreconditionFailed
from netlab.topology.model import AppCheck, Network

BUBBLE_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
MAX_SLOTS = 9  # one digit in interface names
MAX_LINKS = 9999
MAX_MASQUERADE = 16  # masquerade networks per tenant (172.18/16 ... 172.33/16)
PROD_TABLE = 200  # the proxy's route back to production, for packets from the bubble
PROD_RULE_PRIORITY = 1000
NFT_TABLE = "netlab_bubble"
# nft counters of the proxy; `bubble status` shows them and the tests read them
COUNTER_OUT = "from_bubble"  # packets of the bubble's own making that tried to leave: dropped
COUNTER_REPLIES = "replies"  # replies to production's connections to masquerade addresses


def check_bubble_name(name: str) -> str:
    if not BUBBLE_NAME.match(name):
        raise PreconditionFailed(
            f"bad bubble name {name!r}: 1-8 lowercase letters or digits, starting with a letter")
    return name


def default_bubble_name(taken: set[str]) -> str:
    """b1, b2, ...: the first not taken."""
    n = 1
    while f"b{n}" in taken:
        n += 1
    return f"b{n}"


def free_slot(taken: set[int]) -> int:
    for slot in range(1, MAX_SLOTS + 1):
        if slot not in taken:
            return slot
    raise PreconditionFailed(f"{MAX_SLOTS} bubbles run in this lab already; take one down "
                             "with 'netlab bubble down NAME'")


# ----- masquerade addresses ----------------------------------------------------------------


def masquerade_network(base: IPv4Network, index: int) -> IPv4Network:
    """The `index`-th masquerade network: 172.18.0.0/16, 172.19.0.0/16, ... for index 0, 1."""
    start = int(base.network_address) + index * base.num_addresses
    if start + base.num_addresses > 2**32:
        raise PreconditionFailed(f"no masquerade network left after {base}")
    return IPv4Network((start, base.prefixlen))


def masquerade_address(masquerade: IPv4Network, production: IPv4Address | str) -> IPv4Address:
    """The same host bits in the masquerade network: 192.168.10.11 -> 172.18.10.11."""
    host = int(IPv4Address(production)) & int(masquerade.hostmask)
    return IPv4Address(int(masquerade.network_address) | host)


def masquerade_subnet(masquerade: IPv4Network, subnet: IPv4Network) -> IPv4Network:
    """Where a production subnet lands: 192.168.10.0/24 -> 172.18.10.0/24."""
    return IPv4Network((masquerade_address(masquerade, subnet.network_address), subnet.prefixlen))


def free_masquerade(base: IPv4Network, used: set[IPv4Network],
                    avoid: list[IPv4Network]) -> IPv4Network:
    """The first masquerade network no other bubble of the tenant uses and no network overlaps."""
    for index in range(MAX_MASQUERADE):
        candidate = masquerade_network(base, index)
        if candidate in used or any(candidate.overlaps(a) for a in avoid):
            continue
        return candidate
    raise PreconditionFailed(f"no free masquerade network among the {MAX_MASQUERADE} after "
                             f"{base}; take a bubble of this tenant down first")


def proxy_address(network: Network, vm_addresses: list[IPv4Address],
                  taken: set[IPv4Address]) -> IPv4Address:
    """The proxy's address on the production LAN: the highest one nothing else uses."""
    used = {network.gateway, *vm_addresses, *taken}
    if network.nea is not None:
        used |= {network.nea.address, network.nea.sp_address}
    low, high = network.dhcp_range or (None, None)
    for address in reversed(list(network.subnet.hosts())):
        in_dhcp = low is not None and high is not None and low <= address <= high
        if address not in used and not in_dhcp:
            return address
    raise PreconditionFailed(f"no free address on {network.subnet} for a bubble's proxy")


def proxy_mac(lab: str, network: str, address: str) -> str:
    """A locally administered unicast MAC of the proxy's production leg, fixed per address."""
    digest = hashlib.sha256(f"{lab}/{network}/{address}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


# ----- names ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """Namespace and interface names of one bubble (see the module docstring)."""

    lab: str
    bubble: str
    slot: int

    def vm_netns(self, vm_node: str) -> str:
        return f"{self.lab}-bb.{self.bubble}.{vm_node.replace('/', '.')}"

    def bridge_netns(self, tenant: str, network: str) -> str:
        return f"{self.lab}-bb.{self.bubble}.{tenant}.{network}.sw"

    def proxy_netns(self, tenant: str, network: str) -> str:
        return f"{self.lab}-bb.{self.bubble}.{tenant}.{network}.proxy"

    def interface(self, role: str, n: int) -> str:
        if role not in "xyz" or not 1 <= n <= MAX_LINKS:
            raise ValueError(f"bad bubble interface {role}{n}")
        return f"{self.lab}-{role}{self.slot}{n}"


# ----- the proxy ------------------------------------------------------------------------------


def proxy_ruleset(prod_if: str, bubble_if: str, proxy: str,
                  pairs: list[tuple[str, str, str]]) -> str:
    """The proxy's 1:1 NAT and filter; `pairs` are (vm node, masquerade, production address).

    Production's connections to a masquerade address are DNATed to the copy and
    SNATed to the proxy's own address: the copy answers the proxy, never a
    production address that may exist in the bubble too. Nothing the bubble
    starts is forwarded; it is counted and dropped.
    """
    dnat = [f'    iifname "{prod_if}" ip daddr {m} dnat ip to {p} comment "{vm}"'
            for vm, m, p in pairs]
    return "\n".join([
        f"table ip {NFT_TABLE} {{",
        f"  counter {COUNTER_OUT} {{ }}",
        f"  counter {COUNTER_REPLIES} {{ }}",
        "  chain prerouting {",
        "    type nat hook prerouting priority -100; policy accept;",
        *dnat,
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority 100; policy accept;",
        f'    oifname "{bubble_if}" ct status dnat snat ip to {proxy}',
        "  }",
        "  chain forward {",
        "    type filter hook forward priority 0; policy drop;",
        f'    iifname "{prod_if}" oifname "{bubble_if}" ct status dnat accept',
        f'    iifname "{bubble_if}" oifname "{prod_if}" ct status dnat ct direction reply '
        f"counter name {COUNTER_REPLIES} accept",
        f'    iifname "{bubble_if}" counter name {COUNTER_OUT} drop',
        "  }",
        "  chain input {",
        "    type filter hook input priority 0; policy accept;",
        # production reaches nothing of the proxy itself but ping
        f'    iifname "{prod_if}" ct state established,related accept',
        f'    iifname "{prod_if}" icmp type echo-request accept',
        f'    iifname "{prod_if}" drop',
        "  }",
        "}",
    ]) + "\n"


# ----- application checks ---------------------------------------------------------------------


def checks_of(checks: list[AppCheck]) -> list[AppCheck]:
    """A VM without `checks:` gets a ping, the heartbeat of an emulated guest."""
    return list(checks) or [AppCheck(ping=True)]


def check_label(check: AppCheck) -> str:
    if check.ping:
        return "ping"
    if check.tcp is not None:
        return f"tcp {check.tcp}"
    assert check.http is not None
    return f"http :{check.http.port}{check.http.path} contains {check.http.contains!r}"


def check_argv(check: AppCheck, address: str, timeout: float = 2) -> list[str]:
    """The command that passes (exit status 0) when `check` holds for `address`."""
    if check.ping:
        return ["ping", "-c", "1", "-W", str(int(max(1, timeout))), address]
    if check.tcp is not None:
        # bash's /dev/tcp connects and nothing more (this curl has no --connect-only,
        # busybox nc no -z); address and port are arguments, never shell text
        return ["timeout", str(timeout), "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1"', address,
                str(check.tcp)]
    assert check.http is not None
    return ["curl", "-s", "-f", "--max-time", str(timeout),
            f"http://{address}:{check.http.port}{check.http.path}"]


def check_verdict(check: AppCheck, returncode: int, stdout: str) -> str | None:
    """None when the check passed, else why it failed in plain words."""
    if check.ping:
        return None if returncode == 0 else "no ping reply"
    if check.tcp is not None:
        return None if returncode == 0 else f"port {check.tcp} does not accept connections"
    assert check.http is not None
    if returncode != 0:
        return f"no HTTP answer from port {check.http.port} (curl exit status {returncode})"
    if check.http.contains not in stdout:
        return f"the page does not contain {check.http.contains!r}"
    return None


def junit_xml(bubble: str, results: list[dict]) -> str:
    """One JUnit testcase per check; a failed check is a <failure> with its reason.

    `results` rows: {"vm", "check", "passed", "reason", "seconds"}.
    """
    failures = sum(1 for r in results if not r["passed"])
    total_time = sum(r.get("seconds", 0.0) for r in results)
    suites = ElementTree.Element("testsuites")
    suite = ElementTree.SubElement(suites, "testsuite", name=f"netlab bubble {bubble}",
                                   tests=str(len(results)), failures=str(failures),
                                   errors="0", time=f"{total_time:.3f}")
    for r in results:
        case = ElementTree.SubElement(suite, "testcase", classname=r["vm"], name=r["check"],
                                      time=f"{r.get('seconds', 0.0):.3f}")
        if not r["passed"]:
            failure = ElementTree.SubElement(case, "failure", message=r["reason"] or "failed")
            failure.text = f"{r['vm']}: {r['check']}: {r['reason']}"
    ElementTree.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(
        suites, encoding="unicode") + "\n"
