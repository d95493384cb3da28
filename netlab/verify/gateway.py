"""The cloud gateway forwards only the tunnel ports: probes from each edge, counted by nft.

The counters live in a table of our own, added for the probe and removed after
it, so the lab's ruleset is never touched.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

from netlab.plan import REPLICATION_PORT, LabPlan
from netlab.run import run, run_side_by_side
from netlab.verify.base import Check, Context, Target
from netlab.verify.results import CheckResult, failed, passed, skipped
from netlab.verify.world import power

NAME = "gateway forwards only tunnel ports"
REPLICATION = "replication"  # the `tunnel` of the probe of TCP 6180, forwarded to sp/repl

# Source ports of the gateway probes: they tell our probes from anything else in
# the counters (the edge's masquerade keeps a free source port as it is).
PROBE_SPORT_BASE = 47310
_SENDER = """
import socket, sys, time
src, dst = sys.argv[1], sys.argv[2]
socks = []
for probe in sys.argv[3:]:
    proto, sport, dport = probe.split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, int(sport)))
    if proto == "udp":
        s.sendto(b"netlab-verify probe", (dst, int(dport)))
    else:
        s.setblocking(False)
        s.connect_ex((dst, int(dport)))
    socks.append(s)
time.sleep(0.3)
"""


@dataclass(frozen=True)
class GatewayProbe:
    edge: str
    source: str
    proto: str
    port: int
    sport: int
    tunnel: str | None  # the tunnel (or "replication") of this port: it must be forwarded

    @property
    def label(self) -> str:
        return f"{self.proto} {self.port}"


def gateway_probes(plan: LabPlan) -> list[GatewayProbe]:
    """From each edge: its tenant's tunnel ports (forwarded) and ports that must not be."""
    tunnel_ports = sorted(t.tunnel_port for t in plan.tunnels.values())
    listen = plan.topology.provider.nea_listen_port
    unregistered = max(tunnel_ports, default=6179) + 1
    # TCP on a tunnel port is refused too, except replication's TCP port (to sp/repl)
    tcp_on_tunnel = [p for p in tunnel_ports if p != REPLICATION_PORT][:1]
    refused = sorted({("udp", listen), ("udp", unregistered), ("udp", 53), ("tcp", 22),
                      ("tcp", 443)} | {("tcp", p) for p in tcp_on_tunnel}
                     - {("udp", p) for p in tunnel_ports})
    probes: list[GatewayProbe] = []
    for tenant, t in plan.topology.tenants.items():
        edge = f"{tenant}/edge"
        wanted: list[tuple[str, int, str | None]] = [
            ("udp", tunnel.tunnel_port, tunnel.key)
            for tunnel in plan.tunnels.values() if tunnel.tenant == tenant
        ]
        wanted.append(("tcp", REPLICATION_PORT, REPLICATION))
        wanted += [(proto, port, None) for proto, port in refused]
        for proto, port, key in wanted:
            sport = PROBE_SPORT_BASE + len(probes)
            probes.append(GatewayProbe(edge, str(t.edge), proto, port, sport, key))
    return probes


def _counter_table(table: str, probes: list[GatewayProbe]) -> str:
    def rules(tag: str) -> list[str]:
        return [
            f"    ip saddr {p.source} meta l4proto {p.proto} th sport {p.sport} "
            f'counter comment "{tag}{i}"'
            for i, p in enumerate(probes)
        ]

    # prerouting before the gateway's own filters and DNAT (a probe arrived at all);
    # forward after its filter chain (priority 0), which drops what it does not accept.
    return "\n".join([
        f"table ip {table} {{",
        "  chain prerouting {",
        "    type filter hook prerouting priority -350; policy accept;",
        *rules("in"),
        "  }",
        "  chain forward {",
        "    type filter hook forward priority 100; policy accept;",
        *rules("fw"),
        "  }",
        "}",
    ]) + "\n"


