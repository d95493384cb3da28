"""Shared fixtures: a private lab per test, one shared default lab, and a leak check.

Every lab a test makes has its own name (``t`` + 6 hex digits) and its own state
directory under the test's tmp_path. Teardown runs ``netlab down`` (``netlab cleanup``
if the lab is not up) and then *asserts* that nothing of the lab is left: no
namespace ``<lab>-*``, no process that lived in one of them or names the lab, no
WireGuard socket, no mount under the state directory, no link in the root namespace,
no state directory. When it finds leftovers it removes them too (so one failing
test does not poison the machine) and fails the test.

Integration tests carry ``pytest.mark.root``; they are skipped, with the reason,
when not running as root or when a tool the lab needs is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wg_backend  # WireGuard artefacts, whichever backend runs

REPO = Path(__file__).resolve().parents[1]
NETNS_DIR = Path("/run/netns")

# Tools a whole lab needs (netlab up, and the checks the tests run in it).
LAB_TOOLS = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "nft": "nftables",
    "busybox": "busybox",
    "dnsmasq": "dnsmasq-base",
    "ping": "iputils-ping",
    "curl": "curl",
    "arping": "iputils-arping",
}


# ----- skipping ------------------------------------------------------------------


def root_skip_reason(tools: dict[str, str] | None = None) -> str | None:
    """Why a root test cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root: creates network namespaces, links and nftables rulesets"
    missing = {t: pkg for t, pkg in (tools or {}).items() if shutil.which(t) is None}
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        return (
            f"missing tools: {', '.join(sorted(missing))} "
            f"(apt-get install -y --no-install-recommends {packages})"
        )
    return None


def skip_unless_root(tools: dict[str, str] | None = None) -> None:
    """Skip the calling test (or fixture) unless it runs as root with `tools` installed."""
    reason = root_skip_reason(LAB_TOOLS if tools is None else tools)
    if reason:
        pytest.skip(reason)


# ----- parallel runs (pytest-xdist, --dist loadgroup) --------------------------------

# Modules whose tests do not depend on each other's order: each test uses a lab of its
# own, only reads a shared one, or puts the shared lab back as it found it. xdist may
# spread their tests over workers; a module-scoped lab is then brought up once in each
# worker that runs some of them. Every other module runs whole on one worker, in order,
# as it was written (its tests may build on what the previous one left).
SPREAD_MODULES = {
    "tests/integration/test_bringup.py",
    "tests/integration/test_failover.py",
    "tests/reliability/test_bad_input.py",
    "tests/reliability/test_leftovers.py",
}


def work_unit(nodeid: str) -> str:
    """What xdist hands to one worker whole: the test's module, or the test alone."""
    module = nodeid.split("::", 1)[0]
    if module.startswith("tests/unit/") or module in SPREAD_MODULES:
        return nodeid
    return module


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # a serial run needs no xdist
    pass
else:

    class ModuleScheduling(LoadScopeScheduling):
        """--dist loadgroup with the groups of work_unit, the largest first.

        xdist's own loadgroup sends xdist_group marks as a suffix of item._nodeid, which
        pytest 9's item.nodeid no longer reflects: its groups are lost, hence this.
        """

        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
        if config.getvalue("dist") != "loadgroup":
            return None  # another --dist: xdist's own scheduler
        return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = root_skip_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("root") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


# ----- running netlab ------------------------------------------------------------


def netlab_argv() -> list[str]:
    """How to run the CLI: the venv's script, else one on PATH, else the module."""
    for candidate in (REPO / ".venv" / "bin" / "netlab", Path(sys.executable).with_name("netlab")):
        if candidate.exists():
            return [str(candidate)]
    found = shutil.which("netlab")
    return [found] if found else [sys.executable, "-m", "netlab.cli"]


def new_lab_name() -> str:
    return f"t{secrets.token_hex(3)}"


