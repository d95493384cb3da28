"""Link conditions with `tc` (rate, delay, jitter) and nftables (loss), on one interface.

Rate is a tbf qdisc; delay and jitter need netem, which some kernels lack (this
one: no sch_netem), so `has_qdisc` asks the kernel before anything changes.
Loss is an nftables `numgen random` drop on the interface's egress, in a table
of its own: it works with or without netem, and each packet is dropped
independently with the given probability, as netem's loss would.
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


def netem_args(delay: float, jitter: float | None) -> list[str]:
    args = ["delay", f"{delay * 1000:g}ms"]
    if jitter:
        args += [f"{jitter * 1000:g}ms"]
    return args


def apply_conditions(netns: str, ifname: str, cond: LinkConditions) -> None:
    """Make `ifname`'s egress obey `cond` exactly (what it leaves unset is cleared)."""
    run(["tc", "qdisc", "del", "dev", ifname, "root"], netns=netns, check=False)
    if cond.delay or cond.jitter:
        run(["tc", "qdisc", "add", "dev", ifname, "root", "handle", "1:", "netem",
             *netem_args(cond.delay or 0.0, cond.jitter)], netns=netns)
        if cond.rate:
            run(["tc", "qdisc", "add", "dev", ifname, "parent", "1:1", "handle", "10:", "tbf",
                 *tbf_args(cond.rate)], netns=netns)
    elif cond.rate:
        run(["tc", "qdisc", "add", "dev", ifname, "root", "handle", "1:", "tbf",
             *tbf_args(cond.rate)], netns=netns)
    if cond.loss:
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


def root_qdisc(netns: str, ifname: str) -> str:
    """The first line of `tc qdisc show` for the interface (what the kernel really has)."""
    try:
        out = run(["tc", "qdisc", "show", "dev", ifname], netns=netns).stdout
    except ToolFailed:
        return ""
    return out.splitlines()[0] if out.strip() else ""
