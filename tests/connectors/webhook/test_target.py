"""Webhook contract: signature, idempotency key, per-record results."""

from __future__ import annotations

import json

import pytest
import responses

from leadbridge.connectors.webhook.target import WebhookConfig, WebhookTarget, sign
from leadbridge.core.connector import PermanentError
from leadbridge.core.domain.models import Lead

URL = "https://hooks.example.test/leads"


def _lead(key: str, **fields: object) -> Lead:
    return Lead(**({"lead_key": key * 32, "offer_key": "c.o", "email": f"{key}@x.io"} | fields))


def _target() -> WebhookTarget:
    return WebhookTarget(
        WebhookConfig(name="hook", url=URL, secret="s3cret", headers={"X-Api-Key": "k"})
    )


@responses.activate
def test_signed_body_idempotency_key_and_per_record_results() -> None:
    responses.post(
        URL,
        json={"results": [{"lead_key": "b" * 32, "ok": False, "error": "duplicate in our system"}]},
    )
    results = _target().upsert([_lead("a"), _lead("b")])
    assert [r.ok for r in results] == [True, False]
    request = responses.calls[0].request
    timestamp = request.headers["X-LeadBridge-Timestamp"]
    assert request.headers["X-LeadBridge-Signature"] == sign("s3cret", timestamp, request.body)
    assert request.headers["X-Api-Key"] == "k"
    body = json.loads(request.body)
    assert body["schema_version"] == 1 and body["leads"][0]["lead_key"] == "a" * 32


@responses.activate
def test_idempotency_key_is_stable_for_the_same_states_only() -> None:
    for _ in range(3):
        responses.post(URL, json={})
    target = _target()
    target.upsert([_lead("a")])
    target.upsert([_lead("a")])
    target.upsert([_lead("a", title="CTO")])
    keys = [c.request.headers["Idempotency-Key"] for c in responses.calls]
    assert keys[0] == keys[1] != keys[2]


@responses.activate
def test_a_4xx_refuses_the_request_as_a_whole() -> None:
    responses.post(URL, status=422, json={"error": "schema"})
    with pytest.raises(PermanentError):
        _target().upsert([_lead("a")])
