"""HubSpot contract tests: batch upsert, 207 partial results, throttling by policyName, the
statuses HubSpot's error-handling page lists, search paging with opaque cursors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses

from leadbridge.connectors.hubspot import target as hubspot
from leadbridge.connectors.hubspot.target import HubSpotConfig, HubSpotTarget
from leadbridge.core.connector import FatalError, Link, RetryableError
from leadbridge.core.domain.models import Lead, Stage

BASE = "https://api.hubapi.com"
UPSERT = f"{BASE}/crm/v3/objects/contacts/batch/upsert"
READ = f"{BASE}/crm/v3/objects/contacts/batch/read"


def _contacts(*found: dict[str, object], missing: tuple[str, ...] = ()) -> None:
    """The batch read by email that starts every batch. Shape: developers.hubspot.com/docs/
    api-reference/latest/crm/objects/objects/batch/get-objects — `results` for the emails it
    knows; the ones it doesn't come back in a 207 as OBJECT_NOT_FOUND."""
    body: dict[str, object] = {
        "status": "COMPLETE",
        "results": [
            {"id": str(c.get("hs_object_id", "1")), "properties": c, "archived": False}
            for c in found
        ],
    }
    if missing:
        body |= {
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some CONTACT objects, they may be deleted or not "
                    "exist. Check that ids are valid.",
                    "context": {"ids": list(missing)},
                }
            ],
        }
    responses.post(READ, status=207 if missing else 200, json=body)


def _target() -> HubSpotTarget:
    return HubSpotTarget(HubSpotConfig(name="marketing", token="pat-na1-x"))


def _lead(key: str, email: str, **fields: object) -> Lead:
    return Lead(
        **(
            {
                "lead_key": key * 32,
                "offer_key": f"c.{key}",
                "email": email,
                "first_name": "Ada",
                "stage": Stage.LEAD,
            }
            | fields
        )
    )


@responses.activate
def test_207_errors_map_back_to_their_leads_by_trace_id() -> None:
    a, b = _lead("a", "a@x.io"), _lead("b", "b@x.io")
    _contacts(missing=("a@x.io", "b@x.io"))
    responses.post(
        UPSERT,
        status=207,
        json={
            "status": "COMPLETE",
            "results": [
                {
                    "id": "101",
                    "new": True,
                    "objectWriteTraceId": a.lead_key,
                    "properties": {"email": "a@x.io"},
                }
            ],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid",
                    "context": {"objectWriteTraceId": [b.lead_key]},
                }
            ],
        },
    )
    results = _target().upsert([a, b])
    assert (results[0].ok, results[0].external_id, results[0].created) == (True, "101", True)
    assert (results[1].ok, results[1].error_class) == (False, "permanent")
    assert "VALIDATION_ERROR" in results[1].error


@responses.activate
def test_one_contact_per_person_with_every_offer_and_the_furthest_stage() -> None:
    older = _lead("a", "ada@x.io", stage=Stage.MQL)
    newer = _lead("b", "ada@x.io", stage=Stage.LEAD, title="CTO")
    _contacts(missing=("ada@x.io",))
    responses.post(
        UPSERT,
        json={
            "status": "COMPLETE",
            "results": [{"id": "7", "objectWriteTraceId": older.lead_key, "properties": {}}],
        },
    )
    results = _target().upsert([older, newer])
    assert all(r.ok and r.external_id == "7" for r in results)
    read = json.loads(responses.calls[0].request.body)
    assert read["idProperty"] == "email" and read["inputs"] == [{"id": "ada@x.io"}]
    [item] = json.loads(responses.calls[1].request.body)["inputs"]
    assert (item["id"], item["idProperty"]) == ("ada@x.io", "email")
    assert item["objectWriteTraceId"] == older.lead_key
    props = item["properties"]
    assert props["leadbridge_offers"] == "c.a;c.b" and props["leadbridge_stage"] == "mql"
    assert props["lifecyclestage"] == "marketingqualifiedlead"


