"""Dataverse contract tests: msal client credentials, $batch upserts by alternate key."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from leadbridge.connectors.dataverse import batch
from leadbridge.connectors.dataverse.target import DataverseConfig, DataverseTarget
from leadbridge.core.connector import FatalError, PermanentError
from leadbridge.core.domain.models import Lead, Stage

ENV = "https://contoso.crm.dynamics.com"
AUTHORITY = "https://login.sovereign.example/tenant-1"  # not a Microsoft host: no discovery
TOKEN = f"{AUTHORITY}/oauth2/v2.0/token"
BATCH = f"{ENV}/api/data/v9.2/$batch"
DEFINITION = f"{ENV}/api/data/v9.2/EntityDefinitions(LogicalName='lead')"


def _target() -> DataverseTarget:
    return DataverseTarget(
        DataverseConfig(
            name="d365",
            environment_url=ENV,
            authority=AUTHORITY,
            client_id="app",
            client_secret="secret",
            # These tests are about the lead's own request shapes (its upsert, write policy,
            # tokens, schema): the contact-and-account change sets have their own tests in
            # test_people.py.
            model="leads",
        )
    )


def _lead(key: str, **fields: object) -> Lead:
    return Lead(
        **(
            {
                "lead_key": key * 32,
                "offer_key": "c.o",
                "offer_title": "Contoso CRM",
                "email": f"{key}@x.io",
                "first_action": "PLT",
                "stage": Stage.SQL,
            }
            | fields
        )
    )


def _authority(tokens: int = 1, status: int = 200) -> None:
    responses.get(
        f"{AUTHORITY}/v2.0/.well-known/openid-configuration",
        json={
            "issuer": f"{AUTHORITY}/v2.0",
            "token_endpoint": TOKEN,
            "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
        },
    )
    for i in range(tokens):
        body = (
            {"token_type": "Bearer", "expires_in": 3599, "access_token": f"t{i}"}
            if status == 200
            else {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret",
            }
        )
        responses.post(TOKEN, status=status, json=body)


def _batch_response(*parts: batch.Part) -> None:
    content_type, body = batch.response(list(parts))
    responses.post(BATCH, body=body, content_type=content_type)


def _existing(*records: dict[str, object]) -> None:
    """The answer to the read that starts every batch: a `$batch` whose one GET part returns
    the rows found. Shape: execute-batch-operations-using-web-api.md (a GET part answers
    `HTTP/1.1 200 OK` with the JSON collection, `value` holding the rows)."""
    _batch_response(
        batch.Part(
            status=200,
            body={
                "@odata.context": f"{ENV}/api/data/v9.2/$metadata#leads",
                "value": [{"@odata.etag": 'W/"1"', **r} for r in records],
            },
        )
    )


def _created(key: str) -> batch.Part:
    """A PATCH part answered with `Prefer: return=representation`: 201 for a create (200 for
    an update) and the selected columns (use-upsert-insert-update-record.md)."""
    return batch.Part(
        status=201,
        headers={"OData-EntityId": f"{ENV}/api/data/v9.2/leads(guid-{key})"},
        body={"@odata.etag": 'W/"2"', "lb_leadkey": key * 32},
    )


def _parts(call: int = -1) -> list[batch.Part]:
    request = responses.calls[call].request
    return batch.parse(request.headers["Content-Type"], request.body, requests_side=True)


@responses.activate
def test_batch_of_alternate_key_upserts_with_per_part_results() -> None:
    _authority()
    _existing()
    _batch_response(
        _created("a"),
        batch.Part(
            status=400,
            body={"error": {"code": "0x80044331", "message": "A validation error occurred."}},
        ),
    )
    results = _target().upsert([_lead("a"), _lead("b")])
    assert results[0].ok and results[0].external_id.endswith("leads(guid-a)")
    assert results[0].created is True
    assert (results[1].ok, results[1].error_class) == (False, "permanent")
    assert "0x80044331" in results[1].error
    request = responses.calls[-1].request
    assert request.headers["Prefer"] == "odata.continue-on-error"
    assert request.headers["Authorization"] == "Bearer t0"
    parts = _parts()
    assert parts[0].method == "PATCH"
    assert parts[0].url == f"{ENV}/api/data/v9.2/leads(lb_leadkey='{'a' * 32}')?$select=lb_leadkey"
    assert parts[0].headers["prefer"] == "return=representation"
    body = parts[0].body
    assert body["lastname"] == "[not provided]" and body["lb_leadstage"] == 100000003
    assert body["subject"] == "Marketplace: Contoso CRM (PLT)" and "statecode" not in body
    assert body["leadsourcecode"] == 8
    assert not any(name.startswith("donot") for name in body)  # never an opt-out as false


@responses.activate
def test_what_exists_is_read_once_per_batch_and_a_persons_values_are_kept() -> None:
    """The read is one GET inside a `$batch` with the `In` query function and parameter
    aliases (filter-rows.md, "Dataverse query functions"); an existing row gets only what is
    empty in it and what leadbridge owns — no placeholder, no lead source, no opt-out."""
    _authority()
    _existing(
        {
            "lb_leadkey": "a" * 32,
            "lastname": "Doe-Smith",
            "companyname": "Contoso Ltd",
            "jobtitle": None,
            "subject": "Renamed by sales",
            "donotemail": True,
        }
    )
    _batch_response(
        batch.Part(status=200, body={"lb_leadkey": "a" * 32}),
        _created("b"),
    )
    leads = [
        _lead("a", last_name="Doe", company="Contoso", title="CTO", opted_out=False),
        _lead("b", last_name="Roe"),
    ]
    results = _target().upsert(leads)
    assert [r.created for r in results] == [False, True]
    assert sorted(results[0].kept) == ["companyname", "lastname", "subject"]
    [read] = _parts(-2)
    assert read.method == "GET"
    assert "$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)" in read.url
    assert "@p1=%27lb_leadkey%27" in read.url and "a" * 32 in read.url and "b" * 32 in read.url
    update, create = _parts(-1)
    assert update.body == {
        "emailaddress1": "a@x.io",  # empty in the row: filled
        "jobtitle": "CTO",  # empty in the row: filled
        "lb_marketplacednc": False,  # leadbridge's own marker
        "lb_leadstage": 100000003,  # leadbridge's own stage column
    }
    assert create.body["lastname"] == "Roe" and create.body["leadsourcecode"] == 8


@responses.activate
def test_429_waits_the_retry_after_seconds(fake_clock) -> None:
    _authority()
    responses.post(
        BATCH,
        status=429,
        headers={"Retry-After": "5"},
        json={"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit"}},
    )
    _existing()
    _batch_response(_created("a"))
    assert _target().upsert([_lead("a")])[0].ok
    assert fake_clock.sleeps[0] == 5.0  # then only the rate limiter's short spacing
    assert all(wait < 1 for wait in fake_clock.sleeps[1:])


@responses.activate
def test_401_drops_the_cached_token_and_gets_a_new_one() -> None:
    _authority(tokens=2)
    responses.post(BATCH, status=401)
    _existing()
    _batch_response(_created("a"))
    assert _target().upsert([_lead("a")])[0].ok
    assert sum(c.request.url == TOKEN for c in responses.calls) == 2
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer t1"


@responses.activate
def test_refused_client_credentials_are_fatal() -> None:
    _authority(status=401)
    with pytest.raises(FatalError, match="invalid_client"):
        _target().upsert([_lead("a")])


def test_odata_literals_double_quotes_and_keys_are_url_safe() -> None:
    assert batch.odata_string("O'Brien") == "'O''Brien'"
    target = _target()
    assert target._key_url("a'b c") == f"{ENV}/api/data/v9.2/leads(lb_leadkey='a''b%20c')"


def test_batch_codec_round_trip() -> None:
    content_type, body = batch.build(
        [
            batch.Part(method="PATCH", url="u1", body={"x": "ü"}),
            batch.Part(method="PATCH", url="u2", body={"y": 1}),
        ]
    )
    parts = batch.parse(content_type, body, requests_side=True)
    assert [(p.method, p.url, p.body) for p in parts] == [
        ("PATCH", "u1", {"x": "ü"}),
        ("PATCH", "u2", {"y": 1}),
    ]


# --- schema check: the lead table's definition ----------------------------------------------

# The columns the default map, the key and the stage write: (AttributeType, MaxLength).
LEAD_COLUMNS: dict[str, tuple[str, int | None]] = {
    "firstname": ("String", 50),
    "lastname": ("String", 50),
    "subject": ("String", 300),
    "emailaddress1": ("String", 100),
    "telephone1": ("String", 50),
    "companyname": ("String", 100),
    "jobtitle": ("String", 100),
    "address1_country": ("String", 80),
    "description": ("Memo", 2000),
    "leadsourcecode": ("Picklist", None),
    "donotemail": ("Boolean", None),
    "donotbulkemail": ("Boolean", None),
    "donotphone": ("Boolean", None),
    "lb_marketplacednc": ("Boolean", None),
    "lb_leadkey": ("String", 100),
    "lb_leadstage": ("Picklist", None),
}


def _definitions(columns: dict[str, tuple[str, int | None]], key_status: str = "Active") -> None:
    """The lead table's definition in the Web API's documented shapes
    (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api):
    `EntityDefinitions(LogicalName='lead')` expands Attributes with the properties every
    AttributeMetadata shares, and Keys; MaxLength comes only from the Attributes collection
    cast to StringAttributeMetadata or MemoAttributeMetadata. MaxLength asked of the uncast
    collection is the Web API's 400 for an unknown property (https://learn.microsoft.com/
    troubleshoot/power-platform/dataverse/dataverse-web-api-and-sdk/web-api-client-errors)."""

    def entity(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        expand = parse_qs(urlsplit(request.url or "").query).get("$expand", [""])[0]
        if "MaxLength" in expand:
            error = {
                "code": "0x0",
                "message": "Could not find a property named 'MaxLength' on type "
                "'Microsoft.Dynamics.CRM.AttributeMetadata'.",
            }
            return 400, {}, json.dumps({"error": error})
        body = {
            "@odata.context": f"{ENV}/api/data/v9.2/$metadata#EntityDefinitions"
            "(LogicalName,Attributes(LogicalName,AttributeType),"
            "Keys(LogicalName,KeyAttributes,EntityKeyIndexStatus))/$entity",
            "LogicalName": "lead",
            "MetadataId": "608861bc-50a4-4c5f-a02c-21fe1943e2cf",
            "Attributes": [
                {"LogicalName": name, "AttributeType": kind, "MetadataId": f"m-{name}"}
                for name, (kind, _) in columns.items()
            ],
            "Keys": [
                {
                    "LogicalName": "lb_leadkey_key",
                    "KeyAttributes": ["lb_leadkey"],
                    "EntityKeyIndexStatus": key_status,
                    "MetadataId": "k-1",
                }
            ],
        }
        return 200, {}, json.dumps(body)

    responses.add_callback(responses.GET, DEFINITION, callback=entity)
    for cast, kind in (("StringAttributeMetadata", "String"), ("MemoAttributeMetadata", "Memo")):
        responses.get(
            f"{DEFINITION}/Attributes/Microsoft.Dynamics.CRM.{cast}",
            json={
                "@odata.context": f"{ENV}/api/data/v9.2/$metadata#EntityDefinitions('lead')"
                f"/Attributes/Microsoft.Dynamics.CRM.{cast}(LogicalName,MaxLength)",
                "value": [
                    {
                        "@odata.type": f"#Microsoft.Dynamics.CRM.{cast}",
                        "LogicalName": name,
                        "MaxLength": length,
                        "MetadataId": f"m-{name}",
                    }
                    for name, (found, length) in columns.items()
                    if found == kind
                ],
            },
        )
    # Customer Insights – Journeys not installed: its consent table's definition is the Web
    # API's 404 for an unknown entity (the shape tests/connectors/dataverse/test_journeys.py
    # copies from the same page).
    responses.get(
        f"{ENV}/api/data/v9.2/EntityDefinitions(LogicalName='msdynmkt_contactpointconsent4')",
        status=404,
        json={
            "error": {
                "code": "0x8006088a",
                "message": "Resource not found for the segment 'EntityDefinitions'.",
            }
        },
    )


def _metadata_urls() -> list[str]:
    """The lead table's metadata reads (not the look for Customer Insights – Journeys)."""
    return [c.request.url for c in responses.calls if c.request.url.startswith(DEFINITION)]


