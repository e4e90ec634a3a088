"""A Zoho CRM org on loopback: Zoho Accounts' refresh-token grant, Leads insert and upsert,
the COQL subset leadbridge sends, the Leads fields metadata, and Zoho's own answers.

Speaks the subset leadbridge uses in Zoho CRM API v8's shapes (zoho.com/crm/developer/docs/
api/v8/): `{"data": [one result per record]}` with `code`, `details`, `message`, `status` and,
for an upsert, `action` and `duplicate_field`; 201/200 when every record landed, 207 when
some did, 400 when none did. As strict as Zoho where leadbridge could go wrong:

- duplicates are checked on every insert against the unique fields (DUPLICATE_DATA, with the
  existing record's id), and an upsert matches on `duplicate_check_fields` — or, when it
  names none, on the system's Email first, as Zoho does: two offers of one person would meet
  in one record, which is why leadbridge always names its key field;
- `Last_Name` (system-mandatory) and `Company` (mandatory in the standard layout) are
  required when a record is created, never on an update that leaves them alone;
- an e-mail that isn't one, a value longer than its field, a pick-list value the list
  lacks and a wrong type are INVALID_DATA; a value with SANDBOX_REJECT in it fails this
  org's validation rule;
- field names the org doesn't have are dropped without an error (the docs don't say what
  Zoho does with them: the sandbox takes the lenient reading, so only the fields metadata —
  `config check --online` — shows a typo, which is the check leadbridge relies on anyway);
- a refresh token mints at most ten access tokens in ten minutes;
- the throttle answer is 429 TOO_MANY_REQUESTS, with no Retry-After (none is documented).

Admin API (besides the shared one in connectors/sandbox.py):
    POST /_sandbox/stage    {"key", "field", "value"}: a salesperson picks a stage
    POST /_sandbox/convert  {"key", "deal": true}: a salesperson converts the lead
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from leadbridge.connectors.sandbox import Request, Response, Sandbox, form
from leadbridge.connectors.zoho.mapping import DNC_FIELD, KEY_FIELD, STAGE_FIELD, STAGE_VALUES

REJECT_MARKER = "SANDBOX_REJECT"  # this org's validation rule refuses it
EMAIL_FORM = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
API_USER = {"name": "LeadBridge Integration", "id": "4876876000000225013"}
TOKENS_PER_WINDOW, TOKEN_WINDOW_S = 10, 600.0
MAX_RECORDS = 100
COQL_LIMIT, COQL_IN_VALUES, COQL_COLUMNS, COQL_ROWS = 200, 50, 50, 10_000
TEXT_TYPES = {"text", "textarea", "email", "phone", "website"}
# The Leads picklists' values in a new org (Lead_Source, Lead_Status) and leadbridge's own.
PICKLISTS: dict[str, tuple[str, ...]] = {
    "Lead_Source": (
        "-None-",
        "Advertisement",
        "Cold Call",
        "Employee Referral",
        "External Referral",
        "Online Store",
        "Partner",
        "Public Relations",
        "Sales Email Alias",
        "Seminar Partner",
        "Internal Seminar",
        "Trade Show",
        "Web Download",
        "Web Research",
        "Chat",
    ),
    "Lead_Status": (
        "-None-",
        "Attempted to Contact",
        "Contact in Future",
        "Contacted",
        "Junk Lead",
        "Lost Lead",
        "Not Contacted",
        "Pre-Qualified",
        "Not Qualified",
    ),
    STAGE_FIELD: ("-None-", *STAGE_VALUES.values()),
}
# The Leads fields: api_name -> (data_type, length, properties). Types and lengths as the
# Fields Metadata API's sample lists them (zoho.com/crm/developer/docs/api/v8/field-meta.html);
# leadbridge's own three are the custom fields docs/connectors.md tells an admin to create.
FIELDS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "id": ("bigint", 18, {"read_only": True}),
    "Owner": ("ownerlookup", 120, {}),
    "Company": ("text", 200, {"layout_mandatory": True}),
    "First_Name": ("text", 40, {}),
    "Last_Name": ("text", 80, {"system_mandatory": True}),
    "Full_Name": ("text", 120, {"read_only": True}),
    "Designation": ("text", 100, {}),
    "Email": ("email", 100, {}),
    "Phone": ("phone", 30, {}),
    "Mobile": ("phone", 30, {}),
    "Lead_Source": ("picklist", 120, {}),
    "Lead_Status": ("picklist", 120, {}),
    "Country": ("text", 100, {}),
    "Description": ("textarea", 32000, {}),
    "Email_Opt_Out": ("boolean", 5, {}),
    "Created_Time": ("datetime", 120, {"read_only": True}),
    "Modified_Time": ("datetime", 120, {"read_only": True}),
    "Converted__s": ("boolean", 5, {"read_only": True}),
    "Converted_Deal": ("lookup", 120, {"read_only": True}),
    KEY_FIELD: ("text", 64, {"unique": True, "custom_field": True}),
    STAGE_FIELD: ("picklist", 120, {"custom_field": True}),
    DNC_FIELD: ("boolean", 5, {"custom_field": True}),
    # fit × engagement (docs/scoring.md); a Number field's data_type is "integer" (Fields
    # Meta Data: zoho.com/crm/developer/docs/api/v8/field-meta.html)
    "LeadBridge_Grade": ("text", 2, {"custom_field": True}),
    "LeadBridge_Fit": ("integer", 9, {"custom_field": True}),
    "LeadBridge_Engagement": ("integer", 9, {"custom_field": True}),
}
SELECT = re.compile(
    r"^select (?P<columns>[\w, ]+?) from (?P<module>\w+) where (?P<where>.+?)"
    r"(?: order by (?P<order>\w+)(?: (?P<direction>asc|desc))?)?"
    r"(?: limit (?P<limit>\d+))?(?: offset (?P<offset>\d+))?$",
    re.IGNORECASE | re.DOTALL,
)
BY_KEY = re.compile(r"^(?P<field>\w+) in \((?P<values>.*)\)$", re.DOTALL)
SINCE = re.compile(
    r"^\(Modified_Time >= '(?P<since>[^'\\]+)' and (?P<field>\w+) is not null\)$", re.IGNORECASE
)
STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")


class ZohoSandbox(Sandbox):
    kind = "zoho"

    def __init__(
        self,
        port: int = 0,
        *,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",
        refresh_token: str = "sandbox-refresh-token",
        latency_ms: float = 0.0,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.refresh_token = refresh_token
        self.fields: dict[str, tuple[str, int, dict[str, Any]]] = dict(FIELDS)
        self.picklists = {name: list(values) for name, values in PICKLISTS.items()}
        self.ids = itertools.count(4876876000000400001)
        self.token_times: list[float] = []
        self.tokens_per_window = TOKENS_PER_WINDOW
        super().__init__(port, latency_ms=latency_ms)

    def routes(self) -> None:
        self.route("POST", "/oauth/v2/token", self.token)
        self.route("POST", r"/crm/v\d+/Leads", self.insert)
        self.route("POST", r"/crm/v\d+/Leads/upsert", self.upsert)
        self.route("DELETE", r"/crm/v\d+/Leads", self.delete)
        self.route("POST", r"/crm/v\d+/coql", self.coql)
        self.route("GET", r"/crm/v\d+/settings/fields", self.field_metadata)

    def is_api(self, request: Request) -> bool:
        return not request.path.startswith("/oauth/")

    # --- Zoho's own answers --------------------------------------------------------------

    def throttled(self) -> Response:
        """The concurrency / sub-concurrency limit: 429 TOO_MANY_REQUESTS, in Zoho's error
        shape (code, details, message, status). Zoho documents the code ("Exceeding these
        returns a TOO_MANY_REQUESTS error": help.zoho.com, Kaizen #203 on API limits) but no
        Retry-After, so none is sent."""
        return Response(
            429,
            {
                "code": "TOO_MANY_REQUESTS",
                "details": {},
                "message": "too many requests",
                "status": "error",
            },
        )

    def token_expired(self) -> Response:
        """401 INVALID_TOKEN, as zohoapis answers a stale access token (the shape logged from
        www.zohoapis.eu in pastebin.com/VkvZW1Vy; the docs list INVALID_TOKEN among 401s)."""
        return Response(
            401,
            {
                "code": "INVALID_TOKEN",
                "details": {},
                "message": "invalid oauth token",
                "status": "error",
            },
        )

    def bearer_ok(self, request: Request) -> bool:
        expected = getattr(self, "current_token", None)
        return expected is not None and request.header("authorization") == (
            f"Zoho-oauthtoken {expected}"
        )

    def token(self, request: Request) -> Response:
        """The refresh-token grant (zoho.com/accounts/protocol/oauth/web-apps/access-token-
        expiry.html): access_token, api_domain, token_type, expires_in. Parameters in the body
        or, as Zoho's examples put them, the query. A refused grant is an `error`
        (zoho.com/contracts/api/getting-started/generating-access-tokens.html names
        invalid_client and invalid_token; invalid_code is what Zoho answers an unknown
        refresh token), with HTTP 200 as Zoho Accounts sends it. "Using a refresh token, your
        app can create up to ten access tokens in a span of ten minutes. If the limit is
        reached, the access token creation will be blocked for the rest of the ten minutes"
        (the docs give the limit, not the answer's body: its wording here is the one
        integrators report)."""
        data = {k: v[0] for k, v in request.query.items()} | form(request)
        if data.get("grant_type") != "refresh_token":
            return Response(200, {"error": "unsupported_grant_type"})
        if (data.get("client_id"), data.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return Response(200, {"error": "invalid_client"})
        if data.get("refresh_token") != self.refresh_token:
            return Response(200, {"error": "invalid_code"})
        with self.lock:
            now = time.monotonic()
            self.token_times = [t for t in self.token_times if now - t < TOKEN_WINDOW_S]
            if len(self.token_times) >= self.tokens_per_window:
                return Response(
                    400,
                    {
                        "error_description": "You have made too many requests continuously. "
                        "Please try again after some time.",
                        "error": "Access Denied",
                        "status": "failure",
                    },
                )
            self.token_times.append(now)
        return Response(
            200,
            {
                "access_token": self.issue_token(),
                "api_domain": self.url,
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        )

    # --- insert and upsert ----------------------------------------------------------------

    def insert(self, request: Request) -> Response:
        """`POST /crm/v8/Leads` (zoho.com/crm/developer/docs/api/v8/insert-records.html): one
        result per record, "record added" with the new id; "Duplicates are checked for every
        insert record API call based on unique fields"."""
        return self._write(request, upsert=False)

    def upsert(self, request: Request) -> Response:
        """`POST /crm/v8/Leads/upsert` (…/upsert-records.html): each record matched on
        `duplicate_check_fields` in order (default: the system's Email, then the unique
        fields); `action` says insert or update, `duplicate_field` which field matched."""
        return self._write(request, upsert=True)

    def delete(self, request: Request) -> Response:
        """`DELETE /crm/v8/Leads?ids=…` (…/v8/delete-records.html): ≤100 ids, one result per
        id, "record deleted"; an id it doesn't hold is INVALID_DATA. 200 when every record
        went, 207 when some did, 400 when none did (as for writes)."""
        if not self.bearer_ok(request):
            return self.token_expired()
        ids = [i for i in ",".join(request.query.get("ids", [])).split(",") if i]
        if not ids:
            return Response(
                400, _error("MANDATORY_NOT_FOUND", "required param not found", param="ids")
            )
        if len(ids) > MAX_RECORDS:
            return Response(
                400, _error("LIMIT_EXCEEDED", "limit exceeded", by="limit", limit=MAX_RECORDS)
            )
        results = []
        with self.lock:
            for record_id in ids:
                key = next((k for k, r in self.records.items() if r["id"] == record_id), None)
                if key is None:
                    results.append(_error("INVALID_DATA", "the id given seems to be invalid"))
                    continue
                del self.records[key]
                results.append(
                    {
                        "code": "SUCCESS",
                        "details": {"id": record_id},
                        "message": "record deleted",
                        "status": "success",
                    }
                )
        done = sum(r["status"] == "success" for r in results)
        return Response(200 if done == len(ids) else 207 if done else 400, {"data": results})

    def _write(self, request: Request, *, upsert: bool) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        body = request.json() or {}
        records = body.get("data") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            return Response(
                400, _error("MANDATORY_NOT_FOUND", "required field not found", api_name="data")
            )
        if len(records) > MAX_RECORDS:
            # LIMIT_EXCEEDED's shape: the Composite API's sample (…/v8/composite-api.html).
            return Response(
                400, _error("LIMIT_EXCEEDED", "limit exceeded", by="limit", limit=MAX_RECORDS)
            )
        checks = body.get("duplicate_check_fields") if upsert else None
        with self.lock:
            results = [
                self._one(i, r, upsert, checks)
                if isinstance(r, dict)
                else _error("INVALID_DATA", "invalid data")
                for i, r in enumerate(records)
            ]
        landed = sum(r["status"] == "success" for r in results)
        status = (201 if not upsert else 200) if landed == len(results) else 207 if landed else 400
        return Response(status, {"data": results})

    def _one(self, index: int, record: dict[str, Any], upsert: bool, checks: Any) -> dict[str, Any]:
        fields = self._known(record)
        existing, matched = self._match(fields, checks) if upsert else (None, None)
        error = self._validate(index, fields, existing)
        if error is None and existing is None:
            error = self._duplicate(index, fields)
        if error is not None:
            return error
        if existing is None:
            saved = self._create(fields)
            message = "record added"
        else:
            existing.update(fields)
            existing["_writes"] += 1
            existing["Modified_Time"] = self._stamp()
            saved, message = existing, "record updated"
        result: dict[str, Any] = {"code": "SUCCESS"}
        if upsert:
            result["duplicate_field"] = matched
            result["action"] = "insert" if existing is None else "update"
        result["details"] = {
            "Modified_Time": saved["Modified_Time"],
            "Modified_By": API_USER,
            "Created_Time": saved["Created_Time"],
            "id": saved["id"],
            "Created_By": API_USER,
        }
        result.update(message=message, status="success")
        return result

    def _known(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """What the org keeps of a record: fields it has that may be written (the rest are
        dropped without an error: see the module's docstring)."""
        return {
            name: value
            for name, value in record.items()
            if name in self.fields and not self.fields[name][2].get("read_only")
        }

    def _match(
        self, fields: Mapping[str, Any], checks: Any
    ) -> tuple[dict[str, Any] | None, str | None]:
        order = (
            [str(c) for c in checks]
            if isinstance(checks, list) and checks
            else ["Email", *(n for n, spec in self.fields.items() if spec[2].get("unique"))]
        )
        for name in order:
            value = fields.get(name)
            if value in (None, ""):
                continue
            found = self._holding(name, value)
            if found is not None:
                return found, name
        return None, None

    def _holding(self, name: str, value: Any) -> dict[str, Any] | None:
        wanted = str(value).lower()
        return next(
            (r for r in self.records.values() if str(r.get(name) or "").lower() == wanted),
            None,
        )

    def _validate(
        self, index: int, fields: Mapping[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """INVALID_DATA for a value its field can't hold ("The 'INVALID_DATA' error is thrown
        if the field value length exceeds the maximum length": …/insert-records.html),
        MANDATORY_NOT_FOUND ("required field not found") for a missing mandatory field."""
        path = f"$.data[{index}]"
        for name, value in fields.items():
            problem = self._invalid(name, value)
            if problem:
                return _error(
                    "INVALID_DATA",
                    "invalid data",
                    api_name=name,
                    json_path=f"{path}.{name}",
                    expected_data_type=problem,
                )
        merged = {**(existing or {}), **fields}
        for name, (_, _, spec) in self.fields.items():
            mandatory = spec.get("system_mandatory") or spec.get("layout_mandatory")
            if (
                mandatory
                and (existing is None or name in fields)
                and merged.get(name) in (None, "")
            ):
                return _error(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    api_name=name,
                    json_path=f"{path}.{name}",
                )
        if any(isinstance(v, str) and REJECT_MARKER in v for v in fields.values()):
            # This org's validation rule (the message is the rule's, written by its admin).
            return _error(
                "INVALID_DATA",
                "Company looks like a test record",
                api_name="Company",
                json_path=f"{path}.Company",
            )
        return None

    def _invalid(self, name: str, value: Any) -> str | None:
        """The data type a value fails, or None."""
        kind, length, _ = self.fields[name]
        if value is None:
            return None
        if kind in TEXT_TYPES:
            fits = isinstance(value, str) and len(value) <= length
            if not fits or (kind == "email" and value and not EMAIL_FORM.match(value)):
                return kind
            return None
        holds = {
            "boolean": lambda: isinstance(value, bool),
            "integer": lambda: isinstance(value, int) and not isinstance(value, bool),
            "picklist": lambda: value in self.picklists.get(name, ()),
            "ownerlookup": lambda: isinstance(value, dict) and bool(value.get("id")),
        }.get(kind, lambda: True)
        return None if holds() else kind

    def _duplicate(self, index: int, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """DUPLICATE_DATA: "the 'details' key in the response gives the API name of the field
        that holds duplicate value in the input and the 'module' JSON object gives the API
        name and ID of the existing record with the same value" (…/insert-records.html)."""
        for name, (_, _, spec) in self.fields.items():
            value = fields.get(name)
            if not spec.get("unique") or value in (None, ""):
                continue
            found = self._holding(name, value)
            if found is not None:
                return _error(
                    "DUPLICATE_DATA",
                    "duplicate data",
                    api_name=name,
                    json_path=f"$.data[{index}].{name}",
                    duplicate_record={
                        "id": found["id"],
                        "module": {"api_name": "Leads", "id": "4876876000000002175"},
                        "Owner": API_USER,
                    },
                )
        return None

    def _create(self, fields: dict[str, Any]) -> dict[str, Any]:
        stamp = self._stamp()
        record: dict[str, Any] = {
            "id": str(next(self.ids)),
            "Owner": dict(API_USER),
            "Email_Opt_Out": False,
            "Converted__s": False,
            "Converted_Deal": None,
            "Created_Time": stamp,
            "Modified_Time": stamp,
            "_writes": 1,
            **fields,
        }
        for name, (kind, _, _) in self.fields.items():
            if kind == "boolean":
                record.setdefault(name, False)
        self.records[str(record.get(KEY_FIELD) or f"id:{record['id']}")] = record
        return record

    @staticmethod
    def _stamp() -> str:
        """Modified_Time as Zoho writes it: ISO 8601 to the second, with an offset."""
        return datetime.now(UTC).isoformat(timespec="seconds")

    # --- COQL, the subset leadbridge sends ----------------------------------------------

    def coql(self, request: Request) -> Response:
        """`POST /crm/v8/coql` (…/Get-Records-through-COQL-Query.html): `{"data": [...],
        "info": {"count", "more_records"}}`, 204 when nothing matches. Two queries: by key
        (`<key> in (…)`, ≤50 values) and changed since (`Modified_Time >= '…'`, ordered, with
        LIMIT ≤200 and OFFSET, 10,000 rows at most); the limits answer LIMIT_EXCEEDED, an
        unknown column INVALID_QUERY, anything else SYNTAX_ERROR."""
        if not self.bearer_ok(request):
            return self.token_expired()
        query = str((request.json() or {}).get("select_query") or "").strip()
        parsed = SELECT.match(query)
        if parsed is None or parsed["module"] != "Leads":
            return Response(
                400, _error("SYNTAX_ERROR", "the sandbox speaks only leadbridge's COQL")
            )
        columns = [c.strip() for c in parsed["columns"].split(",")]
        limit, offset = int(parsed["limit"] or COQL_LIMIT), int(parsed["offset"] or 0)
        refused = self._coql_limits(columns, limit, offset)
        if refused is not None:
            return refused
        with self.lock:
            rows = self._coql_rows(parsed["where"].strip())
            if isinstance(rows, Response):
                return rows
            if parsed["order"]:
                rows.sort(key=lambda r: str(r.get(parsed["order"]) or ""))
            page = rows[offset : offset + limit]
            data = [{c: r.get(c) for c in columns} | {"id": r["id"]} for r in page]
        if not data:
            return Response(204, raw=b"")
        return Response(
            200,
            {
                "data": data,
                "info": {"count": len(data), "more_records": offset + limit < len(rows)},
            },
        )

    def _coql_limits(self, columns: list[str], limit: int, offset: int) -> Response | None:
        unknown = [c for c in columns if c not in self.fields]
        if unknown:
            return Response(
                400, _error("INVALID_QUERY", "invalid column given", column_name=unknown[0])
            )
        if len(columns) > COQL_COLUMNS or limit > COQL_LIMIT:
            return Response(
                400, _error("LIMIT_EXCEEDED", "limit exceeded", by="limit", limit=COQL_LIMIT)
            )
        if offset + limit > COQL_ROWS:
            return Response(400, _error("LIMIT_EXCEEDED", "Max records limit exceeded"))
        return None

    def _coql_rows(self, where: str) -> list[dict[str, Any]] | Response:
        by_key, since = BY_KEY.match(where), SINCE.match(where)
        if by_key is not None:
            values = [_unescape(v) for v in STRING.findall(by_key["values"])]
            if len(values) > COQL_IN_VALUES:
                return Response(
                    400, _error("LIMIT_EXCEEDED", "limit exceeded", by="in", limit=COQL_IN_VALUES)
                )
            field = by_key["field"]
            return [r for r in self.records.values() if r.get(field) in set(values)]
        if since is not None:
            start = datetime.fromisoformat(since["since"])
            field = since["field"]
            return [
                r
                for r in self.records.values()
                if r.get(field) and datetime.fromisoformat(r["Modified_Time"]) >= start
            ]
        return Response(400, _error("SYNTAX_ERROR", "the sandbox speaks only leadbridge's COQL"))

    # --- fields metadata ------------------------------------------------------------------

    def field_metadata(self, request: Request) -> Response:
        """`GET /crm/v8/settings/fields?module=Leads` (…/field-meta.html): `{"fields": [...]}`
        with api_name, data_type, length, unique ({} when duplicates are allowed), the
        mandatory flags and pick_list_values."""
        if not self.bearer_ok(request):
            return self.token_expired()
        if request.query.get("module", [""])[0] != "Leads":
            return Response(
                400, _error("INVALID_MODULE", "the module name given seems to be invalid")
            )
        with self.lock:
            fields = [self._describe(name, *spec) for name, spec in self.fields.items()]
        return Response(200, {"fields": fields})

    def _describe(
        self, name: str, kind: str, length: int, spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        values = self.picklists.get(name, []) if kind == "picklist" else []
        return {
            "api_name": name,
            "field_label": name.replace("_", " "),
            "id": str(4876876000000002000 + sorted(self.fields).index(name)),
            "data_type": kind,
            "length": length,
            "unique": {"case_sensitive": False} if spec.get("unique") else {},
            "system_mandatory": bool(spec.get("system_mandatory")),
            "custom_field": bool(spec.get("custom_field")),
            "read_only": bool(spec.get("read_only")),
            "pick_list_values": [
                {
                    "display_value": v,
                    "sequence_number": i + 1,
                    "reference_value": v,
                    "colour_code": None,
                    "actual_value": v,
                    "id": str(4876876000000003000 + i),
                    "type": "used",
                }
                for i, v in enumerate(values)
            ],
        }

    # --- admin: what a salesperson does ---------------------------------------------------

    def admin_extra(self, action: str, request: Request) -> Response | None:
        if request.method != "POST" or action not in ("stage", "convert"):
            return None
        body = request.json() or {}
        with self.lock:
            record = self.records.get(str(body.get("key")))
            if record is None:
                return Response(404, {"error": "no such lead"})
            if action == "stage":
                record[body.get("field") or STAGE_FIELD] = body["value"]
            else:
                record["Converted__s"] = True
                if body.get("deal"):
                    record["Converted_Deal"] = {"id": str(next(self.ids))}
            record["Modified_Time"] = self._stamp()
            return Response(200, record)


def _error(code: str, message: str, **details: Any) -> dict[str, Any]:
    """Zoho's error object: code, details, message, status (every v8 error section)."""
    return {"code": code, "details": details, "message": message, "status": "error"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)
