"""Duplicate addresses seen on the wire: who answers ARP for each address of a tenant LAN.

netlab's own state says which node holds an address; a VM someone starts by hand
with a used address, or a source VM still on during a failover, is only seen on
the wire. Two probes find them:

- `validate`: from one node of the LAN, ARP for every address the lab knows there
  (VMs, the gateway, the tenant NEA, DHCP leases, bubble proxies), counting the
  MACs that answer: two are a conflict. What it sees replaces the LAN's record.
- `failover`: the tenant NEA's appliance probes each address it takes over
  (netlab.proxyarp.probing, sender IP 0.0.0.0, so the probe itself moves no
  neighbour back to the source); what it found replaces the record of those
  addresses.

Both record in ``state["conflicts"]`` (``"<tenant>/<network>"`` -> list of
conflicts), which `status` shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from netlab.net.probes import ArpAnswer
from netlab.plan import LabPlan, Node, NodeKind


@dataclass(frozen=True)
class LanProbe:
    """Ask from `prober` (on `iface` in `netns`) who answers each of `addresses`."""

    key: str  # "<tenant>/<network>"
    prober: str  # node name
    netns: str
    iface: str
    own: str  # the prober's own address: any answer for it is a conflict
    addresses: dict[str, str]  # address -> who holds it by the lab's state
    interfaces: dict[tuple[str, str], str]  # (netns, iface) -> node name, to name MACs


def _port_on(node: Node, segment: str) -> str | None:
    return next((p.name for p in node.ports if p.segment == segment), None)


def lan_probe(plan: LabPlan, state: dict[str, Any], key: str) -> LanProbe | None:
    """The probe of production LAN `key`; None when no powered-on node of it can ask."""
    tenant, network = key.split("/", 1)
    powered = {n for n, v in state.get("nodes", {}).items() if v.get("power") == "on"}
    holders: dict[str, str] = {}
    interfaces: dict[tuple[str, str], str] = {}
    candidates: list[tuple[Node, str, str]] = []  # (node, iface, address)
    for node in plan.nodes.values():
        if node.tenant != tenant or node.kind is NodeKind.REPLICA:
            continue
        iface = _port_on(node, key)
        if iface is None:
            continue
        interfaces[(node.netns, iface)] = node.name
        address = _address_on(plan, node, key, state)
        if address:
            holders.setdefault(address, node.name)
            if node.name in powered and node.kind in (NodeKind.EDGE, NodeKind.VM) \
                    and not node.dhcp:
                candidates.append((node, iface, address))
    for bubble in state.get("bubbles", {}).values():
        info = bubble.get("networks", {}).get(network)
        if bubble.get("tenant") == tenant and info:
            holders.setdefault(info["proxy_address"], f"bubble proxy {info['proxy_netns']}")
    if not candidates:
        return None
    # the edge first: it is on every LAN of its tenant and holds no VM's address
    node, iface, own = sorted(candidates, key=lambda c: c[0].kind is not NodeKind.EDGE)[0]
    return LanProbe(key, node.name, node.netns, iface, own, holders, interfaces)


def _address_on(plan: LabPlan, node: Node, key: str, state: dict[str, Any]) -> str | None:
    if node.dhcp:
        return state.get("leases", {}).get(node.name)
    if node.kind is NodeKind.VM:
        return node.address
    port = next(p for p in node.ports if p.segment == key)
    return port.addresses[0].split("/")[0] if port.addresses else None


def conflicts_of(probe: LanProbe, answers: list[ArpAnswer], macs: dict[tuple[str, str], str],
                 ) -> list[dict[str, Any]]:
    """Every address answered by more than one MAC (or, for the prober's own, by any)."""
    names = {mac: probe.interfaces[where] for where, mac in macs.items()
             if where in probe.interfaces}
    prober_mac = macs.get((probe.netns, probe.iface), "")
    found = []
    for answer in answers:
        seen = list(answer.macs)
        if answer.address == probe.own and seen:
            seen = [prober_mac, *seen]
        if len(seen) > 1:
            found.append({
                "address": answer.address, "network": probe.key, "macs": seen,
                "holders": [names.get(m, "unknown") for m in seen],
                "expected": probe.addresses.get(answer.address, "nobody"),
                "seen_by": probe.prober, "time": time.time(),
            })
    return found


def forget(probe: LanProbe, seen: list[dict[str, Any]]) -> None:
    """The prober forgets what the probe taught it about conflicted addresses.

    Each answer updates the prober's own neighbour entry, so after a conflict it
    may point at the wrong machine (the source VM instead of the NEA that proxies
    for its replica). Without the entry it asks again on its next packet, as it
    would have without the probe. Any thread: `ip`, not netlink.
    """
    from netlab.run import run

    for c in seen:
        run(["ip", "neigh", "del", c["address"], "dev", probe.iface], netns=probe.netns,
            check=False, timeout=5)


def describe(conflict: dict[str, Any]) -> str:
    """One line: '192.168.10.12 on acme/lan is answered by 2 MACs: aa (acme/db), bb (...)'."""
    who = ", ".join(f"{m} ({h})" for m, h in zip(conflict["macs"], conflict["holders"],
                                                 strict=True))
    return (f"{conflict['address']} on {conflict['network']} is answered by "
            f"{len(conflict['macs'])} MACs: {who}")


def record(lab: Any, key: str, conflicts: list[dict[str, Any]], by: str) -> None:
    """What a probe of LAN `key` saw replaces what was recorded for it."""
    with lab.dir.update() as state:
        table = state.setdefault("conflicts", {})
        if conflicts:
            table[key] = [c | {"by": by} for c in conflicts]
        else:
            table.pop(key, None)


def _holder_of(plan: LabPlan, key: str, mac: str, address: str) -> str:
    """The node of production LAN `key` whose port has `mac`: first the VM whose address
    it is (the usual case, a source still on), then every other node (netlink, one
    namespace each)."""
    import contextlib

    from netlab.net.probes import interface_mac

    tenant = key.split("/", 1)[0]
    nodes = [n for n in plan.nodes.values() if n.tenant == tenant
             and n.kind is not NodeKind.REPLICA and _port_on(n, key) is not None]
    nodes.sort(key=lambda n: n.address != address)
    for node in nodes:
        with contextlib.suppress(Exception):  # a node powered off has no MAC to name
            if interface_mac(node.netns, _port_on(node, key) or "") == mac:
                return node.name
    return "unknown"


def appliance_conflicts(lab: Any, vms: list[Node], by: str) -> list[dict[str, Any]]:
    """The conflicts the tenant NEAs' own ARP probes found for `vms`' addresses.

    The appliance probes an address as it takes it over (netlab.proxyarp.probing):
    with sender IP 0.0.0.0, so unlike a probe from a production node nothing learns
    the source's MAC again from it. Waits for the probes still running (a fraction of
    a second), then records what they saw for those addresses (main thread: MACs are
    named from netlink). One request to the daemon and one state update for all.
    """
    from netlab.proxyarp.client import ProxyArpClient, ProxyArpError

    plan = lab.plan()
    wanted: dict[str, tuple[str, list[str]]] = {}  # appliance -> (LAN, addresses)
    for vm in vms:
        tunnel = plan.tunnel_for(vm.tenant or "", vm.network or "")
        if tunnel is not None and vm.address:
            wanted.setdefault(tunnel.tenant_nea, (tunnel.key, []))[1].append(vm.address)
    if not wanted:
        return []
    try:
        seen = ProxyArpClient(str(lab.proxy_arp_socket)).wait_probed(
            {a: [*addresses] for a, (_key, addresses) in wanted.items()})
    except ProxyArpError:
        return []  # no appliance, no probe: nothing seen (status shows the daemon)
    found: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in wanted.values()}
    for appliance, conflicts in seen.items():
        key = wanted[appliance][0]
        found[key] += [{
            "address": c["address"], "network": key, "macs": [c["mac"], c["other_mac"]],
            "holders": [appliance, _holder_of(plan, key, c["other_mac"], c["address"])],
            "expected": appliance, "seen_by": appliance, "how": c["how"],
            "time": c["time"]} for c in conflicts]
    probed = {key: addresses for key, addresses in wanted.values()}
    record_addresses(lab, probed, found, by)
    return [c for conflicts in found.values() for c in conflicts]


def record_addresses(lab: Any, probed: dict[str, list[str]],
                     found: dict[str, list[dict[str, Any]]], by: str) -> None:
    """What the probes of `probed` addresses (by LAN) saw replaces what was recorded for
    them; the LANs' other addresses keep theirs."""
    with lab.dir.update() as state:
        table = state.setdefault("conflicts", {})
        for key, addresses in probed.items():
            kept = [c for c in table.get(key, []) if c["address"] not in addresses]
            kept += [c | {"by": by} for c in found.get(key, [])]
            if kept:
                table[key] = kept
            else:
                table.pop(key, None)


def failover_warnings(lab: Any, vms: list[Node]) -> list[str]:
    """After a failover: the conflicts its appliances saw on the wire, as warnings."""
    return [f"seen on the wire: {describe(c)}; the tenant NEA answers for it from now on"
            for c in appliance_conflicts(lab, vms, "failover")]
