"""The proxy-ARP daemon on a real segment, judged by what real tools see on the wire.

Topology (namespaces `tpa<6 hex>-*`, 192.0.2.0/24, one bridge):

    -nea   eth0 .250  runs the daemon (the NEA's LAN side)
    -lan   eth0 .1    asks: arping, tcpdump, a Scapy flooder
    -host  eth0 .11   a present host the daemon must not answer for
    -br    br0        joins the three

The daemon is started once for the module with `start_process(..., netns=...)`
and ended by its recorded pid; each test leaves the proxied set as it found it.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ipaddress
import json
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scapy.arch.linux import L2Socket
from scapy.layers.l2 import ARP, Ether
from scapy.utils import PcapReader

from netlab.processes import ProcessRecord, is_alive, start_process, stop_process
from netlab.proxyarp import frames
from netlab.proxyarp.client import (
    DaemonNotRunning,
    ProxyArpClient,
    ProxyArpError,
    RequestRejected,
)
from netlab.run import in_netns, run

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces"),
    pytest.mark.skipif(
        shutil.which("arping") is None or shutil.which("tcpdump") is None,
        reason="needs arping and tcpdump (apt-get install iputils-arping tcpdump)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
NEA_IP, LAN_IP, HOST_IP = "192.0.2.250", "192.0.2.1", "192.0.2.11"
PROXIED_IP = "192.0.2.50"
FREE_IP = "192.0.2.99"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Segment:
    prefix: str
    socket_path: str
    log_path: Path
    daemon: ProcessRecord | None = None
    macs: dict[str, str] = field(default_factory=dict)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def client(self) -> ProxyArpClient:
        return ProxyArpClient(self.socket_path)


def ip(*args: str, netns: str | None = None) -> None:
    run(["ip", *(["-n", netns] if netns else []), *args])


def mac_of(netns: str, iface: str = "eth0") -> str:
    out = run(["ip", "-j", "link", "show", "dev", iface], netns=netns).stdout
    return json.loads(out)[0]["address"]


def daemon_argv(segment: Segment, socket_path: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "netlab.proxyarp", "--iface", "eth0", "--socket", socket_path,
            *extra]  # fmt: skip


def start_daemon(segment: Segment, socket_path: str, *extra: str) -> ProcessRecord:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return start_process(
        "proxyarp-test",
        daemon_argv(segment, socket_path, *extra),
        netns=segment.ns("nea"),
        log_path=segment.log_path,
        env=env,
    )


@pytest.fixture(scope="module")
def segment() -> Iterator[Segment]:
    prefix = f"tpa{secrets.token_hex(3)}"
    # A directory others may traverse, so the socket's own mode is what keeps them out.
    sock_dir = tempfile.mkdtemp(prefix=f"{prefix}-")
    os.chmod(sock_dir, 0o755)
    seg = Segment(prefix, f"{sock_dir}/proxyarp.sock", Path(sock_dir) / "daemon.log")
    made: list[str] = []
    try:
        for role in ("br", "nea", "lan", "host"):
            ip("netns", "add", seg.ns(role))
            made.append(seg.ns(role))
            ip("link", "set", "lo", "up", netns=seg.ns(role))
        bridge = seg.ns("br")
        ip("link", "add", "br0", "type", "bridge", netns=bridge)
        ip("link", "set", "br0", "up", netns=bridge)
        _no_arptables_on_bridge(bridge)
        for role, address in (("nea", NEA_IP), ("lan", LAN_IP), ("host", HOST_IP)):
            # Created straight inside the namespaces: nothing ever appears in the root one.
            ip("link", "add", f"p-{role}", "type", "veth", "peer", "name", "eth0",
               "netns", seg.ns(role), netns=bridge)  # fmt: skip
            ip("link", "set", f"p-{role}", "master", "br0", "up", netns=bridge)
            ip("addr", "add", f"{address}/24", "dev", "eth0", netns=seg.ns(role))
            ip("link", "set", "eth0", "up", netns=seg.ns(role))
            seg.macs[role] = mac_of(seg.ns(role))
        seg.daemon = start_daemon(
            seg,
            seg.socket_path,
            "--gratuitous-count",
            "3",
            "--gratuitous-interval",
            "0.05",
        )
        seg.client.wait_ready(timeout=10, process=seg.daemon)
        # sets change over the control socket only, never on the command line
        seg.client.add([PROXIED_IP])
        yield seg
    finally:
        if seg.daemon is not None:
            stop_process(seg.daemon)
            assert not is_alive(seg.daemon)
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        log = seg.log_path.read_text() if seg.log_path.exists() else ""
        shutil.rmtree(sock_dir, ignore_errors=True)
        assert "Traceback" not in log, log


@pytest.fixture
def intact(segment: Segment) -> Iterator[None]:
    yield
    # Every test must leave the daemon alive and its set as the module started it.
    assert segment.daemon is not None and is_alive(segment.daemon), segment.log_path.read_text()
    assert segment.client.list() == [PROXIED_IP]


def _no_arptables_on_bridge(netns: str) -> None:
    # With br_netfilter loaded the bridge hands ARP to arptables, which drops frames
    # too short for an ARP header before they reach the daemon's port. The flood
    # test needs the wire to carry them as they are.
    with inside_netns(netns):
        path = Path("/proc/sys/net/bridge/bridge-nf-call-arptables")
        if path.exists():
            path.write_text("0\n")


def arping(netns: str, address: str, count: int = 2) -> list[str]:
    """MACs that answered `count` broadcast probes (-b: every probe reaches every host)."""
    argv = ["arping", "-b", "-c", str(count), "-w", str(count), "-I", "eth0", address]
    done = run(argv, netns=netns, check=False, timeout=count + 10)
    return [m.lower() for m in re.findall(r"reply from \S+ \[([0-9A-Fa-f:]{17})\]", done.stdout)]


@contextlib.contextmanager
def inside_netns(name: str) -> Iterator[None]:
    """Run the block's socket creation in namespace `name` (this thread only).

    A socket keeps the namespace it was created in after we switch back.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---- who gets an answer ---------------------------------------------------------------


