"""One HTTP policy for every outside system: timeouts, retries, Retry-After, rate limit, 401.

Every target talks through a `Transport`, so the rules are the same everywhere and tested
once: 429 / 5xx / connection errors are retried with jittered exponential backoff (tenacity,
composed from small predicates the way dlt does); a `Retry-After` in seconds or as an HTTP
date is honoured — clamped, and applied to every later request of the target too, so nothing
is sent before the time the vendor gave; a 401 fetches a new token once; a token bucket keeps
the request rate under the vendor's limit so throttling stays rare. Vendor-specific signals
(Salesforce's 403 REQUEST_LIMIT_EXCEEDED) plug in through `classify`.

A vendor's pause is kept with its reason (`VendorPause`), so it can outlive the process:
core/delivery.py writes it to the store and loads the ones other processes were given. A
request asked for while a long pause runs is refused without a call (a RetryableError with
the time left), so no caller — delivery, a stage read, a schema check — holds a worker for
it or sends inside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from leadbridge.core.connector.errors import ConnectorError, FatalError, RetryableError
from leadbridge.core.support import metrics
from leadbridge.core.support.logs import redact
from leadbridge.core.support.whoami import user_agent

log = logging.getLogger("leadbridge.transport")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_PAUSE_S = 86_400.0  # a daily allocation comes back within a day, whatever a connector says
MAX_WHY = 200
AuthHook = Callable[[bool], Mapping[str, str]]  # force_refresh -> headers
Classifier = Callable[[requests.Response], ConnectorError | None]


def default_sleep(seconds: float) -> None:
    """Every wait of every transport goes through here (tests replace it with a fake clock)."""
    time.sleep(seconds)


def default_clock() -> float:
    return time.monotonic()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class VerifyingSession(requests.Session):
    """A session that passes `verify` on every request. requests lets REQUESTS_CA_BUNDLE
    override a session-level `verify`, so msal's own `verify=` would lose to the environment
    and `ca_bundle` would be ignored for token requests."""

    def __init__(self, verify: bool | str) -> None:
        super().__init__()
        self.pinned_verify = verify

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("verify", self.pinned_verify)
        return super().request(method, url, **kwargs)


def response_body(response: requests.Response) -> Any:
    """A vendor's answer as JSON, or the start of its text: what a dead letter keeps."""
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


