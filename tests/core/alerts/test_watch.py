"""The watcher: a target down for longer than the threshold, its recovery, and dead letters
batched per target with the CRM's reasons — each through real apprise to a loopback receiver."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from leadbridge.core.alerts.send import send_due
from leadbridge.core.alerts.watch import watch
from leadbridge.core.settings import ConnectorEntry
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store, utcnow
from tests.core.alerts.helpers import make_alert_settings
from tests.core.alerts.receiver import receiver


def test_a_target_refusing_credentials_for_longer_than_the_threshold_is_down_then_recovered(
    tmp_path: Path,
) -> None:
    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path,
            [{"name": "ops", "url": f"json://127.0.0.1:{rx.port}/ops"}],
            target_down_after="10m",
        )
        store = Store(settings.store)
        start = utcnow()
        with store.begin() as conn:
            state.put_json(
                conn,
                state.target_health("crm"),
                {"state": "fatal", "message": "INVALID_SESSION_ID"},
                start,
            )
        assert watch(store, settings, start).down == []  # seen, not yet for long
        assert watch(store, settings, start + timedelta(minutes=9)).down == []
        assert watch(store, settings, start + timedelta(minutes=10)).down == ["crm"]
        assert watch(store, settings, start + timedelta(minutes=20)).down == []  # once
        send_due(store, settings.alerts, now=start + timedelta(minutes=20))
        [down] = rx.requests
        assert down.body["title"] == "Target down: crm"
        assert "INVALID_SESSION_ID" in down.body["message"]

        with store.begin() as conn:
            state.put_json(conn, state.target_health("crm"), {"state": "ok"}, start)
        later = start + timedelta(minutes=45)
        assert watch(store, settings, later).recovered == ["crm"]
        assert watch(store, settings, later + timedelta(minutes=1)).recovered == []
        send_due(store, settings.alerts, now=later)
        assert rx.requests[-1].body["title"] == "Target recovered: crm"
        assert "45m" in rx.requests[-1].body["message"]


def test_a_short_pause_is_no_outage_but_a_long_one_is(tmp_path: Path) -> None:
    settings = make_alert_settings(
        tmp_path, [{"name": "ops", "url": "json://127.0.0.1:9/ops"}], target_down_after="10m"
    )
    store = Store(settings.store)
    start = utcnow()
    pause = {"until": (start + timedelta(minutes=2)).isoformat(), "why": "HTTP 429"}
    with store.begin() as conn:
        state.put_json(conn, state.target_pause("crm"), pause, start)
    watch(store, settings, start)
    report = watch(store, settings, start + timedelta(minutes=3))  # the pause ended
    assert report.down == [] and report.recovered == []  # and nobody was told
    daily = {"until": (start + timedelta(hours=20)).isoformat(), "why": "DAILY limit"}
    with store.begin() as conn:
        state.put_json(conn, state.target_pause("crm"), daily, start)
    watch(store, settings, start + timedelta(minutes=4))
    assert watch(store, settings, start + timedelta(minutes=15)).down == ["crm"]


def test_new_dead_letters_are_one_alert_per_target_with_the_crms_reasons(tmp_path: Path) -> None:
    with receiver() as rx:
        settings = make_alert_settings(
            tmp_path, [{"name": "ops", "url": f"json://127.0.0.1:{rx.port}/ops"}]
        )
        settings = settings.model_copy(
            update={
                "targets": [
                    ConnectorEntry(name="sales", kind="webhook"),
                    ConnectorEntry(name="hub", kind="webhook"),
                ]
            }
        )
        store = Store(settings.store)
        now = utcnow()

        def dead(target: str, error: str, count: int) -> None:
            rows = [
                {
                    "lead_key": f"{i:032x}",
                    "target": target,
                    "error_class": "permanent",
                    "error": error,
                    "body": None,
                    "created_at": now,
                }
                for i in range(count)
            ]
            with store.begin() as conn:
                repo.add_dead_letters(conn, rows)

        dead("sales", "old backlog", 4)
        assert watch(store, settings, now).dead_letters == {}  # the first look sets the mark
        dead("sales", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST: Country for jo@x.example", 3)
        dead("sales", "STRING_TOO_LONG: Title", 1)
        dead("hub", "PROPERTY_DOESNT_EXIST", 2)
        report = watch(store, settings, now + timedelta(minutes=1))
        assert report.dead_letters == {"sales": 4, "hub": 2}
        assert watch(store, settings, now + timedelta(minutes=2)).dead_letters == {}
        send_due(store, settings.alerts, now=now + timedelta(minutes=2))
        by_title = {r.body["title"]: r.body["message"] for r in rx.requests}
        assert set(by_title) == {"Dead letters: 4 for sales", "Dead letters: 2 for hub"}
        sales = by_title["Dead letters: 4 for sales"]
        assert "3 × permanent: INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in sales
        assert "jo@x.example" not in sales  # an address in the CRM's words is masked
        assert "old backlog" not in sales


def test_without_channels_the_watcher_writes_nothing(tmp_path: Path) -> None:
    settings = make_alert_settings(tmp_path, [])
    store = Store(settings.store)
    with store.begin() as conn:
        state.put_json(conn, state.target_health("crm"), {"state": "fatal"}, utcnow())
    watch(store, settings, utcnow() + timedelta(hours=1))
    with store.connect() as conn:
        assert state.get(conn, state.alert_target("crm")) is None
