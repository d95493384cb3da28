"""`netlab demo`: a guided walkthrough of partial failover, for teaching.

Eight steps, each narrated in plain words with the real command it runs and
that command's real output. The demo drives the library (the same calls the
CLI makes), so the failover's own eight journaled steps are narrated as they
happen. It leaves the lab as it found it: brought up only if it was down (and
taken down again), the VM failed over and back, replica states unchanged.
"""

from __future__ import annotations

import re
import shlex
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import click

from netlab.cli_common import _lab, lab_flag, lab_option, reports_errors
from netlab.commands.meta import complete_vms
from netlab.errors import NetlabError

STEPS = 8
# What each journaled step of a failover means, in the words of a DR administrator.
FAILOVER_GLOSS = {
    "start": "every precondition is checked first: a failover that cannot finish "
             "changes nothing.",
    "roll-back": "the replica's disk becomes the chosen restore point, read-only, with a "
                 "fresh writable delta on top.",
    "power-on": "the replica boots in the provider's cloud network with the SAME address "
                "as the source VM.",
    "sp-nea": "the provider-side appliance answers ARP in the cloud network for every "
              "other production address: the replica finds its neighbours through the "
              "tunnel.",
    "replication-hold": "no new restore points of the source while its replica is "
                        "production.",
    "tenant-nea": "the tenant-side appliance now answers ARP for the VM's address on the "
                  "production LAN and sends gratuitous ARP, so neighbours switch to its "
                  "MAC at once.",
    "delta": "what the replica writes from now on goes to the delta: undo discards it, "
             "failback keeps it.",
    "proven": "netlab pinged the replica from a neighbour; the first reply ends the "
              "recovery time.",
}
_STEP_LINE = re.compile(r"step (\d+) ([\w-]+): (.*)")


