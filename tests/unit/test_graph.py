"""`netlab graph`: DOT and text drawings of a plan and a state (pure, no root, no Graphviz)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from netlab.graph import STATE_COLORS, to_ascii, to_dot
from netlab.plan import LabPlan, NodeKind, build_plan
from netlab.topology import load_topology


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    return build_plan("demo", load_topology())


def failover_state(plan: LabPlan) -> dict:
    """A state.json as after 'netlab vm fail acme/web; netlab failover acme/web'."""
    nodes = {n.name: {"power": "on" if n.link_up_at_start else "off"}
             for n in plan.nodes.values() if n.kind not in (NodeKind.TENANT_NEA, NodeKind.SP_NEA)}
    nodes["acme/web"] = {"power": "failed"}
    nodes["acme/web@sp"] = {"power": "on"}
    replicas = {vm.name: {"state": "Normal"} for vm in plan.vms() if plan.replica_of(vm.name)}
    replicas["acme/web"] = {"state": "Failover"}
    return {"status": "up", "nodes": nodes, "replicas": replicas,
            "neas": {"acme/lan": {"power": "on"}, "globex/lan": {"power": "off"}},
            "leases": {"acme/kiosk": "192.168.10.142"}}


def node_statement(dot: str, name: str) -> str:
    found = re.search(rf'^\s*"{re.escape(name)}" \[(.*)\];$', dot, re.M)
    assert found, f"no node statement for {name}"
    return found[1]


def test_dot_has_a_cluster_per_site(plan: LabPlan) -> None:
    dot = to_dot(plan)
    for cluster in ("cluster_internet", '"cluster_tenant_acme"', '"cluster_tenant_globex"',
                    "cluster_provider", '"cluster_cloud_acme/lan"', '"cluster_cloud_globex/lan"'):
        assert f"subgraph {cluster} {{" in dot
    assert dot.count("{") == dot.count("}")


def test_dot_draws_every_node_and_segment(plan: LabPlan) -> None:
    dot = to_dot(plan)
    for name in plan.nodes:
        node_statement(dot, name)
    for name in plan.segments:
        assert f'"segment:{name}" [' in dot
    # every veth of every node is an edge to its segment, in one direction or the other
    for node in plan.nodes.values():
        for port in node.ports:
            pair = {f'"{node.name}"', f'"segment:{port.segment}"'}
            assert any(set(re.findall(r'"[^"]+"', line)[:2]) == pair
                       for line in dot.splitlines() if " -> " in line), pair


def test_dot_draws_the_tunnel_through_the_gateway(plan: LabPlan) -> None:
    dot = to_dot(plan, failover_state(plan))
    to_gw = next(line for line in dot.splitlines() if line.strip().startswith(
        '"acme/nea-lan" -> "sp/cgw"'))
    assert "dashed,bold" in to_gw and "udp/6180" in to_gw
    to_nea = next(line for line in dot.splitlines() if line.strip().startswith(
        '"sp/cgw" -> "sp/nea-acme-lan"'))
    assert "dashed,bold" in to_nea and "6180 -> 1195" in to_nea
    assert '"globex/nea-lan" -> "sp/cgw"' in dot and "udp/6181" in dot


def test_replicas_and_vms_are_coloured_by_replica_state(plan: LabPlan) -> None:
    dot = to_dot(plan, failover_state(plan))
    failover = STATE_COLORS["Failover"]
    assert f'fillcolor="{failover}"' in node_statement(dot, "acme/web@sp")
    assert "Failover" in node_statement(dot, "acme/web@sp")
    assert f'fillcolor="{STATE_COLORS["Normal"]}"' in node_statement(dot, "acme/db")
    # the failed source is drawn powered off, its replica's state still readable
    web = node_statement(dot, "acme/web")
    assert "dashed" in web and "(failed)" in web and "Failover" in web


def test_powered_off_nodes_are_dashed_and_grey(plan: LabPlan) -> None:
    dot = to_dot(plan, failover_state(plan))
    for name in ("acme/db@sp", "globex/nea-lan", "sp/nea-globex-lan"):
        statement = node_statement(dot, name)
        assert "dashed" in statement and "#eeeeee" in statement, name
    for name in ("acme/nea-lan", "sp/nea-acme-lan", "acme/db", "sp/cgw"):
        assert "dashed" not in node_statement(dot, name), name


def test_plan_without_state_draws_the_lab_as_after_up(plan: LabPlan) -> None:
    dot = to_dot(plan)
    assert "dashed" in node_statement(dot, "acme/web@sp")
    assert "Normal" in node_statement(dot, "acme/web@sp")
    assert "dashed" not in node_statement(dot, "acme/web")
    assert "(plan)" in dot


def test_names_are_quoted_for_dot(plan: LabPlan) -> None:
    dot = to_dot(plan)
    # '@', '/' and '-' are not DOT identifier characters: every name must be quoted
    assert re.search(r"(^|\s)acme/web@sp\s", dot) is None


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_dot_renders_with_graphviz(plan: LabPlan) -> None:
    done = subprocess.run(["dot", "-Tsvg"], input=to_dot(plan, failover_state(plan)),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "<svg" in done.stdout and "acme/web@sp" in done.stdout


def test_ascii_contains_every_node(plan: LabPlan) -> None:
    text = to_ascii(plan, failover_state(plan))
    for name in plan.nodes:
        assert name in text
    assert "acme/web@sp" in text and "Failover, power on" in text
    assert "192.168.10.142 (DHCP)" in text
    assert "acme/nea-lan ==udp/6180==> sp/cgw 198.51.100.10 ==DNAT udp/1195==> sp/nea-acme-lan" \
        "  [on]" in text


def test_graph_command_draws_a_topology_without_a_lab() -> None:
    from netlab.cli import main

    runner = CliRunner()
    done = runner.invoke(main, ["graph", "--topology", "default", "--lab", "demo"])
    assert done.exit_code == 0, done.output
    assert done.output.startswith('digraph "netlab demo"')
    done = runner.invoke(main, ["graph", "--topology", "default", "--ascii"])
    assert done.exit_code == 0 and "sp/nea-acme-lan" in done.output


def test_graph_command_names_the_package_when_dot_is_missing(monkeypatch, tmp_path) -> None:
    from netlab.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no 'dot' anywhere
    done = CliRunner().invoke(main, ["graph", "--topology", "default", "-o",
                                     str(tmp_path / "x.svg")])
    assert done.exit_code == 1
    assert "graphviz" in done.output and "apt-get install" in done.output


def test_ascii_tree_has_one_branch_per_site_and_no_trailing_blanks(plan: LabPlan) -> None:
    lines = to_ascii(plan).splitlines()
    assert lines[0] == "netlab lab demo (plan)"
    sites = [line for line in lines if line[:4] in ("├── ", "└── ")]
    assert [s[4:].split(" (")[0].split(" 1")[0] for s in sites] == [
        "internet", "tenant acme", "tenant globex", "service provider", "WireGuard tunnels"]
    assert lines[-1].startswith("    └── globex/lan: ")
    assert not [line for line in lines if line != line.rstrip()]
