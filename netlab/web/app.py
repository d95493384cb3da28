"""The ASGI app of `netlab web`: one page, a snapshot, a stream of snapshots, actions.

Routes:

* ``GET /`` the page; ``/static/...`` its script, stylesheet and cytoscape;
* ``GET /api/snapshot`` what the page shows, as JSON (netlab.web.snapshot);
* ``GET /api/stream`` server-sent events: a snapshot each time it changes;
* ``POST /api/action`` ``{"command": "failover", "vm": "acme/web"}``: runs
  ``netlab failover acme/web --json`` in a subprocess; 403 unless the server was
  started with --allow-actions.

A Watcher on the main thread stats the lab's state.json, events.jsonl and
topology.yaml every POLL_SECONDS (three stat calls cost microseconds, and
inotify instances are scarce on a host running many wireguard-go) and rebuilds
the snapshot when one changes: Lab.status() lists interfaces over netlink,
which works only on the main thread, outside a running asyncio loop (pyroute2
runs its own). So uvicorn serves from a thread of its own, and the Hub on its
event loop hands each snapshot to every open stream. The tunnel probes
(nea_health.connectivity: a ping through each tunnel) run in a third thread every
PROBE_SECONDS and never touch netlink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from netlab.web import snapshot

STATIC = Path(__file__).parent / "static"
POLL_SECONDS = 0.25
PROBE_SECONDS = 3.0  # nea_health.connectivity pings through the tunnel: not more often
KEEPALIVE_SECONDS = 15.0
ACTION_TIMEOUT = 600.0
# The page's buttons; each runs the CLI command of the same name.
ACTIONS = ("failover", "undo", "failback")
# Commands that discard data ask on a terminal; the page asked already.
CONFIRMED_BY_PAGE = {"undo": "--yes"}
SECURITY_HEADERS = {
    # cytoscape sets styles of its own elements
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Hub:
    """The latest snapshot, shared by every page; lives on the server's event loop."""

    def __init__(self, lab: str, allow_actions: bool) -> None:
        self.lab = lab
        self.allow_actions = allow_actions
        self.snapshot: dict[str, Any] = {"lab": lab, "up": False, "message": "reading the lab"}
        self.version = 0
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tick: asyncio.Event | None = None

    def started(self) -> None:
        """Called on the event loop when the server starts."""
        self.loop = asyncio.get_running_loop()
        self._tick = asyncio.Event()

    def set(self, data: dict[str, Any]) -> None:
        """A new snapshot (on the event loop): wake every stream."""
        data["actions"] = list(ACTIONS) if self.allow_actions else []
        self.snapshot = data
        self.version += 1
        if self._tick is not None:
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()

    def set_threadsafe(self, data: dict[str, Any]) -> None:
        """A new snapshot from the watcher's thread."""
        if self.loop is None:
            self.snapshot = data  # nobody can be streaming yet
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
            self.loop.call_soon_threadsafe(self.set, data)

    async def changed(self, seen: int, timeout: float) -> bool:
        """Wait until the version differs from `seen` (True) or `timeout` passes (False)."""
        tick = self._tick
        if self.version != seen or self.stopping or tick is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tick.wait(), timeout)
            return True
        return False

    def stop(self) -> None:
        self.stopping = True
        if self._tick is not None:
            self._tick.set()


