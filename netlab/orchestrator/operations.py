"""Lifecycle operations, each step journaled (docs/architecture.md#data-flow-failover).

Every operation checks all its preconditions before it changes anything, holds
a per-VM lock for its whole run (a second netlab process is refused), and
records itself in state.json as the "operation" in progress; a later command
that finds an operation whose process is gone rolls it back (failover) or
finishes it (undo) and says which.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from netlab import nea, replication, storage
from netlab.errors import PreconditionFailed, UnknownNode
from netlab.lab import Lab
from netlab.orchestrator import conflicts, power
from netlab.orchestrator.proof import prove
from netlab.orchestrator.states import RUNNING_AT_SP, ReplicaState, check_transition
from netlab.plan import Node, NodeKind
from netlab.processes import process_start_time

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class OperationResult:
    command: str
    vms: list[str]
    recovery_seconds: float | None = None
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # failover: per VM, the restore point used, its age (the RPO) and the records lost
    rpo: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Operation:
    """Journal and crash record of one running operation."""

    def __init__(self, lab: Lab, command: str, vms: list[str], say: Say) -> None:
        self.lab, self.command, self.vms, self.say = lab, command, vms, say
        self.step = 0
        with lab.dir.update() as state:
            state["operation"] = {
                "command": command,
                "vms": vms,
                "pid": os.getpid(),
                "start_time": process_start_time(os.getpid()),
                "started": time.time(),
                "step": 0,
            }

    def log(self, step: int, what: str, message: str, **fields: Any) -> None:
        self.step = step
        # state first: a crash between the two then reports the step just journaled
        with self.lab.dir.update() as state:
            if state.get("operation"):
                state["operation"]["step"] = step
        self.lab.dir.journal(f"{self.command}:{what}", step=step, vms=self.vms, message=message,
                             **fields)
        self.say(f"step {step} {what}: {message}")

    def finish(self) -> None:
        with self.lab.dir.update() as state:
            state["operation"] = None
        self.lab.dir.journal(f"{self.command}:done", vms=self.vms)


def _vm_node(lab: Lab, name: str) -> Node:
    node = lab.plan().node(name)
    if node.kind is not NodeKind.VM:
        raise UnknownNode(f"{name} is not a tenant VM (its kind: {node.kind})")
    return node


def replicated_vm(lab: Lab, name: str) -> Node:
    """The VM `name`, refused unless it is a tenant VM with a replica."""
    vm = _vm_node(lab, name)
    if lab.plan().replica_of(vm.name) is None:
        raise PreconditionFailed(
            f"{vm.name} has no replica (DHCP VMs are not replicated: partial failover "
            "supports static IPs only)"
        )
    return vm


def _replica_state(state: dict[str, Any], vm: str) -> ReplicaState | None:
    data = state.get("replicas", {}).get(vm)
    return ReplicaState(data["state"]) if data else None


def _set_replica(lab: Lab, vm: str, **fields: Any) -> None:
    with lab.dir.update() as state:
        state.setdefault("replicas", {}).setdefault(vm, {}).update(fields)


def _set_replicas(lab: Lab, changes: dict[str, dict[str, Any]]) -> None:
    """_set_replica for several VMs in one state write."""
    with lab.dir.update() as state:
        for vm, fields in changes.items():
            state.setdefault("replicas", {}).setdefault(vm, {}).update(fields)


def _locks(lab: Lab, vms: list[str], command: str) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    try:
        for vm in vms:
            stack.enter_context(lab.dir.hold(vm, command))
    except BaseException:
        stack.close()
        raise
    return stack


# ----- failover ----------------------------------------------------------------------


def failover(
    lab: Lab, vm_names: list[str], restore_point: str | None = None, say: Say = _quiet
) -> OperationResult:
    started = time.monotonic()
    lab.require_up()
    recover_interrupted(lab, say)
    vms = [_vm_node(lab, name) for name in dict.fromkeys(vm_names)]
    with _locks(lab, [v.name for v in vms], "failover"):
        state = lab.dir.read()
        points = {}
        for vm in vms:
            points[vm.name] = _check_failover(lab, state, vm, restore_point)
        nea.check_room_for(lab, [f"{v.tenant}/{v.network}" for v in vms])
        op = _Operation(lab, "failover", [v.name for v in vms], say)
        try:
            result = _run_failover(lab, op, vms, points, state, started, say)
        except BaseException:
            # Not left to the next command: in-process API users would never see it.
            _roll_back_failover(lab, op.vms, say)
            with lab.dir.update() as now:
                now["operation"] = None
            lab.dir.journal("failover:rolled-back", vms=op.vms)
            raise
    return result


def _run_failover(
    lab: Lab,
    op: _Operation,
    vms: list[Node],
    points: dict[str, int],
    state: dict[str, Any],
    started: float,
    say: Say,
) -> OperationResult:
    plan = lab.plan()
    result = OperationResult("failover", [v.name for v in vms])
    op.log(1, "start", "preconditions hold: static IPs, replicated, replicas Normal, "
           "NEA on the network, no other operation")
    for vm in vms:
        result.rpo[vm.name] = replication.failover_rpo(lab, vm.name, points[vm.name]).to_dict()
        storage.mount_failover_view(lab.replica_dir(vm.name), points[vm.name])
    op.log(2, "roll-back", ", ".join(
        f"{vm.name}@sp rolled back to restore point {points[vm.name]} (RPO "
        f"{result.rpo[vm.name]['age_seconds']:.1f} s, {result.rpo[vm.name]['records_lost']} "
        "records lost)" for vm in vms), rpo=result.rpo)
    # all replicas at once: one netlink pass, their servers started together, few writes
    power.start_replicas(lab, [plan.nodes[f"{vm.name}@sp"] for vm in vms])
    _set_replicas(lab, {vm.name: {"state": ReplicaState.FAILOVER.value,
                                  "restore_point": points[vm.name]} for vm in vms})
    for vm in vms:
        if state.get("nodes", {}).get(vm.name, {}).get("power") == "on":
            result.warnings.append(
                f"the source VM {vm.name} is still powered on and may answer ARP for "
                f"{vm.address}: an IP conflict on the tenant LAN (disconnect it, e.g. "
                f"'netlab vm fail {vm.name}')"
            )
    op.log(3, "power-on", "replicas powered on, state Normal -> Failover; sources stay on",
           warnings=result.warnings)
    networks = list(dict.fromkeys(f"{v.tenant}/{v.network}" for v in vms))
    powering = [plan.tunnels[key] for key in networks
                if state.get("neas", {}).get(key, {}).get("power") != "on"]
    # the SP sides of every pair first, together; then the tenant sides (netlab.nea)
    nea.start_sides(lab, powering, "sp")
    op.log(4, "sp-nea", f"SP NEA on for {', '.join(networks)}: WireGuard server up")
    _set_replicas(lab, {vm.name: {"replication": "on hold"} for vm in vms})
    op.log(5, "replication-hold", "replication of the source VMs on hold until Normal")
    nea.start_sides(lab, powering, "tenant")
    backend = nea.backend_for(lab).name
    with lab.dir.update() as now:
        for tunnel in powering:
            now.setdefault("neas", {})[tunnel.key] = {"power": "on", "backend": backend}
    # each SP side's set before its tenant side's: the subnet but the replicas at the SP
    nea.attach_pairs(lab, powering)
    for key in networks:
        if plan.tunnels[key] not in powering:
            nea.sync_proxies(lab, key)
    op.log(6, "tenant-nea", "tenant NEA on: WireGuard client through the gateway, proxy ARP "
           "and gratuitous ARP for " + ", ".join(v.address or "" for v in vms))
    op.log(7, "delta", "writes on the replicas go to the delta of their restore point")
    for name, proof in prove(lab, vms, started).items():
        if "warning" in proof:
            result.warnings.append(proof["warning"])
            continue
        result.recovery_seconds = max(result.recovery_seconds or 0.0, proof["recovery_seconds"])
        result.details[name] = proof
    op.log(8, "proven", f"tenant side reaches the replicas at their production addresses; "
           f"recovery time {result.recovery_seconds or 0:.3f} s",
           recovery_seconds=result.recovery_seconds)
    result.warnings += conflicts.failover_warnings(lab, vms)
    op.finish()
    return result


def _check_failover(lab: Lab, state: dict[str, Any], vm: Node, restore_point: str | None) -> int:
    plan = lab.plan()
    if vm.dhcp:
        raise PreconditionFailed(
            f"{vm.name} gets its address by DHCP: partial failover supports static IPs only "
            "(the replica could not keep an address it leases)"
        )
    if plan.tunnel_for(vm.tenant or "", vm.network or "") is None:
        raise PreconditionFailed(
            f"network {vm.tenant}/{vm.network} has no tenant NEA: failover cannot extend it "
            "to the cloud (add an 'nea:' block to the network in the topology)"
        )
    if _in_running_plan(state, vm):
        raise PreconditionFailed(
            f"{vm.name} is part of a running cloud failover plan: one failover operation "
            "type at a time"
        )
    if _tenant_plan_running(state, vm):
        # The plan made the SP NEA the site's gateway and powered the NEA pair off;
        # a partial failover would switch the pair back on underneath it.
        raise PreconditionFailed(
            f"the cloud failover plan of {vm.tenant} is running: partial failover of its VMs "
            f"waits for 'netlab plan undo {vm.tenant}' (one failover operation type at a time)"
        )
    replica_state = _replica_state(state, vm.name)
    if replica_state is None:
        raise PreconditionFailed(f"{vm.name} has no replica")
    check_transition(f"{vm.name}@sp", replica_state, "failover")
    points = storage.list_restore_points(lab.replica_dir(vm.name))
    if not points:
        raise PreconditionFailed(
            f"{vm.name} was never replicated: run 'netlab replicate {vm.name}' first"
        )
    return storage.get_restore_point(lab.replica_dir(vm.name), restore_point or "latest").id


def _tenant_plan_running(state: dict[str, Any], vm: Node) -> bool:
    return state.get("plans", {}).get(vm.tenant or "", {}).get("status") == "running"


def _in_running_plan(state: dict[str, Any], vm: Node) -> bool:
    plan_state = state.get("plans", {}).get(vm.tenant or "", {})
    return plan_state.get("status") == "running" and vm.name in plan_state.get("vms", [])


# ----- the other lifecycle operations ------------------------------------------------


@contextlib.contextmanager
def _lifecycle(
    lab: Lab, vm_names: list[str], command: str, say: Say
) -> Iterator[tuple[list[Node], dict[str, Any], _Operation]]:
    """Run one lifecycle command: VMs locked, their states checked under the locks, the
    operation recorded for crash recovery, and finished when the body returns."""
    lab.require_up()
    recover_interrupted(lab, say)
    vms = [_vm_node(lab, n) for n in dict.fromkeys(vm_names)]
    with _locks(lab, [v.name for v in vms], command):
        state = lab.dir.read()
        for vm in vms:
            current = _replica_state(state, vm.name)
            if current is None:
                raise PreconditionFailed(f"{vm.name} has no replica")
            if _in_running_plan(state, vm):
                raise PreconditionFailed(
                    f"{vm.name} is part of the running cloud failover plan of {vm.tenant}: one "
                    f"failover operation type at a time; use 'netlab plan undo {vm.tenant}'"
                )
            check_transition(f"{vm.name}@sp", current, command)
        op = _Operation(lab, command, [v.name for v in vms], say)
        yield vms, state, op
        op.finish()


def _after_leaving_sp(lab: Lab, vms: list[Node], say: Say, cut_short: bool = False) -> None:
    """Sync the NEA pairs of `vms`' networks; power a pair off when no replica of its
    network runs at the SP any more.

    With `cut_short` (an operation being rolled back), a pair not recorded as on is
    settled too: a failover cut short may have started one side (a kernel WireGuard
    link leaves no process record) before recording the pair as on.
    """
    plan = lab.plan()
    state = lab.dir.read()
    going = []
    for key in dict.fromkeys(f"{v.tenant}/{v.network}" for v in vms):
        tunnel = plan.tunnels.get(key)
        if tunnel is None:
            continue
        if not cut_short and state.get("neas", {}).get(key, {}).get("power") != "on":
            continue
        if nea.replicas_at_sp(plan, state, tunnel):
            nea.sync_proxies(lab, key)
        else:
            going.append(key)
    nea.power_off(lab, going)  # the pairs of all these networks at once
    for key in going:
        say(f"no replica of {key} runs at the SP any more: NEA pair powered off")


def undo(lab: Lab, vm_names: list[str], force: bool = False, say: Say = _quiet) -> OperationResult:
    with _lifecycle(lab, vm_names, "undo", say) as (vms, _, op):
        plan = lab.plan()
        power.power_off_many(lab, [plan.nodes[f"{vm.name}@sp"] for vm in vms], force=force)
        op.log(1, "power-off", "replicas powered off")
        for vm in vms:
            storage.unmount_failover_view(lab.replica_dir(vm.name), discard_delta=True,
                                          force=force)
        _set_replicas(lab, {vm.name: {"state": ReplicaState.NORMAL.value, "restore_point": None,
                                      "replication": "active"} for vm in vms})
        op.log(2, "discard", "deltas discarded: everything written on the replicas is gone")
        _after_leaving_sp(lab, vms, say)
        op.log(3, "proxies", "proxy entries withdrawn")
        now = lab.dir.read()
        power.announce(*[v for v in vms
                         if now.get("nodes", {}).get(v.name, {}).get("power") == "on"])
        op.log(4, "announce", "sources announced themselves (gratuitous ARP); replication resumes")
    return OperationResult("undo", [v.name for v in vms])


def permanent(lab: Lab, vm_names: list[str], say: Say = _quiet) -> OperationResult:
    with _lifecycle(lab, vm_names, "permanent", say) as (vms, _, op):
        for vm in vms:
            _make_permanent(lab, vm.name)
        op.log(1, "commit", "deltas committed into the replica disks, restore points removed, "
               "sources excluded from replication: the replicas are production now")
    return OperationResult("permanent", [v.name for v in vms])


def _make_permanent(lab: Lab, name: str) -> None:
    """One replica becomes production; repeatable after a crash (commit_delta resumes)."""
    replica = lab.plan().nodes[f"{name}@sp"]
    power._stop_workload(lab, replica)
    lab.dir.journal("permanent:replica-stopped", vm=name)
    storage.commit_delta(lab.replica_dir(name))
    power.start_replica(lab, replica)
    _set_replica(lab, name, state=ReplicaState.PERMANENT.value, restore_point=None,
                 replication="excluded")


def failback(lab: Lab, vm_names: list[str], say: Say = _quiet) -> OperationResult:
    with _lifecycle(lab, vm_names, "failback", say) as (vms, _, op):
        result = OperationResult("failback", [v.name for v in vms])
        for vm in vms:
            power.power_off(lab, vm)
        op.log(1, "source-off", "source VMs powered off")
        _copy_back(lab, vms, result, ReplicaState.READY_TO_SWITCH)
        op.log(2, "copy", "replica changes copied to the source disks", copies=result.details)
    return result


def _copy_back(
    lab: Lab, vms: list[Node], result: OperationResult, then: ReplicaState
) -> None:
    """Make each source disk what its replica's disk is now (incremental), then `then`."""
    for vm in vms:
        summary = storage.copy_changes_to_source(
            power.replica_root(lab, vm.name), lab.disk_dir(vm.name))
        result.details[vm.name] = summary.to_dict()
        _set_replica(lab, vm.name, state=then.value)


