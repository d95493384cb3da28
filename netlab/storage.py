"""VM disks, replicas, restore points and the failover delta.

What is emulated (DESIGN §1): a VM disk is a directory tree; a replication job
makes immutable full copies of it (restore points) on the provider side;
failover mounts the chosen restore point read-only under a fresh writable delta
(overlayfs), so everything the running replica writes lands in the delta and the
restore point stays intact for the next failover.

On-disk layout, all under the lab's state directory::

    disks/<tenant>/<vm>/                the source VM's disk (its web server's document root)
    sp/<tenant>/<vm>/                   the replica of <tenant>/<vm> ("replica dir")
        replica.json                    {"last_restore_point": N}: ids are never reused
        view.json                       the restore point the delta belongs to (while a view exists)
        .lock                           flock held by a mutating storage call
        restore-points/rp-0001/         one restore point, immutable (files 0444, dirs 0555)
            point.json                  id, created, size_bytes, files, checksum
            data/                       the copy of the source disk = overlay lowerdir
        delta/upper/  delta/work/       overlay upper and work directories (failover writes)
        mnt/                            the overlay mount: the running replica's disk
        disk/                           the replica's own disk after a permanent failover

A restore point appears in one rename of a fully written and fsynced temporary
directory, so a crash leaves either a complete point or a `.tmp-*` leftover
that the next replication removes. The copy of a source that is being written is
crash-consistent, as a real replication job's snapshot would be.

Mounts are made with the mount(2) system call through ctypes, not `mount(8)`:
no dependency on util-linux' helper and its option parsing, no subprocess per
mount, and the kernel's errno (EBUSY, EINVAL, ENODEV) comes back as it is, so
the error messages can say exactly what went wrong. They must be made in the
root mount namespace (DESIGN §7: a mount made under `ip netns exec` vanishes
with that command); the workloads started later with `nsenter --net` see them.

Which view is mounted is recorded twice: by the kernel (/proc/self/mountinfo,
whose overlay options name the lowerdir, i.e. the restore point) and in
view.json. After a crash the kernel's record wins; view.json also outlives a
reboot, so a delta kept on disk can be mounted again on the restore point it
was made on (`reuse_delta=True`).

The orchestrator holds one operation at a time per VM; the flock here only
keeps two processes from interleaving inside one replica directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from netlab.errors import NetlabError, NotRoot, OperationLocked, PreconditionFailed

log = logging.getLogger("netlab.storage")

POINTS_DIR = "restore-points"
POINT_META = "point.json"
POINT_DATA = "data"
VIEW_STATE = "view.json"
REPLICA_META = "replica.json"
LOCK_FILE = ".lock"

_POINT_NAME = re.compile(r"^rp-(\d+)$")
_LOCK_TIMEOUT_S = 30.0


class UnknownRestorePoint(PreconditionFailed):
    """A restore point id that the replica does not have; the message lists those it has."""


class MountBusy(NetlabError):
    """A mount cannot be removed because processes still use it; the message names them."""


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class RestorePoint:
    """One immutable copy of a source disk, made by a replication run."""

    id: int
    created: datetime
    size_bytes: int
    files: int  # regular files and symlinks
    checksum: str
    path: Path = field(compare=False)  # the copied disk: the overlay lowerdir

    @property
    def name(self) -> str:
        return point_name(self.id)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "created": self.created.isoformat(),
            "size_bytes": self.size_bytes,
            "files": self.files,
            "checksum": self.checksum,
        }


@dataclass(frozen=True)
class ChangeSummary:
    """What copy_changes_to_source did. Counts are of files and symlinks, not directories."""

    copied: int = 0
    deleted: int = 0
    unchanged: int = 0
    bytes_copied: int = 0

    def to_dict(self) -> dict:
        return {
            "copied": self.copied,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "bytes_copied": self.bytes_copied,
        }


@dataclass(frozen=True)
class RetentionResult:
    """Restore points removed by retention, and old ones kept because a view uses them."""

    removed: list[int] = field(default_factory=list)
    kept_in_use: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ViewState:
    """The failover view of a replica: its restore point and whether the kernel has it mounted.

    phase is "mounted" while the view is in use, "unmounted" when it was unmounted
    with its delta kept, "committed" between a permanent failover's copy into
    disk/ and the end of its cleanup.
    """

    restore_point: int
    phase: str
    since: datetime
    mounted: bool


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo, with the escapes decoded."""

    mount_id: int
    parent_id: int
    mount_point: str
    fstype: str
    source: str
    super_options: str

    def option(self, key: str) -> str | None:
        for item in self.super_options.split(","):
            name, _, value = item.partition("=")
            if name == key:
                return value
        return None


