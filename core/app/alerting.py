"""Alerts computed from the funnel report: the follow-up SLA and the daily digest.

They live in the application layer because they reuse the report's own arithmetic
(core/reports/funnel.py), which sits above the alerts layer: a Contact-me lead is at risk
or late for an alert exactly when it is for the report.

- `sla_at_risk`: a Contact-me lead not touched by sales yet, whose follow-up window
  (`reports.sla_hours`) ends within `alerts.sla_warn_before`. Once per lead.
- `sla_breached`: its window is over and nobody touched it. Once per lead; breaches whose
  window ended longer than `alerts.max_age` ago are history, not news.
- `digest`: once a day, at `alerts.digest_at` in `alerts.timezone`, the day before in
  figures (new leads, MQLs, SQLs, acceptance, SLA breaches) and every target's health.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from leadbridge.core.alerts import outbox
from leadbridge.core.alerts.outbox import Alert
from leadbridge.core.delivery.pauses import running_pauses
from leadbridge.core.domain.alerting import AlertEvent
from leadbridge.core.reports.funnel import Period, funnel
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store, utcnow

DIGEST = state.alert_watermark("digest")


def follow_ups(store: Store, settings: Settings, now: datetime | None = None) -> int:
    """Queue the SLA alerts due now; returns the rows queued."""
    now = now or utcnow()
    alerts = settings.alerts
    if not any(
        c.wants(AlertEvent.SLA_AT_RISK) or c.wants(AlertEvent.SLA_BREACHED) for c in alerts.channels
    ):
        return 0
    window = timedelta(hours=settings.reports.sla_hours)
    # Contact-me requests whose window is running or ended within max_age.
    period = Period(now - window - alerts.max_age, now + timedelta(seconds=1), "alerts")
    with store.snapshot() as conn:
        sla = funnel(conn, period, sla_hours=settings.reports.sla_hours, now=now)["total"]["sla"]
        warn = alerts.sla_warn_before.total_seconds() / 3600
        at_risk = [o for o in sla["open"] if o["hours_left"] <= warn]
        breached = [
            b
            for b in sla["breaches"]
            if b["first_touch_at"] is None
            and datetime.fromisoformat(b["due_by"]) >= now - alerts.max_age
        ]
        items = _lead_alerts(conn, AlertEvent.SLA_AT_RISK, at_risk)
        items += _lead_alerts(conn, AlertEvent.SLA_BREACHED, breached)
    with store.begin() as conn:
        return outbox.enqueue(conn, alerts, items, now)


def _lead_alerts(conn: Connection, event: AlertEvent, found: list[dict[str, Any]]) -> list[Alert]:
    """One alert per lead, with no personal data: the message reads the lead when it is sent."""
    leads = repo.load_leads(conn, [f["lead_key"] for f in found])
    items = []
    for entry in found:
        lead = leads.get(entry["lead_key"])
        if lead is None:
            continue
        items.append(
            Alert(
                event,
                f"{event.value}:{lead.lead_key}",
                {"lead_key": lead.lead_key, "due_by": entry["due_by"], "stage": str(lead.stage)},
                offer=lead.offer_key,
                country=lead.country,
                score=lead.score,
            )
        )
    return items


def digest(store: Store, settings: Settings, now: datetime | None = None) -> int:
    """Queue the daily digest once its local time has come (once per local day)."""
    now = now or utcnow()
    alerts = settings.alerts
    if not any(c.wants(AlertEvent.DIGEST) for c in alerts.channels):
        return 0
    local = now.astimezone(alerts.zone())
    today = local.date()
    with store.connect() as conn:
        done = state.get(conn, DIGEST)
    if local.time() < alerts.digest_at or done == today.isoformat():
        return 0
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    day = Period(midnight - timedelta(days=1), midnight, (today - timedelta(days=1)).isoformat())
    with store.snapshot() as conn:
        total = funnel(conn, day, sla_hours=settings.reports.sla_hours, now=now)["total"]
        targets = _health(conn, [t.name for t in settings.targets], now)
    data = {
        "day": day.label,
        "timezone": alerts.timezone,
        "new_leads": total["unique_leads"],
        "mql": total["stages"]["mql"],
        "sql": total["stages"]["sql"],
        "acceptance_rate": total["acceptance"]["rate"],
        "sla_breaches": len(total["sla"]["breaches"]),
        "targets": targets,
    }
    with store.begin() as conn:
        state.put(conn, DIGEST, today.isoformat(), now)
        return outbox.enqueue(
            conn, alerts, [Alert(AlertEvent.DIGEST, f"digest:{day.label}", data)], now
        )


def _health(conn: Connection, targets: list[str], now: datetime) -> dict[str, str]:
    paused = {p.target: p for p in running_pauses(conn, now)}
    out = {}
    for name in targets:
        health = state.get_json(conn, state.target_health(name)) or {}
        if health.get("state") == "fatal":
            out[name] = "stopped: credentials or configuration refused"
        elif name in paused:
            out[name] = f"paused until {paused[name].until.isoformat()}"
        else:
            out[name] = "ok" if health else "no delivery yet"
    return out
