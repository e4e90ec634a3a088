"""Salesforce contract tests: request and response shapes from the REST API docs.

Shapes: sObject Collections create (developer.salesforce.com/docs/platform/api-rest/guide/
resources-composite-sobjects-collections-create.html: a SaveResult per record) and upsert
(…/resources-composite-sobjects-collections-upsert.html: an UpsertResult with `created`),
Query (resources_query.htm), error bodies (errorcodes.htm). Unless a test is about the
country picklists, the target pins `country_field: name`, so no describe is read first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
import yaml
from responses import matchers

from leadbridge.connectors.salesforce.target import SalesforceConfig, SalesforceTarget
from leadbridge.core.connector import FatalError, Link, RetryableError
from leadbridge.core.domain.models import Lead, Stage
from tests.clihelp import EXIT_USAGE, run_cli

INSTANCE = "https://acme.my.salesforce.com"
TOKEN_URL = f"{INSTANCE}/services/oauth2/token"
UPSERT = f"{INSTANCE}/services/data/v62.0/composite/sobjects/Lead/LeadBridge_Key__c"
CREATE = f"{INSTANCE}/services/data/v62.0/composite/sobjects"
QUERY = f"{INSTANCE}/services/data/v62.0/query"
# A duplicate insert, as Salesforce words it (github.com/sfb2csolutionarchitects/
# b2c-crm-sync/issues/98): the unique External ID index refuses the second record.
DUPLICATE = {
    "id": None,
    "success": False,
    "errors": [
        {
            "statusCode": "DUPLICATE_VALUE",
            "message": "duplicate value found: LeadBridge_Key__c duplicates value on record "
            "with id: 00Q000000000001",
            "fields": [],
        }
    ],
}


def _target(**extra: object) -> SalesforceTarget:
    config: dict[str, object] = {"country_field": "name"} | extra
    return SalesforceTarget(
        SalesforceConfig(
            name="sales", instance_url=INSTANCE, client_id="cid", client_secret="cs", **config
        )
    )


def _linked(*leads: Lead) -> dict[str, Link]:
    """leadbridge has pushed these leads to this target before."""
    return {lead.lead_key: Link("00Q", "mql", "active") for lead in leads}


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
    results = target.upsert(leads, _linked(*leads))
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
def test_new_leads_cost_one_insert_per_200_and_no_read() -> None:
    """Leads this target has no link for are inserted (collections create, SaveResults
    without `created`): one call, no SOQL first; an insert can't overwrite anything."""
    _token()
    responses.post(
        CREATE,
        json=[
            {"id": "00Q1", "success": True, "errors": []},
            {"id": "00Q2", "success": True, "errors": []},
        ],
        match=[matchers.header_matcher({"Sforce-Auto-Assign": "TRUE"})],
    )
    results = _target().upsert([_lead("a"), _lead("b", company="Contoso")], {})
    assert [(r.ok, r.created, r.external_id) for r in results] == [
        (True, True, "00Q1"),
        (True, True, "00Q2"),
    ]
    assert [c.request.method for c in responses.calls] == ["POST", "POST"]  # token, insert
    body = json.loads(responses.calls[1].request.body)
    assert body["allOrNone"] is False
    first, second = body["records"]
    assert first["attributes"] == {"type": "Lead"} and first["LeadBridge_Key__c"] == "a" * 32
    assert first["Company"] == "[not provided]" and first["LeadSource"] == "Web"
    assert second["Company"] == "Contoso" and "Id" not in second


