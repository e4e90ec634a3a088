"""The Salesforce sandbox as strict as an org, and leadbridge against it through the delivery
job: country picklists on and off, inserts that meet an existing record, describe for
`config check --online`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from leadbridge.connectors.salesforce.sandbox import SalesforceSandbox
from leadbridge.core.app import views
from leadbridge.core.connector import build, sandboxes
from leadbridge.core.delivery.deliver import DeliveryReport, deliver
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store.repo import Store
from tests.clihelp import EXIT_USAGE, run_cli


class Org:
    """A sandbox org, leadbridge's store and its Salesforce target."""

    def __init__(self, sandbox: SalesforceSandbox, tmp_path: Path, **target: Any) -> None:
        self.sandbox = sandbox
        self.settings: Settings = load_settings(
            None,
            store=f"sqlite:///{tmp_path / 'lb.db'}",
            targets=[sandboxes.target_entry("salesforce", sandbox) | target],
        )
        self.store = Store(self.settings.store)
        self.target = build(self.settings.target_configs()[0], placeholder="[not provided]")
        self.raw = 0

    def add(self, email: str, country: str, action: str = "INS") -> None:
        self.raw += 1
        payload = {
            "LeadSource": f"AppSource (SPZA)-{action}|contoso.crm",
            "UserDetails": {
                "Email": email,
                "LastName": "Doe",
                "Company": "Contoso",
                "Country": country,
            },
        }
        pipeline.land_one(
            self.store, RawLead(source="t", source_key=str(self.raw), kind="https", payload=payload)
        )
        pipeline.process_pending(self.store, self.settings)

    def deliver(self) -> DeliveryReport:
        return deliver(self.target, self.store, self.settings)

    def record(self, email: str) -> dict[str, Any]:
        return next(r for r in self.sandbox.records.values() if r.get("Email") == email)

    def sent(self) -> list[dict[str, Any]]:
        """The records of every write request, as the org received them."""
        return [
            record
            for entry in self.sandbox.request_log
            if entry["path"].endswith(("/composite/sobjects", "/Lead/LeadBridge_Key__c"))
            for record in json.loads(entry["body"])["records"]
        ]

    def last_push(self, email: str) -> dict[str, Any]:
        with self.store.connect() as conn:
            [lead] = views.find_leads(conn, email)
            history = views.lead_story(conn, lead)["history"]
        return [e for e in history if e["kind"] == "push"][-1]["data"]


def _api_calls(box: SalesforceSandbox) -> list[tuple[str, str]]:
    """Each API request (no token requests) as (method, last path segment)."""
    return [(e["method"], e["path"].rsplit("/", 1)[-1]) for e in box.request_log if e["api"]]


@pytest.fixture
def sandbox() -> Iterator[SalesforceSandbox]:
    box = SalesforceSandbox(country_picklists=True).start()
    yield box
    box.stop()


def test_a_picklist_org_gets_country_codes_and_bolivia_lands(
    sandbox: SalesforceSandbox, tmp_path: Path
) -> None:
    org = Org(sandbox, tmp_path)
    org.add("ana@contoso.bo", "Bolivia")
    org.add("kim@contoso.kr", "South Korea")
    org.add("lan@contoso.vn", "Vietnam")
    report = org.deliver()
    assert (report.pushed, report.dead_lettered) == (3, 0)
    assert all("Country" not in r for r in org.sent())
    assert sorted(r["CountryCode"] for r in org.sent()) == ["BO", "KR", "VN"]
    ana = org.record("ana@contoso.bo")  # the org fills the text with its integration value
    assert (ana["CountryCode"], ana["Country"]) == ("BO", "Bolivia, Plurinational State of")
    # One describe (the country picklists), one insert; no read for new leads.
    assert _api_calls(sandbox) == [("GET", "describe"), ("POST", "sobjects")]


def test_a_text_org_gets_the_iso_name(tmp_path: Path) -> None:
    with SalesforceSandbox() as box:
        org = Org(box, tmp_path)
        org.add("ana@contoso.bo", "Bolivia")
        assert org.deliver().pushed == 1
        [sent] = org.sent()
        assert sent["Country"] == "Bolivia, Plurinational State of" and "CountryCode" not in sent


def test_a_country_the_org_refuses_lands_without_it_and_the_history_says_so(
    sandbox: SalesforceSandbox, tmp_path: Path
) -> None:
    requests.post(f"{sandbox.url}/_sandbox/org", json={"disabled_countries": ["BO"]}, timeout=5)
    org = Org(sandbox, tmp_path)
    org.add("ana@contoso.bo", "Bolivia")
    org.add("max@contoso.de", "DE")
    report = org.deliver()
    assert (report.pushed, report.dead_lettered, report.retrying) == (2, 0, 0)
    ana = org.record("ana@contoso.bo")
    assert "CountryCode" not in ana and ana["Company"] == "Contoso"
    assert org.record("max@contoso.de")["CountryCode"] == "DE"
    dropped = org.last_push("ana@contoso.bo")["dropped"]
    assert dropped == {"CountryCode": "refused by the org's country picklist"}
    assert "dropped" not in org.last_push("max@contoso.de")


def test_an_edited_integration_value_refuses_a_pinned_name_and_the_lead_still_lands(
    sandbox: SalesforceSandbox, tmp_path: Path
) -> None:
    requests.post(
        f"{sandbox.url}/_sandbox/org", json={"integration_values": {"US": "USA"}}, timeout=5
    )
    org = Org(sandbox, tmp_path, country_field="name")
    org.add("ada@contoso.com", "US")
    org.add("ana@contoso.bo", "BO")
    assert org.deliver().pushed == 2
    assert "Country" not in org.record("ada@contoso.com")  # "United States" is no value here
    assert org.record("ana@contoso.bo")["CountryCode"] == "BO"  # synced from the name
    assert org.last_push("ada@contoso.com")["dropped"] == {
        "Country": "refused by the org's country picklist"
    }


