"""Cloud failover plan: the pure parts (rulesets, addresses, start batches), no root."""

from __future__ import annotations

import pytest

from netlab.orchestrator import cloud_plan
from netlab.plan import PLAN_MARK, LabPlan, build_plan
from netlab.topology import parse_topology
from netlab.topology.loader import default_topology_text


@pytest.fixture
def plan() -> LabPlan:
    return build_plan("demo", parse_topology(default_topology_text()))


def test_gateway_publishes_web_and_snats_the_site(plan: LabPlan) -> None:
    fp = plan.topology.failover_plans["acme"]
    ruleset = cloud_plan.gateway_plan_ruleset(plan, "acme", fp)
    assert ruleset.startswith("table ip netlab_plan_acme {")
    assert "ip daddr 198.51.100.20 tcp dport 80 dnat ip to 10.99.0.11:80" in ruleset
    assert "ip saddr 10.99.0.11 snat ip to 198.51.100.20" in ruleset
    assert f"meta mark set {PLAN_MARK:#x}" in ruleset
    assert "10.99.0.12" not in ruleset  # globex's SP NEA is not touched
    assert cloud_plan.public_addresses(plan, fp) == ["198.51.100.20"]


def test_sp_nea_routes_the_site_but_not_into_the_sp_core(plan: LabPlan) -> None:
    fp = plan.topology.failover_plans["acme"]
    tunnel = plan.tunnels["acme/lan"]
    ruleset = cloud_plan.sp_nea_plan_ruleset(plan, "acme", fp, tunnel)
    assert "ip daddr 10.99.0.11 tcp dport 80 dnat ip to 192.168.10.11:80" in ruleset
    assert "ip saddr 192.168.10.0/24 snat ip to 10.99.0.11" in ruleset
    assert "ip daddr != 10.99.0.0/24" in ruleset


def test_start_batches_follow_delays_and_the_parallel_cap(plan: LabPlan) -> None:
    fp = plan.topology.failover_plans["acme"]
    vms = [f"acme/{s.vm}" for s in fp.steps]
    assert list(cloud_plan._batches(fp, vms)) == [
        (["acme/db"], 2), (["acme/app"], 2), (["acme/web"], 0.0)]
    no_delays = fp.model_copy(update={
        "steps": [s.model_copy(update={"delay": 0}) for s in fp.steps], "max_parallel": 2})
    assert list(cloud_plan._batches(no_delays, vms)) == [
        (["acme/db", "acme/app"], 0), (["acme/web"], 0.0)]
