"""The layer contracts in pyproject.toml (docs/architecture.md#layers) hold, and they bite.

Each test copies the package and pyproject.toml into a temporary directory, injects
one import where it does not belong, and runs `lint-imports` on the copy (first on
sys.path, so grimp analyses the copy, not the installed package). No root needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS.exists(), "import-linter is a test dependency: pip install -e '.[test]'"
    argv = [str(LINT_IMPORTS), "--no-cache"]
    for contract in contracts:
        argv += ["--contract", contract]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and of its contracts."""
    shutil.copytree(REPO / "netlab", tmp_path / "netlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def inject(tree: Path, module: str, code: str) -> None:
    path = tree / "netlab" / module
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_the_package_keeps_every_contract(tree: Path) -> None:
    done = lint_imports(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_layers(tree: Path) -> None:
    inject(tree, "plan.py", "from netlab import orchestrator  # noqa: E402,F401")
    done = lint_imports(tree, "layers")
    assert done.returncode != 0
    assert "netlab.plan is not allowed to import netlab.orchestrator" in done.stdout


def test_an_import_inside_a_function_counts_too(tree: Path) -> None:
    # Function-level imports hid the old circles; the contract must still see them.
    inject(tree, "storage/layout.py",
           "def _late() -> None:\n    from netlab.lab import Lab  # noqa: F401")
    done = lint_imports(tree, "layers")
    assert done.returncode != 0
    assert "netlab.storage is not allowed to import netlab.lab" in done.stdout
    assert "netlab.storage.layout -> netlab.lab" in done.stdout


def test_a_backend_importing_the_plan_breaks_the_backends_contract(tree: Path) -> None:
    inject(tree, "net/nic.py", "from netlab.plan import NeaLink as _Planned  # noqa: E402,F401")
    done = lint_imports(tree, "backends")
    assert done.returncode != 0
    assert "netlab.net is not allowed to import netlab.plan" in done.stdout


def test_a_cycle_between_siblings_breaks_the_acyclic_contract(tree: Path) -> None:
    # storage.layout is imported by every other storage module; importing one back
    # closes a circle inside the package, which no layer contract would notice.
    inject(tree, "storage/layout.py",
           "def _late() -> None:\n    from netlab.storage import views  # noqa: F401")
    done = lint_imports(tree, "acyclic")
    assert done.returncode != 0
    assert "No cycles are allowed in netlab.storage" in done.stdout
