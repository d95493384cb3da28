"""A real kill -9 at every journaled step of every lifecycle command, and what the next
command makes of it (docs/reliability.md §1, "Failure points").

Each test runs one command with ``NETLAB_FAULT=EVENT`` (netlab.faults): the process
SIGKILLs itself right after it journaled EVENT, so the step hit is the same on every
machine whatever its speed, and a command that finishes before the step fails the
test (exit status -9 is asserted, and EVENT must be the last line it journaled).
Then the next command either finishes the operation or rolls it back, as the docs
say for that command, and the lab is exactly as a fresh one would be.

Speed: the commands whose recovery leaves the lab as it was before (checked: the
``clean`` fingerprint below, taken when the lab was fresh, must match after every
test) share one lab per module and xdist worker; a test that leaves it different
fails, and the lab is replaced for the next test. ``up``, ``down``, ``cleanup`` and
``permanent`` (the replica becomes production) get a lab each. Every lab is taken
down with ``netlab down`` and checked for leftovers right after, before any cleanup.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import wg_backend
from conftest import (
    LabEnv,
    _not_reused,
    leftovers,
    mounts_under,
    namespace_inodes,
    netlab_argv,
    new_lab_name,
    root_links,
    skip_unless_root,
)
from reliability_helpers import alive, run_in, state_of

from netlab.state import LabDir
from netlab.topology.loader import default_topology_text

pytestmark = pytest.mark.root

FAILOVER_STEPS = ["start", "roll-back", "power-on", "sp-nea", "replication-hold",
                  "tenant-nea", "delta", "proven"]
# `replicate acme/kiosk` recovers an interrupted operation first (as every lifecycle
# command does) and then changes nothing: acme/kiosk is a DHCP VM without a replica.
RECOVER = ["replicate", "acme/kiosk"]
WEB, DB = "192.168.10.11", "192.168.10.12"


# ----- running a command that dies at a failure point ----------------------------------


def events(lab: LabEnv) -> list[str]:
    return [e["event"] for e in LabDir(lab.name, lab.lab_dir).events()]


def killed_at(lab: LabEnv, event: str, *args: str) -> None:
    """`netlab ARGS` with NETLAB_FAULT=event: it must die by SIGKILL right after `event`."""
    spec = event
    name = event.partition("#")[0]
    before = events(lab).count(name)
    done = subprocess.run([*netlab_argv(), *args], env={**lab.env, "NETLAB_FAULT": spec},
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == -signal.SIGKILL, (
        f"netlab {' '.join(args)} with NETLAB_FAULT={spec} was not killed (exit "
        f"{done.returncode}): it never journaled {name}\n{done.stdout}{done.stderr}")
    journal = events(lab) if lab.lab_dir.exists() else []
    if lab.lab_dir.exists():
        assert journal.count(name) > before, f"{name} is not in the journal"


def recovers(lab: LabEnv, args: list[str], says: str) -> str:
    done = lab.netlab(*args)
    out = done.stdout + done.stderr
    assert says in out, f"netlab {' '.join(args)} did not say {says!r}:\n{out}"
    return out


# ----- what a lab is, to compare with the same lab fresh ------------------------------


def provider_side(lab: LabEnv) -> dict[str, str]:
    """nft rulesets, addresses and routes where the gateway role and NEAs leave marks."""
    out = {}
    for suffix in ("sp.cgw", "sp.acme.lan.nea", "acme.nea-lan"):
        netns = lab.netns(suffix)
        nft = run_in(netns, "nft", "list", "ruleset").stdout
        addrs = subprocess.run(["ip", "-n", netns, "-o", "addr"], capture_output=True,
                               text=True, check=False).stdout
        routes = subprocess.run(["ip", "-n", netns, "route", "show", "table", "all"],
                                capture_output=True, text=True, check=False).stdout
        rules = subprocess.run(["ip", "-n", netns, "rule"], capture_output=True, text=True,
                               check=False).stdout
        # an address line without its changing lifetimes and link state
        addrs = "\n".join(" ".join(line.split()[1:4]) for line in addrs.splitlines())
        out[suffix] = "\n".join((nft, addrs, routes, rules))
    return out


def processes_by_namespace(lab: LabEnv) -> dict[str, list[str]]:
    """Command names of the processes in each of the lab's namespaces."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    names = namespace_inodes(lab.namespaces())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ino = (entry / "ns" / "net").stat().st_ino
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if ino in names and alive(int(entry.name)):
            found[names[ino]].append(comm)
    return {ns: sorted(comms) for ns, comms in sorted(found.items())}


