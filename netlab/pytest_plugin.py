"""pytest plugin (entry point ``pytest11``): the ``netlab_lab`` fixture for your own tests.

    def test_web_survives_failover(netlab_lab):
        netlab_lab.fail("acme/web")
        netlab_lab.failover("acme/web")
        assert netlab_lab.curl("acme/db", "http://192.168.10.11/").ok

Each test gets a lab of its own: a unique name ('t' + 6 hex digits), a state
directory under the test's tmp_path, the default topology (or the file named by
``@pytest.mark.netlab_topology("path/to/lab.yaml")``, relative to the test file),
brought up before the test and removed after it. Without root the test is
skipped with the reason.

pytest loads this module in every session of every project where netlab is
installed, so it imports nothing of netlab until a test asks for the fixture.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from netlab.api import Lab

MARKER = "netlab_topology"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path): topology file for the netlab_lab fixture (relative to the test file)",
    )


def _topology(request: pytest.FixtureRequest) -> Path | None:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return None
    if not marker.args:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} needs a path to a topology file")
    path = Path(marker.args[0])
    if not path.is_absolute():
        path = Path(request.node.path).parent / path
    return path


@pytest.fixture
def netlab_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """A running netlab lab of this test's own (netlab.api.Lab), removed after the test."""
    if os.geteuid() != 0:
        pytest.skip("netlab_lab needs root: a lab creates network namespaces, links and mounts")
    from netlab.api import Lab

    lab = Lab(f"t{secrets.token_hex(3)}", topology=_topology(request),
              state_dir=tmp_path / "netlab-state")
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
        from netlab.net.namespaces import list_namespaces

        left = list_namespaces(f"{lab.name}-")
        if left:
            pytest.fail(f"lab {lab.name} left namespaces behind: {', '.join(left)}",
                        pytrace=False)
