"""`leads forget`: the person leaves the store at once and every CRM record leadbridge
created for them is deleted, now or — when a CRM can't be reached — later; their next action
is set aside; nothing a person made in a CRM is deleted."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select

from leadbridge.core.connector import (
    Eraser,
    ErasureRecord,
    ErasureResult,
    HttpTarget,
    Link,
    Outcome,
    RetryableError,
    TargetConfig,
)
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.domain.mapping import FieldMap
from leadbridge.core.domain.models import Lead, PushResult, RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import ConnectorEntry, Settings, load_settings
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import erasures, leads, metadata, quarantine, raw_leads
from leadbridge.core.sync import erasure
from leadbridge.core.sync.erasure import NoSuppressionKey, carry_out, forget

ANA, BEN = "ana@contoso.example", "ben@contoso.example"


def _contact_id(email: str) -> str:
    """An id as a CRM gives one: opaque, nothing of the person in it."""
    return "c-" + hashlib.sha256(email.encode()).hexdigest()[:8]


class ScriptedEraser(HttpTarget, Eraser):
    """Creates a record per lead (`created` unless the address starts with "pre": a record a
    salesperson made before leadbridge came); deletes on request unless told it's down."""

    field_map: ClassVar[FieldMap] = FieldMap({"email": "email"})
    max_batch: ClassVar[int] = 50

    def __init__(self, name: str = "crm") -> None:
        super().__init__(TargetConfig(name=name, kind="scripted"))
        self.records: dict[str, str] = {}  # id -> email
        self.down = False
        self.asked: list[list[str]] = []

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        self.transport.stats.requests += 1
        results = []
        for lead in leads:
            record_id = f"r-{lead.lead_key[:8]}"
            created = record_id not in self.records and not lead.email.startswith("pre")
            self.records[record_id] = lead.email
            contact = _contact_id(lead.email)  # the person's own record (a Dataverse contact)
            made = contact not in self.records and not lead.email.startswith("pre")
            self.records.setdefault(contact, lead.email)
            results.append(
                PushResult(
                    lead_key=lead.lead_key,
                    ok=True,
                    external_id=record_id,
                    created=created,
                    related={"contact": contact, "account": "a-contoso"},
                    related_created=["contact"] if made else [],
                )
            )
        return results

    def erase(self, records: Sequence[ErasureRecord]) -> list[ErasureResult]:
        self.asked.append([r.external_id for r in records])
        if self.down:
            raise RetryableError(f"{self.name}: HTTP 503")
        for record in records:
            self.records.pop(record.external_id, None)  # one already gone is fine
        return [ErasureResult(external_id=r.external_id, ok=True) for r in records]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Store, Settings, ScriptedEraser]:
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'lb.db'}",
        privacy={"suppression_key": "a-long-random-suppression-secret"},
    ).model_copy(update={"targets": [ConnectorEntry(name="crm", kind="webhook")]})
    return Store(settings.store), settings, ScriptedEraser()


def _land(store: Store, settings: Settings, email: str, offer: str = "c.o") -> None:
    payload = {
        "LeadSource": f"AzurePortal-Create|{offer}",
        "UserDetails": {"Email": email, "FirstName": "Ana", "Company": "Contoso"},
    }
    pipeline.land_one(
        store, RawLead(source="t", source_key=f"{email}{offer}", kind="https", payload=payload)
    )
    pipeline.process_pending(store, settings)


def _count(store: Store, table: Any, *where: Any) -> int:
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())


def _every_row(store: Store) -> str:
    """The whole store as text: to look for the person anywhere in it."""
    with store.connect() as conn:
        return json.dumps(
            {t.name: [list(r) for r in conn.execute(select(t))] for t in metadata.sorted_tables},
            default=str,
        ).lower()


def test_the_person_leaves_the_store_and_the_crm_and_the_others_stay(setup: Any) -> None:
    store, settings, crm = setup
    for offer in ("c.one", "c.two"):
        _land(store, settings, ANA, offer)
    _land(store, settings, BEN)
    deliver(crm, store, settings)
    assert len(crm.records) == 5  # three leads, two people

    done = forget(store, settings, ANA.upper(), [crm], actor="cli", now=utcnow())

    assert ANA not in _every_row(store) and BEN in _every_row(store)
    assert done.removed["leads"] == 2 and done.removed["raw_leads"] == 2
    assert sorted(crm.records.values()) == [BEN, BEN]  # Ben's lead and contact
    # two leads and the one contact they hang off; the company's account is not the person's
    assert done.targets == {"crm": {"done": 3}} and not done.needs_attention
    assert _contact_id(ANA) in crm.asked[0] and _contact_id(BEN) not in crm.asked[0]
    with store.connect() as conn:
        [row] = list(conn.execute(select(erasures)))
    assert row.finished_at is not None and row.requested_by == "cli"
    assert "@" not in json.dumps([row.plan, row.removed])  # audited without the address


