"""The failover view: a restore point mounted read-only under a fresh writable delta.

Also committing the delta (permanent failover) and removing a replica.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

from netlab.errors import PreconditionFailed
from netlab.storage.files import _copy_tree, _Counts, _fsync_dir, _remove_tree
from netlab.storage.layout import POINTS_DIR, VIEW_STATE, RestorePoint, ViewState, _label, log
from netlab.storage.locking import _replica_lock
from netlab.storage.mounts import (
    _mount_at,
    _mount_overlay,
    _mounted_point_id,
    _overlay_at,
    _require_mount_privileges,
    _umount,
    cleanup_mounts_under,
    mounts_under,
)
from netlab.storage.restore_points import get_restore_point
from netlab.storage.view_file import _read_view_file, _write_view_file


def mount_failover_view(
    replica_dir: Path,
    restore_point: RestorePoint | int | str = "latest",
    *,
    reuse_delta: bool = False,
) -> Path:
    """Mount `restore_point` read-only under a writable delta on the replica's mnt/.

    Returns mnt/. Idempotent: if that restore point's view is already mounted
    (resume after a crash), it is left as it is, delta included. A view of another
    restore point is refused. Otherwise the delta starts empty — failover rolls the
    replica back to the point — unless reuse_delta is set and view.json says the
    kept delta was made on this same point (remount after a reboot).
    """
    replica_dir = Path(replica_dir)
    _require_mount_privileges()
    with _replica_lock(replica_dir):
        return _mount_view(replica_dir, restore_point, reuse_delta=reuse_delta)



def _mount_view(
    replica_dir: Path, restore_point: RestorePoint | int | str, *, reuse_delta: bool
) -> Path:
    point = (
        restore_point
        if isinstance(restore_point, RestorePoint)
        else get_restore_point(replica_dir, restore_point)
    )
    mnt = replica_dir / "mnt"
    entry = _overlay_at(mnt)
    state = _read_view_file(replica_dir)
    if entry is not None:
        current = _mounted_point_id(entry, replica_dir)
        if current is None and state is not None:
            current = state[0]
        if current == point.id:
            if state is None or state[0] != point.id or state[1] != "mounted":
                _write_view_file(replica_dir, point.id, "mounted")
            log.info("%s: view of restore point %d already mounted", _label(replica_dir), point.id)
            return mnt
        raise PreconditionFailed(
            f"{_label(replica_dir)}: a failover view of restore point {current} is already "
            f"mounted at {mnt}; unmount it (undo) before mounting restore point {point.id}"
        )
    if mnt.is_dir() and any(mnt.iterdir()):
        # Something wrote into the bare mount point; a mount would hide those files.
        raise PreconditionFailed(
            f"{_label(replica_dir)}: {mnt} is not empty although nothing is mounted there; "
            "something wrote into the replica's mount point directly: inspect and empty it"
        )
    delta = replica_dir / "delta"
    has_delta = (delta / "upper").is_dir()
    if reuse_delta and has_delta and state is not None and state[0] != point.id:
        # The kept writes were made on another restore point: refuse rather than lose them.
        raise PreconditionFailed(
            f"{_label(replica_dir)}: the kept delta belongs to restore point {state[0]}, "
            f"not {point.id}; mount restore point {state[0]} to resume, or discard the delta"
        )
    keep = reuse_delta and has_delta and state is not None
    if not keep:
        if delta.exists():
            if has_delta and state is not None:
                log.info(
                    "%s: discarding the kept delta of restore point %d",
                    _label(replica_dir),
                    state[0],
                )
            _remove_tree(delta)
        delta.mkdir(mode=0o700)
        (delta / "upper").mkdir(mode=0o755)  # the view's root takes this mode
    (delta / "work").mkdir(mode=0o700, exist_ok=True)
    mnt.mkdir(mode=0o755, exist_ok=True)
    _mount_overlay(point.path, delta / "upper", delta / "work", mnt)
    _write_view_file(replica_dir, point.id, "mounted")
    log.info(
        "%s: mounted restore point %d at %s (%s delta)",
        _label(replica_dir),
        point.id,
        mnt,
        "kept" if keep else "fresh",
    )
    return mnt



def unmount_failover_view(
    replica_dir: Path, discard_delta: bool = True, *, force: bool = False
) -> bool:
    """Unmount the replica's view; with discard_delta, delete everything written to it.

    Idempotent; returns True when something was unmounted. A busy mount (the
    replica's workload still runs in it) raises MountBusy naming the processes:
    stop the workload first. force=True detaches it lazily instead (`undo --force`
    on a replica that does not respond): the kernel drops it when the last user
    goes. With discard_delta=False the delta and view.json stay, so the same
    restore point can be mounted again with reuse_delta=True.
    """
    replica_dir = Path(replica_dir)
    if not replica_dir.exists():
        return False
    with _replica_lock(replica_dir):
        return _unmount_view(replica_dir, discard_delta=discard_delta, force=force)



def _unmount_view(replica_dir: Path, *, discard_delta: bool, force: bool) -> bool:
    mnt = replica_dir / "mnt"
    unmounted = False
    # A loop, because a crash-and-retry sequence can stack two mounts on mnt/.
    while _mount_at(mnt) is not None:
        _require_mount_privileges()
        _umount(str(mnt), lazy=force)
        unmounted = True
    if discard_delta:
        delta = replica_dir / "delta"
        if delta.exists():
            _remove_tree(delta)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(replica_dir / VIEW_STATE)
    else:
        state = _read_view_file(replica_dir)
        if state is not None and state[1] == "mounted":
            _write_view_file(replica_dir, state[0], "unmounted")
    if unmounted:
        log.info(
            "%s: unmounted failover view%s",
            _label(replica_dir),
            ", delta discarded" if discard_delta else "",
        )
    return unmounted



def view_state(replica_dir: Path) -> ViewState | None:
    """The replica's failover view (from view.json and the kernel), or None if it has none."""
    replica_dir = Path(replica_dir)
    entry = _overlay_at(replica_dir / "mnt")
    state = _read_view_file(replica_dir)
    kernel_id = _mounted_point_id(entry, replica_dir) if entry is not None else None
    if state is None and entry is None:
        return None
    if state is None:
        return ViewState(
            restore_point=kernel_id if kernel_id is not None else -1,
            phase="mounted",
            since=datetime.now(UTC),
            mounted=True,
        )
    return ViewState(
        restore_point=kernel_id if kernel_id is not None else state[0],
        phase=state[1],
        since=state[2],
        mounted=entry is not None,
    )



def replica_serving_path(replica_dir: Path) -> Path:
    """The directory the replica's workload serves: mnt/ while a view is mounted, else disk/."""
    replica_dir = Path(replica_dir)
    if _overlay_at(replica_dir / "mnt") is not None:
        return replica_dir / "mnt"
    return replica_dir / "disk"



def commit_delta(replica_dir: Path) -> Path:
    """Permanent failover: merge restore point + delta into disk/, then drop the view.

    Copies the merged view (so the delta's whiteouts, i.e. deletions, are
    honoured) into disk.new, swaps it in, unmounts, and deletes the delta and all
    restore points. Returns disk/. Stop the replica's workload first: it holds
    the mount busy (MountBusy); start it again on replica_serving_path(). Safe to
    run again after a crash at any step: it resumes (remounting a kept delta if a
    reboot dropped the mount).
    """
    replica_dir = Path(replica_dir)
    with _replica_lock(replica_dir):
        mnt, disk = replica_dir / "mnt", replica_dir / "disk"
        state = _read_view_file(replica_dir)
        mounted = _overlay_at(mnt) is not None
        if not mounted:
            if state is None:
                raise PreconditionFailed(
                    f"{_label(replica_dir)} has no failover view to commit: fail over first"
                )
            if state[1] != "committed":
                _require_mount_privileges()
                _mount_view(replica_dir, state[0], reuse_delta=True)
                mounted = True
        entry = _overlay_at(mnt) if mounted else None
        if entry is not None:
            point_id = _mounted_point_id(entry, replica_dir)
            if point_id is None:
                point_id = state[0] if state else -1
            new, old = replica_dir / "disk.new", replica_dir / "disk.old"
            for leftover in (new, old):
                if leftover.exists():
                    _remove_tree(leftover)
            _copy_tree(mnt, new, _Counts(), read_only=False)
            if disk.exists():
                os.rename(disk, old)
            os.rename(new, disk)
            _fsync_dir(replica_dir)
            if old.exists():
                _remove_tree(old)
            _write_view_file(replica_dir, point_id, "committed")
            _unmount_view(replica_dir, discard_delta=False, force=False)
        delta = replica_dir / "delta"
        if delta.exists():
            _remove_tree(delta)
        points_dir = replica_dir / POINTS_DIR
        if points_dir.exists():
            for name in os.listdir(points_dir):
                _remove_tree(points_dir / name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(replica_dir / VIEW_STATE)
        log.info("%s: delta committed into %s; restore points removed", _label(replica_dir), disk)
        return disk



def remove_replica(replica_dir: Path) -> None:
    """Delete a replica entirely: unmount anything under it, then remove the directory."""
    replica_dir = Path(replica_dir)
    if not replica_dir.exists():
        return
    with _replica_lock(replica_dir):
        if mounts_under(replica_dir):
            _require_mount_privileges()
            cleanup_mounts_under(replica_dir)
        _remove_tree(replica_dir)
    log.info("removed replica %s", replica_dir)
