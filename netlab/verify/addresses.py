"""Duplicate addresses on the wire: every address of every tenant LAN answered by one MAC.

The probe and its verdict are in netlab.orchestrator.conflicts (failover uses
them too); this check runs one probe per production LAN, all in one child
process, and records what it saw for `netlab status`.
"""

from __future__ import annotations

from netlab.net.probes import ArpJob, arp_answers, arp_probe_argv
from netlab.orchestrator import conflicts
from netlab.run import run_side_by_side
from netlab.verify.base import Check, Context, Target
from netlab.verify.results import CheckResult, failed, passed, skipped

UNIQUE = "one MAC per address"


def _targets(ctx: Context) -> list[Target]:
    found = []
    for key in ctx.plan.segments:
        tenant = key.split("/", 1)[0]
        if tenant not in ctx.plan.topology.tenants:
            continue  # inet, sp/core and the cloud networks are not production LANs
        description = f"every address on {key} is answered by exactly one MAC"
        probe = conflicts.lan_probe(ctx.plan, ctx.state, key)
        if probe is None:
            found.append(Target(UNIQUE, key, description, result=skipped(
                UNIQUE, key, f"no powered-on node on {key} to probe from")))
            continue
        found.append(Target(UNIQUE, key, description, job=probe,
                            macs=tuple(probe.interfaces)))
    return found


def _run(ctx: Context, targets: list[Target]) -> list[CheckResult]:
    jobs = [ArpJob(t.job.netns, t.job.iface, a) for t in targets for a in t.job.addresses]
    done = run_side_by_side({"arp": (None, arp_probe_argv(jobs))}, timeout=30)["arp"]
    answers = arp_answers(jobs, done.returncode, done.stdout, done.stderr)
    results, start = [], 0
    for t in targets:
        probe: conflicts.LanProbe = t.job
        mine = answers[start:start + len(probe.addresses)]
        start += len(probe.addresses)
        errors = [a.error for a in mine if a.error]
        if errors:
            results.append(failed(UNIQUE, t.node, f"cannot probe ARP from {probe.prober}: "
                                  f"{errors[0]}"))
            continue
        seen = conflicts.conflicts_of(probe, mine, ctx.macs)
        conflicts.forget(probe, seen)
        conflicts.record(ctx.lab, probe.key, seen, by="validate")
        if seen:
            results.append(failed(UNIQUE, t.node, "IP conflict: " + "; ".join(
                conflicts.describe(c) for c in seen), conflicts=seen))
        else:
            results.append(passed(UNIQUE, t.node, f"from {probe.prober}: each of "
                                  f"{len(probe.addresses)} addresses is answered by at most "
                                  "one MAC"))
    return results


UNIQUE_CHECK = Check(UNIQUE, _targets, _run)
