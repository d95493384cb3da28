"""The README's first command, read from the README and run verbatim in a clean clone.

It is what a new user pastes first on a fresh machine: setup (packages, .venv, the
`netlab` command) and bring-up of the default lab. The test reads the block from the
README each time, so the README and this test cannot drift apart. It runs as root,
the way a root shell without sudo (containers, CI images) runs it. Only the harness
differs: its own lab name and state directory, and the `netlab` link of the clone
goes into tmp_path instead of /usr/local/bin (NETLAB_LINK), so the machine's own
command is left alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, LabEnv, skip_unless_root

pytestmark = pytest.mark.root


def readme_code_blocks() -> list[str]:
    """The fenced shell blocks of the README, in order, as their text."""
    blocks, current = [], None
    for line in (REPO / "README.md").read_text().splitlines():
        if current is None and line.strip() in ("```bash", "```sh", "```shell"):
            current = []
        elif current is not None and line.startswith("```"):
            blocks.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_readme_first_command_sets_up_and_brings_up_the_default_lab(
    lab_env: LabEnv, tmp_path: Path
) -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    skip_unless_root()
    first = readme_code_blocks()[0]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    link = tmp_path / "bin" / "netlab"
    link.parent.mkdir()
    env = {**lab_env.env, "NETLAB_LINK": str(link)}
    env.pop("VIRTUAL_ENV", None)

    done = subprocess.run(["bash", "-e", "-c", first], cwd=clone, env=env, text=True,
                          capture_output=True, timeout=900, check=False)
    assert done.returncode == 0, f"README block failed:\n{first}{done.stdout}\n{done.stderr}"

    assert link.resolve() == (clone / ".venv" / "bin" / "netlab").resolve()
    status = subprocess.run([str(link), "status", "--json"], env=env, capture_output=True,
                            text=True, check=True, timeout=60)
    data = json.loads(status.stdout)
    assert data["status"] == "up"
    assert data["lab"] == lab_env.name
    nodes = {node["name"] for node in data["nodes"]}
    assert {"acme/web", "globex/erp", "sp/cgw"} <= nodes
    # the lab really carries traffic: a tenant VM reaches its neighbour's web page
    page = subprocess.run([str(link), "exec", "acme/db", "--", "curl", "-s", "-m", "5",
                           "http://192.168.10.11/"], env=env, capture_output=True, text=True,
                          check=False, timeout=60)
    assert "<h1>acme/web</h1>" in page.stdout
    subprocess.run([str(link), "down"], env=env, capture_output=True, check=True, timeout=120)
