"""Names, paths and records of the storage layout (see the package docstring)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from netlab.errors import NetlabError, PreconditionFailed

log = logging.getLogger("netlab.storage")


POINTS_DIR = "restore-points"


POINT_META = "point.json"


POINT_DATA = "data"


VIEW_STATE = "view.json"


REPLICA_META = "replica.json"


LOCK_FILE = ".lock"


_POINT_NAME = re.compile(r"^rp-(\d+)$")



class UnknownRestorePoint(PreconditionFailed):
    """A restore point id that the replica does not have; the message lists those it has."""



class MountBusy(NetlabError):
    """A mount cannot be removed because processes still use it; the message names them."""



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