def test_an_insert_of_an_existing_key_is_refused_and_the_lead_is_updated_instead(
    tmp_path: Path,
) -> None:
    """leadbridge lost its store: the lead has no link, so it is inserted; the org refuses
    the duplicate without touching the record, and the same delivery reads and updates it
    under the write policies."""
    with SalesforceSandbox() as box:
        (tmp_path / "a").mkdir()
        first = Org(box, tmp_path / "a")
        first.add("ada@contoso.com", "DE")
        first.deliver()
        record = first.record("ada@contoso.com")
        record["Company"] = "Contoso Ltd (key account)"  # a salesperson's edit
        (tmp_path / "b").mkdir()
        again = Org(box, tmp_path / "b")  # a new store: no links
        again.add("ada@contoso.com", "DE", action="PLT")
        report = again.deliver()
        assert (report.pushed, report.dead_lettered) == (1, 0)
        assert len(box.records) == 1 and record["_writes"] == 2
        assert record["Company"] == "Contoso Ltd (key account)"
        assert record["Lead_Stage__c"] == "MQL"
        assert _api_calls(box)[-3:] == [
            ("POST", "sobjects"),  # refused: DUPLICATE_VALUE
            ("GET", "query"),
            ("PATCH", "LeadBridge_Key__c"),
        ]


def test_collections_create_answers_a_duplicate_with_duplicate_value() -> None:
    with SalesforceSandbox() as box:
        token = requests.post(
            f"{box.url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": box.client_id,
                "client_secret": box.client_secret,
            },
            timeout=5,
        ).json()["access_token"]
        record = {"attributes": {"type": "Lead"}, "LeadBridge_Key__c": "k" * 32}
        body = {
            "allOrNone": False,
            "records": [
                record | {"LastName": "Doe", "Company": "Contoso"},
                record | {"LastName": "Other", "Company": "Fabrikam"},
            ],
        }
        answer = requests.post(
            f"{box.url}/services/data/v62.0/composite/sobjects",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        ).json()
        assert answer[0] == {"id": "00Q000000000000001", "success": True, "errors": []}
        assert answer[1]["success"] is False and answer[1]["id"] is None
        [error] = answer[1]["errors"]
        assert error["statusCode"] == "DUPLICATE_VALUE"
        assert error["message"] == (
            "duplicate value found: LeadBridge_Key__c duplicates value on record with id: "
            "00Q000000000000001"
        )
        assert box.records["k" * 32]["LastName"] == "Doe"  # left as it was


def _check_online(tmp_path: Path, box: SalesforceSandbox, **target: Any) -> list[str | Path]:
    """Write a config pointing at the sandbox; the `config check --online` command line."""
    path = tmp_path / "lb.yaml"
    entry = sandboxes.target_entry("salesforce", box) | target
    path.write_text(
        yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'lb.db'}", "targets": [entry]}),
        encoding="utf-8",
    )
    return ["--config", path, "config", "check", "--online"]


@pytest.mark.parametrize(
    ("picklists", "mode"),
    [
        (True, "State and Country/Territory Picklists are on: leadbridge sends CountryCode"),
        (False, "no State and Country/Territory Picklists: leadbridge sends Country"),
    ],
)
def test_config_check_online_reads_the_sandbox_describe_and_names_the_country_mode(
    tmp_path: Path, picklists: bool, mode: str
) -> None:
    with SalesforceSandbox(country_picklists=picklists) as box:
        result = run_cli(_check_online(tmp_path, box))
    assert "sales: no schema problem(s)" in result.output
    assert mode in result.output


def test_config_check_online_refuses_country_codes_in_an_org_without_picklists(
    tmp_path: Path,
) -> None:
    with SalesforceSandbox() as box:
        result = run_cli(_check_online(tmp_path, box, country_field="code"), expect=EXIT_USAGE)
    assert "targets[sales].country_field: country_field is code, but the org has no" in (
        result.output
    )


def test_describe_has_the_real_shape_and_the_fields_leadbridge_uses() -> None:
    with SalesforceSandbox(country_picklists=True) as box:
        target = build(
            load_settings(
                None, targets=[sandboxes.target_entry("salesforce", box)]
            ).target_configs()[0]
        )
        fields = target._describe()
    key = fields["LeadBridge_Key__c"]
    assert (key["externalId"], key["unique"], key["custom"], key["length"]) == (
        True,
        True,
        True,
        32,
    )
    stage = fields["Lead_Stage__c"]
    assert stage["restrictedPicklist"] and {"MQL", "SQL"} <= {
        p["value"] for p in stage["picklistValues"]
    }
    assert fields["LeadBridge_Marketplace_DNC__c"]["type"] == "boolean"
    code = fields["CountryCode"]
    bolivia = {
        "value": "BO",
        "label": "Bolivia, Plurinational State of",
        "active": True,
        "defaultValue": False,
        "validFor": None,
    }
    assert code["type"] == "picklist" and bolivia in code["picklistValues"]
    assert fields["StateCode"]["controllerName"] == "CountryCode"
    assert fields["Title"]["length"] == 128 and fields["Email"]["type"] == "email"


def test_the_picklists_switch_on_and_off_through_the_admin_api() -> None:
    with SalesforceSandbox() as box:
        assert "CountryCode" not in box.fields
        on = requests.post(f"{box.url}/_sandbox/org", json={"country_picklists": True}, timeout=5)
        assert on.json()["country_picklists"] is True and "CountryCode" in box.fields
        requests.post(f"{box.url}/_sandbox/org", json={"country_picklists": False}, timeout=5)
        assert "CountryCode" not in box.fields
