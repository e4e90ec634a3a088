"""A Dataverse environment and its Entra ID authority on loopback, over TLS.

msal only talks to https authorities, so the sandbox serves TLS from a throwaway CA
(trustme); `ca_bundle` points the target at `sandbox.ca_file`. It answers OIDC discovery and
client-credentials tokens, and the Web API's `$batch` of upserts by alternate key with
per-part statuses, Dataverse's error bodies, and 429 + Retry-After (seconds) when throttled.

It keeps leads, contacts and accounts. A change set is one transaction (a failure rolls back
what it did and answers once for all of it), `$n` names the record request n of the same
change set wrote, and a bind (`parentcontactid@odata.bind`) to a record that doesn't exist
fails as Dataverse's does: 404 `0x80060891` "A record with the specified key values does
not exist in contact entity" by alternate key, 404 `0x80040217` "contact With Id = … Does
Not Exist" by id (learn.microsoft.com/power-apps/developer/data-platform/reference/
web-service-error-codes: ObjectDoesNotExist), 400 "Content-ID Reference: '$1' does not
exist in the batch context." for an undeclared reference (execute-batch-operations-using-
web-api.md).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from leadbridge.connectors.dataverse import batch, journeys
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
    "lb_grade": 2,  # fit × engagement (docs/scoring.md)
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
    "lb_fit",
    "lb_engagement",
    "ownerid@odata.bind",
    "statecode",
    "statuscode",
    "parentcontactid@odata.bind",
    "parentaccountid@odata.bind",
}
_KEYED = re.compile(
    r"(?P<set>leads|contacts|accounts)\((?P<column>\w+)=(?P<value>'(?:[^']|'')*')\)$"
)
_PURPOSE = re.compile(r"^/msdynmkt_purposes\(([0-9a-fA-F-]{36})\)$")
CIJ_ID = "6f1c2b0e-4d3a-4b8e-9c57-2a1d3e4f5a6b"  # the consent table's MetadataId, made up
# The consent table's choice columns and their values (learn.microsoft.com/dynamics365/
# developer/reference/entities/msdynmkt_contactpointconsent4): a value outside them is
# Dataverse's "A validation error occurred. The value X of 'column' on record of type
# 'table' is outside the valid range. Accepted Values: …" (wording as Microsoft's Project
# Operations docs quote it; the code 0x8004431a from a third party: UNCONFIRMED).
CONSENT_CHOICES = {
    "msdynmkt_contactpointtype": range(534120000, 534120004),  # Email, Text, Custom, Voice
    "msdynmkt_contactpointconsenttype": range(534120000, 534120002),  # Purpose, Topic
    "msdynmkt_value": range(534120000, 534120003),  # Not Set, Opted In, Opted Out
    "msdynmkt_logicalreason": range(534119999, 534120008),  # No reasons … One-click
    "msdynmkt_source": range(534120000, 534120008),  # Internal … Email list-unsubscribe
}
_BY_ID = re.compile(r"^/?(?P<set>\w+)\((?P<id>[0-9a-fA-F-]{36})\)$")
CONTACT_LENGTHS = {
    "firstname": 50,
    "lastname": 50,
    "emailaddress1": 100,
    "telephone1": 50,
    "jobtitle": 100,
    "address1_country": 80,
}
CONSENT_COLUMNS = {
    "donotemail",
    "donotbulkemail",
    "donotphone",
    "donotpostalmail",
    "donotfax",
    "donotsendmm",
}
CONTACT_COLUMNS = {*CONTACT_LENGTHS, *CONSENT_COLUMNS, "parentcustomerid_account@odata.bind"}
ACCOUNT_LENGTHS = {"name": 160}
ACCOUNT_COLUMNS = {*ACCOUNT_LENGTHS}
# Single-valued navigation properties the sandbox binds: (entity, navigation property) →
# (entity set bound to, the lookup property that holds the id: `_<property>_value`).
BINDS = {
    ("lead", "parentcontactid"): ("contacts", "_parentcontactid_value"),
    ("lead", "parentaccountid"): ("accounts", "_parentaccountid_value"),
    ("contact", "parentcustomerid_account"): ("accounts", "_parentcustomerid_value"),
}


class _Table:
    """One table of the environment: its entity set, logical name, key column, columns."""

    def __init__(
        self, name: str, key_column: str, columns: set[str], lengths: dict[str, int]
    ) -> None:
        self.name, self.key_column = name, key_column
        self.columns, self.lengths = columns, lengths
        self.lookups = {value for (entity, _), (_, value) in BINDS.items() if entity == name}
        self.rows: dict[str, dict[str, Any]] = {}

    @property
    def id_column(self) -> str:
        return f"{self.name}id"

    def readable(self) -> set[str]:
        return {c for c in self.columns if "@" not in c} | self.lookups | {self.id_column}

    def find(self, column: str, value: str) -> dict[str, Any] | None:
        if column == self.key_column:
            return self.rows.get(value)
        return next((r for r in self.rows.values() if r.get(column) == value), None)


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
    "lb_fit": "Integer",  # a Whole number column (fit × engagement, docs/scoring.md)
    "lb_engagement": "Integer",
    "parentcontactid": "Lookup",
    "parentaccountid": "Lookup",
    "parentcustomerid_account": "Lookup",
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
        contact_key_column: str = "lb_personkey",
        account_key_column: str = "lb_companykey",
        latency_ms: float = 0.0,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.key_column = key_column
        self.columns = set(COLUMNS) | {key_column}
        self.key_index_status = "Active"  # the alternate key's index: Pending while it builds
        # contact's and account's alternate keys: their index status, None for no key at all
        self.people_key_status: dict[str, str | None] = {"contact": "Active", "account": "Active"}
        self.tables = {
            "leads": _Table("lead", key_column, self.columns, LENGTHS),
            "contacts": _Table(
                "contact",
                contact_key_column,
                CONTACT_COLUMNS | {contact_key_column},
                CONTACT_LENGTHS,
            ),
            "accounts": _Table(
                "account",
                account_key_column,
                ACCOUNT_COLUMNS | {account_key_column},
                ACCOUNT_LENGTHS,
            ),
        }
        self.version = 0  # the environment's row version, for change tracking
        # issue 17: Customer Insights – Journeys installed (its consent table exists), and the
        # contact point consent records created (msdynmkt_contactpointconsent4).
        self.journeys = False
        self.consents: list[dict[str, Any]] = []
        self.oldest_token = 0  # delta tokens older than this have expired
        super().__init__(port, latency_ms=latency_ms)
        self.tables["leads"].rows = self.records  # the leads are the sandbox's records

    @property
    def contacts(self) -> dict[str, dict[str, Any]]:
        """Contacts by leadbridge's person key."""
        return self.tables["contacts"].rows

    @property
    def accounts(self) -> dict[str, dict[str, Any]]:
        """Accounts by leadbridge's company key."""
        return self.tables["accounts"].rows

    def routes(self) -> None:
        super().routes()
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self.token)
        self.route("POST", r"/api/data/v9\.2/\$batch", self.batch)
        self.route("PATCH", r"/api/data/v9\.2/(?P<target>leads\(.*\))", self.single)
        self.route("GET", r"/api/data/v9\.2/leads", self.read_leads)
        self.route("GET", r"/api/data/v9\.2/EntityDefinitions.*", self.definitions)
        self.route("GET", rf"/api/data/v9\.2/{journeys.CONSENT_SET}", self.read_consents)

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
            if action == "people" and request.method == "GET":
                return Response(
                    200,
                    {
                        "contacts": list(self.contacts.values()),
                        "accounts": list(self.accounts.values()),
                    },
                )
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
        if sum(len(p.parts) if isinstance(p, batch.ChangeSet) else 1 for p in parts) > 1000:
            return Response(
                400, {"error": {"code": "0x80048d19", "message": "Batch size exceeds 1000"}}
            )
        with self.lock:
            answers = [self._item(item) for item in parts]
        content_type, body = batch.response(answers)
        return Response(200, raw=body, headers={"Content-Type": content_type})

    def _item(self, item: batch.Part | batch.ChangeSet) -> batch.Part | batch.ChangeSet:
        if isinstance(item, batch.ChangeSet):
            return self._change_set(item)
        return self._part(item, {}, [])

    def _change_set(self, change_set: batch.ChangeSet) -> batch.Part | batch.ChangeSet:
        """All or nothing: the first failure undoes what the change set did and is its only
        answer; otherwise one answer per request, with its Content-ID."""
        named: dict[str, tuple[str, str]] = {}
        undo: list[tuple[dict[str, dict[str, Any]], str, dict[str, Any] | None]] = []
        answers = []
        for part in change_set.parts:
            if part.method == "GET":
                return _error(400, "0x0", "GET requests are not allowed within change sets.")
            answer = self._part(part, named, undo)
            if answer.status >= 400:
                for rows, key, before in reversed(undo):
                    if before is None:
                        rows.pop(key, None)
                    else:
                        rows[key] = before
                return answer
            answers.append(replace(answer, content_id=part.content_id))
        return batch.ChangeSet(answers)

    def _part(
        self,
        part: batch.Part,
        named: dict[str, tuple[str, str]],
        undo: list[tuple[dict[str, dict[str, Any]], str, dict[str, Any] | None]],
    ) -> batch.Part:
        prefer = (part.headers or {}).get("prefer", "")
        if part.method == "GET":
            return self._read_by_key(part.url)
        if part.method == "DELETE":
            return self._delete(part.url)
        if part.method == "POST":
            return self._create_consent(part.url, part.body)
        answer, written = self._write(
            part.url, part.body, "return=representation" in prefer, named, undo
        )
        if written is not None and part.content_id is not None:
            named[part.content_id] = written
        return answer

    def _create_consent(self, url: str, body: Any) -> batch.Part:
        """`POST msdynmkt_contactpointconsent4s`: 204 and the new row's OData-EntityId
        (create-entity-web-api.md, "Basic create"). Without CI-J, the set is unknown (404);
        a record without the mandatory consent type, or not bound to a purpose, is a 400."""
        path = urlsplit(url).path.rstrip("/")
        if not self.journeys or not path.endswith(f"/{journeys.CONSENT_SET}"):
            return _error(404, "0x8006088a", f"Resource not found for the segment '{path}'.")
        body = dict(body or {})
        purpose = _PURPOSE.match(str(body.get("msdynmkt_purposeId@odata.bind") or ""))
        if "msdynmkt_contactpointconsenttype" not in body or purpose is None:
            return _error(400, "0x80040200", "Consent Type and Purpose are required.")
        for column, accepted in CONSENT_CHOICES.items():
            if column in body and body[column] not in accepted:
                return _error(
                    400,
                    "0x8004431a",
                    f"A validation error occurred. The value {body[column]} of '{column}' on "
                    f"record of type '{journeys.CONSENT_ENTITY}' is outside the valid range. "
                    f"Accepted Values: {','.join(str(v) for v in accepted)}",
                )
        row = {k: v for k, v in body.items() if not k.endswith("@odata.bind")}
        row |= {"msdynmkt_contactpointconsent4id": str(uuid.uuid4()), "_purpose": purpose[1]}
        self.consents.append(row)
        row_id = row["msdynmkt_contactpointconsent4id"]
        entity = f"{self.url}/api/data/v9.2/{journeys.CONSENT_SET}({row_id})"
        return batch.Part(status=204, headers={"OData-EntityId": entity})

    def read_consents(self, request: Request) -> Response:
        """`GET msdynmkt_contactpointconsent4s?$select=…&$filter=msdynmkt_contactpointtype eq
        …  and msdynmkt_value eq … and Microsoft.Dynamics.CRM.In(PropertyName=@p1,
        PropertyValues=@p2)` (query/filter-rows, "Dataverse query functions")."""
        if not self.bearer_ok(request):
            return self.token_expired()
        if not self.journeys:
            return _not_found(request.path)
        query = {k: v[0] for k, v in request.query.items()}
        column = query.get("@p1", "''")[1:-1]
        values = {str(v).lower() for v in json.loads(query.get("@p2", "[]"))}
        wanted = dict(re.findall(r"(msdynmkt_\w+) eq (\d+)", query.get("$filter", "")))
        with self.lock:
            rows = [
                {column: r.get(column)}
                for r in self.consents
                if str(r.get(column) or "").lower() in values
                and all(str(r.get(k)) == v for k, v in wanted.items())
            ]
        return Response(200, {"value": rows})

    def _delete(self, url: str) -> batch.Part:
        """`DELETE <set>(<id>)` (or by alternate key): 204, or 404 when the row isn't there
        (update-delete-entities-using-web-api.md, "Basic delete"), with the error Dataverse
        gives for a missing row (web-service-error-codes: ObjectDoesNotExist, 0x80040217)."""
        address = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
        by_id, by_key = _BY_ID.match(address), _KEYED.search(address)
        table = self.tables.get((by_id or by_key)["set"]) if by_id or by_key else None
        if table is None:
            return _error(404, "0x8006088a", f"Resource not found for the segment '{address}'.")
        if by_id:
            wanted = by_id["id"].lower()
            key = next((k for k, r in table.rows.items() if r[table.id_column] == wanted), None)
        elif by_key and by_key["column"] == table.key_column:
            key = by_key["value"][1:-1].replace("''", "'")
        else:
            return _error(400, "0x0", _bad_key(table.name))
        if key is None or table.rows.pop(key, None) is None:
            shown = by_id["id"] if by_id else address
            return _error(404, "0x80040217", f"{table.name} With Id = {shown} Does Not Exist")
        self.version += 1
        return batch.Part(status=204)

    def _read_by_key(self, url: str) -> batch.Part:
        """`GET leads?$select=…&$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,
        PropertyValues=@p2)&@p1='<column>'&@p2=["…"]` — the Dataverse query function with
        parameter aliases (learn.microsoft.com/power-apps/developer/data-platform/webapi/
        query/filter-rows, "Dataverse query functions")."""
        split = urlsplit(url)
        table = self.tables.get(split.path.rstrip("/").rsplit("/", 1)[-1])
        if table is None:
            return _error(404, "0x8006088a", f"Resource not found for the segment '{url}'.")
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        columns = [c for c in (query.get("$select") or "").split(",") if c]
        unknown = [c for c in columns if c not in table.readable()]
        if unknown or "Microsoft.Dynamics.CRM.In(" not in query.get("$filter", ""):
            return _error(
                400,
                "0x80060888",
                f"Could not find a property named '{unknown[0]}' on type "
                f"'Microsoft.Dynamics.CRM.{table.name}'."
                if unknown
                else "unsupported query",
            )
        column = query.get("@p1", "''")[1:-1]
        values = set(json.loads(query.get("@p2", "[]")))
        rows = [
            {"@odata.etag": f'W/"{r["versionnumber"]}"', **{c: r.get(c) for c in columns}}
            for r in table.rows.values()
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
        query = {k: v[0] for k, v in request.query.items()}
        if match is not None and match["entity"] in ("contact", "account"):
            if match["attributes"]:
                return _not_found(request.path)
            with self.lock:
                return self._people_definition(match["entity"], query)
        if match is not None and match["entity"] == journeys.CONSENT_ENTITY and self.journeys:
            return Response(200, {"LogicalName": journeys.CONSENT_ENTITY, "MetadataId": CIJ_ID})
        if match is None or match["entity"] != "lead":
            return _not_found(request.path)
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

    def _people_definition(self, entity: str, query: dict[str, str]) -> Response:
        """contact's or account's definition with its columns' types and its alternate key
        (present while `people_key_status[entity]` is not None), in the same shapes."""
        table = self.tables[f"{entity}s"]
        body: dict[str, Any] = {"LogicalName": entity, "SchemaName": entity.title()}
        types = {name.partition("@")[0]: "String" for name in table.columns}
        types |= {c: "Boolean" for c in CONSENT_COLUMNS if c in types}
        types |= {"parentcustomerid_account": "Customer", table.id_column: "Uniqueidentifier"}
        status = self.people_key_status.get(entity)
        for name, options in _expand(query.get("$expand", "")).items():
            selected = [p for p in options.get("$select", "LogicalName").split(",") if p]
            if name == "Attributes":
                refused = _unknown(selected, ATTRIBUTE_PROPERTIES, "AttributeMetadata")
                rows = [{"LogicalName": n, "AttributeType": k} for n, k in sorted(types.items())]
            elif name == "Keys":
                refused = _unknown(selected, KEY_PROPERTIES, "EntityKeyMetadata")
                key = {
                    "LogicalName": f"{table.key_column}_key",
                    "KeyAttributes": [table.key_column],
                    "EntityKeyIndexStatus": status,
                }
                rows = [] if status is None else [key]
            else:
                return _not_found(name)
            if refused:
                return refused
            body[name] = [{p: row.get(p) for p in selected} for row in rows]
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
            answer, _ = self._write(
                request.path, request.json(), "return=representation" in prefer, {}, []
            )
        return Response(answer.status, answer.body, answer.headers or {})

    def _write(
        self,
        url: str,
        body: dict[str, Any] | None,
        representation: bool,
        named: dict[str, tuple[str, str]],
        undo: list[tuple[dict[str, dict[str, Any]], str, dict[str, Any] | None]],
    ) -> tuple[batch.Part, tuple[str, str] | None]:
        """PATCH by alternate key = upsert. 204 either way; with `Prefer:
        return=representation`, 201 for a create and 200 for an update, with the selected
        columns (use-upsert-insert-update-record.md). Returns the answer and, when it wrote,
        (entity set, key) of the record, for a later `$n`."""
        address, _, query = unquote(url).partition("?")
        match = _KEYED.search(address)
        table = self.tables[match["set"]] if match else None
        if match is None or table is None or match["column"] != table.key_column:
            entity = table.name if table else "lead"
            return _error(
                400, "0x80060888", f"{url}: not an alternate-key address of {entity}"
            ), None
        if table.name != "lead" and self.people_key_status.get(table.name) is None:
            return _error(400, "0x0", _bad_key(table.name)), None
        key = match["value"][1:-1].replace("''", "'")
        body = dict(body or {})
        refused = self._refused(table, body)
        if refused is not None:
            return refused, None
        values, failed = self._bind(table, body, named)
        if failed is not None:
            return failed, None
        existing = table.rows.get(key)
        undo.append((table.rows, key, dict(existing) if existing is not None else None))
        created = existing is None
        if existing is None:
            existing = table.rows[key] = {
                table.id_column: str(uuid.uuid4()),
                table.key_column: key,
                "statecode": 0,
                "_writes": 0,
                "_created_at": time.time(),
                "versionnumber": 0,
            }
        existing.update(values)
        existing["_writes"] += 1
        self._touch(existing)
        entity_set = match["set"]
        headers = {
            "OData-EntityId": f"{self.url}/api/data/v9.2/{entity_set}({existing[table.id_column]})"
        }
        if not representation:
            return batch.Part(status=204, headers=headers), (entity_set, key)
        selected = parse_qs(query).get("$select", [""])[0].split(",")
        record = {c: existing.get(c) for c in selected if c}
        return batch.Part(
            status=201 if created else 200,
            headers=headers,
            body={"@odata.etag": f'W/"{existing["versionnumber"]}"', **record},
        ), (entity_set, key)

    def _refused(self, table: _Table, body: dict[str, Any]) -> batch.Part | None:
        """Dataverse's answer to a body it won't take: an unknown column, a value too long,
        a plug-in's refusal (the REJECT marker); None when it takes it."""
        unknown = sorted(set(body) - table.columns)
        if unknown:
            return _error(
                400,
                "0x80060888",
                f"Could not find a property named '{unknown[0]}' "
                f"on type 'Microsoft.Dynamics.CRM.{table.name}'.",
            )
        for column, limit in table.lengths.items():
            value = body.get(column)
            if isinstance(value, str) and len(value) > limit:
                return _error(
                    400,
                    "0x80044331",
                    f"A validation error occurred. The length of "
                    f"the '{column}' attribute of the '{table.name}' entity exceeded the "
                    f"maximum allowed length of '{limit}'.",
                )
        if any(isinstance(v, str) and REJECT_MARKER in v for v in body.values()):
            return _error(400, "0x80040265", "ISV code aborted the operation.")
        return None

    def _bind(
        self, table: _Table, body: dict[str, Any], named: dict[str, tuple[str, str]]
    ) -> tuple[dict[str, Any], batch.Part | None]:
        """The body with each `<property>@odata.bind` the sandbox knows turned into its
        lookup value (`_<property>_value`, the bound record's id); the error when the bound
        record doesn't exist."""
        values = dict(body)
        for name, reference in body.items():
            prop, _, annotation = name.partition("@")
            bound = BINDS.get((table.name, prop))
            if annotation != "odata.bind" or bound is None:
                continue
            target_set, lookup = bound
            row, failed = self._resolve(str(reference), target_set, named)
            if failed is not None:
                return values, failed
            del values[name]
            values[lookup] = row[self.tables[target_set].id_column] if row else None
        return values, None

    def _resolve(
        self, reference: str, target_set: str, named: dict[str, tuple[str, str]]
    ) -> tuple[dict[str, Any] | None, batch.Part | None]:
        target = self.tables[target_set]
        if reference.startswith("$"):
            found = named.get(reference[1:])
            if found is None:
                return None, _error(
                    400,
                    "0x0",
                    f"Content-ID Reference: '{reference}' does not exist in the batch context.",
                )
            entity_set, key = found
            if entity_set != target_set:
                return None, _error(400, "0x0", f"{reference} is not a {target.name}")
            return self.tables[entity_set].rows.get(key), None
        path = reference.split("/api/data/v9.2", 1)[-1]
        match = _KEYED.search(unquote(path))
        if match and match["set"] == target_set:
            if match["column"] != target.key_column:
                return None, _error(400, "0x0", _bad_key(target.name))
            row = target.rows.get(match["value"][1:-1].replace("''", "'"))
            if row is None:
                return None, _error(
                    404,
                    "0x80060891",
                    f"A record with the specified key values does not exist in "
                    f"{target.name} entity",
                )
            return row, None
        by_id = _BY_ID.match(path)
        if by_id and by_id["set"] == target_set:
            row = target.find(target.id_column, by_id["id"])
            if row is None:
                return None, _error(
                    404,
                    "0x80040217",
                    f"{target.name} With Id = {by_id['id']} Does Not Exist",
                )
            return row, None
        return None, _error(400, "0x0", f"{reference}: not a reference to {target_set}")


def _bad_key(entity: str) -> str:
    """Addressing a table by a column that is no alternate key of it
    (use-alternate-key-reference-record.md, "Exceptions when using alternate keys")."""
    return (
        f"The key in the request URI is not valid for resource "
        f"'Microsoft.Dynamics.CRM.{entity}'. Ensure that the names and number of key "
        "properties match the declared or alternate key properties for the resource "
        f"'Microsoft.Dynamics.CRM.{entity}'."
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
