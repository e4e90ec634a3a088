"""`config check --online` against recorded metadata responses of each CRM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import responses
import yaml
from typer.testing import CliRunner

from leadbridge.core.cli import app

runner = CliRunner()
SF = "https://acme.my.salesforce.com"
HS = "https://api.hubapi.com"
ENV = "https://contoso.crm.dynamics.com"
AUTHORITY = "https://login.sovereign.example/t"


def _check(tmp_path: Path, target: dict[str, Any], *flags: str) -> Any:
    path = tmp_path / "lb.yaml"
    path.write_text(
        yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'lb.db'}", "targets": [target]}),
        encoding="utf-8",
    )
    return runner.invoke(app, ["--config", str(path), "config", "check", "--online", *flags])


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
    result = _check(
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
    assert result.exit_code == 2, result.output
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
    result = _check(tmp_path, target)
    assert result.exit_code == 2
    own = ("leadbridge_lead_key", "leadbridge_stage", "leadbridge_offers")
    for name in (*own, "leadbridge_marketplace_dnc"):
        assert result.output.count(f"the contact property {name} does not exist") == 1

    responses.get(url, json=_hs_properties(*standard))
    responses.post(url, json={"name": "created"}, status=201)
    created = _check(tmp_path, target, "--create-missing")
    assert created.exit_code == 0, created.output
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
    columns = {
        "firstname": 50,
        "lastname": 50,
        "subject": 300,
        "emailaddress1": 100,
        "telephone1": 50,
        "companyname": 100,
        "jobtitle": 100,
        "address1_country": 80,
        "description": 2000,
        "donotemail": None,
        "donotbulkemail": None,
        "donotphone": None,
        "lb_leadkey": 32,
        "lb_leadstage": None,
    }
    responses.get(
        f"{ENV}/api/data/v9.2/EntityDefinitions(LogicalName='lead')",
        json={
            "LogicalName": "lead",
            "Attributes": [{"LogicalName": n, "MaxLength": m} for n, m in columns.items()],
            "Keys": [
                {
                    "LogicalName": "lb_leadkey_key",
                    "KeyAttributes": ["lb_leadkey"],
                    "EntityKeyIndexStatus": "Pending",
                }
            ],
        },
    )
    result = _check(
        tmp_path,
        {
            "name": "d365",
            "kind": "dataverse",
            "environment_url": ENV,
            "authority": AUTHORITY,
            "client_id": "c",
            "client_secret": "s",
        },
    )
    assert result.exit_code == 2
    assert "the alternate key lb_leadkey_key index is Pending" in result.output
    assert "ReactivateEntityKey" in result.output
    assert result.output.count("schema problem") == 1  # only that one
