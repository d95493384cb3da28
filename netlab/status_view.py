"""`netlab status` as rich tables: per tenant its VMs and replicas, then tunnels and nodes."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from rich import box
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


def _console() -> Console:
    # emoji off: a MAC such as 72:cd:.. would otherwise print as a CD icon
    return Console(emoji=False, highlight=False)


def _table(title: str) -> Table:
    # no vertical rules: 80 columns hold every column without cutting an address
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1),
                 pad_edge=False, collapse_padding=True)


def render_status(data: dict[str, Any], console: Console | None = None,
                  wide: bool = False) -> None:
    console = console or _console()
    if wide and not console.is_terminal:
        console.width = max(console.width, 160)  # asked for wide: a pipe gets it whole
    console.print(status_renderable(data, wide))


def _vm_table(data: dict[str, Any], wide: bool = False) -> Table:
    vms = _table("VMs and replicas")
    vms.add_column("VM", overflow="fold")
    vms.add_column("address", no_wrap=True)  # never cut: it is what users copy
    for column in ("power", "replica state", "replication", "points", "RPO",
                   *(["last job"] if wide else [])):
        vms.add_column(column)
    for vm in data["vms"]:
        state = vm["replica_state"] or "-"
        style = STATE_STYLE.get(state, "")
        vms.add_row(
            vm["name"],
            vm["address"] or "(no lease)",  # DHCP: said under replication (room for 80 columns)
            vm["power"],
            f"[{style}]{state}[/{style}]" if style else state,
            "DHCP, none" if vm["dhcp"] else vm["replication"] or "-",
            str(vm["restore_points"]) if vm["replica"] else "-",
            *_rpo_cells(vm.get("rpo"))[:2 if wide else 1],
        )
    return vms


def _failed_jobs(data: dict[str, Any]) -> Text | None:
    """Replication jobs whose last run failed, with the reason (80 columns: one a line)."""
    lines = []
    for vm in data["vms"]:
        job = (vm.get("rpo") or {}).get("last_job") or {}
        if job and job.get("result") != "ok":
            lines.append(f"replication of {vm['name']} {job['result']}: {job.get('reason', '')}")
    return Text("\n".join(lines), style="red") if lines else None


def _tunnel_table(data: dict[str, Any]) -> Table:
    tunnels = _table("Network extension (NEA pairs)")
    tunnels.add_column("network", overflow="fold")
    for column in ("power", "backend", "connectivity"):
        tunnels.add_column(column)
    tunnels.add_column("proxied here", no_wrap=True)
    tunnels.add_column("detail", overflow="fold")
    for key, tunnel in data["tunnels"].items():
        conn = tunnel.get("connectivity", "-")
        style = "green" if conn == "Connected" else ("red" if conn != "-" else "")
        tunnels.add_row(
            key,
            tunnel.get("power", "off"),
            tunnel.get("backend") or "-",
            f"[{style}]{conn}[/{style}]" if style else conn,
            "\n".join(tunnel.get("tenant_proxied", [])) or "-",
            tunnel.get("detail", ""),
        )
    return tunnels


def _interface_lines(node: dict[str, Any], wide: bool) -> str:
    """One line per interface: name, addresses, state (and the MAC with --wide)."""
    lines = []
    for i in node["interfaces"]:
        words = [i["name"], *([i["mac"]] if wide else []),
                 ",".join(i["addresses"]) or "-", i["state"]]
        lines.append(" ".join(words))
    return "\n".join(lines)


def _node_table(data: dict[str, Any], wide: bool) -> Table:
    nodes = _table("Nodes" + ("" if wide else " (--wide: namespaces and MACs)"))
    nodes.add_column("node", overflow="fold")
    nodes.add_column("power")
    if wide:
        nodes.add_column("namespace", no_wrap=True)
    nodes.add_column("interfaces", no_wrap=True)
    for node in data["nodes"]:
        row = [node["name"], node["power"], *([node["namespace"]] if wide else []),
               _interface_lines(node, wide)]
        nodes.add_row(*row)
    return nodes


def status_renderable(data: dict[str, Any], wide: bool = False) -> RenderableType:
    """The whole status view as one rich renderable (printed once, or live with --watch)."""
    parts: list[RenderableType] = [Text.from_markup(
        f"[bold]lab {data['lab']}[/bold]: {data['status']} (state: {data['state_dir']})",
        emoji=False)]
    parts.append(_vm_table(data, wide))
    if failed := _failed_jobs(data):
        parts.append(failed)
    if data.get("tunnels"):
        parts.append(_tunnel_table(data))
    if data.get("wireguard") and data["wireguard"].get("backend"):
        wg = data["wireguard"]
        room = ("no host ceiling" if wg["pairs_left"] is None
                else f"{wg['pairs_left']} more fit (bound by {wg['binding']})")
        parts.append(Text(f"WireGuard backend {wg['backend']}: {wg['pairs_on']} NEA pairs on, "
                          f"{room}"))
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
    parts.append(_node_table(data, wide))
    return Group(*parts)


def render_node(node: dict[str, Any], vm: dict[str, Any] | None,
                console: Console | None = None) -> None:
    """`netlab status NODE`: everything about one node, one fact a line."""
    console = console or _console()
    lines = [f"[bold]{node['name']}[/bold] ({node['kind']})",
             f"  power:      {node['power']}",
             f"  namespace:  {node['namespace']}"]
    if vm is not None:
        lines.append(f"  address:    {vm['address'] or '(no lease)'}"
                     + (" (DHCP)" if vm["dhcp"] else ""))
        if vm["replica"]:
            lines += [f"  replica:    {vm['replica']}, {vm['replica_state']}",
                      f"  replication: {vm['replication'] or '-'}, "
                      f"{vm['restore_points']} restore point"
                      f"{'' if vm['restore_points'] == 1 else 's'}"]
    for i in node["interfaces"]:
        lines.append(f"  interface {i['name']}: {i['mac']} "
                     f"{','.join(i['addresses']) or '-'} {i['state']}")
    for line in lines:
        console.print(Text.from_markup(line, emoji=False), soft_wrap=True)


def _rpo_cells(rpo: dict[str, Any] | None) -> tuple[str, str]:
    """The age of the newest restore point (red over the goal) and the last job's result."""
    if not rpo:
        return "-", "-"
    age = rpo.get("age_seconds")
    cell = "-" if age is None else f"{age:.0f} s"
    if rpo.get("over_goal"):  # the goal itself: --wide, status VM, --json
        cell = f"[bold red]{cell} > {rpo['goal_seconds']:g}[/bold red]"
    job = rpo.get("last_job")
    if not job:
        return cell, "-"
    ago = f"{time.time() - job.get('finished', job['started']):.0f} s ago"
    if job["result"] == "ok":
        return cell, f"ok: point {job.get('restore_point')} in {job.get('seconds', 0):.1f} s, {ago}"
    return cell, f"[red]{job['result']}[/red] {ago}: {job.get('reason', '')}"


