"""Salesforce opt-outs read back: the SOQL and what is made of its rows.

Query resource shape: developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/
resources_query.htm (`totalSize`, `done`, `records` with `attributes`); the opt-out fields:
Lead in the Object Reference (sforce_api_objects_lead.htm: HasOptedOutOfEmail, DoNotCall,
HasOptedOutOfFax, booleans); SystemModstamp as Salesforce writes it (…+0000).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from leadbridge.connectors.salesforce.sandbox import SalesforceSandbox
from leadbridge.connectors.salesforce.target import SalesforceConfig, SalesforceTarget
from leadbridge.core.connector import ConsentReader
from leadbridge.core.domain.models import Lead, Stage

INSTANCE = "https://acme.my.salesforce.com"
QUERY = f"{INSTANCE}/services/data/v62.0/query"


def _target(instance: str = INSTANCE, **extra: str) -> SalesforceTarget:
    config = {"client_id": "cid", "client_secret": "cs"} | extra
    return SalesforceTarget(
        SalesforceConfig(name="sales", instance_url=instance, country_field="name", **config)
    )


def _row(key: str, stamp: str, **flags: bool) -> dict[str, object]:
    values = {"HasOptedOutOfEmail": False, "DoNotCall": False, "HasOptedOutOfFax": False}
    return {
        "attributes": {"type": "Lead", "url": f"/services/data/v62.0/sobjects/Lead/00Q{key}"},
        "Id": f"00Q5e00000{key}AAA",
        "LeadBridge_Key__c": key * 32,
        "SystemModstamp": stamp,
        **values,
        **flags,
    }


def test_the_target_declares_it_reads_opt_outs() -> None:
    assert isinstance(_target(), ConsentReader)


@responses.activate
def test_opted_out_leads_since_the_watermark_with_their_channels() -> None:
    responses.post(
        f"{INSTANCE}/services/oauth2/token",
        json={"access_token": "tok", "instance_url": INSTANCE, "token_type": "Bearer"},
    )
    responses.get(
        QUERY,
        json={
            "totalSize": 3,
            "done": True,
            "records": [
                _row("a", "2026-05-01T10:00:00.000+0000", HasOptedOutOfEmail=True),
                _row("b", "2026-05-01T11:00:00.000+0000", DoNotCall=True, HasOptedOutOfFax=True),
                _row("c", "2026-05-01T12:00:00.000+0000"),  # no flag: not an opt-out
            ],
        },
    )
    found, watermark = _target().opt_outs("2026-05-01T09:00:00+00:00")

    soql = parse_qs(urlsplit(str(responses.calls[-1].request.url)).query)["q"][0]
    assert "SystemModstamp >= 2026-05-01T08:55:00+00:00" in soql  # minus the 5 min overlap
    assert "LeadBridge_Key__c != null" in soql
    assert "(HasOptedOutOfEmail = true OR DoNotCall = true OR HasOptedOutOfFax = true)" in soql
    assert [(o["lead_key"], o["channels"]) for o in found] == [
        ("a" * 32, ["email"]),
        ("b" * 32, ["fax", "phone"]),
    ]
    assert found[0]["at"] == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert found[0]["target"] == "sales" and found[0]["external_id"] == "00Q5e00000aAAA"
    assert watermark == "2026-05-01T12:00:00+00:00"


@pytest.fixture
def org() -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def test_a_salesperson_ticking_email_opt_out_in_the_sandbox_is_read(
    org: SalesforceSandbox,
) -> None:
    target = _target(org.url, client_id=org.client_id, client_secret=org.client_secret)
    leads = [
        Lead(lead_key=c * 32, offer_key="c.o", email=f"{c}@x.io", last_name="Doe", stage=Stage.MQL)
        for c in "ab"
    ]
    target.upsert(leads)
    body = {"key": "b" * 32, "field": "HasOptedOutOfEmail", "value": True}
    requests.post(f"{org.url}/_sandbox/stage", json=body, timeout=10).raise_for_status()

    found, watermark = target.opt_outs(None)
    assert [(o["lead_key"], o["channels"]) for o in found] == [("b" * 32, ["email"])]
    again, _ = target.opt_outs(watermark)
    assert [o["lead_key"] for o in again] == ["b" * 32]  # the overlap reads it again
