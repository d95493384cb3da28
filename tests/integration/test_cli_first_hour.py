"""A new user's first hour: an internal error mid-failover, a topology of their own
(no acme anywhere), questions on a terminal, and VM commands on several VMs."""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import LabEnv, namespace_inodes, netlab_argv, pids_in

pytestmark = pytest.mark.root


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


def error_line(stderr: str) -> str:
    """The one error line of a command that also printed its steps ("  step 1 ...")."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("  ")]
    return one_line("\n".join(lines))


def replica_state(lab: LabEnv, vm: str) -> str:
    return next(v["replica_state"] for v in lab.status()["vms"] if v["name"] == vm)


def test_internal_error_in_failover_is_one_line_logged_and_rolled_back(
    lab_env: LabEnv,
) -> None:
    lab = lab_env
    lab.netlab("up")
    lab.netlab("vm", "fail", "acme/web")
    env = {**lab.env, "NETLAB_FAULT": "failover:power-on:raise"}
    for extra in ([], ["--json"]):
        done = subprocess.run([*netlab_argv(), "failover", "acme/web", *extra], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 70, (done.stdout, done.stderr)
        line = error_line(done.stderr)
        assert line.startswith("netlab: internal error in 'netlab failover': InjectedFault")
        assert "failover of acme/web rolled back" in line
        log = Path(re.search(r"the traceback is in (\S+)$", line)[1])
        assert log.parent == lab.lab_dir / "logs"
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "InjectedFault" in text
        if extra:
            assert json.loads(done.stdout) == {"error": line.removeprefix("netlab: "),
                                               "kind": "InternalError", "exit_code": 70}
        # rolled back: the replica is Normal, off, and nothing of it runs
        status = lab.status()
        replica = next(n for n in status["nodes"] if n["name"] == "acme/web@sp")
        assert replica_state(lab, "acme/web") == "Normal"
        assert replica["power"] == "off"
        assert not pids_in(namespace_inodes([replica["namespace"]]))
        assert status["neas"].get("acme/lan", {}).get("power", "off") == "off"
    # and the failover runs once the fault is gone
    lab.netlab("failover", "acme/web")
    lab.netlab("undo", "--yes", "acme/web")


def _name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(2)}"


def generated_topology(path: Path, with_nea: bool = True) -> dict[str, Any]:
    """Two tenants with random names, and their VMs with random names; no acme."""
    first, second = _name("t"), _name("u")
    vm_a, vm_b, vm_c = _name("v"), _name("w"), _name("x")
    lan: dict[str, Any] = {"subnet": "10.30.0.0/24", "gateway": "10.30.0.1"}
    if with_nea:
        lan["nea"] = {"address": "10.30.0.250", "sp_address": "10.30.0.251",
                      "sp_core_address": "10.99.0.31", "tunnel_port": 6200}
    topology = {
        "name": _name("gen"),
        "internet": {"subnet": "198.51.100.0/24"},
        "provider": {"gateway": "198.51.100.10", "core_subnet": "10.99.0.0/24",
                     "core_gateway": "10.99.0.1", "nea_listen_port": 1195},
        "tenants": {
            first: {"edge": "198.51.100.41", "replication": {"retention": 2},
                    "networks": {"office": lan},
                    "vms": {vm_a: {"network": "office", "address": "10.30.0.5"},
                            vm_b: {"network": "office", "address": "10.30.0.6"}}},
            second: {"edge": "198.51.100.42",
                     "networks": {"lan": {"subnet": "10.40.0.0/24", "gateway": "10.40.0.1"}},
                     "vms": {vm_c: {"network": "lan", "address": "10.40.0.7"}}},
        },
    }
    path.write_text(yaml.safe_dump(topology, sort_keys=False))
    return {"first": first, "vms": (vm_a, vm_b)}


def pasted(lab: LabEnv, hint_line: str, env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Run every 'netlab ...' command quoted in a hint, as the user would paste it."""
    commands = re.findall(r"'(netlab [^']*)'", hint_line)
    assert commands, hint_line
    return [subprocess.run([*netlab_argv(), *shlex.split(c)[1:]], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
            for c in commands]


def test_a_topology_of_ones_own_never_mentions_acme(lab_env: LabEnv, tmp_path: Path) -> None:
    lab = lab_env
    names = generated_topology(tmp_path / "mine.yaml")
    # the user named the lab with --lab and has no NETLAB_LAB: the hint must say --lab
    env = {k: v for k, v in lab.env.items() if k != "NETLAB_LAB"}
    up = subprocess.run([*netlab_argv(), "up", str(tmp_path / "mine.yaml"), "--lab", lab.name],
                        env=env, capture_output=True, text=True, timeout=120, check=True)
    hint = up.stdout.strip().splitlines()[-1]
    assert "acme" not in up.stdout + up.stderr and f"--lab {lab.name}" in hint
    status, curl = pasted(lab, hint, env)
    assert status.returncode == 0 and names["first"] in status.stdout
    assert curl.returncode == 0
    assert f"tenant {names['first']}, vm {names['vms'][0]}" in curl.stdout

    demo = lab.netlab("demo", input="", timeout=180)
    assert "acme" not in demo.stdout + demo.stderr
    assert f"partial failover of {names['first']}/{names['vms'][0]}" in demo.stdout
    assert "Try it yourself: 'netlab validate" in demo.stdout  # the lab is still up
    assert replica_state(lab, f"{names['first']}/{names['vms'][0]}") == "Normal"

    validate = lab.netlab("validate", check=False, timeout=180)
    assert validate.returncode != 70 and "Traceback" not in validate.stderr
    assert "acme" not in validate.stdout + validate.stderr


def test_demo_refuses_a_topology_with_nothing_to_demonstrate(
    lab_env: LabEnv, tmp_path: Path
) -> None:
    generated_topology(tmp_path / "flat.yaml", with_nea=False)
    lab_env.netlab("up", str(tmp_path / "flat.yaml"))
    done = lab_env.netlab("demo", input="", check=False)
    assert done.returncode == 1
    assert "has nothing to demonstrate: the demo needs a network with an NEA pair" in \
        one_line(done.stderr)
    assert lab_env.status()["status"] == "up"


def on_a_terminal(lab: LabEnv, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run netlab with a terminal on stdin, and type `answer` to its question."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([*netlab_argv(), *args], env=lab.env, stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.write(master, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_several_vms_questions_and_cancel(lab_env: LabEnv) -> None:
    lab = lab_env
    lab.netlab("up")
    vms = ["acme/web", "acme/db", "acme/app"]
    done = lab.netlab("vm", "fail", *vms)
    assert done.stdout.splitlines() == [f"{vm} is failed" for vm in vms]
    assert {v["name"]: v["power"] for v in lab.status()["vms"] if v["name"] in vms} == \
        dict.fromkeys(vms, "failed")
    lab.netlab("vm", "start", "acme/db", "acme/app")
    lab.netlab("failover", "acme/web")

    # permanent cannot be undone: it asks on a terminal; "n" cancels with exit 1
    done = on_a_terminal(lab, "n", "permanent", "acme/web")
    assert done.returncode == 1, done.stderr
    assert "warning: permanent cannot be undone" in done.stderr
    assert "cancelled; nothing changed" in done.stderr
    assert replica_state(lab, "acme/web") == "Failover"
    # without a terminal the warning is printed and the command goes on: not tried here
    # (it cannot be undone); undo shows it, and "y" on a terminal goes on too
    done = on_a_terminal(lab, "y", "undo", "acme/web")
    assert done.returncode == 0, done.stderr
    assert "warning: undo discards" in done.stderr and "undo: acme/web done" in done.stdout
    assert replica_state(lab, "acme/web") == "Normal"
    done = lab.netlab("vm", "start", *vms)
    assert done.stdout.splitlines()[0] == "acme/web is on"