@responses.activate
def test_lifecycle_stage_is_sent_forward_never_repeated_and_backward_as_clear_then_set() -> None:
    lead = _lead("a", "a@x.io", stage=Stage.MQL)
    ok = {"status": "COMPLETE", "results": [{"id": "1", "objectWriteTraceId": lead.lead_key}]}
    _contacts({"email": "a@x.io", "lifecyclestage": "marketingqualifiedlead"})
    responses.post(UPSERT, json=ok)
    _target().upsert([lead], {lead.lead_key: Link("1", "mql", "active")})
    props = json.loads(responses.calls[1].request.body)["inputs"][0]["properties"]
    assert "lifecyclestage" not in props  # HubSpot already has it

    responses.reset()
    _contacts({"email": "a@x.io", "lifecyclestage": "salesqualifiedlead"})
    responses.post(UPSERT, json=ok)
    responses.post(UPSERT, json=ok)
    recycled = _lead("a", "a@x.io", stage=Stage.LEAD)  # sales recycled an SQL to nurture
    assert _target().upsert([recycled], {lead.lead_key: Link("1", "sql", "active")})[0].ok
    first, second = (
        json.loads(c.request.body)["inputs"][0]["properties"] for c in responses.calls[1:]
    )
    assert first == {"lifecyclestage": ""}  # clear, in a request of its own…
    assert second["lifecyclestage"] == "lead"  # …then set


# The 429 body: developers.hubspot.com/docs/api/usage-details, as quoted on
# community.hubspot.com ("the 429 response will have the following format").
RATE_LIMIT = {
    "status": "error",
    "message": "You have reached your daily limit.",
    "errorType": "RATE_LIMIT",
    "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
    "policyName": "DAILY",
    "requestId": "3d3e35b7-0dae-4b9f-a6e3-9c230cbcf8dd",
}


@pytest.mark.parametrize(
    ("zone", "now", "until_reset"),
    [
        ("UTC", datetime(2026, 5, 1, 15, 0, tzinfo=UTC), timedelta(hours=9)),
        # 18:00 in New York (EDT, UTC-4): midnight there is 04:00 UTC
        ("America/New_York", datetime(2026, 5, 1, 22, 0, tzinfo=UTC), timedelta(hours=6)),
        # 00:30 CET on the day clocks go forward: that day has 23 hours, midnight is 22.5 h off
        ("Europe/Berlin", datetime(2026, 3, 28, 23, 30, tzinfo=UTC), timedelta(hours=22.5)),
    ],
)
@responses.activate
def test_the_daily_limit_pauses_the_target_until_midnight_in_the_account_time_zone(
    monkeypatch: pytest.MonkeyPatch, zone: str, now: datetime, until_reset: timedelta
) -> None:
    """HubSpot resets the daily limit at midnight in the account's time zone
    (developers.hubspot.com/apisbytier): no call before then, nothing dead-lettered."""
    monkeypatch.setattr(hubspot, "now_utc", lambda: now)
    responses.post(READ, status=429, json=RATE_LIMIT)
    target = HubSpotTarget(
        HubSpotConfig(name="marketing", token="pat-na1-x", account_timezone=zone)
    )
    with pytest.raises(RetryableError) as err:
        target.upsert([_lead("a", "a@x.io")])
    wait = until_reset.total_seconds() + hubspot.DAILY_RESET_MARGIN_S
    assert err.value.retry_after == pytest.approx(wait)
    assert zone in str(err.value) and len(responses.calls) == 1  # not retried inline
    assert target.transport.held_for() == pytest.approx(wait)  # the whole target waits
    with pytest.raises(RetryableError):
        target.upsert([_lead("b", "b@x.io")])
    assert len(responses.calls) == 1  # still paused: no call at all


def test_the_account_time_zone_must_be_a_real_one() -> None:
    with pytest.raises(ValueError, match="IANA time zone"):
        HubSpotConfig(name="marketing", token="t", account_timezone="Mars/Olympus")


