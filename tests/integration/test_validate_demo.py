"""`netlab validate` and `netlab demo` on real labs (issue 7, "done when").

Each test has its own lab, leak-checked at teardown like tests/conftest.py's
lab_env, but with its state in a short temporary directory: the proxy-ARP
control sockets live under the state directory, and pytest's tmp_path for a
long test name exceeds the 108-byte AF_UNIX limit (a product bug, reported).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import LabEnv

pytestmark = pytest.mark.root

WEB = "192.168.10.11"
DROP_TABLE = "testdrop"


@pytest.fixture
def lab(short_lab_env: LabEnv) -> LabEnv:
    return short_lab_env


def validate(lab: LabEnv) -> tuple[int, dict[str, Any]]:
    done = lab.netlab("validate", "--json", check=False, timeout=60, input="")
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, json.loads(done.stdout)


def failures(report: dict[str, Any]) -> list[str]:
    return [f"{r['name']} [{r['node']}]: {r['message']}" for r in report["results"]
            if r["status"] == "FAIL"]


def mac_of(status: dict[str, Any], node: str, address: str) -> str:
    for n in status["nodes"]:
        if n["name"] == node:
            for iface in n["interfaces"]:
                if any(a.startswith(f"{address}/") for a in iface["addresses"]):
                    return iface["mac"].lower()
    raise AssertionError(f"{node} has no interface with {address}")


def lab_as_found(status: dict[str, Any]) -> dict[str, Any]:
    """What the demo must leave unchanged: NEA pairs, VM power, replica states."""
    return {
        "neas": status["neas"],
        "vms": [(v["name"], v["power"], v["replica_state"], v["replication"],
                 v["restore_points"]) for v in status["vms"]],
    }


@contextmanager
def gateway_drops_udp(lab: LabEnv, port: int) -> Iterator[None]:
    """A firewall of our own on the cloud gateway, before its DNAT: the tunnel port is dead."""
    netns = f"/run/netns/{lab.netns('sp.cgw')}"
    rules = (f"table ip {DROP_TABLE} {{\n  chain prerouting {{\n"
             "    type filter hook prerouting priority -300; policy accept;\n"
             f"    udp dport {port} drop\n  }}\n}}\n")
    subprocess.run(["nsenter", f"--net={netns}", "nft", "-f", "-"], input=rules, text=True,
                   check=True)
    try:
        yield
    finally:
        subprocess.run(["nsenter", f"--net={netns}", "nft", "delete", "table", "ip", DROP_TABLE],
                       check=False)


def test_validate_follows_failover_and_names_a_blocked_tunnel(lab: LabEnv) -> None:
    lab.netlab("up")

    code, report = validate(lab)
    assert code == 0, failures(report)
    assert report["passed"] and report["topology_tests"] >= 5
    assert {r["kind"] for r in report["results"]} == {"test", "builtin"}
    assert not failures(report)

    lab.netlab("vm", "fail", "acme/web")
    lab.netlab("failover", "acme/web")
    code, report = validate(lab)
    assert code == 0, failures(report)
    replica = [r for r in report["results"] if r["node"] == "acme/web@sp"
               and r["name"] == "replica answers at its production address"]
    assert replica and replica[0]["status"] == "PASS", replica
    tunnel = [r for r in report["results"] if r["name"] == "tunnel acme/lan"]
    assert tunnel[0]["status"] == "PASS"

    with gateway_drops_udp(lab, 6180):
        done = lab.netlab("validate", check=False, timeout=60, input="")
        code, report = validate(lab)
    assert done.returncode == 1 and code == 1
    failed = {r["name"]: r["message"] for r in report["results"] if r["status"] == "FAIL"}
    assert "tunnel acme/lan" in failed, failures(report)
    tunnel_message = failed["tunnel acme/lan"]
    assert "Failed connectivity" in tunnel_message and "6180" in tunnel_message
    assert "6180" in failed["gateway forwards only tunnel ports"]
    # the plain report names the failed tunnel check on a FAIL line and in the summary
    assert re.search(r"^FAIL\s+tunnel acme/lan\s+acme/nea-lan\s+Failed connectivity",
                     done.stdout, re.M), done.stdout
    assert "'tunnel acme/lan'" in done.stdout.splitlines()[-1]
    # globex's tunnel port is untouched
    assert not any("globex" in name for name in failed), failed


def test_demo_without_tty_shows_the_arp_flip_and_leaves_the_lab_as_found(lab: LabEnv) -> None:
    lab.netlab("up")
    before = lab.status()
    web_mac = mac_of(before, "acme/web", WEB)
    nea_mac = mac_of(before, "acme/nea-lan", "192.168.10.250")

    # --step pauses only on a terminal: with stdin a pipe it runs through
    done = lab.netlab("demo", "--step", input="", timeout=90)
    out = done.stdout
    assert out.count("== Step ") == 8 and "Step 8/8" in out
    for command in ("$ netlab vm fail acme/web", "$ netlab failover acme/web",
                    "$ netlab undo acme/web --yes", "$ netlab vm start acme/web",
                    f"$ netlab exec acme/db -- ip neigh show {WEB}"):
        assert command in out, command
    # the ARP entry of .11 on acme/db: the source's MAC, the tenant NEA's, the source's again
    entries = re.findall(rf"^\s+{re.escape(WEB)} dev \S+ lladdr (\S+)", out, re.M)
    assert entries == [web_mac, nea_mac, web_mac], out
    assert "tenant acme, vm web" in out.split("Step 6/8")[1]  # the replica's page
    assert re.search(r"recovery time \d+\.\d+ s", out)
    for step in range(1, 9):
        assert f"step {step} " in out.split("Step 4/8")[1]  # the failover's own steps

    after = lab.status()
    assert lab_as_found(after) == lab_as_found(before)


def test_demo_takes_down_a_lab_it_brought_up(lab: LabEnv) -> None:
    done = lab.netlab("demo", input="", timeout=90)
    assert "$ netlab up" in done.stdout and "$ netlab down" in done.stdout
    assert lab.namespaces() == []
