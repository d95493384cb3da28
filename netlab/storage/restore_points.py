"""Restore points: made by replication, kept to a retention, listed and looked up."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from netlab.errors import NetlabError, PreconditionFailed
from netlab.storage.disks import tree_checksum
from netlab.storage.files import _copy_tree, _Counts, _fsync_dir, _remove_tree, _write_atomic
from netlab.storage.layout import (
    _POINT_NAME,
    POINT_DATA,
    POINT_META,
    POINTS_DIR,
    REPLICA_META,
    RestorePoint,
    RetentionResult,
    UnknownRestorePoint,
    _label,
    log,
    point_name,
)
from netlab.storage.locking import _replica_lock
from netlab.storage.mounts import _mounted_point_id, _overlay_at, read_mountinfo
from netlab.storage.view_file import _read_view_file


def replicate(source_disk: Path, replica_dir: Path, retention: int | None) -> RestorePoint:
    """Make a new restore point of `source_disk`, then keep the newest `retention` points.

    retention=None skips retention; call apply_retention() yourself to see what
    it removed. A point that a failover view uses is never removed (logged).
    """
    source_disk, replica_dir = Path(source_disk), Path(replica_dir)
    if not source_disk.is_dir():
        raise PreconditionFailed(
            f"cannot replicate to {_label(replica_dir)}: source disk {source_disk} does not exist"
        )
    if retention is not None and retention < 1:
        raise PreconditionFailed(f"retention must keep at least 1 restore point, not {retention}")
    with _replica_lock(replica_dir):
        points_dir = replica_dir / POINTS_DIR
        points_dir.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(points_dir)
        point_id = _reserve_point_id(replica_dir)
        name = point_name(point_id)
        tmp = points_dir / f".tmp-{name}"
        os.mkdir(tmp, 0o700)
        counts = _Counts()
        _copy_tree(source_disk, tmp / POINT_DATA, counts, read_only=True)
        point = RestorePoint(
            id=point_id,
            created=datetime.now(UTC),
            size_bytes=counts.bytes,
            files=counts.copied,
            checksum=tree_checksum(tmp / POINT_DATA),
            path=points_dir / name / POINT_DATA,
        )
        _write_atomic(tmp / POINT_META, json.dumps(point.to_dict(), indent=2).encode(), mode=0o444)
        os.chmod(tmp, 0o555)
        _fsync_dir(tmp)
        # Same parent: renaming a 0555 directory needs no write permission on it.
        os.rename(tmp, points_dir / name)
        _fsync_dir(points_dir)
        log.info(
            "%s: restore point %d of %s (%d files, %d bytes)",
            _label(replica_dir),
            point_id,
            source_disk,
            point.files,
            point.size_bytes,
        )
        if retention is not None:
            result = apply_retention(replica_dir, retention)
            if result.kept_in_use:
                log.warning(
                    "%s: retention %d kept restore point(s) %s: a failover view uses them",
                    _label(replica_dir),
                    retention,
                    ", ".join(map(str, result.kept_in_use)),
                )
    return point



def apply_retention(replica_dir: Path, retention: int) -> RetentionResult:
    """Delete all but the newest `retention` restore points, except those a view uses."""
    replica_dir = Path(replica_dir)
    if retention < 1:
        raise PreconditionFailed(f"retention must keep at least 1 restore point, not {retention}")
    with _replica_lock(replica_dir):
        points = list_restore_points(replica_dir)
        in_use = _points_in_use(replica_dir)
        removed, kept = [], []
        for point in points[: max(0, len(points) - retention)]:
            if point.id in in_use:
                kept.append(point.id)
                continue
            _remove_point(replica_dir, point.id)
            removed.append(point.id)
        if removed:
            log.info(
                "%s: retention %d removed restore point(s) %s",
                _label(replica_dir),
                retention,
                ", ".join(map(str, removed)),
            )
        return RetentionResult(removed=removed, kept_in_use=kept)



def list_restore_points(replica_dir: Path) -> list[RestorePoint]:
    """The replica's restore points, oldest first (ascending id)."""
    points_dir = Path(replica_dir) / POINTS_DIR
    try:
        names = os.listdir(points_dir)
    except FileNotFoundError:
        return []
    points = []
    for name in names:
        match = _POINT_NAME.match(name)
        if match is None:
            continue  # .tmp-* / .del-* leftovers of an interrupted run
        meta_path = points_dir / name / POINT_META
        try:
            meta = json.loads(meta_path.read_text())
            points.append(
                RestorePoint(
                    id=int(meta["id"]),
                    created=datetime.fromisoformat(meta["created"]),
                    size_bytes=int(meta["size_bytes"]),
                    files=int(meta["files"]),
                    checksum=str(meta["checksum"]),
                    path=points_dir / name / POINT_DATA,
                )
            )
        except (OSError, ValueError, KeyError) as exc:
            # A point becomes visible only once its metadata is written: this is damage.
            raise NetlabError(f"restore point {points_dir / name} is damaged: {exc}") from exc
    points.sort(key=lambda p: p.id)
    return points



