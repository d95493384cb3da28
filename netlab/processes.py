"""Processes netlab starts: started inside a namespace, recorded by pid, ended by pid.

A pid alone can be reused by the kernel after the process dies, so a record also
keeps the process's start time (field 22 of /proc/PID/stat); a record whose pid
now belongs to another process is treated as dead and never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netlab.errors import NetlabError
from netlab.run import in_netns, require_tool


@dataclass(frozen=True)
class ProcessRecord:
    """What netlab needs to find, supervise and end one process it started."""

    name: str
    pid: int
    start_time: int
    argv: list[str] = field(default_factory=list)
    netns: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ProcessRecord:
        """Rebuild a record from state, ignoring what callers stored beside it."""
        known = {"name", "pid", "start_time", "argv", "netns"}
        return cls(**{k: v for k, v in data.items() if k in known})


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent has not reaped it yet
        return None
    return int(fields[19])


PF_EXITING = 0x4  # include/linux/sched.h: the task has begun to exit


def is_exiting(pid: int) -> bool:
    """True when `pid` has begun to exit (killed, or returned): it never runs again,
    though the kernel may take a while to close its files. A packet socket's close waits
    for an RCU grace period, so a process that held a hundred takes over a second to
    become a zombie after SIGKILL."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    return bool(int(fields[6]) & PF_EXITING)


def command_line(pid: int) -> list[str] | None:
    """The arguments `pid` runs with (from /proc), None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def record_of(pid: int, name: str) -> ProcessRecord | None:
    """A record of the running process `pid` (start time and arguments), None if it is
    gone: for processes netlab finds rather than starts (after a crash, for cleanup)."""
    start, argv = process_start_time(pid), command_line(pid)
    if start is None or argv is None:
        return None
    return ProcessRecord(name, pid, start, argv)


def is_alive(record: ProcessRecord) -> bool:
    """True when the recorded process still runs (and its pid was not reused)."""
    return process_start_time(record.pid) == record.start_time


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    netns: str | None = None,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> ProcessRecord:
    """Start a long-running process (in `netns`) detached from the caller's session."""
    require_tool(argv[0])
    full = in_netns(netns, argv)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    finally:
        if log_path:
            out.close()
    start = None
    for _ in range(500):
        start = process_start_time(proc.pid)
        if start is not None:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    if start is None:
        detail = ""
        if log_path is not None and log_path.exists():
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            detail = f": {' | '.join(tail)}" if tail else ""
        state = "exited at once" if proc.poll() is not None else "was not seen running"
        raise NetlabError(f"{name} {state} ({' '.join(argv)}){detail}")
    _forget_child(proc)
    return ProcessRecord(name=name, pid=proc.pid, start_time=start, argv=list(argv), netns=netns)


def _forget_child(proc: subprocess.Popen) -> None:
    # The record, not the Popen object, is how netlab tracks the process; drop the
    # object without a ResourceWarning. A long-lived caller reaps it in stop_process.
    proc.returncode = 0


def _signal(pid: int, sig: int) -> None:
    """Signal a process netlab started and, when it leads its own process group (every
    process netlab starts does: start_new_session), what it started in turn: a
    replication job's rsync must not outlive the job in the edge's namespace."""
    with contextlib.suppress(ProcessLookupError):
        try:
            leader = os.getpgid(pid) == pid
        except ProcessLookupError:
            return
        if leader:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_process(record: ProcessRecord, timeout: float = 2.0) -> None:
    """End the recorded process: SIGTERM, then SIGKILL after `timeout`. Dead is fine."""
    if not is_alive(record):
        _reap(record.pid)
        return
    _signal(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_alive(record):
            return
        time.sleep(0.01)
    _signal(record.pid, signal.SIGKILL)
    for _ in range(200):
        _reap(record.pid)
        if not is_alive(record):
            return
        time.sleep(0.005)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_processes(records: Sequence[ProcessRecord], timeout: float = 2.0) -> list[ProcessRecord]:
    """End many processes at once (SIGTERM all, wait, SIGKILL the rest); return those ended."""
    alive = [r for r in records if is_alive(r)]
    for rec in alive:
        _signal(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    pending = list(alive)
    while pending and time.monotonic() < deadline:
        for rec in pending:
            _reap(rec.pid)
        pending = [r for r in pending if is_alive(r)]
        if pending:
            time.sleep(0.005)
    for rec in pending:
        stop_process(rec, timeout=0.0)
    for rec in alive:
        _reap(rec.pid)
    return alive
