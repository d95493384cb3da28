"""Check results, the exit status of `netlab validate`, and topology test expectations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from netlab.topology.model import Expectation

# Exit status of `netlab validate`.
EXIT_PASSED = 0  # every check that ran passed
EXIT_FAILED = 1  # a check failed
EXIT_NOTHING_TESTED = 3  # no check ran: every one was skipped, or the filters matched none


@dataclass
class CheckResult:
    """One PASS/FAIL/SKIP line: a check (or a topology test) seen from one node."""

    name: str
    node: str
    passed: bool
    message: str
    skipped: bool = False
    kind: str = "builtin"  # "test": from the topology's validate: section
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else ("PASS" if self.passed else "FAIL")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"status": self.status}


def passed(name: str, node: str, message: str, **details: Any) -> CheckResult:
    return CheckResult(name, node, True, message, details=details)


def failed(name: str, node: str, message: str, **details: Any) -> CheckResult:
    return CheckResult(name, node, False, message, details=details)


def skipped(name: str, node: str, message: str) -> CheckResult:
    """Nothing to test here in this state: neither a pass nor a failure."""
    return CheckResult(name, node, True, message, skipped=True)


def exit_code(results: Sequence[CheckResult]) -> int:
    """EXIT_FAILED when a check failed, EXIT_NOTHING_TESTED when none ran, else EXIT_PASSED."""
    if any(r.status == "FAIL" for r in results):
        return EXIT_FAILED
    if not any(r.status == "PASS" for r in results):
        return EXIT_NOTHING_TESTED
    return EXIT_PASSED


def match_expectation(expect: Expectation, exit_status: int, output: str) -> str | None:
    """None when the run meets `expect`, else the reason it does not, in plain words."""
    if expect.exit_code is not None and exit_status != expect.exit_code:
        return f"exit status {exit_status}, expected {expect.exit_code}"
    if expect.contains is not None and expect.contains not in output:
        return f"output does not contain {expect.contains!r}"
    if expect.not_contains is not None and expect.not_contains in output:
        return f"output contains {expect.not_contains!r}"
    return None


def describe_expectation(expect: Expectation) -> str:
    parts = []
    if expect.exit_code is not None:
        parts.append(f"exit status {expect.exit_code}")
    if expect.contains is not None:
        parts.append(f"output contains {expect.contains!r}")
    if expect.not_contains is not None:
        parts.append(f"output lacks {expect.not_contains!r}")
    return ", ".join(parts) or "it runs"
