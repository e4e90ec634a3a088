"""A Partner Center on loopback, over TLS: its Entra ID sign-in (device code, refresh tokens)
and the Referrals API (list by updatedDateTime, get, JSON Patch with If-Match and 412).

The device code is approved at once, as if the admin had signed in; the admin API adds
referrals and makes the next PATCH lose a race (412), as a colleague editing would.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from leadbridge.connectors.sandbox import EntraSandbox, Request, Response, form

TENANT = "00000000-0000-0000-0000-0000000000pc"
API = "/v1.0/engagements/referrals"
ALLOWED = {"New": {"New", "Active", "Closed"}, "Active": {"Active", "Closed"}, "Closed": {"Closed"}}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class ReferralsSandbox(EntraSandbox):
    kind = "partner_center"
    tenant = TENANT

    def __init__(
        self, port: int = 0, *, client_id: str = "sandbox-pc-app", latency_ms: float = 0.0
    ) -> None:
        self.client_id = client_id
        self.refresh_tokens: set[str] = set()
        self.etags = itertools.count(1)
        self.conflict_next = 0
        super().__init__(port, latency_ms=latency_ms)

    @property
    def api_url(self) -> str:
        return f"{self.url}{API}"

    def routes(self) -> None:
        super().routes()
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/devicecode", self.device_code)
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self.token)
        self.route("GET", API, self.list_referrals)
        self.route("GET", f"{API}/(?P<id>[^/]+)", self.get_referral)
        self.route("PATCH", f"{API}/(?P<id>[^/]+)", self.patch_referral)

    def is_api(self, request: Request) -> bool:
        return request.path.startswith("/v1.0/")

    # --- Entra ID, delegated -------------------------------------------------------------

    def device_code(self, request: Request) -> Response:
        return Response(
            200,
            {
                "device_code": "sandbox-device-code",
                "user_code": "LEADBRDG",
                "verification_uri": f"{self.url}/devicelogin",
                "expires_in": 900,
                "interval": 1,
                "message": f"To sign in, open {self.url}/devicelogin and enter the code LEADBRDG.",
            },
        )

    def token(self, request: Request) -> Response:
        data = form(request)
        if data.get("client_id") != self.client_id:
            return Response(400, {"error": "unauthorized_client"})
        grant = data.get("grant_type", "")
        if grant.endswith("device_code"):
            if data.get("device_code") != "sandbox-device-code":
                return Response(400, {"error": "expired_token"})
        elif grant == "refresh_token":
            if data.get("refresh_token") not in self.refresh_tokens:
                return Response(400, {"error": "invalid_grant"})
        else:
            return Response(400, {"error": "unsupported_grant_type"})
        refresh = f"rt-{uuid.uuid4().hex}"
        self.refresh_tokens.add(refresh)
        now = int(time.time())
        id_token = ".".join(
            [
                _b64({"alg": "none", "typ": "JWT"}),
                _b64(
                    {
                        "iss": f"{self.authority}/v2.0",
                        "aud": self.client_id,
                        "iat": now,
                        "nbf": now,
                        "exp": now + 3600,
                        "sub": "admin",
                        "oid": "u-1",
                        "tid": TENANT,
                        "preferred_username": "referrals.admin@contoso.example",
                    }
                ),
                "",
            ]
        )
        return Response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": data.get("scope", ""),
                "access_token": self.issue_token(),
                "refresh_token": refresh,
                "id_token": id_token,
                "client_info": _b64({"uid": "u-1", "utid": TENANT}),
            },
        )

    # --- Referrals -----------------------------------------------------------------------

    def list_referrals(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        query = {k: v[0] for k, v in request.query.items()}
        since = query.get("$filter", "").rpartition(" ")[2]
        with self.lock:
            rows = sorted(
                (r for r in self.records.values() if r["updatedDateTime"] >= since),
                key=lambda r: r["updatedDateTime"],
            )
        skip, top = int(query.get("$skip", 0)), int(query.get("$top", 100))
        return Response(200, {"value": rows[skip : skip + top]})

    def get_referral(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        referral = self.records.get(request.match["id"])
        if referral is None:
            return Response(404, {"error": "not found"})
        return Response(200, referral, {"ETag": referral["eTag"]})

    def patch_referral(self, request: Request) -> Response:
        if not self.bearer_ok(request):
            return self.token_expired()
        with self.lock:
            referral = self.records.get(request.match["id"])
            if referral is None:
                return Response(404, {"error": "not found"})
            if self.conflict_next:
                self.conflict_next -= 1
                self._touch(referral)  # a colleague saved it a moment before us
            if request.header("if-match") not in (None, referral["eTag"]):
                return Response(412, {"error": "precondition failed"})
            changed = dict(referral)
            for op in request.json() or []:
                changed[op["path"].strip("/")] = op["value"]
            if changed["status"] not in ALLOWED.get(referral["status"], set()):
                return Response(
                    400, {"error": f"{referral['status']} can't move to {changed['status']}"}
                )
            referral.update(changed)
            self._touch(referral)
        return Response(204)

    def _touch(self, referral: dict[str, Any]) -> None:
        referral["eTag"] = f'"{next(self.etags):08x}-0000-0000-0000-000000000000"'
        referral["updatedDateTime"] = datetime.now(UTC).isoformat(timespec="milliseconds")

    def add(self, referral: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            referral = {
                "status": "New",
                "substatus": "Received",
                "type": "Independent",
                "qualification": "Direct",
                **referral,
            }
            referral.setdefault("id", str(uuid.uuid4()))
            referral.setdefault("createdDateTime", datetime.now(UTC).isoformat())
            self._touch(referral)
            self.records[referral["id"]] = referral
            return referral

    def admin_extra(self, action: str, request: Request) -> Response | None:
        if action == "referral" and request.method == "POST":
            return Response(200, self.add(request.json() or {}))
        if action == "conflict_next" and request.method == "POST":
            self.conflict_next = int((request.json() or {}).get("count", 1))
            return Response(200, {"conflict_next": self.conflict_next})
        return None
