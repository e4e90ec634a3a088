"""`config check --online` for Zoho CRM: the Leads fields from the Fields Metadata API
(zoho.com/crm/developer/docs/api/v8/field-meta.html: `fields` with api_name, data_type,
length, `unique` — {} when duplicates are allowed — and pick_list_values' actual_value)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import responses
import yaml

from leadbridge.connectors.zoho.target import ZohoConfig, ZohoTarget
from tests.clihelp import EXIT_OK, EXIT_USAGE, run_cli

API = "https://www.zohoapis.com/crm/v8"
TOKEN_URL = "https://accounts.zoho.com/oauth/v2/token"
STAGES = ("Subscriber", "Nurture", "MQL", "SQL", "Opportunity", "Customer", "Disqualified")


def _field(name: str, kind: str = "text", length: int = 255, **extra: Any) -> dict[str, Any]:
    """One field as the Fields Metadata API's sample shows it (the keys leadbridge reads)."""
    values = extra.pop("values", ())
    return {
        "api_name": name,
        "field_label": name.replace("_", " "),
        "data_type": kind,
        "length": length,
        "unique": extra.pop("unique", {}),
        "system_mandatory": False,
        "custom_field": name.startswith("LeadBridge"),
        "pick_list_values": [
            {"display_value": v, "actual_value": v, "sequence_number": i, "type": "used"}
            for i, v in enumerate(values)
        ],
        **extra,
    }


STANDARD = [
    _field("First_Name", length=40),
    _field("Last_Name", length=80, system_mandatory=True),
    _field("Email", "email", 100),
    _field("Phone", "phone", 30),
    _field("Company", length=200),
    _field("Designation", length=100),
    _field("Country", length=100),
    _field("Description", "textarea", 32000),
    _field("Lead_Source", "picklist", 120, values=("-None-", "Online Store", "Web Download")),
    _field("Email_Opt_Out", "boolean", 5),
]
OWN = [
    _field("LeadBridge_Key", length=64, unique={"case_sensitive": False}),
    _field("LeadBridge_Stage", "picklist", 120, values=STAGES),
    _field("LeadBridge_Marketplace_DNC", "boolean", 5),
]


def _metadata(*fields: dict[str, Any]) -> None:
    responses.post(TOKEN_URL, json={"access_token": "t", "expires_in": 3600})
    responses.get(f"{API}/settings/fields", json={"fields": list(fields)})


def _check(tmp_path: Path, **extra: Any) -> list[str | Path]:
    target = {
        "name": "zoho",
        "kind": "zoho",
        "client_id": "c",
        "client_secret": "s",
        "refresh_token": "r",
        **extra,
    }
    path = tmp_path / "lb.yaml"
    path.write_text(
        yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'lb.db'}", "targets": [target]}),
        encoding="utf-8",
    )
    return ["--config", path, "config", "check", "--online"]


@responses.activate
def test_an_org_set_up_as_docs_connectors_says_has_no_problems() -> None:
    _metadata(*STANDARD, *OWN)
    target = ZohoTarget(ZohoConfig(name="z", client_id="c", client_secret="s", refresh_token="r"))
    assert target.schema_problems() == []
    assert responses.calls[1].request.params == {"module": "Leads"}


@responses.activate
def test_config_check_names_each_problem_and_its_fix(tmp_path: Path) -> None:
    fields = [f for f in STANDARD if f["api_name"] != "Designation"]
    fields.append(_field("Designation", length=50))  # shortened by an admin
    _metadata(
        *fields,
        _field("LeadBridge_Key", length=20),  # duplicates allowed, too short
        _field("LeadBridge_Stage", "picklist", values=STAGES[:4]),
        _field("LeadBridge_Marketplace_DNC", "text"),
    )
    result = run_cli(_check(tmp_path, fields={"Lead_Source": "=AppSource"}), expect=EXIT_USAGE)
    out = " ".join(result.output.split())
    assert "LeadBridge_Key allows duplicate values" in out and "Do not allow duplicate" in out
    assert "LeadBridge_Key holds 20 characters; a lead key has 32" in out
    assert "LeadBridge_Stage offers no Customer, Disqualified, Opportunity" in out
    assert "LeadBridge_Marketplace_DNC is a text field" in out and "Checkbox" in out
    assert "Designation holds 50 characters" in out and "truncate: 50" in out
    assert "refuses AppSource" in out  # Lead_Source's pick list lacks the configured value


@responses.activate
def test_missing_custom_fields_are_reported_with_how_to_create_them(tmp_path: Path) -> None:
    _metadata(*STANDARD)
    out = " ".join(run_cli(_check(tmp_path), expect=EXIT_USAGE).output.split())
    assert "Leads has no field LeadBridge_Key" in out and "Single Line" in out
    assert "Leads has no field LeadBridge_Stage" in out and "Pick List" in out
    assert "LeadBridge_Marketplace_DNC does not exist" in out


@responses.activate
def test_a_clean_org_passes_config_check(tmp_path: Path) -> None:
    _metadata(*STANDARD, *OWN)
    run_cli(_check(tmp_path), expect=EXIT_OK)
