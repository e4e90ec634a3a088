"""Opt-outs read back from a CRM: recorded on every lead of the person, fanned out to every
target as true, never undone by a new action, and outside input until validated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from leadbridge.core.connector import ConsentReader, HttpTarget, Link, TargetConfig
from leadbridge.core.domain.mapping import FieldMap, canonical
from leadbridge.core.domain.models import Lead, PushResult, RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import ConnectorEntry, Settings, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import events, outbox
from leadbridge.core.sync.consentsync import pull_opt_outs

ANA, BEN = "ana@contoso.example", "ben@contoso.example"
AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class ScriptedReader(HttpTarget, ConsentReader):
    """Answers the opt-outs it is given, and the watermark it was asked from."""

    field_map: ClassVar[FieldMap] = FieldMap({"email": "email"})

    def __init__(self, name: str = "crm") -> None:
        super().__init__(TargetConfig(name=name, kind="scripted"))
        self.found: list[Mapping[str, Any]] = []
        self.asked: list[str | None] = []

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        return [PushResult(lead_key=lead.lead_key, ok=True) for lead in leads]

    def opt_outs(self, since: str | None) -> tuple[list[Mapping[str, Any]], str]:
        self.asked.append(since)
        return self.found, "2026-11-30T10:00:00+00:00"


@pytest.fixture
def setup(tmp_path: Any) -> tuple[Store, Settings, ScriptedReader]:
    settings = load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}").model_copy(
        update={
            "targets": [
                ConnectorEntry(name="crm", kind="webhook"),
                ConnectorEntry(name="other", kind="webhook"),
            ]
        }
    )
    return Store(settings.store), settings, ScriptedReader()


def _land(store: Store, settings: Settings, email: str, offer: str) -> None:
    payload = {"LeadSource": f"AzurePortal-Create|{offer}", "UserDetails": {"Email": email}}
    pipeline.land_one(
        store, RawLead(source="t", source_key=f"{email}{offer}", kind="https", payload=payload)
    )
    pipeline.process_pending(store, settings)


def _leads(store: Store, email: str) -> list[Lead]:
    with store.connect() as conn:
        return repo.leads_by_email(conn, [email]).get(email, [])


def _empty_outbox(store: Store) -> None:
    with store.begin() as conn:
        conn.execute(outbox.delete())


def test_an_opt_out_reaches_every_lead_of_the_person_and_every_target(setup: Any) -> None:
    store, settings, crm = setup
    for offer in ("c.one", "c.two"):
        _land(store, settings, ANA, offer)
    _land(store, settings, BEN, "c.one")
    _empty_outbox(store)
    one = _leads(store, ANA)[0].lead_key
    crm.found = [
        {"target": "crm", "external_id": "00Q1", "lead_key": one, "channels": ["email"], "at": AT}
    ]

    report = pull_opt_outs([crm], store, settings)

    assert (report.people, report.leads, report.unknown) == (1, 2, 0)
    for lead in _leads(store, ANA):
        assert lead.opted_out and lead.opted_out_of == ["email"]
        values = canonical(lead)
        assert values["opted_out_email"] is True and values["opted_out_bulk_email"] is True
        assert values["opted_out_phone"] is None  # never false: not sent at all
    assert not any(lead.opted_out for lead in _leads(store, BEN))
    with store.connect() as conn:
        queued = {(r.lead_key, r.target) for r in conn.execute(select(outbox))}
        consent = [e for e in conn.execute(select(events)) if e.kind == "consent"]
    ana = {lead.lead_key for lead in _leads(store, ANA)}
    assert queued == {(key, t) for key in ana for t in ("crm", "other")}
    assert {e.lead_key for e in consent} == ana and consent[0].actor == "crm"
    assert consent[0].data["withdrawn"] == ["email"] and consent[0].data["at"] == AT.isoformat()

    # Read again: nothing new, no noise; the watermark moved on.
    _empty_outbox(store)
    again = pull_opt_outs([crm], store, settings)
    assert again.leads == 0 and crm.asked == [None, "2026-11-30T10:00:00+00:00"]


def test_a_new_action_keeps_it_and_a_new_offer_inherits_it(setup: Any) -> None:
    store, settings, crm = setup
    _land(store, settings, ANA, "c.one")
    key = _leads(store, ANA)[0].lead_key
    crm.found = [
        {"target": "crm", "external_id": "x", "lead_key": key, "channels": ["phone"], "at": AT}
    ]
    pull_opt_outs([crm], store, settings)
    _land(store, settings, ANA, "c.one")  # the same offer again: merged, still opted out
    _land(store, settings, ANA, "c.three")  # a new offer: a new lead, opted out from birth
    leads = _leads(store, ANA)
    assert len(leads) == 2 and all(lead.opted_out_of == ["phone"] for lead in leads)


def test_a_person_level_record_is_found_by_its_id(setup: Any) -> None:
    store, settings, crm = setup
    _land(store, settings, ANA, "c.one")
    key = _leads(store, ANA)[0].lead_key
    with store.begin() as conn:
        repo.save_record_links(
            conn,
            [
                {
                    "lead_key": key,
                    "target": "crm",
                    "kind": "contact",
                    "external_id": "contact-1",
                    "linked_at": AT,
                    "created": True,
                }
            ],
        )
    crm.found = [
        {
            "target": "crm",
            "external_id": "contact-1",
            "person_key": "p",
            "channels": ["email", "mail"],
            "at": AT,
        }
    ]
    assert pull_opt_outs([crm], store, settings).leads == 1
    assert _leads(store, ANA)[0].opted_out_of == ["email", "mail"]


def test_what_isnt_an_opt_out_or_isnt_known_is_counted_and_skipped(setup: Any) -> None:
    store, settings, crm = setup
    _land(store, settings, ANA, "c.one")
    crm.found = [
        {
            "target": "crm",
            "external_id": "1",
            "lead_key": "f" * 32,
            "channels": ["email"],
            "at": AT,
        },  # not a lead leadbridge has
        {"target": "crm", "external_id": "2", "channels": ["carrier_pigeon"], "at": AT},
        {"target": "crm", "external_id": "3", "channels": ["email"], "at": "yesterday"},
        "not even a mapping",  # type: ignore[list-item]
    ]
    report = pull_opt_outs([crm], store, settings)
    assert (report.unknown, report.invalid, report.leads) == (1, 3, 0)
    assert not _leads(store, ANA)[0].opted_out


def test_a_crm_that_cannot_be_read_does_not_stop_the_others(setup: Any) -> None:
    store, settings, crm = setup
    _land(store, settings, ANA, "c.one")
    broken = ScriptedReader("other")

    def fail(since: str | None) -> tuple[list[Mapping[str, Any]], str]:
        raise RuntimeError("HTTP 503")

    broken.opt_outs = fail  # type: ignore[method-assign]
    key = _leads(store, ANA)[0].lead_key
    crm.found = [
        {"target": "crm", "external_id": "x", "lead_key": key, "channels": ["email"], "at": AT}
    ]
    report = pull_opt_outs([broken, crm], store, settings)
    assert report.errors == {"other": "HTTP 503"} and report.leads == 1
