"""Salesforce contract tests: request and response shapes from the REST API docs."""

from __future__ import annotations

import json

import pytest
import responses
from responses import matchers

from leadbridge.connectors.base import FatalError, RetryableError
from leadbridge.connectors.salesforce.target import SalesforceConfig, SalesforceTarget
from leadbridge.core.models import Lead, Stage

INSTANCE = "https://acme.my.salesforce.com"
TOKEN_URL = f"{INSTANCE}/services/oauth2/token"
UPSERT = f"{INSTANCE}/services/data/v62.0/composite/sobjects/Lead/LeadBridge_Key__c"
QUERY = f"{INSTANCE}/services/data/v62.0/query"


def _target(**extra: object) -> SalesforceTarget:
    return SalesforceTarget(
        SalesforceConfig(
            name="sales", instance_url=INSTANCE, client_id="cid", client_secret="cs", **extra
        )
    )


def _lead(key: str, **fields: object) -> Lead:
    return Lead(
        **(
            {
                "lead_key": key * 32,
                "offer_key": "c.o",
                "email": f"{key}@x.io",
                "last_name": "Doe",
                "stage": Stage.MQL,
            }
            | fields
        )
    )


def _token(count: int = 1) -> None:
    for i in range(count):
        responses.post(
            TOKEN_URL,
            json={"access_token": f"tok{i}", "instance_url": INSTANCE, "token_type": "Bearer"},
        )


def _existing(*records: dict[str, object]) -> None:
    """The SOQL read of what exists that starts every batch. Shape: REST API Developer Guide,
    Query (resources_query.htm): totalSize, done, records with `attributes`."""
    responses.get(
        QUERY,
        json={
            "totalSize": len(records),
            "done": True,
            "records": [
                {"attributes": {"type": "Lead", "url": f"/services/data/v62.0/sobjects/Lead/{i}"}}
                | r
                for i, r in enumerate(records)
            ],
        },
    )


@responses.activate
def test_collections_upsert_request_and_per_record_classes() -> None:
    _token()
    _existing()
    responses.patch(
        UPSERT,
        json=[
            {"id": "00Q1", "success": True, "errors": [], "created": True},
            {
                "id": None,
                "success": False,
                "errors": [
                    {
                        "statusCode": "UNABLE_TO_LOCK_ROW",
                        "message": "unable to obtain exclusive access",
                        "fields": [],
                    }
                ],
            },
            {
                "id": None,
                "success": False,
                "errors": [
                    {
                        "statusCode": "REQUIRED_FIELD_MISSING",
                        "message": "Required fields are missing: [Company]",
                        "fields": ["Company"],
                    }
                ],
            },
            {
                "id": "00Q4",
                "success": False,
                "errors": [
                    {
                        "statusCode": "CANNOT_UPDATE_CONVERTED_LEAD",
                        "message": "cannot reference converted lead",
                        "fields": [],
                    }
                ],
            },
        ],
        headers={"Sforce-Limit-Info": "api-usage=18/5000"},
    )
    target = _target()
    leads = [_lead(c) for c in "abcd"]
    results = target.upsert(leads)
    assert [r.ok for r in results] == [True, False, False, False]
    assert [r.error_class for r in results] == [None, "retryable", "permanent", "converted"]
    assert results[0].external_id == "00Q1" and results[0].created is True
    soql = responses.calls[1].request.params["q"]
    assert soql.startswith("SELECT Id, LeadBridge_Key__c, IsConverted, ")
    assert soql.endswith(
        f"FROM Lead WHERE LeadBridge_Key__c IN ('{'a' * 32}','{'b' * 32}',"
        f"'{'c' * 32}','{'d' * 32}')"
    )
    body = json.loads(responses.calls[2].request.body)
    assert body["allOrNone"] is False
    first = body["records"][0]
    assert first["attributes"] == {"type": "Lead"} and first["LeadBridge_Key__c"] == "a" * 32
    assert first["Company"] == "[not provided]" and first["Lead_Stage__c"] == "MQL"
    assert first["LeadSource"] == "Web" and first["LeadBridge_Marketplace_DNC__c"] is False
    assert "HasOptedOutOfEmail" not in first and "DoNotCall" not in first
    assert target.api_usage == {"used": 18, "total": 5000}


@responses.activate
def test_known_records_go_without_auto_assignment_new_ones_with_it() -> None:
    _token()
    for flag in ("FALSE", "TRUE"):
        responses.patch(
            UPSERT,
            json=[{"id": "00Q1", "success": True, "errors": []}],
            match=[matchers.header_matcher({"Sforce-Auto-Assign": flag})],
        )
    target = _target()
    known, new = _lead("a"), _lead("b")
    _existing({"Id": "00Q1", "LeadBridge_Key__c": known.lead_key, "IsConverted": False})
    # What exists decides, not what leadbridge remembers: a store restored from an old
    # backup has no link for `known`, and its update still runs no assignment rule.
    results = target.upsert([known, new], {})
    assert all(r.ok for r in results) and len(responses.calls) == 4


@responses.activate
def test_request_limit_exceeded_pauses_instead_of_spinning() -> None:
    _token()
    _existing()
    responses.patch(
        UPSERT,
        status=403,
        json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    )
    target = _target()
    with pytest.raises(RetryableError) as err:
        target.upsert([_lead("a")])
    assert err.value.retry_after == 120
    assert len(responses.calls) == 3  # the token, the read, one write: no retry storm


