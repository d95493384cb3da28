"""Per-lab state on disk: written atomically, guarded by file locks, with an event journal.

Layout of ``<state dir>/<lab>/``::

    state.json      what the lab is: status, power of nodes, processes, replica states
    topology.yaml   the topology the lab was brought up with (the plan is rebuilt from it)
    events.jsonl    the journal: one JSON object a line, appended and fsynced
    lab.lock        flock held while state.json is read-modified-written
    locks/          one flock file per VM, held for a whole lifecycle operation
    keys/ run/      WireGuard keys and daemon control sockets (0700)
    disks/ sp/      VM disks and replicas (netlab.storage)
    logs/           output of the processes netlab starts
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netlab import faults
from netlab.errors import OperationLocked

DEFAULT_STATE_DIR = "/var/lib/netlab"
DEFAULT_LAB = "demo"


def state_root() -> Path:
    return Path(os.environ.get("NETLAB_STATE_DIR") or DEFAULT_STATE_DIR)


def default_lab_name() -> str:
    return os.environ.get("NETLAB_LAB") or DEFAULT_LAB


def write_atomically(path: Path, data: str, mode: int = 0o644) -> None:
    """Write, fsync, rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def lock_holder(path: Path) -> str | None:
    """Who holds the flock on `path`, from /proc/locks (the file may not say yet).

    The holder writes its name into the file only once it has the lock; in that
    instant the kernel already knows its pid.
    """
    try:
        inode = path.stat().st_ino
        locks = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in locks:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            pid = fields[4]
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                command = " ".join(a.decode(errors="replace") for a in argv if a)
            except OSError:
                command = "a process"
            return f"'{command}' (pid {pid})"
    return None


@dataclass
class LabDir:
    """The state directory of one lab."""

    lab: str
    root: Path

    @classmethod
    def of(cls, lab: str, root: Path | None = None) -> LabDir:
        """The directory of `lab` under `root` (default: $NETLAB_STATE_DIR, else /var/lib)."""
        return cls(lab, (root if root is not None else state_root()) / lab)

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def topology_file(self) -> Path:
        return self.root / "topology.yaml"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    def sub(self, name: str, mode: int = 0o755) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True, mode=mode)
        return path

    def exists(self) -> bool:
        return self.state_file.exists()

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        for private in ("keys", "run", "locks"):
            self.sub(private, 0o700).chmod(0o700)
        self.sub("logs")

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def write(self, state: dict[str, Any]) -> None:
        write_atomically(self.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lab lock (blocking) for a read-modify-write of state.json."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lab.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Read state under the lab lock, let the body change it, write it back."""
        with self.locked():
            state = self.read()
            yield state
            self.write(state)

    @contextlib.contextmanager
    def hold(self, key: str, operation: str) -> Iterator[None]:
        """Hold `key` (a VM, a network) for a whole operation; refuse if another process has it.

        flock is released by the kernel when the holder dies, so a crashed netlab
        never leaves a VM locked.
        """
        path = self.sub("locks", 0o700) / (key.replace("/", ".") + ".lock")
        f = open(path, "a+")  # noqa: SIM115 - held for the whole operation
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or lock_holder(path) or "another netlab process"
                raise OperationLocked(
                    f"{key} is held by {holder}; wait for it to finish and try again"
                ) from None
            f.truncate(0)
            f.write(f"'netlab {operation}' (pid {os.getpid()})")
            f.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                f.truncate(0)
            f.close()

    def journal(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event to the journal, fsynced, and return it."""
        record = {"time": time.time(), "event": event, **fields}
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.events_file, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        faults.checkpoint(event)
        return record

    def events(self) -> list[dict[str, Any]]:
        try:
            lines = self.events_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by a crash
                out.append(json.loads(line))
        return out
