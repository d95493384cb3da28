"""`netlab web` in a real headless browser (issue 19, "done when").

Debian's chromium, driven by Playwright through executable_path (Playwright's
own browser download is not reachable here). Each test brings up its own
default lab, starts `netlab web --port 0` (the server picks a free port and
prints its URL) and ends the server by its pid at teardown.

The update latency is measured, not bounded by the test's own choice: the page
records (Date.now()) when a condition first holds, and the test subtracts the
journal time of the step after which it holds in the state. The issue's goal
is 2 s; the numbers are printed (run with -s to see them).

NETLAB_WEB_SCREENSHOT=docs/web.png makes the failover test save its picture
there (the README's screenshot); otherwise it goes to the test's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, LabEnv, netlab_argv

pytestmark = pytest.mark.root

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WEB, NEA, NETWORK = "192.168.10.11", "acme/nea-lan", "acme/lan"
WAIT_MS = 60_000  # generous: the suite may run beside others on 2 cores
UI_GOAL_SECONDS = 2.0  # the goal for a change to show on an open page


def _playwright() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install -y --no-install-recommends "
                    "chromium)")
    return pytest.importorskip("playwright.sync_api", reason="needs playwright (pip: .[test])")


@pytest.fixture
def browser() -> Iterator[Any]:
    api = _playwright()
    with api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def web_server(lab: LabEnv, tmp_path: Path, *extra: str) -> Iterator[str]:
    """`netlab web --port 0` for the lab; yields its URL; ends it by pid."""
    out = tmp_path / f"web{len(list(tmp_path.glob('web*.out')))}.out"
    with open(out, "w") as log:
        proc = subprocess.Popen(
            [*netlab_argv(), "web", "--port", "0", "--lab", lab.name, *extra],
            env=lab.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            found = re.search(r"http://127\.0\.0\.1:\d+/", out.read_text())
            url = found.group(0) if found else None
            if url is None:
                assert proc.poll() is None, f"netlab web exited: {out.read_text()}"
                assert time.monotonic() < deadline, f"no URL from netlab web: {out.read_text()}"
                time.sleep(0.05)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"netlab web did not stop on SIGTERM: {out.read_text()}")
        assert code == 0, f"netlab web exited {code} on SIGTERM: {out.read_text()}"
        assert "Traceback" not in out.read_text(), out.read_text()


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1500, "height": 1150})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(url)
    page.wait_for_selector("#live[data-live='yes']", timeout=WAIT_MS)
    page.wait_for_selector("tr[data-node]", state="attached", timeout=WAIT_MS)
    return page


def node_rows(page: Any) -> dict[str, dict[str, str]]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        'tr[data-node]')].map(r => [r.dataset.node, {...r.dataset}]))""")


def graph_nodes(page: Any) -> dict[str, dict[str, Any]]:
    """The cytoscape nodes drawn (not sites or segments): id -> power and replica state."""
    return page.evaluate("""() => Object.fromEntries(window.cy.nodes('.node').map(n =>
        [n.id(), {power: n.data('power'), state: n.data('state')}]))""")


def arp_row(page: Any, network: str, address: str) -> dict[str, str]:
    return page.evaluate(
        """([net, addr]) => ({...document.querySelector(
            `table[data-network="${net}"] tr[data-address="${addr}"]`).dataset})""",
        [network, address])


# A condition the page checks itself on every frame; it records when it first held.
WATCH = """([name, condition]) => {
    window.__met = window.__met || {};
    const check = new Function('return (' + condition + ')');
    const tick = () => { if (check()) window.__met[name] = Date.now() / 1000;
                         else requestAnimationFrame(tick); };
    tick();
}"""
FAILED_OVER = f"""(() => {{
    const row = document.querySelector('tr[data-node="acme/web@sp"]');
    const arp = document.querySelector('table[data-network="{NETWORK}"] tr[data-address="{WEB}"]');
    const drawn = window.cy.getElementById('acme/web@sp');
    return row && row.dataset.state === 'Failover' && drawn.data('state') === 'Failover'
        && arp && arp.dataset.answerers.split(' ').includes('{NEA}');
}})()"""
BACK = f"""(() => {{
    const row = document.querySelector('tr[data-node="acme/web@sp"]');
    const arp = document.querySelector('table[data-network="{NETWORK}"] tr[data-address="{WEB}"]');
    return row && row.dataset.state === 'Normal' && row.dataset.power === 'off'
        && window.cy.getElementById('acme/web@sp').data('state') === 'Normal'
        && arp && arp.dataset.answerers === 'acme/web';
}})()"""


