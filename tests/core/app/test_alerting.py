"""Follow-up SLA alerts and the daily digest, computed with the funnel report's own rules and
sent through real apprise to a loopback receiver."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from leadbridge.core.alerts.send import send_due
from leadbridge.core.app import alerting
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.store.repo import Store, utcnow
from tests.core.alerts.helpers import ConfirmingTarget, land, make_alert_settings
from tests.core.alerts.receiver import receiver


def test_an_untouched_contact_me_lead_is_at_risk_before_its_window_ends_then_breached(
    tmp_path: Path,
) -> None:
    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path,
            [
                {
                    "name": "ops",
                    "url": f"json://127.0.0.1:{rx.port}/ops",
                    "events": ["sla_at_risk", "sla_breached"],
                }
            ],
            sla_warn_before="4h",
        )
        store = Store(settings.store)
        asked = utcnow()
        land(store, settings, "waiting@contoso.example")
        assert alerting.follow_ups(store, settings, asked + timedelta(hours=19)) == 0
        assert alerting.follow_ups(store, settings, asked + timedelta(hours=21)) == 1
        assert alerting.follow_ups(store, settings, asked + timedelta(hours=22)) == 0  # once
        assert alerting.follow_ups(store, settings, asked + timedelta(hours=25)) == 1
        assert alerting.follow_ups(store, settings, asked + timedelta(hours=26)) == 0
        send_due(store, settings.alerts, now=asked + timedelta(hours=26))
        titles = [r.body["title"] for r in rx.requests]
        assert titles == [
            "Follow-up due: Waiting Tester, Contoso — contoso.crm",
            "Follow-up overdue: Waiting Tester, Contoso — contoso.crm",
        ]
        # Older breaches than max_age are history: nothing is queued for them.
        assert alerting.follow_ups(store, settings, asked + timedelta(days=5)) == 0


def test_the_digest_goes_once_a_day_at_the_configured_local_time(tmp_path: Path) -> None:
    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path,
            [{"name": "ops", "url": f"json://127.0.0.1:{rx.port}/ops", "events": ["digest"]}],
            digest_at="08:00",
            timezone="Europe/Berlin",
        )
        store = Store(settings.store)
        land(store, settings, "digest@contoso.example")
        deliver(ConfirmingTarget(), store, settings)
        berlin = ZoneInfo("Europe/Berlin")
        tomorrow = utcnow().astimezone(berlin).date() + timedelta(days=1)
        before = datetime.combine(tomorrow, time(7, 59), berlin)
        after = datetime.combine(tomorrow, time(8, 1), berlin)
        assert alerting.digest(store, settings, before) == 0
        assert alerting.digest(store, settings, after) == 1
        assert alerting.digest(store, settings, after + timedelta(hours=3)) == 0
        send_due(store, settings.alerts, now=after)
        [digest] = rx.requests
        yesterday = (tomorrow - timedelta(days=1)).isoformat()
        assert digest.body["title"] == f"leadbridge daily digest: {yesterday}"
        text = digest.body["message"]
        assert "New leads: 1" in text and "MQLs: 1" in text and "Europe/Berlin" in text
        assert "crm: ok" in text
