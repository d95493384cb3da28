"""Bubbles: isolated test labs of a tenant's replicas, kept running until the tester is done.

`netlab plan test` boots copies and removes them at once; a bubble stays (Veeam
SureBackup's virtual lab, SRM's test recovery, Zerto's test failover):

* **up** boots a copy of each chosen VM from a restore point, mounted read-only
  under a throwaway delta, in its own namespace at its production address, on a
  bridge of the bubble's own for each tenant network. Nothing in the bubble has a
  route out.
* **The proxy** of each network has one leg in the bubble and one on the
  production LAN, at the same address on both (the highest free one of the
  subnet; nothing in the bubble holds the gateway's address). It maps each copy 1:1 to a
  masquerade address (192.168.10.11 -> 172.18.10.11, netlab.orchestrator.bubble_plan)
  and forwards only production's connections to those addresses and their
  replies, SNATed to its own address so that the copies answer the proxy and
  never a production address; whatever the bubble starts is counted and
  dropped. The tenant edge routes the masquerade subnet to the proxy.
* **check** runs the VMs' application checks from the proxy; up waits for them.
* **down** removes the route, the processes, the namespaces, the overlays.

Every object is under the lab's prefix and state directory, so `netlab cleanup`
removes bubbles with the rest. Each step of up is journaled as ``bubble-up:<step>``
after the bubble's record is in the state, so that `bubble down` finds what a
crash left. The record is ``state["bubbles"][name]``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from netlab import storage
from netlab.errors import NetlabError, PreconditionFailed
from netlab.lab import Lab, namespace_sysctls, segment_sysctls
from netlab.net import links
from netlab.net.namespaces import Netlink, delete_namespace, namespace_exists
from netlab.net.nft import apply_ruleset
from netlab.orchestrator import bubble_checks
from netlab.orchestrator.bubble_plan import (
    NFT_TABLE,
    PROD_RULE_PRIORITY,
    PROD_TABLE,
    Names,
    check_bubble_name,
    default_bubble_name,
    free_masquerade,
    free_slot,
    masquerade_address,
    masquerade_subnet,
    proxy_address,
    proxy_mac,
    proxy_ruleset,
)
from netlab.processes import ProcessRecord, is_alive, record_of, stop_process
from netlab.topology.model import Topology

Say = Callable[[str], None]
STARTING = "starting"
UP = "up"


def _quiet(_: str) -> None:
    pass


def proxy_sysctls() -> dict[str, str | int]:
    sysctls = namespace_sysctls(None)
    sysctls.update({
        "net.ipv4.ip_forward": 1,
        # the same subnet is on both legs: replies leave by the other leg than requests
        "net.ipv4.conf.all.rp_filter": 0,
        "net.ipv4.conf.default.rp_filter": 0,
        "net.ipv4.conf.all.send_redirects": 0,
        "net.ipv4.conf.default.send_redirects": 0,
        # ARP answers only for an address of the leg it is asked on, as a host would
        "net.ipv4.conf.all.arp_ignore": 1,
        "net.ipv4.conf.default.arp_ignore": 1,
        "net.ipv4.conf.all.arp_announce": 2,
        "net.ipv4.conf.default.arp_announce": 2,
    })
    return sysctls


# ----- choosing what a bubble holds ----------------------------------------------------


def _chosen_vms(topology: Topology, tenant: str, vms: tuple[str, ...]) -> list[str]:
    """The VMs asked for, else the static VMs of the tenant's plan in plan order, else all."""
    if tenant not in topology.tenants:
        raise PreconditionFailed(f"unknown tenant {tenant!r}; tenants: "
                                 f"{', '.join(topology.tenants)}")
    model = topology.tenants[tenant]
    static = [n for n, vm in model.vms.items() if not vm.dhcp]
    if vms:
        names = [v.split("/", 1)[1] if v.startswith(f"{tenant}/") else v for v in vms]
        for name in names:
            if name not in static:
                raise PreconditionFailed(
                    f"{tenant}/{name} is not a VM of {tenant} with a replica; choose among "
                    f"{', '.join(static)}")
        return [f"{tenant}/{n}" for n in dict.fromkeys(names)]
    plan = topology.failover_plans.get(tenant)
    if plan is not None:
        return [f"{tenant}/{s.vm}" for s in plan.steps if s.vm in static]
    return [f"{tenant}/{n}" for n in static]


