"""The NETLAB_FAULT test hook: parsing, counting, and doing nothing when unset."""

from __future__ import annotations

import pytest

from netlab import faults
from netlab.state import LabDir


@pytest.fixture(autouse=True)
def _fresh_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "_seen", {})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("failover:power-on", ("failover:power-on", 1, "kill")),
        ("failover:power-on:raise", ("failover:power-on", 1, "raise")),
        ("nea-up#3", ("nea-up", 3, "kill")),
        ("failover:power-on#2:raise", ("failover:power-on", 2, "raise")),
    ],
)
def test_spec_is_parsed(spec: str, expected: tuple[str, int, str]) -> None:
    assert faults.parse(spec) == expected


@pytest.mark.parametrize("spec", ["", "x#0", "x#1:explode", "#2"])
def test_bad_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="NETLAB_FAULT"):
        faults.parse(spec)


def test_journal_raises_on_the_nth_matching_event(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(faults.ENV, "step#2:raise")
    lab_dir = LabDir("t", tmp_path)
    lab_dir.journal("other")
    lab_dir.journal("step")
    with pytest.raises(faults.InjectedFault):
        lab_dir.journal("step")
    # the event is on disk before the fault: the next command sees how far it got
    assert [e["event"] for e in lab_dir.events()] == ["other", "step", "step"]


def test_unset_hook_does_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    lab_dir = LabDir("t", tmp_path)
    for _ in range(3):
        lab_dir.journal("step")
    assert len(lab_dir.events()) == 3


def test_kill_ends_the_process_right_after_the_event_is_on_disk(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from netlab.state import LabDir; "
        "d = LabDir('t', Path(sys.argv[1])); d.journal('a'); d.journal('b'); d.journal('c')"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)],
                          env={**os.environ, faults.ENV: "b"}, check=False)
    assert done.returncode == -signal.SIGKILL
    assert [e["event"] for e in LabDir("t", tmp_path).events()] == ["a", "b"]
