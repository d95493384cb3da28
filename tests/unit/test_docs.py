"""References to the design point into the repository, and to sections that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "architecture.md"
REFERENCE = re.compile(r"docs/architecture\.md#([a-z0-9-]+)")


def repository_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / name for name in listed.splitlines() if (REPO / name).is_file()]


def text_of(path: Path) -> str:
    return path.read_bytes().decode(errors="replace")


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to '-'."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-"))
    return found


def test_no_file_points_to_a_design_document_outside_the_repository() -> None:
    design = "DESIGN" + ".md"  # spelled apart so that this file does not match itself
    offenders = [str(p.relative_to(REPO)) for p in repository_files() if design in text_of(p)]
    assert not offenders, f"{design} is not in the repository: {offenders}"


def test_every_architecture_reference_names_an_existing_section() -> None:
    sections = anchors(ARCHITECTURE.read_text())
    broken = sorted({
        f"{p.relative_to(REPO)}: #{anchor}"
        for p in repository_files() for anchor in REFERENCE.findall(text_of(p))
        if anchor not in sections
    })
    assert not broken, f"sections of docs/architecture.md that do not exist: {broken}"


def test_architecture_covers_what_a_newcomer_needs() -> None:
    sections = anchors(ARCHITECTURE.read_text())
    for needed in ("layers", "data-flow-up", "data-flow-failover", "the-state-file",
                   "naming-rules", "the-proxy-arp-daemon"):
        assert needed in sections, needed
