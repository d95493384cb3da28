"""The Python API: drive a lab from a script or a test, with structured results.

    from netlab.api import Lab

    with Lab("mylab") as lab:           # `up` now, `down` when the block ends
        lab.fail("acme/web")            # the disaster
        lab.failover("acme/web")
        assert lab.curl("acme/db", "http://192.168.10.11/").ok

The orchestrator runs in this process, like the CLI: its netlink work must run in
the main thread (netlab.net.namespaces), which is where scripts and pytest tests
run. Everything needs root, as the CLI does.

``state_dir`` keeps a lab's state away from /var/lib/netlab (tests put it under
their tmp_path). It is handed to netlab's own Lab (and from there to the
processes the lab starts) explicitly: the caller's environment is never touched.

ARP is probed with Scapy inside the node's namespace (netlab.net.probes), and
ping and curl output is read there too: the results do not depend on which
``arping`` package is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from netlab.errors import NetlabError, UnknownNode
from netlab.net import probes

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ----- results ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class PingResult:
    ok: bool  # at least one reply
    transmitted: int
    received: int
    rtt_ms: float | None  # average round trip of the replies
    output: str = field(repr=False, default="")


@dataclass(frozen=True)
class ArpResult:
    """Who answered ARP for an address: one MAC normally, two in an IP conflict."""

    address: str
    macs: list[str]
    output: str = field(repr=False, default="")

    @property
    def ok(self) -> bool:
        return bool(self.macs)


@dataclass(frozen=True)
class CurlResult:
    status: int | None  # HTTP status; None when no answer came
    body: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 400


# ----- the lab --------------------------------------------------------------------------


class Lab:
    """One lab, by name, with its own state directory if given.

    name: 1-8 lowercase letters or digits (default: $NETLAB_LAB, else 'demo').
    topology: a topology file for `up` (default: the lab shipped with netlab).
    state_dir: where the lab's state lives (default: $NETLAB_STATE_DIR, else
    /var/lib/netlab); the lab's own directory is state_dir/name.
    """

    def __init__(
        self,
        name: str | None = None,
        topology: str | Path | None = None,
        state_dir: str | Path | None = None,
        progress: Progress = _quiet,
    ) -> None:
        from netlab.plan import check_lab_name
        from netlab.state import default_lab_name

        self.name = check_lab_name(default_lab_name() if name is None else name)
        self.topology = Path(topology) if topology is not None else None
        self.state_dir = Path(state_dir).resolve() if state_dir is not None else None
        self.progress = progress

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, state_dir={str(self.state_dir) if self.state_dir else None!r})"

    def _core(self) -> Any:
        """netlab's own Lab for this name and state directory."""
        from netlab.lab import Lab as CoreLab

        return CoreLab(self.name, self.state_dir)

    # ----- whole lab -------------------------------------------------------------------

    def up(self) -> str:
        """Bring the lab up: "created", or "already up" when it is (with this topology)."""
        lab = self._core()
        return lab.up(self.topology, progress=self.progress)

    def down(self) -> None:
        """Remove everything of the lab; no error when nothing is left (idempotent)."""
        lab = self._core()
        lab.cleanup(self.progress)

    def is_up(self) -> bool:
        lab = self._core()
        return lab.is_up()

    def status(self, tunnels: bool = True) -> dict[str, Any]:
        """What `netlab status --json` prints: nodes, vms, neas, processes (and tunnels)."""
        from netlab import nea_health

        lab = self._core()
        data = lab.status()
        if tunnels:
            state = lab.dir.read()
            data["tunnels"] = {key: nea_health.connectivity(lab, key, state)
                               for key in lab.plan().tunnels}
        return data

    def replica_state(self, vm: str) -> str | None:
        """"Normal", "Failover", ... of VM's replica; None if it has none."""
        lab = self._core()
        lab.plan().node(vm)
        return lab.require_up().get("replicas", {}).get(vm, {}).get("state")

    def graph(self, fmt: str = "dot") -> str:
        """The lab as DOT text (fmt "dot") or a text tree (fmt "ascii")."""
        from netlab import graph

        lab = self._core()
        lab.require_up()
        draw = graph.to_ascii if fmt == "ascii" else graph.to_dot
        return draw(lab.plan(), lab.dir.read())

    def validate(self, tests: tuple[str, ...] = (), nodes: tuple[str, ...] = ()
                 ) -> tuple[list[Any], int]:
        """What `netlab validate` checks: (CheckResults, exit status 0, 1 or 3)."""
        from netlab import verify

        return verify.validate(self._core(), tests, nodes)

    # ----- lifecycle -------------------------------------------------------------------

    def failover(self, *vms: str, restore_point: str | int | None = None) -> Any:
        """Partial failover of VMs; returns the OperationResult (recovery_seconds, warnings,
        rpo: per VM the restore point used, its age in seconds and the records lost)."""
        from netlab.orchestrator import operations

        point = None if restore_point is None else str(restore_point)
        lab = self._core()
        return operations.failover(lab, list(vms), point, say=self.progress)

    def undo(self, *vms: str, force: bool = False) -> Any:
        """Failover -> Normal. Discards everything written on the replicas (no question)."""
        from netlab.orchestrator import operations

        lab = self._core()
        return operations.undo(lab, list(vms), force=force, say=self.progress)

    def operation(self, command: str, *vms: str) -> Any:
        """Any other lifecycle command by its CLI name: permanent, failback, switch, ..."""
        from netlab.orchestrator import operations

        lab = self._core()
        return getattr(operations, command.replace("-", "_"))(lab, list(vms),
                                                              say=self.progress)

    def replicate(self, *vms: str) -> list[dict[str, Any]]:
        from netlab.orchestrator import operations

        lab = self._core()
        return operations.replicate(lab, list(vms) or None, say=self.progress)

    def _vm_power(self, vm: str, action: str) -> str:
        from netlab.orchestrator import operations

        lab = self._core()
        return operations.vm_power(lab, vm, action)

    def fail(self, vm: str) -> str:
        """Simulate a disaster: VM drops off its LAN at once."""
        return self._vm_power(vm, "fail")

    def start(self, vm: str) -> str:
        return self._vm_power(vm, "start")

    def stop(self, vm: str) -> str:
        return self._vm_power(vm, "stop")

    # ----- inside nodes ----------------------------------------------------------------

    def _netns(self, node: str) -> str:
        lab = self._core()
        lab.require_up()
        return lab.plan().node(node).netns

    def exec(self, node: str, *cmd: str, timeout: float = 30, input: str | None = None
             ) -> ExecResult:
        """Run CMD inside NODE's namespace (like `netlab exec`); never raises on exit status."""
        from netlab.run import run

        done = run(list(cmd), netns=self._netns(node), check=False, timeout=timeout,
                   input=input)
        return ExecResult(done.returncode, done.stdout, done.stderr)

    def ping(self, node: str, address: str, count: int = 1, wait: float = 2) -> PingResult:
        done = self.exec(node, *probes.ping_argv(address, count, wait),
                         timeout=count * (wait + 1) + 5)
        summary = probes.parse_ping(done.stdout)
        return PingResult(summary.ok, summary.transmitted, summary.received, summary.rtt_ms,
                          done.stdout)

    def arping(self, node: str, address: str, window: float = 1.0) -> ArpResult:
        """Every MAC that answers ARP for `address` on NODE's first port (two: a conflict).

        Probed with Scapy inside NODE's namespace, whatever `arping` is installed.
        """
        lab = self._core()
        lab.require_up()
        target = lab.plan().node(node)
        [answer] = probes.arp_probe([probes.ArpJob(target.netns, target.port.name, address)],
                                    window)
        if answer.error:
            raise NetlabError(f"cannot probe ARP from {node}: {answer.error}")
        return ArpResult(address, answer.macs)

    def curl(self, node: str, url: str, timeout: float = 5) -> CurlResult:
        done = self.exec(node, *probes.curl_argv(url, timeout, with_status=True),
                         timeout=timeout + 5)
        status, body = probes.parse_curl(done.stdout)
        return CurlResult(status, body, done.stderr.strip())

    def mac(self, node: str, iface: str | None = None) -> str:
        """MAC address of NODE's IFACE (default: its first port)."""
        lab = self._core()
        lab.require_up()
        target = lab.plan().node(node)
        name = iface or target.port.name
        try:
            return probes.interface_mac(target.netns, name)
        except NetlabError:
            raise UnknownNode(f"{node} has no interface {name}") from None

    # ----- context manager ----------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()
