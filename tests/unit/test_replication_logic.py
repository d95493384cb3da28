"""Replication, RPO and WAN logic that needs no root: schedules, arithmetic, parsing, checks."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from netlab.errors import PreconditionFailed, TopologyError
from netlab.net.tc import LinkConditions, loss_ruleset, qdisc_commands, tbf_args
from netlab.plan import build_plan
from netlab.receiver import rsyncd_config
from netlab.replication import (
    RecordWriter,
    Rpo,
    failure_reason,
    is_due,
    last_record,
    over_goal,
    rpo_of,
    rsync_argv,
    schedule,
)
from netlab.storage import RestorePoint
from netlab.storage.incoming import (
    MANIFEST,
    VerificationFailed,
    publish_received,
    receiving_dir,
    verify_received,
    write_manifest,
)
from netlab.topology.loader import default_topology_text, parse_topology
from netlab.topology.units import parse_duration, parse_loss, parse_rate
from netlab.wan import describe, merge, parse_changes


def topology(**tenant_changes: dict) -> object:
    data = yaml.safe_load(default_topology_text())
    for key, value in tenant_changes.items():
        data["tenants"]["acme"][key] = value
    return parse_topology(yaml.safe_dump(data))


# ----- schedules ---------------------------------------------------------------------------


def test_a_job_is_due_first_time_and_after_each_interval() -> None:
    assert is_due(100.0, 30.0, None)
    assert not is_due(100.0, 30.0, 80.0)
    assert is_due(110.0, 30.0, 80.0)
    assert not is_due(1e9, None, None)  # no schedule: only `netlab replicate`


def test_a_vm_schedule_overrides_its_tenant() -> None:
    data = yaml.safe_load(default_topology_text())
    data["tenants"]["acme"]["replication"] = {"interval": "30s", "rpo_goal": "1m"}
    data["tenants"]["acme"]["vms"]["db"]["replication"] = {"interval": "500ms"}
    plan = build_plan("u", parse_topology(yaml.safe_dump(data)))
    found = schedule(plan)
    assert found["acme/web"] == (30.0, 60.0)
    assert found["acme/db"] == (0.5, 60.0)
    assert found["globex/web"] == (None, None)
    assert "acme/kiosk" not in found  # DHCP VMs have no replica


# ----- records and RPO -----------------------------------------------------------------


def test_the_writer_appends_numbered_records_at_its_rate(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    writer = RecordWriter()
    for now in (0.0, 0.2, 0.5, 1.0, 1.2, 2.0, 3.0):
        writer.tick({"a/b": disk}, {"a/b": 1.0}, now)
    lines = (disk / "records.log").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4"]
    assert last_record(disk) == 4
    # a new writer (supervisor restarted) continues the sequence from the disk
    RecordWriter().tick({"a/b": disk}, {"a/b": 1.0}, 10.0)
    assert last_record(disk) == 5


def test_a_half_written_record_is_not_counted(tmp_path: Path) -> None:
    (tmp_path / "records.log").write_text("1 10.0\n2 11.0\n3 1")
    assert last_record(tmp_path) == 2
    assert last_record(tmp_path / "missing") == 0


def test_rpo_is_the_point_age_and_the_records_after_it(tmp_path: Path) -> None:
    source, point_data = tmp_path / "source", tmp_path / "point"
    source.mkdir()
    point_data.mkdir()
    (source / "records.log").write_text("".join(f"{i} {i}.0\n" for i in range(1, 21)))
    (point_data / "records.log").write_text("".join(f"{i} {i}.0\n" for i in range(1, 11)))
    point = RestorePoint(7, datetime.fromtimestamp(1000.0, UTC), 0, 1, "x", point_data)
    rpo = rpo_of(point, source, now=1010.5)
    assert rpo == Rpo(7, 1000.0, 10.5, 20, 10)
    assert rpo.records_lost == 10
    assert rpo.to_dict()["age_seconds"] == 10.5
    assert over_goal(10.5, 10.0) and not over_goal(10.5, 11.0) and not over_goal(10.5, None)
    assert over_goal(None, 10.0)  # never replicated: over any goal


# ----- the transfer's command line and its failures -------------------------------------


def test_rsync_sends_the_stage_to_the_tenant_module_incrementally() -> None:
    argv = rsync_argv(Path("/s/stage"), "198.51.100.10", "acme/web", "rp-0004")
    assert argv[-1] == "rsync://198.51.100.10:6180/acme/web/restore-points/.recv/"
    assert argv[-2] == "/s/stage/"
    assert "--link-dest=../rp-0004" in argv and "--delete" in argv
    assert "--checksum" in argv  # a changed file of the same size and second is sent
    assert not any(a.startswith("--link-dest") for a in rsync_argv(Path("/s"), "g", "a/b", None))


def test_a_cut_wan_is_named_as_such() -> None:
    stderr = ("rsync: failed to connect to 198.51.100.10 (198.51.100.10): Connection timed out\n"
              "rsync error: error in socket IO (code 10) at clientserver.c(139)\n")
    assert "no connection to the cloud gateway 198.51.100.10:6180" in failure_reason(
        10, stderr, "198.51.100.10")
    assert "stalled" in failure_reason(30, "rsync error: timeout in data send/receive", "g")
    assert failure_reason(5, "", "g") == "rsync exit status 5: exit status 5"


def test_each_tenant_module_is_writable_only_from_its_edge(tmp_path: Path) -> None:
    plan = build_plan("u", topology())
    config = rsyncd_config(plan, tmp_path / "sp", tmp_path / "log")
    acme = config.split("[acme]")[1].split("[globex]")[0]
    assert f"path = {tmp_path / 'sp' / 'acme'}" in acme
    assert "hosts allow = 198.51.100.11" in acme and "hosts deny = *" in acme
    assert "hosts allow = 198.51.100.12" in config.split("[globex]")[1]


# ----- verification of a received point ------------------------------------------------


def _received(replica: Path, files: dict[str, bytes]) -> Path:
    stage = replica.parent / "stage"
    (stage / "data").mkdir(parents=True)
    for name, content in files.items():
        (stage / "data" / name).write_bytes(content)
    write_manifest(stage)
    recv = receiving_dir(replica)
    os.rename(stage, recv)
    return recv


def test_a_verified_point_is_published_and_a_damaged_one_never_listed(tmp_path: Path) -> None:
    from netlab.storage import list_restore_points

    replica = tmp_path / "sp" / "acme" / "web"
    _received(replica, {"a": b"one", "records.log": b"1 1.0\n"})
    point = publish_received(replica, datetime.fromtimestamp(5.0, UTC), retention=3)
    assert point.id == 1 and point.created.timestamp() == 5.0
    assert (point.path.parent / MANIFEST).is_file()
    recv = _received(replica, {"a": b"two"})
    (recv / "data" / "a").write_bytes(b"damaged in transit")
    (recv / "data" / "extra").write_bytes(b"?")
    with pytest.raises(VerificationFailed, match="not in the manifest: extra; checksum differs: a"):
        publish_received(replica, datetime.now(UTC), retention=3)
    assert [p.id for p in list_restore_points(replica)] == [1]
    assert not recv.exists()


def test_a_transfer_without_its_manifest_is_incomplete(tmp_path: Path) -> None:
    recv = tmp_path / ".recv"
    (recv / "data").mkdir(parents=True)
    with pytest.raises(VerificationFailed, match="incomplete"):
        verify_received(recv)


# ----- WAN profiles ----------------------------------------------------------------------


def test_set_changes_one_parameter_and_keeps_the_others() -> None:
    profile = merge({}, {"rate": 10_000_000})
    profile = merge(profile, {"loss": 100.0})
    assert profile == {"rate": 10_000_000, "delay": None, "jitter": None, "loss": 100.0}
    assert merge(profile, {"loss": 0.0}) == {"rate": 10_000_000, "delay": None, "jitter": None,
                                            "loss": None}
    assert describe(profile) == "rate 10mbit, loss 100%"
    with pytest.raises(PreconditionFailed, match="jitter varies a delay"):
        merge(profile, {"jitter": 0.005})


def test_command_line_values_are_parsed_or_refused_in_one_line() -> None:
    assert parse_changes(rate="10mbit", delay="50ms", jitter=None, loss="1%") == {
        "rate": 10_000_000, "delay": 0.05, "loss": 1.0}
    with pytest.raises(PreconditionFailed, match=r"^--rate: .*not a rate"):
        parse_changes(rate="fast")
    with pytest.raises(PreconditionFailed, match="at most 100%"):
        parse_changes(loss="150%")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), (30, 30), ("500ms", 0.5),
                                                ("2m", 120), ("1.5", 1.5)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_units_refuse_nonsense() -> None:
    assert parse_rate("100mbit") == 100_000_000 and parse_loss("0.5%") == 0.5
    for bad, parser in (("10 apples", parse_rate), ("-1s", parse_duration), (True, parse_loss)):
        with pytest.raises(ValueError):
            parser(bad)


def test_loss_is_an_nftables_random_drop_and_a_cut_drops_all() -> None:
    assert "numgen random mod 10000 < 50 drop" in loss_ruleset("x-e6", 0.5)
    assert 'oifname "x-e6" drop' in loss_ruleset("x-e6", 100)
    rate = tbf_args(10_000_000)
    assert rate[:2] == ["rate", "10000000bit"]



def test_with_netem_delay_jitter_and_loss_are_one_netem_and_rate_its_tbf_child() -> None:
    cond = LinkConditions(rate=10_000_000, delay=0.05, jitter=0.005, loss=1.0)
    root, child = qdisc_commands("x-e6", cond, netem=True)
    assert root == ["tc", "qdisc", "add", "dev", "x-e6", "root", "handle", "1:", "netem",
                    "delay", "50ms", "5ms", "loss", "1%"]
    # tbf under netem's one class: the delay does not undo the rate, nor the rate the delay
    assert child[:10] == ["tc", "qdisc", "add", "dev", "x-e6", "parent", "1:1", "handle",
                          "10:", "tbf"]
    assert child[10:] == tbf_args(10_000_000)
    # loss alone on a netem kernel is netem's, not nftables'
    assert qdisc_commands("x-e6", LinkConditions(loss=100.0), netem=True) == [
        ["tc", "qdisc", "add", "dev", "x-e6", "root", "handle", "1:", "netem", "loss", "100%"]]


def test_without_netem_only_rate_is_a_qdisc_and_nothing_is_made_for_no_conditions() -> None:
    [tbf] = qdisc_commands("x-e6", LinkConditions(rate=10_000_000, loss=1.0), netem=False)
    assert tbf[5:9] == ["root", "handle", "1:", "tbf"]
    assert qdisc_commands("x-e6", LinkConditions(loss=1.0), netem=False) == []
    assert qdisc_commands("x-e6", LinkConditions(), netem=True) == []

# ----- topology validation of the new keys --------------------------------------------


def test_topology_accepts_the_new_keys() -> None:
    topo = topology(replication={"interval": "30s", "rpo_goal": "1m", "record_interval": 2},
                    wan={"rate": "10mbit", "delay": "50ms", "jitter": "5ms", "loss": "1%"})
    acme = topo.tenants["acme"]
    assert (acme.replication.interval, acme.replication.rpo_goal) == (30.0, 60.0)
    assert (acme.wan.rate, acme.wan.delay, acme.wan.jitter, acme.wan.loss) == (
        10_000_000, 0.05, 0.005, 1.0)


@pytest.mark.parametrize(("changes", "message"), [
    ({"wan": {"rate": "ten"}}, "tenants.acme.wan.rate"),
    ({"wan": {"jitter": "5ms"}}, "tenants.acme.wan.jitter: jitter varies a delay"),
    ({"wan": {"bandwidth": "1mbit"}}, "tenants.acme.wan.bandwidth"),
    ({"replication": {"interval": 0}}, "tenants.acme.replication.interval"),
    ({"replication": {"interval": "soon"}}, "tenants.acme.replication.interval"),
    ({"replication": {"record_interval": 0.01}}, "tenants.acme.replication.record_interval"),
])
def test_topology_refuses_bad_new_keys(changes: dict, message: str) -> None:
    with pytest.raises(TopologyError, match=message.replace(".", r"\.")):
        topology(**changes)


def test_the_receiver_address_must_be_free_on_the_core() -> None:
    data = yaml.safe_load(default_topology_text())
    data["provider"]["replication_address"] = "10.99.0.11"  # acme's SP NEA
    with pytest.raises(TopologyError, match=re.escape(
            "sp_core_address: 10.99.0.11 is already used by provider.replication_address")):
        parse_topology(yaml.safe_dump(data))


# ----- status ----------------------------------------------------------------------------


def test_status_shows_the_rpo_flags_it_over_the_goal_and_gives_the_failure() -> None:
    from netlab.status_view import _rpo_cells

    now = time.time()
    ok = {"age_seconds": 12.0, "goal_seconds": 60.0, "over_goal": False,
          "last_job": {"result": "ok", "restore_point": 4, "seconds": 0.2, "started": now,
                       "finished": now}}
    assert _rpo_cells(ok)[0] == "12 s" and "ok: point 4" in _rpo_cells(ok)[1]
    failed = {"age_seconds": 75.0, "goal_seconds": 60.0, "over_goal": True,
              "last_job": {"result": "failed", "reason": "no connection (WAN down?)",
                           "started": now, "finished": now}}
    age, last = _rpo_cells(failed)
    assert "75 s > 60" in age and "red" in age and "failed" in last and "WAN down?" in last
    assert _rpo_cells(None) == ("-", "-")


def test_status_lists_failed_replication_jobs_with_their_reason_in_80_columns() -> None:
    import io

    from rich.console import Console

    from netlab.status_view import status_renderable

    now = time.time()
    data = {"lab": "t", "status": "up", "state_dir": "/s", "tunnels": {}, "nodes": [],
            "vms": [{"name": "acme/web", "address": "192.168.10.11", "power": "on",
                     "replica_state": "Normal", "replication": "active", "dhcp": False,
                     "replica": "acme/web@sp", "restore_points": 3,
                     "rpo": {"age_seconds": 75.0, "goal_seconds": 60.0, "over_goal": True,
                             "last_job": {"result": "failed", "started": now, "finished": now,
                                          "reason": "no connection (WAN down?)"}}}]}
    out = io.StringIO()
    Console(file=out, width=80, emoji=False).print(status_renderable(data))
    text = out.getvalue()
    assert "192.168.10.11" in text and "75 s > 60" in text
    assert "replication of acme/web failed: no connection (WAN down?)" in text
