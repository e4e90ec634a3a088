"""Bulk writes on the ingest path: a statement compiled once per dialect and run as one
`executemany` with rows already in the driver's form.

SQLAlchemy binds every value of every row through a generic loop over the statement's
parameters and their type processors; on the ingest path that loop was about a tenth of
the run (docs/benchmarks.md, issue 21) for five statements writing hundreds of rows a
batch. Their columns hold only text, numbers, booleans, times and JSON, whose driver forms
are simple: callers convert times with `time` (the same function `UtcDateTime` binds
through) and JSON with `json` (the engine's own serializer), once per value, and the rows
go to the driver as they are. The statement itself is still SQLAlchemy's, compiled for the
connection's dialect, so the SQL is the same on SQLite and PostgreSQL as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from leadbridge.core.store.db import dumps
from leadbridge.core.store.tables import utc_for_driver


class Bulk:
    """One write statement (built by `build` for a dialect name), compiled on first use.

    An INSERT writes the `columns` named (as an `executemany` of rows with those keys
    would); rows name every bound parameter; a parameter the statement carries itself (e.g. the
    `1` of `version + 1`) takes the value it was compiled with.
    """

    def __init__(
        self, build: Callable[[str], ClauseElement], columns: Sequence[str] | None = None
    ) -> None:
        self._build = build
        self._columns = list(columns) if columns is not None else None
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._build(dialect.name).compile(
                dialect=dialect, column_keys=self._columns, for_executemany=True
            )
            assert isinstance(compiled, SQLCompiler)  # a DML statement compiles to one
            order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
            fixed = {
                name: bind.value for bind, name in compiled.bind_names.items() if not bind.required
            }
            found = (compiled.string, order, fixed)
            self._compiled[dialect.name] = found
        return found

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run the statement once per row, as one `executemany`."""
        if not rows:
            return
        sql, order, defaults = self._for(conn.dialect)
        params: list[Any]
        if order is None:  # named parameters (psycopg): each row is the mapping itself
            params = [{**defaults, **row} for row in rows] if defaults else list(rows)
        else:  # positional (SQLite's qmark): the values in the compiled order, picked in C
            pick = _picker(order)
            params = (
                [pick({**defaults, **row}) for row in rows] if defaults else list(map(pick, rows))
            )
        conn.exec_driver_sql(sql, params)


def _picker(order: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values in `order`, as a tuple; a missing one raises KeyError."""
    if not order:
        return lambda _row: ()
    get = itemgetter(*order)
    return get if len(order) > 1 else lambda row: (get(row),)


def time(conn: Connection) -> Callable[[datetime | None], datetime | str | None]:
    """The time converter for this connection's driver."""
    name = conn.dialect.name
    return lambda value: utc_for_driver(value, name)


def json(value: object) -> str:
    """A JSON column's value as the engine's serializer writes it."""
    return dumps(value)
