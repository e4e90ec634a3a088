"""The gauges read from the store on every scrape, so every replica reports the same, true
numbers (counters live in core/support/metrics.py)."""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Iterator
from datetime import timedelta

import orjson
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from leadbridge.core.delivery.pauses import running_pauses
from leadbridge.core.store import repo, runs, state
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import leads


class StoreCollector(Collector):
    """Gauges read from the store on every scrape."""

    def __init__(self, store: Store, silent_after: timedelta = timedelta(seconds=30)) -> None:
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
            "leadbridge_target_api_usage",
            "API requests used and allowed in the vendor's window, where the vendor reports "
            "them (e.g. a daily allocation)",
            labels=["target", "kind"],
        )
        paused = GaugeMetricFamily(
            "leadbridge_target_paused_until_seconds",
            "When a vendor's pause of a target ends (Unix time); only targets paused now",
            labels=["target"],
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
            for replica_state in ("up", "stopped", "lost"):
                replicas.add_metric([replica_state], states[replica_state])
            for stage, count in repo.count_by(conn, leads.c.stage).items():
                by_stage.add_metric([stage], count)
            for target, count in repo.outbox_depth(conn).items():
                depth.add_metric([target], count)
            for target, count in repo.open_dead_letters(conn).items():
                dead.add_metric([target], count)
            for target, value in state.every(conn, "target_health").items():
                usage_now = (orjson.loads(value) or {}).get("api_usage") or {}
                for kind in ("used", "total"):
                    if kind in usage_now:
                        usage.add_metric([target, kind], usage_now[kind])
            for pause in running_pauses(conn, now):
                paused.add_metric([pause.target], pause.until.timestamp())
        yield from (by_stage, depth, dead, usage, paused, replicas)
