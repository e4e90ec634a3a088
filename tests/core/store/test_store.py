from __future__ import annotations

from pathlib import Path

from leadbridge.core.models import RawLead
from leadbridge.core.store import migrate, repo
from leadbridge.core.store.repo import Store
from sqlalchemy import inspect, text


def test_migrations_reach_head_and_create_every_table(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    assert migrate.is_current(store.engine)
    names = set(inspect(store.engine).get_table_names())
    assert names >= {
        "raw_leads",
        "contacts",
        "leads",
        "events",
        "quarantine",
        "cursors",
        "outbox",
        "target_links",
        "dead_letters",
        "offer_aliases",
    }
    migrate.upgrade(store.engine)  # idempotent
    assert migrate.is_current(store.engine)


def test_sqlite_runs_in_wal_mode(store: Store) -> None:
    with store.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one().lower() == "wal"


def test_landing_is_idempotent_on_the_source_key(store: Store) -> None:
    raw = RawLead(source="s", source_key="k", kind="https", payload={"a": 1})
    changed = RawLead(source="s", source_key="k", kind="https", payload={"a": 2})
    with store.begin() as conn:
        repo.land(conn, [raw, raw], repo.utcnow())
    with store.begin() as conn:
        repo.land(conn, [changed], repo.utcnow())
    with store.connect() as conn:
        rows = repo.pending_raw_leads(conn, 10)
    assert len(rows) == 1 and rows[0].payload == {"a": 1}  # the first copy is kept, never edited
    assert rows[0].received_at.tzinfo is not None


def test_cursor_round_trip(store: Store) -> None:
    with store.begin() as conn:
        repo.set_cursor(conn, "source:x", "1", repo.utcnow())
        repo.set_cursor(conn, "source:x", "2", repo.utcnow())
    with store.connect() as conn:
        assert repo.get_cursor(conn, "source:x") == "2"