class Watcher:
    """Rebuilds the snapshot when the lab's files change (main thread) and probes tunnels.

    netlab's netlink code (pyroute2) runs its own event loop on the calling thread
    and enters namespaces in process: it needs the main thread and no running
    asyncio loop there, so the web server runs in a thread of its own.
    """

    def __init__(self, lab: str, publish: Any) -> None:
        self.lab = lab
        self.publish = publish
        self.probes: dict[str, dict[str, Any]] = {}
        self.tunnels_on: list[str] = []
        self.rebuild = threading.Event()
        self.probe_now = threading.Event()
        self._lock = threading.Lock()

    def _files(self) -> list[Path]:
        from netlab.state import LabDir

        lab_dir = LabDir.of(self.lab)
        return [lab_dir.state_file, lab_dir.events_file, lab_dir.topology_file]

    def signature(self) -> tuple[Any, ...]:
        out: list[Any] = []
        for path in self._files():
            try:
                st = path.stat()
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def build(self) -> dict[str, Any]:
        with self._lock:
            probes = dict(self.probes)
        try:
            data = snapshot.build(self.lab, probes)
        except Exception as exc:  # the page says it; the server goes on watching
            data = {"lab": self.lab, "time": time.time(), "up": False,
                    "message": f"cannot read lab {self.lab}: {exc}"}
        on = [k for k, t in data.get("tunnels", {}).items() if t.get("power") == "on"]
        if set(on) - set(self.tunnels_on):
            self.probe_now.set()  # a pair just came up: probe it without waiting
        self.tunnels_on = on
        return data

    def run(self, stop: threading.Event, alive: Any) -> None:
        """Main thread: stat the files every POLL_SECONDS, rebuild on a change."""
        last = None
        while alive() and not stop.is_set():
            now = self.signature()
            if now != last or self.rebuild.is_set():
                # stat before reading: a write during the build changes the signature
                # again, and the loop rebuilds at once instead of sleeping first
                last = now
                self.rebuild.clear()
                self.publish(self.build())
                continue
            stop.wait(POLL_SECONDS)

    def probe_forever(self, stop: threading.Event) -> None:
        """Worker thread: nea_health.connectivity (pings and `wg show`, never netlink)."""
        from netlab import nea_health
        from netlab.lab import Lab

        while not stop.is_set():
            self.probe_now.wait(PROBE_SECONDS)
            self.probe_now.clear()
            if stop.is_set() or not self.tunnels_on:
                continue
            lab = Lab(self.lab)
            results = {}
            for key in list(self.tunnels_on):
                try:
                    info = nea_health.connectivity(lab, key)
                except Exception as exc:  # the lab went down under the probe
                    info = {"power": "on", "connectivity": "unknown", "detail": str(exc)}
                info["checked"] = time.time()
                results[key] = info
            with self._lock:
                before = {k: _seen(self.probes.get(k, {})) for k in results}
                self.probes.update(results)
            if before != {k: _seen(v) for k, v in results.items()}:
                self.rebuild.set()


def _seen(probe: dict[str, Any]) -> tuple[Any, ...]:
    return (probe.get("power"), probe.get("connectivity"), probe.get("latest_handshake"),
            probe.get("detail"))


# ----- routes --------------------------------------------------------------------------


def _hub(request: Request) -> Hub:
    return request.app.state.hub


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


async def current(request: Request) -> Response:
    return JSONResponse(_hub(request).snapshot, headers=SECURITY_HEADERS)


async def stream(request: Request) -> Response:
    hub = _hub(request)

    async def events() -> AsyncIterator[str]:
        seen = -1
        while not hub.stopping:
            if hub.version != seen:
                seen = hub.version
                yield f"data: {json.dumps(hub.snapshot, default=str)}\n\n"
            elif not await hub.changed(seen, KEEPALIVE_SECONDS):
                yield ": keepalive\n\n"  # proxies and browsers drop silent streams

    headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "message": message}, status_code=status,
                        headers=SECURITY_HEADERS)


