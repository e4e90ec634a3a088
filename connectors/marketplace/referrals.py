"""Partner Center Referrals: marketplace leads read from referrals, and the lead's stage
written back to the referral's status (reference §6).

The API takes only a delegated (app + user) token. `leadbridge auth sign-in --source NAME` signs a
Referrals admin in once with the device-code flow; msal keeps the refresh token in a token
cache file (mode 0600) that survives restarts, and every later token comes from it silently.

Reading: every page (`@odata.nextLink`) of the referrals updated since the cursor minus an
overlap — filtered on `updatedDateTime` oldest first where Partner Center takes that filter,
else newest first down to the watermark (docs/partner-center.md); only marketplace leads
(type Independent, qualification Direct, invited by Microsoft or nobody) unless told
otherwise. Writing back: the stage maps to status/substatus (below), sent as a JSON Patch
with `If-Match`; a 412 (someone changed the referral meanwhile) re-reads it and decides
again. Partner Center only moves New → Active → Closed, so a stage going back after that is
recorded and not written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import msal
from pydantic import Field

from leadbridge.connectors.marketplace import MarketplacePayloads
from leadbridge.connectors.marketplace.https import payload_key
from leadbridge.connectors.marketplace.leadsource import build_lead
from leadbridge.core.connector import (
    ConnectorConfig,
    FatalError,
    HttpTarget,
    InteractiveSignIn,
    Link,
    MalformedLead,
    Outcome,
    RetryableError,
    TargetConfig,
    WritesBack,
)
from leadbridge.core.connector.transport import Transport, VerifyingSession, response_body
from leadbridge.core.domain.durations import Duration
from leadbridge.core.domain.mapping import FieldMap
from leadbridge.core.domain.models import Lead, MarketplaceLead, PushResult, RawLead

log = logging.getLogger("leadbridge.referrals")
API_URL = "https://api.partner.microsoft.com/v1.0/engagements/referrals"
REFERRAL_ID = "partner_center_referral"  # the attribution key linking a lead to its referral
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # "from the start" for a first read

# Stage → (status, substatus). None: leave the referral alone. Documented in the example config.
STATUS_MAP: dict[str, list[str] | None] = {
    "subscriber": None,
    "lead": None,
    "mql": None,  # still New/Received: accepting is sales' call
    "sql": ["Active", "Accepted"],
    "opportunity": ["Active", "Accepted"],
    "customer": ["Closed", "Won"],
    "disqualified": ["Closed", "Lost"],
}
_ORDER = {"New": 0, "Active": 1, "Closed": 2}


class ReferralsConfig(ConnectorConfig):
    kind: str = "partner_center_referrals"
    api_url: str = API_URL
    authority: str = Field(
        default="https://login.microsoftonline.com/organizations", pattern=r"^https://"
    )
    client_id: str
    scope: str = "https://api.partner.microsoft.com/.default"
    instance_discovery: bool | None = None
    token_cache: Path = Path("partner-center-token-cache.json")
    ca_bundle: Path | None = None
    every: Duration = Field(default=timedelta(minutes=5))
    overlap: Duration = Field(default=timedelta(minutes=10))
    page_size: int = Field(default=100, ge=1, le=500)
    marketplace_only: bool = True
    write_back: bool = True
    status_map: dict[str, list[str] | None] = Field(default_factory=lambda: dict(STATUS_MAP))


# --- the delegated token -----------------------------------------------------------------


class DelegatedToken:
    """msal with a persistent cache: seeded once by device code, silent afterwards."""

    def __init__(self, config: ReferralsConfig) -> None:
        self.config = config
        self.cache = msal.SerializableTokenCache()
        saved = _read_cache(config.token_cache)
        if saved is not None:
            self.cache.deserialize(saved)
        host = urlsplit(config.authority).hostname or ""
        discovery = config.instance_discovery
        if discovery is None:
            discovery = host in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS
        verify: bool | str = (
            str(config.ca_bundle)
            if config.ca_bundle
            else (os.environ.get("REQUESTS_CA_BUNDLE") or True)
        )
        self.verify = verify
        self.app = msal.PublicClientApplication(
            config.client_id,
            authority=config.authority,
            token_cache=self.cache,
            instance_discovery=discovery,
            http_client=VerifyingSession(verify),
            timeout=30,
        )
        self.lock = threading.Lock()

    def headers(self, force_refresh: bool) -> Mapping[str, str]:
        with self.lock:
            accounts = self.app.get_accounts()
            result = (
                self.app.acquire_token_silent(
                    [self.config.scope],
                    account=accounts[0] if accounts else None,
                    force_refresh=force_refresh,
                )
                if accounts
                else None
            )
            self._save()
        if not result or "access_token" not in result:
            raise FatalError(
                f"{self.config.name}: no Partner Center token: run `leadbridge auth "
                f"sign-in --source {self.config.name}` once"
            )
        return {"Authorization": f"Bearer {result['access_token']}"}

    def sign_in(self, show: Any) -> str:
        """The device-code flow: `show` gets the message telling the admin where to go."""
        flow = self.app.initiate_device_flow(scopes=[self.config.scope])
        if "user_code" not in flow:
            raise FatalError(f"device code refused: {flow.get('error_description', flow)}")
        show(flow["message"])
        result = self.app.acquire_token_by_device_flow(flow)
        if "access_token" not in result:
            raise FatalError(f"sign-in failed: {result.get('error_description', result)}")
        self._save(force=True)
        return (result.get("id_token_claims") or {}).get("preferred_username", "signed in")

    def _save(self, force: bool = False) -> None:
        """The cache holds a refresh token: owner-only file, written atomically.

        The temporary file is created by mkstemp (O_CREAT | O_EXCL, mode 0600, a name no one
        can guess), so a symlink planted next to the cache can't redirect the token; a cache
        path that is itself a symlink is refused, nothing written."""
        if not (force or self.cache.has_state_changed):
            return
        path = self.config.token_cache
        _refuse_symlink(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.cache.serialize())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)  # replaces a name, never follows a link at `path`
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise


def _refuse_symlink(path: Path) -> None:
    """A token cache that is a symlink points the refresh token somewhere someone else
    chose (or feeds us their account): refuse it, naming the fix."""
    if path.is_symlink():
        raise FatalError(
            f"token cache {path} is a symbolic link; refusing to read or write a refresh "
            "token through it. Remove the link (or set token_cache to a plain file path) "
            "and sign in again with `leadbridge auth sign-in --source NAME`"
        )


def _read_cache(path: Path) -> str | None:
    """The saved cache, or None before the first sign-in. Opened with O_NOFOLLOW so a link
    swapped in after the check is refused by the kernel, not followed."""
    _refuse_symlink(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FatalError(f"token cache {path} can't be read safely: {exc.strerror}") from exc
    with os.fdopen(fd, encoding="utf-8") as handle:
        return handle.read()


def _transport(name: str, token: DelegatedToken) -> Transport:
    return Transport(name, auth=token.headers, verify=token.verify, rate=5.0)


# --- reading referrals -------------------------------------------------------------------


class FilterRefused(Exception):
    """Partner Center answered 400 to a filter on updatedDateTime, which it doesn't document."""


