"""Replicas and job runs: the SQL behind `leadbridge status`'s view of who is doing what.

Kept apart from repo.py because it is about the processes, not the leads: a replica row is
written by its own heartbeat, a job-run row by the job's wrapper, and both are pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, text, update

from leadbridge.core.store.repo import upsert_rows
from leadbridge.core.store.tables import job_runs, replicas


def beat(conn: Connection, name: str, engine: str, doing: Sequence[str], at: datetime) -> None:
    """Say this replica is alive and what it has in hand (first beat registers it)."""
    row = {"name": name, "engine": engine, "heartbeat_at": at, "doing": sorted(doing)}
    updated = conn.execute(
        update(replicas)
        .where(replicas.c.name == name)
        .values(heartbeat_at=at, doing=row["doing"], stopped_at=None)
    ).rowcount
    if not updated:
        upsert_rows(conn, replicas, [{**row, "started_at": at, "stopped_at": None}], ["name"])


def stopped(conn: Connection, name: str, at: datetime) -> None:
    conn.execute(update(replicas).where(replicas.c.name == name).values(stopped_at=at, doing=[]))


def list_replicas(conn: Connection) -> list[Any]:
    return list(conn.execute(select(replicas).order_by(replicas.c.started_at, replicas.c.name)))


def replica_state(row: Any, now: datetime, silent_after: timedelta) -> str:
    """up (beating), stopped (said goodbye), or lost (silent: killed, or its node gone)."""
    if row.stopped_at is not None:
        return "stopped"
    return "lost" if now - row.heartbeat_at > silent_after else "up"


def run_started(
    conn: Connection, job: str, replica: str, trigger: str, period: int | None, at: datetime
) -> int:
    run_id: int = conn.execute(
        insert(job_runs)
        .values(job=job, replica=replica, trigger=trigger, period=period, started_at=at)
        .returning(job_runs.c.id)
    ).scalar_one()
    return run_id


def add_runs(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Finished runs recorded after the fact (the single engine's buffered runs)."""
    if rows:
        conn.execute(insert(job_runs), list(rows))


def run_finished(conn: Connection, run_id: int, outcome: str, at: datetime) -> None:
    conn.execute(
        update(job_runs).where(job_runs.c.id == run_id).values(finished_at=at, outcome=outcome)
    )


def last_runs(conn: Connection) -> dict[str, Any]:
    """The newest run of every job."""
    newest = (
        select(job_runs.c.job, func.max(job_runs.c.id).label("id"))
        .group_by(job_runs.c.job)
        .subquery()
    )
    rows = conn.execute(
        select(job_runs).join(newest, newest.c.id == job_runs.c.id).order_by(job_runs.c.job)
    )
    return {row.job: row for row in rows}


def prune(conn: Connection, now: datetime, runs_for: timedelta, replicas_for: timedelta) -> None:
    """Forget job runs older than `runs_for`, and replicas stopped or silent for `replicas_for`."""
    conn.execute(delete(job_runs).where(job_runs.c.started_at < now - runs_for))
    gone = now - replicas_for
    conn.execute(
        delete(replicas).where(or_(replicas.c.stopped_at < gone, replicas.c.heartbeat_at < gone))
    )


def queue_depth(conn: Connection) -> dict[str, int] | None:
    """Cluster mode's procrastinate jobs by status (todo, doing, …); None without a queue."""
    if conn.dialect.name != "postgresql":
        return None
    if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
        return None
    rows = conn.execute(
        text(
            "SELECT status::text, count(*) FROM procrastinate_jobs "
            "WHERE status IN ('todo', 'doing') GROUP BY status"
        )
    )
    return {"todo": 0, "doing": 0} | {status: int(count) for status, count in rows}
