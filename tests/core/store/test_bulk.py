"""The bulk write path (core/store/bulk.py) stores exactly what SQLAlchemy's own binding
stores: the same rows read back the same, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, select

from leadbridge.core.domain.models import Event, RawLead
from leadbridge.core.store import bulk, repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import events, raw_leads

AT = datetime(2026, 12, 3, 7, 30, 1, 123456, tzinfo=UTC)
ELSEWHERE = timezone(timedelta(hours=5, minutes=30))


def _raws(source: str) -> list[RawLead]:
    return [
        RawLead(
            source=source,
            source_key="k1",
            kind="https",
            payload={"Email": "a@contoso.com", "nested": {"ü": [1, 2.5, None, True]}},
            occurred_at=AT.astimezone(ELSEWHERE),  # stored as UTC whatever its zone
        ),
        RawLead(source=source, source_key="k2", kind="csv", payload={}, received_at=AT),
    ]


def _events(key: str) -> list[Event]:
    return [
        Event(lead_key=key, kind="action", actor="src", at=AT, data={"a": ["x", 1]}),
        Event(lead_key=key, kind="stage", actor="lb", at=AT.replace(tzinfo=None), data={}),
    ]


def _rows(conn: Connection, source: str, key: str) -> list[Any]:
    landed = conn.execute(
        select(raw_leads.c.kind, raw_leads.c.payload, raw_leads.c.received_at)
        .add_columns(raw_leads.c.occurred_at, raw_leads.c.status)
        .where(raw_leads.c.source == source)
        .order_by(raw_leads.c.source_key)
    ).all()
    happened = conn.execute(
        select(events.c.kind, events.c.actor, events.c.at, events.c.data)
        .where(events.c.lead_key == key)
        .order_by(events.c.id)
    ).all()
    return [tuple(r) for r in landed] + [tuple(r) for r in happened]


def _through_sqlalchemy(conn: Connection, source: str, key: str) -> None:
    """What repo.land and repo.add_events did before the bulk path: SQLAlchemy binding."""
    conn.execute(
        raw_leads.insert(),
        [
            {
                "source": r.source,
                "source_key": r.source_key,
                "kind": r.kind,
                "payload": r.payload,
                "received_at": r.received_at or AT,
                "occurred_at": r.occurred_at,
                "status": "new",
            }
            for r in _raws(source)
        ],
    )
    conn.execute(
        events.insert(),
        [
            {"lead_key": e.lead_key, "kind": e.kind, "actor": e.actor, "at": e.at, "data": e.data}
            for e in _events(key)
        ],
    )


def _same_either_way(store: Store) -> None:
    with store.begin() as conn:
        _through_sqlalchemy(conn, "old", "k" * 32)
        repo.land(conn, _raws("new"), AT)
        repo.add_events(conn, _events("n" * 32))
    with store.connect() as conn:
        old, new = _rows(conn, "old", "k" * 32), _rows(conn, "new", "n" * 32)
    assert new == old
    assert new[0][3] == AT  # read back aware, in UTC
    assert new[3][2] == AT  # a naive time is taken as UTC, as UtcDateTime does


def test_bulk_writes_store_what_sqlalchemy_stores_on_sqlite(store: Store) -> None:
    _same_either_way(store)


def test_bulk_writes_store_what_sqlalchemy_stores_on_postgresql(pg_store: Store) -> None:
    _same_either_way(pg_store)


def test_a_landed_duplicate_is_still_ignored(store: Store) -> None:
    with store.begin() as conn:
        repo.land(conn, _raws("s"), AT)
        repo.land(conn, _raws("s"), AT + timedelta(days=1))
    with store.connect() as conn:
        stamps = conn.execute(select(raw_leads.c.received_at)).scalars().all()
    assert stamps == [AT, AT]  # the first landing of each (source, source_key) stays


def test_a_row_missing_a_column_fails_loudly(store: Store) -> None:
    with store.begin() as conn, pytest.raises(KeyError):
        repo._MARK_RAW.execute(conn, [{"rid": 1, "status": "processed"}])


def test_a_statement_of_one_parameter_gets_each_row_as_a_one_value_tuple(store: Store) -> None:
    forget = bulk.Bulk(lambda _d: raw_leads.delete().where(raw_leads.c.id == bindparam("rid")))
    with store.begin() as conn:
        repo.land(conn, _raws("s"), AT)
        first, second = conn.execute(select(raw_leads.c.id).order_by(raw_leads.c.id)).scalars()
        forget.execute(conn, [{"rid": first}])
        assert conn.execute(select(raw_leads.c.id)).scalars().all() == [second]
