"""Application checks of a bubble's VMs: run them, wait for them at boot.

Each check runs from the proxy of the VM's network, inside the bubble (the proxy
holds the production gateway's address there), so a check never leaves the
bubble. Checks of all VMs run side by side: a round takes as long as its
slowest check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from netlab.orchestrator.bubble_plan import check_argv, check_label, check_verdict, checks_of
from netlab.run import run_side_by_side
from netlab.topology.model import AppCheck, Topology

CHECK_TIMEOUT = 2.0  # seconds one check may take
POLL = 0.2  # seconds between rounds while `bubble up` waits for the VMs to boot


def planned(topology: Topology, record: dict[str, Any]) -> list[tuple[str, AppCheck, str, str]]:
    """(vm node, check, address, prober netns) of every check of a bubble, in VM order."""
    found = []
    for vm in record["order"]:
        info = record["vms"][vm]
        tenant, name = vm.split("/", 1)
        model = topology.tenants[tenant].vms[name]
        prober = record["networks"][info["network"]]["proxy_netns"]
        found += [(vm, c, info["address"], prober) for c in checks_of(model.checks)]
    return found


def run_checks(topology: Topology, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every check once: rows {"vm", "check", "passed", "reason", "seconds"}."""
    checks = planned(topology, record)
    jobs = {i: (prober, check_argv(c, address, CHECK_TIMEOUT))
            for i, (_, c, address, prober) in enumerate(checks)}
    started = time.monotonic()
    outcomes = run_side_by_side(jobs, timeout=CHECK_TIMEOUT + 3)
    seconds = time.monotonic() - started
    rows = []
    for i, (vm, check, _, _) in enumerate(checks):
        outcome = outcomes[i]
        reason = check_verdict(check, outcome.returncode, outcome.stdout)
        rows.append({"vm": vm, "check": check_label(check), "passed": reason is None,
                     "reason": reason, "seconds": round(seconds, 3)})
    return rows


def wait_for_checks(topology: Topology, record: dict[str, Any], timeout: float,
                    say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run the checks until all pass or `timeout` runs out; the last round's rows."""
    deadline = time.monotonic() + timeout
    told: list[str] = []
    while True:
        rows = run_checks(topology, record)
        if all(r["passed"] for r in rows) or time.monotonic() >= deadline:
            return rows
        waiting = sorted({r["vm"] for r in rows if not r["passed"]})
        if waiting != told:
            say(f"waiting up to {timeout:.0f} s for {', '.join(waiting)} to pass their checks")
            told = waiting
        time.sleep(POLL)