@responses.activate
def test_invalid_session_gets_a_new_token_and_succeeds() -> None:
    _token(2)
    _existing()
    responses.patch(
        UPSERT,
        status=401,
        json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    )
    responses.patch(UPSERT, json=[{"id": "00Q1", "success": True, "errors": []}])
    assert _target().upsert([_lead("a")])[0].ok
    assert [c.request.url for c in responses.calls].count(TOKEN_URL) == 2


@responses.activate
def test_a_5xx_storm_is_ridden_out() -> None:
    _token()
    _existing()
    for _ in range(3):
        responses.patch(UPSERT, status=503)
    responses.patch(UPSERT, json=[{"id": "00Q1", "success": True, "errors": []}])
    assert _target().upsert([_lead("a")])[0].ok


@responses.activate
def test_rejected_client_credentials_are_fatal() -> None:
    responses.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_client", "error_description": "invalid client credentials"},
    )
    with pytest.raises(FatalError, match="invalid_client"):
        _target().upsert([_lead("a")])


@responses.activate
def test_a_missing_external_id_field_is_fatal() -> None:
    _token()
    _existing()
    responses.patch(
        UPSERT,
        status=404,
        json=[{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
    )
    with pytest.raises(FatalError, match="External ID"):
        _target().upsert([_lead("a")])


def test_config_names_the_missing_credentials_of_the_flow() -> None:
    with pytest.raises(ValueError, match="needs username, password"):
        SalesforceConfig(name="s", kind="salesforce", instance_url=INSTANCE, auth="password")


@pytest.mark.parametrize(
    ("auth", "extra"),
    [
        ("jwt", {"username": "int@acme.com", "private_key": "-----BEGIN PRIVATE KEY-----"}),
        ("password", {"username": "int@acme.com", "password": "pw", "security_token": "st"}),
    ],
)
@responses.activate
def test_jwt_and_password_flows_log_in_through_simple_salesforce(
    monkeypatch: pytest.MonkeyPatch, auth: str, extra: dict[str, str]
) -> None:
    from leadbridge.connectors.salesforce import target as module

    logins: list[dict[str, object]] = []

    def fake_login(**kwargs: object) -> tuple[str, str]:
        logins.append(kwargs)
        return "SESSION", "acme.my.salesforce.com"

    monkeypatch.setattr(module, "SalesforceLogin", fake_login)
    _existing()
    responses.patch(
        UPSERT,
        json=[{"id": "00Q1", "success": True, "errors": []}],
        match=[matchers.header_matcher({"Authorization": "Bearer SESSION"})],
    )
    target = SalesforceTarget(
        SalesforceConfig(
            name="sales", instance_url=INSTANCE, auth=auth, client_id="cid", domain="test", **extra
        )
    )
    assert target.upsert([_lead("a")])[0].ok
    assert logins[0]["domain"] == "test" and logins[0]["username"] == "int@acme.com"


@responses.activate
def test_an_existing_lead_gets_only_gaps_and_what_leadbridge_owns() -> None:
    """A salesperson retyped the company and last name and the person opted out: the
    update sends neither the placeholders, nor the lead source, nor any opt-out, nor the
    salesperson's fields; it fills the empty title and keeps the stage current."""
    _token()
    lead = _lead("a", company="Contoso", title="CTO", stage=Stage.SQL)
    _existing(
        {
            "Id": "00Q1",
            "LeadBridge_Key__c": lead.lead_key,
            "IsConverted": False,
            "LastName": "Doe-Smith",
            "Company": "Contoso Ltd",
            "Title": None,
            "Email": "a@x.io",
            "HasOptedOutOfEmail": True,
        }
    )
    responses.patch(UPSERT, json=[{"id": "00Q1", "success": True, "errors": [], "created": False}])
    [result] = _target().upsert([lead])
    assert result.ok and result.created is False
    assert sorted(result.kept) == ["Company", "LastName"]
    [record] = json.loads(responses.calls[2].request.body)["records"]
    assert record == {
        "attributes": {"type": "Lead"},
        "LeadBridge_Key__c": lead.lead_key,
        "Title": "CTO",
        "LeadBridge_Marketplace_DNC__c": False,
        "Lead_Stage__c": "SQL",
    }
    assert responses.calls[2].request.headers["Sforce-Auto-Assign"] == "FALSE"


@responses.activate
def test_a_converted_lead_is_not_written_and_a_vanished_one_is_tried_again() -> None:
    _token()
    converted, vanished = _lead("a"), _lead("b")
    _existing(
        {"Id": "00Q1", "LeadBridge_Key__c": converted.lead_key, "IsConverted": True},
        {"Id": "00Q2", "LeadBridge_Key__c": vanished.lead_key, "IsConverted": False},
    )
    responses.patch(  # deleted between the read and the write: the update became a create
        UPSERT,
        json=[
            {
                "id": None,
                "success": False,
                "errors": [
                    {
                        "statusCode": "REQUIRED_FIELD_MISSING",
                        "message": "Required fields are missing: [Company]",
                        "fields": ["Company"],
                    }
                ],
            }
        ],
    )
    first, second = _target().upsert([converted, vanished])
    assert (first.error_class, first.external_id) == ("converted", "00Q1")
    assert second.error_class == "retryable"  # the next attempt reads again and creates it
    assert len(json.loads(responses.calls[2].request.body)["records"]) == 1
