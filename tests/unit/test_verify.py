"""netlab.verify without root: parsing tool output, test expectations, exit status, probes."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from netlab import verify
from netlab.plan import build_plan
from netlab.topology import parse_topology
from netlab.topology.loader import default_topology_text
from netlab.topology.model import Expectation, ValidateTest
from netlab.verify import CheckResult

ONE_REPLY = """\
ARPING 192.168.10.11 from 192.168.10.12 t1-v9
Unicast reply from 192.168.10.11 [9A:E0:DB:22:F6:1B]  1.092ms
Unicast reply from 192.168.10.11 [9A:E0:DB:22:F6:1B]  1.269ms
Sent 2 probes (2 broadcast(s))
Received 2 response(s)
"""
CONFLICT = """\
ARPING 192.168.10.11 from 192.168.10.12 t1-v9
Unicast reply from 192.168.10.11 [72:B4:28:4D:CC:B3]  0.552ms
Unicast reply from 192.168.10.11 [9A:E0:DB:22:F6:1B]  0.981ms
Sent 1 probes (1 broadcast(s))
Received 2 response(s)
"""
NO_REPLY = """\
ARPING 192.168.10.20 from 192.168.10.12 t1-v9
Sent 2 probes (2 broadcast(s))
Received 0 response(s)
"""


def test_arping_reply_macs_are_lowercase() -> None:
    assert verify.parse_arping(ONE_REPLY) == {"9a:e0:db:22:f6:1b"}


def test_arping_two_macs_for_one_address_is_a_conflict() -> None:
    assert verify.parse_arping(CONFLICT) == {"72:b4:28:4d:cc:b3", "9a:e0:db:22:f6:1b"}


def test_arping_without_reply_gives_no_mac() -> None:
    assert verify.parse_arping(NO_REPLY) == set()
    assert verify.parse_arping("arping: invalid argument: '0.2'\n") == set()


@pytest.mark.parametrize(("output", "received"), [
    ("1 packets transmitted, 1 received, 0% packet loss, time 0ms", 1),
    ("2 packets transmitted, 0 received, 100% packet loss, time 1001ms", 0),
    ("3 packets transmitted, 2 received, +1 errors, 33% packet loss", 2),
    ("ping: connect: Network is unreachable", 0),
])
def test_ping_summary_counts_replies(output: str, received: int) -> None:
    assert verify.parse_ping_received(output) == received


def test_neighbour_entry_with_and_without_mac() -> None:
    assert verify.parse_neighbour("192.168.10.11 dev t1-v9 lladdr 9A:E0:DB:22:F6:1B DELAY \n") \
        == {"address": "192.168.10.11", "mac": "9a:e0:db:22:f6:1b", "state": "DELAY"}
    assert verify.parse_neighbour("192.168.10.11 dev t1-v9 FAILED\n") == \
        {"address": "192.168.10.11", "mac": "", "state": "FAILED"}
    assert verify.parse_neighbour("") is None


# ----- expectations of validate: tests --------------------------------------------------


def test_expectation_default_is_exit_status_zero() -> None:
    assert verify.match_expectation(Expectation(), 0, "") is None
    assert verify.match_expectation(Expectation(), 1, "") == "exit status 1, expected 0"


def test_expectation_on_output() -> None:
    expect = Expectation(contains="tenant acme", not_contains="tenant globex")
    assert verify.match_expectation(expect, 0, "<p>tenant acme, vm web</p>") is None
    assert "does not contain 'tenant acme'" in verify.match_expectation(expect, 0, "nothing")
    assert "contains 'tenant globex'" in verify.match_expectation(
        expect, 0, "tenant acme and tenant globex")


def test_expectation_without_exit_status_accepts_any() -> None:
    expect = Expectation(exit_code=None, contains="x")
    assert verify.match_expectation(expect, 7, "x") is None


def test_expected_failure_passes_only_on_that_status() -> None:
    expect = Expectation(exit_code=1)
    assert verify.match_expectation(expect, 1, "") is None
    assert verify.match_expectation(expect, 0, "") == "exit status 0, expected 1"


def test_string_commands_run_through_a_shell_lists_as_they_are() -> None:
    assert verify.validate_test_argv("ip a | grep x") == ["sh", "-c", "ip a | grep x"]
    assert verify.validate_test_argv(["ping", "-c", "1", "x"]) == ["ping", "-c", "1", "x"]


# ----- exit status -----------------------------------------------------------------------


def _r(passed: bool, skipped: bool = False) -> CheckResult:
    return CheckResult("check", "acme/db", passed, "", skipped=skipped)


def test_exit_status_zero_when_everything_passed() -> None:
    assert verify.exit_code([_r(True), _r(True, skipped=True)], topology_tests=3) == 0


def test_exit_status_one_on_any_failure() -> None:
    assert verify.exit_code([_r(True), _r(False)], topology_tests=3) == 1
    # a failure wins over "no tests"
    assert verify.exit_code([_r(False)], topology_tests=0) == 1


def test_exit_status_two_when_the_topology_has_no_tests() -> None:
    assert verify.exit_code([_r(True)], topology_tests=0) == 2
    assert verify.exit_code([], topology_tests=0) == 2


# ----- running a topology test (tools faked) ------------------------------------------------


class FakeLab:
    """What run_validate_test needs of a Lab: the plan and node power."""

    def __init__(self, powers: dict[str, str] | None = None) -> None:
        self._plan = build_plan("t1", parse_topology(default_topology_text(), source="default"))
        self.powers = powers or {}

    def plan(self) -> Any:
        return self._plan

    def node_power(self, state: dict, node: Any) -> str:
        return self.powers.get(node.name, "on")


def _fake_runs(monkeypatch: pytest.MonkeyPatch, outcomes: list[tuple[int, str]]) -> list[list]:
    calls: list[list] = []

    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append([kw.get("netns"), *argv])
        code, out = outcomes[min(len(calls), len(outcomes)) - 1]
        return subprocess.CompletedProcess(argv, code, out, "")

    monkeypatch.setattr(verify, "run", fake_run)
    return calls


def test_topology_test_retries_until_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_runs(monkeypatch, [(28, ""), (0, "<p>tenant acme, vm web</p>")])
    slept: list[float] = []
    test = ValidateTest(name="web", nodes=["acme/db"], command="curl -s http://192.168.10.11/",
                        expect=Expectation(contains="tenant acme"), retry=2, wait=0.5,
                        pass_message="acme's page")
    [result] = verify.run_validate_test(FakeLab(), test, {}, sleep=slept.append)  # type: ignore[arg-type]
    assert result.passed and result.message == "acme's page" and result.kind == "test"
    assert result.details["attempts"] == 2 and slept == [0.5]
    assert calls[0][0] == "t1-acme.db" and calls[0][1:3] == ["sh", "-c"]


def test_topology_test_fails_with_its_message_and_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_runs(monkeypatch, [(0, "tenant globex")])
    test = ValidateTest(name="web", nodes=["acme/db", "acme/app"], command=["curl", "x"],
                        expect=Expectation(contains="tenant acme"), retry=1, wait=0,
                        fail_message="no page")
    results = verify.run_validate_test(FakeLab(), test, {}, sleep=lambda _: None)  # type: ignore[arg-type]
    assert [r.node for r in results] == ["acme/db", "acme/app"]
    assert all(not r.passed and r.details["attempts"] == 2 for r in results)
    assert results[0].message.startswith("no page: output does not contain 'tenant acme'")


def test_topology_test_on_a_powered_off_vm_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_runs(monkeypatch, [(0, "")])
    test = ValidateTest(name="t", nodes=["acme/web"], command="true")
    [result] = verify.run_validate_test(FakeLab({"acme/web": "failed"}), test, {})  # type: ignore[arg-type]
    assert result.skipped and result.status == "SKIP" and "failed" in result.message
    assert calls == []


# ----- gateway probes ------------------------------------------------------------------------


def test_gateway_probes_expect_only_each_tenants_tunnel_port_forwarded() -> None:
    plan = FakeLab().plan()
    probes = verify.gateway_probes(plan)
    forwarded = {(p.edge, p.proto, p.port) for p in probes if p.tunnel}
    assert forwarded == {("acme/edge", "udp", 6180), ("globex/edge", "udp", 6181)}
    refused = {(p.proto, p.port) for p in probes if p.tunnel is None}
    assert ("udp", 1195) in refused and ("tcp", 6180) in refused  # TCP on a tunnel port too
    assert not refused & {("udp", 6180), ("udp", 6181)}
    assert len({p.sport for p in probes}) == len(probes)  # one counter rule per probe


def test_counter_table_counts_before_the_gateway_filters_and_after() -> None:
    plan = FakeLab().plan()
    text = verify._counter_table("netlab_verify_1", verify.gateway_probes(plan))
    assert text.startswith("table ip netlab_verify_1 {")
    assert "hook prerouting priority -350" in text and "hook forward priority 100" in text
    assert 'comment "in0"' in text and 'comment "fw0"' in text
