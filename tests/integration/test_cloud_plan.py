"""Cloud failover plan (issue 6) end to end through the CLI, on real labs.

One test runs the default lab's plan as shipped (db, app, web, 2 s apart) with
the acme site lost; the other uses a copy of the default topology with short
delays and no pause between undo batches, for the plan test, the refusals, a
VM joining from partial failover, and retry.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from conftest import LabEnv, netlab_argv, steady_status

from netlab.topology.loader import default_topology_text

pytestmark = pytest.mark.root

PUBLIC = "198.51.100.20"
PROBE = "198.51.100.99"
ORDER = ["acme/db", "acme/app", "acme/web"]


def lab_state(lab: LabEnv) -> dict:
    """`status --json` less what moves on its own (conftest.steady_status)."""
    return steady_status(lab.status())


def run_json(lab: LabEnv, *args: str) -> Any:
    return json.loads(lab.netlab(*args, "--json").stdout)


def nft_ruleset(netns: str) -> str:
    return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "nft", "list", "ruleset"],
                          capture_output=True, text=True, check=True).stdout


def addresses_and_routes(netns: str) -> str:
    brief = subprocess.run(["ip", "-n", netns, "-br", "addr"], capture_output=True, text=True,
                           check=True).stdout
    # name and addresses; not the operstate, which settles a moment after `up`
    addrs = "".join(" ".join(line.split()[:1] + line.split()[2:]) + "\n"
                    for line in brief.splitlines())
    routes = subprocess.run(["ip", "-n", netns, "route", "show", "table", "all"],
                            capture_output=True, text=True, check=True).stdout
    rules = subprocess.run(["ip", "-n", netns, "rule"], capture_output=True, text=True,
                           check=True).stdout
    return addrs + routes + rules


def assert_same(before: dict[str, str], after: dict[str, str]) -> None:
    for netns, text in before.items():
        diff = "\n".join(difflib.unified_diff(text.splitlines(), after[netns].splitlines(),
                                               "before", "after", lineterm=""))
        assert not diff, f"{netns} changed:\n{diff}"


def provider_side(lab: LabEnv) -> dict[str, str]:
    """Rulesets, addresses, routes and rules of sp/cgw and acme's SP NEA."""
    out = {}
    for netns in (lab.netns("sp.cgw"), lab.netns("sp.acme.lan.nea")):
        out[netns] = nft_ruleset(netns) + addresses_and_routes(netns)
    return out


@contextmanager
def internet_probe(lab: LabEnv) -> Iterator[str]:
    """A host on the internet segment (198.51.100.99); yields its namespace."""
    netns = lab.netns("probe")
    inet = lab.netns("inet")
    bridge = subprocess.run(["ip", "-n", inet, "-o", "link", "show", "type", "bridge"],
                            capture_output=True, text=True, check=True).stdout.split(":")[1]
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        for cmd in (
            ["ip", "link", "add", f"{lab.name}-z1", "netns", netns, "type", "veth", "peer",
             "name", f"{lab.name}-z2", "netns", inet],
            ["ip", "-n", inet, "link", "set", f"{lab.name}-z2", "master", bridge.strip(), "up"],
            ["ip", "-n", netns, "link", "set", f"{lab.name}-z1", "up"],
            ["ip", "-n", netns, "addr", "add", f"{PROBE}/24", "dev", f"{lab.name}-z1"],
        ):
            subprocess.run(cmd, check=True)
        yield netns
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def in_netns(netns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", *cmd], capture_output=True,
                          text=True, timeout=30, check=False)


def source_seen_on_internet(lab: LabEnv, replica: str) -> str:
    """Ping the probe from `replica`; the source address tcpdump sees on the internet bridge."""
    inet = lab.netns("inet")
    bridge = subprocess.run(["ip", "-n", inet, "-o", "link", "show", "type", "bridge"],
                            capture_output=True, text=True, check=True).stdout.split(":")[1]
    dump = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{inet}", "tcpdump", "-n", "-l", "--immediate-mode",
         "-c", "1", "-i", bridge.strip(), f"icmp[icmptype] = icmp-echo and dst host {PROBE}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert dump.stderr is not None
        dump.stderr.readline()  # "listening on ...": the capture is open
        assert lab.lab_exec(replica, "ping", "-c", "2", "-W", "1", PROBE).returncode == 0
        out, _ = dump.communicate(timeout=10)
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    found = re.search(r"IP (\S+) > " + re.escape(PROBE), out)
    assert found, f"tcpdump saw no echo request to the probe: {out!r}"
    return found.group(1)