def switch(lab: Lab, vm_names: list[str], say: Say = _quiet) -> OperationResult:
    with _lifecycle(lab, vm_names, "switch", say) as (vms, _, op):
        plan = lab.plan()
        result = OperationResult("switch", [v.name for v in vms])
        for vm in vms:
            power.power_off(lab, plan.nodes[f"{vm.name}@sp"])
        op.log(1, "replica-off", "replicas shut down")
        _copy_back(lab, vms, result, ReplicaState.FAILBACK)
        op.log(2, "copy", "remaining changes copied", copies=result.details)
        _after_leaving_sp(lab, vms, say)
        for vm in vms:
            power.start_vm(lab, vm)
        op.log(3, "source-on", "source VMs powered on and announced")
    return result


def commit(lab: Lab, vm_names: list[str], say: Say = _quiet) -> OperationResult:
    with _lifecycle(lab, vm_names, "commit", say) as (vms, _, op):
        for vm in vms:
            _commit_failback(lab, vm.name)
        op.log(1, "commit", "failback committed: replicas Normal, replication resumes")
    return OperationResult("commit", [v.name for v in vms])


def _commit_failback(lab: Lab, name: str) -> None:
    storage.unmount_failover_view(lab.replica_dir(name), discard_delta=True)
    lab.dir.journal("commit:view-dropped", vm=name)
    _set_replica(lab, name, state=ReplicaState.NORMAL.value, restore_point=None,
                 replication="active")


