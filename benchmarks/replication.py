"""Replication benchmark: job time against the WAN rate, the RPO a schedule achieves.

Its own lab (``r<hex>``) in a temporary NETLAB_STATE_DIR, the default topology
with one change: globex/web replicates every `--interval` seconds on schedule and
globex/erp every three times that, over globex's link; acme replicates only when
told, so the transfers measured on acme's link share it with nothing.

1. Under each WAN profile of acme's link (`netlab wan set acme ...`): unshaped
   (the baseline of the same run), rate 100mbit, rate 10mbit, loss 1%, and where
   the kernel has netem, delay 50ms jitter 5ms and 10mbit with 50ms:
   - 20 MB of new data on acme/web (its VM stopped, so nothing else changes),
     replicated with `netlab replicate`: the job's time (snapshot, manifest,
     rsync through the gateway, verification), the transfer's time alone, bytes
     sent, throughput against the rate, and the time the rate predicts for the
     bytes as tbf counts them (payload + Ethernet/IP/TCP headers: 1514 bytes on
     the wire per 1448 of payload at MTU 1500);
   - `netlab failover acme/web`: recovery time (command start to first reply);
   - iperf3 TCP for 3 s from acme/db to the replica through the NEA tunnel,
     which crosses the same shaped link.
   Goal (issue 17): 20 MB at 10mbit in 16 s +-15%, at 100mbit about a tenth.
2. RPO: both globex VMs get new data at a steady rate (`--change-rate` MB/s each:
   a job carries interval x change rate) while globex's link is shaped to each
   rate in turn. The age of each VM's newest restore point (what a failover at
   that moment would lose) is sampled every 0.25 s for `--window` seconds after
   a warm-up of one long interval. With interval I and transfer time T the RPO
   goes from T (just after a job) to I + T (just before the next one's point).

Run as root::

    .venv/bin/python benchmarks/replication.py [--results benchmarks/RESULTS.md]

The lab and its state directory are removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from common import (
    ScratchLab,
    add_results_option,
    is_root,
    measure_in,
    report_header,
    wait_until_idle,
    write_report,
)

from netlab.net.tc import has_qdisc
from netlab.plan import build_plan
from netlab.storage import list_restore_points
from netlab.topology.loader import default_topology_text, parse_topology

CHANGE_BYTES = 20_000_000  # "20 MB of changes" (10^6: tc's mbit is 10^6 bit/s too)
WIRE = 1514 / 1448  # bytes tbf counts per byte of TCP payload (MTU 1500, TCP timestamps)
WEB = "acme/web"
REPLICA_IP = "192.168.10.11"  # acme/web's address, its replica's after the failover
IPERF_SECONDS = 3
IPERF_PORT = 5201
RPO_VMS = ("globex/web", "globex/erp")  # on schedule, every interval and every 3 intervals
RPO_RATES = [("100mbit", 100_000_000), ("10mbit", 10_000_000), ("2mbit", 2_000_000)]


@dataclass(frozen=True)
class Profile:
    label: str
    options: tuple[str, ...]  # of `netlab wan set acme`
    rate: int | None = None
    netem: bool = False


PROFILES = [
    Profile("unshaped", ()),
    Profile("100mbit", ("--rate", "100mbit"), 100_000_000),
    Profile("10mbit", ("--rate", "10mbit"), 10_000_000),
    Profile("loss 1%", ("--loss", "1%")),
    Profile("50ms+-5ms", ("--delay", "50ms", "--jitter", "5ms"), netem=True),
    Profile("10mbit,50ms", ("--rate", "10mbit", "--delay", "50ms"), 10_000_000, netem=True),
]


class Bench(ScratchLab):
    def __init__(self, interval: float) -> None:
        super().__init__("r", "repl")
        self.topology = self.state_dir / "topology.yaml"
        data = yaml.safe_load(default_topology_text())
        web, erp = (data["tenants"]["globex"]["vms"][vm.split("/")[1]] for vm in RPO_VMS)
        web["replication"] = {"interval": f"{interval:g}s"}
        erp["replication"] = {"interval": f"{3 * interval:g}s"}
        self.topology.write_text(yaml.safe_dump(data))
        self.plan = build_plan(self.lab, parse_topology(self.topology.read_text()))

    def netns(self, node: str) -> str:
        return self.plan.nodes[node].netns

    def disk(self, vm: str) -> Path:
        return self.state_dir / self.lab / "disks" / vm

    def shape(self, tenant: str, options: tuple[str, ...]) -> None:
        self.cli("wan", "clear", tenant)
        if options:
            self.cli("wan", "set", tenant, *options)

    def rpo_of(self, vm: str) -> float | None:
        """Age of the newest restore point, read as `netlab status` reads it."""
        points = list_restore_points(self.state_dir / self.lab / "sp" / vm)
        return time.time() - points[-1].created.timestamp() if points else None

    def iperf(self) -> float:
        """Mbit/s received by acme/web's replica from acme/db, through the NEA tunnel."""
        server = subprocess.Popen(
            ["ip", "netns", "exec", self.netns("acme/web@sp"), "iperf3", "-s", "-1", "-p",
             str(IPERF_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            listening = ["ip", "netns", "exec", self.netns("acme/web@sp"), "ss", "-Hltn",
                         f"sport = :{IPERF_PORT}"]
            deadline = time.monotonic() + 10
            while not subprocess.run(listening, capture_output=True, text=True).stdout.strip():
                if time.monotonic() > deadline:
                    raise RuntimeError("iperf3 server did not listen within 10 s")
                time.sleep(0.05)
            done = subprocess.run(
                ["ip", "netns", "exec", self.netns("acme/db"), "iperf3", "-c", REPLICA_IP,
                 "-p", str(IPERF_PORT), "-t", str(IPERF_SECONDS), "-J"],
                capture_output=True, text=True, timeout=IPERF_SECONDS + 60, check=False)
            report = json.loads(done.stdout or "{}")
            if "end" not in report:
                raise RuntimeError(f"iperf3: {report.get('error') or done.stderr.strip()}")
            return report["end"]["sum_received"]["bits_per_second"] / 1e6
        finally:
            server.terminate()  # our own child, by its pid
            server.wait(timeout=10)


def under_profile(bench: Bench, profile: Profile, number: int) -> dict:
    """Replicate 20 MB of changes, fail over and measure the tunnel, under one profile."""
    bench.shape("acme", profile.options)
    wait_until_idle(timeout=5)
    (bench.disk(WEB) / f"changes-{number}.bin").write_bytes(os.urandom(CHANGE_BYTES))
    [row] = json.loads(bench.cli("replicate", WEB, "--json").stdout)
    if "restore_point" not in row:
        raise RuntimeError(f"replication of {WEB} under {profile.label}: {row}")
    failover = json.loads(bench.cli("failover", WEB, "--json").stdout)
    try:
        tunnel = bench.iperf()
    finally:
        bench.cli("undo", "--yes", WEB)
    return {"job": row["seconds"], "transfer": row["transfer_seconds"],
            "sent": row["bytes_sent"], "recovery": failover["recovery_seconds"],
            "tunnel": tunnel}


def transfer(bench: Bench) -> tuple[list[str], dict[str, dict]]:
    bench.cli("vm", "stop", WEB)
    netem = has_qdisc(bench.netns("acme/edge"), "netem")
    lines = ["Under each profile of acme's link: 20 MB of changes to acme/web replicated with",
             "`netlab replicate` (job: the whole job; transfer: rsync alone), a failover of",
             "acme/web (recovery: command start to first reply), then iperf3 acme/db -> its",
             f"replica through the NEA tunnel ({IPERF_SECONDS} s).",
             "profile       job    transfer  bytes sent  throughput  of rate  wire predicts"
             "  recovery  tunnel"]
    found: dict[str, dict] = {}
    for number, profile in enumerate(PROFILES):
        if profile.netem and not netem:
            lines.append(f"{profile.label:<11} not measured: no netem (sch_netem) in this kernel")
            continue
        row = found[profile.label] = under_profile(bench, profile, number)
        mbit = row["sent"] * 8 / row["transfer"] / 1e6
        of_rate = predicts = "-"
        if profile.rate:
            of_rate = f"{mbit * 1e6 / profile.rate:.0%}"
            predicts = f"{row['sent'] * WIRE * 8 / profile.rate:.2f}s"
        recovery = f"{row['recovery']:.3f}s" if row["recovery"] is not None else "unproven"
        lines.append(f"{profile.label:<11} {row['job']:6.2f}s {row['transfer']:7.2f}s "
                     f"{row['sent']:11d} {mbit:7.1f}mbit {of_rate:>8} {predicts:>14} "
                     f"{recovery:>9} {row['tunnel']:6.1f}mbit")
    bench.shape("acme", ())
    lines += ["(loss drops a share of the packets the stack hands the link, before segmentation:",
              " a dropped TCP packet may be a GSO burst of up to 64 KB; over a sub-millisecond",
              " round trip TCP resends at once, so 1% loss costs little throughput here)"]
    return lines, found


def sample_rpo(bench: Bench, interval: float, change_rate: float, window: float,
               warmup: float) -> dict[str, list[float]]:
    """Write each VM's changes at its interval, and sample the RPOs after the warm-up."""
    every = dict(zip(RPO_VMS, (interval, 3 * interval), strict=True))
    next_change = dict.fromkeys(RPO_VMS, time.monotonic())
    written = dict.fromkeys(RPO_VMS, 0)
    samples: dict[str, list[float]] = {vm: [] for vm in RPO_VMS}
    started = time.monotonic()
    while time.monotonic() - started < warmup + window:
        for vm in RPO_VMS:
            if time.monotonic() >= next_change[vm]:
                written[vm] += 1
                path = bench.disk(vm) / f"change-{written[vm] % 3}.bin"
                path.write_bytes(os.urandom(int(change_rate * 1e6 * every[vm])))
                next_change[vm] += every[vm]
            age = bench.rpo_of(vm)
            if age is not None and time.monotonic() - started >= warmup:
                samples[vm].append(age)
        time.sleep(0.25)
    return samples


def rpo(bench: Bench, args: argparse.Namespace) -> list[str]:
    lines = ["", f"RPO over globex's link: globex/web replicates every {args.interval:g} s, "
             f"globex/erp every {3 * args.interval:g} s;",
             f"each VM changes {args.change_rate:g} MB/s (a job carries interval x that); "
             f"RPO sampled every 0.25 s for {args.window:g} s.",
             "T: the job's transfer at the rate (wire bytes / rate); predicted mean I/2 + T, "
             "max I + T.",
             "rate      vm           interval   T      RPO mean (pred.)   RPO max (pred.)"]
    for label, rate in RPO_RATES:
        bench.shape("globex", ("--rate", label))
        samples = sample_rpo(bench, args.interval, args.change_rate, args.window,
                             warmup=3 * args.interval)
        for vm, interval in zip(RPO_VMS, (args.interval, 3 * args.interval), strict=True):
            t = args.change_rate * 1e6 * interval * WIRE * 8 / rate
            got = samples[vm]
            if not got:
                lines.append(f"{label:<9} {vm:<12} {interval:6g}s  no restore point yet")
                continue
            lines.append(f"{label:<9} {vm:<12} {interval:6g}s {t:6.2f}s "
                         f"{statistics.mean(got):7.1f}s ({interval / 2 + t:5.1f}s) "
                         f"{max(got):8.1f}s ({interval + t:5.1f}s)")
    bench.shape("globex", ())
    return lines


def goals(found: dict[str, dict]) -> list[str]:
    ten, hundred, bare = found["10mbit"], found["100mbit"], found["unshaped"]
    verdict = "met" if abs(ten["job"] - 16) <= 16 * 0.15 else "NOT met"
    return [
        "", "goals:",
        f"  20 MB at 10mbit in 16 s +-15%: job {ten['job']:.2f} s -> {verdict}",
        f"  at 100mbit about a tenth: job {hundred['job']:.2f} s = 1/"
        f"{ten['job'] / hundred['job']:.1f} of 10mbit's; transfer alone "
        f"{hundred['transfer']:.2f} s = 1/{ten['transfer'] / hundred['transfer']:.1f}",
        f"  (what does not scale with the rate: the job outside its transfer, "
        f"{bare['job'] - bare['transfer']:.2f} s unshaped, and each byte's headers on the wire,"
        f" x{WIRE:.3f})",
    ]


def measure(bench: Bench, args: argparse.Namespace) -> str:
    bench.cli("up", str(bench.topology))
    lines, found = transfer(bench)
    lines += rpo(bench, args)
    lines += goals(found)
    return "\n".join([*report_header("replication.py"), "", *lines]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=5.0,
                        help="globex/web's replication interval in s (globex/erp: 3x)")
    parser.add_argument("--change-rate", type=float, default=0.1,
                        help="MB of new data per second on each globex VM")
    parser.add_argument("--window", type=float, default=40.0,
                        help="seconds the RPO is sampled at each rate")
    add_results_option(parser, "Replication")
    args = parser.parse_args()
    if not is_root("replication.py"):
        return 2
    bench = Bench(args.interval)
    report = measure_in(bench, "replication.py", lambda: measure(bench, args))
    if report is None:
        return 130
    print(report, end="")
    if args.results is not None:
        write_report(
            args.results, "Replication", "replication.py",
            "Replication jobs go from the tenant edge through the cloud gateway (TCP 6180) "
            "to sp/repl's rsync daemon; `wan set --rate` shapes the edge's internet link "
            "(tbf; loss: netem where the kernel has it, else nftables). A job's time includes "
            "its snapshot, manifest, transfer and the receiver's verification.",
            report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
