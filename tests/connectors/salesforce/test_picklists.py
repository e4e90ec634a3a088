"""State and Country/Territory Picklists, against recorded Salesforce answers.

Shapes: Lead's describe (developer.salesforce.com/docs/platform/api-rest/guide/
dome-sobject-describe.html; field attributes from DescribeFieldResult), collections create
(…/resources-composite-sobjects-collections-create.html), and the picklist's refusal as a
Lead over REST answers it (github.com/verbb/formie/issues/963).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from leadbridge.connectors.salesforce.target import SalesforceConfig, SalesforceTarget
from leadbridge.core.connector import FatalError, Link
from leadbridge.core.domain.models import Lead, Stage

INSTANCE = "https://acme.my.salesforce.com"
DESCRIBE = f"{INSTANCE}/services/data/v62.0/sobjects/Lead/describe"
CREATE = f"{INSTANCE}/services/data/v62.0/composite/sobjects"
UPSERT = f"{CREATE}/Lead/LeadBridge_Key__c"
QUERY = f"{INSTANCE}/services/data/v62.0/query"
COUNTRY_REFUSED = {
    "statusCode": "FIELD_INTEGRITY_EXCEPTION",
    "message": "There's a problem with this country, even though it may appear correct. "
    "Please select a country/territory from the list of valid countries.: Country",
    "fields": ["Country"],
}
CODE_REFUSED = {
    "statusCode": "FIELD_INTEGRITY_EXCEPTION",
    "message": "The CountryCode field contains BO, which isn't an available country/territory.",
    "fields": ["CountryCode"],
}


def _field(name: str, kind: str = "string", length: int = 80, **extra: Any) -> dict[str, Any]:
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


def _describe(picklists: bool) -> None:
    """Lead's describe: CountryCode (a restricted picklist of ISO codes) is there only when
    the org has State and Country/Territory Picklists."""
    fields = [_field("Country"), _field("LastName"), _field("Company", length=255)]
    if picklists:
        codes = [{"value": c, "label": c, "active": True} for c in ("BO", "DE", "US")]
        fields.append(
            _field("CountryCode", "picklist", 10, restrictedPicklist=True, picklistValues=codes)
        )
    responses.get(DESCRIBE, json={"name": "Lead", "fields": fields})


def _target(**extra: object) -> SalesforceTarget:
    return SalesforceTarget(
        SalesforceConfig(
            name="sales", instance_url=INSTANCE, client_id="cid", client_secret="cs", **extra
        )
    )


def _lead(key: str, country: str | None = "BO") -> Lead:
    return Lead(
        lead_key=key * 32,
        offer_key="c.o",
        email=f"{key}@x.io",
        last_name="Doe",
        company="Contoso",
        country=country,
        stage=Stage.MQL,
    )


def _created(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i, "success": True, "errors": []} for i in ids]


def _sent(call: int) -> list[dict[str, Any]]:
    return json.loads(responses.calls[call].request.body)["records"]


@pytest.fixture(autouse=True)
def token() -> None:
    responses.post(
        f"{INSTANCE}/services/oauth2/token",
        json={"access_token": "t", "instance_url": INSTANCE, "token_type": "Bearer"},
    )


@responses.activate
def test_a_picklist_org_gets_the_iso_code_and_no_country_text() -> None:
    _describe(picklists=True)
    responses.post(CREATE, json=_created("00Q1"))
    target = _target()
    assert target.upsert([_lead("a")])[0].ok
    [record] = _sent(2)
    assert record["CountryCode"] == "BO" and "Country" not in record
    assert target.country_mode == "code"


@responses.activate
def test_a_text_org_gets_the_iso_english_short_name() -> None:
    _describe(picklists=False)
    responses.post(CREATE, json=_created("00Q1"))
    target = _target()
    target.upsert([_lead("a")])
    [record] = _sent(2)
    assert record["Country"] == "Bolivia, Plurinational State of" and "CountryCode" not in record


@responses.activate
def test_the_describe_is_read_once_per_target() -> None:
    _describe(picklists=True)
    responses.post(CREATE, json=_created("00Q1"))
    responses.post(CREATE, json=_created("00Q2"))
    target = _target()
    target.upsert([_lead("a")])
    target.upsert([_lead("b")])
    assert [c.request.url for c in responses.calls].count(DESCRIBE) == 1


@responses.activate
@pytest.mark.parametrize(("pinned", "sent"), [("code", "CountryCode"), ("name", "Country")])
def test_a_pinned_country_field_skips_the_describe(pinned: str, sent: str) -> None:
    responses.post(CREATE, json=_created("00Q1"))
    _target(country_field=pinned).upsert([_lead("a")])
    assert DESCRIBE not in [c.request.url for c in responses.calls]
    [record] = _sent(1)
    assert sent in record and ({"Country", "CountryCode"} - {sent}).isdisjoint(record)


@responses.activate
def test_a_lead_with_no_iso_country_sends_no_code() -> None:
    """A country normalisation couldn't place is kept as typed: never made into a code."""
    responses.post(CREATE, json=_created("00Q1", "00Q2"))
    _target(country_field="code").upsert([_lead("a", "Atlantis"), _lead("b", None)])
    assert all("CountryCode" not in r and "Country" not in r for r in _sent(1))


