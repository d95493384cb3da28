"""netlab.verify without root: the states checks follow, filters, exit status, topology tests."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from netlab import verify
from netlab.plan import build_plan
from netlab.topology import parse_topology
from netlab.topology.loader import default_topology_text
from netlab.topology.model import Expectation, ValidateTest
from netlab.verify import CheckResult, gateway, topology_tests, world

# ----- exit status -----------------------------------------------------------------------


def _r(passed: bool, skipped: bool = False) -> CheckResult:
    return CheckResult("check", "acme/db", passed, "", skipped=skipped)


def test_exit_status_zero_when_every_check_that_ran_passed() -> None:
    assert verify.exit_code([_r(True), _r(True, skipped=True)]) == verify.EXIT_PASSED == 0


def test_exit_status_one_on_any_failure() -> None:
    assert verify.exit_code([_r(True), _r(False)]) == verify.EXIT_FAILED == 1
    assert verify.exit_code([_r(False), _r(True, skipped=True)]) == 1


def test_exit_status_says_when_nothing_was_tested() -> None:
    # a topology without validate: tests whose built-in checks pass exits 0
    assert verify.exit_code([_r(True)]) == 0
    assert verify.exit_code([_r(True, skipped=True)]) == verify.EXIT_NOTHING_TESTED == 3
    assert verify.exit_code([]) == 3


# ----- states the checks follow (synthetic state files) ----------------------------------

PLAN = build_plan("t1", parse_topology(default_topology_text(), source="default"))
VMS = ["acme/web", "acme/db", "acme/app", "acme/kiosk", "globex/web", "globex/erp"]


def home_state() -> dict[str, Any]:
    """The state right after `up`: every VM on, every replica Normal, NEA pairs off."""
    nodes = {name: {"power": "on"} for name in [*VMS, "acme/edge", "globex/edge", "sp/cgw"]}
    nodes |= {f"{vm}@sp": {"power": "off"} for vm in VMS if vm != "acme/kiosk"}
    return {"status": "up", "nodes": nodes, "leases": {"acme/kiosk": "192.168.10.102"},
            "neas": {"acme/lan": {"power": "off"}, "globex/lan": {"power": "off"}},
            "replicas": {vm: {"state": "Normal"} for vm in VMS if vm != "acme/kiosk"},
            "plans": {}}


def failed_over(state: dict[str, Any], vm: str, replica: str = "Failover",
                source: str = "failed") -> dict[str, Any]:
    state["nodes"][vm]["power"] = source
    state["nodes"][f"{vm}@sp"]["power"] = "on"
    state["replicas"][vm]["state"] = replica
    state["neas"][vm.split("/")[0] + "/lan"]["power"] = "on"
    return state


def plan_running(state: dict[str, Any]) -> dict[str, Any]:
    """README walkthrough: vm stop acme/edge; plan start acme."""
    state["nodes"]["acme/edge"]["power"] = "off"
    for vm in ("acme/web", "acme/db", "acme/app"):
        state["nodes"][f"{vm}@sp"]["power"] = "on"
        state["replicas"][vm]["state"] = "Failover"
    state["plans"]["acme"] = {"status": "running", "vms": ["acme/db", "acme/app", "acme/web"]}
    return state


def by_key(state: dict[str, Any]) -> dict[tuple[str, str], world.Segment]:
    return {(s.key, s.where): s for s in world.segments(PLAN, state)}


def test_at_home_each_lan_is_one_segment_with_its_edge_as_gateway() -> None:
    segs = by_key(home_state())
    assert set(segs) == {("acme/lan", "site"), ("globex/lan", "site")}
    acme = segs[("acme/lan", "site")]
    assert [e.name for e in acme.members] == ["acme/web", "acme/db", "acme/app", "acme/kiosk"]
    assert acme.gateway is not None and acme.gateway.name == "acme/edge"
    assert not acme.stretched


def test_partial_failover_stretches_the_lan_to_the_replica() -> None:
    acme = by_key(failed_over(home_state(), "acme/web"))[("acme/lan", "site")]
    assert acme.stretched and "acme/web@sp" in [e.name for e in acme.members]
    assert "acme/web" not in [e.name for e in acme.members]  # failed: off the LAN
    assert acme.gateway is not None and acme.gateway.name == "acme/edge"


def test_a_running_plan_puts_the_replicas_on_a_cloud_segment_with_the_sp_nea_as_gateway() -> None:
    segs = by_key(plan_running(home_state()))
    cloud = segs[("acme/lan", "cloud")]
    assert [e.name for e in cloud.members] == ["acme/web@sp", "acme/db@sp", "acme/app@sp"]
    assert cloud.gateway is not None and cloud.gateway.name == "sp/nea-acme-lan"
    assert cloud.gateway.address == "192.168.10.1"
    site = segs[("acme/lan", "site")]
    assert site.gateway is None and not any("@sp" in e.name for e in site.members)
    assert ("globex/lan", "cloud") not in segs


@pytest.mark.parametrize(("replica", "source", "plan", "holder"), [
    ("Normal", "on", False, "acme/db"),
    ("Failover", "on", False, "acme/db"),  # the source still runs: an IP conflict, not a move
    ("Failover", "failed", False, "acme/db@sp"),
    ("Ready to switch", "off", False, "acme/db@sp"),
    ("Failback", "on", False, "acme/db"),
    ("Permanent failover", "on", False, "acme/db@sp"),
    ("Failover", "on", True, "acme/db@sp"),  # the plan runs the site at the SP
])
def test_a_topology_test_follows_its_vm(replica: str, source: str, plan: bool,
                                        holder: str) -> None:
    state = home_state()
    if plan:
        state = plan_running(state)
    state["replicas"]["acme/db"]["state"] = replica
    state["nodes"]["acme/db"]["power"] = source
    assert world.role_holder(PLAN, state, PLAN.node("acme/db")).name == holder


class FakeLab:
    """What the checks ask of a Lab without root: its name, plan, state and node power."""

    name = "t1"

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.state = state or home_state()

    def plan(self) -> Any:
        return PLAN

    def require_up(self) -> dict[str, Any]:
        return self.state

    def node_power(self, state: dict, node: Any) -> str:
        return str(state["nodes"].get(node.name, {}).get("power", "on"))


def ctx_of(state: dict[str, Any] | None = None) -> verify.Context:
    return verify.Context.of(FakeLab(state))


def lines(ctx: verify.Context, **filters: Any) -> list[tuple[str, str, str | None]]:
    return [(t.name, t.node, t.result.status if t.result else None)
            for _, t in verify.select(ctx, **filters)]


def test_the_plan_walkthrough_decides_the_tunnel_a_skip_that_names_the_plan() -> None:
    ctx = ctx_of(plan_running(home_state()))
    [tunnel] = [t for _, t in verify.select(ctx, tests=["tunnel acme/lan"])]
    assert tunnel.result is not None and tunnel.result.status == "SKIP"
    assert "cloud failover plan of acme" in tunnel.result.message
    replicas = [t for _, t in verify.select(ctx, tests=["replica answers at its production "
                                                        "address"])]
    assert {t.node for t in replicas} == {"acme/web@sp", "acme/db@sp", "acme/app@sp"}
    assert all(t.job.prober.name == "sp/nea-acme-lan" and t.job.cloud for t in replicas)


def test_a_pair_off_while_a_replica_runs_at_the_sp_is_a_failure_not_a_skip() -> None:
    state = failed_over(home_state(), "acme/web")
    state["neas"]["acme/lan"]["power"] = "off"
    [tunnel] = [t for _, t in verify.select(ctx_of(state), tests=["tunnel acme/lan"])]
    assert tunnel.result is not None and tunnel.result.status == "FAIL"
    assert "acme/web@sp" in tunnel.result.message


def test_isolation_with_nothing_to_try_is_a_skip() -> None:
    state = home_state()
    for vm in ("globex/web", "globex/erp"):  # acme has no address of globex to try
        state["nodes"][vm]["power"] = "off"
    found = {node: status for name, node, status in lines(ctx_of(state),
                                                          tests=["tenants are isolated"])}
    assert found == {"acme/db": None}  # 192.168.10.20 is absent from acme: probed
    topo = PLAN.topology
    only_acme = topo.model_copy(update={"tenants": {"acme": topo.tenants["acme"]},
                                        "failover_plans": {}, "validate_tests": []})
    ctx = verify.Context(FakeLab(), build_plan("t1", only_acme), home_state())
    ctx.segments = world.segments(ctx.plan, ctx.state)
    assert lines(ctx, tests=["tenants are isolated"]) == [
        ("tenants are isolated", "acme/web", "SKIP")]


def test_filters_by_check_name_family_and_node() -> None:
    ctx = ctx_of()
    assert {n for n, _, _ in lines(ctx, tests=["tunnel"])} == {"tunnel acme/lan",
                                                              "tunnel globex/lan"}
    assert {n for n, _, _ in lines(ctx, tests=["TUNNEL ACME/LAN"])} == {"tunnel acme/lan"}
    assert {node for _, node, _ in lines(ctx, nodes=["globex/erp"])} == {"globex/erp"}
    assert lines(ctx, tests=["kiosk has a DHCP lease"], nodes=["acme/kiosk"]) == [
        ("kiosk has a DHCP lease", "acme/kiosk", None)]


def test_unknown_filter_names_exit_2_with_the_valid_names() -> None:
    with pytest.raises(verify.UnknownCheck, match="tunnel acme/lan") as info:
        verify.select(ctx_of(), tests=["no such check"])
    assert info.value.exit_code == 2
    with pytest.raises(verify.UnknownNode):
        verify.select(ctx_of(), nodes=["acme/nope"])


# ----- running a topology test (tools faked) ------------------------------------------------


def _fake_runs(monkeypatch: pytest.MonkeyPatch, outcomes: list[tuple[int, str]]) -> list[list]:
    calls: list[list] = []

    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append([kw.get("netns"), *argv])
        code, out = outcomes[min(len(calls), len(outcomes)) - 1]
        return subprocess.CompletedProcess(argv, code, out, "")

    monkeypatch.setattr(topology_tests, "run", fake_run)
    return calls


def _run(ctx: verify.Context, test: ValidateTest, sleep: Any = lambda _: None) -> list:
    return [t.result or topology_tests.run_test(ctx, t, sleep=sleep)
            for t in topology_tests.test_targets(ctx, test)]


def test_topology_test_retries_until_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_runs(monkeypatch, [(28, ""), (0, "<p>tenant acme, vm web</p>")])
    slept: list[float] = []
    test = ValidateTest(name="web", nodes=["acme/db"], command="curl -s http://192.168.10.11/",
                        expect=Expectation(contains="tenant acme"), retry=2, wait=0.5,
                        pass_message="acme's page")
    [result] = _run(ctx_of(), test, sleep=slept.append)
    assert result.passed and result.message == "acme's page" and result.kind == "test"
    assert result.details["attempts"] == 2 and slept == [0.5]
    assert calls[0][0] == "t1-acme.db" and calls[0][1:3] == ["sh", "-c"]


def test_topology_test_fails_with_its_message_and_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_runs(monkeypatch, [(0, "tenant globex")])
    test = ValidateTest(name="web", nodes=["acme/db", "acme/app"], command=["curl", "x"],
                        expect=Expectation(contains="tenant acme"), retry=1, wait=0,
                        fail_message="no page")
    results = _run(ctx_of(), test)
    assert [r.node for r in results] == ["acme/db", "acme/app"]
    assert all(not r.passed and r.details["attempts"] == 2 for r in results)
    assert results[0].message.startswith("no page: output does not contain 'tenant acme'")


def test_topology_test_on_a_powered_off_vm_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_runs(monkeypatch, [(0, "")])
    state = home_state()
    state["nodes"]["acme/web"]["power"] = "failed"
    test = ValidateTest(name="t", nodes=["acme/web"], command="true")
    [result] = _run(ctx_of(state), test)
    assert result.skipped and result.status == "SKIP" and "failed" in result.message
    assert result.kind == "test" and calls == []


def test_topology_test_runs_in_the_replica_during_a_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_runs(monkeypatch, [(0, "")])
    test = ValidateTest(name="t", nodes=["acme/db"], command="true")
    [result] = _run(ctx_of(plan_running(home_state())), test)
    assert result.passed and result.node == "acme/db@sp"
    assert result.details["declared_node"] == "acme/db" and "runs at the SP" in result.message
    assert calls[0][0] == "t1-acme.db@sp"


# ----- gateway probes ------------------------------------------------------------------------


def test_gateway_probes_expect_only_each_tenants_tunnel_port_forwarded() -> None:
    plan = FakeLab().plan()
    probes = gateway.gateway_probes(plan)
    forwarded = {(p.edge, p.proto, p.port) for p in probes if p.tunnel}
    assert forwarded == {("acme/edge", "udp", 6180), ("globex/edge", "udp", 6181),
                         ("acme/edge", "tcp", 6180), ("globex/edge", "tcp", 6180)}  # replication
    refused = {(p.proto, p.port) for p in probes if p.tunnel is None}
    assert ("udp", 1195) in refused and ("tcp", 6181) in refused  # TCP on a tunnel port too
    assert not refused & {("udp", 6180), ("udp", 6181)}
    assert len({p.sport for p in probes}) == len(probes)  # one counter rule per probe


def test_counter_table_counts_before_the_gateway_filters_and_after() -> None:
    plan = FakeLab().plan()
    text = gateway._counter_table("netlab_verify_1", gateway.gateway_probes(plan))
    assert text.startswith("table ip netlab_verify_1 {")
    assert "hook prerouting priority -350" in text and "hook forward priority 100" in text
    assert 'comment "in0"' in text and 'comment "fw0"' in text
