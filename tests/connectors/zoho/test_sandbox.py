"""The Zoho CRM sandbox is as strict as Zoho where leadbridge could go wrong: the refresh
grant and its ten-in-ten-minutes limit, duplicates on insert, the upsert's match order,
mandatory fields on create only, invalid data, the COQL limits, the fields metadata, the
throttle answer — and a salesperson's stage and conversion through its admin API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from leadbridge.connectors.zoho.sandbox import ZohoSandbox
from leadbridge.connectors.zoho.target import ZohoConfig, ZohoTarget

KEY = "LeadBridge_Key"


@pytest.fixture
def box() -> Iterator[ZohoSandbox]:
    with ZohoSandbox() as sandbox:
        yield sandbox  # type: ignore[misc]


def _token(box: ZohoSandbox, **params: str) -> requests.Response:
    grant = {
        "grant_type": "refresh_token",
        "client_id": box.client_id,
        "client_secret": box.client_secret,
        "refresh_token": box.refresh_token,
    }
    return requests.post(f"{box.url}/oauth/v2/token", data=grant | params, timeout=10)


def _api(box: ZohoSandbox, path: str, body: Any = None, method: str = "POST") -> requests.Response:
    token = _token(box).json()["access_token"]
    return requests.request(
        method,
        f"{box.url}/crm/v8/{path}",
        json=body,
        headers={"Authorization": f"Zoho-oauthtoken {token}"},
        timeout=10,
    )


def _lead(key: str, **fields: Any) -> dict[str, Any]:
    return {KEY: key, "Last_Name": "Doe", "Company": "Contoso", **fields}


def test_the_refresh_grant_checks_every_credential_and_its_rate(box: ZohoSandbox) -> None:
    ok = _token(box).json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] == 3600 and ok["api_domain"]
    assert _token(box, client_secret="nope").json() == {"error": "invalid_client"}
    assert _token(box, refresh_token="nope").json() == {"error": "invalid_code"}
    for _ in range(9):
        assert "access_token" in _token(box).json()
    blocked = _token(box)  # the eleventh in ten minutes
    assert blocked.status_code == 400 and blocked.json()["error"] == "Access Denied"


def test_a_wrong_scheme_or_stale_token_is_invalid_token(box: ZohoSandbox) -> None:
    token = _token(box).json()["access_token"]
    answer = requests.post(
        f"{box.url}/crm/v8/Leads",
        json={"data": [_lead("k")]},
        headers={"Authorization": f"Bearer {token}"},  # Zoho's scheme is Zoho-oauthtoken
        timeout=10,
    )
    assert answer.status_code == 401 and answer.json()["code"] == "INVALID_TOKEN"


def test_insert_checks_mandatory_fields_email_lengths_and_duplicates(box: ZohoSandbox) -> None:
    answer = _api(
        box,
        "Leads",
        {
            "data": [
                _lead("k1", Unknown_Field="dropped"),
                {KEY: "k2", "Last_Name": "Doe"},  # no Company
                _lead("k3", Email="not-an-email"),
                _lead("k4", First_Name="x" * 41),
                _lead("k1"),  # the key is taken now
                _lead("k5", LeadBridge_Stage="Hot"),  # not on the pick list
            ]
        },
    )
    assert answer.status_code == 207
    codes = [r["code"] for r in answer.json()["data"]]
    assert codes == [
        "SUCCESS",
        "MANDATORY_NOT_FOUND",
        "INVALID_DATA",
        "INVALID_DATA",
        "DUPLICATE_DATA",
        "INVALID_DATA",
    ]
    duplicate = answer.json()["data"][4]["details"]
    assert duplicate["api_name"] == KEY and duplicate["duplicate_record"]["id"]
    assert "Unknown_Field" not in box.records["k1"]  # dropped: only config check shows it
    assert box.records["k1"]["Email_Opt_Out"] is False  # a checkbox starts unticked


def test_upsert_matches_on_the_named_field_or_else_on_the_email(box: ZohoSandbox) -> None:
    _api(box, "Leads", {"data": [_lead("k1", Email="ada@x.io")]})
    named = _api(
        box,
        "Leads/upsert",
        {"data": [_lead("k2", Email="ada@x.io")], "duplicate_check_fields": [KEY]},
    ).json()["data"][0]
    assert (named["action"], named["duplicate_field"]) == ("insert", None)
    unnamed = _api(box, "Leads/upsert", {"data": [_lead("k3", Email="ADA@x.io")]}).json()
    assert unnamed["data"][0]["duplicate_field"] == "Email"  # another offer's lead, overwritten
    assert box.records["k1"][KEY] == "k3"


def test_mandatory_fields_bind_a_create_not_an_update_that_leaves_them(box: ZohoSandbox) -> None:
    _api(box, "Leads", {"data": [_lead("k1")]})
    checks = [KEY]
    update = _api(box, "Leads/upsert", {"data": [{KEY: "k1"}], "duplicate_check_fields": checks})
    assert update.json()["data"][0]["action"] == "update"
    blanked = {KEY: "k1", "Company": ""}
    refused = _api(box, "Leads/upsert", {"data": [blanked], "duplicate_check_fields": checks})
    assert refused.status_code == 400
    assert refused.json()["data"][0]["code"] == "MANDATORY_NOT_FOUND"


def test_more_than_100_records_are_refused_as_a_whole(box: ZohoSandbox) -> None:
    answer = _api(box, "Leads", {"data": [_lead(f"k{i}") for i in range(101)]})
    assert answer.status_code == 400 and answer.json()["code"] == "LIMIT_EXCEEDED"
    assert box.records == {}


def test_coql_answers_its_subset_with_zohos_limits(box: ZohoSandbox) -> None:
    _api(box, "Leads", {"data": [_lead("k'1"), _lead("k2")]})
    by_key = _api(
        box, "coql", {"select_query": f"select id, {KEY} from Leads where {KEY} in ('k\\'1')"}
    )
    assert [r[KEY] for r in by_key.json()["data"]] == ["k'1"]
    assert by_key.json()["info"] == {"count": 1, "more_records": False}
    none = _api(box, "coql", {"select_query": f"select id from Leads where {KEY} in ('x')"})
    assert none.status_code == 204 and none.content == b""
    many = ", ".join(f"'k{i}'" for i in range(51))
    limited = _api(box, "coql", {"select_query": f"select id from Leads where {KEY} in ({many})"})
    assert limited.json()["code"] == "LIMIT_EXCEEDED"
    unknown = _api(box, "coql", {"select_query": f"select Nope from Leads where {KEY} in ('x')"})
    assert unknown.json()["code"] == "INVALID_QUERY"
    past = (
        "select id from Leads where (Modified_Time >= '2000-01-01T00:00:00+00:00' and "
        f"{KEY} is not null) order by Modified_Time asc limit 200 offset 9900"
    )
    assert _api(box, "coql", {"select_query": past}).json()["code"] == "LIMIT_EXCEEDED"


def test_fields_metadata_lists_the_leads_fields(box: ZohoSandbox) -> None:
    fields = {
        f["api_name"]: f
        for f in _api(box, "settings/fields?module=Leads", method="GET").json()["fields"]
    }
    assert fields[KEY]["unique"] == {"case_sensitive": False}
    assert fields["Last_Name"]["system_mandatory"] is True
    assert "SQL" in {v["actual_value"] for v in fields["LeadBridge_Stage"]["pick_list_values"]}
    wrong = _api(box, "settings/fields?module=Deals", method="GET")
    assert wrong.json()["code"] == "INVALID_MODULE"


def test_the_throttle_answer_is_zohos_429_without_a_wait(box: ZohoSandbox) -> None:
    box.faults.throttle_next = 1
    answer = _api(box, "Leads", {"data": [_lead("k1")]})
    assert answer.status_code == 429 and answer.json()["code"] == "TOO_MANY_REQUESTS"
    assert "Retry-After" not in answer.headers
    assert box.fault_statuses() == {429, 500, 502, 503, 504}


def test_a_salesperson_moves_the_stage_and_the_change_is_read_back(box: ZohoSandbox) -> None:
    entry = ZohoTarget.sandbox_entry(box, "zoho")
    target = ZohoTarget(ZohoConfig(**entry))
    _api(box, "Leads", {"data": [_lead("a" * 32, LeadBridge_Stage="MQL")]})
    assert ZohoTarget.move_stage(box, target.config, "a" * 32, "sql") is True
    requests.post(
        f"{box.url}/_sandbox/convert", json={"key": "a" * 32, "deal": True}, timeout=10
    ).raise_for_status()
    [change], _ = target.stage_changes(None)
    assert change.stage == "opportunity" and change.lead_key == "a" * 32
    [record] = ZohoTarget.sandbox_records(box, target.config)
    assert (record.name, record.stage) == ("Doe", "SQL")