def fingerprint(lab: LabEnv) -> dict[str, Any]:
    """Everything a recovered lab must have as it had when fresh (pids and times aside)."""
    state = state_of(lab)
    return {
        "status": state.get("status"),
        "operation": state.get("operation"),
        "nodes": state.get("nodes"),
        "replicas": {vm: (r.get("state"), r.get("replication"), r.get("restore_point"))
                     for vm, r in state.get("replicas", {}).items()},
        "neas": {k: v.get("power") for k, v in state.get("neas", {}).items()},
        "running plans": sorted(t for t, p in state.get("plans", {}).items()
                                if p.get("status") == "running"),
        "recorded processes": sorted(state.get("processes", {})),
        "dead recorded processes": sorted(
            n for n, p in state.get("processes", {}).items() if not alive(p["pid"])),
        "processes in namespaces": processes_by_namespace(lab),
        "wireguard": wg_backend.artefacts(lab.prefix, lab.namespaces()),
        "mounts": mounts_under(lab.state_dir),
        "root links": root_links(lab.prefix),
        "provider side": provider_side(lab),
    }


def down_leaves_nothing(lab: LabEnv) -> None:
    """`netlab down`, then the leak check at once: nothing may wait for a cleanup."""
    inodes = namespace_inodes(lab.namespaces())
    done = lab.netlab("down", check=False)
    problems = leftovers(lab, _not_reused(lab, inodes))
    assert done.returncode == 0, done.stderr
    assert not problems, "netlab down left:\n  " + "\n  ".join(problems)


def curl(lab: LabEnv, node: str, address: str) -> str:
    return lab.lab_exec(node, "curl", "-sS", "-m", "5", f"http://{address}/").stdout


def replica(lab: LabEnv, vm: str = "acme/web") -> tuple[str, str]:
    state = state_of(lab)
    return (state["replicas"][vm]["state"],
            state.get("nodes", {}).get(vm, {}).get("power", "off"))


def fast_topology(where: Path) -> Path:
    """The default lab with the plan's delays cut and undo batches of one VM."""
    import yaml

    data = yaml.safe_load(default_topology_text())
    plan = data["failover_plans"]["acme"]
    for step in plan["steps"]:
        step["delay"] = 0.2
    plan["undo_batch_size"] = 1
    plan["undo_batch_pause"] = 0
    path = where / "fast.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ----- a lab shared by the tests whose recovery leaves it as fresh ---------------------


@dataclass
class Shared:
    make: Callable[[], LabEnv]
    lab: LabEnv | None = None
    fresh: dict[str, Any] = field(default_factory=dict)

    def get(self) -> LabEnv:
        if self.lab is None:
            self.lab = self.make()
            self.fresh = fingerprint(self.lab)
        return self.lab

    def is_fresh(self) -> bool:
        return self.lab is not None and fingerprint(self.lab) == self.fresh

    def drop(self) -> None:
        if self.lab is not None:
            lab, self.lab = self.lab, None
            try:
                down_leaves_nothing(lab)
            finally:
                lab.netlab("cleanup", check=False)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    skip_unless_root()
    where = tmp_path_factory.mktemp("fp")
    topology = fast_topology(where)

    def make() -> LabEnv:
        lab = LabEnv(new_lab_name(), tmp_path_factory.mktemp("fp") / "state")
        lab.netlab("up", str(topology))
        return lab

    pool = Shared(make)
    yield pool
    pool.drop()


