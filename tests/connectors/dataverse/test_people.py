"""Dataverse people and companies: a contact per person, an account per company, each lead
bound to both, in one `$batch` of change sets with Content-ID references.

Request and response shapes are the documented ones: change sets and `$n` references from
learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api
("Change sets", "Reference URIs in request body"); a failed change set answers with one
application/http error response (OData 4.0 Part 1 §11.7.4); upsert by alternate key from
use-upsert-insert-update-record.md; `@odata.bind` by alternate key from
use-alternate-key-reference-record.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import yaml

from leadbridge.connectors.dataverse import batch
from leadbridge.connectors.dataverse.sandbox import DataverseSandbox
from leadbridge.connectors.dataverse.target import DataverseConfig, DataverseTarget
from leadbridge.core.connector.sandboxes import target_entry
from leadbridge.core.domain.identity import company_key, person_key
from leadbridge.core.domain.models import Lead, Stage
from tests.clihelp import EXIT_USAGE, run_cli

ENV = "https://contoso.crm.dynamics.com"
API = f"{ENV}/api/data/v9.2"
AUTHORITY = "https://login.sovereign.example/tenant-1"
TOKEN = f"{AUTHORITY}/oauth2/v2.0/token"
BATCH = f"{API}/$batch"

ANN = "ann+offers@contoso.com"  # plus-addressed: not usable in an alternate key itself
ANN_KEY = person_key(ANN)
CONTOSO = company_key("Contoso Ltd", ANN)


def _target(**config: Any) -> DataverseTarget:
    return DataverseTarget(
        DataverseConfig(
            name="d365",
            environment_url=ENV,
            authority=AUTHORITY,
            client_id="app",
            client_secret="secret",
            **config,
        )
    )


def _lead(key: str, email: str = ANN, **fields: Any) -> Lead:
    values: dict[str, Any] = {
        "lead_key": key * 32,
        "offer_key": "c.o",
        "offer_title": "Contoso CRM",
        "email": email,
        "first_name": "Ann",
        "last_name": "Lee",
        "company": "Contoso Ltd",
        "first_action": "PLT",
        "stage": Stage.MQL,
    }
    return Lead(**(values | fields))


def _authority() -> None:
    responses.get(
        f"{AUTHORITY}/v2.0/.well-known/openid-configuration",
        json={
            "issuer": f"{AUTHORITY}/v2.0",
            "token_endpoint": TOKEN,
            "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
        },
    )
    responses.post(TOKEN, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})


def _answer(*items: batch.Part | batch.ChangeSet) -> None:
    content_type, body = batch.response(list(items))
    responses.post(BATCH, body=body, content_type=content_type)


def _rows(entity_set: str, *rows: dict[str, Any]) -> batch.Part:
    """A GET part's answer: the collection, `value` holding the rows (doc's batch example)."""
    return batch.Part(
        status=200,
        body={
            "@odata.context": f"{API}/$metadata#{entity_set}",
            "value": [{"@odata.etag": 'W/"1"', **r} for r in rows],
        },
    )


def _done(content_id: str, entity_set: str, guid: str, status: int = 204) -> batch.Part:
    """One request of a change set that succeeded: its Content-ID and OData-EntityId."""
    return batch.Part(
        status=status,
        content_id=content_id,
        headers={"OData-EntityId": f"{API}/{entity_set}({guid})"},
    )


def _sent(call: int) -> list[Any]:
    request = responses.calls[call].request
    return batch.parse(request.headers["Content-Type"], request.body, requests_side=True)


@responses.activate
def test_one_change_set_per_lead_account_contact_lead_bound_by_content_id() -> None:
    _authority()
    _answer(_rows("leads"), _rows("contacts"), _rows("accounts"))
    _answer(
        batch.ChangeSet(
            [
                _done("1", "accounts", "a0", status=200),  # the account was there
                _done("2", "contacts", "c0", status=201),  # the contact is new
                _done("3", "leads", "l0", status=201),
            ]
        ),
        # The second lead's change set failed: one answer for all of it.
        batch.Part(
            status=400,
            body={"error": {"code": "0x80044331", "message": "A validation error occurred."}},
        ),
    )
    results = _target().upsert([_lead("a"), _lead("b", email="bob@contoso.com")])

    assert results[0].ok and results[0].created is True
    assert results[0].related == {
        "account": f"{API}/accounts(a0)",
        "contact": f"{API}/contacts(c0)",
    }
    assert results[0].related_created == ["contact"]  # erasure may delete only this one
    assert (results[1].ok, results[1].error_class) == (False, "permanent")
    assert "0x80044331" in results[1].error

    reads = _sent(-2)  # one $batch: leads, contacts and accounts by key
    assert [p.url.split("?")[0] for p in reads] == [
        f"{API}/leads",
        f"{API}/contacts",
        f"{API}/accounts",
    ]
    assert "_parentcontactid_value" in reads[0].url and "_parentcustomerid_value" in reads[1].url
    assert ANN_KEY in requests.utils.unquote(reads[1].url)

    first, second = _sent(-1)
    assert isinstance(first, batch.ChangeSet) and isinstance(second, batch.ChangeSet)
    account, contact, lead = first.parts
    assert (account.method, account.content_id) == ("PATCH", "1")
    assert account.url == f"{API}/accounts(lb_companykey='{CONTOSO}')?$select=lb_companykey"
    assert account.headers["prefer"] == "return=representation"  # 201 created, 200 updated
    assert account.body == {"name": "Contoso Ltd"}
    assert contact.url == f"{API}/contacts(lb_personkey='{ANN_KEY}')?$select=lb_personkey"
    assert "+" not in contact.url  # the key is hex, never the address
    assert contact.content_id == "2"
    assert contact.body["emailaddress1"] == ANN and contact.body["lastname"] == "Lee"
    assert contact.body["parentcustomerid_account@odata.bind"] == "$1"
    assert not any(name.startswith("donot") for name in contact.body)  # never an opt-out as false
    assert lead.url.startswith(f"{API}/leads(lb_leadkey='{'a' * 32}')")
    assert lead.content_id == "3" and lead.headers["prefer"] == "return=representation"
    assert lead.body["parentcontactid@odata.bind"] == "$2"
    assert lead.body["parentaccountid@odata.bind"] == "$1"
    assert lead.body["lb_leadstage"] == 100000002
    # Content-IDs are unique in the whole batch: the second change set goes on from 4.
    assert [p.content_id for p in second.parts] == ["4", "5", "6"]
    assert second.parts[2].body["parentcontactid@odata.bind"] == "$5"
    assert responses.calls[-1].request.headers["Prefer"] == "odata.continue-on-error"


@responses.activate
def test_a_persons_values_and_parents_in_dynamics_are_kept_consent_only_ever_true() -> None:
    _authority()
    _answer(
        _rows(
            "leads",
            {"lb_leadkey": "a" * 32, "_parentcontactid_value": "picked-by-sales"},
        ),
        _rows(
            "contacts",
            {
                "lb_personkey": ANN_KEY,
                "firstname": "Annie",  # a salesperson's edit
                "lastname": "[not provided]",  # leadbridge's placeholder: still empty
                "_parentcustomerid_value": "another-account",
            },
        ),
        _rows("accounts", {"lb_companykey": CONTOSO, "name": "Contoso (EMEA)"}),
    )
    _answer(
        batch.ChangeSet(
            [
                _done("1", "accounts", "a0"),
                _done("2", "contacts", "c0"),
                _done("3", "leads", "l0", 200),
            ]
        )
    )
    [result] = _target().upsert([_lead("a", opted_out=True)])
    assert result.ok and result.created is False
    assert {"account.name", "contact.firstname"} <= set(result.kept)
    account, contact, lead = _sent(-1)[0].parts
    assert account.body == {}  # the account's name is theirs now
    assert "firstname" not in contact.body and contact.body["lastname"] == "Lee"
    assert "parentcustomerid_account@odata.bind" not in contact.body  # a company is set
    assert contact.body["donotemail"] is True and contact.body["donotbulkemail"] is True
    assert "parentcontactid@odata.bind" not in lead.body  # sales re-parented the lead
    assert lead.body["parentaccountid@odata.bind"] == "$1"  # no account yet: bound


@responses.activate
def test_binding_by_alternate_key_and_no_account_for_an_unknown_company() -> None:
    _authority()
    _answer(_rows("leads"), _rows("contacts"))  # no company: no account read
    _answer(batch.ChangeSet([_done("2", "contacts", "c0"), _done("3", "leads", "l0", 201)]))
    [result] = _target(parent_bind="alternate_key").upsert([_lead("a", company=None)])
    assert result.ok and result.related == {"contact": f"{API}/contacts(c0)"}
    assert len(_sent(-2)) == 2
    contact, lead = _sent(-1)[0].parts
    assert contact.body.get("parentcustomerid_account@odata.bind") is None
    assert lead.body["parentcontactid@odata.bind"] == f"/contacts(lb_personkey='{ANN_KEY}')"
    assert "parentaccountid@odata.bind" not in lead.body


# --- the sandbox does what Dataverse does -------------------------------------------------


@pytest.fixture(scope="module")
def d365() -> Iterator[DataverseSandbox]:
    with DataverseSandbox() as sandbox:
        yield sandbox


def _sandbox_target(sandbox: DataverseSandbox, **config: Any) -> DataverseTarget:
    return DataverseTarget(
        DataverseConfig(**DataverseTarget.sandbox_entry(sandbox, "d365"), **config)
    )


def _post(sandbox: DataverseSandbox, items: list[Any]) -> list[Any]:
    target = _sandbox_target(sandbox)
    return target._batch(items)


def test_sandbox_refuses_a_bind_to_a_record_that_does_not_exist(d365: DataverseSandbox) -> None:
    missing = "f" * 32
    lead = batch.Part(
        method="PATCH",
        url=f"{d365.url}/api/data/v9.2/leads(lb_leadkey='{'9' * 32}')",
        body={
            "lastname": "X",
            "parentcontactid@odata.bind": f"/contacts(lb_personkey='{missing}')",
        },
    )
    by_id = batch.Part(
        method="PATCH",
        url=f"{d365.url}/api/data/v9.2/leads(lb_leadkey='{'8' * 32}')",
        body={"parentaccountid@odata.bind": "/accounts(00000000-0000-0000-0000-000000000001)"},
    )
    undeclared = batch.ChangeSet(
        [
            batch.Part(
                method="PATCH",
                url=lead.url,
                body={"parentcontactid@odata.bind": "$7"},
                content_id="1",
            )
        ]
    )
    by_key, by_guid, reference = _post(d365, [lead, by_id, undeclared])
    assert by_key.status == 404 and by_key.body["error"]["code"] == "0x80060891"
    assert by_key.body["error"]["message"] == (
        "A record with the specified key values does not exist in contact entity"
    )
    assert by_guid.status == 404 and by_guid.body["error"]["code"] == "0x80040217"
    assert "Does Not Exist" in by_guid.body["error"]["message"]
    assert reference.status == 400
    assert "Content-ID Reference: '$7' does not exist in the batch context." in str(reference.body)
    assert "9" * 32 not in d365.records and "8" * 32 not in d365.records


def test_sandbox_rolls_a_failed_change_set_back(d365: DataverseSandbox) -> None:
    target = _sandbox_target(d365)
    bad = _lead("c", email="carol@fabrikam.com", company="Fabrikam", notes="SANDBOX_REJECT")
    good = _lead("d", email="dan@fabrikam.com", company="Fabrikam")
    refused, landed = target.upsert([bad, good])
    assert not refused.ok and "0x80040265" in refused.error
    assert landed.ok
    assert person_key("carol@fabrikam.com") not in d365.contacts  # rolled back with its lead
    dan = d365.contacts[person_key("dan@fabrikam.com")]
    account = d365.accounts[company_key("Fabrikam", "dan@fabrikam.com")]
    assert dan["_parentcustomerid_value"] == account["accountid"]
    assert d365.records["d" * 32]["_parentcontactid_value"] == dan["contactid"]


def _check(tmp_path: Path, sandbox: DataverseSandbox) -> list[str | Path]:
    path = tmp_path / "lb.yaml"
    config = {
        "store": f"sqlite:///{tmp_path / 'lb.db'}",
        "targets": [target_entry("dataverse", sandbox)],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return ["--config", path, "config", "check", "--online"]


def test_config_check_online_says_how_to_fix_the_contact_key(tmp_path: Path) -> None:
    with DataverseSandbox() as sandbox:
        sandbox.people_key_status["contact"] = "Pending"
        sandbox.people_key_status["account"] = None
        result = run_cli(_check(tmp_path, sandbox), expect=EXIT_USAGE)
    assert "the alternate key lb_personkey_key on contact is Pending, not Active" in result.output
    assert "no alternate key on account over lb_companykey" in result.output
    assert (
        "define an alternate key on account with the single column lb_companykey" in result.output
    )
    assert "d365: 2 schema problem(s)" in result.output


def test_docs_show_the_contact_and_account_maps_as_the_code_has_them() -> None:
    from leadbridge.connectors.builtin_maps import table_of
    from leadbridge.connectors.dataverse.people import ACCOUNT_FIELDS, CONTACT_FIELDS

    doc = (Path(__file__).resolve().parents[3] / "docs" / "mapping.md").read_text("utf-8")
    assert table_of(CONTACT_FIELDS) in doc and table_of(ACCOUNT_FIELDS) in doc
