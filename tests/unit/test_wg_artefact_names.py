"""No test names wireguard-go's artefacts itself: they all ask tests/wg_backend.py.

With the kernel backend there is no wireguard-go process and no control socket, so a
test that expects them by name fails on a machine where netlab (rightly) uses kernel
WireGuard. This reads every test file's code (not comments or docstrings) for the
process name, the socket directory, the socket constants and WireGuard ``.sock``
names; tests/wg_backend.py is where they live.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
NEEDLES = ("wireguard-go", "/var/run/wireguard")
NAMES = {"WIREGUARD_GO_SOCKET_DIR", "WIREGUARD_RUN_DIR", "UserspaceBackend"}
# Files that may name them, and why.
ALLOWED = {
    "wg_backend.py": "the helper itself",
    "unit/test_wg_artefact_names.py": "this check (its needles)",
    "unit/test_wireguard.py": "backend selection by installed tool names: pure logic",
    "unit/test_packaging.py": "the list of Debian packages the lab needs",
}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are bare statements (docstrings and the like)."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}


def violations(source: str) -> list[str]:
    """Where `source` names a wireguard-go artefact in code (line: what)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            line = lines[node.lineno - 1].lower()
            if any(n in text for n in NEEDLES):
                found.append(f"{node.lineno}: {text!r}")
            elif ".sock" in text and ("wg" in line or "wireguard" in line):
                found.append(f"{node.lineno}: WireGuard socket name {text!r}")
        elif isinstance(node, ast.Name) and node.id in NAMES:
            found.append(f"{node.lineno}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in NAMES:
            found.append(f"{node.lineno}: .{node.attr}")
    return found


def test_no_test_file_names_wireguard_go_artefacts() -> None:
    files = sorted(p for p in TESTS.rglob("*.py") if ".venv" not in p.parts)
    assert len(files) > 20, files
    bad = {}
    for path in files:
        rel = path.relative_to(TESTS).as_posix()
        if rel in ALLOWED:
            continue
        if found := violations(path.read_text()):
            bad[rel] = found
    assert not bad, f"ask tests/wg_backend.py instead: {bad}"


@pytest.mark.parametrize("source", [
    'argv = ["wireguard-go", "-f", name]\n',
    'left = list(Path("/var/run/wireguard").glob("x*"))\n',
    "from netlab import wireguard\nd = wireguard.WIREGUARD_GO_SOCKET_DIR\n",
    'wg_sock = base / f"{ifname}.sock"\n',
])
def test_the_check_finds_what_it_looks_for(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize("source", [
    '"""A docstring may say wireguard-go."""\n',
    "# a comment may say /var/run/wireguard\nx = 1\n",
    'sock = run_dir / "proxyarp-acme.sock"\n',
    "import wg_backend\nleft = wg_backend.sockets(prefix)\n",
])
def test_the_check_leaves_the_rest_alone(source: str) -> None:
    assert violations(source) == []
