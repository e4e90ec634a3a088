"""The docs stay true to the code: docs/architecture.md names only modules that exist, and
nothing in the repository points to a design document that isn't in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_the_architecture_names_exists() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    layout = doc.split("## Layout", 1)[1].split("```")[1]
    names = set(re.findall(r"[\w/]+\.py", layout))
    assert names, "the layout block lists modules"
    code = {p.name for p in ROOT.joinpath("core").rglob("*.py")}
    code |= {p.name for p in ROOT.joinpath("connectors").rglob("*.py")}
    missing = sorted(name for name in names if Path(name).name not in code)
    assert not missing, f"docs/architecture.md names modules that don't exist: {missing}"


def test_no_reference_to_a_design_document_outside_the_repository() -> None:
    for path in [ROOT / "pyproject.toml", *ROOT.joinpath("core").rglob("*.py")]:
        assert "DESIGN.md" not in path.read_text("utf-8"), path