@pytest.fixture
def fresh_lab(shared: Shared) -> Iterator[LabEnv]:
    """The module's lab as fresh; replaced after a test that left it otherwise."""
    lab = shared.get()
    yield lab
    if not shared.is_fresh():
        shared.drop()


def as_fresh(shared: Shared, lab: LabEnv) -> None:
    now = fingerprint(lab)
    differs = {k: (shared.fresh[k], now[k]) for k in now if now[k] != shared.fresh[k]}
    assert not differs, f"the lab is not as it was fresh: {json.dumps(differs, indent=1)}"


# ----- the commands whose recovery leaves the lab as fresh -----------------------------


def serves_through_the_tunnel(lab: LabEnv) -> None:
    """acme/web's replica (source off) answers acme/db at .11 through the NEA pair."""
    assert "acme/web" in curl(lab, "acme/db", WEB)
    assert state_of(lab)["neas"]["acme/lan"]["power"] == "on"


def in_failover(lab: LabEnv) -> None:
    assert replica(lab)[0] == "Failover"
    assert state_of(lab)["operation"] is None


@dataclass(frozen=True)
class Case:
    """Kill `command` at each of `events`, starting from the fresh lab after `setup`;
    `recover` must say `says` and leave what `check` checks; `back` returns to fresh."""

    command: list[str]
    events: list[str]
    recover: list[str]
    says: str
    setup: list[list[str]] = field(default_factory=list)
    check: Callable[[LabEnv], None] | None = None
    back: list[list[str]] = field(default_factory=list)


def _ready_to_switch(lab: LabEnv) -> None:
    assert replica(lab) == ("Ready to switch", "off")
    serves_through_the_tunnel(lab)


def _failover_again(lab: LabEnv) -> None:
    assert replica(lab) == ("Failover", "off")
    serves_through_the_tunnel(lab)


def _db_off(lab: LabEnv) -> None:
    state = state_of(lab)
    assert state["nodes"]["acme/db"]["power"] == "off"
    assert "httpd:acme/db" not in state["processes"]
    assert curl(lab, "acme/app", DB) == ""


def _db_serves(lab: LabEnv) -> None:
    assert state_of(lab)["nodes"]["acme/db"]["power"] == "on"
    assert "acme/db" in curl(lab, "acme/app", DB)


def _pair_on(lab: LabEnv) -> None:
    tunnel = {lab.netns("acme.nea-lan"), lab.netns("sp.acme.lan.nea")}
    found = wg_backend.artefacts(lab.prefix, sorted(tunnel))
    interfaces = {link.split(":")[1]: link.split(":")[0] for link in found["links"]}
    assert len(interfaces) == 2 and set(interfaces.values()) == tunnel, found
    assert found == wg_backend.expected(interfaces)
    assert state_of(lab)["neas"]["acme/lan"]["power"] == "on"
    # the SP NEA's end of the tunnel answers the tenant NEA through it
    sp_end = "192.168.10.251"
    assert run_in(lab.netns("acme.nea-lan"), "ping", "-c", "1", "-W", "3",
                  sp_end).returncode == 0


def _plan_running(lab: LabEnv) -> None:
    status = json.loads(lab.netlab("plan", "status", "acme", "--json").stdout)
    assert status["status"] == "running" and not status["interrupted"], status
    states = {vm: state_of(lab)["replicas"][vm]["state"]
              for vm in ("acme/db", "acme/app", "acme/web")}
    assert set(states.values()) == {"Failover"}, states


FAILBACK_AGAIN = [["failback", "acme/web"], ["switch", "acme/web"], ["commit", "acme/web"]]

