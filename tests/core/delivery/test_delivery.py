"""The delivery job with a scripted target: per-record outcomes, converted, fatal, coalescing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from leadbridge.core.connector import FatalError, HttpTarget, Link, TargetConfig
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.delivery.pauses import read_pause
from leadbridge.core.domain.mapping import FieldMap
from leadbridge.core.domain.models import Lead, PushResult, RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import dead_letters, events, outbox, target_links


class ScriptedTarget(HttpTarget):
    """Answers each lead by the first letter of its email: o=ok r=retry p=permanent c=converted
    f=fatal (a record refused for the target's configuration, e.g. a missing permission)."""

    field_map: ClassVar[FieldMap] = FieldMap({"email": "email", "title": "title"})
    max_batch: ClassVar[int] = 10

    def __init__(self) -> None:
        super().__init__(TargetConfig(name="crm", kind="scripted"))
        self.calls: list[list[str]] = []
        self.fatal = False

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        self.transport.stats.requests += 1
        if self.fatal:
            raise FatalError("crm: credentials rejected")
        self.calls.append([lead.email for lead in leads])
        classes = {"o": None, "r": "retryable", "p": "permanent", "c": "converted", "f": "fatal"}
        return [
            PushResult(
                lead_key=lead.lead_key,
                ok=lead.email[0] == "o",
                error_class=classes[lead.email[0]],
                external_id="x",
                error=None if lead.email[0] == "o" else "no",
                body={"why": "no"},
            )
            for lead in leads
        ]


def _add(store: Store, settings: Settings, email: str, title: str = "CTO") -> None:
    payload = {
        "LeadSource": "AzurePortal-Create|c.o",
        "UserDetails": {"Email": email, "Title": title},
    }
    pipeline.land_one(
        store, RawLead(source="t", source_key=f"{email}{title}", kind="https", payload=payload)
    )
    pipeline.process_pending(store, settings)


@pytest.fixture
def setup(store: Store, settings: Settings) -> tuple[Store, Settings, ScriptedTarget]:
    from leadbridge.core.settings import ConnectorEntry

    settings = settings.model_copy(update={"targets": [ConnectorEntry(name="crm", kind="webhook")]})
    return store, settings, ScriptedTarget()


def _rows(store: Store, table: Any) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(select(table)))


def test_only_the_failed_records_of_a_batch_are_retried(setup: Any) -> None:
    store, settings, target = setup
    for email in ("ok1@x.io", "retry@x.io", "perm@x.io", "conv@x.io"):
        _add(store, settings, email)
    report = deliver(target, store, settings)
    assert (report.pushed, report.retrying, report.dead_lettered, report.converted) == (1, 1, 1, 1)
    [pending] = _rows(store, outbox)
    assert pending.attempts == 1 and pending.last_error == "no"
    assert pending.next_attempt_at > repo.utcnow()  # backed off, not due again at once
    [letter] = _rows(store, dead_letters)
    assert letter.body == {"why": "no"}
    states = {row.state for row in _rows(store, target_links)}
    assert states == {"active", "converted"}
    pushes = [e for e in _rows(store, events) if e.kind == "push"]
    assert len(pushes) == 3  # outcomes are history; a retry to come is not


def test_a_converted_lead_is_no_longer_pushed(setup: Any) -> None:
    store, settings, target = setup
    _add(store, settings, "conv@x.io")
    deliver(target, store, settings)
    _add(store, settings, "conv@x.io", title="CEO")  # changed, but read-only in the CRM
    report = deliver(target, store, settings)
    assert report.skipped_converted == 1 and len(target.calls) == 1


def test_rejected_credentials_stop_the_target_and_keep_everything_queued(setup: Any) -> None:
    store, settings, target = setup
    _add(store, settings, "ok1@x.io")
    target.fatal = True
    report = deliver(target, store, settings)
    assert report.fatal and report.needs_attention
    [pending] = _rows(store, outbox)
    assert pending.claimed_by is None and pending.attempts == 0
    with store.connect() as conn:
        assert '"fatal"' in repo.get_cursor(conn, "target:crm:health")
    target.fatal = False
    assert deliver(target, store, settings).pushed == 1


def test_a_record_refused_as_fatal_stops_the_target_and_stays_queued(setup: Any) -> None:
    store, settings, target = setup
    for email in ("ok1@x.io", "fatal@x.io"):
        _add(store, settings, email)
    report = deliver(target, store, settings)
    assert report.pushed == 1 and report.dead_lettered == 0
    assert report.fatal == "no" and report.needs_attention
    [pending] = _rows(store, outbox)  # the refused one, released: not a dead letter
    assert pending.claimed_by is None and pending.attempts == 0
    assert _rows(store, dead_letters) == []
    with store.connect() as conn:
        assert '"fatal"' in repo.get_cursor(conn, "target:crm:health")


def test_a_change_while_a_batch_is_in_flight_is_not_lost(setup: Any) -> None:
    store, settings, target = setup
    _add(store, settings, "ok1@x.io")
    original = target.upsert

    def change_meanwhile(leads: Sequence[Lead], links: Any = None) -> list[PushResult]:
        if len(target.calls) == 0:
            _add(store, settings, "ok1@x.io", title="CEO")  # arrives during the request
        return original(leads, links)

    target.upsert = change_meanwhile  # type: ignore[method-assign]
    deliver(target, store, settings)
    assert [c for c in target.calls] == [["ok1@x.io"], ["ok1@x.io"]]  # the newer state went too
    assert _rows(store, outbox) == []


def test_a_pause_told_outside_delivery_is_written_down_and_obeyed(setup: Any) -> None:
    """A schema check or a stage read was told to wait: delivery sends nothing, and the
    store learns the pause, so the other processes obey it too."""
    store, settings, target = setup
    _add(store, settings, "o1@x.io")
    target.transport.hold(600, "HTTP 429, Retry-After 600 s")
    report = deliver(target, store, settings)
    assert report.pause is not None and report.paused_until == report.pause.until
    assert target.calls == [] and report.api_calls == 0
    with store.connect() as conn:
        stored = read_pause(conn, "crm", repo.utcnow())
    assert stored is not None and stored.why == "HTTP 429, Retry-After 600 s"
    assert abs(stored.until - report.pause.until) < timedelta(seconds=1)


def test_api_calls_are_counted_per_clock_hour_in_the_store(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every replica's delivery runs add to one count per target and clock hour (the
    console's overview); two hours are kept, this one and the one before."""
    from datetime import UTC, datetime

    from leadbridge.core.delivery import deliver as deliver_module
    from leadbridge.core.store import state

    now = [datetime(2026, 12, 3, 8, 59, tzinfo=UTC)]
    monkeypatch.setattr(deliver_module, "utcnow", lambda: now[0])
    deliver_module._count_calls(store, "crm", 5, 1)
    deliver_module._count_calls(store, "crm", 2, 0)
    now[0] = datetime(2026, 12, 3, 9, 0, 1, tzinfo=UTC)
    deliver_module._count_calls(store, "crm", 3, 3)
    now[0] = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)
    deliver_module._count_calls(store, "crm", 1, 0)
    with store.connect() as conn:
        hours = (state.get_json(conn, state.target_calls("crm")) or {})["hours"]
    assert hours == {
        "2026-12-03T09:00:00+00:00": {"calls": 3, "errors": 3},
        "2026-12-03T10:00:00+00:00": {"calls": 1, "errors": 0},
    }
