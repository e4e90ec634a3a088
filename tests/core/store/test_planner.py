"""A long ingest keeps PostgreSQL's planner statistics in step with the tables it grows
(core/store/planner.py): analyzed each time they double, never for SQLite, and a refresh
that can't get its lock is given up while the ingest goes on."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url, text

from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.core.app.synthetic import write_jsonl
from leadbridge.core.ingest.pipeline import ingest
from leadbridge.core.settings import load_settings
from leadbridge.core.store import planner
from leadbridge.core.store.planner import PlannerStatistics
from leadbridge.core.store.repo import Store


def _watched(store: Store, believed: float, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The landed counts at which `store`'s planner statistics would be refreshed, the
    planner believing raw_leads holds `believed` rows at the start."""
    analyzed: list[int] = []
    monkeypatch.setattr(PlannerStatistics, "_planner_rows", lambda _self: believed)
    monkeypatch.setattr(PlannerStatistics, "_analyze", lambda _self: analyzed.append(0) or True)
    return analyzed


def _refreshed_at(statistics: PlannerStatistics, counts: range, analyzed: list[int]) -> list[int]:
    at = []
    for count in counts:
        before = len(analyzed)
        statistics.landed(count)
        if len(analyzed) > before:
            at.append(count)
    return at


def test_a_new_store_is_analyzed_each_time_it_doubles(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzed = _watched(pg_store, 0.0, monkeypatch)
    statistics = PlannerStatistics(pg_store)
    assert _refreshed_at(statistics, range(500, 20_001, 500), analyzed) == [2000, 4000, 8000, 16000]


def test_a_large_analyzed_store_is_left_alone_by_a_small_ingest(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll of 30,000 rows into a store the planner knows holds a million changes nothing
    it plans by; a million more does."""
    analyzed = _watched(pg_store, 1_000_000.0, monkeypatch)
    statistics = PlannerStatistics(pg_store)
    assert _refreshed_at(statistics, range(500, 30_001, 500), analyzed) == []
    assert _refreshed_at(statistics, range(999_500, 1_000_501, 500), analyzed) == [1_000_000]


def test_a_refresh_that_failed_is_asked_again_only_a_quarter_later(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock held by a long VACUUM: not one `LOCK_WAIT` per batch while it lasts."""
    results, asked = iter([False, True]), []
    monkeypatch.setattr(PlannerStatistics, "_planner_rows", lambda _self: 0.0)
    monkeypatch.setattr(
        PlannerStatistics, "_analyze", lambda _self: asked.append(1) or next(results)
    )
    statistics = PlannerStatistics(pg_store)
    for count in range(2000, 4001, 500):
        statistics.landed(count)
    assert len(asked) == 2  # at 2,000 (refused), then at 4,000: 2,000 rows later at least
    assert statistics._believed == 4000


def test_a_user_who_does_not_own_the_tables_leaves_them_to_autovacuum(
    pg_store: Store, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL would skip the tables with a warning only its own log shows: leadbridge
    asks once whether it may, says so, and never runs the ANALYZE."""
    role = f"lb_not_owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    user_url = make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    store = Store(user_url, upgrade=False)
    try:
        statistics = PlannerStatistics(store)
        with caplog.at_level(logging.INFO, logger=planner.log.name):
            statistics.landed(5000)
        assert statistics.enabled is False and "autovacuum" in caplog.text
    finally:
        store.dispose()
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"')
            admin.execute(f'DROP ROLE "{role}"')


def test_sqlite_plans_without_statistics_and_is_never_analyzed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzed = _watched(store, 0.0, monkeypatch)
    assert _refreshed_at(PlannerStatistics(store), range(500, 20_001, 500), analyzed) == []


def test_a_backfill_into_a_new_postgresql_store_analyzes_the_tables_it_grows(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500 raw leads in batches of 100 into an empty store, the first refresh brought down
    from 2,000 rows to 200: its tables are analyzed on the way (at 200 and 400 read),
    whatever autovacuum does on this server."""
    monkeypatch.setattr(planner, "FIRST_AT", 200)
    leads_file = tmp_path / "leads.jsonl"
    write_jsonl(leads_file, 500)
    settings = load_settings(None, store=pg_url, batch_size=100)
    store = Store(settings.store)
    try:
        source = LeadsFileSource(LeadsFileConfig(name="backfill", path=leads_file))
        assert ingest(source, store, settings).processed == 500
        with store.connect() as conn:
            analyzed = conn.execute(
                text(
                    "SELECT relname, analyze_count FROM pg_stat_user_tables "
                    "WHERE relname IN ('raw_leads', 'leads', 'contacts', 'events', 'outbox')"
                )
            ).all()
            believed = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('raw_leads')")
            ).scalar_one()
    finally:
        store.dispose()
    assert dict(analyzed) == {"raw_leads": 2, "leads": 2, "contacts": 2, "events": 2, "outbox": 2}
    assert believed >= 400  # what it held when last analyzed (or autovacuum, after)


def test_a_lock_held_elsewhere_gives_the_refresh_up_and_says_so(
    pg_store: Store, pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another replica's ANALYZE, or a migration, holds the table: the refresh waits
    `LOCK_WAIT`, then is given up — the ingest is not held up for a planner hint."""
    monkeypatch.setattr(planner, "LOCK_WAIT", "100ms")
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as other:
        other.execute("LOCK TABLE leads IN SHARE UPDATE EXCLUSIVE MODE")
        with caplog.at_level(logging.WARNING, logger=planner.log.name):
            assert PlannerStatistics(pg_store)._analyze() is False
    assert "not refreshed" in caplog.text
    assert PlannerStatistics(pg_store)._analyze() is True  # the lock gone, it runs
