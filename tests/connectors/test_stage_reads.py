"""Contract tests for each CRM's change query, with vendor-shaped responses: Salesforce SOQL
paging through nextRecordsUrl, HubSpot's search past the 10,000 cap, Dataverse's expired
delta token and its full resync."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import responses

from leadbridge.connectors.dataverse.target import DataverseConfig, DataverseTarget
from leadbridge.connectors.hubspot import target as hubspot
from leadbridge.connectors.hubspot.target import HubSpotConfig, HubSpotTarget
from leadbridge.connectors.salesforce.target import SalesforceConfig, SalesforceTarget
from leadbridge.core.domain.models import Stage

SF = "https://acme.my.salesforce.com"
KEY = "a" * 32


@responses.activate
def test_salesforce_soql_on_systemmodstamp_follows_next_records_url() -> None:
    responses.post(f"{SF}/services/oauth2/token", json={"access_token": "t", "instance_url": SF})
    responses.get(
        f"{SF}/services/data/v62.0/query",
        json={
            "totalSize": 3,
            "done": False,
            "nextRecordsUrl": "/services/data/v62.0/query/01gX-2000",
            "records": [
                {
                    "Id": "00Q1",
                    "LeadBridge_Key__c": KEY,
                    "Lead_Stage__c": "SQL",
                    "IsConverted": False,
                    "SystemModstamp": "2026-05-01T10:00:00.000+0000",
                },
                {
                    "Id": "00Q2",
                    "LeadBridge_Key__c": "b" * 32,
                    "Lead_Stage__c": "MQL",
                    "IsConverted": True,
                    "ConvertedOpportunityId": "006X",
                    "SystemModstamp": "2026-05-01T10:01:00.000+0000",
                },
            ],
        },
    )
    responses.get(
        f"{SF}/services/data/v62.0/query/01gX-2000",
        json={
            "totalSize": 3,
            "done": True,
            "records": [
                {
                    "Id": "00Q3",
                    "LeadBridge_Key__c": "c" * 32,
                    "Lead_Stage__c": "Not ours",
                    "IsConverted": False,
                    "SystemModstamp": "2026-05-01T10:02:00.000+0000",
                }
            ],
        },
    )
    target = SalesforceTarget(
        SalesforceConfig(name="sales", instance_url=SF, client_id="c", client_secret="s")
    )
    changes, watermark = target.stage_changes("2026-05-01T09:00:00+00:00")
    assert [(c.lead_key[0], c.stage) for c in changes] == [
        ("a", Stage.SQL),
        ("b", Stage.OPPORTUNITY),
    ]
    assert watermark == "2026-05-01T10:02:00+00:00"
    soql = parse_qs(urlsplit(responses.calls[1].request.url).query)["q"][0]
    assert "SystemModstamp >= 2026-05-01T08:55:00+00:00" in soql  # the 5 minute overlap
    assert "ORDER BY SystemModstamp" in soql and "LeadBridge_Key__c != null" in soql


@responses.activate
def test_hubspot_search_restarts_past_the_cap_and_deduplicates(monkeypatch) -> None:
    monkeypatch.setattr(hubspot, "SEARCH_PAGE", 2)
    monkeypatch.setattr(hubspot, "SEARCH_CAP", 4)
    url = "https://api.hubapi.com/crm/v3/objects/contacts/search"

    def contact(i: int, stage: str) -> dict:
        stamp = datetime(2026, 5, 1, 10, i, tzinfo=UTC).isoformat().replace("+00:00", "Z")
        return {
            "id": str(i),
            "properties": {
                "leadbridge_lead_key": f"{i:032x}",
                "lifecyclestage": stage,
                "lastmodifieddate": stamp,
            },
        }

    responses.post(
        url,
        json={
            "results": [contact(1, "lead"), contact(2, "salesqualifiedlead")],
            "paging": {"next": {"after": "2"}},
        },
    )
    responses.post(
        url,
        json={
            "results": [contact(3, "customer"), contact(4, "lead")],
            "paging": {"next": {"after": "4"}},
        },
    )  # the next page is past the cap
    responses.post(url, json={"results": [contact(4, "lead"), contact(5, "opportunity")]})
    target = HubSpotTarget(HubSpotConfig(name="marketing", token="t"))
    changes, watermark = target.stage_changes(None)
    assert sorted(c.external_id for c in changes) == ["1", "2", "3", "4", "5"]
    bodies = [json.loads(c.request.body) for c in responses.calls]
    floors = [b["filterGroups"][0]["filters"][0]["value"] for b in bodies]
    assert floors[0] == floors[1] == "0" and int(floors[2]) > 0  # restarted from the last seen
    assert "after" not in bodies[2]
    assert watermark == str(int(datetime(2026, 5, 1, 10, 5, tzinfo=UTC).timestamp() * 1000))


@responses.activate
def test_dataverse_expired_delta_token_means_a_full_resync() -> None:
    env = "https://contoso.crm.dynamics.com"
    authority = "https://login.sovereign.example/t"
    responses.get(
        f"{authority}/v2.0/.well-known/openid-configuration",
        json={
            "issuer": f"{authority}/v2.0",
            "token_endpoint": f"{authority}/oauth2/v2.0/token",
            "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
        },
    )
    responses.post(
        f"{authority}/oauth2/v2.0/token",
        json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600},
    )
    old_delta = f"{env}/api/data/v9.2/leads?$select=x&$deltatoken=919042!05/01/2026"
    responses.get(
        old_delta,
        status=400,
        json={"error": {"code": "0x80044352", "message": "The change tracking token has expired."}},
    )
    responses.get(
        f"{env}/api/data/v9.2/leads",
        json={
            "value": [
                {
                    "leadid": "g1",
                    "lb_leadkey": KEY,
                    "lb_leadstage": 100000002,
                    "statecode": 1,
                    "modifiedon": "2026-05-01T10:00:00Z",
                },
                {"@odata.context": "…/$deletedEntity", "id": "g2", "reason": "deleted"},
                {
                    "leadid": "g3",
                    "lb_leadkey": "d" * 32,
                    "lb_leadstage": None,
                    "statecode": 2,
                    "modifiedon": "2026-05-01T10:00:01Z",
                },
            ],
            "@odata.deltaLink": f"{env}/api/data/v9.2/leads?$select=x&$deltatoken=920000",
        },
    )
    target = DataverseTarget(
        DataverseConfig(
            name="d365", environment_url=env, authority=authority, client_id="c", client_secret="s"
        )
    )
    changes, watermark = target.stage_changes(old_delta)
    assert [(c.lead_key[0], c.stage) for c in changes] == [
        ("a", Stage.SQL),
        ("d", Stage.DISQUALIFIED),
    ]
    assert watermark.endswith("$deltatoken=920000")
    assert "odata.track-changes" in responses.calls[-1].request.headers["Prefer"]
