"""netlab.net.probes without root: the one reader of ping output, curl's status, ARP rows."""

from __future__ import annotations

import json

import pytest

from netlab.net import probes

# Output formats met in the wild, verbatim.
IPUTILS_OK = """\
PING 192.168.10.11 (192.168.10.11) 56(84) bytes of data.
64 bytes from 192.168.10.11: icmp_seq=1 ttl=64 time=0.061 ms
64 bytes from 192.168.10.11: icmp_seq=2 ttl=64 time=0.045 ms

--- 192.168.10.11 ping statistics ---
2 packets transmitted, 2 received, 0% packet loss, time 1001ms
rtt min/avg/max/mdev = 0.045/0.053/0.061/0.008 ms
"""
IPUTILS_LOST = """\
PING 192.168.10.20 (192.168.10.20) 56(84) bytes of data.

--- 192.168.10.20 ping statistics ---
1 packets transmitted, 0 received, 100% packet loss, time 0ms
"""
IPUTILS_ERRORS = """\
PING 192.168.10.77 (192.168.10.77) 56(84) bytes of data.
From 192.168.10.12 icmp_seq=1 Destination Host Unreachable

--- 192.168.10.77 ping statistics ---
3 packets transmitted, 2 received, +1 errors, 33.3333% packet loss, time 2003ms
rtt min/avg/max/mdev = 0.040/0.050/0.060/0.010 ms
"""
BUSYBOX_OK = """\
PING 192.168.10.11 (192.168.10.11): 56 data bytes
64 bytes from 192.168.10.11: seq=0 ttl=64 time=0.092 ms
64 bytes from 192.168.10.11: seq=1 ttl=64 time=0.067 ms

--- 192.168.10.11 ping statistics ---
2 packets transmitted, 2 packets received, 0% packet loss
round-trip min/avg/max = 0.067/0.079/0.092 ms
"""
BUSYBOX_LOST = """\
PING 192.168.10.20 (192.168.10.20): 56 data bytes

--- 192.168.10.20 ping statistics ---
1 packets transmitted, 0 packets received, 100% packet loss
"""


@pytest.mark.parametrize(("output", "sent", "got", "rtt"), [
    (IPUTILS_OK, 2, 2, 0.053),
    (IPUTILS_LOST, 1, 0, None),
    (IPUTILS_ERRORS, 3, 2, 0.05),
    (BUSYBOX_OK, 2, 2, 0.079),
    (BUSYBOX_LOST, 1, 0, None),
    ("ping: connect: Network is unreachable\n", 0, 0, None),
    ("", 0, 0, None),
])
def test_ping_summary_of_iputils_and_busybox(output: str, sent: int, got: int,
                                             rtt: float | None) -> None:
    summary = probes.parse_ping(output)
    assert (summary.transmitted, summary.received, summary.rtt_ms) == (sent, got, rtt)
    assert summary.ok is (got > 0)


def test_curl_status_and_body() -> None:
    body = "<p>tenant acme, vm web</p>\n"
    assert probes.parse_curl(body + "\nnetlab-http-status:200") == (200, body)
    assert probes.parse_curl("\nnetlab-http-status:000") == (None, "")
    assert probes.parse_curl("") == (None, "")
    assert "-w" in probes.curl_argv("http://x/", with_status=True)


def test_arp_rows_keep_every_mac_in_order_and_the_errors() -> None:
    jobs = [probes.ArpJob("n1", "v1", "192.168.10.11"), probes.ArpJob("n2", "v2", "10.0.0.1")]
    rows = [{"macs": ["72:b4:28:4d:cc:b3", "9a:e0:db:22:f6:1b"]},
            {"macs": [], "error": "n2 v2: no such interface"}]
    first, second = probes.arp_answers(jobs, 0, json.dumps(rows), "")
    assert first.conflict and first.macs == rows[0]["macs"] and not first.error
    assert not second.macs and "no such interface" in second.error


def test_a_failed_arp_child_is_an_error_not_an_empty_answer() -> None:
    jobs = [probes.ArpJob("n1", "v1", "192.168.10.11")]
    with pytest.raises(probes.NetlabError, match="boom"):
        probes.arp_answers(jobs, 1, "", "Traceback...\nRuntimeError: boom\n")


def test_the_arp_probe_takes_its_jobs_as_one_argument() -> None:
    argv = probes.arp_probe_argv([probes.ArpJob("n1", "v1", "192.168.10.11")], window=0.5)
    assert argv[1:3] == ["-m", "netlab.net.probes"]
    assert json.loads(argv[3]) == {"window": 0.5, "jobs": [["n1", "v1", "192.168.10.11"]]}
