"""The cluster engine's parts on the local PostgreSQL: the queue schema made once and
version-checked, periodic defers once per period whichever replicas defer, and the sweep
that frees dead replicas' jobs. The whole cluster runs in tests/e2e/test_cluster.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from leadbridge.core.app.engines.jobs import JobStreak, Schedule
from leadbridge.core.app.engines.procrastinate import (
    SCHEMA_CURSOR,
    ClusterEngine,
    _period_start,
    _until_next_period,
    conninfo,
    prepare_schema,
)
from leadbridge.core.app.synthetic import write_jsonl
from leadbridge.core.settings import ConfigError, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store


def test_cluster_needs_a_postgresql_store() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, store="sqlite:///x.db", engine="cluster")
    (problem,) = err.value.problems
    assert problem.key == "engine" and "postgresql://" in problem.fix


def test_periods_are_the_configured_intervals_not_cron() -> None:
    assert _period_start(1_000_000_005.5, timedelta(seconds=90)) == 999_999_990
    every = [Schedule("a", timedelta(seconds=90)), Schedule("b", timedelta(seconds=7))]
    assert _until_next_period(1_000_000_005.5, every) == pytest.approx(2.5)  # b: 1_000_000_008


def test_conninfo_keeps_credentials_and_options() -> None:
    url = "postgresql+psycopg://lb:p%40ss@db:5433/leads?sslmode=require"
    assert conninfo(url) == "postgresql://lb:p%40ss@db:5433/leads?sslmode=require"


def _engine(pg_url: str, **cluster: str) -> ClusterEngine:
    settings = load_settings(None, store=pg_url, engine="cluster", cluster=cluster)
    return ClusterEngine(settings, Store(pg_url), threading.Event())


def test_the_queue_schema_is_made_once_and_another_version_is_refused(pg_url: str) -> None:
    store = Store(pg_url)
    prepare_schema(store)
    prepare_schema(store)  # a second replica: nothing to do
    with store.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar() == 0
        repo.set_cursor(conn, SCHEMA_CURSOR, "2.0.0", repo.utcnow())
    with pytest.raises(RuntimeError, match=r"apply procrastinate's migrations from 2\.0\.0"):
        prepare_schema(store)
    store.dispose()


def test_a_period_is_deferred_once_whichever_replicas_defer_it(pg_url: str) -> None:
    first, second = _engine(pg_url), _engine(pg_url)
    prepare_schema(first.store)

    async def defer_from_both() -> None:
        async with first.app.open_async(), second.app.open_async():
            for engine in (first, second, first):
                await engine._defer("ingest:table", period=1_800_000_000)
            await second._defer("ingest:table", period=1_800_000_060)

    asyncio.run(defer_from_both())
    with first.store.connect() as conn:
        jobs = conn.execute(
            text("SELECT args->>'timestamp' FROM procrastinate_jobs ORDER BY id")
        ).scalars()
        # The second period found the first period's job still waiting (queueing lock):
        # nothing piles up behind it.
        assert list(jobs) == ["1800000000"]


def test_the_sweep_frees_a_dead_replicas_jobs(pg_url: str) -> None:
    engine = _engine(pg_url, stalled_after="5s")
    prepare_schema(engine.store)
    with engine.store.begin() as conn:
        dead = conn.execute(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - interval '1 hour') RETURNING id"
            )
        ).scalar()
        for job, status in (
            ("ingest:table", "doing"),  # alone: back to the queue
            ("deliver:sales", "doing"),  # a twin waits already: ended, its lock freed
            ("deliver:sales", "todo"),
        ):
            conn.execute(
                text(
                    "INSERT INTO procrastinate_jobs "
                    "(queue_name, task_name, lock, queueing_lock, args, status, worker_id) "
                    "VALUES ('leadbridge', 'leadbridge.job', :job, :job, "
                    "json_build_object('job', CAST(:job AS text)), "
                    "CAST(:status AS procrastinate_job_status), :worker)"
                ),
                {"job": job, "status": status, "worker": dead if status == "doing" else None},
            )

    async def sweep() -> list[str]:
        async with engine.app.open_async():
            return await engine._retry_stalled()

    assert sorted(asyncio.run(sweep())) == ["deliver:sales", "ingest:table"]
    with engine.store.connect() as conn:
        states = conn.execute(
            text("SELECT args->>'job', status FROM procrastinate_jobs ORDER BY id")
        ).all()
        workers = conn.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar()
    assert [tuple(s) for s in states] == [
        ("ingest:table", "todo"),
        ("deliver:sales", "aborted"),
        ("deliver:sales", "todo"),
    ]
    assert workers == 0  # the dead replica's worker row is gone too


def test_the_sweep_forgets_ended_jobs_after_a_week(pg_url: str) -> None:
    engine = _engine(pg_url)
    prepare_schema(engine.store)
    with engine.store.begin() as conn:
        for job, status, days in (("process", "failed", 8), ("process", "aborted", 1)):
            job_id = conn.execute(
                text(
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
                    "VALUES ('leadbridge', 'leadbridge.job', json_build_object('job', "
                    "CAST(:job AS text)), CAST(:status AS procrastinate_job_status)) "
                    "RETURNING id"
                ),
                {"job": job, "status": status},
            ).scalar()
            conn.execute(  # its history, moved back to when it ended
                text(
                    "UPDATE procrastinate_events SET at = now() - make_interval(days => :days) "
                    "WHERE job_id = :id"
                ),
                {"id": job_id, "days": days},
            )
            conn.execute(
                text(
                    "INSERT INTO procrastinate_events (job_id, type, at) VALUES "
                    "(:id, CAST(:status AS procrastinate_job_event_type), "
                    "now() - make_interval(days => :days))"
                ),
                {"id": job_id, "status": status, "days": days},
            )

    async def sweep() -> list[str]:
        async with engine.app.open_async():
            return await engine._retry_stalled()

    assert asyncio.run(sweep()) == []
    with engine.store.connect() as conn:
        left = conn.execute(text("SELECT status FROM procrastinate_jobs")).scalars().all()
    assert left == ["aborted"]  # a day old: kept; the week-old failure: gone


def test_a_replica_counts_a_jobs_failures_in_a_row_until_it_recovers(
    pg_url: str, tmp_path: Path
) -> None:
    """The same bookkeeping as the single engine's, through procrastinate's worker: the
    source's file is missing, every ingest run fails; once it is there, the next run clears
    it (what /readyz reports)."""
    leads = tmp_path / "leads.jsonl"
    settings = load_settings(
        None,
        store=pg_url,
        engine="cluster",
        cluster={"heartbeat": "1s"},
        sources=[{"name": "file", "kind": "leads_file", "path": str(leads), "every": "1s"}],
    )
    engine = ClusterEngine(settings, Store(pg_url), threading.Event())

    def streak() -> JobStreak:
        return engine.replica.streaks().get("ingest:file", JobStreak())

    def wait_for(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    engine.start()
    try:
        wait_for(lambda: streak().failures >= 3, "three failures in a row")
        assert streak().error == "FileNotFoundError"
        write_jsonl(leads, 3)
        wait_for(lambda: streak().failures == 0, "a run that succeeds")
    finally:
        assert engine.shutdown(20)
        engine.store.dispose()