CASES = {
    "failover": Case(["failover", "acme/web"], [f"failover:{s}" for s in FAILOVER_STEPS],
                     RECOVER, "rolled back the interrupted failover of acme/web"),
    "undo": Case(["undo", "--yes", "acme/web"],
                 [f"undo:{s}" for s in ("power-off", "discard", "proxies", "announce")],
                 RECOVER, "finished the interrupted undo of acme/web",
                 setup=[["failover", "acme/web"]]),
    "failback": Case(["failback", "acme/web"], ["failback:source-off", "failback:copy"],
                     RECOVER, "rolled back the interrupted failback of acme/web",
                     setup=[["failover", "acme/web"]], check=_failover_again,
                     back=[["vm", "start", "acme/web"], *FAILBACK_AGAIN]),
    "switch": Case(["switch", "acme/web"],
                   ["switch:replica-off", "switch:copy", "switch:source-on"],
                   RECOVER, "rolled back the interrupted switch of acme/web",
                   setup=[["failover", "acme/web"], ["failback", "acme/web"]],
                   check=_ready_to_switch,
                   back=[["switch", "acme/web"], ["commit", "acme/web"]]),
    "commit": Case(["commit", "acme/web"], ["commit:view-dropped", "commit:commit"],
                   RECOVER, "finished the interrupted commit of acme/web",
                   setup=[["failover", "acme/web"], ["failback", "acme/web"],
                          ["switch", "acme/web"]]),
    "undo-failback": Case(["undo-failback", "acme/web"],
                          ["back-to-replicas:replicas-on", "undo-failback:back-to-replica"],
                          RECOVER, "finished the interrupted undo-failback of acme/web",
                          setup=[["failover", "acme/web"], ["failback", "acme/web"]],
                          check=_failover_again,
                          back=[["undo", "--yes", "acme/web"], ["vm", "start", "acme/web"]]),
    "undo-failback-after-switch": Case(
        ["undo-failback", "acme/web"],
        ["back-to-replicas:replicas-on", "undo-failback:back-to-replica"],
        RECOVER, "finished the interrupted undo-failback of acme/web",
        setup=[["failover", "acme/web"], ["failback", "acme/web"], ["switch", "acme/web"]],
        check=_failover_again,
        back=[["undo", "--yes", "acme/web"], ["vm", "start", "acme/web"]]),
    "vm-stop": Case(["vm", "stop", "acme/db"], ["vm-stop:workload", "vm-stop"],
                    ["vm", "stop", "acme/db"], "acme/db is off", check=_db_off,
                    back=[["vm", "start", "acme/db"]]),
    "vm-start": Case(["vm", "start", "acme/db"], ["vm-start:powered", "vm-start"],
                     ["vm", "start", "acme/db"], "acme/db is on",
                     setup=[["vm", "stop", "acme/db"]], check=_db_serves),
    "nea-up": Case(["nea", "up", "acme/lan"], ["nea-up-started", "nea-up:tunnel", "nea-up"],
                   ["nea", "up", "acme/lan"], "is on", check=_pair_on,
                   back=[["nea", "down", "acme/lan"]]),
    "nea-down": Case(["nea", "down", "acme/lan"], ["nea-down:proxies", "nea-down"],
                     ["nea", "down", "acme/lan"], "is off",
                     setup=[["nea", "up", "acme/lan"]]),
    "plan-start": Case(["plan", "start", "acme"],
                       ["plan-start:start", "plan-start:gateway", "plan-start:power-on",
                        "plan-start:booted#3"],
                       ["plan", "retry", "acme"], "finishing the interrupted",
                       check=_plan_running, back=[["plan", "undo", "acme", "--yes"]]),
    "plan-undo": Case(["plan", "undo", "acme", "--yes"],
                      ["plan-undo:start", "plan-undo:batch", "plan-undo:batch#3",
                       "plan-undo:gateway"],
                      ["plan", "undo", "acme", "--yes"], "undo done",
                      setup=[["plan", "start", "acme"]]),
}

POINTS = [(name, event) for name, case in CASES.items() for event in case.events]


@pytest.mark.parametrize(("name", "event"), POINTS, ids=[f"{n}@{e}" for n, e in POINTS])
def test_killed_at_a_step_then_the_next_command_recovers(
    name: str, event: str, shared: Shared, fresh_lab: LabEnv
) -> None:
    lab, case = fresh_lab, CASES[name]
    for args in case.setup:
        lab.netlab(*args)
    killed_at(lab, event, *case.command)
    recovers(lab, case.recover, case.says)
    assert state_of(lab).get("operation") is None
    if case.check is not None:
        case.check(lab)
    for args in case.back:
        lab.netlab(*args)
    as_fresh(shared, lab)


