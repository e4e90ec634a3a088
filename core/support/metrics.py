"""Prometheus metrics: the counters and the histogram, counted where things happen. The
gauges read from the store at scrape time (leads by stage, outbox depth, dead letters, API
usage, vendor pauses) are core/app/gauges.py
are read from the store at scrape time, so every replica reports the same, true numbers.

Every label value is bounded: each label series lives in memory and in Prometheus for good,
so a value that outside data can choose (a marketplace action code, an HTTP status a CRM or
proxy answers, an outcome a connector reports) is kept only when it is one leadbridge knows
and counted as `other` otherwise. Sources and targets are names from the configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from leadbridge.core.domain.alerting import AlertEvent
from leadbridge.core.domain.vocabulary import Action, QuarantineReason

# *_created series double the scrape for nothing a dashboard uses
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
REGISTRY = CollectorRegistry(auto_describe=True)

OTHER = "other"
# The documented marketplace action codes, plus what the pipeline itself says.
KNOWN_ACTIONS = frozenset({*(a.value for a in Action), "unknown", "test"})
# The reasons core/pipeline.py quarantines for; a new reason must be added here to be seen.
QUARANTINE_REASONS = frozenset(r.value for r in QuarantineReason)
PUSH_OUTCOMES = frozenset({"ok", "retrying", "retryable", "permanent", "fatal", "converted"})
_STATUSES = frozenset({str(s.value) for s in HTTPStatus} | {"connection_error"})


def known(allowed: frozenset[str]) -> Callable[[str], str]:
    """A label guard: the value when it is one of `allowed`, else `other`."""
    return lambda value: value if value in allowed else OTHER


class BoundedCounter:
    """A Counter whose `.labels()` passes chosen labels through a guard first, so the call
    sites stay `COUNTER.labels(a, b).inc()` and can't create a series per outside value."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        guards: dict[str, Callable[[str], str]],
    ) -> None:
        self.labelnames, self.guards = labelnames, guards
        self.counter = Counter(name, documentation, labelnames, registry=REGISTRY)

    def labels(self, *values: str, **named: str) -> Counter:
        if values:  # positional, as prometheus_client takes them; a wrong count raises
            named = dict(zip(self.labelnames, values, strict=True))
        bounded = {k: self.guards.get(k, str)(str(v)) for k, v in named.items()}
        return self.counter.labels(**bounded)


RAW_LEADS = BoundedCounter(
    "leadbridge_raw_leads_total",
    "Raw leads processed, by source and action (an undocumented action code counts as other)",
    ["source", "action"],
    {"action": known(KNOWN_ACTIONS)},
)
QUARANTINED = BoundedCounter(
    "leadbridge_quarantined_total",
    "Raw leads quarantined, by reason",
    ["source", "reason"],
    {"reason": known(QUARANTINE_REASONS)},
)
WEBHOOK_REQUESTS = BoundedCounter(
    "leadbridge_webhook_requests_total",
    "Marketplace webhook requests, by HTTP status",
    ["status"],
    {"status": known(_STATUSES)},
)
PUSHES = BoundedCounter(
    "leadbridge_pushes_total",
    "Lead pushes, by target and outcome",
    ["target", "outcome"],
    {"outcome": known(PUSH_OUTCOMES)},
)
API_CALLS = BoundedCounter(
    "leadbridge_api_calls_total",
    "CRM API requests, by target and HTTP status (a status outside the HTTP registry: other)",
    ["target", "status"],
    {"status": known(_STATUSES)},
)
RETRIES = Counter(
    "leadbridge_retries_total", "CRM requests retried, by target", ["target"], registry=REGISTRY
)
THROTTLE_WAIT = Counter(
    "leadbridge_throttle_wait_seconds_total",
    "Seconds spent waiting on a CRM's throttling, by target",
    ["target"],
    registry=REGISTRY,
)
ARRIVAL_TO_CONFIRMED = Histogram(
    "leadbridge_lead_confirmed_seconds",
    "From a raw lead's arrival to its confirmation by a CRM, by target",
    ["target"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
    registry=REGISTRY,
)
# Channel names come from the configuration; events from the AlertEvent enum.
ALERTS = BoundedCounter(
    "leadbridge_alerts_total",
    "Alerts sent to people, or failed, by channel and event",
    ["channel", "event", "outcome"],
    {
        "event": known(frozenset(e.value for e in AlertEvent)),
        "outcome": known(frozenset({"sent", "failed", "dropped"})),
    },
)
