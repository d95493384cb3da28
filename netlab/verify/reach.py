"""Reachability checks: neighbours, replicas at their production address, a plan's services.

Each check follows the segments of netlab.verify.world: a replica in partial
failover is probed from its LAN at home and must answer ARP with the tenant
NEA's MAC; a replica of a running cloud failover plan is probed from the SP NEA
that holds its gateway address and must answer with its own MAC.
"""

from __future__ import annotations

from dataclasses import dataclass

from netlab.net.probes import ArpJob, arp_answers, arp_probe_argv, curl_argv, ping_argv
from netlab.orchestrator.cloud_plan import endpoints
from netlab.plan import Node, NodeKind
from netlab.run import run_side_by_side
from netlab.verify.base import Check, Context, Target
from netlab.verify.results import CheckResult, failed, passed, skipped
from netlab.verify.world import CLOUD, Endpoint, Segment, pair_on, power, running_plan

NEIGHBOURS = "reaches its neighbours"
REPLICA = "replica answers at its production address"
PUBLISHED = "published service answers"


# ----- neighbours -------------------------------------------------------------------------


def _neighbour_targets(ctx: Context) -> list[Target]:
    found = []
    for seg in ctx.segments:
        for src in seg.members:
            if not src.static:
                continue  # a DHCP VM is a destination; its lease may still be on its way
            wanted: dict[str, str] = {}  # address -> who answers there
            for e in seg.members:
                if e.address != src.address:
                    wanted.setdefault(e.address, e.name)
            if seg.gateway is not None:
                wanted.setdefault(seg.gateway.address, f"{seg.gateway.name} (gateway)")
            description = f"pings every node on {seg.label} and its gateway"
            if not wanted:
                found.append(Target(NEIGHBOURS, src.name, description, result=skipped(
                    NEIGHBOURS, src.name, f"nothing else answers on {seg.label} "
                    "(no other node powered on, no gateway)")))
            else:
                found.append(Target(NEIGHBOURS, src.name, description,
                                    job=(src.node.netns, wanted)))
    return found


def _neighbour_run(ctx: Context, targets: list[Target]) -> list[CheckResult]:
    jobs = {(t.node, a): (t.job[0], ping_argv(a)) for t in targets for a in t.job[1]}
    outcomes = run_side_by_side(jobs)
    results = []
    for t in targets:
        wanted = t.job[1]
        missing = [f"{who} {a}" for a, who in wanted.items() if outcomes[(t.node, a)].returncode]
        if missing:
            results.append(failed(NEIGHBOURS, t.node, f"no ping reply from {', '.join(missing)}"))
        else:
            reached = ", ".join(f"{who} {a}" for a, who in wanted.items())
            results.append(passed(NEIGHBOURS, t.node, f"reaches {reached}"))
    return results


NEIGHBOURS_CHECK = Check(NEIGHBOURS, _neighbour_targets, _neighbour_run)


# ----- replicas at their production address -----------------------------------------------


@dataclass(frozen=True)
class ReplicaProbe:
    replica: Endpoint
    prober: Node
    iface: str
    expected: tuple[str, str]  # (netns, iface) whose MAC must be the only answer
    expected_name: str
    cloud: bool


def _home_prober(seg: Segment, replica: Endpoint) -> Node | None:
    """A powered-on production VM with a static address on the LAN, not the replica's source."""
    source = replica.name.removesuffix("@sp")
    for e in seg.members:
        if (e.node.kind is NodeKind.VM and e.static and e.name != source
                and e.address != replica.address):
            return e.node
    return None


def _replica_targets(ctx: Context) -> list[Target]:
    found = []
    for seg in ctx.segments:
        tunnel = seg.tunnel
        for e in seg.members:
            if e.node.kind is not NodeKind.REPLICA or tunnel is None:
                continue
            if seg.where == CLOUD:
                sp = ctx.plan.nodes[tunnel.sp_nea]
                probe = ReplicaProbe(e, sp, tunnel.sp_cloud_port,
                                     (e.node.netns, e.node.port.name), f"{e.name} itself", True)
                description = (f"from {sp.name} (the site's gateway): ping, ARP with the "
                               "replica's own MAC, HTTP")
            else:
                prober = _home_prober(seg, e)
                description = (f"from a VM on {seg.key}: ping, ARP with the tenant NEA's MAC, "
                               "HTTP, through the tunnel")
                if prober is None:
                    found.append(Target(REPLICA, e.name, description, result=skipped(
                        REPLICA, e.name, f"no powered-on VM with a static address on "
                        f"{seg.key} to probe from")))
                    continue
                nea = ctx.plan.nodes[tunnel.tenant_nea]
                probe = ReplicaProbe(e, prober, prober.port.name,
                                     (nea.netns, tunnel.tenant_lan_port),
                                     f"the tenant NEA {nea.name}", False)
            found.append(Target(REPLICA, e.name, description, job=probe,
                                macs=(probe.expected,)))
    return found


