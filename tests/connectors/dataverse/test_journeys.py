"""Customer Insights – Journeys consent: an email opt-out becomes an opted-out contact point
consent record, in the same write `$batch`, where CI-J is installed.

Shapes:
- Detection: `GET EntityDefinitions(LogicalName='msdynmkt_contactpointconsent4')` — 200 with
  the definition, or 404 "Resource not found for the segment" (learn.microsoft.com/power-apps/
  developer/data-platform/webapi/query-metadata-web-api; web-api-client-errors).
- The record: `POST msdynmkt_contactpointconsent4s` (entity reference msdynmkt_contactpointconsent4,
  "Messages": Create), 204 with OData-EntityId (webapi/create-entity-web-api); its values
  from Microsoft's consent-record flow guide (MicrosoftDocs/customer-insights, ci-docs/
  journeys/consent-record-creation.md: Reason "No reasons", Source "Internal", Consent Type
  "Purpose") as the table reference numbers them (learn.microsoft.com/dynamics365/developer/
  reference/entities/msdynmkt_contactpointconsent4): contact point type 534120000 Email,
  consent type 534120000 Purpose, value 534120002 Opted Out, logical reason 534119999 No
  reasons, source 534120000 Internal, the purpose bound as `msdynmkt_purposes(<GUID>)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses

from leadbridge.connectors.dataverse import journeys
from leadbridge.connectors.dataverse.sandbox import DataverseSandbox
from leadbridge.connectors.dataverse.target import DataverseConfig, DataverseTarget
from leadbridge.core.connector import RetryableError
from leadbridge.core.domain.models import Lead, Stage

PURPOSE = "1e6a4204-3056-47a6-8350-750fc17c0fdf"
ENV = "https://contoso.crm.dynamics.com"
AUTHORITY = "https://login.sovereign.example/tenant-1"
CONSENT_TABLE = (
    f"{ENV}/api/data/v9.2/EntityDefinitions(LogicalName='msdynmkt_contactpointconsent4')"
)


@pytest.fixture
def box() -> Iterator[DataverseSandbox]:
    with DataverseSandbox() as sandbox:
        sandbox.journeys = True
        yield sandbox


def _target(box: DataverseSandbox, **config: Any) -> DataverseTarget:
    entry = DataverseTarget.sandbox_entry(box, "d365") | {"journeys_purpose_id": PURPOSE}
    return DataverseTarget(DataverseConfig(**(entry | config)))


def _lead(key: str, email: str, **fields: Any) -> Lead:
    base = {
        "lead_key": key * 32,
        "offer_key": f"c.{key}",
        "email": email,
        "last_name": "Opt",
        "company": "Contoso",
        "stage": Stage.LEAD,
    }
    return Lead(**(base | fields))


@pytest.mark.parametrize("model", ["contacts_and_leads", "leads"])
def test_an_email_opt_out_is_written_as_one_opted_out_consent_record_per_address(
    box: DataverseSandbox, model: str
) -> None:
    target = _target(box, model=model)
    leads = [
        _lead("a", "ana@contoso.example", opted_out=True, opted_out_of=["email"]),
        _lead("b", "ana@contoso.example", offer_key="c.two", opted_out=True),
        _lead("c", "ben@contoso.example", opted_out=True, opted_out_of=["phone"]),
        _lead("d", "cy@contoso.example"),
    ]
    results = target.upsert(leads)

    assert all(r.ok and not r.dropped for r in results)
    assert [{k: v for k, v in c.items() if not k.endswith("id")} for c in box.consents] == [
        {
            "msdynmkt_contactpointvalue": "ana@contoso.example",
            "msdynmkt_contactpointtype": 534120000,
            "msdynmkt_contactpointconsenttype": 534120000,
            "msdynmkt_value": 534120002,
            "msdynmkt_logicalreason": 534119999,
            "msdynmkt_source": 534120000,
            "msdynmkt_reason": "leadbridge: opted out in another system",
            "_purpose": PURPOSE,
        }
    ]
    # each of Ana's leads says, for its history, which record was written (no address)
    record = box.consents[0]["msdynmkt_contactpointconsent4id"]
    written = f"opted-out contact point consent record {record}"
    assert [getattr(r, "consent", {}) for r in results] == [
        {"journeys_consent": written},
        {"journeys_consent": written},
        {},
        {},
    ]
    again = target.upsert(leads)  # delivered again: the record is there, none is added
    assert len(box.consents) == 1
    assert not any(getattr(r, "consent", {}) for r in again)


def test_without_journeys_installed_nothing_but_the_leads_is_written(
    box: DataverseSandbox,
) -> None:
    box.journeys = False
    target = _target(box)
    [result] = target.upsert([_lead("a", "ana@contoso.example", opted_out=True)])
    assert result.ok and box.consents == []
    assert len(box.records) == 1


def test_a_refused_consent_record_is_recorded_on_the_lead_which_still_lands(
    box: DataverseSandbox,
) -> None:
    target = _target(box)
    target.config.journeys_purpose_id = "not-a-purpose-guid-0000000000000000"  # past validation
    [result] = target.upsert([_lead("a", "ana@contoso.example", opted_out=True)])
    assert result.ok
    # a `consent:` refusal: core's consent sync sends the lead again (core/sync/consentsync)
    assert result.dropped["consent:journeys"].startswith("consent record: 400")
    assert "ana@" not in result.dropped["consent:journeys"]


@pytest.mark.parametrize("model", ["contacts_and_leads", "leads"])
def test_installed_without_a_purpose_the_history_says_so_and_how_to_fix_it(
    box: DataverseSandbox, model: str
) -> None:
    """CI-J is there but `journeys_purpose_id` isn't set: a record without a purpose would
    not be read by journeys, so none is written — and the lead says why, never silently."""
    target = _target(box, model=model, journeys_purpose_id=None)
    leads = [
        _lead("a", "ana@contoso.example", opted_out=True, opted_out_of=["email"]),
        _lead("b", "ben@contoso.example"),
    ]
    opted, other = target.upsert(leads)

    assert opted.ok and other.ok and not other.dropped
    assert box.consents == []
    why = opted.dropped["journeys_consent"]
    assert "installed but no consent purpose is configured" in why
    assert "targets[d365].journeys_purpose_id" in why and "Consent Purposes" in why
    assert not any(key.startswith("consent:") for key in opted.dropped)  # a fix, not a retry


def test_not_installed_and_no_purpose_the_leads_carry_the_opt_out_alone(
    box: DataverseSandbox,
) -> None:
    box.journeys = False
    target = _target(box, journeys_purpose_id=None)
    [result] = target.upsert([_lead("a", "ana@contoso.example", opted_out=True)])
    assert result.ok and not result.dropped and box.consents == []


def _authority() -> None:
    token = f"{AUTHORITY}/oauth2/v2.0/token"
    responses.get(
        f"{AUTHORITY}/v2.0/.well-known/openid-configuration",
        json={
            "issuer": f"{AUTHORITY}/v2.0",
            "token_endpoint": token,
            "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
        },
    )
    responses.post(token, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})


@responses.activate
def test_detection_asks_once_per_target_and_a_404_means_not_installed() -> None:
    _authority()
    responses.get(
        CONSENT_TABLE,
        status=404,
        json={
            "error": {
                "code": "0x8006088a",
                "message": "Resource not found for the segment 'EntityDefinitions'.",
            }
        },
    )
    target = DataverseTarget(
        DataverseConfig(
            name="d365",
            environment_url=ENV,
            authority=AUTHORITY,
            client_id="app",
            client_secret="secret",
            journeys_purpose_id=PURPOSE,
        )
    )
    assert target.journeys_installed() is False
    assert target.journeys_installed() is False
    assert len([c for c in responses.calls if "EntityDefinitions" in c.request.url]) == 1
    assert "?$select=LogicalName" in responses.calls[-1].request.url


def test_config_check_says_whether_journeys_was_found(box: DataverseSandbox) -> None:
    target = _target(box)
    assert target._journeys_problems() == []
    assert any("Journeys found" in note for note in target.schema_notes)
    box.journeys = False
    [problem] = _target(box)._journeys_problems()
    assert "isn't installed" in problem.message


def test_without_a_purpose_a_failed_detection_does_not_hold_up_the_leads(
    box: DataverseSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target not configured for CI-J that can't tell whether it's installed (metadata
    not readable, say) delivers its leads with their flags, and asks again next batch."""
    target = _target(box, journeys_purpose_id=None)

    def cannot_tell() -> bool:
        raise RetryableError("d365: looking for Customer Insights – Journeys HTTP 403")

    monkeypatch.setattr(target, "journeys_installed", cannot_tell)
    [result] = target.upsert([_lead("a", "ana@contoso.example", opted_out=True)])
    assert result.ok and not result.dropped and box.consents == []