class ReferralsSource(MarketplacePayloads, InteractiveSignIn, WritesBack):
    """Partner Center referrals: read by a signed-in admin's delegated token, and written
    back (status, substatus) by the target it adds when `write_back` is on."""

    Config: ClassVar[type[ReferralsConfig]] = ReferralsConfig
    role: ClassVar[str] = "source"
    payload_kinds: ClassVar[frozenset[str]] = frozenset({"referral"})

    def __init__(self, config: ReferralsConfig) -> None:
        self.config = config
        self.name = config.name
        self.token = DelegatedToken(config)
        self.transport = _transport(config.name, self.token)
        self.filter_refused = False  # learnt once: later polls go straight to the fallback

    @classmethod
    def from_config(cls, config: ReferralsConfig) -> ReferralsSource:
        return cls(config)

    def sign_in(self, say: Callable[[str], None]) -> str:
        """`leadbridge auth sign-in`: the device-code flow, once; the cache renews itself."""
        who = self.token.sign_in(say)
        say(f"token cache: {self.config.token_cache} (mode 0600)")
        return who

    @classmethod
    def write_back_kind(cls, config: ConnectorConfig) -> str | None:
        return (
            ReferralsWriteBackConfig.model_fields["kind"].default
            if getattr(config, "write_back", False)
            else None
        )

    def fetch(self, cursor: str | None) -> Iterator[tuple[RawLead, str]]:
        """Referrals updated since the cursor minus the overlap, every page to the end, each
        with the cursor that is safe to store once it and everything before it have landed.

        Ordering by updatedDateTime is documented, a filter on it is not (get-a-list-of-
        referrals). So the filter is tried first, oldest first, and the cursor follows the
        referrals read. If Partner Center refuses it, the listing is read newest first with
        no filter and stops at the first referral older than the watermark minus the
        overlap; then the cursor moves only with the last referral yielded, because until
        the end something newer than the old cursor may still be unread.
        """
        watermark = _time(cursor) if cursor else None
        since = watermark - self.config.overlap if watermark else EPOCH
        if not self.filter_refused:
            try:
                yield from self._cursored(self._oldest_first(since), cursor, ordered=True)
                return
            except FilterRefused as refused:
                self.filter_refused = True
                log.warning(
                    "Partner Center refused a filter on updatedDateTime; reading newest "
                    "first down to the watermark instead",
                    extra={"source": self.name, "error": str(refused)},
                )
        yield from self._cursored(self._newest_first(since), cursor, ordered=False)

    def _oldest_first(self, since: datetime) -> Iterator[Any]:
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._pages(
            {"$filter": f"updatedDateTime ge {stamp}", "$orderby": "updatedDateTime asc"}
        )

    def _newest_first(self, since: datetime) -> Iterator[Any]:
        """Newest first, until the first referral last updated before `since`: everything
        after it in this order is older still."""
        for referral in self._pages({"$orderby": "updatedDateTime desc"}):
            updated = _time(referral.get("updatedDateTime")) if isinstance(referral, dict) else None
            if updated is not None and updated < since:
                return
            yield referral

    def _cursored(
        self, referrals: Iterator[Any], cursor: str | None, *, ordered: bool
    ) -> Iterator[tuple[RawLead, str]]:
        """Each raw lead with the cursor that covers it. Oldest first (`ordered`), that is the
        newest time read before the next lead; otherwise, or once the order is seen not to
        hold, the old cursor until the last lead, which carries the newest time read. A lead
        is held back one step so the last one can carry the referrals skipped after it."""
        now = datetime.now(UTC)  # a clock ahead of ours can't push the cursor into the future
        newest = _time(cursor) if cursor else None
        covered, pending, previous = cursor or "", None, None
        for referral in referrals:
            raw = self._raw(referral)
            if raw is not None:
                if pending is not None:
                    yield pending, covered
                pending = raw
            updated = _time(referral.get("updatedDateTime")) if isinstance(referral, dict) else None
            if updated is not None:
                updated = min(updated, now)
                ordered = ordered and (previous is None or updated >= previous)
                previous = updated
                newest = max(newest, updated) if newest else updated
            if ordered and newest is not None:
                covered = newest.isoformat()
        if pending is not None:
            yield pending, newest.isoformat() if newest else covered

    def _raw(self, referral: Any) -> RawLead | None:
        """A referral as a raw lead, or None when it isn't one to land. One without an id is
        still landed (keyed by its content) so the parser quarantines it with the reason."""
        if not isinstance(referral, dict):
            log.warning("referrals page held a non-object; skipped", extra={"source": self.name})
            return None
        if self.config.marketplace_only and not is_marketplace_lead(referral):
            return None
        key = referral.get("id")
        return RawLead(
            source=self.name,
            source_key=str(key)
            if isinstance(key, str | int) and key != ""
            else payload_key(referral),
            kind="referral",
            payload=referral,
            occurred_at=_time(referral.get("createdDateTime")),
        )

    def _pages(self, params: Mapping[str, str]) -> Iterator[Any]:
        """Every referral of one listing, following `@odata.nextLink` to the end.

        `$top` is not sent: in OData it caps the whole result, not a page. Only the link's
        query (its opaque `$skiptoken`) is followed, on the configured api_url: the link in
        Partner Center's own example is `http://…/v1.0/referrals`, and a bearer token never
        goes anywhere but the configured endpoint.
        """
        query = "&".join(f"{name}={quote(value)}" for name, value in params.items())
        url, seen = f"{self.config.api_url}?{query}", {query}
        headers = {"Prefer": f"odata.maxpagesize={self.config.page_size}"}
        first = True
        while url:
            response = self.transport.request("GET", url, headers=headers)
            if first and response.status_code == 400 and "$filter" in params:
                raise FilterRefused(_error_text(response))
            first = False
            if response.status_code >= 400:
                raise RetryableError(f"{self.name}: referrals HTTP {response.status_code}")
            page = response_body(response)
            items = page.get("value") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise RetryableError(f"{self.name}: a referrals page without a value list")
            yield from items
            url = self._next_page(page.get("@odata.nextLink"), seen)

    def _next_page(self, link: Any, seen: set[str]) -> str:
        if link is None or link == "":
            return ""
        query = urlsplit(link).query if isinstance(link, str) else ""
        if not query or query in seen:  # a link that leads nowhere new would loop forever
            raise RetryableError(f"{self.name}: unusable @odata.nextLink; the cursor stays")
        seen.add(query)
        return f"{self.config.api_url}?{query}"


