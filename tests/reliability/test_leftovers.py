"""kill -9 of `netlab up`, `failover` and `undo` at seeded random points, then `netlab cleanup`:
the machine is exactly as before, and cleanup removed only what the named lab owned.

20 runs (SEED below): 6 of `up`, 5 of `failover acme/web`, 5 of `undo acme/web` and 4
of `plan start acme` (8/6/6 and no plan where the `plan` command does not exist), each
killed after a delay drawn uniformly from [0, typical duration of the command here]
(up 0.8 s, failover 1.0 s, undo 1.5 s, plan start 5 s), so some kills land early, some
in the middle, and a few after the command finished. Every fifth run also brings the
same lab name up again after the cleanup (no "File exists") and cleans it once more.

Before/after snapshot: `ip netns list`, links of the root namespace, /proc/mounts, the
root namespace's nft ruleset, processes (pid, start time, command, network namespace,
NETLAB_STATE_DIR) and /var/run/wireguard. Other engineers' labs come and go on this
machine during a run, so differences are judged by attribution (see
reliability_helpers.leaks); what must survive is proven with sentinels: a second lab
(`neighbour`, failed over so it has wireguard-go, proxy-ARP daemons and a mount), a
namespace `keep-<hex>` with a process in it, a file `/var/run/wireguard/<lab>0-w1.sock`
(a lab name that starts with this lab's name) and a tmpfs mount beside the state dir.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LabEnv, namespace_inodes, netlab_argv
from reliability_helpers import leaks, module_lab, sentinels, short_lab, snapshot

from netlab import cli

pytestmark = pytest.mark.root
__all__ = ["short_lab"]  # a fixture, imported to be found

SEED = 20240909
TYPICAL_SECONDS = {"up": 0.8, "failover": 1.0, "undo": 1.5, "plan": 5.0}
COMMANDS = {
    "up": ["up"],
    "failover": ["failover", "acme/web"],
    "undo": ["undo", "--yes", "acme/web"],
    "plan": ["plan", "start", "acme"],
}
HAS_PLAN = "plan" in cli.main.commands
RUNS = (["up"] * 6 + ["failover"] * 5 + ["undo"] * 5 + ["plan"] * 4 if HAS_PLAN
        else ["up"] * 8 + ["failover"] * 6 + ["undo"] * 6)


def schedule(run: int) -> tuple[str, float]:
    command = RUNS[run]
    delay = random.Random(SEED + run).uniform(0, TYPICAL_SECONDS[command])
    return command, delay


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
        "sockets": sorted(p.name for p in Path("/var/run/wireguard").glob(f"{lab.prefix}*")),
    }


def neighbour_works(lab: LabEnv) -> bool:
    page = lab.lab_exec("acme/db", "curl", "-sS", "-m", "5", "http://192.168.10.11/")
    return page.returncode == 0 and "acme/web" in page.stdout


@pytest.mark.parametrize("run", range(len(RUNS)), ids=lambda r: f"{RUNS[r]}-{r}")
def test_kill_9_then_cleanup_restores_the_machine(
    run: int, short_lab: LabEnv, neighbour: LabEnv, tmp_path: Path
) -> None:
    lab = short_lab
    command, delay = schedule(run)
    other_before = neighbour_facts(neighbour)
    assert other_before["sockets"], "the neighbour lab runs no wireguard-go"
    with sentinels(lab.name, tmp_path) as keep:
        before = snapshot()
        if command in ("failover", "undo", "plan"):
            lab.netlab("up")
        if command == "undo":
            lab.netlab("failover", "acme/web")
        log = tmp_path / "killed.log"
        with log.open("w") as out:
            proc = subprocess.Popen([*netlab_argv(), *COMMANDS[command]], env=lab.env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            time.sleep(delay)
            finished = proc.poll() is not None
            if not finished:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        lab_inodes = set(namespace_inodes(lab.namespaces()))
        print(f"run {run}: {command}, kill at {delay:.3f} s "
              f"({'finished before the kill' if finished else 'SIGKILL'}, exit {proc.returncode}); "
              f"{len(lab_inodes)} namespaces of {lab.name} at the kill")
        done = lab.netlab("cleanup", "--json")
        print(f"  cleanup: {done.stdout.strip().replace(chr(10), ' ')[:300]}")
        if run % 5 == 0:  # the same name comes up again: nothing is in the way
            lab.netlab("up")
            lab_inodes |= set(namespace_inodes(lab.namespaces()))
            lab.netlab("cleanup")
        after = snapshot()
        problems = leaks(before, after, lab, lab_inodes, [tmp_path, lab.state_dir])
        problems += keep.problems()
    assert neighbour_facts(neighbour) == other_before, "the neighbour lab was touched"
    assert neighbour_works(neighbour), "the neighbour lab's replica is unreachable"
    assert not problems, "\n".join(problems)