def _same_origin(request: Request) -> bool:
    """A page of another site may POST to localhost; its Origin then names that site."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


async def action(request: Request) -> Response:
    hub = _hub(request)
    if not hub.allow_actions:
        return _refuse(403, "actions are disabled: this page is read-only (start it with "
                            "'netlab web --allow-actions' to allow failover, undo, failback)")
    if not _same_origin(request):
        return _refuse(403, "refused: the request comes from another site")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _refuse(415, "send JSON: {\"command\": ..., \"vm\": ...}")
    try:
        body = await request.json()
        command, vm = str(body["command"]), str(body["vm"])
    except (ValueError, KeyError, TypeError):
        return _refuse(400, "send JSON: {\"command\": ..., \"vm\": ...}")
    if command not in ACTIONS:
        return _refuse(400, f"unknown action {command!r} (actions: {', '.join(ACTIONS)})")
    return JSONResponse(await run_action(hub.lab, command, vm), headers=SECURITY_HEADERS)


def action_argv(lab: str, command: str, vm: str) -> list[str]:
    """The CLI command an action runs: the same code, refusals and messages as a shell."""
    argv = [sys.executable, "-m", "netlab.cli", command, "--lab", lab, "--json"]
    if command in CONFIRMED_BY_PAGE:
        argv.append(CONFIRMED_BY_PAGE[command])
    return [*argv, "--", vm]  # a VM name never becomes an option


async def run_action(lab: str, command: str, vm: str) -> dict[str, Any]:
    """Run the CLI in a subprocess (netlink stays on a main thread) and report it."""
    argv = action_argv(lab, command, vm)
    try:
        done = await asyncio.to_thread(
            subprocess.run, argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            env=os.environ.copy(), timeout=ACTION_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "exit_code": None, "command": f"netlab {command} {vm}",
                "message": f"netlab {command} {vm} did not finish in {ACTION_TIMEOUT:.0f} s",
                "warnings": [], "result": None}
    return action_report(command, vm, done.returncode, done.stdout, done.stderr)


def action_report(command: str, vm: str, code: int, out: str, err: str) -> dict[str, Any]:
    """What the page says about a finished command: the CLI's own lines."""
    lines = err.splitlines()
    warnings = [line.removeprefix("warning: ") for line in lines if line.startswith("warning: ")]
    result: Any = None
    with contextlib.suppress(ValueError):
        result = json.loads(out or "null")
    if code == 0 and isinstance(result, dict):
        warnings += result.get("warnings", [])
        message = f"{command}: {', '.join(result.get('vms', [vm]))} done"
        if result.get("recovery_seconds") is not None:
            message += f"; recovery time {result['recovery_seconds']:.3f} s"
    else:
        errors = [line for line in lines if line.startswith("netlab: ")]
        message = errors[-1] if errors else (lines[-1] if lines else f"exit status {code}")
    return {"ok": code == 0, "exit_code": code, "command": f"netlab {command} {vm}",
            "message": message, "warnings": list(dict.fromkeys(warnings)), "result": result}


def loopback_host(host: str) -> bool:
    """Whether a Host header names a loopback address ("127.0.0.1:8080", "[::1]:80", ...)."""
    import ipaddress

    name = host if host.endswith("]") else host.rsplit(":", 1)[0]
    name = name.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class LoopbackHostOnly:
    """Refuse requests whose Host is not a loopback name (ASGI middleware).

    Stops DNS rebinding: another site whose name resolves to 127.0.0.1 would
    otherwise be "same origin" for the browser, read the lab and post actions.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if not loopback_host(host):
                refused = _refuse(400, f"refused: Host {host!r} is not a loopback name")
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(hub: Hub, loopback_only: bool = True) -> Starlette:
    """The app; `loopback_only` False accepts any Host (a server bound with --allow-remote)."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.hub = hub
        hub.started()
        try:
            yield
        finally:
            hub.stop()

    routes = [
        Route("/", page),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/snapshot", current),
        Route("/api/stream", stream),
        Route("/api/action", action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    from starlette.middleware import Middleware

    middleware = [Middleware(LoopbackHostOnly)] if loopback_only else []
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)


def serve(lab: str, sock: Any, allow_actions: bool, remote: bool = False) -> None:
    """Serve the page on a bound socket until SIGINT/SIGTERM; call on the main thread.

    `remote`: bound to a non-loopback address (--allow-remote), any Host name is fine.
    """
    import signal

    import uvicorn

    hub = Hub(lab, allow_actions)
    config = uvicorn.Config(
        create_app(hub, loopback_only=not remote), log_level="warning", access_log=False,
        lifespan="on",
        # open event streams never end by themselves: do not wait for them on shutdown
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)  # in a thread it installs no signal handlers
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    watcher = Watcher(lab, hub.set_threadsafe)
    hub.set(watcher.build())
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="netlab-web", daemon=True)
    prober = threading.Thread(target=watcher.probe_forever, args=(stop,),
                              name="netlab-web-probe", daemon=True)
    thread.start()
    prober.start()
    try:
        watcher.run(stop, thread.is_alive)
    finally:
        stop.set()
        watcher.probe_now.set()
        if hub.loop is not None:
            # end the open event streams first: uvicorn waits for them, then cancels
            # them with a logged traceback
            with contextlib.suppress(RuntimeError):
                hub.loop.call_soon_threadsafe(hub.stop)
        server.should_exit = True
        thread.join(timeout=5)
