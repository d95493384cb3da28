"""Link conditions with `tc` (rate, delay, jitter) and nftables (loss), on one interface.

Rate is a tbf qdisc; delay and jitter need netem, which some kernels lack (this
one: no sch_netem), so `has_qdisc` asks the kernel before anything changes.
Loss is netem's where the kernel has netem; where it has not, it is an nftables
`numgen random` drop on the interface's egress, in a table of its own, which
drops each packet independently with the given probability, as netem's loss would.
"""

from __future__ import annotations

from dataclasses import dataclass

from netlab.errors import ToolFailed
from netlab.net.nft import apply_ruleset, delete_table
from netlab.run import run

LOSS_TABLE = "netlab_wan"
# the probe qdisc goes on the namespace's loopback: the real link is never touched
_PROBE_DEVICE = "lo"


@dataclass(frozen=True)
class LinkConditions:
    rate: int | None = None  # bit/s
    delay: float | None = None  # seconds
    jitter: float | None = None  # seconds
    loss: float | None = None  # percent

    @property
    def empty(self) -> bool:
        return not (self.rate or self.delay or self.jitter or self.loss)


def has_qdisc(netns: str, kind: str) -> bool:
    """Whether the kernel offers qdisc `kind`, asked by adding one to the namespace's lo."""
    args = {"netem": ["delay", "1ms"], "tbf": ["rate", "1mbit", "burst", "10kb",
                                                "latency", "50ms"]}[kind]
    added = run(["tc", "qdisc", "add", "dev", _PROBE_DEVICE, "root", kind, *args],
                netns=netns, check=False)
    if added.returncode != 0:
        return False
    run(["tc", "qdisc", "del", "dev", _PROBE_DEVICE, "root"], netns=netns, check=False)
    return True


def tbf_args(rate: int) -> list[str]:
    # burst: 20 ms at the rate (at least 16 KiB, so that one GSO burst is not
    # split into drops); queue: 100 ms at the rate, as a router's buffer would be.
    burst = max(rate // 8 // 50, 16 * 1024)
    limit = max(rate // 8 // 10, 2 * burst)
    return ["rate", f"{rate}bit", "burst", str(burst), "limit", str(limit)]


def netem_args(delay: float | None, jitter: float | None, loss: float | None = None) -> list[str]:
    args = []
    if delay or jitter:
        args += ["delay", f"{(delay or 0.0) * 1000:g}ms"]
        if jitter:
            args += [f"{jitter * 1000:g}ms"]
    if loss:
        args += ["loss", f"{loss:g}%"]
    return args


def qdisc_commands(ifname: str, cond: LinkConditions, netem: bool) -> list[list[str]]:
    """The `tc` argvs (after the root qdisc is deleted) that give `ifname` `cond`.

    With netem, it carries delay, jitter and loss, and tbf is its child (handle
    10: under 1:1, the layout of tc-netem(8)'s "rate control" example): a packet
    is held for its delay, then paced by tbf, so the rate holds whatever the delay.
    Without netem (`netem` False) only tbf is made; loss is then nftables'
    (`loss_ruleset`) and delay cannot be had (the caller refuses it).
    """
    dev = ["dev", ifname]
    shaped = netem_args(cond.delay, cond.jitter, cond.loss) if netem else []
    if shaped:
        commands = [["tc", "qdisc", "add", *dev, "root", "handle", "1:", "netem", *shaped]]
        if cond.rate:
            commands.append(["tc", "qdisc", "add", *dev, "parent", "1:1", "handle", "10:",
                             "tbf", *tbf_args(cond.rate)])
        return commands
    if cond.rate:
        return [["tc", "qdisc", "add", *dev, "root", "handle", "1:", "tbf", *tbf_args(cond.rate)]]
    return []


def apply_conditions(netns: str, ifname: str, cond: LinkConditions) -> None:
    """Make `ifname`'s egress obey `cond` exactly (what it leaves unset is cleared).

    Loss goes to netem where the kernel has it (one qdisc for delay and loss, as
    on the hosted CI), else to an nftables drop; never both at once.
    """
    netem = has_qdisc(netns, "netem")
    run(["tc", "qdisc", "del", "dev", ifname, "root"], netns=netns, check=False)
    for argv in qdisc_commands(ifname, cond, netem):
        run(argv, netns=netns)
    if cond.loss and not netem:
        apply_ruleset(netns, loss_ruleset(ifname, cond.loss), LOSS_TABLE)
    else:
        delete_table(netns, LOSS_TABLE)


def loss_ruleset(ifname: str, percent: float) -> str:
    # in hundredths of a percent, so that 0.5% is exact
    threshold = round(percent * 100)
    match = "" if threshold >= 10000 else f"numgen random mod 10000 < {threshold} "
    return (
        f"table ip {LOSS_TABLE} {{\n"
        f"  chain egress {{\n"
        f"    type filter hook postrouting priority 100; policy accept;\n"
        f'    oifname "{ifname}" {match}drop '
        f'comment "wan loss {percent:g}%"\n'
        f"  }}\n"
        f"}}\n"
    )


def link_qdiscs(netns: str, ifname: str) -> str:
    """The interface's qdiscs as the kernel has them (`tc qdisc show`), one per `; `.

    All of them, not only the root: on a netem kernel a rate is a tbf under netem.
    """
    try:
        out = run(["tc", "qdisc", "show", "dev", ifname], netns=netns).stdout
    except ToolFailed:
        return ""
    return "; ".join(" ".join(line.split()) for line in out.splitlines() if line.strip())
