"""`netlab wan set|show|clear`: rate, delay, jitter and loss of a tenant's internet link.

`sp` names the provider's uplink (the cloud gateway's internet port). Where the
kernel lacks netem, delay and jitter are refused with one line and nothing
changes; rate (tbf) and loss (nftables) work on any kernel netlab runs on.
"""

from __future__ import annotations

import json

import click

from netlab.cli_common import _lab, json_option, lab_option, reports_errors


@click.group("wan")
def wan_group() -> None:
    """WAN conditions of a tenant's internet link (or 'sp': the provider's uplink)."""


@wan_group.command("set")
@click.argument("tenant")
@click.option("--rate", default=None, metavar="RATE", help="e.g. 10mbit, 512kbit (0: none).")
@click.option("--delay", default=None, metavar="TIME", help="e.g. 50ms (needs netem).")
@click.option("--jitter", default=None, metavar="TIME", help="e.g. 5ms (needs netem, --delay).")
@click.option("--loss", default=None, metavar="PERCENT", help="e.g. 1%, 100% (a cut link).")
@lab_option
@json_option
@reports_errors
def wan_set(tenant: str, rate: str | None, delay: str | None, jitter: str | None,
            loss: str | None, lab_name: str | None, as_json: bool) -> None:
    """Change some conditions of TENANT's link; those not given stay as they are."""
    from netlab import wan

    lab = _lab(lab_name)
    lab.require_up()
    changes = wan.parse_changes(rate=rate, delay=delay, jitter=jitter, loss=loss)
    if not changes:
        raise click.UsageError("give at least one of --rate, --delay, --jitter, --loss")
    profile = wan.set_wan(lab.dir, lab.plan(), tenant, changes)
    if as_json:
        click.echo(json.dumps({"target": tenant, **profile}))
    else:
        click.echo(f"{tenant}: {wan.describe(profile)}")


@wan_group.command("show")
@lab_option
@json_option
@reports_errors
def wan_show(lab_name: str | None, as_json: bool) -> None:
    """The conditions of every tenant's link and of the provider's uplink."""
    from netlab import wan

    lab = _lab(lab_name)
    lab.require_up()
    shown = wan.show_wan(lab.dir, lab.plan())
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    for target, row in shown.items():
        click.echo(f"{target:<12} {row['interface']:<12} {row['summary']}  [{row['qdisc']}]")


@wan_group.command("clear")
@click.argument("tenant")
@lab_option
@reports_errors
def wan_clear(tenant: str, lab_name: str | None) -> None:
    """Remove every condition from TENANT's link."""
    from netlab import wan

    lab = _lab(lab_name)
    lab.require_up()
    wan.clear_wan(lab.dir, lab.plan(), tenant)
    click.echo(f"{tenant}: no conditions (the link's own speed)")
