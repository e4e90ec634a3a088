"""Salesforce `existing_contact`: a lead whose email is a Contact's joins a Campaign or becomes
a Task on the Contact instead of a second record of the person — found with one SOQL per
batch.

Shapes: Query with parent-to-child subqueries (developer.salesforce.com/docs/atlas.en-us.
soql_sosl.meta/soql_sosl/sforce_api_calls_soql_relationships_query_using.htm: a subquery's
value is null when it has no rows, else a query result with `records`); sObject Collections
create and upsert (resources-composite-sobjects-collections-create.html / -upsert.html);
"DUPLICATE_VALUE: Already a campaign member." (github.com/openstax/tutor-server/pull/1653).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import ValidationError

from leadbridge.connectors.salesforce.sandbox import SalesforceSandbox
from leadbridge.connectors.salesforce.target import SalesforceConfig, SalesforceTarget
from leadbridge.core.connector import Link
from leadbridge.core.domain.models import Lead, Stage

INSTANCE = "https://acme.my.salesforce.com"
API = f"{INSTANCE}/services/data/v62.0"
CREATE = f"{API}/composite/sobjects"
TASKS = f"{API}/composite/sobjects/Task/LeadBridge_Key__c"
LEADS = f"{API}/composite/sobjects/Lead/LeadBridge_Key__c"
QUERY = f"{API}/query"
CONTACT = "003A00000012345AAA"


def _target(**config: Any) -> SalesforceTarget:
    return SalesforceTarget(
        SalesforceConfig(
            name="sales",
            instance_url=INSTANCE,
            client_id="cid",
            client_secret="cs",
            country_field="name",
            **config,
        )
    )


def _lead(key: str, email: str, **fields: Any) -> Lead:
    values: dict[str, Any] = {
        "lead_key": key * 32,
        "offer_key": "c.o",
        "offer_title": "Contoso CRM",
        "email": email,
        "last_name": "Lee",
        "first_action": "PLT",
        "actions": ["PLT"],
        "stage": Stage.MQL,
    }
    return Lead(**(values | fields))


def _token() -> None:
    responses.post(
        f"{INSTANCE}/services/oauth2/token",
        json={"access_token": "tok", "instance_url": INSTANCE, "token_type": "Bearer"},
    )


def _contact(**children: Any) -> dict[str, Any]:
    return {
        "attributes": {
            "type": "Contact",
            "url": f"/services/data/v62.0/sobjects/Contact/{CONTACT}",
        },
        "Id": CONTACT,
        "Email": "Ann@Contoso.com",  # as a person typed it: SOQL's match ignores case
        "OwnerId": "005A0000000OWNER",
        "AccountId": "001A0000000ACCNT",
        "CampaignMembers": children.get("members"),
        "Tasks": children.get("tasks"),
    }


def _soql(call: int) -> str:
    return parse_qs(urlsplit(responses.calls[call].request.url).query)["q"][0]


@responses.activate
def test_task_mode_one_soql_then_one_task_upsert_and_the_stranger_is_a_lead() -> None:
    _token()
    responses.get(QUERY, json={"totalSize": 1, "done": True, "records": [_contact()]})
    responses.patch(
        TASKS, json=[{"id": "00TA0000000TASK1", "success": True, "errors": [], "created": True}]
    )
    responses.post(CREATE, json=[{"id": "00QA000000LEAD01", "success": True, "errors": []}])
    ann = _lead("a", "ann@contoso.com", notes="Please call me")
    bob = _lead("b", "bob@fabrikam.com", company="Fabrikam")
    results = _target(existing_contact="task").upsert([ann, bob])

    assert [r.ok for r in results] == [True, True]
    assert results[0].external_id == "00TA0000000TASK1" and results[0].created is True
    assert results[0].related == {"contact": CONTACT, "account": "001A0000000ACCNT"}
    assert results[1].external_id == "00QA000000LEAD01"  # not a customer: a Lead as before

    soql = _soql(1)
    assert soql.startswith("SELECT Id, Email, OwnerId, AccountId, ")
    assert "(SELECT Id, CampaignId FROM CampaignMembers)" in soql
    assert "(SELECT Id, LeadBridge_Key__c FROM Tasks WHERE LeadBridge_Key__c != null)" in soql
    assert soql.endswith("FROM Contact WHERE Email IN ('ann@contoso.com','bob@fabrikam.com')")
    assert sum(1 for c in responses.calls if c.request.url.startswith(QUERY)) == 1

    [task] = json.loads(responses.calls[2].request.body)["records"]
    assert task["attributes"] == {"type": "Task"} and task["LeadBridge_Key__c"] == "a" * 32
    assert task["WhoId"] == CONTACT and task["OwnerId"] == "005A0000000OWNER"
    assert task["Subject"] == "Marketplace: Contoso CRM (PLT)" and task["Status"] == "Not Started"
    assert "Please call me" in task["Description"]
    [lead] = json.loads(responses.calls[3].request.body)["records"]
    assert lead["Email"] == "bob@fabrikam.com"


@responses.activate
def test_a_task_made_before_keeps_its_owner_and_status_and_a_lead_stays_a_lead() -> None:
    _token()
    tasks = {
        "totalSize": 1,
        "done": True,
        "records": [{"Id": "00TA1", "LeadBridge_Key__c": "a" * 32}],
    }
    responses.get(QUERY, json={"totalSize": 1, "done": True, "records": [_contact(tasks=tasks)]})
    responses.patch(TASKS, json=[{"id": "00TA1", "success": True, "errors": [], "created": False}])
    responses.get(QUERY, json={"totalSize": 0, "done": True, "records": []})  # the Lead read
    responses.patch(LEADS, json=[{"id": "00QB", "success": True, "errors": [], "created": True}])
    ann = _lead("a", "ann@contoso.com")
    pushed_as_lead = _lead("c", "ann@contoso.com", offer_key="c.p")
    links = {pushed_as_lead.lead_key: Link("00QB", "mql", "active")}
    results = _target(existing_contact="task").upsert([ann, pushed_as_lead], links)
    assert [r.ok for r in results] == [True, True] and results[0].created is False
    [task] = json.loads(responses.calls[2].request.body)["records"]
    assert "OwnerId" not in task and "Status" not in task  # a salesperson's choices stand
    # The lead Salesforce holds as a Lead is updated as a Lead, never moved to the Contact.
    assert responses.calls[-1].request.url == LEADS


@responses.activate
def test_campaign_member_mode_joins_the_attributed_campaign_once() -> None:
    _token()
    members = {"totalSize": 1, "done": True, "records": [{"Id": "00vOLD", "CampaignId": "701DEF"}]}
    responses.get(
        QUERY, json={"totalSize": 1, "done": True, "records": [_contact(members=members)]}
    )
    responses.get(
        QUERY, json={"totalSize": 1, "done": True, "records": [{"Id": "701SPR", "Name": "spring"}]}
    )
    responses.post(CREATE, json=[{"id": "00vNEW", "success": True, "errors": []}])
    spring = _lead("a", "ann@contoso.com", attribution={"mktcmpid": "spring"})
    unnamed = _lead("b", "ann@contoso.com", offer_key="c.p")  # → the default, joined already
    results = _target(existing_contact="campaign_member", default_campaign_id="701DEF").upsert(
        [spring, unnamed]
    )
    assert [(r.ok, r.external_id, r.created) for r in results] == [
        (True, "00vNEW", True),
        (True, "00vOLD", False),
    ]
    assert _soql(2) == "SELECT Id, Name FROM Campaign WHERE Name IN ('spring')"
    body = json.loads(responses.calls[3].request.body)
    assert body == {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "CampaignMember"}, "CampaignId": "701SPR", "ContactId": CONTACT}
        ],
    }


@responses.activate
def test_an_existing_membership_refused_as_a_duplicate_is_a_success() -> None:
    _token()
    responses.get(QUERY, json={"totalSize": 1, "done": True, "records": [_contact()]})
    responses.post(
        CREATE,
        json=[
            {
                "id": None,
                "success": False,
                "errors": [
                    {
                        "statusCode": "DUPLICATE_VALUE",
                        "message": "Already a campaign member.",
                        "fields": [],
                    }
                ],
            }
        ],
    )
    [result] = _target(existing_contact="campaign_member", default_campaign_id="701DEF").upsert(
        [_lead("a", "ann@contoso.com")]
    )
    assert result.ok and result.related["contact"] == CONTACT


def test_campaign_member_mode_needs_a_default_campaign() -> None:
    with pytest.raises(ValidationError, match="default_campaign_id"):
        _target(existing_contact="campaign_member")


def test_sandbox_keeps_contacts_campaigns_members_and_tasks() -> None:
    with SalesforceSandbox() as sandbox:
        contact = requests.post(
            f"{sandbox.url}/_sandbox/contact",
            json={"Email": "ann@contoso.com", "LastName": "Lee", "OwnerId": "005X"},
            timeout=5,
        ).json()
        campaign = requests.post(
            f"{sandbox.url}/_sandbox/campaign", json={"Name": "Default"}, timeout=5
        ).json()
        entry = SalesforceTarget.sandbox_entry(sandbox, "sales")
        for mode in ("task", "campaign_member"):
            target = SalesforceTarget(
                SalesforceConfig(**entry, existing_contact=mode, default_campaign_id=campaign["Id"])
            )
            leads = [_lead("a", "ann@contoso.com"), _lead("b", "new@fabrikam.com")]
            assert all(r.ok for r in target.upsert(leads))
            assert all(r.ok for r in target.upsert(leads))  # again: nothing doubles
        assert [t["WhoId"] for t in sandbox.tasks.values()] == [contact["Id"]]
        assert sandbox.tasks["a" * 32]["OwnerId"] == "005X"
        assert [(m["CampaignId"], m["ContactId"]) for m in sandbox.members.values()] == [
            (campaign["Id"], contact["Id"])
        ]
        assert list(sandbox.records) == ["b" * 32]  # only the stranger is a Lead
