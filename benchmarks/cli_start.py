"""Command start benchmark: CPU and wall time of one `netlab` command, start to exit.

Most netlab commands do little work of their own (status reads a state file, a
refusal reads a topology); what they cost is Python starting and importing what
they need. A test suite, a CI job or a script that polls `status` runs hundreds
of them, so this is measured against a bare Python start in the same run:

- ``python -c pass``: the interpreter alone (the floor);
- ``python -c "import pyroute2"``: what pyroute2's package import costs, which
  netlab pays only in commands that open a netlink socket (netlab.net.pyroute);
- ``netlab version``, a refusal (``failover acme/nosuch``), ``status --json`` and
  ``restore-points acme/web --json`` on a running default lab.

CPU is the child's user + system time (os.wait4), the median of N runs.

Run as root::

    .venv/bin/python benchmarks/cli_start.py [--runs 15] [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from common import (
    ScratchLab,
    add_results_option,
    is_root,
    measure_in,
    netlab_argv,
    report_header,
    write_report,
)


def one_run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(cpu seconds, wall seconds, exit status) of one run of `argv`."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, time.monotonic() - started, proc.returncode


def measure(lab: ScratchLab, runs: int) -> str:
    lab.cli("up", "--lab", lab.lab)
    python = sys.executable
    cases = [
        ("python -c pass", [python, "-c", "pass"], 0),
        ('python -c "import pyroute2"', [python, "-c", "import pyroute2"], 0),
        ("netlab version", [*netlab_argv(), "version"], 0),
        ("netlab failover acme/nosuch (refused)", [*netlab_argv(), "failover", "acme/nosuch"], 2),
        ("netlab status --json", [*netlab_argv(), "status", "--json"], 0),
        ("netlab restore-points acme/web --json",
         [*netlab_argv(), "restore-points", "acme/web", "--json"], 0),
    ]
    rows = []
    for label, argv, expected in cases:
        cpu, wall = [], []
        for _ in range(runs):
            spent, took, code = one_run(argv, lab.env)
            if code != expected:
                raise RuntimeError(f"{label}: exit {code}, expected {expected}")
            cpu.append(spent)
            wall.append(took)
        rows.append(f"{label:<42} {statistics.median(cpu):7.3f}s "
                    f"{statistics.median(wall):7.3f}s")
    return "\n".join([*report_header("cli_start.py"),  # after the runs: the load at end
                      f"runs:     {runs} of each, on a running default lab; medians", "",
                      f"{'command':<42} {'CPU':>8} {'wall':>8}", *rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    add_results_option(parser, "Command start")
    args = parser.parse_args()
    if not is_root("cli_start.py"):
        return 2
    lab = ScratchLab("c", "cli")
    report = measure_in(lab, "cli_start.py", lambda: measure(lab, args.runs))
    if report is None:
        return 130
    print(report)
    if args.results is not None:
        write_report(
            args.results, "Command start", "cli_start.py",
            "CPU and wall time of one command from start to exit, against a bare Python "
            "start in the same run.", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