def watch_status(fetch: Callable[[], dict[str, Any]], interval: float, as_json: bool = False,
                 console: Console | None = None, wide: bool = False) -> None:
    """Show fetch()'s status every `interval` seconds until Ctrl-C, which ends it normally.

    On a terminal the view is redrawn in place (rich Live); into a pipe or a file each
    refresh is printed after the previous one, with a time stamp, like a log; with
    --json one JSON object per line.
    """
    from netlab.errors import NetlabError

    console = console or _console()

    def view() -> RenderableType:
        # the lab may go down or come up while watched: say so and keep watching
        try:
            return status_renderable(fetch(), wide)
        except NetlabError as exc:
            return Text(f"netlab: {exc}", style="bold red")

    # Ctrl-C ends the watch between two refreshes. Raised in the middle of a fetch, a
    # KeyboardInterrupt can land inside pyroute2's event loop, which does not always let
    # it through: the watch then hung (seen under load). A second Ctrl-C still interrupts.
    stop = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if as_json or not console.is_terminal:
            while not stop.is_set():
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
                stop.wait(interval)
            return
        from rich.live import Live

        with Live(console=console, auto_refresh=False, screen=False) as live:
            while not stop.is_set():
                footer = Text(f"refreshed {time.strftime('%H:%M:%S')} every {interval:g} s; "
                              "Ctrl-C to stop", style="dim")
                live.update(Group(view(), footer), refresh=True)
                stop.wait(interval)
    except KeyboardInterrupt:
        return  # the second Ctrl-C: how a watch ends, not an error
    finally:
        signal.signal(signal.SIGINT, previous)