@dataclass
class LabEnv:
    """One lab of a test: its name, its state directory and how to run netlab on it."""

    name: str
    state_dir: Path  # NETLAB_STATE_DIR; the lab's own directory is state_dir / name

    @property
    def prefix(self) -> str:
        return f"{self.name}-"

    @property
    def lab_dir(self) -> Path:
        return self.state_dir / self.name

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "NETLAB_STATE_DIR": str(self.state_dir), "NETLAB_LAB": self.name}

    def netlab(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `netlab ARGS` for this lab (lab and state dir from the environment)."""
        done = subprocess.run(
            [*netlab_argv(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"netlab {' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def lab_exec(
        self, node: str, *cmd: str, check: bool = False, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """`netlab exec NODE -- CMD`; by default the caller looks at the exit status."""
        return self.netlab("exec", "--lab", self.name, node, "--", *cmd, check=check,
                           timeout=timeout)

    def status(self) -> dict:
        return json.loads(self.netlab("status", "--json").stdout)

    def namespaces(self) -> list[str]:
        return namespaces_with_prefix(self.prefix)

    def netns(self, suffix: str) -> str:
        """The full name of one of the lab's namespaces, e.g. netns('sp.core')."""
        return f"{self.prefix}{suffix}"


def steady_status(status: dict) -> dict:
    """`status --json` less what moves on its own while nothing happens: the host's room
    for more NEA pairs (other programs change it) and the age of each VM's newest restore
    point (its RPO grows every second). What a refused command must leave alone."""
    status = {k: v for k, v in status.items() if k != "wireguard"}
    vms = []
    for vm in status.get("vms", []):
        rpo = vm.get("rpo")
        if rpo:
            vm = {**vm, "rpo": {k: v for k, v in rpo.items()
                                if k not in ("age_seconds", "over_goal")}}
        vms.append(vm)
    if "vms" in status:
        status["vms"] = vms
    return status


# ----- finding leftovers -----------------------------------------------------------


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Names from `ip netns list` (the source of truth users see) with that prefix."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(prefix))


def namespace_inodes(names: list[str]) -> dict[int, str]:
    inodes = {}
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            inodes[os.stat(NETNS_DIR / name).st_ino] = name
    return inodes


def pids_in(inodes: dict[int, str]) -> dict[int, str]:
    """Live processes whose network namespace has one of `inodes` (pid -> namespace)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except OSError:
            continue
        if ino in inodes and not _is_zombie(int(entry.name)):
            found[int(entry.name)] = inodes[ino]
    return found


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def pids_naming(needles: list[str]) -> dict[int, str]:
    """Live processes whose command line contains one of `needles` (pid -> command line)."""
    found = {}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            raw = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if cmdline and any(n in cmdline for n in needles) and not _is_zombie(int(entry.name)):
            found[int(entry.name)] = cmdline
    return found


def mounts_under(path: Path) -> list[str]:
    root = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == root or point.startswith(root + "/"):
            found.append(point)
    return found


def root_links(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    names = [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()]
    return [n for n in names if n.startswith(prefix)]


def still_ours(lab: LabEnv, inodes: dict[int, str]) -> dict[int, str]:
    """The lab's namespace inodes, minus those now reused by another lab's named namespace.

    A deleted namespace that a process still holds keeps its inode; a freed one's
    inode number can be given to a new namespace of someone else.
    """
    others = {
        ino for ino, name in namespace_inodes(namespaces_with_prefix("")).items()
        if not name.startswith(lab.prefix)
    }
    current = namespace_inodes(lab.namespaces())
    return {ino: name for ino, name in {**inodes, **current}.items() if ino not in others}


def processes_left_in(lab: LabEnv, inodes: dict[int, str]) -> dict[int, str]:
    """Processes still in the lab's namespaces: pid -> 'namespace: command line'.

    The kernel gives a freed namespace inode to the next namespace made (lowest number
    first), and another test's `up` holds a new namespace for a moment before it names
    it in /run/netns: its process then looks like ours. So a process is ours only if it
    is still there, in a namespace no one else has named, half a second later.
    """
    found = pids_in(still_ours(lab, inodes))
    if found:
        time.sleep(0.5)
        again = pids_in(still_ours(lab, inodes))
        found = {pid: ns for pid, ns in found.items() if again.get(pid) == ns}
    return {pid: f"{ns}: {_command_line(pid)}" for pid, ns in found.items()}


def _command_line(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "(gone)"
    return " ".join(a.decode(errors="replace") for a in argv if a)[:200]


def leftovers(lab: LabEnv, inodes: dict[int, str]) -> list[str]:
    """Everything of `lab` still on the machine; `inodes` are its namespaces before cleanup."""
    problems = []
    if names := lab.namespaces():
        problems.append(f"namespaces: {names}")
    if pids := processes_left_in(lab, inodes):
        problems.append(f"processes in the lab's namespaces: {pids}")
    needles = [str(lab.lab_dir), f"/run/netns/{lab.prefix}", f" {lab.prefix}"]
    if pids := pids_naming(needles):
        problems.append(f"processes naming the lab: {pids}")
    if socks := [str(p) for p in wg_backend.socket_paths(lab.prefix)]:
        problems.append(f"wireguard sockets: {socks}")
    if lab.state_dir.exists() and (mounts := mounts_under(lab.state_dir)):
        problems.append(f"mounts: {mounts}")
    if links := root_links(lab.prefix):
        problems.append(f"links in the root namespace: {links}")
    if lab.lab_dir.exists():
        problems.append(f"state directory {lab.lab_dir} still exists")
    return problems


def force_remove(lab: LabEnv) -> None:
    """Last resort after a failed leak check, so that the next tests start clean."""
    for pid in {*pids_in(namespace_inodes(lab.namespaces())),
                *pids_naming([str(lab.lab_dir), f"/run/netns/{lab.prefix}"])}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if lab.state_dir.exists():
        for point in sorted(mounts_under(lab.state_dir), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for name in lab.namespaces():
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for sock in wg_backend.socket_paths(lab.prefix):
        sock.unlink(missing_ok=True)
    shutil.rmtree(lab.lab_dir, ignore_errors=True)


def _not_reused(lab: LabEnv, inodes: dict[int, str]) -> dict[int, str]:
    """The lab's namespace inodes, minus those now hosting a process of another lab (its
    NETLAB_STATE_DIR): a namespace freed by down gives its inode number to the next one
    made anywhere, and the parallel workers make many."""
    reused = set()
    for pid in pids_in(inodes):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            ino = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            continue
        dirs = [e.split(b"=", 1)[1] for e in env if e.startswith(b"NETLAB_STATE_DIR=")]
        if dirs and dirs[0].decode(errors="replace") != str(lab.state_dir):
            reused.add(ino)
    return {ino: name for ino, name in inodes.items() if ino not in reused}


def cleanup_and_check(lab: LabEnv) -> None:
    """`netlab down` a lab that is still up and assert at once that nothing of it is
    left (a cleanup first would hide what down leaves); then `netlab cleanup` for
    whatever a test left in a state down refuses, and assert again."""
    inodes = namespace_inodes(lab.namespaces())
    problems = []
    # --- leak check right after down (issue 16), before any cleanup ---
    if (lab.lab_dir / "state.json").exists():
        down = lab.netlab("down", "--lab", lab.name, check=False)
        after_down = leftovers(lab, _not_reused(lab, inodes))
        if down.returncode == 0 and not after_down:
            return
        if down.returncode == 0:
            problems += [f"after down, before cleanup: {p}" for p in after_down]
    # --- end of the down check ---
    done = lab.netlab("cleanup", "--lab", lab.name, check=False)
    problems += leftovers(lab, inodes)
    if done.returncode != 0:
        problems.insert(0, f"netlab cleanup exited {done.returncode}: {done.stderr.strip()}")
    if problems:
        force_remove(lab)
        pytest.fail(f"lab {lab.name} left things behind after cleanup:\n  " +
                    "\n  ".join(problems), pytrace=False)


# ----- fixtures ------------------------------------------------------------------


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabEnv]:
    """A fresh lab name and state directory for one test; leak-checked at teardown.

    The state directory (tmp_path/'state') is not created: netlab makes it.
    """
    skip_unless_root()
    lab = LabEnv(new_lab_name(), tmp_path / "state")
    monkeypatch.setenv("NETLAB_STATE_DIR", str(lab.state_dir))
    monkeypatch.setenv("NETLAB_LAB", lab.name)
    yield lab
    cleanup_and_check(lab)


@pytest.fixture
def short_lab_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[LabEnv]:
    """Like lab_env, with the state directory on a short path under /tmp: paths inside
    it (sockets, mount points) stay far from the kernel's length limits."""
    skip_unless_root()
    base = Path(tempfile.mkdtemp(prefix="nls"))
    env = LabEnv(new_lab_name(), base / "state")
    monkeypatch.setenv("NETLAB_STATE_DIR", str(env.state_dir))
    monkeypatch.setenv("NETLAB_LAB", env.name)
    try:
        yield env
        cleanup_and_check(env)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def default_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    """The default lab (docs/architecture.md#the-default-lab) shared by read-only tests.

    Session-scoped: under pytest-xdist each worker brings up one of its own, under its
    own name, so workers never share a lab. Leak-checked at the end of the session.
    """
    skip_unless_root()
    lab = LabEnv(new_lab_name(), tmp_path_factory.mktemp("default-lab") / "state")
    try:
        lab.netlab("up")
        yield lab
    finally:
        cleanup_and_check(lab)
