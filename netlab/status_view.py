"""`netlab status` as rich tables: per tenant its VMs and replicas, then tunnels and nodes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

STATE_STYLE = {
    "Normal": "green",
    "Failover": "bold yellow",
    "Ready to switch": "cyan",
    "Failback": "cyan",
    "Permanent failover": "magenta",
}


def render_status(data: dict[str, Any], console: Console | None = None) -> None:
    # emoji off: a MAC such as 72:cd:.. would otherwise print as a CD icon
    console = console or Console(emoji=False, highlight=False)
    console.print(status_renderable(data))


def status_renderable(data: dict[str, Any]) -> RenderableType:
    """The whole status view as one rich renderable (printed once, or live with --watch)."""
    parts: list[RenderableType] = [Text.from_markup(
        f"[bold]lab {data['lab']}[/bold]: {data['status']} (state: {data['state_dir']})",
        emoji=False)]
    vms = Table(title="VMs and replicas", title_justify="left")
    for column in ("VM", "address", "power", "replica state", "replication", "restore points"):
        vms.add_column(column)
    for vm in data["vms"]:
        state = vm["replica_state"] or "-"
        style = STATE_STYLE.get(state, "")
        vms.add_row(
            vm["name"],
            (vm["address"] or "(no lease)") + (" (DHCP)" if vm["dhcp"] else ""),
            vm["power"],
            f"[{style}]{state}[/{style}]" if style else state,
            "n/a (DHCP)" if vm["dhcp"] else vm["replication"] or "-",
            str(vm["restore_points"]) if vm["replica"] else "-",
        )
    parts.append(vms)
    if data.get("tunnels"):
        tunnels = Table(title="Network extension (NEA pairs)", title_justify="left")
        for column in ("network", "power", "backend", "connectivity", "proxied here", "detail"):
            tunnels.add_column(column)
        for key, tunnel in data["tunnels"].items():
            conn = tunnel.get("connectivity", "-")
            style = "green" if conn == "Connected" else ("red" if conn != "-" else "")
            tunnels.add_row(
                key,
                tunnel.get("power", "off"),
                tunnel.get("backend") or "-",
                f"[{style}]{conn}[/{style}]" if style else conn,
                ", ".join(tunnel.get("tenant_proxied", [])) or "-",
                tunnel.get("detail", ""),
            )
        parts.append(tunnels)
    for warning in data.get("warnings", []):
        parts.append(Text.from_markup(f"[bold red]warning:[/bold red] {warning}", emoji=False))
    for c in data.get("conflicts", []):
        who = ", ".join(f"{m} ({h})" for m, h in zip(c["macs"], c["holders"], strict=True))
        parts.append(Text(f"conflict seen on the wire by {c.get('by', '?')} from "
                          f"{c['seen_by']}: {c['address']} on {c['network']} is answered by "
                          f"{who}", style="bold red"))
    for name, b in data.get("bubbles", {}).items():
        parts.append(Text(f"bubble {name}: tenant {b['tenant']}, {b['status']}, masquerade "
                          f"{b['masquerade']} ('netlab bubble status {name}')"))
    nodes = Table(title="Nodes", title_justify="left")
    for column in ("node", "power", "namespace", "interfaces"):
        nodes.add_column(column)
    for node in data["nodes"]:
        ifaces = "; ".join(
            f"{i['name']} {i['mac']} {','.join(i['addresses']) or '-'} {i['state']}"
            for i in node["interfaces"]
        )
        nodes.add_row(node["name"], node["power"], node["namespace"], ifaces)
    parts.append(nodes)
    return Group(*parts)


def watch_status(fetch: Callable[[], dict[str, Any]], interval: float, as_json: bool = False,
                 console: Console | None = None) -> None:
    """Show fetch()'s status every `interval` seconds until Ctrl-C, which ends it normally.

    On a terminal the view is redrawn in place (rich Live); into a pipe or a file each
    refresh is printed after the previous one, with a time stamp, like a log; with
    --json one JSON object per line.
    """
    from netlab.errors import NetlabError

    console = console or Console(emoji=False, highlight=False)

    def view() -> RenderableType:
        # the lab may go down or come up while watched: say so and keep watching
        try:
            return status_renderable(fetch())
        except NetlabError as exc:
            return Text(f"netlab: {exc}", style="bold red")

    try:
        if as_json or not console.is_terminal:
            while True:
                if as_json:
                    try:
                        line = json.dumps(fetch(), default=str)
                    except NetlabError as exc:
                        line = json.dumps({"error": str(exc)})
                    console.file.write(line + "\n")
                else:
                    console.rule(time.strftime("%H:%M:%S"))
                    console.print(view())
                console.file.flush()
                time.sleep(interval)
        from rich.live import Live

        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                footer = Text(f"refreshed {time.strftime('%H:%M:%S')} every {interval:g} s; "
                              "Ctrl-C to stop", style="dim")
                live.update(Group(view(), footer), refresh=True)
                time.sleep(interval)
    except KeyboardInterrupt:
        # Ctrl-C is how a watch ends, not an error
        return