def test_their_next_action_is_set_aside_and_its_payload_redacted(setup: Any) -> None:
    store, settings, crm = setup
    _land(store, settings, ANA)
    forget(store, settings, ANA, [crm], actor="cli", now=utcnow())
    _land(store, settings, ANA, "c.again")
    assert _count(store, leads) == 0
    [kept] = _rows(store, quarantine)
    assert kept.reason == "erased"
    [raw] = _rows(store, raw_leads)
    assert raw.redacted_at is not None and ANA not in json.dumps(raw.payload).lower()
    assert raw.payload["offer_id"] == "c.again"  # what reports need stays
    deliver(crm, store, settings)
    assert crm.records == {}


def _rows(store: Store, table: Any) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(select(table)))


def test_a_record_leadbridge_did_not_create_is_kept_and_said(setup: Any) -> None:
    store, settings, crm = setup
    _land(store, settings, "pre.existing@contoso.example")
    deliver(crm, store, settings)
    done = forget(store, settings, "pre.existing@contoso.example", [crm], actor="cli", now=utcnow())
    assert done.targets == {"crm": {"kept": 2}} and done.needs_attention  # lead and contact
    assert set(crm.records.values()) == {"pre.existing@contoso.example"}  # a person's records
    assert crm.asked == []


def test_a_crm_that_is_down_is_asked_again_until_done(setup: Any) -> None:
    store, settings, crm = setup
    _land(store, settings, ANA)
    deliver(crm, store, settings)
    crm.down = True
    done = forget(store, settings, ANA, [crm], actor="cli", now=utcnow())
    assert done.targets == {"crm": {"pending": 2}} and "HTTP 503" in done.errors[0]
    assert _count(store, leads) == 0  # the store forgot at once all the same
    with store.connect() as conn:
        assert erasure.pending_count(conn) == 1
    crm.down = False
    carry_out(store, [crm], utcnow())  # the daemon's job
    assert crm.records == {}
    with store.connect() as conn:
        assert erasure.pending_count(conn) == 0


def test_dying_between_the_store_and_the_crm_is_finished_by_a_rerun(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings, crm = setup
    _land(store, settings, ANA)
    deliver(crm, store, settings)

    class Died(Exception):
        pass

    def die(name: str) -> None:
        if name == "erasure.after_store":
            raise Died

    monkeypatch.setattr(erasure.faults, "point", die)
    with pytest.raises(Died):
        forget(store, settings, ANA, [crm], actor="cli", now=utcnow())
    assert len(crm.records) == 2  # the store forgot; the CRM wasn't asked
    monkeypatch.undo()
    done = forget(store, settings, ANA, [crm], actor="cli", now=utcnow())
    assert crm.records == {} and done.targets == {"crm": {"done": 2}}
    assert _count(store, erasures) == 1  # the rerun carried on the first, made no second


def test_no_trace_in_the_sqlite_files(setup: Any, tmp_path: Path) -> None:
    store, settings, crm = setup
    _land(store, settings, ANA)
    forget(store, settings, ANA, [crm], actor="cli", now=utcnow())
    files = [p for p in tmp_path.iterdir() if p.name.startswith("lb.db")]
    assert files and not any(ANA.encode() in p.read_bytes() for p in files)


def test_forgetting_needs_the_suppression_key(tmp_path: Path) -> None:
    settings = load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}")
    with pytest.raises(NoSuppressionKey):
        forget(Store(settings.store), settings, ANA, [], actor="cli", now=utcnow())


def test_a_refusal_is_said_and_not_asked_again(setup: Any) -> None:
    store, settings, crm = setup
    _land(store, settings, ANA)
    deliver(crm, store, settings)
    refuse = [
        ErasureResult(
            external_id=i, ok=False, error_class=Outcome.PERMANENT, error="ENTITY_IS_LOCKED"
        )
        for i in crm.records
    ]
    crm.erase = lambda records: refuse  # type: ignore[method-assign]
    done = forget(store, settings, ANA, [crm], actor="cli", now=utcnow())
    assert done.targets == {"crm": {"refused": 2}} and done.needs_attention
    with store.connect() as conn:
        assert erasure.pending_count(conn) == 0


def test_on_postgresql_the_person_leaves_and_comes_back_only_as_erased(pg_url: str) -> None:
    settings = load_settings(
        None, store=pg_url, privacy={"suppression_key": "a-long-random-suppression-secret"}
    ).model_copy(update={"targets": [ConnectorEntry(name="crm", kind="webhook")]})
    store, crm = Store(pg_url), ScriptedEraser()
    try:
        _land(store, settings, ANA)
        _land(store, settings, BEN)
        deliver(crm, store, settings)
        done = forget(store, settings, ANA, [crm], actor="cli", now=utcnow())
        assert done.targets == {"crm": {"done": 2}}
        assert ANA not in _every_row(store) and BEN in _every_row(store)
        _land(store, settings, ANA, "c.again")
        assert [row.reason for row in _rows(store, quarantine)] == ["erased"]
    finally:
        store.dispose()
