"""`netlab validate` in every lifecycle state, on real labs (issue 20, issue 15's arping).

Three labs, each walking through several states in sequence:

* the default lab: at home, after `plan test`, partial failover with the source
  still on (an IP conflict: two MACs), partial failover, Ready to switch,
  Permanent failover; with another `arping` on PATH nothing changes;
* the default lab through the README's plan walkthrough: `vm stop acme/edge;
  plan start acme; validate`, then `plan undo` and back home;
* a generated topology with other tenant and VM names and no `validate:` tests.

Each lab has its own name and a short state directory (the proxy-ARP control
sockets live under it; AF_UNIX paths are limited to 108 bytes).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import LabEnv, netlab_argv

pytestmark = pytest.mark.root

WEB = "192.168.10.11"
REPLICA = "replica answers at its production address"


@pytest.fixture
def lab(short_lab_env: LabEnv) -> LabEnv:
    return short_lab_env


def validate(lab: LabEnv, *args: str, env: dict[str, str] | None = None
             ) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([*netlab_argv(), "validate", "--json", *args], env=env or lab.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode in (0, 1, 3), done.stderr
    return done.returncode, json.loads(done.stdout)


def failures(report: dict[str, Any]) -> list[str]:
    return [f"{r['name']} [{r['node']}]: {r['message']}" for r in report["results"]
            if r["status"] == "FAIL"]


def rows(report: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {r["node"]: r for r in report["results"] if r["name"] == name}


def passes(lab: LabEnv, state: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    code, report = validate(lab, env=env)
    assert code == 0, (state, failures(report))
    return report


def mac_of(lab: LabEnv, node: str) -> str:
    for n in lab.status()["nodes"]:
        if n["name"] == node:
            return str(n["interfaces"][0]["mac"]).lower()
    raise AssertionError(node)


def other_arping(tmp: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose `arping` prints the other package's format and records each call."""
    bin_dir, calls = tmp / "bin", tmp / "arping-calls"
    bin_dir.mkdir()
    script = bin_dir / "arping"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'echo "ARPING $(eval echo \\${$#})"\n'
        'echo "42 bytes from de:ad:be:ef:00:01 ($(eval echo \\${$#})): index=0 time=1.1 usec"\n'
        'echo "--- statistics ---"\n'
        'echo "1 packets transmitted, 1 packets received,   0% unanswered (0 extra)"\n')
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, calls


