"""The webhook's erasure: a signed `person.erased` event, as docs/webhook.md documents it.

The receiver's side is leadbridge's own contract (docs/webhook.md, "Erasure"; the body's
schema: `$defs/person_erased` in docs/webhook-payload.schema.json), so these tests check the
request against that documentation and the answers it lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses

from leadbridge.connectors.webhook.sandbox import WebhookSandbox
from leadbridge.connectors.webhook.target import WebhookConfig, WebhookTarget, sign
from leadbridge.core.connector import Eraser, FatalError
from leadbridge.core.domain.models import ErasureRecord, Lead, Outcome, Stage

SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "webhook-payload.schema.json"
URL = "https://hooks.example.test/leads"
KEY_A, KEY_B = "a" * 32, "b" * 32


def _target() -> WebhookTarget:
    return WebhookTarget(WebhookConfig(name="hook", url=URL, secret="s3cret"))


def _records(*ids: str) -> list[ErasureRecord]:
    return [ErasureRecord(kind="lead", external_id=i) for i in ids]


def test_the_target_notifies_and_deletes_nothing_itself() -> None:
    target = _target()
    assert isinstance(target, Eraser)
    assert target.notifies_only is True


@responses.activate
def test_the_event_is_signed_carries_ids_only_and_matches_the_documented_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    responses.post(URL, status=204)
    results = _target().erase(_records(KEY_A, "crm-7"))

    request = responses.calls[0].request
    raw = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    headers = request.headers
    assert headers["X-LeadBridge-Signature"] == sign(
        "s3cret", headers["X-LeadBridge-Timestamp"], raw
    )
    assert headers["X-LeadBridge-Event"] == "person.erased"
    body = json.loads(raw)
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    event_schema = {"$schema": schema["$schema"], "$defs": schema["$defs"]}
    jsonschema.validate(body, {**event_schema, "$ref": "#/$defs/person_erased"})
    assert body["records"] == [{"kind": "lead", "id": KEY_A}, {"kind": "lead", "id": "crm-7"}]
    assert set(body) == {"schema_version", "event", "occurred_at", "records"}  # no PII
    assert all(r.ok for r in results)


@responses.activate
def test_the_same_records_told_again_carry_the_same_idempotency_key() -> None:
    responses.post(URL, status=200)
    _target().erase(_records(KEY_A, KEY_B))
    _target().erase(_records(KEY_B, KEY_A))
    first, again = (c.request.headers["Idempotency-Key"] for c in responses.calls)
    assert first == again


@responses.activate
def test_per_record_answers_retry_or_refuse_what_the_receiver_says() -> None:
    responses.post(
        URL,
        json={
            "results": [
                {"id": KEY_A, "ok": False, "error": "locked", "retryable": True},
                {"id": KEY_B, "ok": False, "error": "legal hold"},
            ]
        },
    )
    later, refused, done = _target().erase(_records(KEY_A, KEY_B, "c" * 32))
    assert later.error_class is Outcome.RETRYABLE
    assert refused.error_class is Outcome.PERMANENT and refused.error == "legal hold"
    assert done.ok


@responses.activate
def test_a_refused_signature_stops_the_target_and_a_refused_event_is_said() -> None:
    responses.post(URL, status=401, json={"error": "bad signature"})
    with pytest.raises(FatalError, match="401"):
        _target().erase(_records(KEY_A))
    responses.replace(responses.POST, URL, status=422, json={"error": "no"})
    [result] = _target().erase(_records(KEY_A))
    assert result.error_class is Outcome.PERMANENT and "422" in str(result.error)


@pytest.fixture
def receiver() -> Iterator[WebhookSandbox]:
    sandbox = WebhookSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def test_against_the_sandbox_the_receiver_forgets_the_records(receiver: WebhookSandbox) -> None:
    target = WebhookTarget(
        WebhookConfig(name="hook", url=f"{receiver.url}/leads", secret=receiver.secret)
    )
    leads = [
        Lead(lead_key=k, offer_key="c.o", email=f"{k[0]}@x.io", stage=Stage.MQL)
        for k in (KEY_A, KEY_B)
    ]
    pushed = target.upsert(leads)
    [result] = target.erase(_records(str(pushed[1].external_id)))
    assert result.ok
    assert set(receiver.records) == {KEY_A}
    assert receiver.events[0]["records"] == [{"kind": "lead", "id": KEY_B}]
