"""Restore points that arrive over the network: the sender's manifest, the receiver's check.

The sending side stages a copy of the source disk (the job's snapshot) as

    stage/data/              the disk as it was when the job started
    stage/manifest.sha256    `sha256sum` lines for every regular file of data/

and transfers `stage/` into `restore-points/.recv/` of the replica (rsync, with
--link-dest to the newest point, so only what changed crosses the network).
`publish_received` then checks every file against the manifest, and only if all
match, and nothing is missing or extra, renames `.recv` into `rp-NNNN`: a
half-received or damaged transfer is never listed (`list_restore_points` skips
names that are not `rp-NNNN`) and never used. A failed transfer leaves `.recv`
for the next job, which then sends only what is still missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

from netlab.errors import NetlabError
from netlab.storage.disks import tree_checksum
from netlab.storage.files import _fsync_dir, _remove_tree, _walk, _write_atomic
from netlab.storage.layout import POINT_DATA, POINT_META, POINTS_DIR, RestorePoint, _label, log
from netlab.storage.locking import _replica_lock
from netlab.storage.restore_points import (
    _remove_leftovers,
    _reserve_point_id,
    apply_retention,
    list_restore_points,
)

MANIFEST = "manifest.sha256"
RECEIVING = ".recv"


class VerificationFailed(NetlabError):
    """A received restore point does not match its sender's manifest; it was discarded."""


def file_digests(data_dir: Path) -> dict[str, str]:
    """sha256 of every regular file under `data_dir`, by relative path."""
    digests = {}
    for rel, kind, full in _walk(Path(data_dir)):
        if kind == "f":
            with open(full, "rb") as fh:
                digests[rel] = hashlib.file_digest(fh, "sha256").hexdigest()
    return digests


def write_manifest(stage: Path) -> int:
    """Write stage/manifest.sha256 for stage/data (sender side); returns the file count."""
    digests = file_digests(Path(stage) / POINT_DATA)
    lines = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(digests.items()))
    _write_atomic(Path(stage) / MANIFEST, lines.encode(), mode=0o644)
    return len(digests)


def read_manifest(path: Path) -> dict[str, str]:
    manifest = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise VerificationFailed(f"{path}: line {number} is not a sha256sum line")
        manifest[rel] = digest
    return manifest


def receiving_dir(replica_dir: Path) -> Path:
    """Where a transfer lands before it is verified; made here so rsync can write into it."""
    path = Path(replica_dir) / POINTS_DIR / RECEIVING
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def newest_point_name(replica_dir: Path) -> str | None:
    points = list_restore_points(replica_dir)
    return points[-1].name if points else None


def verify_received(received: Path) -> None:
    """Raise VerificationFailed unless received/data matches received/manifest.sha256 exactly."""
    manifest_path = received / MANIFEST
    if not manifest_path.is_file():
        raise VerificationFailed(f"{received}: no {MANIFEST}: the transfer is incomplete")
    wanted = read_manifest(manifest_path)
    found = file_digests(received / POINT_DATA)
    missing = sorted(set(wanted) - set(found))
    extra = sorted(set(found) - set(wanted))
    differ = sorted(rel for rel in set(wanted) & set(found) if wanted[rel] != found[rel])
    problems = [f"{label}: {', '.join(names[:3])}" + (" ..." if len(names) > 3 else "")
                for label, names in (("missing", missing), ("not in the manifest", extra),
                                     ("checksum differs", differ)) if names]
    if problems:
        raise VerificationFailed(f"{received}: {'; '.join(problems)}")


def publish_received(replica_dir: Path, created: datetime, retention: int | None) -> RestorePoint:
    """Verify `.recv` against its manifest and make it the newest restore point.

    `created` is when the sender took its snapshot: the point's age is the RPO.
    A point that fails verification is removed (the next job sends it whole again).
    """
    replica_dir = Path(replica_dir)
    received = replica_dir / POINTS_DIR / RECEIVING
    with _replica_lock(replica_dir):
        try:
            verify_received(received)
        except VerificationFailed:
            _remove_tree(received)
            raise
        points_dir = received.parent
        _remove_leftovers(points_dir)
        point_id = _reserve_point_id(replica_dir)
        files = sum(1 for _rel, kind, _full in _walk(received / POINT_DATA) if kind != "d")
        size = sum(os.lstat(full).st_size for _rel, kind, full in _walk(received / POINT_DATA)
                   if kind == "f")
        point = RestorePoint(
            id=point_id, created=created, size_bytes=size, files=files,
            checksum=tree_checksum(received / POINT_DATA),
            path=points_dir / f"rp-{point_id:04d}" / POINT_DATA,
        )
        _write_atomic(received / POINT_META, json.dumps(point.to_dict(), indent=2).encode(),
                      mode=0o444)
        os.chmod(received, 0o555)
        _fsync_dir(received)
        os.rename(received, point.path.parent)
        _fsync_dir(points_dir)
        log.info("%s: restore point %d received and verified (%d files, %d bytes)",
                 _label(replica_dir), point_id, files, size)
        if retention is not None:
            apply_retention(replica_dir, retention)
    return point
