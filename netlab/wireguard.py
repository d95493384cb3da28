"""The VPN tunnel between a tenant NEA and its SP NEA: WireGuard.

Keys are made with `wg genkey`/`wg pubkey` and kept in files (the private one 0600
from the moment it exists); the interface comes from the kernel module where the
kernel has it, else from `wireguard-go` (userspace, TUN); either way it is
configured with the real `wg` tool, run inside the interface's namespace (the
kernel backend only answers there; wireguard-go answers through its control
socket from anywhere, so "inside" works for both).

Backend choice: `NETLAB_WG=kernel|userspace|auto` (default auto: kernel if a probe
can really create a wireguard link, else userspace).

Private keys never pass through this module's memory except as the stdin of
`wg pubkey` and the file write; they are never logged, printed or returned by
`show()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import ipaddress
import logging
import os
import re
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netlab.errors import ToolFailed, ToolMissing
from netlab.net import pyroute
from netlab.net.namespaces import Netlink
from netlab.net.socket_buffers import enlarge_udp_buffers
from netlab.processes import ProcessRecord, is_alive, start_process, stop_process
from netlab.run import NETNS_DIR, PACKAGE_OF, require_tool, run
from netlab.wireguard_keys import (  # noqa: F401  (the keys are part of this module's API)
    KeyPair,
    WireGuardError,
    _valid_public_key,
    ensure_keypair,
)

log = logging.getLogger("netlab.wireguard")

# Tunnel MTU: 1500, not WireGuard's usual 1420. The real NEAs carry an L2 tunnel
# through which a VM's full-size 1500-byte frame with DF set crosses; DR admins
# test the extended network exactly that way (`ping -M do -s 1472`). At 1420 such
# a ping is refused with "frag needed", which the real appliance never does. At
# 1500 the outer UDP datagrams (1500 + 60 bytes of WireGuard/UDP/IP overhead) are
# fragmented by the kernel on the NEA-gateway path and reassembled by the peer:
# slower for bulk traffic, but faithful to what a user sees (measured, docs/architecture.md#facts).
TUNNEL_MTU = 1500

# The tenant NEA sits behind its edge's NAT. A keepalive every 5 s keeps the NAT
# mapping alive with a wide margin under Linux conntrack's 30 s timeout for
# unreplied UDP, lets the SP side learn the client's endpoint within seconds after
# a restart, and makes a dead peer start handshake retries (and so show up as
# `Failed connectivity`) quickly. It costs one 32-byte packet per 5 s per tunnel.
CLIENT_KEEPALIVE = 5

# Where wireguard-go keeps its control sockets: one directory shared by every
# namespace, which is why interface names must be unique across labs.
WIREGUARD_GO_SOCKET_DIR = Path("/var/run/wireguard")

# wireguard-go refuses to be the user's first choice where the kernel has the
# module; netlab's userspace mode is a deliberate choice, so it says so.
_WG_GO_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1", "LOG_LEVEL": "error"}

SOCKET_TIMEOUT = 5.0
SOCKET_BUFFER_BYTES = 7 << 20  # what wireguard-go asks for itself since 0.0.20230223

_IFNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$")
_NETNS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

_CLONE_NEWNET = 0x40000000
_EOPNOTSUPP = 95  # what rtnetlink answers for a link kind the kernel does not know

if TYPE_CHECKING:
    from pyroute2 import IPRoute


class WireGuardUnavailable(ToolMissing):
    """The requested WireGuard backend cannot run on this host."""


# ---------------------------------------------------------------- names


def _check_ifname(ifname: str) -> str:
    # wireguard-go takes its interface name as a positional argument after its own
    # flags, and `wireguard-go -h` creates an interface called "-h": a name must
    # never start with '-' (nor hold '/', which would escape the socket directory).
    if not _IFNAME_RE.match(ifname):
        raise WireGuardError(
            f"invalid WireGuard interface name {ifname!r}: 1-15 characters of "
            "letters, digits, '_', '.', '-', not starting with '-' or '.'"
        )
    return ifname


def _check_netns(netns: str) -> str:
    if not _NETNS_RE.match(netns):
        raise WireGuardError(f"invalid network namespace name {netns!r}")
    if not Path(NETNS_DIR, netns).exists():
        raise WireGuardError(f"network namespace '{netns}' does not exist")
    return netns


def _link_index(ipr: IPRoute, netns: str, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise WireGuardError(f"no interface '{ifname}' in namespace '{netns}'")
    return int(found[0])


def set_up(netns: str, ifname: str, mtu: int = TUNNEL_MTU, nl: Netlink | None = None) -> None:
    """Set the tunnel interface's MTU and bring it up (addresses and routes: the caller).
    With `nl`, its socket of the namespace is used (one netlink pass for many tunnels)."""
    _check_ifname(ifname)
    with contextlib.nullcontext(nl) if nl is not None else Netlink() as links:
        ipr = links[_check_netns(netns)]
        index = _link_index(ipr, netns, ifname)
        try:
            ipr.link("set", index=index, mtu=mtu, state="up")
        except pyroute.NetlinkError as exc:
            raise WireGuardError(
                f"cannot set {ifname} in namespace '{netns}' up with MTU {mtu}: {exc}"
            ) from exc


# ---------------------------------------------------------------- backends


class WireGuardBackend(ABC):
    """Makes and removes a WireGuard interface in a namespace; `wg` does the rest."""

    name: str

    @abstractmethod
    def create(self, netns: str, ifname: str) -> ProcessRecord | None:
        """Create interface `ifname` in `netns`; the record of a process to keep, if any."""

    @abstractmethod
    def destroy(self, netns: str, ifname: str, record: ProcessRecord | None) -> None:
        """Remove what `create` made. Already gone is fine."""

    @abstractmethod
    def tune(self, record: ProcessRecord | None) -> None:
        """Adjust the running tunnel once its link is up."""


class KernelBackend(WireGuardBackend):
    """The kernel module: a netlink link of kind 'wireguard', no process."""

    name = "kernel"

    def create(self, netns: str, ifname: str) -> None:
        _check_ifname(ifname)
        with Netlink() as nl:
            ipr = nl[_check_netns(netns)]
            try:
                ipr.link("add", ifname=ifname, kind="wireguard")
            except pyroute.NetlinkError as exc:
                if exc.code == _EOPNOTSUPP:
                    raise WireGuardUnavailable(_KERNEL_MISSING) from exc
                if exc.code == errno.EEXIST:
                    raise WireGuardError(
                        f"interface '{ifname}' already exists in namespace '{netns}'"
                    ) from exc
                raise WireGuardError(
                    f"cannot create wireguard link {ifname} in namespace '{netns}': {exc}"
                ) from exc
        return None

    def tune(self, record: ProcessRecord | None) -> None:
        """Nothing to tune: the kernel's WireGuard decrypts in the UDP receive path itself."""

    def destroy(self, netns: str, ifname: str, record: ProcessRecord | None) -> None:
        _check_ifname(ifname)
        if not Path(NETNS_DIR, netns).exists():
            return  # the link went away with its namespace
        with Netlink() as nl:
            ipr = nl[netns]
            found = ipr.link_lookup(ifname=ifname)
            if found:
                with contextlib.suppress(pyroute.NetlinkError):
                    ipr.link("del", index=found[0])


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class UserspaceBackend(WireGuardBackend):
    """wireguard-go: one process per interface, recorded by pid, with a control socket."""

    name = "userspace"

    def __init__(
        self,
        log_dir: Path | None = None,
        socket_dir: Path = WIREGUARD_GO_SOCKET_DIR,
        socket_timeout: float = SOCKET_TIMEOUT,
    ) -> None:
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir(), "netlab-wg")
        self.socket_dir = socket_dir
        self.socket_timeout = socket_timeout

    def socket_path(self, ifname: str) -> Path:
        return self.socket_dir / f"{ifname}.sock"

    def log_path(self, ifname: str) -> Path:
        return self.log_dir / f"wireguard-go-{ifname}.log"

    def create(self, netns: str, ifname: str) -> ProcessRecord:
        _check_ifname(ifname)
        _check_netns(netns)
        sock = self.socket_path(ifname)
        if sock.exists():
            if _socket_answers(sock):
                # Another wireguard-go (maybe another lab's) owns this name: the
                # socket directory is shared by all namespaces.
                raise WireGuardError(
                    f"interface name '{ifname}' is in use by a running wireguard-go "
                    f"({sock} answers); names must be unique across labs"
                )
            sock.unlink()  # left by a killed wireguard-go; it would fool the wait below
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path = self.log_path(ifname)
        log_path.write_bytes(b"")
        record = start_process(
            f"wireguard-go {ifname}",
            ["wireguard-go", "-f", ifname],
            netns=netns,
            log_path=log_path,
            env={**os.environ, **_WG_GO_ENV},
        )
        deadline = time.monotonic() + self.socket_timeout
        while True:
            if sock.exists() and _socket_answers(sock):
                return record
            if not is_alive(record):
                stop_process(record)  # reaps it
                tail = _tail(log_path)
                if "too many open files" in tail:
                    raise WireGuardError(
                        f"wireguard-go for {ifname} could not watch its control socket: "
                        "fs.inotify.max_user_instances is used up (one per wireguard-go); "
                        "raise it with 'sysctl -w fs.inotify.max_user_instances=1024' or "
                        f"'netlab up --raise-limits' (log: {log_path})")
                raise WireGuardError(
                    f"wireguard-go for {ifname} in namespace '{netns}' exited at start; "
                    f"its log ({log_path}):\n{tail}"
                )
            if time.monotonic() > deadline:
                stop_process(record)
                self._remove_stale_socket(sock)
                raise WireGuardError(
                    f"wireguard-go for {ifname} in namespace '{netns}' made no control "
                    f"socket {sock} within {self.socket_timeout} s; its log ({log_path}):\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.002)

    def tune(self, record: ProcessRecord | None) -> None:
        """Give wireguard-go's UDP sockets the buffers newer wireguard-go takes itself.

        Call after the link is up: wireguard-go opens its sockets then. Without it
        the SP NEA drops datagrams in bursts (see netlab.net.socket_buffers); the
        tunnel works either way, so a refusal is logged, not raised.
        """
        if record is None:
            return
        try:
            pidfd = os.pidfd_open(record.pid)
        except ProcessLookupError:
            return  # exited; the supervisor starts it again and tunes that one
        try:
            if is_alive(record):  # checked with the pidfd held: the pid cannot be reused now
                changed = enlarge_udp_buffers(pidfd, record.pid, SOCKET_BUFFER_BYTES)
                log.debug("%s: %d UDP sockets set to %d bytes", record.name, changed,
                          SOCKET_BUFFER_BYTES)
        except OSError as exc:
            log.warning("cannot enlarge the socket buffers of %s (pid %d): %s; the tunnel "
                        "works, but may drop datagrams in bursts", record.name, record.pid, exc)
        finally:
            os.close(pidfd)

    def destroy(self, netns: str, ifname: str, record: ProcessRecord | None) -> None:
        _check_ifname(ifname)
        sock = self.socket_path(ifname)
        if record is not None:
            # On SIGTERM wireguard-go removes its TUN and its socket itself.
            stop_process(record)
        elif sock.exists() and _socket_answers(sock):
            raise WireGuardError(
                f"wireguard-go for {ifname} runs but netlab has no record of its pid; "
                "it was not started by this lab, so it is left alone"
            )
        self._remove_stale_socket(sock)
        if self._own_log_dir:
            with contextlib.suppress(FileNotFoundError):
                self.log_path(ifname).unlink()

    @staticmethod
    def _remove_stale_socket(sock: Path) -> None:
        # A wireguard-go killed with SIGKILL leaves its socket file; a later
        # `wg show` would then report a dead interface as present.
        if sock.exists() and not _socket_answers(sock):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()


_KERNEL_MISSING = (
    "kernel WireGuard module not available: load/install the wireguard kernel module "
    "(modprobe wireguard), or set NETLAB_WG=userspace to use wireguard-go"
)


@functools.cache
def kernel_module_available() -> bool:
    """True when this kernel can really create a wireguard link (probed once per process).

    The probe creates and deletes a link in a throwaway anonymous namespace (unshare
    on this thread, then back): nothing named is left even if netlab dies midway,
    and the kernel auto-loads the module if it is installed but not yet loaded.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.unshare(_CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            # Without root no probe is possible; a loaded module still shows in sysfs.
            log.debug("wireguard probe: unshare failed (%s)", os.strerror(err))
            return Path("/sys/module/wireguard").exists()
        try:
            with pyroute.IPRoute() as ipr:
                ipr.link("add", ifname="wgprobe0", kind="wireguard")
                ipr.link("del", ifname="wgprobe0")
        except pyroute.NetlinkError as exc:
            log.debug("wireguard probe: %s", exc)
            return False
        finally:
            # back home at once: an open fd never creates anything and never forks
            if libc.setns(home, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the netlab namespace")
    finally:
        os.close(home)
    return True


def select_backend(mode: str | None = None, *, log_dir: Path | None = None) -> WireGuardBackend:
    """The backend for `mode` (default: $NETLAB_WG, else auto); raise at once if it cannot run.

    `log_dir` is where wireguard-go writes its log (the lab's state directory).
    """
    if mode is None:
        mode = os.environ.get("NETLAB_WG", "auto")
    chosen = mode.strip().lower() or "auto"
    if chosen not in ("kernel", "userspace", "auto"):
        raise WireGuardError(
            f"NETLAB_WG={mode!r} is not a WireGuard backend: use kernel, userspace or auto"
        )
    if chosen == "kernel" or (chosen == "auto" and kernel_module_available()):
        if not kernel_module_available():
            raise WireGuardUnavailable(f"NETLAB_WG=kernel, but {_KERNEL_MISSING}")
        require_tool("wg")  # both backends are configured with it
        return KernelBackend()
    try:
        require_tool("wireguard-go")
    except ToolMissing as exc:
        package = PACKAGE_OF["wireguard-go"]
        hint = (
            ""
            if chosen == "userspace"
            else " (the kernel has no WireGuard module either: modprobe wireguard is the other way)"
        )
        raise WireGuardUnavailable(
            f"userspace WireGuard needs wireguard-go, which is not installed: run "
            f"'apt-get install -y --no-install-recommends {package}'{hint}"
        ) from exc
    require_tool("wg")
    return UserspaceBackend(log_dir=log_dir)


# ---------------------------------------------------------------- configuration with `wg`


def _check_allowed_ips(allowed_ips: list[str]) -> str:
    if not allowed_ips:
        raise WireGuardError("allowed-ips must not be empty")
    for entry in allowed_ips:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise WireGuardError(f"invalid allowed-ips entry {entry!r}: {exc}") from exc
    return ",".join(allowed_ips)


def _check_endpoint(endpoint: str) -> str:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or host.startswith("-") or not port.isdigit():
        raise WireGuardError(f"invalid endpoint {endpoint!r}: expected HOST:PORT")
    if not 0 < int(port) < 65536:
        raise WireGuardError(f"invalid endpoint port in {endpoint!r}")
    return endpoint


def _wg(netns: str, *args: str) -> str:
    try:
        return run(["wg", *args], netns=netns).stdout
    except ToolFailed as exc:
        if "Protocol not supported" not in str(exc):
            raise
        # wg's words when no daemon answers for the interface: say why, not that
        ifname = args[1] if len(args) > 1 else "?"
        raise WireGuardError(
            f"no WireGuard daemon answers for {ifname} in namespace '{netns}': its "
            f"wireguard-go is not running (it exits at start when "
            f"fs.inotify.max_user_instances is used up; see 'netlab status')") from None


def _peers(netns: str, ifname: str) -> list[str]:
    return _wg(netns, "show", ifname, "peers").split()


def _configure(
    netns: str,
    ifname: str,
    private_key: Path,
    listen_port: int | None,
    peer_public_key: str,
    peer_args: list[str],
) -> None:
    _check_ifname(ifname)
    _check_netns(netns)
    peer = _valid_public_key(peer_public_key)
    if not Path(private_key).is_file():
        raise WireGuardError(f"private key file {private_key} does not exist")
    # `wg` reads the key from the file: it never appears on a command line or in a log.
    argv = ["set", ifname, "private-key", str(private_key)]
    if listen_port is not None:
        if not 0 < listen_port < 65536:
            raise WireGuardError(f"invalid listen port {listen_port}")
        argv += ["listen-port", str(listen_port)]
    _wg(netns, *argv, "peer", peer, *peer_args)
    # An NEA has exactly one peer: drop any left from an earlier configuration
    # (a re-keyed partner), which would otherwise keep claiming its allowed-ips.
    for stale in _peers(netns, ifname):
        if stale != peer:
            _wg(netns, "set", ifname, "peer", stale, "remove")


def configure_server(
    netns: str,
    ifname: str,
    private_key: Path,
    listen_port: int,
    peer_public_key: str,
    allowed_ips: list[str],
) -> None:
    """The SP NEA side: listen on `listen_port`, accept the one tenant NEA peer."""
    _configure(
        netns,
        ifname,
        private_key,
        listen_port,
        peer_public_key,
        ["allowed-ips", _check_allowed_ips(allowed_ips)],
    )


def configure_client(
    netns: str,
    ifname: str,
    private_key: Path,
    peer_public_key: str,
    endpoint: str,
    allowed_ips: list[str],
    keepalive: int = CLIENT_KEEPALIVE,
) -> None:
    """The tenant NEA side: reach the server at `endpoint` (through NAT), keep it alive."""
    if keepalive < 0:
        raise WireGuardError(f"invalid keepalive {keepalive}")
    _configure(
        netns,
        ifname,
        private_key,
        None,
        peer_public_key,
        [
            "endpoint",
            _check_endpoint(endpoint),
            "allowed-ips",
            _check_allowed_ips(allowed_ips),
            "persistent-keepalive",
            str(keepalive) if keepalive else "off",
        ],
    )


def latest_handshake(netns: str, ifname: str) -> float | None:
    """Epoch seconds of the newest handshake with any peer, None if there was none."""
    _check_ifname(ifname)
    newest = 0
    for line in _wg(_check_netns(netns), "show", ifname, "latest-handshakes").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            newest = max(newest, int(fields[1]))
    return float(newest) if newest else None


def transfer(netns: str, ifname: str) -> tuple[int, int]:
    """Bytes (received, sent) through the tunnel, summed over peers."""
    _check_ifname(ifname)
    rx = tx = 0
    for line in _wg(_check_netns(netns), "show", ifname, "transfer").splitlines():
        fields = line.split()
        if len(fields) == 3:
            rx += int(fields[1])
            tx += int(fields[2])
    return rx, tx


def show(netns: str, ifname: str) -> dict[str, Any]:
    """The interface's status for `netlab status`, without private or preshared keys."""
    _check_ifname(ifname)
    # `wg show dump` is one call with everything; its first field is the private
    # key, dropped here before anything else sees the text.
    lines = _wg(_check_netns(netns), "show", ifname, "dump").splitlines()
    if not lines:
        raise WireGuardError(f"'wg show {ifname} dump' printed nothing in namespace '{netns}'")
    _private, public_key, listen_port, fwmark = lines[0].split("\t")
    del _private
    peers = []
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != 8:
            continue
        pub, _psk, endpoint, allowed, handshake, rx, tx, keepalive = fields
        peers.append(
            {
                "public_key": pub,
                "endpoint": None if endpoint == "(none)" else endpoint,
                "allowed_ips": [] if allowed == "(none)" else allowed.split(","),
                "latest_handshake": float(handshake) if handshake != "0" else None,
                "rx_bytes": int(rx),
                "tx_bytes": int(tx),
                "persistent_keepalive": None if keepalive == "off" else int(keepalive),
            }
        )
    return {
        "interface": ifname,
        "netns": netns,
        "public_key": public_key,
        "listen_port": int(listen_port) if listen_port.isdigit() else None,
        "fwmark": None if fwmark == "off" else fwmark,
        "peers": peers,
    }
