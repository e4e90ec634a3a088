"""Apply Alembic migrations programmatically: `leadbridge db upgrade` and every start.

Every start checks the store is at the newest revision. Loading Alembic to find out costs
more than most commands' own work, so the check reads the stored revision with one query
and compares it with the newest migration file's revision (migrations are numbered, and
tests/core/store/test_migrate.py holds each file's revision to its number); Alembic loads
only when there is something to apply.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('leadbridge:migrate', 0))"
_NUMBERED = re.compile(r"^(\d{4})_\w+\.py$")


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def newest_revision() -> str | None:
    """The newest migration's revision, from the file names (`0003_links_created_at.py`)."""
    numbers = [
        m.group(1) for p in (MIGRATIONS / "versions").iterdir() if (m := _NUMBERED.match(p.name))
    ]
    return max(numbers, default=None)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the store to `revision`. Idempotent; safe to run at every start, and on
    PostgreSQL safe for replicas starting together: the first migrates, the others wait
    for it (a transaction-scoped advisory lock) and then find nothing to do."""
    if revision == "head" and _stored_revision(engine) == newest_revision():
        return  # the usual start: nothing to apply, Alembic not loaded
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(MIGRATION_LOCK))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _stored_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
