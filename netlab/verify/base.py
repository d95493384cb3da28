"""What a check is: targets planned from the state, then probed in one batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netlab.plan import LabPlan
from netlab.verify.results import CheckResult
from netlab.verify.world import Segment, segments


@dataclass
class Context:
    """Everything a check needs, read once: the lab, its plan, its state, its segments."""

    lab: Any  # netlab.lab.Lab
    plan: LabPlan
    state: dict[str, Any]
    segments: list[Segment] = field(default_factory=list)
    macs: dict[tuple[str, str], str] = field(default_factory=dict)  # (netns, iface) -> MAC

    @classmethod
    def of(cls, lab: Any) -> Context:
        state = lab.require_up()
        plan = lab.plan()
        return cls(lab, plan, state, segments(plan, state))


@dataclass
class Target:
    """One line of the report to be: a check seen from one node, before it runs.

    `result` is set when the state alone decides it (a SKIP); `macs` are the
    interfaces whose MAC the check compares with, looked up on the main thread
    (netlink) before the probes start in worker threads.
    """

    name: str
    node: str
    description: str
    kind: str = "builtin"
    job: Any = None
    result: CheckResult | None = None
    macs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Check:
    """A built-in check: `targets` decides what to probe now, `run` probes them in one batch."""

    family: str  # what --test matches besides each target's own name
    targets: Callable[[Context], list[Target]]
    run: Callable[[Context, list[Target]], list[CheckResult]]
