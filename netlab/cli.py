"""The `netlab` command: click commands that call the library and format its answers.

Scapy is never imported here (it costs 0.4-0.8 s): `netlab --help` and
`netlab status` start fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from netlab.cli_common import (  # noqa: F401 - re-exported for older command modules
    EXIT_INTERNAL,
    FullHelpGroup,
    _confirm_discard,
    _lab,
    _print_json,
    _progress,
    _remember,
    handle_error,
    json_option,
    lab_flag,
    lab_option,
    reports_errors,
    usage_error,
    yes_option,
)
from netlab.commands.meta import complete_networks, complete_nodes, complete_tenants, complete_vms
from netlab.errors import NetlabError, PreconditionFailed, UnknownNode


class NetlabGroup(FullHelpGroup):
    """The top-level group: usage errors in one line, and no traceback ever escapes."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # an option of the group itself
            usage_error(exc)
            raise  # not reached: usage_error exits

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a command's own options and arguments
            usage_error(exc)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except BaseException as exc:  # a command without @reports_errors
            handle_error(exc)


@click.group(cls=NetlabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netlab-dr", prog_name="netlab")
@click.option("--lab", "lab_name", default=None, metavar="NAME", callback=_remember("netlab.lab"),
              help="Lab name for the command (default: $NETLAB_LAB, else 'demo').")
def main(lab_name: str | None) -> None:
    """Partial site failover, emulated with real Linux networking.

    Exit status: 0 ok (also when there was nothing to do), 1 the operation
    failed or was refused or cancelled, 2 bad usage or an unknown name,
    70 internal error (the traceback is in the log file named), 130 interrupted.
    """


@main.command()
@click.argument("topology", required=False, type=click.Path(dir_okay=False))
@lab_option
@json_option
@click.option("--raise-limits", is_flag=True,
              help="Raise host limits (fs.inotify.max_user_instances, ...) that would keep "
                   "all NEA pairs of the lab from running at once; 'down' puts them back.")
@reports_errors
def up(topology: str | None, lab_name: str | None, as_json: bool, raise_limits: bool) -> None:
    """Bring up a lab (the default lab without TOPOLOGY)."""
    import time

    from netlab.commands.hints import after_up

    lab = _lab(lab_name)
    started = time.monotonic()
    outcome = lab.up(topology, progress=_progress(as_json), raise_limits=raise_limits)
    elapsed = time.monotonic() - started
    if as_json:
        _print_json({"lab": lab.name, "result": outcome, "seconds": round(elapsed, 3)})
    elif outcome == "already up":
        click.echo(f"lab {lab.name} is already up (nothing changed)")
    else:
        click.echo(f"lab {lab.name} is up in {elapsed:.2f} s; "
                   f"{after_up(lab.plan(), lab_flag(lab))}")


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
@click.argument("node", required=False, shell_complete=complete_nodes)
@lab_option
@json_option
@click.option("--wide", is_flag=True, help="Namespace and MAC columns too (wider than 80).")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              metavar="S", help="Seconds between refreshes with --watch.")
@reports_errors
def status(node: str | None, lab_name: str | None, as_json: bool, wide: bool, watch: bool,
           interval: float) -> None:
    """Nodes, VMs, replicas and tunnels of a lab (of one NODE, in full, with NODE)."""
    from netlab import nea_health
    from netlab.status_view import render_node, render_status, watch_status

    def fetch() -> dict[str, Any]:
        lab = _lab(lab_name)  # afresh each time: the lab may be brought down and up again
        data = lab.status()
        state = lab.dir.read()
        data["tunnels"] = {key: nea_health.connectivity(lab, key, state)
                           for key in lab.plan().tunnels}
        from netlab.orchestrator.cloud_plan import plans_summary

        data["plans"] = plans_summary(lab, state)
        return data

    if node is not None:
        if watch:
            raise click.UsageError("--watch shows the whole lab: without NODE")
        _lab(lab_name).plan().node(node)  # an unknown node: exit 2 with the names
    if watch:
        watch_status(fetch, interval, as_json, wide=wide)
        return
    data = fetch()
    if node is not None:
        one = next(n for n in data["nodes"] if n["name"] == node)
        vm = next((v for v in data["vms"] if v["name"] == node), None)
        if as_json:
            _print_json({"lab": data["lab"], "node": one, "vm": vm})
        else:
            render_node(one, vm)
        return
    if as_json:
        _print_json(data)
        return
    render_status(data, wide=wide)
    for tenant, plan in data.get("plans", {}).items():
        if plan["status"] == "running":
            vms = ", ".join(f"{vm} {result}" for vm, result in plan["vms"].items())
            click.echo(f"cloud failover plan {tenant}: running ({vms})")


