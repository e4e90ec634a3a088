"""A poison pill never stops processing: whatever one raw lead makes processing raise, that
record alone is quarantined (`unprocessable`), the rest of its batch is committed, and the
next run doesn't try it again."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError

from leadbridge.core.app import status as store_status
from leadbridge.core.app import views
from leadbridge.core.domain import identity, qualify
from leadbridge.core.domain.models import Lead, MarketplaceLead, RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import events, leads, raw_leads

POISON = "poison.pill@contoso.com"


def _body(email: str, offer: str = "c.o", **person: str) -> dict[str, Any]:
    return {
        "LeadSource": f"AzureMarketplace-INS|{offer}",
        "ActionCode": "INS",
        "UserDetails": {"Email": email, **person},
    }


def _land(store: Store, *bodies: dict[str, Any]) -> None:
    for i, body in enumerate(bodies):
        pipeline.land_one(
            store, RawLead(source="hook", source_key=str(i), kind="https", payload=body)
        )


def _emails(store: Store) -> list[str]:
    with store.connect() as conn:
        return sorted(conn.execute(select(leads.c.email)).scalars())


def _statuses(store: Store) -> dict[str, int]:
    with store.connect() as conn:
        return repo.count_by(conn, raw_leads.c.status)


def _lead(store: Store, email: str, offer: str = "c.o") -> Lead:
    key = identity.lead_key(email, offer)
    with store.connect() as conn:
        return repo.load_leads(conn, [key])[key]


@pytest.mark.parametrize(
    "error",
    [RecursionError("maximum recursion depth exceeded"), KeyError(POISON)],
    ids=["RecursionError", "KeyError"],
)
def test_a_record_that_makes_the_parser_raise_is_quarantined_and_the_rest_goes_on(
    store: Store,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    parse = pipeline.parse_raw

    def hostile(raw: RawLead, prefer: str | None = None) -> MarketplaceLead:
        if raw.payload["UserDetails"]["Email"] == POISON:
            raise error  # what JSON nested 1,000 deep did in normalisation
        return parse(raw, prefer)

    monkeypatch.setattr(pipeline, "parse_raw", hostile)
    _land(store, _body("a@contoso.com"), _body(POISON), _body("b@contoso.com"))
    with caplog.at_level(logging.ERROR, logger="leadbridge.pipeline"):
        report = pipeline.process_pending(store, settings)

    assert (report.processed, report.leads_created, report.quarantined) == (3, 2, 1)
    assert _emails(store) == ["a@contoso.com", "b@contoso.com"]
    assert _statuses(store) == {"processed": 2, "quarantined": 1}  # kept in landing
    with store.connect() as conn:
        [row] = views.list_quarantine(conn, "unprocessable")
    name = type(error).__name__
    assert row["message"].startswith(f"{name} while parsing this raw lead")
    assert "report it" in row["fix"] and "kept" in row["fix"]
    assert "pill" not in json.dumps(row)  # no payload value, not even the key it lacked
    [logged] = [r for r in caplog.records if r.getMessage().startswith("raw lead unprocessable")]
    assert (logged.error, logged.step, logged.raw_lead_id) == (name, "parsing", row["raw_lead_id"])
    assert "pill" not in str(vars(logged))
    # The next run finds nothing to do: the poison pill is not tried again and again.
    assert pipeline.process_pending(store, settings).processed == 0


def test_a_record_failing_midway_through_its_merge_leaves_nothing_half_merged(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second action of a person fails at scoring, after its merge: neither the lead
    nor the person keeps any of it, and the actions around it are applied in full."""
    score = qualify.score

    def fragile(lead: Lead, rules: Any) -> qualify.Score:
        if lead.title == "Poison":
            raise ZeroDivisionError
        return score(lead, rules)

    monkeypatch.setattr(qualify, "score", fragile)
    _land(
        store,
        _body("jane@contoso.com", Title="CTO", Phone="+1 425 555 0100"),
        _body("jane@contoso.com", Title="Poison", Company="Poison Ltd"),
        _body("jane@contoso.com", offer="c.other", LastName="Doe"),
    )
    report = pipeline.process_pending(store, settings)
    assert (report.processed, report.quarantined, report.leads_created) == (3, 1, 2)
    first = _lead(store, "jane@contoso.com")
    assert (first.raw_count, first.actions, first.title, first.company) == (
        1,
        ["INS"],
        "CTO",
        None,
    )
    other = _lead(store, "jane@contoso.com", "c.other")
    assert (other.title, other.company, other.phone) == ("CTO", None, "+14255550100")
    with store.connect() as conn:
        actions = conn.execute(
            select(events.c.raw_lead_id).where(events.c.kind == "action").order_by(events.c.id)
        ).scalars()
        quarantined = views.list_quarantine(conn)
    assert list(actions) == [1, 3]
    assert [(q["raw_lead_id"], q["reason"]) for q in quarantined] == [(2, "unprocessable")]
    assert quarantined[0]["message"].startswith("ZeroDivisionError while merging")


