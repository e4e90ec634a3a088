"""The webhook target: a JSON batch POST to any HTTPS endpoint, signed and idempotent.

The receiver's contract is in docs/webhook.md and the body's JSON Schema in
docs/webhook-payload.schema.json. Headers: `Idempotency-Key` (the same for a re-sent batch
of the same lead states), `X-LeadBridge-Timestamp` (Unix seconds) and
`X-LeadBridge-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson
import requests
from pydantic import Field, SecretStr

from leadbridge.connectors.webhook.erase import WebhookEraser
from leadbridge.connectors.webhook.mapping import FIELD_MAP, SCORE_FIELDS
from leadbridge.connectors.webhook.people import company_block, person_block
from leadbridge.core.connector import (
    HttpTarget,
    Link,
    Outcome,
    PermanentError,
    Sandboxed,
    SandboxRecord,
    TargetConfig,
)
from leadbridge.core.connector.transport import response_body
from leadbridge.core.domain.mapping import FieldMap, FieldSpec, payload_hash
from leadbridge.core.domain.models import Lead, PushResult

SCHEMA_VERSION = 1


class WebhookConfig(TargetConfig):
    kind: str = "webhook"
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr
    headers: dict[str, str] = Field(default_factory=dict)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={digest.hexdigest()}"


class WebhookTarget(HttpTarget, Sandboxed, WebhookEraser):
    Config: ClassVar[type[WebhookConfig]] = WebhookConfig
    max_batch: ClassVar[int] = 500
    field_map: ClassVar[FieldMap] = FIELD_MAP
    score_fields: ClassVar[dict[str, str | FieldSpec]] = SCORE_FIELDS
    default_stage_sync: ClassVar[str] = "push"  # an endpoint has nothing to read stages from
    reads_per_batch: ClassVar[int] = 0  # the receiver decides what to keep: nothing to read

    config: WebhookConfig

    def payload(self, lead: Lead) -> dict[str, Any]:
        fields = super().payload(lead)
        if lead.attribution:
            fields["attribution"] = dict(lead.attribution)
        for name, block in (("person", person_block(lead)), ("organization", company_block(lead))):
            if block:
                fields[name] = block
        return fields

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        payloads = [self.payload(lead) for lead in leads]
        body = orjson.dumps({"schema_version": SCHEMA_VERSION, "leads": payloads})
        timestamp = str(int(time.time()))
        key = hashlib.sha256(
            "".join(
                f"{lead.lead_key}:{payload_hash(p)};"
                for lead, p in zip(leads, payloads, strict=True)
            ).encode()
        ).hexdigest()
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "X-LeadBridge-Timestamp": timestamp,
            "X-LeadBridge-Signature": sign(self.config.secret.get_secret_value(), timestamp, body),
        }
        response = self.transport.request("POST", self.config.url, data=body, headers=headers)
        return self._results(leads, response)

    def _results(self, leads: Sequence[Lead], response: requests.Response) -> list[PushResult]:
        if response.status_code >= 400:
            raise PermanentError(
                f"{self.name}: HTTP {response.status_code}", body=response_body(response)
            )
        per_record = (
            {
                r.get("lead_key"): r
                for r in (response_body(response) or {}).get("results", [])
                if isinstance(r, dict)
            }
            if _is_json(response)
            else {}
        )
        results = []
        for lead in leads:
            record = per_record.get(lead.lead_key)
            if record is None or record.get("ok", True):
                external = record.get("id") if record else None
                results.append(
                    PushResult(
                        lead_key=lead.lead_key, ok=True, external_id=external or lead.lead_key
                    )
                )
            else:
                results.append(
                    PushResult(
                        lead_key=lead.lead_key,
                        ok=False,
                        error_class=Outcome.RETRYABLE
                        if record.get("retryable")
                        else Outcome.PERMANENT,
                        error=str(record.get("error") or "rejected by the endpoint"),
                        body=record,
                    )
                )
        return results

    # --- sandbox (demo, `leadbridge sandbox`, tests): the server is loaded only when asked for

    default_name: ClassVar[str] = "hook"

    @classmethod
    def sandbox(cls, *, port: int = 0, latency_ms: float = 0.0) -> Any:
        from leadbridge.connectors.webhook import sandbox

        return sandbox.WebhookSandbox(port=port, latency_ms=latency_ms)

    @classmethod
    def sandbox_entry(cls, sandbox: Any, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "kind": "webhook",
            "url": f"{sandbox.url}/leads",
            "secret": sandbox.secret,
        }

    @classmethod
    def sandbox_records(cls, sandbox: Any, config: Any) -> list[SandboxRecord]:
        return [
            SandboxRecord(
                name=str(r.get("last_name") or ""),
                email=str(r.get("email") or ""),
                stage=str(r.get("stage") or ""),
            )
            for r in list(sandbox.records.values())
        ]


def _is_json(response: requests.Response) -> bool:
    return "json" in response.headers.get("Content-Type", "")