# --------------------------------------------------------------------------- paths


def disk_path(state_dir: Path, tenant: str, vm: str) -> Path:
    """The source disk directory of <tenant>/<vm> in a lab's state directory."""
    return Path(state_dir) / "disks" / tenant / vm


def replica_path(state_dir: Path, tenant: str, vm: str) -> Path:
    """The replica directory of <tenant>/<vm> (restore points, delta, mount) on the SP side."""
    return Path(state_dir) / "sp" / tenant / vm


def point_name(point_id: int) -> str:
    """Directory name of restore point `point_id`: rp-0001, ..., rp-10000."""
    return f"rp-{point_id:04d}"


def _label(replica_dir: Path) -> str:
    # Messages speak of the replica as the CLI names it (acme/web@sp), not of a path.
    replica_dir = Path(replica_dir)
    if replica_dir.parent.parent.name == "sp":
        return f"{replica_dir.parent.name}/{replica_dir.name}@sp"
    return str(replica_dir)


# --------------------------------------------------------------------------- disks


def seed_disk(path: Path, tenant: str, vm: str, version: int = 1) -> Path:
    """Create the disk of <tenant>/<vm> with an index.html naming it and `version`.

    The page is what `curl http://<vm>/` shows, so a test or a demo can tell at a
    glance which disk (source, replica, which restore point) answered.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    page = f"<h1>{tenant}/{vm}</h1><p>tenant {tenant}, vm {vm}, disk version {version}</p>\n"
    index = path / "index.html"
    _write_atomic(index, page.encode(), mode=0o644)
    return index


def tree_checksum(path: Path) -> str:
    """sha256 over the relative paths, types and contents of a tree; deterministic.

    Modes, owners and times are left out on purpose: a restore point (0444) and the
    disk it was copied from (0644) have the same checksum. Only regular files,
    directories and symlinks are disk content; sockets, fifos and devices are
    ignored here as they are by every copy in this module.
    """
    root = Path(path)
    if not root.is_dir():
        raise NetlabError(f"cannot checksum {root}: not a directory")
    digest = hashlib.sha256(b"netlab-tree-v1\0")
    for rel, kind, full in _walk(root):
        # NUL cannot appear in a path, so these separators make the encoding unambiguous.
        digest.update(kind.encode() + b"\0" + os.fsencode(rel) + b"\0")
        if kind == "f":
            with open(full, "rb") as fh:
                digest.update(hashlib.file_digest(fh, "sha256").digest())
        elif kind == "l":
            digest.update(os.fsencode(os.readlink(full)) + b"\0")
    return digest.hexdigest()


def copy_changes_to_source(view_dir: Path, source_disk: Path) -> ChangeSummary:
    """Failback: make `source_disk` identical to `view_dir` (the replica's current disk).

    rsync-like and incremental, because the orchestrator runs it twice (at
    `failback` while the replica still runs, at `switch` for what changed since):
    a file whose size and content already match is left alone (only its mtime is
    synced); changed and new files are written to a temporary name and renamed
    into place, so a reader never sees half a file; files the replica deleted are
    deleted. Symlinks are copied as links, never followed.
    """
    view_dir, source_disk = Path(view_dir), Path(source_disk)
    if not view_dir.is_dir():
        raise PreconditionFailed(f"cannot copy changes from {view_dir}: not a directory")
    view_real, source_real = os.path.realpath(view_dir), os.path.realpath(source_disk)
    if _is_under(view_real, source_real) or _is_under(source_real, view_real):
        raise PreconditionFailed(
            f"cannot copy {view_dir} onto {source_disk}: one contains the other"
        )
    source_disk.mkdir(parents=True, exist_ok=True)
    counts = _Counts()
    _sync_dir(view_dir, source_disk, counts)
    _fsync_dir(source_disk)
    summary = ChangeSummary(
        copied=counts.copied,
        deleted=counts.deleted,
        unchanged=counts.unchanged,
        bytes_copied=counts.bytes,
    )
    log.info("copied changes %s -> %s: %s", view_dir, source_disk, summary)
    return summary


# --------------------------------------------------------------------------- restore points


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
    return used


# --------------------------------------------------------------------------- failover view


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


# --------------------------------------------------------------------------- mounts


def read_mountinfo() -> list[MountEntry]:
    """The calling process's mount table (/proc/self/mountinfo), escapes decoded."""
    entries = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            head, _, tail = line.rstrip("\n").partition(" - ")
            fields, after = head.split(" "), tail.split(" ")
            if len(fields) < 5 or len(after) < 3:
                continue
            entries.append(
                MountEntry(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    mount_point=_unescape(fields[4]),
                    fstype=after[0],
                    source=_unescape(after[1]),
                    super_options=_unescape(after[2]),
                )
            )
    return entries


def mounts_under(root: Path) -> list[MountEntry]:
    """Mounts whose mount point is `root` or below it."""
    real = os.path.realpath(root)
    return [m for m in read_mountinfo() if _is_under(m.mount_point, real)]


def is_mounted(path: Path) -> bool:
    """True when something is mounted exactly on `path`."""
    return _mount_at(Path(path)) is not None


def cleanup_mounts_under(root: Path) -> list[str]:
    """Unmount every mount under `root`, deepest first; returns the mount points removed.

    For `netlab cleanup` after a crash, once the lab's processes are ended. Only
    mounts at or below `root` are touched. A mount still busy is detached lazily
    (the kernel drops it when its last user goes) and reported with " (lazy)".
    """
    real = os.path.realpath(root)
    if real == "/":
        raise PreconditionFailed("refusing to unmount everything under /")
    removed: list[str] = []
    # Bounded: each round removes one mount; stacked mounts reappear one level down.
    for _ in range(1000):
        entries = [m for m in read_mountinfo() if _is_under(m.mount_point, real)]
        if not entries:
            break
        _require_mount_privileges()
        # Deepest path first; on the same path the newest mount (the top of a stack).
        target = max(entries, key=lambda m: (m.mount_point.count("/"), m.mount_id))
        try:
            _umount(target.mount_point, lazy=False)
            removed.append(target.mount_point)
        except MountBusy:
            _umount(target.mount_point, lazy=True)
            removed.append(f"{target.mount_point} (lazy)")
    else:
        raise NetlabError(f"mounts under {real} keep coming back; gave up after 1000 unmounts")
    if removed:
        log.info("unmounted under %s: %s", real, ", ".join(removed))
    return removed


_MS_NONE = 0
_MNT_DETACH = 2
_UMOUNT_NOFOLLOW = 8
_libc_handle: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _libc_handle
    if _libc_handle is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc_handle = libc
    return _libc_handle


def _mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    paths = {"lowerdir": lower, "upperdir": upper, "workdir": work}
    for key, path in paths.items():
        # ',' separates mount options and ':' separates lower layers: refuse rather than escape.
        if any(ch in str(path) for ch in ",:\\\n"):
            raise PreconditionFailed(
                f"cannot mount an overlay with {key} {path}: the path contains ',', ':', "
                "'\\' or a newline; use a state directory without them"
            )
    data = ",".join(f"{key}={os.path.realpath(path)}" for key, path in paths.items())
    target_b = os.fsencode(os.path.realpath(target))
    if _libc().mount(b"overlay", target_b, b"overlay", _MS_NONE, data.encode()) != 0:
        err = ctypes.get_errno()
        hint = ""
        if err == errno.ENODEV:
            hint = ": this kernel has no overlayfs"
        elif err == errno.EINVAL:
            hint = (
                ": the kernel log (dmesg) says why; usual causes are upper and work on "
                "different filesystems or an upper filesystem without xattr support"
            )
        raise NetlabError(f"mounting overlay on {target} failed: {os.strerror(err)}{hint} ({data})")


def _umount(target: str, *, lazy: bool) -> None:
    flags = _UMOUNT_NOFOLLOW | (_MNT_DETACH if lazy else 0)
    if _libc().umount2(os.fsencode(target), flags) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY:
        users = _processes_using(target)
        who = ", ".join(f"pid {pid} ({comm})" for pid, comm in users) or "an unknown process"
        raise MountBusy(
            f"cannot unmount {target}: it is busy, used by {who}; stop the workload "
            "running on it first (or force a lazy detach)"
        )
    if err == errno.EINVAL and _mount_at(Path(target)) is None:
        return  # someone else unmounted it in between: the goal is reached
    raise NetlabError(f"unmounting {target} failed: {os.strerror(err)}")


def _processes_using(target: str) -> list[tuple[int, str]]:
    # Only for the error message: who has a cwd, root or open file below the mount.
    users = []
    for pid_name in os.listdir("/proc"):
        if not pid_name.isdigit():
            continue
        proc = f"/proc/{pid_name}"
        links = [f"{proc}/cwd", f"{proc}/root"]
        with contextlib.suppress(OSError):
            links += [f"{proc}/fd/{fd}" for fd in os.listdir(f"{proc}/fd")]
        for link in links:
            try:
                dest = os.readlink(link)
            except OSError:
                continue
            if _is_under(dest, target):
                comm = "?"
                with contextlib.suppress(OSError):
                    comm = Path(f"{proc}/comm").read_text().strip()
                users.append((int(pid_name), comm))
                break
    return users


def _mount_at(path: Path) -> MountEntry | None:
    real = os.path.realpath(path)
    found = [m for m in read_mountinfo() if m.mount_point == real]
    # The last one listed is the top of a stack of mounts on the same path.
    return found[-1] if found else None


def _overlay_at(mnt: Path) -> MountEntry | None:
    entry = _mount_at(mnt)
    if entry is None:
        return None
    if entry.fstype != "overlay":
        raise NetlabError(
            f"{mnt} has a {entry.fstype} mount on it, not netlab's overlay: unmount it by hand"
        )
    return entry


def _mounted_point_id(entry: MountEntry, replica_dir: Path) -> int | None:
    # The overlay's lowerdir is .../restore-points/rp-NNNN/data: it names the point.
    lower = entry.option("lowerdir")
    if not lower:
        return None
    lower_path = Path(lower)
    points_dir = os.path.realpath(Path(replica_dir) / POINTS_DIR)
    if str(lower_path.parent.parent) != points_dir or lower_path.name != POINT_DATA:
        return None
    match = _POINT_NAME.match(lower_path.parent.name)
    return int(match.group(1)) if match else None


def _require_mount_privileges() -> None:
    if os.geteuid() != 0:
        raise NotRoot("mounting and unmounting failover views needs root (overlayfs)")
    # A mount made in a private mount namespace (`ip netns exec`, `unshare -m`) is
    # invisible to the next netlab command and vanishes with its last process.
    try:
        own, init = os.readlink("/proc/self/ns/mnt"), os.readlink("/proc/1/ns/mnt")
    except OSError:
        return  # pid 1 not inspectable (a sandbox or container): nothing to compare
    if own != init:
        raise PreconditionFailed(
            "netlab runs in a private mount namespace (under 'ip netns exec'?): mounts made "
            "here would vanish; run netlab itself in the root mount namespace"
        )


def _unescape(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _is_under(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


# --------------------------------------------------------------------------- view.json


def _read_view_file(replica_dir: Path) -> tuple[int, str, datetime] | None:
    try:
        data = json.loads((replica_dir / VIEW_STATE).read_text())
        return int(data["restore_point"]), str(data["phase"]), datetime.fromisoformat(data["since"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError) as exc:
        raise NetlabError(f"{replica_dir / VIEW_STATE} is damaged: {exc}") from exc


def _write_view_file(replica_dir: Path, point_id: int, phase: str) -> None:
    data = {
        "restore_point": point_id,
        "name": point_name(point_id),
        "phase": phase,
        "since": datetime.now(UTC).isoformat(),
    }
    _write_atomic(replica_dir / VIEW_STATE, json.dumps(data, indent=2).encode())


# --------------------------------------------------------------------------- file helpers


class _Counts:
    def __init__(self) -> None:
        self.copied = self.deleted = self.unchanged = self.bytes = 0


def _kind(entry: os.DirEntry) -> str | None:
    if entry.is_symlink():
        return "l"
    if entry.is_dir(follow_symlinks=False):
        return "d"
    if entry.is_file(follow_symlinks=False):
        return "f"
    return None


def _scandir(path: Path) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _walk(root: Path, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(relative path, kind f/d/l, full path), depth first, names sorted: deterministic."""
    for entry in _scandir(root):
        kind = _kind(entry)
        if kind is None:
            continue
        rel = f"{prefix}{entry.name}"
        yield rel, kind, entry.path
        if kind == "d":
            yield from _walk(Path(entry.path), rel + "/")


def _file_mode(src_mode: int, read_only: bool) -> int:
    executable = src_mode & 0o100
    if read_only:
        return 0o555 if executable else 0o444
    return 0o755 if executable else 0o644


def _copy_file(src: str, dst: Path, read_only: bool) -> int:
    """Copy one file with O_EXCL, fsync it, keep its mtime; returns the bytes copied."""
    with open(src, "rb") as fsrc:
        st = os.fstat(fsrc.fileno())
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as fdst:
            shutil.copyfileobj(fsrc, fdst, 1 << 20)
            fdst.flush()
            copied = fdst.tell()
            os.fsync(fdst.fileno())
            os.fchmod(fdst.fileno(), _file_mode(st.st_mode, read_only))
            os.utime(fdst.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
    return copied


def _copy_tree(src: Path, dst: Path, counts: _Counts, *, read_only: bool) -> None:
    """Copy directory `src` to the new directory `dst` (files fsynced, then each directory).

    Entries that vanish while being copied are skipped: copying a disk that is
    being written gives a crash-consistent image, as a storage snapshot would.
    """
    os.mkdir(dst, 0o700)
    try:
        entries = _scandir(src)
    except (FileNotFoundError, NotADirectoryError):
        entries = []  # replaced or removed while being copied
    for entry in entries:
        target = dst / entry.name
        kind = _kind(entry)
        try:
            if kind == "l":
                os.symlink(os.readlink(entry.path), target)
                counts.copied += 1
            elif kind == "d":
                _copy_tree(Path(entry.path), target, counts, read_only=read_only)
            elif kind == "f":
                counts.bytes += _copy_file(entry.path, target, read_only)
                counts.copied += 1
            else:
                log.warning("not copying %s: not a file, directory or symlink", entry.path)
        except (FileNotFoundError, NotADirectoryError):
            log.info("%s vanished while being copied; skipped", entry.path)
    # Write bits go last: a 0555 directory accepts no new entries from a non-root caller.
    os.chmod(dst, 0o555 if read_only else 0o755)
    _fsync_dir(dst)


def _sync_dir(src: Path, dst: Path, counts: _Counts) -> None:
    src_entries = {e.name: e for e in _scandir(src)}
    dst_entries = {e.name: e for e in _scandir(dst)}
    # Deletions (and type changes) first, so a file can become a directory and back.
    for name, dentry in dst_entries.items():
        sentry = src_entries.get(name)
        if sentry is None or _kind(sentry) != _kind(dentry):
            counts.deleted += _delete_entry(Path(dentry.path))
    for name, sentry in src_entries.items():
        kind = _kind(sentry)
        target = dst / name
        if kind == "d":
            if not target.is_dir() or target.is_symlink():
                target.mkdir(mode=0o755)
            _sync_dir(Path(sentry.path), target, counts)
        elif kind == "f":
            _sync_file(sentry, target, counts)
        elif kind == "l":
            link = os.readlink(sentry.path)
            if target.is_symlink() and os.readlink(target) == link:
                counts.unchanged += 1
            else:
                tmp = dst / f".{name}.netlab-tmp"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                os.symlink(link, tmp)
                os.replace(tmp, target)
                counts.copied += 1
        else:
            log.warning("not copying %s: not a file, directory or symlink", sentry.path)


def _sync_file(sentry: os.DirEntry, target: Path, counts: _Counts) -> None:
    sst = sentry.stat(follow_symlinks=False)
    try:
        tst = os.lstat(target)
    except FileNotFoundError:
        tst = None
    if tst is not None and tst.st_size == sst.st_size and _same_content(sentry.path, target):
        if tst.st_mtime_ns != sst.st_mtime_ns:
            os.utime(target, ns=(sst.st_atime_ns, sst.st_mtime_ns), follow_symlinks=False)
        counts.unchanged += 1
        return
    tmp = target.parent / f".{target.name}.netlab-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    counts.bytes += _copy_file(sentry.path, tmp, read_only=False)
    os.replace(tmp, target)
    counts.copied += 1


def _same_content(a: str, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk_a, chunk_b = fa.read(1 << 20), fb.read(1 << 20)
            if chunk_a != chunk_b:
                return False
            if not chunk_a:
                return True


def _delete_entry(path: Path) -> int:
    """Delete a file, symlink or tree; returns how many files and symlinks went with it."""
    if path.is_dir() and not path.is_symlink():
        count = sum(1 for _rel, kind, _full in _walk(path) if kind != "d")
        _remove_tree(path)
        return count
    os.unlink(path)
    return 1


def _remove_tree(path: Path) -> None:
    """rmtree that copes with 0555 directories and never descends into a mount."""
    path = Path(path)
    inside = mounts_under(path)
    if inside:
        raise NetlabError(
            f"refusing to delete {path}: {inside[0].mount_point} is mounted inside it"
        )
    for dirpath, _dirs, _files in os.walk(path):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write, fsync, rename, fsync the directory: a reader sees the old or the new file."""
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with open(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------- locking

_locks_guard = threading.Lock()
_thread_locks: dict[str, threading.RLock] = {}
_flocks: dict[str, tuple[int, int]] = {}  # replica dir -> (fd holding the flock, depth)


@contextlib.contextmanager
def _replica_lock(replica_dir: Path) -> Iterator[None]:
    """Exclusive flock on the replica dir; re-entrant within this process.

    flock is per open file description, so a nested call opening the file again
    would deadlock against itself: nesting is counted instead, and a per-replica
    thread lock keeps two threads of one process apart.
    """
    key = os.path.realpath(replica_dir)
    with _locks_guard:
        thread_lock = _thread_locks.setdefault(key, threading.RLock())
    with thread_lock:
        fd, depth = _flocks.get(key, (-1, 0))
        if depth == 0:
            fd = _acquire_flock(Path(replica_dir))
        _flocks[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _flocks[key]
            if depth == 1:
                del _flocks[key]
                os.close(fd)  # closing the descriptor releases the flock
            else:
                _flocks[key] = (fd, depth - 1)


def _acquire_flock(replica_dir: Path) -> int:
    replica_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(replica_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + _LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise OperationLocked(
                    f"{_label(replica_dir)}: another netlab process has been changing this "
                    f"replica's storage for {_LOCK_TIMEOUT_S:.0f} s"
                ) from None
            time.sleep(0.05)