def watch(pages: list[Any], name: str, condition: str) -> None:
    for page in pages:
        page.evaluate(WATCH, [name, condition])


def met_at(page: Any, name: str) -> float:
    page.wait_for_function(f"() => window.__met && window.__met['{name}']", timeout=WAIT_MS)
    return page.evaluate(f"() => window.__met['{name}']")


def journal_time(lab: LabEnv, event: str) -> float:
    return [e for e in json.loads(lab.netlab("events", "--json").stdout)
            if e["event"] == event][-1]["time"]


def mac_of(status: dict[str, Any], node: str, address: str) -> str:
    for n in status["nodes"]:
        if n["name"] == node:
            for iface in n["interfaces"]:
                if any(a.startswith(f"{address}/") for a in iface["addresses"]):
                    return iface["mac"]
    raise AssertionError(f"{node} has no interface with {address}")


def replica_state(lab: LabEnv, vm: str) -> str:
    return {v["name"]: v for v in lab.status()["vms"]}[vm]["replica_state"]


def post_action(url: str, command: str, vm: str, **headers: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + "api/action", data=json.dumps({"command": command, "vm": vm}).encode(),
        headers={"Content-Type": "application/json", **headers}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# ----- tests ---------------------------------------------------------------------------


def test_page_shows_every_node_and_read_only_refuses_actions(
    lab_env: LabEnv, tmp_path: Path, browser: Any
) -> None:
    lab_env.netlab("up")
    status = lab_env.status()
    expected = {n["name"]: n["power"] for n in status["nodes"]}
    with web_server(lab_env, tmp_path) as url:
        page = open_page(browser, url)
        rows = node_rows(page)
        assert {name: r["power"] for name, r in rows.items()} == expected
        drawn = graph_nodes(page)
        assert {name: d["power"] for name, d in drawn.items()} == expected
        for vm in status["vms"]:
            if vm["replica"]:
                assert rows[vm["replica"]]["state"] == drawn[vm["replica"]]["state"] == "Normal"
        assert arp_row(page, NETWORK, WEB)["answerers"] == "acme/web"
        assert page.locator("button[data-action]").count() == 0  # read-only: no buttons
        assert page.text_content("#mode") == "read-only"
        events_before = len(json.loads(lab_env.netlab("events", "--json").stdout))
        for command in ("failover", "undo", "failback"):
            code, body = post_action(url, command, "acme/web")
            assert code == 403, body
            assert "read-only" in body["message"]
        # a page reached by another name (DNS rebinding to 127.0.0.1) gets nothing
        code, body = post_action(url, "failover", "acme/web", Host="evil.example")
        assert code == 400 and "loopback" in body["message"]
        assert len(json.loads(lab_env.netlab("events", "--json").stdout)) == events_before
        assert replica_state(lab_env, "acme/web") == "Normal"
        assert page.errors == []


def test_failover_and_undo_from_a_shell_show_on_open_pages(
    lab_env: LabEnv, tmp_path: Path, browser: Any
) -> None:
    lab_env.netlab("up")
    with web_server(lab_env, tmp_path) as url:
        pages = [open_page(browser, url), open_page(browser, url)]  # a second browser tab
        for page in pages:
            page.evaluate("() => { window.__notReloaded = true; }")
        watch(pages, "failover", FAILED_OVER)
        lab_env.netlab("failover", "acme/web")
        changed = journal_time(lab_env, "failover:tenant-nea")  # NEA on, proxies set
        failover_latency = [met_at(page, "failover") - changed for page in pages]
        status = lab_env.status()
        nea_mac = mac_of(status, NEA, "192.168.10.250")
        for page in pages:
            assert page.evaluate("() => window.__notReloaded === true")
            row = arp_row(page, NETWORK, WEB)
            assert nea_mac in row["macs"].split(), row
            page.wait_for_selector(f"[data-tunnel='{NETWORK}'][data-connectivity='Connected']",
                                   timeout=WAIT_MS)
            assert page.text_content(f"[data-tunnel='{NETWORK}'] .handshake") != \
                ", last handshake never"
            steps = page.eval_on_selector_all(
                "#operation li[data-step]", "items => items.map(i => [i.dataset.step, "
                "i.dataset.done])")
            assert steps == [[s, "yes"] for s in ("start", "roll-back", "power-on", "sp-nea",
                                                   "replication-hold", "tenant-nea", "delta",
                                                   "proven")]
            assert page.locator(".recovery[data-vms='acme/web']").count() == 1
            assert page.locator("#journal li[data-event='failover:proven']").count() == 1
        shot = Path(os.environ.get("NETLAB_WEB_SCREENSHOT") or tmp_path / "web.png")
        pages[0].screenshot(path=str(REPO / shot if not shot.is_absolute() else shot),
                            full_page=True)

        watch(pages, "undo", BACK)
        lab_env.netlab("undo", "acme/web", "--yes")
        # the condition holds somewhere between these steps: an upper bound
        changed = journal_time(lab_env, "undo:discard")  # replica off and Normal
        undo_latency = [met_at(page, "undo") - changed for page in pages]
        for page in pages:
            assert page.evaluate("() => window.__notReloaded === true")
            assert page.get_attribute("#operation p[data-command]", "data-outcome") == "done"
            assert page.errors == []
    print(f"\nweb update latency (state change -> open page), two pages: failover "
          f"{[round(x, 3) for x in failover_latency]} s, undo at most "
          f"{[round(x, 3) for x in undo_latency]} s")
    assert max(failover_latency) <= UI_GOAL_SECONDS  # the goal


def test_failover_button_runs_the_cli_and_shows_its_refusals(
    lab_env: LabEnv, tmp_path: Path, browser: Any
) -> None:
    lab_env.netlab("up")
    with web_server(lab_env, tmp_path, "--allow-actions") as url:
        page = open_page(browser, url)
        button = "button[data-action='failover'][data-vm='acme/web']"
        page.once("dialog", lambda dialog: dialog.dismiss())  # "cancel" runs nothing
        page.click(button)
        assert page.is_hidden("#action-result")
        assert replica_state(lab_env, "acme/web") == "Normal"

        # another site's page in the same browser may post to localhost: refused
        code, body = post_action(url, "failover", "acme/web", Origin="http://evil.example")
        assert code == 403, body
        assert replica_state(lab_env, "acme/web") == "Normal"

        page.once("dialog", lambda dialog: dialog.accept())
        page.click(button)
        page.wait_for_selector("#action-result [data-ok='yes']", timeout=180_000)
        assert "failover: acme/web done; recovery time" in page.text_content("#action-result")
        assert replica_state(lab_env, "acme/web") == "Failover"  # the CLI agrees
        page.wait_for_selector("tr[data-node='acme/web@sp'][data-state='Failover']",
                               state="attached", timeout=WAIT_MS)

        # a second failover is refused by the CLI's own check, with the CLI's own line
        shell = lab_env.netlab("failover", "acme/web", check=False)
        assert shell.returncode != 0
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(button)
        page.wait_for_selector("#action-result [data-ok='no']", timeout=WAIT_MS)
        assert page.text_content("#action-result [data-ok='no']") == \
            shell.stderr.strip().splitlines()[-1]
        assert page.errors == []


def test_bind_to_a_non_loopback_address_needs_allow_remote(tmp_path: Path) -> None:
    done = subprocess.run([*netlab_argv(), "web", "--bind", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "NETLAB_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "--allow-remote" in lines[0], done.stderr
