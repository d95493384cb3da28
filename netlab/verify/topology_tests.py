"""The topology's own `validate:` tests: a command in a node, an expectation on its result.

A test follows the VM it names: when the VM's replica has taken its place (a
cloud failover plan runs its site at the SP, the replica is production, or it
runs at the SP while the source is off), the test runs in the replica, which
is that VM now.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from netlab.plan import NodeKind
from netlab.run import Outcome, run
from netlab.topology.model import ValidateTest
from netlab.verify.base import Context, Target
from netlab.verify.results import (
    CheckResult,
    describe_expectation,
    match_expectation,
    skipped,
)
from netlab.verify.world import role_holder

TEST = "test"


def validate_test_argv(command: str | list[str]) -> list[str]:
    """A string runs through sh -c (pipes, quotes); a list runs as it is."""
    return ["sh", "-c", command] if isinstance(command, str) else list(command)


def test_targets(ctx: Context, test: ValidateTest) -> list[Target]:
    """One target per node of the test, on the node that holds that role now."""
    found = []
    for declared in test.nodes:
        node = role_holder(ctx.plan, ctx.state, ctx.plan.node(declared))
        description = test.description or describe_expectation(test.expect)
        target = Target(test.name, node.name, description, kind=TEST, job=(test, declared))
        # an NEA's namespace runs commands while the appliance is off; other nodes do not
        power = ctx.lab.node_power(ctx.state, node)
        if node.kind not in (NodeKind.TENANT_NEA, NodeKind.SP_NEA) and power != "on":
            target.result = skipped(test.name, node.name, f"not run: {node.name} is {power}")
            target.result.kind = TEST
        found.append(target)
    return found


def run_test(ctx: Context, target: Target,
             sleep: Callable[[float], None] = time.sleep) -> CheckResult:
    """Run one test on one node: retried `retry` times, `wait` s apart."""
    test, declared = target.job
    node = ctx.plan.node(target.node)
    reason: str | None = "not run"
    outcome = Outcome(-1, "")
    attempt = 0
    for attempt in range(test.retry + 1):
        if attempt:
            sleep(test.wait)
        try:
            done = run(validate_test_argv(test.command), netns=node.netns, check=False,
                       timeout=30)
            outcome = Outcome(done.returncode, done.stdout, done.stderr)
        except Exception as exc:  # a missing tool or a hung command is a failed test
            outcome = Outcome(127, "", str(exc))
        reason = match_expectation(test.expect, outcome.returncode, outcome.stdout)
        if reason is None:
            break
    details = {"attempts": attempt + 1, "exit_code": outcome.returncode,
               "output": outcome.stdout[-500:], "declared_node": declared}
    moved = "" if declared == target.node else f" (on {target.node}: {declared} runs at the SP)"
    if reason is None:
        message = (test.pass_message or describe_expectation(test.expect)) + moved
        return CheckResult(test.name, target.node, True, message, kind=TEST, details=details)
    tail = (outcome.stderr or outcome.stdout).strip().splitlines()
    why = reason + (f" ({tail[-1][:100]})" if tail else "")
    message = (f"{test.fail_message}: {why}" if test.fail_message else why) + moved
    return CheckResult(test.name, target.node, False, message, kind=TEST, details=details)