@responses.activate
def test_an_insert_refused_as_a_duplicate_is_read_and_updated_in_the_same_call() -> None:
    """What exists decides, not what leadbridge remembers: a store restored from an old
    backup has no link for `known`; its insert is refused (DUPLICATE_VALUE) and leaves the
    record alone, then it is read and updated under the write policies, without assignment
    rules — while the new lead is created with them."""
    _token()
    known, new = _lead("a", company="Contoso"), _lead("b")
    responses.post(
        CREATE,
        json=[DUPLICATE, {"id": "00Q2", "success": True, "errors": []}],
        match=[matchers.header_matcher({"Sforce-Auto-Assign": "TRUE"})],
    )
    _existing(
        {
            "Id": "00Q1",
            "LeadBridge_Key__c": known.lead_key,
            "IsConverted": False,
            "Company": "Contoso Ltd (key account)",
        }
    )
    responses.patch(
        UPSERT,
        json=[{"id": "00Q1", "success": True, "errors": [], "created": False}],
        match=[matchers.header_matcher({"Sforce-Auto-Assign": "FALSE"})],
    )
    first, second = _target().upsert([known, new], {})
    assert (first.ok, first.created, first.external_id, first.kept) == (
        True,
        False,
        "00Q1",
        ["Company"],
    )
    assert (second.ok, second.created) == (True, True)
    assert [c.request.method for c in responses.calls] == ["POST", "POST", "GET", "PATCH"]
    soql = responses.calls[2].request.params["q"]
    assert soql.endswith(f"WHERE LeadBridge_Key__c IN ('{known.lead_key}')")
    [update] = json.loads(responses.calls[3].request.body)["records"]
    assert "Company" not in update and "LeadSource" not in update  # the person's value stands


@responses.activate
def test_a_duplicate_of_another_unique_field_is_a_dead_letter_not_an_update() -> None:
    _token()
    responses.post(
        CREATE,
        json=[
            {
                "id": None,
                "success": False,
                "errors": [
                    {
                        "statusCode": "DUPLICATE_VALUE",
                        "message": "duplicate value found: Badge__c duplicates value on "
                        "record with id: 00Q9",
                        "fields": [],
                    }
                ],
            }
        ],
    )
    [result] = _target().upsert([_lead("a")], {})
    assert result.error_class == "permanent" and "Badge__c" in (result.error or "")
    assert len(responses.calls) == 2  # no read, no update


@responses.activate
def test_linked_leads_go_without_auto_assignment_new_ones_with_it() -> None:
    _token()
    for flag in ("FALSE", "TRUE"):
        responses.patch(
            UPSERT,
            json=[{"id": "00Q1", "success": True, "errors": []}],
            match=[matchers.header_matcher({"Sforce-Auto-Assign": flag})],
        )
    target = _target()
    known, gone = _lead("a"), _lead("b")
    # Both were pushed before; `gone` was deleted in Salesforce since: created again.
    _existing({"Id": "00Q1", "LeadBridge_Key__c": known.lead_key, "IsConverted": False})
    results = target.upsert([known, gone], _linked(known, gone))
    assert all(r.ok for r in results) and len(responses.calls) == 4


@responses.activate
def test_request_limit_exceeded_pauses_instead_of_spinning() -> None:
    _token()
    responses.post(
        CREATE,
        status=403,
        json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    )
    target = _target()
    with pytest.raises(RetryableError) as err:
        target.upsert([_lead("a")])
    assert err.value.retry_after == 120
    assert len(responses.calls) == 2  # the token, one write: no retry storm


@responses.activate
def test_invalid_session_gets_a_new_token_and_succeeds() -> None:
    _token(2)
    responses.post(
        CREATE,
        status=401,
        json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    )
    responses.post(CREATE, json=[{"id": "00Q1", "success": True, "errors": []}])
    assert _target().upsert([_lead("a")])[0].ok
    assert [c.request.url for c in responses.calls].count(TOKEN_URL) == 2


@responses.activate
def test_a_5xx_storm_is_ridden_out() -> None:
    _token()
    for _ in range(3):
        responses.post(CREATE, status=503)
    responses.post(CREATE, json=[{"id": "00Q1", "success": True, "errors": []}])
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
    """Not a dead letter per lead: every lead would fail the same way, so the target stops."""
    _token()
    responses.post(
        CREATE,
        status=400,
        json=[
            {
                "errorCode": "INVALID_FIELD",
                "message": "No such column 'LeadBridge_Key__c' on sobject of type Lead",
            }
        ],
    )
    with pytest.raises(FatalError, match="External ID"):
        _target().upsert([_lead("a")])


