"""Bubbles (issue 18) end to end through the CLI, on real namespaces.

One lab (the default topology with application checks on acme's VMs) serves the
module's tests in order; the crash test has a lab of its own. What the tests look
at is what real tools see: curl from a production VM, tcpdump on the production
bridge and at the cloud gateway, nft's counters in the proxy, ARP on the wire.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from conftest import (
    LabEnv,
    cleanup_and_check,
    leftovers,
    namespace_inodes,
    netlab_argv,
    new_lab_name,
)

from netlab.lab import Lab
from netlab.storage import get_restore_point
from netlab.topology.loader import default_topology_text

pytestmark = pytest.mark.root

WEB = "web: {network: lan, address: 192.168.10.11}"
DB = "db: {network: lan, address: 192.168.10.12}"
CHECKED = default_topology_text().replace(WEB, (
    "web: {network: lan, address: 192.168.10.11, checks: [{ping: true}, {tcp: 80}, "
    "{http: {path: /, contains: acme/web}}]}"), 1).replace(
    DB, "db: {network: lan, address: 192.168.10.12, checks: [{tcp: 80}]}", 1)
CHECKS = 5  # web 3, db 1, app the default ping


def run_json(lab: LabEnv, *args: str) -> Any:
    return json.loads(lab.netlab(*args, "--json").stdout)


def state(lab: LabEnv) -> dict[str, Any]:
    return json.loads((lab.lab_dir / "state.json").read_text())


def inside(netns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    """CMD in a namespace, without a netlab process around it (the CLI is tested elsewhere)."""
    return subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True,
                          timeout=30, check=False)


def curl(lab: LabEnv, url: str) -> subprocess.CompletedProcess[str]:
    return inside(lab.netns("acme.db"), "curl", "-s", "-f", "--max-time", "3", url)


def ip_json(netns: str, *args: str) -> Any:
    done = subprocess.run(["ip", "-n", netns, "-j", *args], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout or "[]")


def bubble_namespaces(lab: LabEnv) -> list[str]:
    return [n for n in lab.namespaces() if n.startswith(f"{lab.prefix}bb.")]


def bubble_macs(lab: LabEnv, name: str) -> dict[str, str]:
    """MAC -> where, of every interface inside the bubble (not the proxy's production leg)."""
    record = state(lab)["bubbles"][name]
    prod_legs = {n["prod_if"] for n in record["networks"].values()}
    found = {}
    for netns in [n for n in bubble_namespaces(lab) if f"bb.{name}." in n]:
        for link in ip_json(netns, "link"):
            if link["ifname"] != "lo" and link["ifname"] not in prod_legs:
                found[link["address"]] = f"{netns} {link['ifname']}"
    return found


def proxy_prod_mac(lab: LabEnv, name: str) -> str:
    info = state(lab)["bubbles"][name]["networks"]["lan"]
    [link] = ip_json(info["proxy_netns"], "link", "show", info["prod_if"])
    return link["address"]


class Capture:
    """tcpdump writing every frame of `iface` in `netns` to a file, read after the fact."""

    def __init__(self, netns: str, iface: str, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "tcpdump", "-i", iface, "-n", "-U",
             "--immediate-mode", "-w", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        seen = ""
        while "listening on" not in seen:  # capturing from then on
            line = self.proc.stderr.readline()
            assert line, f"tcpdump ended: {seen}"
            seen += line

    def frames(self) -> list[str]:
        done = subprocess.run(["tcpdump", "-r", str(self.path), "-e", "-n", "-tt"],
                              capture_output=True, text=True, check=False)
        return done.stdout.splitlines()

    def wait_for(self, needle: str, send: Any, timeout: float = 20) -> list[str]:
        """Send a marker until the capture shows it: everything sent before is in the file."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            send()
            frames = self.frames()
            if any(needle in f for f in frames):
                return frames
        raise AssertionError(f"{needle!r} never showed in {self.path}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    from conftest import skip_unless_root

    skip_unless_root({"tcpdump": "tcpdump", "curl": "curl", "nft": "nftables"})
    where = tmp_path_factory.mktemp("bubble")
    env = LabEnv(new_lab_name(), where / "state")
    topology = where / "topology.yaml"
    topology.write_text(CHECKED)
    try:
        env.netlab("up", str(topology), "--lab", env.name)
        yield env
    finally:
        cleanup_and_check(env)


def _isolated_from_inside(lab: LabEnv, name: str) -> None:
    """Nothing the bubble starts leaves it; the proxy counts what tries and drops it."""
    counters = run_json(lab, "bubble", "status", name)["counters"]["acme/lan"]
    assert counters["from_bubble"] == 0, counters  # nothing forwarded out of the bubble
    assert counters["replies"] > 0, counters  # while production's requests were answered
    copy = state(lab)["bubbles"][name]["vms"]["acme/db"]["netns"]
    outside = ("198.51.100.10", "10.99.0.1", "192.168.10.250", "192.168.10.1")
    pings = {a: subprocess.Popen(["ip", "netns", "exec", copy, "ping", "-c", "1", "-W", "1", a],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for a in outside}
    answered = [a for a, p in pings.items() if p.wait(timeout=10) == 0]
    assert not answered, f"{answered} answer from inside bubble {name}"
    # aimed at the proxy itself, a packet for production is dropped and counted
    assert inside(copy, "ip", "route", "add", "192.168.10.250/32", "via",
                  "192.168.10.254").returncode == 0
    assert inside(copy, "ping", "-c", "2", "-i", "0.2", "-W", "1",
                  "192.168.10.250").returncode != 0
    after = run_json(lab, "bubble", "status", name)["counters"]["acme/lan"]
    assert after["from_bubble"] >= 2, after


def _junit(lab: LabEnv, name: str, path: Path, expect_rc: int) -> list[ElementTree.Element]:
    done = lab.netlab("bubble", "check", name, "--junit", str(path), check=False)
    assert done.returncode == expect_rc, done.stdout + done.stderr
    suite = ElementTree.parse(path).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == CHECKS
    return cases


def test_bubble_serves_its_copy_at_the_masquerade_address_and_nothing_leaks(
        lab: LabEnv, tmp_path: Path) -> None:
    plan_segment = f"{lab.prefix}acme.lan.sw"
    [bridge] = [link["ifname"] for link in ip_json(plan_segment, "link", "show", "type", "bridge")]
    ports_before = len(ip_json(plan_segment, "link"))
    prod = Capture(plan_segment, bridge, tmp_path / "production.pcap")
    cgw = Capture(lab.netns("sp.cgw"), "any", tmp_path / "cgw.pcap")

    up = run_json(lab, "bubble", "up", "acme", "--name", "one")
    assert up["order"] == ["acme/db", "acme/app", "acme/web"]  # the plan's order
    assert up["masquerade"] == "172.18.0.0/16"
    assert up["vms"]["acme/web"]["masquerade"] == "172.18.10.11"
    assert all(c["passed"] for c in up["checks"]), up["checks"]
    macs = bubble_macs(lab, "one")
    proxy_mac = proxy_prod_mac(lab, "one")

    # production reaches the copy at its masquerade address, and production at its own
    lab.netlab("bubble", "exec", "one", "acme/web", "--", "sh", "-c", "echo copy-one > who.txt")
    assert "<h1>acme/web</h1>" in curl(lab, "http://172.18.10.11/").stdout
    assert curl(lab, "http://172.18.10.11/who.txt").stdout.strip() == "copy-one"
    assert "<h1>acme/web</h1>" in curl(lab, "http://192.168.10.11/").stdout
    assert curl(lab, "http://192.168.10.11/who.txt").returncode != 0  # not in production
    point = get_restore_point(Lab(lab.name, lab.state_dir).replica_dir("acme/web"))
    assert not (point.path / "who.txt").exists(), "the write reached the restore point"

    cases = _junit(lab, "one", tmp_path / "pass.xml", 0)
    assert not [c for c in cases if c.find("failure") is not None]
    # a stopped httpd fails the web copy's TCP and HTTP checks, not its ping
    httpd = state(lab)["processes"]["bubble:one:httpd:acme/web"]["pid"]
    os.kill(httpd, signal.SIGTERM)
    cases = _junit(lab, "one", tmp_path / "fail.xml", 1)
    failing = sorted((c.get("classname"), c.get("name")) for c in cases
                     if c.find("failure") is not None)
    assert failing == [("acme/web", "http :80/ contains 'acme/web'"), ("acme/web", "tcp 80")]

    _isolated_from_inside(lab, "one")
    lab.netlab("bubble", "down", "one")

    # the marker frames prove the files hold everything sent before them
    edge = lab.netns("acme.edge")
    prod_frames = prod.wait_for("192.168.10.1 > 192.168.10.12: ICMP echo request", lambda:
                                inside(edge, "ping", "-c", "1", "-W", "1", "192.168.10.12"))
    cgw_frames = cgw.wait_for("198.51.100.11 > 198.51.100.10: ICMP echo request", lambda:
                              inside(edge, "ping", "-c", "1", "-W", "1", "198.51.100.10"))
    prod.stop()
    cgw.stop()
    for where, frames in (("production bridge", prod_frames), ("cloud gateway", cgw_frames)):
        leaked = [f for f in frames if any(mac in f for mac in macs)]
        assert not leaked, f"bubble frames on the {where}: {leaked[:5]}"
    assert not [f for f in cgw_frames if "172.18." in f]
    # not vacuous: the capture saw the proxy's production leg answer production
    assert any(proxy_mac in f and "172.18.10.11" in f for f in prod_frames)

    assert bubble_namespaces(lab) == []
    assert not (lab.lab_dir / "bubbles").exists()
    assert "bubbles" not in state(lab) or state(lab)["bubbles"] == {}
    assert not [p for p in state(lab)["processes"] if p.startswith("bubble:")]
    assert len(ip_json(plan_segment, "link")) == ports_before
    assert not [r for r in ip_json(lab.netns("acme.edge"), "route")
                if r["dst"].startswith("172.18.")]


def test_two_bubbles_beside_a_partial_failover(lab: LabEnv) -> None:
    done = lab.netlab("failover", "acme/app")
    # the source is still on: the wire shows two MACs for its address
    assert "seen on the wire: 192.168.10.13 on acme/lan is answered by 2 MACs" in \
        done.stdout + done.stderr
    lab.netlab("vm", "fail", "acme/app")
    run_json(lab, "bubble", "up", "acme", "acme/web", "--name", "one")
    run_json(lab, "bubble", "up", "acme", "web", "db", "--name", "two")
    listed = {b["name"]: b for b in run_json(lab, "bubble", "list")}
    assert listed["one"]["masquerade"] == "172.18.0.0/16"
    assert listed["two"]["masquerade"] == "172.19.0.0/16"
    assert listed["one"]["proxies"]["acme/lan"] != listed["two"]["proxies"]["acme/lan"]
    for name in ("one", "two"):
        lab.netlab("bubble", "exec", name, "acme/web", "--", "sh", "-c",
                   f"echo copy-{name} > who.txt")
    assert curl(lab, "http://172.18.10.11/who.txt").stdout.strip() == "copy-one"
    assert curl(lab, "http://172.19.10.11/who.txt").stdout.strip() == "copy-two"
    assert "<h1>acme/web</h1>" in curl(lab, "http://192.168.10.11/").stdout
    assert curl(lab, "http://192.168.10.11/who.txt").returncode != 0
    assert "<h1>acme/app</h1>" in curl(lab, "http://192.168.10.13/").stdout  # the replica
    # production keeps replicating beside them; retention (3) keeps the point they run from
    for _ in range(3):
        lab.netlab("replicate", "acme/web")
    points = [p["id"] for p in run_json(lab, "restore-points", "acme/web")]
    assert points[0] == 1 and len(points) == 4, points
    assert "<h1>acme/web</h1>" in curl(lab, "http://172.19.10.11/").stdout
    check = lab.netlab("validate", "--test", "one MAC per address", check=False)
    assert check.returncode == 0, check.stdout
    for name in ("one", "two"):
        lab.netlab("bubble", "down", name)
    lab.netlab("undo", "acme/app")
    lab.netlab("vm", "start", "acme/app")
    assert bubble_namespaces(lab) == []


def test_an_address_added_by_hand_makes_validate_fail_naming_both_macs(lab: LabEnv) -> None:
    app_if = lab.netns("acme.app")
    [nic] = [link for link in ip_json(app_if, "addr") if link["ifname"] != "lo"]
    [db_nic] = [link for link in ip_json(lab.netns("acme.db"), "addr") if link["ifname"] != "lo"]
    assert inside(app_if, "ip", "addr", "add", "192.168.10.12/24", "dev",
                  nic["ifname"]).returncode == 0
    try:
        done = lab.netlab("validate", "--test", "one MAC per address", check=False)
        assert done.returncode == 1, done.stdout
        [line] = [x for x in done.stdout.splitlines() if x.startswith("FAIL")]
        assert "192.168.10.12" in line
        assert nic["address"] in line and db_nic["address"] in line
        seen = lab.status()["conflicts"]
        assert [c["address"] for c in seen] == ["192.168.10.12"]
    finally:
        inside(app_if, "ip", "addr", "del", "192.168.10.12/24", "dev", nic["ifname"])
    assert lab.netlab("validate", "--test", "one MAC per address", check=False).returncode == 0
    assert lab.status()["conflicts"] == []


def test_killed_bubble_up_leaves_nothing_after_down_or_cleanup(lab_env: LabEnv) -> None:
    lab = lab_env
    lab.netlab("up")
    env = {**lab.env, "NETLAB_FAULT": "bubble-up:vm#2"}
    killed = subprocess.run([*netlab_argv(), "bubble", "up", "acme"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    [listed] = run_json(lab, "bubble", "list")
    assert listed["status"] == "interrupted"
    assert bubble_namespaces(lab)  # half-built: found by its record
    lab.netlab("bubble", "down", listed["name"])
    assert bubble_namespaces(lab) == []
    assert not (lab.lab_dir / "bubbles").exists()
    assert not [p for p in state(lab)["processes"] if p.startswith("bubble:")]

    env["NETLAB_FAULT"] = "bubble-up:route"
    killed = subprocess.run([*netlab_argv(), "bubble", "up", "acme"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    inodes = namespace_inodes(lab.namespaces())
    lab.netlab("cleanup")
    assert leftovers(lab, inodes) == []


def test_bad_input_is_one_line_and_changes_nothing(lab: LabEnv, tmp_path: Path) -> None:
    run_json(lab, "bubble", "up", "acme", "web", "--name", "one")
    before = (state(lab), lab.namespaces())
    commands = [
        ["bubble", "up", "nosuch"], ["bubble", "up", "acme", "kiosk"],
        ["bubble", "up", "acme", "--name", "Bad-Name"], ["bubble", "up", "acme", "--name", "one"],
        ["bubble", "up", "acme", "--restore-point", "99"], ["bubble", "down", "nosuch"],
        ["bubble", "exec", "one", "acme/db", "--", "true"], ["bubble", "status", "nosuch"],
        ["bubble", "check", "one", "--junit", str(tmp_path / "no" / "such" / "dir.xml")],
    ]
    for args in commands:
        done = lab.netlab(*args, check=False)
        assert done.returncode != 0, args
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert done.stderr.startswith("netlab: "), (args, done.stderr)
    after_state = state(lab)
    after_state["bubbles"]["one"].pop("checks")  # `check` records its result, by design
    before[0]["bubbles"]["one"].pop("checks")
    assert (after_state, lab.namespaces()) == before
    lab.netlab("bubble", "down", "one")