def test_proxied_address_is_answered_with_the_daemon_mac(segment: Segment, intact) -> None:
    assert arping(segment.ns("lan"), PROXIED_IP) == [segment.macs["nea"]] * 2


def test_free_address_outside_the_set_is_not_answered(segment: Segment, intact) -> None:
    assert arping(segment.ns("lan"), FREE_IP, count=1) == []


def test_present_host_outside_the_set_answers_alone(segment: Segment, intact) -> None:
    assert arping(segment.ns("lan"), HOST_IP) == [segment.macs["host"]] * 2


def test_runtime_add_and_remove_change_answers_without_restart(segment: Segment, intact) -> None:
    client = segment.client
    pid = client.info()["pid"]
    new = "192.0.2.60"
    assert arping(segment.ns("lan"), new, count=1) == []
    assert client.add([new]) == [new]
    assert client.add([new]) == []  # already there: nothing new
    try:
        assert new in client.list()
        assert arping(segment.ns("lan"), new) == [segment.macs["nea"]] * 2
    finally:
        assert client.remove([new]) == [new]
    assert client.remove([new]) == []
    assert arping(segment.ns("lan"), new, count=1) == []
    assert client.info()["pid"] == pid == segment.daemon.pid


def test_add_sends_gratuitous_arp_seen_on_the_wire(
    segment: Segment, intact, tmp_path: Path
) -> None:
    address = "192.0.2.61"
    pcap = tmp_path / "garp.pcap"
    # -Z root: tcpdump would otherwise drop to its own user and fail to write here.
    argv = ["tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-Z", "root",
            "-w", str(pcap), "arp"]  # fmt: skip
    dump = subprocess.Popen(
        in_netns(segment.ns("lan"), argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(dump)
        before = segment.client.stats()["gratuitous_sent"]
        segment.client.add([address])
        wait_for(lambda: len(_announcements(pcap, address, segment.macs["nea"])) >= 3,
                 what="3 gratuitous ARPs in the capture")  # fmt: skip
        stats = segment.client.stats()
        assert stats["gratuitous_sent"] - before == 3
        assert stats["gratuitous_pending"] == 0
    finally:
        segment.client.remove([address])
        dump.send_signal(signal.SIGTERM)
        dump.wait(timeout=5)
        dump.stderr.close()
    announcements = _announcements(pcap, address, segment.macs["nea"])
    assert len(announcements) == 3  # --gratuitous-count 3, and no more
    for eth in announcements:
        arp = eth.payload
        assert eth.dst == "ff:ff:ff:ff:ff:ff"
        assert (arp.op, arp.hwsrc, arp.psrc, arp.pdst) == (1, segment.macs["nea"], address, address)


def _wait_listening(dump: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    seen = b""
    while b"listening on" not in seen:
        ready, _, _ = select.select([dump.stderr], [], [], max(0.0, deadline - time.monotonic()))
        if not ready or dump.poll() is not None:
            raise AssertionError(f"tcpdump did not start: {seen.decode(errors='replace')}")
        seen += os.read(dump.stderr.fileno(), 4096)


def _announcements(pcap: Path, address: str, mac: str) -> list:
    found = []
    if not pcap.exists():
        return found
    # The file is still being written: read what is complete, stop at a partial record.
    with contextlib.suppress(Exception), PcapReader(str(pcap)) as reader:
        for packet in reader:
            if Ether in packet and ARP in packet:
                arp = packet[ARP]
                if arp.op == 1 and arp.psrc == arp.pdst == address and arp.hwsrc == mac:
                    found.append(packet[Ether])
    return found


def test_daemon_never_answers_its_own_namespace(segment: Segment, intact) -> None:
    nea = segment.ns("nea")
    before = segment.client.stats()
    assert arping(nea, PROXIED_IP, count=1) == []
    # The kernel of the NEA namespace resolving the address itself gets no answer either.
    ping = run(["ping", "-n", "-c", "1", "-W", "1", PROXIED_IP], netns=nea, check=False)
    assert ping.returncode != 0
    neighbour = run(["ip", "neigh", "show", PROXIED_IP, "dev", "eth0"], netns=nea).stdout
    assert segment.macs["nea"] not in neighbour.lower()
    after = segment.client.stats()
    # The socket is bound to ETH_P_ARP: the kernel never hands it what this namespace
    # sends (arping's request, the kernel's own), so nothing of it was even read.
    assert after["requests_seen"] == before["requests_seen"]
    assert after["replies_sent"] == before["replies_sent"]


# ---- a flood of malformed and random ARP ----------------------------------------------


def _flood_frames(seg: Segment, proxied: set[bytes], rng: random.Random):
    """10 000 frames from the lan port: each with the reason the daemon must count it under."""
    nea_mac = seg.macs["nea"]
    lan_mac = seg.macs["lan"]
    target = PROXIED_IP

    def unicast_mac() -> str:
        return "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))

    def outside_ip() -> str:
        # 198.18.0.0/15 (benchmarking range): no host on this segment owns one.
        return str(ipaddress.IPv4Address("198.18.0.0") + rng.randrange(1, 1 << 17))

    def req(**kw) -> bytes:
        mac = kw.pop("mac", None) or unicast_mac()
        eth = Ether(dst=kw.pop("dst", "ff:ff:ff:ff:ff:ff"), src=kw.pop("src", mac))
        fields = {"op": 1, "hwsrc": mac, "psrc": outside_ip(), "pdst": target} | kw
        return bytes(eth / ARP(**fields))

    def gratuitous() -> bytes:
        address = outside_ip()
        return req(psrc=address, pdst=address)

    makers = {
        "reply": req,
        "truncated": lambda: req()[: rng.randrange(14, 42)],
        "not_ethernet": lambda: req(hwtype=rng.choice([0, 6, 32, 0xFFFF])),
        "not_ipv4": lambda: req(ptype=rng.choice([0x86DD, 0x0806, 0])),
        "bad_lengths": lambda: _with_byte(req(), rng.choice([18, 19]), rng.choice([0, 5, 16])),
        "not_request": lambda: req(op=rng.choice([2, 3, 4, 9])),
        # Our MAC as ARP sender only: as Ethernet source the bridge would learn it on
        # the wrong port and misdeliver the daemon's traffic.
        "own_mac": lambda: req(src=lan_mac, hwsrc=nea_mac),
        "bad_sender_mac": lambda: req(src=lan_mac, hwsrc="01:00:5e:00:00:fb"),
        "not_for_us": lambda: req(dst=unicast_mac()),
        "gratuitous": gratuitous,
        "not_proxied": lambda: req(pdst=outside_ip()),
    }
    plan: list[tuple[str, bytes]] = []
    for reason, make in makers.items():
        plan += [(reason, make()) for _ in range(500)]
    while len(plan) < 10_000:
        # Random bodies behind an ARP header, sometimes a valid one and a proxied
        # target: the expected reason comes from expected_verdict (RFC 826 read by
        # Scapy), not from the daemon's own frames.decide.
        body = bytearray(rng.randbytes(rng.randrange(0, 46)))
        if len(body) >= 8 and rng.random() < 0.6:
            body[0:8] = bytes.fromhex("0001080006040001")
        if len(body) >= 28 and rng.random() < 0.5:
            body[24:28] = rng.choice(sorted(proxied))
        frame = b"\xff" * 6 + frames.mac_from_text(unicast_mac()) + b"\x08\x06" + bytes(body)
        plan.append((expected_verdict(frame, nea_mac, proxied), frame))
    rng.shuffle(plan)
    return plan


def expected_verdict(frame: bytes, nea_mac: str, proxied: set[bytes]) -> str:
    """What the daemon must do with `frame`, from RFC 826 with Scapy reading the fields:
    an oracle apart from netlab.proxyarp.frames, which the daemon runs."""
    if len(frame) < 14 + 28:  # an Ethernet header and the 28 bytes of Ethernet/IPv4 ARP
        return "truncated"
    eth = Ether(frame)
    if eth.type != 0x0806:
        return "not_arp"
    arp = eth[ARP]
    if arp.hwtype != 1:
        return "not_ethernet"
    if arp.ptype != 0x0800:
        return "not_ipv4"
    if arp.hwlen != 6 or arp.plen != 4:
        return "bad_lengths"
    if arp.op != 1:
        return "not_request"
    sender = arp.hwsrc.lower()
    if nea_mac.lower() in (sender, eth.src.lower()):
        return "own_mac"
    if int(sender.split(":")[0], 16) & 1 or sender == "00:00:00:00:00:00":
        return "bad_sender_mac"
    if eth.dst.lower() not in ("ff:ff:ff:ff:ff:ff", nea_mac.lower()):
        return "not_for_us"
    if arp.psrc == arp.pdst:
        return "gratuitous"
    if ipaddress.IPv4Address(arp.pdst).packed not in proxied:
        return "not_proxied"
    return "reply"


def _with_byte(frame: bytes, offset: int, value: int) -> bytes:
    changed = bytearray(frame)
    changed[offset] = value
    return bytes(changed)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_survives_flood_of_malformed_and_random_arp(segment: Segment, intact) -> None:
    client = segment.client
    proxied = {ipaddress.IPv4Address(a).packed for a in client.list()}
    plan = _flood_frames(segment, proxied, random.Random(7))
    lan_mac = segment.macs["lan"]
    with inside_netns(segment.ns("lan")):
        sock = L2Socket(iface="eth0", filter=f"arp and ether dst {lan_mac}", promisc=False)
    syncs = 0
    before = client.stats()
    rss_before = _rss_kib(segment.daemon.pid)
    try:
        sock.ins.settimeout(0.5)
        for i, (_reason, frame) in enumerate(plan, 1):
            sock.outs.send(frame)
            if i % 250 == 0 or i == len(plan):
                # Pace the flood: the daemon answers in order, so its answer to this
                # request means everything before it was read, not dropped unread.
                syncs += _sync(sock, lan_mac, i)
    finally:
        sock.close()
    after = client.stats()
    expected = collections.Counter(reason for reason, _ in plan)
    expected["reply"] += syncs

    def delta(key: str) -> int:
        return after[key] - before[key]

    got = {r: after["ignored_by_reason"][r] - before["ignored_by_reason"][r]
           for r in frames.IGNORED_REASONS}  # fmt: skip
    assert delta("kernel_drops") == 0
    assert delta("send_errors") == 0
    assert delta("replies_sent") == expected["reply"]
    assert got == {r: expected.get(r, 0) for r in frames.IGNORED_REASONS}
    assert delta("frames_seen") == len(plan) + syncs
    assert delta("requests_seen") == sum(
        n for reason, n in expected.items() if frames.Verdict(reason).is_request
    )
    # The counters account for every frame: answered or ignored for one reason.
    assert after["frames_seen"] == after["replies_sent"] + after["send_errors"] + after["ignored"]
    assert after["ignored"] == sum(after["ignored_by_reason"].values())
    assert _rss_kib(segment.daemon.pid) - rss_before < 8 * 1024
    # Still answering, and correctly.
    assert arping(segment.ns("lan"), PROXIED_IP) == [segment.macs["nea"]] * 2
    assert arping(segment.ns("lan"), FREE_IP, count=1) == []


def _sync(sock: L2Socket, lan_mac: str, n: int) -> int:
    """Send a marked request for the proxied address and wait for its answer; return sends."""
    marker = str(ipaddress.IPv4Address("198.19.255.0") + n % 250 + 1)
    frame = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=lan_mac)
        / ARP(op=1, hwsrc=lan_mac, psrc=marker, pdst=PROXIED_IP)
    )
    for attempt in range(1, 6):
        sock.outs.send(frame)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                _cls, data, _ts = sock.recv_raw(128)
            except TimeoutError:
                break
            if not data:
                continue
            arp = frames.parse(data)
            if (
                isinstance(arp, frames.ArpFrame)
                and arp.op == 2
                and arp.target_ip == ipaddress.IPv4Address(marker).packed
            ):
                return attempt
    raise AssertionError(f"daemon stopped answering during the flood (after {n} frames)")


# ---- the control socket ---------------------------------------------------------------


def test_control_socket_is_root_only(segment: Segment, intact) -> None:
    info = os.stat(segment.socket_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == 0
    # The directory is open to everyone: only the socket's mode keeps nobody out.
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, segment.socket_path],
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 3, done.stderr


def _raw_exchange(path: str, payload: bytes) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        # The daemon may hang up on an over-long request before reading all of it.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_bad_control_requests_get_an_error_and_the_daemon_keeps_running(
    segment: Segment, intact
) -> None:
    bad = [
        b"this is not json",
        b"[1, 2, 3]",
        b'{"op": "fly"}',
        b'{"no_op": 1}',
        b'{"op": "add"}',
        b'{"op": "add", "addresses": "192.0.2.5"}',
        b'{"op": "add", "addresses": ["300.1.1.1"]}',
        b'{"op": "add", "addresses": ["224.0.0.1"]}',
        b'{"op": "add", "addresses": [17]}',
        b'{"op": "remove", "addresses": [null]}',
        # One bad address rejects the whole request: .62 must not be added.
        b'{"op": "add", "addresses": ["192.0.2.62", "bad"]}',
        b"\xff\xfe\x00garbage",
    ]
    replies = _raw_exchange(segment.socket_path, b"\n".join(bad) + b'\n{"op": "ping"}\n')
    assert len(replies) == len(bad) + 1
    for request, reply in zip(bad, replies, strict=False):
        assert reply["ok"] is False, request
        assert reply["error"], request
    assert replies[-1]["ok"] is True  # same connection, still served
    assert "192.0.2.62" not in segment.client.list()
    # A line over the limit: an error, then the daemon hangs up on that connection.
    replies = _raw_exchange(segment.socket_path, b'{"op": "list", "x": "' + b"a" * 300_000)
    assert replies == [{"ok": False, "error": replies[0]["error"]}]
    assert "longer than" in replies[0]["error"]
    assert segment.client.ping()
    assert segment.client.stats()["control_errors"] >= len(bad) + 1


