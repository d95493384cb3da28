"""The one place netlab runs external programs.

Subprocess is used only where the tool *is* the interface (`wg`, `wireguard-go`,
`nft`, `dnsmasq`, `udhcpc`, `httpd`, user commands in `netlab exec`); links,
addresses and routes go through netlink (see `netlab.net`).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

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


@dataclass
class Outcome:
    """How one program of `run_side_by_side` ended (124: it did not finish in time)."""

    returncode: int
    stdout: str
    stderr: str = ""


def run_side_by_side(
    jobs: dict[Hashable, tuple[str | None, Sequence[str]]], timeout: float = 10,
) -> dict[Hashable, Outcome]:
    """Run every (netns, argv) job at once; their outcomes by key. A hung job counts as failed.

    Probes spend their time waiting for answers: started together, N of them take
    as long as the slowest one, not the sum.
    """
    procs = {}
    for key, (netns, argv) in jobs.items():
        require_tool(argv[0])
        procs[key] = subprocess.Popen(
            in_netns(netns, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + timeout
    out = {}
    for key, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            out[key] = Outcome(proc.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            out[key] = Outcome(124, stdout, stderr + f"\ntimed out after {timeout} s")
    return out


def run_bytes(argv: Sequence[str], input: bytes, timeout: float = 60) -> tuple[int, bytes, str]:
    """Run a filter on bytes (e.g. Graphviz's dot): (exit status, stdout bytes, stderr text)."""
    require_tool(argv[0])
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, check=False,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"'{' '.join(argv)}' did not finish within {timeout} s") from exc
    return done.returncode, done.stdout, done.stderr.decode(errors="replace")
