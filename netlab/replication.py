"""Replication jobs over the lab's network, their schedule, and the VMs' changing workload.

A job for one VM (what a tenant-side replication agent does, then the provider):

1. snapshot: the source disk is synced into the job's stage (`<lab>/replication/
   <tenant>/<vm>/data`), and the time is noted: the restore point will be the
   disk as it was then, and its age is the RPO;
2. manifest: sha256 of every file of the snapshot (`manifest.sha256`);
3. transfer: `rsync` run in the tenant edge's namespace sends the stage through
   the edge's internet link to the cloud gateway, TCP 6180, which forwards it to
   sp/repl's rsync daemon (netlab.receiver); `--link-dest` to the newest point
   makes it incremental: unchanged files are hard links, only changes cross;
4. publish: the receiver's copy is checked against the manifest and renamed into
   the next restore point (netlab.storage.incoming); retention as before.

The result of each VM's last job is kept in state.json under `replication_jobs`.
Schedules (`replication: {interval: 30s}`) are run by the lab's supervisor, which
calls `Replicator.tick` at every poll: it starts each due job as a process of
its own (recorded, so `down` ends it) and appends a record to every running
static VM's `records.log` at the VM's record interval.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netlab import storage
from netlab.errors import NetlabError, OperationLocked
from netlab.lab import Lab
from netlab.plan import REPLICATION_PORT, LabPlan, Node
from netlab.processes import ProcessRecord, is_alive, start_process
from netlab.replica_state import ReplicaState
from netlab.run import require_tool, run
from netlab.storage.incoming import (
    VerificationFailed,
    newest_point_name,
    publish_received,
    receiving_dir,
    write_manifest,
)

RECORDS_FILE = "records.log"
IO_TIMEOUT_S = 15  # rsync gives up on a transfer that moves nothing for this long
CONNECT_TIMEOUT_S = 5
log = logging.getLogger("netlab.replication")


# ----- pure logic: schedules, RPO, records ------------------------------------------------


def is_due(now: float, interval: float | None, last_started: float | None) -> bool:
    """Whether a scheduled VM's next job should start at `now`."""
    if interval is None:
        return False
    return last_started is None or now - last_started >= interval


def schedule(plan: LabPlan) -> dict[str, tuple[float | None, float | None]]:
    """(interval, rpo_goal) of every replicated VM: its own setting, else its tenant's."""
    found = {}
    for tenant_name, vm_name, vm in plan.topology.static_vms():
        tenant = plan.topology.tenants[tenant_name].replication
        own = vm.replication
        interval = own.interval if own and own.interval else tenant.interval
        goal = own.rpo_goal if own and own.rpo_goal else tenant.rpo_goal
        found[f"{tenant_name}/{vm_name}"] = (interval, goal)
    return found


@dataclass(frozen=True)
class Rpo:
    """What a failover to a restore point loses: its age and the records written after it."""

    restore_point: int
    created: float  # Unix time of the job's snapshot
    age_seconds: float
    source_last_record: int
    replica_last_record: int

    @property
    def records_lost(self) -> int:
        return max(0, self.source_last_record - self.replica_last_record)

    def to_dict(self) -> dict[str, Any]:
        return {"restore_point": self.restore_point, "age_seconds": round(self.age_seconds, 3),
                "records_lost": self.records_lost,
                "source_last_record": self.source_last_record,
                "replica_last_record": self.replica_last_record}


def last_record(disk: Path) -> int:
    """Sequence number of the last complete record in `disk`/records.log (0: none)."""
    path = Path(disk) / RECORDS_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            tail = fh.read()
    except FileNotFoundError:
        return 0
    for line in reversed(tail.split(b"\n")[:-1]):  # the part after the last \n is incomplete
        first = line.split(b" ", 1)[0]
        if first.isdigit():
            return int(first)
    return 0


def rpo_of(point: storage.RestorePoint, source_disk: Path, now: float) -> Rpo:
    created = point.created.timestamp()
    return Rpo(point.id, created, now - created, last_record(source_disk), last_record(point.path))


def failover_rpo(lab: Lab, vm: str, point_id: int) -> Rpo:
    """The RPO of failing `vm` over to restore point `point_id` now."""
    point = storage.get_restore_point(lab.replica_dir(vm), point_id)
    return rpo_of(point, lab.disk_dir(vm), time.time())


def over_goal(age: float | None, goal: float | None) -> bool:
    return goal is not None and (age is None or age > goal)


