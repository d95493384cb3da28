"""Daemons killed during traffic are restarted by the supervisor and traffic recovers by itself.

One continuous ping (every 50 ms) from acme/db to the failed-over replica of acme/web
while, one after the other, the lab's proxy-ARP process, the tenant wireguard-go and
the SP wireguard-go get SIGKILL (pids from state.json 'processes'). Each one must be
restarted (a new pid recorded) and the replica must answer again with no command; the
outage of each kill (last reply before it to first reply after it) is printed, not
asserted. tests/integration/test_nea.py checks the restarts one at a time without a
running ping.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import wg_backend
from conftest import LabEnv
from reliability_helpers import alive, in_netns, module_lab, pid_of, poll

pytestmark = pytest.mark.root

REPLICA = "192.168.10.11"
INTERVAL = 0.05
PAUSE = 2.5  # of healthy traffic after each recovery: the ping runs ~10 s in all
# the WireGuard processes only where the backend runs any (wireguard-go, not kernel links)
VICTIMS = ["proxyarp",
           *wg_backend.process_records("wireguard:acme/nea-lan", "wireguard:sp/nea-acme-lan")]
REPLY = re.compile(r"^\[(?P<ts>\d+\.\d+)\] \d+ bytes from [\d.]+: icmp_seq=(?P<seq>\d+)")


@pytest.fixture(scope="module")
def failed_over(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    with module_lab(tmp_path_factory) as lab:
        lab.netlab("failover", "acme/web")
        lab.netlab("vm", "fail", "acme/web")  # the disaster: only the replica answers
        yield lab


def db_pings(lab: LabEnv) -> bool:
    return lab.lab_exec("acme/db", "ping", "-n", "-c", "1", "-W", "1", REPLICA).returncode == 0


def test_killed_daemons_are_restarted_and_the_ping_recovers(failed_over: LabEnv) -> None:
    lab = failed_over
    assert poll("db reaches the replica", lambda: db_pings(lab))
    ping = subprocess.Popen(
        in_netns(lab.netns("acme.db"), "ping", "-n", "-D", "-i", str(INTERVAL), "-w", "120",
                 REPLICA),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    kills: list[tuple[str, float]] = []
    try:
        time.sleep(1.0)
        for name in VICTIMS:
            old = pid_of(lab, name)
            assert old is not None and alive(old), f"{name} is not running before the kill"
            kills.append((name, time.time()))
            os.kill(old, signal.SIGKILL)
            new = poll(f"{name} restarted with a new pid recorded",
                       lambda name=name, old=old: (p := pid_of(lab, name)) and p != old
                       and alive(p) and p, timeout=60)
            print(f"{name}: pid {old} killed, restarted as pid {new}")
            # recovery is seen by the continuous ping; this only paces the kills
            poll(f"db reaches the replica again after killing {name}",
                 lambda: db_pings(lab), timeout=60)
            time.sleep(PAUSE)
    finally:
        ping.send_signal(signal.SIGINT)
        out, _ = ping.communicate(timeout=30)
    replies = [(float(m["ts"]), int(m["seq"])) for m in map(REPLY.match, out.splitlines()) if m]
    summary = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert summary, out[-500:]
    sent, received = int(summary[1]), int(summary[2])
    print(f"ping every {INTERVAL} s: {sent} sent, {received} received, {sent - received} lost")
    assert replies, out[-500:]
    for name, at in kills:
        before = [ts for ts, _ in replies if ts <= at]
        after = [ts for ts, _ in replies if ts > at]
        assert after, f"no reply after killing {name}"
        gap = after[0] - (before[-1] if before else at)
        print(f"outage after killing {name}: {max(0.0, gap - INTERVAL):.2f} s "
              f"(last reply before the kill to first reply after it: {gap:.2f} s)")
    # and the ping ends healthy: the last second had replies
    assert replies[-1][0] > kills[-1][1], "the ping never recovered after the last kill"
    assert db_pings(lab)
