"""The shape of the code, held by a test that can't be skipped: core never imports a connector
(a new CRM is one folder plus its entry point), and core's layers only import downwards, so
the folder tree tells the data flow (docs/architecture.md).

import-linter would be the library for this, but it can't see this package: `leadbridge` is a
namespace package whose `core` and `connectors` are mapped from the repository's top level,
which grimp doesn't follow. Reading every import statement with `ast` (inside functions and
TYPE_CHECKING blocks too) is the same check without that blind spot.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"

# From the top down: a layer may import its own modules and any layer below it, never one
# above it or beside it. `core/settings.py` is a layer of its own (the configuration).
LAYERS: list[set[str]] = [
    {"app"},
    {"sync", "reports"},
    {"delivery", "ingest"},
    {"alerts"},
    {"settings"},
    {"connector"},
    {"store", "support"},
    {"domain"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports: (line, dotted name), `from x import y` as x.y too."""
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def layer_of(path: Path) -> str | None:
    parts = path.relative_to(CORE).parts
    if len(parts) == 1:
        return parts[0].removesuffix(".py") if parts[0] == "settings.py" else None
    return parts[0]


def imported_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["leadbridge", "core"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in RANK else None


def test_core_never_imports_a_connector() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in CORE.rglob("*.py")
        for line, module in imports(path)
        if module == "leadbridge.connectors" or module.startswith("leadbridge.connectors.")
    ]
    assert not found, "core must not import connectors:\n" + "\n".join(found)


def test_core_layers_import_only_downwards() -> None:
    found = []
    for path in CORE.rglob("*.py"):
        mine = layer_of(path)
        if mine is None:
            continue  # core/__init__.py, core/__main__.py: the entry points
        for line, module in imports(path):
            theirs = imported_layer(module)
            if theirs is None or theirs == mine:
                continue
            if RANK[theirs] <= RANK[mine]:
                found.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {module}")
    assert not found, "an import against the layers:\n" + "\n".join(sorted(set(found)))


def test_every_core_package_is_in_a_layer() -> None:
    packages = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages | {"settings"} == set(RANK), "add the new package to LAYERS"


def test_connectors_import_core_only_through_its_public_layers() -> None:
    """A connector builds on the contract (core.connector) and the domain; the app, the
    delivery job and the store are core's business."""
    allowed = {"connector", "domain", "support"}
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in (ROOT / "connectors").rglob("*.py")
        for line, module in imports(path)
        if (theirs := imported_layer(module)) is not None and theirs not in allowed
    ]
    assert not found, "connectors reach into core's internals:\n" + "\n".join(sorted(set(found)))
