"""The one HTTP policy: retries, Retry-After, 401, rate limit — with `responses`, no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses

from leadbridge.core.connector import FatalError, RetryableError
from leadbridge.core.connector.transport import RateLimiter, Transport, parse_retry_after

URL = "https://crm.example.test/api"


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30)), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30)), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@responses.activate
def test_5xx_and_connection_errors_are_retried_with_backoff(fake_clock) -> None:
    responses.post(URL, status=503)
    responses.post(URL, body=requests.ConnectionError("reset"))
    responses.post(URL, json={"ok": True})
    response = Transport("crm").request("POST", URL, json={})
    assert response.json() == {"ok": True}
    assert len(responses.calls) == 3
    assert len(fake_clock.sleeps) == 2 and all(0 <= s <= 30 for s in fake_clock.sleeps)


@responses.activate
def test_429_waits_exactly_the_retry_after_and_holds_later_requests(fake_clock) -> None:
    responses.post(URL, status=429, headers={"Retry-After": "12"})
    responses.post(URL, json={})
    responses.post(URL, json={})
    transport = Transport("crm")
    transport.request("POST", URL)
    assert fake_clock.sleeps == [12.0]
    assert transport.stats.throttled == 1 and transport.stats.retries == 1
    transport.request("POST", URL)  # no second wait: the hold has passed
    assert fake_clock.sleeps == [12.0]


@responses.activate
def test_a_long_retry_after_is_not_slept_inline_but_held(fake_clock) -> None:
    responses.post(URL, status=429, headers={"Retry-After": "600"})
    transport = Transport("crm", max_inline_wait=60)
    with pytest.raises(RetryableError) as err:
        transport.request("POST", URL)
    assert err.value.retry_after == 600
    assert len(responses.calls) == 1 and fake_clock.sleeps == []
    assert transport.not_before - fake_clock.now == pytest.approx(600)


@responses.activate
def test_inside_a_long_pause_nothing_is_sent_and_the_vendors_reason_is_kept(fake_clock) -> None:
    """A later request of the same target is refused at once, without a call and without
    holding the worker for ten minutes; the reason is what `status` will show."""
    responses.post(URL, status=429, headers={"Retry-After": "600"})
    transport = Transport("crm", max_inline_wait=60)
    with pytest.raises(RetryableError):
        transport.request("POST", URL)
    fake_clock.now += 100
    with pytest.raises(RetryableError) as err:
        transport.request("POST", URL)
    assert len(responses.calls) == 1 and fake_clock.sleeps == []
    assert err.value.retry_after == pytest.approx(500)
    assert transport.pause.why == "HTTP 429, Retry-After 600 s"
    assert transport.paused_for() == pytest.approx(500)


@responses.activate
def test_a_connectors_pause_keeps_its_length_and_a_shorter_one_never_cuts_it(fake_clock) -> None:
    """A classifier's pause (HubSpot's daily limit: an hour) is not cut to the Retry-After
    clamp, which guards against broken headers; a later, shorter pause leaves it as it is."""
    responses.post(URL, status=429)

    def daily(response: requests.Response) -> RetryableError:
        return RetryableError("crm: HubSpot daily limit reached", retry_after=3600)

    transport = Transport("crm", classify=daily, max_retry_after=900)
    with pytest.raises(RetryableError):
        transport.request("POST", URL)
    assert transport.paused_for() == pytest.approx(3600)
    transport.hold(60, "HTTP 503, Retry-After 60 s")
    assert transport.paused_for() == pytest.approx(3600)
    assert transport.pause.why == "HubSpot daily limit reached"


@responses.activate
def test_retry_after_is_clamped(fake_clock) -> None:
    responses.post(URL, status=503, headers={"Retry-After": "99999"})
    transport = Transport("crm", max_retry_after=300, max_inline_wait=10_000)
    responses.post(URL, json={})
    transport.request("POST", URL)
    assert fake_clock.sleeps == [300]


@responses.activate
def test_retries_stop_after_max_attempts() -> None:
    for _ in range(3):
        responses.post(URL, status=502)
    with pytest.raises(RetryableError):
        Transport("crm", max_attempts=3).request("POST", URL)
    assert len(responses.calls) == 3


@responses.activate
def test_401_gets_a_new_token_once() -> None:
    calls: list[bool] = []

    def auth(force: bool) -> dict[str, str]:
        calls.append(force)
        return {"Authorization": f"Bearer {'new' if force else 'old'}"}

    responses.post(URL, status=401)
    responses.post(
        URL, json={}, match=[responses.matchers.header_matcher({"Authorization": "Bearer new"})]
    )
    Transport("crm", auth=auth).request("POST", URL)
    assert calls == [False, True]


@responses.activate
def test_401_after_a_new_token_is_fatal() -> None:
    responses.post(URL, status=401)
    responses.post(URL, status=401)
    with pytest.raises(FatalError):
        Transport("crm", auth=lambda force: {}).request("POST", URL)


@responses.activate
def test_a_401_the_vendor_calls_fatal_stops_without_asking_for_a_new_token() -> None:
    """A token without a scope the API needs (Zoho answers 401 OAUTH_SCOPE_MISMATCH) won't
    get it by being renewed: the connector's verdict comes first."""
    calls: list[bool] = []

    def auth(force: bool) -> dict[str, str]:
        calls.append(force)
        return {}

    def classify(response: requests.Response) -> FatalError | None:
        scope = response.status_code == 401 and response.json()["code"] == "OAUTH_SCOPE_MISMATCH"
        return FatalError("crm: the token lacks a scope") if scope else None

    responses.post(URL, status=401, json={"code": "OAUTH_SCOPE_MISMATCH"})
    with pytest.raises(FatalError, match="lacks a scope"):
        Transport("crm", auth=auth, classify=classify).request("POST", URL)
    assert calls == [False] and len(responses.calls) == 1


@responses.activate
def test_4xx_is_returned_to_the_caller_not_retried() -> None:
    responses.post(URL, status=400, json={"error": "bad"})
    assert Transport("crm").request("POST", URL).status_code == 400
    assert len(responses.calls) == 1


def test_rate_limiter_spaces_requests(fake_clock) -> None:
    limiter = RateLimiter(rate=5, burst=2)
    for _ in range(6):
        limiter.acquire()
    assert sum(fake_clock.sleeps) == pytest.approx(4 / 5)
