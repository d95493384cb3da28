"""nftables through the `nft` tool, inside a namespace."""

from __future__ import annotations

from netlab.run import run


def apply_ruleset(netns: str, ruleset: str, table: str) -> None:
    """Replace table `table` in `netns` with `ruleset`, atomically (one nft transaction)."""
    # "add table" then "delete table" makes the delete succeed whether or not it existed.
    script = f"add table ip {table}\ndelete table ip {table}\n{ruleset}"
    run(["nft", "-f", "-"], netns=netns, input=script)


def delete_table(netns: str, table: str) -> None:
    run(["nft", "-f", "-"], netns=netns, input=f"add table ip {table}\ndelete table ip {table}\n")


def list_ruleset(netns: str) -> str:
    return run(["nft", "list", "ruleset"], netns=netns).stdout
