"""A customised mapping and routing, end to end into every CRM sandbox: custom fields,
value tables, constants, cut multi-byte text, a write policy set in config, and owners set
on create only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadbridge.core.connector import build, sandboxes
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.domain.mapping import TRUNCATION_MARK
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store

ROUTING = [
    {"when": {"country": "DE"}, "owner": "OWNER-DACH"},
    {"when": {"action": "PLT", "score_at_least": 50}, "owner": "OWNER-HOT"},
]
CUSTOM = {  # per CRM: (field map overrides, the owner field, how owners are written)
    "salesforce": (
        {
            "Campaign_Code__c": "attribution.mktcmpid",
            "Product__c": {"from": "offer", "map": {"contoso.crm": "CRM"}},
            "LeadSource": "=AppSource",
            # The publisher wants the newest title, whoever typed the last one.
            "Title": {"from": "title", "truncate": 6, "update": "always"},
        },
        "OwnerId",
        "{}",
    ),
    "hubspot": (
        {
            "campaign_code": "attribution.mktcmpid",
            "product": {"from": "offer", "map": {"contoso.crm": "CRM"}},
            "jobtitle": {"from": "title", "truncate": 6, "update": "always"},
        },
        "hubspot_owner_id",
        "{}",
    ),
    "dataverse": (
        {
            "lb_campaigncode": "attribution.mktcmpid",
            "lb_product": {"from": "offer", "map": {"contoso.crm": "CRM"}},
            "jobtitle": {"from": "title", "truncate": 6, "update": "always"},
        },
        "ownerid@odata.bind",
        "/systemusers({})",
    ),
}
CUSTOM_FIELDS = {
    "salesforce": ("Campaign_Code__c", "Product__c"),
    "hubspot": ("campaign_code", "product"),
    "dataverse": ("lb_campaigncode", "lb_product"),
}


@pytest.fixture(params=list(CUSTOM))
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    kind = request.param
    running = sandboxes.start([kind])
    box = running[kind]
    fields_of = {"salesforce": "fields", "hubspot": "properties", "dataverse": "columns"}[kind]
    getattr(box, fields_of).update(CUSTOM_FIELDS[kind])  # the org's own custom fields
    overrides, _, owner_format = CUSTOM[kind]
    entry = sandboxes.target_entry(kind, box) | {
        "fields": overrides,
        "default_owner": owner_format.format("OWNER-DEFAULT")
        if kind == "dataverse"
        else "OWNER-DEFAULT",
        "routing": [
            {**r, "owner": owner_format.format(r["owner"]) if kind == "dataverse" else r["owner"]}
            for r in ROUTING
        ],
    }
    settings = load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}", targets=[entry])
    store = Store(settings.store)
    target = build(settings.target_configs()[0], placeholder=settings.placeholder)
    yield kind, box, (settings, store, target)
    store.dispose()
    sandboxes.stop(running)


def _add(
    settings: Any,
    store: Store,
    n: int,
    email: str,
    action: str,
    country: str,
    title: str = "Geschäftsführerin",
) -> None:
    payload = {
        "LeadSource": f"AppSource (SPZA)-{action}|contoso.crm",
        "UserDetails": {
            "Email": email,
            "LastName": "Doe",
            "Company": "Contoso",
            "Country": country,
            "Title": title,
        },
        "Description": '{"mktcmpid": "spring-24"}',
    }
    pipeline.land_one(store, RawLead(source="t", source_key=str(n), kind="https", payload=payload))
    pipeline.process_pending(store, settings)


def _record(kind: str, box: Any, email: str) -> dict[str, Any]:
    email_field = {"salesforce": "Email", "hubspot": "email", "dataverse": "emailaddress1"}[kind]
    return next(r for r in box.records.values() if r.get(email_field) == email)


def test_custom_fields_tables_truncation_and_routing(world: tuple[str, Any, Any]) -> None:
    kind, box, (settings, store, target) = world
    _add(settings, store, 1, "hans@contoso.de", "INS", "DE")
    _add(settings, store, 2, "ada@contoso.com", "PLT", "US")
    _add(settings, store, 3, "bob@contoso.com", "INS", "US")
    report = deliver(target, store, settings)
    assert report.pushed == 3 and report.dead_lettered == 0
    campaign, product = CUSTOM_FIELDS[kind]
    _, owner_field, _ = CUSTOM[kind]
    hans = _record(kind, box, "hans@contoso.de")
    assert hans[campaign] == "spring-24" and hans[product] == "CRM"
    title = {"salesforce": "Title", "hubspot": "jobtitle", "dataverse": "jobtitle"}[kind]
    assert hans[title] == "Gesch" + TRUNCATION_MARK
    owner = {"salesforce": "{}", "hubspot": "{}", "dataverse": "/systemusers({})"}[kind]
    assert hans[owner_field] == owner.format("OWNER-DACH")  # the first matching rule
    assert _record(kind, box, "ada@contoso.com")[owner_field] == owner.format("OWNER-HOT")
    assert _record(kind, box, "bob@contoso.com")[owner_field] == owner.format("OWNER-DEFAULT")

    # A salesperson reassigns Hans; his next update must not take the lead back.
    hans[owner_field] = "REASSIGNED"
    _add(settings, store, 4, "hans@contoso.de", "Create", "DE", title="CTO")
    assert deliver(target, store, settings).pushed == 1
    assert hans[owner_field] == "REASSIGNED" and hans[title] == "CTO"