def _error_text(response: Any) -> str:
    """The error's code and description, for the log: never the whole body."""
    body = response_body(response)
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    code = error.get("code", response.status_code)
    text = error.get("description") or error.get("message") or ""
    return f"{code}: {str(text)[:200]}"


def is_marketplace_lead(referral: Mapping[str, Any]) -> bool:
    """Reference §6.1: Independent + Direct, invited by Microsoft or by nobody."""
    invited = ((referral.get("inviteContext") or {}).get("invitedBy") or {}).get("organizationId")
    return (
        referral.get("type") == "Independent"
        and referral.get("qualification") == "Direct"
        and invited in (None, "", "msft")
    )


def parse_referral(referral: Any, occurred_at: datetime | None = None) -> MarketplaceLead:
    """A referral's customer, as a marketplace lead: the first team member is the person.

    The API's objects are read defensively — a field of an unexpected type counts as absent —
    because a referral that can't be read whole is still a customer worth keeping.
    """
    if not isinstance(referral, dict) or not referral.get("id"):
        raise MalformedLead("id", "not a referral", "read referrals from the Referrals API")
    profile = _obj(referral.get("customerProfile"))
    team = profile.get("team")
    member = _obj(team[0]) if isinstance(team, list) and team else {}
    contact_ok = _obj(referral.get("consent")).get("consentToContact", True) is not False
    customer = {
        "FirstName": _str(member.get("firstName")),
        "LastName": _str(member.get("lastName")),
        "Email": _str(member.get("email")),
        "Phone": _str(member.get("phoneNumber")),
        "Country": _str(_obj(profile.get("address")).get("country")),
        "Company": _str(profile.get("name")),
    }
    lead = build_lead(
        customer=customer,
        lead_source="PartnerCenter",
        action_code="Referral" if contact_ok else "DNC",
        offer_title=_str(referral.get("name")),
        description=_str(_obj(referral.get("details")).get("notes")),
        occurred_at=occurred_at or _time(referral.get("createdDateTime")),
        raw=referral,
    )
    lead.channel = "partner_center"
    lead.flags = [f for f in lead.flags if f not in ("unknown_action", "unknown_source")]
    lead.attribution[REFERRAL_ID] = str(referral["id"])
    return lead


