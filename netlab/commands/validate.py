"""`netlab validate`: the topology's validate: tests plus the built-in checks of the state."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import click

from netlab.cli_common import _lab, _print_json, json_option, lab_option, reports_errors

STATUS_STYLE = {"PASS": "bold green", "FAIL": "bold red", "SKIP": "yellow"}


def render(results: list[Any], lab: str, topology_tests: int, code: int) -> None:
    """One PASS/FAIL/SKIP line per check and node, then the summary."""
    from rich.console import Console
    from rich.markup import escape

    # emoji off: a MAC such as 72:cd:.. would otherwise print as an icon
    console = Console(emoji=False, highlight=False, soft_wrap=True)
    width = max((len(r.name) for r in results), default=0)
    node_width = max((len(r.node) for r in results), default=0)
    for r in results:
        style = STATUS_STYLE[r.status]
        console.print(f"[{style}]{r.status}[/{style}]  {escape(r.name.ljust(width))}  "
                      f"{escape(r.node.ljust(node_width))}  {escape(r.message)}")
    counts = Counter(r.status for r in results)
    console.print(f"lab {lab}: {counts['PASS']} passed, {counts['FAIL']} failed, "
                  f"{counts['SKIP']} skipped ({topology_tests} topology tests and the "
                  "built-in checks)")
    failed = list(dict.fromkeys(f"'{r.name}'" for r in results if r.status == "FAIL"))
    if failed:
        console.print(f"[bold red]failed:[/bold red] {escape(', '.join(failed))}")
    elif code == 2:
        console.print("the topology has no validate: tests (exit status 2); add a "
                      "'validate:' section to it")


@click.command()
@lab_option
@json_option
@reports_errors
def validate(lab_name: str | None, as_json: bool) -> None:
    """Prove the lab works: the topology's validate: tests and the built-in checks.

    Built-in checks follow the current state: every powered-on VM reaches its
    neighbours, every replica in Failover answers at its production address
    with the tenant NEA's MAC in ARP, tenants are isolated, the cloud gateway
    forwards only tunnel ports, every powered-on tunnel is Connected.

    Exit status: 0 all passed, 1 a check failed, 2 the topology has no tests.
    """
    from netlab import verify
    from netlab.lab import require_root

    require_root()
    lab = _lab(lab_name)
    results, code = verify.validate(lab)
    topology_tests = len(lab.topology().validate_tests)
    if as_json:
        _print_json({
            "lab": lab.name,
            "passed": code == 0,
            "exit_code": code,
            "topology_tests": topology_tests,
            "summary": dict(Counter(r.status for r in results)),
            "results": [r.to_dict() for r in results],
        })
    else:
        render(results, lab.name, topology_tests, code)
    sys.exit(code)
