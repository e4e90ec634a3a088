"""HubSpot contract tests: batch upsert, 207 partial results, throttling by policyName."""

from __future__ import annotations

import json

import pytest
import responses

from leadbridge.connectors.base import FatalError, RetryableError
from leadbridge.connectors.hubspot.target import HubSpotConfig, HubSpotTarget
from leadbridge.connectors.targets import Link
from leadbridge.core.models import Lead, Stage

BASE = "https://api.hubapi.com"
UPSERT = f"{BASE}/crm/v3/objects/contacts/batch/upsert"
READ = f"{BASE}/crm/v3/objects/contacts/batch/read"


def _contacts(*found: dict[str, object], missing: tuple[str, ...] = ()) -> None:
    """The batch read by email that starts every batch. Shape: developers.hubspot.com/docs/
    api-reference/latest/crm/objects/objects/batch/get-objects — `results` for the emails it
    knows; the ones it doesn't come back in a 207 as OBJECT_NOT_FOUND."""
    body: dict[str, object] = {
        "status": "COMPLETE",
        "results": [
            {"id": str(c.get("hs_object_id", "1")), "properties": c, "archived": False}
            for c in found
        ],
    }
    if missing:
        body |= {
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some CONTACT objects, they may be deleted or not "
                    "exist. Check that ids are valid.",
                    "context": {"ids": list(missing)},
                }
            ],
        }
    responses.post(READ, status=207 if missing else 200, json=body)


def _target() -> HubSpotTarget:
    return HubSpotTarget(HubSpotConfig(name="marketing", token="pat-na1-x"))


def _lead(key: str, email: str, **fields: object) -> Lead:
    return Lead(
        **(
            {
                "lead_key": key * 32,
                "offer_key": f"c.{key}",
                "email": email,
                "first_name": "Ada",
                "stage": Stage.LEAD,
            }
            | fields
        )
    )


@responses.activate
def test_207_errors_map_back_to_their_leads_by_trace_id() -> None:
    a, b = _lead("a", "a@x.io"), _lead("b", "b@x.io")
    _contacts(missing=("a@x.io", "b@x.io"))
    responses.post(
        UPSERT,
        status=207,
        json={
            "status": "COMPLETE",
            "results": [
                {
                    "id": "101",
                    "new": True,
                    "objectWriteTraceId": a.lead_key,
                    "properties": {"email": "a@x.io"},
                }
            ],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid",
                    "context": {"objectWriteTraceId": [b.lead_key]},
                }
            ],
        },
    )
    results = _target().upsert([a, b])
    assert (results[0].ok, results[0].external_id, results[0].created) == (True, "101", True)
    assert (results[1].ok, results[1].error_class) == (False, "permanent")
    assert "VALIDATION_ERROR" in results[1].error


@responses.activate
def test_one_contact_per_person_with_every_offer_and_the_furthest_stage() -> None:
    older = _lead("a", "ada@x.io", stage=Stage.MQL)
    newer = _lead("b", "ada@x.io", stage=Stage.LEAD, title="CTO")
    _contacts(missing=("ada@x.io",))
    responses.post(
        UPSERT,
        json={
            "status": "COMPLETE",
            "results": [{"id": "7", "objectWriteTraceId": older.lead_key, "properties": {}}],
        },
    )
    results = _target().upsert([older, newer])
    assert all(r.ok and r.external_id == "7" for r in results)
    read = json.loads(responses.calls[0].request.body)
    assert read["idProperty"] == "email" and read["inputs"] == [{"id": "ada@x.io"}]
    [item] = json.loads(responses.calls[1].request.body)["inputs"]
    assert (item["id"], item["idProperty"]) == ("ada@x.io", "email")
    assert item["objectWriteTraceId"] == older.lead_key
    props = item["properties"]
    assert props["leadbridge_offers"] == "c.a;c.b" and props["leadbridge_stage"] == "mql"
    assert props["lifecyclestage"] == "marketingqualifiedlead"