def hostname_of(node: str) -> str:
    """A valid hostname for a node: 'acme/web@sp' -> 'acme-web-sp' (RFC 1123 label)."""
    import re

    return re.sub(r"[^a-z0-9-]+", "-", node.lower()).strip("-")[:63] or "node"


def _own_hostname(hostname: str) -> None:
    """Move this process into a new UTS namespace named `hostname` (it survives exec)."""
    import ctypes
    import socket

    clone_newuts = 0x04000000
    unshare = getattr(os, "unshare", None)  # Python >= 3.12
    if unshare is not None:
        unshare(clone_newuts)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(clone_newuts) != 0:
            raise NetlabError(f"cannot make a UTS namespace: {os.strerror(ctypes.get_errno())}")
    socket.sethostname(hostname)


@main.command(
    "exec",
    # --lab may come before or after NODE; everything after "--" is the command
    context_settings={"ignore_unknown_options": True},
)
@click.argument("node", shell_complete=complete_nodes)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@lab_option
@reports_errors
def exec_(node: str, command: tuple[str, ...], lab_name: str | None) -> None:
    """Run COMMAND inside NODE's namespace, with NODE's name as hostname.

    Its exit status is netlab's. Example: netlab exec acme/db -- ping -c 3 192.168.10.11
    """
    from netlab.run import in_netns

    lab = _lab(lab_name)
    lab.require_up()
    target = lab.plan().node(node)
    argv = in_netns(target.netns, list(command))
    _own_hostname(hostname_of(target.name))
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise NetlabError(f"{command[0]}: command not found") from None


@main.group("nea", cls=FullHelpGroup)
def nea_group() -> None:
    """Power a network extension appliance pair on or off (failover does it for you)."""


@nea_group.command("up")
@click.argument("network", metavar="TENANT[/NETWORK]", shell_complete=complete_networks)
@lab_option
@json_option
@reports_errors
def nea_up_command(network: str, lab_name: str | None, as_json: bool) -> None:
    """WireGuard tunnel, routes and proxy-ARP daemons of both NEAs of a network."""
    from netlab import nea

    lab = _lab(lab_name)
    lab.require_up()
    key = nea.tunnel_of(lab, network).key
    seconds = nea.nea_up(lab, network, progress=_progress(as_json))
    if as_json:
        _print_json({"network": key, "seconds": round(seconds, 4)})
    else:
        click.echo(f"NEA pair {key} is on")


@nea_group.command("down")
@click.argument("network", metavar="TENANT[/NETWORK]", shell_complete=complete_networks)
@lab_option
@json_option
@reports_errors
def nea_down_command(network: str, lab_name: str | None, as_json: bool) -> None:
    """Stop the daemons and the tunnel of both NEAs of a network."""
    from netlab import nea

    lab = _lab(lab_name)
    lab.require_up()
    key = nea.tunnel_of(lab, network).key
    nea.nea_down(lab, network, progress=_progress(as_json))
    if as_json:
        _print_json({"network": key, "power": "off"})
    else:
        click.echo(f"NEA pair {key} is off")


@main.command()
@click.argument("tenant", shell_complete=complete_tenants)
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
    for vm, rpo in getattr(result, "rpo", {}).items():
        click.echo(f"{vm}: restore point {rpo['restore_point']}, RPO {rpo['age_seconds']:.1f} s, "
                   f"{rpo['records_lost']} records written after it lost")


def known_vms(lab: Any, names: tuple[str, ...] | list[str], edges: bool = False) -> None:
    """Refuse every unknown name at once (exit 2), before anything changes."""
    plan = lab.plan()
    kinds = {"vm", "edge"} if edges else {"vm"}
    unknown = [n for n in names if n not in plan.nodes or plan.nodes[n].kind.value not in kinds]
    if unknown:
        vms = ", ".join(vm.name for vm in plan.vms())
        raise UnknownNode(f"unknown VM {', '.join(repr(n) for n in unknown)}; "
                          f"VMs of lab {lab.name}: {vms}")


