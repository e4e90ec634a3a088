"""The store's gauges as Prometheus scrapes them: replicas by state among them, so a lost
replica can page someone."""

from __future__ import annotations

from datetime import timedelta

from leadbridge.core.metrics import StoreCollector
from leadbridge.core.store import runs
from leadbridge.core.store.repo import Store, utcnow


def test_replicas_are_counted_by_state(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        runs.beat(conn, "a:1", "cluster", [], now)
        runs.beat(conn, "b:2", "cluster", [], now)
        runs.beat(conn, "c:3", "cluster", [], now - timedelta(minutes=5))
    families = {f.name: f for f in StoreCollector(store, timedelta(seconds=30)).collect()}
    counts = {s.labels["state"]: s.value for s in families["leadbridge_replicas"].samples}
    assert counts == {"up": 2, "stopped": 0, "lost": 1}