def _new_record(lab: Lab, state: dict[str, Any], tenant: str, name: str | None,
                vms: list[str], restore_point: str) -> tuple[str, dict[str, Any]]:
    """Name, slot, masquerade network and proxy addresses of a new bubble (under the lock)."""
    topology = lab.topology()
    bubbles = state.get("bubbles", {})
    name = check_bubble_name(name) if name else default_bubble_name(set(bubbles))
    if name in bubbles:
        raise PreconditionFailed(f"a bubble named {name} exists already; 'netlab bubble down "
                                 f"{name}' first, or choose another --name")
    slot = free_slot({b["slot"] for b in bubbles.values()})
    mine = [b for b in bubbles.values() if b["tenant"] == tenant]
    avoid = [topology.internet.subnet, topology.provider.core_subnet,
             *(n.subnet for t in topology.tenants.values() for n in t.networks.values())]
    masquerade = free_masquerade(topology.bubbles.masquerade,
                                 {IPv4Network(b["masquerade"]) for b in mine}, avoid)
    names = Names(lab.name, name, slot)
    model = topology.tenants[tenant]
    networks: dict[str, dict[str, Any]] = {}
    for vm in vms:
        net_name = model.vms[vm.split("/", 1)[1]].network
        if net_name in networks:
            continue
        net = model.networks[net_name]
        taken = {IPv4Address(b["networks"][net_name]["proxy_address"])
                 for b in mine if net_name in b["networks"]}
        address = proxy_address(net, [v.address for v in model.vms.values() if v.address],
                                taken)
        networks[net_name] = {
            "proxy_address": str(address), "gateway": str(net.gateway),
            "subnet": str(net.subnet),
            "masquerade_subnet": str(masquerade_subnet(masquerade, net.subnet)),
            "proxy_netns": names.proxy_netns(tenant, net_name),
            "bridge_netns": names.bridge_netns(tenant, net_name),
        }
    record = {
        "tenant": tenant, "slot": slot, "masquerade": str(masquerade), "status": STARTING,
        "restore_point": restore_point, "started": time.time(), "links": 0,
        "owner": _owner(), "networks": networks,
        "order": vms,  # the boot order: state.json sorts the keys of "vms"
        "vms": {vm: {"network": model.vms[vm.split("/", 1)[1]].network,
                     "address": str(model.vms[vm.split("/", 1)[1]].address),
                     "masquerade": str(masquerade_address(
                         masquerade, model.vms[vm.split("/", 1)[1]].address or "0.0.0.0")),
                     "netns": names.vm_netns(vm)} for vm in vms},
    }
    return name, record


def _owner() -> dict[str, Any]:
    rec = record_of(os.getpid(), "bubble up")
    assert rec is not None  # this very process
    return rec.to_dict()


def interrupted(record: dict[str, Any]) -> bool:
    """True when `bubble up` of this bubble died before it finished (kill -9, a crash)."""
    owner = record.get("owner")
    return (record.get("status") == STARTING and bool(owner)
            and not is_alive(ProcessRecord.from_dict(owner)))


# ----- up ------------------------------------------------------------------------------


