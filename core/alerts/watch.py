"""The watcher: alerts about the state of things rather than about one lead.

- `target_down` / `target_recovered`: a target is *bad* while its credentials are refused
  (its health is `fatal`), a vendor's pause holds it, or it has leads in retry and no push
  has landed for `target_down_after`. Bad for longer than `target_down_after` → one
  `target_down`; good again after that → one `target_recovered`. What the watcher saw is
  kept in the store (`state.alert_target`), so a restart neither forgets an outage nor
  announces it twice. Pauses and health are read through core/store/state.py keys (the
  delivery layer that writes them is above this one).
- `dead_letters`: the dead letters made since the last look, one alert per target per look
  (the watcher runs every `watch_every`), with the CRM's reasons counted. The first look
  only sets the watermark: a backlog from before alerts were configured is not news.

Every alert is queued in the same transaction as the watcher's own record of it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from leadbridge.core.alerts import outbox
from leadbridge.core.alerts.outbox import Alert
from leadbridge.core.domain.alerting import AlertEvent, AlertSettings
from leadbridge.core.domain.durations import format_duration
from leadbridge.core.settings import Settings
from leadbridge.core.store import state
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import dead_letters, target_links
from leadbridge.core.store.tables import outbox as lead_outbox
from leadbridge.core.support.logs import redact

log = logging.getLogger("leadbridge.alerts")
DEAD_LETTERS = state.alert_watermark("dead_letters")
REASONS_SHOWN = 5


@dataclass
class WatchReport:
    down: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    queued: int = 0


def watch(store: Store, settings: Settings, now: datetime | None = None) -> WatchReport:
    """One look at every target and at the dead letters."""
    now = now or utcnow()
    report = WatchReport()
    if not settings.alerts.channels:
        return report
    for target in [t.name for t in settings.targets]:
        with store.begin() as conn:
            report.queued += _watch_target(conn, settings.alerts, target, now, report)
    with store.begin() as conn:
        report.queued += _watch_dead_letters(conn, settings.alerts, now, report)
    return report


def why_bad(conn: Connection, target: str, now: datetime, after: timedelta) -> str | None:
    """Why the target is not delivering now, or None when it is fine."""
    health = state.get_json(conn, state.target_health(target)) or {}
    if health.get("state") == "fatal":
        return f"credentials or configuration refused: {health.get('message') or ''}".strip()
    pause = state.get_json(conn, state.target_pause(target)) or {}
    until = _when(pause.get("until"))
    if until is not None and until > now:
        return f"paused by the vendor until {until.isoformat()}: {pause.get('why') or ''}"
    retrying = conn.execute(
        select(func.count())
        .select_from(lead_outbox)
        .where(lead_outbox.c.target == target, lead_outbox.c.attempts > 0)
    ).scalar_one()
    if not retrying:
        return None
    last = conn.execute(
        select(func.max(target_links.c.pushed_at)).where(target_links.c.target == target)
    ).scalar_one()
    last_at = _when(last) if isinstance(last, str) else last
    if last_at is None or last_at < now - after:
        return f"{retrying} lead(s) in retry and nothing delivered since {_iso(last_at)}"
    return None


def _watch_target(
    conn: Connection, settings: AlertSettings, target: str, now: datetime, report: WatchReport
) -> int:
    key = state.alert_target(target)
    seen = state.get_json(conn, key)
    why = why_bad(conn, target, now, settings.target_down_after)
    if why is None:
        if seen is None:
            return 0
        state.forget(conn, key)
        if not seen.get("alerted"):
            return 0
        report.recovered.append(target)
        since = _when(seen.get("since")) or now
        data = {"target": target, "since": seen["since"], "down_for": _took(now - since)}
        item = Alert(
            AlertEvent.TARGET_RECOVERED, f"target_recovered:{target}:{seen['since']}", data
        )
        return outbox.enqueue(conn, settings, [item], now)
    if seen is None:
        state.put_json(conn, key, {"since": now.isoformat(), "alerted": False, "why": why}, now)
        seen = {"since": now.isoformat(), "alerted": False}
    since = _when(seen.get("since")) or now
    if seen.get("alerted") or now - since < settings.target_down_after:
        return 0
    state.put_json(conn, key, {"since": seen["since"], "alerted": True, "why": why}, now)
    report.down.append(target)
    log.warning("target down", extra={"target": target, "since": seen["since"]})
    data = {"target": target, "since": seen["since"], "why": redact(why)[:300]}
    item = Alert(AlertEvent.TARGET_DOWN, f"target_down:{target}:{seen['since']}", data)
    return outbox.enqueue(conn, settings, [item], now)


def _watch_dead_letters(
    conn: Connection, settings: AlertSettings, now: datetime, report: WatchReport
) -> int:
    newest = conn.execute(select(func.max(dead_letters.c.id))).scalar_one() or 0
    mark = state.get(conn, DEAD_LETTERS)
    state.put(conn, DEAD_LETTERS, str(newest), now)
    if mark is None or int(mark) >= newest:
        return 0
    rows = conn.execute(
        select(dead_letters.c.id, dead_letters.c.target, dead_letters.c.error_class)
        .add_columns(dead_letters.c.error)
        .where(dead_letters.c.id > int(mark), dead_letters.c.id <= newest)
    ).all()
    by_target: dict[str, list[Any]] = {}
    for row in rows:
        by_target.setdefault(row.target, []).append(row)
    items = []
    for target, letters in sorted(by_target.items()):
        report.dead_letters[target] = len(letters)
        # The CRM's words, with any address or secret in them masked.
        reasons = Counter((r.error_class, redact(str(r.error))[:200]) for r in letters)
        data = {
            "target": target,
            "count": len(letters),
            "first_id": min(r.id for r in letters),
            "last_id": max(r.id for r in letters),
            "reasons": [
                {"error_class": cls, "error": error, "count": count}
                for (cls, error), count in reasons.most_common(REASONS_SHOWN)
            ],
        }
        items.append(Alert(AlertEvent.DEAD_LETTERS, f"dead_letters:{target}:{newest}", data))
    return outbox.enqueue(conn, settings, items, now)


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "never"


def _took(span: timedelta) -> str:
    return format_duration(timedelta(seconds=round(span.total_seconds())))