def test_results_stream_as_checks_finish(lab: LabEnv) -> None:
    lab.netlab("up")
    proc = subprocess.Popen([*netlab_argv(), "validate"], env=lab.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    # the first line came through the pipe while the probes were still running
    still_running = proc.poll() is None
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 0, rest + proc.stderr.read()  # type: ignore[union-attr]
    assert first.split()[0] in ("PASS", "SKIP") and still_running, first
    assert "passed, 0 failed" in rest.splitlines()[-1]


def test_partial_failover_lifecycle(lab: LabEnv, tmp_path: Path) -> None:
    lab.netlab("up")
    home = passes(lab, "at home")
    assert {r["kind"] for r in home["results"]} == {"test", "builtin"}
    assert rows(home, "tunnel acme/lan")["acme/nea-lan"]["status"] == "SKIP"

    lab.netlab("plan", "test", "acme", timeout=120)
    passes(lab, "after plan test")

    # the source still on: two MACs answer for its address, and validate says so
    lab.netlab("failover", "acme/web", timeout=120)
    code, report = validate(lab)
    assert code == 1
    conflict = rows(report, REPLICA)["acme/web@sp"]
    assert conflict["status"] == "FAIL" and "IP conflict: 2 MACs" in conflict["message"]
    assert set(conflict["details"]["macs"]) == {mac_of(lab, "acme/web"),
                                                mac_of(lab, "acme/nea-lan")}

    lab.netlab("vm", "fail", "acme/web")
    report = passes(lab, "Failover")
    replica = rows(report, REPLICA)["acme/web@sp"]
    assert replica["status"] == "PASS"
    assert replica["details"]["macs"] == [mac_of(lab, "acme/nea-lan")]
    assert rows(report, "tunnel acme/lan")["acme/nea-lan"]["status"] == "PASS"

    # issue 15: with the other arping package installed the verdict is the same
    env, calls = other_arping(tmp_path)
    again = passes(lab, "Failover, other arping", env={**env, **{
        k: v for k, v in lab.env.items() if k.startswith("NETLAB_")}})
    assert rows(again, REPLICA)["acme/web@sp"]["details"]["macs"] == replica["details"]["macs"]
    assert not calls.exists(), "validate ran arping: " + calls.read_text()

    # no terminal: commands that would ask go on (and --yes is not on every one yet)
    lab.netlab("failback", "acme/web", timeout=120, input="")
    report = passes(lab, "Ready to switch")
    assert rows(report, REPLICA)["acme/web@sp"]["status"] == "PASS"

    lab.netlab("undo-failback", "acme/web", timeout=120, input="")
    lab.netlab("permanent", "acme/web", timeout=120, input="")
    report = passes(lab, "Permanent failover")
    assert rows(report, REPLICA)["acme/web@sp"]["status"] == "PASS"


def test_cloud_failover_plan_walkthrough(lab: LabEnv) -> None:
    lab.netlab("up")
    lab.netlab("vm", "stop", "acme/edge")
    lab.netlab("plan", "start", "acme", timeout=120)
    report = passes(lab, "plan running")

    tunnel = rows(report, "tunnel acme/lan")["acme/nea-lan"]
    assert tunnel["status"] == "SKIP" and "cloud failover plan of acme" in tunnel["message"]
    replicas = rows(report, REPLICA)
    assert set(replicas) == {"acme/web@sp", "acme/db@sp", "acme/app@sp"}
    for node, row in replicas.items():
        assert row["status"] == "PASS" and row["details"]["prober"] == "sp/nea-acme-lan"
        assert row["details"]["macs"] == [mac_of(lab, node)]
    neighbours = rows(report, "reaches its neighbours")["acme/db@sp"]
    assert "sp/nea-acme-lan (gateway) 192.168.10.1" in neighbours["message"]
    assert rows(report, "published service answers")["acme/web@sp"]["status"] == "PASS"
    # the topology's tests of acme's VMs run where those VMs run now
    internet = rows(report, "VMs reach the internet")
    assert internet["acme/db@sp"]["status"] == "PASS" and "acme/db" not in internet

    lab.netlab("plan", "undo", "acme", "--yes", timeout=180)
    lab.netlab("vm", "start", "acme/edge")
    report = passes(lab, "back home")
    assert not rows(report, REPLICA)


TOPOLOGY = """\
name: other
internet: {subnet: 203.0.113.0/24}
provider:
  gateway: 203.0.113.10
  core_subnet: 10.98.0.0/24
  core_gateway: 10.98.0.1
  nea_listen_port: 1195
tenants:
  foo:
    edge: 203.0.113.11
    networks:
      office:
        subnet: 172.20.5.0/24
        gateway: 172.20.5.1
        nea: {address: 172.20.5.250, sp_address: 172.20.5.251,
              sp_core_address: 10.98.0.11, tunnel_port: 6190}
    vms:
      alpha: {network: office, address: 172.20.5.21}
      beta: {network: office, address: 172.20.5.22}
"""


def test_a_topology_without_tests_passes_with_exit_0_and_filters_work(
        lab: LabEnv, tmp_path: Path) -> None:
    topology = tmp_path / "other.yaml"
    topology.write_text(TOPOLOGY)
    lab.netlab("up", str(topology))
    code, report = validate(lab)
    assert code == 0, failures(report)
    assert report["topology_tests"] == 0 and {r["kind"] for r in report["results"]} == {
        "builtin"}
    plain = lab.netlab("validate")
    assert "acme" not in plain.stdout and "globex" not in plain.stdout

    # one tenant: no address of another tenant to try, a SKIP; nothing tested exits 3
    code, report = validate(lab, "--test", "tenants are isolated")
    assert code == 3 and [r["status"] for r in report["results"]] == ["SKIP"]
    assert "no address of another tenant" in report["results"][0]["message"]

    code, report = validate(lab, "--node", "foo/beta")
    assert code == 0 and {r["node"] for r in report["results"]} == {"foo/beta"}
    listed = json.loads(lab.netlab("validate", "--list", "--json").stdout)["checks"]
    assert {"name": "tunnel foo/office", "node": "foo/nea-office"}.items() <= \
        next(c for c in listed if c["name"] == "tunnel foo/office").items()

    for args in (["--test", "no such check"], ["--node", "acme/web"]):
        done = lab.netlab("validate", *args, check=False)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
