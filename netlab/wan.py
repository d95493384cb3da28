"""WAN profiles: the conditions of a tenant's internet link, or of the provider's uplink.

A profile is applied to the egress of the tenant edge's internet port (the
direction replication travels) or, for `sp`, of the cloud gateway's internet
port. It is kept in state.json under `wan` so that `wan set` changes one
parameter and keeps the others, and `wan show` says what is in force. (The
functions take the lab's directory and plan, not a `Lab`: `lab.py` applies the
topology's profiles at `up`.)
"""

from __future__ import annotations

from typing import Any

from netlab.errors import LabError, PreconditionFailed, UnknownNode
from netlab.net.tc import LinkConditions, apply_conditions, has_qdisc, link_qdiscs
from netlab.plan import LabPlan
from netlab.state import LabDir
from netlab.topology.model import Wan
from netlab.topology.units import format_ms, format_rate

PARAMETERS = ("rate", "delay", "jitter", "loss")
PROVIDER = "sp"
NO_NETEM = ("the kernel has no netem qdisc (sch_netem, CONFIG_NET_SCH_NETEM): "
            "{what} cannot be emulated here; nothing was changed")


def merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The profile after `wan set`: a parameter given replaces, one not given stays.

    A value of 0 (rate 0, delay 0ms, loss 0%) removes that parameter.
    """
    merged = {key: current.get(key) for key in PARAMETERS}
    for key, value in changes.items():
        if key not in PARAMETERS:
            raise PreconditionFailed(f"unknown WAN parameter {key!r}; known: "
                                     f"{', '.join(PARAMETERS)}")
        if value is not None:
            merged[key] = value or None
    if merged["jitter"] and not merged["delay"]:
        raise PreconditionFailed("--jitter varies a delay: set --delay too")
    return merged


def parse_changes(**given: str | None) -> dict[str, Any]:
    """Command-line strings ("10mbit", "50ms", "1%") to numbers; a one-line error for a typo."""
    try:
        parsed = Wan(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        errors = getattr(exc, "errors", lambda: [])()
        if errors:
            first = errors[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise PreconditionFailed(f"--{where}: {first.get('msg', exc)}") from None
        raise PreconditionFailed(str(exc)) from None
    return {k: getattr(parsed, k) for k in given if given[k] is not None}


def describe(profile: dict[str, Any] | None) -> str:
    if not profile or not any(profile.get(k) for k in PARAMETERS):
        return "no conditions (the link's own speed)"
    parts = []
    if profile.get("rate"):
        parts.append(f"rate {format_rate(profile['rate'])}")
    if profile.get("delay"):
        parts.append(f"delay {format_ms(profile['delay'])}")
    if profile.get("jitter"):
        parts.append(f"jitter {format_ms(profile['jitter'])}")
    if profile.get("loss"):
        parts.append(f"loss {profile['loss']:g}%")
    return ", ".join(parts)


def _link(plan: LabPlan, target: str) -> tuple[str, str]:
    """(namespace, interface) of the internet port that `target`'s profile shapes."""
    if target == PROVIDER:
        gateway = plan.nodes["sp/cgw"]
        return gateway.netns, gateway.ports[0].name
    if target not in plan.topology.tenants:
        raise UnknownNode(f"unknown tenant {target!r}; tenants: "
                          f"{', '.join(plan.topology.tenants)} (or 'sp' for the provider)")
    edge = plan.nodes[f"{target}/edge"]
    return edge.netns, edge.ports[0].name


def _apply(plan: LabPlan, target: str, profile: dict[str, Any]) -> None:
    netns, ifname = _link(plan, target)
    if (profile.get("delay") or profile.get("jitter")) and not has_qdisc(netns, "netem"):
        what = "delay and jitter" if profile.get("jitter") else "delay"
        raise PreconditionFailed(NO_NETEM.format(what=what))
    apply_conditions(netns, ifname, LinkConditions(**{k: profile.get(k) for k in PARAMETERS}))


def set_wan(lab_dir: LabDir, plan: LabPlan, target: str,
            changes: dict[str, Any]) -> dict[str, Any]:
    """Change some parameters of `target`'s profile; returns the profile now in force."""
    _link(plan, target)
    with lab_dir.hold(f"wan-{target}", "wan set"):
        current = lab_dir.read().get("wan", {}).get(target, {})
        profile = merge(current, changes)
        _apply(plan, target, profile)
        with lab_dir.update() as state:
            state.setdefault("wan", {})[target] = profile
    lab_dir.journal("wan-set", target=target, profile=profile)
    return profile


def clear_wan(lab_dir: LabDir, plan: LabPlan, target: str) -> None:
    _link(plan, target)
    with lab_dir.hold(f"wan-{target}", "wan clear"):
        _apply(plan, target, {})
        with lab_dir.update() as state:
            state.setdefault("wan", {}).pop(target, None)
    lab_dir.journal("wan-clear", target=target)


def show_wan(lab_dir: LabDir, plan: LabPlan) -> dict[str, dict[str, Any]]:
    """Every tenant and the provider: the profile in force and the qdisc the kernel has."""
    profiles = lab_dir.read().get("wan", {})
    shown = {}
    for target in [*plan.topology.tenants, PROVIDER]:
        netns, ifname = _link(plan, target)
        profile = profiles.get(target) or {}
        shown[target] = {"interface": ifname, **{k: profile.get(k) for k in PARAMETERS},
                         "summary": describe(profile), "qdisc": link_qdiscs(netns, ifname)}
    return shown


def apply_topology_wan(plan: LabPlan) -> dict[str, dict[str, Any]]:
    """At `up`: the `wan:` profiles of the topology; refused whole if the kernel lacks one."""
    wanted: dict[str, dict[str, Any]] = {}
    for name, tenant in plan.topology.tenants.items():
        if tenant.wan is not None:
            wanted[name] = tenant.wan.model_dump()
    if plan.topology.provider.wan is not None:
        wanted[PROVIDER] = plan.topology.provider.wan.model_dump()
    for target, profile in wanted.items():
        try:
            _apply(plan, target, profile)
        except PreconditionFailed as exc:
            raise LabError(f"wan of {target} in the topology: {exc}") from None
    return wanted
