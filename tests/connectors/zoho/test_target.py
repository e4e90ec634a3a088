"""Zoho CRM contract tests: request and response shapes from Zoho CRM API v8's docs.

Shapes: Insert Records (zoho.com/crm/developer/docs/api/v8/insert-records.html: one result
per record, "record added", DUPLICATE_DATA naming the field and the existing record), Upsert
Records (…/v8/upsert-records.html: `action` insert/update and `duplicate_field`), COQL
(…/v8/Get-Records-through-COQL-Query.html: `data` and `info.more_records`), the error object
every v8 error section uses (code, details, message, status), and Zoho Accounts' refresh grant
(zoho.com/accounts/protocol/oauth/web-apps/access-token-expiry.html)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from pydantic import ValidationError

from leadbridge.connectors.zoho import target as zoho
from leadbridge.connectors.zoho.target import ZohoConfig, ZohoTarget, coql_string
from leadbridge.core.connector import (
    FatalError,
    Link,
    Outcome,
    PermanentError,
    RetryableError,
)
from leadbridge.core.domain.models import Lead, Stage

API = "https://www.zohoapis.eu/crm/v8"  # data_centre: eu
TOKEN_URL = "https://accounts.zoho.eu/oauth/v2/token"
LEADS, UPSERT, COQL = f"{API}/Leads", f"{API}/Leads/upsert", f"{API}/coql"
USER = {"name": "Patricia Boyle", "id": "4150868000000225013"}


def _target(**extra: Any) -> ZohoTarget:
    config: dict[str, Any] = {
        "name": "zoho",
        "data_centre": "eu",
        "client_id": "1000.CID",
        "client_secret": "topsecret",
        "refresh_token": "1000.refresh",
    }
    return ZohoTarget(ZohoConfig(**(config | extra)))


def _lead(key: str, **fields: Any) -> Lead:
    values: dict[str, Any] = {
        "lead_key": key * 32,
        "offer_key": "c.o",
        "email": f"{key}@x.io",
        "last_name": "Doe",
        "stage": Stage.MQL,
    }
    return Lead(**(values | fields))


def _linked(*leads: Lead) -> dict[str, Link]:
    """leadbridge has pushed these leads to this target before."""
    return {lead.lead_key: Link("4150868000000376008", "mql", "active") for lead in leads}


def _token(count: int = 1) -> None:
    """The refresh grant's answer (access-token-expiry.html): access_token, api_domain,
    token_type, expires_in."""
    for i in range(count):
        responses.post(
            TOKEN_URL,
            json={
                "access_token": f"1000.tok{i}",
                "api_domain": "https://www.zohoapis.eu",
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        )


def _details(record_id: str) -> dict[str, Any]:
    """A landed record's `details` (insert-records.html and upsert-records.html samples)."""
    return {
        "Modified_Time": "2020-10-14T10:31:43+05:30",
        "Modified_By": USER,
        "Created_Time": "2020-10-14T10:31:43+05:30",
        "id": record_id,
        "Created_By": USER,
    }


def _added(record_id: str) -> dict[str, Any]:
    """Insert Records' sample response: code SUCCESS, "record added"."""
    return {
        "code": "SUCCESS",
        "details": _details(record_id),
        "message": "record added",
        "status": "success",
    }


def _upserted(record_id: str, action: str) -> dict[str, Any]:
    """Upsert Records' sample response: `duplicate_field` and `action` besides the rest."""
    return {
        "code": "SUCCESS",
        "duplicate_field": "LeadBridge_Key" if action == "update" else None,
        "action": action,
        "details": _details(record_id),
        "message": "record updated" if action == "update" else "record added",
        "status": "success",
    }