@responses.activate
def test_the_ten_secondly_limit_waits_the_interval(fake_clock) -> None:
    _contacts(missing=("a@x.io",))
    responses.post(
        UPSERT,
        status=429,
        json=RATE_LIMIT | {"policyName": "TEN_SECONDLY_ROLLING"},
        headers={"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
    )
    lead = _lead("a", "a@x.io")
    responses.post(UPSERT, json={"results": [{"id": "1", "objectWriteTraceId": lead.lead_key}]})
    assert _target().upsert([lead])[0].ok
    assert 10.0 in fake_clock.sleeps


@responses.activate
def test_a_lead_without_email_cannot_be_a_contact() -> None:
    result = _target().upsert([_lead("a", None)])[0]  # type: ignore[arg-type]
    assert result.error_class == "permanent" and "email" in result.error
    assert len(responses.calls) == 0


@responses.activate
def test_a_rejected_private_app_token_is_fatal() -> None:
    responses.post(READ, status=401, json={"category": "INVALID_AUTHENTICATION"})
    responses.post(READ, status=401, json={"category": "INVALID_AUTHENTICATION"})
    with pytest.raises(FatalError):
        _target().upsert([_lead("a", "a@x.io")])


@responses.activate
def test_an_existing_contact_keeps_what_people_set_and_its_later_stage() -> None:
    """The contact was there before leadbridge (a form fill, a salesperson): its names and
    company stay, an empty phone is filled, a lifecycle stage beyond the lead's is never
    sent, and no owner is routed onto it."""
    lead = _lead("a", "ada@x.io", stage=Stage.MQL, company="Contoso", phone="+14255550100")
    _contacts(
        {
            "email": "ada@x.io",
            "firstname": "Adaline",
            "company": "Contoso Ltd",
            "phone": "",
            "lifecyclestage": "customer",
            "hs_object_id": "42",
        }
    )
    responses.post(
        UPSERT,
        json={
            "status": "COMPLETE",
            "results": [{"id": "42", "new": False, "objectWriteTraceId": lead.lead_key}],
        },
    )
    target = HubSpotTarget(HubSpotConfig(name="marketing", token="pat-na1-x", default_owner="9001"))
    [result] = target.upsert([lead])
    assert result.ok and result.created is False
    assert sorted(result.kept) == ["company", "firstname"]
    props = json.loads(responses.calls[1].request.body)["inputs"][0]["properties"]
    assert props["phone"] == "+14255550100"
    assert {"firstname", "company", "lifecyclestage", "hubspot_owner_id"} & set(props) == set()
    assert props["leadbridge_stage"] == "mql" and props["leadbridge_lead_key"] == lead.lead_key
    assert not any(name.startswith("hs_email_optout") for name in props)


# --- the statuses of developers.hubspot.com/docs/api-reference/error-handling -------------

SEARCH = f"{BASE}/crm/v3/objects/contacts/search"
PROPERTIES = f"{BASE}/crm/v3/properties/contacts"


def _hubspot_error(status: int, message: str, **headers: str) -> dict[str, object]:
    """HubSpot's own answer in its documented common error shape (status, message,
    correlationId; developers.hubspot.com/docs/api-reference/error-handling). The page names
    423, 477, 502/503/504 and what to do, not a body: the message paraphrases it."""
    return {
        "status": status,
        "json": {
            "status": "error",
            "message": message,
            "correlationId": "a43683b0-5717-4ceb-80b4-104d02915d8c",
        },
        "headers": headers,
    }


def _cloudflare_page(status: int, title: str, **headers: str) -> dict[str, object]:
    """521-526 come from Cloudflare in front of api.hubapi.com: its HTML error page unless JSON
    is asked for (developers.cloudflare.com/fundamentals/reference/error-responses/)."""
    page = f"<html><head><title>api.hubapi.com | {status}: {title}</title></head></html>"
    return {"status": status, "body": page, "content_type": "text/html", "headers": headers}


FAULTS = {
    423: _hubspot_error(423, "The object is locked; wait at least 2 seconds."),
    # "a Retry-After response header indicating how many seconds to wait"
    477: _hubspot_error(477, "This account is being migrated.", **{"Retry-After": "30"}),
    502: _hubspot_error(502, "Bad Gateway"),
    503: _hubspot_error(503, "Service Unavailable"),
    504: _hubspot_error(504, "Gateway Timeout"),
    # Cloudflare sends Retry-After on its retryable codes (521-524), none on 525/526.
    521: _cloudflare_page(521, "Web server is down", **{"Retry-After": "5"}),
    522: _cloudflare_page(522, "Connection timed out"),
    523: _cloudflare_page(523, "Origin is unreachable", **{"Retry-After": "5"}),
    524: _cloudflare_page(524, "A timeout occurred", **{"Retry-After": "5"}),
    525: _cloudflare_page(525, "SSL handshake failed"),
    526: _cloudflare_page(526, "Invalid SSL certificate"),
}
# Search response: developers.hubspot.com/docs/api-reference/2026-03/crm/search-the-crm
NO_CONTACTS = {"total": 0, "results": []}


def _property(name: str) -> dict[str, object]:
    """GET /crm/v3/properties/contacts item (developers.hubspot.com/docs/api-reference/legacy/
    crm/properties/get-properties)."""
    return {"name": name, "label": name, "type": "string", "fieldType": "text", "options": []}


STANDARD = ("email", "firstname", "lastname", "phone", "company", "jobtitle", "country", "message")
OWN = ("leadbridge_lead_key", "leadbridge_stage", "leadbridge_offers")


def _call_batch_read(target: HubSpotTarget, fault: dict[str, object]) -> None:
    responses.post(READ, **fault)
    _contacts({"email": "a@x.io", "hs_object_id": "7"})
    assert target.existing(["a@x.io"])["a@x.io"]["id"] == "7"


def _call_batch_upsert(target: HubSpotTarget, fault: dict[str, object]) -> None:
    lead = _lead("a", "a@x.io")
    _contacts(missing=("a@x.io",))
    responses.post(UPSERT, **fault)
    responses.post(UPSERT, json={"results": [{"id": "1", "objectWriteTraceId": lead.lead_key}]})
    assert target.upsert([lead])[0].ok


def _call_search(target: HubSpotTarget, fault: dict[str, object]) -> None:
    responses.post(SEARCH, **fault)
    responses.post(SEARCH, json=NO_CONTACTS)
    assert target.stage_changes(None) == ([], "0")


def _call_properties(target: HubSpotTarget, fault: dict[str, object]) -> None:
    responses.get(PROPERTIES, **fault)
    every = [*STANDARD, *OWN, "leadbridge_marketplace_dnc"]
    responses.get(PROPERTIES, json={"results": [_property(n) for n in every]})
    assert target.schema_problems() == []


def _call_property_create(target: HubSpotTarget, fault: dict[str, object]) -> None:
    responses.get(PROPERTIES, json={"results": [_property(n) for n in STANDARD]})
    responses.post(PROPERTIES, **fault)
    # 201 with the property: developers.hubspot.com/docs/api-reference/latest/crm/properties/
    # create-property
    responses.post(PROPERTIES, status=201, json=_property("created"))
    assert target.schema_problems(create_missing=True) == []
    assert target.schema_notes == [
        f"created the contact property {name}" for name in [*OWN, "leadbridge_marketplace_dnc"]
    ]


CALLS = {
    "batch read": _call_batch_read,
    "batch upsert": _call_batch_upsert,
    "search": _call_search,
    "properties": _call_properties,
    "property create": _call_property_create,
}


@pytest.mark.parametrize("status", [423, 477, 502, 503, 504, 521, 523, 524])
@pytest.mark.parametrize("call", list(CALLS))
@responses.activate
def test_transient_statuses_are_retried_on_every_call(fake_clock, call: str, status: int) -> None:
    """What the page says to retry is retried — and waited for as it says — by every call
    leadbridge makes to HubSpot; none of it turns a lead into a dead letter."""
    CALLS[call](_target(), FAULTS[status])
    assert [c.response.status_code for c in responses.calls].count(status) == 1
    waited = sum(fake_clock.sleeps) + 1e-6
    if status == 423:  # "a delay of at least 2 seconds"
        assert waited >= 2.0
    if status == 477:  # its Retry-After
        assert waited >= 30.0


@responses.activate
def test_a_migration_longer_than_a_worker_may_wait_pauses_the_target_for_all_of_it() -> None:
    """477's Retry-After may be hours ("typically up to 24 hours"): the leads wait all of it
    (not a clamped quarter hour that would burn their attempts), sent nothing meanwhile."""
    responses.post(READ, **_hubspot_error(477, "migrating", **{"Retry-After": "7200"}))
    target = _target()
    with pytest.raises(RetryableError) as err:
        target.upsert([_lead("a", "a@x.io")])
    assert err.value.retry_after == 7200 and len(responses.calls) == 1
    assert target.transport.held_for() == pytest.approx(7200)


@pytest.mark.parametrize("status", [522, 525, 526])
@pytest.mark.parametrize("call", list(CALLS))
@responses.activate
def test_contact_support_statuses_stop_the_target_with_the_reason(call: str, status: int) -> None:
    """522/525/526: "reach out to HubSpot support". No retry can help: FatalError (the target
    stops, every lead stays queued), sent once, and the reason says what to do."""
    with pytest.raises(FatalError, match=f"{status}.*HubSpot support"):
        CALLS[call](_target(), FAULTS[status])
    assert [c.response.status_code for c in responses.calls].count(status) == 1


@responses.activate
def test_a_server_error_on_a_whole_batch_is_not_blamed_on_its_records() -> None:
    """A 5xx the transport doesn't retry (here 507) says nothing about the records: the batch
    is retryable, not split into dead letters."""
    _contacts(missing=("a@x.io",))
    responses.post(UPSERT, status=507, body="Insufficient Storage")
    with pytest.raises(RetryableError):
        _target().upsert([_lead("a", "a@x.io")])


# --- search paging -----------------------------------------------------------------------


def _contact(i: int, stage: str = "lead") -> dict[str, object]:
    """A search result (developers.hubspot.com/docs/api-reference/2026-03/crm/search-the-crm)."""
    stamp = datetime(2026, 5, 1, 10, i, tzinfo=UTC).isoformat().replace("+00:00", "Z")
    return {
        "id": str(i),
        "properties": {
            "leadbridge_lead_key": f"{i:032x}",
            "lifecyclestage": stage,
            "lastmodifieddate": stamp,
        },
    }


@responses.activate
def test_search_sends_the_paging_cursor_back_as_it_came_and_counts_the_cap_in_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`paging.next.after` is "a paging cursor token" (a string), not a number: it goes back
    untouched, and the 10,000-result cap is counted in results read."""
    monkeypatch.setattr(hubspot, "SEARCH_PAGE", 2)
    monkeypatch.setattr(hubspot, "SEARCH_CAP", 4)
    cursors = ("MgoK", "NAo=")  # opaque, as HubSpot's are (these happen to be base64)
    responses.post(
        SEARCH,
        json={
            "total": 5,
            "results": [_contact(1), _contact(2)],
            "paging": {"next": {"after": cursors[0]}},
        },
    )
    responses.post(
        SEARCH,
        json={
            "total": 5,
            "results": [_contact(3), _contact(4)],
            "paging": {"next": {"after": cursors[1]}},
        },
    )  # four read: one more page would pass the cap
    responses.post(SEARCH, json={"total": 2, "results": [_contact(4), _contact(5)]})
    changes, _ = _target().stage_changes(None)
    assert sorted(c.external_id for c in changes) == ["1", "2", "3", "4", "5"]
    bodies = [json.loads(c.request.body) for c in responses.calls]
    assert "after" not in bodies[0] and bodies[1]["after"] == cursors[0]
    assert "after" not in bodies[2]  # restarted from the last lastmodifieddate seen
    assert int(bodies[2]["filterGroups"][0]["filters"][0]["value"]) > 0
