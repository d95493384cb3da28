"""The one place netlab runs external programs.

Subprocess is used only where the tool *is* the interface (`wg`, `wireguard-go`,
`nft`, `dnsmasq`, `udhcpc`, `httpd`, user commands in `netlab exec`); links,
addresses and routes go through netlink (see `netlab.net`).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence

from netlab.errors import ToolFailed, ToolMissing

log = logging.getLogger("netlab.run")

NETNS_DIR = "/run/netns"

# Debian package that provides each tool, for the "missing tool" message.
PACKAGE_OF = {
    "wg": "wireguard-tools",
    "wireguard-go": "wireguard-go",
    "nft": "nftables",
    "dnsmasq": "dnsmasq-base",
    "busybox": "busybox",
    "nsenter": "util-linux",
    "tcpdump": "tcpdump",
    "arping": "iputils-arping",
    "iperf3": "iperf3",
    "dot": "graphviz",
}


def require_tool(name: str) -> str:
    """Return the path of `name`, or raise ToolMissing saying how to install it."""
    path = shutil.which(name)
    if path is None:
        package = PACKAGE_OF.get(name, name)
        raise ToolMissing(
            f"'{name}' is not installed: run 'apt-get install -y --no-install-recommends "
            f"{package}' (or scripts/setup.sh)"
        )
    return path


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside network namespace `netns` (None: as it is).

    nsenter changes only the network namespace, unlike `ip netns exec`, which also
    unshares the mount namespace: restore points and deltas that netlab mounts in
    the root mount namespace stay visible to processes started this way.
    """
    if netns is None:
        return list(argv)
    return [require_tool("nsenter"), f"--net={NETNS_DIR}/{netns}", *argv]


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    input: str | bytes | None = None,
    check: bool = True,
    timeout: float | None = 30,
) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion, log it, and raise ToolFailed with its stderr on failure."""
    require_tool(argv[0])
    full = in_netns(netns, argv)
    log.debug("run: %s", " ".join(full))
    text_input = input.decode() if isinstance(input, bytes) else input
    try:
        done = subprocess.run(
            full, input=text_input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"'{' '.join(argv)}' did not finish within {timeout} s") from exc
    if check and done.returncode != 0:
        where = f" in namespace {netns}" if netns else ""
        detail = (done.stderr or done.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit status {done.returncode}"
        raise ToolFailed(f"'{' '.join(argv)}'{where} failed: {reason}")
    return done
