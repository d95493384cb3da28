"""Copying and syncing directory trees, atomically written files, fsync of directories."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from netlab.errors import NetlabError
from netlab.storage.layout import log
from netlab.storage.mounts import mounts_under


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
