"""Concurrency: two labs of the same topology side by side, and two commands racing on one VM.

Counts: one pair of labs; 5 races of two `netlab failover acme/web` started together.
"""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
from collections.abc import Iterator

import pytest
from conftest import LabEnv, cleanup_and_check, netlab_argv, new_lab_name
from reliability_helpers import module_lab, one_line, poll

pytestmark = pytest.mark.root

WEB = "192.168.10.11"
RACES = 5


def arp_macs(lab: LabEnv, node: str, address: str) -> set[str]:
    done = lab.lab_exec(node, "arping", "-c", "2", "-w", "2", "-I", iface(lab, node), address)
    return {m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", done.stdout)}


def iface(lab: LabEnv, node: str) -> str:
    found = next(n for n in lab.status()["nodes"] if n["name"] == node)
    return next(i["name"] for i in found["interfaces"] if i["name"] != "lo")


def mac_of(lab: LabEnv, node: str) -> str:
    found = next(n for n in lab.status()["nodes"] if n["name"] == node)
    return next(i["mac"] for i in found["interfaces"] if i["name"] != "lo").lower()


def curl_ok(lab: LabEnv, node: str = "acme/db", address: str = WEB) -> bool:
    page = lab.lab_exec(node, "curl", "-sS", "-m", "5", f"http://{address}/")
    return page.returncode == 0 and "acme/web" in page.stdout


def replica_state(lab: LabEnv, vm: str = "acme/web") -> str:
    return next(v for v in lab.status()["vms"] if v["name"] == vm)["replica_state"]


@pytest.fixture
def two_labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabEnv, LabEnv]]:
    labs = [LabEnv(new_lab_name(), tmp_path_factory.mktemp("c") / "state") for _ in range(2)]
    try:
        yield labs[0], labs[1]
    finally:
        failures = []
        for lab in labs:
            try:
                cleanup_and_check(lab)
            except BaseException as exc:  # clean the other one too
                failures.append(exc)
        if failures:
            raise failures[0]


def test_two_labs_of_one_topology_fail_over_and_tear_down_independently(
    two_labs: tuple[LabEnv, LabEnv],
) -> None:
    a, b = two_labs
    a.netlab("up")
    b.netlab("up")
    assert len(a.namespaces()) == len(b.namespaces()) > 0
    assert not set(a.namespaces()) & set(b.namespaces())

    a.netlab("failover", "acme/web")
    a.netlab("vm", "fail", "acme/web")
    assert (replica_state(a), replica_state(b)) == ("Failover", "Normal")
    # a's db reaches the replica through a's tenant NEA; b's db still reaches b's source
    assert poll("a: db -> replica", lambda: curl_ok(a))
    assert arp_macs(a, "acme/db", WEB) == {mac_of(a, "acme/nea-lan")}
    assert arp_macs(b, "acme/db", WEB) == {mac_of(b, "acme/web")}
    assert curl_ok(b)

    b.netlab("failover", "acme/web")
    b.netlab("vm", "fail", "acme/web")
    a.netlab("undo", "--yes", "acme/web")
    a.netlab("vm", "start", "acme/web")
    assert (replica_state(a), replica_state(b)) == ("Normal", "Failover")
    assert poll("a: db -> source again", lambda: arp_macs(a, "acme/db", WEB)
                == {mac_of(a, "acme/web")})
    assert poll("b: db -> replica", lambda: curl_ok(b))
    assert arp_macs(b, "acme/db", WEB) == {mac_of(b, "acme/nea-lan")}

    b_namespaces, b_status = b.namespaces(), b.status()
    a.netlab("down")
    assert a.namespaces() == []
    assert b.namespaces() == b_namespaces
    assert b.status()["processes"] == b_status["processes"]
    assert curl_ok(b), "b's replica is unreachable after a went down"
    b.netlab("down")
    assert b.namespaces() == []


@pytest.fixture(scope="module")
def race_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    with module_lab(tmp_path_factory) as lab:
        yield lab


def test_two_failovers_at_once_one_wins_the_other_is_refused(race_lab: LabEnv) -> None:
    lab = race_lab
    for race in range(RACES):
        procs = [
            subprocess.Popen([*netlab_argv(), "failover", "acme/web"], env=lab.env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outcomes = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        codes = sorted(code for code, _, _ in outcomes)
        print(f"race {race}: exit codes {[code for code, _, _ in outcomes]}; loser said: "
              + " | ".join(err.strip().splitlines()[-1] for code, _, err in outcomes if code))
        assert codes[0] == 0 and codes[1] != 0, outcomes
        loser = next(err for code, _, err in outcomes if code != 0)
        line = one_line(loser)
        assert line.startswith("netlab:"), line
        # "held by 'netlab failover' (pid N)", or the state refused it; in the instant after
        # the winner's flock and before it writes its name, the holder comes from
        # /proc/locks (test_lock_refusal_names_the_holder)
        assert "held by" in line or "Failover" in line, line
        state = json.loads((lab.lab_dir / "state.json").read_text())
        assert state["replicas"]["acme/web"]["state"] == "Failover"
        assert state.get("operation") is None
        assert state["neas"]["acme/lan"]["power"] == "on"
        failovers = [e for e in lab.status()["vms"] if e["name"] == "acme/web"]
        assert failovers[0]["replica_state"] == "Failover"
        assert all(p["alive"] for p in lab.status()["processes"].values())
        lab.netlab("undo", "--yes", "acme/web")
        assert replica_state(lab) == "Normal"


def test_lock_refusal_names_the_holder(race_lab: LabEnv) -> None:
    """The race's window, held open: the VM's lock taken, its file still empty."""
    lock = race_lab.lab_dir / "locks" / "acme.web.lock"
    with lock.open("a+") as f:
        f.truncate(0)
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = race_lab.netlab("failover", "acme/web", check=False)
    line = one_line(done.stderr)
    assert done.returncode != 0 and "held by" in line
    assert "pid" in line, line
