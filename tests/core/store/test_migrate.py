"""The start-up check that skips Alembic relies on migrations being numbered: each file's
revision is its number, each revises the one before, and the newest file is Alembic's head."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from leadbridge.core.store import migrate
from leadbridge.core.store.repo import Store


def _migrations() -> list[tuple[str, object]]:
    found = []
    for path in sorted((migrate.MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found.append((path.name[:4], module))
    return found


def test_each_migration_is_its_number_and_revises_the_one_before() -> None:
    numbered = _migrations()
    assert numbered, "there are migrations"
    previous = None
    for number, module in numbered:
        assert module.revision == number, f"{number}: revision {module.revision!r}"
        assert module.down_revision == previous, f"{number} revises {module.down_revision!r}"
        previous = number
    assert migrate.newest_revision() == previous == migrate.head_revision()


def test_a_store_at_the_newest_revision_starts_without_loading_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    Store(url).dispose()  # made and migrated
    store = Store(url, upgrade=False)
    assert migrate._stored_revision(store.engine) == migrate.newest_revision()
    store.dispose()
