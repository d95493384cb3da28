"""Tenants stay apart, and every NEA pair that should carry traffic is Connected."""

from __future__ import annotations

from netlab import nea_health
from netlab.net.probes import curl_argv, ping_argv
from netlab.plan import Node, NodeKind
from netlab.run import run_side_by_side
from netlab.verify.base import Check, Context, Target
from netlab.verify.results import CheckResult, failed, passed, skipped
from netlab.verify.world import SITE, Segment, pair_on, plan_networks

ISOLATED = "tenants are isolated"
CONNECTED = "Connected"


def _page_of(body: str, tenant: str) -> bool:
    # the page a VM's disk serves names its tenant (netlab.storage.seed_disk)
    return f"tenant {tenant}," in body


def _isolation_prober(seg: Segment, avoid: set[str]) -> Node | None:
    """A static VM of the segment, one whose address no other tenant uses when possible."""
    static = [e for e in seg.members if e.static and e.node.kind is NodeKind.VM]
    pick = [e for e in static if e.address not in avoid] or static
    return pick[0].node if pick else None


def _isolation_targets(ctx: Context) -> list[Target]:
    topo = ctx.plan.topology
    found = []
    for seg in ctx.segments:
        if seg.where != SITE:
            continue
        t = topo.tenants[seg.tenant]
        others = [(f"{o}/{n}", str(v.address)) for o, ot in topo.tenants.items()
                  if o != seg.tenant for n, v in ot.vms.items() if v.address]
        prober = _isolation_prober(seg, {a for _, a in others})
        if prober is None:
            continue
        mine = {e.address: e for e in seg.members}
        taken = {str(v.address) for v in t.vms.values() if v.address} | set(mine)
        taken |= {str(n.gateway) for n in t.networks.values()}
        taken |= {str(n.nea.address) for n in t.networks.values() if n.nea}
        absent = [(owner, a) for owner, a in others if a not in taken]
        shared = [(owner.split("/")[0], a) for owner, a in others
                  if a in mine and a != prober.address]
        description = "addresses of other tenants do not answer, or answer with this tenant's page"
        if not absent and not shared:
            found.append(Target(ISOLATED, prober.name, description, result=skipped(
                ISOLATED, prober.name, "no address of another tenant to try")))
            continue
        found.append(Target(ISOLATED, prober.name, description,
                            job=(prober, seg.tenant, absent, shared)))
    return found


def _isolation_run(ctx: Context, targets: list[Target]) -> list[CheckResult]:
    jobs = {}
    for t in targets:
        prober, _, absent, shared = t.job
        for _, address in absent:
            jobs[(prober.name, "ping", address)] = (prober.netns, ping_argv(address))
        for _, address in shared:
            jobs[(prober.name, "curl", address)] = (prober.netns, curl_argv(f"http://{address}/"))
    outcomes = run_side_by_side(jobs)
    results = []
    for t in targets:
        prober, tenant, absent, shared = t.job
        good, bad = [], []
        for owner, address in absent:
            if outcomes[(prober.name, "ping", address)].returncode == 0:
                bad.append(f"{address} ({owner}, absent from {tenant}) answers")
            else:
                good.append(f"{address} ({owner}) does not answer")
        for other, address in shared:
            done = outcomes[(prober.name, "curl", address)]
            if done.returncode != 0:
                # unreachable is no leak between tenants; the other checks report it
                good.append(f"http://{address}/ does not answer (isolation not shown)")
            elif _page_of(done.stdout, other) or not _page_of(done.stdout, tenant):
                bad.append(f"http://{address}/ serves {done.stdout.strip()[:60]!r}, "
                           f"not {tenant}'s page")
            else:
                good.append(f"http://{address}/ serves {tenant}'s page, not {other}'s")
        if bad:
            results.append(failed(ISOLATED, prober.name, "; ".join(bad)))
        else:
            results.append(passed(ISOLATED, prober.name, "; ".join(good)))
    return results


ISOLATION_CHECK = Check(ISOLATED, _isolation_targets, _isolation_run)


# ----- tunnels ------------------------------------------------------------------------------


def _replicas_of(ctx: Context, key: str) -> list[str]:
    return [e.name for seg in ctx.segments if seg.key == key
            for e in seg.members if e.node.kind is NodeKind.REPLICA]


def _tunnel_targets(ctx: Context) -> list[Target]:
    found = []
    for key, tunnel in ctx.plan.tunnels.items():
        name, node = f"tunnel {key}", tunnel.tenant_nea
        description = "the WireGuard tunnel of the NEA pair is Connected"
        if pair_on(ctx.state, key):
            found.append(Target(name, node, description, job=key))
            continue
        at_sp = _replicas_of(ctx, key)
        if tunnel.network in plan_networks(ctx.plan, ctx.state, tunnel.tenant):
            result = skipped(name, node, f"NEA pair {key} is off: the cloud failover plan of "
                             f"{tunnel.tenant} runs the site at the SP, {tunnel.sp_nea} is its "
                             f"gateway {tunnel.gateway_address}")
        elif at_sp:
            result = failed(name, node, f"NEA pair {key} is off while {', '.join(at_sp)} "
                            f"run(s) at the SP: the LAN cannot reach them ('netlab nea up "
                            f"{tunnel.tenant}')")
        else:
            result = skipped(name, node, f"NEA pair {key} is off: no replica of it runs at "
                             "the SP")
        found.append(Target(name, node, description, result=result))
    return found


def _tunnel_run(ctx: Context, targets: list[Target]) -> list[CheckResult]:
    results = []
    for t in targets:
        info = nea_health.connectivity(ctx.lab, t.job, ctx.state)
        ok = info.get("connectivity") == CONNECTED
        message = f"{info.get('connectivity')}: {info.get('detail', '')}"
        results.append(passed(t.name, t.node, message) if ok else failed(t.name, t.node, message))
        results[-1].details["connectivity"] = info.get("connectivity")
    return results


TUNNEL_CHECK = Check("tunnel", _tunnel_targets, _tunnel_run)
