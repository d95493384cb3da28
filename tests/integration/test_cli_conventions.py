"""One set of CLI conventions, run against every command (README, "Conventions").

The table below runs each command with an unknown name on a lab that is up, on a
lab that is not up, as a non-root user, and with --json. Each run must end with
its documented exit code and ONE line on stderr ("netlab: ..."), never a
traceback; under --json the error is also one JSON object on stdout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    LabEnv,
    cleanup_and_check,
    netlab_argv,
    new_lab_name,
    skip_unless_root,
)

pytestmark = pytest.mark.root

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# (arguments with an unknown name, text the one line must hold, takes --json)
UNKNOWN_NAMES: list[tuple[list[str], str, bool]] = [
    (["status", "nosuch/vm"], "unknown node 'nosuch/vm'", True),
    (["exec", "nosuch/vm", "--", "true"], "unknown node 'nosuch/vm'", False),
    (["capture", "nosuch/vm", "-c", "1"], "unknown node or segment 'nosuch/vm'", False),
    (["nea", "up", "nosuch"], "no NEA pair 'nosuch'", True),
    (["nea", "down", "nosuch"], "no NEA pair 'nosuch'", True),
    (["reconnect", "nosuch"], "unknown tenant 'nosuch'", True),
    (["failover", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["undo", "--yes", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["permanent", "--yes", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["failback", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["switch", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["commit", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["undo-failback", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["replicate", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["restore-points", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["vm", "start", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["vm", "stop", "acme/web", "nosuch/vm"], "unknown VM 'nosuch/vm'", True),
    (["vm", "fail", "nosuch/vm", "acme/nosuch"], "unknown VM 'nosuch/vm', 'acme/nosuch'",
     True),
    (["plan", "start", "nosuch"], "unknown tenant 'nosuch'", True),
    (["plan", "test", "nosuch"], "unknown tenant 'nosuch'", True),
    (["plan", "undo", "--yes", "nosuch"], "unknown tenant 'nosuch'", True),
    (["plan", "retry", "nosuch"], "unknown tenant 'nosuch'", True),
    (["plan", "status", "nosuch"], "unknown tenant 'nosuch'", True),
    (["demo", "--vm", "nosuch/vm"], "unknown node 'nosuch/vm'", False),
    (["status", "--lab", "nosuch"], "lab nosuch is not up", True),
]

# every command on a lab that is not up: (arguments, exit code, text, takes --json)
NOT_UP: list[tuple[list[str], int, str, bool]] = [
    *[(args, 2, "is not up", takes_json) for args, _, takes_json in UNKNOWN_NAMES
      if args[0] not in ("demo", "capture") and "--lab" not in args],
    (["capture", "acme/db", "-c", "1"], 2, "is not up", False),
    (["events"], 2, "is not up", True),
    (["graph"], 2, "is not up", False),
    (["validate"], 2, "is not up", True),
    (["down"], 0, "is not up (nothing to take down)", True),
]

ROOT_FREE = {"version", "completion"}  # and graph --topology: no lab, no root


def run(lab: LabEnv, *args: str, as_user: list[str] | None = None,
        stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(as_user or []), *netlab_argv(), *args], env=lab.env,
                          capture_output=True, text=True, timeout=120, input=stdin,
                          check=False)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


def assert_error(done: subprocess.CompletedProcess[str], code: int, text: str,
                 as_json: bool) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    if code == 0:  # an idempotent no-op: one line that says so, on stdout
        body = json.loads(done.stdout)["message"] if as_json else one_line(done.stdout)
        assert text in body
        return
    line = one_line(done.stderr)
    assert line.startswith("netlab: ") and text in line, line
    if as_json:
        error = json.loads(done.stdout)
        assert error["exit_code"] == code and text in error["error"], error
    else:
        assert done.stdout == ""


@pytest.fixture(scope="module")
def up_lab() -> Iterator[LabEnv]:
    """One default lab for the read-only rows (short state path: AF_UNIX limit)."""
    skip_unless_root()
    base = Path(tempfile.mkdtemp(prefix="nlc"))
    lab = LabEnv(new_lab_name(), base / "state")
    try:
        lab.netlab("up")
        yield lab
    finally:
        cleanup_and_check(lab)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def down_lab(tmp_path: Path) -> LabEnv:
    skip_unless_root()
    return LabEnv(new_lab_name(), tmp_path / "state")


@pytest.mark.parametrize(("args", "text", "takes_json"), UNKNOWN_NAMES,
                         ids=[" ".join(r[0]) for r in UNKNOWN_NAMES])
def test_unknown_name_exits_2(up_lab: LabEnv, args: list[str], text: str,
                              takes_json: bool) -> None:
    state = up_lab.lab_dir / "state.json"
    before = state.read_text()
    assert_error(run(up_lab, *args), 2, text, False)
    if takes_json:
        assert_error(run(up_lab, *args, "--json"), 2, text, True)
    assert state.read_text() == before  # refused before anything changed


@pytest.mark.parametrize(("args", "code", "text", "takes_json"), NOT_UP,
                         ids=[" ".join(r[0]) for r in NOT_UP])
def test_lab_not_up(down_lab: LabEnv, args: list[str], code: int, text: str,
                    takes_json: bool) -> None:
    assert_error(run(down_lab, *args), code, text, False)
    if takes_json:
        assert_error(run(down_lab, *args, "--json"), code, text, True)
    assert not down_lab.lab_dir.exists()


ALL_COMMANDS = [*[row[0] for row in UNKNOWN_NAMES if "--lab" not in row[0]],
                ["up"], ["down"], ["cleanup"], ["status"], ["events"], ["labs"],
                ["graph"], ["validate"], ["demo"]]


@pytest.mark.parametrize("args", ALL_COMMANDS, ids=[" ".join(a) for a in ALL_COMMANDS])
def test_non_root_gets_one_line(down_lab: LabEnv, args: list[str]) -> None:
    done = run(down_lab, *args, as_user=NOBODY)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "must run as root" in one_line(done.stderr)
    assert not down_lab.lab_dir.exists()


def test_non_root_json_and_root_free_commands(down_lab: LabEnv) -> None:
    done = run(down_lab, "status", "--json", as_user=NOBODY)
    assert done.returncode == 1 and "must run as root" in json.loads(done.stdout)["error"]
    version = run(down_lab, "version", as_user=NOBODY)
    assert version.returncode == 0 and version.stdout.startswith("netlab ")
    script = run(down_lab, "completion", "bash", as_user=NOBODY)
    assert script.returncode == 0 and "_NETLAB_COMPLETE" in script.stdout
    drawn = run(down_lab, "graph", "--topology", "default", as_user=NOBODY)
    assert drawn.returncode == 0 and "digraph" in drawn.stdout


def test_lab_before_or_after_the_command(up_lab: LabEnv) -> None:
    env = {k: v for k, v in up_lab.env.items() if k != "NETLAB_LAB"}
    argv = netlab_argv()
    before = subprocess.run([*argv, "--lab", up_lab.name, "status", "--json"], env=env,
                            capture_output=True, text=True, check=True)
    after = subprocess.run([*argv, "status", "--json", "--lab", up_lab.name], env=env,
                           capture_output=True, text=True, check=True)
    assert json.loads(before.stdout)["lab"] == json.loads(after.stdout)["lab"] == up_lab.name
    clash = subprocess.run([*argv, "--lab", up_lab.name, "status", "--lab", "other"],
                           env=env, capture_output=True, text=True, check=False)
    assert clash.returncode == 2 and "--lab given twice" in clash.stderr


def test_labs_version_and_completion(up_lab: LabEnv) -> None:
    listed = json.loads(up_lab.netlab("labs", "--json").stdout)
    assert {"lab": up_lab.name, "status": "up"}.items() <= listed[0].items()
    assert "default (2 tenants: acme, globex)" in up_lab.netlab("labs").stdout
    assert json.loads(up_lab.netlab("version", "--json").stdout)["version"]
    # what bash asks click for when the user types "netlab exec acme/w<TAB>"
    env = {**up_lab.env, "_NETLAB_COMPLETE": "bash_complete", "COMP_WORDS": "netlab exec acme/w",
           "COMP_CWORD": "2"}
    done = subprocess.run(netlab_argv(), env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["plain,acme/web", "plain,acme/web@sp"]
    env.update(COMP_WORDS="netlab vm fail globex/", COMP_CWORD="3")
    done = subprocess.run(netlab_argv(), env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["plain,globex/erp", "plain,globex/web"]
    env.update(COMP_WORDS="netlab plan status ", COMP_CWORD="3")
    done = subprocess.run(netlab_argv(), env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["plain,acme", "plain,globex"]


def test_exec_runs_with_the_nodes_hostname(up_lab: LabEnv) -> None:
    host = subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout
    assert up_lab.lab_exec("acme/db", "hostname").stdout.strip() == "acme-db"
    assert up_lab.lab_exec("acme/web@sp", "hostname").stdout.strip() == "acme-web-sp"
    # a UTS namespace of its own: the machine's hostname is untouched
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout == host


def test_status_fits_80_columns(up_lab: LabEnv) -> None:
    env = {**up_lab.env, "COLUMNS": "80"}
    text = subprocess.run([*netlab_argv(), "status"], env=env, capture_output=True,
                          text=True, check=True).stdout
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for vm in up_lab.status()["vms"]:
        assert vm["address"] in text  # whole, never "192.168.10.…"
    assert "…" not in text and up_lab.netns("acme.web") not in text
    wide = subprocess.run([*netlab_argv(), "status", "--wide"], env=env,
                          capture_output=True, text=True, check=True).stdout
    assert up_lab.netns("acme.web") in wide
    one = up_lab.netlab("status", "acme/web").stdout
    web = next(n for n in up_lab.status()["nodes"] if n["name"] == "acme/web")
    assert web["interfaces"][0]["mac"] in one and "acme/web@sp, Normal" in one


def test_restore_points_and_events_formats(up_lab: LabEnv) -> None:
    listing = up_lab.netlab("restore-points", "acme/web").stdout.splitlines()
    assert listing[0].split() == ["ID", "CREATED", "SIZE", "FILES"]
    assert listing[1].endswith(" 1 file") and "files" not in listing[1]
    first = up_lab.netlab("events").stdout.splitlines()[0]
    assert first[:10].count("-") == 2 and first[4] == "-"  # 2026-12-02 12:00:00.000


def test_idempotent_no_ops_exit_0(up_lab: LabEnv) -> None:
    done = up_lab.netlab("vm", "start", "acme/db")
    assert "acme/db is on (it already was)" in done.stdout
    done = up_lab.netlab("plan", "undo", "acme")
    assert "not running" in done.stdout and "warning" not in done.stderr


def test_state_checked_before_the_discard_warning(up_lab: LabEnv) -> None:
    for command in ("undo", "permanent"):
        done = run(up_lab, command, "--yes", "acme/web", "acme/db")
        assert done.returncode == 1
        line = one_line(done.stderr)  # no warning line before the refusal
        assert "acme/web@sp is 'Normal'" in line and "acme/db@sp is 'Normal'" in line
