"""People and companies end to end: one person with leads for two offers and a colleague at
the same company with a third, through ingest and delivery into the Dataverse and webhook
sandboxes: one contact per person, one account for the company, three leads, all linked —
and `leads show` names the contact, account and lead in each CRM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from leadbridge.connectors.dataverse.sandbox import DataverseSandbox
from leadbridge.connectors.webhook.sandbox import WebhookSandbox
from leadbridge.core.connector.sandboxes import target_entry
from leadbridge.core.domain.identity import company_key, person_key
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import record_links
from tests.clihelp import EXIT_ATTENTION, run_cli
from tests.e2e.helpers import write_config


def _payload(first: str, last: str, email: str, company: str, offer: str) -> dict[str, Any]:
    """A marketplace HTTPS payload (reference/sample-leads.json, `https_payload`)."""
    return {
        "UserDetails": {
            "FirstName": first,
            "LastName": last,
            "Email": email,
            "Phone": "",
            "Country": "US",
            "Company": company,
            "Title": "CTO",
        },
        "LeadSource": "AppSource (SPZA)",
        "ActionCode": "PLT",
        "OfferTitle": offer,
        "Description": "",
    }


@pytest.fixture
def crms() -> Iterator[tuple[DataverseSandbox, WebhookSandbox]]:
    with DataverseSandbox() as d365, WebhookSandbox() as hook:
        yield d365, hook


def test_two_offers_one_person_and_a_colleague_make_two_contacts_one_account_three_leads(
    tmp_path: Path, crms: tuple[DataverseSandbox, WebhookSandbox]
) -> None:
    d365, hook = crms
    leads_file = tmp_path / "leads.jsonl"
    leads_file.write_text(
        "\n".join(
            json.dumps(p)
            for p in (
                _payload("Ann", "Lee", "ann@contoso.com", "Contoso Ltd", "Contoso Analytics"),
                _payload("Ann", "Lee", "ann@contoso.com", "Contoso Ltd", "Contoso Backup"),
                _payload("Bob", "Ray", "bob@contoso.com", "CONTOSO LTD.", "Contoso Analytics"),
            )
        ),
        encoding="utf-8",
    )
    config = write_config(
        tmp_path,
        tmp_path / "lb.db",
        [{"name": "file", "kind": "leads_file", "path": str(leads_file)}],
        [target_entry("dataverse", d365), target_entry("webhook", hook)],
    )
    run_cli(["--config", config, "ingest"])
    run_cli(["--config", config, "deliver"])

    ann, bob = person_key("ann@contoso.com"), person_key("bob@contoso.com")
    assert set(d365.contacts) == {ann, bob}
    assert list(d365.accounts) == [company_key("Contoso", "x@contoso.com")]
    account = next(iter(d365.accounts.values()))
    assert account["name"] in ("Contoso Ltd", "CONTOSO LTD.")
    assert len(d365.records) == 3
    contact_ids = {
        d365.contacts[ann]["contactid"]: "ann@contoso.com",
        d365.contacts[bob]["contactid"]: "bob@contoso.com",
    }
    by_person = sorted(
        contact_ids[lead["_parentcontactid_value"]] for lead in d365.records.values()
    )
    assert by_person == ["ann@contoso.com", "ann@contoso.com", "bob@contoso.com"]
    assert {lead["_parentaccountid_value"] for lead in d365.records.values()} == {
        account["accountid"]
    }
    assert all(c["_parentcustomerid_value"] == account["accountid"] for c in d365.contacts.values())

    # The webhook carries the same person and company keys.
    sent = list(hook.records.values())
    assert {lead["person"]["key"] for lead in sent} == {ann, bob}
    assert {lead["organization"]["key"] for lead in sent} == {
        company_key("Contoso", "x@contoso.com")
    }

    # leadbridge made the contacts and the account: erasure may delete them (and only them).
    # The CRM says so on the push that made each one (the others found it there).
    with Store(f"sqlite:///{tmp_path / 'lb.db'}").begin() as conn:
        rows = conn.execute(select(record_links.c.external_id, record_links.c.created_at)).all()
    made = {ref for ref, created_at in rows if created_at is not None}
    assert len(rows) == 6 and made == {ref for ref, _ in rows} and len(made) == 3

    shown = json.loads(
        run_cli(["--config", config, "leads", "show", "ann@contoso.com", "--format", "json"]).output
    )
    d365_links = [link for story in shown for link in story["links"] if link["target"] == "d365"]
    assert len(d365_links) == 2
    for link in d365_links:
        assert link["contact"].endswith(f"contacts({d365.contacts[ann]['contactid']})")
        assert link["account"].endswith(f"accounts({account['accountid']})")
        assert "/leads(" in link["external_id"]


def test_an_environment_without_the_contact_key_stops_the_target_and_loses_nothing(
    tmp_path: Path, crms: tuple[DataverseSandbox, WebhookSandbox]
) -> None:
    """An upgrade that keeps `model: contacts_and_leads` (the default) before an admin made
    the contact key: Dataverse refuses the key, the target stops with the fix, nothing is
    dead-lettered, and once the key exists the same leads land."""
    d365, _ = crms
    d365.people_key_status["contact"] = None
    leads_file = tmp_path / "leads.jsonl"
    payload = _payload("Ann", "Lee", "ann@contoso.com", "Contoso Ltd", "Contoso Analytics")
    leads_file.write_text(json.dumps(payload), encoding="utf-8")
    config = write_config(
        tmp_path,
        tmp_path / "lb.db",
        [{"name": "file", "kind": "leads_file", "path": str(leads_file)}],
        [target_entry("dataverse", d365)],
    )
    run_cli(["--config", config, "ingest"])
    stopped = run_cli(["--config", config, "deliver"], expect=EXIT_ATTENTION)
    assert "STOPPED" in stopped.output and "set `model: leads`" in stopped.output
    assert d365.records == {} and d365.accounts == {}  # the change set was rolled back
    assert json.loads(run_cli(["--config", config, "dlq", "list", "--format", "json"]).output) == []

    d365.people_key_status["contact"] = "Active"
    run_cli(["--config", config, "deliver"])
    assert len(d365.records) == 1 and len(d365.contacts) == 1
