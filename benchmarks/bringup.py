"""Bring-up benchmark: wall time of `netlab up` / `netlab down` against a plain `ip -batch`.

Two labs: the default lab (docs/architecture.md#the-default-lab) and a generated one of
100 VMs across 10 tenants (one network each, with its NEA pair, 10 static VMs, distinct
tunnel ports and SP core addresses). Each is measured N times (median reported) next to
a baseline that creates and deletes the same namespaces, bridges, veths, addresses and
routes (taken from the same plan) with iproute2 batches and nothing else: no sysctls,
nftables, workloads, disks or replicas.

iproute2 batch lines take no ``-n NS``, so the baseline is one ``ip -batch`` in
the root namespace (``netns add``) plus one ``ip -n NS -batch -`` per namespace,
and one ``ip -batch`` of ``netns del`` to tear down.

Run as root::

    .venv/bin/python benchmarks/bringup.py [--runs 3] [--results benchmarks/RESULTS.md]

Everything it creates (labs ``b<hex>``, baseline namespaces ``x<hex>-*``, its state
directory) is removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    add_results_option,
    delete_namespaces,
    is_root,
    namespaces_with_prefix,
    netlab_argv,
    report_header,
    run_then_sweep,
    wait_until_idle,
    write_report,
)

from netlab.plan import LabPlan, build_plan
from netlab.topology import load_topology, parse_topology

DEFAULT_UP_GOAL_S = 1.0
BIG_UP_GOAL_RATIO = 2.0


def generated_topology(tenants: int = 10, vms_per_tenant: int = 10) -> str:
    """A lab of tenants x VMs: one network per tenant with an NEA pair, static VMs only."""
    if tenants > 80 or vms_per_tenant > 80:
        raise ValueError("at most 80 tenants and 80 VMs per tenant")
    lines = [
        "name: generated",
        "internet: {subnet: 198.51.100.0/24}",
        "provider:",
        "  gateway: 198.51.100.10",
        "  core_subnet: 10.99.0.0/24",
        "  core_gateway: 10.99.0.1",
        "tenants:",
    ]
    for t in range(tenants):
        lines += [
            f"  ten{t}:",
            f"    edge: 198.51.100.{11 + t}",
            "    networks:",
            "      lan:",
            "        subnet: 192.168.10.0/24",  # the same subnet for every tenant, on purpose
            "        gateway: 192.168.10.1",
            "        nea:",
            "          address: 192.168.10.250",
            "          sp_address: 192.168.10.251",
            f"          sp_core_address: 10.99.0.{11 + t}",
            f"          tunnel_port: {6180 + t}",
            "    vms:",
        ]
        lines += [
            f"      vm{v}: {{network: lan, address: 192.168.10.{11 + v}}}"
            for v in range(vms_per_tenant)
        ]
    return "\n".join(lines) + "\n"


# ----- what the run created, removed whatever happens ------------------------


class Janitor:
    """Labs and baseline prefixes created by this run; `sweep` removes all of them."""

    def __init__(self, env: dict[str, str], state_dir: Path) -> None:
        self.env = env
        self.state_dir = state_dir
        self.labs: set[str] = set()
        self.prefixes: set[str] = set()

    def sweep(self) -> list[str]:
        problems = []
        for lab in sorted(self.labs):
            done = subprocess.run(
                [*netlab_argv(), "cleanup", "--lab", lab],
                env=self.env, capture_output=True, text=True, check=False,
            )
            if done.returncode != 0:
                problems.append(f"netlab cleanup --lab {lab}: {done.stderr.strip()}")
            left = namespaces_with_prefix(f"{lab}-")
            if left:
                problems.append(f"lab {lab} left {len(left)} namespaces")
                delete_namespaces(left)
        for prefix in sorted(self.prefixes):
            delete_namespaces(namespaces_with_prefix(prefix))
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return problems


# ----- netlab -----------------------------------------------------------------


def run_netlab(args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run([*netlab_argv(), *args], env=env, capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"netlab {' '.join(args)} failed: {done.stderr.strip()}")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = {}
    return elapsed, report


def measure_netlab(topology: Path | None, janitor: Janitor, env: dict[str, str]) -> dict:
    lab = f"b{secrets.token_hex(3)}"
    janitor.labs.add(lab)
    up_args = ["up", *([str(topology)] if topology else []), "--lab", lab, "--json"]
    up, report = run_netlab(up_args, env)
    if report.get("result") != "created":
        raise RuntimeError(f"netlab up --lab {lab} did not create the lab: {report}")
    down, _ = run_netlab(["down", "--lab", lab, "--json"], env)
    left = namespaces_with_prefix(f"{lab}-")
    if left:
        raise RuntimeError(f"netlab down --lab {lab} left {len(left)} namespaces")
    janitor.labs.discard(lab)
    return {"up": up, "up_internal": float(report.get("seconds", "nan")), "down": down}


# ----- the ip -batch baseline ---------------------------------------------------


def baseline_scripts(plan: LabPlan) -> tuple[str, dict[str, list[str]], str]:
    """(root batch, per-namespace batches in order, teardown batch) for the plan's links."""
    per_ns: dict[str, list[str]] = {}
    for node in plan.nodes.values():
        lines = per_ns.setdefault(node.netns, ["link set lo up"])
        for port in node.ports:
            seg = plan.segments[port.segment]
            lines.append(
                f"link add {port.name} type veth peer name {port.bridge_port} netns {seg.netns}"
            )
            if node.link_up_at_start:
                lines.append(f"link set {port.name} up")
            for cidr in port.addresses:
                extra = " noprefixroute" if port.no_prefix_route else ""
                lines.append(f"addr add {cidr} dev {port.name}{extra}")
        if node.link_up_at_start:
            for route in node.routes:
                dst = "default" if route.dst == "default" else route.dst
                via = f" via {route.via}" if route.via else ""
                dev = f" dev {route.dev}" if route.dev else ""
                table = f" table {route.table}" if route.table else ""
                lines.append(f"route add {dst}{via}{dev}{table}")
    for seg in plan.segments.values():
        lines = [f"link add {seg.bridge} type bridge forward_delay 0 stp_state 0",
                 f"link set {seg.bridge} up"]
        for node in plan.nodes.values():
            for port in node.ports:
                if port.segment == seg.name:
                    lines.append(f"link set {port.bridge_port} master {seg.bridge} up")
        per_ns[seg.netns] = lines  # segments after nodes: their bridge ports exist by then
    create = "".join(f"netns add {ns}\n" for ns in plan.namespaces)
    delete = "".join(f"netns del {ns}\n" for ns in plan.namespaces)
    return create, per_ns, delete


