"""The replica state machine of partial failover (pure: no I/O)."""

from __future__ import annotations

from netlab.errors import IllegalTransition
from netlab.replica_state import RUNNING_AT_SP, ReplicaState

__all__ = ["RUNNING_AT_SP", "TRANSITIONS", "ReplicaState", "allowed_commands", "check_transition"]


S = ReplicaState
# command -> (states it may start from, state it ends in)
TRANSITIONS: dict[str, tuple[frozenset[ReplicaState], ReplicaState]] = {
    "failover": (frozenset({S.NORMAL}), S.FAILOVER),
    "undo": (frozenset({S.FAILOVER}), S.NORMAL),
    "permanent": (frozenset({S.FAILOVER}), S.PERMANENT),
    "failback": (frozenset({S.FAILOVER}), S.READY_TO_SWITCH),
    "switch": (frozenset({S.READY_TO_SWITCH}), S.FAILBACK),
    "commit": (frozenset({S.FAILBACK}), S.NORMAL),
    "undo-failback": (frozenset({S.FAILBACK, S.READY_TO_SWITCH}), S.FAILOVER),
}


def allowed_commands(state: ReplicaState | str) -> list[str]:
    state = ReplicaState(state)
    return [cmd for cmd, (sources, _) in TRANSITIONS.items() if state in sources]


def check_transition(replica: str, state: ReplicaState | str, command: str) -> ReplicaState:
    """The state `command` leads to from `state`, or IllegalTransition saying what is allowed."""
    state = ReplicaState(state)
    sources, target = TRANSITIONS[command]
    if state not in sources:
        allowed = allowed_commands(state)
        hint = ", ".join(allowed) if allowed else "none (the replica is production now)"
        needs = " or ".join(f"'{s}'" for s in sorted(sources))
        raise IllegalTransition(
            f"{replica} is '{state}'; '{command}' needs {needs}. Allowed now: {hint}"
        )
    return target