def replica_states(lab: LabEnv) -> dict[str, str]:
    return {v["name"]: v["replica_state"] for v in lab.status()["vms"] if v["replica"]}


def assert_globex_untouched(lab: LabEnv) -> None:
    page = lab.lab_exec("globex/erp", "curl", "-s", "-m", "3", "http://192.168.10.11/").stdout
    assert "tenant globex, vm web" in page


def test_site_failover_in_plan_order_serves_the_internet_and_undo_leaves_nothing(
    lab_env: LabEnv,
) -> None:
    lab = lab_env
    lab.netlab("up")
    before = provider_side(lab)
    assert lab.netlab("vm", "stop", "acme/edge").stdout.strip() == "acme/edge is off"
    # the site is gone: acme's LAN has no way out
    assert lab.lab_exec("acme/db", "ping", "-c", "1", "-W", "1", PROBE).returncode != 0

    report = run_json(lab, "plan", "start", "acme")
    assert report["status"] == "running"
    assert {vm: r["status"] for vm, r in report["results"].items()} == dict.fromkeys(
        ORDER, "success")
    powered = [e for e in run_json(lab, "events") if e["event"] == "plan-start:power-on"]
    assert [e["vm"] for e in powered] == ORDER
    times = [e["time"] for e in powered]
    assert all(later - earlier >= 2.0 for earlier, later in pairwise(times))
    status = lab.status()
    assert status["plans"]["acme"]["status"] == "running"
    assert set(replica_states(lab).items()) >= {(vm, "Failover") for vm in ORDER}

    with internet_probe(lab) as probe:
        page = in_netns(probe, "curl", "-s", "-m", "3", f"http://{PUBLIC}/").stdout
        assert "tenant acme, vm web" in page  # served by the replica: the source is off-site
        assert source_seen_on_internet(lab, "acme/db@sp") == PUBLIC
    assert_globex_untouched(lab)

    # one failover operation type at a time
    snapshot = lab_state(lab)
    refused = lab.netlab("failover", "acme/web", check=False)
    assert refused.returncode != 0 and "running cloud failover plan" in refused.stderr
    refused = lab.netlab("undo", "acme/web", "--yes", check=False)
    assert refused.returncode != 0 and "running cloud failover plan" in refused.stderr
    assert lab_state(lab) == snapshot

    undone = run_json(lab, "plan", "undo", "acme", "--yes")
    assert undone["status"] == "stopped"
    assert set(undone["results"]) == set(ORDER)
    assert all(state == "Normal" for state in replica_states(lab).values())
    assert_same(before, provider_side(lab))  # no table, rule, address or route left
    status = lab.status()
    assert status["plans"]["acme"]["status"] == "stopped"
    assert not [p for p in status["processes"] if p.endswith("@sp")]
    for vm in ORDER:
        assert not subprocess.run(["ip", "netns", "pids", lab.netns(f"{vm.replace('/', '.')}@sp")],
                                  capture_output=True, text=True, check=True).stdout.strip()
    assert_globex_untouched(lab)
    lab.netlab("vm", "start", "acme/edge")
    assert lab.lab_exec("acme/db", "ping", "-c", "1", "-W", "2", "198.51.100.10").returncode == 0