@responses.activate
def test_a_refused_country_is_sent_again_at_once_without_it_and_the_result_says_so() -> None:
    """The org's picklist refuses the code (an admin made it unavailable): the record goes
    again in one more call without its country, lands, and `kept` tells the lead's history.
    A refusal of something else in the same batch is classified as usual."""
    _describe(picklists=True)
    responses.post(
        CREATE,
        json=[
            {"id": None, "success": False, "errors": [CODE_REFUSED]},
            {"id": "00Q2", "success": True, "errors": []},
            {
                "id": None,
                "success": False,
                "errors": [
                    {"statusCode": "STRING_TOO_LONG", "message": "Title", "fields": ["Title"]}
                ],
            },
        ],
    )
    responses.post(CREATE, json=_created("00Q1"))
    first, second, third = _target().upsert([_lead("a"), _lead("b", "DE"), _lead("c", "DE")])
    assert (first.ok, first.created, first.external_id) == (True, True, "00Q1")
    assert first.dropped == {"CountryCode": "refused by the org's country picklist"}
    assert second.ok and not second.dropped
    assert third.error_class == "permanent"
    [again] = _sent(3)  # only the refused record, and without its country
    assert again["LeadBridge_Key__c"] == "a" * 32 and "CountryCode" not in again
    assert again["Company"] == "Contoso"


@responses.activate
def test_a_refused_country_text_on_an_update_is_dropped_too() -> None:
    """country_field: name pinned in an org whose integration value for BO was edited."""
    lead = _lead("a")
    responses.get(
        QUERY,
        json={
            "totalSize": 1,
            "done": True,
            "records": [
                {
                    "attributes": {"type": "Lead", "url": "/services/data/v62.0/sobjects/Lead/1"},
                    "Id": "00Q1",
                    "LeadBridge_Key__c": lead.lead_key,
                    "IsConverted": False,
                    "Country": None,
                }
            ],
        },
    )
    responses.patch(UPSERT, json=[{"id": "00Q1", "success": False, "errors": [COUNTRY_REFUSED]}])
    responses.patch(UPSERT, json=[{"id": "00Q1", "success": True, "errors": [], "created": False}])
    [result] = _target(country_field="name").upsert(
        [lead], {lead.lead_key: Link("00Q1", "mql", "active")}
    )
    assert result.ok and result.created is False
    assert result.dropped == {"Country": "refused by the org's country picklist"}
    assert "Country" in _sent(2)[0] and "Country" not in _sent(3)[0]


@responses.activate
def test_a_record_refused_again_without_its_country_is_not_sent_a_third_time() -> None:
    responses.post(CREATE, json=[{"id": None, "success": False, "errors": [CODE_REFUSED]}])
    responses.post(CREATE, json=[{"id": None, "success": False, "errors": [CODE_REFUSED]}])
    [result] = _target(country_field="code").upsert([_lead("a")])
    assert result.error_class == "permanent"
    assert len(responses.calls) == 3  # the token, the insert, one retry without the country


@responses.activate
def test_country_code_pinned_in_an_org_without_picklists_stops_the_target() -> None:
    """Every lead would be refused the same way: configuration, not a dead letter each."""
    responses.post(
        CREATE,
        status=400,
        json=[
            {
                "errorCode": "INVALID_FIELD",
                "message": "No such column 'CountryCode' on sobject of type Lead",
            }
        ],
    )
    with pytest.raises(FatalError, match="country_field: auto or name"):
        _target(country_field="code").upsert([_lead("a")])


@responses.activate
def test_an_existing_record_keeps_the_country_code_a_salesperson_chose() -> None:
    """CountryCode is a person field (if_empty): read with the record, never replaced."""
    _describe(picklists=True)
    lead = _lead("a")
    responses.get(
        QUERY,
        json={
            "totalSize": 1,
            "done": True,
            "records": [
                {
                    "attributes": {"type": "Lead", "url": "/services/data/v62.0/sobjects/Lead/1"},
                    "Id": "00Q1",
                    "LeadBridge_Key__c": lead.lead_key,
                    "IsConverted": False,
                    "CountryCode": "PE",
                    "Company": "Contoso",
                    "LastName": "Doe",
                }
            ],
        },
    )
    responses.patch(UPSERT, json=[{"id": "00Q1", "success": True, "errors": [], "created": False}])
    [result] = _target().upsert([lead], {lead.lead_key: Link("00Q1", "mql", "active")})
    assert result.kept == ["CountryCode"]
    assert "CountryCode" in responses.calls[2].request.params["q"]
    assert "CountryCode" not in _sent(3)[0]


@responses.activate
def test_a_describe_the_org_does_not_have_stops_the_target_naming_the_api_version() -> None:
    """REST errorcodes.htm: 404 NOT_FOUND. Not the External ID's fault: the version or URL."""
    responses.get(
        DESCRIBE,
        status=404,
        json=[{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
    )
    with pytest.raises(FatalError, match=r"api_version \(62\.0\)"):
        _target().upsert([_lead("a")])