class _Builder:
    """Plumbing of one bubble, on the main thread (netlink)."""

    def __init__(self, lab: Lab, name: str, record: dict[str, Any]) -> None:
        self.lab, self.name, self.record = lab, name, record
        self.names = Names(lab.name, name, record["slot"])
        self.plan = lab.plan()
        self.nl = Netlink()
        self.count = 0
        self.bridges: dict[str, int] = {}

    def _next(self) -> int:
        self.count += 1
        with self.lab.dir.update() as state:  # so that down knows how many exist
            state["bubbles"][self.name]["links"] = self.count
        return self.count

    def _veth(self, netns: str, bridge_netns: str, bridge_index: int) -> str:
        n = self._next()
        node_if = self.names.interface("x", n)
        links.add_veth_to_bridge(self.nl[netns], node_if, netns, self.nl[bridge_netns],
                                 self.names.interface("y", n), bridge_index)
        return node_if

    def network(self, net_name: str) -> None:
        info = self.record["networks"][net_name]
        tenant = self.record["tenant"]
        sock = self.nl.create(info["bridge_netns"], segment_sysctls())
        self.bridges[net_name] = links.add_bridge(sock, self.names.interface("z", self._next()))
        proxy = info["proxy_netns"]
        links.set_link_state(self.nl.create(proxy, proxy_sysctls()), "lo", True)
        prefix = IPv4Network(info["subnet"]).prefixlen
        bubble_if = self._veth(proxy, info["bridge_netns"], self.bridges[net_name])
        # The proxy has its production address on both legs, never the gateway's: Linux
        # ignores ARP from a sender address that is its own, and the production edge
        # (the gateway) must reach it. The copies' default route thus leads nowhere.
        links.add_address(self.nl[proxy], bubble_if, f"{info['proxy_address']}/{prefix}")
        segment = self.plan.segments[f"{tenant}/{net_name}"]
        prod_index = links.index_of(self.nl[segment.netns], segment.bridge)
        prod_if = self._veth(proxy, segment.netns, prod_index)
        # the same MAC for the same address every time: a bubble brought up again finds
        # the edge's and the VMs' ARP caches right, with no stale entry to wait out
        self.nl[proxy].link("set", index=links.index_of(self.nl[proxy], prod_if),
                            address=proxy_mac(self.lab.name, f"{tenant}/{net_name}",
                                              info["proxy_address"]))
        links.add_address(self.nl[proxy], prod_if, f"{info['proxy_address']}/{prefix}",
                          no_prefix_route=True)
        # replies from the bubble go back to production by table PROD_TABLE; nothing
        # else of the proxy's routes leads there, and no route leads anywhere else
        links.add_route(self.nl[proxy], info["subnet"], dev=prod_if, table=PROD_TABLE)
        links.add_rule(self.nl[proxy], bubble_if, PROD_TABLE, PROD_RULE_PRIORITY)
        pairs = [(vm, v["masquerade"], v["address"]) for vm, v in self.record["vms"].items()
                 if v["network"] == net_name]
        apply_ruleset(proxy, proxy_ruleset(prod_if, bubble_if, info["proxy_address"], pairs),
                      NFT_TABLE)
        with self.lab.dir.update() as state:
            state["bubbles"][self.name]["networks"][net_name].update(
                prod_if=prod_if, bubble_if=bubble_if)

    def vm(self, vm: str, which: str) -> dict[str, Any]:
        info = self.record["vms"][vm]
        net = self.record["networks"][info["network"]]
        point = storage.get_restore_point(self.lab.replica_dir(vm), which)
        base = disk_root(self.lab, self.name) / vm.replace("/", ".")
        for sub in ("upper", "work", "mnt"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        # read-only restore point under a delta of the bubble's own, thrown away by down
        storage._mount_overlay(point.path, base / "upper", base / "work", base / "mnt")
        netns = info["netns"]
        links.set_link_state(self.nl.create(netns, namespace_sysctls(None)), "lo", True)
        node_if = self._veth(netns, net["bridge_netns"], self.bridges[info["network"]])
        prefix = IPv4Network(net["subnet"]).prefixlen
        links.add_address(self.nl[netns], node_if, f"{info['address']}/{prefix}")
        links.add_route(self.nl[netns], "default", via=net["gateway"])
        from netlab.workloads import start_http_server

        rec = start_http_server(_httpd(self.name, vm), netns, base / "mnt",
                                self.lab.dir.sub("logs"))
        with self.lab.dir.update() as state:
            state.setdefault("processes", {})[rec.name] = rec.to_dict() | {"supervised": False}
            state["bubbles"][self.name]["vms"][vm].update(restore_point=point.id,
                                                          interface=node_if)
        return {"restore_point": point.id}

    def route(self) -> None:
        edge = self.plan.nodes[f"{self.record['tenant']}/edge"]
        for net_name, info in self.record["networks"].items():
            port = next(p for p in edge.ports
                        if p.segment == f"{self.record['tenant']}/{net_name}")
            links.add_route(self.nl[edge.netns], info["masquerade_subnet"],
                            via=info["proxy_address"], dev=port.name)

    def close(self) -> None:
        self.nl.close()


def disk_root(lab: Lab, name: str) -> Path:
    return lab.dir.root / "bubbles" / name


def _httpd(name: str, vm: str) -> str:
    return f"bubble:{name}:httpd:{vm}"


def _check_masquerade_fits(topology: Any, tenant: str) -> None:
    """A /8 tenant network is a valid topology, but a /16 masquerade network cannot give
    each of its addresses one of its own: that tenant's bubbles need a larger one."""
    masquerade = topology.bubbles.masquerade
    for net_name, net in topology.tenants[tenant].networks.items():
        if net.subnet.prefixlen < masquerade.prefixlen:
            raise PreconditionFailed(
                f"network {tenant}/{net_name} ({net.subnet}) is larger than the masquerade "
                f"network {masquerade}: each production address needs one of its own; set "
                f"bubbles.masquerade in the topology to a /{net.subnet.prefixlen} or larger")


def up(lab: Lab, tenant: str, vms: tuple[str, ...] = (), restore_point: str = "latest",
       name: str | None = None, say: Say = _quiet) -> dict[str, Any]:
    """Boot a bubble; its record with the last round of checks. Fails whole or not at all."""
    lab.require_up()
    topology = lab.topology()
    chosen = _chosen_vms(topology, tenant, vms)
    if not chosen:
        raise PreconditionFailed(f"tenant {tenant} has no VM with a replica to put in a bubble")
    _check_masquerade_fits(topology, tenant)
    for vm in chosen:  # refused before anything exists
        try:
            storage.get_restore_point(lab.replica_dir(vm), restore_point)
        except NetlabError as exc:
            raise PreconditionFailed(f"{vm}: {exc}") from None
    with lab.dir.update() as state:
        name, record = _new_record(lab, state, tenant, name, chosen, restore_point)
        state.setdefault("bubbles", {})[name] = record
    with lab.dir.hold(f"bubble:{name}", "bubble up"):
        lab.dir.journal("bubble-up:start", bubble=name, tenant=tenant, vms=chosen,
                        masquerade=record["masquerade"])
        try:
            return _build(lab, name, record, say)
        except BaseException:
            _remove(lab, name)
            raise


def _build(lab: Lab, name: str, record: dict[str, Any], say: Say) -> dict[str, Any]:
    builder = _Builder(lab, name, record)
    try:
        for net_name in record["networks"]:
            builder.network(net_name)
            lab.dir.journal("bubble-up:network", bubble=name, network=net_name)
        say(f"bubble {name}: isolated copy of {', '.join(record['networks'])} "
            f"with its proxy (masquerade {record['masquerade']})")
        for vm in record["order"]:
            try:
                done = builder.vm(vm, record["restore_point"])
            except NetlabError as exc:
                raise PreconditionFailed(f"{vm}: {exc}") from None
            lab.dir.journal("bubble-up:vm", bubble=name, vm=vm, **done)
            say(f"{vm}: copy booted from restore point {done['restore_point']} at "
                f"{record['vms'][vm]['address']}, masquerade {record['vms'][vm]['masquerade']}")
        builder.route()
        lab.dir.journal("bubble-up:route", bubble=name)
    finally:
        builder.close()
    timeout = lab.topology().bubbles.boot_timeout
    rows = bubble_checks.wait_for_checks(lab.topology(), lab.dir.read()["bubbles"][name],
                                         timeout, say)
    lab.dir.journal("bubble-up:checks", bubble=name,
                    passed=sum(r["passed"] for r in rows), total=len(rows))
    with lab.dir.update() as state:
        state["bubbles"][name].update(status=UP, owner=None, checks=rows)
    lab.dir.journal("bubble-up:done", bubble=name)
    return status(lab, name) | {"checks": rows}


# ----- down ----------------------------------------------------------------------------


def down(lab: Lab, name: str, say: Say = _quiet) -> dict[str, Any]:
    """Remove a bubble whole, also one that a crashed `bubble up` left half-built."""
    lab.require_up()
    record = _get(lab, name)
    with lab.dir.hold(f"bubble:{name}", "bubble down"):
        removed = _remove(lab, name)
    lab.dir.journal("bubble-down:done", bubble=name, **removed)
    say(f"bubble {name} removed: {len(removed['namespaces'])} namespaces, "
        f"{len(removed['processes'])} processes, {len(removed['mounts'])} mounts")
    return {"bubble": name, "tenant": record["tenant"], **removed}


def _remove(lab: Lab, name: str) -> dict[str, list[str]]:
    """Everything of bubble `name`, in the order that leaves no dangling piece; idempotent."""
    record = lab.dir.read().get("bubbles", {}).get(name)
    removed: dict[str, list[str]] = {"namespaces": [], "processes": [], "mounts": []}
    if record is None:
        return removed
    plan = lab.plan()
    edge = plan.nodes[f"{record['tenant']}/edge"]
    with Netlink() as nl:
        for info in record["networks"].values():
            if namespace_exists(edge.netns):
                links.delete_route(nl[edge.netns], info["masquerade_subnet"])
    names = [_httpd(name, vm) for vm in record["vms"]]
    with lab.dir.update() as state:
        found = [state.get("processes", {}).pop(n, None) for n in names]
    for data in filter(None, found):
        stop_process(ProcessRecord.from_dict(data), timeout=1.0)
        removed["processes"].append(data["name"])
    namespaces = [v["netns"] for v in record["vms"].values()]
    for info in record["networks"].values():
        namespaces += [info["proxy_netns"], info["bridge_netns"]]
    for netns in namespaces:  # deleting the proxy takes its production-LAN veth with it
        if namespace_exists(netns) and delete_namespace(netns):
            removed["namespaces"].append(netns)
    root = disk_root(lab, name)
    if root.exists():
        removed["mounts"] = storage.cleanup_mounts_under(root)
        shutil.rmtree(root, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.parent.rmdir()  # bubbles/, once the last bubble is gone
    with lab.dir.update() as state:
        state.get("bubbles", {}).pop(name, None)
    return removed


# ----- list, status, exec --------------------------------------------------------------


def _get(lab: Lab, name: str) -> dict[str, Any]:
    bubbles = lab.dir.read().get("bubbles", {})
    if name not in bubbles:
        known = ", ".join(bubbles) or "none"
        raise PreconditionFailed(f"no bubble named {name!r} in lab {lab.name} (bubbles: {known})")
    return bubbles[name]


def _summary(name: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name, "tenant": record["tenant"],
        "status": "interrupted" if interrupted(record) else record["status"],
        "masquerade": record["masquerade"], "started": record.get("started"),
        "order": record.get("order", list(record["vms"])),
        "vms": {vm: {k: v.get(k) for k in ("address", "masquerade", "restore_point")}
                for vm, v in record["vms"].items()},
        "proxies": {f"{record['tenant']}/{n}": i["proxy_address"]
                    for n, i in record["networks"].items()},
    }


def list_bubbles(lab: Lab) -> list[dict[str, Any]]:
    lab.require_up()
    return [_summary(n, r) for n, r in lab.dir.read().get("bubbles", {}).items()]


def status(lab: Lab, name: str) -> dict[str, Any]:
    """One bubble: its VMs, masquerade addresses, proxies, last checks and nft counters."""
    lab.require_up()
    record = _get(lab, name)
    out = _summary(name, record) | {"checks": record.get("checks", [])}
    out["counters"] = {f"{record['tenant']}/{n}": proxy_counters(i["proxy_netns"])
                       for n, i in record["networks"].items()}
    return out


def proxy_counters(netns: str) -> dict[str, int]:
    """Packets counted by the proxy's named counters (empty when the proxy is gone)."""
    import json

    from netlab.run import run

    if not namespace_exists(netns):
        return {}
    done = run(["nft", "-j", "list", "counters", "table", "ip", NFT_TABLE], netns=netns,
               check=False)
    if done.returncode != 0:
        return {}
    found = {}
    for item in json.loads(done.stdout).get("nftables", []):
        counter = item.get("counter")
        if counter:
            found[counter["name"]] = int(counter["packets"])
    return found


def check(lab: Lab, name: str) -> list[dict[str, Any]]:
    """Run the bubble's checks once and record the result."""
    lab.require_up()
    record = _get(lab, name)
    if record["status"] != UP:
        raise PreconditionFailed(f"bubble {name} is {_summary(name, record)['status']}, not up; "
                                 f"'netlab bubble down {name}' removes it")
    rows = bubble_checks.run_checks(lab.topology(), record)
    with lab.dir.update() as state:
        state["bubbles"][name]["checks"] = rows
    return rows


def exec_target(lab: Lab, name: str, vm: str) -> tuple[str, Path]:
    """(netns, working directory) of a VM's copy: a command runs there, on its disk."""
    lab.require_up()
    record = _get(lab, name)
    if vm not in record["vms"]:
        raise PreconditionFailed(f"bubble {name} has no VM {vm!r}; its VMs: "
                                 f"{', '.join(record['vms'])}")
    return record["vms"][vm]["netns"], disk_root(lab, name) / vm.replace("/", ".") / "mnt"