class RateLimiter:
    """A token bucket: `rate` requests per second on average, bursts up to `burst`."""

    def __init__(
        self,
        rate: float | None,
        burst: int = 1,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.rate, self.burst = rate, max(1, burst)
        self.clock, self.sleep = clock or default_clock, sleep or default_sleep
        self.tokens = float(self.burst)
        self.updated = self.clock()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        if not self.rate:
            return
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1:
                wait = (1 - self.tokens) / self.rate
                self.sleep(wait)
                self.updated = self.clock()
                self.tokens = 0.0
            else:
                self.tokens -= 1


@dataclass
class VendorPause:
    """The longest wait a vendor has ordered, on this process's monotonic clock, with the
    vendor's reason in words (never a payload: no personal data).

    `shared` and `seen` are what the store knows of it (core/delivery.py keeps them): within
    a process the monotonic clock rules, so a pause this process wrote or already loaded is
    not loaded again from the wall-clock copy in the store.
    """

    until: float = 0.0
    why: str = ""
    shared: bool = True  # False: told by the vendor here, not yet written to the store
    seen: datetime | None = None  # the latest stored end (UTC) this process wrote or loaded


@dataclass
class TransportStats:
    """Counters a target exposes to `status` and metrics."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    throttle_wait_s: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)


class Transport:
    """A requests session with leadbridge's retry, throttling and auth policy."""

    def __init__(
        self,
        name: str,
        *,
        auth: AuthHook | None = None,
        classify: Classifier | None = None,
        timeout: tuple[float, float] = (5.0, 60.0),
        max_attempts: int = 5,
        max_elapsed: float = 300.0,
        max_retry_after: float = 900.0,
        max_inline_wait: float = 60.0,
        rate: float | None = None,
        burst: int = 1,
        verify: bool | str = True,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self.auth = auth
        self.classify = classify
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_elapsed = max_elapsed
        self.max_retry_after = max_retry_after
        self.max_inline_wait = max_inline_wait
        self.verify = verify
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = user_agent()
        self.sleep, self.clock = sleep or default_sleep, clock or default_clock
        self.limiter = RateLimiter(rate, burst, clock=self.clock, sleep=self.sleep)
        self.not_before = 0.0  # monotonic time before which no request may be sent
        self.pause = VendorPause()
        self.stats = TransportStats()
        self.on_response: list[Callable[[requests.Response], None]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with retries; returns a 2xx/3xx/4xx response the caller interprets, or raises
        RetryableError (retries exhausted, or a wait longer than `max_inline_wait`: the caller
        defers the work rather than hold a worker) / FatalError (credentials rejected twice)."""
        retrying = Retrying(
            retry=retry_if_exception(self._worth_waiting_for),
            wait=self._wait,
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_elapsed),
            sleep=self._sleep_until_allowed,
            before_sleep=self._count_retry,
            reraise=True,
        )
        return retrying(self._send_once, method, url, kwargs)

    def _send_once(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        response = self._send(method, url, kwargs, force_refresh=False)
        if response.status_code == 401 and self.auth is not None:
            # A 401 the vendor says no new token will fix (a missing scope, a deactivated
            # user) stops at once: asking for another token would only hide the reason.
            verdict = self.classify(response) if self.classify else None
            if isinstance(verdict, FatalError):
                raise verdict
            log.info("credentials rejected; fetching a new token", extra={"target": self.name})
            response = self._send(method, url, kwargs, force_refresh=True)
            if response.status_code == 401:
                raise FatalError(f"{self.name}: credentials rejected (401) after a new token")
        error = self.classify(response) if self.classify else None
        if error is None and response.status_code in RETRYABLE_STATUS:
            error = RetryableError(f"{self.name}: HTTP {response.status_code}")
        if isinstance(error, RetryableError):
            hint = parse_retry_after(response.headers.get("Retry-After"))
            from_header = False
            if error.retry_after is None and hint is not None:
                # clamped: a broken header can't park the target for days
                error.retry_after = min(hint, self.max_retry_after)
                from_header = True
            if response.status_code == 429 or error.retry_after is not None:
                self.stats.throttled += 1
            if error.retry_after is not None:
                self.hold(error.retry_after, self._why(error, from_header))
        if error is not None:
            raise error
        return response

    def _send(
        self, method: str, url: str, kwargs: dict[str, Any], *, force_refresh: bool
    ) -> requests.Response:
        self._wait_until_allowed()
        self.limiter.acquire()
        headers = dict(kwargs.get("headers") or {})
        if self.auth is not None:
            headers.update(self.auth(force_refresh))
        call = {**kwargs, "headers": headers}
        call.setdefault("timeout", self.timeout)
        call.setdefault("verify", self.verify)
        self.stats.requests += 1
        try:
            response = self.session.request(method, url, **call)
        except (requests.ConnectionError, requests.Timeout) as exc:
            metrics.API_CALLS.labels(self.name, "connection_error").inc()
            raise RetryableError(f"{self.name}: {type(exc).__name__}") from exc
        metrics.API_CALLS.labels(self.name, str(response.status_code)).inc()
        self.stats.by_status[response.status_code] = (
            self.stats.by_status.get(response.status_code, 0) + 1
        )
        for hook in self.on_response:
            hook(response)
        return response

    def _why(self, error: RetryableError, from_header: bool) -> str:
        """The vendor's reason in words, as the classifier or the status said it."""
        why = str(error).removeprefix(f"{self.name}: ")
        if from_header and error.retry_after is not None:
            why += f", Retry-After {error.retry_after:g} s"
        return why

    def hold(
        self, seconds: float, why: str = "the vendor asked to wait", *, told: bool = True
    ) -> None:
        """Send nothing for `seconds`, for every later request of this target, not just a
        retry. A longer pause extends the one running, a shorter one changes nothing.
        `told=False`: a pause read from the store (another process was told), not news."""
        until = self.clock() + min(seconds, MAX_PAUSE_S)
        self.not_before = max(self.not_before, until)
        if until > self.pause.until:
            self.pause.until, self.pause.why = until, redact(why)[:MAX_WHY]
            self.pause.shared = not told

    def held_for(self) -> float:
        """Seconds until this target may be called again; 0 when it may now."""
        return max(0.0, self.not_before - self.clock())

    def paused_for(self) -> float:
        """Seconds left of the vendor's pause (not of this call's own back-off); 0 if none."""
        return max(0.0, self.pause.until - self.clock())

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        return wait_random_exponential(multiplier=0.5, max=30)(state)

    def _worth_waiting_for(self, error: BaseException) -> bool:
        if not isinstance(error, RetryableError):
            return False
        return error.retry_after is None or error.retry_after <= self.max_inline_wait

    def _sleep_until_allowed(self, seconds: float) -> None:
        """tenacity's sleep: only moves `not_before`; the one place that sleeps is
        `_wait_until_allowed`, right before the next send."""
        self.not_before = max(self.not_before, self.clock() + seconds)

    def _wait_until_allowed(self) -> None:
        """Sleep out a short wait; refuse, without a call, to send inside a long pause."""
        remaining = self.not_before - self.clock()
        if remaining > self.max_inline_wait:
            why = self.pause.why if self.paused_for() > 0 else "backing off"
            raise RetryableError(f"{self.name}: paused ({why})", retry_after=remaining)
        if remaining > 0:
            self.stats.throttle_wait_s += remaining
            metrics.THROTTLE_WAIT.labels(self.name).inc(remaining)
            self.sleep(remaining)

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        metrics.RETRIES.labels(self.name).inc()
        error = state.outcome.exception() if state.outcome else None
        log.info(
            "retrying",
            extra={"target": self.name, "attempt": state.attempt_number, "reason": str(error)},
        )