def undo_failback(lab: Lab, vm_names: list[str], say: Say = _quiet) -> OperationResult:
    with _lifecycle(lab, vm_names, "undo-failback", say) as (vms, _, op):
        _back_to_replicas(lab, vms, ReplicaState.FAILOVER)
        op.log(1, "back-to-replica", "running on the replicas again (Failover)")
    return OperationResult("undo-failback", [v.name for v in vms])


def _back_to_replicas(lab: Lab, vms: list[Node], then: ReplicaState) -> None:
    """Sources off, replicas on, NEA pairs on with the replicas proxied, state `then`.

    Each part is skipped when already so: also the roll-back of a switch cut short
    at any step."""
    plan = lab.plan()
    state = lab.dir.read()
    for vm in vms:
        if state.get("nodes", {}).get(vm.name, {}).get("power") == "on":
            power.power_off(lab, vm)
        replica = plan.nodes[f"{vm.name}@sp"]
        if state.get("nodes", {}).get(replica.name, {}).get("power") != "on":
            power.start_replica(lab, replica)
        _set_replica(lab, vm.name, state=then.value)
    lab.dir.journal("back-to-replicas:replicas-on", vms=[v.name for v in vms])
    keys = [key for key in dict.fromkeys(f"{v.tenant}/{v.network}" for v in vms)
            if plan.tunnels.get(key) is not None]
    neas = lab.dir.read().get("neas", {})
    off = [key for key in keys if neas.get(key, {}).get("power") != "on"]
    # a switch cut short while powering a pair off may have left a daemon running
    # without its record: settle those pairs before starting them, all at once
    nea.power_off(lab, off)
    nea.power_on(lab, off)
    for key in keys:
        if key not in off:
            nea.sync_proxies(lab, key)


