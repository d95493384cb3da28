"""Network namespaces and one netlink socket per namespace, opened without forking.

pyroute2's usual `netns.create()` and `IPRoute(netns=...)` fork a helper per
call (docs/architecture.md#facts: 2.7 ms against 0.5 ms) and `IPRoute(netns='typo')` silently
creates a namespace. Here the calling thread enters the namespace itself with
`setns`, opens the socket there and comes back; a socket keeps working on its
namespace afterwards. This is only correct from the main thread, where netlab
does all its netlink work.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from netlab.errors import LabError, NetlabError
from netlab.net import pyroute

if TYPE_CHECKING:
    from pyroute2 import IPRoute

NETNS_DIR = Path("/run/netns")


class NamespaceMissing(LabError):
    """A namespace the lab expects is not there."""


def namespace_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_namespaces(prefix: str = "") -> list[str]:
    """Named namespaces (those under /run/netns) whose name starts with `prefix`."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def _require_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("namespace switching is only reliable from the main thread")


@contextlib.contextmanager
def inside(name: str, create: bool = False) -> Iterator[None]:
    """Run the body with the calling thread inside namespace `name`.

    With `create`, the namespace is made first and must not exist yet.
    """
    _require_main_thread()
    flags = (os.O_CREAT | os.O_EXCL) if create else 0
    pyroute.netns.pushns()
    try:
        try:
            pyroute.netns.setns(name, flags=flags, fork=False)
        except FileNotFoundError:
            raise NamespaceMissing(f"namespace {name} does not exist") from None
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise LabError(
                    f"namespace {name} already exists: another lab or a crash left it; "
                    "run 'netlab cleanup' for that lab"
                ) from None
            raise
        yield
    finally:
        pyroute.netns.popns()


def write_sysctl(key: str, value: str | int) -> None:
    """Write a sysctl of the calling thread's namespace (use within `inside`)."""
    path = Path("/proc/sys") / key.replace(".", "/")
    try:
        path.write_text(f"{value}\n")
    except OSError as exc:
        raise NetlabError(f"cannot set {key}={value}: {exc.strerror}") from None


class Netlink:
    """Netlink sockets of a lab's namespaces, one per namespace, opened once and reused."""

    def __init__(self) -> None:
        self._sockets: dict[str, IPRoute] = {}

    def create(self, name: str, sysctls: dict[str, str | int] | None = None) -> IPRoute:
        """Create namespace `name`, apply its sysctls, and return its socket."""
        with inside(name, create=True):
            for key, value in (sysctls or {}).items():
                write_sysctl(key, value)
            sock = pyroute.IPRoute()
        self._sockets[name] = sock
        return sock

    def __getitem__(self, name: str) -> IPRoute:
        sock = self._sockets.get(name)
        if sock is None:
            with inside(name):
                sock = pyroute.IPRoute()
            self._sockets[name] = sock
        return sock

    def sysctl(self, name: str, key: str, value: str | int) -> None:
        with inside(name):
            write_sysctl(key, value)

    def close(self, name: str | None = None) -> None:
        """Close one socket (or all): a held socket keeps a deleted namespace alive."""
        names = [name] if name else list(self._sockets)
        for n in names:
            sock = self._sockets.pop(n, None)
            if sock is not None:
                sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def delete_namespace(name: str) -> bool:
    """Remove a named namespace; False if it was not there."""
    try:
        pyroute.netns.remove(name)
    except FileNotFoundError:
        return False
    return True


def namespace_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except FileNotFoundError:
        return None


def pids_in_namespaces(names: list[str]) -> dict[int, str]:
    """Processes whose network namespace is one of `names` (pid -> namespace name)."""
    inodes = {ino: n for n in names if (ino := namespace_inode(n)) is not None}
    found: dict[int, str] = {}
    if not inodes:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if ino in inodes:
            found[int(entry.name)] = inodes[ino]
    return found
