"""The daemon's endpoints through werkzeug's test client: webhook rules, health, metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.test import Client

from leadbridge.connectors.marketplace.https import MarketplaceHttpsConfig, MarketplaceHttpsSource
from leadbridge.core.http.app import MAX_BODY, App
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
