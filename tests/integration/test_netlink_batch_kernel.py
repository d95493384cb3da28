"""netlab.net.batch against the kernel: a bridge, a veth into another namespace, an
address and routes in two batches, checked with `ip`; a refused request reported with
the kernel's own reason. Namespaces `tnb<6 hex>-sw/-vm`, removed at the end."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator

import pytest

from netlab.errors import LabError
from netlab.net.batch import Batch, open_socket
from netlab.net.namespaces import NETNS_DIR, delete_namespace, inside, namespace_exists

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces"),
]


def ip_json(netns: str, *args: str) -> list[dict]:
    done = subprocess.run(["ip", "-j", "-n", netns, *args], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout or "[]")


@pytest.fixture
def pair() -> Iterator[tuple[str, str, dict[str, socket.socket]]]:
    prefix = f"tnb{secrets.token_hex(3)}"
    names = (f"{prefix}-sw", f"{prefix}-vm")
    sockets: dict[str, socket.socket] = {}
    try:
        for name in names:
            with inside(name, create=True):
                sockets[name] = open_socket()
        yield names[0], names[1], sockets
    finally:
        for sock in sockets.values():
            sock.close()
        for name in names:
            if namespace_exists(name):
                delete_namespace(name)


def test_a_segment_and_a_node_plumbed_in_one_batch_each(pair) -> None:
    sw, vm, sockets = pair
    segment = Batch(sockets[sw], sw)
    segment.add_bridge("br0", 2)
    fd = os.open(NETNS_DIR / vm, os.O_RDONLY)
    try:
        segment.add_veth("port0", 3, 2, "eth0", 2, fd)
        segment.send()
    finally:
        os.close(fd)
    node = Batch(sockets[vm], vm)
    node.link_up(1, "lo")
    node.link_up(2, "eth0")
    node.add_address(2, "192.168.10.11/24", "eth0")
    node.add_route("default", "192.168.10.1", None, None, "eth0")
    node.add_route("10.99.0.0/24", None, 2, 100, "eth0")
    node.send()

    port = {link["ifname"]: link for link in ip_json(sw, "-d", "link")}["port0"]
    assert port["ifindex"] == 3 and port["master"] == "br0" and "UP" in port["flags"]
    bridge = ip_json(sw, "-d", "link", "show", "br0")[0]["linkinfo"]["info_data"]
    assert bridge["stp_state"] == 0 and bridge["forward_delay"] == 0
    eth0 = ip_json(vm, "addr", "show", "eth0")[0]
    assert eth0["ifindex"] == 2 and "UP" in eth0["flags"]
    ipv4 = [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"]
    assert ipv4 == [("192.168.10.11", 24)]
    main = ip_json(vm, "route", "show", "default")
    assert main[0]["gateway"] == "192.168.10.1" and main[0]["protocol"] == "static"
    table = ip_json(vm, "route", "show", "table", "100")
    assert table[0]["dst"] == "10.99.0.0/24" and table[0]["scope"] == "link"

    again = Batch(sockets[vm], vm)
    again.add_address(2, "192.168.10.11/24", "eth0")  # already there: fine
    again.send()
    assert len(again) == 0
    # the kernel holds it once, as before: tolerated, not added a second time
    eth0 = ip_json(vm, "addr", "show", "eth0")[0]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"]
            if a["family"] == "inet"] == [("192.168.10.11", 24)]


def test_a_refused_request_names_the_namespace_the_request_and_the_kernels_reason(pair):
    _, vm, sockets = pair
    node = Batch(sockets[vm], vm)
    node.link_up(1, "lo")
    node.add_route("default", "10.0.0.1", None, None, "eth0")  # no link reaches it
    with pytest.raises(LabError) as err:
        node.send()
    message = str(err.value)
    assert message.startswith(f"namespace {vm}: cannot add route default via 10.0.0.1: ")
    assert "unreachable" in message.lower() or "gateway" in message.lower()
    assert ip_json(vm, "route", "show", "default") == []
