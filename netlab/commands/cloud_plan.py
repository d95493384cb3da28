"""`netlab plan start|test|undo|retry|status TENANT`: cloud failover plans (full site failover).

The work is in netlab.orchestrator.cloud_plan; this module only parses and prints.
"""

from __future__ import annotations

from typing import Any

import click

from netlab.cli_common import (
    FullHelpGroup,
    _confirm_discard,
    _lab,
    _print_json,
    _progress,
    json_option,
    lab_option,
    reports_errors,
    yes_option,
)
from netlab.commands.meta import complete_tenants
from netlab.errors import NothingToDo


@click.group("plan", cls=FullHelpGroup)
def plan_group() -> None:
    """Cloud failover plan: fail a whole tenant site over to the provider's cloud."""


def _print_results(report: Any, as_json: bool) -> None:
    if as_json:
        _print_json(report.to_dict())
        return
    for vm, result in report.results.items():
        line = f"{vm}: {result['status']}"
        if result.get("joined"):
            line += " (joined from partial failover)"
        if result.get("reason"):
            line += f", {result['reason']}"
        click.echo(line)
    click.echo(f"plan {report.tenant}: {report.command} done, plan is {report.status}")


@plan_group.command("start")
@click.argument("tenant", shell_complete=complete_tenants)
@click.option("--restore-point", "restore_point", default=None, metavar="latest|ID",
              help="Restore point each replica runs from (default: latest).")
@lab_option
@json_option
@reports_errors
def start_command(tenant: str, restore_point: str | None, lab_name: str | None,
                  as_json: bool) -> None:
    """Full site failover: replicas on in plan order, the SP NEA as the site's gateway."""
    from netlab.orchestrator import cloud_plan

    report = cloud_plan.start(_lab(lab_name), tenant, restore_point, say=_progress(as_json))
    _print_results(report, as_json)


@plan_group.command("test")
@click.argument("tenant", shell_complete=complete_tenants)
@lab_option
@json_option
@reports_errors
def test_command(tenant: str, lab_name: str | None, as_json: bool) -> None:
    """Boot the plan's replicas in an isolated network, ping each, and roll back."""
    from netlab.orchestrator import cloud_plan

    report = cloud_plan.test(_lab(lab_name), tenant, say=_progress(as_json))
    _print_results(report, as_json)


@plan_group.command("undo")
@click.argument("tenant", shell_complete=complete_tenants)
@yes_option
@lab_option
@json_option
@reports_errors
def undo_command(tenant: str, yes: bool, lab_name: str | None, as_json: bool) -> None:
    """Replicas back to Normal in batches, DISCARDING their changes; gateway role removed."""
    from netlab.orchestrator import cloud_plan

    lab = _lab(lab_name)
    lab.require_up()
    # the state check first: no discard warning before a refusal or a no-op
    status = cloud_plan.status(lab, tenant)["status"]
    if status != "running":
        raise NothingToDo(f"the cloud failover plan of {tenant} is not running (it is "
                          f"{status}): nothing to undo")
    _confirm_discard(f"plan undo discards everything written on the replicas of {tenant} "
                     "since the plan started", yes)
    report = cloud_plan.undo(lab, tenant, say=_progress(as_json))
    _print_results(report, as_json)


@plan_group.command("retry")
@click.argument("tenant", shell_complete=complete_tenants)
@click.option("--restore-point", "restore_point", default=None, metavar="latest|ID",
              help="Restore point (default: the one the plan was started with).")
@lab_option
@json_option
@reports_errors
def retry_command(tenant: str, restore_point: str | None, lab_name: str | None,
                  as_json: bool) -> None:
    """Start again the VMs of a running plan that failed, or finish an interrupted start."""
    from netlab.orchestrator import cloud_plan

    report = cloud_plan.retry(_lab(lab_name), tenant, restore_point, say=_progress(as_json))
    _print_results(report, as_json)


@plan_group.command("status")
@click.argument("tenant", shell_complete=complete_tenants)
@lab_option
@json_option
@reports_errors
def status_command(tenant: str, lab_name: str | None, as_json: bool) -> None:
    """The plan's steps, each VM's result and replica state, published endpoints."""
    from netlab.orchestrator import cloud_plan

    data = cloud_plan.status(_lab(lab_name), tenant)
    if as_json:
        _print_json(data)
        return
    click.echo(f"plan {tenant}: {data['status']}")
    if data["interrupted"]:
        gateway = "" if data["gateway_taken"] else " before the SP NEA took the gateway role"
        click.echo(f"  interrupted{gateway}: 'netlab plan retry {tenant}' finishes it, "
                   f"'netlab plan undo {tenant}' rolls it back")
    for step in data["steps"]:
        result = step["result"] or {}
        detail = result.get("status", "-")
        if result.get("reason"):
            detail += f" ({result['reason']})"
        click.echo(f"  {step['vm']:<20} delay {step['delay']:>5.1f} s  replica "
                   f"{step['replica_state'] or '-':<20} {detail}")
    for gw in data["gateway"]:
        click.echo(f"  gateway of {gw['network']}: {gw['address']} on the SP NEA while running")
    click.echo(f"  outbound from {data['snat_address']}")
    for e in data["publish"]:
        click.echo(f"  publish {e['public']}:{e['public_port']}/{e['protocol']} -> "
                   f"{e['vm']}:{e['port']}")
