"""Data integrity: across failover, undo, failback (switch, commit) and permanent failover,
no byte written to a disk is lost or appears where it should not.

Before and after every transition, netlab.storage.tree_checksum of every disk of the
lab: each source disk, each restore point, each replica's delta (overlay upper dir),
its mounted view and its own disk. Each transition may change only what it is meant
to, and the changed trees must equal what they are meant to equal (the view equals
the restore point right after failover; the source equals the replica's view after
failback; the replica disk equals the view after permanent failover).
tests/integration/test_failover.py follows the same lifecycle through `curl`; the
storage primitives are tested in tests/integration/test_storage_mounts.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import LabEnv
from reliability_helpers import module_lab

from netlab.storage import tree_checksum
from netlab.topology.loader import default_topology_text

pytestmark = pytest.mark.root

VMS = ["acme/web", "acme/db", "acme/app", "globex/web", "globex/erp"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    # The default lab's VMs append a record to their disks every second (the
    # replication workload); here every byte must come from the test itself.
    topology = yaml.safe_load(default_topology_text())
    for tenant in topology["tenants"].values():
        tenant.setdefault("replication", {})["record_interval"] = 0
    path = tmp_path_factory.mktemp("topology") / "quiet.yaml"
    path.write_text(yaml.safe_dump(topology))
    with module_lab(tmp_path_factory, str(path)) as lab:
        yield lab


def replica_dir(lab: LabEnv, vm: str) -> Path:
    return lab.lab_dir / "sp" / vm


def source(lab: LabEnv, vm: str) -> Path:
    return lab.lab_dir / "disks" / vm


def disks(lab: LabEnv) -> dict[str, str]:
    """Checksum of every disk tree of the lab, by a readable name."""
    sums = {}
    for vm in VMS:
        sums[f"source {vm}"] = tree_checksum(source(lab, vm))
        rdir = replica_dir(lab, vm)
        for point in sorted((rdir / "restore-points").glob("rp-*")):
            sums[f"restore point {vm} {point.name}"] = tree_checksum(point / "data")
        for name, sub in (("delta", "delta/upper"), ("view", "mnt"), ("disk", "disk")):
            path = rdir / sub
            if path.is_dir() and (name != "view" or path.is_mount()):
                sums[f"{name} {vm}"] = tree_checksum(path)
    return sums


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def write(view: Path, name: str, text: str) -> None:
    (view / name).write_text(text)


def test_every_byte_ends_where_it_should(lab: LabEnv, tmp_path: Path) -> None:
    web, app = "acme/web", "acme/app"
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = tree_checksum(empty)
    view = replica_dir(lab, web) / "mnt"
    (source(lab, web) / "written-at-home.txt").write_text("before the disaster\n")
    lab.netlab("replicate", web)
    s0 = disks(lab)
    points = sorted(k for k in s0 if k.startswith(f"restore point {web} "))
    assert len(points) == 2

    # failover: a view of the latest restore point and an empty delta appear, nothing else
    lab.netlab("failover", web)
    s1 = disks(lab)
    assert changed(s0, s1) == {f"view {web}", f"delta {web}"}
    assert s1[f"view {web}"] == s0[points[-1]] and s1[f"delta {web}"] == nothing

    # writes on the replica land in the delta only: restore points are immutable
    write(view, "written-on-replica.txt", "during failover\n")
    write(view, "index.html", "<h1>acme/web</h1><p>changed on the replica</p>\n")
    (view / "written-at-home.txt").unlink()
    s2 = disks(lab)
    assert changed(s1, s2) == {f"view {web}", f"delta {web}"}

    # undo discards the delta: the view and the delta go, the rest is as before failover
    lab.netlab("undo", "--yes", web)
    s3 = disks(lab)
    assert s3 == s0, changed(s0, s3)

    # failover again: the view is the restore point again, none of the discarded writes
    lab.netlab("failover", web)
    assert disks(lab) == s1
    write(view, "kept-by-failback.txt", "survives failback\n")
    s4 = disks(lab)

    # failback: the source becomes the replica's view; restore points untouched
    lab.netlab("failback", web)
    s5 = disks(lab)
    assert changed(s4, s5) == {f"source {web}"}
    assert s5[f"source {web}"] == s4[f"view {web}"]

    # switch copies what changed since (here: one more write), commit drops the view
    write(view, "written-before-switch.txt", "last minute\n")
    s6 = disks(lab)
    lab.netlab("switch", web)
    s7 = disks(lab)
    assert changed(s6, s7) == {f"source {web}"}
    assert s7[f"source {web}"] == s6[f"view {web}"]
    lab.netlab("commit", web)
    s8 = disks(lab)
    assert changed(s7, s8) == {f"view {web}", f"delta {web}"}
    assert f"view {web}" not in s8 and f"delta {web}" not in s8
    assert s8[f"source {web}"] == s6[f"view {web}"]

    # permanent failover of another VM: the replica disk is its view, its restore points go,
    # its source is left as it was (excluded from replication), nothing else changes
    app_view = replica_dir(lab, app) / "mnt"
    lab.netlab("failover", app)
    write(app_view, "production-now.txt", "the replica is production\n")
    s9 = disks(lab)
    lab.netlab("permanent", app)
    s10 = disks(lab)
    app_points = {k for k in s9 if k.startswith(f"restore point {app} ")}
    assert app_points
    assert changed(s9, s10) == {f"view {app}", f"delta {app}", f"disk {app}", *app_points}
    assert s10[f"disk {app}"] == s9[f"view {app}"]
    assert s10[f"source {app}"] == s0[f"source {app}"]
    # and every disk of the other VMs is exactly as it was at the start
    for vm in ("acme/db", "globex/web", "globex/erp"):
        assert {k: v for k, v in s10.items() if vm in k} == \
            {k: v for k, v in s0.items() if vm in k}, vm
