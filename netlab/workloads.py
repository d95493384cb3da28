"""What runs inside VMs and edges: a small HTTP server per VM, DHCP server and client.

A VM's workload is busybox httpd serving the VM's disk directory: ~0.3 MB per
VM, so a 100-VM lab starts no Python interpreter per VM.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from netlab.errors import LabError
from netlab.plan import DhcpServer
from netlab.processes import ProcessRecord, start_process
from netlab.run import require_tool, run

HTTP_PORT = 80
DHCP_LEASE_TIME = "12h"


def start_http_server(name: str, netns: str, document_root: Path, log_dir: Path) -> ProcessRecord:
    """busybox httpd in the foreground (so its pid is the one recorded) on port 80."""
    busybox = require_tool("busybox")
    argv = [busybox, "httpd", "-f", "-p", str(HTTP_PORT), "-h", str(document_root)]
    return start_process(name, argv, netns=netns, log_path=log_dir / f"{_file_name(name)}.log")


def start_dhcp_server(name: str, server: DhcpServer, run_dir: Path, log_dir: Path) -> ProcessRecord:
    """dnsmasq as a DHCP server only (no DNS) on one LAN port of the edge."""
    dnsmasq = require_tool("dnsmasq")
    leases = run_dir / f"{_file_name(name)}.leases"
    argv = [
        dnsmasq,
        "--keep-in-foreground",
        "--port=0",  # no DNS: the lab has no resolver to offer
        "--no-resolv",
        "--no-hosts",
        f"--interface={server.interface}",
        "--bind-interfaces",
        f"--dhcp-range={server.range_start},{server.range_end},{server.netmask},{DHCP_LEASE_TIME}",
        f"--dhcp-option=option:router,{server.router}",
        "--dhcp-authoritative",
        # dnsmasq pings an address before offering it, 3 s per lease (docs/architecture.md#facts);
        # an emulated LAN has no stray hosts to protect.
        "--no-ping",
        f"--dhcp-leasefile={leases}",
        "--pid-file=",
        "--user=root",
        "--log-dhcp",
    ]
    log_path = log_dir / f"{_file_name(name)}.log"
    record = start_process(name, argv, netns=server.netns, log_path=log_path)
    _wait_for_udp_port(server.netns, 67)
    return record


def lease_address(netns: str, ifname: str, run_dir: Path, attempts: int = 5) -> str:
    """Run a real DHCP client (busybox udhcpc) once; return the leased address."""
    busybox = require_tool("busybox")
    # udhcpc executes its event script: keep an executable copy whatever the install mode.
    script_path = run_dir / "udhcpc.script"
    if not script_path.exists():
        text = resources.files("netlab").joinpath("data/udhcpc.script").read_text()
        script_path.write_text(text)
        script_path.chmod(0o755)
    done = run(
        [busybox, "udhcpc", "-i", ifname, "-n", "-q", "-f", "-t", str(attempts), "-T", "1",
         "-s", str(script_path)],
        netns=netns,
        check=False,
        timeout=attempts * 3 + 5,
    )
    for line in done.stdout.splitlines() + done.stderr.splitlines():
        if "lease of" in line and "obtained" in line:
            return line.split("lease of", 1)[1].split()[0]
    raise LabError(f"no DHCP lease for {ifname} in {netns}: {done.stderr.strip()[-200:]}")


def _wait_for_udp_port(netns: str, port: int, timeout: float = 2.0) -> None:
    # /proc/net/udp follows the main thread's namespace; read it through the namespace instead.
    deadline = time.monotonic() + timeout
    needle = f":{port:04X} "
    while time.monotonic() < deadline:
        table = run(["cat", "/proc/net/udp"], netns=netns, check=False).stdout
        if needle in table:
            return
        time.sleep(0.01)


def _file_name(name: str) -> str:
    return name.replace("/", ".").replace(":", "-").replace("@", "_")
