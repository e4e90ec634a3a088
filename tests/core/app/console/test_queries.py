"""The console's own store reads, on SQLite and on PostgreSQL: each target's last successful
push and its last hour, and the leads search by company (escaped, any case)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from leadbridge.core.app.console import queries
from leadbridge.core.domain.models import Event, Lead
from leadbridge.core.domain.vocabulary import Stage
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store, utcnow

NOW = utcnow()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        f"sqlite:///{tmp_path / 'lb.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    made = Store(url)
    try:
        yield made
    finally:
        made.dispose()


def _push(target: str, ago: timedelta, ok: bool) -> Event:
    data = {"target": target, "ok": ok, "stage": "lead"}
    if not ok:
        data["error"] = "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    return Event(lead_key="0" * 32, kind="push", actor=target, at=NOW - ago, data=data)


def test_last_success_and_the_last_hour_per_target(store: Store) -> None:
    with store.begin() as conn:
        repo.add_events(
            conn,
            [
                _push("sales", timedelta(hours=3), ok=True),
                _push("sales", timedelta(minutes=10), ok=False),
                _push("crm", timedelta(minutes=5), ok=True),
                _push("crm", timedelta(minutes=1), ok=True),
                _push("crm", timedelta(hours=2), ok=False),  # outside the hour
                _push("old", queries.SUCCESS_LOOKBACK + timedelta(hours=1), ok=True),
                Event(lead_key="0" * 32, kind="stage", actor="crm", at=NOW, data={"ok": True}),
            ],
        )
        hour = NOW.replace(minute=0, second=0, microsecond=0)
        counted = {  # as delivery runs count them (core/delivery/deliver.py)
            (hour - timedelta(hours=1)).isoformat(): {"calls": 7, "errors": 2},
            hour.isoformat(): {"calls": 3, "errors": 0},
        }
        state.put_json(conn, state.target_calls("crm"), {"hours": counted}, NOW)
    with store.connect() as conn:
        seen = queries.target_activity(conn, ["sales", "crm", "old", "idle"], NOW)
    none = {"calls": 0, "errors": 0}
    assert seen["sales"]["last_success"] == NOW - timedelta(hours=3)
    assert (seen["sales"]["pushed"], seen["sales"]["failed"]) == (0, 1)
    assert seen["crm"] == {
        "last_success": NOW - timedelta(minutes=1),
        "pushed": 2,
        "failed": 0,
        "calls": {"this": {"calls": 3, "errors": 0}, "previous": {"calls": 7, "errors": 2}},
    }
    assert seen["old"]["last_success"] is None  # beyond the lookback
    assert seen["idle"] == {
        "last_success": None,
        "pushed": 0,
        "failed": 0,
        "calls": {"this": none, "previous": none},
    }


def _lead(n: int, company: str | None, stage: Stage = Stage.LEAD) -> Lead:
    return Lead(
        lead_key=f"{n:032x}",
        offer_key="pub.offer",
        email=f"p{n}@example.com",
        company=company,
        stage=stage,
        last_seen=NOW - timedelta(minutes=n),
    )


def test_leads_by_company_any_case_with_wildcards_taken_literally(store: Store) -> None:
    with store.begin() as conn:
        repo.save_leads(
            conn,
            [
                _lead(1, "Contoso Ltd"),
                _lead(2, "contoso GmbH", stage=Stage.MQL),
                _lead(3, "Fabrikam"),
                _lead(4, "100% Widgets"),
                _lead(5, "100 Widgets"),
                _lead(6, "a_b Corp"),
                _lead(7, "axb Corp"),
                _lead(8, None),
                _lead(9, '"company": "Contoso'),  # JSON-looking text is just text
                _lead(10, "Tail/Spin"),  # the LIKE escape character, as a character
            ],
            NOW,
        )

    def keys(**asked: str) -> list[int]:
        with store.connect() as conn:
            return [int(r["lead_key"], 16) for r in queries.search_leads(conn, **asked)]

    assert keys(company="CONTOSO") == [1, 2, 9]  # newest first
    assert keys(company="contoso", stage="mql") == [2]
    assert keys(company="100%") == [4]
    assert keys(company="a_b") == [6]
    assert keys(company="l/s") == [10]
    assert keys(company='"company": "contoso') == [9]  # a quote: JSON escapes it
    assert keys(company="nobody") == []


def test_raw_leads_landed_today_per_source(store: Store) -> None:
    from leadbridge.core.app.console.app import source_today
    from leadbridge.core.store.tables import raw_leads

    rows = [
        {"source": name, "source_key": f"{name}{n}", "kind": "https", "payload": {}}
        for name, n in [("a", 1), ("a", 2), ("b", 1), ("a", 3)]
    ]
    landed = utcnow()
    with store.begin() as conn:
        conn.execute(
            raw_leads.insert(),
            [
                r | {"received_at": landed - timedelta(days=2 if r["source_key"] == "a3" else 0)}
                for r in rows
            ],
        )
        seen = source_today(conn, ["a", "b", "c"])
    if utcnow().date() == landed.date():  # midnight did not pass in between
        assert seen["a"] == {"today": 2, "quarantined": 0}
        assert seen["b"] == {"today": 1, "quarantined": 0}
    assert seen["c"] == {"today": 0, "quarantined": 0}