@responses.activate
def test_a_missing_external_id_field_is_fatal_on_the_update_path_too() -> None:
    _token()
    _existing()
    responses.patch(
        UPSERT,
        status=404,
        json=[{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
    )
    lead = _lead("a")
    with pytest.raises(FatalError, match="External ID"):
        _target().upsert([lead], _linked(lead))


def test_config_names_the_missing_credentials_of_the_flow() -> None:
    with pytest.raises(ValueError, match="needs username, private_key"):
        SalesforceConfig(
            name="s", kind="salesforce", instance_url=INSTANCE, auth="jwt", client_id="c"
        )


def test_the_password_flow_is_refused_with_its_replacements() -> None:
    """SOAP login() is retiring (vendor-facts §2.2): one error, on `auth`, naming the flows
    to use and how to set them up — not one per leftover key."""
    with pytest.raises(ValueError) as err:
        SalesforceConfig(
            name="s",
            kind="salesforce",
            instance_url=INSTANCE,
            auth="password",
            username="int@acme.com",
            password="pw",
            security_token="st",
        )
    [error] = err.value.errors()  # type: ignore[attr-defined]
    assert error["loc"] == ("auth",)
    assert "login()" in error["msg"] and "client_credentials" in error["msg"]
    assert "Client Credentials Flow" in error["msg"] and "auth: jwt" in error["msg"]


@responses.activate
def test_jwt_bearer_logs_in_through_simple_salesforce(monkeypatch: pytest.MonkeyPatch) -> None:
    from leadbridge.connectors.salesforce import target as module

    logins: list[dict[str, object]] = []

    def fake_login(**kwargs: object) -> tuple[str, str]:
        logins.append(kwargs)
        return "SESSION", "acme.my.salesforce.com"

    monkeypatch.setattr(module, "SalesforceLogin", fake_login)
    responses.post(
        CREATE,
        json=[{"id": "00Q1", "success": True, "errors": []}],
        match=[matchers.header_matcher({"Authorization": "Bearer SESSION"})],
    )
    target = SalesforceTarget(
        SalesforceConfig(
            name="sales",
            instance_url=INSTANCE,
            auth="jwt",
            client_id="cid",
            username="int@acme.com",
            private_key="-----BEGIN PRIVATE KEY-----",
            domain="test",
            country_field="name",
        )
    )
    assert target.upsert([_lead("a")])[0].ok
    assert logins == [
        {
            "username": "int@acme.com",
            "consumer_key": "cid",
            "privatekey": "-----BEGIN PRIVATE KEY-----",
            "domain": "test",
        }
    ]
    assert "password" not in logins[0]  # no SOAP login(), ever


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
    [result] = _target().upsert([lead], _linked(lead))
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
    first, second = _target().upsert([converted, vanished], _linked(converted, vanished))
    assert (first.error_class, first.external_id) == ("converted", "00Q1")
    assert second.error_class == "retryable"  # the next attempt reads again and creates it
    assert len(json.loads(responses.calls[2].request.body)["records"]) == 1


def test_config_check_refuses_a_password_flow_config_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "lb.yaml"
    target = {
        "name": "sales",
        "kind": "salesforce",
        "instance_url": INSTANCE,
        "auth": "password",
        "username": "int@acme.com",
        "password": "pw",
        "security_token": "st",
    }
    store = f"sqlite:///{tmp_path / 'lb.db'}"
    path.write_text(yaml.safe_dump({"store": store, "targets": [target]}), encoding="utf-8")
    result = run_cli(["--config", path, "config", "check"], expect=EXIT_USAGE)
    assert "configuration has 1 problem(s)" in result.output  # one, not one per leftover key
    assert "targets[sales].auth" in result.output and "login()" in result.output
    assert "auth: client_credentials" in result.output and "auth: jwt" in result.output
