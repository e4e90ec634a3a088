"""A HubSpot portal on loopback: contacts batch upsert by email, 207 partial results,
forward-only lifecycle stage, search with opaque paging cursors, the contact properties API,
HubSpot's 429 with policyName when throttled, and on demand (`Faults.statuses`) the 423, 477
and Cloudflare 52x answers HubSpot's error-handling page lists."""

from __future__ import annotations

import base64
import binascii
import html
import itertools
import re
import time
import urllib.parse
import uuid
from datetime import UTC, datetime
from typing import Any

from leadbridge.connectors.hubspot.mapping import (
    DNC_PROPERTY,
    LEAD_KEY_PROPERTY,
    LIFECYCLE_VALUES,
    OFFERS_PROPERTY,
    SCORE_PROPERTIES,
    STAGE_PROPERTY,
)
from leadbridge.connectors.sandbox import Request, Response, Sandbox

REJECT_MARKER = "SANDBOX_REJECT"
LIFECYCLE_ORDER = [*LIFECYCLE_VALUES.values(), "evangelist", "other"]
LEAD_STATUSES = [
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
]
# name -> (type, fieldType, options): the portal's contact properties. leadbridge's own are
# there too (a portal after `config check --online --create-missing`); discard one from
# `sandbox.properties` to try that command, add a name to give the portal a custom one.
KNOWN_PROPERTIES: dict[str, tuple[str, str, list[str]]] = {
    "email": ("string", "text", []),
    "firstname": ("string", "text", []),
    "lastname": ("string", "text", []),
    "phone": ("string", "phonenumber", []),
    "mobilephone": ("string", "phonenumber", []),
    "company": ("string", "text", []),
    "jobtitle": ("string", "text", []),
    "country": ("string", "text", []),
    "message": ("string", "textarea", []),
    "lifecyclestage": ("enumeration", "radio", LIFECYCLE_ORDER),
    "hs_lead_status": ("enumeration", "radio", LEAD_STATUSES),
    "hubspot_owner_id": ("enumeration", "select", []),
    LEAD_KEY_PROPERTY: ("string", "text", []),
    STAGE_PROPERTY: ("string", "text", []),
    OFFERS_PROPERTY: ("string", "text", []),
    DNC_PROPERTY: ("bool", "booleancheckbox", ["true", "false"]),
    **{  # fit × engagement (docs/scoring.md)
        name: (kind, "text" if kind == "string" else "number", [])
        for name, (_, kind) in SCORE_PROPERTIES.items()
    },
    "hs_object_id": ("number", "number", []),
    "createdate": ("datetime", "date", []),
    "lastmodifieddate": ("datetime", "date", []),
}
# Source for 423, 477, 502/503/504, 521-526: developers.hubspot.com/docs/api-reference/
# error-handling. It gives each status and what to do, not the body; HubSpot's own answers
# (423, 477, 502/503/504) use its documented common error shape (status, message,
# correlationId; every field optional), 477 with the Retry-After the page promises.
HUBSPOT_FAULTS = {
    423: "The object is locked by a concurrent sync; wait at least 2 seconds between requests.",
    477: "This HubSpot account is being migrated between data hosting locations.",
    502: "Bad Gateway: processing limits reached; pause a few seconds, then retry.",
    503: "Service temporarily unavailable; pause a few seconds, then retry.",
    504: "Gateway Timeout: processing limits reached; pause a few seconds, then retry.",
}
# 521-526 come from Cloudflare, in front of api.hubapi.com, not from HubSpot: its error page
# (HTML by default; RFC 9457 JSON when the client asks for JSON), with Retry-After on the
# retryable ones (521-524) and none on the TLS ones (525, 526). Source:
# developers.cloudflare.com/fundamentals/reference/error-responses/
CLOUDFLARE_FAULTS = {
    521: ("Web server is down", "origin"),
    522: ("Connection timed out", "origin"),
    523: ("Origin is unreachable", "origin"),
    524: ("A timeout occurred", "origin"),
    525: ("SSL handshake failed", "ssl"),
    526: ("Invalid SSL certificate", "ssl"),
}
# Email subscription types of a fresh portal (ids as strings, as v3 answers them).
SUBSCRIPTION_TYPES = {"1001": "Marketing Information", "1002": "One to One"}
# HubSpot validates an email's form: INVALID_EMAIL (seen in 207 error bodies).
EMAIL_FORM = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class HubSpotSandbox(Sandbox):
    kind = "hubspot"

    def __init__(
        self, port: int = 0, *, token: str = "sandbox-private-app-token", latency_ms: float = 0.0
    ) -> None:
        self.token = token
        self.properties = set(KNOWN_PROPERTIES)  # the names upserts may write
        self.definitions: dict[str, dict[str, Any]] = {
            name: _property(name, *spec) for name, spec in KNOWN_PROPERTIES.items()
        }
        self.ids = itertools.count(1001)
        self.search_cap = 10_000  # HubSpot's: no search pages past it
        self.companies: dict[str, dict[str, Any]] = {}  # by id
        self.associations: set[tuple[str, str]] = set()  # (contact id, company id)
        self.blocklist: set[str] = set()  # emails GDPR-deleted by address, unknown then
        # issue 17: the portal's email subscription types (id -> name) and, per address
        # (lower case), the types it is NOT_SUBSCRIBED from, with each unsubscribe's body.
        self.subscription_types = dict(SUBSCRIPTION_TYPES)
        self.unsubscribed: dict[str, dict[str, dict[str, Any]]] = {}
        # Addresses (lower case) opted out of all email (v4 unsubscribe-all), and when.
        self.opted_out_of_all: dict[str, str] = {}
        super().__init__(port, latency_ms=latency_ms)

    def routes(self) -> None:
        self.route("POST", r"/crm/v3/objects/contacts/batch/upsert", self.batch_upsert)
        self.route("POST", r"/crm/v3/objects/contacts/search", self.search)
        self.route("POST", r"/crm/v3/objects/contacts/batch/read", self.batch_read)
        self.route("GET", r"/crm/v3/properties/contacts", self.read_properties)
        self.route("POST", r"/crm/v3/properties/contacts", self.create_property)
        self.route("POST", r"/crm/v3/objects/companies/search", self.search_companies)
        self.route("POST", r"/crm/v3/objects/companies/batch/create", self.create_companies)
        self.route(
            "POST",
            r"/crm/v4/associations/contacts/companies/batch/associate/default",
            self.associate,
        )
        self.route("POST", r"/crm/v3/objects/contacts/gdpr-delete", self.gdpr_delete)
        self.route(
            "GET",
            r"/communication-preferences/v3/status/email/(?P<email>[^/]+)",
            self.subscription_statuses,
        )
        self.route("POST", r"/communication-preferences/v3/unsubscribe", self.unsubscribe)
        all_path = r"/communication-preferences/v4/statuses/(?P<email>[^/]+)/unsubscribe-all"
        self.route("POST", all_path, self.unsubscribe_all)
        self.route("GET", all_path, self.unsubscribed_from_all)

    def fault_statuses(self) -> frozenset[int]:
        return super().fault_statuses() | set(HUBSPOT_FAULTS) | set(CLOUDFLARE_FAULTS)

    def fault_answer(self, status: int, request: Request) -> Response:
        if status in CLOUDFLARE_FAULTS:
            return self._cloudflare(status, request)
        if status not in HUBSPOT_FAULTS:
            return super().fault_answer(status, request)
        body = {
            "status": "error",
            "message": HUBSPOT_FAULTS[status],
            "correlationId": str(uuid.uuid4()),
        }
        # 477: "HubSpot will return a Retry-After response header indicating how many seconds
        # to wait before retrying the request (typically up to 24 hours)" (error-handling).
        headers = {"Retry-After": f"{self.faults.retry_after_s:g}"} if status == 477 else {}
        return Response(status, body, headers)

    def _cloudflare(self, status: int, request: Request) -> Response:
        """Cloudflare's own error answer (developers.cloudflare.com/fundamentals/reference/
        error-responses/): RFC 9457 JSON if the client's Accept asks for JSON, else its HTML
        page; Retry-After only where a retry can help (origin errors, not TLS ones)."""
        title, category = CLOUDFLARE_FAULTS[status]
        ray = f"{self.random.getrandbits(64):016x}"
        retryable = category == "origin"
        wait = f"{self.faults.retry_after_s:g}"
        headers = {"Retry-After": wait} if retryable else {}
        if "json" in (request.header("accept") or ""):
            problem: dict[str, Any] = {
                "type": f"https://developers.cloudflare.com/support/troubleshooting/"
                f"http-status-codes/cloudflare-5xx-errors/error-{status}/",
                "status": status,
                "title": f"Error {status}: {title}",
                "detail": f"api.hubapi.com | {status}: {title}",
                "instance": ray,
                "error_code": status,
                "error_category": category,
            }
            if retryable:
                problem["retry_after"] = self.faults.retry_after_s
            return Response(status, problem, headers)
        page = (
            f"<!DOCTYPE html><html><head><title>api.hubapi.com | {status}: "
            f"{html.escape(title)}</title></head><body><h1>Error {status}</h1>"
            f"<p>{html.escape(title)}</p><p>Cloudflare Ray ID: {ray}</p></body></html>"
        )
        return Response(status, raw=page.encode(), headers={"Content-Type": "text/html", **headers})

    def throttled(self) -> Response:
        """The ten-secondly 429. Body: developers.hubspot.com/docs/api/usage-details (as quoted
        in community.hubspot.com, "the 429 response will have the following format")."""
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

    def gdpr_delete(self, request: Request) -> Response:
        """`POST /crm/v3/objects/contacts/gdpr-delete` `{"objectId": id}` (or an email with
        `"idProperty": "email"`): 204, the contact and its associations gone for good
        (developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/gdpr/gdpr-
        delete-contact). An email it doesn't hold joins the blocklist (same page); an id it
        doesn't know is 404 OBJECT_NOT_FOUND."""
        if not self.bearer_ok(request):
            return self.token_expired()
        body = request.json() or {}
        wanted, by_email = str(body.get("objectId") or ""), body.get("idProperty") == "email"
        with self.lock:
            email = next(
                (
                    e
                    for e, r in self.records.items()
                    if (e.lower() == wanted.lower() if by_email else r.get("id") == wanted)
                ),
                None,
            )
            if email is None:
                if not by_email:
                    return _error(404, "OBJECT_NOT_FOUND", f"Object not found. objectId={wanted}")
                self.blocklist.add(wanted.lower())
                return Response(204)
            contact_id = self.records.pop(email)["id"]
            self.associations = {a for a in self.associations if a[0] != contact_id}
        return Response(204)

    def subscription_statuses(self, request: Request) -> Response:
        """`GET /communication-preferences/v3/status/email/{emailAddress}`: `recipient` and
        one `subscriptionStatuses` entry per type (id, name, description, status
        SUBSCRIBED | NOT_SUBSCRIBED, sourceOfStatus, legalBasis…). Shape: developers.hubspot
        .com/docs/api-reference/legacy/communication-preferences/v3/get-subscription."""
        if not self.bearer_ok(request):
            return self.token_expired()
        assert request.match is not None
        email = urllib.parse.unquote(request.match["email"]).lower()
        with self.lock:
            out = self.unsubscribed.get(email, {})
            statuses = [
                _subscription(type_id, name, out.get(type_id))
                for type_id, name in self.subscription_types.items()
            ]
        return Response(200, {"recipient": email, "subscriptionStatuses": statuses})

    def unsubscribe(self, request: Request) -> Response:
        """`POST /communication-preferences/v3/unsubscribe` `{emailAddress, subscriptionId,
        legalBasis, legalBasisExplanation}` → the type's status, NOT_SUBSCRIBED. Source:
        developers.hubspot.com/docs/api-reference/legacy/communication-preferences/v3/
        unsubscribe-contact. An unknown type is a 400 (the v3 API has no "all"); an address
        already out of it is a 400 too, as HubSpot refuses a no-op change."""
        if not self.bearer_ok(request):
            return self.token_expired()
        body = request.json() or {}
        email = str(body.get("emailAddress") or "").lower()
        type_id = str(body.get("subscriptionId") or "")
        if not EMAIL_FORM.match(email) or type_id not in self.subscription_types:
            return _error(400, "VALIDATION_ERROR", "emailAddress and a subscriptionId required")
        with self.lock:
            out = self.unsubscribed.setdefault(email, {})
            if type_id in out:
                return _error(400, "VALIDATION_ERROR", f"{email} is already unsubscribed")
            out[type_id] = body
        return Response(200, _subscription(type_id, self.subscription_types[type_id], body))

    def unsubscribe_all(self, request: Request) -> Response:
        """`POST /communication-preferences/v4/statuses/{subscriberIdString}/unsubscribe-all
        ?channel=EMAIL` (the path parameter: "the contact's email address"; `channel`
        required, EMAIL its only value) → `{"status": "COMPLETE", "results": [...],
        "startedAt", "completedAt", "requestedAt"}`, `results` empty unless `verbose=true`.
        Source: developers.hubspot.com/docs/api-reference/communication-preferences-
        subscriptions-v4/subscription-status/post-communication-preferences-v4-statuses-
        subscriberIdString-unsubscribe-all. Opted out of all email, the address's contact
        says so in `hs_email_optout` (modified now), as HubSpot's own opt-out does."""
        if not self.bearer_ok(request):
            return self.token_expired()
        assert request.match is not None
        email = urllib.parse.unquote(request.match["email"]).lower()
        channel = (request.query.get("channel") or [""])[0]
        if channel != "EMAIL" or not EMAIL_FORM.match(email):
            return _error(400, "VALIDATION_ERROR", "channel=EMAIL and an email address required")
        with self.lock:
            now = self._modified()
            self.opted_out_of_all.setdefault(email, now)
            record = self.records.get(email)
            if record is not None:
                record |= {"hs_email_optout": "true", "lastmodifieddate": now}
            results = [_wide_status(email, now, "UNSUBSCRIBED")]
        verbose = (request.query.get("verbose") or ["false"])[0] == "true"
        return Response(200, _operation(results if verbose else []))

    def unsubscribed_from_all(self, request: Request) -> Response:
        """`GET …/statuses/{subscriberIdString}/unsubscribe-all?channel=EMAIL`: one
        `results` entry (wideStatusType PORTAL_WIDE, status UNSUBSCRIBED) when the address is
        opted out of all email, "the response results array will be empty" when not (same
        source, the GET page)."""
        if not self.bearer_ok(request):
            return self.token_expired()
        assert request.match is not None
        email = urllib.parse.unquote(request.match["email"]).lower()
        with self.lock:
            since = self.opted_out_of_all.get(email)
        return Response(
            200, _operation([_wide_status(email, since, "UNSUBSCRIBED")] if since else [])
        )

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
        """POST /crm/v3/objects/contacts/search (developers.hubspot.com/docs/api-reference/
        2026-03/crm/search-the-crm): `paging.next.after` is an opaque cursor string — here
        base64 of the offset, the way HubSpot's look — so a client doing arithmetic on it
        fails here as it would there. No page reaches past the 10,000th result (a 400)."""
        if not self.bearer_ok(request):
            return self.token_expired()
        body = request.json() or {}
        after = _offset(body.get("after"))
        if after is None:
            return Response(
                400,
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Invalid input JSON on line 1: after is not a valid paging cursor",
                    "correlationId": str(uuid.uuid4()),
                },
            )
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
            result["paging"] = {"next": {"after": _cursor(after + limit)}}
        return Response(200, result)

    # --- properties API ------------------------------------------------------------------

    # --- companies and associations (companies: associate) ------------------------------

    def search_companies(self, request: Request) -> Response:
        """Companies by `domain IN (…)` (the search API's IN operator: developers.hubspot.com/
        docs/api-reference/latest/crm/search-the-crm), with the requested properties."""
        if not self.bearer_ok(request):
            return self.token_expired()
        body = request.json() or {}
        filters = [f for g in body.get("filterGroups", []) for f in g.get("filters", [])]
        wanted = body.get("properties") or ["domain"]
        with self.lock:
            rows = [
                {"id": c["id"], "properties": {p: c.get(p) for p in wanted}}
                for c in self.companies.values()
                if all(
                    f.get("operator") != "IN"
                    or str(c.get(f.get("propertyName")) or "").lower()
                    in {str(v).lower() for v in f.get("values") or []}
                    for f in filters
                )
            ]
        return Response(200, {"total": len(rows), "results": rows[: int(body.get("limit") or 10)]})

    def create_companies(self, request: Request) -> Response:
        """`batch/create`: 201 with every new company (`results`, each with its id and
        properties); HubSpot doesn't refuse a second company of one domain (it is no unique
        property), which is why leadbridge searches first."""
        if not self.bearer_ok(request):
            return self.token_expired()
        results = []
        with self.lock:
            for item in (request.json() or {}).get("inputs") or []:
                company_id = str(next(self.ids))
                properties = dict(item.get("properties") or {})
                self.companies[company_id] = {"id": company_id, **properties}
                results.append(
                    {
                        "id": company_id,
                        "properties": properties,
                        "objectWriteTraceId": item.get("objectWriteTraceId"),
                    }
                )
        return Response(201, {"status": "COMPLETE", "results": results})

    def associate(self, request: Request) -> Response:
        """v4 `batch/associate/default`: the unlabelled contact-to-company association (type
        279, HUBSPOT_DEFINED); a pair associated already stays one association. An id that
        doesn't exist is an error of the 207 for that input."""
        if not self.bearer_ok(request):
            return self.token_expired()
        results, errors = [], []
        with self.lock:
            contact_ids = {r["id"] for r in self.records.values()}
            for item in (request.json() or {}).get("inputs") or []:
                contact = str((item.get("from") or {}).get("id"))
                company = str((item.get("to") or {}).get("id"))
                if contact not in contact_ids or company not in self.companies:
                    errors.append(
                        {
                            "status": "error",
                            "category": "VALIDATION_ERROR",
                            "message": f"No contact with ID {contact} or company with ID {company}",
                            "context": {"fromObjectId": [contact], "toObjectId": [company]},
                        }
                    )
                    continue
                self.associations.add((contact, company))
                results.append(
                    {
                        "from": {"id": contact},
                        "to": {"id": company},
                        "associationSpec": {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": 279,
                        },
                    }
                )
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            body |= {"errors": errors, "numErrors": len(errors)}
        return Response(207 if errors else 200, body)

    def read_properties(self, request: Request) -> Response:
        """GET /crm/v3/properties/contacts: `{"results": [property, ...]}`. Shape:
        developers.hubspot.com/docs/api-reference/legacy/crm/properties/get-properties"""
        if not self.bearer_ok(request):
            return self.token_expired()
        with self.lock:
            listed = [
                self.definitions.get(name) or _property(name, "string", "text", [], custom=True)
                for name in sorted(self.properties)
            ]
        return Response(200, {"results": listed})

    def create_property(self, request: Request) -> Response:
        """POST /crm/v3/properties/contacts: 201 with the new property; 409 when the name is
        taken; 400 when name, label, type, fieldType or groupName is missing. Shapes:
        developers.hubspot.com/docs/api-reference/latest/crm/properties/create-property (and
        the 409 on a taken name from developers.hubspot.com/docs/methods/contacts/v2/
        create_contacts_property)."""
        if not self.bearer_ok(request):
            return self.token_expired()
        body = request.json() or {}
        missing = [
            key for key in ("name", "label", "type", "fieldType", "groupName") if not body.get(key)
        ]
        if missing:
            return _error(400, "VALIDATION_ERROR", f"missing required fields: {missing}")
        name = str(body["name"])
        with self.lock:
            if name in self.properties:
                return _error(409, "CONFLICT", f"A property named '{name}' already exists.")
            options = [o.get("value") for o in body.get("options") or [] if isinstance(o, dict)]
            created = _property(name, body["type"], body["fieldType"], options, custom=True)
            created |= {"label": body["label"], "groupName": body["groupName"]}
            self.properties.add(name)
            self.definitions[name] = created
        return Response(201, created)

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


