"""`rows_where_in` (core/store/dialect.py) matches exactly the values given, however many
and whatever their characters, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from leadbridge.core.store import repo
from leadbridge.core.store.dialect import in_chunks, rows_where_in
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import contacts

# Characters a JSON array or an SQL literal would have to escape; more values than SQLite's
# older limit of 999 parameters a statement; and, asked for, more absent ones than the
# 65,535 parameters PostgreSQL takes in one statement.
ODD = ['o"brien@contoso.com', "o'neil@contoso.com", "back\\slash@contoso.com", "zoë@contoso.com"]
MANY = [f"u{i}@contoso.com" for i in range(1500)]
ABSENT = [f"nobody{i}@contoso.com" for i in range(70_000)]


def _matches(store: Store) -> None:
    with store.begin() as conn:
        stored = [*ODD, *MANY, "other@x.com"]
        rows = [{"email": e, "created_at": repo.utcnow()} for e in stored]
        repo.insert_ignore(conn, contacts, rows, ["email"])
        asked = [*ODD, *MANY, *ABSENT, ODD[0]]
        stmt = select(contacts.c.email)
        found = [row.email for row in rows_where_in(conn, stmt, contacts.c.email, asked)]
        assert sorted(found) == sorted([*ODD, *MANY])  # each once, though asked for twice
        assert rows_where_in(conn, stmt, contacts.c.email, []) == []
        assert list(in_chunks(conn, contacts.c.email, [])) == []  # not even a statement


def test_rows_where_in_matches_exactly_the_values_given_on_sqlite(store: Store) -> None:
    _matches(store)


def test_on_sqlite_any_number_of_values_is_one_statement_with_one_parameter(store: Store) -> None:
    ran: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, _many: bool) -> None:
        ran.append((sql, params))

    event.listen(store.engine, "before_cursor_execute", seen)
    with store.connect() as conn:
        rows_where_in(conn, select(contacts.c.email), contacts.c.email, [*MANY, *ABSENT])
    [(sql, params)] = [(sql, params) for sql, params in ran if "contacts" in sql]
    assert "json_each" in sql and len(params) == 1


def test_rows_where_in_matches_exactly_the_values_given_on_postgresql(pg_store: Store) -> None:
    _matches(pg_store)
