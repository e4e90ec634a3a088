"""HubSpot opt-outs read back: the CRM search and what is made of its results.

Search request and answer: developers.hubspot.com/docs/api-reference/latest/crm/search-the-
crm (`filterGroups` of `filters` with `propertyName`/`operator`/`value`, `sorts`,
`properties`, `limit`, `after`; the answer's `total`, `results` with `id` and string
`properties`, `paging.next.after`). `hs_email_optout`: "Unsubscribed from all email", a
read-only boolean HubSpot sets (vendor-facts §3), answered as "true"/"false".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
import responses

from leadbridge.connectors.hubspot.sandbox import HubSpotSandbox
from leadbridge.connectors.hubspot.target import HubSpotConfig, HubSpotTarget
from leadbridge.core.connector import ConsentReader
from leadbridge.core.domain.models import Lead, Stage

SEARCH = "https://api.hubapi.com/crm/v3/objects/contacts/search"
MAY_1_10H = 1777629600000  # 2026-05-01T10:00:00Z in epoch milliseconds


def _target(**extra: str) -> HubSpotTarget:
    config = {"name": "marketing", "token": "pat-na1-x"} | extra
    return HubSpotTarget(HubSpotConfig(**config))


def _contact(contact_id: str, key: str, optout: str, modified: str) -> dict[str, object]:
    return {
        "id": contact_id,
        "properties": {
            "hs_email_optout": optout,
            "lastmodifieddate": modified,
            "leadbridge_lead_key": key * 32,
            "hs_object_id": contact_id,
        },
        "createdAt": "2026-04-01T10:00:00.000Z",
        "updatedAt": modified,
        "archived": False,
    }


def test_the_target_declares_it_reads_opt_outs() -> None:
    assert isinstance(_target(), ConsentReader)


@responses.activate
def test_unsubscribed_contacts_since_the_watermark_across_pages() -> None:
    responses.post(
        SEARCH,
        json={
            "total": 3,
            "results": [
                _contact("51", "a", "true", "2026-05-01T10:00:00.000Z"),
                _contact("52", "b", "false", "2026-05-01T10:30:00.000Z"),
            ],
            "paging": {"next": {"after": "Mg%3D%3D"}},
        },
    )
    responses.post(
        SEARCH,
        json={"total": 3, "results": [_contact("53", "c", "true", "2026-05-01T11:00:00.000Z")]},
    )
    found, watermark = _target().opt_outs(str(MAY_1_10H))

    first, second = (json.loads(c.request.body) for c in responses.calls)
    assert first["filterGroups"] == [
        {
            "filters": [
                {"propertyName": "hs_email_optout", "operator": "EQ", "value": "true"},
                {
                    "propertyName": "lastmodifieddate",
                    "operator": "GTE",
                    "value": str(MAY_1_10H - 5 * 60 * 1000),  # minus the overlap
                },
                {"propertyName": "leadbridge_lead_key", "operator": "HAS_PROPERTY"},
            ]
        }
    ]
    assert second["after"] == "Mg%3D%3D"  # the cursor, exactly as given
    assert [(o["lead_key"], o["channels"], o["external_id"]) for o in found] == [
        ("a" * 32, ["email"], "51"),
        ("c" * 32, ["email"], "53"),
    ]
    assert found[0]["at"] == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert watermark == str(MAY_1_10H + 3600 * 1000)


@pytest.fixture
def portal() -> Iterator[HubSpotSandbox]:
    sandbox = HubSpotSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def test_a_contact_unsubscribing_in_the_sandbox_is_read(portal: HubSpotSandbox) -> None:
    target = _target(base_url=portal.url, token=portal.token)
    target.upsert(
        [
            Lead(
                lead_key=c * 32, offer_key="c.o", email=f"{c}@x.io", last_name="D", stage=Stage.MQL
            )
            for c in "ab"
        ]
    )
    body = {"email": "b@x.io", "properties": {"hs_email_optout": "true"}}
    requests.post(f"{portal.url}/_sandbox/stage", json=body, timeout=10).raise_for_status()

    found, _ = target.opt_outs(None)
    assert [(o["lead_key"], o["channels"]) for o in found] == [("b" * 32, ["email"])]