def test_too_many_control_connections_are_refused_not_queued(segment: Segment, intact) -> None:
    held = []
    try:
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(segment.socket_path)
            held.append(s)
        with pytest.raises(RequestRejected, match="too many control connections"):
            segment.client.list()
    finally:
        for s in held:
            s.close()
    wait_for(segment.client.ping, what="a free control slot")


def test_client_errors_name_the_problem(segment: Segment, intact, tmp_path: Path) -> None:
    with pytest.raises(RequestRejected, match="not an IPv4 address"):
        segment.client.add(["192.0.2.1", "nope"])
    missing = tmp_path / "missing.sock"
    with pytest.raises(DaemonNotRunning, match=re.escape(f"not running at {missing}")):
        ProxyArpClient(str(missing)).list()
    assert ProxyArpClient(str(missing)).ping() is False
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))  # bound, never listening: what a killed daemon leaves
    with pytest.raises(DaemonNotRunning, match="stale socket"):
        ProxyArpClient(str(stale)).stats()
    with pytest.raises(ProxyArpError, match="not ready after"):
        ProxyArpClient(str(missing)).wait_ready(timeout=0.2)


def test_pipelined_requests_are_answered_in_order_on_one_connection(
        segment: Segment, intact) -> None:
    client = segment.client
    before = client.stats()["control_requests"]
    extra = [f"192.0.2.{70 + i}" for i in range(10)]
    requests = [{"op": "add", "addresses": [a]} for a in extra]
    requests += [{"op": "list"}, {"op": "remove", "addresses": extra}, {"op": "list"}]
    replies = client.pipeline(requests)
    assert [r["added"] for r in replies[:10]] == [[a] for a in extra]
    assert replies[10]["addresses"] == sorted([PROXIED_IP, *extra],
                                              key=ipaddress.IPv4Address)
    assert replies[11]["removed"] == extra and replies[12]["addresses"] == [PROXIED_IP]
    assert client.stats()["control_requests"] - before == len(requests) + 1
    with pytest.raises(RequestRejected, match="unknown op"):
        client.pipeline([{"op": "list"}, {"op": "nope"}, {"op": "list"}])


