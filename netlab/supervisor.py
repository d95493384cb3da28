"""One supervisor process per lab: restarts any supervised daemon that dies.

Like systemd on a real appliance, it keeps the proxy-ARP daemons, wireguard-go,
the VMs' HTTP servers and dnsmasq running; every restart is journaled. It is
started by `up`, recorded by pid, and ended first by `down` and `cleanup`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from netlab import nea, storage
from netlab.lab import Lab
from netlab.lab_daemons import PROXY_ARP
from netlab.plan import NodeKind
from netlab.processes import (
    ProcessRecord,
    is_alive,
    is_exiting,
    stop_process,
)
from netlab.receiver import RECORD_NAME as RECEIVER_RECORD
from netlab.receiver import start_receiver
from netlab.replication import Replicator
from netlab.workloads import start_dhcp_server, start_http_server

POLL_SECONDS = 0.2
log = logging.getLogger("netlab.supervisor")


def restart(lab: Lab, name: str) -> ProcessRecord | None:
    """Start again the process recorded as `name`, the way it was first started."""
    plan = lab.plan()
    kind, _, target = name.partition(":")
    logs, run_dir = lab.dir.sub("logs"), lab.dir.sub("run", 0o700)
    if kind == "httpd":
        node = plan.nodes[target]
        if node.kind is NodeKind.REPLICA:
            root = storage.replica_serving_path(lab.replica_dir(target.removesuffix("@sp")))
        else:
            root = lab.disk_dir(target)
        rec = start_http_server(name, node.netns, root, logs)
    elif kind == "dnsmasq":
        server = next(s for s in plan.dhcp_servers if f"{s.tenant}/{s.network}" == target)
        rec = start_dhcp_server(name, server, run_dir, logs)
    elif name == PROXY_ARP:
        # it relearns every appliance and set of the powered-on pairs from the state
        nea.ensure_proxy_daemon(lab)
        return None
    elif name == RECEIVER_RECORD:
        rec = start_receiver(plan, lab.dir.root, run_dir, logs)
    elif kind == "wireguard":
        tunnel = next(t for t in plan.tunnels.values() if target in (t.tenant_nea, t.sp_nea))
        # Both sides: a fresh client handshakes at once, where a client left running
        # would wait for its rekey timeout before it noticed the server restarted.
        nea.restart_tunnel(lab, tunnel)
        return None
    else:
        return None
    with lab.dir.update() as state:
        state.setdefault("processes", {})[name] = rec.to_dict() | {"supervised": True}
    return rec


def _still_wanted(lab: Lab, name: str) -> bool:
    state = lab.dir.read()
    kind, _, target = name.partition(":")
    if kind == "wireguard":
        plan = lab.plan()
        for tunnel in plan.tunnels.values():
            if target in (tunnel.tenant_nea, tunnel.sp_nea):
                return state.get("neas", {}).get(tunnel.key, {}).get("power") == "on"
    return state.get("status") == "up"


def _gone(name: str, record: ProcessRecord) -> bool:
    if not is_alive(record):
        return True
    # The proxy-ARP process killed with a hundred appliances takes ~1.3 s to exit (one
    # RCU grace period per packet socket it closes); it answers nothing meanwhile, and its
    # successor can open its sockets beside the closing ones: restart it at once.
    return name == PROXY_ARP and is_exiting(record.pid)


def supervise_once(lab: Lab) -> list[str]:
    """Restart every supervised process that died; return their names."""
    restarted = []
    with lab.dir.locked():
        state = lab.dir.read()
        dead = [
            name
            for name, data in state.get("processes", {}).items()
            if data.get("supervised") and _gone(name, ProcessRecord.from_dict(data))
        ]
        for name in dead:
            state["processes"].pop(name)
        if dead:
            lab.dir.write(state)
    for name in dead:
        if not _still_wanted(lab, name):
            continue
        try:
            restart(lab, name)
        except Exception as exc:  # a failed restart is retried at the next poll
            log.warning("restart of %s failed: %s", name, exc)
            lab.dir.journal("restart-failed", process=name, reason=str(exc))
            continue
        lab.dir.journal("restarted", process=name)
        restarted.append(name)
        if not _still_wanted(lab, name):  # switched off while we restarted it
            with lab.dir.update() as now:
                data = now.get("processes", {}).pop(name, None)
            if data:
                stop_process(ProcessRecord.from_dict(data))
    return restarted


def reap_children() -> None:
    """Collect the exit status of restarted daemons that have since been stopped.

    The supervisor is their parent; unreaped, each would stay a zombie.
    """
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run(lab_name: str) -> int:
    lab = Lab(lab_name)
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    replicator = Replicator(lab)  # schedules and the VMs' records (netlab.replication)
    while not stop and lab.dir.exists():
        if lab.dir.read().get("status") == "up":
            supervise_once(lab)
            try:
                replicator.tick(lab.dir.read())
            except Exception as exc:  # a bad tick must not stop the restarts
                log.warning("replication tick failed: %s", exc)
        reap_children()
        time.sleep(POLL_SECONDS)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netlab.supervisor")
    parser.add_argument("--lab", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return run(args.lab)


if __name__ == "__main__":
    sys.exit(main())
