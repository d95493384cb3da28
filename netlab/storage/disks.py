"""VM disks: seeding, checksums, and copying a replica's changes back to its source."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from netlab.errors import NetlabError, PreconditionFailed
from netlab.storage.files import _Counts, _fsync_dir, _sync_dir, _walk, _write_atomic
from netlab.storage.layout import ChangeSummary, log
from netlab.storage.mounts import _is_under


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
