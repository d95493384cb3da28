"""`netlab validate`: the topology's validate: tests plus the built-in checks of the state."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import click

from netlab.cli_common import _lab, _print_json, json_option, lab_option, reports_errors

STATUS_STYLE = {"PASS": "bold green", "FAIL": "bold red", "SKIP": "yellow"}


def _console() -> Any:
    from rich.console import Console

    # emoji off: a MAC such as 72:cd:.. would otherwise print as an icon
    return Console(emoji=False, highlight=False, soft_wrap=True)


def _line(console: Any, status: str, name: str, node: str, message: str,
          widths: tuple[int, int]) -> None:
    from rich.markup import escape

    style = STATUS_STYLE.get(status, "bold")
    console.print(f"[{style}]{status}[/{style}]  {escape(name.ljust(widths[0]))}  "
                  f"{escape(node.ljust(widths[1]))}  {escape(message)}")
    # one line as soon as its check ends, in a pipe too (block-buffered otherwise)
    console.file.flush()


def _summary(console: Any, results: list[Any], lab: str, code: int) -> None:
    from rich.markup import escape

    from netlab.verify import EXIT_NOTHING_TESTED

    counts = Counter(r.status for r in results)
    tests = sum(1 for r in results if r.kind == "test")
    console.print(f"lab {lab}: {counts['PASS']} passed, {counts['FAIL']} failed, "
                  f"{counts['SKIP']} skipped ({tests} topology test results and "
                  f"{len(results) - tests} built-in)")
    failed = list(dict.fromkeys(f"'{r.name}'" for r in results if r.status == "FAIL"))
    if failed:
        console.print(f"[bold red]failed:[/bold red] {escape(', '.join(failed))}")
    elif code == EXIT_NOTHING_TESTED:
        console.print(f"nothing was tested in this state (exit status {code})")


@click.command()
@click.option("--list", "list_only", is_flag=True,
              help="List the checks the current state calls for, without running them.")
@click.option("--test", "tests", multiple=True, metavar="NAME",
              help="Run only this check or topology test (repeatable).")
@click.option("--node", "nodes", multiple=True, metavar="NODE",
              help="Run only the checks seen from this node (repeatable).")
@lab_option
@json_option
@reports_errors
def validate(list_only: bool, tests: tuple[str, ...], nodes: tuple[str, ...],
             lab_name: str | None, as_json: bool) -> None:
    """Prove the lab works: the topology's validate: tests and the built-in checks.

    The checks follow the current state: every powered-on VM and replica
    reaches its neighbours and gateway; a replica in partial failover answers
    at its production address with the tenant NEA's MAC in ARP (two MACs: an
    IP conflict); during a cloud failover plan, each replica answers on the
    cloud network with the SP NEA as its gateway, and published services
    answer from the internet; tenants are isolated; the cloud gateway forwards
    only tunnel ports; every NEA pair that carries traffic is Connected. A
    topology test follows its VM to the replica that took its place. Lines
    print as checks finish.

    \b
    Exit status: 0 every check that ran passed, 1 a check failed,
    2 an unknown check or node name, 3 nothing to test (all skipped).
    """
    from netlab import verify
    from netlab.lab import require_root

    require_root()
    lab = _lab(lab_name)
    ctx = verify.Context.of(lab)
    selected = verify.select(ctx, tests, nodes)
    if list_only:
        _list(selected, lab.name, as_json)
        return
    if as_json:
        results = list(verify.run_targets(ctx, selected))
        code = verify.exit_code(results)
        _print_json({
            "lab": lab.name, "passed": code == verify.EXIT_PASSED, "exit_code": code,
            "topology_tests": len(ctx.plan.topology.validate_tests),
            "summary": dict(Counter(r.status for r in results)),
            "results": [r.to_dict() for r in results],
        })
        sys.exit(code)
    console = _console()
    widths = (max((len(t.name) for _, t in selected), default=0),
              max((len(t.node) for _, t in selected), default=0))
    results = []
    for r in verify.run_targets(ctx, selected):
        results.append(r)
        _line(console, r.status, r.name, r.node, r.message, widths)
    code = verify.exit_code(results)
    _summary(console, results, lab.name, code)
    sys.exit(code)


def _list(selected: list[Any], lab: str, as_json: bool) -> None:
    rows = [{"name": t.name, "node": t.node, "kind": t.kind, "description": t.description,
             "decided": t.result.to_dict() if t.result else None} for _, t in selected]
    if as_json:
        _print_json({"lab": lab, "checks": rows})
        return
    console = _console()
    widths = (max((len(r["name"]) for r in rows), default=0),
              max((len(r["node"]) for r in rows), default=0))
    for row in rows:
        what = row["description"]
        if row["decided"]:
            what = f"{row['decided']['status']} without probing: {row['decided']['message']}"
        _line(console, "test " if row["kind"] == "test" else "check", row["name"],
              row["node"], what, widths)
