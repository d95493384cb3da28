"""Partial failover end to end through the CLI (docs/architecture.md#data-flow-failover).

One module lab (own name, own temporary NETLAB_STATE_DIR) is shared by the tests
that put acme/web back to Normal when they end; tests that cannot (permanent
failover, a topology without an NEA) bring up a lab of their own.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import steady_status

from netlab import storage
from netlab.state import LabDir
from netlab.storage import tree_checksum

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces"),
    pytest.mark.skipif(shutil.which("arping") is None, reason="'arping' not installed"),
]

DEFAULT_TOPOLOGY = Path(__file__).parents[2] / "netlab" / "topology" / "default.yaml"
WEB = "192.168.10.11"
STEPS = ["start", "roll-back", "power-on", "sp-nea", "replication-hold", "tenant-nea",
         "delta", "proven"]


class LabRun:
    """A lab driven through the `netlab` CLI in subprocesses."""

    def __init__(self, name: str, state_dir: Path) -> None:
        self.name, self.state_dir = name, state_dir
        self.root = state_dir / name
        self.env = {**os.environ, "NETLAB_STATE_DIR": str(state_dir), "NETLAB_LAB": name}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "netlab.cli", *args]

    def cli(self, *args: str, ok: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if ok and done.returncode != 0:
            raise AssertionError(f"netlab {' '.join(args)} failed ({done.returncode}): "
                                 f"{done.stderr}{done.stdout}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def exec(self, node: str, *cmd: str, ok: bool = True) -> subprocess.CompletedProcess:
        return self.cli("exec", node, "--", *cmd, ok=ok)

    def curl(self, node: str, address: str = WEB) -> str:
        return self.exec(node, "curl", "-s", "-m", "3", f"http://{address}/").stdout

    def status(self) -> dict[str, Any]:
        return self.json("status")

    def vm(self, name: str) -> dict[str, Any]:
        return next(v for v in self.status()["vms"] if v["name"] == name)

    def state(self) -> dict[str, Any]:
        return LabDir(self.name, self.root).read()

    def events(self) -> list[dict[str, Any]]:
        return LabDir(self.name, self.root).events()

    def disk(self, vm: str) -> Path:
        return self.root / "disks" / vm

    def replica(self, vm: str) -> Path:
        return self.root / "sp" / vm

    def restore_point_ids(self, vm: str) -> list[int]:
        return [p["id"] for p in self.json("restore-points", vm)]

    def iface(self, node: str) -> str:
        found = next(n for n in self.status()["nodes"] if n["name"] == node)
        return found["interfaces"][0]["name"]

    def mac(self, node: str) -> str:
        found = next(n for n in self.status()["nodes"] if n["name"] == node)
        return found["interfaces"][0]["mac"].lower()

    def overlay_mounts(self) -> list[str]:
        lines = Path("/proc/mounts").read_text().splitlines()
        return [line for line in lines if str(self.state_dir) in line]

    def snapshot(self) -> dict[str, Any]:
        """Everything a refused command must leave alone."""
        status = steady_status(self.status())
        state = self.state()
        return {
            "vms": status["vms"],
            "neas": status["neas"],
            "replicas": state.get("replicas"),
            "processes": sorted(state.get("processes", {})),
            "operation": state.get("operation"),
            "mounts": self.overlay_mounts(),
            "points": {v: self.restore_point_ids(v) for v in ("acme/web", "globex/web")},
        }


@contextmanager
def lab_up(topology: Path | None = None) -> Iterator[LabRun]:
    state_dir = Path(tempfile.mkdtemp(prefix="netlab-fo-"))
    lab = LabRun(f"fo{secrets.token_hex(2)}", state_dir)
    try:
        lab.cli("up", *([str(topology)] if topology else []), "--lab", lab.name)
        yield lab
    finally:
        lab.cli("down", "--lab", lab.name, ok=False)
        lab.cli("cleanup", "--lab", lab.name, ok=False)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabRun]:
    with lab_up() as made:
        yield made


@pytest.fixture
def normal(lab: LabRun) -> Iterator[LabRun]:
    """The module lab, with acme/web back to Normal and powered on whatever the test did."""
    yield lab
    web = lab.vm("acme/web")
    if web["replica_state"] == "Normal" and web["power"] == "on":
        return  # as the next test wants it, without more status calls (each ~0.3 s of CPU)
    if web["replica_state"] != "Normal":
        lab.cli("undo", "--yes", "--force", "acme/web", ok=False)
    if lab.vm("acme/web")["power"] != "on":
        lab.cli("vm", "start", "acme/web", ok=False)
    assert lab.vm("acme/web")["replica_state"] == "Normal"


def refused(lab: LabRun, *args: str, match: str) -> str:
    done = lab.cli(*args, ok=False)
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert lines, "refusal printed nothing"
    assert lines[-1].startswith("netlab: ")
    assert re.search(match, lines[-1]), lines[-1]
    return lines[-1]


# ----- the scenario ----------------------------------------------------------


def test_failover_to_an_older_restore_point_undo_and_failback(normal: LabRun) -> None:
    lab = normal
    page = lab.disk("acme/web") / "index.html"
    page.write_text("version A\n")
    made = lab.json("replicate", "acme/web")
    point_a = made[0]["restore_point"]
    assert point_a in lab.restore_point_ids("acme/web")
    page.write_text("version B\n")
    lab.cli("vm", "fail", "acme/web")

    result = lab.json("failover", "acme/web", "--restore-point", str(point_a))
    assert result["recovery_seconds"] is not None
    assert lab.vm("acme/web")["replica_state"] == "Failover"
    assert lab.curl("acme/db") == "version A\n"
    assert "acme/app" in lab.curl("acme/app", "192.168.10.13")

    # The tenant NEA answers ARP for the replica's address, and nothing else does.
    arping = lab.exec("acme/db", "arping", "-c", "2", "-w", "3", "-I", lab.iface("acme/db"), WEB)
    macs = {m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", arping.stdout)}
    assert macs == {lab.mac("acme/nea-lan")}, arping.stdout

    # Writes on the replica go to the delta; the restore point stays as it was.
    point_dir = lab.replica("acme/web") / "restore-points" / f"rp-{point_a:04d}" / "data"
    before = tree_checksum(point_dir)
    mnt = lab.replica("acme/web") / "mnt"
    lab.exec("acme/web@sp", "sh", "-c", f"echo x > {mnt}/new.txt")
    upper = lab.replica("acme/web") / "delta" / "upper"
    assert (upper / "new.txt").read_text() == "x\n"
    assert not (point_dir / "new.txt").exists()
    assert tree_checksum(point_dir) == before

    # Tenants are isolated: globex's .11 is still globex's own web server.
    assert "globex/web" in lab.curl("globex/erp")

    # Replication is on hold during failover.
    held = lab.cli("replicate", "acme/web").stdout
    assert "skipped" in held and "on hold" in held
    points_during = lab.restore_point_ids("acme/web")

    # Undo discards the delta; the source serves its current page again.
    lab.cli("undo", "--yes", "acme/web")
    lab.cli("vm", "start", "acme/web")
    assert lab.vm("acme/web")["replica_state"] == "Normal"
    assert lab.curl("acme/db") == "version B\n"
    assert not upper.exists() or not (upper / "new.txt").exists()
    assert tree_checksum(point_dir) == before
    assert "acme/app" in lab.curl("acme/app", "192.168.10.13")

    # Replication resumes after undo.
    resumed = lab.json("replicate", "acme/web")
    assert resumed[0]["restore_point"] > max(points_during)

    # Failover, write, failback, switch, commit: the source keeps what the replica wrote.
    lab.json("failover", "acme/web")
    lab.exec("acme/web@sp", "sh", "-c", f"echo kept > {mnt}/kept.txt")
    assert "version B" in lab.curl("acme/db")
    lab.cli("failback", "acme/web")
    assert lab.vm("acme/web")["replica_state"] == "Ready to switch"
    lab.cli("switch", "acme/web")
    assert lab.vm("acme/web")["replica_state"] == "Failback"
    lab.cli("commit", "acme/web")
    web = lab.vm("acme/web")
    assert web["replica_state"] == "Normal" and web["power"] == "on"
    assert (lab.disk("acme/web") / "kept.txt").read_text() == "kept\n"
    assert "acme/db" in lab.curl("acme/app", "192.168.10.12")
    assert "acme/app" in lab.curl("acme/db", "192.168.10.13")
    assert "globex/web" in lab.curl("globex/erp")
    assert lab.status()["neas"]["acme/lan"]["power"] == "off"


def test_events_journal_the_eight_steps_in_order(normal: LabRun) -> None:
    lab = normal
    since = time.time()
    lab.json("failover", "acme/web")
    events = [e for e in lab.json("events") if e["time"] >= since
              and e["event"].startswith("failover:") and e["event"] != "failover:done"]
    assert [e["event"] for e in events] == [f"failover:{s}" for s in STEPS]
    assert [e["step"] for e in events] == list(range(1, 9))
    times = [e["time"] for e in events]
    assert times == sorted(times) and len(set(times)) == len(times)
    lab.cli("undo", "--yes", "acme/web")


# ----- refusals: one line, non-zero exit, nothing changed -----------------------------


@pytest.mark.parametrize(("args", "match"), [
    (("failover", "acme/kiosk"), r"acme/kiosk gets its address by DHCP: .*static IPs only"),
    (("undo", "--yes", "acme/web"),
     r"acme/web@sp is 'Normal'; 'undo' needs 'Failover'\. Allowed now: failover$"),
    (("failover", "acme/nosuch"), r"acme/nosuch"),
    (("failover", "acme/web", "--restore-point", "999"),
     r"has no restore point 999; available: [0-9, ]+ \(latest: \d+\)"),
    (("restore-points", "acme/nosuch"), r"acme/nosuch"),
])
def test_refusal_changes_nothing(lab: LabRun, args: tuple[str, ...], match: str) -> None:
    before = lab.snapshot()
    refused(lab, *args, match=match)
    assert lab.snapshot() == before


def test_unknown_restore_point_lists_the_available_ids(lab: LabRun) -> None:
    ids = lab.restore_point_ids("acme/web")
    line = refused(lab, "failover", "acme/web", "--restore-point", "999", match="available")
    assert f"available: {', '.join(map(str, ids))}" in line


def test_failover_twice_and_commit_on_failover_are_refused(normal: LabRun) -> None:
    lab = normal
    lab.json("failover", "acme/web")
    before = lab.snapshot()
    refused(lab, "failover", "acme/web",
            match=r"acme/web@sp is 'Failover'; 'failover' needs 'Normal'\. "
                  r"Allowed now: undo, permanent, failback$")
    refused(lab, "commit", "acme/web",
            match=r"'commit' needs 'Failback'\. Allowed now: undo, permanent, failback$")
    assert lab.snapshot() == before
    lab.cli("undo", "--yes", "acme/web")


def test_vm_held_by_another_operation_is_refused(lab: LabRun) -> None:
    before = lab.snapshot()
    with LabDir(lab.name, lab.root).hold("acme/web", "test"):
        line = refused(lab, "failover", "acme/web", match=r"acme/web is held by 'netlab test'")
    assert f"pid {os.getpid()}" in line
    assert lab.snapshot() == before


def test_never_replicated_vm_is_refused(lab: LabRun) -> None:
    points = lab.replica("acme/web") / "restore-points"
    aside = points.with_name(".points-aside")
    before = lab.snapshot()
    points.rename(aside)
    try:
        points.mkdir()
        refused(lab, "failover", "acme/web",
                match=r"acme/web was never replicated: run 'netlab replicate acme/web' first")
    finally:
        points.rmdir()
        aside.rename(points)
    assert lab.snapshot() == before


def test_network_without_a_tenant_nea_is_refused(tmp_path: Path) -> None:
    text = DEFAULT_TOPOLOGY.read_text()
    globex = text.index("  globex:")
    head, tail = text[:globex], text[globex:]
    tail = re.sub(r"\n        nea:\n(?:          .*\n)+", "\n", tail, count=1)
    assert "nea:" not in tail
    topology = tmp_path / "no-globex-nea.yaml"
    topology.write_text(head + tail)
    with lab_up(topology) as lab:
        before = lab.snapshot()
        refused(lab, "failover", "globex/web", match=r"globex/lan has no tenant NEA")
        assert lab.snapshot() == before


# ----- permanent failover ------------------------------------------------------------


def test_permanent_failover_makes_the_replica_production() -> None:
    with lab_up() as lab:
        lab.json("failover", "acme/web")
        mnt = lab.replica("acme/web") / "mnt"
        lab.exec("acme/web@sp", "sh", "-c", f"echo committed > {mnt}/p.txt")
        lab.cli("vm", "fail", "acme/web")
        lab.cli("permanent", "acme/web")
        web = lab.vm("acme/web")
        assert web["replica_state"] == "Permanent failover"
        assert web["replication"] == "excluded"
        serving = storage.replica_serving_path(lab.replica("acme/web"))
        assert (serving / "p.txt").read_text() == "committed\n"
        assert "acme/web" in lab.curl("acme/db")
        assert lab.json("restore-points", "acme/web") == []
        out = lab.cli("replicate", "acme/web").stdout
        assert "skipped" in out and "excluded" in out
        refused(lab, "undo", "--yes", "acme/web", match=r"Allowed now: none")


# ----- undo-failback ----------------------------------------------------------------


def test_undo_failback_from_ready_to_switch_keeps_the_replicas_writes(normal: LabRun) -> None:
    """failover, a write on the replica, failback (Ready to switch), undo-failback: back
    in Failover on the replica, served through the tunnel, with the write intact."""
    lab = normal
    lab.json("failover", "acme/web")
    lab.cli("vm", "fail", "acme/web")
    mnt = storage.replica_serving_path(lab.replica("acme/web"))
    lab.exec("acme/web@sp", "sh", "-c", f"echo written at the SP > {mnt}/uf.txt")
    lab.cli("failback", "acme/web")
    web = lab.vm("acme/web")
    assert (web["replica_state"], web["power"]) == ("Ready to switch", "off")

    lab.cli("undo-failback", "acme/web")
    web = lab.vm("acme/web")
    assert (web["replica_state"], web["power"]) == ("Failover", "off")
    assert lab.state()["operation"] is None
    assert lab.status()["neas"]["acme/lan"]["power"] == "on"
    assert (mnt / "uf.txt").read_text() == "written at the SP\n"
    page = lab.exec("acme/db", "curl", "-s", "-m", "3", f"http://{WEB}/uf.txt").stdout
    assert page == "written at the SP\n"
    # and it is a Failover like any other: undo is allowed again
    lab.cli("undo", "--yes", "acme/web")
    assert lab.vm("acme/web")["replica_state"] == "Normal"


# Crashes at every journaled step of every lifecycle command (real SIGKILLs through
# NETLAB_FAULT) are in tests/reliability/test_failure_points.py.
