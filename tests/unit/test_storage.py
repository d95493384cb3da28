"""Disks, restore points, copy-back and checksums: everything in netlab.storage but mounting."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path

import pytest

from netlab import storage
from netlab.errors import NotRoot, OperationLocked, PreconditionFailed
from netlab.storage import (
    UnknownRestorePoint,
    apply_retention,
    copy_changes_to_source,
    files,
    get_restore_point,
    list_restore_points,
    locking,
    mounts,
    replicate,
    seed_disk,
    tree_checksum,
    view_file,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, Path]:
    """A seeded source disk of acme/web and its (empty) replica directory."""
    source = storage.disk_path(tmp_path, "acme", "web")
    seed_disk(source, "acme", "web")
    write(source / "data" / "orders.csv", "id,qty\n1,3\n")
    return source, storage.replica_path(tmp_path, "acme", "web")


def test_disk_and_replica_paths_follow_the_layout(tmp_path: Path) -> None:
    assert storage.disk_path(tmp_path, "acme", "web") == tmp_path / "disks/acme/web"
    assert storage.replica_path(tmp_path, "acme", "web") == tmp_path / "sp/acme/web"


def test_seed_disk_names_tenant_vm_and_version(tmp_path: Path) -> None:
    index = seed_disk(tmp_path / "d", "acme", "web", version=3)
    assert index.read_text() == ("<h1>acme/web</h1><p>tenant acme, vm web, disk version 3</p>\n")


def test_replicate_creates_increasing_ids(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    ids = [replicate(source, replica, retention=None).id for _ in range(3)]
    assert ids == [1, 2, 3]
    assert [p.id for p in list_restore_points(replica)] == [1, 2, 3]
    assert (replica / "restore-points" / "rp-0002" / "data" / "index.html").is_file()


def test_ids_are_never_reused_after_retention(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    for _ in range(3):
        replicate(source, replica, retention=1)
    assert [p.id for p in list_restore_points(replica)] == [3]
    assert replicate(source, replica, retention=1).id == 4


def test_restore_point_records_size_files_and_checksum(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    point = replicate(source, replica, retention=None)
    assert point.files == 2
    assert point.size_bytes == sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    assert point.checksum == tree_checksum(source) == tree_checksum(point.path)
    meta = json.loads((point.path.parent / "point.json").read_text())
    assert meta["id"] == 1 and meta["name"] == "rp-0001"
    assert get_restore_point(replica, 1) == point


def test_restore_points_are_read_only(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    point = replicate(source, replica, retention=None)
    for path in [point.path, *point.path.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o555 if path.is_dir() else 0o444), path
    assert stat.S_IMODE(point.path.parent.stat().st_mode) == 0o555
    # The source keeps its own modes: replication only reads it.
    assert stat.S_IMODE((source / "index.html").stat().st_mode) == 0o644


def test_later_source_changes_do_not_reach_old_points(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    first = replicate(source, replica, retention=None)
    seed_disk(source, "acme", "web", version=2)
    second = replicate(source, replica, retention=None)
    assert "disk version 1" in (first.path / "index.html").read_text()
    assert "disk version 2" in (second.path / "index.html").read_text()
    assert tree_checksum(first.path) == first.checksum != second.checksum


def test_retention_keeps_newest_n(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    for _ in range(5):
        replicate(source, replica, retention=3)
    assert [p.id for p in list_restore_points(replica)] == [3, 4, 5]
    assert sorted(os.listdir(replica / "restore-points")) == ["rp-0003", "rp-0004", "rp-0005"]


def test_retention_keeps_a_point_whose_delta_is_kept(lab: tuple[Path, Path]) -> None:
    # A delta kept across an unmount or a reboot only makes sense on its own restore point.
    source, replica = lab
    for _ in range(3):
        replicate(source, replica, retention=None)
    view_file._write_view_file(replica, 1, "unmounted")
    result = apply_retention(replica, 1)
    assert result.removed == [2]
    assert result.kept_in_use == [1]
    assert [p.id for p in list_restore_points(replica)] == [1, 3]


def test_retention_below_one_is_refused(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    with pytest.raises(PreconditionFailed, match="at least 1"):
        replicate(source, replica, retention=0)
    assert list_restore_points(replica) == []


def test_replicating_a_missing_source_is_refused(tmp_path: Path) -> None:
    replica = storage.replica_path(tmp_path, "acme", "web")
    with pytest.raises(PreconditionFailed, match=r"acme/web@sp.*does not exist"):
        replicate(tmp_path / "nope", replica, retention=1)


def test_unknown_restore_point_error_names_available_ids(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    for _ in range(3):
        replicate(source, replica, retention=None)
    with pytest.raises(UnknownRestorePoint) as info:
        get_restore_point(replica, 7)
    message = str(info.value)
    assert "acme/web@sp" in message and "no restore point 7" in message
    assert "available: 1, 2, 3 (latest: 3)" in message


def test_get_restore_point_accepts_ids_names_and_latest(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    for _ in range(3):
        replicate(source, replica, retention=None)
    assert get_restore_point(replica).id == 3
    assert get_restore_point(replica, "latest").id == 3
    assert get_restore_point(replica, "2").id == 2
    assert get_restore_point(replica, "rp-0001").id == 1
    with pytest.raises(UnknownRestorePoint, match="available: 1, 2, 3"):
        get_restore_point(replica, "yesterday")


def test_no_restore_points_tells_to_replicate_first(tmp_path: Path) -> None:
    with pytest.raises(UnknownRestorePoint, match="replicate the VM first"):
        get_restore_point(storage.replica_path(tmp_path, "acme", "web"))


def test_interrupted_replication_leaves_no_point_and_is_cleaned_up(
    lab: tuple[Path, Path],
) -> None:
    source, replica = lab
    replicate(source, replica, retention=None)
    leftover = replica / "restore-points" / ".tmp-rp-0002"
    write(leftover / "data" / "half.html", "half a copy")
    assert [p.id for p in list_restore_points(replica)] == [1]
    replicate(source, replica, retention=None)
    assert not leftover.exists()
    assert [p.id for p in list_restore_points(replica)] == [1, 2]


def test_a_file_vanishing_during_replication_gives_a_consistent_point(
    lab: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The VM keeps running while it is replicated: a file deleted mid-copy is simply absent.
    source, replica = lab
    real_copy = files._copy_file

    def copy_while_the_vm_deletes(src: str, dst: Path, read_only: bool) -> int:
        if src.endswith("orders.csv"):
            os.unlink(src)
        return real_copy(src, dst, read_only)

    monkeypatch.setattr(files, "_copy_file", copy_while_the_vm_deletes)
    point = replicate(source, replica, retention=None)
    assert point.files == 1
    assert point.checksum == tree_checksum(source) == tree_checksum(point.path)


def test_another_process_changing_the_replica_blocks_then_times_out(
    lab: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, replica = lab
    replicate(source, replica, retention=None)
    monkeypatch.setattr(locking, "_LOCK_TIMEOUT_S", 0.1)
    # A second open file description conflicts like another process would.
    fd = os.open(replica / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(OperationLocked, match="acme/web@sp"):
            replicate(source, replica, retention=None)
    finally:
        os.close(fd)
    assert replicate(source, replica, retention=None).id == 2


def test_replica_serves_its_disk_when_no_view_is_mounted(lab: tuple[Path, Path]) -> None:
    _source, replica = lab
    assert storage.replica_serving_path(replica) == replica / "disk"


def test_unmount_without_a_view_is_a_harmless_no_op(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    replicate(source, replica, retention=None)
    assert storage.unmount_failover_view(replica) is False
    assert storage.unmount_failover_view(replica) is False
    assert storage.unmount_failover_view(replica.parent / "never-replicated") is False


def test_commit_without_a_view_is_refused(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    replicate(source, replica, retention=None)
    with pytest.raises(PreconditionFailed, match="no failover view to commit"):
        storage.commit_delta(replica)
    assert len(list_restore_points(replica)) == 1


def test_mounting_needs_root(lab: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    source, replica = lab
    replicate(source, replica, retention=None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotRoot, match="needs root"):
        storage.mount_failover_view(replica)


def test_remove_replica_deletes_read_only_points(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    replicate(source, replica, retention=None)
    storage.remove_replica(replica)
    assert not replica.exists()
    assert source.is_dir()
    storage.remove_replica(replica)  # idempotent


def test_cleanup_refuses_the_root_directory() -> None:
    with pytest.raises(PreconditionFailed, match="refusing"):
        storage.cleanup_mounts_under(Path("/"))


def test_mountinfo_escapes_are_decoded() -> None:
    assert mounts._unescape(r"/tmp/a\040b\134c") == "/tmp/a b\\c"


# --------------------------------------------------------------------------- copy-back


@pytest.fixture
def view_and_source(tmp_path: Path) -> tuple[Path, Path]:
    view, source = tmp_path / "view", tmp_path / "source"
    for root in (view, source):
        seed_disk(root, "acme", "web")
        write(root / "data" / "keep.txt", "same on both sides")
        write(root / "data" / "gone.txt", "the replica deleted this")
    (view / "data" / "gone.txt").unlink()
    seed_disk(view, "acme", "web", version=2)
    write(view / "data" / "new.txt", "written on the replica")
    return view, source


def test_copy_changes_copies_new_and_changed_files_and_deletes_removed_ones(
    view_and_source: tuple[Path, Path],
) -> None:
    view, source = view_and_source
    summary = copy_changes_to_source(view, source)
    assert (summary.copied, summary.deleted, summary.unchanged) == (2, 1, 1)
    new_bytes = len((view / "index.html").read_bytes()) + len(b"written on the replica")
    assert summary.bytes_copied == new_bytes
    assert not (source / "data" / "gone.txt").exists()
    assert (source / "data" / "new.txt").read_text() == "written on the replica"
    assert tree_checksum(source) == tree_checksum(view)


def test_copy_changes_is_incremental(view_and_source: tuple[Path, Path]) -> None:
    view, source = view_and_source
    copy_changes_to_source(view, source)
    again = copy_changes_to_source(view, source)
    assert (again.copied, again.deleted, again.bytes_copied) == (0, 0, 0)
    assert again.unchanged == 3
    # Phase 2 (switch) carries only what changed since phase 1 (failback).
    write(view / "data" / "late.txt", "written after failback started")
    (view / "data" / "keep.txt").unlink()
    late = copy_changes_to_source(view, source)
    assert (late.copied, late.deleted, late.unchanged) == (1, 1, 2)
    assert tree_checksum(source) == tree_checksum(view)


def test_copy_changes_detects_same_size_edits(view_and_source: tuple[Path, Path]) -> None:
    view, source = view_and_source
    copy_changes_to_source(view, source)
    target = view / "data" / "keep.txt"
    mtime = target.stat().st_mtime_ns
    target.write_text("SAME ON BOTH SIDES")  # same size
    os.utime(target, ns=(mtime, mtime))  # and the same mtime: only the content differs
    summary = copy_changes_to_source(view, source)
    assert summary.copied == 1
    assert (source / "data" / "keep.txt").read_text() == "SAME ON BOTH SIDES"


def test_copy_changes_handles_type_changes_and_symlinks(tmp_path: Path) -> None:
    view, source = tmp_path / "view", tmp_path / "source"
    write(view / "logs" / "a.log", "a")  # a directory where the source has a file
    write(view / "cfg", "now a file")  # a file where the source has a directory
    os.symlink("cfg", view / "cfg.link")
    write(source / "logs", "was a file")
    write(source / "cfg" / "x.conf", "x")
    write(source / "cfg" / "y.conf", "y")
    summary = copy_changes_to_source(view, source)
    assert summary.deleted == 3
    assert (source / "logs" / "a.log").read_text() == "a"
    assert os.readlink(source / "cfg.link") == "cfg"
    assert tree_checksum(source) == tree_checksum(view)


def test_copy_changes_creates_a_missing_source(view_and_source: tuple[Path, Path]) -> None:
    view, source = view_and_source
    target = source.parent / "fresh"
    summary = copy_changes_to_source(view, target)
    assert summary.copied == 3
    assert tree_checksum(target) == tree_checksum(view)


def test_copy_changes_from_a_restore_point_gives_writable_files(lab: tuple[Path, Path]) -> None:
    source, replica = lab
    point = replicate(source, replica, retention=None)
    target = source.parent / "restored"
    copy_changes_to_source(point.path, target)
    assert stat.S_IMODE((target / "index.html").stat().st_mode) == 0o644
    assert stat.S_IMODE((target / "data").stat().st_mode) == 0o755


def test_copy_changes_refuses_nested_trees(view_and_source: tuple[Path, Path]) -> None:
    view, _source = view_and_source
    with pytest.raises(PreconditionFailed, match="contains"):
        copy_changes_to_source(view, view / "data")


# --------------------------------------------------------------------------- checksums


def test_tree_checksum_is_deterministic(view_and_source: tuple[Path, Path]) -> None:
    view, _source = view_and_source
    assert tree_checksum(view) == tree_checksum(view)
    twin = view.parent / "twin"
    copy_changes_to_source(view, twin)
    assert tree_checksum(twin) == tree_checksum(view)


def test_tree_checksum_ignores_modes_and_times(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "f", "x")
    b = write(tmp_path / "b" / "f", "x")
    os.chmod(a, 0o444)
    os.utime(b, (0, 0))
    assert tree_checksum(tmp_path / "a") == tree_checksum(tmp_path / "b")


def test_tree_checksum_sees_content_names_and_deletions(tmp_path: Path) -> None:
    root = tmp_path / "t"
    write(root / "a" / "f.txt", "one")
    write(root / "g.txt", "two")
    base = tree_checksum(root)

    (root / "g.txt").write_text("twO")
    assert tree_checksum(root) != base
    (root / "g.txt").write_text("two")
    assert tree_checksum(root) == base

    (root / "g.txt").rename(root / "h.txt")
    assert tree_checksum(root) != base
    (root / "h.txt").rename(root / "g.txt")

    (root / "a" / "f.txt").unlink()
    assert tree_checksum(root) != base
    write(root / "a" / "f.txt", "one")
    assert tree_checksum(root) == base

    (root / "empty").mkdir()
    assert tree_checksum(root) != base


def test_tree_checksum_does_not_confuse_path_boundaries(tmp_path: Path) -> None:
    # "ab" + content "c" must not equal "a" + content "bc".
    write(tmp_path / "x" / "ab", "c")
    write(tmp_path / "y" / "a", "bc")
    assert tree_checksum(tmp_path / "x") != tree_checksum(tmp_path / "y")
