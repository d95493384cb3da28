"""What the page shows, gathered from the same library calls as `status --json` and `events`.

`build()` runs Lab.status(), which lists interfaces over netlink: it must run
on the main thread (pyroute2 enters namespaces in process). The tunnel probes
(nea_health.connectivity, a ping through each tunnel) are slow and are NOT made here:
the caller passes their latest results in.

The pieces that only read the journal and the state (operation progress,
recovery times, who answers ARP) are pure functions, unit-tested without root.
"""

from __future__ import annotations

import time
from typing import Any

from netlab.errors import NetlabError
from netlab.plan import LabPlan
from netlab.web.layout import elements

# The 8 journaled steps of a failover (DESIGN §2), in order; other commands' steps
# are shown as the journal lists them.
FAILOVER_STEPS = ("start", "roll-back", "power-on", "sp-nea", "replication-hold",
                  "tenant-nea", "delta", "proven")
EVENTS_SHOWN = 300  # the newest journal entries sent to the page
RECOVERIES_SHOWN = 5


def operations(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lifecycle operations in the journal, oldest first, each with its steps and outcome.

    An operation journals "<command>:<step name>" with a step number from 1, then
    "<command>:done" (or "failover:rolled-back").
    """
    found: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for event in events:
        name = str(event.get("event", ""))
        command, _, what = name.partition(":")
        if "step" in event and what:
            step = int(event["step"])
            if current is None or current["command"] != command or step <= current["step"] \
                    or current["outcome"] != "running":
                current = {"command": command, "vms": event.get("vms", []), "step": 0,
                           "started": event.get("time"), "steps": [], "outcome": "running"}
                found.append(current)
            current["step"] = step
            current["steps"].append({"step": step, "name": what, "time": event.get("time"),
                                     "message": event.get("message", "")})
        elif current is not None and current["outcome"] == "running" \
                and command == current["command"] and what in ("done", "rolled-back"):
            current["outcome"] = what
            current["ended"] = event.get("time")
    return found


def latest_operation(events: list[dict[str, Any]], state: dict[str, Any]) -> dict[str, Any] | None:
    """The operation running now (from state.json), else the last one the journal shows."""
    ops = operations(events)
    running = state.get("operation")
    last = ops[-1] if ops else None
    if running:
        if last is None or last["outcome"] != "running" or last["command"] != running["command"]:
            # started, nothing journaled yet
            last = {"command": running["command"], "vms": running.get("vms", []), "step": 0,
                    "started": running.get("started"), "steps": [], "outcome": "running"}
    elif last is not None and last["outcome"] == "running":
        last = {**last, "outcome": "interrupted"}  # its process is gone without a "done"
    if last is not None and last["command"] == "failover":
        done = {s["name"] for s in last["steps"]}
        last = {**last, "planned": [{"step": i + 1, "name": n, "done": n in done}
                                    for i, n in enumerate(FAILOVER_STEPS)]}
    return last


def recoveries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recovery times that failovers reported (command start to first reply), newest first."""
    out = [{"time": e.get("time"), "vms": e.get("vms", []),
            "seconds": e.get("recovery_seconds")}
           for e in events
           if e.get("event") == "failover:proven" and e.get("recovery_seconds") is not None]
    return out[::-1][:RECOVERIES_SHOWN]


def _macs(status_nodes: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(n["name"], i["name"]): i.get("mac") or "?"
            for n in status_nodes for i in n.get("interfaces", [])}


def arp_answers(plan: LabPlan, state: dict[str, Any],
                status_nodes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per tenant network with an NEA pair: who answers ARP for each VM's address.

    The source VM answers while it is powered on; the tenant NEA answers (proxy
    ARP, its LAN interface's MAC) for every replica running at the SP while the
    pair is on — the set netlab gives its proxy-ARP daemon. Two answerers: an IP
    conflict on the LAN.
    """
    from netlab.nea import replicas_at_sp

    macs = _macs(status_nodes)
    out: dict[str, list[dict[str, Any]]] = {}
    for key, tunnel in plan.tunnels.items():
        proxied = set(replicas_at_sp(plan, state, tunnel))
        nea_on = state.get("neas", {}).get(key, {}).get("power") == "on"
        rows = []
        for vm in plan.vms():
            if (vm.tenant, vm.network) != (tunnel.tenant, tunnel.network) or not vm.address:
                continue
            answerers = []
            if state.get("nodes", {}).get(vm.name, {}).get("power", "on") == "on":
                answerers.append({"node": vm.name, "role": "source VM",
                                  "mac": macs.get((vm.name, vm.port.name), "?")})
            if nea_on and vm.address in proxied:
                answerers.append({"node": tunnel.tenant_nea, "role": "tenant NEA",
                                  "mac": macs.get((tunnel.tenant_nea, tunnel.tenant_lan_port),
                                                  "?")})
            rows.append({"address": vm.address, "vm": vm.name,
                         "state": state.get("replicas", {}).get(vm.name, {}).get("state"),
                         "failed_over": vm.address in proxied, "answerers": answerers,
                         "conflict": len(answerers) > 1})
        out[key] = rows
    return out


def tunnels(plan: LabPlan, state: dict[str, Any],
            probes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each NEA pair: power from the state, connectivity and handshake from the last probe."""
    out = {}
    for key in plan.tunnels:
        power = state.get("neas", {}).get(key, {}).get("power", "off")
        info: dict[str, Any] = {"power": power, "connectivity": "-", "latest_handshake": None,
                                "detail": "NEA pair powered off", "checked": None}
        probe = probes.get(key)
        if power == "on":
            if probe and probe.get("power") == "on":
                info.update({k: probe.get(k) for k in
                             ("connectivity", "latest_handshake", "detail", "checked")})
            else:
                info.update(connectivity="checking", detail="probing the tunnel")
        out[key] = info
    return out


def rpo_seconds(lab: Any, vm: str, state: dict[str, Any],
                events: list[dict[str, Any]]) -> float | None:
    """Data lost by a failover: its start minus the time of the restore point it runs from."""
    from netlab import storage

    replica = state.get("replicas", {}).get(vm, {})
    point_id = replica.get("restore_point")
    starts = [e["time"] for e in events
              if e.get("event") == "failover:start" and vm in e.get("vms", [])]
    if point_id is None or not starts:
        return None
    try:
        points = storage.list_restore_points(lab.replica_dir(vm))
    except NetlabError:
        return None
    for point in points:
        if point.id == point_id:
            return round(starts[-1] - point.created.timestamp(), 3)
    return None


def build(lab_name: str, probes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything the page shows about lab `lab_name` now (main thread only: netlink)."""
    from netlab.lab import Lab
    from netlab.orchestrator.states import RUNNING_AT_SP

    lab = Lab(lab_name)  # afresh: the lab may have been brought down and up again
    events = lab.dir.events()
    state = lab.dir.read()
    out: dict[str, Any] = {
        "lab": lab_name, "time": time.time(), "up": False, "message": "",
        "events": events[-EVENTS_SHOWN:], "event_count": len(events),
        "operation": latest_operation(events, state), "recoveries": recoveries(events),
        "elements": [], "nodes": [], "vms": [], "tunnels": {}, "arp": {}, "warnings": [],
    }
    try:
        status = lab.status()
        plan = lab.plan()
    except NetlabError as exc:
        out["message"] = str(exc)
        return out
    state = lab.dir.read()  # status() read it too; the newer copy is at least as fresh
    vms = status["vms"]
    for vm in vms:
        vm["rpo_seconds"] = (rpo_seconds(lab, vm["name"], state, events)
                             if vm.get("replica_state") in RUNNING_AT_SP else None)
    drawn = elements(plan, state)
    replica_states = {e["data"]["id"]: e["data"].get("state") for e in drawn
                      if e["group"] == "nodes" and "power" in e["data"]}
    out.update(
        up=True, status=status["status"], vms=vms, warnings=status["warnings"],
        nodes=[{"name": n["name"], "kind": n["kind"], "power": n["power"],
                "state": replica_states.get(n["name"])} for n in status["nodes"]],
        elements=drawn, tunnels=tunnels(plan, state, probes),
        arp=arp_answers(plan, state, status["nodes"]),
    )
    return out
