"""Replication over the lab's network, RPO at failover, WAN profiles (docs/architecture.md).

Real namespaces, real rsync through the real gateway; tcpdump at the gateway and
the replica's disk are the witnesses. Every wait is for a condition, never a
fixed sleep, and no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LabEnv

from netlab.net.tc import has_qdisc
from netlab.plan import build_plan
from netlab.replication import last_record
from netlab.storage import list_restore_points, tree_checksum
from netlab.topology.loader import default_topology_text, parse_topology

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces"),
    pytest.mark.skipif(shutil.which("rsync") is None, reason="'rsync' not installed"),
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="'tcpdump' not installed"),
]

WEB = "acme/web"
EDGE_PUBLIC = "198.51.100.11"
RECEIVER = "10.99.0.254"


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def state(lab: LabEnv) -> dict[str, Any]:
    return json.loads((lab.lab_dir / "state.json").read_text())


def job(lab: LabEnv, vm: str = WEB) -> dict[str, Any]:
    return state(lab).get("replication_jobs", {}).get(vm, {})


def replicate(lab: LabEnv, vm: str = WEB) -> dict[str, Any]:
    [row] = json.loads(lab.netlab("replicate", vm, "--json").stdout)
    assert "restore_point" in row, row
    return row


class Capture:
    """tcpdump in a namespace, started and known to listen before the test goes on."""

    def __init__(self, netns: str, ifname: str) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "tcpdump", "-i", ifname, "-n", "-l",
             "--immediate-mode", "-Z", "root", "ip"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        wait_for("tcpdump to listen", lambda: "listening on" in self.proc.stderr.readline())

    def stop(self) -> list[str]:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return [line for line in out.splitlines() if line.strip()]


def test_replication_crosses_the_gateway_verified_incremental_and_rpo_at_failover(
    lab_env: LabEnv,
) -> None:
    lab = lab_env
    lab.netlab("up")
    plan = build_plan(lab.name, parse_topology(default_topology_text()))
    gateway = plan.nodes["sp/cgw"]
    source, replica = lab.lab_dir / "disks" / WEB, lab.lab_dir / "sp" / WEB

    # A still disk (the VM off: no records) with 2 MB of data to send.
    lab.netlab("vm", "stop", WEB)
    (source / "data.bin").write_bytes(os.urandom(2 << 20))
    capture = Capture(gateway.netns, gateway.ports[1].name)  # what the gateway forwards
    first = replicate(lab)
    lines = capture.stop()

    # Only replication crossed into the SP core: the edge's public address, TCP 6180.
    flow = re.compile(rf"IP ({EDGE_PUBLIC}\.\d+ > {RECEIVER}\.6180|"
                      rf"{RECEIVER}\.6180 > {EDGE_PUBLIC}\.\d+): ")
    assert any(flow.search(line) and "Flags [S]" in line for line in lines), lines[:5]
    assert [line for line in lines if not flow.search(line)] == []
    assert first["bytes_sent"] > 2 << 20

    # The point equals the source, file by file (checksums), and is read-only.
    point = list_restore_points(replica)[-1]
    assert point.id == first["restore_point"]
    assert tree_checksum(point.path) == tree_checksum(source) == point.checksum
    assert (point.path / "data.bin").stat().st_mode & 0o222 == 0

    # Incremental: nothing changed, so little crosses and the big file is a hard link.
    second = replicate(lab)
    assert second["bytes_sent"] < 64 * 1024
    newest = list_restore_points(replica)[-1]
    assert (newest.path / "data.bin").stat().st_ino == (point.path / "data.bin").stat().st_ino

    # RPO: records keep coming after the job; a failover reports them as lost.
    lab.netlab("vm", "start", WEB)
    wait_for("records on the running VM", lambda: last_record(source) >= 2)
    third = replicate(lab)
    snapshot = job(lab)["snapshot"]
    in_point = last_record(list_restore_points(replica)[-1].path)
    wait_for("3 records after the job", lambda: last_record(source) >= in_point + 3)
    lab.netlab("vm", "fail", WEB)  # the disaster: the source writes no more
    before = time.time()
    result = json.loads(lab.netlab("failover", WEB, "--json").stdout)
    after = time.time()
    rpo = result["rpo"][WEB]
    assert rpo["restore_point"] == third["restore_point"]
    assert before - snapshot <= rpo["age_seconds"] <= after - snapshot
    # the replica's own disk (the mounted view) says the same as the report
    on_replica = last_record(replica / "mnt")
    assert on_replica == in_point == rpo["replica_last_record"]
    assert rpo["records_lost"] == last_record(source) - on_replica >= 3
    text = lab.netlab("undo", "--yes", WEB)
    assert text.returncode == 0

    # A delay needs netem: applied where the kernel has it, else refused changing nothing.
    edge = plan.nodes["acme/edge"]
    qdisc = ["nsenter", f"--net=/run/netns/{edge.netns}", "tc", "qdisc", "show", "dev",
             edge.ports[0].name]
    before_qdisc = subprocess.run(qdisc, capture_output=True, text=True, check=True).stdout
    done = lab.netlab("wan", "set", "acme", "--delay", "50ms", check=False)
    if has_qdisc(edge.netns, "netem"):
        assert done.returncode == 0, done.stderr
        now = subprocess.run(qdisc, capture_output=True, text=True, check=True).stdout
        assert "netem" in now and "delay 50ms" in now, now
    else:
        assert os.environ.get("NETLAB_REQUIRE_NETEM") != "1", "netem is required here"
        assert done.returncode != 0
        assert done.stderr.strip().count("\n") == 0 and "netem" in done.stderr, done.stderr
        assert subprocess.run(qdisc, capture_output=True, text=True,
                              check=True).stdout == before_qdisc
        assert "acme" not in state(lab).get("wan", {})


def scheduled_topology(path: Path) -> Path:
    data = yaml.safe_load(default_topology_text())
    data["tenants"]["acme"]["replication"] = {"retention": 3, "interval": "2s",
                                              "rpo_goal": "4s"}
    # only acme/web replicates on schedule: fewer jobs, same lesson
    for vm in ("db", "app"):
        data["tenants"]["acme"]["vms"][vm]["replication"] = {"interval": "1h"}
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_cut_wan_fails_jobs_visibly_and_replication_recovers_unaided(
    lab_env: LabEnv, tmp_path: Path
) -> None:
    lab = lab_env
    lab.netlab("up", str(scheduled_topology(tmp_path / "scheduled.yaml")))
    wait_for("a scheduled job", lambda: job(lab).get("result") == "ok"
             and job(lab).get("trigger") == "schedule")

    lab.netlab("wan", "set", "acme", "--rate", "10mbit")
    lab.netlab("wan", "set", "acme", "--loss", "100%")
    shown = json.loads(lab.netlab("wan", "show", "--json").stdout)["acme"]
    assert (shown["rate"], shown["loss"]) == (10_000_000, 100.0)  # one change kept the other
    assert "tbf" in shown["qdisc"]
    cut = time.time()

    failed = wait_for("a failed job after the cut", lambda: (
        j := job(lab)).get("result") == "failed" and j["started"] > cut and j)
    assert "WAN" in failed["reason"] and "198.51.100.10:6180" in failed["reason"]
    status = lab.status()
    rpo = next(v["rpo"] for v in status["vms"] if v["name"] == WEB)
    assert rpo["last_job"]["result"] == "failed"
    wait_for("the RPO to pass its goal", lambda: next(
        v["rpo"] for v in lab.status()["vms"] if v["name"] == WEB)["over_goal"])
    text = lab.netlab("status").stdout
    goal = next(v["rpo"] for v in lab.status()["vms"] if v["name"] == WEB)["goal_seconds"]
    assert f"replication of {WEB} failed: " in text, text  # the reason, below the table
    assert f" > {goal:g}" in text, text  # the RPO column flags the VM over its goal

    lab.netlab("wan", "set", "acme", "--loss", "0")
    back = time.time()
    ok = wait_for("a job that succeeds once the link is back", lambda: (
        j := job(lab)).get("result") == "ok" and j["started"] > back and j)
    assert ok["trigger"] == "schedule"
    wait_for("the RPO back under its goal", lambda: not next(
        v["rpo"] for v in lab.status()["vms"] if v["name"] == WEB)["over_goal"])

    # The receiver is supervised: killed, it is restarted and the schedule carries on.
    daemon = state(lab)["processes"]["rsyncd:sp/repl"]
    os.kill(daemon["pid"], 9)
    wait_for("the receiver restarted", lambda: state(lab)["processes"].get(
        "rsyncd:sp/repl", {}).get("pid") not in (None, daemon["pid"]))
    killed = time.time()
    wait_for("a job after the restart", lambda: (
        j := job(lab)).get("result") == "ok" and j["started"] > killed)


def rpo_of_web(lab: LabEnv) -> dict[str, Any]:
    return next(v["rpo"] for v in lab.status()["vms"] if v["name"] == WEB)


def jobs_started_after(lab: LabEnv, moment: float) -> list[dict[str, Any]]:
    """acme/web's finished jobs that started after `moment`, in the order they started."""
    events = [json.loads(line) for line in (lab.lab_dir / "events.jsonl").read_text().splitlines()]
    jobs = [e | {"started": e["time"] - e["seconds"]} for e in events
            if e.get("vm") == WEB and e["event"] in ("replication-ok", "replication-failed")]
    return sorted((j for j in jobs if j["started"] > moment), key=lambda j: j["started"])