class RecordWriter:
    """Appends `<seq> <unix time>` to each running static VM's records.log at its interval.

    One writer for the whole lab (in the supervisor), not a process per VM. A
    record is one write(2) of one line with O_APPEND, so a reader sees whole lines.
    """

    def __init__(self) -> None:
        self.next_due: dict[str, float] = {}
        self.seq: dict[str, int] = {}

    def tick(self, disks: dict[str, Path], interval: dict[str, float], now: float) -> int:
        written = 0
        for vm, disk in disks.items():
            due = self.next_due.get(vm)
            if due is not None and now < due:
                continue
            if vm not in self.seq:
                self.seq[vm] = last_record(disk)
            self.seq[vm] += 1
            line = f"{self.seq[vm]} {now:.3f}\n".encode()
            fd = os.open(disk / RECORDS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            written += 1
            # steady rate; after a stall, start again from now rather than bursting
            step = interval[vm]
            self.next_due[vm] = due + step if due is not None and now - due < step else now + step
        for vm in set(self.next_due) - set(disks):  # off: read the disk again when back
            self.next_due.pop(vm)
            self.seq.pop(vm, None)
        return written


# ----- one job ----------------------------------------------------------------------------


def stage_dir(lab: Lab, vm: str) -> Path:
    """The tenant-side agent's working copy of a VM (its snapshot and manifest)."""
    tenant, name = vm.split("/", 1)
    path = lab.dir.root / "replication" / tenant / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _hold_reason(state: dict[str, Any], vm: str) -> str | None:
    replica = state.get("replicas", {}).get(vm)
    if replica is None:
        return "no replica (DHCP VMs are not replicated)"
    if replica.get("replication") == "excluded":
        return "excluded from replication: its replica is production after a permanent failover"
    active = replica.get("replication", "active") == "active"
    if replica.get("state") != ReplicaState.NORMAL.value or not active:
        return (f"replication on hold: replica is '{replica.get('state')}' "
                "(resumes after undo or commit)")
    return None


def rsync_argv(stage: Path, gateway: str, vm: str, link_dest: str | None) -> list[str]:
    tenant, name = vm.split("/", 1)
    argv = [require_tool("rsync"), "--archive", "--delete", "--numeric-ids", "--stats",
            # restore points are read-only; the same modes on both sides let unchanged
            # files be hard links to the previous point
            "--chmod=D555,F-w", f"--timeout={IO_TIMEOUT_S}", f"--contimeout={CONNECT_TIMEOUT_S}",
            # contents, not rsync's quick check (size, and mtime to the second): that can
            # take a changed file of the same size for unchanged, link it from the previous
            # point or keep a discarded transfer's copy, and the point then fails its
            # manifest check (seen once for records.log in a suite run). Lab disks are
            # small; hashing them costs milliseconds.
            "--checksum"]
    if link_dest:
        argv.append(f"--link-dest=../{link_dest}")
    url = f"rsync://{gateway}:{REPLICATION_PORT}/{tenant}/{name}/{storage.POINTS_DIR}/.recv/"
    return [*argv, f"{stage}/", url]


def failure_reason(returncode: int, stderr: str, gateway: str) -> str:
    """One line saying why rsync failed, in the terms of the WAN."""
    errors = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = next((e for e in errors if e.startswith("rsync:") or "error" in e), errors[-1]
                  if errors else f"exit status {returncode}")
    if returncode in (10, 35) or "failed to connect" in detail:
        return (f"no connection to the cloud gateway {gateway}:{REPLICATION_PORT} within "
                f"{CONNECT_TIMEOUT_S} s (WAN down?): {detail}")
    if returncode == 30 or "timeout" in detail:
        return f"the transfer stalled for {IO_TIMEOUT_S} s (WAN cut during the job?): {detail}"
    return f"rsync exit status {returncode}: {detail}"


def _bytes_sent(stdout: str) -> int | None:
    match = re.search(r"Total bytes sent: ([\d,.]+)", stdout)
    return int(re.sub(r"[,.]", "", match.group(1))) if match else None


def run_job(lab: Lab, vm: str, trigger: str = "manual") -> dict[str, Any]:
    """Replicate `vm` over the network now; returns (and records) the job's result."""
    started = time.time()
    job: dict[str, Any] = {"vm": vm, "trigger": trigger, "started": started}
    reason = _hold_reason(lab.dir.read(), vm)
    if reason is not None:
        return job | {"result": "skipped", "reason": reason}
    try:
        with lab.dir.hold(f"replication-{vm}", "replicate"):
            job |= _transfer(lab, vm, started)
    except OperationLocked:
        return job | {"result": "skipped", "reason": "a job for this VM is still running"}
    except NetlabError as exc:
        job |= {"result": "failed", "reason": str(exc)}
    job |= {"finished": time.time(), "seconds": round(time.time() - started, 3)}
    _record(lab, vm, job)
    return job


def _transfer(lab: Lab, vm: str, started: float) -> dict[str, Any]:
    plan = lab.plan()
    node: Node = plan.node(vm)
    stage, replica_dir = stage_dir(lab, vm), lab.replica_dir(vm)
    snapshot_at = time.time()
    storage.copy_changes_to_source(lab.disk_dir(vm), stage / storage.POINT_DATA)
    write_manifest(stage)
    receiving_dir(replica_dir)
    gateway = str(plan.topology.provider.gateway)
    edge = plan.nodes[f"{node.tenant}/edge"]
    argv = rsync_argv(stage, gateway, vm, newest_point_name(replica_dir))
    sending = time.monotonic()
    done = run(argv, netns=edge.netns, check=False, timeout=3600)
    # the transfer alone: the WAN's share of the job, without snapshot and verification
    transfer_seconds = round(time.monotonic() - sending, 3)
    if done.returncode != 0:
        return {"result": "failed", "reason": failure_reason(done.returncode, done.stderr, gateway)}
    reason = _hold_reason(lab.dir.read(), vm)
    if reason is not None:  # a failover began during the transfer: publish nothing
        return {"result": "skipped", "reason": reason}
    retention = plan.topology.tenants[node.tenant or ""].replication.retention
    try:
        point = publish_received(replica_dir, datetime.fromtimestamp(snapshot_at, UTC), retention)
    except VerificationFailed as exc:
        return {"result": "failed", "reason": f"verification failed, point discarded: {exc}"}
    return {"result": "ok", "restore_point": point.id, "snapshot": snapshot_at,
            "bytes_sent": _bytes_sent(done.stdout), "transfer_seconds": transfer_seconds,
            "files": point.files,
            "size_bytes": point.size_bytes}


def _record(lab: Lab, vm: str, job: dict[str, Any]) -> None:
    if not lab.dir.exists():  # the lab went down while the job ran: leave nothing behind
        return
    with lab.dir.update() as state:
        jobs = state.setdefault("replication_jobs", {})
        previous = jobs.get(vm, {})
        jobs[vm] = job | {"last_ok": job["finished"] if job["result"] == "ok"
                          else previous.get("last_ok")}
        state.get("processes", {}).pop(f"replication:{vm}", None)
    lab.dir.journal(f"replication-{job['result']}", vm=vm,
                    **{k: v for k, v in job.items() if k in ("restore_point", "reason", "seconds")})


# ----- the schedule, run by the supervisor -------------------------------------------------


def job_argv(lab_name: str, vm: str) -> list[str]:
    return [sys.executable, "-m", "netlab.replication", "--lab", lab_name, "--vm", vm]


class Replicator:
    """Called by the supervisor at every poll: records into the VMs' disks, due jobs started."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.writer = RecordWriter()
        self.started: dict[str, float] = {}
        self.running: dict[str, ProcessRecord] = {}

    def tick(self, state: dict[str, Any], now: float | None = None) -> list[str]:
        """Write due records, start due jobs; returns the VMs whose job was started."""
        now = time.time() if now is None else now
        plan = self.lab.plan()
        powered = {vm: self.lab.disk_dir(vm) for vm in schedule(plan)
                   if state.get("nodes", {}).get(vm, {}).get("power") == "on"}
        intervals = {f"{t}/{v}": plan.topology.tenants[t].replication.record_interval
                     for t, v, _ in plan.topology.static_vms()}
        self.writer.tick({vm: d for vm, d in powered.items() if d.is_dir() and intervals[vm]},
                         intervals, now)
        begun = []
        jobs = state.get("replication_jobs", {})
        for vm, (interval, _goal) in schedule(plan).items():
            if vm in self.running and is_alive(self.running[vm]):
                continue
            self.running.pop(vm, None)
            last = self.started.get(vm, jobs.get(vm, {}).get("started"))
            if not is_due(now, interval, last) or _hold_reason(state, vm) is not None:
                continue
            self.started[vm] = now
            try:
                self.running[vm] = self._start(vm)
            except NetlabError as exc:
                log.warning("replication job of %s did not start: %s", vm, exc)
                continue
            begun.append(vm)
        return begun

    def _start(self, vm: str) -> ProcessRecord:
        logs = self.lab.dir.sub("logs")
        env = {**os.environ, "NETLAB_STATE_DIR": str(self.lab.dir.root.parent)}
        rec = start_process(f"replication:{vm}", job_argv(self.lab.name, vm),
                            log_path=logs / "replication.log", env=env)
        with self.lab.dir.update() as state:
            # recorded (not supervised) so that down and cleanup end a job cut short
            state.setdefault("processes", {})[rec.name] = rec.to_dict() | {"supervised": False}
        return rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netlab.replication")
    parser.add_argument("--lab", required=True)
    parser.add_argument("--vm", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    job = run_job(Lab(args.lab), args.vm, trigger="schedule")
    log.info("%s: %s %s", args.vm, job["result"], job.get("reason", job.get("restore_point")))
    return 0 if job["result"] != "failed" else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
