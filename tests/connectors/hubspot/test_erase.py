"""HubSpot erasure contract: the GDPR delete, shapes from HubSpot's docs.

Request and answer: developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/
gdpr/gdpr-delete-contact — `POST /crm/v3/objects/contacts/gdpr-delete` with
`{"objectId": "<id>"}` (`idProperty` only to name the contact by email), 204 No Content.
Error bodies and statuses: developers.hubspot.com/docs/api-reference/error-handling
(`{"status": "error", "message", "correlationId", "category"}`; 429 with `policyName`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import responses

from leadbridge.connectors.hubspot.sandbox import HubSpotSandbox
from leadbridge.connectors.hubspot.target import HubSpotConfig, HubSpotTarget
from leadbridge.core.connector import Eraser, FatalError
from leadbridge.core.domain.models import ErasureRecord, Lead, Outcome, Stage

GDPR_DELETE = "https://api.hubapi.com/crm/v3/objects/contacts/gdpr-delete"


def _target() -> HubSpotTarget:
    return HubSpotTarget(HubSpotConfig(name="marketing", token="pat-na1-x"))


def _records(*ids: str) -> list[ErasureRecord]:
    return [ErasureRecord(kind="lead", external_id=i) for i in ids]


def _error(category: str, message: str) -> dict[str, str]:
    return {
        "status": "error",
        "message": message,
        "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
        "category": category,
    }


def test_the_target_declares_it_can_erase() -> None:
    assert isinstance(_target(), Eraser)


@responses.activate
def test_each_contact_is_gdpr_deleted_by_id_and_one_already_gone_is_done() -> None:
    responses.post(GDPR_DELETE, status=204)
    responses.post(
        GDPR_DELETE, status=404, json=_error("OBJECT_NOT_FOUND", "Object not found. objectId=52")
    )
    results = _target().erase(_records("51", "52"))

    assert [json.loads(c.request.body) for c in responses.calls] == [
        {"objectId": "51"},
        {"objectId": "52"},
    ]
    assert responses.calls[0].request.headers["Authorization"] == "Bearer pat-na1-x"
    assert [(r.external_id, r.ok) for r in results] == [("51", True), ("52", True)]


@responses.activate
def test_a_refused_contact_is_said_why_and_the_next_is_still_deleted() -> None:
    responses.post(GDPR_DELETE, status=400, json=_error("VALIDATION_ERROR", "Invalid input"))
    responses.post(GDPR_DELETE, status=204)
    refused, done = _target().erase(_records("51", "53"))
    assert refused.error_class is Outcome.PERMANENT and "Invalid input" in str(refused.error)
    assert done.ok


@responses.activate
def test_an_id_that_is_no_number_is_refused_without_a_call() -> None:
    [result] = _target().erase(_records("a@b.com"))
    assert result.error_class is Outcome.PERMANENT
    assert not responses.calls


@responses.activate
def test_the_daily_limit_leaves_this_contact_and_the_rest_for_later() -> None:
    responses.post(GDPR_DELETE, status=204)
    responses.post(
        GDPR_DELETE,
        status=429,
        json={**_error("RATE_LIMITS", "You have reached your daily limit."), "policyName": "DAILY"},
    )
    results = _target().erase(_records("51", "52", "53"))
    assert [r.ok for r in results] == [True, False, False]
    assert {r.error_class for r in results[1:]} == {Outcome.RETRYABLE}
    assert len(responses.calls) == 2


@responses.activate
def test_a_missing_scope_stops_the_target() -> None:
    responses.post(
        GDPR_DELETE,
        status=403,
        json=_error(
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call.",
        ),
    )
    with pytest.raises(FatalError, match=r"crm\.objects\.contacts\.write"):
        _target().erase(_records("51"))


@pytest.fixture
def portal() -> Iterator[HubSpotSandbox]:
    sandbox = HubSpotSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def test_against_the_sandbox_the_contact_is_gone_and_asking_again_is_fine(
    portal: HubSpotSandbox,
) -> None:
    target = HubSpotTarget(HubSpotConfig(name="marketing", base_url=portal.url, token=portal.token))
    keep, forget = (
        Lead(lead_key=c * 32, offer_key="c.o", email=f"{c}@x.io", last_name="Doe", stage=Stage.MQL)
        for c in "ab"
    )
    pushed = target.upsert([keep, forget])
    first = target.erase(_records(str(pushed[1].external_id)))
    again = target.erase(_records(str(pushed[1].external_id)))
    assert first[0].ok and again[0].ok
    assert set(portal.records) == {"a@x.io"}
    assert portal.blocklist == set()  # by id: nothing put on the portal's blocklist
