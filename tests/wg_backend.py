"""What WireGuard leaves on the machine, asked of netlab's own backend selection.

The one place in the tests that names wireguard-go's artefacts. netlab picks its
backend with ``netlab.wireguard.select_backend`` (``NETLAB_WG=kernel|userspace|auto``);
a test that looks at WireGuard processes, control sockets or links asks this module
what to expect, so the same test passes on both backends:

* userspace (wireguard-go): one ``wireguard-go -f IFNAME`` process per interface, in the
  NEA's namespace, and a control socket ``/var/run/wireguard/IFNAME.sock`` (a directory
  shared by every namespace of the machine);
* kernel: a link of type ``wireguard`` in the NEA's namespace; no process, no socket.

tests/unit/test_wg_artefact_names.py fails when another test file names these
artefacts itself.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from netlab import wireguard
from netlab.errors import NetlabError
from netlab.processes import command_line

SOCKET_DIR: Path = wireguard.WIREGUARD_GO_SOCKET_DIR
USERSPACE_COMMAND = "wireguard-go"


def backend_name() -> str:
    """'kernel' or 'userspace': what netlab would use here, now ('none' if neither can)."""
    try:
        return wireguard.select_backend().name
    except NetlabError:  # no backend here: the tests that need one skip
        return "none"


def userspace() -> bool:
    return backend_name() == "userspace"


def runs_processes() -> bool:
    """Whether each WireGuard interface is a process of its own (wireguard-go)."""
    return userspace()


def process_records(*names: str) -> tuple[str, ...]:
    """Of the state's process records `names` ('wireguard:<node>'), those this backend
    makes: all with wireguard-go, none with kernel links."""
    return names if runs_processes() else ()


def sockets(prefix: str) -> list[str]:
    """Names of the control sockets of interfaces named `prefix`* (none on kernel)."""
    if not SOCKET_DIR.exists():
        return []
    return sorted(p.name for p in SOCKET_DIR.glob(f"{prefix}*"))


def socket_paths(prefix: str) -> list[Path]:
    return sorted(SOCKET_DIR.glob(f"{prefix}*")) if SOCKET_DIR.exists() else []


def socket_of(ifname: str) -> Path:
    """The control socket wireguard-go makes for `ifname` (userspace only)."""
    return SOCKET_DIR / f"{ifname}.sock"


def sentinel_socket_file(name: str) -> Path:
    """A plain file in the shared socket directory, named like a socket: cleanup must keep it."""
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    return SOCKET_DIR / f"{name}.sock"


def is_wireguard_process(cmdline: list[str]) -> bool:
    return bool(cmdline) and Path(cmdline[0]).name == USERSPACE_COMMAND


def processes_in(netns_inodes: set[int]) -> dict[int, list[str]]:
    """WireGuard processes (pid -> argv) living in one of these network namespaces."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = command_line(int(entry.name)) or []
        if not is_wireguard_process(argv):
            continue
        try:
            ino = (entry / "ns" / "net").stat().st_ino
        except OSError:
            continue
        if ino in netns_inodes:
            found[int(entry.name)] = argv
    return found


def links_in(netns: str) -> list[str]:
    """WireGuard interfaces of a namespace as the backend makes them: kernel links of type
    wireguard, or the TUN devices wireguard-go drives."""
    kind = "wireguard" if backend_name() == "kernel" else "tun"
    out = subprocess.run(["ip", "-n", netns, "-j", "-d", "link", "show"], capture_output=True,
                         text=True, check=False).stdout
    names = []
    for link in json.loads(out or "[]"):
        info = link.get("linkinfo", {}).get("info_kind")
        if info == kind or (kind == "tun" and info is None and link.get("link_type") == "none"):
            names.append(link["ifname"])
    return sorted(names)


def artefacts(prefix: str, namespaces: list[str]) -> dict[str, list[str]]:
    """Everything WireGuard of a lab (`prefix`, its namespaces) has on the machine now."""
    from conftest import namespace_inodes

    inodes = set(namespace_inodes(namespaces))
    return {
        "sockets": sockets(prefix),
        "processes": sorted(" ".join(a) for a in processes_in(inodes).values()),
        "links": sorted(f"{ns}:{name}" for ns in namespaces for name in links_in(ns)),
    }


def expected(interfaces: dict[str, str]) -> dict[str, list[str]]:
    """What `artefacts` shows with exactly these interfaces up (ifname -> namespace)."""
    if userspace():
        return {
            "sockets": sorted(f"{i}.sock" for i in interfaces),
            "processes": sorted(f"{USERSPACE_COMMAND} -f {i}" for i in interfaces),
            "links": sorted(f"{ns}:{i}" for i, ns in interfaces.items()),
        }
    return {"sockets": [], "processes": [],
            "links": sorted(f"{ns}:{i}" for i, ns in interfaces.items())}


NOTHING: dict[str, list[str]] = {"sockets": [], "processes": [], "links": []}