def test_the_edge_link_cut_fails_the_next_job_with_its_reason_and_replication_resumes(
    lab_env: LabEnv, tmp_path: Path
) -> None:
    """The cable between the tenant edge and the internet is pulled, then plugged back.

    The cut is the switch side of the edge's internet veth set down: the edge's port
    loses its carrier (as a pulled cable or a dead upstream router does) and keeps its
    address and routes, so nothing but the link coming back is needed to recover.
    """
    lab = lab_env
    lab.netlab("up", str(scheduled_topology(tmp_path / "scheduled.yaml")))
    plan = build_plan(lab.name, parse_topology(default_topology_text()))
    port = plan.nodes["acme/edge"].ports[0]
    switch = plan.segments[port.segment].netns
    edge_port = ["nsenter", f"--net=/run/netns/{plan.nodes['acme/edge'].netns}", "ip", "-j",
                 "link", "show", "dev", port.name]
    wait_for("a scheduled job", lambda: job(lab).get("result") == "ok"
             and job(lab).get("trigger") == "schedule")

    subprocess.run(["ip", "-n", switch, "link", "set", port.bridge_port, "down"], check=True)
    cut = time.time()
    [link] = json.loads(subprocess.run(edge_port, capture_output=True, text=True,
                                       check=True).stdout)
    assert "NO-CARRIER" in link["flags"], link  # what the edge sees: no cable

    # The next job the schedule starts after the cut is the one that fails (none
    # succeeds in between), so status shows it one interval after the cut at most.
    failed = wait_for("a failed job after the cut", lambda: (
        j := job(lab)).get("result") == "failed" and j["started"] > cut and j)
    assert jobs_started_after(lab, cut)[0]["event"] == "replication-failed"
    assert "WAN" in failed["reason"] and "198.51.100.10:6180" in failed["reason"], failed
    first = rpo_of_web(lab)
    assert first["last_job"]["result"] == "failed"
    assert f"replication of {WEB} failed: " in lab.netlab("status").stdout
    # the RPO grows: the same newest point, older at every look, until over its goal
    grown = wait_for("the RPO to pass its goal", lambda: (r := rpo_of_web(lab))["over_goal"]
                     and r)
    assert grown["newest_point"] == first["newest_point"]
    assert grown["age_seconds"] > first["age_seconds"]

    subprocess.run(["ip", "-n", switch, "link", "set", port.bridge_port, "up"], check=True)
    back = time.time()
    # unaided: nobody runs `netlab replicate`; the first job started after the cable
    # is back succeeds and makes a new point
    ok = wait_for("a job started after the link is back", lambda: (
        after := jobs_started_after(lab, back)) and after[0])
    assert ok["event"] == "replication-ok", ok
    assert job(lab)["trigger"] == "schedule"
    wait_for("the RPO back under its goal", lambda: not rpo_of_web(lab)["over_goal"])
    assert rpo_of_web(lab)["newest_point"] != first["newest_point"]
