"""pyroute2, imported on first use.

pyroute2's package imports every netlink family it supports (asyncio, NDB, IPDB,
conntrack, nl80211, ...): about 0.2 s of CPU before a command does anything. Many
netlab commands (status, events, refusals, the supervisor between restarts) never
open a netlink socket, so the modules of netlab.net reach pyroute2 through this
module: `pyroute.IPRoute()`, `except pyroute.NetlinkError`. An `except` clause
names its class only when an exception reaches it, so nothing is imported early.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {  # name -> the module that defines it ("" : the name is a module itself)
    "IPRoute": "pyroute2.iproute.linux",
    "netns": "",
    "NetlinkError": "pyroute2.netlink.exceptions",
    "IoctlEthtool": "pyroute2.ethtool.ioctl",
    "IFA_F_NOPREFIXROUTE": "pyroute2.netlink.rtnl.ifaddrmsg",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module:
        value = getattr(importlib.import_module(module), name)
    else:
        value = importlib.import_module(f"pyroute2.{name}")
    globals()[name] = value  # the next lookup is a plain module attribute
    return value