@responses.activate
def test_schema_check_reads_max_length_from_the_cast_attribute_collections() -> None:
    _authority()
    _definitions(LEAD_COLUMNS)
    assert _target().schema_problems() == []
    entity, strings, memos = _metadata_urls()
    expand = parse_qs(urlsplit(entity).query)["$expand"][0]
    assert "MaxLength" not in expand and "Keys(" in expand
    assert strings == (
        f"{DEFINITION}/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata"
        "?$select=LogicalName,MaxLength"
    )
    assert memos.startswith(f"{DEFINITION}/Attributes/Microsoft.Dynamics.CRM.MemoAttributeMetadata")


@responses.activate
def test_schema_check_names_each_missing_or_wrong_column_with_its_type() -> None:
    columns: dict[str, tuple[str, Any]] = dict(LEAD_COLUMNS)
    del columns["lb_marketplacednc"]  # the DNC marker the default map now writes
    columns["lb_leadkey"] = ("String", 20)  # too short for a 32-character lead key
    columns["lb_leadstage"] = ("String", 100)  # not a choice column
    columns["jobtitle"] = ("String", 60)  # customised shorter than leadbridge cuts at
    _authority()
    _definitions(columns, key_status="Pending")
    problems = {(p.key, p.message): p.fix for p in _target().schema_problems()}
    dnc = problems.pop(
        ("targets[d365].fields.lb_marketplacednc", "lead has no column lb_marketplacednc")
    )
    assert dnc.startswith("create the Yes/No column lb_marketplacednc on lead")
    key = problems.pop(
        ("targets[d365].key_column", "lb_leadkey holds 20 characters; a lead key has 32")
    )
    assert "at least 32" in key
    stage = problems.pop(
        (
            "targets[d365].stage_column",
            "lead column lb_leadstage is of type String; leadbridge writes Picklist",
        )
    )
    assert stage.startswith("recreate the choice column lb_leadstage")
    title = problems.pop(
        (
            "targets[d365].fields.jobtitle",
            "jobtitle holds 60 characters; leadbridge would send up to 100",
        )
    )
    assert "truncate: 60" in title
    index = problems.pop(
        ("targets[d365].key_column", "the alternate key lb_leadkey_key index is Pending")
    )
    assert "ReactivateEntityKey" in index
    assert problems == {}


@responses.activate
def test_a_refused_metadata_read_names_dataverses_own_error() -> None:
    """A 403 privilege error: status per https://learn.microsoft.com/power-apps/developer/
    data-platform/webapi/compose-http-requests-handle-errors, body as Dataverse sends it
    (code 0x80040220, seen in https://community.dynamics.com/forums/thread/details/
    ?threadid=ec47c577-6b11-f111-8406-7c1e520d531e)."""
    _authority()
    responses.get(
        DEFINITION,
        status=403,
        json={
            "error": {
                "code": "0x80040220",
                "message": "Principal user (Id=00000000-0000-0000-0000-000000000001, type=8, "
                "roleCount=1, privilegeCount=20), is missing prvReadEntity privilege",
            }
        },
    )
    with pytest.raises(PermanentError, match="HTTP 403 0x80040220 Principal user"):
        _target().schema_problems()
