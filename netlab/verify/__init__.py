"""Connectivity and ARP checks of a lab's *current* state: `netlab validate`, demos, tests.

The checks derive what must hold from the state (netlab.verify.world), so that
they stay true in every state the lab can be in: at home, partial failover,
Ready to switch, Permanent failover, a cloud failover plan running its site at
the SP. Each check plans its targets first (a target is one report line: a
check seen from one node); the state alone decides some of them (SKIP, nothing
to test there), the rest are probed. Results come out as each batch finishes:
`select` filters, `run_targets` streams.

Modules: world (segments from the state), reach (neighbours, replicas,
published services), isolation (tenants apart, tunnels), gateway (the cloud
gateway's filter), addresses (one MAC per address on the wire), topology_tests
(the topology's `validate:` section),
results (CheckResult, exit status).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from netlab.errors import NetlabError, UnknownNode
from netlab.net import probes
from netlab.plan import Node
from netlab.verify.addresses import UNIQUE_CHECK
from netlab.verify.base import Check, Context, Target
from netlab.verify.gateway import GATEWAY_CHECK
from netlab.verify.isolation import ISOLATION_CHECK, TUNNEL_CHECK
from netlab.verify.reach import NEIGHBOURS_CHECK, PUBLISHED_CHECK, REPLICA_CHECK
from netlab.verify.results import (
    EXIT_FAILED,
    EXIT_NOTHING_TESTED,
    EXIT_PASSED,
    CheckResult,
    exit_code,
)
from netlab.verify.topology_tests import run_test, test_targets

__all__ = [
    "EXIT_FAILED", "EXIT_NOTHING_TESTED", "EXIT_PASSED", "CheckResult", "Context", "Target",
    "UnknownCheck", "UnknownNode", "check_names", "exit_code", "interface_mac",
    "neighbour_entry", "run_targets", "select", "validate",
]

BUILTIN: tuple[Check, ...] = (NEIGHBOURS_CHECK, REPLICA_CHECK, PUBLISHED_CHECK,
                              ISOLATION_CHECK, GATEWAY_CHECK, TUNNEL_CHECK, UNIQUE_CHECK)


# batches wait on processes, not the CPU; bounded so that a big topology's tests queue
MAX_THREADS = 16


class UnknownCheck(NetlabError):
    """--test names no check of this lab."""

    exit_code = 2


def check_names(ctx: Context) -> list[str]:
    """Every name --test accepts: topology tests, built-in checks and their families."""
    names = [t.name for t in ctx.plan.topology.validate_tests]
    names += [c.family for c in BUILTIN]
    names += [f"tunnel {key}" for key in ctx.plan.tunnels]
    return list(dict.fromkeys(names))


def select(ctx: Context, tests: Sequence[str] = (), nodes: Sequence[str] = (),
           builtin: bool = True) -> list[tuple[Check | None, Target]]:
    """The targets to run now, in report order, filtered by check name and node.

    A name matches a topology test or a built-in check (case does not matter);
    a node matches where a target runs, or the node a topology test names.
    """
    wanted = {t.casefold() for t in tests}
    known = {n.casefold() for n in check_names(ctx)}
    if unknown := sorted(wanted - known):
        raise UnknownCheck(f"no check named {', '.join(repr(u) for u in unknown)}; checks of "
                           f"lab {ctx.lab.name}: {', '.join(check_names(ctx))}")
    for node in nodes:
        ctx.plan.node(node)  # UnknownNode (exit 2) with the list of nodes
    chosen: list[tuple[Check | None, Target]] = []
    for test in ctx.plan.topology.validate_tests:
        chosen += [(None, t) for t in test_targets(ctx, test)]
    if builtin:
        chosen += [(check, t) for check in BUILTIN for t in check.targets(ctx)]

    def keep(check: Check | None, t: Target) -> bool:
        names = {t.name.casefold()} | ({check.family.casefold()} if check else set())
        where = {t.node} | ({t.job[1]} if check is None else set())
        return (not wanted or bool(names & wanted)) and (not nodes or bool(where & set(nodes)))

    return [(c, t) for c, t in chosen if keep(c, t)]


def _batches(selected: Iterable[tuple[Check | None, Target]]) -> list[tuple[Any, list[Target]]]:
    """Targets to probe, grouped: one batch per built-in check, one per topology test line."""
    batches: list[tuple[Any, list[Target]]] = []
    by_check: dict[str, list[Target]] = {}
    for check, t in selected:
        if t.result is not None:
            continue
        if check is None:
            batches.append((None, [t]))
        elif check.family not in by_check:
            by_check[check.family] = [t]
            batches.append((check, by_check[check.family]))
        else:
            by_check[check.family].append(t)
    return batches


def run_targets(ctx: Context, selected: list[tuple[Check | None, Target]]) -> Iterator[CheckResult]:
    """Results as they come: decided ones at once, then each batch as it finishes.

    Batches run side by side in threads (they wait on processes). Netlink work
    stays on this thread: the MACs the checks compare with are read first.
    """
    for _, t in selected:
        for netns, iface in t.macs:
            if (netns, iface) not in ctx.macs and t.result is None:
                ctx.macs[(netns, iface)] = probes.interface_mac(netns, iface)
    for _, t in selected:
        if t.result is not None:
            yield t.result
    batches = _batches(selected)
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(batches))) as pool:
        futures = [pool.submit(_run_batch, ctx, check, targets) for check, targets in batches]
        for future in as_completed(futures):
            yield from future.result()


def _run_batch(ctx: Context, check: Check | None, targets: list[Target]) -> list[CheckResult]:
    return check.run(ctx, targets) if check else [run_test(ctx, targets[0])]


def validate(lab: Any, tests: Sequence[str] = (), nodes: Sequence[str] = (),
             builtin: bool = True) -> tuple[list[CheckResult], int]:
    """Every selected check, run to the end: (results, exit status)."""
    ctx = Context.of(lab)
    results = list(run_targets(ctx, select(ctx, tests, nodes, builtin)))
    return results, exit_code(results)


# ----- for netlab demo: what a node sees, by node ----------------------------------------


def neighbour_entry(node: Node, address: str) -> dict[str, str] | None:
    """`node`'s ARP (neighbour) entry for `address`: which MAC it sends to now."""
    return probes.neighbour_entry(node.netns, address)


def interface_mac(netns: str, ifname: str) -> str:
    return probes.interface_mac(netns, ifname)

