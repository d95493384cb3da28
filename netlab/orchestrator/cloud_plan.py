"""Cloud failover plan: full site failover of one tenant (Veeam's "cloud failover plan").

Partial failover (netlab.orchestrator.operations) moves some VMs and keeps the
site: the NEA pair stretches the LAN and the tenant's own edge stays the
gateway. A cloud failover plan is for a site that is gone:

* **start** powers the replicas on in the plan's order, waiting `delay` after
  each, at most `max_parallel` booting at once; replicas already in partial
  failover join as they are. A replica that cannot start is recorded failed
  with the reason and the others go on (`retry` redoes it).
* The SP NEA of each network of the plan takes the production gateway's
  address (192.168.10.1) on the cloud network and becomes the site's router:
  its NEA pair is powered off (the tunnel went through the lost edge anyway),
  so it no longer proxies ARP for that address nor sends the cloud network's
  traffic into the tunnel (the policy rule goes with the pair). Traffic to
  the internet is SNATed twice: by the SP NEA to its SP core address, then by
  the cloud gateway sp/cgw to the plan's public address. Published endpoints
  go the other way: sp/cgw owns the public address (a secondary address on
  its internet port, so its kernel answers ARP) and DNATs public:port to the
  SP NEA's core address, which DNATs to the replica. Two steps because tenant
  subnets overlap: the gateway can never route to 192.168.10.x itself.
* Every runtime rule lives in a table of its own, ``netlab_plan_<tenant>``, in
  sp/cgw and in the SP NEA; the static ``netlab`` tables only accept what a
  plan table marked (netlab.plan.PLAN_MARK). `undo` deletes the tables whole
  and the addresses it added, so nothing is left behind.
* **test** boots copies of the replicas in an isolated copy of the cloud
  network (their own namespaces, a bridge with no route out, overlays of the
  restore points), pings each from a probe, and removes all of it.
* **undo** powers the replicas off in batches, discards their deltas, removes
  the gateway role, and resumes replication.

While a plan runs, partial failover and the partial lifecycle commands of its
VMs are refused (one failover operation type at a time). Each step is journaled
as ``plan-<command>:<step>``; the plan's record is ``state["plans"][tenant]``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from typing import Any

from netlab import nea, storage
from netlab.errors import NetlabError, NothingToDo, PreconditionFailed, UnknownNode
from netlab.lab import Lab
from netlab.net import links
from netlab.net.namespaces import Netlink
from netlab.net.nft import apply_ruleset, delete_table
from netlab.orchestrator import power
from netlab.orchestrator.plan_rules import (  # noqa: F401  (part of this module's API)
    MARK_PRIORITY,
    Endpoint,
    endpoints,
    gateway_plan_ruleset,
    plan_table,
    plan_tunnels,
    public_addresses,
    snat_address,
    sp_nea_plan_ruleset,
)
from netlab.orchestrator.plan_sandbox import (
    BOOT_TIMEOUT,
    FAILED,
    SUCCESS,
    Sandbox,
    _vm_names,
    answers,
)
from netlab.orchestrator.states import ReplicaState
from netlab.plan import (
    CLOUD_ROUTE_TABLE,
    CLOUD_RULE_PRIORITY,
    LabPlan,
    Tunnel,
)
from netlab.processes import ProcessRecord, is_alive, record_of
from netlab.run import run
from netlab.topology.model import FailoverPlan

Say = Callable[[str], None]
RUNNING = "running"
STOPPED = "stopped"
NOT_STARTED = "not started"


def _quiet(_: str) -> None:
    pass


# ----- state and checks --------------------------------------------------------------


def _failover_plan(lab: Lab, tenant: str) -> FailoverPlan:
    topology = lab.topology()
    if tenant not in topology.tenants:
        raise UnknownNode(
            f"unknown tenant {tenant!r}; tenants of lab {lab.name}: "
            f"{', '.join(topology.tenants)}")
    fp = topology.failover_plans.get(tenant)
    if fp is None:
        known = ", ".join(topology.failover_plans) or "none"
        raise PreconditionFailed(
            f"tenant {tenant} has no cloud failover plan (plans: {known}); add one under "
            "'failover_plans:' in the topology")
    return fp


def _record(state: dict[str, Any], tenant: str) -> dict[str, Any]:
    return state.get("plans", {}).get(tenant) or {}


@contextlib.contextmanager
def _held(lab: Lab, tenant: str, fp: FailoverPlan, command: str) -> Iterator[None]:
    """The plan and every VM of it, for the whole command (a second process is refused)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(lab.dir.hold(f"plan:{tenant}", command))
        for name in _vm_names(tenant, fp):
            stack.enter_context(lab.dir.hold(name, command))
        yield


