"""A Dataverse environment and its Entra ID authority on loopback, over TLS.

msal only talks to https authorities, so the sandbox serves TLS from a throwaway CA
(trustme); `ca_bundle` points the target at `sandbox.ca_file`. It answers OIDC discovery and
client-credentials tokens, and the Web API's `$batch` of upserts by alternate key with
per-part statuses, Dataverse's error bodies, and 429 + Retry-After (seconds) when throttled.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from leadbridge.connectors.dataverse import batch
from leadbridge.connectors.sandbox import EntraSandbox, Request, Response, form

REJECT_MARKER = "SANDBOX_REJECT"
TENANT = "00000000-0000-0000-0000-00000000a11c"
LENGTHS = {
    "firstname": 50,
    "lastname": 50,
    "subject": 300,
    "emailaddress1": 100,
    "telephone1": 50,
    "companyname": 100,
    "jobtitle": 100,
    "address1_country": 80,
    "description": 2000,
}
COLUMNS = {
    *LENGTHS,
    "leadsourcecode",
    "donotemail",
    "donotbulkemail",
    "donotphone",
    "donotpostalmail",
    "donotfax",
    "donotsendmm",
    "msdyn_gdproptout",
    "lb_marketplacednc",
    "lb_leadstage",
    "lb_leadkey",
    "ownerid@odata.bind",
    "statecode",
    "statuscode",
}
_KEYED = re.compile(r"leads\((?P<column>\w+)=(?P<value>'(?:[^']|'')*')\)$")

# --- table definitions (EntityDefinitions) ------------------------------------------------
# Column types (AttributeTypeCode) of lead: the lead table reference
# (learn.microsoft.com/dynamics365/customerengagement/on-premises/developer/entities/lead)
# and, for leadbridge's own columns, the types its docs tell an admin to create.
ATTRIBUTE_TYPES = {
    "leadid": "Uniqueidentifier",
    **{column: "String" for column in LENGTHS},
    "description": "Memo",
    "leadsourcecode": "Picklist",
    **{
        column: "Boolean"
        for column in (
            "donotemail",
            "donotbulkemail",
            "donotphone",
            "donotpostalmail",
            "donotfax",
            "donotsendmm",
            "msdyn_gdproptout",
            "lb_marketplacednc",
        )
    },
    "lb_leadstage": "Picklist",
    "ownerid": "Owner",
    "statecode": "State",
    "statuscode": "Status",
    "modifiedon": "DateTime",
    "versionnumber": "BigInt",
}
KEY_COLUMN_LENGTH = 100  # a new single line of text column's default maximum length
# Properties each metadata type has, for $select: learn.microsoft.com/power-apps/developer/
# data-platform/webapi/reference/{entitymetadata,attributemetadata,stringattributemetadata,
# memoattributemetadata,entitykeymetadata}. MaxLength is on the String and Memo types only.
ENTITY_PROPERTIES = frozenset(
    {
        "LogicalName",
        "SchemaName",
        "EntitySetName",
        "MetadataId",
        "PrimaryIdAttribute",
        "PrimaryNameAttribute",
        "ObjectTypeCode",
        "DisplayName",
        "ChangeTrackingEnabled",
    }
)
ATTRIBUTE_PROPERTIES = frozenset(
    {
        "LogicalName",
        "SchemaName",
        "AttributeType",
        "AttributeTypeName",
        "MetadataId",
        "EntityLogicalName",
        "DisplayName",
        "Description",
        "RequiredLevel",
        "IsCustomAttribute",
        "IsPrimaryId",
        "IsPrimaryName",
        "IsValidForCreate",
        "IsValidForUpdate",
        "IsValidForRead",
        "AttributeOf",
        "IsLogical",
        "ColumnNumber",
        "IsManaged",
    }
)
CAST_PROPERTIES = {
    "StringAttributeMetadata": (
        "String",
        ATTRIBUTE_PROPERTIES | {"MaxLength", "Format", "FormatName", "DatabaseLength"},
    ),
    "MemoAttributeMetadata": ("Memo", ATTRIBUTE_PROPERTIES | {"MaxLength", "Format"}),
}
KEY_PROPERTIES = frozenset(
    {
        "LogicalName",
        "SchemaName",
        "KeyAttributes",
        "EntityKeyIndexStatus",
        "MetadataId",
        "EntityLogicalName",
        "DisplayName",
        "IsManaged",
    }
)
_DEFINITION = re.compile(
    r"/api/data/v9\.2/EntityDefinitions\(LogicalName='(?P<entity>\w+)'\)"
    r"(?P<attributes>/Attributes(?:/Microsoft\.Dynamics\.CRM\.(?P<cast>\w+))?)?$"
)


class DataverseSandbox(EntraSandbox):
    kind = "dataverse"
    tenant = TENANT

    def __init__(
        self,
        port: int = 0,
        *,
        client_id: str = "sandbox-app",
        client_secret: str = "sandbox-app-secret",
        key_column: str = "lb_leadkey",
        latency_ms: float = 0.0,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.key_column = key_column
        self.columns = set(COLUMNS) | {key_column}
        self.key_index_status = "Active"  # the alternate key's index: Pending while it builds
        self.version = 0  # the environment's row version, for change tracking
        self.oldest_token = 0  # delta tokens older than this have expired
        super().__init__(port, latency_ms=latency_ms)

    def routes(self) -> None:
        super().routes()
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self.token)
        self.route("POST", r"/api/data/v9\.2/\$batch", self.batch)
        self.route("PATCH", r"/api/data/v9\.2/(?P<target>leads\(.*\))", self.single)
        self.route("GET", r"/api/data/v9\.2/leads", self.read_leads)
        self.route("GET", r"/api/data/v9\.2/EntityDefinitions.*", self.definitions)

    def is_api(self, request: Request) -> bool:
        return request.path.startswith("/api/")

    def throttled(self) -> Response:
        return Response(
            429,
            {
                "error": {
                    "code": "0x80072322",
                    "message": "Number of requests exceeded the limit of 6000 over time "
                    "window of 300 seconds.",
                }
            },
            {"Retry-After": f"{self.faults.retry_after_s:g}"},
        )

    def token_expired(self) -> Response:
        return Response(
            401,
            {"error": {"code": "0x80072560", "message": "token expired"}},
            {"WWW-Authenticate": "Bearer error=invalid_token"},
        )

    def admin_extra(self, action: str, request: Request) -> Response | None:
        body = request.json() or {}
        with self.lock:
            if action == "stage" and request.method == "POST":
                # A Dynamics user setting the stage column, or qualifying the lead (statecode).
                record = self.records.get(body.get("key"))
                if record is None:
                    return Response(404, {"error": "no such lead"})
                record.update(body.get("columns") or {})
                self._touch(record)
                return Response(200, record)
            if action == "expire_tokens" and request.method == "POST":
                self.oldest_token = self.version + 1
                return Response(200, {"oldest_token": self.oldest_token})
        return None

    # --- Entra ID ------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        data = form(request)
        if (data.get("client_id"), data.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return Response(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        return Response(
            200, {"token_type": "Bearer", "expires_in": 3599, "access_token": self.issue_token()}
        )

    # --- Web API -------------------------------------------------------------------------

    def batch(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        parts = batch.parse(request.header("content-type") or "", request.body, requests_side=True)
        if len(parts) > 1000:
            return Response(
                400, {"error": {"code": "0x80048d19", "message": "Batch size exceeds 1000"}}
            )
        with self.lock:
            answers = [self._part(part) for part in parts]
        content_type, body = batch.response(answers)
        return Response(200, raw=body, headers={"Content-Type": content_type})

    def _part(self, part: batch.Part) -> batch.Part:
        prefer = (part.headers or {}).get("prefer", "")
        if part.method == "GET":
            return self._read_by_key(part.url)
        return self._upsert(part.url, part.body, representation="return=representation" in prefer)

    def _read_by_key(self, url: str) -> batch.Part:
        """`GET leads?$select=…&$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,
        PropertyValues=@p2)&@p1='<column>'&@p2=["…"]` — the Dataverse query function with
        parameter aliases (learn.microsoft.com/power-apps/developer/data-platform/webapi/
        query/filter-rows, "Dataverse query functions")."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        columns = [c for c in (query.get("$select") or "").split(",") if c]
        unknown = [c for c in columns if c not in self.columns]
        if unknown or "Microsoft.Dynamics.CRM.In(" not in query.get("$filter", ""):
            return _error(
                400,
                "0x80060888",
                f"Could not find a property named '{unknown[0]}' on type "
                "'Microsoft.Dynamics.CRM.lead'."
                if unknown
                else "unsupported query",
            )
        column = query.get("@p1", "''")[1:-1]
        values = set(json.loads(query.get("@p2", "[]")))
        rows = [
            {"@odata.etag": f'W/"{r["versionnumber"]}"', **{c: r.get(c) for c in columns}}
            for r in self.records.values()
            if r.get(column) in values
        ]
        return batch.Part(status=200, body={"value": rows})

    # --- table definitions ---------------------------------------------------------------

    def definitions(self, request: Request) -> Response:
        """The lead table's definition, in the shapes of query-metadata-web-api.md
        (learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api):
        `EntityDefinitions(LogicalName='lead')` with `$expand=Attributes(...)`, `Keys(...)`
        (only the properties every AttributeMetadata shares), and the Attributes collection,
        cast to one attribute type for that type's own properties (`MaxLength` on
        StringAttributeMetadata and MemoAttributeMetadata). A property the type lacks is the
        Web API's 400 (learn.microsoft.com/troubleshoot/power-platform/dataverse/
        dataverse-web-api-and-sdk/web-api-client-errors, "Could not find a property named")."""
        if not self.bearer_ok(request):
            return self.token_expired()
        match = _DEFINITION.match(unquote(request.path))
        if match is None or match["entity"] != "lead":
            return _not_found(request.path)
        query = {k: v[0] for k, v in request.query.items()}
        with self.lock:
            columns = self._attributes()
        if match["attributes"]:
            return self._attribute_collection(columns, match["cast"], query.get("$select"))
        return self._entity_definition(columns, query)

    def _attributes(self) -> dict[str, str]:
        """Column name → AttributeType, for the columns this environment has."""
        names = {column.partition("@")[0] for column in self.columns} | {"leadid", "modifiedon"}
        return {name: ATTRIBUTE_TYPES.get(name, "String") for name in sorted(names)}

    def _attribute(self, name: str, kind: str, select: list[str]) -> dict[str, Any]:
        length = KEY_COLUMN_LENGTH if name == self.key_column else LENGTHS.get(name)
        values = {
            "LogicalName": name,
            "SchemaName": name,
            "AttributeType": kind,
            "AttributeTypeName": {"Value": f"{kind}Type"},
            "EntityLogicalName": "lead",
            "IsCustomAttribute": name.startswith("lb_"),
            "MaxLength": length,
        }
        row = {"MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"lead/{name}"))}
        return row | {p: values.get(p) for p in select}

    def _attribute_collection(
        self, columns: dict[str, str], cast: str | None, select: str | None
    ) -> Response:
        kind, properties = CAST_PROPERTIES.get(cast or "", (None, ATTRIBUTE_PROPERTIES))
        if cast and kind is None:
            return _not_found(f"Microsoft.Dynamics.CRM.{cast}")
        wanted = [p for p in (select or "LogicalName").split(",") if p]
        refused = _unknown(wanted, properties, cast or "AttributeMetadata")
        if refused:
            return refused
        rows = [
            ({"@odata.type": f"#Microsoft.Dynamics.CRM.{cast}"} if cast else {})
            | self._attribute(name, found, wanted)
            for name, found in columns.items()
            if kind is None or found == kind
        ]
        return Response(200, {"value": rows})

    def _entity_definition(self, columns: dict[str, str], query: dict[str, str]) -> Response:
        wanted = [p for p in (query.get("$select") or "LogicalName").split(",") if p]
        refused = _unknown(wanted, ENTITY_PROPERTIES, "EntityMetadata")
        if refused:
            return refused
        values = {"LogicalName": "lead", "SchemaName": "Lead", "EntitySetName": "leads"}
        body: dict[str, Any] = {"MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, "lead"))}
        body |= {p: values.get(p) for p in wanted}
        for name, options in _expand(query.get("$expand", "")).items():
            selected = [p for p in options.get("$select", "LogicalName").split(",") if p]
            if name == "Attributes":
                refused = _unknown(selected, ATTRIBUTE_PROPERTIES, "AttributeMetadata")
                body[name] = [self._attribute(n, k, selected) for n, k in columns.items()]
            elif name == "Keys":
                refused = _unknown(selected, KEY_PROPERTIES, "EntityKeyMetadata")
                body[name] = self._keys(selected)
            else:
                refused = _error_response(
                    400,
                    f"Could not find a property named '{name}' on type "
                    "'Microsoft.Dynamics.CRM.EntityMetadata'.",
                )
            if refused:
                return refused
        return Response(200, body)

    def _keys(self, select: list[str]) -> list[dict[str, Any]]:
        name = f"{self.key_column}_key"
        values = {
            "LogicalName": name,
            "SchemaName": name,
            "KeyAttributes": [self.key_column],
            "EntityKeyIndexStatus": self.key_index_status,
            "EntityLogicalName": "lead",
        }
        row = {"MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"lead/key/{name}"))}
        return [row | {p: values.get(p) for p in select}]

    # --- change tracking -----------------------------------------------------------------

    def _touch(self, record: dict[str, Any]) -> None:
        """A write: the record gets the environment's next version and a new modifiedon."""
        self.version += 1
        record["versionnumber"] = self.version
        now = max(time.time(), getattr(self, "_last_modified", 0.0) + 0.001)
        self._last_modified = now
        record["modifiedon"] = (
            datetime.fromtimestamp(now, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def read_leads(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        query = {k: v[0] for k, v in request.query.items()}
        prefer = request.header("prefer") or ""
        page_size = (
            int(re.search(r"odata\.maxpagesize=(\d+)", prefer).group(1))
            if ("maxpagesize" in prefer)
            else 5000
        )
        with self.lock:
            since = 0
            if "$deltatoken" in query:
                since = int(query["$deltatoken"])
                if since < self.oldest_token:
                    return Response(
                        400,
                        {
                            "error": {
                                "code": "0x80044352",
                                "message": "The change tracking token has expired; do a full sync.",
                            }
                        },
                    )
            rows = sorted(
                (r for r in self.records.values() if r["versionnumber"] > since),
                key=lambda r: r["versionnumber"],
            )
            if "$filter" in query:
                stamp = re.search(r"modifiedon ge (\S+)", query["$filter"]).group(1)
                rows = [r for r in rows if r["modifiedon"] >= stamp.replace("Z", "")]
            columns = (query.get("$select") or "").split(",")
            rows = [{c: r.get(c) for c in columns if c} for r in rows]
            skip = int(query.get("$skiptoken") or 0)
            body: dict[str, Any] = {"value": rows[skip : skip + page_size]}
            base = f"{self.url}/api/data/v9.2/leads?$select={query.get('$select', '')}"
            if skip + page_size < len(rows):
                body["@odata.nextLink"] = _with(request, "$skiptoken", skip + page_size, self.url)
            elif "odata.track-changes" in prefer:
                body["@odata.deltaLink"] = f"{base}&$deltatoken={self.version}"
        return Response(200, body, {"Preference-Applied": prefer})

    def single(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        prefer = request.header("prefer") or ""
        with self.lock:
            answer = self._upsert(
                request.path, request.json(), representation="return=representation" in prefer
            )
        return Response(answer.status, answer.body, answer.headers or {})

    def _upsert(
        self, url: str, body: dict[str, Any] | None, representation: bool = False
    ) -> batch.Part:
        """PATCH by alternate key = upsert. 204 either way; with `Prefer:
        return=representation`, 201 for a create and 200 for an update, with the selected
        columns (use-upsert-insert-update-record.md)."""
        address, _, query = unquote(url).partition("?")
        match = _KEYED.search(address)
        if match is None or match["column"] != self.key_column:
            return _error(400, "0x80060888", f"{url}: not an alternate-key address of lead")
        key = match["value"][1:-1].replace("''", "'")
        body = body or {}
        unknown = sorted(set(body) - self.columns)
        if unknown:
            return _error(
                400,
                "0x80060888",
                f"Could not find a property named '{unknown[0]}' "
                "on type 'Microsoft.Dynamics.CRM.lead'.",
            )
        for column, limit in LENGTHS.items():
            value = body.get(column)
            if isinstance(value, str) and len(value) > limit:
                return _error(
                    400,
                    "0x80044331",
                    f"A validation error occurred. The length of "
                    f"the '{column}' attribute of the 'lead' entity exceeded the "
                    f"maximum allowed length of '{limit}'.",
                )
        if any(isinstance(v, str) and REJECT_MARKER in v for v in body.values()):
            return _error(400, "0x80040265", "ISV code aborted the operation.")
        existing = self.records.get(key)
        created = existing is None
        if existing is None:
            existing = self.records[key] = {
                "leadid": str(uuid.uuid4()),
                self.key_column: key,
                "statecode": 0,
                "_writes": 0,
                "_created_at": time.time(),
                "versionnumber": 0,
            }
        existing.update(body)
        existing["_writes"] += 1
        self._touch(existing)
        headers = {"OData-EntityId": f"{self.url}/api/data/v9.2/leads({existing['leadid']})"}
        if not representation:
            return batch.Part(status=204, headers=headers)
        selected = parse_qs(query).get("$select", [""])[0].split(",")
        record = {c: existing.get(c) for c in selected if c}
        return batch.Part(
            status=201 if created else 200,
            headers=headers,
            body={"@odata.etag": f'W/"{existing["versionnumber"]}"', **record},
        )


def _error_response(status: int, message: str) -> Response:
    """The Web API's error for a bad query: code 0x0 and the message (web-api-client-errors,
    learn.microsoft.com/troubleshoot/power-platform/dataverse/dataverse-web-api-and-sdk)."""
    return Response(status, {"error": {"code": "0x0", "message": message}})


def _unknown(selected: list[str], properties: frozenset[str], kind: str) -> Response | None:
    """The 400 for the first selected property `kind` doesn't have, or None."""
    for name in selected:
        if name not in properties:
            return _error_response(
                400,
                f"Could not find a property named '{name}' on type "
                f"'Microsoft.Dynamics.CRM.{kind}'.",
            )
    return None


def _not_found(segment: str) -> Response:
    """Web API 404 for an unknown resource (web-api-client-errors, same page)."""
    return Response(
        404,
        {
            "error": {
                "code": "0x8006088a",
                "message": f"Resource not found for the segment '{segment}'.",
            }
        },
    )


def _expand(text: str) -> dict[str, dict[str, str]]:
    """`A($select=x,y;$filter=…),B(…)` → {"A": {"$select": "x,y", …}, "B": {…}}: commas
    inside parentheses belong to the options, not to the list."""
    items: dict[str, dict[str, str]] = {}
    depth, start = 0, 0
    for i, char in enumerate(text + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            item = text[start:i].strip()
            start = i + 1
            if not item:
                continue
            name, _, rest = item.partition("(")
            options = (part.partition("=") for part in rest.removesuffix(")").split(";") if part)
            items[name] = {key: value for key, _, value in options}
    return items


def _error(status: int, code: str, message: str) -> batch.Part:
    return batch.Part(status=status, body={"error": {"code": code, "message": message}})


def _with(request: Request, key: str, value: int, base: str) -> str:
    """The request's own URL with one query parameter replaced (OData nextLink)."""
    from urllib.parse import urlencode

    query = {k: v[0] for k, v in request.query.items()}
    query[key] = str(value)
    return f"{base}{request.path}?{urlencode(query, safe='$,')}"
