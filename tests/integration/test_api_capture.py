"""The Python API, the pytest plugin's fixture, `capture`, `graph` and `status --watch` on
real labs.

The README's user test is not copied here: it is read from README.md and run as
it stands, so the README cannot show a test that does not pass.
"""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import subprocess
import threading
import time

import pytest
from conftest import REPO, LabEnv, netlab_argv

from netlab.graph import STATE_COLORS

pytestmark = pytest.mark.root

README = REPO / "README.md"


def readme_user_test() -> str:
    """The python block of the README's "Python API and pytest plugin" section."""
    text = README.read_text()
    section = text.split("## Python API and pytest plugin", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section should hold exactly one python block"
    return blocks[0]


def test_readme_user_test_passes_as_shown(netlab_lab) -> None:
    namespace: dict = {}
    exec(compile(readme_user_test(), f"{README}:user-test", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0](netlab_lab)


def test_api_results_are_structured(netlab_lab) -> None:
    done = netlab_lab.exec("acme/web", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    ping = netlab_lab.ping("acme/db", "192.168.10.11", count=2)
    assert ping.ok and ping.transmitted == 2 and ping.received == 2 and ping.rtt_ms > 0
    lost = netlab_lab.ping("acme/db", "192.168.10.99", wait=1)
    assert not lost.ok and lost.received == 0 and lost.rtt_ms is None
    arp = netlab_lab.arping("acme/db", "192.168.10.11")
    assert arp.macs == [netlab_lab.mac("acme/web")]
    assert netlab_lab.arping("acme/db", "192.168.10.99").macs == []
    page = netlab_lab.curl("globex/erp", "http://192.168.10.11/")
    assert page.status == 200 and "<h1>globex/web</h1>" in page.body
    refused = netlab_lab.curl("acme/db", "http://192.168.10.99/", timeout=1)
    assert not refused.ok and refused.status is None and refused.error
    assert netlab_lab.status()["lab"] == netlab_lab.name


def netlab(lab: LabEnv, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([*netlab_argv(), *args], env=lab.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_capture_shows_the_gratuitous_arp_of_a_failover(lab_env: LabEnv) -> None:
    lab_env.netlab("up")
    lab_env.netlab("vm", "fail", "acme/web")
    nea_mac = next(i["mac"] for n in lab_env.status()["nodes"] if n["name"] == "acme/nea-lan"
                   for i in n["interfaces"])
    # from the NEA's MAC, for the replica's address (the NEA also ARPs for its gateway)
    capture = netlab(lab_env, "capture", "acme/db", "-c", "1", "--filter",
                     f"ether src {nea_mac} and arp src host 192.168.10.11")
    try:
        err = wait_listening(capture)
        lab_env.netlab("failover", "acme/web")
        out, rest = capture.communicate(timeout=20)
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.communicate()
    assert capture.returncode == 0, err + rest
    assert f"{nea_mac} > ff:ff:ff:ff:ff:ff" in out
    assert "Request who-has 192.168.10.11 tell 192.168.10.11" in out


def wait_listening(capture: subprocess.Popen) -> str:
    """tcpdump's stderr up to "listening on": from then on its filter is in place."""
    deadline = time.monotonic() + 10
    err = ""
    while "listening on" not in err and time.monotonic() < deadline:
        line = capture.stderr.readline()
        if not line:
            break
        err += line if isinstance(line, str) else line.decode()
    assert "listening on" in err, err
    return err


def test_capture_writes_pcap_to_stdout(lab_env: LabEnv) -> None:
    lab_env.netlab("up")
    capture = subprocess.Popen(
        [*netlab_argv(), "capture", "acme/lan", "-c", "2", "-w", "-", "--filter", "icmp"],
        env=lab_env.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        wait_listening(capture)
        lab_env.lab_exec("acme/db", "ping", "-c", "3", "-i", "0.2", "192.168.10.13")
        pcap, _ = capture.communicate(timeout=20)
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.communicate()
    assert capture.returncode == 0
    read = subprocess.run(["tcpdump", "-r", "-", "-n"], input=pcap, capture_output=True,
                          check=True, timeout=10)
    lines = read.stdout.decode().splitlines()
    assert len(lines) == 2 and all("ICMP echo" in line for line in lines), lines


def test_graph_of_a_running_lab_colours_the_replica_in_failover(lab_env: LabEnv) -> None:
    lab_env.netlab("up")
    lab_env.netlab("vm", "fail", "acme/web")
    lab_env.netlab("failover", "acme/web")
    dot = lab_env.netlab("graph").stdout
    replica = re.search(r'^\s*"acme/web@sp" \[(.*)\];$', dot, re.M)
    assert replica and f'fillcolor="{STATE_COLORS["Failover"]}"' in replica[1]
    assert "dashed" not in replica[1]
    other = re.search(r'^\s*"acme/db@sp" \[(.*)\];$', dot, re.M)
    assert other and "dashed" in other[1]
    text = lab_env.netlab("graph", "--ascii").stdout
    assert re.search(r"acme/web@sp\s+192\.168\.10\.11\s+Failover, power on", text)


def test_status_watch_ends_cleanly_on_sigint(lab_env: LabEnv) -> None:
    lab_env.netlab("up")
    watch = netlab(lab_env, "status", "--watch", "--interval", "0.3")
    try:
        # Ctrl-C once the view has refreshed, not after a fixed delay: on a loaded machine
        # (a parallel test run) the command may still be starting after seconds.
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=lambda: [*map(lines.put, watch.stdout), lines.put(None)])
        reader.start()
        out, frames, deadline = [], 0, time.monotonic() + 60
        while frames < 2 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = lines.get(timeout=1)
                if line is None:
                    break
                out.append(line)
                frames += "VMs and replicas" in line
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=20)  # not communicate(): the reader owns stdout
        reader.join(timeout=20)
        err = watch.stderr.read()
        while (line := lines.get_nowait() if not lines.empty() else None) is not None:
            out.append(line)
    finally:
        if watch.poll() is None:  # a failed wait must not leave it refreshing for the run
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    assert "Traceback" not in err and "interrupted" not in err
    assert "".join(out).count("VMs and replicas") >= 2  # refreshed, not printed once
