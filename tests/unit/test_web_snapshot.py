"""`netlab web`'s pure parts: layout, operation progress, recovery times, ARP answers, actions."""

from __future__ import annotations

import pytest

from netlab.plan import LabPlan, NodeKind, build_plan
from netlab.topology import load_topology
from netlab.web import layout, snapshot
from netlab.web.app import action_argv, action_report, loopback_host


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    return build_plan("demo", load_topology())


def state_after_failover(plan: LabPlan, source_power: str = "on") -> dict:
    nodes = {n.name: {"power": "on" if n.link_up_at_start else "off"}
             for n in plan.nodes.values() if n.kind not in (NodeKind.TENANT_NEA, NodeKind.SP_NEA)}
    nodes["acme/web"] = {"power": source_power}
    nodes["acme/web@sp"] = {"power": "on"}
    replicas = {vm.name: {"state": "Normal"} for vm in plan.vms() if plan.replica_of(vm.name)}
    replicas["acme/web"] = {"state": "Failover", "restore_point": 1}
    return {"status": "up", "nodes": nodes, "replicas": replicas,
            "neas": {"acme/lan": {"power": "on"}, "globex/lan": {"power": "off"}}}


def status_nodes(plan: LabPlan) -> list[dict]:
    """Interfaces as Lab.status() lists them, with a MAC made from the node's name."""
    return [{"name": n.name, "interfaces": [
        {"name": p.name, "mac": f"02:00:00:00:{i:02x}:{j:02x}"}
        for j, p in enumerate(n.ports)]} for i, n in enumerate(plan.nodes.values())]


def test_every_node_is_drawn_once_in_its_site_with_a_position(plan: LabPlan) -> None:
    drawn = layout.elements(plan, None)
    nodes = {e["data"]["id"]: e for e in drawn if "power" in e["data"]}
    assert set(nodes) == set(plan.nodes)
    assert nodes["acme/web"]["data"]["parent"] == "site:acme"
    assert nodes["acme/web@sp"]["data"]["parent"] == "site:sp/acme/lan"
    assert nodes["sp/cgw"]["data"]["parent"] == "site:sp"
    # a VM and its replica face each other: same row, the replica on the right
    web, replica = nodes["acme/web"]["position"], nodes["acme/web@sp"]["position"]
    assert web["y"] == replica["y"] and web["x"] < replica["x"]
    ids = [e["data"]["id"] for e in drawn]
    assert len(ids) == len(set(ids))
    known = set(ids)
    assert all(e["data"]["source"] in known and e["data"]["target"] in known
               for e in drawn if e["group"] == "edges")
    assert sum(1 for e in drawn if e["data"].get("tunnel")) == 2 * len(plan.tunnels)


def test_nodes_carry_power_and_replica_state(plan: LabPlan) -> None:
    nodes = {e["data"]["id"]: e["data"] for e in layout.elements(plan, state_after_failover(plan))
             if "power" in e["data"]}
    assert nodes["acme/web@sp"]["state"] == "Failover"
    assert nodes["acme/web@sp"]["power"] == "on"
    assert nodes["acme/db@sp"]["power"] == "off"
    assert nodes["globex/nea-lan"]["power"] == "off"
    assert nodes["acme/nea-lan"]["power"] == "on"


def test_arp_answers_name_the_nea_for_a_failed_over_address(plan: LabPlan) -> None:
    rows = {r["address"]: r for r in snapshot.arp_answers(
        plan, state_after_failover(plan), status_nodes(plan))["acme/lan"]}
    web = rows["192.168.10.11"]
    assert [a["node"] for a in web["answerers"]] == ["acme/web", "acme/nea-lan"]
    assert web["conflict"] and web["failed_over"]
    assert all(a["mac"].startswith("02:00") for a in web["answerers"])
    assert [a["node"] for a in rows["192.168.10.12"]["answerers"]] == ["acme/db"]
    # the source failed (a simulated disaster): only the NEA answers
    rows = {r["address"]: r for r in snapshot.arp_answers(
        plan, state_after_failover(plan, "failed"), status_nodes(plan))["acme/lan"]}
    assert [a["node"] for a in rows["192.168.10.11"]["answerers"]] == ["acme/nea-lan"]
    assert not rows["192.168.10.11"]["conflict"]