def test_a_value_the_store_refuses_quarantines_only_its_record(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses a batch's write because of one lead: the batch is processed
    again record by record, and only the record at fault is set aside."""
    save = repo.save_leads

    def strict(conn: Any, changed: list[Lead], at: Any) -> None:
        if any(lead.email == "b@contoso.com" for lead in changed):
            raise DataError("INSERT INTO leads …", {}, Exception("value too long"))
        save(conn, changed, at)

    monkeypatch.setattr(repo, "save_leads", strict)
    _land(store, _body("a@contoso.com"), _body("b@contoso.com"), _body("c@contoso.com"))
    report = pipeline.process_pending(store, settings)
    assert (report.processed, report.leads_created, report.quarantined) == (3, 2, 1)
    assert _emails(store) == ["a@contoso.com", "c@contoso.com"]
    with store.connect() as conn:
        [row] = views.list_quarantine(conn)
    assert (row["raw_lead_id"], row["reason"]) == (2, "unprocessable")
    assert row["message"].startswith("DataError while saving")
    assert pipeline.process_pending(store, settings).processed == 0


def test_a_lead_whose_text_cannot_be_encoded_is_set_aside(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone surrogate (valid in a JSON escape, not in UTF-8) only fails when the lead is
    written: the batch goes on without that record."""
    parse = pipeline.parse_raw

    def with_surrogate(raw: RawLead, prefer: str | None = None) -> MarketplaceLead:
        parsed = parse(raw, prefer)
        if parsed.email == "b@contoso.com":
            parsed.title = "Head of \udc80"
        return parsed

    monkeypatch.setattr(pipeline, "parse_raw", with_surrogate)
    _land(store, _body("a@contoso.com"), _body("b@contoso.com"))
    report = pipeline.process_pending(store, settings)
    assert (report.processed, report.leads_created, report.quarantined) == (2, 1, 1)
    assert _emails(store) == ["a@contoso.com"]
    with store.connect() as conn:
        [row] = views.list_quarantine(conn, "unprocessable")
    assert row["message"].startswith("PydanticSerializationError while saving")


def test_a_value_too_long_for_its_column_on_postgresql_is_set_aside(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real refusal: PostgreSQL won't store a 400-character offer key (varchar 300) —
    once, before offers were bounded, a batch rolled back on every run for it."""
    offer_key = identity.offer_key

    def unbounded(parsed: MarketplaceLead, aliases: dict[str, str]) -> str:
        long = parsed.email == "b@contoso.com"
        return "c." + "o" * 400 if long else offer_key(parsed, aliases)

    monkeypatch.setattr(identity, "offer_key", unbounded)
    settings = load_settings(None, store=pg_url)
    store = Store(pg_url)
    try:
        _land(store, _body("a@contoso.com"), _body("b@contoso.com"))
        report = pipeline.process_pending(store, settings)
        assert (report.processed, report.leads_created, report.quarantined) == (2, 1, 1)
        assert _emails(store) == ["a@contoso.com"]
        assert _statuses(store) == {"processed": 1, "quarantined": 1}
        assert pipeline.process_pending(store, settings).processed == 0
    finally:
        store.dispose()


def test_status_counts_it_and_the_raw_lead_says_why(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "parse_raw", _always(RecursionError()))
    _land(store, _body("a@contoso.com"))
    pipeline.process_pending(store, settings)
    with store.connect() as conn:
        status = store_status.status(conn, [], [])
        story = views.raw_story(conn, 1)
    assert status["quarantine"] == {"unprocessable": 1}
    assert story is not None and story["quarantine"]["reason"] == "unprocessable"


def _always(error: Exception) -> Any:
    def raise_(raw: RawLead) -> MarketplaceLead:
        raise error

    return raise_
