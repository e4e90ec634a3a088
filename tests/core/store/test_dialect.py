"""`one_of` (core/store/dialect.py) matches exactly the values given, however many and
whatever their characters, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from leadbridge.core.store import repo
from leadbridge.core.store.dialect import one_of
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import contacts

# Characters a JSON array or an SQL literal would have to escape, and more values than
# SQLite's older limit of 999 parameters a statement.
ODD = ['o"brien@contoso.com', "o'neil@contoso.com", "back\\slash@contoso.com", "zoë@contoso.com"]
MANY = [f"u{i}@contoso.com" for i in range(1500)]


def _matches(store: Store) -> None:
    with store.begin() as conn:
        repo.insert_ignore(
            conn,
            contacts,
            [{"email": e, "created_at": repo.utcnow()} for e in [*ODD, *MANY, "other@x.com"]],
            ["email"],
        )
        asked = [*ODD, *MANY, "absent@contoso.com", ODD[0]]
        stmt = select(contacts.c.email).where(one_of(conn, contacts.c.email, asked))
        assert sorted(conn.execute(stmt).scalars()) == sorted([*ODD, *MANY])
        none = select(contacts.c.email).where(one_of(conn, contacts.c.email, []))
        assert list(conn.execute(none)) == []


def test_one_of_matches_exactly_the_values_given_on_sqlite(store: Store) -> None:
    _matches(store)


def test_one_of_matches_exactly_the_values_given_on_postgresql(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        _matches(store)
    finally:
        store.dispose()
