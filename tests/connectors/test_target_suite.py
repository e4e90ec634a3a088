"""One suite every target passes (singer-sdk style), through the delivery job, against its
sandbox: duplicates become one record, updates change fields, a permanent error dead-letters
only its lead, throttling waits as the vendor said, an unchanged lead costs no call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from leadbridge.connectors import sandboxes
from leadbridge.connectors.base import build
from leadbridge.core import pipeline
from leadbridge.core.delivery import DeliveryReport, deliver
from leadbridge.core.models import RawLead
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import dead_letters, outbox

KINDS = ["salesforce", "hubspot", "dataverse", "webhook"]
# What each CRM calls the title and company fields.
TITLE = {"salesforce": "Title", "hubspot": "jobtitle", "dataverse": "jobtitle", "webhook": "title"}


@dataclass
class World:
    kind: str
    sandbox: Any
    settings: Settings
    store: Store
    target: Any
    raw_count: int = 0

    def add(
        self, email: str, offer: str = "contoso.crm", action: str = "INS", **customer: str
    ) -> None:
        self.raw_count += 1
        payload = {
            "LeadSource": f"AppSource (SPZA)-{action}|{offer}",
            "UserDetails": {
                "Email": email,
                "LastName": "Doe",
                "Company": "Contoso",
                "Country": "US",
                **customer,
            },
        }
        pipeline.land_one(
            self.store,
            RawLead(source="test", source_key=str(self.raw_count), kind="https", payload=payload),
        )
        pipeline.process_pending(self.store, self.settings)

    def deliver(self) -> DeliveryReport:
        return deliver(self.target, self.store, self.settings)

    def records(self) -> list[dict[str, Any]]:
        return list(self.sandbox.records.values())

    def count(self, table: Any) -> int:
        with self.store.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.fixture(params=KINDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    kind = request.param
    running = sandboxes.start([kind])
    sandbox = running[kind]
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'lb.db'}",
        targets=[sandboxes.target_entry(kind, sandbox)],
    )
    store = Store(settings.store)
    target = build(settings.target_configs()[0], placeholder=settings.placeholder)
    try:
        yield World(kind, sandbox, settings, store, target)
    finally:
        store.dispose()
        sandboxes.stop(running)


def test_duplicates_become_one_record(world: World) -> None:
    world.add("ada@contoso.com", action="PLT", FirstName="Ada")
    world.add("  ADA@Contoso.com ", action="INS", FirstName="ada")
    report = world.deliver()
    assert report.pushed == 1 and report.api_calls == 1
    assert len(world.records()) == 1


def test_an_update_changes_fields_of_the_same_record(world: World) -> None:
    world.add("ada@contoso.com", Title="Engineer")
    world.deliver()
    world.add("ada@contoso.com", action="Create", Title="CTO")
    assert world.deliver().pushed == 1
    [record] = world.records()
    assert record[TITLE[world.kind]] == "CTO"
    assert record["_writes"] == 2


def test_a_permanent_error_dead_letters_that_lead_while_the_rest_lands(world: World) -> None:
    world.add("a@contoso.com")
    world.add("b@contoso.com", Company="SANDBOX_REJECT Ltd")
    world.add("c@contoso.com")
    report = world.deliver()
    assert (report.pushed, report.dead_lettered) == (2, 1)
    assert len(world.records()) == 2
    assert world.count(outbox) == 0
    with world.store.connect() as conn:
        letter = conn.execute(select(dead_letters)).one()
    assert letter.error_class == "permanent" and letter.body  # the CRM's own error body


def test_throttling_waits_exactly_as_the_vendor_said(world: World, fake_clock: Any) -> None:
    world.add("a@contoso.com")
    world.sandbox.faults.retry_after_s = 7
    world.sandbox.faults.throttle_next = 1
    report = world.deliver()
    if world.kind == "salesforce":
        # 403 REQUEST_LIMIT_EXCEEDED carries no Retry-After: the target pauses, not spins.
        assert report.pushed == 0 and report.retrying == 1 and report.paused_until
        assert world.sandbox.api_calls() == 1
        assert world.deliver().api_calls == 0  # still paused: nothing is sent
        fake_clock.now += 121
        with world.store.begin() as conn:  # and the outbox row's back-off has passed
            conn.execute(update(outbox).values(next_attempt_at=repo.utcnow()))
        report = world.deliver()
    else:
        assert 7 in fake_clock.sleeps
    assert report.pushed == 1
    assert len(world.records()) == 1


def test_an_unchanged_lead_makes_no_call(world: World) -> None:
    world.add("a@contoso.com")
    world.add("b@contoso.com")
    world.deliver()
    calls = world.sandbox.api_calls()
    with world.store.begin() as conn:
        repo.enqueue(
            conn,
            [k for (k,) in conn.execute(select(outbox.c.lead_key))]
            or [r["lead_key"] for r in _lead_keys(world)],
            [world.target.name],
            repo.utcnow(),
        )
    report = world.deliver()
    assert report.api_calls == 0 and report.skipped_unchanged == 2
    assert world.sandbox.api_calls() == calls


def test_an_expired_token_is_renewed_and_the_batch_still_lands(world: World) -> None:
    if world.kind == "webhook":
        pytest.skip("the webhook signs each request; it has no token to expire")
    world.sandbox.api_requests, world.sandbox.faults.token_ttl_requests = 1, 2
    world.add("a@contoso.com")  # ↑ the first API request finds the token expired
    report = world.deliver()
    assert report.pushed == 1 and report.fatal is None
    statuses = [r["status"] for r in world.sandbox.request_log if r["api"]]
    assert statuses[0] == 401 and statuses[-1] < 300


def _lead_keys(world: World) -> list[dict[str, Any]]:
    from leadbridge.core import views

    with world.store.connect() as conn:
        return views.list_leads(conn)