def _replica_run(ctx: Context, targets: list[Target]) -> list[CheckResult]:
    probes: list[ReplicaProbe] = [t.job for t in targets]
    jobs = {}
    for p in probes:
        a = p.replica.address
        jobs[(p.replica.name, "ping")] = (p.prober.netns, ping_argv(a, count=2))
        jobs[(p.replica.name, "curl")] = (p.prober.netns, curl_argv(f"http://{a}/"))
    # one child process probes ARP for all of them, beside the pings and curls
    arp_jobs = [ArpJob(p.prober.netns, p.iface, p.replica.address) for p in probes]
    jobs["arp"] = (None, arp_probe_argv(arp_jobs))
    outcomes = run_side_by_side(jobs)
    arp = outcomes["arp"]
    answers = arp_answers(arp_jobs, arp.returncode, arp.stdout, arp.stderr)
    return [_replica_verdict(ctx, p, answer.macs, answer.error,
                             outcomes[(p.replica.name, "ping")].returncode == 0,
                             outcomes[(p.replica.name, "curl")].returncode == 0)
            for p, answer in zip(probes, answers, strict=True)]


def _replica_verdict(ctx: Context, p: ReplicaProbe, macs: list[str], error: str,
                     pinged: bool, served: bool) -> CheckResult:
    e, where = p.replica, f"from {p.prober.name}"
    want = ctx.macs[p.expected]
    details = {"prober": p.prober.name, "macs": macs, "expected_mac": want}
    path = "on the cloud network" if p.cloud else "through the tunnel"
    if error:
        return failed(REPLICA, e.name, f"cannot probe ARP {where}: {error}", **details)
    if len(macs) > 1:
        source = e.name.removesuffix("@sp")
        return failed(REPLICA, e.name, f"IP conflict: {len(macs)} MACs answer ARP for "
                      f"{e.address} {where}: {', '.join(macs)}; the source {source} still "
                      f"answers (disconnect it: 'netlab vm fail {source}')", **details)
    if macs != [want]:
        got = ", ".join(macs) or "nobody"
        hint = ""
        if not p.cloud and not pair_on(ctx.state, f"{e.node.tenant}/{e.node.network}"):
            hint = f"; its NEA pair is off ('netlab nea up {e.node.tenant}')"
        return failed(REPLICA, e.name, f"ARP for {e.address} {where} answered by {got}, not "
                      f"by {p.expected_name} ({want}){hint}", **details)
    if not pinged:
        return failed(REPLICA, e.name, f"{e.address} answers ARP but not ping {where} {path}",
                      **details)
    if not served:
        return failed(REPLICA, e.name, f"{e.address} answers ping but http://{e.address}/ "
                      f"does not answer {where}", **details)
    return passed(REPLICA, e.name, f"{where}: {e.address} answers {path}; the ARP answer "
                  f"carries the MAC of {p.expected_name} ({want})", **details)


REPLICA_CHECK = Check(REPLICA, _replica_targets, _replica_run)


# ----- a running plan's published services ---------------------------------------------------


def _published_targets(ctx: Context) -> list[Target]:
    found = []
    edges = [n for n in ctx.plan.nodes.values() if n.kind is NodeKind.EDGE]
    for tenant, fp in ctx.plan.topology.failover_plans.items():
        if not running_plan(ctx.plan, ctx.state, tenant):
            continue
        outside = [n for n in edges if n.tenant != tenant and power(ctx.state, n.name) == "on"]
        for e in endpoints(ctx.plan, tenant, fp):
            node = f"{e.vm}@sp"
            description = f"{e.public}:{e.public_port}/{e.protocol} answers from the internet"
            if e.protocol != "tcp" or e.port != 80:
                continue  # the VMs' workload serves HTTP on 80 only: nothing else to ask
            if not outside:
                found.append(Target(PUBLISHED, node, description, result=skipped(
                    PUBLISHED, node, "no powered-on edge of another tenant to ask from")))
                continue
            found.append(Target(PUBLISHED, node, description, job=(outside[0], e)))
    return found


def _published_run(ctx: Context, targets: list[Target]) -> list[CheckResult]:
    jobs = {t.node: (t.job[0].netns, curl_argv(f"http://{t.job[1].public}:"
                                               f"{t.job[1].public_port}/"))
            for t in targets}
    outcomes = run_side_by_side(jobs)
    results = []
    for t in targets:
        prober, e = t.job
        url = f"http://{e.public}:{e.public_port}/"
        page = outcomes[t.node]
        vm = e.vm.split("/", 1)[1]
        if page.returncode != 0:
            results.append(failed(PUBLISHED, t.node, f"{url} does not answer {prober.name}"))
        elif f"vm {vm}" not in page.stdout:
            results.append(failed(PUBLISHED, t.node, f"{url} serves {page.stdout.strip()[:60]!r}"
                                  f", not {e.vm}'s page"))
        else:
            results.append(passed(PUBLISHED, t.node, f"{prober.name} gets {e.vm}'s page at "
                                  f"{url} (DNAT at sp/cgw and the SP NEA)"))
    return results


PUBLISHED_CHECK = Check(PUBLISHED, _published_targets, _published_run)
