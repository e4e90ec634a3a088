"""A Partner Center on loopback, over TLS: its Entra ID sign-in (device code, refresh tokens)
and the Referrals API (list ordered by updatedDateTime in pages linked by `@odata.nextLink`
with an opaque `$skiptoken`, get, JSON Patch with If-Match and 412).

The device code is approved at once, as if the admin had signed in; the admin API adds
referrals, makes the next PATCH lose a race (412), as a colleague editing would, and can make
the list refuse a filter on updatedDateTime, which Partner Center doesn't document.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from leadbridge.connectors.sandbox import EntraSandbox, Request, Response, form

TENANT = "00000000-0000-0000-0000-0000000000pc"
API = "/v1.0/engagements/referrals"
ALLOWED = {"New": {"New", "Active", "Closed"}, "Active": {"Active", "Closed"}, "Closed": {"Closed"}}
PAGE_SIZE = 100  # the server's page when the client states no odata.maxpagesize
_UPDATED_SINCE = re.compile(r"^\s*updatedDateTime\s+(?P<op>ge|gt)\s+(?P<stamp>\S+)\s*$")
_ORDER = re.compile(r"^\s*(?P<field>createdDateTime|updatedDateTime)(?:\s+(?P<dir>asc|desc))?\s*$")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class ReferralsSandbox(EntraSandbox):
    kind = "partner_center"
    tenant = TENANT

    def __init__(
        self,
        port: int = 0,
        *,
        client_id: str = "sandbox-pc-app",
        latency_ms: float = 0.0,
        refuse_updated_filter: bool = False,
    ) -> None:
        self.client_id = client_id
        self.refresh_tokens: set[str] = set()
        self.etags = itertools.count(1)
        self.conflict_next = 0
        self.refuse_updated_filter = refuse_updated_filter
        self._last_save = 0.0
        self.list_queries: list[dict[str, str]] = []  # each list request's query, for tests
        self._skiptokens: dict[str, dict[str, Any]] = {}  # opaque token → where a listing is
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
        """GET …/referrals with `$filter`, `$orderby` (createdDateTime / updatedDateTime),
        `$top` and `$skip` (the OData options of Microsoft's Power Automate connector for this
        API, learn.microsoft.com/connectors/partnercenterref), answered a page at a time
        (learn.microsoft.com/partner-center/developer/get-a-list-of-referrals: "Use the
        `@odata.nextLink` to get the next page of results"). The link has the shape of that
        page's example,
        `http://api.partner.microsoft.com/v1.0/referrals?$skiptoken=k181pEdP0ykypkieJfcxX`:
        plain http, no `/engagements`, and only an opaque `$skiptoken` that stands for the
        whole listing. The page is keyset-paged, so a referral updated while a client pages
        moves, but nothing else is skipped. The filter on updatedDateTime is not
        documented; with `refuse_updated_filter` it is a 400 in Partner Center's error
        shape (learn.microsoft.com/partner-center/developer/error-codes: code, description,
        data, source; the values here are the sandbox's own)."""
        if not self.bearer_ok(request):
            return self.token_expired()
        query = {k: v[0] for k, v in request.query.items()}
        with self.lock:
            self.list_queries.append(query)
            if "$skiptoken" in query:
                listing = self._skiptokens.get(query["$skiptoken"])
                if listing is None:
                    return _error(400, "The skip token is not valid or has expired.")
            else:
                listing, refused = self._listing(query, request.header("prefer") or "")
                if refused is not None:
                    return refused
            return Response(200, self._page(listing))

    def _listing(
        self, query: dict[str, str], prefer: str
    ) -> tuple[dict[str, Any], Response | None]:
        listing: dict[str, Any] = {"since": None, "strict": False, "after": None}
        text = query.get("$filter")
        if text:
            match = _UPDATED_SINCE.match(text)
            if match is None:
                return listing, _error(
                    400, f"The sandbox supports no $filter but updatedDateTime: {text}"
                )
            if self.refuse_updated_filter:
                return listing, _error(
                    400,
                    "Invalid filter: the property 'updatedDateTime' is not supported in $filter.",
                )
            listing["since"] = _when(match["stamp"])
            listing["strict"] = match["op"] == "gt"
        order = _ORDER.match(query.get("$orderby") or "createdDateTime asc")
        if order is None:
            return listing, _error(400, f"Unsupported $orderby: {query['$orderby']}")
        listing["field"], listing["desc"] = order["field"], order["dir"] == "desc"
        size = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        listing["size"] = max(1, int(size[1])) if size else PAGE_SIZE
        listing["left"] = int(query["$top"]) if query.get("$top", "").isdigit() else None
        listing["skip"] = int(query["$skip"]) if query.get("$skip", "").isdigit() else 0
        return listing, None

    def _page(self, listing: dict[str, Any]) -> dict[str, Any]:
        """One page of a listing, and the opaque link to the rest when there is more."""
        field, desc = listing["field"], listing["desc"]

        def key(referral: dict[str, Any]) -> tuple[datetime, str]:
            return (_when(referral[field]), referral["id"])

        since, strict = listing["since"], listing["strict"]
        rows = [
            r
            for r in self.records.values()
            if since is None or key(r)[0] > since or (not strict and key(r)[0] == since)
        ]
        rows.sort(key=key, reverse=desc)
        if listing["after"] is not None:
            after = listing["after"]
            rows = [r for r in rows if (key(r) < after if desc else key(r) > after)]
        else:
            rows = rows[listing["skip"] :]
        size = listing["size"] if listing["left"] is None else min(listing["size"], listing["left"])
        page = rows[:size]
        body: dict[str, Any] = {
            "@odata.context": f"{self.url}/v1.0/$metadata#Referrals",
            "value": [json.loads(json.dumps(r)) for r in page],
        }
        left = None if listing["left"] is None else listing["left"] - len(page)
        if len(rows) > len(page) and left != 0 and page:
            token = secrets.token_urlsafe(15)
            self._skiptokens[token] = {**listing, "after": key(page[-1]), "left": left}
            host = self.url.removeprefix("https://")
            body["@odata.nextLink"] = f"http://{host}/v1.0/referrals?$skiptoken={token}"
        return body

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
        """A save: a new eTag and updatedDateTime, a millisecond after the last save at least,
        so the updatedDateTime order is the order things happened in."""
        referral["eTag"] = f'"{next(self.etags):08x}-0000-0000-0000-000000000000"'
        self._last_save = max(time.time(), self._last_save + 0.001)
        referral["updatedDateTime"] = datetime.fromtimestamp(self._last_save, UTC).isoformat(
            timespec="milliseconds"
        )

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
            updated = referral.get("updatedDateTime")  # a test may date a referral back
            self._touch(referral)
            if updated:
                referral["updatedDateTime"] = updated
            self.records[referral["id"]] = referral
            return referral

    def admin_extra(self, action: str, request: Request) -> Response | None:
        if action == "referral" and request.method == "POST":
            return Response(200, self.add(request.json() or {}))
        if action == "refuse_updated_filter" and request.method == "POST":
            self.refuse_updated_filter = bool((request.json() or {}).get("refuse", True))
            return Response(200, {"refuse_updated_filter": self.refuse_updated_filter})
        if action == "conflict_next" and request.method == "POST":
            self.conflict_next = int((request.json() or {}).get("count", 1))
            return Response(200, {"conflict_next": self.conflict_next})
        return None


def _error(status: int, description: str) -> Response:
    """Partner Center's error body (learn.microsoft.com/partner-center/developer/error-codes)."""
    return Response(
        status,
        {"code": str(status), "description": description, "data": [], "source": "PartnerCenter"},
    )


def _when(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
