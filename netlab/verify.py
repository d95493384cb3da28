"""Connectivity and ARP checks, used by `netlab validate`, `netlab demo` and the tests.

Two layers:

* primitives that run the real tools inside a node's namespace and parse what
  they print: ``ping``, ``curl``, ``arping`` (the set of MACs that answer, two of
  them being an IP conflict), ``neighbour_entry`` (``ip neigh``);
* checks that derive what must hold from the lab's *current* state, so that
  they stay true across failover and undo: neighbours reach each other, a
  replica in Failover is reached at its production address with the tenant
  NEA's MAC in the ARP answer, tenants are isolated, the gateway forwards only
  tunnel ports, every powered-on tunnel is Connected.

Every check returns ``CheckResult`` rows (name, node, passed, message). Checks
are kept fast: one-second timeouts, and independent probes run side by side as
separate processes (``run_side_by_side``), never one after the other.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from netlab.lab import Lab
from netlab.orchestrator.states import RUNNING_AT_SP
from netlab.plan import LabPlan, Node, NodeKind
from netlab.run import in_netns, require_tool, run
from netlab.topology.model import Expectation, ValidateTest

CONNECTED = "Connected"

_MAC = re.compile(r"\[([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})\]")
_RECEIVED = re.compile(r"(\d+) (?:packets )?received")


@dataclass
class CheckResult:
    """One PASS/FAIL line: a check (or a topology test) seen from one node."""

    name: str
    node: str
    passed: bool
    message: str
    skipped: bool = False
    kind: str = "builtin"  # "test": from the topology's validate: section
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else ("PASS" if self.passed else "FAIL")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"status": self.status}


# ----- parsing what the tools print ----------------------------------------------------


def parse_arping(output: str) -> set[str]:
    """MACs (lowercase) in the reply lines of iputils arping."""
    return {
        m.group(1).lower()
        for line in output.splitlines()
        if "reply from" in line
        for m in [_MAC.search(line)]
        if m
    }


def parse_ping_received(output: str) -> int:
    """Replies counted in iputils ping's summary line (0 when there is none)."""
    m = _RECEIVED.search(output)
    return int(m.group(1)) if m else 0


def parse_neighbour(output: str) -> dict[str, str] | None:
    """`ip neigh show ADDRESS` -> {address, mac, state}, or None without a usable entry."""
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        mac = words[words.index("lladdr") + 1].lower() if "lladdr" in words else ""
        return {"address": words[0], "mac": mac, "state": words[-1]}
    return None


def match_expectation(expect: Expectation, exit_code: int, output: str) -> str | None:
    """None when the run meets `expect`, else the reason it does not, in plain words."""
    if expect.exit_code is not None and exit_code != expect.exit_code:
        return f"exit status {exit_code}, expected {expect.exit_code}"
    if expect.contains is not None and expect.contains not in output:
        return f"output does not contain {expect.contains!r}"
    if expect.not_contains is not None and expect.not_contains in output:
        return f"output contains {expect.not_contains!r}"
    return None


def describe_expectation(expect: Expectation) -> str:
    parts = []
    if expect.exit_code is not None:
        parts.append(f"exit status {expect.exit_code}")
    if expect.contains is not None:
        parts.append(f"output contains {expect.contains!r}")
    if expect.not_contains is not None:
        parts.append(f"output lacks {expect.not_contains!r}")
    return ", ".join(parts) or "it runs"


def exit_code(results: Sequence[CheckResult], topology_tests: int) -> int:
    """0 every check passed, 1 a check failed, 2 the topology has no validate: tests."""
    if any(not r.passed and not r.skipped for r in results):
        return 1
    if topology_tests == 0:
        return 2
    return 0


# ----- running tools inside nodes ------------------------------------------------------


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str = ""