def test_the_sandbox_refuses_a_choice_value_the_table_does_not_have(
    box: DataverseSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The choice values are the table reference's: one outside them is Dataverse's range
    error, which the lead's history shows as a refusal to ask again."""
    monkeypatch.setattr(journeys, "NO_REASONS", 1)
    [result] = _target(box).upsert([_lead("a", "ana@contoso.example", opted_out=True)])
    assert result.ok and box.consents == []
    why = result.dropped["consent:journeys"]
    assert "The value 1 of 'msdynmkt_logicalreason'" in why and "outside the valid range" in why


def test_config_check_names_the_missing_purpose_when_journeys_is_installed(
    box: DataverseSandbox,
) -> None:
    """Installed, but no purpose configured: opt-outs would reach the leads' flags only,
    which real-time journeys don't read — `config check` says so, with the fix."""
    [problem] = _target(box, journeys_purpose_id=None)._journeys_problems()
    assert problem.key == "targets[d365].journeys_purpose_id"
    assert "no consent purpose is configured" in problem.message
    assert "GUID" in problem.fix
    box.journeys = False
    assert _target(box, journeys_purpose_id=None)._journeys_problems() == []


@pytest.mark.parametrize("model", ["contacts_and_leads", "leads"])
def test_a_purpose_configured_later_sends_an_opted_out_lead_again(
    box: DataverseSandbox, model: str
) -> None:
    """A lead delivered opted out before CI-J consent was configured is unchanged to the
    delivery's eye unless the purpose is part of what it is hashed on: with it, configuring
    the purpose pushes the lead again and writes its record. The mark is never a column."""
    from leadbridge.core.domain.mapping import payload_hash

    lead = _lead("a", "ana@contoso.example", opted_out=True, opted_out_of=["email"])
    before, after = _target(box, model=model, journeys_purpose_id=None), _target(box, model=model)
    assert payload_hash(before.payload(lead)) != payload_hash(after.payload(lead))
    assert journeys.PURPOSE_MARK not in before.payload(lead)
    calm = _lead("b", "ben@contoso.example")  # not opted out: the same either way
    assert payload_hash(before.payload(calm)) == payload_hash(after.payload(calm))
    [result] = after.upsert([lead])
    assert result.ok and not result.dropped and len(box.consents) == 1
    assert box.records and all(journeys.PURPOSE_MARK not in r for r in box.records.values())
