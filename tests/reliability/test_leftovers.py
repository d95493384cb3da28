"""kill -9 of `up`, `failover`, `undo`, `plan start` and `down` at chosen steps, then
`netlab cleanup`: the machine is exactly as before, and cleanup removed only what the
named lab owned.

Each run SIGKILLs the command right after one journaled step (NETLAB_FAULT, see
netlab.faults), so the same step is hit on every machine whatever its speed, and a
command that finishes before it fails the run. Every other run also brings the same
lab name up again after the cleanup (no "File exists") and cleans it once more.
tests/reliability/test_failure_points.py kills every step of every command and
checks what the *next lifecycle command* makes of it; this file checks what
`cleanup` makes of a crash, against a snapshot of the whole machine.

Before/after snapshot: `ip netns list`, links of the root namespace, /proc/mounts, the
root namespace's nft ruleset, processes (pid, start time, command, network namespace,
NETLAB_STATE_DIR), WireGuard's control sockets and /run/netlab. Other engineers' labs
come and go on this machine during a run, so differences are judged by attribution
(see reliability_helpers.leaks); what must survive is proven with sentinels: a second
lab (`neighbour`, failed over so it has its tunnel, proxy-ARP daemons and a mount), a
namespace `keep-<hex>` with a process in it, a file in WireGuard's socket directory
named like a socket of a lab whose name starts with this lab's, and a tmpfs mount
beside the state dir.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import wg_backend
from conftest import LabEnv, namespace_inodes, netlab_argv
from reliability_helpers import leaks, module_lab, sentinels, short_lab, snapshot

pytestmark = pytest.mark.root
__all__ = ["short_lab"]  # a fixture, imported to be found

COMMANDS = {
    "up": ["up"],
    "failover": ["failover", "acme/web"],
    "undo": ["undo", "--yes", "acme/web"],
    "plan": ["plan", "start", "acme"],
    "down": ["down"],
}
# (command, the step it is killed after): early, middle and late steps of each
RUNS = [
    ("up", "up:plumbed"), ("up", "replicated"),
    ("failover", "failover:power-on"), ("failover", "failover:tenant-nea"),
    ("undo", "undo:discard"),
    ("plan", "plan-start:gateway"), ("plan", "plan-start:booted"),
    ("down", "cleanup:processes"),
]


@pytest.fixture(scope="module")
def neighbour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    """A second lab beside the killed ones, with a failover running (tunnel, daemons, mount)."""
    with module_lab(tmp_path_factory) as lab:
        lab.netlab("failover", "acme/web")
        lab.netlab("vm", "fail", "acme/web")
        yield lab


def neighbour_facts(lab: LabEnv) -> dict:
    state = lab.status()
    return {
        "namespaces": lab.namespaces(),
        "processes": {n: p["pid"] for n, p in state["processes"].items() if p["alive"]},
        "dead": sorted(n for n, p in state["processes"].items() if not p["alive"]),
        "wireguard": wg_backend.artefacts(lab.prefix, lab.namespaces()),
    }


def neighbour_works(lab: LabEnv) -> bool:
    page = lab.lab_exec("acme/db", "curl", "-sS", "-m", "5", "http://192.168.10.11/")
    return page.returncode == 0 and "acme/web" in page.stdout


@pytest.mark.parametrize(("command", "event"), RUNS, ids=[e for _, e in RUNS])
def test_kill_9_then_cleanup_restores_the_machine(
    command: str, event: str, short_lab: LabEnv, neighbour: LabEnv, tmp_path: Path
) -> None:
    lab = short_lab
    other_before = neighbour_facts(neighbour)
    assert other_before["wireguard"] != wg_backend.NOTHING, "the neighbour lab has no tunnel"
    with sentinels(lab.name, tmp_path) as keep:
        before = snapshot()
        if command != "up":
            lab.netlab("up")
        if command in ("undo", "down"):
            lab.netlab("failover", "acme/web")
        log = tmp_path / "killed.log"
        with log.open("w") as out:
            done = subprocess.run([*netlab_argv(), *COMMANDS[command]],
                                  env={**lab.env, "NETLAB_FAULT": event},
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                  timeout=120, check=False)
        assert done.returncode == -signal.SIGKILL, f"not killed after {event}: {log.read_text()}"
        lab_inodes = set(namespace_inodes(lab.namespaces()))
        print(f"{command} killed after {event}: {len(lab_inodes)} namespaces of {lab.name}")
        cleaned = lab.netlab("cleanup", "--json")
        print(f"  cleanup: {cleaned.stdout.strip().replace(chr(10), ' ')[:300]}")
        if RUNS.index((command, event)) % 2 == 0:  # the same name comes up again
            lab.netlab("up")
            lab_inodes |= set(namespace_inodes(lab.namespaces()))
            lab.netlab("cleanup")
        after = snapshot()
        problems = leaks(before, after, lab, lab_inodes, [tmp_path, lab.state_dir])
        problems += keep.problems()
    assert neighbour_facts(neighbour) == other_before, "the neighbour lab was touched"
    assert neighbour_works(neighbour), "the neighbour lab's replica is unreachable"
    assert not problems, "\n".join(problems)
