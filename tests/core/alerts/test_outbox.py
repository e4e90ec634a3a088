"""The alert outbox end to end on loopback: a CRM confirms a hot lead, the alert is queued in
the same transaction, and real apprise posts it to a local JSON receiver — once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from leadbridge.core.alerts import send as sender
from leadbridge.core.alerts.messages import Message
from leadbridge.core.alerts.send import Answer, send_due
from leadbridge.core.app import backfill
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.settings import load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import alerts
from leadbridge.core.support import metrics
from tests.core.alerts.helpers import ConfirmingTarget, land, make_alert_settings
from tests.core.alerts.receiver import receiver


def _rows(store: Store) -> list:
    with store.connect() as conn:
        return list(conn.execute(select(alerts).order_by(alerts.c.id)))


def test_a_confirmed_contact_me_lead_is_one_message_with_its_record_link(
    tmp_path: Path, target: ConfirmingTarget
) -> None:
    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path, [{"name": "ops", "url": f"json://127.0.0.1:{rx.port}/ops"}]
        )
        store = Store(settings.store)
        land(store, settings, "ada@contoso.example")
        assert _rows(store) == []  # nothing before the CRM confirmed it

        deliver(target, store, settings)
        [row] = _rows(store)
        assert (row.event, row.state) == ("hot_lead", "pending")
        assert "ada" not in str(row.data)  # the queue holds no personal data

        urls = {"crm": "https://crm.example/records/"}
        report = send_due(store, settings.alerts, record_url=lambda t, x: urls[t] + x)
        assert report.channels[0].messages == 1
        [message] = rx.to("/ops")
        assert message.body["title"].startswith("Hot lead: Ada Tester, Contoso")
        assert "ada@contoso.example" in message.body["message"]
        assert "https://crm.example/records/rec-" in message.body["message"]
        assert "asked to be contacted" in message.body["message"]

        # The same lead confirmed again (a field changed, another push): no second alert.
        with store.begin() as conn:
            repo.enqueue(conn, [row.data["lead_key"]], ["crm"], utcnow())
        land(store, settings, "ada@contoso.example", action="INS")
        deliver(target, store, settings)
        send_due(store, settings.alerts)
        assert len(rx.to("/ops")) == 1
        assert [r.state for r in _rows(store)] == ["sent"]


def test_pii_false_leaves_out_name_and_email_but_keeps_company_score_and_links(
    tmp_path: Path, target: ConfirmingTarget
) -> None:
    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path,
            [
                {"name": "public", "url": f"json://127.0.0.1:{rx.port}/public", "pii": False},
                {"name": "sales", "url": f"json://127.0.0.1:{rx.port}/sales"},
            ],
        )
        store = Store(settings.store)
        land(store, settings, "grace@contoso.example")
        deliver(target, store, settings)
        send_due(store, settings.alerts)
        [public] = rx.to("/public")
        [sales] = rx.to("/sales")
        text = public.body["title"] + public.body["message"]
        assert "Grace" not in text and "grace@" not in text and "CTO" not in text
        assert "Contoso" in text and "Score:" in text and "crm: delivered" in text
        assert "Grace Tester" in sales.body["title"]


def test_a_channel_hears_only_the_offers_countries_and_scores_it_asked_for(
    tmp_path: Path, target: ConfirmingTarget
) -> None:
    settings = make_alert_settings(
        tmp_path,
        [
            {
                "name": "dach",
                "url": "json://127.0.0.1:9/x",
                "when": {"offers": ["contoso.crm"], "countries": ["de", "AT"]},
            },
            {"name": "big", "url": "json://127.0.0.1:9/y", "when": {"min_score": 1000}},
        ],
    )
    store = Store(settings.store)
    land(store, settings, "in@contoso.example")
    land(store, settings, "other-offer@contoso.example", offer="contoso.other")
    land(store, settings, "other-country@contoso.example", country="FR")
    deliver(target, store, settings)
    assert [(r.channel, r.event) for r in _rows(store)] == [("dach", "hot_lead")]


def test_a_crash_between_sending_and_marking_sends_twice_and_marks_once(
    tmp_path: Path, target: ConfirmingTarget
) -> None:
    """The guarantee is at least once: the worker that sent dies before it marks; its claim
    expires, another pass sends again and marks. The dead worker's mark, were it to come
    back, changes nothing."""
    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path, [{"name": "ops", "url": f"json://127.0.0.1:{rx.port}/ops"}]
        )
        store = Store(settings.store)
        land(store, settings, "crash@contoso.example")
        deliver(target, store, settings)

        class Crash(BaseException):
            """SIGKILL, as far as this worker is concerned: nothing after it runs."""

        def send_then_die(url: str, message: Message, timeout: float) -> Answer:
            sender.notify(url, message, timeout)
            raise Crash

        now = utcnow()
        with pytest.raises(Crash):
            send_due(store, settings.alerts, now=now, worker="a", send=send_then_die)
        [row] = _rows(store)
        assert (row.state, row.claimed_by, len(rx.requests)) == ("pending", "a", 1)

        # Within the lease nobody else sends it; after it, worker b does, and marks it.
        send_due(store, settings.alerts, now=now + timedelta(seconds=5), worker="b")
        assert len(rx.requests) == 1
        later = now + timedelta(minutes=5)
        send_due(store, settings.alerts, now=later, worker="b")
        [row] = _rows(store)
        assert (row.state, len(rx.requests)) == ("sent", 2)
        with store.begin() as conn:
            from leadbridge.core.alerts import outbox

            assert outbox.mark_sent(conn, [row.id], later, "a") == 0  # marked once
        send_due(store, settings.alerts, now=later + timedelta(hours=1), worker="b")
        assert len(rx.requests) == 2


def test_a_channel_down_for_an_hour_does_not_delay_the_others(
    tmp_path: Path, target: ConfirmingTarget
) -> None:
    """Simulated time: a hot lead every ten minutes for an hour while one channel answers
    500. The healthy channel gets each in the pass it was queued; the broken one backs off
    on its own, and after it recovers gets everything it missed."""
    with receiver() as good, receiver() as bad:
        settings = make_alert_settings(
            tmp_path,
            [
                {"name": "down", "url": f"json://127.0.0.1:{bad.port}/down"},
                {"name": "up", "url": f"json://127.0.0.1:{good.port}/up"},
            ],
        )
        store = Store(settings.store)
        bad.down = True
        start = utcnow()
        for minute in range(0, 61):
            now = start + timedelta(minutes=minute)
            if minute % 10 == 0:
                land(store, settings, f"lead{minute}@contoso.example")
                deliver(target, store, settings)
                with store.begin() as conn:  # queued "now" in simulated time
                    conn.execute(
                        alerts.update()
                        .where(alerts.c.state == "pending", alerts.c.attempts == 0)
                        .values(created_at=now, next_attempt_at=now)
                    )
            sent_before = len(good.requests)
            send_due(store, settings.alerts, now=now)
            if minute % 10 == 0:
                assert len(good.requests) == sent_before + 1, f"minute {minute}"
        assert len(good.requests) == 7
        attempts = len(bad.requests)
        assert 3 <= attempts <= 12  # backed off, not hammered every minute
        with store.connect() as conn:
            health = sender.outbox.channel_health(conn, ["down", "up"])
        assert health["down"]["pending"] == 7 and health["down"]["failures"] >= 3
        assert "500" in (health["down"]["last_error"] or "")
        assert health["up"]["pending"] == 0 and health["up"]["last_failure_at"] is None

        bad.down = False
        send_due(store, settings.alerts, now=start + timedelta(hours=2))
        assert len(bad.requests) == attempts + 1  # all 7 it missed, over `burst`: one summary
        assert "7 alerts" in bad.requests[-1].body["title"]
        assert all(r.state == "sent" for r in _rows(store))


def test_a_flood_is_one_summary_and_a_busy_window_holds_the_rest_to_its_end(
    tmp_path: Path,
) -> None:
    from leadbridge.core.alerts import outbox
    from leadbridge.core.domain.alerting import AlertEvent

    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path, [{"name": "ops", "url": f"json://127.0.0.1:{rx.port}/ops"}], burst=3
        )
        store = Store(settings.store)
        now = utcnow()

        def queue(prefix: str, count: int) -> None:
            items = [
                outbox.Alert(
                    AlertEvent.TARGET_DOWN, f"{prefix}{i}", {"target": f"t{i}", "since": "x"}
                )
                for i in range(count)
            ]
            with store.begin() as conn:
                outbox.enqueue(conn, settings.alerts, items, now)

        queue("a", 2)
        send_due(store, settings.alerts, now=now)
        assert len(rx.requests) == 2  # room in the window: one message each
        queue("b", 1000)
        report = send_due(store, settings.alerts, now=now + timedelta(seconds=1))
        assert len(rx.requests) == 2 and report.channels[0].deferred == 1000
        send_due(store, settings.alerts, now=now + timedelta(seconds=30))
        assert len(rx.requests) == 2  # still the same window
        send_due(store, settings.alerts, now=now + timedelta(seconds=61))
        assert len(rx.requests) == 3
        summary = rx.requests[-1].body
        assert summary["title"] == "leadbridge: 1000 alerts"
        assert "and 990 more" in summary["message"]
        assert sum(1 for r in _rows(store) if r.grouped) == 1000


def test_a_backfill_of_a_thousand_contact_me_leads_sends_no_hot_lead_storm(
    tmp_path: Path,
) -> None:
    import json

    with receiver() as rx:
        leads = tmp_path / "leads.jsonl"
        leads.write_text(
            "".join(
                json.dumps(
                    {
                        "LeadSource": "AppSource (SPZA)-PLT|contoso.crm",
                        "UserDetails": {"Email": f"u{i}@contoso.example", "Company": "C"},
                    }
                )
                + "\n"
                for i in range(1000)
            ),
            encoding="utf-8",
        )
        settings = load_settings(
            None,
            store=f"sqlite:///{tmp_path / 'lb.db'}",
            sources=[{"name": "f", "kind": "leads_file", "path": str(leads)}],
            targets=[
                {
                    "name": "hook",
                    "kind": "webhook",
                    "url": f"http://127.0.0.1:{rx.port}/leads",
                    "secret": "hook-secret-value",
                }
            ],
            alerts=[{"name": "ops", "url": f"json://127.0.0.1:{rx.port}/ops"}],
        )
        store = Store(settings.store)
        report = backfill.run(store, settings)
        assert report.delivered[0].pushed == 1000
        assert _rows(store) == []  # backfill queues no per-lead alert
        send_due(store, settings.alerts)
        assert rx.to("/ops") == []


def test_alerts_are_counted_per_channel_and_event(tmp_path: Path, target: ConfirmingTarget) -> None:
    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path, [{"name": "counted", "url": f"json://127.0.0.1:{rx.port}/c"}]
        )
        store = Store(settings.store)
        sent = metrics.ALERTS.labels("counted", "hot_lead", "sent")
        before = sent._value.get()
        land(store, settings, "count@contoso.example")
        deliver(target, store, settings)
        send_due(store, settings.alerts)
        assert sent._value.get() == before + 1
        assert metrics.ALERTS.labels("counted", "no-such-event", "sent") is metrics.ALERTS.labels(
            "counted", "other", "sent"
        )


@pytest.mark.slow
def test_a_process_killed_right_after_sending_leaves_the_alert_to_be_sent_again(
    tmp_path: Path, target: ConfirmingTarget
) -> None:
    """The same gap with a real SIGKILL (`LEADBRIDGE_CRASH_AT=alerts.after_send:1`, the
    reliability harness's crash points): the killed process sent and never marked."""
    import os
    import signal
    import subprocess
    import sys

    with receiver() as rx:
        channels = [{"name": "ops", "url": f"json://127.0.0.1:{rx.port}/ops"}]
        settings = make_alert_settings(tmp_path, channels)
        store = Store(settings.store)
        land(store, settings, "killed@contoso.example")
        deliver(target, store, settings)
        script = (
            "import sys\n"
            "from leadbridge.core.alerts.send import send_due\n"
            "from leadbridge.core.settings import load_settings\n"
            "from leadbridge.core.store.repo import Store\n"
            f"s = load_settings(None, store={settings.store!r}, alerts={channels!r})\n"
            "send_due(Store(s.store), s.alerts, worker='doomed')\n"
        )
        crash = {**os.environ, "LEADBRIDGE_CRASH_AT": "alerts.after_send:1"}
        proc = subprocess.run([sys.executable, "-c", script], env=crash, timeout=60)
        assert proc.returncode == -signal.SIGKILL
        [row] = _rows(store)
        assert (row.state, row.claimed_by, len(rx.requests)) == ("pending", "doomed", 1)
        send_due(store, settings.alerts, now=utcnow() + timedelta(minutes=5))
        [row] = _rows(store)
        assert (row.state, len(rx.requests)) == ("sent", 2)


def test_an_alert_about_a_person_erased_before_it_went_is_never_sent(
    tmp_path: Path, target: ConfirmingTarget
) -> None:
    from sqlalchemy import delete

    from leadbridge.core.store.tables import leads

    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path, [{"name": "ops", "url": f"json://127.0.0.1:{rx.port}/ops"}]
        )
        store = Store(settings.store)
        land(store, settings, "forget.me@contoso.example")
        deliver(target, store, settings)
        with store.begin() as conn:  # what `leads forget` does to the lead row
            conn.execute(delete(leads))
        report = send_due(store, settings.alerts)
        assert report.channels[0].dropped == 1
        assert rx.requests == [] and [r.state for r in _rows(store)] == ["dropped"]
