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
            click.echo(f"netlab: {exc}", err=True)
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

    return Lab(lab_name or default_lab_name())


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _progress(as_json: bool) -> Callable[[str], None]:
    def say(line: str) -> None:
        if not as_json:
            click.echo(f"  {line}", err=True)

    return say


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
@reports_errors
def status(lab_name: str | None, as_json: bool) -> None:
    """Nodes, VMs, replicas and tunnels of a lab."""
    from netlab import nea

    lab = _lab(lab_name)
    data = lab.status()
    state = lab.dir.read()
    data["tunnels"] = {key: nea.connectivity(lab, key, state) for key in lab.plan().tunnels}
    if as_json:
        _print_json(data)
        return
    from netlab.status_view import render_status

    render_status(data)


@main.command(
    "exec",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
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
@reports_errors
def nea_down_command(network: str, lab_name: str | None) -> None:
    """Stop the daemons and the tunnel of both NEAs of a network."""
    from netlab import nea

    lab = _lab(lab_name)
    nea.nea_down(lab, network, progress=_progress(False))
    click.echo(f"NEA pair {nea.tunnel_of(lab, network).key} is off")


@main.command()
@click.argument("tenant")
@lab_option
@reports_errors
def reconnect(tenant: str, lab_name: str | None) -> None:
    """Restart the tunnel on both NEAs of TENANT (after 'Failed connectivity')."""
    from netlab import nea

    lab = _lab(lab_name)
    done = nea.reconnect(lab, tenant, progress=_progress(False))
    click.echo(f"reconnected: {', '.join(done)}" if done else "no NEA pair of it is on")


if __name__ == "__main__":
    main()
