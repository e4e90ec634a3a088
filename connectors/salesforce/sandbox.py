"""A Salesforce org on loopback: OAuth client credentials, Lead describe, collections create
and upsert, SOQL, limits, and (when switched on) State and Country/Territory Picklists.

Speaks the subset leadbridge uses with Salesforce's own shapes: SaveResult / UpsertResult
objects per record, errorCode bodies, `Sforce-Limit-Info`, 403 REQUEST_LIMIT_EXCEEDED when
throttled, 401 INVALID_SESSION_ID for a stale token, DUPLICATE_VALUE when an insert repeats
the unique External ID, FIELD_INTEGRITY_EXCEPTION for a country the picklists don't know. A
record can be converted (read-only) through the admin API, as a salesperson converting a Lead
would, and an admin can switch the country picklists on or off:

    POST /_sandbox/org  {"country_picklists": true, "integration_values": {"US": "USA"},
                         "disabled_countries": ["BO"]}
    GET  /_sandbox/org  the org's settings
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pycountry

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
# Lead's fields in this org: (describe type, length, extra describe attributes). The custom
# ones are those leadbridge's default map uses. Types and lengths: Lead in the Object
# Reference (sforce_api_objects_lead.htm); attribute names: DescribeFieldResult, SOAP API
# guide (developer.salesforce.com/docs/atlas.en-us.api.meta/api/
# sforce_api_calls_describesobjects_describesobjectresult.htm).
STAGES = ("Subscriber", "Nurture", "MQL", "SQL", "Opportunity", "Customer", "Disqualified")
FIELD_TYPES: dict[str, tuple[str, int, dict[str, Any]]] = {
    "Id": ("id", 18, {"nillable": False, "createable": False, "updateable": False}),
    "FirstName": ("string", 40, {}),
    "LastName": ("string", 80, {"nillable": False}),
    "Email": ("email", 80, {"idLookup": True}),
    "Phone": ("phone", 40, {}),
    "MobilePhone": ("phone", 40, {}),
    "Company": ("string", 255, {"nillable": False}),
    "Title": ("string", 128, {}),
    "Country": ("string", 80, {}),
    "CountryCode": ("picklist", 10, {"restrictedPicklist": True}),
    "State": ("string", 80, {}),
    "StateCode": (
        "picklist",
        10,
        {"restrictedPicklist": True, "dependentPicklist": True, "controllerName": "CountryCode"},
    ),
    "Description": ("textarea", 32000, {}),
    "LeadSource": ("picklist", 255, {}),
    "Status": ("picklist", 255, {"nillable": False}),
    "Rating": ("picklist", 255, {}),
    "HasOptedOutOfEmail": ("boolean", 0, {"nillable": False}),
    "DoNotCall": ("boolean", 0, {"nillable": False}),
    "HasOptedOutOfFax": ("boolean", 0, {"nillable": False}),
    "OwnerId": ("reference", 18, {"nillable": False}),
    "IsConverted": ("boolean", 0, {"nillable": False, "createable": False}),
    "ConvertedOpportunityId": ("reference", 18, {"createable": False, "updateable": False}),
    "SystemModstamp": ("datetime", 0, {"createable": False, "updateable": False}),
    "Lead_Stage__c": ("picklist", 255, {"restrictedPicklist": True}),
    "LeadBridge_Marketplace_DNC__c": ("boolean", 0, {"nillable": False}),
    # fit × engagement (docs/scoring.md): Text(2) and two Number(4, 0) — a Number field
    # describes as type double with its precision and scale (DescribeFieldResult)
    "LeadBridge_Grade__c": ("string", 2, {}),
    "LeadBridge_Fit__c": ("double", 0, {"precision": 4, "scale": 0}),
    "LeadBridge_Engagement__c": ("double", 0, {"precision": 4, "scale": 0}),
}
PICKLISTS: dict[str, tuple[str, ...]] = {
    "LeadSource": ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"),
    "Status": (
        "Open - Not Contacted",
        "Working - Contacted",
        "Closed - Converted",
        "Closed - Not Converted",
    ),
    "Rating": ("Hot", "Warm", "Cold"),
    "Lead_Stage__c": STAGES,
}
COUNTRY_PICKLIST_FIELDS = ("CountryCode", "StateCode")  # exist only with the picklists on
LEAD_FIELDS = tuple(f for f in FIELD_TYPES if f not in COUNTRY_PICKLIST_FIELDS)
# Salesforce checks an email's form on write: INVALID_EMAIL_ADDRESS (REST errorcodes.htm).
EMAIL_FORM = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CONTACT_QUERY = re.compile(
    r"^SELECT Id, Email, OwnerId, AccountId, \(SELECT Id, CampaignId FROM CampaignMembers\), "
    r"\(SELECT Id, (?P<task_key>\w+) FROM Tasks WHERE (?P=task_key) != null\) "
    r"FROM Contact WHERE Email IN \((?P<values>.*)\)$"
)
CAMPAIGN_QUERY = re.compile(r"^SELECT Id, Name FROM Campaign WHERE Name IN \((?P<values>.*)\)$")
IN_QUERY = re.compile(
    r"^SELECT (?P<columns>[\w, ]+) FROM Lead WHERE (?P<field>\w+) IN \((?P<values>.*)\)$"
)
# The picklist's refusal of a Country text that is no integration value, as Salesforce
# answers it (github.com/verbb/formie/issues/963: a Lead over REST).
COUNTRY_REFUSED = (
    "There's a problem with this country, even though it may appear correct. Please select a "
    "country/territory from the list of valid countries.: Country"
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
        country_picklists: bool = False,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.external_id_field = external_id_field
        self.ids = itertools.count(1)
        self.auto_assign_headers: list[str | None] = []
        self.page_size = 2000
        self.fields = set(LEAD_FIELDS) | {external_id_field}  # what `describe` lists
        self.cursors: dict[str, list[dict[str, Any]]] = {}
        # State and Country/Territory Picklists: every ISO 3166 country, its integration
        # value defaulting to the ISO name (help.salesforce.com, xcloud.state_country_and_
        # territory_picklist_fields.htm: "Integration values for standard states, countries,
        # and territories default to the full ISO-standard names"); an admin may edit them.
        self.country_picklists = False
        self.integration_values = {c.alpha_2: c.name for c in pycountry.countries}
        self.disabled_countries: set[str] = set()
        # Known customers (existing_contact): Contacts, Campaigns, their members, Tasks.
        self.contacts: dict[str, dict[str, Any]] = {}  # by Id
        self.campaigns: dict[str, dict[str, Any]] = {}  # by Id
        self.members: dict[str, dict[str, Any]] = {}  # CampaignMember by Id
        self.tasks: dict[str, dict[str, Any]] = {}  # Task by its External ID value
        self.task_key_field = external_id_field  # the External ID on Activity
        self.recycle_bin: set[str] = set()  # ids deleted: ENTITY_IS_DELETED when asked again
        super().__init__(port, latency_ms=latency_ms)
        self.set_country_picklists(country_picklists)

    def set_country_picklists(self, enabled: bool) -> None:
        """Switch the picklists: CountryCode and StateCode exist on Lead only while they're on."""
        with self.lock:
            self.country_picklists = enabled
            if enabled:
                self.fields |= set(COUNTRY_PICKLIST_FIELDS)
            else:
                self.fields -= set(COUNTRY_PICKLIST_FIELDS)

    def routes(self) -> None:
        self.route("POST", "/services/oauth2/token", self.token)
        self.route("GET", r"/services/data/v[\d.]+/query", self.query)
        self.route("GET", r"/services/data/v[\d.]+/query/(?P<cursor>[^/]+)", self.query_more)
        self.route("GET", r"/services/data/v[\d.]+/sobjects/Lead/describe/?", self.describe)
        self.route("POST", r"/services/data/v[\d.]+/composite/sobjects", self.create_collection)
        self.route(
            "PATCH",
            r"/services/data/v[\d.]+/composite/sobjects/Lead/(?P<field>[^/]+)",
            self.upsert_collection,
        )
        self.route(
            "PATCH",
            r"/services/data/v[\d.]+/composite/sobjects/Task/(?P<field>[^/]+)",
            self.upsert_tasks,
        )
        self.route("DELETE", r"/services/data/v[\d.]+/composite/sobjects", self.delete_collection)

    def is_api(self, request: Request) -> bool:
        return not request.path.startswith("/services/oauth2/")

    def throttled(self) -> Response:
        # REST API errorcodes.htm: the org's limits answer 403 REQUEST_LIMIT_EXCEEDED.
        return Response(
            403,
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        )

    def token_expired(self) -> Response:
        # REST API errorcodes.htm: 401 with errorCode INVALID_SESSION_ID.
        return Response(
            401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        )

    def token(self, request: Request) -> Response:
        """OAuth 2.0 client credentials (developer.salesforce.com/docs/atlas.en-us.
        chatterapi.meta/chatterapi/quickstart_connecting.htm): access_token, instance_url,
        token_type, id; no refresh token. Other grants are refused as Salesforce refuses an
        unknown one (unsupported_grant_type)."""
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

    # --- describe -----------------------------------------------------------------------

    def describe(self, request: Request) -> Response:
        """`GET …/sobjects/Lead/describe`: the DescribeSObjectResult (developer.salesforce.com/
        docs/platform/api-rest/guide/dome-sobject-describe.html) with the attributes of each
        field leadbridge and `config check` read; CountryCode and StateCode only while the
        country picklists are on, as in a real org."""
        if not self.bearer_ok(request):
            return self.token_expired()
        with self.lock:
            names = sorted(self.fields, key=lambda n: (n not in FIELD_TYPES, n))
            fields = [self._describe_field(name) for name in names]
        return Response(
            200,
            {
                "name": "Lead",
                "label": "Lead",
                "labelPlural": "Leads",
                "keyPrefix": "00Q",
                "custom": False,
                "createable": True,
                "updateable": True,
                "queryable": True,
                "fields": fields,
                "urls": {
                    "sobject": "/services/data/v62.0/sobjects/Lead",
                    "describe": "/services/data/v62.0/sobjects/Lead/describe",
                    "rowTemplate": "/services/data/v62.0/sobjects/Lead/{ID}",
                },
            },
        )

    def _describe_field(self, name: str) -> dict[str, Any]:
        """One DescribeFieldResult; an org's own custom field (added by a test) is Text(255)."""
        kind, length, extra = FIELD_TYPES.get(name, ("string", 255, {}))
        is_key = name == self.external_id_field
        if is_key:
            kind, length = "string", 32
        return {
            "name": name,
            "label": name.removesuffix("__c").replace("_", " "),
            "type": kind,
            "length": length,
            "custom": name.endswith("__c"),
            "externalId": is_key,
            "unique": is_key,
            "caseSensitive": False,
            "idLookup": is_key or bool(extra.get("idLookup")),
            "nillable": extra.get("nillable", True),
            "createable": extra.get("createable", True),
            "updateable": extra.get("updateable", True),
            "defaultValue": None,
            "restrictedPicklist": extra.get("restrictedPicklist", False),
            "dependentPicklist": extra.get("dependentPicklist", False),
            "controllerName": extra.get("controllerName"),
            "picklistValues": self._picklist(name),
        }

    def _picklist(self, name: str) -> list[dict[str, Any]]:
        """PicklistEntry objects: active, defaultValue, label, validFor, value. (StateCode's
        validFor is a bitmap over CountryCode's values in a real org; here it is left null.)"""
        if name == "CountryCode":
            values = [(code, _country_name(code)) for code in self._codes()]
        elif name == "StateCode":
            values = [
                (s.code.removeprefix("US-"), s.name)
                for s in pycountry.subdivisions.get(country_code="US") or []
            ]
        else:
            values = [(v, v) for v in PICKLISTS.get(name, ())]
        return [
            {"active": True, "defaultValue": False, "label": label, "validFor": None, "value": v}
            for v, label in sorted(values)
        ]

    def _codes(self) -> list[str]:
        return sorted(set(self.integration_values) - self.disabled_countries)

    def create_collection(self, request: Request) -> Response:
        """`POST …/composite/sobjects`: insert up to 200 records, one SaveResult each, in order
        (developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-
        collections-create.html). An insert repeating the unique External ID is refused with
        DUPLICATE_VALUE and leaves the existing record alone."""
        if not self.bearer_ok(request):
            return self.token_expired()
        body = request.json() or {}
        records = body.get("records") or []
        if records and all(
            (r.get("attributes") or {}).get("type") == "CampaignMember" for r in records
        ):
            with self.lock:
                return Response(200, [self._add_member(r) for r in records])
        refused = self._refuse_request(records) or self._refuse_types(records)
        if refused is not None:
            return refused
        self.auto_assign_headers.append(request.header("sforce-auto-assign"))
        with self.lock:
            results = [self._insert(record) for record in records]
            if body.get("allOrNone") and not all(r["success"] for r in results):
                results = self._roll_back(results)
            used = len(self.request_log) + 1
        return Response(200, results, {"Sforce-Limit-Info": f"api-usage={used}/{DAILY_LIMIT}"})

    def upsert_collection(self, request: Request) -> Response:
        """`PATCH …/composite/sobjects/Lead/<External ID>`: one UpsertResult per record, in
        order, `created` telling insert from update (developer.salesforce.com/docs/platform/
        api-rest/guide/resources-composite-sobjects-collections-upsert.html)."""
        if not self.bearer_ok(request):
            return self.token_expired()
        field = request.match["field"]
        if field != self.external_id_field:
            # REST errorcodes.htm: NOT_FOUND for a resource (here: the field) that isn't there.
            return Response(
                404,
                [{"errorCode": "NOT_FOUND", "message": f"Field {field} does not exist on Lead"}],
            )
        body = request.json() or {}
        records = body.get("records") or []
        refused = self._refuse_request(records)
        if refused is not None:
            return refused
        self.auto_assign_headers.append(request.header("sforce-auto-assign"))
        with self.lock:
            results = [self._upsert(record, field) for record in records]
            used = len(self.request_log) + 1
        return Response(200, results, {"Sforce-Limit-Info": f"api-usage={used}/{DAILY_LIMIT}"})

    def delete_collection(self, request: Request) -> Response:
        """`DELETE …/composite/sobjects?ids=…&allOrNone=false`: up to 200 records of any
        type, a DeleteResult per id in the order asked (developer.salesforce.com/docs/
        platform/api-rest/guide/resources-composite-sobjects-collections-delete.html). An id
        deleted before answers ENTITY_IS_DELETED (it sits in the recycle bin), one never seen
        INVALID_CROSS_REFERENCE_KEY, one of the wrong form MALFORMED_ID."""
        if not self.bearer_ok(request):
            return self.token_expired()
        ids = [i for i in ",".join(request.query.get("ids", [])).split(",") if i]
        if not ids or len(ids) > 200:
            return Response(
                400,
                [{"errorCode": "EXCEEDED_ID_LIMIT", "message": "ids: between 1 and 200 ids"}],
            )
        with self.lock:
            return Response(200, [self._delete(record_id) for record_id in ids])

    def _delete(self, record_id: str) -> dict[str, Any]:
        if not re.fullmatch(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?", record_id):
            return _failed("MALFORMED_ID", f"malformed id {record_id}")
        if record_id in self.recycle_bin:
            return _failed("ENTITY_IS_DELETED", "entity is deleted")
        for rows in (self.records, self.contacts, self.members, self.tasks):
            key = next((k for k, row in rows.items() if row.get("Id") == record_id), None)
            if key is not None:
                del rows[key]
                self.recycle_bin.add(record_id)
                return {"id": record_id, "success": True, "errors": []}
        return _failed("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")

    # --- known customers: Contacts, Campaigns, CampaignMembers, Tasks ----------------------

    def _add_member(self, record: dict[str, Any]) -> dict[str, Any]:
        """A CampaignMember create: the Campaign and Contact must exist, and a Contact joins a
        Campaign once ("DUPLICATE_VALUE: Already a campaign member.", as Salesforce says it:
        github.com/openstax/tutor-server/pull/1653)."""
        campaign, contact = record.get("CampaignId"), record.get("ContactId")
        if campaign not in self.campaigns:
            return _failed(
                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["CampaignId"]
            )
        if contact not in self.contacts:
            return _failed(
                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["ContactId"]
            )
        if any(
            m["CampaignId"] == campaign and m["ContactId"] == contact for m in self.members.values()
        ):
            return _failed("DUPLICATE_VALUE", "Already a campaign member.")
        member_id = f"00v{next(self.ids):015d}"
        self.members[member_id] = {"Id": member_id, "CampaignId": campaign, "ContactId": contact}
        return {"id": member_id, "success": True, "errors": []}

    def upsert_tasks(self, request: Request) -> Response:
        """`PATCH …/composite/sobjects/Task/<External ID>`: UpsertResults as for Leads. WhoId
        must name a Contact that exists."""
        if not self.bearer_ok(request):
            return self.token_expired()
        field = request.match["field"]
        if field != self.task_key_field:
            return Response(
                404,
                [{"errorCode": "NOT_FOUND", "message": f"Field {field} does not exist on Task"}],
            )
        results = []
        with self.lock:
            for record in (request.json() or {}).get("records") or []:
                key = record.get(field)
                fields = {k: v for k, v in record.items() if k not in ("attributes", field)}
                if fields.get("WhoId") not in self.contacts:
                    results.append(
                        _failed(
                            "INVALID_CROSS_REFERENCE_KEY",
                            "Name ID: id value of incorrect type",
                            ["WhoId"],
                        )
                    )
                    continue
                existing = self.tasks.get(key)
                if existing is None:
                    task_id = f"00T{next(self.ids):015d}"
                    self.tasks[key] = {"Id": task_id, field: key, "Status": "Not Started", **fields}
                    results.append({"id": task_id, "success": True, "errors": [], "created": True})
                else:
                    existing.update(fields)
                    results.append(
                        {"id": existing["Id"], "success": True, "errors": [], "created": False}
                    )
        return Response(200, results)

    def _query_contacts(self, match: re.Match[str]) -> Response:
        """`SELECT Id, Email, OwnerId, AccountId, (SELECT Id, CampaignId FROM CampaignMembers),
        (SELECT Id, <key> FROM Tasks WHERE <key> != null) FROM Contact WHERE Email IN (…)`.
        A subquery with no rows is null; with rows, a query result of its own (SOQL
        relationship queries, sforce_api_calls_soql_relationships_query_using.htm)."""
        emails = {e.lower() for e in re.findall(r"'((?:[^'\\]|\\.)*)'", match["values"])}
        key = match["task_key"]
        rows = []
        with self.lock:
            for contact in self.contacts.values():
                if str(contact.get("Email") or "").lower() not in emails:
                    continue
                members = [
                    {
                        "attributes": {"type": "CampaignMember"},
                        "Id": m["Id"],
                        "CampaignId": m["CampaignId"],
                    }
                    for m in self.members.values()
                    if m["ContactId"] == contact["Id"]
                ]
                tasks = [
                    {"attributes": {"type": "Task"}, "Id": t["Id"], key: t.get(key)}
                    for t in self.tasks.values()
                    if t.get("WhoId") == contact["Id"] and t.get(key)
                ]
                rows.append(
                    {
                        "attributes": {
                            "type": "Contact",
                            "url": f"/services/data/v62.0/sobjects/Contact/{contact['Id']}",
                        },
                        **{c: contact.get(c) for c in ("Id", "Email", "OwnerId", "AccountId")},
                        "CampaignMembers": _child(members),
                        "Tasks": _child(tasks),
                    }
                )
        return self._page(rows, 0)

    def _query_campaigns(self, match: re.Match[str]) -> Response:
        names = set(re.findall(r"'((?:[^'\\]|\\.)*)'", match["values"]))
        with self.lock:
            rows = [
                {"attributes": {"type": "Campaign"}, "Id": c["Id"], "Name": c["Name"]}
                for c in self.campaigns.values()
                if c["Name"] in names
            ]
        return self._page(rows, 0)

    def _refuse_request(self, records: list[dict[str, Any]]) -> Response | None:
        """What refuses a whole collections request (400, errorCode bodies: errorcodes.htm)."""
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
        with self.lock:
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
        return None

    def _refuse_types(self, records: list[dict[str, Any]]) -> Response | None:
        """Every record of a create names its type in `attributes`; this org speaks Lead."""
        for record in records:
            kind = (record.get("attributes") or {}).get("type")
            if kind != "Lead":
                return Response(
                    400,
                    [
                        {
                            "errorCode": "INVALID_TYPE",
                            "message": f"sObject type '{kind}' is not supported.",
                        }
                    ],
                )
        return None

    def _insert(self, record: dict[str, Any]) -> dict[str, Any]:
        """One record of a create: a SaveResult (id, success, errors)."""
        field = self.external_id_field
        key = record.get(field)
        fields = {k: v for k, v in record.items() if k not in ("attributes", field)}
        if "Id" in fields:
            return _failed("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call")
        existing = self.records.get(key) if key is not None else None
        if existing is not None:
            # The unique index refuses a second record with the key, as Salesforce words it
            # (github.com/sfb2csolutionarchitects/b2c-crm-sync/issues/98).
            return _failed(
                "DUPLICATE_VALUE",
                f"duplicate value found: {field} duplicates value on record with id: "
                f"{existing['Id']}",
            )
        errors = self._validate(fields, None)
        if errors:
            return {"id": None, "success": False, "errors": errors}
        record_id = self._create(key, fields)
        return {"id": record_id, "success": True, "errors": []}

    def _roll_back(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """allOrNone: true and a record failed: nothing is kept; the records that would have
        passed say they were rolled back (AllOrNoneHeader, sforce_api_header_allornoneheader.htm;
        the statusCode is Salesforce's, the message wording is ours)."""
        created = {r["id"] for r in results if r["success"]}
        for key in [k for k, v in self.records.items() if v["Id"] in created]:
            del self.records[key]
        return [
            r
            if not r["success"]
            else _failed(
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was "
                "using AllOrNone header",
            )
            for r in results
        ]

    def _upsert(self, record: dict[str, Any], field: str) -> dict[str, Any]:
        key = record.get(field)
        fields = {k: v for k, v in record.items() if k not in ("attributes", field)}
        existing = self.records.get(key)
        errors = self._validate(fields, existing)
        if errors:
            return {"id": existing["Id"] if existing else None, "success": False, "errors": errors}
        if existing is None:
            record_id = self._create(key, fields)
            return {"id": record_id, "success": True, "errors": [], "created": True}
        existing.update(fields, **self._country_sync(fields))
        existing["_writes"] += 1
        existing["SystemModstamp"] = self._stamp()
        return {"id": existing["Id"], "success": True, "errors": [], "created": False}

    def _create(self, key: Any, fields: dict[str, Any]) -> str:
        record_id = f"00Q{next(self.ids):015d}"
        self.records[key if key is not None else record_id] = {
            "Id": record_id,
            self.external_id_field: key,
            "IsConverted": False,
            "_writes": 1,
            "_created_at": time.time(),
            "SystemModstamp": self._stamp(),
            **fields,
            **self._country_sync(fields),
        }
        return record_id

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
        country = self._country_errors(fields)
        if country:
            return country
        if any(isinstance(v, str) and REJECT_MARKER in v for v in fields.values()):
            return [
                {
                    "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    "message": "Company looks like a test record",
                    "fields": ["Company"],
                }
            ]
        return []

    # --- State and Country/Territory Picklists -------------------------------------------

    def _country_errors(self, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
        """With the picklists on, Country must be an integration value and CountryCode an
        available code, or the write fails with FIELD_INTEGRITY_EXCEPTION (vendor-facts §2.1:
        NPSP issue #994 and github.com/verbb/formie/issues/963 for Country; the CountryCode
        wording from support.storeconnect.com)."""
        if not self.country_picklists:
            return []
        code, name = fields.get("CountryCode"), fields.get("Country")
        if code not in (None, "") and str(code) not in self._codes():
            return [
                {
                    "statusCode": "FIELD_INTEGRITY_EXCEPTION",
                    "message": f"The CountryCode field contains {code}, which isn't an "
                    "available country/territory.",
                    "fields": ["CountryCode"],
                }
            ]
        if name not in (None, "") and str(name) not in self._by_integration_value():
            return [
                {
                    "statusCode": "FIELD_INTEGRITY_EXCEPTION",
                    "message": COUNTRY_REFUSED,
                    "fields": ["Country"],
                }
            ]
        return []

    def _country_sync(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Salesforce keeps the pair in step: a code written fills Country with its
        integration value, a valid Country fills CountryCode (help: admin_state_country_
        picklists_integ_values.htm)."""
        if not self.country_picklists:
            return {}
        if fields.get("CountryCode"):
            return {"Country": self.integration_values[fields["CountryCode"]]}
        if fields.get("Country"):
            return {"CountryCode": self._by_integration_value()[fields["Country"]]}
        return {}

    def _by_integration_value(self) -> dict[str, str]:
        return {self.integration_values[code]: code for code in self._codes()}

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
        contacts = CONTACT_QUERY.match(soql)
        if contacts:
            return self._query_contacts(contacts)
        campaigns = CAMPAIGN_QUERY.match(soql)
        if campaigns:
            return self._query_campaigns(campaigns)
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
        if action == "org":
            return self._org_settings(request)
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
        if action == "contact" and request.method == "POST":
            # A customer already in the org: a Contact (Email, LastName, OwnerId, AccountId).
            with self.lock:
                contact_id = f"003{next(self.ids):015d}"
                self.contacts[contact_id] = {"Id": contact_id, **(request.json() or {})}
            return Response(200, self.contacts[contact_id])
        if action == "campaign" and request.method == "POST":
            with self.lock:
                campaign_id = f"701{next(self.ids):015d}"
                self.campaigns[campaign_id] = {"Id": campaign_id, **(request.json() or {})}
            return Response(200, self.campaigns[campaign_id])
        if action == "convert" and request.method == "POST":
            key = (request.json() or {}).get("key")
            with self.lock:
                if key not in self.records:
                    return Response(404, {"error": "no such lead"})
                self.records[key]["IsConverted"] = True
                self.records[key]["SystemModstamp"] = self._stamp()
            return Response(200, self.records[key])
        return None

    def _org_settings(self, request: Request) -> Response:
        """An admin's Setup: State and Country/Territory Picklists on or off, integration
        values edited ({"US": "USA"}), countries made unavailable (["BO"])."""
        if request.method == "POST":
            body = request.json() or {}
            with self.lock:
                if "integration_values" in body:
                    self.integration_values.update(body["integration_values"])
                if "disabled_countries" in body:
                    self.disabled_countries = set(body["disabled_countries"])
                if "country_picklists" in body:
                    self.set_country_picklists(bool(body["country_picklists"]))
        with self.lock:
            return Response(
                200,
                {
                    "country_picklists": self.country_picklists,
                    "disabled_countries": sorted(self.disabled_countries),
                },
            )


def _child(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A subquery's value in a parent row: null when empty."""
    return {"totalSize": len(rows), "done": True, "records": rows} if rows else None


def _failed(code: str, message: str, fields: Iterable[str] = ()) -> dict[str, Any]:
    """A SaveResult for a record that was not written."""
    return {
        "id": None,
        "success": False,
        "errors": [{"statusCode": code, "message": message, "fields": list(fields)}],
    }


def _country_name(code: str) -> str:
    """What the picklist shows for a code: the ISO name (or the code, for a custom one)."""
    country = pycountry.countries.get(alpha_2=code)
    return country.name if country is not None else code


def _stamp_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp[:-5] + stamp[-5:-2] + ":" + stamp[-2:])
