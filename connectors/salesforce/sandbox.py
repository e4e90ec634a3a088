"""A Salesforce org on loopback: OAuth client credentials, Lead collections upsert, limits.

Speaks the subset leadbridge uses with Salesforce's own shapes: per-record UpsertResult
objects, errorCode bodies, `Sforce-Limit-Info`, 403 REQUEST_LIMIT_EXCEEDED when throttled,
401 INVALID_SESSION_ID for a stale token. A record can be converted (read-only) through the
admin API, as a salesperson converting a Lead would.
"""

from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, datetime
from typing import Any

from leadbridge.connectors.sandbox import Request, Response, Sandbox, form

REJECT_MARKER = "SANDBOX_REJECT"  # a custom validation rule of this org refuses it
LENGTHS = {
    "FirstName": 40,
    "LastName": 80,
    "Company": 255,
    "Title": 128,
    "Email": 80,
    "Phone": 40,
    "Country": 80,
    "Description": 32000,
}
DAILY_LIMIT = 15000
LEAD_FIELDS = (
    "Id",
    "FirstName",
    "LastName",
    "Email",
    "Phone",
    "MobilePhone",
    "Company",
    "Title",
    "Country",
    "CountryCode",
    "Description",
    "LeadSource",
    "Status",
    "Rating",
    "HasOptedOutOfEmail",
    "DoNotCall",
    "OwnerId",
    "IsConverted",
    "ConvertedOpportunityId",
    "SystemModstamp",
    "Lead_Stage__c",
    "HasOptedOutOfFax",
    "LeadBridge_Marketplace_DNC__c",
)
# Salesforce checks an email's form on write: INVALID_EMAIL_ADDRESS (REST errorcodes.htm).
EMAIL_FORM = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
IN_QUERY = re.compile(
    r"^SELECT (?P<columns>[\w, ]+) FROM Lead WHERE (?P<field>\w+) IN \((?P<values>.*)\)$"
)


