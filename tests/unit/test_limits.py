"""Host limits of the userspace WireGuard backend: room, refusal, raise and restore (no root)."""

from __future__ import annotations

import pytest

from netlab import limits
from netlab.limits import Limit, LimitReached


def inotify(value: int, in_use: int) -> Limit:
    return Limit("fs.inotify.max_user_instances", value, in_use, 2, "one per tunnel process")


def test_room_is_what_is_left_divided_by_what_a_pair_takes() -> None:
    assert inotify(128, 0).pairs_left == 64
    assert inotify(128, 3).pairs_left == 62
    assert inotify(128, 200).pairs_left == 0


def test_refusal_names_the_limit_its_value_and_the_command_that_raises_it() -> None:
    with pytest.raises(LimitReached) as caught:
        limits.check_room("userspace", 50, [inotify(128, 40)])
    message = str(caught.value)
    assert "\n" not in message
    assert "fs.inotify.max_user_instances is 128" in message
    assert "40 are in use" in message and "room for 44" in message
    assert "sysctl -w fs.inotify.max_user_instances=172" in message  # 40 + 100 + margin
    assert "netlab up --raise-limits" in message
    assert "Protocol not supported" not in message


def test_room_enough_or_kernel_backend_or_soft_limit_is_no_refusal() -> None:
    limits.check_room("userspace", 44, [inotify(128, 40)])
    limits.check_room("kernel", 500, [inotify(128, 40)])
    soft = Limit("net.ipv4.udp_mem", 100, 90, 50, "buffers", hard=False)
    limits.check_room("userspace", 5, [soft])


def test_capacity_names_the_binding_limit() -> None:
    threads = Limit("kernel.threads-max", 100000, 300, 32, "threads")
    info = limits.capacity("userspace", [threads, inotify(128, 10)])
    assert info["pairs_left"] == 59 and info["binding"] == "fs.inotify.max_user_instances"
    assert limits.capacity("kernel")["pairs_left"] is None


def test_raise_records_old_values_and_restore_puts_back_only_what_nobody_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"fs.inotify.max_user_instances": 128, "kernel.threads-max": 100000}
    monkeypatch.setattr(limits, "read_sysctl", lambda key: str(values[key]))
    monkeypatch.setattr(limits, "write_sysctl", lambda key, value: values.__setitem__(key, value))
    threads = Limit("kernel.threads-max", 100000, 300, 32, "threads")
    changed = limits.raise_for(100, [inotify(128, 10), threads])
    assert changed == {"fs.inotify.max_user_instances": {"old": 128, "new": 10 + 200 + 32}}
    assert values["fs.inotify.max_user_instances"] == 242
    assert limits.restore(changed) == ["fs.inotify.max_user_instances"]
    assert values["fs.inotify.max_user_instances"] == 128
    # someone set another value meanwhile: theirs stays
    values["fs.inotify.max_user_instances"] = 4096
    assert limits.restore(changed) == []
    assert values["fs.inotify.max_user_instances"] == 4096


def test_this_hosts_limits_can_be_read() -> None:
    found = {lim.key: lim for lim in limits.userspace_limits()}
    assert {"fs.inotify.max_user_instances", "kernel.threads-max", "kernel.pid_max",
            "fs.file-max", "net.ipv4.udp_mem"} <= set(found)
    assert all(lim.value > 0 and lim.in_use >= 0 for lim in found.values())




def test_status_counts_inotify_holders_of_a_recent_scan_that_still_run(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes
    import json
    import os
    import subprocess

    from netlab.processes import process_start_time

    cache = tmp_path / "count.json"
    monkeypatch.setattr(limits, "COUNT_CACHE", cache)
    uid, me = os.getuid(), os.getpid()
    mine = ctypes.CDLL(None, use_errno=True).inotify_init()
    assert mine >= 0
    try:
        limits.inotify_instances(uid)  # a scan finds this process holding it
        holders = json.loads(cache.read_text())[str(uid)]["holders"]
        assert holders[str(me)][1] >= 1
    finally:
        os.close(mine)
    ended = subprocess.Popen(["true"])
    ended.wait()
    limits._store_holders(uid, {me: (process_start_time(me), 2), ended.pid: (1, 5)})
    # within max_age no scan: the holders that still run, not the one that ended
    assert limits.inotify_instances(uid, max_age=30) == 2
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        # a recorded process (the lab's wireguard-go) started since counts one
        assert limits.inotify_instances(uid, max_age=30, recorded=[sleeper.pid, me]) == 3
    finally:
        sleeper.kill()
        sleeper.wait()
    assert limits.inotify_instances(uid, max_age=30, recorded=[sleeper.pid]) == 2
    # too old a cache: a scan again, which rewrites it
    written = json.loads(cache.read_text())[str(uid)]["time"]
    monkeypatch.setattr(limits.time, "time", lambda: written + 31)
    limits.inotify_instances(uid, max_age=30)
    assert json.loads(cache.read_text())[str(uid)]["time"] == written + 31
