"""CLI conventions that need no lab: help, hostnames, hints, status width, messages."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from netlab.cli import hostname_of, main
from netlab.commands.hints import after_up, failover_pair
from netlab.plan import build_plan
from netlab.status_view import render_status
from netlab.topology import load_topology, parse_topology


def test_top_level_help_shows_every_summary_whole() -> None:
    text = CliRunner().invoke(main, ["--help"], terminal_width=80).output
    commands = text.split("Commands:", 1)[1]
    flat = " ".join(commands.split())
    assert "..." not in commands
    for name, command in main.commands.items():
        # the docstring's first line, as written, is in the listing whole
        first = (command.help or "").strip().splitlines()[0]
        assert " ".join(first.split()) in flat, name


@pytest.mark.parametrize(("node", "hostname"), [
    ("acme/db", "acme-db"),
    ("acme/web@sp", "acme-web-sp"),
    ("sp/nea-acme-lan", "sp-nea-acme-lan"),
    ("x/" + "a" * 80, "x-" + "a" * 61),
])
def test_hostnames_are_valid(node: str, hostname: str) -> None:
    assert hostname_of(node) == hostname
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", hostname)


OTHER = """
internet: {subnet: 198.51.100.0/24}
provider: {gateway: 198.51.100.10, core_subnet: 10.99.0.0/24, core_gateway: 10.99.0.1}
tenants:
  shop:
    edge: 198.51.100.31
    networks:
      office:
        subnet: 10.20.0.0/24
        gateway: 10.20.0.1
        nea: {address: 10.20.0.250, sp_address: 10.20.0.251, sp_core_address: 10.99.0.21,
              tunnel_port: 6190}
    vms:
      till: {network: office, address: 10.20.0.5}
      stock: {network: office, address: 10.20.0.6}
"""


def test_hints_come_from_the_lab_in_use() -> None:
    plan = build_plan("x", parse_topology(OTHER))
    hint = after_up(plan, " --lab x")
    assert hint == ("try 'netlab status --lab x' and 'netlab exec --lab x shop/stock -- "
                    "curl -s http://10.20.0.5/'")
    vm, neighbour = failover_pair(plan)
    assert (vm.name, neighbour.name) == ("shop/till", "shop/stock")
    default = after_up(build_plan("demo", load_topology()), "")
    assert default == ("try 'netlab status' and 'netlab exec acme/db -- curl -s "
                       "http://192.168.10.11/'")


def test_no_failover_pair_without_an_nea() -> None:
    flat = OTHER.replace("        nea: {address: 10.20.0.250, sp_address: 10.20.0.251, "
                         "sp_core_address: 10.99.0.21,\n              tunnel_port: 6190}\n", "")
    assert "nea" not in flat
    assert failover_pair(build_plan("x", parse_topology(flat))) is None


def status_data() -> dict:
    iface = {"name": "lab-v10", "mac": "aa:bb:cc:dd:ee:ff", "state": "up",
             "addresses": ["192.168.100.123/24"]}
    vms = [{"name": f"tenantname/vm{i}", "address": f"192.168.100.{100 + i}", "dhcp": False,
            "power": "on", "replica": f"tenantname/vm{i}@sp",
            "replica_state": "Permanent failover", "replication": "excluded",
            "restore_points": 3} for i in range(3)]
    nodes = [{"name": f"tenantname/nea-network{i}", "kind": "vm", "power": "on",
              "namespace": f"lab-tenantname.nea.network{i}", "interfaces": [iface, iface]}
             for i in range(3)]
    return {"lab": "lab", "status": "up", "state_dir": "/var/lib/netlab/lab", "vms": vms,
            "nodes": nodes, "tunnels": {"tenantname/network0": {
                "power": "on", "backend": "userspace", "connectivity": "Failed connectivity",
                "tenant_proxied": ["192.168.100.101", "192.168.100.102"],
                "detail": "the tunnel's handshake has not completed for 12 s"}}}


def test_status_fits_80_columns_without_cutting_an_address() -> None:
    out = io.StringIO()
    render_status(status_data(), Console(file=out, width=80, emoji=False, highlight=False))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for address in ("192.168.100.100", "192.168.100.102", "192.168.100.123/24"):
        assert address in text
    assert "aa:bb:cc" not in text and "lab-tenantname.nea" not in text
    wide = io.StringIO()
    render_status(status_data(), Console(file=wide, width=80), wide=True)
    assert "aa:bb:cc:dd:ee:ff" in wide.getvalue()
    assert "lab-tenantname.nea.network0" in wide.getvalue()


def test_graph_png_without_graphviz_names_the_setup_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no 'dot' anywhere
    done = CliRunner().invoke(main, ["graph", "--topology", "default", "-o",
                                     str(tmp_path / "x.png")])
    assert done.exit_code == 1
    assert "scripts/setup.sh --with-graphviz" in done.output
    assert "(or scripts/setup.sh)" not in done.output


def test_version_and_completion_scripts() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["version"]).output.startswith("netlab ")
    for shell in ("bash", "zsh", "fish"):
        done = runner.invoke(main, ["completion", shell])
        assert done.exit_code == 0 and "_NETLAB_COMPLETE" in done.output, shell
    assert runner.invoke(main, ["completion", "tcsh"]).exit_code == 2


def test_an_unexpected_error_is_one_line_and_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """handle_error on a bug: exit 70, the line names the log, the log the traceback."""
    from netlab import cli_common

    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("NETLAB_LAB", "nolab")

    @click.command()
    @cli_common.json_option
    @cli_common.reports_errors
    @cli_common.runs_without_root
    def broken(as_json: bool) -> None:
        raise ZeroDivisionError("a bug")

    done = CliRunner().invoke(broken, ["--json"])
    assert done.exit_code == cli_common.EXIT_INTERNAL
    log = Path(re.search(r"the traceback is in (\S+)\"", done.output)[1])
    assert log.parent == tmp_path / ".logs"
    assert "ZeroDivisionError: a bug" in log.read_text()
    assert "Traceback (most recent call last)" in log.read_text()


@pytest.mark.parametrize(("args", "text"), [
    (["status", "--nosuch"], "No such option '--nosuch' (see 'netlab status --help')"),
    (["--nosuch", "status"], "No such option '--nosuch'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["vm", "fail"], "Missing argument 'TENANT/VM...' (see 'netlab vm fail --help')"),
    (["status", "--interval", "0"], "Invalid value for '--interval'"),
])
def test_bad_usage_is_one_line_and_exit_2(args: list[str], text: str) -> None:
    done = CliRunner().invoke(main, args, prog_name="netlab")
    assert done.exit_code == 2
    lines = done.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("netlab: ") and text in lines[0], lines


def test_bad_usage_under_json_is_a_json_object() -> None:
    done = CliRunner().invoke(main, ["status", "--json", "--interval", "0"])
    assert done.exit_code == 2
    error = json.loads(done.stdout)
    assert error["exit_code"] == 2 and "--interval" in error["error"]
