"""INSERT … ON CONFLICT in the store's own dialect.

SQLAlchemy spells the upsert the same on SQLite and PostgreSQL, but each through its own
dialect's `insert`. The PostgreSQL dialect is imported only for a PostgreSQL store: the
import (with its async drivers' modules) costs a SQLite store's `leadbridge status` about
40 ms of start-up (docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Table

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite


def insert_for(dialect_name: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT on `table`, which has `.on_conflict_do_nothing/do_update`."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """`insert_for` the dialect `conn` speaks."""
    return insert_for(conn.dialect.name, table)