def _check_states(lab: Any, names: tuple[str, ...], command: str) -> None:
    """The state check of a lifecycle command, for every VM, before any warning: a
    refusal names each VM it refuses. The operation checks everything again under
    its locks, with its own words for the other refusals (DHCP, no replica, ...)."""
    from netlab.orchestrator.states import check_transition

    lab.require_up()
    known_vms(lab, names)
    state = lab.dir.read()
    if state.get("operation"):
        return  # an interrupted operation: the command finishes or rolls it back first
    refusals = []
    for name in dict.fromkeys(names):
        current = state.get("replicas", {}).get(name, {}).get("state")
        if current is None:
            continue
        if state.get("plans", {}).get(name.split("/")[0], {}).get("status") == "running":
            continue  # the operation refuses it first: one failover operation type at a time
        try:
            check_transition(f"{name}@sp", current, command)
        except PreconditionFailed as exc:
            refusals.append(str(exc))
    if len(refusals) == 1:
        raise PreconditionFailed(refusals[0])
    if refusals:
        raise PreconditionFailed(f"{command} refused for {len(refusals)} VMs: "
                                 + "; ".join(refusals))


# commands that discard data or cannot be undone, and what they say before going on
DISCARDS = {
    "undo": "undo discards everything written on the replica of {vms} since failover "
            "(use failback to keep it)",
    "permanent": "permanent cannot be undone: the replica of {vms} becomes production, its "
                 "restore points are removed and the source leaves replication",
}


def _lifecycle(command: str, help_text: str) -> None:
    @click.argument("vms", nargs=-1, required=True, metavar="TENANT/VM...",
                    shell_complete=complete_vms)
    @lab_option
    @json_option
    @reports_errors
    def run_command(vms: tuple[str, ...], lab_name: str | None, as_json: bool, **kw: Any) -> None:
        from netlab.orchestrator import operations

        lab = _lab(lab_name)
        yes = kw.pop("yes", False)
        _check_states(lab, vms, command)
        if command in DISCARDS:
            _confirm_discard(DISCARDS[command].format(vms=", ".join(vms)), yes)
        func = getattr(operations, command.replace("-", "_"))
        _report(func(lab, list(vms), say=_progress(as_json), **kw), as_json)

    run_command.__doc__ = help_text
    if command in DISCARDS:
        run_command = yes_option(run_command)
    if command == "undo":
        run_command = click.option(
            "--force", is_flag=True, help="Even when the replica does not respond."
        )(run_command)
    main.command(command)(run_command)


_lifecycle("undo", "Failover -> Normal: power the replica off and DISCARD its changes.")
_lifecycle("permanent", "Failover -> Permanent failover: the replica becomes production "
           "(cannot be undone).")
_lifecycle("failback", "Failover -> Ready to switch: source off, replica changes copied to it.")
_lifecycle("switch", "Ready to switch -> Failback: replica off, last changes copied, source on.")
_lifecycle("commit", "Failback -> Normal: replication resumes.")
_lifecycle("undo-failback", "Failback / Ready to switch -> Failover: back to the replica.")


@main.command()
@click.argument("vms", nargs=-1, required=True, metavar="TENANT/VM...",
                shell_complete=complete_vms)
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
    _check_states(lab, vms, "failover")
    result = operations.failover(lab, list(vms), restore_point, say=_progress(as_json))
    _report(result, as_json)


@main.command()
@click.argument("vms", nargs=-1, metavar="[TENANT/VM...]", shell_complete=complete_vms)
@lab_option
@json_option
@reports_errors
def replicate(vms: tuple[str, ...], lab_name: str | None, as_json: bool) -> None:
    """New restore point of each VM (all replicated VMs without arguments)."""
    from netlab.orchestrator import operations

    lab = _lab(lab_name)
    lab.require_up()
    known_vms(lab, vms)
    outcome = operations.replicate(lab, list(vms) or None, say=_progress(as_json))
    if as_json:
        _print_json(outcome)
        return
    for row in outcome:
        if "skipped" in row:
            click.echo(f"{row['vm']}: skipped, {row['skipped']}")
        elif "failed" in row:
            click.echo(f"{row['vm']}: failed, {row['failed']}", err=True)
        else:
            click.echo(f"{row['vm']}: restore point {row['restore_point']} "
                       f"({row['seconds']:.1f} s, {row.get('bytes_sent') or 0} bytes sent)")
    if any("failed" in row for row in outcome):
        sys.exit(1)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@main.command("restore-points")