def _cursor(offset: int) -> str:
    """An opaque paging cursor the way HubSpot's look: base64 of the offset."""
    return base64.b64encode(f"{offset}\n".encode()).decode()


def _offset(cursor: Any) -> int | None:
    """The offset a cursor of ours stands for; None when it isn't one (a 400)."""
    if cursor in (None, ""):
        return 0
    try:
        text = base64.b64decode(str(cursor), validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _property(
    name: str, kind: str, field_type: str, options: list[str], *, custom: bool = False
) -> dict[str, Any]:
    """A contact property as the properties API describes it."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "name": name,
        "label": name.replace("_", " ").title(),
        "type": kind,
        "fieldType": field_type,
        "groupName": "contactinformation",
        "description": "",
        "displayOrder": -1,
        "hasUniqueValue": False,
        "hidden": False,
        "formField": not custom and kind != "datetime",
        "hubspotDefined": not custom,
        "createdAt": now,
        "updatedAt": now,
        "archived": False,
        "modificationMetadata": {
            "archivable": custom,
            "readOnlyDefinition": not custom,
            "readOnlyValue": name in ("hs_object_id", "createdate", "lastmodifieddate"),
        },
        "options": [
            {
                "label": str(v).replace("_", " ").title(),
                "value": v,
                "displayOrder": i,
                "hidden": False,
            }
            for i, v in enumerate(options)
        ],
    }


def _subscription(type_id: str, name: str, unsubscribe: dict[str, Any] | None) -> dict[str, Any]:
    """One v3 subscription status (same source as `subscription_statuses`)."""
    status: dict[str, Any] = {
        "id": type_id,
        "name": name,
        "description": f"{name} emails",
        "status": "NOT_SUBSCRIBED" if unsubscribe is not None else "SUBSCRIBED",
        "sourceOfStatus": "SUBSCRIPTION_STATUS",
    }
    if unsubscribe and unsubscribe.get("legalBasis"):
        status["legalBasis"] = unsubscribe["legalBasis"]
        status["legalBasisExplanation"] = unsubscribe.get("legalBasisExplanation")
    return status


def _wide_status(email: str, at: str, status: str) -> dict[str, Any]:
    """One v4 wide (all-email) status, as the unsubscribe-all GET answers it."""
    return {
        "subscriberIdString": email,
        "channel": "EMAIL",
        "status": status,
        "wideStatusType": "PORTAL_WIDE",
        "timestamp": at,
    }


def _operation(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The v4 status endpoints' envelope: a completed operation and its results."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "status": "COMPLETE",
        "results": results,
        "requestedAt": now,
        "startedAt": now,
        "completedAt": now,
    }


def _error(status: int, category: str, message: str) -> Response:
    """HubSpot's common error shape (developers.hubspot.com/docs/api-reference/error-handling)."""
    return Response(
        status,
        {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        },
    )


def _match(record: dict[str, Any], condition: dict[str, Any]) -> bool:
    name, operator = condition.get("propertyName"), condition.get("operator")
    if operator == "HAS_PROPERTY":
        return bool(record.get(name))
    if name == "lastmodifieddate" and operator == "GTE":
        value = record.get(name) or ""
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
        return stamp >= int(condition["value"])
    return True
