"""The NEAs' links behave like an appliance's NICs rather than like function calls.

A veth hands each packet to its peer inside the sender's own system call, so
every hop of the tunnel path (bridge, edge NAT, gateway DNAT, bridge, SP NEA)
runs in wireguard-go's `sendmsg`, one 1.4 KB datagram at a time: Debian 12's
wireguard-go (0.0.20220316) has no GSO. On each NEA link this module makes

* the segment's end receive in a NAPI thread of its own, with GRO, and UDP GRO
  for forwarded datagrams (`rx-udp-gro-forwarding`, as recommended for Linux
  routers carrying VPN traffic): the receive path runs apart from the sender
  and coalesces what queued meanwhile, as a NIC's does;
* the NEA's end send MTU-size frames (TSO off, as on a wire; it also lets the
  peer's GRO take them) through a pfifo_fast qdisc, which since Linux 6.16 holds
  packets while the peer's ring is full instead of dropping them.

Measured with benchmarks/tunnel.py: TCP through the lab's tunnel 0.3 -> ~0.7
Gbit/s, from half of a bare wireguard-go pair to its level. A capture on a
segment shows coalesced packets larger than the MTU, as tcpdump does on any
host whose NIC does GRO.

Features are set with pyroute2's ethtool ioctls from inside the namespace; the
NAPI thread is a sysfs switch, and sysfs shows a namespace's devices only to a
mount made from inside it, so that one write runs under `ip netns exec`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from typing import Protocol

from netlab.net import pyroute
from netlab.net.namespaces import inside
from netlab.run import require_tool

RECEIVE_FEATURES = ("rx-gro", "rx-udp-gro-forwarding")


class NeaLink(Protocol):
    """One veth of an NEA: its end in the NEA, and the end enslaved to a segment's bridge.

    A protocol, so that the net layer needs no lab plan (plan.NeaLink fits it).
    """

    @property
    def netns(self) -> str: ...
    @property
    def ifname(self) -> str: ...
    @property
    def segment_netns(self) -> str: ...
    @property
    def segment_ifname(self) -> str: ...


def _is_tso(feature: str) -> bool:
    # every TCP segmentation offload the kernel has: tx-tcp-segmentation, -ecn-,
    # -mangleid-, tx-tcp6-..., and newer ones (6.18 added tx-tcp-accecn-segmentation)
    return feature.startswith("tx-tcp") and feature.endswith("-segmentation")


def _set_features(ifname: str, wanted: Callable[[str], bool | None],
                  expected: tuple[str, ...] = ()) -> list[str]:
    """Set ethtool features of `ifname` in the calling thread's namespace.

    `wanted(name)` gives a feature's value, None to leave it; returns the wanted
    features this kernel cannot set on the device, and `expected` ones it does not know.
    """
    ethtool = pyroute.IoctlEthtool(ifname)
    try:
        current = ethtool.get_features()
        missing = [name for name in expected if name not in current]
        for name in list(current.keys()):
            value = wanted(name)
            if value is None:
                continue
            if current.is_available(name):
                current[name] = value
            elif current.get_value(name) != value:
                missing.append(name)
        ethtool.set_features(current)
        return missing
    finally:
        ethtool.close()


def _set_qdisc(ifname: str) -> None:
    with pyroute.IPRoute() as ipr:
        ipr.tc("replace", "pfifo_fast", index=ipr.link_lookup(ifname=ifname)[0], handle=0x10000)


def tune_nea_links(links: Iterable[NeaLink]) -> Callable[[], list[str]]:
    """Tune every link (main thread only: it enters namespaces); the NAPI threads are
    switched on by processes left running: call the result to wait for them.

    The lab works without any of it, only slower, so failures come back as
    warnings (the result's return value), not as errors.
    """
    warnings: list[str] = []
    threaded: dict[str, list[str]] = {}
    for link in links:
        try:
            with inside(link.netns):
                missing = _set_features(link.ifname, lambda f: False if _is_tso(f) else None)
                _set_qdisc(link.ifname)
            with inside(link.segment_netns):
                missing += _set_features(
                    link.segment_ifname, lambda f: True if f in RECEIVE_FEATURES else None,
                    RECEIVE_FEATURES)
        except (OSError, pyroute.NetlinkError) as exc:
            warnings.append(f"{link.netns}/{link.ifname}: {exc}")
            continue
        if missing:
            warnings.append(f"{link.segment_ifname}: this kernel lacks {', '.join(missing)}")
        threaded.setdefault(link.segment_netns, []).append(link.segment_ifname)
    running = []
    if threaded:
        ip = require_tool("ip")
    for netns, ifnames in threaded.items():
        # GRO above gave each of these veths its NAPI instance; now it gets a thread
        script = "".join(f"echo 1 > /sys/class/net/{name}/threaded\n" for name in ifnames)
        running.append((netns, subprocess.Popen(
            [ip, "netns", "exec", netns, "sh", "-ec", script], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)))

    def wait() -> list[str]:
        for netns, proc in running:
            _, err = proc.communicate(timeout=30)
            if proc.returncode != 0:
                warnings.append(f"NAPI threads in {netns}: {err.strip() or 'failed'}")
        return [f"NEA link tuning: {w}; the tunnel works, only slower" for w in warnings]

    return wait
