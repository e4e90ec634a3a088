"""Prometheus metrics. Counters and the histogram are counted where things happen; the
gauges (leads by stage, outbox depth, dead letters, Salesforce API usage) are read from the
store at scrape time, so every replica reports the same, true numbers."""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select

from leadbridge.core.store import repo, runs
from leadbridge.core.store.tables import cursors, leads

disable_created_metrics()  # *_created series double the scrape for nothing a dashboard uses
REGISTRY = CollectorRegistry(auto_describe=True)

RAW_LEADS = Counter(
    "leadbridge_raw_leads_total",
    "Raw leads processed, by source and action",
    ["source", "action"],
    registry=REGISTRY,
)
QUARANTINED = Counter(
    "leadbridge_quarantined_total",
    "Raw leads quarantined, by reason",
    ["source", "reason"],
    registry=REGISTRY,
)
WEBHOOK_REQUESTS = Counter(
    "leadbridge_webhook_requests_total",
    "Marketplace webhook requests, by HTTP status",
    ["status"],
    registry=REGISTRY,
)
PUSHES = Counter(
    "leadbridge_pushes_total",
    "Lead pushes, by target and outcome",
    ["target", "outcome"],
    registry=REGISTRY,
)
API_CALLS = Counter(
    "leadbridge_api_calls_total",
    "CRM API requests, by target and HTTP status",
    ["target", "status"],
    registry=REGISTRY,
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


class StoreCollector(Collector):
    """Gauges read from the store on every scrape."""

    def __init__(self, store: Any, silent_after: timedelta = timedelta(seconds=30)) -> None:
        self.store, self.silent_after = store, silent_after

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_stage = GaugeMetricFamily("leadbridge_leads", "Leads, by stage", labels=["stage"])
        depth = GaugeMetricFamily(
            "leadbridge_outbox_depth", "Pending pushes, by target", labels=["target"]
        )
        dead = GaugeMetricFamily(
            "leadbridge_dead_letters", "Open dead letters, by target", labels=["target"]
        )
        usage = GaugeMetricFamily(
            "leadbridge_salesforce_api_usage",
            "Salesforce API requests used and allowed in 24 h",
            labels=["target", "kind"],
        )
        replicas = GaugeMetricFamily(
            "leadbridge_replicas",
            "leadbridge run processes on this store: up, stopped, or lost (silent, presumed dead)",
            labels=["state"],
        )
        with self.store.connect() as conn:
            now = repo.utcnow()
            states = Counter_(
                runs.replica_state(row, now, self.silent_after) for row in runs.list_replicas(conn)
            )
            for state in ("up", "stopped", "lost"):
                replicas.add_metric([state], states[state])
            for stage, count in repo.count_by(conn, leads.c.stage).items():
                by_stage.add_metric([stage], count)
            for target, count in repo.outbox_depth(conn).items():
                depth.add_metric([target], count)
            for target, count in repo.open_dead_letters(conn).items():
                dead.add_metric([target], count)
            for name, value in conn.execute(
                select(cursors.c.name, cursors.c.value).where(
                    cursors.c.name.like("target:%:health")
                )
            ):
                state = orjson.loads(value).get("api_usage") or {}
                target = name.split(":")[1]
                for kind in ("used", "total"):
                    if kind in state:
                        usage.add_metric([target, kind], state[kind])
        yield from (by_stage, depth, dead, usage, replicas)