class SalesforceSandbox(Sandbox):
    kind = "salesforce"

    def __init__(
        self,
        port: int = 0,
        *,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",
        external_id_field: str = "LeadBridge_Key__c",
        latency_ms: float = 0.0,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.external_id_field = external_id_field
        self.ids = itertools.count(1)
        self.auto_assign_headers: list[str | None] = []
        self.page_size = 2000
        self.fields = set(LEAD_FIELDS) | {external_id_field}  # what `describe` would list
        self.cursors: dict[str, list[dict[str, Any]]] = {}
        super().__init__(port, latency_ms=latency_ms)

    def routes(self) -> None:
        self.route("POST", "/services/oauth2/token", self.token)
        self.route("GET", r"/services/data/v[\d.]+/query", self.query)
        self.route("GET", r"/services/data/v[\d.]+/query/(?P<cursor>[^/]+)", self.query_more)
        self.route(
            "PATCH",
            r"/services/data/v[\d.]+/composite/sobjects/Lead/(?P<field>[^/]+)",
            self.upsert_collection,
        )

    def is_api(self, request: Request) -> bool:
        return not request.path.startswith("/services/oauth2/")

    def throttled(self) -> Response:
        return Response(
            403,
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        )

    def token_expired(self) -> Response:
        return Response(
            401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        )

    def token(self, request: Request) -> Response:
        data = form(request)
        if data.get("grant_type") != "client_credentials":
            return Response(400, {"error": "unsupported_grant_type"})
        if (data.get("client_id"), data.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return Response(
                400, {"error": "invalid_client", "error_description": "invalid client credentials"}
            )
        return Response(
            200,
            {
                "access_token": self.issue_token(),
                "instance_url": self.url,
                "token_type": "Bearer",
                "id": f"{self.url}/id/00D/005",
            },
        )

    def upsert_collection(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        field = request.match["field"]
        if field != self.external_id_field:
            return Response(
                404,
                [{"errorCode": "NOT_FOUND", "message": f"Field {field} does not exist on Lead"}],
            )
        body = request.json() or {}
        records = body.get("records") or []
        if len(records) > 200:
            return Response(
                400,
                [
                    {
                        "errorCode": "EXCEEDED_ID_LIMIT",
                        "message": "record limit reached. cannot submit more than 200 "
                        "records into this call",
                    }
                ],
            )
        unknown = sorted({k for r in records for k in r} - self.fields - {"attributes"})
        if unknown:  # like Salesforce: the whole request is refused
            return Response(
                400,
                [
                    {
                        "errorCode": "INVALID_FIELD",
                        "message": f"No such column '{unknown[0]}' on sobject of type Lead",
                    }
                ],
            )
        self.auto_assign_headers.append(request.header("sforce-auto-assign"))
        with self.lock:
            results = [self._upsert(record, field) for record in records]
            used = len(self.request_log) + 1
        return Response(200, results, {"Sforce-Limit-Info": f"api-usage={used}/{DAILY_LIMIT}"})

    def _upsert(self, record: dict[str, Any], field: str) -> dict[str, Any]:
        key = record.get(field)
        fields = {k: v for k, v in record.items() if k not in ("attributes", field)}
        existing = self.records.get(key)
        errors = self._validate(fields, existing)
        if errors:
            return {"id": existing["Id"] if existing else None, "success": False, "errors": errors}
        if existing is None:
            record_id = f"00Q{next(self.ids):015d}"
            self.records[key] = {
                "Id": record_id,
                field: key,
                "IsConverted": False,
                "_writes": 1,
                "_created_at": time.time(),
                "SystemModstamp": self._stamp(),
                **fields,
            }
            return {"id": record_id, "success": True, "errors": [], "created": True}
        existing.update(fields)
        existing["_writes"] += 1
        existing["SystemModstamp"] = self._stamp()
        return {"id": existing["Id"], "success": True, "errors": [], "created": False}

    def _validate(
        self, fields: dict[str, Any], existing: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        if existing and existing.get("IsConverted"):
            return [
                {
                    "statusCode": "CANNOT_UPDATE_CONVERTED_LEAD",
                    "message": "cannot reference converted lead",
                    "fields": [],
                }
            ]
        merged = {**(existing or {}), **fields}
        email = fields.get("Email")
        if email and not EMAIL_FORM.match(str(email)):
            return [
                {
                    "statusCode": "INVALID_EMAIL_ADDRESS",
                    "message": f"Email: invalid email address: {email}",
                    "fields": ["Email"],
                }
            ]
        # Required on create; an update that leaves them alone passes (dome-upsert: the update
        # path writes only the fields in the body), one that blanks them does not.
        missing = [f for f in ("LastName", "Company") if not merged.get(f)]
        if missing:
            return [
                {
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "message": f"Required fields are missing: [{', '.join(missing)}]",
                    "fields": missing,
                }
            ]
        for name, limit in LENGTHS.items():
            value = fields.get(name)
            if isinstance(value, str) and len(value) > limit:
                return [
                    {
                        "statusCode": "STRING_TOO_LONG",
                        "message": f"{name}: data value too large",
                        "fields": [name],
                    }
                ]
        if any(isinstance(v, str) and REJECT_MARKER in v for v in fields.values()):
            return [
                {
                    "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    "message": "Company looks like a test record",
                    "fields": ["Company"],
                }
            ]
        return []

    # --- SOQL, the subset leadbridge sends ------------------------------------------------

    def _stamp(self) -> str:
        """SystemModstamp: now, strictly increasing, in Salesforce's own format."""
        now = max(time.time(), getattr(self, "_last_stamp", 0.0) + 0.001)
        self._last_stamp = now
        moment = datetime.fromtimestamp(now, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"

    def query(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        soql = request.query.get("q", [""])[0]
        by_key = IN_QUERY.match(soql)
        if by_key:
            return self._query_by_key(by_key)
        since = re.search(r"SystemModstamp >= (\S+)", soql)
        if not soql.startswith("SELECT") or " FROM Lead " not in soql or since is None:
            return Response(400, [{"errorCode": "MALFORMED_QUERY", "message": "unsupported"}])
        start = datetime.fromisoformat(since.group(1))
        with self.lock:
            rows = sorted(
                (r for r in self.records.values() if _stamp_time(r["SystemModstamp"]) >= start),
                key=lambda r: r["SystemModstamp"],
            )
            rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
            return self._page(rows, 0)

    def _query_by_key(self, match: re.Match[str]) -> Response:
        """`SELECT … FROM Lead WHERE <external id> IN ('…', …)`: what exists, per batch.

        Answer shape: REST API query resource (resources_query.htm) — totalSize, done,
        records with `attributes` and every selected field, null where empty.
        """
        columns = [c.strip() for c in match["columns"].split(",")]
        unknown = [c for c in [*columns, match["field"]] if c not in self.fields]
        if unknown:
            return Response(
                400,
                [
                    {
                        "message": f"No such column '{unknown[0]}' on entity 'Lead'.",
                        "errorCode": "INVALID_FIELD",
                    }
                ],
            )
        keys = set(re.findall(r"'((?:[^'\\]|\\.)*)'", match["values"]))
        with self.lock:
            rows = [
                {
                    "attributes": {
                        "type": "Lead",
                        "url": f"/services/data/v62.0/sobjects/Lead/{record['Id']}",
                    },
                    **{c: record.get(c) for c in columns},
                }
                for record in self.records.values()
                if record.get(match["field"]) in keys
            ]
        return self._page(rows, 0)

    def query_more(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        cursor, _, offset = request.match["cursor"].partition("-")
        with self.lock:
            rows = self.cursors.get(cursor)
            if rows is None:
                return Response(400, [{"errorCode": "INVALID_QUERY_LOCATOR", "message": "gone"}])
            return self._page(rows, int(offset))

    def _page(self, rows: list[dict[str, Any]], offset: int) -> Response:
        page = rows[offset : offset + self.page_size]
        done = offset + self.page_size >= len(rows)
        body: dict[str, Any] = {"totalSize": len(rows), "done": done, "records": page}
        if not done:
            cursor = f"01g{len(self.cursors):012d}"
            self.cursors[cursor] = rows
            body["nextRecordsUrl"] = (
                f"/services/data/v62.0/query/{cursor}-{offset + self.page_size}"
            )
        return Response(200, body)

    def admin_extra(self, action: str, request: Request) -> Response | None:
        if action == "stage" and request.method == "POST":
            # A salesperson setting the stage picklist on the Lead.
            body = request.json() or {}
            with self.lock:
                record = self.records.get(body.get("key"))
                if record is None:
                    return Response(404, {"error": "no such lead"})
                record[body.get("field", "Lead_Stage__c")] = body["value"]
                record["SystemModstamp"] = self._stamp()
            return Response(200, record)
        if action == "credentials" and request.method == "POST":
            # An admin rotating the connected app's secret: old tokens die with it.
            with self.lock:
                self.client_secret = (request.json() or {})["client_secret"]
                self.current_token = None
            return Response(200, {"ok": True})
        if action == "convert" and request.method == "POST":
            key = (request.json() or {}).get("key")
            with self.lock:
                if key not in self.records:
                    return Response(404, {"error": "no such lead"})
                self.records[key]["IsConverted"] = True
                self.records[key]["SystemModstamp"] = self._stamp()
            return Response(200, self.records[key])
        return None


def _stamp_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp[:-5] + stamp[-5:-2] + ":" + stamp[-2:])
