"""Duplicate addresses seen on the wire: who answers ARP for each address of a tenant LAN.

netlab's own state says which node holds an address; a VM someone starts by hand
with a used address, or a source VM still on during a failover, is only seen on
the wire. A probe from one node of the LAN asks ARP for every address the lab
knows there (VMs, the gateway, the tenant NEA, DHCP leases, bubble proxies) and
counts the MACs that answer: two are a conflict. `validate` and `failover`
record what they saw in ``state["conflicts"]`` (``"<tenant>/<network>"`` ->
list of conflicts), which `status` shows; a later probe of the same LAN replaces
it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from netlab.net.probes import ArpAnswer
from netlab.plan import LabPlan, Node, NodeKind

# Seconds a failover listens for answers: on one LAN every answer comes within
# milliseconds, and each second the source VM stays on after a failover, its own ARP
# traffic (neighbour confirmation 5 s after use) may win its neighbours back.
WIRE_WINDOW = 0.3


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


def probe_lans(lab: Any, keys: list[str], by: str) -> list[dict[str, Any]]:
    """Probe each production LAN of `keys` now (main thread: MACs come from netlink)."""
    import contextlib

    from netlab.net.probes import ArpJob, arp_probe, interface_mac

    plan, state = lab.plan(), lab.dir.read()
    found: list[dict[str, Any]] = []
    for key in keys:
        probe = lan_probe(plan, state, key)
        if probe is None:
            continue
        answers = arp_probe([ArpJob(probe.netns, probe.iface, a) for a in probe.addresses],
                            window=WIRE_WINDOW)
        macs = {}
        for where in probe.interfaces:
            with contextlib.suppress(Exception):  # a node powered off has no MAC to name
                macs[where] = interface_mac(*where)
        seen = conflicts_of(probe, answers, macs)
        forget(probe, seen)
        record(lab, key, seen, by)
        found += seen
    return found


def failover_warnings(lab: Any, keys: list[str], sources_on: bool) -> list[str]:
    """After a failover with a source still on: the conflicts the wire shows, as warnings."""
    if not sources_on:
        return []  # nothing to look for, and a probe costs a second
    return [f"seen on the wire: {describe(c)}" for c in probe_lans(lab, keys, "failover")]
