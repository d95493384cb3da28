"""nftables through the `nft` tool, inside a namespace."""

from __future__ import annotations

import subprocess

from netlab.errors import ToolFailed
from netlab.run import in_netns, require_tool, run


def apply_ruleset(netns: str, ruleset: str, table: str) -> None:
    """Replace table `table` in `netns` with `ruleset`, atomically (one nft transaction)."""
    # "add table" then "delete table" makes the delete succeed whether or not it existed.
    script = f"add table ip {table}\ndelete table ip {table}\n{ruleset}"
    run(["nft", "-f", "-"], netns=netns, input=script)


def apply_rulesets(rulesets: dict[str, str], table: str) -> None:
    """apply_ruleset in many namespaces at once: one nft process each, run side by side."""
    nft = require_tool("nft")
    running = []
    for netns, ruleset in rulesets.items():
        script = f"add table ip {table}\ndelete table ip {table}\n{ruleset}"
        proc = subprocess.Popen(
            in_netns(netns, [nft, "-f", "-"]), stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        running.append((netns, proc, script))
    errors = []
    for netns, proc, script in running:
        _, err = proc.communicate(script, timeout=30)
        if proc.returncode != 0:
            errors.append(f"nft in {netns}: {err.strip().splitlines()[-1] if err else 'failed'}")
    if errors:
        raise ToolFailed("; ".join(errors))


def delete_table(netns: str, table: str) -> None:
    run(["nft", "-f", "-"], netns=netns, input=f"add table ip {table}\ndelete table ip {table}\n")


def list_ruleset(netns: str) -> str:
    return run(["nft", "list", "ruleset"], netns=netns).stdout
