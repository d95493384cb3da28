"""Replication benchmark: job time against the WAN rate, and the RPO a schedule achieves.

Its own lab (``r<hex>``) in a temporary NETLAB_STATE_DIR, the default topology
with one change: acme/db replicates every `--interval` seconds on schedule.

1. Transfer: 20 MB of new data on acme/web (its VM stopped, so nothing else
   changes), replicated with `netlab replicate` over the unshaped link (the
   baseline of the same run), then at `wan set acme --rate 100mbit` and
   `--rate 10mbit`. Reported: the job's time (snapshot, manifest, rsync through
   the gateway, verification), bytes sent, throughput against the configured
   rate, and the time the rate alone predicts (bytes x 8 / rate).
   Goal (issue 17): 20 MB at 10mbit in 16 s +-15%, at 100mbit about a tenth.
2. RPO: acme/db gets `--change-mb` of new data every interval while the link is
   shaped to each rate; the age of its newest restore point (what a failover at
   that moment would lose) is sampled every 0.25 s for `--window` seconds.
   With an interval I and a transfer time T the worst RPO is about I + T.

Run as root::

    .venv/bin/python benchmarks/replication.py [--results benchmarks/RESULTS.md]

The lab and its state directory are removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import (
    host_summary,
    machine_lines,
    replace_results_section,
    results_path,
    results_section,
    sigterm_as_keyboard_interrupt,
)

from netlab.storage import list_restore_points
from netlab.topology.loader import default_topology_text

CHANGE_BYTES = 20_000_000  # "20 MB of changes" (10^6: tc's mbit is 10^6 bit/s too)
RATES = [("unshaped", None), ("100mbit", 100_000_000), ("10mbit", 10_000_000)]
RPO_RATES = [("100mbit", 100_000_000), ("10mbit", 10_000_000), ("2mbit", 2_000_000)]


class Bench:
    def __init__(self) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="netlab-bench-repl-"))
        self.lab = f"r{secrets.token_hex(3)}"
        self.env = {**os.environ, "NETLAB_STATE_DIR": str(self.state_dir),
                    "NETLAB_LAB": self.lab}

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "netlab.cli", *args], env=self.env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              check=False, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"netlab {' '.join(args)}: {done.stderr.strip()}")
        return done

    def disk(self, vm: str) -> Path:
        return self.state_dir / self.lab / "disks" / vm

    def set_rate(self, rate: str | None) -> None:
        if rate is None:
            self.cli("wan", "clear", "acme")
        else:
            self.cli("wan", "set", "acme", "--rate", rate)

    def rpo_of(self, vm: str) -> float | None:
        """Age of the newest restore point, read as `netlab status` reads it."""
        points = list_restore_points(self.state_dir / self.lab / "sp" / vm)
        return time.time() - points[-1].created.timestamp() if points else None

    def remove(self) -> None:
        for verb in ("down", "cleanup"):
            subprocess.run([sys.executable, "-m", "netlab.cli", verb, "--lab", self.lab],
                           env=self.env, capture_output=True, check=False, timeout=120)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def topology(path: Path, interval: float) -> Path:
    data = yaml.safe_load(default_topology_text())
    data["tenants"]["acme"]["vms"]["db"]["replication"] = {"interval": f"{interval}s"}
    path.write_text(yaml.safe_dump(data))
    return path


def transfer(bench: Bench) -> list[str]:
    bench.cli("vm", "stop", "acme/web")
    lines = ["transfer of 20 MB of changes (acme/web), `netlab replicate`; then a failover",
             "of acme/web under the same profile (recovery: command start to first reply):",
             "link        job time  bytes sent   throughput  of rate  rate predicts  ratio"
             "  recovery"]
    baseline = None
    for number, (label, rate) in enumerate(RATES):
        bench.set_rate(None if rate is None else label)
        (bench.disk("acme/web") / f"changes-{number}.bin").write_bytes(os.urandom(CHANGE_BYTES))
        [row] = json.loads(bench.cli("replicate", "acme/web", "--json").stdout)
        seconds, sent = row["seconds"], row["bytes_sent"]
        mbit = sent * 8 / seconds / 1e6
        result = json.loads(bench.cli("failover", "acme/web", "--json").stdout)
        bench.cli("undo", "--yes", "acme/web")
        recovery = result["recovery_seconds"] or float("nan")
        if rate is None:
            baseline = seconds
            lines.append(f"{label:<10} {seconds:8.2f}s {sent:11d} {mbit:9.1f}mbit        -"
                         f"              -      - {recovery:8.3f}s")
            continue
        predicted = sent * 8 / rate
        lines.append(f"{label:<10} {seconds:8.2f}s {sent:11d} {mbit:9.1f}mbit "
                     f"{mbit * 1e6 / rate:7.0%} {predicted:13.2f}s {seconds / predicted:6.2f}"
                     f" {recovery:8.3f}s")
    bench.set_rate(None)
    lines.append(f"(baseline: the unshaped veth through the gateway, {baseline:.2f} s)")
    return lines


def rpo(bench: Bench, interval: float, change_mb: float, window: float) -> list[str]:
    lines = ["", f"RPO of acme/db: a job every {interval:g} s, {change_mb:g} MB of changes per "
             f"interval, sampled every 0.25 s for {window:g} s:",
             "link        transfer of the changes   RPO mean   RPO max   interval + transfer"]
    for label, rate in RPO_RATES:
        bench.set_rate(label)
        transfer_s = change_mb * 1e6 * 8 / rate
        samples: list[float] = []
        started = time.monotonic()
        next_change = started
        number = 0
        while time.monotonic() - started < window:
            if time.monotonic() >= next_change:
                number += 1
                path = bench.disk("acme/db") / f"change-{number % 3}.bin"
                path.write_bytes(os.urandom(int(change_mb * 1e6)))
                next_change += interval
            age = bench.rpo_of("acme/db")
            if age is not None:
                samples.append(age)
            time.sleep(0.25)
        lines.append(f"{label:<10} {transfer_s:18.2f}s {statistics.mean(samples):14.1f}s "
                     f"{max(samples):8.1f}s {interval + transfer_s:15.1f}s")
    bench.set_rate(None)
    return lines


def measure(bench: Bench, args: argparse.Namespace) -> str:
    bench.cli("up", str(topology(bench.state_dir / "topology.yaml", args.interval)))
    lines = [*machine_lines(), f"command:  python {' '.join(sys.argv)}", ""]
    lines += transfer(bench)
    lines += rpo(bench, args.interval, args.change_mb, args.window)
    ten = next(line for line in lines if line.startswith("10mbit"))
    seconds = float(ten.split()[1].rstrip("s"))
    verdict = "met" if abs(seconds - 16) <= 16 * 0.15 else "NOT met"
    lines += ["", "goals:", f"  20 MB at 10mbit in 16 s +-15%: {seconds:.2f} s -> {verdict}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--change-mb", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--results", type=results_path, default=None,
                        help="also write the report into this file's '## Replication' section")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/replication.py needs root", file=sys.stderr)
        return 1
    bench = Bench()
    with sigterm_as_keyboard_interrupt():
        try:
            report = measure(bench, args)
        except KeyboardInterrupt:
            print("interrupted; removing the lab", file=sys.stderr)
            return 130
        finally:
            bench.remove()
    print(report)
    if args.results is not None:
        section = results_section(
            "Replication",
            machine=f"{host_summary()}, {os.cpu_count()} CPUs",
            command=f".venv/bin/python benchmarks/replication.py --results {args.results}",
            about="Replication jobs go from the tenant edge through the cloud gateway (TCP 6180) "
            "to sp/repl's rsync daemon; `wan set --rate` shapes the edge's internet link (tbf). "
            "A job's time includes its snapshot, manifest, transfer and the receiver's "
            "verification.",
            report=report,
        )
        replace_results_section(args.results, "Replication", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
