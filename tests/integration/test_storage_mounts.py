"""Failover views on real overlayfs mounts: delta, discard, commit, retention, cleanup, resume."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab import storage
from netlab.errors import PreconditionFailed
from netlab.storage import (
    MountBusy,
    commit_delta,
    copy_changes_to_source,
    get_restore_point,
    list_restore_points,
    mount_failover_view,
    replicate,
    seed_disk,
    tree_checksum,
    unmount_failover_view,
)


def _overlay_available() -> bool:
    try:
        return "overlay" in Path("/proc/filesystems").read_text()
    except OSError:
        return False


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting overlayfs needs root"),
    pytest.mark.skipif(not _overlay_available(), reason="this kernel has no overlayfs"),
]


def overlay_mounts_under(root: Path) -> list[str]:
    real = os.path.realpath(root)
    mounts = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split(" ")[4]
            if point == real or point.startswith(real + "/"):
                mounts.append(point)
    return mounts


@pytest.fixture(autouse=True)
def no_mount_left_behind(tmp_path: Path) -> Iterator[None]:
    yield
    leftovers = overlay_mounts_under(tmp_path)
    if leftovers:
        storage.cleanup_mounts_under(tmp_path)
    assert leftovers == [], f"the test left mounts behind: {leftovers}"


@pytest.fixture
def replica(tmp_path: Path) -> tuple[Path, Path]:
    """acme/web with two restore points: disk version 1, then version 2."""
    lab = tmp_path / "lab"
    source = storage.disk_path(lab, "acme", "web")
    seed_disk(source, "acme", "web", version=1)
    (source / "old.txt").write_text("only in version 1\n")
    replica_dir = storage.replica_path(lab, "acme", "web")
    replicate(source, replica_dir, retention=3)
    seed_disk(source, "acme", "web", version=2)
    replicate(source, replica_dir, retention=3)
    return source, replica_dir


def test_failover_view_shows_the_chosen_older_restore_point(replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    mnt = mount_failover_view(replica_dir, 1)
    try:
        assert mnt == replica_dir / "mnt"
        assert "disk version 1" in (mnt / "index.html").read_text()
        assert tree_checksum(mnt) == get_restore_point(replica_dir, 1).checksum
        assert storage.replica_serving_path(replica_dir) == mnt
        state = storage.view_state(replica_dir)
        assert state is not None and state.restore_point == 1 and state.mounted
    finally:
        unmount_failover_view(replica_dir)
    assert storage.view_state(replica_dir) is None


def test_latest_is_the_default_restore_point(replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    mnt = mount_failover_view(replica_dir)
    try:
        assert "disk version 2" in (mnt / "index.html").read_text()
    finally:
        unmount_failover_view(replica_dir)


def test_writes_land_in_the_delta_only(replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    point = get_restore_point(replica_dir, 1)
    mnt = mount_failover_view(replica_dir, point)
    try:
        (mnt / "orders.csv").write_text("written on the replica\n")
        (mnt / "index.html").write_text("<h1>changed during failover</h1>\n")
        upper = replica_dir / "delta" / "upper"
        assert (upper / "orders.csv").read_text() == "written on the replica\n"
        assert (upper / "index.html").is_file()
        assert not (point.path / "orders.csv").exists()
        assert "disk version 1" in (point.path / "index.html").read_text()
        assert tree_checksum(point.path) == point.checksum
    finally:
        unmount_failover_view(replica_dir)


def test_unmount_with_discard_removes_the_write(replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    mnt = mount_failover_view(replica_dir, 1)
    (mnt / "orders.csv").write_text("doomed\n")
    assert unmount_failover_view(replica_dir, discard_delta=True) is True
    assert not (replica_dir / "delta").exists()
    assert list(mnt.iterdir()) == []
    assert unmount_failover_view(replica_dir) is False  # idempotent

    mnt = mount_failover_view(replica_dir, 1)
    try:
        assert not (mnt / "orders.csv").exists()
        assert tree_checksum(mnt) == get_restore_point(replica_dir, 1).checksum
    finally:
        unmount_failover_view(replica_dir)


def test_a_kept_delta_is_mounted_again_on_its_restore_point(replica: tuple[Path, Path]) -> None:
    # A reboot drops the mount but not the delta on disk: failover resumes with its writes.
    _source, replica_dir = replica
    mnt = mount_failover_view(replica_dir, 1)
    (mnt / "orders.csv").write_text("survives\n")
    unmount_failover_view(replica_dir, discard_delta=False)
    state = storage.view_state(replica_dir)
    assert state is not None and state.phase == "unmounted" and not state.mounted

    mnt = mount_failover_view(replica_dir, 1, reuse_delta=True)
    try:
        assert (mnt / "orders.csv").read_text() == "survives\n"
    finally:
        unmount_failover_view(replica_dir, discard_delta=False)

    # A kept delta is never put on top of another restore point.
    with pytest.raises(PreconditionFailed, match="kept delta belongs to restore point 1"):
        mount_failover_view(replica_dir, 2, reuse_delta=True)
    assert (replica_dir / "delta" / "upper" / "orders.csv").is_file()

    # Without reuse_delta, failover rolls back to the point: a fresh delta.
    mnt = mount_failover_view(replica_dir, 1)
    try:
        assert not (mnt / "orders.csv").exists()
    finally:
        unmount_failover_view(replica_dir)


def test_commit_delta_merges_new_and_deleted_files(replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    mnt = mount_failover_view(replica_dir, 1)
    (mnt / "orders.csv").write_text("new on the replica\n")
    (mnt / "old.txt").unlink()
    (mnt / "logs").mkdir()
    (mnt / "logs" / "access.log").write_text("GET /\n")
    whiteout = (replica_dir / "delta" / "upper" / "old.txt").lstat()
    assert stat.S_ISCHR(whiteout.st_mode)  # the deletion exists only as an overlay whiteout
    expected = tree_checksum(mnt)

    disk = commit_delta(replica_dir)

    assert disk == replica_dir / "disk"
    assert not storage.is_mounted(replica_dir / "mnt")
    assert tree_checksum(disk) == expected
    assert not (disk / "old.txt").exists()
    assert (disk / "orders.csv").read_text() == "new on the replica\n"
    assert "disk version 1" in (disk / "index.html").read_text()
    assert stat.S_IMODE((disk / "index.html").stat().st_mode) == 0o644
    assert list_restore_points(replica_dir) == []
    assert not (replica_dir / "delta").exists()
    assert storage.view_state(replica_dir) is None
    assert storage.replica_serving_path(replica_dir) == disk


def test_commit_resumes_when_a_reboot_dropped_the_mount(replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    mnt = mount_failover_view(replica_dir, 2)
    (mnt / "orders.csv").write_text("kept across the reboot\n")
    unmount_failover_view(replica_dir, discard_delta=False)
    disk = commit_delta(replica_dir)
    assert (disk / "orders.csv").read_text() == "kept across the reboot\n"
    assert not storage.is_mounted(replica_dir / "mnt")
    assert list_restore_points(replica_dir) == []


def test_retention_never_deletes_the_mounted_restore_point(replica: tuple[Path, Path]) -> None:
    source, replica_dir = replica
    mount_failover_view(replica_dir, 1)
    try:
        point = replicate(source, replica_dir, retention=1)
        assert point.id == 3
        assert [p.id for p in list_restore_points(replica_dir)] == [1, 3]
        result = storage.apply_retention(replica_dir, 1)
        assert result.kept_in_use == [1] and result.removed == []
        assert "disk version 1" in (replica_dir / "mnt" / "index.html").read_text()
    finally:
        unmount_failover_view(replica_dir)
    assert storage.apply_retention(replica_dir, 1).removed == [1]


def test_cleanup_unmounts_only_under_its_root(tmp_path: Path, replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    lab = tmp_path / "lab"
    mount_failover_view(replica_dir, 1)
    # A second overlay outside the lab's state directory that cleanup must not touch.
    outside = tmp_path / "outside"
    for name in ("lower", "upper", "work", "mnt"):
        (outside / name).mkdir(parents=True)
    (outside / "lower" / "f").write_text("outside\n")
    options = ",".join(
        f"{key}={outside / name}"
        for key, name in (("lowerdir", "lower"), ("upperdir", "upper"), ("workdir", "work"))
    )
    # mount(8) on purpose: cleanup must find mounts whoever made them.
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(outside / "mnt")], check=True
    )
    try:
        removed = storage.cleanup_mounts_under(lab)
        assert removed == [os.path.realpath(replica_dir / "mnt")]
        assert overlay_mounts_under(lab) == []
        assert storage.is_mounted(outside / "mnt")
        assert (outside / "mnt" / "f").read_text() == "outside\n"
        assert storage.cleanup_mounts_under(lab) == []
    finally:
        subprocess.run(["umount", str(outside / "mnt")], check=False)
        unmount_failover_view(replica_dir)
    assert not storage.is_mounted(outside / "mnt")


def test_remount_after_a_crash_is_idempotent(replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    mnt = mount_failover_view(replica_dir, 1)
    try:
        (mnt / "orders.csv").write_text("written before the crash\n")
        # The crash: the mount survives, netlab's own record of it does not.
        (replica_dir / "view.json").unlink()
        again = mount_failover_view(replica_dir, 1)
        assert again == mnt
        assert (mnt / "orders.csv").read_text() == "written before the crash\n"
        assert len(overlay_mounts_under(mnt)) == 1
        state = storage.view_state(replica_dir)
        assert state is not None and state.restore_point == 1 and state.phase == "mounted"
        with pytest.raises(PreconditionFailed, match="restore point 1 is already mounted"):
            mount_failover_view(replica_dir, 2)
    finally:
        unmount_failover_view(replica_dir)


def test_busy_view_names_the_process_using_it(replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    mnt = mount_failover_view(replica_dir, 1)
    workload = subprocess.Popen(["sleep", "60"], cwd=mnt)
    try:
        with pytest.raises(MountBusy, match=rf"pid {workload.pid} \(sleep\)"):
            unmount_failover_view(replica_dir)
        assert storage.is_mounted(mnt)
    finally:
        workload.kill()
        workload.wait()
        unmount_failover_view(replica_dir)
    assert not storage.is_mounted(mnt)


def test_failback_copies_the_view_to_the_source_in_two_phases(
    replica: tuple[Path, Path],
) -> None:
    source, replica_dir = replica
    mnt = mount_failover_view(replica_dir, 2)
    try:
        (mnt / "orders.csv").write_text("order 1\n")
        (mnt / "old.txt").unlink()
        first = copy_changes_to_source(mnt, source)
        assert (first.copied, first.deleted) == (1, 1)
        assert tree_checksum(source) == tree_checksum(mnt)
        (mnt / "orders.csv").write_text("order 1\norder 2\n")
        second = copy_changes_to_source(mnt, source)
        assert (second.copied, second.deleted, second.unchanged) == (1, 0, 1)
        assert tree_checksum(source) == tree_checksum(mnt)
    finally:
        unmount_failover_view(replica_dir)


def test_remove_replica_unmounts_its_view(replica: tuple[Path, Path]) -> None:
    _source, replica_dir = replica
    mount_failover_view(replica_dir, 1)
    storage.remove_replica(replica_dir)
    assert not replica_dir.exists()
    assert overlay_mounts_under(replica_dir) == []
