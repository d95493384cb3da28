"""`netlab bubble up|down|exec|list|status|check`: isolated test labs of a tenant's replicas.

The work is in netlab.orchestrator.bubble; this module only parses and prints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from netlab.cli_common import _lab, _print_json, _progress, json_option, lab_option, reports_errors


@click.group("bubble")
def bubble_group() -> None:
    """Test replicas at their production addresses in an isolated copy of their network."""


def _print_checks(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        verdict = "PASS" if r["passed"] else f"FAIL  {r['reason']}"
        click.echo(f"  {r['vm']:<16} {r['check']:<40} {verdict}")


def _print_bubble(b: dict[str, Any]) -> None:
    click.echo(f"bubble {b['name']}: tenant {b['tenant']}, {b['status']}, "
               f"masquerade {b['masquerade']}")
    for vm in b["order"]:
        v = b["vms"][vm]
        click.echo(f"  {vm:<16} {v['address']:<15} reached from production at "
                   f"{v['masquerade']:<15} restore point {v['restore_point']}")
    for network, address in b["proxies"].items():
        click.echo(f"  proxy on {network} at {address}")


@bubble_group.command("up")
@click.argument("tenant")
@click.argument("vms", nargs=-1)
@click.option("--restore-point", "restore_point", default="latest", show_default=True,
              metavar="latest|ID", help="Restore point each copy runs from.")
@click.option("--name", default=None, help="Name of the bubble (default: b1, b2, ...).")
@lab_option
@json_option
@reports_errors
def up_command(tenant: str, vms: tuple[str, ...], restore_point: str, name: str | None,
               lab_name: str | None, as_json: bool) -> None:
    """Boot copies of TENANT's replicas (default: its failover plan's VMs) in a bubble."""
    from netlab.orchestrator import bubble

    result = bubble.up(_lab(lab_name), tenant, vms, restore_point, name,
                       say=_progress(as_json))
    if as_json:
        _print_json(result)
        return
    _print_bubble(result)
    _print_checks(result["checks"])
    failed = [r for r in result["checks"] if not r["passed"]]
    if failed:
        click.echo(f"{len(failed)} check(s) still failing after the boot timeout; "
                   f"'netlab bubble check {result['name']}' runs them again")


@bubble_group.command("down")
@click.argument("name")
@lab_option
@json_option
@reports_errors
def down_command(name: str, lab_name: str | None, as_json: bool) -> None:
    """Remove bubble NAME: copies, deltas, proxy, bridges, the route to it."""
    from netlab.orchestrator import bubble

    result = bubble.down(_lab(lab_name), name, say=_progress(as_json))
    if as_json:
        _print_json(result)


@bubble_group.command("list")
@lab_option
@json_option
@reports_errors
def list_command(lab_name: str | None, as_json: bool) -> None:
    """Every bubble of the lab, with its masquerade network."""
    from netlab.orchestrator import bubble

    found = bubble.list_bubbles(_lab(lab_name))
    if as_json:
        _print_json(found)
        return
    if not found:
        click.echo("no bubbles")
    for b in found:
        click.echo(f"{b['name']:<8} {b['tenant']:<10} {b['status']:<12} masquerade "
                   f"{b['masquerade']:<16} {', '.join(b['order'])}")


@bubble_group.command("status")
@click.argument("name")
@lab_option
@json_option
@reports_errors
def status_command(name: str, lab_name: str | None, as_json: bool) -> None:
    """One bubble: its VMs, their masquerade addresses, the last checks, the proxy counters."""
    from netlab.orchestrator import bubble

    result = bubble.status(_lab(lab_name), name)
    if as_json:
        _print_json(result)
        return
    _print_bubble(result)
    if result["checks"]:
        click.echo("  last checks:")
        _print_checks(result["checks"])
    for network, counters in result["counters"].items():
        shown = ", ".join(f"{k} {v}" for k, v in counters.items()) or "proxy gone"
        click.echo(f"  proxy {network} packets: {shown}")


@bubble_group.command("check")
@click.argument("name")
@click.option("--junit", "junit", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the results as JUnit XML to this file.")
@lab_option
@json_option
@reports_errors
def check_command(name: str, junit: Path | None, lab_name: str | None, as_json: bool) -> None:
    """Run the application checks of bubble NAME; exit status 1 when one fails."""
    from netlab.errors import NetlabError
    from netlab.orchestrator import bubble
    from netlab.orchestrator.bubble_plan import junit_xml

    rows = bubble.check(_lab(lab_name), name)
    if junit is not None:
        try:
            junit.write_text(junit_xml(name, rows))
        except OSError as exc:
            raise NetlabError(f"cannot write the JUnit file {junit}: {exc.strerror}") from None
    failed = sum(not r["passed"] for r in rows)
    if as_json:
        _print_json({"bubble": name, "passed": failed == 0, "checks": rows})
    else:
        _print_checks(rows)
        click.echo(f"bubble {name}: {len(rows) - failed} of {len(rows)} checks passed")
    if failed:
        sys.exit(1)


@bubble_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("vm")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@lab_option
@reports_errors
def exec_command(name: str, vm: str, command: tuple[str, ...], lab_name: str | None) -> None:
    """Run COMMAND in VM's copy in bubble NAME, in its disk; its exit status is netlab's.

    Example: netlab bubble exec b1 acme/web -- cat index.html
    """
    from netlab.errors import NetlabError
    from netlab.lab import require_root
    from netlab.orchestrator import bubble
    from netlab.run import in_netns

    require_root()
    netns, disk = bubble.exec_target(_lab(lab_name), name, vm)
    argv = in_netns(netns, list(command))
    sys.stdout.flush()
    os.chdir(disk)
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise NetlabError(f"{command[0]}: command not found") from None
