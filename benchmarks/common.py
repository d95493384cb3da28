"""What the benchmarks in this folder share.

Every benchmark here runs as a script (``.venv/bin/python benchmarks/NAME.py``), so
this folder is first on ``sys.path`` and this module is imported as ``common``.
Importing it also makes ``netlab`` importable from a checkout where the package is
not installed, so a benchmark imports ``common`` before anything from ``netlab``.

It holds the parts whose behaviour must not drift between benchmarks: which
``netlab`` command is measured, how a run turns SIGTERM and a second Ctrl-C into an
orderly cleanup, how scratch namespaces are made and removed, how the machine is
described, and how a report lands in its own section of RESULTS.md without
touching the other benchmarks' sections.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
RESULTS_FILE = REPO / "benchmarks" / "RESULTS.md"
# Taken when a benchmark imports this module, i.e. at its start: the machine is shared,
# and a number means little without the load it was measured under.
LOAD_AT_START = os.getloadavg()
T = TypeVar("T")


def results_path(value: str) -> Path:
    """argparse type of --results: the file to update; an empty value is refused."""
    if not value.strip():
        raise argparse.ArgumentTypeError("needs a file, e.g. benchmarks/RESULTS.md (omit "
                                         "--results to only print the report)")
    return Path(value)

def add_results_option(parser: argparse.ArgumentParser, heading: str) -> None:
    """--results FILE: also write the report into FILE's ``## heading`` section."""
    parser.add_argument("--results", type=results_path, default=None,
                        help=f"also write the report into this file's '## {heading}' section")


try:
    import netlab  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(REPO))


# ----- the netlab command ------------------------------------------------------------


def netlab_argv() -> list[str]:
    """The argv prefix that runs the ``netlab`` CLI.

    The script beside this interpreter first (the venv's own install, what a user
    runs), then one on PATH, and only then ``python -m netlab.cli``, so that wall
    times include the same Python start a user pays.
    """
    beside = Path(sys.executable).with_name("netlab")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("netlab")
    return [found] if found else [sys.executable, "-m", "netlab.cli"]


def benchmark_command(script: str) -> str:
    """How this run was started, as a user would type it from the repository root.

    Reports show it so a number can be reproduced; the interpreter is written as
    ``.venv/bin/python`` whatever path was used, to keep RESULTS.md stable.
    """
    return shlex.join([".venv/bin/python", f"benchmarks/{script}", *sys.argv[1:]])


# ----- interrupts: the cleanup must always run -----------------------------------------


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt like Ctrl-C does.

    By default SIGTERM ends Python without unwinding, so ``finally`` blocks never
    run and a killed benchmark would leave namespaces and daemons behind.
    """

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Within the block, Ctrl-C is ignored: wrap the cleanup in it.

    Someone who pressed Ctrl-C once tends to press it again while the cleanup
    runs; that second press must not stop the cleanup half-way.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ----- scratch namespaces ----------------------------------------------------------------

NETNS_DIR = Path("/run/netns")


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Named namespaces whose name starts with `prefix`, sorted.

    Every benchmark names what it creates with a random prefix, so this finds all
    of a run's namespaces, also those a failed command left behind.
    """
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