def run_side_by_side(
    jobs: dict[Any, tuple[str, Sequence[str]]], timeout: float = 10
) -> dict[Any, Outcome]:
    """Run every (netns, argv) job at once; their outcomes by key. A hung job counts as failed."""
    procs = {
        key: subprocess.Popen(in_netns(netns, argv), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        for key, (netns, argv) in jobs.items()
    }
    deadline = time.monotonic() + timeout
    out = {}
    for key, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            out[key] = Outcome(proc.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            out[key] = Outcome(124, stdout, stderr + f"\ntimed out after {timeout} s")
    return out


def ping_argv(address: str, count: int = 1, wait: int = 1) -> list[str]:
    return [require_tool("ping"), "-n", "-c", str(count), "-W", str(wait), address]


def curl_argv(url: str, timeout: float = 2) -> list[str]:
    return [require_tool("curl"), "-s", "-m", str(timeout), url]


def arping_argv(iface: str, address: str, count: int = 2) -> list[str]:
    # -b keeps broadcasting: after the first reply arping would unicast to that MAC
    # and never see a second host that claims the same address (an IP conflict).
    # With -w, arping stops after `count` replies: two MACs end it at once.
    return [require_tool("arping"), "-b", "-c", str(count), "-w", "2", "-I", iface, address]


def ping(node: Node, address: str, count: int = 1, wait: int = 1) -> bool:
    """True when `address` answers a ping sent from `node`."""
    done = run(ping_argv(address, count, wait), netns=node.netns, check=False,
               timeout=count * wait + 5)
    return done.returncode == 0


def curl(node: Node, url: str, timeout: float = 2) -> str | None:
    """The body `url` serves to `node`, or None when nothing answers."""
    done = run(curl_argv(url, timeout), netns=node.netns, check=False, timeout=timeout + 5)
    return done.stdout if done.returncode == 0 else None


def arping(node: Node, address: str, iface: str | None = None) -> set[str]:
    """MACs answering ARP for `address` on `node`'s LAN; more than one is an IP conflict."""
    done = run(arping_argv(iface or node.port.name, address), netns=node.netns,
               check=False, timeout=8)
    return parse_arping(done.stdout)


def neighbour_entry(node: Node, address: str) -> dict[str, str] | None:
    """`node`'s ARP (neighbour) entry for `address`: which MAC it sends to now."""
    done = run(["ip", "neigh", "show", address], netns=node.netns, check=False, timeout=5)
    return parse_neighbour(done.stdout)


def interface_mac(netns: str, ifname: str) -> str:
    done = run(["ip", "-j", "link", "show", "dev", ifname], netns=netns, timeout=5)
    return str(json.loads(done.stdout)[0]["address"]).lower()


# ----- what the state says is running ---------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A node that answers at an address on a tenant network right now."""

    node: Node
    address: str
    static: bool


def live_endpoints(plan: LabPlan, state: dict[str, Any]) -> dict[tuple[str, str], list[Endpoint]]:
    """Per (tenant, network): powered-on VMs (DHCP ones at their lease) and running replicas."""
    powers = state.get("nodes", {})
    replicas = state.get("replicas", {})
    found: dict[tuple[str, str], list[Endpoint]] = {}
    for node in plan.nodes.values():
        if powers.get(node.name, {}).get("power") != "on":
            continue
        if node.kind is NodeKind.VM:
            address = node.address or state.get("leases", {}).get(node.name)
        elif node.kind is NodeKind.REPLICA:
            vm = node.name.removesuffix("@sp")
            running = replicas.get(vm, {}).get("state") in RUNNING_AT_SP
            address = node.address if running else None
        else:
            continue
        if address:
            found.setdefault((node.tenant or "", node.network or ""), []).append(
                Endpoint(node, address, not node.dhcp))
    return found


def _power(state: dict[str, Any], node: str) -> str:
    return str(state.get("nodes", {}).get(node, {}).get("power", "on"))


def _gateway_of(plan: LabPlan, tenant: str, network: str) -> str:
    return str(plan.topology.tenants[tenant].networks[network].gateway)


# ----- the built-in checks -------------------------------------------------------------


def check_neighbours(plan: LabPlan, state: dict[str, Any]) -> list[CheckResult]:
    """Every powered-on static VM (and running replica) reaches its neighbours and gateway."""
    jobs: dict[tuple[str, str], tuple[str, list[str]]] = {}
    targets: dict[str, list[tuple[str, str]]] = {}
    for (tenant, network), endpoints in live_endpoints(plan, state).items():
        gateway = _gateway_of(plan, tenant, network)
        for src in endpoints:
            if not src.static:
                continue
            wanted = [(e.node.name, e.address) for e in endpoints if e.node is not src.node]
            if _power(state, f"{tenant}/edge") == "on":  # off: the site is lost on purpose
                wanted.append((f"{tenant}/edge", gateway))
            targets[src.node.name] = wanted
            for name, address in wanted:
                jobs[(src.node.name, name)] = (src.node.netns, ping_argv(address))
    outcomes = run_side_by_side(jobs)
    results = []
    for src, wanted in targets.items():
        missing = [f"{n} {a}" for n, a in wanted if outcomes[(src, n)].returncode != 0]
        reached = ", ".join(f"{n} {a}" for n, a in wanted)
        if missing:
            results.append(CheckResult("reaches its neighbours", src, False,
                                       f"no ping reply from {', '.join(missing)}"))
        else:
            results.append(CheckResult("reaches its neighbours", src, True, f"reaches {reached}"))
    return results


def _prober(plan: LabPlan, state: dict[str, Any], tenant: str, network: str,
            exclude: set[str], avoid: set[str] | None = None) -> Node | None:
    """A powered-on production VM with a static address on the network.

    One whose address is not in `avoid` when there is one: a VM cannot probe
    the address it holds itself.
    """
    candidates = [e.node for e in live_endpoints(plan, state).get((tenant, network), [])
                  if e.node.kind is NodeKind.VM and e.static and e.node.name not in exclude]
    preferred = [n for n in candidates if n.address not in (avoid or set())]
    return (preferred or candidates or [None])[0]


def check_replicas(plan: LabPlan, state: dict[str, Any],
                   nea_macs: dict[str, str]) -> list[CheckResult]:
    """Each replica at the SP answers at its production address, ARP carrying the NEA's MAC."""
    checks = []
    for (tenant, network), endpoints in live_endpoints(plan, state).items():
        tunnel = plan.tunnel_for(tenant, network)
        for e in endpoints:
            if e.node.kind is not NodeKind.REPLICA or tunnel is None:
                continue
            source = e.node.name.removesuffix("@sp")
            prober = _prober(plan, state, tenant, network, {source})
            checks.append((e, tunnel, source, prober))
    jobs: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for e, _, _, prober in checks:
        if prober is None:
            continue
        jobs[(e.node.name, "ping")] = (prober.netns, ping_argv(e.address, count=2, wait=1))
        jobs[(e.node.name, "arp")] = (prober.netns, arping_argv(prober.port.name, e.address))
        jobs[(e.node.name, "curl")] = (prober.netns, curl_argv(f"http://{e.address}/"))
    outcomes = run_side_by_side(jobs)
    results = []
    for e, tunnel, source, prober in checks:
        name = "replica answers at its production address"
        if prober is None:
            results.append(CheckResult(name, e.node.name, True, "no powered-on VM on "
                                       f"{tenant_network(e)} to probe from", skipped=True))
            continue
        nea_mac = nea_macs[tunnel.key]
        macs = parse_arping(outcomes[(e.node.name, "arp")].stdout)
        pinged = parse_ping_received(outcomes[(e.node.name, "ping")].stdout) > 0
        page = outcomes[(e.node.name, "curl")]
        where = f"from {prober.name}"
        details = {"prober": prober.name, "macs": sorted(macs), "tenant_nea_mac": nea_mac}
        if not pinged:
            msg = (f"{e.address} does not answer ping {where} through the tunnel "
                   f"(see the check 'tunnel {tunnel.key}')")
        elif len(macs) > 1:
            msg = (f"IP conflict: {len(macs)} MACs answer ARP for {e.address} {where}: "
                   f"{', '.join(sorted(macs))}; the source {source} still answers "
                   f"(disconnect it: 'netlab vm fail {source}')")
        elif macs != {nea_mac}:
            got = ", ".join(sorted(macs)) or "nobody"
            msg = (f"ARP for {e.address} answered by {got}, not by the tenant NEA "
                   f"{tunnel.tenant_nea} ({nea_mac})")
        elif page.returncode != 0:
            msg = f"{e.address} answers ping but http://{e.address}/ does not answer {where}"
        else:
            results.append(CheckResult(
                name, e.node.name, True,
                f"{where}: {e.address} answers through the tunnel; the ARP answer carries the "
                f"tenant NEA's MAC {nea_mac} ({tunnel.tenant_nea})", details=details))
            continue
        results.append(CheckResult(name, e.node.name, False, msg, details=details))
    return results


def tenant_network(e: Endpoint) -> str:
    return f"{e.node.tenant}/{e.node.network}"


def _page_of(body: str, tenant: str) -> bool:
    # the page a VM's disk serves names its tenant (netlab.storage.seed_disk)
    return f"tenant {tenant}," in body


def check_isolation(plan: LabPlan, state: dict[str, Any]) -> list[CheckResult]:
    """A VM of one tenant never reaches another tenant's VMs, even on the same subnet."""
    live = live_endpoints(plan, state)
    probes: list[tuple[Node, str, list[tuple[str, str]], list[tuple[str, str]]]] = []
    for tenant, t in plan.topology.tenants.items():
        elsewhere = {str(v.address) for other, o in plan.topology.tenants.items()
                     if other != tenant for v in o.vms.values() if v.address}
        for network in t.networks:
            prober = _prober(plan, state, tenant, network, set(), avoid=elsewhere)
            if prober is None:
                continue
            mine = {e.address: e for e in live.get((tenant, network), [])}
            taken = {str(v.address) for v in t.vms.values() if v.address} | set(mine)
            taken |= {str(n.gateway) for n in t.networks.values()}
            taken |= {str(n.nea.address) for n in t.networks.values() if n.nea}
            absent, shared = [], []
            for other, o in plan.topology.tenants.items():
                if other == tenant:
                    continue
                for vm_name, vm in o.vms.items():
                    if vm.address is None:
                        continue
                    address, owner = str(vm.address), f"{other}/{vm_name}"
                    if address not in taken:
                        absent.append((owner, address))
                    elif address in mine and address != prober.address and \
                            mine[address].node.kind in (NodeKind.VM, NodeKind.REPLICA):
                        shared.append((other, address))
            probes.append((prober, tenant, absent, shared))
    jobs: dict[tuple[str, str, str], tuple[str, list[str]]] = {}
    for prober, _, absent, shared in probes:
        for _, address in absent:
            jobs[(prober.name, "ping", address)] = (prober.netns, ping_argv(address))
        for _, address in shared:
            jobs[(prober.name, "curl", address)] = (prober.netns,
                                                     curl_argv(f"http://{address}/"))
    outcomes = run_side_by_side(jobs)
    results = []
    for prober, tenant, absent, shared in probes:
        good, bad = [], []
        for owner, address in absent:
            if outcomes[(prober.name, "ping", address)].returncode == 0:
                bad.append(f"{address} ({owner}, absent from {tenant}) answers")
            else:
                good.append(f"{address} ({owner}) does not answer")
        for other, address in shared:
            done = outcomes[(prober.name, "curl", address)]
            if done.returncode != 0:
                # unreachable is no leak between tenants; the other checks report it
                good.append(f"http://{address}/ does not answer (isolation not shown)")
            elif _page_of(done.stdout, other) or not _page_of(done.stdout, tenant):
                bad.append(f"http://{address}/ serves {done.stdout.strip()[:60]!r}, "
                           f"not {tenant}'s page")
            else:
                good.append(f"http://{address}/ serves {tenant}'s page, not {other}'s")
        if bad:
            results.append(CheckResult("tenants are isolated", prober.name, False,
                                       "; ".join(bad)))
        else:
            results.append(CheckResult("tenants are isolated", prober.name, True,
                                       "; ".join(good) or "no address of another tenant to try"))
    return results


# ----- the gateway -------------------------------------------------------------------

# Source ports of the gateway probes: they tell our probes from anything else in
# the counters (the edge's masquerade keeps a free source port as it is).
PROBE_SPORT_BASE = 47310
_SENDER = """
import socket, sys, time
src, dst = sys.argv[1], sys.argv[2]
socks = []
for probe in sys.argv[3:]:
    proto, sport, dport = probe.split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, int(sport)))
    if proto == "udp":
        s.sendto(b"netlab-verify probe", (dst, int(dport)))
    else:
        s.setblocking(False)
        s.connect_ex((dst, int(dport)))
    socks.append(s)
time.sleep(0.3)
"""


@dataclass(frozen=True)
class GatewayProbe:
    edge: str
    source: str
    proto: str
    port: int
    sport: int
    tunnel: str | None  # the tunnel this port belongs to: it must be forwarded

    @property
    def label(self) -> str:
        return f"{self.proto} {self.port}"


def gateway_probes(plan: LabPlan) -> list[GatewayProbe]:
    """From each edge: its tenant's tunnel ports (forwarded) and ports that must not be."""
    tunnel_ports = sorted(t.tunnel_port for t in plan.tunnels.values())
    listen = plan.topology.provider.nea_listen_port
    unregistered = max(tunnel_ports, default=6179) + 1
    refused = sorted({("udp", listen), ("udp", unregistered), ("udp", 53), ("tcp", 22),
                      ("tcp", 443)} | {("tcp", p) for p in tunnel_ports[:1]}
                     - {("udp", p) for p in tunnel_ports})
    probes: list[GatewayProbe] = []
    for tenant, t in plan.topology.tenants.items():
        edge = f"{tenant}/edge"
        wanted: list[tuple[str, int, str | None]] = [
            ("udp", tunnel.tunnel_port, tunnel.key)
            for tunnel in plan.tunnels.values() if tunnel.tenant == tenant
        ]
        wanted += [(proto, port, None) for proto, port in refused]
        for proto, port, key in wanted:
            sport = PROBE_SPORT_BASE + len(probes)
            probes.append(GatewayProbe(edge, str(t.edge), proto, port, sport, key))
    return probes


def _counter_table(table: str, probes: list[GatewayProbe]) -> str:
    def rules(tag: str) -> list[str]:
        return [
            f"    ip saddr {p.source} meta l4proto {p.proto} th sport {p.sport} "
            f'counter comment "{tag}{i}"'
            for i, p in enumerate(probes)
        ]

    # prerouting before the gateway's own filters and DNAT (a probe arrived at all);
    # forward after its filter chain (priority 0), which drops what it does not accept.
    return "\n".join([
        f"table ip {table} {{",
        "  chain prerouting {",
        "    type filter hook prerouting priority -350; policy accept;",
        *rules("in"),
        "  }",
        "  chain forward {",
        "    type filter hook forward priority 100; policy accept;",
        *rules("fw"),
        "  }",
        "}",
    ]) + "\n"


def _read_counters(netns: str, table: str) -> dict[str, int]:
    done = run(["nft", "-j", "list", "table", "ip", table], netns=netns, timeout=10)
    counts = {}
    for item in json.loads(done.stdout).get("nftables", []):
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        for expr in rule.get("expr", []):
            if "counter" in expr:
                counts[rule["comment"]] = int(expr["counter"]["packets"])
    return counts


def check_gateway(plan: LabPlan, state: dict[str, Any]) -> list[CheckResult]:
    """Send probes from each edge; count at the gateway what arrives and what is forwarded.

    The counters live in a table of our own, added for the probe and removed
    after it, so the lab's ruleset is never touched.
    """
    gateway = plan.nodes["sp/cgw"]
    public = str(plan.topology.provider.gateway)
    results = []
    name = "gateway forwards only tunnel ports"
    probes = []
    for p in gateway_probes(plan):
        if _power(state, p.edge) == "on":
            probes.append(p)
        elif not any(r.node == p.edge for r in results):
            results.append(CheckResult(name, p.edge, True, f"not probed: {p.edge} is "
                                       f"{_power(state, p.edge)}", skipped=True))
    if not probes:
        return results
    table = f"netlab_verify_{os.getpid()}"
    run(["nft", "-f", "-"], netns=gateway.netns, input=_counter_table(table, probes))
    try:
        jobs = {}
        for edge in dict.fromkeys(p.edge for p in probes):
            mine = [p for p in probes if p.edge == edge]
            argv = [sys.executable, "-c", _SENDER, mine[0].source, public,
                    *(f"{p.proto}:{p.sport}:{p.port}" for p in mine)]
            jobs[edge] = (plan.nodes[edge].netns, argv)
        sent = run_side_by_side(jobs)
        time.sleep(0.1)  # the last probes cross two bridges after the sender exits
        counts = _read_counters(gateway.netns, table)
    finally:
        run(["nft", "delete", "table", "ip", table], netns=gateway.netns, check=False)
    for edge, outcome in sent.items():
        if outcome.returncode != 0:
            results.append(CheckResult(name, edge, False, "could not send the probes: "
                                       + (outcome.stderr.strip().splitlines() or ["?"])[-1]))
            continue
        good, bad = [], []
        refused = []
        for i, p in enumerate(probes):
            if p.edge != edge:
                continue
            arrived, forwarded = counts.get(f"in{i}", 0) > 0, counts.get(f"fw{i}", 0) > 0
            if not arrived:
                bad.append(f"{p.label} probe never reached the gateway {public}")
            elif p.tunnel is not None and not forwarded:
                bad.append(f"{p.label} (tunnel {p.tunnel}) reaches {public} but is NOT "
                           "forwarded to the SP NEA: the tunnel cannot come up")
            elif p.tunnel is not None:
                good.append(f"{p.label} forwarded (tunnel {p.tunnel})")
            elif forwarded:
                bad.append(f"{p.label} is forwarded, but it is no tunnel port")
            else:
                refused.append(p.label)
        if refused:
            good.append(f"{', '.join(refused)} not forwarded")
        results.append(CheckResult(name, edge, not bad, "; ".join(bad or good)))
    return results


# ----- tunnels -------------------------------------------------------------------------


def check_tunnels(lab: Lab, plan: LabPlan, state: dict[str, Any]) -> list[CheckResult]:
    """Every powered-on NEA pair's tunnel is Connected (netlab.nea.connectivity)."""
    from netlab import nea

    results = []
    for key, tunnel in plan.tunnels.items():
        name = f"tunnel {key}"
        if state.get("neas", {}).get(key, {}).get("power") != "on":
            results.append(CheckResult(name, tunnel.tenant_nea, True,
                                       f"NEA pair {key} is off: no replica of it runs at the SP",
                                       skipped=True))
            continue
        info = nea.connectivity(lab, key, state)
        connected = info.get("connectivity") == CONNECTED
        results.append(CheckResult(name, tunnel.tenant_nea, connected,
                                   f"{info.get('connectivity')}: {info.get('detail', '')}",
                                   details={"connectivity": info.get("connectivity")}))
    return results


def tenant_nea_macs(plan: LabPlan) -> dict[str, str]:
    return {key: interface_mac(plan.nodes[t.tenant_nea].netns, t.tenant_lan_port)
            for key, t in plan.tunnels.items()}


def builtin_checks(lab: Lab) -> list[CheckResult]:
    """Every built-in check of the lab's current state, run side by side."""
    state = lab.require_up()
    plan = lab.plan()
    macs = tenant_nea_macs(plan)
    jobs: list[Callable[[], list[CheckResult]]] = [
        lambda: check_neighbours(plan, state),
        lambda: check_replicas(plan, state, macs),
        lambda: check_isolation(plan, state),
        lambda: check_gateway(plan, state),
        lambda: check_tunnels(lab, plan, state),
    ]
    # each check spends its time waiting on processes: threads overlap the waits
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [r for f in futures for r in f.result()]


# ----- the topology's validate: tests --------------------------------------------------


def validate_test_argv(command: str | list[str]) -> list[str]:
    """A string runs through sh -c (pipes, quotes); a list runs as it is."""
    return ["sh", "-c", command] if isinstance(command, str) else list(command)


def run_validate_test(lab: Lab, test: ValidateTest, state: dict[str, Any],
             sleep: Callable[[float], None] = time.sleep) -> list[CheckResult]:
    """One topology test on each of its nodes: retried `retry` times, `wait` s apart."""
    plan = lab.plan()
    results = []
    for node_name in test.nodes:
        node = plan.node(node_name)
        # an NEA's namespace runs commands while the appliance is off; other nodes do not
        if node.kind not in (NodeKind.TENANT_NEA, NodeKind.SP_NEA) and \
                lab.node_power(state, node) != "on":
            results.append(CheckResult(test.name, node_name, True,
                                       f"not run: {node_name} is "
                                       f"{lab.node_power(state, node)}",
                                       skipped=True, kind="test"))
            continue
        reason: str | None = "not run"
        outcome = Outcome(-1, "")
        for attempt in range(test.retry + 1):
            if attempt:
                sleep(test.wait)
            try:
                done = run(validate_test_argv(test.command), netns=node.netns, check=False,
                           timeout=30)
                outcome = Outcome(done.returncode, done.stdout, done.stderr)
            except Exception as exc:  # a missing tool or a hung command is a failed test
                outcome = Outcome(127, "", str(exc))
            reason = match_expectation(test.expect, outcome.returncode, outcome.stdout)
            if reason is None:
                break
        details = {"attempts": attempt + 1, "exit_code": outcome.returncode,
                   "output": outcome.stdout[-500:]}
        if reason is None:
            message = test.pass_message or describe_expectation(test.expect)
            results.append(CheckResult(test.name, node_name, True, message, kind="test",
                                       details=details))
        else:
            tail = (outcome.stderr or outcome.stdout).strip().splitlines()
            why = reason + (f" ({tail[-1][:100]})" if tail else "")
            message = f"{test.fail_message}: {why}" if test.fail_message else why
            results.append(CheckResult(test.name, node_name, False, message, kind="test",
                                       details=details))
    return results


def validate(lab: Lab, builtin: bool = True) -> tuple[list[CheckResult], int]:
    """The topology's tests then the built-in checks; (results, exit code)."""
    state = lab.require_up()
    tests = lab.topology().validate_tests
    results = [r for test in tests for r in run_validate_test(lab, test, state)]
    if builtin:
        results += builtin_checks(lab)
    return results, exit_code(results, len(tests))
