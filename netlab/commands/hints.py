"""Node names for hints and the demo, taken from the lab in use (never a fixed 'acme')."""

from __future__ import annotations

from typing import Any


def failover_pairs(plan: Any) -> list[tuple[Any, Any]]:
    """Every (VM, neighbour): a static VM with a replica on a network with an NEA pair,
    and another static VM on the same network to watch it from."""
    vms = plan.vms()
    found = []
    for vm in vms:
        if vm.dhcp or not vm.address or plan.replica_of(vm.name) is None:
            continue
        if plan.tunnel_for(vm.tenant or "", vm.network or "") is None:
            continue
        found += [(vm, other) for other in vms
                  if other.name != vm.name and other.address and not other.dhcp
                  and (other.tenant, other.network) == (vm.tenant, vm.network)]
    return found


def failover_pair(plan: Any) -> tuple[Any, Any] | None:
    pairs = failover_pairs(plan)
    return pairs[0] if pairs else None


def _neighbours(plan: Any) -> tuple[Any, Any] | None:
    """Any two static VMs on one network (the second serves, the first asks)."""
    vms = [vm for vm in plan.vms() if vm.address and not vm.dhcp]
    for vm in vms:
        for other in vms:
            if other.name != vm.name and (other.tenant, other.network) == \
                    (vm.tenant, vm.network):
                return other, vm
    return None


def after_up(plan: Any, lab_flag: str) -> str:
    """What to try after `up`: commands that work, pasted as they are, on this lab."""
    hint = f"try 'netlab status{lab_flag}'"
    pair = failover_pair(plan) or _neighbours(plan)
    if pair is not None:
        target, observer = pair
        hint += (f" and 'netlab exec{lab_flag} {observer.name} -- curl -s "
                 f"http://{target.address}/'")
    elif plan.vms():
        hint += f" and 'netlab exec{lab_flag} {plan.vms()[0].name} -- ip address'"
    return hint
