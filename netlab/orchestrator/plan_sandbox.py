"""A cloud failover plan's replicas booted and proven: the isolated copy `plan test` boots
them in, and the ping that proves a replica booted (also used by `plan start`).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from ipaddress import IPv4Network
from typing import Any

from netlab import storage
from netlab.errors import NetlabError
from netlab.lab import Lab, namespace_sysctls, segment_sysctls
from netlab.net import links
from netlab.net.namespaces import Netlink, delete_namespace, namespace_exists
from netlab.orchestrator.plan_rules import plan_tunnels
from netlab.plan import Tunnel
from netlab.processes import ProcessRecord, stop_process
from netlab.run import run
from netlab.topology.model import FailoverPlan
from netlab.workloads import start_http_server

SUCCESS = "success"
FAILED = "failed"
# A replica counts as booted when it answers ping; the real product waits for the
# guest's heartbeat the same way before it starts the next VM.
BOOT_TIMEOUT = 10.0


def _vm_names(tenant: str, fp: FailoverPlan) -> list[str]:
    return [f"{tenant}/{s.vm}" for s in fp.steps]


def answers(netns: str, addresses: list[str], timeout: float = BOOT_TIMEOUT) -> set[str]:
    """Which of `addresses` answer ping from `netns` within `timeout` (polled together)."""
    deadline = time.monotonic() + timeout
    waiting, answered = list(addresses), set()
    while waiting and time.monotonic() < deadline:
        for address in list(waiting):
            done = run(["ping", "-c", "1", "-W", "1", address], netns=netns, check=False,
                       timeout=5)
            if done.returncode == 0:
                answered.add(address)
                waiting.remove(address)
    return answered


class Sandbox:
    """An isolated copy of the plan's cloud networks: namespaces, overlays, processes.

    Names: bridge ``<lab>-sp.<t>.<net>.test``, probe ``<lab>-sp.<t>.<net>.probe``
    (at the SP NEA's cloud address), VM copies ``<lab>-<t>.<vm>@test``; interfaces
    ``<lab>-k<n>`` (bridge), ``<lab>-t<n>`` (node end), ``<lab>-q<n>`` (bridge end).
    Everything is under the lab's prefix and state directory, so `netlab cleanup`
    finds it even after a crash.
    """

    def __init__(self, lab: Lab, tenant: str, fp: FailoverPlan) -> None:
        self.lab, self.tenant, self.fp = lab, tenant, fp
        self.lab_plan = lab.plan()
        self.tunnels = plan_tunnels(self.lab_plan, tenant, fp)
        self.root = lab.dir.root / "plan-test" / tenant
        self.count = 0
        self.nl = Netlink()
        self.bridges: dict[str, tuple[str, int]] = {}  # network key -> (netns, index)

    def bridge_ns(self, tunnel: Tunnel) -> str:
        return f"{self.lab.name}-sp.{tunnel.tenant}.{tunnel.network}.test"

    def probe_ns(self, tunnel: Tunnel) -> str:
        return f"{self.lab.name}-sp.{tunnel.tenant}.{tunnel.network}.probe"

    def vm_ns(self, name: str) -> str:
        return f"{self.lab.name}-{name.replace('/', '.')}@test"

    def namespaces(self) -> list[str]:
        names = [n for t in self.tunnels for n in (self.probe_ns(t), self.bridge_ns(t))]
        return [self.vm_ns(v) for v in _vm_names(self.tenant, self.fp)] + names

    def _veth(self, netns: str, tunnel: Tunnel, cidr: str) -> str:
        self.count += 1
        node_if = f"{self.lab.name}-t{self.count}"
        bridge_ns, index = self.bridges[tunnel.key]
        sock = self.nl.create(netns, namespace_sysctls(None))
        links.set_link_state(sock, "lo", True)
        links.add_veth_to_bridge(sock, node_if, netns, self.nl[bridge_ns],
                                 f"{self.lab.name}-q{self.count}", index)
        links.add_address(sock, node_if, cidr)
        return node_if

    def create(self) -> None:
        self.remove()  # leftovers of a test that crashed
        for tunnel in self.tunnels:
            self.count += 1
            sock = self.nl.create(self.bridge_ns(tunnel), segment_sysctls())
            index = links.add_bridge(sock, f"{self.lab.name}-k{self.count}")
            self.bridges[tunnel.key] = (self.bridge_ns(tunnel), index)
            prefix = IPv4Network(tunnel.subnet).prefixlen
            # no route out: the probe has only its connected subnet
            self._veth(self.probe_ns(tunnel), tunnel, f"{tunnel.sp_nea_address}/{prefix}")

    def boot(self, name: str) -> dict[str, Any]:
        """Boot a copy of `name`'s replica from its latest restore point; its result."""
        vm = self.lab_plan.nodes[name]
        tunnel = self.lab_plan.tunnels[f"{self.tenant}/{vm.network}"]
        result: dict[str, Any] = {"status": SUCCESS, "reason": None}
        try:
            point = storage.get_restore_point(self.lab.replica_dir(name), "latest")
        except NetlabError as exc:
            return result | {"status": FAILED, "reason": str(exc)}
        base = self.root / (vm.vm or "")
        for sub in ("upper", "work", "mnt"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        # the restore point read-only under a throwaway delta, as a failover mounts it
        storage._mount_overlay(point.path, base / "upper", base / "work", base / "mnt")
        netns = self.vm_ns(name)
        prefix = IPv4Network(tunnel.subnet).prefixlen
        self._veth(netns, tunnel, f"{vm.address}/{prefix}")
        links.add_route(self.nl[netns], "default", via=tunnel.gateway_address)
        rec = start_http_server(f"plan-test:httpd:{name}", netns, base / "mnt",
                                self.lab.dir.sub("logs"))
        # recorded while it runs, so that a crash leaves it findable by `netlab cleanup`
        with self.lab.dir.update() as state:
            state.setdefault("processes", {})[rec.name] = rec.to_dict() | {"supervised": False}
        answered = answers(self.probe_ns(tunnel), [vm.address or ""])
        if not answered:
            return result | {"status": FAILED, "reason": f"no ping reply within "
                             f"{BOOT_TIMEOUT:.0f} s in the isolated network",
                             "restore_point": point.id}
        return result | {"restore_point": point.id}

    def remove(self) -> None:
        names = [f"plan-test:httpd:{v}" for v in _vm_names(self.tenant, self.fp)]
        with self.lab.dir.update() as state:
            records = [state.get("processes", {}).pop(n, None) for n in names]
        for data in records:
            if data:
                stop_process(ProcessRecord.from_dict(data), timeout=1.0)
        self.nl.close()  # a held socket keeps a deleted namespace alive
        for netns in self.namespaces():
            if namespace_exists(netns):
                delete_namespace(netns)
        if self.root.exists():
            storage.cleanup_mounts_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.parent.rmdir()  # plan-test/, when no other tenant's test uses it
