"""The replica state machine (docs/architecture.md#the-replica-lifecycle): pure, no root."""

from __future__ import annotations

import pytest

from netlab.errors import IllegalTransition, PreconditionFailed
from netlab.orchestrator.states import (
    RUNNING_AT_SP,
    TRANSITIONS,
    ReplicaState,
    allowed_commands,
    check_transition,
)

S = ReplicaState

LEGAL = [
    (S.NORMAL, "failover", S.FAILOVER),
    (S.FAILOVER, "undo", S.NORMAL),
    (S.FAILOVER, "permanent", S.PERMANENT),
    (S.FAILOVER, "failback", S.READY_TO_SWITCH),
    (S.READY_TO_SWITCH, "switch", S.FAILBACK),
    (S.FAILBACK, "commit", S.NORMAL),
    (S.FAILBACK, "undo-failback", S.FAILOVER),
    (S.READY_TO_SWITCH, "undo-failback", S.FAILOVER),
]

ALLOWED = {
    S.NORMAL: ["failover"],
    S.FAILOVER: ["undo", "permanent", "failback"],
    S.READY_TO_SWITCH: ["switch", "undo-failback"],
    S.FAILBACK: ["commit", "undo-failback"],
    S.PERMANENT: [],
}

ILLEGAL = [
    (state, command)
    for state in ReplicaState
    for command in TRANSITIONS
    if (state, command) not in {(s, c) for s, c, _ in LEGAL}
]


def test_table_has_exactly_the_documented_transitions() -> None:
    table = {(s, c, t) for c, (sources, t) in TRANSITIONS.items() for s in sources}
    assert table == set(LEGAL)


@pytest.mark.parametrize(("state", "command", "target"), LEGAL)
def test_legal_transition_leads_to_its_target(state, command, target) -> None:
    assert check_transition("acme/web@sp", state, command) is target


@pytest.mark.parametrize(("state", "command", "target"), LEGAL)
def test_legal_transition_accepts_the_state_as_its_display_string(state, command, target) -> None:
    assert check_transition("acme/web@sp", str(state.value), command) is target


@pytest.mark.parametrize(("state", "command"), ILLEGAL)
def test_illegal_transition_names_state_and_allowed_commands(state, command) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition("acme/web@sp", state, command)
    message = str(caught.value)
    assert "\n" not in message
    assert "acme/web@sp" in message
    assert f"'{state.value}'" in message
    assert f"'{command}'" in message
    allowed = ALLOWED[state]
    if allowed:
        assert "Allowed now: " + ", ".join(allowed) in message
    else:
        assert "Allowed now: none" in message


def test_illegal_transition_is_a_precondition_failure_with_exit_code_1() -> None:
    with pytest.raises(PreconditionFailed) as caught:
        check_transition("acme/web@sp", S.NORMAL, "undo")
    assert caught.value.exit_code == 1


def test_undo_on_normal_message() -> None:
    with pytest.raises(IllegalTransition, match=r"^acme/web@sp is 'Normal'; 'undo' needs "
                       r"'Failover'\. Allowed now: failover$"):
        check_transition("acme/web@sp", S.NORMAL, "undo")


def test_commit_on_failover_lists_every_allowed_command() -> None:
    with pytest.raises(IllegalTransition, match=r"Allowed now: undo, permanent, failback$"):
        check_transition("acme/web@sp", S.FAILOVER, "commit")


@pytest.mark.parametrize("state", list(ReplicaState))
def test_allowed_commands_per_state(state) -> None:
    assert allowed_commands(state) == ALLOWED[state]
    assert allowed_commands(state.value) == ALLOWED[state]


def test_permanent_failover_is_final() -> None:
    for command in TRANSITIONS:
        with pytest.raises(IllegalTransition, match="none \\(the replica is production now\\)"):
            check_transition("acme/web@sp", S.PERMANENT, command)


def test_unknown_state_is_rejected() -> None:
    with pytest.raises(ValueError):
        allowed_commands("Broken")


def test_replica_runs_at_the_sp_in_failover_ready_to_switch_and_permanent() -> None:
    assert {S.FAILOVER, S.READY_TO_SWITCH, S.PERMANENT} == RUNNING_AT_SP


def test_every_lifecycle_path_returns_to_normal_or_permanent() -> None:
    def walk(state, commands):
        for command in commands:
            state = check_transition("x@sp", state, command)
        return state

    assert walk(S.NORMAL, ["failover", "undo"]) is S.NORMAL
    assert walk(S.NORMAL, ["failover", "failback", "switch", "commit"]) is S.NORMAL
    assert walk(S.NORMAL, ["failover", "failback", "undo-failback", "undo"]) is S.NORMAL
    assert walk(S.NORMAL, ["failover", "failback", "switch", "undo-failback", "permanent"]) \
        is S.PERMANENT