def get_restore_point(replica_dir: Path, which: int | str = "latest") -> RestorePoint:
    """One restore point by id (7, "7", "rp-0007") or "latest"; the error lists those that exist."""
    replica_dir = Path(replica_dir)
    points = list_restore_points(replica_dir)
    if not points:
        raise UnknownRestorePoint(
            f"{_label(replica_dir)} has no restore points: replicate the VM first"
        )
    if which == "latest":
        return points[-1]
    wanted = _parse_point_id(which)
    for point in points:
        if point.id == wanted:
            return point
    available = ", ".join(str(p.id) for p in points)
    raise UnknownRestorePoint(
        f"{_label(replica_dir)} has no restore point {which!s}; "
        f"available: {available} (latest: {points[-1].id})"
    )



def _parse_point_id(which: int | str) -> int | None:
    if isinstance(which, int):
        return which
    text = str(which).strip()
    match = _POINT_NAME.match(text)
    if match:
        return int(match.group(1))
    return int(text) if text.isdigit() else None



def _reserve_point_id(replica_dir: Path) -> int:
    # The counter is written before the point exists, so a crash leaves a gap, never
    # a reused id; the max over existing points covers a lost or older counter.
    meta_path = replica_dir / REPLICA_META
    last = 0
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        last = int(json.loads(meta_path.read_text())["last_restore_point"])
    existing = [p.id for p in list_restore_points(replica_dir)]
    point_id = max([last, *existing]) + 1
    _write_atomic(meta_path, json.dumps({"last_restore_point": point_id}).encode())
    return point_id



def _remove_point(replica_dir: Path, point_id: int) -> None:
    points_dir = replica_dir / POINTS_DIR
    # Rename first: the point leaves the listing in one step even if deletion is cut short.
    doomed = points_dir / f".del-{point_name(point_id)}"
    os.rename(points_dir / point_name(point_id), doomed)
    _remove_tree(doomed)



def _remove_leftovers(points_dir: Path) -> None:
    for name in os.listdir(points_dir):
        if name.startswith((".tmp-", ".del-")):
            log.info("removing leftover %s of an interrupted replication", points_dir / name)
            _remove_tree(points_dir / name)



def _points_in_use(replica_dir: Path) -> set[int]:
    # The kernel's mount, and view.json, which also covers a delta kept across an
    # unmount or a reboot: that delta is only meaningful on top of its restore point.
    used = set()
    entry = _overlay_at(replica_dir / "mnt")
    if entry is not None:
        point_id = _mounted_point_id(entry, replica_dir)
        if point_id is not None:
            used.add(point_id)
    state = _read_view_file(replica_dir)
    if state is not None:
        used.add(state[0])
    # any other overlay on a point of this replica (a test copy, a bubble's copy)
    for other in read_mountinfo():
        if other.fstype == "overlay" and (point_id := _mounted_point_id(other, replica_dir)):
            used.add(point_id)
    return used