def _set_replica(lab: Lab, vm: str, **fields: Any) -> None:
    with lab.dir.update() as state:
        state.setdefault("replicas", {}).setdefault(vm, {}).update(fields)


def _owner(command: str = "start") -> dict[str, Any]:
    """Who runs a plan command: found dead later, the command was interrupted."""
    rec = record_of(os.getpid(), f"plan {command}")
    assert rec is not None  # this very process
    return rec.to_dict()


def interrupted(record: dict[str, Any]) -> bool:
    """True when the plan's last start or retry died before it finished (kill -9, a crash)."""
    owner = record.get("owner")
    return bool(owner) and not is_alive(ProcessRecord.from_dict(owner))


def _update_record(lab: Lab, tenant: str, **fields: Any) -> None:
    with lab.dir.update() as state:
        record = state.setdefault("plans", {}).setdefault(tenant, {})
        for key, value in fields.items():
            if value is None:
                record.pop(key, None)
            else:
                record[key] = value


def _set_result(lab: Lab, tenant: str, vm: str, result: dict[str, Any]) -> None:
    with lab.dir.update() as state:
        state.setdefault("plans", {}).setdefault(tenant, {}).setdefault("results", {})[vm] = \
            result


def _batches(fp: FailoverPlan, vms: list[str]) -> Iterator[tuple[list[str], float]]:
    """Groups of VMs started together, and the delay after each group.

    A step with a delay closes its group (the next VM waits for it); steps without
    one start together, at most `max_parallel` at once.
    """
    delays = {s.vm: s.delay for s in fp.steps}
    group: list[str] = []
    for i, name in enumerate(vms):
        group.append(name)
        delay = delays[name.split("/", 1)[1]]
        if delay > 0 or len(group) == fp.max_parallel or i == len(vms) - 1:
            yield group, delay if i < len(vms) - 1 else 0.0
            group = []


# ----- start / retry -----------------------------------------------------------------


@dataclass
class PlanReport:
    tenant: str
    command: str
    status: str
    results: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "command": self.command, "status": self.status,
                "results": self.results}


def start(lab: Lab, tenant: str, restore_point: str | None = None,
          say: Say = _quiet) -> PlanReport:
    """Fail the whole site over: the SP NEA becomes its gateway, replicas start in order."""
    from netlab.orchestrator.operations import recover_interrupted

    lab.require_up()
    fp = _failover_plan(lab, tenant)
    recover_interrupted(lab, say)
    with _held(lab, tenant, fp, "plan start"):
        state = lab.dir.read()
        record = _record(state, tenant)
        if record.get("status") == RUNNING and interrupted(record):
            raise PreconditionFailed(
                f"the cloud failover plan of {tenant} was started and interrupted: 'netlab "
                f"plan retry {tenant}' finishes it, 'netlab plan undo {tenant}' rolls it back")
        if record.get("status") == RUNNING:
            raise PreconditionFailed(
                f"the cloud failover plan of {tenant} is already running; see 'netlab plan "
                f"status {tenant}', or 'netlab plan undo {tenant}' first")
        vms = _vm_names(tenant, fp)
        with lab.dir.update() as now:
            now.setdefault("plans", {})[tenant] = {
                "status": RUNNING, "vms": vms, "results": {}, "started": time.time(),
                "restore_point": restore_point or "latest", "owner": _owner(),
                "gateway_taken": False,
            }
        lab.dir.journal("plan-start:start", tenant=tenant, vms=vms,
                        restore_point=restore_point or "latest")
        say(f"plan {tenant}: {', '.join(vms)}")
        _take_gateway_role(lab, tenant, fp, say)
        _update_record(lab, tenant, gateway_taken=True)
        results = _start_replicas(lab, tenant, fp, vms, restore_point, "plan-start", say)
        lab.dir.journal("plan-start:done", tenant=tenant, results=results)
        _update_record(lab, tenant, owner=None)
    return PlanReport(tenant, "start", RUNNING, results)