# ----- replication and VM power ------------------------------------------------------


def replicate(
    lab: Lab, vm_names: list[str] | None = None, say: Say = _quiet
) -> list[dict[str, Any]]:
    """A new restore point per VM, kept to the retention; VMs not Normal are skipped."""
    lab.require_up()
    recover_interrupted(lab, say)
    plan = lab.plan()
    names = vm_names or [v.name for v in plan.vms() if plan.replica_of(v.name)]
    outcome = []
    for name in names:
        _vm_node(lab, name)
        # over the network (netlab.replication): tenant edge -> gateway TCP 6180 -> sp/repl
        job = replication.run_job(lab, name)
        if job["result"] == "ok":
            outcome.append({"vm": name, "restore_point": job["restore_point"],
                            "seconds": job["seconds"], "bytes_sent": job.get("bytes_sent"),
                            "transfer_seconds": job.get("transfer_seconds")})
        else:
            outcome.append({"vm": name, job["result"]: job["reason"]})
    return outcome


def vm_power(lab: Lab, vm_name: str, action: str) -> str:
    lab.require_up()
    node = lab.plan().node(vm_name)
    if node.kind is NodeKind.EDGE:  # the whole site goes (or comes back): see site.py
        from netlab.orchestrator.site import edge_power

        with lab.dir.hold(node.name, f"vm {action}"):
            outcome = edge_power(lab, node, action)
        lab.dir.journal(f"vm-{action}", vm=node.name)
        return outcome
    vm = _vm_node(lab, vm_name)
    with lab.dir.hold(vm.name, f"vm {action}"):
        current = lab.dir.read().get("nodes", {}).get(vm.name, {}).get("power", "off")
        if action == "start" and current == "on":
            return "on (it already was)"
        conflict = ""
        if action == "start" and _replica_state(lab.dir.read(), vm.name) in RUNNING_AT_SP:
            # Veeam's docs: the source must stay off the network while its replica runs
            # (undo/failback bring it back); warn rather than refuse, as they do.
            conflict = (f"; warning: its replica runs at the SP, so two machines now answer "
                        f"ARP for {vm.address} (an IP conflict)")
            lab.dir.journal("warning", vm=vm.name, message=conflict.removeprefix("; warning: "))
        if action == "start":
            power.power_on(lab, vm, lab.disk_dir(vm.name))
            lab.dir.journal("vm-start:powered", vm=vm.name)
            power.announce(vm)
        elif action == "stop":
            power.stop_workload(lab, vm)
            lab.dir.journal("vm-stop:workload", vm=vm.name)
            power.power_off(lab, vm)
        else:  # fail: the disaster; the VM drops off the LAN at once
            power.power_off(lab, vm, power="failed", force=True)
        # the NEA announces the address again and probes it: a conflict recorded while the
        # source ran is cleared once the wire shows nobody else holds it
        if (action != "start" and _replica_state(lab.dir.read(), vm.name) in RUNNING_AT_SP
                and nea.take_over(lab, vm)):
            conflicts.appliance_conflicts(lab, [vm], f"vm {action}")
    lab.dir.journal(f"vm-{action}", vm=vm.name)
    return ("on" + conflict) if action == "start" else (
        "failed" if action == "fail" else "off")


