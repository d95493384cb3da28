"""Provider scale: labs of T tenants x 10 static VMs, each tenant on one /16 network.

For each size (default 10, 50 and 100 tenants), in one run:

- `netlab up` against `ip -batch` of the same namespaces, bridges, veths, addresses
  and routes (bringup.py's baseline), and `netlab down` (nothing may be left);
- `netlab failover` of ONE VM (t0/vm0) and its `undo`, then a failover of one VM per
  tenant in ONE command (T NEA pairs) and its `undo`: wall time of each command and
  the CLI's recovery time (command start to the first reply, each VM proven by its
  own). Goal: the T-VM failover within 15x of the one-VM failover, undo likewise;
- memory the appliances add: MemAvailable before and after the T pairs came on, and
  the RSS of netlab's processes that run for them (every wireguard-go and the lab's
  one proxy-ARP process), per NEA pair. Goal: <= 15 MiB per pair;
- ARP latency on the wire with every appliance on: from K replicas at once (one per
  tenant), who-has a production address at the far end of the /16 (x.x.255.200, a VM
  there), answered by each SP NEA through its prefix-with-exceptions set.

Labs of more than 64 pairs need more inotify instances than most hosts allow
wireguard-go (netlab.limits): the run uses `netlab up --raise-limits`, which puts the
old value back on `down`.

Run as root::

    .venv/bin/python benchmarks/scale.py [--tenants 10,50,100] [--results benchmarks/RESULTS.md]

Everything it creates (labs ``s<hex>``, baseline namespaces ``x<hex>-*``, its state
directory) is removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from arp import Prober, measure_burst, percentile, rss_kib
from bringup import Janitor, counts, measure_baseline
from common import (
    add_results_option,
    is_root,
    namespaces_with_prefix,
    netlab_argv,
    report_header,
    run_then_sweep,
    wait_until_idle,
    write_report,
)

from netlab.plan import build_plan
from netlab.topology import parse_topology

VMS = 10
FAR = "172.16.255.200"  # the last VM of every tenant: far from the others in the /16
GOAL_RATIO = 15.0
GOAL_MIB_PER_PAIR = 15.0


def topology(tenants: int, vms: int = VMS) -> str:
    """T tenants, one 172.16.0.0/16 network each (overlapping on purpose), an NEA pair each."""
    if not 1 <= tenants <= 200:
        raise ValueError("1 to 200 tenants")
    lines = ["name: scale", "internet: {subnet: 198.51.100.0/24}",
             "provider: {gateway: 198.51.100.10, core_subnet: 10.99.0.0/23, "
             "core_gateway: 10.99.0.1}", "tenants:"]
    for t in range(tenants):
        lines += [
            f"  t{t}:",
            f"    edge: 198.51.100.{11 + t}",
            "    networks:",
            "      lan:",
            "        subnet: 172.16.0.0/16",
            "        gateway: 172.16.0.1",
            f"        nea: {{address: 172.16.0.250, sp_address: 172.16.0.251, "
            f"sp_core_address: 10.99.{(11 + t) // 256}.{(11 + t) % 256}, "
            f"tunnel_port: {6180 + t}}}",
            "    vms:",
        ]
        addresses = [f"172.16.{v * 25}.{11 + v}" for v in range(vms - 1)] + [FAR]
        lines += [f"      vm{v}: {{network: lan, address: {a}}}" for v, a in enumerate(addresses)]
    return "\n".join(lines) + "\n"


class Lab:
    def __init__(self, env: dict[str, str], janitor: Janitor, tenants: int) -> None:
        self.env, self.tenants = env, tenants
        self.name = f"s{secrets.token_hex(3)}"
        janitor.labs.add(self.name)
        self.state = Path(env["NETLAB_STATE_DIR"]) / self.name / "state.json"

    def netlab(self, *args: str) -> tuple[float, dict]:
        started = time.perf_counter()
        done = subprocess.run([*netlab_argv(), *args, "--lab", self.name, "--json"],
                              env=self.env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"netlab {' '.join(args)}: {done.stderr.strip()[-800:]}")
        try:
            return elapsed, json.loads(done.stdout)
        except json.JSONDecodeError:
            return elapsed, {}

    def processes(self) -> dict[str, dict]:
        return json.loads(self.state.read_text()).get("processes", {})

    def appliance_rss_kib(self) -> int:
        return sum(rss_kib(p["pid"]) for name, p in self.processes().items()
                   if name.startswith("wireguard:") or name == "proxyarp")

    def netns(self, node: str) -> str:
        return f"{self.name}-{node.replace('/', '.')}"


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def appliance_memory(lab: Lab) -> dict:
    """What the T NEA pairs alone cost: powered off and on again in this process (the
    replicas keep running), MemAvailable and RSS read with the pairs off and on."""
    from netlab import nea
    from netlab.lab import Lab as NetlabLab

    os.environ["NETLAB_STATE_DIR"] = lab.env["NETLAB_STATE_DIR"]
    real = NetlabLab(lab.name)
    keys = [f"t{t}/lan" for t in range(lab.tenants)]
    nea.power_off(real, keys)
    time.sleep(1.0)
    avail_off, rss_off = mem_available_kib(), lab.appliance_rss_kib()
    started = time.perf_counter()
    nea.power_on(real, keys)
    power_on = time.perf_counter() - started
    time.sleep(1.0)
    return {"avail_drop_kib": avail_off - mem_available_kib(),
            "rss_kib": lab.appliance_rss_kib() - rss_off,
            "proxyarp_rss_kib": rss_kib(lab.processes()["proxyarp"]["pid"]),
            "power_on_seconds": power_on}


def arp_latency(lab: Lab, count: int, concurrent: int) -> dict:
    """Who-has FAR from `concurrent` replicas at once, each answered by its SP NEA."""
    from netlab.lab import Lab as NetlabLab

    os.environ["NETLAB_STATE_DIR"] = lab.env["NETLAB_STATE_DIR"]
    plan = NetlabLab(lab.name).plan()
    probers = []
    try:
        for t in range(lab.tenants):
            replica = plan.nodes[f"t{t}/vm0@sp"]
            tunnel = plan.tunnels[f"t{t}/lan"]
            done = subprocess.run(["ip", "-n", plan.nodes[tunnel.sp_nea].netns, "-j", "link",
                                   "show", "dev", tunnel.sp_cloud_port],
                                  capture_output=True, text=True, check=True)
            mac = json.loads(done.stdout)[0]["address"]
            probers.append(Prober(replica.netns, replica.port.name, mac, target=FAR))
        some = probers[:concurrent]
        measure_burst(some, "warm-up", 5 * len(some), 2.0, 0)
        burst = measure_burst(some, "burst", count, 2.0, 0.001)
        single = measure_burst(some[:1], "single", count // 2, 2.0, 0.001)
        back = answering_again_after_kill(lab, probers)
    finally:
        for prober in probers:
            prober.close()

    def row(r: object) -> dict:
        wire = r.wire_ns  # type: ignore[attr-defined]
        return {"sent": r.sent, "answered": r.answered,  # type: ignore[attr-defined]
                "wrong_mac": r.wrong_mac,  # type: ignore[attr-defined]
                "p50_ms": percentile(wire, 0.5) / 1e6 if wire else None,
                "p99_ms": percentile(wire, 0.99) / 1e6 if wire else None}
    return {"concurrent": min(concurrent, len(probers)), "burst": row(burst),
            "single": row(single), "after_kill": back}


def answering_again_after_kill(lab: Lab, probers: list[Prober]) -> dict:
    """SIGKILL the lab's proxy-ARP process; seconds until every SP appliance answers again
    (the supervisor restarts it and it relearns every set), asked by real ARP."""
    os.kill(lab.processes()["proxyarp"]["pid"], signal.SIGKILL)
    killed = time.monotonic()
    answered: set[int] = set()
    while len(answered) < len(probers) and time.monotonic() - killed < 20:
        waiting = [i for i in range(len(probers)) if i not in answered]
        got: set[int] = set()
        measure_burst([probers[i] for i in waiting], "after kill", len(waiting), 0.05, 0, got)
        answered |= {waiting[i] for i in got}
    return {"appliances": len(probers), "answering": len(answered),
            "seconds": round(time.monotonic() - killed, 3)}


def measure(tenants: int, env: dict[str, str], janitor: Janitor, args: argparse.Namespace,
            work: Path) -> dict:
    text = topology(tenants)
    path = work / f"scale-{tenants}.yaml"
    path.write_text(text)
    plan = build_plan("sizing", parse_topology(text))
    out: dict = {"tenants": tenants, "sizes": counts(plan)}
    wait_until_idle()
    out["baseline"] = measure_baseline(text, janitor)
    lab = Lab(env, janitor, tenants)
    wait_until_idle()
    out["up"], _ = lab.netlab("up", str(path), "--raise-limits")
    one, one_report = lab.netlab("failover", "t0/vm0")
    out["one"] = {"wall": one, "recovery": one_report.get("recovery_seconds")}
    out["one_undo"], _ = lab.netlab("undo", "t0/vm0")
    avail_before = mem_available_kib()
    vms = [f"t{t}/vm0" for t in range(tenants)]
    wall, report = lab.netlab("failover", *vms)
    out["all"] = {"wall": wall, "recovery": report.get("recovery_seconds")}
    time.sleep(1.0)  # let the page cache and the daemons settle before reading memory
    out["failover_avail_drop_kib"] = avail_before - mem_available_kib()
    out["memory"] = appliance_memory(lab)
    out["arp"] = arp_latency(lab, args.arp_count, args.concurrent)
    out["all_undo"], _ = lab.netlab("undo", *vms)
    out["down"], _ = lab.netlab("down")
    left = namespaces_with_prefix(f"{lab.name}-")
    if left:
        raise RuntimeError(f"down left {len(left)} namespaces of {lab.name}")
    janitor.labs.discard(lab.name)
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}ms"


def render(results: list[dict]) -> str:
    lines = ["Provider scale: T tenants x 10 static VMs, one 172.16.0.0/16 network each",
             *report_header("scale.py"), ""]
    header = (f"{'tenants':>7} {'ns':>5} {'up':>7} {'ip-batch':>8} {'down':>6} "
              f"{'fo 1':>6} {'fo T':>6} {'ratio':>6} {'undo 1':>6} {'undo T':>6} {'ratio':>6} "
              f"{'MiB/pair':>8} {'RSS/pair':>8} {'ARP p50':>8} {'ARP p99':>8}")
    lines += [header, "-" * len(header)]
    for r in results:
        pairs = r["tenants"]
        ratio = r["all"]["wall"] / r["one"]["wall"]
        undo_ratio = r["all_undo"] / r["one_undo"]
        avail = r["memory"]["avail_drop_kib"] / 1024 / pairs
        rss = r["memory"]["rss_kib"] / 1024 / pairs
        burst = r["arp"]["burst"]
        lines.append(
            f"{pairs:>7} {r['sizes']['namespaces']:>5} {r['up']:>6.2f}s "
            f"{r['baseline']['up']:>7.2f}s {r['down']:>5.2f}s {r['one']['wall']:>5.2f}s "
            f"{r['all']['wall']:>5.2f}s {ratio:>5.1f}x {r['one_undo']:>5.2f}s "
            f"{r['all_undo']:>5.2f}s {undo_ratio:>5.1f}x {avail:>8.1f} {rss:>8.1f} "
            f"{_ms(burst['p50_ms']):>8} {_ms(burst['p99_ms']):>8}")
    lines += ["", "fo 1 / fo T: wall time of `netlab failover` of one VM / of one VM per tenant "
              "(T NEA pairs) in one command; undo likewise.",
              "MiB/pair: MemAvailable drop when the T pairs are powered on again (replicas "
              "running), per pair; RSS/pair: RSS of every wireguard-go and the lab's one "
              "proxy-ARP process, per pair.",
              "ARP: who-has x.x.255.200 from K replicas at once, answered by their SP NEAs "
              "(wire timestamps)."]
    for r in results:
        arp, mem = r["arp"], r["memory"]
        lines.append(
            f"{r['tenants']} tenants: recovery 1 VM {r['one']['recovery'] or 0:.3f} s, "
            f"{r['tenants']} VMs {r['all']['recovery'] or 0:.3f} s (slowest VM's own first "
            "reply); "
            f"proxy-ARP process RSS {mem['proxyarp_rss_kib'] / 1024:.1f} MiB for "
            f"{2 * r['tenants']} appliances; {r['tenants']} pairs powered on together in "
            f"{mem['power_on_seconds']:.2f} s; whole failover MemAvailable drop "
            f"{r['failover_avail_drop_kib'] / 1024 / r['tenants']:.1f} MiB per VM; "
            f"after SIGKILL of the proxy-ARP process {arp['after_kill']['answering']}/"
            f"{arp['after_kill']['appliances']} SP appliances answered again within "
            f"{arp['after_kill']['seconds']:.2f} s; "
            f"ARP {arp['concurrent']} at once "
            f"{arp['burst']['answered']}/{arp['burst']['sent']} answered, one at a time "
            f"p50 {_ms(arp['single']['p50_ms'])} p99 {_ms(arp['single']['p99_ms'])}")
    biggest = results[-1]
    ratio = biggest["all"]["wall"] / biggest["one"]["wall"]
    undo_ratio = biggest["all_undo"] / biggest["one_undo"]
    per_pair = biggest["memory"]["avail_drop_kib"] / 1024 / biggest["tenants"]
    lines += ["", f"goals at {biggest['tenants']} tenants:",
              f"  failover of {biggest['tenants']} VMs within {GOAL_RATIO:.0f}x of one: "
              f"{ratio:.1f}x -> {'met' if ratio <= GOAL_RATIO else 'NOT met'}; undo "
              f"{undo_ratio:.1f}x -> {'met' if undo_ratio <= GOAL_RATIO else 'NOT met'}",
              f"  <= {GOAL_MIB_PER_PAIR:.0f} MiB per NEA pair (MemAvailable): {per_pair:.1f} MiB"
              f" -> {'met' if per_pair <= GOAL_MIB_PER_PAIR else 'NOT met'}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", default="10,50,100",
                        help="comma-separated lab sizes in tenants (default 10,50,100)")
    parser.add_argument("--arp-count", type=int, default=400, help="ARP requests per mode")
    parser.add_argument("--concurrent", type=int, default=10,
                        help="replicas asking at once in the ARP measurement (default 10)")
    add_results_option(parser, "Scale")
    args = parser.parse_args()
    if not is_root("scale.py"):
        return 2
    sizes = [int(x) for x in args.tenants.split(",") if x.strip()]
    work = Path(tempfile.mkdtemp(prefix="netlab-bench-scale-"))
    env = {**os.environ, "NETLAB_STATE_DIR": str(work / "state")}
    env.pop("NETLAB_LAB", None)
    janitor = Janitor(env, work)
    results = []

    def measure_all() -> list[dict]:
        for tenants in sizes:
            results.append(measure(tenants, env, janitor, args, work))
            print(f"{tenants} tenants measured", file=sys.stderr)
        return results

    if run_then_sweep("scale.py", measure_all, janitor.sweep) is None:
        return 130
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        print(render(results), end="")
    report = buffer.getvalue()
    print(report, end="")
    if args.results is not None:
        write_report(
            args.results, "Scale", "scale.py",
            "Generated labs of 10, 50 and 100 tenants x 10 static VMs, each tenant on one /16: "
            "bring-up against ip -batch, failover of one VM per tenant in one command against "
            "one VM, memory per NEA pair, ARP latency with every appliance on.", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
