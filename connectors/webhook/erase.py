"""Webhook erasure: tell the receiver a person was forgotten (`person.erased`).

leadbridge can't delete what a receiver stored: it tells it, with a signed POST to the same
URL and headers as a batch of leads, carrying the ids of the records to forget and no
personal data (docs/webhook.md, "Erasure"; the body's schema is `$defs/person_erased` in
docs/webhook-payload.schema.json). The receiver is told about every record it was sent
(`notifies_only`): it decides what it holds, so core doesn't filter on "created".

The answer: 2xx is every record acknowledged, unless `results` lists one with `ok: false`
(`retryable: true` asks again later); 408/425/429/5xx retried; 401/403 is a secret the
receiver doesn't share (configuration: the target stops); any other 4xx refuses the event.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import requests

from leadbridge.core.connector import Eraser, FatalError, Outcome
from leadbridge.core.connector.transport import Transport, response_body
from leadbridge.core.domain.models import ErasureRecord, ErasureResult

EVENT = "person.erased"


class WebhookEraser(Eraser):
    """The erasure half of WebhookTarget (which supplies the transport and the config)."""

    notifies_only: ClassVar[bool] = True  # it deletes nothing: it tells, about every record
    name: str
    transport: Transport
    config: Any

    def erase(self, records: Sequence[ErasureRecord]) -> list[ErasureResult]:
        from leadbridge.connectors.webhook.target import SCHEMA_VERSION, sign

        ids = [{"kind": r.kind, "id": r.external_id} for r in records]
        body = orjson.dumps(
            {
                "schema_version": SCHEMA_VERSION,
                "event": EVENT,
                "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "records": ids,
            }
        )
        # The same records told again (a rerun after a crash) carry the same key.
        told = ";".join(sorted(f"{r.kind}:{r.external_id}" for r in records))
        timestamp = str(int(time.time()))
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": hashlib.sha256(f"{EVENT}:{told}".encode()).hexdigest(),
            "X-LeadBridge-Event": EVENT,
            "X-LeadBridge-Timestamp": timestamp,
            "X-LeadBridge-Signature": sign(self.config.secret.get_secret_value(), timestamp, body),
        }
        response = self.transport.request("POST", self.config.url, data=body, headers=headers)
        return self._told(records, response)

    def _told(
        self, records: Sequence[ErasureRecord], response: requests.Response
    ) -> list[ErasureResult]:
        status = response.status_code
        if status in (401, 403):
            raise FatalError(
                f"{self.name}: the receiver refused the {EVENT} event (HTTP {status}): check "
                "that it verifies with this target's secret"
            )
        if status >= 400:
            why = f"the receiver refused the {EVENT} event: HTTP {status}"
            return [_result(r, Outcome.PERMANENT, why) for r in records]
        answer = (
            response_body(response) if "json" in response.headers.get("Content-Type", "") else None
        )
        listed = answer.get("results") if isinstance(answer, dict) else None
        per_record = {str(item.get("id")): item for item in listed or [] if isinstance(item, dict)}
        return [_answer(r, per_record.get(r.external_id)) for r in records]


def _answer(record: ErasureRecord, item: dict[str, Any] | None) -> ErasureResult:
    if item is None or item.get("ok", True):
        return ErasureResult(external_id=record.external_id, ok=True)
    outcome = Outcome.RETRYABLE if item.get("retryable") else Outcome.PERMANENT
    return _result(record, outcome, str(item.get("error") or "refused by the receiver"))


def _result(record: ErasureRecord, outcome: Outcome, why: str) -> ErasureResult:
    return ErasureResult(external_id=record.external_id, ok=False, error_class=outcome, error=why)