# ----- crash recovery ----------------------------------------------------------------


def recover_interrupted(lab: Lab, say: Say = _quiet) -> str | None:
    """Finish or roll back an operation whose process died; return what was done."""
    state = lab.dir.read()
    op = state.get("operation")
    if not op:
        return None
    if process_start_time(op["pid"]) == op.get("start_time"):
        return None  # still running in another process
    vms = op["vms"]
    if op["command"] == "failover":
        _roll_back_failover(lab, vms, say)
        outcome = f"rolled back the interrupted failover of {', '.join(vms)} (step {op['step']})"
    elif op["command"] == "undo":
        _roll_back_failover(lab, vms, say)
        outcome = f"finished the interrupted undo of {', '.join(vms)}"
    elif op["command"] == "failback":
        # only the copy had begun; the replicas never stopped: Failover again
        for name in vms:
            _set_replica(lab, name, state=ReplicaState.FAILOVER.value)
        outcome = (f"rolled back the interrupted failback of {', '.join(vms)} (step "
                   f"{op['step']}): the replicas still run (Failover); run failback again")
    elif op["command"] == "switch":
        plan = lab.plan()
        _back_to_replicas(lab, [plan.nodes[n] for n in vms], ReplicaState.READY_TO_SWITCH)
        outcome = (f"rolled back the interrupted switch of {', '.join(vms)} (step "
                   f"{op['step']}): the replicas run again (Ready to switch); run switch again")
    elif op["command"] in _FINISHED_AFTER_A_CRASH:
        before, finish = _FINISHED_AFTER_A_CRASH[op["command"]]
        plan = lab.plan()
        state = lab.dir.read()
        left = [n for n in vms if _replica_state(state, n) in before]
        for name in left:
            finish(lab, plan.nodes[name])
        outcome = f"finished the interrupted {op['command']} of {', '.join(vms)}"
    else:
        outcome = (f"found an interrupted '{op['command']}' of {', '.join(vms)} at step "
                   f"{op['step']}; its replicas keep their recorded state, run it again")
    with lab.dir.update() as now:
        now["operation"] = None
    lab.dir.journal("recovered", message=outcome)
    say(outcome)
    return outcome


