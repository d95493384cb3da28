"""Shared helpers of the reliability suite: machine snapshots, module labs, polling.

Other engineers' test runs share this machine, so a snapshot diff is judged by
*attribution*: anything that names this test's lab (namespace or link prefix,
state directory, NETLAB_STATE_DIR in a process's environment, a network
namespace inode the lab owned) is a leak; objects of other labs (another
``<lab>-`` prefix) are ignored; sentinels the test made itself must survive.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import wg_backend
from conftest import (
    LabEnv,
    cleanup_and_check,
    namespace_inodes,
    new_lab_name,
    skip_unless_root,
)

from netlab.lab import SOCKET_RUN_DIR

NETNS_DIR = Path("/run/netns")
REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else "python3"

T = TypeVar("T")


def poll(what: str, check: Callable[[], T], timeout: float = 30, interval: float = 0.1) -> T:
    """Call `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # report the last error at the end
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for: {what} (last: {last!r})",
                pytrace=False)


def in_netns(netns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net={NETNS_DIR}/{netns}", *argv]


def run_in(netns: str, *argv: str, timeout: float = 30, check: bool = False,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(in_netns(netns, *argv), capture_output=True, text=True,
                          timeout=timeout, check=False, input=input)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} in {netns} exited {done.returncode}: {done.stderr}")
    return done


def python_in(netns: str, script: str, *args: str, timeout: float = 60) -> str:
    """Run a Python script (the venv's, with Scapy) inside a namespace; return its stdout."""
    done = run_in(netns, PYTHON, "-c", script, *args, timeout=timeout)
    assert done.returncode == 0, f"script in {netns} failed: {done.stderr}"
    return done.stdout


def state_of(lab: LabEnv) -> dict[str, Any]:
    return json.loads((lab.lab_dir / "state.json").read_text())


def pid_of(lab: LabEnv, process: str) -> int | None:
    rec = state_of(lab).get("processes", {}).get(process)
    return rec["pid"] if rec else None


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    return lines[0]


# ----- labs that live for a module ------------------------------------------------


@contextlib.contextmanager
def module_lab(tmp_path_factory: pytest.TempPathFactory, *up_args: str) -> Iterator[LabEnv]:
    """A lab of its own for a module (own name and state dir), up, leak-checked at the end."""
    skip_unless_root()
    lab = LabEnv(new_lab_name(), tmp_path_factory.mktemp("rel") / "state")
    try:
        lab.netlab("up", *up_args)
        yield lab
    finally:
        cleanup_and_check(lab)


@pytest.fixture
def short_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    """Like conftest's lab_env, with a short state directory (tmp_path_factory.mktemp).

    Not needed for failover any more (the proxy-ARP control sockets moved to
    /run/netlab/<lab>; tests/reliability/test_bad_input.py::test_failover_with_a_long_state_dir
    proves it), but short paths keep the snapshots' output readable.
    """
    skip_unless_root()
    lab = LabEnv(new_lab_name(), tmp_path_factory.mktemp("s") / "state")
    yield lab
    cleanup_and_check(lab)


# ----- snapshots of the machine ------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    start: str
    cmdline: str
    netns: int | None
    state_dir: str  # NETLAB_STATE_DIR in its environment, '' if none


@dataclass
class Snapshot:
    namespaces: set[str]
    links: set[str]
    mounts: set[str]
    nft: str
    processes: dict[int, Proc]
    wg_sockets: set[str]
    socket_dirs: set[str]  # /run/netlab/<lab>: the labs' control socket directories
    inodes: dict[int, str] = field(default_factory=dict)


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def _proc(pid: int) -> Proc | None:
    base = Path(f"/proc/{pid}")
    try:
        stat = (base / "stat").read_text()
        cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
        environ = (base / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    if rest[0] == "Z" or not cmdline:  # zombies and kernel threads
        return None
    try:
        netns: int | None = os.stat(base / "ns" / "net").st_ino
    except OSError:
        netns = None
    state_dir = next((e.split(b"=", 1)[1].decode(errors="replace") for e in environ
                      if e.startswith(b"NETLAB_STATE_DIR=")), "")
    return Proc(pid, rest[19], cmdline, netns, state_dir)


def _own_tree() -> set[int]:
    """This test process and its children (the test's own processes are not the machine's)."""
    me = os.getpid()
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = set(), [me]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def snapshot() -> Snapshot:
    names = {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.exists() else set()
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                         check=False).stdout
    own = _own_tree()
    procs = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) not in own:
            p = _proc(int(entry.name))
            if p is not None:
                procs[p.pid] = p
    mounts = {" ".join(line.split()[:3]) for line in Path("/proc/mounts").read_text().splitlines()}
    wg = set(wg_backend.sockets(""))
    socks = {p.name for p in SOCKET_RUN_DIR.iterdir()} if SOCKET_RUN_DIR.exists() else set()
    return Snapshot(names, _links(), mounts, nft, procs, wg, socks,
                    namespace_inodes(sorted(names)))


def foreign(name: str, lab: LabEnv) -> bool:
    """An object not named after this lab: not ours to judge.

    Other tests run beside this one (pytest-xdist workers, other engineers), and their
    namespaces and sockets need not look like a lab's (`scp1`, `tp<hex8>-br`). What
    cleanup must leave alone is proven by the sentinels, one named after this lab.
    """
    return not name.startswith(lab.name)


def leaks(before: Snapshot, after: Snapshot, lab: LabEnv, lab_inodes: set[int],
          tmp_roots: list[Path]) -> list[str]:
    """What `after` has more or less than `before` that is attributable to `lab` or unexplained.

    Objects of other labs (another ``<lab>-`` prefix, another NETLAB_STATE_DIR) come and
    go with other test runs and are ignored; the caller checks its own sentinels.
    """
    problems = []
    for what, old, new in (("namespace", before.namespaces, after.namespaces),
                           ("root link", before.links, after.links),
                           ("wireguard socket file", before.wg_sockets, after.wg_sockets),
                           ("socket directory", before.socket_dirs, after.socket_dirs)):
        for name in sorted(new - old):
            if what == "socket directory":
                name = f"{name}-"
            if not foreign(name, lab):
                problems.append(f"{what} appeared: {name}")
        for name in sorted(old - new):
            if what == "socket directory":
                name = f"{name}-"
            if not foreign(name, lab):
                problems.append(f"{what} disappeared: {name}")
    mine = [str(p) for p in tmp_roots]
    for line in sorted(after.mounts ^ before.mounts):
        point = line.split()[1]
        sign = "appeared" if line in after.mounts else "disappeared"
        if point.startswith(f"{NETNS_DIR}/"):
            judged = not foreign(point.removeprefix(f"{NETNS_DIR}/"), lab)
        else:  # other runs' state directories live under /tmp or /var/lib/netlab
            judged = (any(point.startswith(root) for root in mine)
                      or not point.startswith(("/tmp/", "/var/lib/netlab/")))
        if judged:
            problems.append(f"mount {sign}: {line}")
    if before.nft != after.nft:
        problems.append(f"root nft ruleset changed:\n{before.nft}\n---\n{after.nft}")
    others = {ino for ino, name in after.inodes.items() if not name.startswith(lab.prefix)}
    for pid, proc in after.processes.items():
        old = before.processes.get(pid)
        if old is not None and old.start == proc.start:
            continue
        if proc.state_dir and not any(proc.state_dir.startswith(root) for root in mine):
            continue  # started by another lab's netlab
        ours = (
            # a freed namespace inode can be given to another lab's new namespace
            (proc.netns in lab_inodes and proc.netns not in others)
            or any(proc.state_dir.startswith(root) for root in mine)
            or lab.name in proc.cmdline
            or any(root in proc.cmdline for root in mine)
        )
        if ours:
            problems.append(f"process left: pid {pid} {proc.cmdline!r}")
    return problems


# ----- sentinels: things not made by netlab that cleanup must leave alone --------------


@dataclass
class Sentinels:
    namespace: str
    process: subprocess.Popen
    wg_file: Path
    mount: Path

    def problems(self) -> list[str]:
        out = []
        if not (NETNS_DIR / self.namespace).exists():
            out.append(f"sentinel namespace {self.namespace} removed")
        if self.process.poll() is not None:
            out.append(f"sentinel process {self.process.pid} ended")
        if not self.wg_file.exists():
            out.append(f"sentinel file {self.wg_file} removed")
        if str(self.mount) not in Path("/proc/self/mountinfo").read_text():
            out.append(f"sentinel mount {self.mount} removed")
        return out


@contextlib.contextmanager
def sentinels(lab_name: str, tmp_path: Path) -> Iterator[Sentinels]:
    """A namespace keep-<hex> with a process in it, a file in WireGuard's socket directory
    named like a socket of the lab `<lab>0` (whose prefix starts with this lab's name), a
    tmpfs mount beside the state directory."""
    ns = f"keep-{os.urandom(3).hex()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = subprocess.Popen(in_netns(ns, "sleep", "600"))
    wg_file = wg_backend.sentinel_socket_file(f"{lab_name}0-w1")
    wg_file.write_text("not a socket; not made by netlab\n")
    mnt = tmp_path / "keep-mount"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "keep", str(mnt)], check=True)
    try:
        yield Sentinels(ns, proc, wg_file, mnt)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        subprocess.run(["umount", str(mnt)], check=False)
        wg_file.unlink(missing_ok=True)
        subprocess.run(["ip", "netns", "del", ns], check=False)
