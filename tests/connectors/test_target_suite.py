"""One suite every target passes (singer-sdk style), through the delivery job, against its
sandbox: duplicates become one record, updates change fields, a permanent error dead-letters
only its lead, throttling waits as the vendor said, an unchanged lead costs no call, and a
CRM's people keep what they set.

Parametrised from the registry: every installed target with a sandbox runs it — a new
connector included — and what differs between CRMs (field names, owners, opt-outs, calls
per batch) is read from the target itself, never from a table of vendors here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from leadbridge.core.app import views
from leadbridge.core.connector import HttpTarget, build, sandboxes
from leadbridge.core.delivery.deliver import DeliveryReport, deliver
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import dead_letters, outbox, target_links

KINDS = sandboxes.kinds()
# The CRMs people work in: leadbridge reads a record there before it writes one.
CRMS = [k for k in KINDS if sandboxes.sandboxed_kinds()[k].reads_per_batch > 0]


def field_for(target: Any, canonical: str) -> str | None:
    """The CRM field the target's map fills from a canonical value (`title` → `Title`)."""
    for name, source in target.fields.fields.items():
        if source == canonical or getattr(source, "from_", None) == canonical:
            return str(name)
    return None


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
    setup_calls = world.target.setup_calls
    report = world.deliver()
    # One read of what the CRM holds for the whole batch (none where the write can't
    # overwrite), one write, and whatever the target reads once on its first batch.
    target = world.target
    reads = target.reads_per_batch if target.reads_for_new_leads is None else 0
    setup = setup_calls
    assert report.pushed == 1 and report.api_calls == 1 + reads + setup
    assert len(world.records()) == 1


def test_an_update_fills_gaps_and_writes_what_leadbridge_owns(world: World) -> None:
    world.add("ada@contoso.com")
    world.deliver()
    world.add("ada@contoso.com", action="PLT", Title="CTO")  # Contact me: now an MQL
    report = world.deliver()
    assert report.pushed == 1
    # A lead it pushed before: the batch's read and the write, nothing read twice.
    assert report.api_calls == 1 + world.target.reads_per_batch
    [record] = world.records()
    assert record[field_for(world.target, "title")] == "CTO"  # it was empty: filled
    assert record["_writes"] == 2
    with world.store.connect() as conn:
        [lead] = views.find_leads(conn, "ada@contoso.com")
    assert lead.stage == "mql"
    for name, value in world.target.owned_fields(lead).items():
        assert record[name] == value, name  # leadbridge's own fields follow the lead


@pytest.mark.parametrize("world", CRMS, indirect=True)
def test_a_salespersons_values_and_the_persons_opt_out_survive_a_new_action(
    world: World,
) -> None:
    """The CRM record was worked on: the person opted out, a salesperson retyped the
    company and last name and took ownership. A new marketplace action for that person
    leaves every one of those values as it is, fills what is empty, and the lead's history
    says what was kept."""
    world.add("ada@contoso.com", Company="Contoso", LastName="doe")
    world.deliver()
    [record] = world.records()
    company, last_name = field_for(world.target, "company"), field_for(world.target, "last_name")
    edits = {
        company: "Contoso Ltd (key account)",
        last_name: "Doe-Smith",
        world.target.owner_field: "005000000000042",
        **{name: True for name in world.target.fields.consent},
    }
    record.update(edits)
    world.add("ada@contoso.com", action="Create", Company="Contoso", Phone="+1 425 555 0100")
    report = world.deliver()
    assert report.pushed == 1 and report.dead_lettered == 0
    [record] = world.records()
    assert {k: record[k] for k in edits} == edits
    assert record[field_for(world.target, "phone")] == "+14255550100"  # empty before: filled
    with world.store.connect() as conn:
        [lead] = views.find_leads(conn, "ada@contoso.com")
        history = views.lead_story(conn, lead)["history"]
    push = [e for e in history if e["kind"] == "push"][-1]
    kept = push["data"]["kept"]["fields"]
    assert company in kept and last_name in kept


@pytest.mark.parametrize("world", CRMS, indirect=True)
def test_no_request_ever_carries_an_opt_out_as_false(world: World) -> None:
    world.add("ada@contoso.com", action="DNC")  # a cross-listed partner was asked
    world.add("bob@contoso.com")
    world.deliver()
    world.add("bob@contoso.com", action="PLT")
    world.deliver()
    sent = "\n".join(r["body"] for r in world.sandbox.request_log if r["api"])
    opt_outs = world.target.fields.consent
    assert opt_outs, "a CRM declares its opt-out fields (sent only as true)"
    for name in opt_outs:
        assert not re.search(rf'"{name}"\s*:\s*(false|null|"")', sent), name
    email = field_for(world.target, "email")
    records = {r.get(email): r for r in world.records()}
    # The DNC action is a marker in leadbridge's own field, not the person's opt-out.
    dnc = field_for(world.target, "marketplace_dnc")
    assert records["ada@contoso.com"][dnc] is True
    assert records["bob@contoso.com"][dnc] is False
    assert not any(records["ada@contoso.com"].get(n) for n in opt_outs)


@pytest.mark.parametrize("world", CRMS, indirect=True)
def test_a_new_record_gets_its_placeholders_and_leadbridge_records_it_made_it(
    world: World,
) -> None:
    world.add("ada@contoso.com", Company="", LastName="")
    report = world.deliver()
    assert report.pushed == 1
    [record] = world.records()
    for name in world.target.fields.required - {field_for(world.target, "topic")}:
        assert record[name] == "[not provided]", name
    with world.store.connect() as conn:
        [link] = conn.execute(select(target_links)).all()
    assert link.created_at is not None
    # The company typed later replaces the placeholder, which was never a person's value.
    world.add("ada@contoso.com", action="PLT", Company="Contoso")
    world.deliver()
    [record] = world.records()
    assert record[field_for(world.target, "company")] == "Contoso"
    with world.store.connect() as conn:
        [link_after] = conn.execute(select(target_links)).all()
    assert link_after.created_at == link.created_at  # an update doesn't change who made it


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
    says_when = "Retry-After" in world.sandbox.throttled().headers
    report = world.deliver()
    if not says_when:
        # A throttle with no Retry-After (Salesforce's REQUEST_LIMIT_EXCEEDED): the target
        # pauses for the time its connector knows, not spins.
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
    if type(world.target).auth_headers is HttpTarget.auth_headers:
        pytest.skip("this target signs each request; it has no token to expire")
    world.sandbox.api_requests, world.sandbox.faults.token_ttl_requests = 1, 2
    world.add("a@contoso.com")  # ↑ the first API request finds the token expired
    report = world.deliver()
    assert report.pushed == 1 and report.fatal is None
    statuses = [r["status"] for r in world.sandbox.request_log if r["api"]]
    assert statuses[0] == 401 and statuses[-1] < 300


def _lead_keys(world: World) -> list[dict[str, Any]]:
    with world.store.connect() as conn:
        return views.list_leads(conn)
