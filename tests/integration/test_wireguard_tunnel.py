"""A real WireGuard tunnel between two namespaces, for each backend this host can run.

Two namespaces `twg<6 hex>-a` (server, the SP NEA's role) and `-b` (client, the
tenant NEA's role) joined by a veth 10.200.0.0/24; the tunnel carries 10.201.0.0/24.
The kernel backend is skipped, with its reason, where the kernel has no module.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wg_backend

from netlab import wireguard
from netlab.errors import NetlabError, ToolMissing
from netlab.processes import ProcessRecord, is_alive

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces"),
    pytest.mark.skipif(
        shutil.which("ping") is None,
        reason="'ping' not installed (apt-get install iputils-ping): busybox ping cannot set DF",
    ),
]

SERVER_UNDERLAY = "10.200.0.1"
SERVER_TUNNEL = "10.201.0.1"
CLIENT_TUNNEL = "10.201.0.2"
LISTEN_PORT = 51820


def ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    subprocess.run(argv, check=True, capture_output=True, text=True)


def ping(netns: str, address: str, *extra: str, wait: int = 1) -> subprocess.CompletedProcess:
    argv = ["ping", "-n", "-q", "-c", "1", "-W", str(wait), *extra, address]
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        check=False,
    )


@dataclass
class Pair:
    prefix: str
    server_ns: str
    client_ns: str


@pytest.fixture
def pair() -> Iterator[Pair]:
    prefix = f"twg{secrets.token_hex(3)}"
    made = Pair(prefix, f"{prefix}-a", f"{prefix}-b")
    try:
        for ns in (made.server_ns, made.client_ns):
            ip("netns", "add", ns)
            ip("link", "set", "lo", "up", netns=ns)
        veth_b = f"name veth-b netns {made.client_ns}".split()
        ip("link", "add", "veth-a", "netns", made.server_ns, "type", "veth", "peer", *veth_b)
        ip("addr", "add", f"{SERVER_UNDERLAY}/24", "dev", "veth-a", netns=made.server_ns)
        ip("addr", "add", "10.200.0.2/24", "dev", "veth-b", netns=made.client_ns)
        ip("link", "set", "veth-a", "up", netns=made.server_ns)
        ip("link", "set", "veth-b", "up", netns=made.client_ns)
        yield made
    finally:
        for ns in (made.server_ns, made.client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed


@pytest.fixture(params=["userspace", "kernel"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> wireguard.WireGuardBackend:
    if request.param == "kernel" and not wireguard.kernel_module_available():
        pytest.skip("kernel WireGuard module not available")
    try:
        return wireguard.select_backend(request.param, log_dir=tmp_path / "logs")
    except ToolMissing as exc:
        pytest.skip(str(exc))


@dataclass
class Tunnel:
    backend: wireguard.WireGuardBackend
    pair: Pair
    server_if: str
    client_if: str
    server_record: ProcessRecord | None
    client_record: ProcessRecord | None
    started: float  # monotonic time just before the first interface was created


@pytest.fixture
def tunnel(pair: Pair, backend: wireguard.WireGuardBackend, tmp_path: Path) -> Iterator[Tunnel]:
    server_key = wireguard.ensure_keypair(tmp_path / "keys", "server")
    client_key = wireguard.ensure_keypair(tmp_path / "keys", "client")
    # Names unique across concurrent runs: wireguard-go's socket directory is shared.
    server_if, client_if = f"{pair.prefix}s", f"{pair.prefix}c"
    records: dict[str, ProcessRecord | None] = {}
    started = time.monotonic()
    try:
        records[server_if] = backend.create(pair.server_ns, server_if)
        records[client_if] = backend.create(pair.client_ns, client_if)
        wireguard.configure_server(
            pair.server_ns,
            server_if,
            private_key=server_key.private_key_path,
            listen_port=LISTEN_PORT,
            peer_public_key=client_key.public_key,
            allowed_ips=[f"{CLIENT_TUNNEL}/32"],
        )
        wireguard.configure_client(
            pair.client_ns,
            client_if,
            private_key=client_key.private_key_path,
            peer_public_key=server_key.public_key,
            endpoint=f"{SERVER_UNDERLAY}:{LISTEN_PORT}",
            allowed_ips=["10.201.0.0/24"],
        )
        for ns, ifname, address in (
            (pair.server_ns, server_if, SERVER_TUNNEL),
            (pair.client_ns, client_if, CLIENT_TUNNEL),
        ):
            ip("addr", "add", f"{address}/24", "dev", ifname, netns=ns)
            wireguard.set_up(ns, ifname, wireguard.TUNNEL_MTU)
        yield Tunnel(
            backend, pair, server_if, client_if, records[server_if], records[client_if], started
        )
    finally:
        for ns, ifname in ((pair.server_ns, server_if), (pair.client_ns, client_if)):
            if ifname in records:
                backend.destroy(ns, ifname, records[ifname])
    for record in records.values():
        assert record is None or not is_alive(record)
    left = wg_backend.sockets(pair.prefix)
    assert left == [], f"control sockets left behind: {left}"


def first_reply(ns: str, address: str, tries: int = 5) -> subprocess.CompletedProcess:
    for _ in range(tries):
        done = ping(ns, address)
        if done.returncode == 0:
            break
    return done


def test_ping_crosses_tunnel_after_handshake(tunnel: Tunnel):
    done = first_reply(tunnel.pair.client_ns, SERVER_TUNNEL)
    elapsed_ms = (time.monotonic() - tunnel.started) * 1000
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"{tunnel.backend.name}: start to first ping reply {elapsed_ms:.0f} ms")

    assert ping(tunnel.pair.server_ns, CLIENT_TUNNEL).returncode == 0
    for ns, ifname in (
        (tunnel.pair.server_ns, tunnel.server_if),
        (tunnel.pair.client_ns, tunnel.client_if),
    ):
        assert wireguard.latest_handshake(ns, ifname) is not None
        received, sent = wireguard.transfer(ns, ifname)
        assert received > 0 and sent > 0
        shown = subprocess.run(
            ["ip", "netns", "exec", ns, "wg", "show", ifname],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "latest handshake" in shown


def udp_receive_buffers(ns: str, port: int) -> list[int]:
    """rb (receive buffer bytes) of every UDP socket bound to `port` in `ns`, from `ss -m`."""
    done = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Huanm", f"sport = :{port}"],
                          capture_output=True, text=True, check=True)
    return [int(rb) for rb in re.findall(r"\brb(\d+)", done.stdout)]


def test_tune_gives_wireguard_go_sockets_large_buffers(tunnel: Tunnel):
    if tunnel.server_record is None:
        pytest.skip("the kernel backend has no socket buffers to tune")
    before = udp_receive_buffers(tunnel.pair.server_ns, LISTEN_PORT)
    assert before and max(before) < wireguard.SOCKET_BUFFER_BYTES  # the host's default
    tunnel.backend.tune(tunnel.server_record)
    after = udp_receive_buffers(tunnel.pair.server_ns, LISTEN_PORT)
    assert len(after) == len(before)
    assert min(after) >= wireguard.SOCKET_BUFFER_BYTES  # the kernel doubles what is set
    assert ping(tunnel.pair.client_ns, SERVER_TUNNEL).returncode == 0 or first_reply(
        tunnel.pair.client_ns, SERVER_TUNNEL).returncode == 0


def test_status_shows_peer_but_no_private_key(tunnel: Tunnel, tmp_path: Path):
    assert first_reply(tunnel.pair.client_ns, SERVER_TUNNEL).returncode == 0
    status = wireguard.show(tunnel.pair.client_ns, tunnel.client_if)
    private = (tmp_path / "keys" / "client.key").read_text().strip()
    assert private not in repr(status)
    assert status["public_key"] == (tmp_path / "keys" / "client.pub").read_text().strip()
    (peer,) = status["peers"]
    assert peer["endpoint"] == f"{SERVER_UNDERLAY}:{LISTEN_PORT}"
    assert peer["allowed_ips"] == ["10.201.0.0/24"]
    assert peer["persistent_keepalive"] == wireguard.CLIENT_KEEPALIVE
    assert peer["latest_handshake"] is not None
    server_status = wireguard.show(tunnel.pair.server_ns, tunnel.server_if)
    assert server_status["listen_port"] == LISTEN_PORT


def test_full_size_df_ping_crosses_tunnel(tunnel: Tunnel):
    assert first_reply(tunnel.pair.client_ns, SERVER_TUNNEL).returncode == 0
    # 1472 bytes of ICMP payload + 28 of headers = a full 1500-byte packet, DF set:
    # what a DR admin sends to check the extended network carries full frames.
    done = ping(tunnel.pair.client_ns, SERVER_TUNNEL, "-M", "do", "-s", "1472", wait=2)
    assert done.returncode == 0, done.stdout + done.stderr
    # The usual WireGuard MTU would refuse it: this is why TUNNEL_MTU is 1500.
    wireguard.set_up(tunnel.pair.client_ns, tunnel.client_if, 1420)
    refused = ping(tunnel.pair.client_ns, SERVER_TUNNEL, "-M", "do", "-s", "1472")
    assert refused.returncode != 0


def test_killed_wireguard_go_breaks_tunnel_and_destroy_removes_socket(tunnel: Tunnel):
    if tunnel.backend.name != "userspace":
        pytest.skip("only the userspace backend runs a process")
    assert first_reply(tunnel.pair.client_ns, SERVER_TUNNEL).returncode == 0
    record = tunnel.server_record
    assert record is not None
    sock = wg_backend.socket_of(tunnel.server_if)
    assert sock.exists()

    os.kill(record.pid, signal.SIGKILL)  # the recorded pid, nothing else
    for _ in range(200):
        if not is_alive(record):
            break
        time.sleep(0.005)
    assert not is_alive(record)

    assert ping(tunnel.pair.client_ns, SERVER_TUNNEL).returncode != 0
    # SIGKILL gives wireguard-go no chance to clean up: its socket file stays, dead.
    assert sock.exists()
    with pytest.raises(NetlabError):
        wireguard.latest_handshake(tunnel.pair.server_ns, tunnel.server_if)

    tunnel.backend.destroy(tunnel.pair.server_ns, tunnel.server_if, record)
    assert not sock.exists()


def test_existing_live_interface_name_is_refused(tunnel: Tunnel):
    if tunnel.backend.name != "userspace":
        pytest.skip("the shared socket directory is a userspace-backend matter")
    with pytest.raises(NetlabError, match="in use"):
        tunnel.backend.create(tunnel.pair.client_ns, tunnel.server_if)


def test_missing_namespace_is_an_error_and_is_not_created(backend: wireguard.WireGuardBackend):
    name = f"twg{secrets.token_hex(3)}-missing"
    with pytest.raises(NetlabError, match=name):
        backend.create(name, "twgmissing0")
    with pytest.raises(NetlabError, match=name), wireguard.Netlink() as nl:
        nl[name]
    assert not Path("/run/netns", name).exists()
