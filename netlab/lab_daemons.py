"""The two per-lab daemons that run in the root namespace: the supervisor and the shared
proxy-ARP process. How each is started, and how each is found by its exact command line
when a crash lost its record.

Here rather than in netlab.lab or netlab.supervisor so that `lab` starts and finds them
without importing the supervisor (which imports `nea`, which imports `lab`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from netlab.processes import ProcessRecord, command_line, record_of, start_process

SUPERVISOR = "supervisor"
PROXY_ARP = "proxyarp"  # its process record's name; one per lab, every appliance
PROXY_ARP_SOCKET = "proxyarp.sock"


def supervisor_argv(lab: str) -> list[str]:
    return [sys.executable, "-m", "netlab.supervisor", "--lab", lab]


# The lowest real-time priority: above every ordinary process, below the kernel's own
# real-time threads (netlab.proxyarp.daemon says why it is safe).
PROXY_ARP_REALTIME = 1


def proxy_arp_argv(socket_path: Path) -> list[str]:
    # Gratuitous ARP is set per appliance at attach; the daemon's default is none.
    return [sys.executable, "-m", "netlab.proxyarp", "--socket", str(socket_path),
            "--gratuitous-count", "0", "--realtime", str(PROXY_ARP_REALTIME)]


def start_supervisor(lab: str, log_dir: Path, state_root: Path) -> ProcessRecord:
    # the lab's state directory goes to the child explicitly: the caller's may differ
    # from this process's environment (netlab.api passes a state_dir)
    env = {**os.environ, "NETLAB_STATE_DIR": str(state_root)}
    return start_process(SUPERVISOR, supervisor_argv(lab), log_path=log_dir / "supervisor.log",
                         env=env)


def start_proxy_arp(socket_path: Path, log_dir: Path) -> ProcessRecord:
    """Start the lab's proxy-ARP process in the root namespace; it opens each appliance's
    socket inside that appliance's namespace when told to attach it."""
    return start_process(PROXY_ARP, proxy_arp_argv(socket_path),
                         log_path=log_dir / "proxyarp.log")


def _find(wanted_tail: list[str], name: str) -> list[ProcessRecord]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        args = command_line(int(entry.name))
        if args is not None and args[1:] == wanted_tail:
            rec = record_of(int(entry.name), name)
            if rec is not None:
                found.append(rec)
    return found


def find_supervisors(lab: str) -> list[ProcessRecord]:
    """Supervisors of `lab` found by their exact arguments, for cleanup without state."""
    return _find(supervisor_argv(lab)[1:], SUPERVISOR)


def find_proxy_arp(socket_path: Path) -> list[ProcessRecord]:
    """Proxy-ARP processes serving the control socket `socket_path` (one lab's)."""
    return _find(proxy_arp_argv(socket_path)[1:], PROXY_ARP)
