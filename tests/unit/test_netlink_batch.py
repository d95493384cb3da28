"""The requests netlab.net.batch encodes, decoded back with pyroute2; its ACK parsing."""

from __future__ import annotations

import struct

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NOPREFIXROUTE, ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netlab.net import batch as nb


def decoded(b: nb.Batch, cls, position: int = -1):
    msg = cls(b._requests[position].data)
    msg.decode()
    return msg


def test_veth_request_names_both_ends_their_indexes_and_the_bridge() -> None:
    b = nb.Batch(sock=None, netns="x-sw")
    b.add_veth("x-b3", 3, 2, "x-v3", 2, peer_netns_fd=7)
    msg = decoded(b, ifinfmsg)
    assert msg["index"] == 3 and msg["flags"] & 1
    assert msg.get_attr("IFLA_IFNAME") == "x-b3"
    assert msg.get_attr("IFLA_MASTER") == 2
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer["index"] == 2
    assert peer.get_attr("IFLA_IFNAME") == "x-v3"
    assert peer.get_attr("IFLA_NET_NS_FD") == 7


def test_requests_are_numbered_in_order_and_ask_for_an_ack() -> None:
    b = nb.Batch(sock=None, netns="x")
    b.link_up(1, "lo")
    b.add_address(2, "192.168.10.11/24", "x-v1")
    assert len(b) == 2
    for seq, cls in ((1, ifinfmsg), (2, ifaddrmsg)):
        header = decoded(b, cls, seq - 1)["header"]
        assert header["sequence_number"] == seq
        assert header["flags"] & nb.NLM_F_ACK


def test_address_request() -> None:
    b = nb.Batch(sock=None, netns="x")
    b.add_address(2, "192.168.10.251/24", "x-n1", no_prefix_route=True)
    msg = decoded(b, ifaddrmsg)
    assert (msg["index"], msg["prefixlen"]) == (2, 24)
    assert msg.get_attr("IFA_LOCAL") == msg.get_attr("IFA_ADDRESS") == "192.168.10.251"
    assert msg.get_attr("IFA_FLAGS") == IFA_F_NOPREFIXROUTE
    assert b._requests[-1].tolerate_exists


@pytest.mark.parametrize(
    ("dst", "via", "oif", "table", "dst_len", "scope"),
    [
        ("default", "192.168.10.1", None, None, 0, nb.RT_SCOPE_UNIVERSE),
        ("10.99.0.0/24", None, 3, 100, 24, nb.RT_SCOPE_LINK),
    ],
)
def test_route_request(dst, via, oif, table, dst_len, scope) -> None:
    b = nb.Batch(sock=None, netns="x")
    b.add_route(dst, via, oif, table, "x-v1")
    msg = decoded(b, rtmsg)
    assert (msg["dst_len"], msg["scope"], msg["proto"]) == (dst_len, scope, nb.RTPROT_STATIC)
    assert msg.get_attr("RTA_TABLE") == (table or nb.RT_TABLE_MAIN)
    assert msg.get_attr("RTA_GATEWAY") == via
    assert msg.get_attr("RTA_OIF") == oif
    assert msg.get_attr("RTA_DST") == (None if dst == "default" else dst.split("/")[0])


def ack(seq: int, error: int, text: str | None = None) -> bytes:
    """An NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK and NETLINK_EXT_ACK."""
    body = struct.pack("=i", error) + struct.pack("=LHHLL", 16, 16, 0x605, seq, 0)
    flags = 0
    if text is not None:
        raw = text.encode() + b"\0"
        attr = struct.pack("=HH", 4 + len(raw), nb.NLMSGERR_ATTR_MSG) + raw
        body += attr + b"\0" * (-len(attr) % 4)
        flags = nb.NLM_F_ACK_TLVS
    return struct.pack("=LHHLL", 16 + len(body), nb.NLMSG_ERROR, flags, seq, 0) + body


def test_kernel_message_is_read_from_the_extended_ack() -> None:
    data = ack(3, -22, "Nexthop has invalid gateway")
    assert nb._kernel_message(data, 0, nb.NLM_F_ACK_TLVS) == "Nexthop has invalid gateway"
    assert nb._kernel_message(ack(3, -22), 0, 0) == ""


class FakeSocket:
    """Stands in for the kernel: takes the batch, answers with prepared ACKs."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.replies.pop(0)


def test_send_raises_on_the_first_refused_request_with_the_kernels_reason() -> None:
    sock = FakeSocket([ack(1, 0) + ack(2, -22, "Nexthop has invalid gateway"), ack(3, -19)])
    b = nb.Batch(sock, "x-vm")
    b.link_up(1, "lo")
    b.add_route("default", "10.0.0.1", None, None, "x-v1")
    b.link_up(2, "x-v1")
    with pytest.raises(nb.LabError) as err:
        b.send()
    assert len(sock.sent) == 1  # one write for the whole batch
    assert str(err.value) == ("namespace x-vm: cannot add route default via 10.0.0.1: "
                              "Nexthop has invalid gateway")
    assert len(b) == 0


def test_send_tolerates_an_address_that_is_already_there() -> None:
    sock = FakeSocket([ack(1, -17)])
    b = nb.Batch(sock, "x-vm")
    b.add_address(2, "192.168.10.11/24", "x-v1")
    b.send()  # EEXIST for an address: no error
    assert len(sock.sent) == 1 and len(b) == 0
    # only EEXIST, only for an address: another error on the same request is raised
    refused = FakeSocket([ack(1, -19, "No such device")])
    other = nb.Batch(refused, "x-vm")
    other.add_address(2, "192.168.10.11/24", "x-v1")
    with pytest.raises(nb.LabError, match="No such device"):
        other.send()


def test_send_of_an_empty_batch_sends_nothing() -> None:
    sock = FakeSocket([])
    nb.Batch(sock, "x").send()
    assert sock.sent == []
