"""A Dataverse environment and its Entra ID authority on loopback, over TLS.

msal only talks to https authorities, so the sandbox serves TLS from a throwaway CA
(trustme); `ca_bundle` points the target at `sandbox.ca_file`. It answers OIDC discovery and
client-credentials tokens, and the Web API's `$batch` of upserts by alternate key with
per-part statuses, Dataverse's error bodies, and 429 + Retry-After (seconds) when throttled.
"""

from __future__ import annotations

import re
import ssl
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import trustme

from leadbridge.connectors.dataverse import batch
from leadbridge.connectors.sandbox import Request, Response, Sandbox, form

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
    "lb_leadstage",
    "lb_leadkey",
    "ownerid@odata.bind",
    "statecode",
    "statuscode",
}
_KEYED = re.compile(r"leads\((?P<column>\w+)=(?P<value>'(?:[^']|'')*')\)$")


class DataverseSandbox(Sandbox):
    kind = "dataverse"

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
        self.ca = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._tmp = tempfile.TemporaryDirectory(prefix="lb-dataverse-ca-")
        self.ca_file = Path(self._tmp.name) / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        super().__init__(port, latency_ms=latency_ms, ssl_context=context)

    @property
    def authority(self) -> str:
        return f"{self.url}/{TENANT}"

    def routes(self) -> None:
        self.route(
            "GET", r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", self.discovery
        )
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self.token)
        self.route("POST", r"/api/data/v9\.2/\$batch", self.batch)
        self.route("PATCH", r"/api/data/v9\.2/(?P<target>leads\(.*\))", self.single)

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

    def stop(self) -> None:
        super().stop()
        self._tmp.cleanup()

    # --- Entra ID ------------------------------------------------------------------------

    def discovery(self, request: Request) -> Response:
        base = f"{self.url}/{request.match['tenant']}"
        return Response(
            200,
            {
                "issuer": f"{base}/v2.0",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
            },
        )

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
            answers = [self._upsert(part.url, part.body) for part in parts]
        content_type, body = batch.response(answers)
        return Response(200, raw=body, headers={"Content-Type": content_type})

    def single(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        with self.lock:
            answer = self._upsert(request.path, request.json())
        return Response(answer.status, answer.body, answer.headers or {})

    def _upsert(self, url: str, body: dict[str, Any] | None) -> batch.Part:
        match = _KEYED.search(unquote(url))
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
        if existing is None:
            existing = self.records[key] = {
                "leadid": str(uuid.uuid4()),
                self.key_column: key,
                "statecode": 0,
                "_writes": 0,
                "_created_at": time.time(),
            }
        existing.update(body)
        existing["_writes"] += 1
        return batch.Part(
            status=204,
            headers={"OData-EntityId": f"{self.url}/api/data/v9.2/leads({existing['leadid']})"},
        )


def _error(status: int, code: str, message: str) -> batch.Part:
    return batch.Part(status=status, body={"error": {"code": code, "message": message}})