# --- writing the stage back --------------------------------------------------------------


class ReferralsWriteBackConfig(ReferralsConfig, TargetConfig):
    kind: str = "partner_center_writeback"


class ReferralsWriteBack(HttpTarget):
    """The stage of a lead that came from a referral, written to that referral's status."""

    listed: ClassVar[bool] = False  # added by its source (`write_back: true`), never by hand

    Config: ClassVar[type[ReferralsWriteBackConfig]] = ReferralsWriteBackConfig
    max_batch: ClassVar[int] = 50
    field_map: ClassVar[FieldMap] = FieldMap({})
    default_stage_sync: ClassVar[str] = "push"

    config: ReferralsWriteBackConfig

    def __init__(
        self, config: ReferralsWriteBackConfig, placeholder: str = "[not provided]"
    ) -> None:
        self.token = DelegatedToken(config)
        super().__init__(config, placeholder, transport=_transport(config.name, self.token))

    def payload(self, lead: Lead) -> dict[str, Any]:
        referral = lead.attribution.get(REFERRAL_ID)
        wanted = self.config.status_map.get(str(lead.stage))
        if not referral or not wanted:
            return {}
        return {
            "referral": referral,
            "status": wanted[0],
            "substatus": wanted[1],
            "externalReferenceId": lead.lead_key,
        }

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        return [self._write(lead) for lead in leads]

    def _write(self, lead: Lead) -> PushResult:
        wanted = self.payload(lead)
        if not wanted:  # no referral behind this lead, or a stage Partner Center doesn't show
            return PushResult(lead_key=lead.lead_key, ok=True)
        url = f"{self.config.api_url}/{quote(wanted['referral'], safe='')}"
        for _ in range(3):  # a 412 means someone changed it meanwhile: read again, decide again
            current = self.transport.request("GET", url)
            if current.status_code == 404:
                return PushResult(
                    lead_key=lead.lead_key,
                    ok=False,
                    error_class=Outcome.PERMANENT,
                    error="referral not found in Partner Center",
                )
            if current.status_code >= 400:
                raise RetryableError(f"{self.name}: referral HTTP {current.status_code}")
            referral = current.json()
            ops = self._ops(referral, wanted)
            if not ops:
                return PushResult(lead_key=lead.lead_key, ok=True, external_id=wanted["referral"])
            etag = current.headers.get("ETag") or referral.get("eTag")
            response = self.transport.request(
                "PATCH",
                url,
                json=ops,
                headers={"If-Match": etag, "Content-Type": "application/json"},
            )
            if response.status_code in (200, 204):
                return PushResult(lead_key=lead.lead_key, ok=True, external_id=wanted["referral"])
            if response.status_code != 412:
                return PushResult(
                    lead_key=lead.lead_key,
                    ok=False,
                    error_class=Outcome.PERMANENT,
                    error=f"HTTP {response.status_code}",
                    body=response_body(response),
                )
        return PushResult(
            lead_key=lead.lead_key,
            ok=False,
            error_class=Outcome.RETRYABLE,
            error="the referral kept changing under us (412 three times)",
        )

    @staticmethod
    def _ops(referral: Mapping[str, Any], wanted: Mapping[str, str]) -> list[dict[str, str]]:
        """JSON Patch for the move, or nothing when it is done or Partner Center forbids it
        (status only goes New → Active → Closed)."""
        status, substatus = referral.get("status"), referral.get("substatus")
        ops = []
        moves = (status, substatus) != (wanted["status"], wanted["substatus"])
        if moves and _ORDER.get(wanted["status"], 0) < _ORDER.get(str(status), 0):
            log.info(
                "referral status can't go back; left as is",
                extra={"referral": referral.get("id"), "status": status},
            )
            moves = False
        if moves:
            ops += [
                {"op": "replace", "path": "/status", "value": wanted["status"]},
                {"op": "replace", "path": "/substatus", "value": wanted["substatus"]},
            ]
        if referral.get("externalReferenceId") != wanted["externalReferenceId"] and (
            moves or status != "Closed"
        ):
            ops.append(
                {
                    "op": "replace",
                    "path": "/externalReferenceId",
                    "value": wanted["externalReferenceId"],
                }
            )
        return ops


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
