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
        self.version = 0  # the environment's row version, for change tracking
        self.oldest_token = 0  # delta tokens older than this have expired
        super().__init__(port, latency_ms=latency_ms)

    def routes(self) -> None:
        super().routes()
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self.token)
        self.route("POST", r"/api/data/v9\.2/\$batch", self.batch)
        self.route("PATCH", r"/api/data/v9\.2/(?P<target>leads\(.*\))", self.single)
        self.route("GET", r"/api/data/v9\.2/leads", self.read_leads)

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


def _error(status: int, code: str, message: str) -> batch.Part:
    return batch.Part(status=status, body={"error": {"code": code, "message": message}})


def _with(request: Request, key: str, value: int, base: str) -> str:
    """The request's own URL with one query parameter replaced (OData nextLink)."""
    from urllib.parse import urlencode

    query = {k: v[0] for k, v in request.query.items()}
    query[key] = str(value)
    return f"{base}{request.path}?{urlencode(query, safe='$,')}"
