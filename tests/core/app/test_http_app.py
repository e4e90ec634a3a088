"""The daemon's endpoints through werkzeug's test client: webhook rules, health, metrics."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from werkzeug.test import Client

from leadbridge.connectors.marketplace.https import MarketplaceHttpsConfig, MarketplaceHttpsSource
from leadbridge.core.app.engines.jobs import Replica
from leadbridge.core.app.http_app import MAX_BODY, App
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import raw_leads

TOKEN = "0123456789abcdefTOKEN"
URL = f"/marketplace/leads/{TOKEN}"


@pytest.fixture
def client(store: Store) -> tuple[Client, Store, list[int]]:
    woken: list[int] = []
    source = MarketplaceHttpsSource(MarketplaceHttpsConfig(name="hook", token=TOKEN))
    app = App(store, [source], ["sales"], on_landed=lambda: woken.append(1))
    return Client(app), store, woken


def _landed(store: Store) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(raw_leads)).scalar_one()


def test_a_lead_is_committed_before_the_2xx(client: Any, samples: list[dict[str, Any]]) -> None:
    http, store, woken = client
    response = http.post(URL, json=samples[2]["https_payload"])
    assert response.status_code == 202 and _landed(store) == 1 and woken == [1]
    # Partner Center's retry of the same body the same day is the same raw lead.
    assert http.post(URL, json=samples[2]["https_payload"]).status_code == 202
    assert _landed(store) == 1


def test_microsofts_test_lead_gets_a_2xx(client: Any, samples: list[dict[str, Any]]) -> None:
    http, _store, _ = client
    test_lead = next(s for s in samples if s["sample_id"] == "ml-08")["https_payload"]
    assert http.post(URL, json=test_lead).status_code == 202


def test_wrong_token_is_401_and_nothing_is_landed(client: Any) -> None:
    http, store, _ = client
    assert http.post("/marketplace/leads/guess", json={}).status_code == 401
    assert http.post(URL[:-1], json={}).status_code == 401
    assert _landed(store) == 0


def test_oversize_body_is_413(client: Any) -> None:
    http, store, _ = client
    assert http.post(URL, data=b"x" * (MAX_BODY + 1)).status_code == 413
    assert _landed(store) == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({"UserDetails": {"Email": "a@b.io"}}).encode(), "LeadSource"),
        (
            json.dumps({"LeadSource": "AzurePortal", "UserDetails": "a@b.io"}).encode(),
            "UserDetails",
        ),
        # Past orjson's 255 levels (the payload key, the store's JSON column): was a 500
        # and the body was lost; past 1,024 orjson can't even parse it.
        (b'{"LeadSource":"AzurePortal","X":' + b"[" * 600 + b"]" * 600 + b"}", "nested more"),
        (b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}", "depth limit"),
        (b'{"LeadSource":"AzurePortal","UserDetails":{"FirstName":"\\ud800"}}', "surrogate"),
    ],
)
def test_unreadable_bodies_are_400_with_the_reason_and_still_kept(
    client: Any, body: bytes, reason: str
) -> None:
    http, store, _ = client
    response = http.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400
    assert reason in response.json["error"] and response.json["kept"] is True
    assert _landed(store) == 1  # nothing a sender posted is lost


def test_a_body_the_parser_chokes_on_is_still_kept_and_answered_400(
    client: Any, monkeypatch: pytest.MonkeyPatch, samples: list[dict[str, Any]]
) -> None:
    from leadbridge.connectors.marketplace import https

    def choke(*_: Any) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(https, "parse_payload", choke)
    http, store, _ = client
    response = http.post(URL, json=samples[2]["https_payload"])
    assert response.status_code == 400 and response.json["kept"] is True
    assert "RecursionError" in response.json["error"]
    assert _landed(store) == 1  # landed before it was parsed


def test_health_readiness_and_metrics(client: Any, samples: list[dict[str, Any]]) -> None:
    http, store, _ = client
    assert http.get("/healthz").json == {"status": "alive"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["target:sales"] == "ok"
    with store.begin() as conn:
        repo.set_cursor(
            conn,
            "target:sales:health",
            json.dumps({"state": "fatal", "message": "sales: credentials rejected"}),
            repo.utcnow(),
        )
    unready = http.get("/readyz")
    assert unready.status_code == 503 and unready.json["failing"] == ["target:sales"]
    assert "credentials rejected" in unready.json["checks"]["target:sales"]
    http.post(URL, json=samples[0]["https_payload"])
    text = http.get("/metrics").get_data(as_text=True)
    assert 'leadbridge_webhook_requests_total{status="202"}' in text
    assert http.get("/nowhere").status_code == 404


def _failing_run(replica: Any, job: str) -> None:
    with pytest.raises(RuntimeError), replica.running(job, "periodic"):
        raise RuntimeError("could not process jsmith@contoso.com")  # the message stays out


def test_readyz_names_a_job_that_failed_three_runs_in_a_row_until_it_recovers(
    store: Store,
) -> None:
    replica = Replica(store, "single", timedelta(seconds=5), buffered=True)
    http = Client(App(store, [], [], job_streaks=replica.streaks))
    with replica.running("deliver:sales", "periodic"):
        pass
    for _ in range(2):
        _failing_run(replica, "process")
    assert http.get("/readyz").status_code == 200  # two in a row: not yet
    _failing_run(replica, "process")
    unready = http.get("/readyz")
    assert unready.status_code == 503 and unready.json["failing"] == ["job:process"]
    reason = unready.json["checks"]["job:process"]
    assert reason == "failed 3 runs in a row (last error: RuntimeError)"
    assert unready.json["checks"]["job:deliver:sales"] == "ok"
    assert "contoso" not in unready.get_data(as_text=True)
    with replica.running("process", "periodic"):
        pass  # it recovers
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["job:process"] == "ok"


def test_the_failures_that_make_a_replica_unready_are_configurable(store: Store) -> None:
    replica = Replica(store, "single", timedelta(seconds=5), buffered=True)
    http = Client(App(store, [], [], job_streaks=replica.streaks, unready_after=1))
    _failing_run(replica, "ingest:table")
    assert http.get("/readyz").json["failing"] == ["job:ingest:table"]


def test_a_store_that_cannot_be_written_is_unready(store: Store) -> None:
    http = Client(App(store, [], ["sales"]))
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["store:writable"] == "ok"
    with store.connect() as conn:  # the probe's row was rolled back
        assert repo.get_cursor(conn, "readyz:probe") is None
        assert conn.exec_driver_sql("SELECT count(*) FROM cursors").scalar() == 0

    read_only = Store(str(store.engine.url), upgrade=False)  # e.g. a read-only mount

    @event.listens_for(read_only.engine, "connect")
    def _query_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    try:
        unready = Client(App(read_only, [], ["sales"])).get("/readyz")
    finally:
        read_only.dispose()
    assert unready.status_code == 503 and unready.json["failing"] == ["store:writable"]
    assert unready.json["checks"]["store"] == "ok"  # SELECT 1 alone would have said ready
    assert "readonly" in unready.json["checks"]["store:writable"]
    assert "INSERT" not in unready.json["checks"]["store:writable"]  # no SQL, no parameters


def test_the_probe_listener_serves_health_and_nothing_else(store: Store) -> None:
    source = MarketplaceHttpsSource(MarketplaceHttpsConfig(name="hook", token=TOKEN))
    probes = Client(App(store, [source], []).probes)
    assert probes.get("/healthz").status_code == 200
    assert probes.get("/readyz").status_code == 200
    assert probes.get("/metrics").status_code == 200
    assert probes.post(URL, json={}).status_code == 404
    assert _landed(store) == 0
