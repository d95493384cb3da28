"""netlab.api.Lab keeps its state where it is told, without touching the caller's environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def test_state_dir_is_passed_explicitly_not_through_os_environ(netlab_lab) -> None:
    before = dict(os.environ)
    status = netlab_lab.status(tunnels=False)
    macs = netlab_lab.arping("acme/db", "192.168.10.11").macs
    assert macs == [netlab_lab.mac("acme/web")]  # the Scapy probe, in the node's namespace
    assert dict(os.environ) == before
    assert "NETLAB_STATE_DIR" not in os.environ or \
        os.environ["NETLAB_STATE_DIR"] != str(netlab_lab.state_dir)
    assert (netlab_lab.state_dir / netlab_lab.name / "state.json").exists()
    # the supervisor, started by the lab, was given the same directory
    pid = status["processes"]["supervisor"]["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"NETLAB_STATE_DIR={netlab_lab.state_dir}".encode() in environ


def test_api_validate_follows_a_failover(netlab_lab) -> None:
    netlab_lab.fail("acme/web")
    netlab_lab.failover("acme/web")
    results, code = netlab_lab.validate(tests=("replica answers at its production address",))
    assert code == 0 and [(r.node, r.status) for r in results] == [("acme/web@sp", "PASS")]
    assert results[0].details["macs"] == [netlab_lab.mac("acme/nea-lan")]
