"""The install and CI paths stay one: README, scripts, Vagrantfile, CI all use scripts/setup.sh.

No root needed; nothing here installs anything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "setup.sh"
TEST = REPO / "scripts" / "test.sh"
CI_RUN = REPO / ".ci" / "run"
VAGRANTFILE = REPO / "Vagrantfile"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
README = REPO / "README.md"

SCRIPTS = [SETUP, TEST, CI_RUN]

REQUIRED_PACKAGES = {
    "iproute2",
    "util-linux",
    "nftables",
    "wireguard-tools",
    "wireguard-go",
    "dnsmasq-base",
    "busybox",
    "iputils-arping",
    "iputils-ping",
    "tcpdump",
    "iperf3",
    "curl",
    "python3-venv",
    "python3-pip",
    "procps",
    "chromium",  # netlab web's browser tests
    "rsync",  # replication over the lab's network
}


def _code_lines(path: Path, comment: str = "#") -> list[str]:
    """Non-empty lines with whole-line comments removed."""
    lines = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(comment):
            lines.append(stripped)
    return lines


# ------------------------------------------------------------------ shell scripts


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_is_executable_strict_bash(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable (chmod +x, git keeps the mode)"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_setup_installs_with_apt_and_no_recommends() -> None:
    text = SETUP.read_text()
    assert "DEBIAN_FRONTEND=noninteractive" in text
    installs = [line for line in _code_lines(SETUP) if re.search(r"\bapt-get\b.*\binstall\b", line)]
    assert installs, "setup.sh installs no Debian packages"
    for line in installs:
        assert "--no-install-recommends" in line, line
        assert " -y" in line, line
    match = re.search(r"^packages=\(\n(.*?)^\)", text, re.M | re.S)
    assert match, "setup.sh lists its Debian packages in packages=( ... )"
    # chromium drives the web view's tests: added unless --up (a lab alone needs none)
    assert set(match.group(1).split()) | {"chromium"} == REQUIRED_PACKAGES
    assert "if ((!bring_up)); then packages+=(chromium); fi" in text
    assert "packages+=(graphviz)" in text  # only with --with-graphviz
    code = "\n".join(_code_lines(SETUP))
    assert "iptables" not in code
    assert "vagrant" not in code, "setup.sh must not install vagrant"


def test_setup_builds_the_venv_from_debian_python_and_links_netlab() -> None:
    text = SETUP.read_text()
    assert "py=/usr/bin/python3" in text
    assert '"$py" -m venv "$venv"' in text
    # the test tools unless --up, which installs netlab alone
    assert "if ((bring_up)); then target=.; else target=.[test]; fi" in text
    assert 'pip install -q -e "$target"' in text
    assert "/usr/local/bin/netlab" in text
    assert 'venv="$repo/.venv"' in text
    # the repository comes from the script's own path, not from the cwd
    assert 'dirname "${BASH_SOURCE[0]}"' in text


def test_setup_help_needs_no_root_and_rejects_unknown_arguments() -> None:
    ok = subprocess.run([str(SETUP), "--help"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0
    assert "--with-graphviz" in ok.stdout
    bad = subprocess.run([str(SETUP), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert "unknown argument: --bogus" in bad.stderr


def test_test_script_runs_setup_ruff_and_pytest_and_fails_on_no_tests() -> None:
    lines = _code_lines(TEST)
    setup_at = lines.index("scripts/setup.sh")
    ruff_at = next(i for i, line in enumerate(lines) if line.startswith(".venv/bin/ruff check"))
    pytest_at = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert setup_at < ruff_at < pytest_at
    assert '"$@"' in lines[pytest_at], "extra arguments must reach pytest"
    assert "for d in netlab tests benchmarks" in TEST.read_text()
    text = TEST.read_text()
    assert re.search(r"^\s*5\)", text, re.M), "pytest exit 5 (no tests) needs its own message"
    assert 'exit "$rc"' in text


def test_ci_run_prints_environment_and_calls_the_readme_test_command() -> None:
    lines = _code_lines(CI_RUN)
    text = CI_RUN.read_text()
    assert 'cd "$(dirname "$0")/.."' in lines
    assert "exec scripts/test.sh" in text
    for probe in ("uname -r", "nproc", "python3 --version"):
        assert probe in text, probe
    assert text.index("uname -r") < text.index("exec scripts/test.sh")


# ------------------------------------------------------------------ Vagrant


def test_vagrantfile_provisions_with_setup_sh_only() -> None:
    lines = _code_lines(VAGRANTFILE)
    text = "\n".join(lines)
    assert 'config.vm.box = "debian/bookworm64"' in text
    assert re.search(r"\.memory\s*=\s*4096", text)
    assert re.search(r"\.cpus\s*=\s*2\b", text)
    assert 'config.vm.provider "libvirt"' in text
    assert 'config.vm.provider "virtualbox"' in text
    assert re.search(r'synced_folder\s+"\.",\s*"/home/vagrant/netlab",\s*type:\s*"rsync"', text)

    provision_start = [i for i, line in enumerate(lines) if "config.vm.provision" in line]
    assert len(provision_start) == 1, "exactly one provisioner: scripts/setup.sh"
    provision = " ".join(lines[provision_start[0] : provision_start[0] + 3])
    assert re.search(r'inline:\s*"/home/vagrant/netlab/scripts/setup\.sh"', provision), provision
    # no second install path
    assert "apt-get" not in text
    assert "pip install" not in text

    assert "config.vm.post_up_message" in text
    assert "vagrant ssh -c 'sudo netlab up'" in text


def test_vagrant_validate() -> None:
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        pytest.skip("vagrant not installed")
    result = subprocess.run(
        [vagrant, "validate", "--ignore-provider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ GitHub Actions


def _workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _runs(job: dict) -> list[str]:
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def test_workflow_is_valid_yaml_with_the_three_jobs() -> None:
    data = _workflow()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads the key `on` as True
    assert triggers, "workflow has no triggers"
    jobs = data["jobs"]
    assert set(jobs) >= {"lint", "unit", "integration"}
    for name, job in jobs.items():
        assert "ubuntu" in job["runs-on"], name
        assert job.get("timeout-minutes"), f"{name}: no timeout"
        assert any(step.get("uses", "").startswith("actions/checkout@") for step in job["steps"])


def test_workflow_steps_use_the_readme_commands() -> None:
    jobs = _workflow()["jobs"]
    for name in ("lint", "unit"):
        runs = _runs(jobs[name])
        assert runs[0] == "scripts/setup.sh", name
    assert any(r.startswith(".venv/bin/ruff check") for r in _runs(jobs["lint"]))
    unit = [r for r in _runs(jobs["unit"]) if "pytest" in r]
    assert unit == [".venv/bin/pytest tests/unit"], "unit tests run without sudo"

    integration = jobs["integration"]
    final = _runs(integration)[-1]
    # the README's command as written: test.sh switches to root through sudo itself
    assert final.endswith(" scripts/test.sh") and "sudo" not in final, final
    assert "NETLAB_WG=kernel" in final
    assert integration["env"]["NETLAB_WG"] == "kernel"


# ------------------------------------------------------------------ README


def _readme_blocks_before_first_section() -> list[list[str]]:
    text = README.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# "), "README starts with its title"
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in lines[1:]:
        if current is None:
            if line.startswith("## "):
                break
            if line.startswith("```"):
                assert line.strip() in ("```bash", "```sh", "```console", "```shell"), line
                current = []
        elif line.startswith("```"):
            blocks.append(current)
            current = None
        elif line.strip() and not line.lstrip().startswith("#"):
            current.append(line.strip())
    return blocks


def test_readme_first_commands_are_setup_up_and_test() -> None:
    commands = [cmd for block in _readme_blocks_before_first_section() for cmd in block]
    assert commands[:2] == [
        "scripts/setup.sh --up",
        "scripts/test.sh",
    ]


def test_readme_describes_vm_ci_and_development() -> None:
    text = README.read_text()
    for heading in (
        "## The default lab",
        "## Tour",
        "## Run it in a VM",
        "## Run it in CI",
        "## Development",
    ):
        assert re.search(rf"^{re.escape(heading)}$", text, re.M), heading
    assert "vagrant ssh -c 'sudo netlab up'" in text
    for value in ("kernel", "userspace", "auto"):
        assert f"`{value}`" in text
    assert "netlab failover acme/web" in text, "the tour shows a failover"


# ------------------------------------------------------------------ pyproject


def test_dependencies_have_lower_bounds() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    assert requirements
    for spec in requirements:
        requirement = Requirement(spec)
        operators = {s.operator for s in requirement.specifier}
        assert operators & {">=", ">", "==", "~=", "==="}, f"{spec}: no lower bound"


def test_distribution_and_console_script() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == "netlab-dr"
    assert project["scripts"]["netlab"] == "netlab.cli:main"
    assert "test" in project["optional-dependencies"]