@responses.activate
def test_lifecycle_stage_is_sent_forward_never_repeated_and_backward_as_clear_then_set() -> None:
    lead = _lead("a", "a@x.io", stage=Stage.MQL)
    ok = {"status": "COMPLETE", "results": [{"id": "1", "objectWriteTraceId": lead.lead_key}]}
    _contacts({"email": "a@x.io", "lifecyclestage": "marketingqualifiedlead"})
    responses.post(UPSERT, json=ok)
    _target().upsert([lead], {lead.lead_key: Link("1", "mql", "active")})
    props = json.loads(responses.calls[1].request.body)["inputs"][0]["properties"]
    assert "lifecyclestage" not in props  # HubSpot already has it

    responses.reset()
    _contacts({"email": "a@x.io", "lifecyclestage": "salesqualifiedlead"})
    responses.post(UPSERT, json=ok)
    responses.post(UPSERT, json=ok)
    recycled = _lead("a", "a@x.io", stage=Stage.LEAD)  # sales recycled an SQL to nurture
    assert _target().upsert([recycled], {lead.lead_key: Link("1", "sql", "active")})[0].ok
    first, second = (
        json.loads(c.request.body)["inputs"][0]["properties"] for c in responses.calls[1:]
    )
    assert first == {"lifecyclestage": ""}  # clear, in a request of its own…
    assert second["lifecyclestage"] == "lead"  # …then set


@responses.activate
def test_daily_limit_pauses_and_ten_secondly_waits_the_interval(fake_clock) -> None:
    body = {
        "status": "error",
        "message": "You have reached your daily limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "DAILY",
    }
    responses.post(READ, status=429, json=body)
    with pytest.raises(RetryableError) as err:
        _target().upsert([_lead("a", "a@x.io")])
    assert err.value.retry_after == 3600 and len(responses.calls) == 1

    responses.reset()
    _contacts(missing=("a@x.io",))
    responses.post(
        UPSERT,
        status=429,
        json=body | {"policyName": "TEN_SECONDLY_ROLLING"},
        headers={"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
    )
    lead = _lead("a", "a@x.io")
    responses.post(UPSERT, json={"results": [{"id": "1", "objectWriteTraceId": lead.lead_key}]})
    assert _target().upsert([lead])[0].ok
    assert 10.0 in fake_clock.sleeps


@responses.activate
def test_a_lead_without_email_cannot_be_a_contact() -> None:
    result = _target().upsert([_lead("a", None)])[0]  # type: ignore[arg-type]
    assert result.error_class == "permanent" and "email" in result.error
    assert len(responses.calls) == 0


@responses.activate
def test_a_rejected_private_app_token_is_fatal() -> None:
    responses.post(READ, status=401, json={"category": "INVALID_AUTHENTICATION"})
    responses.post(READ, status=401, json={"category": "INVALID_AUTHENTICATION"})
    with pytest.raises(FatalError):
        _target().upsert([_lead("a", "a@x.io")])


@responses.activate
def test_an_existing_contact_keeps_what_people_set_and_its_later_stage() -> None:
    """The contact was there before leadbridge (a form fill, a salesperson): its names and
    company stay, an empty phone is filled, a lifecycle stage beyond the lead's is never
    sent, and no owner is routed onto it."""
    lead = _lead("a", "ada@x.io", stage=Stage.MQL, company="Contoso", phone="+14255550100")
    _contacts(
        {
            "email": "ada@x.io",
            "firstname": "Adaline",
            "company": "Contoso Ltd",
            "phone": "",
            "lifecyclestage": "customer",
            "hs_object_id": "42",
        }
    )
    responses.post(
        UPSERT,
        json={
            "status": "COMPLETE",
            "results": [{"id": "42", "new": False, "objectWriteTraceId": lead.lead_key}],
        },
    )
    target = HubSpotTarget(HubSpotConfig(name="marketing", token="pat-na1-x", default_owner="9001"))
    [result] = target.upsert([lead])
    assert result.ok and result.created is False
    assert sorted(result.kept) == ["company", "firstname"]
    props = json.loads(responses.calls[1].request.body)["inputs"][0]["properties"]
    assert props["phone"] == "+14255550100"
    assert {"firstname", "company", "lifecyclestage", "hubspot_owner_id"} & set(props) == set()
    assert props["leadbridge_stage"] == "mql" and props["leadbridge_lead_key"] == lead.lead_key
    assert not any(name.startswith("hs_email_optout") for name in props)
