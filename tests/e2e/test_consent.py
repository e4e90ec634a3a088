"""An opt-out made in one CRM reaches the others, and a new marketplace action leaves it.

Against the sandboxes, in this process: Ana has leads for two offers in Salesforce,
HubSpot and Dataverse; she unsubscribes in HubSpot; one `sync-stages` later both her
Salesforce leads hold HasOptedOutOfEmail and her Dataverse leads donotemail and
donotbulkemail — and nothing she didn't withdraw (DoNotCall, donotphone) is set. Her next
marketplace click, on a third offer, arrives opted out too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from leadbridge.core.connector import sandboxes
from tests.clihelp import run_cli

pytestmark = pytest.mark.slow
ANA = "ana.opt@contoso.example"
KINDS = ["salesforce", "hubspot", "dataverse"]


@pytest.fixture
def crms() -> Iterator[dict[str, Any]]:
    running = sandboxes.start(KINDS, latency_ms=0)
    yield running
    sandboxes.stop(running)


def _lead(email: str, offer: str, first: str) -> dict[str, Any]:
    return {
        "LeadSource": f"AppSource-INS|{offer}",
        "ActionCode": "INS",
        "UserDetails": {
            "FirstName": first,
            "LastName": "Opt",
            "Email": email,
            "Company": "Contoso",
            "Country": "PT",
        },
    }


def _config(tmp_path: Path, crms: dict[str, Any], leads: list[dict[str, Any]]) -> Path:
    source = tmp_path / "leads.jsonl"
    source.write_text("".join(json.dumps(lead) + "\n" for lead in leads), encoding="utf-8")
    config = tmp_path / "lb.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": f"sqlite:///{tmp_path / 'lb.db'}",
                "log_format": "text",
                "sources": [{"name": "file", "kind": "leads_file", "path": str(source)}],
                "targets": [sandboxes.target_entry(k, crm) for k, crm in crms.items()],
            }
        ),
        encoding="utf-8",
    )
    return config


def _of(crm: Any, email_field: str, email: str) -> list[dict[str, Any]]:
    return [r for r in crm.records.values() if str(r.get(email_field, "")).lower() == email]


def test_an_unsubscribe_in_hubspot_reaches_salesforce_and_dataverse_and_stays(
    tmp_path: Path, crms: dict[str, Any]
) -> None:
    leads = [
        _lead(ANA, "contoso.one", "Ana"),
        _lead(ANA, "contoso.two", "Ana"),
        _lead("ben.opt@contoso.example", "contoso.one", "Ben"),
    ]
    config = _config(tmp_path, crms, leads)
    lb = ["--config", config]
    run_cli([*lb, "ingest"])
    run_cli([*lb, "deliver"])
    sales, dataverse = crms["salesforce"], crms["dataverse"]
    assert len(_of(sales, "Email", ANA)) == 2 and len(_of(dataverse, "emailaddress1", ANA)) == 2

    unsubscribe = {"email": ANA, "properties": {"hs_email_optout": "true"}}
    hubspot = crms["hubspot"]
    requests.post(f"{hubspot.url}/_sandbox/stage", json=unsubscribe, timeout=10).raise_for_status()
    synced = run_cli([*lb, "sync-stages"])
    assert "2 lead(s) of 1 person(s) newly opted out" in " ".join(synced.stdout.split())

    for record in _of(sales, "Email", ANA):
        assert record["HasOptedOutOfEmail"] is True and record.get("DoNotCall") is not True
    for record in _of(dataverse, "emailaddress1", ANA):
        assert record["donotemail"] is True and record["donotbulkemail"] is True
        assert record.get("donotphone") is not True
    assert not any(
        r.get("HasOptedOutOfEmail") for r in _of(sales, "Email", "ben.opt@contoso.example")
    )

    # Her next click, on a third offer: a new lead, opted out from the start, everywhere.
    config = _config(tmp_path, crms, [*leads, _lead(ANA, "contoso.three", "Ana")])
    run_cli([*lb, "ingest"])
    run_cli([*lb, "deliver"])
    assert len(_of(sales, "Email", ANA)) == 3
    assert all(r["HasOptedOutOfEmail"] is True for r in _of(sales, "Email", ANA))
    story = run_cli([*lb, "leads", "show", ANA, "--format", "json"]).stdout
    assert '"consent"' in story and '"withdrawn"' in story


def test_an_opt_out_in_salesforce_becomes_a_hubspot_unsubscribe_and_a_journeys_record(
    tmp_path: Path, crms: dict[str, Any]
) -> None:
    """Issue 17, the writes: Ana opts out of email in Salesforce; one `sync-stages` later
    HubSpot holds her address unsubscribed from the configured subscription type (through
    the subscriptions API) and Dataverse, with Customer Insights – Journeys installed, an
    opted-out contact point consent record for it — once, however often she is delivered."""
    purpose = "1e6a4204-3056-47a6-8350-750fc17c0fdf"
    crms["dataverse"].journeys = True
    config = _config(tmp_path, crms, [_lead(ANA, "contoso.one", "Ana")])
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    for entry in settings["targets"]:
        if entry["kind"] == "hubspot":
            entry |= {"unsubscribe_from": ["1001"], "legal_basis": "LEGITIMATE_INTEREST_OTHER"}
        if entry["kind"] == "dataverse":
            entry["journeys_purpose_id"] = purpose
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    lb = ["--config", config]
    run_cli([*lb, "ingest"])
    run_cli([*lb, "deliver"])
    sales, hubspot, dataverse = crms["salesforce"], crms["hubspot"], crms["dataverse"]
    assert hubspot.unsubscribed == {} and dataverse.consents == []

    [key] = [k for k, r in sales.records.items() if str(r.get("Email")).lower() == ANA]
    opt_out = {"key": key, "field": "HasOptedOutOfEmail", "value": True}
    requests.post(f"{sales.url}/_sandbox/stage", json=opt_out, timeout=10).raise_for_status()
    run_cli([*lb, "sync-stages"])
    run_cli([*lb, "deliver"])  # a second run: nothing more is written anywhere

    assert set(hubspot.unsubscribed[ANA]) == {"1001"}
    assert hubspot.unsubscribed[ANA]["1001"]["legalBasis"] == "LEGITIMATE_INTEREST_OTHER"
    [record] = dataverse.consents
    assert record["msdynmkt_contactpointvalue"] == ANA
    assert (record["msdynmkt_value"], record["_purpose"]) == (534120002, purpose)


def test_a_refused_unsubscribe_is_asked_again_at_the_next_sync_until_hubspot_takes_it(
    tmp_path: Path, crms: dict[str, Any]
) -> None:
    """Issue 17: HubSpot refuses the unsubscribe (a subscription type it doesn't have yet);
    Ana's contact still lands and her history says so. Once the type exists, the next
    `sync-stages` sends her again — though nothing about her changed — and she is out."""
    config = _config(tmp_path, crms, [_lead(ANA, "contoso.one", "Ana")])
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    for entry in settings["targets"]:
        if entry["kind"] == "hubspot":
            entry["unsubscribe_from"] = ["1003"]
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    lb = ["--config", config]
    run_cli([*lb, "ingest"])
    run_cli([*lb, "deliver"])
    sales, hubspot = crms["salesforce"], crms["hubspot"]
    [key] = [k for k, r in sales.records.items() if str(r.get("Email")).lower() == ANA]
    opt_out = {"key": key, "field": "HasOptedOutOfEmail", "value": True}
    requests.post(f"{sales.url}/_sandbox/stage", json=opt_out, timeout=10).raise_for_status()

    run_cli([*lb, "sync-stages"])
    assert hubspot.unsubscribed.get(ANA, {}) == {}
    [refused] = [e for e in _history(lb) if "consent:unsubscribe" in e["data"].get("dropped", {})]
    assert refused["actor"] == "marketing" and refused["data"]["ok"] is True  # she landed
    assert "HTTP 400" in refused["data"]["dropped"]["consent:unsubscribe"]

    hubspot.subscription_types["1003"] = "Product news"  # the portal gets the type
    run_cli([*lb, "sync-stages"])

    assert set(hubspot.unsubscribed[ANA]) == {"1003"}
    [retry] = [e for e in _history(lb) if e["data"].get("retry")]
    assert (retry["kind"], retry["data"]["target"], retry["data"]["attempt"]) == (
        "consent",
        "marketing",
        1,
    )
    pushes = [e for e in _history(lb) if e["kind"] == "push" and e["actor"] == "marketing"]
    assert pushes[-1]["data"]["ok"] and not pushes[-1]["data"].get("dropped")


def _history(lb: list[Any]) -> list[dict[str, Any]]:
    story = json.loads(run_cli([*lb, "leads", "show", ANA, "--format", "json"]).stdout)
    history: list[dict[str, Any]] = story["history"]
    return history
