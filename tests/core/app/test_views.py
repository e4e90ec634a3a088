"""Read models for the CLI: what `status` and `leads quarantine` are built from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from leadbridge.core.app import status as store_status
from leadbridge.core.app import views
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings
from leadbridge.core.store.repo import Store
from tests.core.app.listing import MANY, save_many_leads

BODIES: list[dict[str, Any]] = [
    {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "ana@contoso.com"}},
    {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"FirstName": "Edu"}},
    {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "not-an-email"}},
    {"UserDetails": {"Email": "x@contoso.com"}},  # no LeadSource: malformed
]


def _ingested(store: Store, settings: Settings) -> None:
    for i, body in enumerate(BODIES):
        raw = RawLead(source="hook", source_key=str(i), kind="https", payload=body)
        pipeline.land_one(store, raw)
    pipeline.process_pending(store, settings)


def test_status_counts_quarantined_raw_leads_by_reason(store: Store, settings: Settings) -> None:
    _ingested(store, settings)
    with store.connect() as conn:
        status = store_status.status(conn, ["hook"], [])
    assert status["quarantine"] == {"invalid_email": 2, "malformed": 1}
    assert status["raw_leads"] == {"processed": 1, "quarantined": 3}
    assert status["leads"]["total"] == 1


def test_the_quarantine_list_filters_by_reason_and_says_what_to_do(
    store: Store, settings: Settings
) -> None:
    _ingested(store, settings)
    with store.connect() as conn:
        everything = views.list_quarantine(conn)
        no_email = views.list_quarantine(conn, "invalid_email")
        story = views.raw_story(conn, no_email[0]["raw_lead_id"])
    assert [row["reason"] for row in everything] == ["invalid_email", "invalid_email", "malformed"]
    assert [(row["raw_lead_id"], row["source"], row["field"]) for row in no_email] == [
        (2, "hook", "Email"),
        (3, "hook", "Email"),
    ]
    assert story is not None
    assert story["raw_lead"]["status"] == "quarantined" and story["raw_lead"]["lead_key"] is None
    assert story["quarantine"]["message"] == (
        "the marketplace sent no email address; nothing to deliver"
    )


def test_leads_are_listed_as_they_are_read_never_all_first(store: Store) -> None:
    """The first lead comes out while most of the result is still in the store's cursor:
    `leads list --format csv` over a million leads holds a page of them, never all."""
    keys = save_many_leads(store)
    cursors: list[Any] = []  # the driver's cursor of each statement run
    event.listen(store.engine, "after_cursor_execute", lambda *args: cursors.append(args[1]))
    with store.connect() as conn:
        listing = views.iter_leads(conn)
        first = next(listing)
        unread = cursors[-1].fetchall()  # what the listing had not fetched yet
        listing.close()
        assert views.list_leads(conn, limit=3) == list(views.iter_leads(conn, limit=3))
    assert first["lead_key"] == keys[0]
    assert len(unread) >= MANY - views.LIST_PAGE
