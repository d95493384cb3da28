"""Power of a tenant's edge router: switching it off is how a lab loses a whole site.

With the edge off the tenant's LANs have no gateway, no DHCP and no way out, and
the tunnel of every NEA pair of the tenant (which goes through the edge's NAT)
is down: what a DR provider sees when a customer's site is gone, and the reason
to run a cloud failover plan (netlab.orchestrator.cloud_plan).
"""

from __future__ import annotations

from netlab.lab import Lab
from netlab.net import links
from netlab.net.namespaces import Netlink
from netlab.plan import Node
from netlab.processes import ProcessRecord, stop_process
from netlab.workloads import start_dhcp_server


def _dhcp_names(lab: Lab, edge: Node) -> list[str]:
    return [f"dnsmasq:{s.tenant}/{s.network}" for s in lab.plan().dhcp_servers
            if s.tenant == edge.tenant]


def edge_power(lab: Lab, edge: Node, action: str) -> str:
    """start / stop / fail an edge router: its ports and its DHCP servers."""
    if action == "start":
        with Netlink() as nl:
            for port in edge.ports:
                links.set_link_state(nl[edge.netns], port.name, True)
        state = lab.dir.read()
        logs, run_dir = lab.dir.sub("logs"), lab.dir.sub("run", 0o700)
        for server in lab.plan().dhcp_servers:
            name = f"dnsmasq:{server.tenant}/{server.network}"
            if server.tenant != edge.tenant or name in state.get("processes", {}):
                continue
            rec = start_dhcp_server(name, server, run_dir, logs)
            with lab.dir.update() as now:
                now.setdefault("processes", {})[name] = rec.to_dict() | {"supervised": True}
        power = "on"
    else:
        # Out of the state first, so that the supervisor does not start them again.
        with lab.dir.update() as state:
            records = [state.get("processes", {}).pop(name, None)
                       for name in _dhcp_names(lab, edge)]
        for data in records:
            if data:
                stop_process(ProcessRecord.from_dict(data), timeout=0.0 if action == "fail"
                             else 2.0)
        with Netlink() as nl:
            for port in edge.ports:
                links.set_link_state(nl[edge.netns], port.name, False)
        power = "failed" if action == "fail" else "off"
    with lab.dir.update() as state:
        state.setdefault("nodes", {})[edge.name] = {"power": power}
    return power
