"""A refused opt-out write is not lost: the record landed, the CRM refused the unsubscribe or
consent record (a `consent:` key in the push's `dropped`), and the target's next consent sync
sends the lead again — once per refusal, up to MAX_CONSENT_ATTEMPTS, each decision in the
lead's history. Through the real delivery, so the last-pushed hash that would skip an
unchanged lead is part of the test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from leadbridge.core.connector import ConsentReader, HttpTarget, Link, TargetConfig
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.domain.mapping import FieldMap
from leadbridge.core.domain.models import Lead, PushResult, RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import ConnectorEntry, Settings, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import events, outbox, target_links
from leadbridge.core.sync.consentsync import MAX_CONSENT_ATTEMPTS, pull_opt_outs

ANA = "ana@contoso.example"
REFUSED = {"consent:unsubscribe": "unsubscribing from 1001: HTTP 400: Invalid subscription id"}


class RefusingCrm(HttpTarget, ConsentReader):
    """Takes every record; refuses the opt-out write while `refuse` says so."""

    field_map: ClassVar[FieldMap] = FieldMap({"email": "email"})

    def __init__(self) -> None:
        super().__init__(TargetConfig(name="crm", kind="scripted"))
        self.refuse = True
        self.pushed: list[str] = []

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        self.pushed += [lead.lead_key for lead in leads]
        dropped = dict(REFUSED) if self.refuse else {}
        return [PushResult(lead_key=lead.lead_key, ok=True, dropped=dropped) for lead in leads]

    def opt_outs(self, since: str | None) -> tuple[list[Mapping[str, Any]], str]:
        return [], "w"


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[Store, Settings, RefusingCrm]:
    """On both stores: the refusals are found by the database, in the events' JSON."""
    url = (
        f"sqlite:///{tmp_path / 'lb.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    settings = load_settings(None, store=url).model_copy(
        update={"targets": [ConnectorEntry(name="crm", kind="webhook")]}
    )
    store = Store(settings.store)
    payload = {"LeadSource": "AzurePortal-Create|c.one", "UserDetails": {"Email": ANA}}
    pipeline.land_one(store, RawLead(source="t", source_key="a", kind="https", payload=payload))
    pipeline.process_pending(store, settings)
    return store, settings, RefusingCrm()


def _consent_events(store: Store) -> list[Any]:
    with store.connect() as conn:
        rows = conn.execute(select(events).where(events.c.kind == "consent").order_by(events.c.id))
        return list(rows)


def _queued(store: Store) -> set[tuple[str, str]]:
    with store.connect() as conn:
        return {(r.lead_key, r.target) for r in conn.execute(select(outbox))}


def test_a_refused_write_is_sent_again_at_the_next_consent_sync(world: Any) -> None:
    store, settings, crm = world
    deliver(crm, store, settings)
    [key] = crm.pushed
    assert _queued(store) == set()

    report = pull_opt_outs([crm], store, settings)

    assert report.retried == {"crm": 1}
    assert _queued(store) == {(key, "crm")}
    [event] = _consent_events(store)
    assert (event.lead_key, event.actor) == (key, "leadbridge")
    assert event.data["retry"] is True and event.data["target"] == "crm"
    assert event.data["refused"] == REFUSED and event.data["attempt"] == 1

    # Not sent twice for one refusal: the next sync finds nothing new.
    assert pull_opt_outs([crm], store, settings).retried == {}
    assert len(_consent_events(store)) == 1

    # Delivered again although nothing changed (the hash was cleared); now it's written.
    crm.refuse = False
    deliver(crm, store, settings)
    assert crm.pushed == [key, key]
    assert pull_opt_outs([crm], store, settings).retried == {}
    assert len(_consent_events(store)) == 1


def test_after_the_last_attempt_the_history_says_to_fix_it_once(world: Any) -> None:
    store, settings, crm = world
    for _ in range(MAX_CONSENT_ATTEMPTS):
        deliver(crm, store, settings)
        pull_opt_outs([crm], store, settings)
    assert len(crm.pushed) == MAX_CONSENT_ATTEMPTS
    assert _queued(store) == set()

    events_now = _consent_events(store)
    assert [e.data.get("retry", False) for e in events_now] == [True] * (
        MAX_CONSENT_ATTEMPTS - 1
    ) + [False]
    last = events_now[-1].data
    assert last["gave_up"] is True and last["attempt"] == MAX_CONSENT_ATTEMPTS
    assert "fix what the CRM says" in last["reason"]

    report = pull_opt_outs([crm], store, settings)
    assert report.retried == {} and report.gave_up == {}
    assert len(_consent_events(store)) == MAX_CONSENT_ATTEMPTS


def test_a_refusal_followed_by_a_clean_push_is_not_retried(world: Any) -> None:
    store, settings, crm = world
    deliver(crm, store, settings)
    [key] = crm.pushed
    crm.refuse = False
    with store.begin() as conn:  # the lead changed meanwhile: pushed again, cleanly
        repo.enqueue(conn, [key], ["crm"], repo.utcnow())
        conn.execute(target_links.update().values(pushed_hash=None))
    deliver(crm, store, settings)

    assert pull_opt_outs([crm], store, settings).retried == {}
    assert _consent_events(store) == []


def test_only_the_synced_targets_refusals_are_sent_again(world: Any) -> None:
    store, settings, crm = world
    deliver(crm, store, settings)
    report = pull_opt_outs([crm], store, settings, only=["other"])
    assert report.retried == {} and _queued(store) == set()
