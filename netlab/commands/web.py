"""`netlab web`: the lab as a live picture in a browser (Starlette + uvicorn, imported late)."""

from __future__ import annotations

import ipaddress
import socket

import click

from netlab.cli_common import lab_option, reports_errors
from netlab.errors import NetlabError


class RemoteRefused(NetlabError):
    """A non-loopback address without --allow-remote: a usage error."""

    exit_code = 2


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def listen(address: str, port: int) -> socket.socket:
    """Bind and listen here, so that a taken port is one clear line, not a server log."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise NetlabError(f"cannot listen on {address}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(where)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise NetlabError(f"cannot listen on {address} port {port}: {exc.strerror}") from None
    return sock


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="TCP port (0: any free port; the URL line says which).")
@click.option("--bind", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="Address to listen on; other than loopback needs --allow-remote.")
@lab_option
@click.option("--allow-actions", is_flag=True,
              help="Show failover/undo/failback buttons and run them (read-only without).")
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --bind: anyone who reaches it sees the lab.")
@reports_errors
def web(port: int, bind: str, lab_name: str | None, allow_actions: bool,
        allow_remote: bool) -> None:
    """Serve a live picture of the lab: states, tunnels, ARP, the journal as it grows.

    \b
    Examples:
      netlab web                      # http://127.0.0.1:8080/, read-only
      netlab web --allow-actions      # with failover/undo/failback buttons
    """
    from netlab.lab import Lab, require_root
    from netlab.state import default_lab_name

    if not is_loopback(bind) and not allow_remote:
        raise RemoteRefused(f"refusing to serve on {bind}: not a loopback address; "
                            "add --allow-remote to let other machines see the lab")
    name = default_lab_name() if lab_name is None else lab_name
    Lab(name)  # a bad lab name is refused before anything listens
    require_root()  # the page lists every namespace's interfaces, as 'netlab status' does
    sock = listen(bind, port)
    if not is_loopback(bind):
        what = "see the lab and run failover/undo/failback" if allow_actions else "see the lab"
        click.echo(f"warning: serving on {bind}: anyone who can reach it can {what}", err=True)
    host, actual = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    mode = "actions allowed" if allow_actions else "read-only"
    click.echo(f"netlab web: http://{shown}:{actual}/ (lab {name}, {mode}; Ctrl-C stops)")
    from netlab.web.app import serve

    serve(name, sock, allow_actions, remote=not is_loopback(bind))
