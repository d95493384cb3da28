"""What a netlab command pays at start: pyroute2 only once it opens a netlink socket.

pyroute2's package costs about 0.2 s of CPU to import (netlab.net.pyroute). status,
refusals and the supervisor between restarts never need it; a top-level import of
pyroute2 in any module they load would bring that cost back to every command.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMAND_MODULES = [
    "netlab.cli", "netlab.lab", "netlab.nea", "netlab.supervisor", "netlab.status_view",
    "netlab.orchestrator.operations", "netlab.orchestrator.cloud_plan", "netlab.wireguard",
    "netlab.replication",
]


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_importing_a_command_module_does_not_import_pyroute2(module: str) -> None:
    probe = (f"import sys, {module}; "
             "print(sorted(m for m in sys.modules if m.startswith('pyroute2')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", f"{module} imports {done.stdout.strip()}"


def test_the_lazy_names_are_pyroute2s_own() -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    from netlab.net import pyroute

    assert pyroute.IPRoute is IPRoute
    assert pyroute.NetlinkError is NetlinkError
    assert pyroute.netns.setns is not None
    with pytest.raises(AttributeError):
        _ = pyroute.NoSuchName
