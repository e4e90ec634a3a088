"""Salesforce erasure contract: sObject Collections DELETE, shapes from the REST API docs.

Request and answers: developer.salesforce.com/docs/platform/api-rest/guide/resources-
composite-sobjects-collections-delete.html — `DELETE /services/data/vXX.X/composite/sobjects?
ids=<id>,<id>&allOrNone=false`, 200 with a DeleteResult per id in the order asked
(`{"id", "success", "errors"}`; a failed one `{"success": false, "errors": [{"statusCode",
"message", "fields"}]}`), 400 for a request that isn't well formed. Error codes: REST API
errorcodes.htm (ENTITY_IS_DELETED, UNABLE_TO_LOCK_ROW, INSUFFICIENT_ACCESS_OR_READONLY,
REQUEST_LIMIT_EXCEEDED).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from leadbridge.connectors.salesforce.sandbox import SalesforceSandbox
from leadbridge.connectors.salesforce.target import SalesforceConfig, SalesforceTarget
from leadbridge.core.connector import Eraser, FatalError, RetryableError
from leadbridge.core.domain.models import ErasureRecord, Lead, Outcome, Stage

INSTANCE = "https://acme.my.salesforce.com"
TOKEN_URL = f"{INSTANCE}/services/oauth2/token"
DELETE = f"{INSTANCE}/services/data/v62.0/composite/sobjects"
LEAD, TASK, GONE, LOCKED, GUARDED = (
    "00Q5e00000AbCdEEAZ",
    "00T5e00000AbCdEEAZ",
    "00Q5e00000GoNeEEAZ",
    "00Q5e00000LoCkEEAZ",
    "00Q5e00000GuArEEAZ",
)


def _target() -> SalesforceTarget:
    return SalesforceTarget(
        SalesforceConfig(
            name="sales",
            instance_url=INSTANCE,
            client_id="cid",
            client_secret="cs",
            country_field="name",
        )
    )


def _token() -> None:
    responses.post(
        TOKEN_URL,
        json={"access_token": "tok", "instance_url": INSTANCE, "token_type": "Bearer"},
    )


def _records(*ids: str) -> list[ErasureRecord]:
    return [ErasureRecord(kind="lead", external_id=i) for i in ids]


def _failed(code: str, message: str) -> dict[str, object]:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": []}]}


def _asked(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(call.request.url)).query)


def test_the_target_declares_it_can_erase() -> None:
    assert isinstance(_target(), Eraser)


@responses.activate
def test_one_call_deletes_a_lead_and_a_task_and_answers_each_in_order() -> None:
    _token()
    responses.delete(
        DELETE,
        json=[
            {"id": LEAD, "success": True, "errors": []},
            {"id": TASK, "success": True, "errors": []},
            _failed("ENTITY_IS_DELETED", "entity is deleted"),
            _failed("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"),
            _failed(
                "INSUFFICIENT_ACCESS_OR_READONLY",
                "insufficient access rights on object id",
            ),
        ],
    )
    results = _target().erase(_records(LEAD, TASK, GONE, LOCKED, GUARDED))

    [call] = [c for c in responses.calls if c.request.method == "DELETE"]
    assert _asked(call) == {
        "ids": [f"{LEAD},{TASK},{GONE},{LOCKED},{GUARDED}"],
        "allOrNone": ["false"],
    }
    assert call.request.headers["Authorization"] == "Bearer tok"
    assert [r.external_id for r in results] == [LEAD, TASK, GONE, LOCKED, GUARDED]
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert results[3].error_class is Outcome.RETRYABLE
    assert results[4].error_class is Outcome.PERMANENT
    assert "INSUFFICIENT_ACCESS_OR_READONLY" in str(results[4].error)


@responses.activate
def test_more_than_200_records_go_in_calls_of_200() -> None:
    _token()
    ids = [f"00Q5e{i:010d}AAA" for i in range(250)]
    for size in (200, 50):
        responses.delete(DELETE, json=[{"id": None, "success": True, "errors": []}] * size)
    results = _target().erase(_records(*ids))
    calls = [c for c in responses.calls if c.request.method == "DELETE"]
    assert [len(_asked(c)["ids"][0].split(",")) for c in calls] == [200, 50]
    assert all(r.ok for r in results) and len(results) == 250


@responses.activate
def test_an_id_of_the_wrong_form_is_refused_without_a_call() -> None:
    _token()
    responses.delete(DELETE, json=[{"id": LEAD, "success": True, "errors": []}])
    weird = "00Q'; DROP--"
    results = _target().erase(_records(weird, LEAD))
    assert results[0].ok is False and results[0].error_class is Outcome.PERMANENT
    assert results[1].ok is True
    [call] = [c for c in responses.calls if c.request.method == "DELETE"]
    assert _asked(call)["ids"] == [LEAD]


@responses.activate
def test_a_request_not_well_formed_refuses_each_record_with_the_reason() -> None:
    _token()
    responses.delete(
        DELETE, status=400, json=[{"errorCode": "MALFORMED_QUERY", "message": "bad ids"}]
    )
    results = _target().erase(_records(LEAD))
    assert results[0].error_class is Outcome.PERMANENT
    assert "MALFORMED_QUERY" in str(results[0].error)


@responses.activate
def test_no_delete_permission_stops_the_target() -> None:
    _token()
    responses.delete(
        DELETE,
        status=403,
        json=[{"errorCode": "API_DISABLED_FOR_ORG", "message": "API is not enabled"}],
    )
    with pytest.raises(FatalError, match="Delete"):
        _target().erase(_records(LEAD))


@responses.activate
def test_the_daily_limit_leaves_every_record_for_later() -> None:
    _token()
    responses.delete(
        DELETE,
        status=403,
        json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
    )
    with pytest.raises(RetryableError):
        _target().erase(_records(LEAD))


@pytest.fixture
def org() -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def test_against_the_sandbox_a_lead_is_deleted_once_and_gone_after(org: SalesforceSandbox) -> None:
    target = SalesforceTarget(
        SalesforceConfig(
            name="sales",
            instance_url=org.url,
            client_id=org.client_id,
            client_secret=org.client_secret,
            country_field="name",
        )
    )
    keep, forget = (
        Lead(lead_key=c * 32, offer_key="c.o", email=f"{c}@x.io", last_name="Doe", stage=Stage.MQL)
        for c in "ab"
    )
    pushed = target.upsert([keep, forget])
    gone = str(pushed[1].external_id)

    first = target.erase(_records(gone))
    again = target.erase(_records(gone, "00Q000000000999999"))

    assert first[0].ok and all(r.ok for r in again)
    assert set(org.records) == {keep.lead_key}
