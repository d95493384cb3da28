"""The states of a replica, as every layer names them (pure: no I/O).

The lab and the NEAs need to know which replicas run at the SP (to route and
proxy for them) without depending on the orchestrator that moves replicas
between states; the transitions themselves live in orchestrator/states.py.
"""

from __future__ import annotations

from enum import StrEnum


class ReplicaState(StrEnum):
    NORMAL = "Normal"
    FAILOVER = "Failover"
    READY_TO_SWITCH = "Ready to switch"
    FAILBACK = "Failback"
    PERMANENT = "Permanent failover"


# In these states the replica runs at the SP and is reached through the tunnel.
RUNNING_AT_SP = frozenset(
    {ReplicaState.FAILOVER, ReplicaState.READY_TO_SWITCH, ReplicaState.PERMANENT}
)
