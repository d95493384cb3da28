"""VM disks, replicas, restore points and the failover delta.

What is emulated (docs/architecture.md#what-is-emulated): a VM disk is a directory
tree; a replication job makes immutable full copies of it (restore points) on the provider side;
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
root mount namespace (docs/architecture.md#facts: a mount made under `ip netns
exec` vanishes with that command); the workloads started later with `nsenter
--net` see them.

Which view is mounted is recorded twice: by the kernel (/proc/self/mountinfo,
whose overlay options name the lowerdir, i.e. the restore point) and in
view.json. After a crash the kernel's record wins; view.json also outlives a
reboot, so a delta kept on disk can be mounted again on the restore point it
was made on (`reuse_delta=True`).

The orchestrator holds one operation at a time per VM; the flock here only
keeps two processes from interleaving inside one replica directory.

The package, bottom up (each module imports only those before it):

    layout          names, paths and records of the layout above; the errors
    mounts          mount(2)/umount2(2) through ctypes; what /proc/self/mountinfo says
    files           tree copy and sync, atomic writes, fsync
    disks           seeding a VM disk, checksums, copying changes back to the source
    locking         the per-replica lock (thread lock + flock)
    view_file       view.json
    restore_points  replication, retention, listing
    views           the failover view, commit of the delta, removal of a replica
"""

from __future__ import annotations

from netlab.storage.disks import (
    copy_changes_to_source,
    seed_disk,
    tree_checksum,
)
from netlab.storage.layout import (
    LOCK_FILE,
    POINT_DATA,
    POINT_META,
    POINTS_DIR,
    REPLICA_META,
    VIEW_STATE,
    ChangeSummary,
    MountBusy,
    MountEntry,
    RestorePoint,
    RetentionResult,
    UnknownRestorePoint,
    ViewState,
    disk_path,
    point_name,
    replica_path,
)
from netlab.storage.mounts import (
    _mount_overlay,
    cleanup_mounts_under,
    is_mounted,
    mounts_under,
    read_mountinfo,
)
from netlab.storage.restore_points import (
    apply_retention,
    get_restore_point,
    list_restore_points,
    replicate,
)
from netlab.storage.views import (
    commit_delta,
    mount_failover_view,
    remove_replica,
    replica_serving_path,
    unmount_failover_view,
    view_state,
)

# _mount_overlay: the cloud plan mounts a restore point for a whole-site failover
__all__ = [
    "LOCK_FILE",
    "POINTS_DIR",
    "POINT_DATA",
    "POINT_META",
    "REPLICA_META",
    "VIEW_STATE",
    "ChangeSummary",
    "MountBusy",
    "MountEntry",
    "RestorePoint",
    "RetentionResult",
    "UnknownRestorePoint",
    "ViewState",
    "_mount_overlay",
    "apply_retention",
    "cleanup_mounts_under",
    "commit_delta",
    "copy_changes_to_source",
    "disk_path",
    "get_restore_point",
    "is_mounted",
    "list_restore_points",
    "mount_failover_view",
    "mounts_under",
    "point_name",
    "read_mountinfo",
    "remove_replica",
    "replica_path",
    "replica_serving_path",
    "replicate",
    "seed_disk",
    "tree_checksum",
    "unmount_failover_view",
    "view_state",
]
