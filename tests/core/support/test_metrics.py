"""The store's gauges as Prometheus scrapes them: replicas by state among them, so a lost
replica can page someone. And the counters' label values stay bounded whatever outside data
says, so a flood of made-up action codes can't grow the series without end."""

from __future__ import annotations

from datetime import timedelta

from leadbridge.core.app.gauges import StoreCollector
from leadbridge.core.domain.models import Action
from leadbridge.core.store import runs
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.support import metrics


def test_replicas_are_counted_by_state(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        runs.beat(conn, "a:1", "cluster", [], now)
        runs.beat(conn, "b:2", "cluster", [], now)
        runs.beat(conn, "c:3", "cluster", [], now - timedelta(minutes=5))
    families = {f.name: f for f in StoreCollector(store, timedelta(seconds=30)).collect()}
    counts = {s.labels["state"]: s.value for s in families["leadbridge_replicas"].samples}
    assert counts == {"up": 2, "stopped": 0, "lost": 1}


def _series(name: str, **match: str) -> list[dict[str, str]]:
    """The label sets of one metric's samples whose labels include `match`."""
    return [
        sample.labels
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and match.items() <= sample.labels.items()
    ]


def test_3000_customer_action_codes_make_a_bounded_number_of_series() -> None:
    for code in [f"X{i}" for i in range(3000)] + [a.value for a in Action] + ["unknown"]:
        metrics.RAW_LEADS.labels("cardinality", code).inc()
    series = _series("leadbridge_raw_leads_total", source="cardinality")
    actions = {s["action"]: s for s in series}
    assert len(series) == len(Action) + 2  # each documented code, unknown, and other
    assert set(actions) == {*(a.value for a in Action), "unknown", "other"}
    value = metrics.REGISTRY.get_sample_value(
        "leadbridge_raw_leads_total", {"source": "cardinality", "action": "other"}
    )
    assert value == 3000  # counted, not dropped


def test_outside_chosen_statuses_and_outcomes_are_bounded_too() -> None:
    for status in ["200", "429", "799", "999", "<script>", "connection_error"]:
        metrics.API_CALLS.labels("bounded-crm", status).inc()
    for outcome in ["ok", "permanent", "REQUIRED_FIELD_MISSING", "x" * 500]:
        metrics.PUSHES.labels(target="bounded-crm", outcome=outcome).inc()
    metrics.QUARANTINED.labels("bounded", "a reason from a payload").inc()
    statuses = {s["status"] for s in _series("leadbridge_api_calls_total", target="bounded-crm")}
    assert statuses == {"200", "429", "connection_error", "other"}
    outcomes = {s["outcome"] for s in _series("leadbridge_pushes_total", target="bounded-crm")}
    assert outcomes == {"ok", "permanent", "other"}
    assert _series("leadbridge_quarantined_total", source="bounded") == [
        {"source": "bounded", "reason": "other"}
    ]