def _step(command: str, step: int, name: str, t: float, **extra: object) -> dict:
    return {"event": f"{command}:{name}", "step": step, "time": t, "vms": ["acme/web"],
            "message": name, **extra}


def test_operations_follow_the_journal(plan: LabPlan) -> None:
    events = [_step("failover", 1, "start", 1.0), _step("failover", 2, "roll-back", 2.0),
              {"event": "failover:rolled-back", "time": 3.0, "vms": ["acme/web"]},
              _step("failover", 1, "start", 4.0), _step("failover", 2, "roll-back", 5.0)]
    ops = snapshot.operations(events)
    assert [o["outcome"] for o in ops] == ["rolled-back", "running"]
    # no operation in state.json: the second one's process is gone
    last = snapshot.latest_operation(events, {})
    assert last["outcome"] == "interrupted"
    assert [s["done"] for s in last["planned"]] == [True, True] + [False] * 6
    running = snapshot.latest_operation(events, {"operation": {"command": "failover"}})
    assert running["outcome"] == "running"
    events += [_step("failover", n, name, 5.0 + n, **({"recovery_seconds": 1.25} if n == 8
                                                      else {}))
               for n, name in enumerate(snapshot.FAILOVER_STEPS[2:], start=3)]
    events.append({"event": "failover:done", "time": 20.0, "vms": ["acme/web"]})
    last = snapshot.latest_operation(events, {})
    assert last["outcome"] == "done" and all(s["done"] for s in last["planned"])
    assert snapshot.recoveries(events) == [{"time": 13.0, "vms": ["acme/web"], "seconds": 1.25}]
    undo = [_step("undo", 1, "power-off", 30.0), _step("undo", 2, "discard", 31.0)]
    last = snapshot.latest_operation(events + undo, {"operation": {"command": "undo"}})
    assert last["command"] == "undo" and "planned" not in last
    assert [s["name"] for s in last["steps"]] == ["power-off", "discard"]


def test_tunnels_show_a_probe_only_while_the_pair_is_on(plan: LabPlan) -> None:
    probes = {"acme/lan": {"power": "on", "connectivity": "Connected",
                           "latest_handshake": 100.0, "detail": "ok", "checked": 101.0},
              "globex/lan": {"power": "on", "connectivity": "Connected"}}
    found = snapshot.tunnels(plan, state_after_failover(plan), probes)
    assert found["acme/lan"]["connectivity"] == "Connected"
    assert found["acme/lan"]["latest_handshake"] == 100.0
    assert found["globex/lan"]["power"] == "off"  # the state says off: an old probe is ignored
    assert found["globex/lan"]["connectivity"] == "-"
    assert snapshot.tunnels(plan, state_after_failover(plan), {})["acme/lan"][
        "connectivity"] == "checking"


def test_an_action_runs_the_cli_with_the_vm_after_the_options() -> None:
    argv = action_argv("t1", "undo", "--force")
    assert argv[1:] == ["-m", "netlab.cli", "undo", "--lab", "t1", "--json", "--yes", "--",
                        "--force"]
    assert "--yes" not in action_argv("t1", "failover", "acme/web")


def test_action_reports_carry_the_cli_lines() -> None:
    refused = action_report("failover", "acme/web", 1, "",
                            "netlab: acme/web@sp is 'Failover'; 'failover' needs 'Normal'\n")
    assert not refused["ok"]
    assert refused["message"] == "netlab: acme/web@sp is 'Failover'; 'failover' needs 'Normal'"
    done = action_report("undo", "acme/web", 0, '{"vms": ["acme/web"], "warnings": []}',
                         "warning: undo discards everything\n")
    assert done["ok"] and done["message"] == "undo: acme/web done"
    assert done["warnings"] == ["undo discards everything"]


@pytest.mark.parametrize(("host", "ok"), [
    ("127.0.0.1:8080", True), ("localhost:8080", True), ("LOCALHOST", True), ("[::1]:8080", True),
    ("[::1]", True), ("127.0.0.2", True), ("evil.example:8080", False), ("", False),
    ("10.0.0.1:8080", False), ("127.0.0.1.evil.example", False),
])
def test_only_loopback_host_names_reach_a_loopback_server(host: str, ok: bool) -> None:
    assert loopback_host(host) is ok