def neighbours(netns: str) -> dict[str, str]:
    out = run(["ip", "-j", "neigh", "show", "dev", "eth0"], netns=netns).stdout
    return {n["dst"]: n.get("lladdr", "").lower() for n in json.loads(out or "[]")}


def test_an_address_held_on_the_lan_is_probed_and_reported_as_a_conflict(
        segment: Segment, intact) -> None:
    client = segment.client
    for role in ("lan", "host"):
        run(["ip", "neigh", "flush", "dev", "eth0"], netns=segment.ns(role))
    assert run(["ping", "-c", "1", "-W", "1", HOST_IP], netns=segment.ns("lan"),
               check=False).returncode == 0
    assert neighbours(segment.ns("lan"))[HOST_IP] == segment.macs["host"]
    try:
        assert client.add([HOST_IP, FREE_IP]) == [HOST_IP, FREE_IP]
        [found] = client.wait_probed({"eth0": [HOST_IP, FREE_IP]})["eth0"]
        assert (found["address"], found["mac"], found["other_mac"], found["how"]) == (
            HOST_IP, segment.macs["nea"], segment.macs["host"], "answered the probe")
        assert client.conflicts()["probing"] == []
        # the probe (sender IP 0.0.0.0) taught the host nothing about the NEA
        assert NEA_IP not in neighbours(segment.ns("host"))
        assert client.stats()["conflicts"] == 1
        # and the appliance answers all the same (see netlab.proxyarp.probing)
        assert segment.macs["nea"] in arping(segment.ns("lan"), HOST_IP, count=2)
    finally:
        client.remove([HOST_IP, FREE_IP])
        for role in ("lan", "host"):
            run(["ip", "neigh", "flush", "dev", "eth0"], netns=segment.ns(role))
    assert client.conflicts() == {"conflicts": [], "probing": []}  # left the set: dropped


# ---- life cycle -----------------------------------------------------------------------


def test_second_daemon_refuses_a_live_socket(segment: Segment, intact) -> None:
    second = start_daemon(segment, segment.socket_path)
    try:
        wait_for(lambda: not is_alive(second), what="the second daemon to give up")
    finally:
        stop_process(second)
    assert "another daemon is already listening" in segment.log_path.read_text()
    assert segment.client.info()["pid"] == segment.daemon.pid


def test_sigterm_removes_the_socket_and_restart_replaces_a_stale_one(
    segment: Segment, intact
) -> None:
    path = str(Path(segment.socket_path).with_name("other.sock"))
    # A stale socket file, as left by a daemon killed with SIGKILL.
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
    other = start_daemon(segment, path, "--gratuitous-count", "0")
    try:
        client = ProxyArpClient(path)
        client.wait_ready(timeout=10, process=other)
        assert client.list() == []
        assert client.info()["mac"] == segment.macs["nea"]  # read in its own namespace
    finally:
        stop_process(other)
    assert not is_alive(other)
    assert not os.path.exists(path)
    assert "stopping" in segment.log_path.read_text()
