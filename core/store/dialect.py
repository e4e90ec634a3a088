"""What SQLite and PostgreSQL spell differently: INSERT … ON CONFLICT, and a match against a
set of values.

SQLAlchemy spells the upsert the same on SQLite and PostgreSQL, but each through its own
dialect's `insert`. The PostgreSQL dialect is imported only for a PostgreSQL store: the
import (with its async drivers' modules) costs a SQLite store's `leadbridge status` about
40 ms of start-up (docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, bindparam, func, select
from sqlalchemy.sql import ColumnElement

from leadbridge.core.store.db import dumps

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


def one_of(conn: Connection, col: ColumnElement[Any], values: Iterable[str]) -> ColumnElement[bool]:
    """`col IN values`, for any number of values.

    On SQLite the values are bound as one JSON array, read by `json_each`: one statement
    whatever their number, compiled once, and no limit on parameters to split lists by.

    On PostgreSQL they stay one placeholder each. One array (`= ANY(:values)`) was tried
    and measured 25-35 % slower on a backfill into an empty store (docs/benchmarks.md,
    "Fifth pass"): a statement that never changes is prepared by the driver after five
    runs, and PostgreSQL keeps the generic plan it made while the table was nearly empty
    — a sequential scan that by 30k contacts took 0.2-0.3 s a batch. A list of a new
    length is a new statement, planned for the table as it is.
    """
    listed = sorted(set(values))
    if conn.dialect.name == "postgresql":
        return col.in_(listed)
    each = func.json_each(bindparam(None, dumps(listed), unique=True)).table_valued("value")
    return col.in_(select(each.c.value))
