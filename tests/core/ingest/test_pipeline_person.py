"""A person's identity fields reach every one of their leads, whichever offer's action told
them, and the leads that change that way are saved, re-queued and explained."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from leadbridge.core.domain import identity
from leadbridge.core.domain.models import Lead, RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import ConnectorEntry, Settings, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import events, leads, outbox

EMAIL = "jane.doe@contoso.com"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _body(offer: str, action: str = "INS", **person: str) -> dict[str, Any]:
    source = {"INS": "AzureMarketplace", "Create": "AzurePortal", "PLT": "AppSource (SPZA)"}
    return {
        "LeadSource": f"{source[action]}-{action}|{offer}",
        "ActionCode": action,
        "UserDetails": {"Email": EMAIL, **person},
    }


def _process(store: Store, settings: Settings, *bodies: dict[str, Any], at: datetime = T0):
    """Land the bodies as raw leads acted on at `at` (one minute apart), then process."""
    for i, body in enumerate(bodies):
        pipeline.land_one(
            store,
            RawLead(
                source="hook",
                source_key=f"{at.isoformat()}-{i}",
                kind="https",
                payload=body,
                occurred_at=at + timedelta(minutes=i),
            ),
        )
    return pipeline.process_pending(store, settings)


def _lead(store: Store, offer: str) -> Lead:
    with store.connect() as conn:
        key = identity.lead_key(EMAIL, offer)
        return repo.load_leads(conn, [key])[key]


def _queued(store: Store) -> set[str]:
    with store.connect() as conn:
        return set(conn.execute(select(outbox.c.lead_key)).scalars())


def _delivered(store: Store) -> None:
    """What a deliver run leaves: an empty outbox."""
    with store.begin() as conn:
        conn.execute(outbox.delete())


def _person_events(store: Store, offer: str) -> list[dict[str, Any]]:
    with store.connect() as conn:
        return [
            row.data
            for row in conn.execute(
                select(events.c.data)
                .where(events.c.lead_key == identity.lead_key(EMAIL, offer))
                .where(events.c.kind == "person")
                .order_by(events.c.id)
            )
        ]


def _person(lead: Lead) -> tuple[Any, ...]:
    return tuple(getattr(lead, name) for name in identity.PERSON_FIELDS)


def _crm(settings: Settings) -> Settings:
    return settings.model_copy(update={"targets": [ConnectorEntry(name="crm", kind="webhook")]})


def test_a_new_offers_lead_starts_with_what_the_person_told_another_offer(
    store: Store, settings: Settings
) -> None:
    settings = _crm(settings)
    _process(
        store,
        settings,
        _body(
            "c.a",
            FirstName="Jane",
            LastName="Doe",
            Phone="+1 425 555 0100",
            Country="United States",
            Company="Contoso",
            Title="CTO",
        ),
    )
    _delivered(store)
    # Weeks later, on another offer, the portal sends the email and a lower-case name only.
    _process(store, settings, _body("c.b", "Create", LastName="doe"), at=T0 + timedelta(days=20))
    lead = _lead(store, "c.b")
    assert (lead.first_name, lead.last_name, lead.phone, lead.country) == (
        "Jane",
        "Doe",  # better-formed than "doe"
        "+14255550100",
        "US",
    )
    assert (lead.company, lead.title) == ("Contoso", "CTO")
    # Create 30 + company 5 + a chief's title 15: the person's fit makes this lead an MQL.
    assert lead.score == 50 and lead.stage == "mql"
    # Nothing new for the first offer's lead: not re-queued, no event.
    assert _queued(store) == {identity.lead_key(EMAIL, "c.b")}
    assert _person_events(store, "c.a") == []


def test_a_new_action_updates_the_persons_other_leads_and_requeues_them(
    store: Store, settings: Settings
) -> None:
    settings = _crm(settings)
    # One batch: the first action (c.a) knows no phone, the second (c.b) does; c.a's lead
    # gets it at the end of the same batch.
    first = _process(
        store,
        settings,
        _body("c.a", LastName="Doe"),
        _body("c.b", LastName="Doe", Phone="425 555 0100"),
    )
    assert first.leads_created == 2
    assert _lead(store, "c.a").phone == "425 555 0100"  # free text: no country to read it in
    assert [e["filled"] for e in _person_events(store, "c.a")] == [["phone"]]
    _delivered(store)
    with store.connect() as conn:
        version = conn.execute(
            select(leads.c.version).where(leads.c.lead_key == identity.lead_key(EMAIL, "c.a"))
        ).scalar_one()

    report = _process(
        store,
        settings,
        _body("c.b", LastName="Doe", Phone="+1 425 555 0100", Title="Head of IT"),
        at=T0 + timedelta(days=1),
    )
    assert (report.processed, report.leads_updated, report.siblings_updated) == (1, 1, 1)
    sibling = _lead(store, "c.a")
    assert (sibling.phone, sibling.title) == ("+14255550100", "Head of IT")  # E.164 wins
    assert (sibling.raw_count, sibling.actions) == (1, ["INS"])  # no action of its own
    assert _person(sibling) == _person(_lead(store, "c.b"))
    # Saved (a new version), re-queued with the lead that had the action, and explained:
    # field names only, never values.
    with store.connect() as conn:
        assert (
            conn.execute(
                select(leads.c.version).where(leads.c.lead_key == sibling.lead_key)
            ).scalar_one()
            == version + 1
        )
    assert _queued(store) == {sibling.lead_key, identity.lead_key(EMAIL, "c.b")}
    filled = _person_events(store, "c.a")[-1]
    assert filled["filled"] == ["phone", "title"]
    assert filled["score"] == {"from": 25, "to": 40}
    assert "425" not in json.dumps(filled) and "Head" not in json.dumps(filled)


def test_the_persons_newest_value_wins_on_every_lead_and_a_late_old_action_does_not(
    store: Store, settings: Settings
) -> None:
    _process(store, settings, _body("c.a", Title="Developer"))
    _process(store, settings, _body("c.b", Title="Architect"), at=T0 + timedelta(days=2))
    assert _lead(store, "c.a").title == _lead(store, "c.b").title == "Architect"
    # An action from before both arrives late, on the first offer: it adds the action but
    # doesn't bring the old title back on either lead.
    _process(store, settings, _body("c.a", Title="Intern"), at=T0 - timedelta(days=30))
    assert _lead(store, "c.a").title == _lead(store, "c.b").title == "Architect"
    assert _lead(store, "c.a").raw_count == 2


def test_workers_on_postgresql_give_every_lead_of_a_person_the_same_fields(
    pg_url: str,
) -> None:
    """Three workers, people with leads on several offers acting in every order: sibling
    leads are locked with the leads of the batch (people first, then leads, each in sorted
    order), so no worker deadlocks and every lead of a person ends with the same fields."""
    settings = load_settings(None, store=pg_url, batch_size=20)
    store = Store(pg_url)
    rng = random.Random(5)
    offers = [f"c.o{i}" for i in range(4)]
    bodies = [
        {
            "LeadSource": f"AzureMarketplace-INS|{offer}",
            "UserDetails": {
                "Email": f"p{person}@contoso.com",
                "Phone": f"+1 425 555 {rng.randrange(10_000):04d}",
                "Title": rng.choice(["CTO", "Developer", "Head of IT", ""]),
                "Company": rng.choice(["Contoso", "", "Contoso Ltd"]),
            },
            "n": n,
        }
        for n, (person, offer) in enumerate(
            rng.sample([(p, o) for p in range(60) for o in offers for _ in range(2)], 480)
        )
    ]
    failures: list[BaseException] = []

    def work() -> None:
        try:
            pipeline.process_pending(store, settings)
        except BaseException as exc:  # collected: a thread's exception would vanish
            failures.append(exc)

    try:
        with store.begin() as conn:
            repo.land(
                conn,
                [
                    RawLead(source="s", source_key=str(i), kind="https", payload=body)
                    for i, body in enumerate(bodies)
                ],
                repo.utcnow(),
            )
        workers = [threading.Thread(target=work) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert not failures, failures
        assert not any(worker.is_alive() for worker in workers)
        with store.connect() as conn:
            people = repo.leads_by_email(conn, [f"p{p}@contoso.com" for p in range(60)])
        assert sum(len(group) for group in people.values()) == 240
        assert sum(lead.raw_count for group in people.values() for lead in group) == 480
        for group in people.values():
            assert len({_person(lead) for lead in group}) == 1
    finally:
        store.dispose()