def retry(lab: Lab, tenant: str, restore_point: str | None = None,
          say: Say = _quiet) -> PlanReport:
    """Start again the VMs of a running plan whose start failed, or finish a start that
    was interrupted (the gateway role if it was not taken yet, then every VM not up)."""
    from netlab.orchestrator.operations import recover_interrupted

    lab.require_up()
    fp = _failover_plan(lab, tenant)
    recover_interrupted(lab, say)
    with _held(lab, tenant, fp, "plan retry"):
        record = _record(lab.dir.read(), tenant)
        if record.get("status") != RUNNING:
            raise PreconditionFailed(f"the cloud failover plan of {tenant} is not running; "
                                     f"'netlab plan start {tenant}' first")
        if interrupted(record):
            say(f"finishing the interrupted '{record['owner']['name']}' of {tenant}")
        _update_record(lab, tenant, owner=_owner("retry"))
        if not record.get("gateway_taken", True):
            _take_gateway_role(lab, tenant, fp, say)
            _update_record(lab, tenant, gateway_taken=True)
        failed = [vm for vm in record.get("vms", [])
                  if record.get("results", {}).get(vm, {}).get("status") != SUCCESS]
        if not failed:
            say("every VM of the plan is up: nothing to retry")
            _update_record(lab, tenant, owner=None)
            return PlanReport(tenant, "retry", RUNNING, {})
        which = restore_point or record.get("restore_point")
        lab.dir.journal("plan-retry:start", tenant=tenant, vms=failed)
        results = _start_replicas(lab, tenant, fp, failed, which, "plan-retry", say)
        lab.dir.journal("plan-retry:done", tenant=tenant, results=results)
        _update_record(lab, tenant, owner=None)
    return PlanReport(tenant, "retry", RUNNING, results)


def _start_replicas(lab: Lab, tenant: str, fp: FailoverPlan, vms: list[str],
                    restore_point: str | None, event: str, say: Say) -> dict[str, dict]:
    lab_plan = lab.plan()
    results: dict[str, dict] = {}
    for group, delay in _batches(fp, vms):
        started = {}
        for name in group:
            result = _power_on(lab, lab_plan, name, restore_point)
            lab.dir.journal(f"{event}:power-on", tenant=tenant, vm=name, **result)
            if result["status"] == SUCCESS:
                started[name] = result
            else:
                results[name] = result
                _set_result(lab, tenant, name, result)
                say(f"{name}: FAILED, {result['reason']}")
        by_network: dict[str, list[str]] = {}
        for name in started:
            by_network.setdefault(lab_plan.nodes[name].network or "", []).append(name)
        for network, names in by_network.items():
            sp_nea = lab_plan.nodes[lab_plan.tunnels[f"{tenant}/{network}"].sp_nea]
            addresses = {lab_plan.nodes[n].address or "": n for n in names}
            answered = answers(sp_nea.netns, list(addresses))
            for address, name in addresses.items():
                result = started[name]
                if address not in answered:
                    _power_back_off(lab, lab_plan, name)
                    result |= {"status": FAILED, "reason": f"did not answer ping from the SP "
                               f"NEA within {BOOT_TIMEOUT:.0f} s; powered off again"}
                    say(f"{name}: FAILED, {result['reason']}")
                else:
                    say(f"{name}@sp: {'joined (already in failover)' if result['joined'] else 'up'}"
                        f", answers at {address}")
                lab.dir.journal(f"{event}:booted", tenant=tenant, vm=name,
                                status=result["status"])
                results[name] = result
                _set_result(lab, tenant, name, result)
        if delay:
            time.sleep(delay)
    return results


def _power_on(lab: Lab, lab_plan: LabPlan, name: str, restore_point: str | None) -> dict:
    """Power one replica on for the plan; a dict result, never an exception for its own fault."""
    replica = lab_plan.nodes[f"{name}@sp"]
    result: dict[str, Any] = {"status": SUCCESS, "reason": None, "started": time.time(),
                              "joined": False}
    data = lab.dir.read().get("replicas", {}).get(name)
    current = data.get("state") if data else None
    if current == ReplicaState.FAILOVER.value:
        # partial failover already runs it: the plan takes it over as it is
        return result | {"joined": True, "restore_point": data.get("restore_point")}
    if current != ReplicaState.NORMAL.value:
        reason = "no replica" if current is None else (
            f"replica is '{current}'; a plan starts replicas that are 'Normal' and takes in "
            "those in 'Failover'")
        return result | {"status": FAILED, "reason": reason}
    replica_dir = lab.replica_dir(name)
    try:
        point = storage.get_restore_point(replica_dir, restore_point or "latest")
        storage.mount_failover_view(replica_dir, point)
        power.start_replica(lab, replica)
    except NetlabError as exc:
        _power_back_off(lab, lab_plan, name)
        return result | {"status": FAILED, "reason": str(exc)}
    _set_replica(lab, name, state=ReplicaState.FAILOVER.value, restore_point=point.id,
                 replication="on hold")
    return result | {"restore_point": point.id}


