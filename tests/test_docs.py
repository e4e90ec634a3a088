"""The docs stay true to the code: docs/architecture.md names only modules that exist, and
nothing in the repository points to a design document that isn't in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_file_the_architecture_names_exists() -> None:
    """A path (`core/app/cli.py`, `core/store/`) exists as written; a bare name
    (`apscheduler.py`, `hubspot/`) exists somewhere in core/ or connectors/."""
    doc = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    layout = doc.split("## Layout", 1)[1].split("```")[1]
    names = set(re.findall(r"[\w/]+\.py|[\w/]+/(?![\w/])", layout))
    assert len(names) > 20, "the layout block lists the code"
    code = [*ROOT.joinpath("core").rglob("*"), *ROOT.joinpath("connectors").rglob("*")]
    bare = {p.name for p in code} | {f"{p.name}/" for p in code if p.is_dir()}
    missing = sorted(
        name
        for name in names
        if not ((ROOT / name).exists() if "/" in name.rstrip("/") else name in bare)
        and not (ROOT / name).is_dir()
    )
    assert not missing, f"docs/architecture.md names files that don't exist: {missing}"


def test_no_reference_to_a_design_document_outside_the_repository() -> None:
    for path in [ROOT / "pyproject.toml", *ROOT.joinpath("core").rglob("*.py")]:
        assert "DESIGN.md" not in path.read_text("utf-8"), path