@pytest.mark.parametrize("event", ["plan-retry:start", "plan-retry:power-on",
                                   "plan-retry:booted#2"])
def test_killed_plan_retry_is_finished_by_the_next_retry(
    event: str, shared: Shared, fresh_lab: LabEnv
) -> None:
    """A plan start cut after its first VM, a retry cut at `event`: one more retry ends it."""
    lab = fresh_lab
    killed_at(lab, "plan-start:booted", "plan", "start", "acme")
    killed_at(lab, event, "plan", "retry", "acme")
    recovers(lab, ["plan", "retry", "acme"], "finishing the interrupted 'plan retry' of acme")
    _plan_running(lab)
    lab.netlab("plan", "undo", "acme", "--yes")
    as_fresh(shared, lab)


# ----- commands that get a lab each ----------------------------------------------------


@pytest.fixture
def own_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    """A lab name and state directory for one test; the test brings it up and down."""
    skip_unless_root()
    lab = LabEnv(new_lab_name(), tmp_path_factory.mktemp("fp") / "state")
    yield lab
    inodes = namespace_inodes(lab.namespaces())
    lab.netlab("cleanup", check=False)
    assert not leftovers(lab, _not_reused(lab, inodes))


@pytest.mark.parametrize("event", ["up-started", "up:plumbed", "replicated", "up-finished"])
def test_killed_up_is_cleaned_by_the_next_up(event: str, own_lab: LabEnv) -> None:
    lab = own_lab
    killed_at(lab, event, "up")
    lab.netlab("up")
    assert state_of(lab)["status"] == "up"
    assert "acme/web" in curl(lab, "acme/db", WEB)
    down_leaves_nothing(lab)


CLEANUP_STEPS = ["cleanup:processes", "cleanup:sockets", "cleanup:mounts",
                 "cleanup:namespaces"]


@pytest.mark.parametrize("event", CLEANUP_STEPS)
@pytest.mark.parametrize("command", ["down", "cleanup"])
def test_killed_down_or_cleanup_is_finished_by_running_it_again(
    command: str, event: str, own_lab: LabEnv
) -> None:
    """With a failover running (wireguard, proxy-ARP daemons, an overlay mount) so that
    every step has something to remove."""
    lab = own_lab
    lab.netlab("up")
    lab.netlab("failover", "acme/web")
    inodes = namespace_inodes(lab.namespaces())
    killed_at(lab, event, command)
    lab.netlab(command)
    problems = leftovers(lab, _not_reused(lab, inodes))
    assert not problems, f"netlab {command} run again left:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("event", ["permanent:replica-stopped", "permanent:commit"])
def test_killed_permanent_is_finished_by_the_next_command(event: str, own_lab: LabEnv) -> None:
    lab = own_lab
    lab.netlab("up")
    lab.netlab("failover", "acme/web")
    serving = lab.lab_dir / "sp" / "acme" / "web"
    mnt = next(p for p in (serving / "mnt", serving) if p.exists())
    lab.lab_exec("acme/web@sp", "sh", "-c", f"echo committed > {mnt}/p.txt", check=True)
    lab.netlab("vm", "fail", "acme/web")
    killed_at(lab, event, "permanent", "acme/web")
    recovers(lab, RECOVER, "finished the interrupted permanent of acme/web")
    state = state_of(lab)["replicas"]["acme/web"]
    assert (state["state"], state["replication"]) == ("Permanent failover", "excluded")
    assert "acme/web" in curl(lab, "acme/db", WEB)
    from netlab import storage

    assert (storage.replica_serving_path(serving) / "p.txt").read_text() == "committed\n"
    assert mounts_under(lab.state_dir) == []
    down_leaves_nothing(lab)