def _power_back_off(lab: Lab, lab_plan: LabPlan, name: str) -> None:
    power.power_off(lab, lab_plan.nodes[f"{name}@sp"], force=True)
    storage.unmount_failover_view(lab.replica_dir(name), discard_delta=True, force=True)
    _set_replica(lab, name, state=ReplicaState.NORMAL.value, restore_point=None,
                 replication="active")


# ----- the gateway role --------------------------------------------------------------


def _gateway_cidr(tunnel: Tunnel) -> str:
    return f"{tunnel.gateway_address}/{IPv4Network(tunnel.subnet).prefixlen}"


def _take_gateway_role(lab: Lab, tenant: str, fp: FailoverPlan, say: Say) -> None:
    lab_plan = lab.plan()
    gateway = lab_plan.nodes["sp/cgw"]
    tunnels = plan_tunnels(lab_plan, tenant, fp)
    state = lab.dir.read()
    # The tunnels went through the lost site's edge; their proxies for the gateway
    # address and policy rules into the tunnel would fight the new role.
    nea.power_off(lab, [t.key for t in tunnels
                        if state.get("neas", {}).get(t.key, {}).get("power") == "on"])
    with Netlink() as nl:
        for tunnel in tunnels:
            sp = lab_plan.nodes[tunnel.sp_nea]
            links.delete_rule(nl[sp.netns], tunnel.sp_cloud_port, CLOUD_ROUTE_TABLE,
                              CLOUD_RULE_PRIORITY)
            _delete_host_routes(nl[sp.netns], tunnel.sp_cloud_port)
            links.add_address(nl[sp.netns], tunnel.sp_cloud_port, _gateway_cidr(tunnel))
            # The cloud network is directly connected now. The kernel gives a secondary
            # address (the NEA's own .251 is primary) no prefix route, so add it, with
            # the gateway address as source: replies to it pass the plan's input mark.
            sock = nl[sp.netns]
            sock.route("replace", dst=tunnel.subnet, scope="link",
                       oif=links.index_of(sock, tunnel.sp_cloud_port),
                       prefsrc=tunnel.gateway_address)
        prefix = lab_plan.topology.internet.subnet.prefixlen
        for address in public_addresses(lab_plan, fp):
            links.add_address(nl[gateway.netns], gateway.ports[0].name, f"{address}/{prefix}")
    for tunnel in tunnels:
        sp = lab_plan.nodes[tunnel.sp_nea]
        apply_ruleset(sp.netns, sp_nea_plan_ruleset(lab_plan, tenant, fp, tunnel),
                      plan_table(tenant))
        # replicas that cached the old owner of the gateway address switch now
        run(["arping", "-U", "-c", "1", "-w", "1", "-I", tunnel.sp_cloud_port,
             tunnel.gateway_address], netns=sp.netns, check=False, timeout=5)
    apply_ruleset(gateway.netns, gateway_plan_ruleset(lab_plan, tenant, fp), plan_table(tenant))
    message = (f"SP NEA of {', '.join(t.key for t in tunnels)} is the site's gateway "
               f"({', '.join(t.gateway_address for t in tunnels)}); outbound SNAT to "
               f"{snat_address(lab_plan, fp)}")
    published = [f"{e.public}:{e.public_port}/{e.protocol} -> {e.vm}:{e.port}"
                 for e in endpoints(lab_plan, tenant, fp)]
    lab.dir.journal("plan-start:gateway", tenant=tenant, message=message, published=published)
    say(message)
    for line in published:
        say(f"published {line}")


