"""What `leadbridge status` shows (and the console's overview, and /healthz's targets),
read with only the store's own modules loaded.

Kept apart from views.py on purpose: views loads the ingest pipeline and the erasure job,
and with them requests and prometheus_client — about 40 % of the command's start-up, for
a few table reads (docs/benchmarks.md, "Start-up"). tests/core/app/test_cli_startup.py
checks `status` loads none of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from leadbridge.core.alerts.outbox import channel_health
from leadbridge.core.delivery.pauses import running_pauses
from leadbridge.core.store import repo, runs, state
from leadbridge.core.store.repo import utcnow
from leadbridge.core.store.tables import erasures, events, leads, quarantine, raw_leads


def status(
    conn: Connection,
    source_names: list[str],
    target_names: list[str],
    silent_after: timedelta = timedelta(seconds=30),
    channel_names: list[str] | None = None,
) -> dict[str, Any]:
    """Everything `leadbridge status` shows (the documented `--format json` shape,
    docs/cli-json.md); a replica silent for `silent_after` is lost."""
    now = utcnow()
    return {
        "sources": _sources(conn, source_names),
        "raw_leads": repo.count_by(conn, raw_leads.c.status),
        "quarantine": repo.count_by(conn, quarantine.c.reason),
        "last_test_lead_at": state.get(conn, state.LAST_TEST_LEAD),
        "leads": {
            "total": _count(conn, select(func.count()).select_from(leads)),
            "by_stage": repo.count_by(conn, leads.c.stage),
        },
        "events": _count(conn, select(func.count()).select_from(events)),
        # `leads forget` still waiting on a target (asked again by the daemon, or a rerun)
        "erasures_pending": _count(
            conn,
            select(func.count()).select_from(erasures).where(erasures.c.finished_at.is_(None)),
        ),
        "targets": _targets(conn, target_names, now),
        "replicas": replica_rows(conn, now, silent_after),
        "queue": runs.queue_depth(conn),
        "jobs": _jobs(conn),
    } | ({"alerts": channel_health(conn, channel_names)} if channel_names else {})


def _count(conn: Connection, stmt: Any) -> int:
    return int(conn.execute(stmt).scalar_one())


def _sources(conn: Connection, names: list[str]) -> dict[str, dict[str, Any]]:
    """Each configured source's cursor, when it moved, and how many raw leads it landed."""
    cursor_rows = state.every_updated(conn, "source_cursor")
    out = {}
    for name in names:
        row = cursor_rows.get(name)
        out[name] = {
            "cursor": row.value if row else None,
            "updated_at": row.updated_at.isoformat() if row else None,
            "raw_leads": _count(
                conn,
                select(func.count()).select_from(raw_leads).where(raw_leads.c.source == name),
            ),
        }
    return out


def _targets(conn: Connection, names: list[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Each configured target's queue, dead letters, health and any vendor pause (nothing
    is sent to a paused target before `until`, by any process)."""
    outbox = repo.outbox_depth(conn)
    dead = repo.open_dead_letters(conn)
    paused = {p.target: p.as_json() for p in running_pauses(conn, now)}
    return {
        name: {
            "outbox": outbox.get(name, 0),
            "dead_letters": dead.get(name, 0),
            "health": target_health(conn, name),
            "paused": paused.get(name),
        }
        for name in names
    }


def _jobs(conn: Connection) -> dict[str, dict[str, Any]]:
    return {
        job: {
            "replica": run.replica,
            "trigger": run.trigger,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "outcome": run.outcome,
        }
        for job, run in runs.last_runs(conn).items()
    }


def replica_rows(conn: Connection, now: datetime, silent_after: timedelta) -> list[dict[str, Any]]:
    """Each `leadbridge run` process: up (beating), stopped (said goodbye), or lost (silent:
    killed, or its node gone — in cluster mode its jobs run again elsewhere)."""
    out = []
    for row in runs.list_replicas(conn):
        replica_state = runs.replica_state(row, now, silent_after)
        out.append(
            {
                "name": row.name,
                "engine": row.engine,
                "state": replica_state,
                "started_at": row.started_at.isoformat(),
                "heartbeat_at": row.heartbeat_at.isoformat(),
                "doing": list(row.doing) if replica_state == "up" else [],
            }
        )
    return out


def target_health(conn: Connection, name: str) -> dict[str, Any]:
    """What the last delivery run recorded of the target (`unknown` before the first)."""
    return state.get_json(conn, state.target_health(name)) or {"state": "unknown"}
