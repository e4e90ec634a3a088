"""A webhook receiver on loopback: checks the signature, stores leads by key, answers per record."""

from __future__ import annotations

import hmac
import time
from typing import Any

from leadbridge.connectors.sandbox import Request, Response, Sandbox
from leadbridge.connectors.webhook.target import sign

# Any lead carrying it is refused, as a receiver's own validation would.
REJECT_MARKER = "SANDBOX_REJECT"


class WebhookSandbox(Sandbox):
    kind = "webhook"

    def __init__(
        self, port: int = 0, *, secret: str = "sandbox-webhook-secret", latency_ms: float = 0.0
    ) -> None:
        self.secret = secret
        self.idempotency_keys: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []  # person.erased events received
        super().__init__(port, latency_ms=latency_ms)

    def routes(self) -> None:
        self.route("POST", "/leads", self.receive)

    def throttled(self) -> Response:
        return Response(503, {"error": "busy"}, {"Retry-After": f"{self.faults.retry_after_s:g}"})

    def receive(self, request: Request) -> Response:
        timestamp = request.header("x-leadbridge-timestamp") or ""
        expected = sign(self.secret, timestamp, request.body)
        if not hmac.compare_digest(expected, request.header("x-leadbridge-signature") or ""):
            return Response(401, {"error": "bad signature"})
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            return Response(401, {"error": "stale timestamp"})
        if (request.json() or {}).get("event") == "person.erased":
            return self._erased(request.json())
        key = request.header("idempotency-key")
        with self.lock:
            if key and key in self.idempotency_keys:
                return Response(200, self.idempotency_keys[key])
            results = [self._store(lead) for lead in request.json().get("leads", [])]
            answer = {"results": results}
            if key:
                self.idempotency_keys[key] = answer
        return Response(200, answer)

    def _erased(self, event: dict[str, Any]) -> Response:
        """A `person.erased` event (docs/webhook.md): forget each record named, by the id this
        receiver answered for it (the lead key), and keep the event, as a receiver's log."""
        records = [r for r in event.get("records") or [] if isinstance(r, dict)]
        with self.lock:
            for record in records:
                self.records.pop(record.get("id"), None)
            self.events.append(event)
        return Response(200, {"results": [{"id": r.get("id"), "ok": True} for r in records]})

    def _store(self, lead: dict[str, Any]) -> dict[str, Any]:
        key = lead.get("lead_key")
        if any(isinstance(v, str) and REJECT_MARKER in v for v in lead.values()):
            return {"lead_key": key, "ok": False, "error": "rejected by validation"}
        existing = self.records.get(key)
        self.records[key] = {
            **(existing or {}),
            **lead,
            "_writes": (existing or {}).get("_writes", 0) + 1,
            "_created_at": (existing or {}).get("_created_at", time.time()),
        }
        return {"lead_key": key, "ok": True, "id": key}
