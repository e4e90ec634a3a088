"""HubSpot `companies: associate`: each contact linked to the company of its email domain,
personal mailboxes excluded, in batches.

Shapes: contacts batch upsert (contacts.json BatchResponseSimplePublicUpsertObject); CRM
search with the IN operator (developers.hubspot.com/docs/api-reference/latest/crm/
search-the-crm); companies batch create (201, `results` with id and properties:
developers.hubspot.com/docs/api-reference/latest/crm/objects/companies/batch/create-companies);
v4 default association (developers.hubspot.com/docs/api-reference/legacy/crm/associations/
associate-records/batch/create-associations: `inputs` of from/to ids, `results` with the
associationSpec).
"""

from __future__ import annotations

import json
from typing import Any

import responses

from leadbridge.connectors.hubspot.sandbox import HubSpotSandbox
from leadbridge.connectors.hubspot.target import HubSpotConfig, HubSpotTarget
from leadbridge.core.domain.models import Lead

BASE = "https://api.hubapi.com"
READ = f"{BASE}/crm/v3/objects/contacts/batch/read"
UPSERT = f"{BASE}/crm/v3/objects/contacts/batch/upsert"
SEARCH = f"{BASE}/crm/v3/objects/companies/search"
CREATE = f"{BASE}/crm/v3/objects/companies/batch/create"
ASSOCIATE = f"{BASE}/crm/v4/associations/contacts/companies/batch/associate/default"


def _target(**config: Any) -> HubSpotTarget:
    return HubSpotTarget(HubSpotConfig(name="marketing", token="pat-na1-x", **config))


def _lead(key: str, email: str, company: str | None = None) -> Lead:
    return Lead(
        lead_key=key * 32, offer_key=f"c.{key}", email=email, last_name="Lee", company=company
    )


def _contacts_land(*pairs: tuple[str, str, str]) -> None:
    """Nothing exists yet; the upsert answers one result per (id, email, trace)."""
    responses.post(READ, status=207, json={"status": "COMPLETE", "results": [], "errors": []})
    responses.post(
        UPSERT,
        json={
            "status": "COMPLETE",
            "results": [
                {
                    "id": cid,
                    "new": True,
                    "objectWriteTraceId": trace,
                    "properties": {"email": email},
                }
                for cid, email, trace in pairs
            ],
        },
    )


@responses.activate
def test_contacts_are_linked_to_their_domains_company_found_or_made_once() -> None:
    _contacts_land(
        ("11", "ann@contoso.com", "a" * 32),
        ("12", "bob@fabrikam.com", "b" * 32),
        ("13", "eve@gmail.com", "c" * 32),
    )
    responses.post(
        SEARCH,
        json={
            "total": 1,
            "results": [{"id": "900", "properties": {"domain": "contoso.com", "name": "Contoso"}}],
        },
    )
    responses.post(
        CREATE,
        status=201,
        json={
            "status": "COMPLETE",
            "results": [
                {"id": "901", "properties": {"domain": "fabrikam.com", "name": "Fabrikam"}}
            ],
        },
    )
    responses.post(
        ASSOCIATE,
        json={
            "status": "COMPLETE",
            "results": [
                {
                    "from": {"id": c},
                    "to": {"id": k},
                    "associationSpec": {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": 279,
                    },
                }
                for c, k in (("11", "900"), ("12", "901"))
            ],
        },
    )
    leads = [
        _lead("a", "ann@contoso.com", "Contoso Ltd"),
        _lead("b", "bob@fabrikam.com", "Fabrikam"),
        _lead("c", "eve@gmail.com", "Eve Consulting"),
    ]
    ann, bob, eve = _target(companies="associate").upsert(leads)

    assert ann.related == {"contact": "11", "account": "900"}
    assert bob.related == {"contact": "12", "account": "901"}
    assert eve.ok and eve.related == {} and "company" not in eve.dropped  # a personal mailbox
    search = json.loads(responses.calls[2].request.body)
    assert search["filterGroups"] == [
        {
            "filters": [
                {
                    "propertyName": "domain",
                    "operator": "IN",
                    "values": ["contoso.com", "fabrikam.com"],
                }
            ]
        }
    ]
    create = json.loads(responses.calls[3].request.body)
    assert create == {
        "inputs": [
            {
                "properties": {"domain": "fabrikam.com", "name": "Fabrikam"},
                "objectWriteTraceId": "fabrikam.com",
            }
        ]
    }  # Contoso exists: never written
    assert json.loads(responses.calls[4].request.body) == {
        "inputs": [
            {"from": {"id": "11"}, "to": {"id": "900"}},
            {"from": {"id": "12"}, "to": {"id": "901"}},
        ]
    }
    assert len(responses.calls) == 5  # read, upsert, search, create, associate


@responses.activate
def test_a_failed_company_step_keeps_the_contact_and_says_so() -> None:
    _contacts_land(("11", "ann@contoso.com", "a" * 32))
    responses.post(
        SEARCH,
        status=400,
        json={"status": "error", "category": "VALIDATION_ERROR", "message": "bad"},
    )
    [result] = _target(companies="associate").upsert([_lead("a", "ann@contoso.com", "Contoso")])
    assert result.ok and result.external_id == "11"
    assert "VALIDATION_ERROR" in result.dropped["company"]


@responses.activate
def test_companies_off_is_todays_behaviour() -> None:
    _contacts_land(("11", "ann@contoso.com", "a" * 32))
    [result] = _target().upsert([_lead("a", "ann@contoso.com", "Contoso")])
    assert result.ok and result.related == {} and len(responses.calls) == 2


def test_sandbox_colleagues_share_one_company_and_a_second_push_makes_none() -> None:
    with HubSpotSandbox() as sandbox:
        target = HubSpotTarget(
            HubSpotConfig(**HubSpotTarget.sandbox_entry(sandbox, "m"), companies="associate")
        )
        leads = [
            _lead("a", "ann@contoso.com", "Contoso Ltd"),
            _lead("b", "ann@contoso.com", "Contoso Ltd"),
            _lead("c", "bob@contoso.com"),
        ]
        assert all(r.ok for r in target.upsert(leads))
        assert all(r.ok for r in target.upsert(leads))
        [company] = sandbox.companies.values()
        assert (company["domain"], company["name"]) == ("contoso.com", "Contoso Ltd")
        contacts = {r["email"]: r["id"] for r in sandbox.records.values()}
        assert sandbox.associations == {
            (contacts["ann@contoso.com"], company["id"]),
            (contacts["bob@contoso.com"], company["id"]),
        }
