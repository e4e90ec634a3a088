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
    assert (results[0].ok, results[0].external_id) == (True, "101")
    assert (results[1].ok, results[1].error_class) == (False, "permanent")
    assert "VALIDATION_ERROR" in results[1].error


@responses.activate
def test_one_contact_per_person_with_every_offer_and_the_furthest_stage() -> None:
    older = _lead("a", "ada@x.io", stage=Stage.MQL)
    newer = _lead("b", "ada@x.io", stage=Stage.LEAD, title="CTO")
    responses.post(
        UPSERT,
        json={
            "status": "COMPLETE",
            "results": [{"id": "7", "objectWriteTraceId": older.lead_key, "properties": {}}],
        },
    )
    results = _target().upsert([older, newer])
    assert all(r.ok and r.external_id == "7" for r in results)
    [item] = json.loads(responses.calls[0].request.body)["inputs"]
    assert (item["id"], item["idProperty"]) == ("ada@x.io", "email")
    assert item["objectWriteTraceId"] == older.lead_key
    props = item["properties"]
    assert props["leadbridge_offers"] == "c.a;c.b" and props["leadbridge_stage"] == "mql"
    assert props["lifecyclestage"] == "marketingqualifiedlead"


@responses.activate
def test_lifecycle_stage_is_sent_forward_never_repeated_and_backward_as_clear_then_set() -> None:
    lead = _lead("a", "a@x.io", stage=Stage.MQL)
    ok = {"status": "COMPLETE", "results": [{"id": "1", "objectWriteTraceId": lead.lead_key}]}
    responses.post(UPSERT, json=ok)
    _target().upsert([lead], {lead.lead_key: Link("1", "mql", "active")})
    props = json.loads(responses.calls[0].request.body)["inputs"][0]["properties"]
    assert "lifecyclestage" not in props  # HubSpot already has it

    responses.reset()
    responses.post(UPSERT, json=ok)
    responses.post(UPSERT, json=ok)
    recycled = _lead("a", "a@x.io", stage=Stage.LEAD)  # sales recycled an SQL to nurture
    assert _target().upsert([recycled], {lead.lead_key: Link("1", "sql", "active")})[0].ok
    first, second = (json.loads(c.request.body)["inputs"][0]["properties"] for c in responses.calls)
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
    responses.post(UPSERT, status=429, json=body)
    with pytest.raises(RetryableError) as err:
        _target().upsert([_lead("a", "a@x.io")])
    assert err.value.retry_after == 3600 and len(responses.calls) == 1

    responses.reset()
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
    responses.post(UPSERT, status=401, json={"category": "INVALID_AUTHENTICATION"})
    responses.post(UPSERT, status=401, json={"category": "INVALID_AUTHENTICATION"})
    with pytest.raises(FatalError):
        _target().upsert([_lead("a", "a@x.io")])
