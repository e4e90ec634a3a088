"""The webhook's person and company (`organization`) blocks: in the documented schema, the
same keys for one person's two leads and for colleagues at one company."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from leadbridge.connectors.webhook.target import WebhookConfig, WebhookTarget
from leadbridge.core.domain.identity import company_key, person_key
from leadbridge.core.domain.models import Lead

SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "webhook-payload.schema.json"
HOOK = "https://hooks.example.test/leads"


def _lead(key: str, email: str, company: str | None) -> Lead:
    return Lead(lead_key=key * 32, offer_key="c.o", email=email, last_name="Lee", company=company)


@responses.activate
def test_person_and_company_blocks_validate_and_link_leads() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    responses.post(HOOK, json={})
    target = WebhookTarget(WebhookConfig(name="hook", url=HOOK, secret="s"))
    target.upsert(
        [
            _lead("a", "ann@contoso.com", "Contoso Ltd"),
            _lead("b", "ann@contoso.com", "Contoso Ltd"),
            _lead("c", "bob@contoso.com", "CONTOSO LTD."),
            _lead("d", "eve@gmail.com", None),
        ]
    )
    body = json.loads(responses.calls[0].request.body)
    jsonschema.validate(body, json.loads(SCHEMA.read_text(encoding="utf-8")))
    ann, ann_again, bob, eve = body["leads"]
    assert ann["person"] == {
        "key": person_key("ann@contoso.com"),
        "email": "ann@contoso.com",
        "last_name": "Lee",
    }
    assert ann_again["person"] == ann["person"]
    assert bob["person"]["key"] != ann["person"]["key"]
    assert ann["organization"] == {
        "key": company_key("Contoso", "x@contoso.com"),
        "name": "Contoso Ltd",
        "domain": "contoso.com",
    }
    assert bob["organization"]["key"] == ann["organization"]["key"]
    assert "organization" not in eve and eve["person"]["email"] == "eve@gmail.com"
