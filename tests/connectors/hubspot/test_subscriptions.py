"""HubSpot unsubscribe contract: an email opt-out written through the communication-preferences
API (v3), shapes from HubSpot's docs.

- Statuses: developers.hubspot.com/docs/api-reference/legacy/communication-preferences/v3/
  get-subscription — `GET /communication-preferences/v3/status/email/{emailAddress}` →
  `{"recipient", "subscriptionStatuses": [{"id", "name", "description", "status":
  "SUBSCRIBED|NOT_SUBSCRIBED", "sourceOfStatus", "legalBasis", …}]}`.
- Unsubscribe: …/v3/unsubscribe-contact — `POST /communication-preferences/v3/unsubscribe`
  `{"emailAddress", "subscriptionId", "legalBasis", "legalBasisExplanation"}` → the status.
- Unsubscribe from all email (v4): developers.hubspot.com/docs/api-reference/communication-
  preferences-subscriptions-v4/subscription-status/post-communication-preferences-v4-
  statuses-subscriberIdString-unsubscribe-all — `POST /communication-preferences/v4/
  statuses/{subscriberIdString}/unsubscribe-all?channel=EMAIL` (the contact's email address;
  channel required, EMAIL only; no body) → `{"status": "COMPLETE", "results": [], "startedAt",
  "completedAt", "requestedAt"}` (results only with verbose=true); the GET on the same path
  answers `results` empty unless the address is opted out of all email (…get-communication-
  preferences-v4-statuses-subscriberIdString-unsubscribe-all).
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
UNSUBSCRIBE_ALL = f"{BASE}/communication-preferences/v4/statuses/ana%2Bnews%40contoso.example"
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
    # for the lead's history: what was withdrawn, never the address
    assert getattr(result, "consent", {}) == {
        "unsubscribe": "unsubscribed from subscription types 1001"
    }
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
def test_a_refused_type_is_recorded_on_the_lead_the_others_still_go_and_the_contact_lands() -> None:
    _contact(optout="false")
    responses.get(
        f"{STATUS}ana%2Bnews%40contoso.example",
        json={"recipient": EMAIL, "subscriptionStatuses": []},
    )
    responses.post(
        UNSUBSCRIBE, status=400, json=_error(400, "VALIDATION_ERROR", "Invalid subscription id")
    )
    responses.post(UNSUBSCRIBE, json=_status("1002", "NOT_SUBSCRIBED"))

    [result] = _target().upsert([_lead(opted_out=True)])

    assert result.ok and result.external_id == "301"
    assert [json.loads(c.request.body)["subscriptionId"] for c in _calls(UNSUBSCRIBE)] == [
        "1001",
        "1002",
    ]
    # a `consent:` refusal: core's consent sync sends the lead again (core/sync/consentsync)
    assert result.dropped == {
        "consent:unsubscribe": "unsubscribing from 1001: HTTP 400: Invalid subscription id "
        "(asked again at the next consent sync)"
    }
    assert getattr(result, "consent", {}) == {
        "unsubscribe": "unsubscribed from subscription types 1002"
    }
    assert EMAIL not in json.dumps(result.dropped)


@pytest.mark.parametrize("status", [429, 503])
@responses.activate
def test_throttled_or_down_leaves_the_lead_queued_for_the_delivery_retries(status: int) -> None:
    """What the transport's own retries didn't get past: the push is retryable, so the
    outbox's back-off asks again (the contact, then the unsubscribe)."""
    _contact(optout="false")
    responses.get(
        f"{STATUS}ana%2Bnews%40contoso.example",
        json={"recipient": EMAIL, "subscriptionStatuses": []},
    )
    responses.post(UNSUBSCRIBE, status=status, json=_error(status, "RATE_LIMITS", "slow down"))
    target = _target()
    target.transport.max_attempts = 1  # no waiting in a test: one answer is the last

    [result] = target.upsert([_lead(opted_out=True)])

    assert not result.ok and result.error_class == "retryable"


@responses.activate
def test_all_unsubscribes_the_address_from_all_email_through_v4() -> None:
    _contact(optout="false")
    responses.post(
        f"{UNSUBSCRIBE_ALL}/unsubscribe-all",
        json={
            "status": "COMPLETE",
            "results": [],
            "requestedAt": "2026-12-03T07:00:00Z",
            "startedAt": "2026-12-03T07:00:00Z",
            "completedAt": "2026-12-03T07:00:01Z",
        },
    )

    [result] = _target(unsubscribe_from=["all"]).upsert([_lead(opted_out=True)])

    assert result.ok and not result.dropped
    assert getattr(result, "consent", {}) == {"unsubscribe": "unsubscribed from all email"}
    [call] = _calls(f"{BASE}/communication-preferences")
    assert call.request.method == "POST" and call.request.body is None
    assert call.request.url == f"{UNSUBSCRIBE_ALL}/unsubscribe-all?channel=EMAIL"


@responses.activate
def test_a_refused_unsubscribe_from_all_is_recorded_for_the_next_consent_sync() -> None:
    _contact(optout="false")
    responses.post(
        f"{UNSUBSCRIBE_ALL}/unsubscribe-all",
        status=400,
        json=_error(400, "VALIDATION_ERROR", f"Invalid input: {EMAIL.upper()} is not valid"),
    )
    [result] = _target(unsubscribe_from=["all"]).upsert([_lead(opted_out=True)])
    assert result.ok
    # HubSpot's words go into the lead's history: the address it quoted is taken out
    assert result.dropped["consent:unsubscribe"].startswith(
        "unsubscribing from all email: HTTP 400: Invalid input: <the address> is not valid"
    )


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


def test_against_the_sandbox_all_opts_the_address_out_and_the_opt_out_read_sees_it() -> None:
    """v4 unsubscribe-all, then HubSpot's own "unsubscribed from all email" says so: the
    contact's `hs_email_optout` is what the stage reads look for (consent.py)."""
    with HubSpotSandbox() as box:
        target = HubSpotTarget(
            HubSpotConfig(
                name="marketing", base_url=box.url, token=box.token, unsubscribe_from=["all"]
            )
        )
        lead = _lead(opted_out=True, opted_out_of=["email"])
        [first] = target.upsert([lead])
        [again] = target.upsert([lead])  # now out of all: nothing more is asked

        assert first.ok and getattr(first, "consent", {}) == {
            "unsubscribe": "unsubscribed from all email"
        }
        assert again.ok and not getattr(again, "consent", {})
        assert set(box.opted_out_of_all) == {EMAIL}
        found, _ = target.opt_outs(None)
        assert [(o["lead_key"], o["channels"]) for o in found] == [("a" * 32, ["email"])]
        status = target.transport.request(
            "GET", f"{box.url}/communication-preferences/v4/statuses/{EMAIL}/unsubscribe-all"
        ).json()
        assert [r["wideStatusType"] for r in status["results"]] == ["PORTAL_WIDE"]