class Narrator:
    """Prints headings, plain-words explanations, commands and their real output."""

    def __init__(self, lab_flag: list[str], pause: bool) -> None:
        self.lab_flag = lab_flag  # ["--lab", NAME] when the user named the lab
        self.pause = pause
        self.step = 0

    def heading(self, title: str) -> None:
        if self.step and self.pause:
            input("\n  [Enter] next step ")
        self.step += 1
        click.echo()
        click.secho(f"== Step {self.step}/{STEPS}: {title} ==", bold=True)

    def say(self, text: str) -> None:
        click.echo(textwrap.fill(text, width=88))

    def command(self, *words: str) -> None:
        """Show a netlab command as the user would type it."""
        click.secho("$ " + shlex.join(["netlab", *words[:2], *self.lab_flag, *words[2:]]),
                    fg="cyan")

    def output(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines():
            click.echo(f"  {line}")


def _run_in(narrator: Narrator, node: Any, argv: list[str], timeout: float = 10) -> Any:
    """`netlab exec NODE -- ARGV`, shown and run (the same nsenter as netlab exec)."""
    from netlab.run import run

    narrator.command("exec", node.name, "--", *argv)
    done = run(argv, netns=node.netns, check=False, timeout=timeout)
    narrator.output(done.stdout or done.stderr or f"(no output, exit status {done.returncode})")
    return done


def _show_arp(narrator: Narrator, observer: Any, address: str) -> str:
    """Refresh `observer`'s ARP entry for `address` with one ping, then show it; its MAC."""
    from netlab import verify

    _run_in(narrator, observer, ["ping", "-c", "1", "-W", "1", "-q", address])
    _run_in(narrator, observer, ["ip", "neigh", "show", address])
    entry = verify.neighbour_entry(observer, address)
    return entry["mac"] if entry else ""


def _whose(mac: str, expected: str, meaning: str) -> str:
    """Explain the MAC the ARP table shows, or say plainly that it is not the expected one."""
    if mac == expected:
        return f"{mac} is {meaning}."
    return (f"Unexpected: the entry shows {mac or 'no MAC'}, not {expected} ({meaning}). "
            "Run 'netlab validate' to find out why.")


def _check_start(lab: Any, vm_name: str, observer_name: str) -> tuple[Any, Any]:
    plan = lab.plan()
    state = lab.dir.read()
    vm, observer = plan.node(vm_name), plan.node(observer_name)
    if vm.kind.value != "vm" or vm.dhcp or plan.replica_of(vm.name) is None:
        raise NetlabError(f"{vm_name} is not a VM with a static address and a replica; "
                          "the demo fails one over (--vm)")
    if observer.kind.value != "vm" or (observer.tenant, observer.network) != \
            (vm.tenant, vm.network) or observer.name == vm.name:
        raise NetlabError(f"--from {observer_name}: pick another VM on {vm.tenant}/"
                          f"{vm.network} to watch from")
    replica = state.get("replicas", {}).get(vm.name, {}).get("state")
    if replica != "Normal":
        raise NetlabError(f"the replica of {vm.name} is '{replica}', not Normal: the demo "
                          f"fails it over itself (run 'netlab undo {vm.name}' first, or "
                          "use another --lab)")
    for node in (vm, observer):
        if lab.node_power(state, node) != "on":
            raise NetlabError(f"{node.name} is {lab.node_power(state, node)}; the demo "
                              f"needs it running: netlab vm start {node.name}")
    return vm, observer


def _tunnel_of(lab: Any, vm: Any) -> Any:
    tunnel = lab.plan().tunnel_for(vm.tenant or "", vm.network or "")
    if tunnel is None:
        raise NetlabError(f"{vm.tenant}/{vm.network} has no NEA pair to fail over through")
    return tunnel


def run_demo(lab: Any, vm_name: str, observer_name: str, narrator: Narrator,
             progress: Callable[[str], None]) -> None:
    from netlab import verify
    from netlab.orchestrator import operations

    n = narrator
    n.heading("the lab")
    brought_up = False
    if lab.is_up():
        n.say(f"Lab {lab.name} is already up; the demo will leave it exactly as it finds it.")
    else:
        n.say("The lab is down: bring it up (namespaces, bridges, a WireGuard-ready "
              "gateway, the tenants' VMs and one restore point of every static VM).")
        n.command("up")
        lab.up(None, progress=n.output)
        brought_up = True
    failed_over = vm_failed = False
    try:
        vm, observer = _check_start(lab, vm_name, observer_name)
        address = vm.address or ""
        tunnel = _tunnel_of(lab, vm)
        vm_mac = verify.interface_mac(vm.netns, vm.port.name)
        nea_mac = verify.interface_mac(lab.plan().nodes[tunnel.tenant_nea].netns,
                                       tunnel.tenant_lan_port)
        n.say(f"Tenant {vm.tenant} runs its VMs on {vm.tenant}/{vm.network}. {vm.name} "
              f"({address}) is replicated to the provider: its replica {vm.name}@sp sits "
              f"powered off in the provider's cloud network, same subnet, same address. "
              f"We watch everything from {observer.name}.")
        _run_in(n, observer, ["curl", "-s", "-m", "2", f"http://{address}/"])

        n.heading(f"who is {address} on the LAN?")
        n.say(f"{observer.name} sends to {address} by MAC address: its ARP table says which.")
        mac = _show_arp(n, observer, address)
        n.say(_whose(mac, vm_mac, f"the MAC of {vm.name}'s own NIC"))

        n.heading("the disaster")
        n.say(f"{vm.name} drops off the LAN (a simulated disaster): nothing answers at "
              f"{address} any more.")
        n.command("vm", "fail", vm.name)
        vm_failed = True
        n.output(f"{vm.name} is {operations.vm_power(lab, vm.name, 'fail')}")
        done = _run_in(n, observer, ["curl", "-s", "-m", "2", f"http://{address}/"])
        if done.returncode != 0:
            n.say(f"No answer: curl gave up after 2 s. Users of {vm.name} are down.")

        failed_over = True
        recovery = _failover(lab, n, vm)

        n.heading(f"the ARP entry of {address} flips to the tenant NEA")
        mac = _show_arp(n, observer, address)
        n.say(_whose(mac, nea_mac, f"the MAC of {tunnel.tenant_nea}, the tenant-side network "
                     f"extension appliance: it answers ARP for {address} and carries the "
                     "traffic through the WireGuard tunnel to the provider. "
                     f"{observer.name} changed nothing: same IP, new MAC"))

        n.heading("the replica answers")
        _run_in(n, observer, ["curl", "-s", "-m", "2", f"http://{address}/"])
        n.say(f"The same page, now served by {vm.name}@sp from its restore point. Recovery "
              f"time: {recovery or 0:.3f} s from the start of the failover command to the "
              f"first reply from the replica.")

        n.heading("undo the failover")
        n.say("Undo powers the replica off and DISCARDS everything written on it since the "
              "failover (failback would keep it). Then the source VM comes back.")
        n.command("undo", vm.name, "--yes")
        operations.undo(lab, [vm.name], say=n.output)
        failed_over = False
        n.output(f"undo: {vm.name} done")
        n.command("vm", "start", vm.name)
        n.output(f"{vm.name} is {operations.vm_power(lab, vm.name, 'start')}")
        vm_failed = False

        n.heading(f"the ARP entry of {address} flips back")
        mac = _show_arp(n, observer, address)
        n.say(_whose(mac, vm_mac, f"{vm.name}'s own MAC again: the source announced itself "
                     "with gratuitous ARP when it started"))
    finally:
        _restore(lab, n, vm_name, failed_over, vm_failed, brought_up)
    _advice(lab, n, vm_name, brought_up)


def _failover(lab: Any, n: Narrator, vm: Any) -> float | None:
    """The failover step, each journaled step glossed in plain words; the recovery time."""
    from netlab.orchestrator import operations

    n.heading(f"partial failover of {vm.name}")
    n.say(f"Only {vm.name} moves to the provider; the rest of {vm.tenant} keeps running "
          "at home. The failover runs eight journaled steps:")
    n.command("failover", vm.name)

    def narrate(line: str) -> None:
        m = _STEP_LINE.match(line)
        n.output(line)
        if m and m.group(2) in FAILOVER_GLOSS:
            n.output(f"    = {FAILOVER_GLOSS[m.group(2)]}")

    result = operations.failover(lab, [vm.name], say=narrate)
    for warning in result.warnings:
        n.output(f"warning: {warning}")
    recovery = result.recovery_seconds
    n.output(f"failover: {vm.name} done; recovery time "
             f"{recovery if recovery is not None else float('nan'):.3f} s")
    return recovery


def _advice(lab: Any, n: Narrator, vm_name: str, brought_up: bool) -> None:
    """What to try next, on the lab as the demo leaves it (down again if it was down)."""
    click.echo()
    flag = lab_flag(lab)
    if brought_up:  # the lab is down again: advise what works on a down lab
        n.say(f"Try it yourself: 'netlab up{flag}', then 'netlab vm fail{flag} {vm_name}' and "
              f"'netlab failover{flag} {vm_name}'; 'netlab validate{flag}' proves what the "
              f"demo showed, 'netlab events{flag}' lists every step with its timestamp.")
    else:
        n.say(f"Try it yourself: 'netlab validate{flag}' proves what the demo showed, "
              f"'netlab events{flag}' lists every step with its timestamp.")


def _restore(lab: Any, n: Narrator, vm_name: str, failed_over: bool, vm_failed: bool,
             brought_up: bool) -> None:
    """Leave the lab as it was found, even after an error or Ctrl-C.

    Each repair runs on its own: one that fails is reported and the next still
    runs, and the error that stopped the demo is the one the user sees.
    """
    from netlab.orchestrator import operations

    repairs: list[tuple[str, Callable[[], Any]]] = []
    # a failover that failed has rolled itself back: undo only a replica still at the SP
    if failed_over and lab.dir.read().get("replicas", {}).get(vm_name, {}).get("state") \
            == "Failover":
        repairs.append((f"undo {vm_name}",
                        lambda: operations.undo(lab, [vm_name], force=True)))
    if vm_failed:
        repairs.append((f"vm start {vm_name}",
                        lambda: operations.vm_power(lab, vm_name, "start")))
    if brought_up:
        repairs.append(("down", lab.down))
    for what, repair in repairs:
        if what == "down":
            click.echo()
            n.say("The demo brought the lab up, so it takes it down again.")
            n.command("down")
        try:
            repair()
        except Exception as exc:  # keep repairing; the user gets the original error
            click.echo(f"netlab demo: could not '{what}' while restoring the lab: {exc}",
                       err=True)
        else:
            if what == "down":
                n.output(f"lab {lab.name} is down")


def choose(lab: Any, vm_name: str | None, observer_name: str | None) -> tuple[str, str]:
    """The VM to fail over and the neighbour to watch from: given, else from the
    topology of the lab (the one `up` would use when the lab is down)."""
    from netlab.commands.hints import failover_pairs

    if lab.is_up():
        plan = lab.plan()
    else:
        from netlab.plan import build_plan
        from netlab.topology import load_topology

        plan = build_plan(lab.name, load_topology(None))
    if vm_name is not None:
        plan.node(vm_name)  # an unknown name: exit 2 with the node names
    if observer_name is not None:
        plan.node(observer_name)
    if vm_name is not None and observer_name is not None:
        return vm_name, observer_name
    pairs = [(vm, other) for vm, other in failover_pairs(plan)
             if vm_name in (None, vm.name) and observer_name in (None, other.name)]
    if not pairs:
        if not failover_pairs(plan):
            raise NetlabError(
                f"lab {lab.name} has nothing to demonstrate: the demo needs a network with an "
                "NEA pair, a replicated VM with a static address on it and a second static "
                "VM beside it; add 'nea:' and 'replication:' to a network of the topology")
        raise NetlabError(f"no VM beside {vm_name or observer_name} to pair it with: name "
                          "both with --vm and --from")
    return pairs[0][0].name, pairs[0][1].name


@click.command()
@click.option("--step", "pause", is_flag=True,
              help="Pause for Enter between steps (on a terminal; ignored without one).")
@click.option("--vm", "vm_name", default=None, metavar="TENANT/VM",
              shell_complete=complete_vms,
              help="The VM to fail over (default: the first replicated VM of a network "
                   "with an NEA pair).")
@click.option("--from", "observer_name", default=None, metavar="TENANT/VM",
              shell_complete=complete_vms,
              help="The neighbour whose ARP table is shown (default: a VM beside --vm).")
@lab_option
@reports_errors
def demo(pause: bool, vm_name: str | None, observer_name: str | None,
         lab_name: str | None) -> None:
    """A guided walkthrough of partial failover, with the real commands and outputs.

    Brings the lab up if needed, shows a neighbour's ARP table, fails a VM,
    fails it over, shows the ARP entry flipping to the tenant NEA's MAC and the
    replica answering, then undoes it all: the lab is left as it was found.
    The VM and the neighbour come from the lab's topology unless named.
    """
    lab = _lab(lab_name)
    vm_name, observer_name = choose(lab, vm_name, observer_name)
    narrator = Narrator(["--lab", lab.name] if lab_flag(lab) else [],
                        pause and sys.stdin.isatty())
    run_demo(lab, vm_name, observer_name, narrator, progress=narrator.output)
