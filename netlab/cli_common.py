"""What every netlab command shares: options, error reporting, exit codes, progress.

netlab.cli and the modules of netlab/commands import this module; none of them
imports another (no cycle). Scapy is never imported here.

Exit codes (also in the README, "Conventions"):

* 0 ok, including an idempotent no-op ("lab x is not up (nothing to take down)");
* 1 the operation failed or was refused, or the user cancelled it;
* 2 bad usage: an unknown name (node, VM, tenant, lab), a bad option, a broken topology;
* 70 internal error (a bug): one line, the traceback in a log file;
* 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from netlab.errors import Cancelled, NetlabError, NothingToDo, NotRoot

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE
EXIT_INTERRUPTED = 130

_JSON = "netlab.json"
_LAB = "netlab.lab"
_NO_ROOT = "_netlab_runs_without_root"


# ----- options --------------------------------------------------------------------


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Option callback: keep the value in ctx.meta, which every context of a run shares,
    so that errors raised before or after the command know --json and --lab."""

    def callback(ctx: click.Context, _: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False:
            earlier = ctx.meta.get(key)
            if key == _LAB and earlier is not None and earlier != value:
                raise click.UsageError(f"--lab given twice: {earlier!r} and {value!r}")
            ctx.meta[key] = value
        return value

    return callback


def _complete_labs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from netlab.state import state_root

    try:
        return sorted(p.name for p in state_root().iterdir()
                      if p.is_dir() and p.name.startswith(incomplete))
    except OSError:
        return []


def lab_option(func: F) -> F:
    return click.option(
        "--lab", "lab_name", default=None, metavar="NAME", callback=_remember(_LAB),
        shell_complete=_complete_labs,
        help="Lab name (default: $NETLAB_LAB, else 'demo'); also before the command.",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, callback=_remember(_JSON),
                        help="Print JSON (errors too, as one object).")(func)


def yes_option(func: F) -> F:
    return click.option("--yes", "-y", is_flag=True,
                        help="Do not ask (the warning is still printed).")(func)


def lab_name_in_use(lab_name: str | None = None) -> str:
    """--lab after the command, else --lab before it, else $NETLAB_LAB, else 'demo'."""
    from netlab.state import default_lab_name

    if lab_name is not None:
        return lab_name
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get(_LAB):
        return str(ctx.meta[_LAB])
    return default_lab_name()


def _lab(lab_name: str | None = None) -> Any:
    from netlab.lab import Lab

    return Lab(lab_name_in_use(lab_name))


def lab_flag(lab: Any) -> str:
    """' --lab NAME' when the lab is not the one netlab picks without --lab, for hints."""
    from netlab.state import default_lab_name

    return "" if lab.name == default_lab_name() else f" --lab {lab.name}"


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


print_json = _print_json


def _progress(as_json: bool) -> Callable[[str], None]:
    """Step lines on stderr (with a spinner on a terminal; see netlab.progress_view)."""
    from netlab.progress_view import step_printer

    ctx = click.get_current_context(silent=True)
    # the command's context closes when it ends, on success or error: the spinner stops
    return step_printer(quiet=as_json, on_close=ctx.call_on_close if ctx else None)


progress = _progress


def _confirm_discard(message: str, yes: bool) -> None:
    """Commands that discard data or cannot be undone ask on a terminal; scripts get the
    warning and go on. Call it only once the state checks have passed."""
    click.echo(f"warning: {message}", err=True)
    if yes or not sys.stdin.isatty():
        return
    if not click.confirm("continue?", default=False, err=True):
        raise Cancelled("cancelled; nothing changed")


confirm_discard = _confirm_discard


class FullHelpGroup(click.Group):
    """A group whose help lists each command's summary whole, wrapped, never cut."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                # click cuts summaries to fit one line; ours are written to be read whole
                rows.append((name, cmd.get_short_help_str(limit=300)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# ----- errors ---------------------------------------------------------------------


def usage_error(exc: click.UsageError) -> None:
    """Bad usage in one line (click prints three), exit 2; JSON too when --json was given."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        raise exc  # a group without its command: its help is the answer
    where = exc.ctx.command_path if exc.ctx is not None else "netlab"
    message = _one_line(f"{exc.format_message().rstrip('.')} (see '{where} --help')")
    args = sys.argv[1:]
    before_command = args[: args.index("--")] if "--" in args else args
    if _json_wanted(None) or "--json" in before_command:
        _print_json({"error": message, "kind": "UsageError", "exit_code": EXIT_USAGE})
    click.echo(f"netlab: {message}", err=True)
    sys.exit(EXIT_USAGE)


def runs_without_root(func: F) -> F:
    """Mark a command that needs no root (put it under @reports_errors)."""
    setattr(func, _NO_ROOT, True)
    return func


def reports_errors(func: F) -> F:
    """Refuse non-root users in one line, and turn every error into one line + exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if not getattr(func, _NO_ROOT, False) and os.geteuid() != 0:
                # checked here, before importing the lab's heavy modules
                raise NotRoot("netlab creates namespaces, links and mounts and must run as "
                              "root (try: sudo netlab ...)")
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BaseException as exc:  # every error ends in one line
            handle_error(exc, as_json=kwargs.get("as_json"))

    return wrapper  # type: ignore[return-value]


def _one_line(text: str) -> str:
    from netlab.topology.loader import printable

    return printable(" ".join(text.split()))


def _json_wanted(as_json: bool | None) -> bool:
    if as_json is not None:
        return bool(as_json)
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_JSON))


def handle_error(exc: BaseException, as_json: bool | None = None) -> None:
    """Report `exc` as netlab reports every error, and exit with its code. Never returns."""
    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, BrokenPipeError):  # `netlab status | head`: the reader had enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_OK)
    if isinstance(exc, NothingToDo):
        message, code, kind = _one_line(str(exc)), EXIT_OK, "nothing to do"
        if _json_wanted(as_json):
            _print_json({"result": "nothing to do", "message": message})
        else:
            click.echo(message)
        sys.exit(code)
    if isinstance(exc, NetlabError):
        message, code, kind = _one_line(str(exc)), exc.exit_code, type(exc).__name__
    elif isinstance(exc, KeyboardInterrupt):
        message, code, kind = "interrupted", EXIT_INTERRUPTED, "Interrupted"
    else:
        message, code, kind = _internal_error_line(exc), EXIT_INTERNAL, "InternalError"
    if _json_wanted(as_json):
        _print_json({"error": message, "kind": kind, "exit_code": code})
    click.echo(f"netlab: {message}", err=True)
    sys.exit(code)


def _command_name() -> str:
    ctx = click.get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "netlab"


def _internal_error_line(exc: BaseException) -> str:
    """'internal error in netlab X: ...; details in LOG' (and what was rolled back)."""
    log = write_error_log(exc)
    what = f"internal error in '{_command_name()}': {type(exc).__name__}: {exc}"
    rolled = _rolled_back()
    if rolled:
        what += f"; {rolled}"
    where = f"the traceback is in {log}" if log else "no log file could be written"
    return _one_line(f"{what}; {where}")


def _rolled_back() -> str:
    """What the failed command rolled back, from the lab's journal (if it says so)."""
    try:
        lab = _lab()
        events = lab.dir.events() if lab.dir.root.exists() else []
    except Exception:  # the report of an error must not fail itself
        return ""
    last = events[-1] if events else {}
    name = str(last.get("event", ""))
    if name.endswith(":rolled-back"):
        vms = ", ".join(last.get("vms") or [])
        return f"{name.removesuffix(':rolled-back')} of {vms} rolled back" if vms else \
            f"{name.removesuffix(':rolled-back')} rolled back"
    return ""


def error_log_dirs() -> list[Path]:
    """Where an internal error's traceback goes, first that works: the lab's logs/,
    the state root's .logs/, then a private directory under /tmp."""
    dirs = []
    try:
        lab = _lab()
        if lab.dir.root.is_dir():
            dirs.append(lab.dir.root / "logs")
    except Exception:
        pass
    from netlab.state import state_root

    dirs.append(state_root() / ".logs")  # no lab can be named so
    dirs.append(Path("/tmp") / f"netlab-{os.geteuid()}")
    return dirs


def _private_dir(path: Path) -> bool:
    """Create `path` (0700) and make sure it is ours and no symlink (it may be in /tmp)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and os.access(path, os.W_OK)


def write_error_log(exc: BaseException) -> Path | None:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"netlab internal error at {datetime.datetime.now().isoformat()}\n"
            f"command: {' '.join(sys.argv)}\n\n"
            + "".join(traceback.format_exception(exc)))
    for directory in error_log_dirs():
        if not _private_dir(directory):
            continue
        path = directory / f"error-{stamp}-{os.getpid()}.log"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        except OSError:
            continue
        return path
    return None
