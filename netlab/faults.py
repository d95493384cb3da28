"""Failure points: a test hook that makes netlab fail right after a chosen journaled step.

Set ``NETLAB_FAULT`` to ``EVENT[#N][:ACTION]`` and the N-th time (default: the first)
this process journals ``EVENT`` (for example ``failover:power-on`` or ``nea-up``),
it fails right after the event is on disk:

* ``kill`` (the default): the process SIGKILLs itself, as a power cut or ``kill -9``
  would end it; nothing of netlab's own clean-up runs. The next command must finish
  or roll back what was interrupted.
* ``raise``: an unexpected ``RuntimeError`` is raised, as a bug would; the command's
  own error handling (roll back, one line, exit code) must deal with it.

Unset, it does nothing. It exists so that the crash tests hit the same step on every
machine, whatever its speed, instead of killing after a random delay.
"""

from __future__ import annotations

import os
import signal

ENV = "NETLAB_FAULT"
ACTIONS = ("kill", "raise")

_seen: dict[str, int] = {}


class InjectedFault(RuntimeError):
    """The failure NETLAB_FAULT asked for (``raise``): to the CLI, an unexpected error."""


def parse(spec: str) -> tuple[str, int, str]:
    """``'failover:power-on#2:raise'`` -> ``('failover:power-on', 2, 'raise')``."""
    event, _, rest = spec.partition("#")
    count, action = 1, "kill"
    if rest:
        number, _, action_part = rest.partition(":")
        count = int(number)
        action = action_part or action
    else:
        for candidate in ACTIONS:
            if event.endswith(f":{candidate}"):
                event, action = event[: -len(candidate) - 1], candidate
                break
    if action not in ACTIONS or count < 1 or not event:
        raise ValueError(f"{ENV}={spec!r}: expected EVENT[#N][:kill|raise]")
    return event, count, action


def checkpoint(event: str) -> None:
    """Called after every journaled event: fail here if NETLAB_FAULT names it."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, count, action = parse(spec)
    if event != wanted:
        return
    _seen[event] = _seen.get(event, 0) + 1
    if _seen[event] != count:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"fault injected by {ENV}={spec} after {event!r}")
