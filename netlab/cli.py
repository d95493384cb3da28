"""The `netlab` command: click commands that call the library and format its answers.

Scapy is never imported here (it costs 0.4-0.8 s): `netlab --help` and
`netlab status` start fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from netlab.errors import NetlabError

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(func: F) -> F:
    """Turn a NetlabError into one line on stderr and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NetlabError as exc:
            # one line whatever the message carries (a user's name with a newline...)
            from netlab.topology.loader import printable

            click.echo(f"netlab: {printable(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("netlab: interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def lab_option(func: F) -> F:
    return click.option(
        "--lab",
        "lab_name",
        default=None,
        metavar="NAME",
        help="Lab name (default: $NETLAB_LAB, else 'demo').",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def _lab(lab_name: str | None):
    from netlab.lab import Lab
    from netlab.state import default_lab_name

    return Lab(default_lab_name() if lab_name is None else lab_name)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _progress(as_json: bool) -> Callable[[str], None]:
    """Step lines on stderr (with a spinner on a terminal; see netlab.progress_view)."""
    from netlab.progress_view import step_printer

    ctx = click.get_current_context(silent=True)
    # the command's context closes when it ends, on success or error: the spinner stops
    return step_printer(quiet=as_json, on_close=ctx.call_on_close if ctx else None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netlab-dr", prog_name="netlab")
def main() -> None:
    """Partial site failover, emulated with real Linux networking."""


@main.command()
@click.argument("topology", required=False, type=click.Path(dir_okay=False))
@lab_option
@json_option
@reports_errors
def up(topology: str | None, lab_name: str | None, as_json: bool) -> None:
    """Bring up a lab (the default lab without TOPOLOGY)."""
    import time

    lab = _lab(lab_name)
    started = time.monotonic()
    outcome = lab.up(topology, progress=_progress(as_json))
    elapsed = time.monotonic() - started
    if as_json:
        _print_json({"lab": lab.name, "result": outcome, "seconds": round(elapsed, 3)})
    elif outcome == "already up":
        click.echo(f"lab {lab.name} is already up (nothing changed)")
    else:
        click.echo(f"lab {lab.name} is up in {elapsed:.2f} s; try 'netlab status' and "
                   f"'netlab exec acme/db -- curl -s http://192.168.10.11/'")


@main.command()
@lab_option
@json_option
@reports_errors
def down(lab_name: str | None, as_json: bool) -> None:
    """Tear a lab down: every namespace, process, mount and file it made."""
    lab = _lab(lab_name)
    report = lab.down(progress=_progress(as_json))
    if as_json:
        _print_json({"lab": lab.name, **report.__dict__})
    else:
        click.echo(f"lab {lab.name} is down")


@main.command()
@lab_option
@json_option
@reports_errors
def cleanup(lab_name: str | None, as_json: bool) -> None:
    """Remove every leftover of a lab, even with its state lost (after a crash)."""
    lab = _lab(lab_name)
    report = lab.cleanup(progress=_progress(as_json))
    if as_json:
        _print_json({"lab": lab.name, **report.__dict__})
    elif report.empty() and not report.state_removed:
        click.echo(f"nothing of lab {lab.name} was left")
    else:
        click.echo(f"lab {lab.name} cleaned up")


@main.command()
@lab_option
@json_option
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              metavar="S", help="Seconds between refreshes with --watch.")
@reports_errors
def status(lab_name: str | None, as_json: bool, watch: bool, interval: float) -> None:
    """Nodes, VMs, replicas and tunnels of a lab."""
    from netlab import nea

    def fetch() -> dict[str, Any]:
        lab = _lab(lab_name)  # afresh each time: the lab may be brought down and up again
        data = lab.status()
        state = lab.dir.read()
        data["tunnels"] = {key: nea.connectivity(lab, key, state) for key in lab.plan().tunnels}
        from netlab.orchestrator.cloud_plan import plans_summary

        data["plans"] = plans_summary(lab, state)
        return data

    if watch:
        from netlab.status_view import watch_status

        watch_status(fetch, interval, as_json)
        return
    data = fetch()
    if as_json:
        _print_json(data)
        return
    from netlab.status_view import render_status

    render_status(data)
    for tenant, plan in data.get("plans", {}).items():
        if plan["status"] == "running":
            vms = ", ".join(f"{vm} {result}" for vm, result in plan["vms"].items())
            click.echo(f"cloud failover plan {tenant}: running ({vms})")


@main.command(
    "exec",
    # --lab may come before or after NODE; everything after "--" is the command
    context_settings={"ignore_unknown_options": True},
)
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@lab_option
@reports_errors
def exec_(node: str, command: tuple[str, ...], lab_name: str | None) -> None:
    """Run COMMAND inside NODE's namespace; its exit status is netlab's.

    Example: netlab exec acme/db -- ping -c 3 192.168.10.11
    """
    from netlab.lab import require_root
    from netlab.run import in_netns

    require_root()
    lab = _lab(lab_name)
    lab.require_up()
    target = lab.plan().node(node)
    argv = in_netns(target.netns, list(command))
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise NetlabError(f"{command[0]}: command not found") from None


@main.group("nea")
def nea_group() -> None:
    """Power a network extension appliance pair on or off (failover does it for you)."""


@nea_group.command("up")
@click.argument("network", metavar="TENANT[/NETWORK]")
@lab_option
@json_option
@reports_errors
def nea_up_command(network: str, lab_name: str | None, as_json: bool) -> None:
    """WireGuard tunnel, routes and proxy-ARP daemons of both NEAs of a network."""
    from netlab import nea

    lab = _lab(lab_name)
    seconds = nea.nea_up(lab, network, progress=_progress(as_json))
    key = nea.tunnel_of(lab, network).key
    if as_json:
        _print_json({"network": key, "seconds": round(seconds, 4)})
    else:
        click.echo(f"NEA pair {key} is on")


@nea_group.command("down")
@click.argument("network", metavar="TENANT[/NETWORK]")
@lab_option
@json_option
@reports_errors
def nea_down_command(network: str, lab_name: str | None, as_json: bool) -> None:
    """Stop the daemons and the tunnel of both NEAs of a network."""
    from netlab import nea

    lab = _lab(lab_name)
    nea.nea_down(lab, network, progress=_progress(as_json))
    key = nea.tunnel_of(lab, network).key
    if as_json:
        _print_json({"network": key, "power": "off"})
    else:
        click.echo(f"NEA pair {key} is off")


@main.command()
@click.argument("tenant")
@lab_option
@json_option
@reports_errors
def reconnect(tenant: str, lab_name: str | None, as_json: bool) -> None:
    """Restart the tunnel on both NEAs of TENANT (after 'Failed connectivity')."""
    from netlab import nea

    lab = _lab(lab_name)
    done = nea.reconnect(lab, tenant, progress=_progress(as_json))
    if as_json:
        _print_json({"tenant": tenant, "reconnected": done})
    else:
        click.echo(f"reconnected: {', '.join(done)}" if done else "no NEA pair of it is on")


def _confirm_discard(message: str, yes: bool) -> None:
    """Commands that discard data ask on a terminal; scripts get the warning and go on."""
    click.echo(f"warning: {message}", err=True)
    if yes or not sys.stdin.isatty():
        return
    if not click.confirm("continue?", default=False, err=True):
        raise NetlabError("cancelled; nothing changed")


def _report(result: Any, as_json: bool) -> None:
    from dataclasses import asdict

    if as_json:
        _print_json(asdict(result))
        return
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    line = f"{result.command}: {', '.join(result.vms)} done"
    if result.recovery_seconds is not None:
        line += f"; recovery time {result.recovery_seconds:.3f} s (command start to first reply)"
    click.echo(line)


def _lifecycle(command: str, help_text: str, discards: str | None = None) -> None:
    @click.argument("vms", nargs=-1, required=True, metavar="TENANT/VM...")
    @lab_option
    @json_option
    @reports_errors
    def run_command(vms: tuple[str, ...], lab_name: str | None, as_json: bool, **kw: Any) -> None:
        from netlab.orchestrator import operations

        lab = _lab(lab_name)
        yes = kw.pop("yes", False)
        if discards:
            lab.require_up()
            _confirm_discard(discards.format(vms=", ".join(vms)), yes)
        func = getattr(operations, command.replace("-", "_"))
        _report(func(lab, list(vms), say=_progress(as_json), **kw), as_json)

    run_command.__doc__ = help_text
    if discards:
        run_command = click.option("--yes", is_flag=True, help="Do not ask.")(run_command)
    if command == "undo":
        run_command = click.option(
            "--force", is_flag=True, help="Even when the replica does not respond."
        )(run_command)
    main.command(command)(run_command)


_lifecycle("undo", "Failover -> Normal: power the replica off and DISCARD its changes.",
           discards="undo discards everything written on the replica of {vms} since failover "
           "(use failback to keep it)")
_lifecycle("permanent", "Failover -> Permanent failover: the replica becomes production.")
_lifecycle("failback", "Failover -> Ready to switch: source off, replica changes copied to it.")
_lifecycle("switch", "Ready to switch -> Failback: replica off, last changes copied, source on.")
_lifecycle("commit", "Failback -> Normal: replication resumes.")
_lifecycle("undo-failback", "Failback / Ready to switch -> Failover: back to the replica.")


@main.command()
@click.argument("vms", nargs=-1, required=True, metavar="TENANT/VM...")
@click.option("--restore-point", "restore_point", default=None, metavar="ID",
              help="Restore point to run from (default: latest).")
@lab_option
@json_option
@reports_errors
def failover(vms: tuple[str, ...], restore_point: str | None, lab_name: str | None,
             as_json: bool) -> None:
    """Partial failover of VMs to their replicas, reached at the same IPs through the NEAs."""
    from netlab.orchestrator import operations

    lab = _lab(lab_name)
    result = operations.failover(lab, list(vms), restore_point, say=_progress(as_json))
    _report(result, as_json)


@main.command()
@click.argument("vms", nargs=-1, metavar="[TENANT/VM...]")
@lab_option
@json_option
@reports_errors
def replicate(vms: tuple[str, ...], lab_name: str | None, as_json: bool) -> None:
    """New restore point of each VM (all replicated VMs without arguments)."""
    from netlab.orchestrator import operations

    outcome = operations.replicate(_lab(lab_name), list(vms) or None, say=_progress(as_json))
    if as_json:
        _print_json(outcome)
        return
    for row in outcome:
        if "skipped" in row:
            click.echo(f"{row['vm']}: skipped, {row['skipped']}")
        else:
            click.echo(f"{row['vm']}: restore point {row['restore_point']}")


@main.command("restore-points")
@click.argument("vm", metavar="TENANT/VM")
@lab_option
@json_option
@reports_errors
def restore_points(vm: str, lab_name: str | None, as_json: bool) -> None:
    """Restore points of a VM's replica (id, time, size)."""
    from netlab import storage
    from netlab.orchestrator.operations import replicated_vm

    lab = _lab(lab_name)
    lab.require_up()
    replicated_vm(lab, vm)
    points = storage.list_restore_points(lab.replica_dir(vm))
    if as_json:
        _print_json([p.to_dict() for p in points])
        return
    if not points:
        click.echo(f"{vm} has no restore points")
    for p in points:
        click.echo(f"{p.id:>4}  {p.created}  {p.size_bytes:>8} bytes  {p.files} files")


@main.command()
@lab_option
@json_option
@reports_errors
def events(lab_name: str | None, as_json: bool) -> None:
    """The lab's journal: every step of every operation, with timestamps."""
    import datetime

    lab = _lab(lab_name)
    items = lab.dir.events()
    if as_json:
        _print_json(items)
        return
    for e in items:
        when = datetime.datetime.fromtimestamp(e["time"]).strftime("%H:%M:%S.%f")[:-3]
        rest = {k: v for k, v in e.items() if k not in ("time", "event", "message")}
        extra = " ".join(f"{k}={v}" for k, v in rest.items() if v not in (None, [], {}))
        click.echo(f"{when}  {e['event']:<28} {e.get('message', '')} {extra}".rstrip())


@main.group("vm")
def vm_group() -> None:
    """Power a tenant VM: start, stop, or fail (a simulated disaster)."""


def _vm_action(action: str, help_text: str) -> None:
    @click.argument("vm", metavar="TENANT/VM")
    @lab_option
    @json_option
    @reports_errors
    def run_action(vm: str, lab_name: str | None, as_json: bool) -> None:
        from netlab.orchestrator import operations

        power = operations.vm_power(_lab(lab_name), vm, action)
        if as_json:
            _print_json({"vm": vm, "power": power})
        else:
            click.echo(f"{vm} is {power}")

    run_action.__doc__ = help_text
    vm_group.command(action)(run_action)


_vm_action("start", "Power the VM on (and announce it with gratuitous ARP).")
_vm_action("stop", "Shut the VM down.")
_vm_action("fail", "Simulate a disaster: the VM drops off its LAN at once.")


# Commands defined in modules of their own ("module:attribute"), one per feature, so
# that features are added here with one line; modules keep heavy imports lazy.
EXTENSION_COMMANDS: list[str] = [
    "netlab.commands.graph:graph",
    "netlab.commands.capture:capture",
    "netlab.commands.validate:validate",
    "netlab.commands.demo:demo",
    "netlab.commands.cloud_plan:plan_group",
    "netlab.commands.web:web",
    "netlab.commands.bubble:bubble_group",
]


def _register_extensions() -> None:
    import importlib

    for spec in EXTENSION_COMMANDS:
        module, attribute = spec.split(":")
        main.add_command(getattr(importlib.import_module(module), attribute))


if __name__ == "__main__":
    # `python -m netlab.cli` runs this file as __main__; the command modules import
    # netlab.cli, a second copy that would find them half-imported. Run that copy.
    from netlab.cli import main as _importable_main

    _importable_main()
else:
    _register_extensions()
