"""The notification outbox: alerts are rows in the store before they are messages.

`enqueue` is called inside the transaction that records the fact an alert reports (a CRM's
confirmation of a hot lead, a target seen down), so the alert exists exactly when the fact
does. It writes one row per channel that wants the event; `dedupe_key` names the fact
(`hot_lead:<lead>:<stage>`), and the unique (dedupe_key, channel) makes a second enqueue of
the same fact a no-op — a push retried after a crash, or two replicas watching, alert once.

Each channel's rows are claimed, sent and marked on their own (core/alerts/send.py), so a
channel that fails for hours holds only its own rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, update

from leadbridge.core.domain.alerting import LEAD_EVENTS, AlertEvent, AlertSettings
from leadbridge.core.store.dialect import insert
from leadbridge.core.store.tables import alert_channels, alerts

PENDING, SENT, DROPPED = "pending", "sent", "dropped"


@dataclass(frozen=True)
class Alert:
    """One fact to tell people about, before it is fanned out to channels."""

    event: AlertEvent
    dedupe_key: str
    data: dict[str, Any]
    # For lead events, what a channel's `when` filter looks at.
    offer: str | None = None
    country: str | None = None
    score: int | None = None


def enqueue(
    conn: Connection, settings: AlertSettings, items: Sequence[Alert], now: datetime
) -> int:
    """Queue each alert for every channel that wants it; returns the rows written (an alert
    already queued for a channel is not written again)."""
    rows = [
        {
            "channel": channel.name,
            "event": item.event.value,
            "dedupe_key": item.dedupe_key[:300],
            "data": item.data,
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
            "state": PENDING,
            "grouped": False,
        }
        for item in items
        for channel in settings.channels
        if channel.wants(item.event)
        and (
            item.event not in LEAD_EVENTS
            or channel.when.admits(item.offer, item.country, item.score)
        )
    ]
    if not rows:
        return 0
    stmt = insert(conn, alerts).on_conflict_do_nothing(index_elements=["dedupe_key", "channel"])
    result = conn.execute(stmt, rows)
    return max(result.rowcount, 0)


def claim_due(
    conn: Connection, channel: str, now: datetime, lease: timedelta, worker: str, limit: int
) -> list[Any]:
    """Claim a channel's due rows for `lease`. A claim whose worker died (crash between
    sending and marking) expires and the rows are claimed — and sent — again: at least once."""
    free = or_(
        alerts.c.claimed_until.is_(None),
        alerts.c.claimed_until < now,
        alerts.c.claimed_by == worker,
    )
    stmt = (
        select(alerts)
        .where(
            alerts.c.channel == channel,
            alerts.c.state == PENDING,
            alerts.c.next_attempt_at <= now,
            free,
        )
        .order_by(alerts.c.next_attempt_at, alerts.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(conn.execute(stmt))
    if rows:
        conn.execute(
            update(alerts)
            .where(alerts.c.id.in_([r.id for r in rows]))
            .values(claimed_by=worker, claimed_until=now + lease)
        )
    return rows


def mark_sent(
    conn: Connection, ids: Sequence[int], now: datetime, worker: str, *, grouped: bool = False
) -> int:
    """Sent: marked once, by the worker holding the claim (a row another worker reclaimed
    after this one's lease ran out is that worker's to mark)."""
    if not ids:
        return 0
    result = conn.execute(
        update(alerts)
        .where(alerts.c.id.in_(list(ids)), alerts.c.state == PENDING, alerts.c.claimed_by == worker)
        .values(state=SENT, sent_at=now, claimed_by=None, claimed_until=None, grouped=grouped)
    )
    return max(result.rowcount, 0)


def retry_later(conn: Connection, rows: Sequence[Any], at: datetime, error: str) -> None:
    """The channel failed: each row waits until `at` and counts the attempt."""
    if rows:
        conn.execute(
            update(alerts)
            .where(alerts.c.id.in_([r.id for r in rows]))
            .values(
                attempts=alerts.c.attempts + 1,
                next_attempt_at=at,
                last_error=error[:500],
                claimed_by=None,
                claimed_until=None,
            )
        )


def defer(conn: Connection, ids: Sequence[int], at: datetime) -> None:
    """Held back by the channel's grouping window: sent with the rest when it ends."""
    if ids:
        conn.execute(
            update(alerts)
            .where(alerts.c.id.in_(list(ids)))
            .values(next_attempt_at=at, claimed_by=None, claimed_until=None)
        )


def drop(conn: Connection, ids: Sequence[int]) -> None:
    """Never to be sent (the person it is about was erased)."""
    if ids:
        conn.execute(
            update(alerts)
            .where(alerts.c.id.in_(list(ids)))
            .values(state=DROPPED, claimed_by=None, claimed_until=None)
        )


def drop_stale(conn: Connection, now: datetime, max_age: timedelta) -> int:
    """Alerts still unsent after `max_age` are dropped: yesterday's hot lead is no news."""
    result = conn.execute(
        update(alerts)
        .where(alerts.c.state == PENDING, alerts.c.created_at < now - max_age)
        .values(state=DROPPED, claimed_by=None, claimed_until=None)
    )
    return max(result.rowcount, 0)


def prune(conn: Connection, before: datetime) -> int:
    """Sent and dropped rows older than `before` go (the dedupe keys they hold go with them,
    which is why `before` must be older than anything that could be reported again)."""
    result = conn.execute(
        delete(alerts).where(alerts.c.state != PENDING, alerts.c.created_at < before)
    )
    return max(result.rowcount, 0)


def pending_by_channel(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(alerts.c.channel, func.count())
        .where(alerts.c.state == PENDING)
        .group_by(alerts.c.channel)
    )
    return {channel: count for channel, count in rows}


def rows_for(conn: Connection, channel: str, states: Sequence[str]) -> list[Any]:
    return list(
        conn.execute(
            select(alerts)
            .where(and_(alerts.c.channel == channel, alerts.c.state.in_(list(states))))
            .order_by(alerts.c.id)
        )
    )


def channel_health(conn: Connection, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each channel's last success and failure, its back-off and what it has waiting
    (`leadbridge status`). The last error is the channel's own answer, redacted."""
    rows = {r.name: r for r in conn.execute(select(alert_channels))}
    pending = pending_by_channel(conn)
    out = {}
    for name in names:
        row = rows.get(name)
        out[name] = {
            "pending": pending.get(name, 0),
            "last_success_at": _iso(row.last_success_at) if row else None,
            "last_failure_at": _iso(row.last_failure_at) if row else None,
            "last_error": row.last_error if row else None,
            "failures": row.failures if row else 0,
            "retry_at": _iso(row.retry_at) if row else None,
        }
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
