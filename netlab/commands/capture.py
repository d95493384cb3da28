"""`netlab capture`: tcpdump inside a node's namespace (or on a segment's bridge).

tcpdump replaces netlab (exec), so its output, its Ctrl-C handling (it prints
its packet counts and exits 0) and its exit status are the user's directly.
"""

from __future__ import annotations

import os
import sys

import click

from netlab.cli_common import lab_option, reports_errors
from netlab.commands.meta import complete_nodes
from netlab.errors import NetlabError, UnknownNode


def tcpdump_argv(iface: str, write: str | None, count: int | None, expression: str | None,
                 verbose: bool = False) -> list[str]:
    """The tcpdump command line (without the namespace part)."""
    # --immediate-mode: without it tcpdump loses buffered packets when it is stopped;
    # -Z root: Debian's tcpdump drops to user 'tcpdump' and then cannot write -w files
    # in root-owned directories
    argv = ["tcpdump", "-i", iface, "--immediate-mode", "-n", "-Z", "root"]
    if write is not None:
        argv += ["-w", write]
        if write == "-":
            argv.append("-U")  # one pcap record per packet on the pipe: Wireshark sees it live
    else:
        argv += ["-e", "-l"]  # MAC addresses (who answers ARP is the point); line-buffered
        if verbose:
            argv.append("-v")
    if count is not None:
        argv += ["-c", str(count)]
    if expression:
        argv.append(expression)
    return argv


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("node", shell_complete=complete_nodes)
@click.argument("iface", required=False)
@click.option("-w", "write", default=None, metavar="FILE",
              help="Write pcap to FILE ('-': to stdout, for 'wireshark -k -i -').")
@click.option("-c", "count", type=click.IntRange(min=1), default=None,
              help="Stop after COUNT packets.")
@click.option("--filter", "expression", default=None, metavar="EXPR",
              help="A pcap filter, e.g. 'arp' or 'udp port 6180'.")
@click.option("-v", "verbose", is_flag=True, help="tcpdump -v (text output only).")
@lab_option
@reports_errors
def capture(node: str, iface: str | None, write: str | None, count: int | None,
            expression: str | None, verbose: bool, lab_name: str | None) -> None:
    """Capture packets on NODE's IFACE (default: its first port) with tcpdump.

    NODE is a node (acme/db, sp/cgw, acme/web@sp) or a segment (acme/lan, inet,
    sp/core, sp/acme/lan: its bridge sees every frame of the segment).

    \b
    Examples:
      netlab capture acme/db --filter arp
      netlab capture sp/cgw -c 20 --filter 'udp port 6180'
      netlab capture acme/db -w - | wireshark -k -i -
    """
    from netlab.cli_common import _lab
    from netlab.lab import require_root
    from netlab.run import in_netns, require_tool

    require_root()
    require_tool("tcpdump")
    lab = _lab(lab_name)
    lab.require_up()
    plan = lab.plan()
    if node in plan.nodes:
        target = plan.nodes[node]
        netns = target.netns
        names = [p.name for p in target.ports]
        tunnel = next((t for t in plan.tunnels.values() if node in (t.tenant_nea, t.sp_nea)),
                      None)
        if tunnel is not None:  # an NEA: its WireGuard interface too (the inner packets)
            names.append(tunnel.tenant_wg if node == tunnel.tenant_nea else tunnel.sp_wg)
        chosen = iface or names[0]
        if iface is not None and iface.isdigit() and int(iface) < len(names):
            chosen = names[int(iface)]  # "1": the node's second port
        elif iface not in (None, "any", *names):
            raise UnknownNode(f"{node} has no interface {iface!r}; its interfaces: "
                              f"{', '.join(names)} (or an index 0..{len(names) - 1}, or 'any')")
    elif node in plan.segments:
        if iface is not None:
            raise NetlabError(f"{node} is a segment: capture on its bridge takes no IFACE")
        netns, chosen = plan.segments[node].netns, plan.segments[node].bridge
    else:
        raise UnknownNode(f"unknown node or segment {node!r}; nodes: {', '.join(plan.nodes)}; "
                          f"segments: {', '.join(plan.segments)}")
    if write == "-" and sys.stdout.isatty():
        raise NetlabError("-w - writes binary pcap: pipe it, e.g. '| wireshark -k -i -'")
    argv = in_netns(netns, tcpdump_argv(chosen, write, count, expression, verbose))
    # which interface, on stderr so that a pcap on stdout stays clean
    click.echo(f"netlab: capturing on {node} {chosen} (Ctrl-C to stop)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)
