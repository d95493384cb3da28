"""The per-replica lock: a thread lock plus a flock on the replica's .lock file.

The orchestrator holds one operation at a time per VM; this only keeps two
processes (or threads) from interleaving inside one replica directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from netlab.errors import OperationLocked
from netlab.storage.layout import LOCK_FILE, _label

_LOCK_TIMEOUT_S = 30.0


_locks_guard = threading.Lock()


_thread_locks: dict[str, threading.RLock] = {}


_flocks: dict[str, tuple[int, int]] = {}  # replica dir -> (fd holding the flock, depth)



@contextlib.contextmanager
def _replica_lock(replica_dir: Path) -> Iterator[None]:
    """Exclusive flock on the replica dir; re-entrant within this process.

    flock is per open file description, so a nested call opening the file again
    would deadlock against itself: nesting is counted instead, and a per-replica
    thread lock keeps two threads of one process apart.
    """
    key = os.path.realpath(replica_dir)
    with _locks_guard:
        thread_lock = _thread_locks.setdefault(key, threading.RLock())
    with thread_lock:
        fd, depth = _flocks.get(key, (-1, 0))
        if depth == 0:
            fd = _acquire_flock(Path(replica_dir))
        _flocks[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _flocks[key]
            if depth == 1:
                del _flocks[key]
                os.close(fd)  # closing the descriptor releases the flock
            else:
                _flocks[key] = (fd, depth - 1)



def _acquire_flock(replica_dir: Path) -> int:
    replica_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(replica_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + _LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise OperationLocked(
                    f"{_label(replica_dir)}: another netlab process has been changing this "
                    f"replica's storage for {_LOCK_TIMEOUT_S:.0f} s"
                ) from None
            time.sleep(0.05)
