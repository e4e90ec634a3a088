"""A HubSpot portal on loopback: contacts batch upsert by email, 207 partial results,
forward-only lifecycle stage, and HubSpot's 429 with policyName when throttled."""

from __future__ import annotations

import itertools
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from leadbridge.connectors.hubspot.mapping import LIFECYCLE_VALUES
from leadbridge.connectors.sandbox import Request, Response, Sandbox

REJECT_MARKER = "SANDBOX_REJECT"
LIFECYCLE_ORDER = [*LIFECYCLE_VALUES.values(), "evangelist", "other"]
KNOWN_PROPERTIES = {
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "company",
    "jobtitle",
    "country",
    "message",
    "lifecyclestage",
    "hs_lead_status",
    "hubspot_owner_id",
    "leadbridge_lead_key",
    "leadbridge_stage",
    "leadbridge_offers",
    "leadbridge_marketplace_dnc",
    "hs_object_id",
    "createdate",
    "lastmodifieddate",
}
# HubSpot validates an email's form: INVALID_EMAIL (seen in 207 error bodies).
EMAIL_FORM = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class HubSpotSandbox(Sandbox):
    kind = "hubspot"

    def __init__(
        self, port: int = 0, *, token: str = "sandbox-private-app-token", latency_ms: float = 0.0
    ) -> None:
        self.token = token
        self.properties = set(KNOWN_PROPERTIES)
        self.ids = itertools.count(1001)
        self.search_cap = 10_000  # HubSpot's: no search pages past it
        super().__init__(port, latency_ms=latency_ms)

    def routes(self) -> None:
        self.route("POST", r"/crm/v3/objects/contacts/batch/upsert", self.batch_upsert)
        self.route("POST", r"/crm/v3/objects/contacts/search", self.search)
        self.route("POST", r"/crm/v3/objects/contacts/batch/read", self.batch_read)

    def throttled(self) -> Response:
        return Response(
            429,
            {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "TEN_SECONDLY_ROLLING",
            },
            {
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                "Retry-After": f"{self.faults.retry_after_s:g}",
            },
        )

    def token_expired(self) -> Response:
        return Response(
            401,
            {
                "status": "error",
                "category": "INVALID_AUTHENTICATION",
                "message": "Authentication credentials not found.",
            },
        )

    def bearer_ok(self, request: Request) -> bool:
        return request.header("authorization") == f"Bearer {self.token}"

    def batch_upsert(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        inputs = (request.json() or {}).get("inputs") or []
        if len(inputs) > 100:
            return Response(
                400,
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Batch size cannot exceed 100",
                },
            )
        ids = [i.get("id") for i in inputs]
        if len(set(ids)) != len(ids):
            return Response(
                400,
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Duplicate IDs found in batch input",
                },
            )
        results, errors = [], []
        with self.lock:
            for item in inputs:
                error = self._check(item)
                if error:
                    errors.append(
                        {
                            "status": "error",
                            **error,
                            "context": {"objectWriteTraceId": [item.get("objectWriteTraceId")]},
                        }
                    )
                else:
                    results.append(self._upsert(item))
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            body |= {"errors": errors, "numErrors": len(errors)}
        return Response(207 if errors else 200, body)

    def _check(self, item: dict[str, Any]) -> dict[str, str] | None:
        if item.get("idProperty") != "email" or not item.get("id"):
            return {"category": "VALIDATION_ERROR", "message": "idProperty must be email"}
        properties = item.get("properties") or {}
        unknown = sorted(set(properties) - self.properties)
        if unknown:
            return {
                "category": "VALIDATION_ERROR",
                "message": f"Property values were not valid: {unknown} do not exist",
                "subCategory": "PROPERTY_DOESNT_EXIST",
            }
        email = properties.get("email", item.get("id"))
        if email and not EMAIL_FORM.match(str(email)):
            return {
                "category": "VALIDATION_ERROR",
                "message": "Property values were not valid: "
                f'[{{"isValid":false,"message":"Email address {email} is invalid",'
                '"error":"INVALID_EMAIL","name":"email"}]',
            }
        if any(isinstance(v, str) and REJECT_MARKER in v for v in properties.values()):
            return {"category": "VALIDATION_ERROR", "message": "rejected by a portal rule"}
        return None

    def _upsert(self, item: dict[str, Any]) -> dict[str, Any]:
        email = item["id"]
        properties = dict(item.get("properties") or {})
        existing = self.records.get(email)
        new = existing is None
        if new:
            existing = self.records[email] = {
                "id": str(next(self.ids)),
                "email": email,
                "_writes": 0,
                "_created_at": time.time(),
                "lastmodifieddate": self._modified(),
            }
        stage = properties.pop("lifecyclestage", None)
        if stage is not None:
            existing["lifecyclestage"] = self._lifecycle(existing.get("lifecyclestage"), stage)
        existing.update(properties)
        existing["_writes"] += 1
        existing["lastmodifieddate"] = self._modified()
        return {
            "id": existing["id"],
            "new": new,
            "objectWriteTraceId": item.get("objectWriteTraceId"),
            "properties": {k: v for k, v in existing.items() if not k.startswith("_")},
        }

    def batch_read(self, request: Request) -> Response:
        """Contacts by email. Shape: developers.hubspot.com/docs/api-reference/latest/crm/
        objects/objects/batch/get-objects — `results` with the requested properties (null
        where unset); ids it doesn't know come back as a 207 OBJECT_NOT_FOUND error."""
        if not self.bearer_ok(request):
            return self.token_expired()
        body = request.json() or {}
        inputs = body.get("inputs") or []
        if body.get("idProperty") != "email" or len(inputs) > 100:
            return Response(
                400,
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "batch read takes at most 100 inputs keyed by a unique property",
                },
            )
        wanted = set(body.get("properties") or []) | {"hs_object_id", "createdate"}
        results, missing = [], []
        with self.lock:
            for item in inputs:
                record = self.records.get(str(item.get("id", "")).lower())
                if record is None:
                    missing.append(item.get("id"))
                    continue
                results.append(
                    {
                        "id": record["id"],
                        "properties": {
                            name: record.get(name, record["id"] if name == "hs_object_id" else None)
                            for name in sorted(wanted)
                        },
                        "archived": False,
                    }
                )
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            answer |= {
                "numErrors": 1,
                "errors": [
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": "Could not get some CONTACT objects, they may be deleted or "
                        "not exist. Check that ids are valid.",
                        "context": {"ids": missing},
                    }
                ],
            }
        return Response(207 if missing else 200, answer)

    def _modified(self) -> str:
        """lastmodifieddate: now, strictly increasing, ISO-8601 with milliseconds."""
        now = max(time.time(), getattr(self, "_last_modified", 0.0) + 0.001)
        self._last_modified = now
        return (
            datetime.fromtimestamp(now, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def search(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        body = request.json() or {}
        after = int(body.get("after") or 0)
        limit = min(int(body.get("limit") or 10), 200)
        if after + limit > self.search_cap:
            return Response(
                400,
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": f"paging beyond {self.search_cap} results is not supported",
                },
            )
        filters = [f for g in body.get("filterGroups", []) for f in g.get("filters", [])]
        with self.lock:
            rows = [r for r in self.records.values() if all(_match(r, f) for f in filters)]
            rows.sort(key=lambda r: r.get("lastmodifieddate", ""))
            wanted = body.get("properties") or ["email"]
            page = [
                {"id": r["id"], "properties": {p: r.get(p) for p in wanted}}
                for r in rows[after : after + limit]
            ]
        result: dict[str, Any] = {"total": len(rows), "results": page}
        if after + limit < len(rows):
            result["paging"] = {"next": {"after": str(after + limit)}}
        return Response(200, result)

    def admin_extra(self, action: str, request: Request) -> Response | None:
        if action == "stage" and request.method == "POST":
            # A HubSpot user editing the contact (the UI lets people move stages back).
            body = request.json() or {}
            with self.lock:
                record = self.records.get(body.get("email"))
                if record is None:
                    return Response(404, {"error": "no such contact"})
                record.update(body.get("properties") or {})
                record["lastmodifieddate"] = self._modified()
            return Response(200, record)
        return None

    @staticmethod
    def _lifecycle(current: str | None, requested: str) -> str:
        """HubSpot moves lifecyclestage forward only; backward needs a clear ("") first."""
        if requested == "" or not current:
            return requested
        if (
            requested in LIFECYCLE_ORDER
            and current in LIFECYCLE_ORDER
            and (LIFECYCLE_ORDER.index(requested) < LIFECYCLE_ORDER.index(current))
        ):
            return current
        return requested


def _match(record: dict[str, Any], condition: dict[str, Any]) -> bool:
    name, operator = condition.get("propertyName"), condition.get("operator")
    if operator == "HAS_PROPERTY":
        return bool(record.get(name))
    if name == "lastmodifieddate" and operator == "GTE":
        value = record.get(name) or ""
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
        return stamp >= int(condition["value"])
    return True
