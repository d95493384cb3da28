"""Tunnel benchmark: TCP through netlab's NEA tunnel against a bare WireGuard pair and a veth.

In one run, side by side:

* iperf3 TCP throughput (5 s, ``-J``) from acme/db to the replica of acme/web through
  the lab's tunnel (db -> tenant NEA -> edge NAT -> cloud gateway DNAT -> SP NEA ->
  replica), the replica powered on by hand as in tests/integration/test_nea.py;
* the same over two bare pairs of the same WireGuard backend (wireguard-go here), each
  between two namespaces joined by one veth: same MTU (1500), no NAT, no bridges; one as
  wireguard-go is shipped, one tuned like the NEAs (their socket buffers and TCP MSS), so
  that it differs from the lab's tunnel by the path only; the goal is judged against it;
* the same over that plain veth;
* the time from powering the NEA pair on to the first reply across it: a pinger in
  acme/db (``ping -D -i 0.005``) is started, then ``netlab.nea.nea_up`` is called in
  this process; reported are nea_up's own duration and the first reply, both from the
  moment nea_up was called (median of N; db's ARP cache is flushed before each run, so
  the first reply includes ARP). The same is measured for the ``netlab nea up acme``
  command (Python start included) for comparison.

Goals printed: tunnel >= 90 % of the bare pair; nea up to first reply < 300 ms.

Run as root::

    .venv/bin/python benchmarks/tunnel.py [--runs 3] [--bringup-runs 5] [--results PATH]

It makes its own lab (``b<6 hex>``, state in a temporary directory) and bare pairs
(namespaces ``bw<6 hex>-a/-b``) and removes all of it at the end, also on error, Ctrl-C
or SIGTERM. With ``--results PATH`` the report also replaces that file's '## Tunnel'
section.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    add_namespace,
    add_results_option,
    delete_namespaces,
    is_root,
    namespaces_with_prefix,
    netlab_argv,
    report_header,
    run_then_sweep,
    write_report,
)

from netlab import wireguard
from netlab.plan import TUNNEL_TCP_MSS
from netlab.processes import ProcessRecord, start_process, stop_process
from netlab.run import in_netns

GOAL_RATIO = 0.90
GOAL_FIRST_REPLY_S = 0.300
IPERF_SECONDS = 5
IPERF_PORT = 5201
TUNNEL = "acme/lan"
REPLICA_IP = "192.168.10.11"
TENANT_GW = "192.168.10.1"
BARE_SERVER, BARE_CLIENT = "10.200.0.1", "10.200.0.2"  # the veth
BARE_TUNNEL_SERVER, BARE_TUNNEL_CLIENT = "10.201.0.1", "10.201.0.2"
BARE_LISTEN_PORT = 51820


def sh(argv: list[str], netns: str | None = None, timeout: float = 30,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(in_netns(netns, argv), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        where = f" in {netns}" if netns else ""
        raise RuntimeError(f"{shlex.join(argv)}{where} failed: "
                           f"{(done.stderr or done.stdout).strip()}")
    return done


# ----- what the run created, removed whatever happens ------------------------------


@dataclass
class Janitor:
    state_dir: Path
    lab: str | None = None
    namespaces: list[str] = field(default_factory=list)
    records: list[ProcessRecord] = field(default_factory=list)
    popens: list[subprocess.Popen] = field(default_factory=list)
    wg: list[tuple[wireguard.WireGuardBackend, str, str, ProcessRecord | None]] = field(
        default_factory=list
    )

    def sweep(self) -> list[str]:
        problems = []
        for proc in self.popens:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for rec in self.records:
            stop_process(rec)
        for backend, netns, ifname, rec in self.wg:
            try:
                backend.destroy(netns, ifname, rec)
            except Exception as exc:
                problems.append(f"wireguard {ifname}: {exc}")
        delete_namespaces(self.namespaces)
        if self.lab:
            from netlab.lab import Lab

            try:
                Lab(self.lab).cleanup()
            except Exception as exc:
                problems.append(f"cleanup of lab {self.lab}: {exc}")
            left = namespaces_with_prefix(f"{self.lab}-")
            if left:
                problems.append(f"lab {self.lab} left {len(left)} namespaces")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return problems


# ----- iperf3 ----------------------------------------------------------------------------


def wait_listening(netns: str, port: int, timeout: float = 5.0) -> None:
    # Not by connecting: `iperf3 -s -1` would take that for its one client.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sh(["ss", "-Htln", f"sport = :{port}"], netns, check=False).stdout
        if out.strip():
            return
        time.sleep(0.01)
    raise RuntimeError(f"iperf3 server in {netns} not listening on {port} after {timeout} s")


def iperf(janitor: Janitor, server_ns: str, client_ns: str, address: str, logs: Path,
          mss: int | None = None, reverse: bool = False) -> dict:
    """One iperf3 TCP run, client -> server (`reverse`: server -> client); Gbit/s received
    and retransmits."""
    rec = start_process("iperf3-server", ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
                        netns=server_ns, log_path=logs / "iperf3-server.log")
    janitor.records.append(rec)
    try:
        wait_listening(server_ns, IPERF_PORT)
        argv = ["iperf3", "-c", address, "-p", str(IPERF_PORT), "-t", str(IPERF_SECONDS), "-J"]
        if mss is not None:
            argv += ["-M", str(mss)]
        if reverse:
            argv.append("-R")
        done = sh(argv, client_ns, timeout=IPERF_SECONDS + 30, check=False)
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(
                f"iperf3 to {address} printed no JSON: {done.stderr.strip()}"
            ) from None
        if "error" in report:
            raise RuntimeError(f"iperf3 to {address}: {report['error']}")
        end = report["end"]
        return {
            "gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits", 0),
        }
    finally:
        stop_process(rec)
        janitor.records.remove(rec)


# ----- the lab --------------------------------------------------------------------------


def make_lab(janitor: Janitor, progress) -> tuple:
    from netlab import nea
    from netlab.lab import Lab

    name = f"b{secrets.token_hex(3)}"
    janitor.lab = name
    lab = Lab(name)
    lab.up()
    nea.nea_up(lab, TUNNEL)
    power_on_replica_by_hand(lab)
    progress(f"lab {name} up, NEA pair {TUNNEL} on, acme/web failed over by hand")
    return lab, nea.backend_for(lab).name


def power_on_replica_by_hand(lab) -> None:
    """What failover does for acme/web (docs/architecture.md#data-flow-failover, step 3)."""
    from netlab import nea
    from netlab.net import links
    from netlab.net.namespaces import Netlink

    with lab.dir.update() as state:
        state["replicas"]["acme/web"]["state"] = "Failover"
    nea.sync_proxies(lab, TUNNEL)
    plan = lab.plan()
    replica, source = plan.nodes["acme/web@sp"], plan.nodes["acme/web"]
    with Netlink() as nl:
        links.set_link_state(nl[replica.netns], replica.port.name, True)
        links.add_route(nl[replica.netns], "default", via=TENANT_GW)
        links.set_link_state(nl[source.netns], source.port.name, False)


# ----- the bare pair -----------------------------------------------------------------------


@dataclass
class Bare:
    server_ns: str
    client_ns: str


def make_bare_pair(janitor: Janitor, backend_name: str, progress, tuned: bool) -> Bare:
    """Two namespaces, one veth, WireGuard across it.

    `tuned`: wireguard-go's sockets get the NEAs' buffers (WireGuardBackend.tune),
    so that the pair differs from the lab's tunnel by the path only.
    """
    prefix = f"bw{secrets.token_hex(3)}"
    pair = Bare(f"{prefix}-a", f"{prefix}-b")
    for ns in (pair.server_ns, pair.client_ns):
        janitor.namespaces.append(ns)
        add_namespace(ns)
    sh(["ip", "-n", pair.server_ns, "link", "add", "veth-a", "type", "veth", "peer", "name",
        "veth-b", "netns", pair.client_ns])
    for ns, ifname, address in ((pair.server_ns, "veth-a", BARE_SERVER),
                                (pair.client_ns, "veth-b", BARE_CLIENT)):
        sh(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", ifname])
        sh(["ip", "-n", ns, "link", "set", ifname, "up"])
    keys = janitor.state_dir / "bare-keys"
    server_key = wireguard.ensure_keypair(keys, "server")
    client_key = wireguard.ensure_keypair(keys, "client")
    backend = wireguard.select_backend(backend_name, log_dir=janitor.state_dir / "bare-logs")
    server_if, client_if = f"{prefix}s", f"{prefix}c"
    records = []
    for ns, ifname in ((pair.server_ns, server_if), (pair.client_ns, client_if)):
        rec = backend.create(ns, ifname)
        janitor.wg.append((backend, ns, ifname, rec))
        records.append(rec)
    wireguard.configure_server(pair.server_ns, server_if, server_key.private_key_path,
                               BARE_LISTEN_PORT, client_key.public_key,
                               [f"{BARE_TUNNEL_CLIENT}/32"])
    wireguard.configure_client(pair.client_ns, client_if, client_key.private_key_path,
                               server_key.public_key, f"{BARE_SERVER}:{BARE_LISTEN_PORT}",
                               ["10.201.0.0/24"])
    for ns, ifname, address in ((pair.server_ns, server_if, BARE_TUNNEL_SERVER),
                                (pair.client_ns, client_if, BARE_TUNNEL_CLIENT)):
        sh(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", ifname])
        wireguard.set_up(ns, ifname, wireguard.TUNNEL_MTU)
    if tuned:
        for rec in records:
            backend.tune(rec)
    sh(["ping", "-c", "1", "-W", "2", BARE_TUNNEL_SERVER], pair.client_ns)
    progress(f"bare {backend.name} pair {prefix} up (MTU {wireguard.TUNNEL_MTU}, no NAT"
             f"{', tuned like the NEAs' if tuned else ''})")
    return pair


# ----- nea up to first reply -------------------------------------------------------------


FIRST_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from " + re.escape(REPLICA_IP), re.M)


def start_pinger(janitor: Janitor, db_ns: str) -> subprocess.Popen:
    argv = ["ping", "-D", "-n", "-i", "0.005", "-W", "1", REPLICA_IP]
    proc = subprocess.Popen(in_netns(db_ns, argv), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    janitor.popens.append(proc)
    return proc


def first_reply_at(janitor: Janitor, proc: subprocess.Popen, timeout: float = 10) -> float:
    """Epoch time of the pinger's first reply (ping -D stamps); stops the pinger."""
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    seen = ""
    try:
        while time.monotonic() < deadline:
            # the fd, not proc.stdout: a text wrapper's non-blocking read of nothing
            # yet raises TypeError (its decoder is handed None)
            try:
                chunk = os.read(fd, 65536).decode()
            except BlockingIOError:
                chunk = ""
            if chunk:
                seen += chunk
                m = FIRST_REPLY.search(seen)
                if m:
                    return float(m.group(1))
            time.sleep(0.002)
        raise RuntimeError(f"no reply from {REPLICA_IP} within {timeout} s")
    finally:
        proc.kill()
        proc.wait()
        janitor.popens.remove(proc)


def measure_bringup(janitor: Janitor, lab, runs: int, progress) -> dict[str, list[float]]:
    from netlab import nea

    db_ns = lab.plan().nodes["acme/db"].netns
    env = {**os.environ, "NETLAB_STATE_DIR": str(janitor.state_dir)}
    out: dict[str, list[float]] = {"nea_up": [], "first": [], "cli": [], "cli_first": []}
    for _ in range(runs):
        for how in ("in-process", "cli"):
            nea.nea_down(lab, TUNNEL)
            sh(["ip", "neigh", "flush", "all"], db_ns)
            pinger = start_pinger(janitor, db_ns)
            time.sleep(0.05)  # the pinger runs (and fails) before the pair is powered on
            started = time.time()
            if how == "in-process":
                nea.nea_up(lab, TUNNEL)
                out["nea_up"].append(time.time() - started)
                out["first"].append(first_reply_at(janitor, pinger) - started)
            else:
                subprocess.run([*netlab_argv(), "nea", "up", "acme", "--lab", lab.name],
                               env=env, check=True, capture_output=True, timeout=60)
                out["cli"].append(time.time() - started)
                out["cli_first"].append(first_reply_at(janitor, pinger) - started)
    progress(f"nea up -> first reply measured {runs} times each way")
    return out


# ----- report -------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def render(args: argparse.Namespace, lab_backend: str, tput: dict[str, list[dict]],
           bringup: dict[str, list[float]]) -> str:
    rows = [
        ("netlab tunnel: acme/db -> acme/web@sp", "tunnel"),
        (f"bare {lab_backend} pair, as shipped", "bare"),
        (f"bare {lab_backend} pair, tuned like the NEAs", "tuned"),
        ("plain veth", "veth"),
        ("reverse: acme/web@sp -> acme/db", "tunnel_rev"),
        (f"reverse: bare {lab_backend} pair, tuned", "tuned_rev"),
    ]
    out = [
        *report_header("tunnel.py"),
        f"backend:  {lab_backend} WireGuard (the lab's and the bare pair's)",
        "",
        f"TCP throughput, iperf3 -t {IPERF_SECONDS} -J, median of {args.runs}",
        f"{'path':<44} {'Gbit/s':>7}  {'runs':<22} {'retransmits':>11}",
        "-" * 90,
    ]
    for label, key in rows:
        runs = tput[key]
        gbps = [r["gbps"] for r in runs]
        retr = int(med([r["retransmits"] for r in runs]))
        out.append(f"{label:<44} {med(gbps):>7.3f}  "
                   f"{' '.join(f'{g:.3f}' for g in gbps):<22} {retr:>11}")
    out += [
        "",
        "tunnel path: db -> bridge -> tenant NEA (WireGuard) -> bridge -> edge (masquerade)",
        "  -> bridge -> cloud gateway (DNAT) -> bridge -> SP NEA (WireGuard) -> bridge -> replica;",
        "  the NEAs clamp the TCP MSS to 1380, so TCP's outer datagrams fit unfragmented;",
        "  full-size frames of other protocols are fragmented outside and pass conntrack",
        "  (reassembled and fragmented again) at the edge and the gateway.",
        "bare pair: client -> WireGuard -> one veth -> WireGuard -> server, MTU "
        f"{wireguard.TUNNEL_MTU}, no NAT;",
        "  as shipped: default socket buffers, full-size segments (fragmented outside);",
        f"  tuned like the NEAs: {wireguard.SOCKET_BUFFER_BYTES >> 20} MiB socket buffers "
        f"(WireGuardBackend.tune), iperf3 -M {TUNNEL_TCP_MSS}",
        "  (the NEAs' MSS clamp): the same settings, so only the path differs. The NEAs'",
        "  links also receive with GRO in NAPI threads (netlab.net.nic); that is left out of",
        "  the bare pair's one veth, where it lowers throughput (measured: ~0.65 -> ~0.5).",
    ]
    tunnel = med([r["gbps"] for r in tput["tunnel"]])
    veth = med([r["gbps"] for r in tput["veth"]])
    ratio = tunnel / med([r["gbps"] for r in tput["tuned"]])
    shipped_ratio = tunnel / med([r["gbps"] for r in tput["bare"]])
    reverse_ratio = med([r["gbps"] for r in tput["tunnel_rev"]]) / med(
        [r["gbps"] for r in tput["tuned_rev"]])
    out += [
        "",
        f"tunnel / bare pair tuned like the NEAs: {ratio:.0%}; tunnel / bare pair as shipped: "
        f"{shipped_ratio:.0%}; tunnel / veth: {tunnel / veth:.1%}",
        f"reverse (replica -> db) / bare pair tuned, reverse: {reverse_ratio:.0%}",
        "",
        f"NEA pair on -> first reply db -> replica (ping -i 0.005, ARP cache flushed), "
        f"median of {args.bringup_runs}, ms",
        f"{'':<44} {'median':>7}  runs",
        "-" * 90,
    ]
    for label, key in (("nea.nea_up() duration (in process)", "nea_up"),
                       ("first reply, from nea_up() called", "first"),
                       ("`netlab nea up acme` wall time (CLI)", "cli"),
                       ("first reply, from the CLI started", "cli_first")):
        values = bringup[key]
        out.append(f"{label:<44} {med(values) * 1000:>7.1f}  "
                   + " ".join(f"{v * 1000:.0f}" for v in values))
    first = med(bringup["first"])
    out += [
        "",
        "goals:",
        f"  tunnel >= {GOAL_RATIO:.0%} of the bare pair (tuned like the NEAs): {ratio:.0%} -> "
        f"{'met' if ratio >= GOAL_RATIO else 'NOT met'}",
        f"  (against the bare pair as shipped: {shipped_ratio:.0%} -> "
        f"{'met' if shipped_ratio >= GOAL_RATIO else 'NOT met'})",
        f"  nea up to first reply < {GOAL_FIRST_REPLY_S * 1000:.0f} ms: {first * 1000:.0f} ms "
        f"-> {'met' if first < GOAL_FIRST_REPLY_S else 'NOT met'}",
    ]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="iperf3 runs per path (median)")
    parser.add_argument("--bringup-runs", type=int, default=5,
                        help="nea up -> first reply runs, each way (median)")
    add_results_option(parser, "Tunnel")
    args = parser.parse_args()
    if not is_root("tunnel.py"):
        return 2
    if args.runs < 1 or args.bringup_runs < 1:
        parser.error("--runs and --bringup-runs must be at least 1")
    for tool in ("iperf3", "ping", "ss", "ip", "wg"):
        if shutil.which(tool) is None:
            print(f"tunnel.py: '{tool}' is not installed", file=sys.stderr)
            return 2

    state_dir = Path(tempfile.mkdtemp(prefix="netlab-tunnel-bench-"))
    os.environ["NETLAB_STATE_DIR"] = str(state_dir)  # for the in-process Lab
    os.environ.pop("NETLAB_LAB", None)
    logs = state_dir / "bench-logs"
    logs.mkdir()
    janitor = Janitor(state_dir)

    def progress(line: str) -> None:
        print(f"  {line}", file=sys.stderr)

    tput: dict[str, list[dict]] = {"tunnel": [], "bare": [], "tuned": [], "veth": [],
                                   "tunnel_rev": [], "tuned_rev": []}

    def measure() -> tuple[str, dict[str, list[float]]]:
        lab, backend = make_lab(janitor, progress)
        pair = make_bare_pair(janitor, backend, progress, tuned=False)
        tuned = make_bare_pair(janitor, backend, progress, tuned=True)
        plan = lab.plan()
        replica_ns, db_ns = plan.nodes["acme/web@sp"].netns, plan.nodes["acme/db"].netns
        for run in range(args.runs):
            # interleaved, so that a noisy moment does not favour one path
            tput["tunnel"].append(iperf(janitor, replica_ns, db_ns, REPLICA_IP, logs))
            tput["bare"].append(iperf(janitor, pair.server_ns, pair.client_ns,
                                      BARE_TUNNEL_SERVER, logs))
            tput["tuned"].append(iperf(janitor, tuned.server_ns, tuned.client_ns,
                                       BARE_TUNNEL_SERVER, logs, mss=TUNNEL_TCP_MSS))
            tput["veth"].append(iperf(janitor, pair.server_ns, pair.client_ns,
                                      BARE_SERVER, logs))
            tput["tunnel_rev"].append(iperf(janitor, replica_ns, db_ns, REPLICA_IP, logs,
                                            reverse=True))
            tput["tuned_rev"].append(iperf(janitor, tuned.server_ns, tuned.client_ns,
                                           BARE_TUNNEL_SERVER, logs, mss=TUNNEL_TCP_MSS,
                                           reverse=True))
            progress(f"iperf3 round {run + 1}/{args.runs}: " + ", ".join(
                f"{k} {v[-1]['gbps']:.3f} Gbit/s" for k, v in tput.items()))
        bringup = measure_bringup(janitor, lab, args.bringup_runs, progress)
        return backend, bringup

    measured = run_then_sweep("tunnel.py", measure, janitor.sweep)
    if measured is None:
        return 130
    backend, bringup = measured
    report = render(args, backend, tput, bringup)
    print(report, end="")
    if args.results is not None:
        write_report(
            args.results, "Tunnel", "tunnel.py",
            "iperf3 TCP through the lab's NEA tunnel (acme/db to the replica of acme/web),\n"
            "through bare WireGuard pairs of the same backend and MTU between two namespaces\n"
            "(as shipped, and tuned like the NEAs),\n"
            "and through a plain veth; then the time from powering the NEA pair on to the\n"
            "first ping reply across it.",
            report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