@click.argument("vm", metavar="TENANT/VM", shell_complete=complete_vms)
@lab_option
@json_option
@reports_errors
def restore_points(vm: str, lab_name: str | None, as_json: bool) -> None:
    """Restore points of a VM's replica (id, time, size)."""
    from netlab import storage
    from netlab.orchestrator.operations import replicated_vm

    lab = _lab(lab_name)
    lab.require_up()
    known_vms(lab, [vm])
    replicated_vm(lab, vm)
    points = storage.list_restore_points(lab.replica_dir(vm))
    if as_json:
        _print_json([p.to_dict() for p in points])
        return
    if not points:
        click.echo(f"{vm} has no restore points")
        return
    click.echo(f"{'ID':>4}  {'CREATED':<26}  {'SIZE':>14}  FILES")
    for p in points:
        click.echo(f"{p.id:>4}  {p.created!s:<26}  {_plural(p.size_bytes, 'byte'):>14}  "
                   f"{_plural(p.files, 'file')}")


@main.command()
@lab_option
@json_option
@reports_errors
def events(lab_name: str | None, as_json: bool) -> None:
    """The lab's journal: every step of every operation, with timestamps."""
    import datetime

    lab = _lab(lab_name)
    if not lab.dir.exists():  # a lab left half made still shows what happened to it
        lab.require_up()
    items = lab.dir.events()
    if as_json:
        _print_json(items)
        return
    for e in items:
        when = datetime.datetime.fromtimestamp(e["time"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        rest = {k: v for k, v in e.items() if k not in ("time", "event", "message")}
        extra = " ".join(f"{k}={v}" for k, v in rest.items() if v not in (None, [], {}))
        click.echo(f"{when}  {e['event']:<28} {e.get('message', '')} {extra}".rstrip())


@main.group("vm", cls=FullHelpGroup)
def vm_group() -> None:
    """Power tenant VMs: start, stop, or fail (a simulated disaster)."""


def _vm_action(action: str, help_text: str) -> None:
    @click.argument("vms", nargs=-1, required=True, metavar="TENANT/VM...",
                    shell_complete=complete_vms)
    @lab_option
    @json_option
    @reports_errors
    def run_action(vms: tuple[str, ...], lab_name: str | None, as_json: bool) -> None:
        from netlab.orchestrator import operations

        lab = _lab(lab_name)
        lab.require_up()
        known_vms(lab, vms, edges=True)  # a site's edge: the whole site (see site.py)
        done, refusals = [], []
        for vm in dict.fromkeys(vms):
            try:
                done.append({"vm": vm, "power": operations.vm_power(lab, vm, action)})
            except PreconditionFailed as exc:  # e.g. held by another operation
                refusals.append(f"{vm}: {exc}")
        if as_json and not refusals:
            _print_json(done)
        elif not as_json:
            for row in done:
                click.echo(f"{row['vm']} is {row['power']}")
        if refusals:
            raise PreconditionFailed(f"vm {action} refused: " + "; ".join(refusals))

    run_action.__doc__ = help_text
    vm_group.command(action)(run_action)


_vm_action("start", "Power VMs on (each announces itself with gratuitous ARP).")
_vm_action("stop", "Shut VMs down.")
_vm_action("fail", "Simulate a disaster: the VMs drop off their LAN at once.")


# Commands defined in modules of their own ("module:attribute"), one per feature, so
# that features are added here with one line; modules keep heavy imports lazy.
EXTENSION_COMMANDS: list[str] = [
    "netlab.commands.graph:graph",
    "netlab.commands.capture:capture",
    "netlab.commands.validate:validate",
    "netlab.commands.demo:demo",
    "netlab.commands.cloud_plan:plan_group",
    "netlab.commands.web:web",
    "netlab.commands.meta:version",
    "netlab.commands.meta:labs",
    "netlab.commands.meta:completion",
    "netlab.commands.wan:wan_group",
    "netlab.commands.bubble:bubble_group",
]


def _register_extensions() -> None:
    import importlib

    for spec in EXTENSION_COMMANDS:
        module, attribute = spec.split(":")
        main.add_command(getattr(importlib.import_module(module), attribute))


_register_extensions()

if __name__ == "__main__":
    main()