def wait_until_idle(min_idle: float = 0.9, window: float = 0.2, timeout: float = 15.0) -> float:
    """Wait until the CPUs are idle for a window; return how long that took.

    Deleting namespaces returns before the kernel has torn them down (it finishes
    in a workqueue, ~1 s for 250 of them here): without this wait, that work lands
    in the next measurement, whichever it is.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        idle0, total0 = _cpu_times()
        time.sleep(window)
        idle1, total1 = _cpu_times()
        if total1 > total0 and (idle1 - idle0) / (total1 - total0) >= min_idle:
            break
    return time.monotonic() - started


def add_namespace(name: str) -> None:
    """Create network namespace `name` with its loopback up (raises RuntimeError).

    Plain iproute2 rather than netlab, so the scaffolding around a measurement does
    not depend on the code being measured.
    """
    for argv in (["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} failed: "
                               f"{(done.stderr or done.stdout).strip()}")


def delete_namespaces(names: Iterable[str]) -> None:
    """Delete the namespaces, ignoring those already gone; never raises.

    For cleanup: one ``ip -force -batch`` goes on past names that do not exist (or
    were never made), and is one process however many namespaces there are.
    """
    script = "".join(f"netns del {n}\n" for n in names)
    if script:
        subprocess.run(["ip", "-force", "-batch", "-"], input=script, text=True,
                       capture_output=True, check=False)


# ----- describing the machine -------------------------------------------------------------


def utc_now(seconds: bool = True) -> str:
    """The time now in UTC, as ``2026-01-31 12:34:56 UTC`` (without seconds: ``12:34``)."""
    return dt.datetime.now(dt.UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    )


def uname() -> str:
    """All of uname(2): system, host, kernel release and build, architecture."""
    return " ".join(os.uname())


def host_summary() -> str:
    """Host, system, kernel release and architecture: enough to tell machines apart."""
    u = platform.uname()
    return f"{u.node} {u.system} {u.release} {u.machine}"


def machine_lines() -> list[str]:
    """The ``date:``, ``uname:`` and ``nproc:`` lines that open a report.

    Numbers of two runs only compare on the same machine at a comparable moment;
    these lines say which machine and when.
    """
    return [
        f"date:     {utc_now()}",
        f"uname:    {uname()}",
        f"nproc:    {os.cpu_count()}",
    ]


def load_text(load: tuple[float, float, float] | None = None) -> str:
    """The 1, 5 and 15 minute load averages (now, or `load`), as ``uptime`` prints them."""
    return " ".join(f"{x:.2f}" for x in (load or os.getloadavg()))


def report_header(script: str) -> list[str]:
    """The lines that open every report: machine, load at start and end, and the command.

    The load at the end is read when this is called, so call it once measuring is done.
    """
    return [
        *machine_lines(),
        f"load:     {load_text(LOAD_AT_START)} at start, {load_text()} at end "
        "(1/5/15 min; other work on the machine slows what is measured)",
        f"command:  {benchmark_command(script)}",
    ]


# ----- RESULTS.md ----------------------------------------------------------------------------


def results_section(heading: str, machine: str, command: str, about: str, report: str) -> str:
    """The text of one ``## heading`` section of RESULTS.md, in the layout all share.

    `machine` describes the machine in one line, `command` is how the run was
    started, `about` says in a paragraph what was measured, and `report` is the
    benchmark's printed report, kept verbatim in a code block.
    """
    if not report.endswith("\n"):
        report += "\n"
    return (
        f"## {heading}\n\n"
        f"Date: {utc_now(seconds=False)}  \n"
        f"Machine: {machine}  \n"
        f"Command: `{command}` (as root)\n\n"
        f"{about}\n\n"
        f"```\n{report}```\n"
    )


def replace_results_section(path: Path, heading: str, section: str) -> None:
    """Put `section` in place of the ``## heading`` section of `path`, keeping the rest.

    Each benchmark owns one section and runs at its own time; rewriting only that
    section keeps the others' committed numbers. A missing section is appended, a
    missing file is created.
    """
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def write_report(path: Path, heading: str, script: str, about: str, report: str) -> None:
    """Put `report` into the ``## heading`` section of `path`, in the layout all share.

    The section names the machine (with the load at the start), the command as run
    from the repository root, and says in `about` what was measured.
    """
    section = results_section(
        heading,
        machine=f"{host_summary()}, {os.cpu_count()} CPUs, load {LOAD_AT_START[0]:.2f} at start",
        command=benchmark_command(script),
        about=about,
        report=report,
    )
    replace_results_section(path, heading, section)


# ----- a scratch lab driven through the CLI ---------------------------------------------------


class ScratchLab:
    """A lab of its own (``<letter><hex>``) in a temporary NETLAB_STATE_DIR.

    The benchmark drives it through the ``netlab`` CLI, as a user would, and
    `remove` takes it down and deletes its state directory whatever happened.
    """

    def __init__(self, letter: str, purpose: str) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"netlab-bench-{purpose}-"))
        self.lab = f"{letter}{secrets.token_hex(3)}"
        self.env = {**os.environ, "NETLAB_STATE_DIR": str(self.state_dir),
                    "NETLAB_LAB": self.lab}

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``netlab ARGS`` on this lab; a failure raises RuntimeError with its stderr."""
        done = subprocess.run([*netlab_argv(), *args], env=self.env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, check=False, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"netlab {' '.join(args)}: {done.stderr.strip()}")
        return done

    def remove(self) -> list[str]:
        """Down, cleanup, state directory deleted; returns what is left (should be nothing)."""
        for verb in ("down", "cleanup"):
            subprocess.run([*netlab_argv(), verb, "--lab", self.lab], env=self.env,
                           capture_output=True, check=False, timeout=120)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        left = namespaces_with_prefix(f"{self.lab}-")
        return [f"namespaces left behind: {' '.join(left)}"] if left else []


def is_root(script: str) -> bool:
    """Whether we run as root; if not, says so in one line (benchmarks make namespaces)."""
    if os.geteuid() == 0:
        return True
    print(f"benchmarks/{script} needs root (it creates network namespaces)", file=sys.stderr)
    return False


def run_then_sweep(script: str, work: Callable[[], T], sweep: Callable[[], list[str]]) -> T | None:
    """Run `work` and return what it returns; `sweep` removes what the run made, always.

    SIGTERM counts as Ctrl-C, and a second Ctrl-C does not stop the sweep. What the
    sweep could not remove (its list of problems) is printed. Interrupted: says so
    and returns None (the caller exits with 130).
    """
    try:
        with sigterm_as_keyboard_interrupt():
            return work()
    except KeyboardInterrupt:
        print(f"{script}: interrupted; removing what it created", file=sys.stderr)
        return None
    finally:
        with sigint_ignored():
            problems = sweep()
        for problem in problems:
            print(f"{script}: {problem}", file=sys.stderr)


def measure_in(lab: ScratchLab, script: str, measure: Callable[[], str]) -> str | None:
    """Run `measure` and return its report; the lab is removed in any case (run_then_sweep)."""
    return run_then_sweep(script, measure, lab.remove)
