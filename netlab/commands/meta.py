"""`netlab version`, `netlab labs`, `netlab completion SHELL`, and the name completers.

The completers read the lab in use (--lab before or after the command, else
$NETLAB_LAB, else 'demo'); when it is not up, or the user may not read its
state, they complete nothing rather than fail.
"""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

import click

from netlab.cli_common import (
    _print_json,
    json_option,
    lab_name_in_use,
    reports_errors,
    runs_without_root,
)

SHELLS = ("bash", "zsh", "fish")


def _plan_for_completion(ctx: click.Context) -> Any:
    from netlab.lab import Lab

    name = ctx.params.get("lab_name") or lab_name_in_use()
    return Lab(name).plan()


def _names(ctx: click.Context, incomplete: str, pick: Any) -> list[str]:
    try:
        names = pick(_plan_for_completion(ctx))
    except Exception:  # completion must never print an error
        return []
    return sorted(n for n in dict.fromkeys(names) if n.startswith(incomplete))


def complete_nodes(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[str]:
    return _names(ctx, incomplete, lambda plan: plan.nodes)


def complete_vms(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[str]:
    return _names(ctx, incomplete, lambda plan: [vm.name for vm in plan.vms()])


def complete_tenants(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[str]:
    return _names(ctx, incomplete,
                  lambda plan: [n.tenant for n in plan.nodes.values() if n.tenant])


def complete_networks(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[str]:
    return _names(ctx, incomplete,
                  lambda plan: [*plan.tunnels, *(t.tenant for t in plan.tunnels.values())])


@click.command()
@json_option
@reports_errors
@runs_without_root
def version(as_json: bool) -> None:
    """Print netlab's version."""
    number = package_version("netlab-dr")
    if as_json:
        _print_json({"version": number})
    else:
        click.echo(f"netlab {number}")


@click.command()
@json_option
@reports_errors
def labs(as_json: bool) -> None:
    """Every lab on this machine: name, topology and status."""
    from netlab.lab import Lab
    from netlab.state import state_root

    rows = []
    root = state_root()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            lab = Lab(path.name)
        except Exception:  # a stray directory is not a lab
            continue
        state = lab.dir.read()
        topology = "-"
        try:
            topo = lab.topology()
            count = len(topo.tenants)
            topology = (f"{topo.name} ({count} tenant{'' if count == 1 else 's'}: "
                        f"{', '.join(topo.tenants)})")
        except Exception:  # a lab left half made still gets listed
            pass
        rows.append({"lab": lab.name, "status": state.get("status", "unknown"),
                     "topology": topology, "state_dir": str(lab.dir.root)})
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo(f"no labs on this machine (state root {root})")
        return
    width = max(len(r["lab"]) for r in rows)
    click.echo(f"{'LAB':<{width}}  {'STATUS':<12}  TOPOLOGY")
    for r in rows:
        click.echo(f"{r['lab']:<{width}}  {r['status']:<12}  {r['topology']}")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@reports_errors
@runs_without_root
def completion(shell: str) -> None:
    """Print the shell completion script (bash, zsh or fish); see the README.

    \b
    bash: eval "$(netlab completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(netlab completion zsh)"    (in ~/.zshrc)
    fish: netlab completion fish > ~/.config/fish/completions/netlab.fish
    """
    from click.shell_completion import get_completion_class

    main = click.get_current_context().find_root().command
    cls = get_completion_class(shell)
    assert cls is not None  # SHELLS are click's own
    click.echo(cls(main, {}, "netlab", "_NETLAB_COMPLETE").source())
