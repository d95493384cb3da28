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
their tmp_path). netlab's library finds the state directory through
``NETLAB_STATE_DIR``, and the processes a lab starts (its supervisor) inherit
it, so each call sets that variable for its own duration only and puts the old
value back: the caller's environment is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

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


# ----- parsing the tools' output ---------------------------------------------------------

_PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_RTT = re.compile(r"= [\d.]+/([\d.]+)/[\d.]+")
_ARPING_MAC = re.compile(r"reply from \S+ \[([0-9A-Fa-f:]{17})\]")
_CURL_STATUS_MARK = "\nnetlab-http-status:"


def parse_ping(output: str) -> PingResult:
    counts = _PING_COUNTS.search(output)
    sent, got = (int(counts[1]), int(counts[2])) if counts else (0, 0)
    rtt = _PING_RTT.search(output)
    return PingResult(got > 0, sent, got, float(rtt[1]) if rtt else None, output)


def parse_arping(address: str, output: str) -> ArpResult:
    macs = list(dict.fromkeys(m.lower() for m in _ARPING_MAC.findall(output)))
    return ArpResult(address, macs, output)


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

    @contextlib.contextmanager
    def _scope(self) -> Iterator[Any]:
        """netlab's own Lab, with NETLAB_STATE_DIR set for the duration of one call."""
        saved = os.environ.get("NETLAB_STATE_DIR")
        if self.state_dir is not None:
            os.environ["NETLAB_STATE_DIR"] = str(self.state_dir)
        try:
            from netlab.lab import Lab as CoreLab

            yield CoreLab(self.name)
        finally:
            if self.state_dir is not None:
                if saved is None:
                    os.environ.pop("NETLAB_STATE_DIR", None)
                else:
                    os.environ["NETLAB_STATE_DIR"] = saved

    # ----- whole lab -------------------------------------------------------------------

    def up(self) -> str:
        """Bring the lab up: "created", or "already up" when it is (with this topology)."""
        with self._scope() as lab:
            return lab.up(self.topology, progress=self.progress)

    def down(self) -> None:
        """Remove everything of the lab; no error when nothing is left (idempotent)."""
        with self._scope() as lab:
            lab.cleanup(self.progress)

    def is_up(self) -> bool:
        with self._scope() as lab:
            return lab.is_up()

    def status(self, tunnels: bool = True) -> dict[str, Any]:
        """What `netlab status --json` prints: nodes, vms, neas, processes (and tunnels)."""
        from netlab import nea

        with self._scope() as lab:
            data = lab.status()
            if tunnels:
                state = lab.dir.read()
                data["tunnels"] = {key: nea.connectivity(lab, key, state)
                                   for key in lab.plan().tunnels}
            return data

    def replica_state(self, vm: str) -> str | None:
        """"Normal", "Failover", ... of VM's replica; None if it has none."""
        with self._scope() as lab:
            lab.plan().node(vm)
            return lab.require_up().get("replicas", {}).get(vm, {}).get("state")

    def graph(self, fmt: str = "dot") -> str:
        """The lab as DOT text (fmt "dot") or a text tree (fmt "ascii")."""
        from netlab import graph

        with self._scope() as lab:
            lab.require_up()
            draw = graph.to_ascii if fmt == "ascii" else graph.to_dot
            return draw(lab.plan(), lab.dir.read())

    # ----- lifecycle -------------------------------------------------------------------

    def failover(self, *vms: str, restore_point: str | int | None = None) -> Any:
        """Partial failover of VMs; returns the OperationResult (recovery_seconds, warnings)."""
        from netlab.orchestrator import operations

        point = None if restore_point is None else str(restore_point)
        with self._scope() as lab:
            return operations.failover(lab, list(vms), point, say=self.progress)

    def undo(self, *vms: str, force: bool = False) -> Any:
        """Failover -> Normal. Discards everything written on the replicas (no question)."""
        from netlab.orchestrator import operations

        with self._scope() as lab:
            return operations.undo(lab, list(vms), force=force, say=self.progress)

    def operation(self, command: str, *vms: str) -> Any:
        """Any other lifecycle command by its CLI name: permanent, failback, switch, ..."""
        from netlab.orchestrator import operations

        with self._scope() as lab:
            return getattr(operations, command.replace("-", "_"))(lab, list(vms),
                                                                  say=self.progress)

    def replicate(self, *vms: str) -> list[dict[str, Any]]:
        from netlab.orchestrator import operations

        with self._scope() as lab:
            return operations.replicate(lab, list(vms) or None, say=self.progress)

    def _vm_power(self, vm: str, action: str) -> str:
        from netlab.orchestrator import operations

        with self._scope() as lab:
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
        with self._scope() as lab:
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
        done = self.exec(node, "ping", "-c", str(count), "-W", str(max(1, round(wait))),
                         address, timeout=count * (wait + 1) + 5)
        return parse_ping(done.stdout)

    def arping(self, node: str, address: str, count: int = 2) -> ArpResult:
        """MACs that answer ARP for `address` on NODE's first port."""
        with self._scope() as lab:
            lab.require_up()
            target = lab.plan().node(node)
        done = self.exec(node, "arping", "-c", str(count), "-w", str(count + 1), "-I",
                         target.port.name, address, timeout=count + 6)
        return parse_arping(address, done.stdout)

    def curl(self, node: str, url: str, timeout: float = 5) -> CurlResult:
        done = self.exec(node, "curl", "-sS", "-m", str(timeout), "-w",
                         _CURL_STATUS_MARK + "%{http_code}", url, timeout=timeout + 5)
        body, _, code = done.stdout.rpartition(_CURL_STATUS_MARK)
        status = int(code) if code.strip().isdigit() and int(code) > 0 else None
        return CurlResult(status, body, done.stderr.strip())

    def mac(self, node: str, iface: str | None = None) -> str:
        """MAC address of NODE's IFACE (default: its first port)."""
        from netlab.net import links
        from netlab.net.namespaces import Netlink

        with self._scope() as lab:
            lab.require_up()
            target = lab.plan().node(node)
            name = iface or target.port.name
            with Netlink() as nl:
                for info in links.interfaces(nl[target.netns]):
                    if info["name"] == name:
                        return str(info["mac"]).lower()
        from netlab.errors import UnknownNode

        raise UnknownNode(f"{node} has no interface {name}")

    # ----- context manager ----------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()
