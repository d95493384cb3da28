"""How the CLI shows the steps of long commands (`up`, `failover`, `down`, ...).

Operations report steps through a plain callback (``progress(line)``), never by
printing; this module decides how a line looks:

* stderr is a terminal: each step on its own line with the seconds since the
  command started, and a spinner under them naming the last step, so a silent
  phase (plumbing 20 namespaces, starting workloads) still shows that netlab
  works; the spinner disappears when the command ends;
* otherwise (CI logs, pipes): the plain line, as it always was;
* ``--json``: nothing, stdout carries the result and stderr stays quiet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _plain(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


class SpinnerSteps:
    """Step lines plus a spinner on a terminal; stop() ends the spinner (idempotent)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, emoji=False, highlight=False)
        self.started = time.monotonic()
        self.live: Any = None

    def __call__(self, line: str) -> None:
        from rich.spinner import Spinner
        from rich.text import Text

        elapsed = time.monotonic() - self.started
        self.console.print(Text.assemble((f"  {elapsed:6.2f}s ", "dim"), line))
        spinner = Spinner("dots", Text(f" {line}", style="dim"), style="cyan")
        if self.live is None:
            from rich.live import Live

            # stdout is redirected above the spinner only when it shares the terminal;
            # a piped stdout must stay exactly what the command prints
            self.live = Live(spinner, console=self.console, transient=True,
                             refresh_per_second=10, redirect_stdout=sys.stdout.isatty(),
                             redirect_stderr=True)
            self.live.start()
        else:
            self.live.update(spinner)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def step_printer(quiet: bool = False, on_close: Callable[[Callable[[], None]], Any] | None = None
                 ) -> Progress:
    """The progress callback for a command; `on_close` registers the spinner's stop.

    Without `on_close` (nothing would stop a spinner) a terminal gets plain lines.
    """
    if quiet:
        return _quiet
    if on_close is None or not sys.stderr.isatty():
        return _plain
    steps = SpinnerSteps()
    on_close(steps.stop)
    return steps