def _read_counters(netns: str, table: str) -> dict[str, int]:
    done = run(["nft", "-j", "list", "table", "ip", table], netns=netns, timeout=10)
    counts = {}
    for item in json.loads(done.stdout).get("nftables", []):
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        for expr in rule.get("expr", []):
            if "counter" in expr:
                counts[rule["comment"]] = int(expr["counter"]["packets"])
    return counts


def _targets(ctx: Context) -> list[Target]:
    found: dict[str, Target] = {}
    description = "UDP/TCP probes to the gateway: only the edge's tunnel ports are forwarded"
    for p in gateway_probes(ctx.plan):
        if p.edge in found:
            if found[p.edge].result is None:
                found[p.edge].job.append(p)
        elif power(ctx.state, p.edge) != "on":
            found[p.edge] = Target(NAME, p.edge, description, result=skipped(
                NAME, p.edge, f"not probed: {p.edge} is {power(ctx.state, p.edge)}"))
        else:
            found[p.edge] = Target(NAME, p.edge, description, job=[p])
    return list(found.values())


def _run(ctx: Context, targets: list[Target]) -> list[CheckResult]:
    gateway = ctx.plan.nodes["sp/cgw"]
    probes = [p for t in targets for p in t.job]
    table = f"netlab_verify_{os.getpid()}"
    run(["nft", "-f", "-"], netns=gateway.netns, input=_counter_table(table, probes))
    try:
        jobs = {}
        for t in targets:
            mine = t.job
            argv = [sys.executable, "-c", _SENDER, mine[0].source,
                    str(ctx.plan.topology.provider.gateway),
                    *(f"{p.proto}:{p.sport}:{p.port}" for p in mine)]
            jobs[t.node] = (ctx.plan.nodes[t.node].netns, argv)
        sent = run_side_by_side(jobs)
        time.sleep(0.1)  # the last probes cross two bridges after the sender exits
        counts = _read_counters(gateway.netns, table)
    finally:
        run(["nft", "delete", "table", "ip", table], netns=gateway.netns, check=False)
    return [_verdict(ctx, probes, counts, edge, outcome.returncode, outcome.stderr)
            for edge, outcome in sent.items()]


def _verdict(ctx: Context, probes: list[GatewayProbe], counts: dict[str, int], edge: str,
             returncode: int, stderr: str) -> CheckResult:
    public = str(ctx.plan.topology.provider.gateway)
    if returncode != 0:
        return failed(NAME, edge, "could not send the probes: "
                      + (stderr.strip().splitlines() or ["?"])[-1])
    good, bad, refused = [], [], []
    for i, p in enumerate(probes):
        if p.edge != edge:
            continue
        arrived, forwarded = counts.get(f"in{i}", 0) > 0, counts.get(f"fw{i}", 0) > 0
        if not arrived:
            bad.append(f"{p.label} probe never reached the gateway {public}")
        elif p.tunnel == REPLICATION and not forwarded:
            bad.append(f"{p.label} (replication) reaches {public} but is NOT forwarded to "
                       "sp/repl: replication jobs cannot reach the provider")
        elif p.tunnel == REPLICATION:
            good.append(f"{p.label} forwarded (replication)")
        elif p.tunnel is not None and not forwarded:
            bad.append(f"{p.label} (tunnel {p.tunnel}) reaches {public} but is NOT "
                       "forwarded to the SP NEA: the tunnel cannot come up")
        elif p.tunnel is not None:
            good.append(f"{p.label} forwarded (tunnel {p.tunnel})")
        elif forwarded:
            bad.append(f"{p.label} is forwarded, but it is no tunnel port")
        else:
            refused.append(p.label)
    if refused:
        good.append(f"{', '.join(refused)} not forwarded")
    return (failed if bad else passed)(NAME, edge, "; ".join(bad or good))


GATEWAY_CHECK = Check(NAME, _targets, _run)