def _drop_gateway_role(lab: Lab, tenant: str, fp: FailoverPlan) -> None:
    """Remove what _take_gateway_role added; idempotent (also after a crash half-way)."""
    lab_plan = lab.plan()
    gateway = lab_plan.nodes["sp/cgw"]
    tunnels = plan_tunnels(lab_plan, tenant, fp)
    delete_table(gateway.netns, plan_table(tenant))
    for tunnel in tunnels:
        delete_table(lab_plan.nodes[tunnel.sp_nea].netns, plan_table(tenant))
    # an address another running plan also publishes stays until that plan ends
    state = lab.dir.read()
    still_used: set[str] = set()
    for other, record in state.get("plans", {}).items():
        other_plan = lab_plan.topology.failover_plans.get(other)
        if other != tenant and record.get("status") == RUNNING and other_plan is not None:
            still_used.update(public_addresses(lab_plan, other_plan))
    prefix = lab_plan.topology.internet.subnet.prefixlen
    with Netlink() as nl:
        for tunnel in tunnels:
            sp = lab_plan.nodes[tunnel.sp_nea]
            links.delete_route(nl[sp.netns], tunnel.subnet)
            _delete_address(nl[sp.netns], tunnel.sp_cloud_port, _gateway_cidr(tunnel))
        for address in public_addresses(lab_plan, fp):
            if address not in still_used:
                _delete_address(nl[gateway.netns], gateway.ports[0].name,
                                f"{address}/{prefix}")


def _delete_host_routes(ipr: Any, ifname: str) -> None:
    """The replicas' /32 routes of partial failover: the connected subnet replaces them.

    They are scope link, and the kernel matches the scope when it deletes a route;
    nea's power-off deletes them without one and leaves them behind. Left in place,
    the SP NEA would reach those replicas from its .251 instead of the gateway address.
    """
    index = links.index_of(ipr, ifname)
    for route in ipr.get_routes(family=2, table=254):
        dst = route.get_attr("RTA_DST")
        if dst and route["dst_len"] == 32 and route.get_attr("RTA_OIF") == index:
            with contextlib.suppress(Exception):
                ipr.route("del", dst=f"{dst}/32", oif=index, scope="link")


