"""HubSpot target: contacts batch upsert by email, ≤100 per request, 207 partial results.

HubSpot holds one contact per person, so every lead of a person (one per offer) goes out as
that one contact: person fields from the most recently active lead, the furthest stage, the
offers listed in a custom property. `objectWriteTraceId` is the lead key, which maps each
error of a 207 back to its leads. `lifecyclestage` is only ever moved forward here (HubSpot
refuses to go back without a clear-then-set, which is the stage-sync's business).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from pydantic import Field, SecretStr, field_validator

from leadbridge.connectors.hubspot import companies
from leadbridge.connectors.hubspot.consent import HubSpotConsent
from leadbridge.connectors.hubspot.erase import HubSpotEraser
from leadbridge.connectors.hubspot.mapping import (
    DNC_PROPERTY,
    FIELD_MAP,
    LEAD_KEY_PROPERTY,
    LIFECYCLE_VALUES,
    OFFERS_PROPERTY,
    SCORE_PROPERTIES,
    STAGE_PROPERTY,
)
from leadbridge.connectors.hubspot.subscriptions import (
    ALL_EMAIL_PROPERTY,
    UNSUBSCRIBE_MARK,
    HubSpotSubscriptions,
    LegalBasis,
    withdrew_email,
)
from leadbridge.core.connector import (
    FatalError,
    HttpTarget,
    Link,
    Outcome,
    PermanentError,
    RecordLinks,
    RetryableError,
    Sandboxed,
    SandboxRecord,
    SchemaChecker,
    SchemaProblem,
    StageReader,
    TargetConfig,
    Write,
)
from leadbridge.core.connector.transport import parse_retry_after, response_body
from leadbridge.core.domain.mapping import FieldMap, FieldSpec
from leadbridge.core.domain.models import Lead, PushResult, Stage, StageChange
from leadbridge.core.domain.stages import rank

SEARCH_PAGE = 200  # the search API's largest page
_KIND_SHOWN = {"bool": "a single checkbox", "number": "a number", "string": "single-line text"}
SEARCH_CAP = 10_000  # no search returns more; past it, start again from the last timestamp
TEN_SECONDLY_PAUSE_S = 10.0
# developers.hubspot.com/docs/api-reference/error-handling, status by status:
LOCKED_WAIT_S = 2.0  # 423: "Locks will last for 2 seconds … a delay of at least 2 seconds"
MIGRATION_MAX_WAIT_S = 24 * 3600.0  # 477: a Retry-After "typically up to 24 hours"
MIGRATION_WAIT_S = 600.0  # 477 without its Retry-After: look again in ten minutes
# 502/504 ("pause your requests for a few seconds, then retry"), 503, 521, 523, 524 (and the
# sporadic 500, 520 of Cloudflare's edge): transient, retried with the transport's back-off.
TRANSIENT_STATUS = frozenset({500, 502, 503, 504, 520, 521, 523, 524})
# 522/525/526: "please reach out to HubSpot support" — no retry will fix them.
SUPPORT_STATUS = {
    522: "connection timed out",
    525: "SSL handshake failed",
    526: "invalid SSL certificate",
}
DAILY_RESET_MARGIN_S = 60.0  # past midnight, so a clock a little ahead doesn't ask too soon


def now_utc() -> datetime:
    """The wall clock the daily-limit pause is computed from (tests replace it)."""
    return datetime.now(UTC)


class HubSpotConfig(TargetConfig):
    kind: str = "hubspot"
    base_url: str = Field(default="https://api.hubapi.com", pattern=r"^https?://")
    objects_path: str = "/crm/v3/objects/contacts"  # or a date-versioned path
    token: SecretStr  # a private app's access token
    lead_key_property: str = LEAD_KEY_PROPERTY
    stage_property: str | None = STAGE_PROPERTY
    offers_property: str | None = OFFERS_PROPERTY
    lifecycle_values: dict[str, str] = Field(default_factory=lambda: dict(LIFECYCLE_VALUES))
    # HubSpot resets the daily API limit at midnight in the account's time zone
    # (developers.hubspot.com/apisbytier): a 429 DAILY pauses the target until then.
    account_timezone: str = "UTC"
    # off | associate: link each contact to the company of its email domain (personal
    # mailboxes excluded) — connectors/hubspot/companies.py, and how it coexists with
    # HubSpot's own automatic company creation.
    companies: Literal["off", "associate"] = "off"
    companies_path: str = "/crm/v3/objects/companies"
    associations_path: str = "/crm/v4/associations/contacts/companies"
    # Links to a contact in HubSpot's app (alerts, the console): the account's Hub ID
    # (Settings > Account Defaults) and the app's host (EU accounts: app-eu1.hubspot.com).
    portal_id: int | None = None
    app_url: str = Field(default="https://app.hubspot.com", pattern=r"^https://")
    # issue 17: an email opt-out from another CRM unsubscribes the address from these
    # subscription type ids (Settings > Marketing > Email > Subscriptions; through the v3
    # API), or with ["all"] from every email subscription (the v4 unsubscribe-all call),
    # with this legal basis (required by GDPR-enabled portals). Empty: off.
    unsubscribe_from: list[str] = Field(default_factory=list)
    legal_basis: LegalBasis | None = None
    legal_basis_explanation: str = "The person opted out in another system (via leadbridge)."

    @field_validator("account_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"{value!r} is not an IANA time zone; use the HubSpot account's own, as in "
                "Settings > Account Defaults (e.g. America/New_York, Europe/Berlin)"
            ) from None
        return value


class HubSpotTarget(
    HttpTarget,
    StageReader,
    SchemaChecker,
    Sandboxed,
    RecordLinks,
    HubSpotEraser,
    HubSpotConsent,
    HubSpotSubscriptions,
):
    Config: ClassVar[type[HubSpotConfig]] = HubSpotConfig
    max_batch: ClassVar[int] = 100
    default_rate: ClassVar[float | None] = 10.0  # private apps: 100–190 per 10 s
    field_map: ClassVar[FieldMap] = FIELD_MAP
    score_fields: ClassVar[dict[str, str | FieldSpec]] = {
        name: source for name, (source, _) in SCORE_PROPERTIES.items()
    }
    contact_level: ClassVar[bool] = True
    owner_field: ClassVar[str | None] = "hubspot_owner_id"

    config: HubSpotConfig

    def auth_headers(self, force_refresh: bool) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.config.token.get_secret_value()}"}

    def owned_fields(self, lead: Lead) -> dict[str, Any]:
        owned: dict[str, Any] = {self.config.lead_key_property: lead.lead_key}
        if self.config.stage_property and self.pushes_stage:
            owned[self.config.stage_property] = str(lead.stage)
        return owned

    def payload(self, lead: Lead) -> dict[str, Any]:
        """As any target's, plus the unsubscribe it owes (when configured): an opt-out read
        from another CRM changes what HubSpot must get, so the push isn't skipped as
        unchanged. The mark is no property: `_input` takes it out again."""
        body = super().payload(lead)
        if self.config.unsubscribe_from and withdrew_email(lead):
            body[UNSUBSCRIBE_MARK] = sorted(self.config.unsubscribe_from)
        return body

    def record_url(self, external_id: str) -> str | None:
        """The contact in HubSpot's app, `<app>/contacts/<Hub ID>/record/0-1/<id>` (0-1 is
        the contacts object type: developers.hubspot.com/docs/guides/api/crm/understanding-
        the-crm, "Object type IDs"); none without `portal_id`."""
        if self.config.portal_id is None or not external_id.isdigit():
            return None
        app = self.config.app_url.rstrip("/")
        return f"{app}/contacts/{self.config.portal_id}/record/0-1/{external_id}"

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        """One contact per person: read which exist (batch read by email, ≤100 a call), plan
        each as a create or an update under the write policies, then batch upsert."""
        links = links or {}
        people: dict[str, list[Lead]] = {}
        results: dict[str, PushResult] = {}
        for lead in leads:
            if lead.email:
                people.setdefault(lead.email, []).append(lead)
            else:
                results[lead.lead_key] = PushResult(
                    lead_key=lead.lead_key,
                    ok=False,
                    error_class=Outcome.PERMANENT,
                    error="HubSpot contacts are keyed by email and this lead has none",
                )
        existing = self.existing(list(people))
        planned = [
            self._input(group, existing.get(email), links) for email, group in people.items()
        ]
        self._clear_lifecycle([item for item, _ in planned if item.pop("_backward", False)])
        for start in range(0, len(planned), self.max_batch):
            chunk = planned[start : start + self.max_batch]
            groups = [people[item["id"]] for item, _ in chunk]
            for result in self._batch(chunk, groups):
                results[result.lead_key] = result
        if self.config.companies == "associate":
            self._link_companies(people, results)
        self.unsubscribe_opted_out(people, existing, results)
        return [results[lead.lead_key] for lead in leads]

    def _link_companies(
        self, people: Mapping[str, list[Lead]], results: dict[str, PushResult]
    ) -> None:
        """Link each contact that landed to its email domain's company (companies.py): one
        search, one create for the missing, one association batch — per ≤100 contacts."""
        landed = [
            (str(results[group[0].lead_key].external_id), group)
            for group in people.values()
            if results[group[0].lead_key].ok and results[group[0].lead_key].external_id
        ]
        links = companies.links_for(landed)
        for start in range(0, len(links), self.max_batch):
            chunk = links[start : start + self.max_batch]
            try:
                linked = self._companies_for(chunk)
                failure = ""
            except (RetryableError, PermanentError) as exc:
                linked, failure = {}, str(exc)
            for group_id, group in landed:
                link = next((x for x in chunk if x.contact_id == group_id), None)
                if link is None:
                    continue
                company = linked.get(link.contact_id)
                for lead in group:
                    result = results[lead.lead_key]
                    if company:
                        related = {"contact": link.contact_id, "account": company}
                        results[lead.lead_key] = result.model_copy(update={"related": related})
                    else:
                        reason = failure or f"no company linked for {link.domain}"
                        dropped = {**result.dropped, "company": reason}
                        results[lead.lead_key] = result.model_copy(update={"dropped": dropped})

    def _companies_for(self, links: Sequence[companies.Link]) -> dict[str, str]:
        """contact id → company id, for the links that are associated now."""
        base = self.config.base_url.rstrip("/")
        domains = sorted({link.domain for link in links})
        answer = self._post(
            f"{base}{self.config.companies_path}/search", companies.search_body(domains)
        )
        by_domain = companies.found_domains(answer)
        missing: dict[str, str] = {}
        for link in links:  # a name someone typed beats the bare domain
            if (
                link.domain not in by_domain
                and missing.get(link.domain, link.domain) == link.domain
            ):
                missing[link.domain] = link.name
        if missing:
            made = self._post(
                f"{base}{self.config.companies_path}/batch/create", companies.create_body(missing)
            )
            by_domain |= companies.created_domains(made)
        pairs = [
            (link.contact_id, by_domain[link.domain]) for link in links if link.domain in by_domain
        ]
        if not pairs:
            return {}
        done = companies.associated(
            self._post(
                f"{base}{self.config.associations_path}/batch/associate/default",
                companies.associate_body(pairs),
            )
        )
        return {contact: company for contact, company in pairs if (contact, company) in done}

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.transport.request("POST", url, json=body)
        answer = _json(response)
        if response.status_code not in (200, 201, 207):
            raise _refused(
                response,
                f"{self.name}: HTTP {response.status_code} {_field(answer, 'category')}: "
                f"{_field(answer, 'message')}",
            )
        return answer if isinstance(answer, dict) else {}

    def existing(self, emails: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The contacts HubSpot holds for these emails, with the properties the write
        policies and the lifecycle rule need. A 207 lists the emails it doesn't know."""
        url = f"{self.config.base_url.rstrip('/')}{self.config.objects_path}/batch/read"
        properties = sorted(
            {"email", "lifecyclestage", ALL_EMAIL_PROPERTY, *self.fields.read_fields()}
        )
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(emails), self.max_batch):
            inputs = [{"id": email} for email in emails[start : start + self.max_batch]]
            body = {"idProperty": "email", "inputs": inputs, "properties": properties}
            response = self.transport.request("POST", url, json=body)
            answer = _json(response)
            if response.status_code not in (200, 207):
                raise RetryableError(
                    f"{self.name}: reading contacts HTTP {response.status_code} "
                    f"{_field(answer, 'message')}"
                )
            for record in answer.get("results", []):
                email = str((record.get("properties") or {}).get("email") or "").lower()
                if email:
                    found[email] = record
        return found

    def _input(
        self, group: list[Lead], contact: dict[str, Any] | None, links: Mapping[str, Link]
    ) -> tuple[dict[str, Any], Write]:
        """One contact from all of a person's leads: person fields from the most recently
        active lead, leadbridge's own properties from the furthest one."""
        latest = max(group, key=lambda lead: (lead.last_seen is not None, lead.last_seen))
        furthest = max(
            group, key=lambda lead: (rank(lead.stage), lead.last_seen is not None, lead.last_seen)
        )
        write = self.plan(latest, (contact.get("properties") or {}) if contact else None)
        body = {k: v for k, v in write.body.items() if k != UNSUBSCRIBE_MARK}
        properties = {**body, **self.owned_fields(furthest)}
        if self.config.offers_property:
            properties[self.config.offers_property] = ";".join(
                sorted({lead.offer_key for lead in group})
            )
        if DNC_PROPERTY in properties:  # the person came only through cross-listed partners
            properties[DNC_PROPERTY] = all(lead.do_not_contact for lead in group)
        item = {
            "id": furthest.email,
            "idProperty": "email",
            "objectWriteTraceId": furthest.lead_key,
            "properties": properties,
        }
        if self.pushes_stage:
            current = ((contact or {}).get("properties") or {}).get("lifecyclestage")
            self._lifecycle(item, furthest, group, links, current)
        if write.created:
            owner = self.owner(furthest)
            if owner:
                properties["hubspot_owner_id"] = owner
        return item, write

    def _lifecycle(
        self,
        item: dict[str, Any],
        furthest: Lead,
        group: list[Lead],
        links: Mapping[str, Link],
        current: str | None,
    ) -> None:
        """Forward past what the contact holds now: set it. Backward (leadbridge accepted a
        recycle or a disqualification): mark the contact for "clear, then set". A stage the
        contact holds that leadbridge doesn't know (evangelist, a custom one) is left alone.
        Disqualified has no lifecycle stage: the lead status says it instead."""
        if furthest.stage == Stage.DISQUALIFIED:
            item["properties"]["hs_lead_status"] = "UNQUALIFIED"
        lifecycle = self.config.lifecycle_values.get(str(furthest.stage))
        if lifecycle is None:
            return
        pushed = [
            rank(links[lead.lead_key].pushed_stage)
            for lead in group
            if lead.lead_key in links and links[lead.lead_key].pushed_stage
        ]
        reverse = {v: k for k, v in self.config.lifecycle_values.items()}
        if pushed and rank(furthest.stage) < max(pushed):
            item["properties"]["lifecyclestage"] = lifecycle
            item["_backward"] = True
        elif not current or (current in reverse and rank(furthest.stage) > rank(reverse[current])):
            item["properties"]["lifecyclestage"] = lifecycle

    def _clear_lifecycle(self, items: list[dict[str, Any]]) -> None:
        """HubSpot moves lifecyclestage forward only; going back is clear ("") then set, in two
        separate requests — a batch doesn't promise to apply its inputs in order."""
        url = f"{self.config.base_url.rstrip('/')}{self.config.objects_path}/batch/upsert"
        for start in range(0, len(items), self.max_batch):
            clears = [
                {
                    "id": i["id"],
                    "idProperty": "email",
                    "objectWriteTraceId": i["objectWriteTraceId"],
                    "properties": {"lifecyclestage": ""},
                }
                for i in items[start : start + self.max_batch]
            ]
            response = self.transport.request("POST", url, json={"inputs": clears})
            if response.status_code not in (200, 201, 207):
                raise _refused(
                    response, f"{self.name}: clearing lifecyclestage: HTTP {response.status_code}"
                )

    def _batch(
        self, planned: list[tuple[dict[str, Any], Write]], groups: list[list[Lead]]
    ) -> list[PushResult]:
        inputs = [item for item, _ in planned]
        url = f"{self.config.base_url.rstrip('/')}{self.config.objects_path}/batch/upsert"
        response = self.transport.request("POST", url, json={"inputs": inputs})
        body = _json(response)
        if response.status_code not in (200, 201, 207):
            raise _refused(
                response,
                f"{self.name}: HTTP {response.status_code} "
                f"{_field(body, 'category')}: {_field(body, 'message')}",
            )
        by_trace: dict[str, dict[str, Any]] = {}
        for record in body.get("results", []):
            trace = record.get("objectWriteTraceId") or _email_trace(record, inputs)
            by_trace[trace] = record
        failed: dict[str, dict[str, Any]] = {}
        for error in body.get("errors", []):
            for trace in (error.get("context") or {}).get("objectWriteTraceId", []):
                failed[trace] = error
        out = []
        for (item, write), group in zip(planned, groups, strict=True):
            trace = item["objectWriteTraceId"]
            out.extend(self._group_results(group, write, by_trace.get(trace), failed.get(trace)))
        return out

    def _group_results(
        self,
        group: list[Lead],
        write: Write,
        record: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> list[PushResult]:
        if record is not None and error is None:
            created = record.get("new")
            return [
                PushResult(
                    lead_key=lead.lead_key,
                    ok=True,
                    external_id=str(record.get("id")),
                    created=write.created if created is None else bool(created),
                    kept=write.kept,
                )
                for lead in group
            ]
        error = error or {"category": "MISSING_RESULT", "message": "no result for this contact"}
        retryable = error.get("category") in ("RATE_LIMITS", "MISSING_RESULT")
        return [
            PushResult(
                lead_key=lead.lead_key,
                ok=False,
                error_class=Outcome.RETRYABLE if retryable else Outcome.PERMANENT,
                error=f"{error.get('category')}: {error.get('message')}",
                body=error,
            )
            for lead in group
        ]

    # --- schema check ------------------------------------------------------------------

    def schema_problems(self, create_missing: bool = False) -> list[SchemaProblem]:
        """Contact properties: leadbridge's own (created on request), every mapped one, and
        the lifecycle stages."""
        url = f"{self.config.base_url.rstrip('/')}/crm/v3/properties/contacts"
        found = {p["name"]: p for p in self.read_json(url, "properties").get("results", [])}
        self.schema_notes.clear()
        missing_own = [own for own in self._own_properties() if own[0] not in found]
        if create_missing:
            for name, kind in missing_own:
                self._create_property(url, name, kind)
                self.schema_notes.append(f"created the contact property {name}")
                found[name] = {"name": name, "type": kind}
            missing_own = []
        known = {
            name: {
                "length": None,
                "options": {o["value"] for o in p.get("options", [])}
                if p.get("type") == "enumeration"
                else None,
            }
            for name, p in found.items()
        }
        # leadbridge's own properties are reported once, below, with the way to create them.
        unreported = {name: {"length": None, "options": None} for name, _ in missing_own}
        problems = self.field_problems({**known, **unreported})
        for name, kind in missing_own:
            problems.append(
                SchemaProblem(
                    f"targets[{self.name}]",
                    f"the contact property {name} does not exist",
                    "run `leadbridge config check --online --create-missing`, or create it "
                    f"({_KIND_SHOWN.get(kind, 'single-line text')})",
                )
            )
        lifecycle = known.get("lifecyclestage", {}).get("options")
        wanted = set(self.config.lifecycle_values.values())
        if self.pushes_stage and lifecycle is not None and wanted - lifecycle:
            problems.append(
                SchemaProblem(
                    f"targets[{self.name}].lifecycle_values",
                    f"lifecyclestage has no {', '.join(sorted(wanted - lifecycle))}",
                    "map stages to this portal's lifecycle stages (custom stages use numeric ids)",
                )
            )
        return problems

    def _own_properties(self) -> list[tuple[str, str]]:
        """The properties leadbridge writes that no portal has until it creates them."""
        config = self.config
        own = [(config.lead_key_property, "string")]
        if config.stage_property and self.pushes_stage:
            own.append((config.stage_property, "string"))
        if config.offers_property:
            own.append((config.offers_property, "string"))
        if DNC_PROPERTY in self.fields.fields:
            own.append((DNC_PROPERTY, "bool"))
        own += [(n, kind) for n, (_, kind) in SCORE_PROPERTIES.items() if n in self.fields.fields]
        return own

    def _create_property(self, url: str, name: str, kind: str) -> None:
        """POST /crm/v3/properties/contacts (properties API): text, a number (`type: number`,
        `fieldType: number`), or a single checkbox (`type: bool`, `fieldType:
        booleancheckbox` with the true/false options) — "Property type and fieldType
        values", developers.hubspot.com/docs/api/crm/properties."""
        body: dict[str, Any] = {
            "name": name,
            "label": name.replace("_", " ").title(),
            "type": kind,
            "fieldType": {"string": "text", "number": "number"}.get(kind, "booleancheckbox"),
            "groupName": "contactinformation",
            "description": "Written by leadbridge",
        }
        if kind == "bool":
            body["options"] = [
                {"label": "Yes", "value": "true", "displayOrder": 0},
                {"label": "No", "value": "false", "displayOrder": 1},
            ]
        response = self.transport.request("POST", url, json=body)
        if response.status_code == 409:
            return  # created meanwhile (another replica, a person): it exists, as wanted
        if response.status_code not in (200, 201):
            raise _refused(response, f"{self.name}: creating {name}: HTTP {response.status_code}")

    # --- stages read back ---------------------------------------------------------------

    def stage_changes(self, since: str | None) -> tuple[list[StageChange], str]:
        """Contacts modified since the watermark, through the CRM search API.

        A search stops at 10,000 results: near the cap the query starts again from the last
        `lastmodifieddate` seen (keyset), and records read twice are deduplicated. The cap is
        counted in results read: `paging.next.after` is an opaque cursor, passed back as is.
        """
        overlap_ms = int(self.config.overlap.total_seconds() * 1000)
        floor = max(0, int(since) - overlap_ms) if since else 0
        newest = int(since) if since else 0
        reverse = {v: Stage(k) for k, v in self.config.lifecycle_values.items()}
        changes: dict[str, StageChange] = {}
        after: str | None = None
        read = 0  # results this query has returned so far
        while True:
            page = self._search(floor, after)
            results = page.get("results") or []
            read += len(results)
            for record in results:
                modified = _ms(record["properties"].get("lastmodifieddate"))
                newest = max(newest, modified)
                change = self._change(record, modified, reverse)
                if change is not None:
                    changes[record["id"]] = change
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after or not results:
                break
            if read + SEARCH_PAGE > SEARCH_CAP:
                if newest <= floor:
                    break  # 10,000 contacts modified in one millisecond: nothing more to gain
                floor, after, read = newest, None, 0
        return list(changes.values()), str(newest)

    def _search(self, floor: int, after: str | None) -> dict[str, Any]:
        url = f"{self.config.base_url.rstrip('/')}{self.config.objects_path}/search"
        body: dict[str, Any] = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "lastmodifieddate",
                            "operator": "GTE",
                            "value": str(floor),
                        },
                        {"propertyName": self.config.lead_key_property, "operator": "HAS_PROPERTY"},
                    ]
                }
            ],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": [
                "email",
                "lifecyclestage",
                "hs_lead_status",
                "lastmodifieddate",
                self.config.lead_key_property,
                *([self.config.stage_property] if self.config.stage_property else []),
            ],
            "limit": SEARCH_PAGE,
        }
        if after:
            body["after"] = str(after)  # opaque: sent back exactly as HubSpot gave it
        response = self.transport.request("POST", url, json=body)
        if response.status_code >= 400:
            raise RetryableError(
                f"{self.name}: search HTTP {response.status_code} "
                f"{_field(_json(response), 'message')}"
            )
        return response.json()

    def _change(
        self, record: dict[str, Any], modified: int, reverse: dict[str, Stage]
    ) -> StageChange | None:
        """lifecyclestage is the stage people move in HubSpot; the lead status says
        disqualified (which has no lifecycle stage)."""
        properties = record.get("properties") or {}
        key = properties.get(self.config.lead_key_property)
        if not key:
            return None
        if properties.get("hs_lead_status") == "UNQUALIFIED":
            stage, raw = Stage.DISQUALIFIED, "hs_lead_status=UNQUALIFIED"
        else:
            raw = properties.get("lifecyclestage") or ""
            stage = reverse.get(raw)
        if stage is None:
            return None
        return StageChange(
            lead_key=key,
            target=self.name,
            stage=stage,
            raw_value=raw,
            at=datetime.fromtimestamp(modified / 1000, UTC),
            external_id=str(record.get("id")),
        )

    def classify(self, response: requests.Response) -> Any:
        """HubSpot's statuses as its error-handling page says to treat them, for every call
        (batch read, batch upsert, search, properties): the transport retries what this calls
        retryable, waiting `retry_after` when given. Source:
        developers.hubspot.com/docs/api-reference/error-handling"""
        status = response.status_code
        if status == 429:
            return self._rate_limited(response)
        if status == 423:  # a lock lasts 2 s: wait at least that
            hint = parse_retry_after(response.headers.get("Retry-After")) or 0.0
            return RetryableError(
                f"{self.name}: HubSpot 423 Locked", retry_after=max(LOCKED_WAIT_S, hint)
            )
        if status == 477:
            return self._migrating(response)
        if status in SUPPORT_STATUS:
            return FatalError(
                f"{self.name}: HubSpot answered {status} ({SUPPORT_STATUS[status]}), which its "
                "docs say only HubSpot support can resolve: the target is stopped, every lead "
                "stays queued; contact HubSpot support, then restart delivery"
            )
        if status in TRANSIENT_STATUS:
            # the transport's jittered back-off, or the Retry-After Cloudflare sends
            return RetryableError(f"{self.name}: HubSpot HTTP {status}")
        return None

    def _rate_limited(self, response: requests.Response) -> RetryableError:
        """DAILY pauses the target until the daily reset; the rolling windows wait the window
        out (HubSpot sends no Retry-After, but says the interval)."""
        policy = _field(_json(response), "policyName")
        if policy == "DAILY":
            wait, reset = self._until_daily_reset()
            # the transport holds every call of this target for `retry_after`, not just this one
            return RetryableError(
                f"{self.name}: HubSpot daily limit reached; paused until {reset.isoformat()} "
                f"(midnight, {self.config.account_timezone}: account_timezone)",
                retry_after=wait,
            )
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        wait = int(interval) / 1000 if interval and interval.isdigit() else TEN_SECONDLY_PAUSE_S
        if response.headers.get("Retry-After"):
            wait = None  # the transport reads the header itself
        return RetryableError(f"{self.name}: HubSpot {policy or 'rate'} limit", retry_after=wait)

    def _until_daily_reset(self) -> tuple[float, datetime]:
        """Seconds until the next midnight in the account's time zone (DST-aware: a day
        there may be 23 or 25 hours long), and that midnight."""
        zone = ZoneInfo(self.config.account_timezone)
        now = now_utc().astimezone(zone)
        reset = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=zone)
        seconds = (reset.astimezone(UTC) - now.astimezone(UTC)).total_seconds()
        return seconds + DAILY_RESET_MARGIN_S, reset

    def _migrating(self, response: requests.Response) -> RetryableError:
        """477: the account is moving data centres. The whole target waits the Retry-After
        (hours, perhaps: set as `retry_after`, so not cut to the transport's clamp for a
        header), and nothing is dead-lettered meanwhile."""
        hint = parse_retry_after(response.headers.get("Retry-After"))
        wait = min(hint if hint is not None else MIGRATION_WAIT_S, MIGRATION_MAX_WAIT_S)
        return RetryableError(
            f"{self.name}: HubSpot 477 migration in progress; retrying in {wait:.0f} s",
            retry_after=wait,
        )

    # --- sandbox (demo, `leadbridge sandbox`, tests): the server is loaded only when asked for

    default_name: ClassVar[str] = "marketing"

    @classmethod
    def sandbox(cls, *, port: int = 0, latency_ms: float = 0.0) -> Any:
        from leadbridge.connectors.hubspot import sandbox

        return sandbox.HubSpotSandbox(port=port, latency_ms=latency_ms)

    @classmethod
    def sandbox_entry(cls, sandbox: Any, name: str) -> dict[str, Any]:
        return {"name": name, "kind": "hubspot", "base_url": sandbox.url, "token": sandbox.token}

    @classmethod
    def sandbox_records(cls, sandbox: Any, config: Any) -> list[SandboxRecord]:
        return [
            SandboxRecord(
                name=str(r.get("lastname") or ""),
                email=str(r.get("email") or ""),
                stage=str(r.get("lifecyclestage") or ""),
            )
            for r in list(sandbox.records.values())
        ]


def _ms(value: Any) -> int:
    """HubSpot datetimes: ISO-8601 in properties, epoch milliseconds in filters."""
    if value is None:
        return 0
    text = str(value)
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _json(response: requests.Response) -> Any:
    """HubSpot's answer, always an object: its error fields are read from it."""
    body = response_body(response)
    return body if isinstance(body, dict | list) else {"message": body}


def _field(body: Any, key: str) -> Any:
    return body.get(key) if isinstance(body, dict) else None


def _refused(response: requests.Response, message: str) -> RetryableError | PermanentError:
    """A whole request refused. A server error says nothing about the records in it: they
    wait and go again; anything else is about what was sent (split, then dead-lettered)."""
    if response.status_code >= 500:
        return RetryableError(message)
    return PermanentError(message, body=_json(response))


def _email_trace(record: dict[str, Any], inputs: list[dict[str, Any]]) -> str | None:
    email = (record.get("properties") or {}).get("email")
    return next((i["objectWriteTraceId"] for i in inputs if i["id"] == email), None)
