"""Zoho CRM erasure contract: Delete Records, shapes from Zoho CRM API v8's docs.

Request and answer: zoho.com/crm/developer/docs/api/v8/delete-records.html —
`DELETE {api-domain}/crm/v8/Leads?ids=<id>,<id>&wf_trigger=…`, at most 100 ids a call,
`{"data": [{"code": "SUCCESS", "details": {"id": "…"}, "message": "record deleted",
"status": "success"}]}`; errors in Zoho's object `{"code", "details", "message", "status":
"error"}` (every v8 error section), the throttle 429 TOO_MANY_REQUESTS.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from leadbridge.connectors.zoho.sandbox import ZohoSandbox
from leadbridge.connectors.zoho.target import ZohoConfig, ZohoTarget
from leadbridge.core.connector import Eraser, FatalError, RetryableError, build, sandboxes
from leadbridge.core.domain.models import ErasureRecord, Lead, Outcome, Stage
from leadbridge.core.settings import load_settings

API = "https://www.zohoapis.eu/crm/v8"
TOKEN_URL = "https://accounts.zoho.eu/oauth/v2/token"
LEADS = f"{API}/Leads"
ONE, TWO, THREE = "4150868000000376008", "4150868000000376019", "4150868000000376027"


def _target() -> ZohoTarget:
    return ZohoTarget(
        ZohoConfig(
            name="zoho",
            data_centre="eu",
            client_id="1000.CID",
            client_secret="topsecret",
            refresh_token="1000.refresh",
        )
    )


def _token() -> None:
    """The refresh grant's answer (zoho.com/accounts/protocol/oauth/web-apps/access-token-
    expiry.html)."""
    responses.post(
        TOKEN_URL,
        json={
            "access_token": "1000.tok",
            "api_domain": "https://www.zohoapis.eu",
            "token_type": "Bearer",
            "expires_in": 3600,
        },
    )


def _deleted(record_id: str) -> dict[str, object]:
    return {
        "code": "SUCCESS",
        "details": {"id": record_id},
        "message": "record deleted",
        "status": "success",
    }


def _records(*ids: str) -> list[ErasureRecord]:
    return [ErasureRecord(kind="lead", external_id=i) for i in ids]


def test_the_target_declares_it_can_erase() -> None:
    assert isinstance(_target(), Eraser)


@responses.activate
def test_one_call_deletes_the_leads_without_running_workflow_rules() -> None:
    _token()
    responses.delete(
        LEADS,
        status=207,
        json={
            "data": [
                _deleted(ONE),
                {
                    "code": "INVALID_DATA",
                    "details": {"id": TWO},
                    "message": "the id given seems to be invalid",
                    "status": "error",
                },
                {
                    "code": "RECORD_LOCKED",
                    "details": {"id": THREE},
                    "message": "Record is locked",
                    "status": "error",
                },
            ]
        },
    )
    results = _target().erase(_records(ONE, TWO, THREE))

    [call] = [c for c in responses.calls if c.request.method == "DELETE"]
    assert parse_qs(urlsplit(str(call.request.url)).query) == {
        "ids": [f"{ONE},{TWO},{THREE}"],
        "wf_trigger": ["false"],
    }
    assert call.request.headers["Authorization"] == "Zoho-oauthtoken 1000.tok"
    assert [r.ok for r in results] == [True, True, False]  # an unknown id is gone already
    assert results[2].error_class is Outcome.RETRYABLE


@responses.activate
def test_more_than_100_go_in_calls_of_100_and_a_non_id_is_refused_unasked() -> None:
    _token()
    ids = [str(4150868000000000000 + i) for i in range(130)]
    for chunk in (ids[:100], ids[100:]):
        responses.delete(LEADS, json={"data": [_deleted(i) for i in chunk]})
    results = _target().erase([*_records(*ids), ErasureRecord(kind="lead", external_id="x;y")])
    calls = [c for c in responses.calls if c.request.method == "DELETE"]
    assert len(calls) == 2
    assert all(r.ok for r in results[:130])
    assert results[130].error_class is Outcome.PERMANENT


@responses.activate
def test_a_missing_delete_permission_stops_the_target() -> None:
    _token()
    responses.delete(
        LEADS,
        status=403,
        json={
            "code": "NO_PERMISSION",
            "details": {"permissions": ["Crm_Implied_Delete_Leads"]},
            "message": "permission denied",
            "status": "error",
        },
    )
    with pytest.raises(FatalError):
        _target().erase(_records(ONE))


@responses.activate
def test_the_throttle_leaves_the_records_for_later() -> None:
    _token()
    responses.delete(
        LEADS,
        status=429,
        json={
            "code": "TOO_MANY_REQUESTS",
            "details": {},
            "message": "too many requests",
            "status": "error",
        },
    )
    with pytest.raises(RetryableError):
        _target().erase(_records(ONE))


@pytest.fixture
def org() -> Iterator[ZohoSandbox]:
    sandbox = ZohoSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def test_against_the_sandbox_the_lead_is_gone_and_asking_again_is_fine(org: ZohoSandbox) -> None:
    settings = load_settings(None, targets=[sandboxes.target_entry("zoho", org)])
    target = build(settings.target_configs()[0], placeholder="[not provided]")
    keep, forget = (
        Lead(
            lead_key=c * 32,
            offer_key="c.o",
            email=f"{c}@x.io",
            last_name="Doe",
            company="Contoso",
            stage=Stage.MQL,
        )
        for c in "ab"
    )
    pushed = target.upsert([keep, forget])
    records = _records(str(pushed[1].external_id))
    assert target.erase(records)[0].ok and target.erase(records)[0].ok
    assert set(org.records) == {keep.lead_key}