def _delete_address(ipr: Any, ifname: str, cidr: str) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    iface = IPv4Interface(cidr)
    try:
        ipr.addr("del", index=links.index_of(ipr, ifname), address=str(iface.ip),
                 prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code != 99:  # EADDRNOTAVAIL: already gone, which is what we want
            raise


# ----- undo --------------------------------------------------------------------------


def undo(lab: Lab, tenant: str, say: Say = _quiet) -> PlanReport:
    """Replicas back to Normal in batches, deltas discarded, gateway role and NAT removed."""
    lab.require_up()
    fp = _failover_plan(lab, tenant)
    lab_plan = lab.plan()
    with _held(lab, tenant, fp, "plan undo"):
        state = lab.dir.read()
        record = _record(state, tenant)
        if record.get("status") != RUNNING:
            raise NothingToDo(
                f"the cloud failover plan of {tenant} is not running (it is "
                f"{record.get('status', NOT_STARTED)}): nothing to undo")
        at_sp = [vm for vm in reversed(record.get("vms", []))
                 if state.get("replicas", {}).get(vm, {}).get("state")
                 == ReplicaState.FAILOVER.value]
        lab.dir.journal("plan-undo:start", tenant=tenant, vms=at_sp)
        results: dict[str, dict] = {}
        batches = [at_sp[i:i + fp.undo_batch_size]
                   for i in range(0, len(at_sp), fp.undo_batch_size)]
        for number, batch in enumerate(batches, 1):
            if number > 1 and fp.undo_batch_pause:
                time.sleep(fp.undo_batch_pause)
            for name in batch:
                power.power_off(lab, lab_plan.nodes[f"{name}@sp"])
            for name in batch:
                storage.unmount_failover_view(lab.replica_dir(name), discard_delta=True)
                _set_replica(lab, name, state=ReplicaState.NORMAL.value, restore_point=None,
                             replication="active")
                results[name] = {"status": SUCCESS, "state": ReplicaState.NORMAL.value}
            lab.dir.journal("plan-undo:batch", tenant=tenant, batch=number, vms=batch)
            say(f"batch {number}: {', '.join(batch)} back to Normal, deltas discarded")
        _drop_gateway_role(lab, tenant, fp)
        # the SP NEA may proxy the gateway's address again (nea.gateway_at_sp)
        _update_record(lab, tenant, gateway_taken=False)
        lab.dir.journal("plan-undo:gateway", tenant=tenant,
                        message="gateway role, NAT and public addresses removed")
        say("gateway role, NAT and public addresses removed")
        _restore_pairs(lab, tenant, fp, say)
        with lab.dir.update() as now:
            now.setdefault("plans", {})[tenant] = {
                "status": STOPPED, "vms": [], "results": {},
                "started": record.get("started"), "stopped": time.time(),
            }
        lab.dir.journal("plan-undo:done", tenant=tenant, vms=at_sp)
    return PlanReport(tenant, "undo", STOPPED, results)


def _restore_pairs(lab: Lab, tenant: str, fp: FailoverPlan, say: Say) -> None:
    """A replica outside the plan still in partial failover gets its NEA pair back."""
    lab_plan = lab.plan()
    state = lab.dir.read()
    back = [t.key for t in plan_tunnels(lab_plan, tenant, fp)
            if nea.replicas_at_sp(lab_plan, state, t)]
    nea.power_on(lab, back)  # all at once
    for key in back:
        nea.sync_proxies(lab, key)
        say(f"NEA pair {key} on again for the replicas still in partial failover")


# ----- test --------------------------------------------------------------------------


def test(lab: Lab, tenant: str, say: Say = _quiet) -> PlanReport:
    """Boot the plan's replicas in an isolated network, ping each, roll everything back."""
    lab.require_up()
    fp = _failover_plan(lab, tenant)
    with _held(lab, tenant, fp, "plan test"):
        if _record(lab.dir.read(), tenant).get("status") == RUNNING:
            raise PreconditionFailed(f"the cloud failover plan of {tenant} is running: test "
                                     "a plan before you need it, not while it runs")
        vms = _vm_names(tenant, fp)
        lab.dir.journal("plan-test:start", tenant=tenant, vms=vms)
        sandbox = Sandbox(lab, tenant, fp)
        results: dict[str, dict] = {}
        try:
            sandbox.create()
            say("isolated copy of the cloud network created (no route out)")
            for group, delay in _batches(fp, vms):
                for name in group:
                    results[name] = sandbox.boot(name)
                    lab.dir.journal("plan-test:boot", tenant=tenant, vm=name, **results[name])
                    outcome = results[name]["reason"] or "answers ping"
                    say(f"{name}: {results[name]['status']}, {outcome}")
                if delay:
                    time.sleep(delay)
        finally:
            sandbox.remove()
        lab.dir.journal("plan-test:rolled-back", tenant=tenant,
                        message="isolated network, copies and their overlays removed")
        say("rolled back: the isolated network and the copies are gone")
    ok = all(r["status"] == SUCCESS for r in results.values())
    return PlanReport(tenant, "test", "passed" if ok else FAILED, results)


# ----- status ------------------------------------------------------------------------


def status(lab: Lab, tenant: str) -> dict[str, Any]:
    lab.require_up()
    fp = _failover_plan(lab, tenant)
    lab_plan = lab.plan()
    state = lab.dir.read()
    record = _record(state, tenant)
    running = record.get("status") == RUNNING
    steps = []
    for step in fp.steps:
        name = f"{tenant}/{step.vm}"
        steps.append({
            "vm": name,
            "delay": step.delay,
            "replica_state": state.get("replicas", {}).get(name, {}).get("state"),
            "result": record.get("results", {}).get(name) if running else None,
        })
    return {
        "tenant": tenant,
        "status": record.get("status", NOT_STARTED),
        "interrupted": running and interrupted(record),
        "gateway_taken": running and record.get("gateway_taken", True),
        "started": record.get("started"),
        "restore_point": record.get("restore_point") if running else None,
        "steps": steps,
        "gateway": [{"network": t.key, "address": t.gateway_address}
                    for t in plan_tunnels(lab_plan, tenant, fp)],
        "snat_address": snat_address(lab_plan, fp),
        "publish": [{"vm": e.vm, "port": e.port, "public": e.public,
                     "public_port": e.public_port, "protocol": e.protocol}
                    for e in endpoints(lab_plan, tenant, fp)],
        "max_parallel": fp.max_parallel,
        "undo_batch_size": fp.undo_batch_size,
        "undo_batch_pause": fp.undo_batch_pause,
    }


def plans_summary(lab: Lab, state: dict[str, Any]) -> dict[str, Any]:
    """The "plans" of `netlab status`: each plan of the topology, and its VMs while it runs."""
    out = {}
    for tenant in lab.plan().topology.failover_plans:
        record = _record(state, tenant)
        running = record.get("status") == RUNNING
        out[tenant] = {
            "status": record.get("status", NOT_STARTED),
            "interrupted": running and interrupted(record),
            "vms": {vm: record.get("results", {}).get(vm, {}).get("status", "pending")
                    for vm in record.get("vms", [])} if running else {},
        }
    return out