def counts(plan: LabPlan) -> dict[str, int]:
    ports = [p for n in plan.nodes.values() for p in n.ports]
    return {
        "namespaces": len(plan.namespaces),
        "bridges": len(plan.segments),
        "veths": len(ports),
        "addresses": sum(len(p.addresses) for p in ports),
        "routes": sum(len(n.routes) for n in plan.nodes.values() if n.link_up_at_start),
    }


def ip_batch(script: str, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    done = subprocess.run(argv, input=script, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def measure_baseline(topology_text: str, janitor: Janitor) -> dict:
    lab = f"x{secrets.token_hex(3)}"
    janitor.prefixes.add(f"{lab}-")
    plan = build_plan(lab, parse_topology(topology_text))
    create, per_ns, delete = baseline_scripts(plan)
    started = time.perf_counter()
    ip_batch(create)
    for netns, lines in per_ns.items():
        ip_batch("".join(f"{line}\n" for line in lines), netns)
    up = time.perf_counter() - started
    started = time.perf_counter()
    ip_batch(delete)
    down = time.perf_counter() - started
    if namespaces_with_prefix(f"{lab}-"):
        raise RuntimeError(f"baseline {lab} left namespaces")
    janitor.prefixes.discard(f"{lab}-")
    return {"up": up, "down": down}


# ----- report -------------------------------------------------------------------


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def render(args: argparse.Namespace, results: dict, sizes: dict[str, dict[str, int]]) -> str:
    out = [
        *report_header("bringup.py"),
        f"netlab:   {shlex.join(_relative(a) for a in netlab_argv())}",
        f"runs:     {args.runs} (median shown; wall time of the whole command, "
        "Python start included)",
        "",
    ]
    for label, size in sizes.items():
        out.append(f"{label}: " + ", ".join(f"{v} {k}" for k, v in size.items()))
    out.append("")
    header = (f"{'lab':<18} {'netlab up':>10} {'(internal)':>10} {'ip up':>8} {'ratio':>6}   "
              f"{'netlab down':>11} {'ip down':>8} {'ratio':>6}")
    out += [header, "-" * len(header)]
    for label, res in results.items():
        nl, base = res["netlab"], res["baseline"]
        up, up_in, down = median(nl, "up"), median(nl, "up_internal"), median(nl, "down")
        bup, bdown = median(base, "up"), median(base, "down")
        out.append(
            f"{label:<18} {up:>9.3f}s {up_in:>9.3f}s {bup:>7.3f}s {up / bup:>5.1f}x   "
            f"{down:>10.3f}s {bdown:>7.3f}s {down / bdown:>5.1f}x"
        )
    out.append("")
    default_up = median(results["default"]["netlab"], "up")
    big = results["100 VMs"]
    big_ratio = median(big["netlab"], "up") / median(big["baseline"], "up")
    out += [
        "goals:",
        f"  default lab up < {DEFAULT_UP_GOAL_S:.0f} s: {default_up:.3f} s -> "
        f"{'met' if default_up < DEFAULT_UP_GOAL_S else 'NOT met'}",
        f"  100-VM up within {BIG_UP_GOAL_RATIO:.0f}x of ip -batch: {big_ratio:.2f}x -> "
        f"{'met' if big_ratio <= BIG_UP_GOAL_RATIO else 'NOT met'}",
        "",
        "netlab up also sets sysctls, loads nftables, seeds disks, makes one restore point",
        "per VM, starts an httpd per VM and dnsmasq, and leases the DHCP VM's address;",
        "the baseline only creates the namespaces, bridges, veths, addresses and routes.",
        "(internal) is netlab's own elapsed time of the bring-up, without Python start.",
    ]
    return "\n".join(out) + "\n"


def _relative(path: str) -> str:
    """Inside the checkout, relative to it: a results file names no path outside the repository."""
    return os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--vms-per-tenant", type=int, default=10)
    add_results_option(parser, "Bring-up")
    args = parser.parse_args()
    if not is_root("bringup.py"):
        return 2
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    state_dir = Path(tempfile.mkdtemp(prefix="netlab-bringup-bench-"))
    env = {**os.environ, "NETLAB_STATE_DIR": str(state_dir)}
    env.pop("NETLAB_LAB", None)
    janitor = Janitor(env, state_dir)
    topo_file = state_dir / "generated.yaml"
    big_text = generated_topology(args.tenants, args.vms_per_tenant)
    topo_file.write_text(big_text)
    default_text = load_topology_text()
    sizes = {
        "default lab": counts(build_plan("x", load_topology())),
        "100 VMs": counts(build_plan("x", parse_topology(big_text))),
    }
    results: dict[str, dict[str, list[dict]]] = {
        "default": {"netlab": [], "baseline": []},
        "100 VMs": {"netlab": [], "baseline": []},
    }

    def measure() -> bool:
        for run in range(args.runs):
            for label, path, text in (("default", None, default_text),
                                      ("100 VMs", topo_file, big_text)):
                wait_until_idle()
                results[label]["baseline"].append(measure_baseline(text, janitor))
                wait_until_idle()
                results[label]["netlab"].append(measure_netlab(path, janitor, env))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
        return True

    if run_then_sweep("bringup.py", measure, janitor.sweep) is None:
        return 130
    report = render(args, results, sizes)
    print(report, end="")
    if args.results is not None:
        write_report(
            args.results, "Bring-up", "bringup.py",
            "`netlab up` / `netlab down` of the default lab and of a generated lab of 100 VMs\n"
            "(10 tenants x 10 static VMs), against iproute2 batches creating and deleting the\n"
            "same namespaces, bridges, veths, addresses and routes.",
            report)
    return 0


def load_topology_text() -> str:
    from netlab.topology.loader import default_topology_text

    return default_topology_text()


if __name__ == "__main__":
    sys.exit(main())
