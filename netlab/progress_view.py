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

import io
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _plain(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


class _StopsSpinner(io.TextIOBase):
    """sys.stdout/sys.stderr while the spinner runs: the first write ends the spinner.

    rich's own redirection (Live(redirect_stdout=True)) does not catch click.echo,
    which writes past rich's proxy; and a command's own output (the result line, a
    warning) should stand on a clean line anyway.
    """

    def __init__(self, target: TextIO, stop: Callable[[], None]) -> None:
        self.target, self.stop = target, stop

    def write(self, text: str) -> int:  # type: ignore[override]
        self.stop()
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.target.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.target.errors


class SpinnerSteps:
    """Step lines plus a spinner on a terminal; stop() ends the spinner (idempotent)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.stderr = sys.stderr
        # the real stderr, not whatever sys.stderr is while the spinner runs
        self.console = Console(file=self.stderr, emoji=False, highlight=False)
        self.started = time.monotonic()
        self.live: Any = None
        self.saved: tuple[TextIO, TextIO] | None = None

    def __call__(self, line: str) -> None:
        from rich.spinner import Spinner
        from rich.text import Text

        elapsed = time.monotonic() - self.started
        # one line only: a wrapped spinner leaves a half-erased line behind on narrow terminals
        room = max(10, self.console.width - 4)
        short = line if len(line) <= room else line[: room - 1] + "…"
        spinner = Spinner("dots", Text(f" {short}", style="dim"), style="cyan")
        if self.live is None:
            from rich.live import Live

            self.console.print(Text.assemble((f"  {elapsed:6.2f}s ", "dim"), line))
            self.live = Live(spinner, console=self.console, transient=True,
                             refresh_per_second=10, redirect_stdout=False,
                             redirect_stderr=False)
            self.live.start()
            self.saved = (sys.stdout, sys.stderr)
            sys.stdout = _StopsSpinner(sys.stdout, self.stop)
            sys.stderr = _StopsSpinner(sys.stderr, self.stop)
        else:
            self.live.console.print(Text.assemble((f"  {elapsed:6.2f}s ", "dim"), line))
            self.live.update(spinner, refresh=True)

    def stop(self) -> None:
        if self.live is None:
            return
        live, self.live = self.live, None
        if self.saved is not None:
            sys.stdout, sys.stderr = self.saved
            self.saved = None
        live.stop()


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
