"""The documented JSON Schema describes what the webhook target actually sends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from leadbridge.connectors.webhook.target import WebhookConfig, WebhookTarget
from leadbridge.core.domain.models import Lead, Stage

SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "webhook-payload.schema.json"


@responses.activate
def test_a_real_batch_validates_against_the_documented_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    responses.post("https://hooks.example.test/leads", json={})
    target = WebhookTarget(
        WebhookConfig(name="hook", url="https://hooks.example.test/leads", secret="s")
    )
    target.upsert(
        [
            Lead(
                lead_key="a" * 32,
                offer_key="c.o",
                email="a@x.io",
                first_name="Zoë",
                stage=Stage.MQL,
                score=60,
                actions=["PLT", "INS"],
                attribution={"mktcmpid": "spring"},
            )
        ]
    )
    body = json.loads(responses.calls[0].request.body)
    jsonschema.validate(body, json.loads(SCHEMA.read_text(encoding="utf-8")))
    assert body["leads"][0]["attribution"] == {"mktcmpid": "spring"}
