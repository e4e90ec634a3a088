from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, inspect, select, text, update

from leadbridge.core.domain.models import RawLead
from leadbridge.core.store import migrate, repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import quarantine, raw_leads, target_links
from tests.conftest import FEW_PARAMETERS


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
        "replicas",
        "job_runs",
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


def test_postgresql_by_url_same_migrations_and_pipeline(pg_url: str, samples: list) -> None:
    """The same migrations and ingest on PostgreSQL (psycopg 3): landing stays idempotent."""
    from leadbridge.core.ingest import pipeline
    from leadbridge.core.settings import load_settings

    store = Store(pg_url)
    try:
        assert store.engine.dialect.name == "postgresql"
        assert migrate.is_current(store.engine)
        settings = load_settings(None, store=pg_url)
        raws = [
            RawLead(source="hook", source_key=str(i), kind="https", payload=s["https_payload"])
            for i, s in enumerate(samples)
        ]
        for raw in [*raws, *raws]:
            pipeline.land_one(store, raw)
        report = pipeline.process_pending(store, settings)
        assert report.processed == 12 and report.leads_created == 10
        with store.begin() as conn:
            repo.enqueue(conn, ["a" * 32], ["crm"], repo.utcnow())
            repo.enqueue(conn, ["a" * 32], ["crm"], repo.utcnow())
            rows = repo.pending_raw_leads(conn, 100)
            assert rows == [] and repo.outbox_depth(conn) == {"crm": 1}
            stored = repo.load_leads(conn, [report_key(conn)])
        lead = next(iter(stored.values()))
        assert lead.first_seen is not None and lead.first_seen.tzinfo is not None
    finally:
        store.dispose()


def report_key(conn) -> str:
    from sqlalchemy import select

    from leadbridge.core.store.tables import leads

    return conn.execute(
        select(leads.c.lead_key).where(leads.c.email == "jsmith@contoso.com")
    ).scalar_one()


