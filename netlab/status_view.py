"""`netlab status` as rich tables: per tenant its VMs and replicas, then tunnels and nodes."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

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
    console.print(f"[bold]lab {data['lab']}[/bold]: {data['status']} (state: {data['state_dir']})")
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
    console.print(vms)
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
        console.print(tunnels)
    for warning in data.get("warnings", []):
        console.print(f"[bold red]warning:[/bold red] {warning}")
    nodes = Table(title="Nodes", title_justify="left")
    for column in ("node", "power", "namespace", "interfaces"):
        nodes.add_column(column)
    for node in data["nodes"]:
        ifaces = "; ".join(
            f"{i['name']} {i['mac']} {','.join(i['addresses']) or '-'} {i['state']}"
            for i in node["interfaces"]
        )
        nodes.add_row(node["name"], node["power"], node["namespace"], ifaces)
    console.print(nodes)