def _error(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The error object of every v8 error section: code, details, message, status."""
    return {"code": code, "details": details, "message": message, "status": "error"}


def _duplicate_key(index: int) -> dict[str, Any]:
    """DUPLICATE_DATA: "the details key … gives the API name of the field that holds
    duplicate value … and the module JSON object gives the API name and ID of the existing
    record" (insert-records.html)."""
    return _error(
        "DUPLICATE_DATA",
        "duplicate data",
        api_name="LeadBridge_Key",
        json_path=f"$.data[{index}].LeadBridge_Key",
        duplicate_record={"id": "4150868000000376008", "module": {"api_name": "Leads"}},
    )


def _coql(*records: dict[str, Any], more: bool = False) -> None:
    """A COQL page (Get-Records-through-COQL-Query.html): data, info.count, more_records."""
    responses.post(
        COQL,
        json={"data": list(records), "info": {"count": len(records), "more_records": more}},
    )


def _sent(call: int) -> dict[str, Any]:
    return json.loads(responses.calls[call].request.body)


@responses.activate
def test_new_leads_are_inserted_with_their_placeholders_and_no_read() -> None:
    _token()
    responses.post(LEADS, status=201, json={"data": [_added("41501"), _added("41502")]})
    leads = [_lead("a"), _lead("b", company="Contoso", do_not_contact=True)]
    results = _target().upsert(leads, {})
    assert [(r.ok, r.created, r.external_id) for r in results] == [
        (True, True, "41501"),
        (True, True, "41502"),
    ]
    assert [c.request.url for c in responses.calls] == [TOKEN_URL, LEADS]  # no read first
    first, second = _sent(1)["data"]
    assert first["Company"] == "[not provided]" and first["Last_Name"] == "Doe"
    assert first["Lead_Source"] == "Online Store" and first["LeadBridge_Key"] == "a" * 32
    assert first["LeadBridge_Stage"] == "MQL" and first["LeadBridge_Marketplace_DNC"] is False
    assert "Email_Opt_Out" not in first  # an opt-out goes out only as true
    assert second["Company"] == "Contoso" and second["LeadBridge_Marketplace_DNC"] is True
    assert "duplicate_check_fields" not in _sent(1)  # a plain insert: it can't overwrite


@responses.activate
def test_an_insert_refused_for_its_key_is_read_and_upserted_in_the_same_call() -> None:
    _token()
    responses.post(LEADS, status=207, json={"data": [_added("41501"), _duplicate_key(1)]})
    _coql(
        {
            "id": "4150868000000376008",
            "LeadBridge_Key": "b" * 32,
            "Converted__s": False,
            "Company": "Contoso Ltd (key account)",
            "Last_Name": "Doe",
            "Designation": None,
        }
    )
    responses.post(UPSERT, json={"data": [_upserted("4150868000000376008", "update")]})
    leads = [_lead("a"), _lead("b", company="Contoso", title="CTO")]
    a, b = _target().upsert(leads, {})
    assert a.created is True
    assert (b.ok, b.created, b.kept) == (True, False, ["Company"])
    query = _sent(2)["select_query"]
    assert f"where LeadBridge_Key in ('{'b' * 32}')" in query and "Company" in query
    upsert = _sent(3)
    assert upsert["duplicate_check_fields"] == ["LeadBridge_Key"]  # never the e-mail
    [record] = upsert["data"]
    assert record["Designation"] == "CTO"  # empty in Zoho: filled
    assert "Company" not in record and "Lead_Source" not in record  # a person's; create-only


@responses.activate
def test_what_the_insert_landed_counts_when_the_read_after_it_must_wait(fake_clock: Any) -> None:
    _token()
    responses.post(LEADS, status=207, json={"data": [_added("41501"), _duplicate_key(1)]})
    responses.post(COQL, status=503, json=_error("INTERNAL_ERROR", "Internal Server Error"))
    a, b = _target().upsert([_lead("a"), _lead("b")], {})
    assert (a.ok, a.created) == (True, True)  # leadbridge made it: erasure may delete it
    assert b.error_class is Outcome.RETRYABLE


@responses.activate
def test_a_duplicate_in_another_unique_field_is_a_dead_letter_not_an_update() -> None:
    _token()
    refused = _error(
        "DUPLICATE_DATA", "duplicate data", api_name="Email", json_path="$.data[0].Email"
    )
    responses.post(LEADS, status=400, json={"data": [refused]})
    [result] = _target().upsert([_lead("a")], {})
    assert result.error_class is Outcome.PERMANENT
    assert "DUPLICATE_DATA" in str(result.error) and "Email" in str(result.error)
    assert result.body == refused and len(responses.calls) == 2  # no read, no upsert


@responses.activate
def test_each_upserted_record_gets_its_own_outcome() -> None:
    _token()
    leads = [_lead(k) for k in "abcd"]
    _coql(*[{"id": f"4150{k}", "LeadBridge_Key": k * 32, "Last_Name": "Doe"} for k in "abc"])
    responses.post(
        UPSERT,
        status=207,
        json={
            "data": [
                _upserted("4150a", "update"),
                _error("RECORD_LOCKED", "Sorry, you cannot perform this operation"),
                _error(
                    "INVALID_DATA", "invalid data", api_name="Email", expected_data_type="email"
                ),
                _upserted("4150d", "insert"),
            ]
        },
    )
    results = _target().upsert(leads, _linked(*leads))
    assert [r.error_class for r in results] == [
        None,
        Outcome.RETRYABLE,
        Outcome.PERMANENT,
        None,
    ]
    assert [r.created for r in results] == [False, None, None, True]  # Zoho's `action`
    assert "(Email)" in str(results[2].error)
    new = _sent(2)["data"][3]
    assert new["Company"] == "[not provided]"  # d was not in Zoho: the create payload


@responses.activate
def test_a_record_gone_since_the_read_is_tried_again_not_dead_lettered() -> None:
    _token()
    lead = _lead("a")
    _coql({"id": "4150a", "LeadBridge_Key": "a" * 32, "Last_Name": "Doe", "Company": "X"})
    missing = _error("MANDATORY_NOT_FOUND", "required field not found", api_name="Company")
    responses.post(UPSERT, status=400, json={"data": [missing]})
    [result] = _target().upsert([lead], _linked(lead))
    assert result.error_class is Outcome.RETRYABLE


@responses.activate
def test_a_converted_lead_is_read_and_not_written() -> None:
    _token()
    lead = _lead("a")
    _coql({"id": "4150a", "LeadBridge_Key": "a" * 32, "Converted__s": True})
    [result] = _target().upsert([lead], _linked(lead))
    assert (result.error_class, result.external_id) == (Outcome.CONVERTED, "4150a")
    assert [c.request.url for c in responses.calls] == [TOKEN_URL, COQL]  # nothing written


@responses.activate
def test_the_routed_owner_goes_with_a_create_and_never_with_an_update() -> None:
    _token()
    new, old = _lead("a"), _lead("b")
    responses.post(LEADS, status=201, json={"data": [_added("41501")]})
    _coql({"id": "4150b", "LeadBridge_Key": "b" * 32, "Last_Name": "Doe", "Company": "X"})
    responses.post(UPSERT, json={"data": [_upserted("4150b", "update")]})
    _target(default_owner="4150868000000225099").upsert([new, old], _linked(old))
    assert _sent(1)["data"][0]["Owner"] == {"id": "4150868000000225099"}
    assert "Owner" not in _sent(3)["data"][0]


@responses.activate
def test_many_keys_are_read_50_to_a_query() -> None:
    _token()
    leads = [_lead(f"{i:02x}"[-1], lead_key=f"{i:032x}") for i in range(60)]
    _coql()
    _coql()
    responses.post(UPSERT, json={"data": [_upserted(str(i), "insert") for i in range(60)]})
    _target(batch_size=100).upsert(leads, _linked(*leads))
    queries = [_sent(i)["select_query"] for i in (1, 2)]
    assert [q.count("'") // 2 for q in queries] == [50, 10]  # `in` takes at most 50 values


def test_a_default_batch_is_one_read_and_one_write() -> None:
    target = _target()
    assert (target.batch_size, target.max_batch, target.reads_per_batch) == (50, 100, 1)
    assert _target(batch_size=500).batch_size == 100  # never past Zoho's 100 a call


@responses.activate
def test_zohos_throttle_pauses_the_target(fake_clock: Any) -> None:
    _token()
    responses.post(
        LEADS,
        status=429,
        json=_error("TOO_MANY_REQUESTS", "too many requests"),  # no Retry-After is documented
    )
    target = _target()
    with pytest.raises(RetryableError) as raised:
        target.upsert([_lead("a")], {})
    assert raised.value.retry_after == zoho.THROTTLE_PAUSE_S
    assert target.transport.paused_for() == zoho.THROTTLE_PAUSE_S
    assert len(responses.calls) == 2  # asked once, then paused: no retry inside the pause


@responses.activate
def test_a_retry_after_is_honoured_when_zoho_sends_one(fake_clock: Any) -> None:
    _token()
    responses.post(
        LEADS, status=429, headers={"Retry-After": "7"}, json=_error("TOO_MANY_REQUESTS", "x")
    )
    responses.post(LEADS, status=201, json={"data": [_added("41501")]})
    [result] = _target().upsert([_lead("a")], {})
    assert result.ok and 7 in fake_clock.sleeps


@responses.activate
def test_the_refresh_grant_sends_its_secrets_in_the_body_and_is_reused() -> None:
    _token()
    responses.post(LEADS, status=201, json={"data": [_added("1")]})
    responses.post(LEADS, status=201, json={"data": [_added("2")]})
    target = _target()
    target.upsert([_lead("a")], {})
    target.upsert([_lead("b")], {})
    grant = responses.calls[0].request
    assert grant.url == TOKEN_URL  # nothing secret in the URL
    assert {k: v[0] for k, v in parse_qs(grant.body).items()} == {
        "grant_type": "refresh_token",
        "client_id": "1000.CID",
        "client_secret": "topsecret",
        "refresh_token": "1000.refresh",
    }
    assert [c.request.url for c in responses.calls].count(TOKEN_URL) == 1  # cached
    assert responses.calls[1].request.headers["Authorization"] == "Zoho-oauthtoken 1000.tok0"


@responses.activate
def test_an_invalid_token_gets_a_new_one_and_the_batch_lands() -> None:
    _token(2)
    # 401 INVALID_TOKEN, as zohoapis answers a stale token (pastebin.com/VkvZW1Vy).
    responses.post(LEADS, status=401, json=_error("INVALID_TOKEN", "invalid oauth token"))
    responses.post(LEADS, status=201, json={"data": [_added("41501")]})
    [result] = _target().upsert([_lead("a")], {})
    assert result.ok
    assert responses.calls[3].request.headers["Authorization"] == "Zoho-oauthtoken 1000.tok1"


@responses.activate
def test_a_refused_refresh_token_stops_the_target_and_names_the_data_centre() -> None:
    # Zoho Accounts answers a refused grant with 200 and an `error` (invalid_code: the
    # refresh token is unknown here, e.g. made in another data centre).
    responses.post(TOKEN_URL, json={"error": "invalid_code"})
    with pytest.raises(FatalError, match=r"invalid_code.*accounts\.zoho\.eu"):
        _target().upsert([_lead("a")], {})


@responses.activate
def test_the_ten_tokens_in_ten_minutes_block_pauses_instead_of_stopping() -> None:
    # "your app can create up to ten access tokens in a span of ten minutes. If the limit is
    # reached, the access token creation will be blocked for the rest of the ten minutes."
    responses.post(
        TOKEN_URL,
        status=400,
        json={
            "error_description": "You have made too many requests continuously. "
            "Please try again after some time.",
            "error": "Access Denied",
            "status": "failure",
        },
    )
    target = _target()
    with pytest.raises(RetryableError) as raised:
        target.upsert([_lead("a")], {})
    assert raised.value.retry_after == zoho.TOKEN_BLOCK_S
    assert target.transport.paused_for() == zoho.TOKEN_BLOCK_S


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (403, "NO_PERMISSION", "may not create or edit Leads"),
        # a 401 no new token fixes: said at once, without asking for another token
        (401, "OAUTH_SCOPE_MISMATCH", "make a new refresh token with the scopes"),
        (400, "INVALID_MODULE", "api_domain"),
    ],
)
@responses.activate
def test_what_no_retry_fixes_stops_the_target(status: int, code: str, says: str) -> None:
    _token(2)
    responses.post(LEADS, status=status, json=_error(code, "refused"))
    with pytest.raises(FatalError, match=says):
        _target().upsert([_lead("a")], {})


