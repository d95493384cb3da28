"""Is an NEA pair's tunnel up, and if not, which hop is at fault: `status`, `validate`
and the web view ask here (a ping through the tunnel, `wg show`, the journal)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from netlab import wireguard
from netlab.lab import Lab
from netlab.lab_daemons import PROXY_ARP
from netlab.nea import _records, replicas_at_sp, tunnel_of
from netlab.plan import Tunnel
from netlab.processes import is_alive
from netlab.run import run

CONNECTED = "Connected"
FAILED = "Failed connectivity"
# How long `status` names a daemon of the pair that died and was restarted: the
# supervisor repairs it within a second, and an admin looking a little later should
# still learn that the tunnel broke.
RECENT_RESTART_SECONDS = 300
_FRESH_START_EVENTS = ("nea-up", "nea-down", "reconnected")  # restarts before these are old news


def probe(lab: Lab, tunnel: Tunnel, timeout: float = 1.0) -> bool:
    """One ping from the tenant NEA to the SP NEA's cloud address, through the tunnel."""
    node = lab.plan().nodes[tunnel.tenant_nea]
    done = run(
        ["ping", "-c", "1", "-W", str(max(1, int(timeout))), "-I", tunnel.tenant_wg,
         tunnel.sp_nea_address],
        netns=node.netns, check=False, timeout=timeout + 3,
    )
    return done.returncode == 0


def recent_restarts(lab: Lab, tunnel: Tunnel) -> list[dict[str, Any]]:
    """Supervisor restarts of the pair's daemons in the last RECENT_RESTART_SECONDS,
    since the pair was last powered on or reconnected (oldest first)."""
    names = {f"wireguard:{node}" for node in (tunnel.tenant_nea, tunnel.sp_nea)} | {PROXY_ARP}
    since = time.time() - RECENT_RESTART_SECONDS
    found: list[dict[str, Any]] = []
    for event in lab.dir.events():
        if event.get("time", 0) < since:
            continue
        if event.get("network") == tunnel.key and event.get("event") in _FRESH_START_EVENTS:
            found = []
        elif event.get("event") == "restarted" and event.get("process") in names:
            found.append({"process": event["process"], "time": event["time"]})
    return found


def connectivity(lab: Lab, key: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Connected / Failed connectivity of a pair, and which hop is at fault."""
    tunnel = tunnel_of(lab, key)
    state = state or lab.dir.read()
    info: dict[str, Any] = dict(state.get("neas", {}).get(tunnel.key, {"power": "off"}))
    plan = lab.plan()
    info["tenant_proxied"] = replicas_at_sp(plan, state, tunnel)
    if info.get("power") != "on":
        info["connectivity"] = "-"
        return info
    tenant_node = plan.nodes[tunnel.tenant_nea]
    dead = [
        rec.name for rec in _records(
            state, f"wireguard:{tunnel.tenant_nea}", f"wireguard:{tunnel.sp_nea}",
            PROXY_ARP,
        ) if not is_alive(rec)
    ]
    handshake = None
    with contextlib.suppress(Exception):
        handshake = wireguard.latest_handshake(tenant_node.netns, tunnel.tenant_wg)
    info["latest_handshake"] = handshake
    restarts = recent_restarts(lab, tunnel)
    info["recent_restarts"] = restarts
    if probe(lab, tunnel):
        info["connectivity"] = CONNECTED
        info["detail"] = "probe across the tunnel answered"
        if restarts:
            last = restarts[-1]
            info["detail"] += (
                f"; {last['process']} died and was restarted by the supervisor "
                f"{time.time() - last['time']:.0f} s ago"
                + (f" ({len(restarts)} restarts in {RECENT_RESTART_SECONDS // 60} min)"
                   if len(restarts) > 1 else "")
            )
        return info
    info["connectivity"] = FAILED
    if dead:
        info["detail"] = (f"not running: {', '.join(dead)} (the supervisor restarts it; "
                          "'netlab events' lists its restarts)")
        return info
    gateway = plan.topology.provider.gateway
    reach = run(["ping", "-c", "1", "-W", "1", str(gateway)], netns=tenant_node.netns,
                check=False, timeout=4)
    age = f"last handshake {time.time() - handshake:.0f} s ago" if handshake else "no handshake"
    if reach.returncode != 0:
        info["detail"] = (f"the tenant NEA cannot reach the cloud gateway {gateway} "
                          f"(tenant edge or internet segment down; {age})")
    else:
        info["detail"] = (f"the gateway {gateway} answers but nothing comes back through the "
                          f"tunnel: UDP {tunnel.tunnel_port} is blocked at the gateway or not "
                          f"forwarded to the SP NEA ({age})")
    return info
