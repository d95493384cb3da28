"""Failover benchmark: recovery time of `netlab failover` and wall time of `netlab undo`.

Its own lab (``f<hex>``) in a temporary NETLAB_STATE_DIR:

- acme/web alone, N runs of failover + undo: p50/min/max of the CLI's
  ``recovery_seconds`` (command start to the first reply from the tenant side,
  NEA pair power-on included) and of the undo command's wall time;
- 1, 5 (acme/web, db, app, globex/web, erp: several tenants in one command) and
  all static replicas at once: recovery time of one command.

Goal: recovery < 0.5 s for one VM including NEA power-on.

Run as root::

    .venv/bin/python benchmarks/failover.py [--runs 10] [--results benchmarks/RESULTS.md]

The lab and its state directory are removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from common import (
    ScratchLab,
    add_results_option,
    is_root,
    measure_in,
    report_header,
    write_report,
)

GOAL_SECONDS = 0.5


class Bench(ScratchLab):
    def __init__(self) -> None:
        super().__init__("f", "fo")

    def failover(self, vms: list[str]) -> float:
        result = json.loads(self.cli("failover", *vms, "--json").stdout)
        if result["recovery_seconds"] is None:
            raise RuntimeError(f"failover of {vms} was not proven: {result['warnings']}")
        return float(result["recovery_seconds"])

    def undo(self, vms: list[str]) -> float:
        started = time.monotonic()
        self.cli("undo", "--yes", *vms)
        return time.monotonic() - started

    def static_vms(self) -> list[str]:
        status = json.loads(self.cli("status", "--json").stdout)
        return [v["name"] for v in status["vms"] if v["replica"]]


def measure(bench: Bench, runs: int) -> str:
    bench.cli("up", "--lab", bench.lab)
    bench.cli("vm", "fail", "acme/web")
    recovery, undo = [], []
    for _ in range(runs):
        recovery.append(bench.failover(["acme/web"]))
        undo.append(bench.undo(["acme/web"]))
    every = bench.static_vms()
    five = ["acme/web", "acme/db", "acme/app", "globex/web", "globex/erp"]
    groups = [("1 VM (acme/web)", ["acme/web"]), ("5 VMs (2 tenants)", five),
              (f"all {len(every)} static", every)]
    rows = []
    for label, vms in groups:
        rows.append((label, bench.failover(vms), bench.undo(vms)))
    p50 = statistics.median(recovery)
    lines = [
        *report_header("failover.py"),
        f"runs:     {runs} x (failover + undo) of acme/web, its source VM failed",
        "",
        "acme/web            p50      min      max",
        f"recovery        {p50:7.3f}s {min(recovery):7.3f}s {max(recovery):7.3f}s",
        f"undo (wall)     {statistics.median(undo):7.3f}s {min(undo):7.3f}s {max(undo):7.3f}s",
        "",
        "at once               recovery   undo (wall)",
    ]
    lines += [f"{label:<20} {rec:8.3f}s  {und:8.3f}s" for label, rec, und in rows]
    verdict = "met" if p50 < GOAL_SECONDS else "NOT met"
    lines += ["", "goals:",
              f"  recovery < {GOAL_SECONDS} s for one VM incl. NEA power-on: "
              f"p50 {p50:.3f} s -> {verdict}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    add_results_option(parser, "Failover")
    args = parser.parse_args()
    if not is_root("failover.py"):
        return 2
    bench = Bench()
    report = measure_in(bench, "failover.py", lambda: measure(bench, args.runs))
    if report is None:
        return 130
    print(report)
    if args.results is not None:
        write_report(
            args.results, "Failover", "failover.py",
            "Recovery time is the CLI's `recovery_seconds` (command start to the first ping "
            "reply from the tenant side, NEA pair power-on included).",
            report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