def fast_topology(tmp_path: Path) -> Path:
    """The default lab with short delays, undo batches of one and no pause between them."""
    import yaml

    data = yaml.safe_load(default_topology_text())
    plan = data["failover_plans"]["acme"]
    for step in plan["steps"]:
        step["delay"] = 0.2
    plan["undo_batch_size"] = 1
    plan["undo_batch_pause"] = 0
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_plan_join_retry(lab_env: LabEnv, tmp_path: Path) -> None:
    """plan test, refusals, a VM joining from partial failover, failed starts and retry."""
    lab = lab_env
    lab.netlab("up", str(fast_topology(tmp_path)))
    before = provider_side(lab)

    for args, message in (
        (["plan", "start", "nosuch"], "unknown tenant 'nosuch'"),
        (["plan", "start", "globex"], "tenant globex has no cloud failover plan"),
        (["plan", "retry", "acme"], "is not running"),
    ):
        done = lab.netlab(*args, check=False)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)
    # undo of a plan that is not running: an idempotent no-op, exit 0, and no warning
    done = lab.netlab("plan", "undo", "acme", "--yes")
    assert "is not running" in done.stdout and "warning" not in done.stderr

    # plan test: every VM reported, the running lab exactly as it was
    status = lab_state(lab)
    tested = run_json(lab, "plan", "test", "acme")
    assert tested["status"] == "passed"
    assert list(tested["results"]) == ORDER
    assert all(r["status"] == "success" for r in tested["results"].values())
    assert lab_state(lab) == status
    assert not [n for n in lab.namespaces() if n.endswith((".test", ".probe", "@test"))]
    assert_same(before, provider_side(lab))

    # a VM in partial failover joins the plan as it is; the others start from a
    # restore point that does not exist, fail with the reason, and retry fixes them
    lab.netlab("failover", "acme/web")
    report = run_json(lab, "plan", "start", "acme", "--restore-point", "99")
    results = report["results"]
    assert results["acme/web"]["status"] == "success" and results["acme/web"]["joined"]
    for vm in ("acme/db", "acme/app"):
        assert results[vm]["status"] == "failed"
        assert "99" in results[vm]["reason"]
    assert replica_states(lab)["acme/db"] == "Normal"
    plan_status = run_json(lab, "plan", "status", "acme")
    assert [s["result"]["status"] for s in plan_status["steps"]] == ["failed", "failed",
                                                                      "success"]
    again = lab.netlab("plan", "start", "acme", check=False)
    assert again.returncode != 0 and "already running" in again.stderr
    assert lab.netlab("plan", "test", "acme", check=False).returncode != 0

    retried = run_json(lab, "plan", "retry", "acme", "--restore-point", "latest")
    assert list(retried["results"]) == ["acme/db", "acme/app"]
    assert all(r["status"] == "success" for r in retried["results"].values())
    assert all(replica_states(lab)[vm] == "Failover" for vm in ORDER)
    # the NEA pair is off: the SP NEA routes the site itself now
    assert lab.status()["neas"]["acme/lan"]["power"] == "off"
    with internet_probe(lab) as probe:
        page = in_netns(probe, "curl", "-s", "-m", "3", f"http://{PUBLIC}/").stdout
        assert "tenant acme, vm web" in page
    assert_globex_untouched(lab)

    lab.netlab("plan", "undo", "acme", "--yes")
    batches = [e["vms"] for e in lab_events(lab) if e["event"] == "plan-undo:batch"]
    assert batches == [["acme/web"], ["acme/app"], ["acme/db"]]
    assert all(state == "Normal" for state in replica_states(lab).values())
    assert_same(before, provider_side(lab))
    # partial failover works again once the plan is undone
    lab.netlab("failover", "acme/web")
    lab.netlab("undo", "acme/web", "--yes")


def lab_events(lab: LabEnv) -> list[dict[str, Any]]:
    return run_json(lab, "events")



def test_interrupted_plan_start_is_finished_by_retry(lab_env: LabEnv) -> None:
    """kill -9 of `plan start` after its first VM is up (2 s before the next): the plan
    says it was interrupted, a second start is refused, and retry finishes it."""
    lab = lab_env
    lab.netlab("up")
    before = provider_side(lab)
    lab.netlab("vm", "stop", "acme/edge")
    proc = subprocess.Popen([*netlab_argv(), "plan", "start", "acme"], env=lab.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not any(e["event"] == "plan-start:booted" for e in lab_events(lab)):
            assert proc.poll() is None and time.monotonic() < deadline, "plan start ended early"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    status = run_json(lab, "plan", "status", "acme")
    assert status["status"] == "running" and status["interrupted"] and status["gateway_taken"]
    results = {s["vm"]: (s["result"] or {}).get("status") for s in status["steps"]}
    assert results == {"acme/db": "success", "acme/app": None, "acme/web": None}
    text = lab.netlab("plan", "status", "acme").stdout
    assert "interrupted: 'netlab plan retry acme' finishes it" in text
    refused = lab.netlab("plan", "start", "acme", check=False)
    assert refused.returncode != 0
    assert "interrupted: 'netlab plan retry acme' finishes it" in refused.stderr

    report = run_json(lab, "plan", "retry", "acme")
    assert {vm: r["status"] for vm, r in report["results"].items()} == {
        "acme/app": "success", "acme/web": "success"}
    status = run_json(lab, "plan", "status", "acme")
    assert not status["interrupted"]
    assert set(replica_states(lab).items()) >= {(vm, "Failover") for vm in ORDER}
    with internet_probe(lab) as probe:
        page = in_netns(probe, "curl", "-s", "-m", "3", f"http://{PUBLIC}/").stdout
        assert "tenant acme, vm web" in page

    lab.netlab("plan", "undo", "acme", "--yes")
    assert all(state == "Normal" for state in replica_states(lab).values())
    assert_same(before, provider_side(lab))
