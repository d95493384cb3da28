"""`netlab graph`: the lab as Graphviz DOT, SVG or PNG, or as a text tree for a terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from netlab.cli_common import lab_option, reports_errors, runs_without_root
from netlab.errors import NetlabError, UnknownLab

FORMATS = ("dot", "svg", "png")


def _plan_and_state(lab_name: str | None, topology: str | None) -> tuple[Any, dict | None]:
    """The plan and state of a running lab, or (with --topology) a plan and no state."""
    from netlab.cli_common import lab_name_in_use
    from netlab.plan import build_plan
    from netlab.topology import load_topology

    name = lab_name_in_use(lab_name)
    if topology is not None:
        # "default" is the topology that ships with netlab, unless a file has that name
        path = None if topology == "default" and not Path(topology).exists() else topology
        return build_plan(name, load_topology(path)), None
    from netlab.cli_common import _lab
    from netlab.lab import require_root

    require_root()
    lab = _lab(lab_name)
    if not lab.is_up():
        raise UnknownLab(
            f"lab {lab.name} is not up; bring it up, or draw a topology without a lab: "
            "'netlab graph --topology default' (or --topology FILE)"
        )
    return lab.plan(), lab.dir.read()


def render(dot_text: str, fmt: str) -> bytes:
    """DOT text through Graphviz `dot` into SVG or PNG bytes."""
    import shutil

    from netlab.errors import ToolMissing
    from netlab.run import PACKAGE_OF, run_bytes

    dot = shutil.which("dot")
    if dot is None:  # only setup.sh's --with-graphviz installs it, so name that
        raise ToolMissing(f"svg and png need Graphviz's 'dot', which is not installed: run "
                          f"'scripts/setup.sh --with-graphviz' (or 'apt-get install -y "
                          f"{PACKAGE_OF['dot']}'); 'netlab graph' without -o/--format "
                          "writes DOT, and --ascii needs nothing")
    code, out, err = run_bytes([dot, f"-T{fmt}"], dot_text.encode())
    if code != 0:
        raise NetlabError(f"dot ({PACKAGE_OF['dot']}) failed: {err.strip() or f'exit {code}'}")
    return out


@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: from -o's extension, else dot). "
                   "svg and png need Graphviz ('dot').")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write to FILE instead of stdout.")
@click.option("--ascii", "as_ascii", is_flag=True, help="A text tree per site, for a terminal.")
@click.option("--topology", default=None, metavar="FILE",
              help="Draw a topology file ('default': the built-in lab) without a running lab.")
@lab_option
@reports_errors
@runs_without_root  # a topology file is drawn by anyone; a running lab needs root
def graph(fmt: str | None, output: str | None, as_ascii: bool, topology: str | None,
          lab_name: str | None) -> None:
    """The lab as a picture: sites as clusters, VMs coloured by replica state, the tunnels.

    \b
    Examples:
      netlab graph | dot -Tsvg > lab.svg
      netlab graph -o lab.png
      netlab graph --ascii
      netlab graph --topology default -o default-lab.svg
    """
    from netlab import graph as drawing

    plan, state = _plan_and_state(lab_name, topology)
    if as_ascii:
        if fmt is not None:
            raise NetlabError("--ascii and --format exclude each other")
        data = drawing.to_ascii(plan, state).encode()
    else:
        if fmt is None:
            suffix = Path(output).suffix.lstrip(".").lower() if output else ""
            fmt = suffix if suffix in FORMATS else "dot"
        dot_text = drawing.to_dot(plan, state)
        data = dot_text.encode() if fmt == "dot" else render(dot_text, fmt)
    if output is not None:
        Path(output).write_bytes(data)
        click.echo(f"wrote {output} ({len(data)} bytes)", err=True)
        return
    if fmt == "png" and sys.stdout.isatty():
        raise NetlabError("PNG is binary: write it to a file with -o FILE, or pipe it")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
