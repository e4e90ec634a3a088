"""HubSpot unsubscribe contract: an email opt-out written through the communication-preferences
API (v3), shapes from HubSpot's docs.

- Statuses: developers.hubspot.com/docs/api-reference/legacy/communication-preferences/v3/
  get-subscription — `GET /communication-preferences/v3/status/email/{emailAddress}` →
  `{"recipient", "subscriptionStatuses": [{"id", "name", "description", "status":
  "SUBSCRIBED|NOT_SUBSCRIBED", "sourceOfStatus", "legalBasis", …}]}`.
- Unsubscribe: …/v3/unsubscribe-contact — `POST /communication-preferences/v3/unsubscribe`
  `{"emailAddress", "subscriptionId", "legalBasis", "legalBasisExplanation"}` → the status.
- Contacts batch read / upsert: as in test_target.py (…/crm/objects/objects/batch/…).
- Errors: developers.hubspot.com/docs/api-reference/error-handling.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from leadbridge.connectors.hubspot.sandbox import HubSpotSandbox
from leadbridge.connectors.hubspot.target import HubSpotConfig, HubSpotTarget
from leadbridge.core.connector import FatalError
from leadbridge.core.domain.models import Lead, Stage

BASE = "https://api.hubapi.com"
READ = f"{BASE}/crm/v3/objects/contacts/batch/read"
UPSERT = f"{BASE}/crm/v3/objects/contacts/batch/upsert"
STATUS = f"{BASE}/communication-preferences/v3/status/email/"
UNSUBSCRIBE = f"{BASE}/communication-preferences/v3/unsubscribe"
EMAIL = "ana+news@contoso.example"


def _target(**config: Any) -> HubSpotTarget:
    settings = {"unsubscribe_from": ["1001", "1002"], "legal_basis": "LEGITIMATE_INTEREST_OTHER"}
    return HubSpotTarget(HubSpotConfig(name="marketing", token="pat-na1-x", **(settings | config)))


def _lead(**fields: Any) -> Lead:
    base = {"lead_key": "a" * 32, "offer_key": "c.one", "email": EMAIL, "stage": Stage.LEAD}
    return Lead(**(base | fields))


def _contact(optout: str | None) -> None:
    """The batch read that starts each batch: the contact, with `hs_email_optout`."""
    props = {"email": EMAIL, "hs_object_id": "301", "hs_email_optout": optout}
    responses.post(
        READ, json={"status": "COMPLETE", "results": [{"id": "301", "properties": props}]}
    )
    responses.post(
        UPSERT,
        json={
            "status": "COMPLETE",
            "results": [
                {"id": "301", "objectWriteTraceId": "a" * 32, "new": False, "properties": props}
            ],
        },
    )


def _status(type_id: str, status: str) -> dict[str, Any]:
    return {
        "id": type_id,
        "name": f"Type {type_id}",
        "description": "",
        "status": status,
        "sourceOfStatus": "SUBSCRIPTION_STATUS",
    }


def _error(status: int, category: str, message: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "correlationId": "c-1", "category": category}


def _calls(prefix: str) -> list[Any]:
    return [c for c in responses.calls if c.request.url.startswith(prefix)]


@responses.activate
def test_an_email_opt_out_unsubscribes_the_address_from_each_type_still_subscribed() -> None:
    _contact(optout="false")
    responses.get(
        f"{STATUS}ana%2Bnews%40contoso.example",
        json={
            "recipient": EMAIL,
            "subscriptionStatuses": [
                _status("1001", "SUBSCRIBED"),
                _status("1002", "NOT_SUBSCRIBED"),
            ],
        },
    )
    responses.post(UNSUBSCRIBE, json=_status("1001", "NOT_SUBSCRIBED"))

    [result] = _target().upsert([_lead(opted_out=True, opted_out_of=["email"])])

    assert result.ok and not result.dropped
    assert [json.loads(c.request.body) for c in _calls(UNSUBSCRIBE)] == [
        {
            "emailAddress": EMAIL,
            "subscriptionId": "1001",  # 1002: out already, never asked again
            "legalBasis": "LEGITIMATE_INTEREST_OTHER",
            "legalBasisExplanation": "The person opted out in another system (via leadbridge).",
        }
    ]
    read = json.loads(_calls(READ)[0].request.body)
    assert "hs_email_optout" in read["properties"]


@responses.activate
def test_no_legal_basis_configured_sends_none() -> None:
    _contact(optout=None)
    responses.get(
        f"{STATUS}ana%2Bnews%40contoso.example",
        json={"recipient": EMAIL, "subscriptionStatuses": []},
    )
    responses.post(UNSUBSCRIBE, json=_status("1001", "NOT_SUBSCRIBED"))

    _target(unsubscribe_from=["1001"], legal_basis=None).upsert([_lead(opted_out=True)])

    assert [json.loads(c.request.body) for c in _calls(UNSUBSCRIBE)] == [
        {"emailAddress": EMAIL, "subscriptionId": "1001"}
    ]


@pytest.mark.parametrize(
    ("lead", "optout", "config"),
    [
        ({"opted_out": True, "opted_out_of": ["email"]}, "true", {}),  # out of all already
        ({"opted_out": True, "opted_out_of": ["phone"]}, "false", {}),  # not email
        ({}, "false", {}),  # no opt-out at all
        ({"opted_out": True}, "false", {"unsubscribe_from": []}),  # not configured: as before
    ],
    ids=["unsubscribed-from-all", "phone-only", "no-opt-out", "off"],
)
@responses.activate
def test_nothing_is_asked_of_the_subscriptions_api_when_there_is_nothing_to_withdraw(
    lead: dict[str, Any], optout: str, config: dict[str, Any]
) -> None:
    _contact(optout=optout)
    [result] = _target(**config).upsert([_lead(**lead)])
    assert result.ok
    assert not _calls(f"{BASE}/communication-preferences")


@responses.activate
def test_a_refused_unsubscribe_is_recorded_on_the_lead_and_the_contact_still_lands() -> None:
    _contact(optout="false")
    responses.get(
        f"{STATUS}ana%2Bnews%40contoso.example",
        json={"recipient": EMAIL, "subscriptionStatuses": []},
    )
    responses.post(
        UNSUBSCRIBE, status=400, json=_error(400, "VALIDATION_ERROR", "Invalid subscription id")
    )

    [result] = _target().upsert([_lead(opted_out=True)])

    assert result.ok and result.external_id == "301"
    assert result.dropped == {
        "unsubscribe": "unsubscribing from 1001: HTTP 400: Invalid subscription id"
    }
    assert EMAIL not in json.dumps(result.dropped)


@responses.activate
def test_a_missing_scope_stops_the_target_with_the_scope_to_add() -> None:
    _contact(optout="false")
    responses.get(
        f"{STATUS}ana%2Bnews%40contoso.example",
        status=403,
        json=_error(403, "MISSING_SCOPES", "This app hasn't been granted all required scopes"),
    )
    with pytest.raises(FatalError, match="communication_preferences"):
        _target().upsert([_lead(opted_out=True)])


def test_against_the_sandbox_the_address_is_unsubscribed_once_and_never_resubscribed() -> None:
    with HubSpotSandbox() as box:
        target = HubSpotTarget(
            HubSpotConfig(
                name="marketing",
                base_url=box.url,
                token=box.token,
                unsubscribe_from=["1001"],
                legal_basis="LEGITIMATE_INTEREST_OTHER",
            )
        )
        lead = _lead(opted_out=True, opted_out_of=["email", "bulk_email"])
        first = target.upsert([lead])
        again = target.upsert([lead])  # a re-delivery: 1001 is out already, nothing asked

        assert first[0].ok and again[0].ok and not again[0].dropped
        assert set(box.unsubscribed[EMAIL]) == {"1001"}  # 1002 was not configured
        assert box.unsubscribed[EMAIL]["1001"]["legalBasis"] == "LEGITIMATE_INTEREST_OTHER"