@responses.activate
def test_a_request_refused_as_a_whole_is_the_batchs_to_split() -> None:
    _token()
    responses.post(LEADS, status=400, json=_error("INVALID_DATA", "invalid data"))
    with pytest.raises(PermanentError) as raised:
        _target().upsert([_lead("a"), _lead("b")], {})
    assert raised.value.body["code"] == "INVALID_DATA"


@responses.activate
def test_a_coql_query_zoho_cannot_run_stops_the_target() -> None:
    _token()
    lead = _lead("a")
    responses.post(
        COQL,
        status=400,
        json=_error("INVALID_QUERY", "invalid column given", column_name="LeadBridge_Key"),
    )
    with pytest.raises(FatalError, match="config check --online"):
        _target().upsert([lead], _linked(lead))


def test_the_data_centre_gives_both_urls_and_explicit_ones_win() -> None:
    assert _target().config.api_base == API
    assert _target().config.token_url == TOKEN_URL
    ca = _target(data_centre="ca").config
    assert ca.token_url == "https://accounts.zohocloud.ca/oauth/v2/token"
    proxy = _target(api_domain="https://zoho.proxy.example/", accounts_url="https://a.example")
    assert proxy.config.api_base == "https://zoho.proxy.example/crm/v8"
    assert proxy.config.token_url == "https://a.example/oauth/v2/token"


def test_field_names_that_would_break_a_query_are_refused_by_the_config() -> None:
    with pytest.raises(ValidationError, match="key_field"):
        _target(key_field="LeadBridge_Key) or (id")
    with pytest.raises(ValidationError, match="stage_field"):
        _target(stage_field="Stage' --")


def test_coql_strings_are_quoted_and_escaped() -> None:
    assert coql_string("o'brien\\x") == "'o\\'brien\\\\x'"