def test_two_workers_on_postgresql_never_process_a_raw_lead_twice(
    pg_url: str, tmp_path: Path
) -> None:
    """The groundwork for replicas: raw leads claimed with SKIP LOCKED, leads merged one
    worker at a time, so the result is the one a single worker would have produced."""
    import threading

    from leadbridge.core.app.synthetic import raw_payloads
    from leadbridge.core.ingest import pipeline
    from leadbridge.core.settings import load_settings

    settings = load_settings(None, store=pg_url, batch_size=50)
    store = Store(pg_url)
    try:
        payloads = list(raw_payloads(1_500, returning=0.4))
        with store.begin() as conn:
            repo.land(
                conn,
                [
                    RawLead(source="s", source_key=str(i), kind="https", payload=p)
                    for i, p in enumerate(payloads)
                ],
                repo.utcnow(),
            )
        workers = [
            threading.Thread(target=pipeline.process_pending, args=(store, settings))
            for _ in range(3)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        with store.connect() as conn:
            one = lambda sql: conn.execute(text(sql)).scalar_one()  # noqa: E731
            assert one("SELECT count(*) FROM raw_leads WHERE status = 'new'") == 0
            assert one("SELECT count(*) FROM events WHERE kind = 'action'") == 1_500
            # Every action is folded into its lead exactly once, whichever worker did it.
            assert one("SELECT sum((data::json->>'raw_count')::int) FROM leads") == 1_500
    finally:
        store.dispose()


def test_the_migrations_match_the_tables(tmp_path: Path) -> None:
    """What Alembic builds is what tables.py declares: no column a migration forgot."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from leadbridge.core.store.tables import metadata

    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    with store.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diff if d[0] != "remove_table"] == []


def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    """Three replicas of a new deployment start at the same moment on an empty database:
    one migrates, the others wait for it and find nothing to do."""
    import threading

    errors: list[BaseException] = []
    stores: list[Store] = []

    def start() -> None:
        try:
            stores.append(Store(pg_url))
        except BaseException as exc:  # collected: a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(stores) == 3
    assert migrate.is_current(stores[0].engine)
    for store in stores:
        store.dispose()


def test_replicas_claiming_one_targets_outbox_get_disjoint_batches(pg_url: str) -> None:
    """Four workers drain one target's outbox at once on PostgreSQL: every row is claimed
    exactly once (row locks, SKIP LOCKED), so no lead goes to one CRM twice at the same time."""
    import threading
    import time
    from datetime import timedelta

    store = Store(pg_url)
    keys = [f"{i:032x}" for i in range(600)]
    with store.begin() as conn:
        repo.enqueue(conn, keys, ["crm"], repo.utcnow())
    claimed: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        mine = claimed.setdefault(name, [])
        while True:
            with store.begin() as conn:
                rows = repo.claim_due(conn, "crm", 25, repo.utcnow(), timedelta(minutes=5), name)
                time.sleep(0.005)  # hold the claim's locks while the others try
            if not rows:
                return
            mine.extend(r.lead_key for r in rows)
            with store.begin() as conn:  # pushed: the rows go, as delivery's `complete`
                repo.complete(conn, [r.id for r in rows], name)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    every = [key for batch in claimed.values() for key in batch]
    assert sorted(every) == keys  # each row once: none twice, none missed
    assert sum(1 for batch in claimed.values() if batch) >= 2  # they really did share it
    store.dispose()


def test_requeuing_a_reason_takes_more_rows_than_a_statement_takes_parameters(
    store: Store,
) -> None:
    """A reason can cover a whole backfill: more rows than a statement takes parameters
    (SQLite's limit is lowered to 100 here) are put back, not refused; a row whose payload
    was redacted stays quarantined."""
    now = repo.utcnow()
    with store.begin() as conn:
        conn.connection.driver_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
        raws = [
            RawLead(source="s", source_key=str(i), kind="https", payload={}) for i in range(150)
        ]
        repo.land(conn, raws, now)
        ids = list(conn.execute(select(raw_leads.c.id).order_by(raw_leads.c.id)).scalars())
        conn.execute(update(raw_leads).values(status="quarantined"))
        conn.execute(update(raw_leads).where(raw_leads.c.id == ids[0]).values(redacted_at=now))
        for rid in ids:
            row = {"raw_lead_id": rid, "reason": "test", "message": "test lead", "at": now}
            repo.add_quarantine(conn, [row])
        assert repo.requeue_quarantined(conn, None, "test") == 149
        assert repo.requeue_quarantined(conn, None, "malformed") == 0
        statuses = dict(conn.execute(select(raw_leads.c.id, raw_leads.c.status)).all())
        left = list(conn.execute(select(quarantine.c.raw_lead_id)).scalars())
    assert statuses.pop(ids[0]) == "quarantined" and left == [ids[0]]  # redacted: stays
    assert set(statuses.values()) == {"new"}


def test_records_marked_created_take_any_number_of_leads(few_parameters: Store) -> None:
    """A delivery batch larger than a statement's parameters (HubSpot's 100, a webhook's
    thousand): every record the CRM made is marked leadbridge's, and one already marked
    keeps the time it was first marked — set once, never moved."""
    first, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    keys = [f"{n:032x}" for n in range(FEW_PARAMETERS + 50)]
    with few_parameters.begin() as conn:
        repo.save_links(conn, [{"lead_key": k, "target": "crm", "external_id": k} for k in keys])
        repo.save_links(conn, [{"lead_key": keys[0], "target": "other", "external_id": "x"}])
        repo.mark_created(conn, "crm", keys[:1], first)
        repo.mark_created(conn, "crm", keys, later)
    with few_parameters.connect() as conn:
        marked = dict(
            conn.execute(
                select(target_links.c.lead_key, target_links.c.created_at).where(
                    target_links.c.target == "crm"
                )
            ).all()
        )
        other = conn.execute(
            select(target_links.c.created_at).where(target_links.c.target == "other")
        ).scalar_one()
    assert marked == {keys[0]: first} | {k: later for k in keys[1:]}
    assert other is None  # another CRM's record of the same lead is not this one's


def _snapshot_reads_one_moment(store: Store) -> None:
    """A raw lead landed and committed between two reads of a snapshot isn't seen by the
    second; a plain connection sees it at once."""

    def land(key: str) -> None:
        with store.begin() as conn:
            raw = RawLead(source="s", source_key=key, kind="https", payload={})
            repo.land(conn, [raw], datetime(2026, 5, 1, tzinfo=UTC))

    count = select(func.count()).select_from(raw_leads)
    land("before")
    with store.snapshot() as snap, store.connect() as plain:
        assert snap.execute(count).scalar_one() == 1
        land("between")
        assert snap.execute(count).scalar_one() == 1
        assert plain.execute(count).scalar_one() == 2
        assert snap.execute(select(raw_leads.c.source_key)).scalars().all() == ["before"]
    with store.snapshot() as snap:  # a new snapshot starts from now
        assert snap.execute(count).scalar_one() == 2


def test_a_snapshot_reads_one_moment_on_sqlite(store: Store) -> None:
    _snapshot_reads_one_moment(store)


def test_a_snapshot_reads_one_moment_on_postgresql(pg_store: Store) -> None:
    _snapshot_reads_one_moment(pg_store)
    with pg_store.snapshot() as snap:  # and it can't write by mistake
        assert snap.exec_driver_sql("SHOW transaction_read_only").scalar_one() == "on"
        level = snap.exec_driver_sql("SHOW transaction_isolation").scalar_one()
        assert level == "repeatable read"
    with pg_store.connect() as plain:  # the pool's next user gets the default back
        assert plain.exec_driver_sql("SHOW transaction_read_only").scalar_one() == "off"
