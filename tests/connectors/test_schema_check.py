"""`config check --online` against recorded metadata responses of each CRM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import responses
import yaml

from tests.clihelp import EXIT_USAGE, run_cli

SF = "https://acme.my.salesforce.com"
HS = "https://api.hubapi.com"
ENV = "https://contoso.crm.dynamics.com"
AUTHORITY = "https://login.sovereign.example/t"


def _check_online(tmp_path: Path, target: dict[str, Any]) -> list[str | Path]:
    """Write a config with this one target; the `config check --online` command line for it."""
    path = tmp_path / "lb.yaml"
    path.write_text(
        yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'lb.db'}", "targets": [target]}),
        encoding="utf-8",
    )
    return ["--config", path, "config", "check", "--online"]


def _sf_field(name: str, kind: str = "string", length: int = 0, **extra: Any) -> dict:
    return {
        "name": name,
        "type": kind,
        "length": length,
        "externalId": False,
        "unique": False,
        "restrictedPicklist": False,
        "picklistValues": [],
        **extra,
    }


@responses.activate
def test_salesforce_describe(tmp_path: Path) -> None:
    responses.post(f"{SF}/services/oauth2/token", json={"access_token": "t", "instance_url": SF})
    picklist = [{"value": v, "active": True} for v in ("Web", "Partner")]
    responses.get(
        f"{SF}/services/data/v62.0/sobjects/Lead/describe",
        json={
            "fields": [
                _sf_field("FirstName", length=40),
                _sf_field("LastName", length=80),
                _sf_field("Email", "email", 80),
                _sf_field("Phone", "phone", 40),
                _sf_field("Company", length=255),
                _sf_field("Title", length=80),  # customised: 80
                _sf_field("Country", length=80),
                _sf_field("Description", "textarea", 32000),
                _sf_field(
                    "LeadSource", "picklist", restrictedPicklist=True, picklistValues=picklist
                ),
                _sf_field("HasOptedOutOfEmail", "boolean"),
                _sf_field("DoNotCall", "boolean"),
                _sf_field("LeadBridge_Key__c", length=32),  # exists, but not an External ID
                _sf_field(
                    "Lead_Stage__c",
                    "picklist",
                    restrictedPicklist=True,
                    picklistValues=[{"value": v, "active": True} for v in ("MQL", "SQL")],
                ),
            ]
        },
    )
    check = _check_online(
        tmp_path,
        {
            "name": "sales",
            "kind": "salesforce",
            "instance_url": SF,
            "client_id": "c",
            "client_secret": "s",
            "fields": {"LeadSource": "=AppSource", "Campaign_Code__c": "attribution.mktcmpid"},
        },
    )
    result = run_cli(check, expect=EXIT_USAGE)
    out = result.output
    assert (
        "targets[sales].fields.LeadSource: the restricted picklist LeadSource refuses AppSource"
        in out
        and "Partner, Web" in out
    )
    assert "Campaign_Code__c does not exist" in out
    assert "Title holds 80 characters; leadbridge would send up to 128" in out
    assert "truncate: 80" in out
    assert "LeadBridge_Key__c is not a unique External ID" in out
    assert "Lead_Stage__c refuses Customer, Disqualified, Nurture, Opportunity, Subscriber" in out


def _hs_properties(*names: str) -> dict:
    results = [{"name": n, "type": "string", "fieldType": "text"} for n in names]
    results.append(
        {
            "name": "lifecyclestage",
            "type": "enumeration",
            "options": [
                {"value": v}
                for v in (
                    "subscriber",
                    "lead",
                    "marketingqualifiedlead",
                    "salesqualifiedlead",
                    "opportunity",
                    "customer",
                )
            ],
        }
    )
    return {"results": results}


@responses.activate
def test_hubspot_properties_and_create_missing(tmp_path: Path) -> None:
    standard = (
        "email",
        "firstname",
        "lastname",
        "phone",
        "company",
        "jobtitle",
        "country",
        "message",
    )
    url = f"{HS}/crm/v3/properties/contacts"
    responses.get(url, json=_hs_properties(*standard))
    target = {"name": "marketing", "kind": "hubspot", "token": "pat"}
    check = _check_online(tmp_path, target)
    result = run_cli(check, expect=EXIT_USAGE)
    own = ("leadbridge_lead_key", "leadbridge_stage", "leadbridge_offers")
    for name in (*own, "leadbridge_marketplace_dnc"):
        assert result.output.count(f"the contact property {name} does not exist") == 1

    responses.get(url, json=_hs_properties(*standard))
    responses.post(url, json={"name": "created"}, status=201)
    created = run_cli([*check, "--create-missing"])
    assert "created the contact property leadbridge_lead_key" in created.output
    bodies = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    assert [b["name"] for b in bodies] == [
        "leadbridge_lead_key",
        "leadbridge_stage",
        "leadbridge_offers",
        "leadbridge_marketplace_dnc",
    ]
    assert all(b["type"] == "string" and b["fieldType"] == "text" for b in bodies[:3])
    assert (bodies[3]["type"], bodies[3]["fieldType"]) == ("bool", "booleancheckbox")


@responses.activate
def test_dataverse_entity_definition_and_key_index(tmp_path: Path) -> None:
    responses.get(
        f"{AUTHORITY}/v2.0/.well-known/openid-configuration",
        json={
            "issuer": f"{AUTHORITY}/v2.0",
            "token_endpoint": f"{AUTHORITY}/oauth2/v2.0/token",
            "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
        },
    )
    responses.post(
        f"{AUTHORITY}/oauth2/v2.0/token",
        json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600},
    )
    columns = {  # name: (AttributeType, MaxLength)
        "firstname": ("String", 50),
        "lastname": ("String", 50),
        "subject": ("String", 300),
        "emailaddress1": ("String", 100),
        "telephone1": ("String", 50),
        "companyname": ("String", 100),
        "jobtitle": ("String", 100),
        "address1_country": ("String", 80),
        "description": ("Memo", 2000),
        "donotemail": ("Boolean", None),
        "donotbulkemail": ("Boolean", None),
        "donotphone": ("Boolean", None),
        "lb_marketplacednc": ("Boolean", None),
        "lb_leadkey": ("String", 32),
        "lb_leadstage": ("Picklist", None),
    }
    # Shapes: learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    # (expanded Attributes carry AttributeMetadata's common properties; MaxLength comes from
    # the collection cast to StringAttributeMetadata / MemoAttributeMetadata).
    definition = f"{ENV}/api/data/v9.2/EntityDefinitions(LogicalName='lead')"
    responses.get(
        definition,
        json={
            "LogicalName": "lead",
            "Attributes": [{"LogicalName": n, "AttributeType": t} for n, (t, _) in columns.items()],
            "Keys": [
                {
                    "LogicalName": "lb_leadkey_key",
                    "KeyAttributes": ["lb_leadkey"],
                    "EntityKeyIndexStatus": "Pending",
                }
            ],
        },
    )
    for cast, kind in (("StringAttributeMetadata", "String"), ("MemoAttributeMetadata", "Memo")):
        responses.get(
            f"{definition}/Attributes/Microsoft.Dynamics.CRM.{cast}",
            json={
                "value": [
                    {"LogicalName": n, "MaxLength": m} for n, (t, m) in columns.items() if t == kind
                ]
            },
        )
    check = _check_online(
        tmp_path,
        {
            "name": "d365",
            "kind": "dataverse",
            "environment_url": ENV,
            "authority": AUTHORITY,
            "client_id": "c",
            "client_secret": "s",
            # The lead table's own definition is under test here; contact's and account's
            # keys are checked in tests/connectors/dataverse/test_people.py.
            "model": "leads",
        },
    )
    result = run_cli(check, expect=EXIT_USAGE)
    assert "the alternate key lb_leadkey_key index is Pending" in result.output
    assert "ReactivateEntityKey" in result.output
    assert "d365: 1 schema problem(s)" in result.output  # only that one
