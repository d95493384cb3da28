"""Links, addresses and routes over a namespace's netlink socket."""

from __future__ import annotations

import os
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING

from netlab.errors import LabError
from netlab.net import pyroute
from netlab.net.namespaces import NETNS_DIR

if TYPE_CHECKING:
    from pyroute2 import IPRoute

RT_SCOPE_NOWHERE = 255


def index_of(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"interface {ifname} does not exist")
    return found[0]


def add_bridge(ipr: IPRoute, name: str) -> int:
    # forward_delay 0: a lab bridge has no loops to learn about, and ports must
    # forward at once so that failover is not held up by STP listening states.
    _netlink(
        ipr.link, "add", ifname=name, kind="bridge", br_forward_delay=0, br_stp_state=0,
        br_mcast_snooping=0,
    )
    index = index_of(ipr, name)
    ipr.link("set", index=index, state="up")
    return index


def add_veth_to_bridge(
    node: IPRoute,
    node_ifname: str,
    node_netns: str,
    segment: IPRoute,
    bridge_ifname: str,
    bridge_index: int,
    up: bool = True,
) -> int:
    """Create a veth whose bridge end is enslaved and up, its other end in the node.

    Created from the segment's side so that master and state go in the same
    request; `peer=` takes netlink attributes only (docs/architecture.md#facts), so the node's
    end is brought up by its own socket. Returns the node end's index.
    """
    fd = os.open(NETNS_DIR / node_netns, os.O_RDONLY)
    try:
        _netlink(
            segment.link, "add", ifname=bridge_ifname, kind="veth", master=bridge_index,
            state="up", peer={"ifname": node_ifname, "net_ns_fd": fd},
        )
    finally:
        os.close(fd)
    index = index_of(node, node_ifname)
    if up:
        node.link("set", index=index, state="up")
    return index


def set_link_state(ipr: IPRoute, ifname: str, up: bool) -> None:
    ipr.link("set", index=index_of(ipr, ifname), state="up" if up else "down")


def link_is_up(ipr: IPRoute, ifname: str) -> bool:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        return False
    link = ipr.get_links(found[0])[0]
    return bool(link["flags"] & 1)


def add_address(
    ipr: IPRoute, ifname: str, cidr: str, no_prefix_route: bool = False, index: int | None = None
) -> None:
    iface = IPv4Interface(cidr)
    kwargs = {"flags": pyroute.IFA_F_NOPREFIXROUTE} if no_prefix_route else {}
    try:
        ipr.addr(
            "add", index=index or index_of(ipr, ifname), address=str(iface.ip),
            prefixlen=iface.network.prefixlen, **kwargs,
        )
    except pyroute.NetlinkError as exc:
        if exc.code != 17:  # already there: bring-up is idempotent
            raise LabError(f"cannot add {cidr} to {ifname}: {exc}") from None


def add_route(
    ipr: IPRoute,
    dst: str,
    via: str | None = None,
    dev: str | None = None,
    table: int | None = None,
    replace: bool = True,
) -> None:
    kwargs: dict = {}
    if dst != "default":
        kwargs["dst"] = dst
    else:
        kwargs["dst"] = "0.0.0.0/0"
    if via:
        kwargs["gateway"] = via
    if dev:
        kwargs["oif"] = index_of(ipr, dev)
        if not via:
            kwargs["scope"] = "link"
    if table:
        kwargs["table"] = table
    try:
        ipr.route("replace" if replace else "add", **kwargs)
    except pyroute.NetlinkError as exc:
        raise LabError(f"cannot add route {dst} via {via or dev}: {exc}") from None


def delete_route(ipr: IPRoute, dst: str, table: int | None = None) -> None:
    # scope "nowhere" matches a route of any scope; without it the kernel looks for a
    # universe-scope route and a scope-link (device) route is never found
    kwargs: dict = {"dst": "0.0.0.0/0" if dst == "default" else dst, "scope": RT_SCOPE_NOWHERE}
    if table:
        kwargs["table"] = table
    try:
        ipr.route("del", **kwargs)
    except pyroute.NetlinkError as exc:
        if exc.code not in (3, 2):  # ESRCH / ENOENT: not there, which is what we want
            raise


def add_rule(ipr: IPRoute, iifname: str, table: int, priority: int) -> None:
    try:
        ipr.rule("add", iifname=iifname, table=table, priority=priority)
    except pyroute.NetlinkError as exc:
        if exc.code != 17:
            raise


def delete_rule(ipr: IPRoute, iifname: str, table: int, priority: int) -> None:
    try:
        ipr.rule("del", iifname=iifname, table=table, priority=priority)
    except pyroute.NetlinkError as exc:
        if exc.code not in (2, 3):
            raise


def interfaces(ipr: IPRoute) -> list[dict]:
    """name, MAC, state and IPv4 addresses of every interface but lo."""
    addresses: dict[int, list[str]] = {}
    for addr in ipr.get_addr(family=2):
        addresses.setdefault(addr["index"], []).append(
            f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"
        )
    found = []
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        if name == "lo":
            continue
        found.append(
            {
                "name": name,
                "mac": link.get_attr("IFLA_ADDRESS"),
                "state": "up" if link["flags"] & 1 else "down",
                "mtu": link.get_attr("IFLA_MTU"),
                "addresses": addresses.get(link["index"], []),
            }
        )
    return found


def _netlink(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except pyroute.NetlinkError as exc:
        name = kwargs.get("ifname", "")
        if exc.code == 17:
            reason = f"interface {name} already exists (a leftover? try 'netlab cleanup')"
        elif exc.code == 34:
            reason = f"interface name {name!r} is too long for the kernel (15 characters)"
        else:
            reason = f"netlink: cannot create {name}: {exc}"
        raise LabError(reason) from None
