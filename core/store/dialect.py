"""What SQLite and PostgreSQL spell differently: INSERT … ON CONFLICT, and a match against a
set of values.

SQLAlchemy spells the upsert the same on SQLite and PostgreSQL, but each through its own
dialect's `insert`. The PostgreSQL dialect is imported only for a PostgreSQL store: the
import (with its async drivers' modules) costs a SQLite store's `leadbridge status` about
40 ms of start-up (docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, Select, Table, Update, bindparam, func, select
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


# PostgreSQL takes at most 65,535 parameters a statement; lists stay well under it.
PG_LIST = 1000


def in_chunks(
    conn: Connection, col: ColumnElement[Any], values: Iterable[Any]
) -> Iterator[ColumnElement[bool]]:
    """`col IN values` as the clauses of as many statements as the store needs, each value
    once (none for no values): the caller runs its statement once per clause.

    On SQLite the values are bound as one JSON array, read by `json_each`: one statement
    whatever their number, compiled once, and no limit on parameters to split lists by.

    On PostgreSQL they stay one placeholder each, in lists of up to `PG_LIST`. One array
    (`= ANY(:values)`) was tried and measured 25-35 % slower on a backfill into an empty
    store (docs/benchmarks.md, "Fifth pass"): a statement that never changes is prepared
    by the driver (psycopg's `prepare_threshold`, five runs), and PostgreSQL kept the
    generic plan it made while the table was nearly empty — a sequential scan that by 30k
    contacts took 0.2-0.3 s a batch. A list is a statement per length, mostly planned
    afresh; lists of a length that repeats (full batches, full chunks) are prepared too,
    but no such statement showed in the server's slow-statement log. Measured again once a
    long ingest analyzed its tables (core/store/planner.py): the array then ran as fast as
    the lists (100k, alternating: 1,418-1,445 leads/s against 1,212-1,442), nothing won.
    The lists stay: their speed doesn't depend on the statistics being fresh.
    """
    listed = sorted(set(values))
    if not listed:  # no statement at all: nothing can match
        return
    if conn.dialect.name != "postgresql":
        each = func.json_each(bindparam(None, dumps(listed), unique=True)).table_valued("value")
        yield col.in_(select(each.c.value))
        return
    for start in range(0, len(listed), PG_LIST):
        yield col.in_(listed[start : start + PG_LIST])


def rows_where_in(
    conn: Connection, stmt: Select[Any] | Update, col: ColumnElement[Any], values: Iterable[Any]
) -> list[Row[Any]]:
    """`stmt`'s rows with `col` one of `values`, for any number of values (`in_chunks`): a
    SELECT's, or what an UPDATE … RETURNING returns of the rows it changed."""
    return [
        row for clause in in_chunks(conn, col, values) for row in conn.execute(stmt.where(clause))
    ]