# Decisions an administrator took that a crash must not turn back: the next command
# finishes them for the VMs still in the state the command left (each step repeatable).
_FINISHED_AFTER_A_CRASH: dict[
    str, tuple[frozenset[ReplicaState], Callable[[Lab, Node], None]]
] = {
    "permanent": (frozenset({ReplicaState.FAILOVER}),
                  lambda lab, vm: _make_permanent(lab, vm.name)),
    "commit": (frozenset({ReplicaState.FAILBACK}),
               lambda lab, vm: _commit_failback(lab, vm.name)),
    # Failover too: a crash after the replicas' state was set but before their NEA pair
    # was on left them unreachable; every part of _back_to_replicas is skipped when done
    "undo-failback": (frozenset({ReplicaState.FAILBACK, ReplicaState.READY_TO_SWITCH,
                                 ReplicaState.FAILOVER}),
                      lambda lab, vm: _back_to_replicas(lab, [vm], ReplicaState.FAILOVER)),
}


def _roll_back_failover(lab: Lab, vm_names: list[str], say: Say) -> None:
    """Replicas off, deltas discarded, Normal; NEA pairs with no replica left at the SP off.

    Also the end state of undo, so an interrupted undo is finished the same way.
    """
    plan = lab.plan()
    power.power_off_many(lab, [plan.nodes[f"{name}@sp"] for name in vm_names
                               if f"{name}@sp" in plan.nodes], force=True)
    for name in vm_names:
        storage.unmount_failover_view(lab.replica_dir(name), discard_delta=True, force=True)
    _set_replicas(lab, {name: {"state": ReplicaState.NORMAL.value, "restore_point": None,
                               "replication": "active"} for name in vm_names})
    _after_leaving_sp(lab, [plan.nodes[n] for n in vm_names], say, cut_short=True)
