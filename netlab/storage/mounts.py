"""Mounts through mount(2)/umount2(2), and what the kernel says is mounted.

They must be made in the root mount namespace (docs/architecture.md#facts: a mount
made under `ip netns exec` vanishes with that command).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
from pathlib import Path

from netlab.errors import NetlabError, NotRoot, PreconditionFailed
from netlab.storage.layout import _POINT_NAME, POINT_DATA, POINTS_DIR, MountBusy, MountEntry, log


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
