"""Salesforce target: Leads written in sObject Collections of ≤200, keyed on the External ID.

A lead leadbridge has never pushed here is inserted (`POST /services/data/vXX.X/composite/
sobjects`, `allOrNone: false`): one call per 200 new leads and no read first, and an insert
can't overwrite anything — a record that already holds the lead's key is refused with
DUPLICATE_VALUE (the External ID is unique) and left as it is. Those, and the leads pushed
before, are read (one SOQL per 200 keys), planned under the write policies and upserted
(`PATCH …/composite/sobjects/Lead/<External_Id__c>`). Records already in Salesforce go with
`Sforce-Auto-Assign: FALSE`, so an update never re-runs assignment rules (creates do, unless
`assignment_rules_on_create: false`). Per-record errorCodes decide retry, dead letter or
"converted" (a converted Lead is read-only: leadbridge stops pushing to it). 403
REQUEST_LIMIT_EXCEEDED pauses the target; `Sforce-Limit-Info` usage is kept for `status`.

Countries: an org with State and Country/Territory Picklists gets `CountryCode` (ISO alpha-2),
others the ISO name in `Country` (`country_field: auto | code | name`; auto reads Lead's
describe once). A record refused for its country is sent again at once without it.

Tokens: OAuth 2.0 client credentials POSTed to `token_url` (works with any My Domain, sandbox
or proxy), or the JWT bearer flow through simple-salesforce's `SalesforceLogin`. The
username-password flow (SOAP `login()`) is retired and refused by the config.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

import requests
from pydantic import Field, SecretStr, field_validator, model_validator
from simple_salesforce import Salesforce, SalesforceLogin, format_soql
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from leadbridge.connectors.salesforce import contacts
from leadbridge.connectors.salesforce.consent import SalesforceConsent
from leadbridge.connectors.salesforce.erase import RECORD_ID, SalesforceEraser
from leadbridge.connectors.salesforce.mapping import (
    CONVERTED_CODES,
    COUNTRY_FIELDS,
    FIELD_MAP,
    RETRYABLE_CODES,
    SCORE_FIELDS,
    STAGE_VALUES,
    refuses_country,
    with_country_codes,
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
    StateReporter,
    TargetConfig,
    Write,
)
from leadbridge.core.connector.transport import response_body
from leadbridge.core.domain.mapping import FieldMap, FieldSpec, canonical
from leadbridge.core.domain.models import Lead, PushResult, Stage, StageChange
from leadbridge.core.domain.stages import SALES_STAGES, rank

log = logging.getLogger("leadbridge.salesforce")
TEXT_TYPES = ("string", "textarea", "email", "phone", "url")
DAILY_LIMIT_PAUSE_S = 3600.0  # the org's 24 h allocation is spent: try again in an hour
CONCURRENCY_PAUSE_S = 120.0  # too many long requests at once: back off a little


# Setting up the flows Salesforce keeps (vendor-facts §2.2): SOAP login() is not available
# from API 65.0 and retires for every version in Summer '27 (developer.salesforce.com/docs/
# platform/api/guide/api-eol-soap.html; help article 005132110).
PASSWORD_RETIRED = (
    "auth: password signs in with the SOAP API login() call, which Salesforce is retiring "
    "(not available from API 65.0, retired for every version in Summer '27, off by default "
    "in new orgs), so leadbridge no longer offers it. Use auth: client_credentials (the "
    "default): in Setup, create an External Client App (or connected app) with OAuth, enable "
    "the Client Credentials Flow and choose its Run As user, then set client_id and "
    "client_secret (or client_secret_file) and drop username, password and security_token. "
    "Or auth: jwt: upload a certificate to the app, pre-authorise the integration user, then "
    "set client_id, username and private_key (or private_key_file)"
)
CountryMode = Literal["code", "name"]


class SalesforceConfig(TargetConfig):
    kind: str = "salesforce"
    instance_url: str = Field(pattern=r"^https?://")
    auth: Literal["client_credentials", "jwt"] = "client_credentials"
    token_url: str | None = None  # default: <instance_url>/services/oauth2/token
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None  # jwt: the pre-authorised integration user
    private_key: SecretStr | None = None  # PEM, for auth: jwt
    domain: str = "login"  # login | test | <mydomain>.my (jwt flow)
    api_version: str = "62.0"
    external_id_field: str = "LeadBridge_Key__c"
    stage_field: str | None = "Lead_Stage__c"
    stage_values: dict[str, str] = Field(default_factory=lambda: dict(STAGE_VALUES))
    assignment_rules_on_create: bool = True
    # auto: CountryCode where the org has State and Country/Territory Picklists (read from
    # Lead's describe), else Country; code / name pin it and skip the describe.
    country_field: Literal["auto", "code", "name"] = "auto"
    # A lead whose email is already a Contact's (connectors/salesforce/contacts.py): lead
    # (write the Lead anyway), campaign_member (add the Contact to the Campaign the
    # attribution names, else default_campaign_id) or task (a Task on the Contact).
    existing_contact: Literal["lead", "campaign_member", "task"] = "lead"
    campaign_attribution: str = "mktcmpid"  # attribution.<key> holding a Campaign's Name
    default_campaign_id: str | None = None
    task_key_field: str = "LeadBridge_Key__c"  # External ID on Activity: the Task's upsert key

    @model_validator(mode="before")
    @classmethod
    def _one_message_for_the_password_flow(cls, data: Any) -> Any:
        """A password-flow config gets one clear error (on `auth`), not one per leftover key."""
        if isinstance(data, dict) and data.get("auth") == "password":
            retired = ("password", "security_token", "password_file", "security_token_file")
            return {k: v for k, v in data.items() if k not in retired}
        return data

    @field_validator("auth", mode="before")
    @classmethod
    def _password_flow_is_retired(cls, value: Any) -> Any:
        if value == "password":
            raise ValueError(PASSWORD_RETIRED)
        return value

    @model_validator(mode="after")
    def _campaign_for_members(self) -> SalesforceConfig:
        if self.existing_contact == "campaign_member" and not self.default_campaign_id:
            raise ValueError(
                "existing_contact: campaign_member needs default_campaign_id (the Campaign a "
                "Contact joins when the lead's attribution names none that exists)"
            )
        return self

    @model_validator(mode="after")
    def _credentials_for_flow(self) -> SalesforceConfig:
        needed = {
            "client_credentials": ("client_id", "client_secret"),
            "jwt": ("client_id", "username", "private_key"),
        }[self.auth]
        missing = [k for k in needed if getattr(self, k) is None]
        if missing:
            raise ValueError(f"auth: {self.auth} needs {', '.join(missing)}")
        return self


class SalesforceTarget(
    HttpTarget,
    StageReader,
    SchemaChecker,
    StateReporter,
    Sandboxed,
    RecordLinks,
    SalesforceEraser,
    SalesforceConsent,
):
    Config: ClassVar[type[SalesforceConfig]] = SalesforceConfig
    default_owns: ClassVar[frozenset[Stage]] = frozenset(SALES_STAGES)  # sales: SQL on
    owner_field: ClassVar[str | None] = "OwnerId"
    reads_for_new_leads: ClassVar[int | None] = 0  # inserted: a duplicate is read after
    max_batch: ClassVar[int] = 200
    default_rate: ClassVar[float | None] = 10.0
    field_map: ClassVar[FieldMap] = FIELD_MAP
    score_fields: ClassVar[dict[str, str | FieldSpec]] = SCORE_FIELDS
    # reads_per_batch stays 1: a batch with leads that may exist is read once before it is
    # written. A batch of new leads is inserted without a read.

    config: SalesforceConfig

    def __init__(
        self, config: SalesforceConfig, placeholder: str = "[not provided]", **kwargs: Any
    ) -> None:
        self._token: str | None = None
        self._instance = config.instance_url.rstrip("/")
        self._token_lock = threading.Lock()
        self.api_usage: dict[str, int] | None = None
        self.country_mode: CountryMode | None = None  # None: not read from the org yet
        super().__init__(config, placeholder, **kwargs)
        self._org_fields = self.fields
        if config.country_field != "auto":
            self._use_country_mode(config.country_field)
        self.transport.on_response.append(self._track_usage)

    def record_url(self, external_id: str) -> str | None:
        """The record in Lightning Experience, `/lightning/r/<object>/<id>/view` ("Lightning
        Experience URL format", help.salesforce.com/s/articleView?id=sf.lex_url_format.htm):
        the object by the id's key prefix (00Q a Lead, 003 a Contact); any other record by
        its id alone, which Salesforce redirects to its page."""
        if not RECORD_ID.match(external_id):
            return None
        kind = {"00Q": "Lead", "003": "Contact"}.get(external_id[:3])
        path = f"lightning/r/{kind}/{external_id}/view" if kind else external_id
        return f"{self._instance}/{path}"

    # --- the org's shape: country picklists ----------------------------------------------

    @property
    def org_fields(self) -> FieldMap:
        """The field map in this org's shape: `CountryCode` instead of leadbridge's `Country`
        where country picklists are on. `payload()` (what a push is hashed on) stays on the
        configured map, so an org switching picklists on doesn't make every lead look changed."""
        return self._org_fields

    @property
    def setup_calls(self) -> int:
        """Lead's describe, once, unless the country mode is pinned (or already learnt)."""
        return 1 if self.country_mode is None else 0

    def _use_country_mode(self, mode: CountryMode) -> None:
        self.country_mode = mode
        self._org_fields = with_country_codes(self.fields) if mode == "code" else self.fields

    def _settle_country_mode(self) -> None:
        """Learn, once per target instance, whether the org has State and Country/Territory
        Picklists: Lead's describe lists `CountryCode` only then.

        Cost: one `GET …/sobjects/Lead/describe` — one call against the org's daily API
        allocation and some hundred kB of JSON — per target instance, made by its first
        upsert: the daemon builds its targets once per process, a CLI command once per run,
        and a run with nothing to send makes none. `country_field: code | name` skips it.
        """
        if self.country_mode is None:
            self._learn_country_mode(self._describe())

    def _learn_country_mode(self, fields: Mapping[str, Any]) -> None:
        if self.config.country_field == "auto":
            self._use_country_mode("code" if "CountryCode" in fields else "name")

    def _describe(self) -> dict[str, dict[str, Any]]:
        """Lead's fields by name, from the sObject Describe resource (dome-sobject-describe)."""
        self.auth_headers(False)  # the token response names the instance to ask
        url = f"{self._instance}/services/data/v{self.config.api_version}/sobjects/Lead/describe"
        try:
            body = self.read_json(url, "describe")
        except ValueError as exc:  # not JSON: a proxy's error page, say
            raise RetryableError(f"{self.name}: describe answered with no JSON") from exc
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, list):
            raise RetryableError(f"{self.name}: unexpected describe response")
        return {
            f["name"]: f for f in fields if isinstance(f, dict) and isinstance(f.get("name"), str)
        }

    # --- payloads and upsert -----------------------------------------------------------

    def owned_fields(self, lead: Lead) -> dict[str, Any]:
        if self.config.stage_field and self.pushes_stage:
            return {
                self.config.stage_field: self.config.stage_values.get(
                    str(lead.stage), str(lead.stage)
                )
            }
        return {}

    def plan(self, lead: Lead, existing: Mapping[str, Any] | None) -> Write:
        """As every target plans (create payload, or the update the write policies allow),
        in the org's shape (`org_fields`)."""
        fields, values = self.org_fields, canonical(lead)
        if existing is None:
            body = {
                **fields.apply(values, self.placeholder),
                **self.create_only_fields(lead),
                **self.owned_fields(lead),
            }
            return Write(lead, body, created=True)
        update, kept = fields.update(values, existing, self.placeholder)
        return Write(lead, {**update, **self.owned_fields(lead)}, created=False, kept=kept)

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        """Insert the leads this target has no link for (no read: one call per 200); read,
        plan and upsert the rest, and every insert Salesforce refused because the record
        exists (DUPLICATE_VALUE on the unique External ID) — all within this call."""
        self._settle_country_mode()
        links = links or {}
        results: dict[str, PushResult] = {}
        if self.config.existing_contact != "lead":
            results.update(self._to_contacts(leads, links))
        rest = [lead for lead in leads if lead.lead_key not in results]
        fresh = [lead for lead in rest if lead.lead_key not in links]
        known = [lead for lead in rest if lead.lead_key in links]
        for lead, result in zip(fresh, self._insert(fresh), strict=True):
            if result is None:
                known.append(lead)  # it exists after all: read it, then update it
            else:
                results[lead.lead_key] = result
        if known:
            results.update(self._read_and_upsert(known))
        return [results[lead.lead_key] for lead in leads]

    # --- known customers: existing_contact (contacts.py) --------------------------------

    def _to_contacts(
        self, leads: Sequence[Lead], links: Mapping[str, Link]
    ) -> dict[str, PushResult]:
        """The leads whose email is a Contact's, written as the config says: one SOQL for the
        batch finds the Contacts, one collections call writes the Tasks or memberships."""
        emails = [lead.email for lead in leads if lead.email]
        if not emails:
            return {}
        key = self.config.task_key_field
        found = contacts.read_contacts(list(self._query(contacts.contacts_soql(emails, key))), key)
        moving = contacts.diverted(leads, found, links)
        if not moving:
            return {}
        if self.config.existing_contact == "task":
            return self._log_tasks(moving, found)
        return self._add_members(moving, found)

    def _log_tasks(
        self, leads: Sequence[Lead], found: Mapping[str, contacts.Contact]
    ) -> dict[str, PushResult]:
        key = self.config.task_key_field
        records = [contacts.task_record(lead, found[str(lead.email)], key) for lead in leads]
        answers = self._sobjects(
            "PATCH", f"Task/{requests.utils.quote(key, safe='')}", records, "Task"
        )
        results = {}
        for lead, answer in zip(leads, answers, strict=True):
            contact = found[str(lead.email)]
            results[lead.lead_key] = (
                contacts.ok(lead, answer.get("id"), contact, bool(answer.get("created")))
                if answer.get("success")
                else self._refused(lead, answer)
            )
        return results

    def _add_members(
        self, leads: Sequence[Lead], found: Mapping[str, contacts.Contact]
    ) -> dict[str, PushResult]:
        config = self.config
        names = [n for lead in leads if (n := lead.attribution.get(config.campaign_attribution))]
        by_name = (
            {str(r["Name"]): str(r["Id"]) for r in self._query(contacts.campaigns_soql(names))}
            if names
            else {}
        )
        default = str(config.default_campaign_id)
        wanted: dict[tuple[str, str], list[Lead]] = {}
        results: dict[str, PushResult] = {}
        for lead in leads:
            contact = found[str(lead.email)]
            campaign = contacts.campaign_of(lead, config.campaign_attribution, by_name, default)
            member = contact.campaigns.get(campaign)
            if member is not None:  # already in it: nothing to write
                results[lead.lead_key] = contacts.ok(lead, member, contact, created=False)
            else:
                wanted.setdefault((contact.id, campaign), []).append(lead)
        if not wanted:
            return results
        pairs = list(wanted)
        records = [contacts.member_record(found[str(wanted[p][0].email)], p[1]) for p in pairs]
        answers = self._sobjects("POST", "", records, "CampaignMember")
        for pair, answer in zip(pairs, answers, strict=True):
            for lead in wanted[pair]:
                contact = found[str(lead.email)]
                if answer.get("success"):
                    results[lead.lead_key] = contacts.ok(lead, answer.get("id"), contact, True)
                elif contacts.already_member(_errors_of(answer)):
                    results[lead.lead_key] = contacts.ok(lead, None, contact, created=False)
                else:
                    results[lead.lead_key] = self._refused(lead, answer)
        return results

    def _sobjects(
        self, method: str, path: str, records: list[dict[str, Any]], kind: str
    ) -> list[dict[str, Any]]:
        """One sObject Collections call (create: POST; upsert: PATCH …/<type>/<field>)."""
        base = f"{self._instance}/services/data/v{self.config.api_version}/composite/sobjects"
        url = f"{base}/{path}" if path else base
        response = self.transport.request(
            method, url, json={"allOrNone": False, "records": records}
        )
        if response.status_code >= 400:
            codes = _codes(response)
            if "INVALID_FIELD" in codes or "NOT_FOUND" in codes:
                raise FatalError(
                    f"{self.name}: Salesforce refused the {kind} records ({codes}): for "
                    f"existing_contact: task create {self.config.task_key_field} on Activity "
                    "as a unique External ID text field (32), or set existing_contact: lead"
                )
            raise PermanentError(
                f"{self.name}: {kind} HTTP {response.status_code} {codes}",
                body=response_body(response),
            )
        answers = response_body(response)
        if not isinstance(answers, list) or len(answers) != len(records):
            raise RetryableError(f"{self.name}: unexpected collections response")
        return [a if isinstance(a, dict) else {} for a in answers]

    def _refused(self, lead: Lead, answer: Mapping[str, Any]) -> PushResult:
        errors = _errors_of(answer)
        codes = {e.get("statusCode") for e in errors}
        message = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
        retryable = bool(codes) and codes <= RETRYABLE_CODES
        return PushResult(
            lead_key=lead.lead_key,
            ok=False,
            error_class=Outcome.RETRYABLE if retryable else Outcome.PERMANENT,
            error=message or "rejected",
            body=errors,
        )

    def _insert(self, leads: Sequence[Lead]) -> list[PushResult | None]:
        """Collections create; None for a lead whose record already exists."""
        writes = [self.plan(lead, None) for lead in leads]
        owners = {w.lead.lead_key: self.owner(w.lead) for w in writes}
        routed = [w for w in writes if owners[w.lead.lead_key]]
        unrouted = [w for w in writes if not owners[w.lead.lead_key]]
        found: dict[str, PushResult | None] = {}
        # A routed create has its owner; the rest let the org's assignment rules decide.
        for group, auto_assign in (
            (routed, False),
            (unrouted, self.config.assignment_rules_on_create),
        ):
            if group:
                sent = self._send(group, auto_assign, owners, insert=True)
                found.update((w.lead.lead_key, r) for w, r in zip(group, sent, strict=True))
        return [found[lead.lead_key] for lead in leads]

    def _read_and_upsert(self, leads: Sequence[Lead]) -> dict[str, PushResult]:
        """Read what Salesforce holds for these leads (one SOQL per 200 keys), plan each record
        as a create or an update under the write policies, then upsert in collections."""
        existing = self.existing(leads)
        results: dict[str, PushResult] = {}
        writes: list[Write] = []
        for lead in leads:
            record = existing.get(lead.lead_key)
            if record is not None and record.get("IsConverted"):
                results[lead.lead_key] = PushResult(
                    lead_key=lead.lead_key,
                    ok=False,
                    external_id=record.get("Id"),
                    error_class=Outcome.CONVERTED,
                    error="the Lead is converted in Salesforce: read-only",
                )
            else:
                writes.append(self.plan(lead, record))
        owners = {w.lead.lead_key: self.owner(w.lead) for w in writes if w.created}
        updates = [w for w in writes if not w.created]
        routed = [w for w in writes if w.created and owners[w.lead.lead_key]]
        new = [w for w in writes if w.created and not owners[w.lead.lead_key]]
        # Updates never re-run assignment; a routed create has its owner; the rest of the
        # creates let the org's assignment rules decide (assignment_rules_on_create).
        for group, auto_assign in (
            (updates, False),
            (routed, False),
            (new, self.config.assignment_rules_on_create),
        ):
            if not group:
                continue
            sent = self._send(group, auto_assign, owners)
            for write, result in zip(group, sent, strict=True):
                results[write.lead.lead_key] = result or write.result(
                    ok=False, error_class=Outcome.RETRYABLE, error="no result for this record"
                )
        return results

    def existing(self, leads: Sequence[Lead]) -> dict[str, dict[str, Any]]:
        """The Leads Salesforce holds for these keys, with the fields the write policies need."""
        key_field = self.config.external_id_field
        columns = ["Id", key_field, "IsConverted"]
        columns += [f for f in self.org_fields.read_fields() if f not in columns]
        found: dict[str, dict[str, Any]] = {}
        keys = sorted({lead.lead_key for lead in leads})
        for start in range(0, len(keys), self.max_batch):
            soql = format_soql(
                "SELECT {:literal} FROM Lead WHERE {:literal} IN {}",
                ", ".join(columns),
                key_field,
                keys[start : start + self.max_batch],
            )
            for record in self._query(soql):
                found[record[key_field]] = record
        return found

    def _send(
        self,
        writes: Sequence[Write],
        auto_assign: bool,
        owners: Mapping[str, str | None],
        *,
        insert: bool = False,
    ) -> list[PushResult | None]:
        """One collections call, and one more for the records refused only for their country
        (FIELD_INTEGRITY_EXCEPTION on Country/CountryCode): sent again at once without it,
        and the result says so in `dropped`, so the lead lands and its history tells why its
        country is missing. Never a dead letter for a country alone."""
        answers = self._collection(writes, auto_assign, owners, insert)
        results = [self._result(w, a, insert) for w, a in zip(writes, answers, strict=True)]
        again = [
            i
            for i, (write, answer) in enumerate(zip(writes, answers, strict=True))
            if not answer.get("success")
            and refuses_country(_errors_of(answer))
            and COUNTRY_FIELDS & set(write.body)
        ]
        if again:
            retries = [_without_country(writes[i]) for i in again]
            answers = self._collection(retries, auto_assign, owners, insert)
            for i, write, answer in zip(again, retries, answers, strict=True):
                results[i] = self._result(write, answer, insert)
        return results

    def _collection(
        self,
        writes: Sequence[Write],
        auto_assign: bool,
        owners: Mapping[str, str | None],
        insert: bool,
    ) -> list[dict[str, Any]]:
        """POST …/composite/sobjects (create) or PATCH …/composite/sobjects/Lead/<field>
        (upsert): one SaveResult / UpsertResult per record, in order."""
        field = self.config.external_id_field
        body = {
            "allOrNone": False,
            "records": [
                {
                    "attributes": {"type": "Lead"},
                    field: w.lead.lead_key,
                    **w.body,
                    **({"OwnerId": owners[w.lead.lead_key]} if owners.get(w.lead.lead_key) else {}),
                }
                for w in writes
            ],
        }
        base = f"{self._instance}/services/data/v{self.config.api_version}/composite/sobjects"
        method, url = (
            ("POST", base)
            if insert
            else ("PATCH", f"{base}/Lead/{requests.utils.quote(field, safe='')}")
        )
        headers = {"Sforce-Auto-Assign": "TRUE" if auto_assign else "FALSE"}
        response = self.transport.request(method, url, json=body, headers=headers)
        if response.status_code >= 400:
            self._refuse_request(response)
        answers = response_body(response)
        if not isinstance(answers, list) or len(answers) != len(writes):
            raise RetryableError(f"{self.name}: unexpected collections response")
        return [a if isinstance(a, dict) else {} for a in answers]

    def _refuse_request(self, response: requests.Response) -> None:
        """A whole request refused: a field this org lacks is configuration (every lead would
        fail the same way), anything else is this batch's (the caller splits it per lead)."""
        errors = _errors(response)
        missing = " ".join(
            str(e.get("message")) for e in errors if e.get("errorCode") == "INVALID_FIELD"
        )
        field = self.config.external_id_field
        if f"'{field}'" in missing:
            raise FatalError(
                f"{self.name}: {field} not found on Lead: create it as a unique External ID "
                "text field, or fix external_id_field"
            )
        if "'CountryCode'" in missing:
            raise FatalError(
                f"{self.name}: the org has no State and Country/Territory Picklists "
                "(no CountryCode on Lead): set country_field: auto or name"
            )
        raise PermanentError(
            f"{self.name}: HTTP {response.status_code} {_codes(response)}",
            body=response_body(response),
        )

    def _result(self, write: Write, answer: Mapping[str, Any], insert: bool) -> PushResult | None:
        if answer.get("success"):
            created = True if insert else answer.get("created")
            return write.result(ok=True, external_id=answer.get("id"), created=created)
        errors = _errors_of(answer)
        codes = {e.get("statusCode") for e in errors}
        if insert and self._names_the_key(errors):
            return None  # the record exists: read it and update it, never overwrite
        message = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
        if codes & CONVERTED_CODES:
            cls = Outcome.CONVERTED
        elif codes and codes <= RETRYABLE_CODES:
            cls = Outcome.RETRYABLE
        elif not write.created and codes == {"REQUIRED_FIELD_MISSING"}:
            # Planned as an update, but the record went away since it was read: the next
            # attempt reads again and creates it with its placeholders.
            cls = Outcome.RETRYABLE
        else:
            cls = Outcome.PERMANENT
        return write.result(
            ok=False,
            external_id=answer.get("id"),
            error_class=cls,
            error=message or "rejected",
            body=errors,
        )

    def _names_the_key(self, errors: Sequence[Mapping[str, Any]]) -> bool:
        """DUPLICATE_VALUE on the External ID: "duplicate value found: <field> duplicates
        value on record with id: <id>" (the unique index refused a second record)."""
        field = self.config.external_id_field
        return any(
            e.get("statusCode") == "DUPLICATE_VALUE"
            and (field in (e.get("fields") or []) or field in str(e.get("message", "")))
            for e in errors
        )

    # --- HTTP policy ---------------------------------------------------------------------

    def classify(self, response: requests.Response) -> Any:
        """403 REQUEST_LIMIT_EXCEEDED is Salesforce's throttle (no 429, no Retry-After)."""
        if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in _codes(response):
            usage = self.api_usage or {}
            spent = usage.get("total") and usage.get("used", 0) >= usage["total"]
            pause = DAILY_LIMIT_PAUSE_S if spent else CONCURRENCY_PAUSE_S
            return RetryableError(f"{self.name}: REQUEST_LIMIT_EXCEEDED", retry_after=pause)
        if response.status_code == 404 and "NOT_FOUND" in _codes(response):
            url = response.request.url if response.request is not None else ""
            if "/composite/sobjects/Lead/" in (url or ""):
                return FatalError(
                    f"{self.name}: {self.config.external_id_field} not found on Lead: "
                    "create it as a unique External ID text field, or fix "
                    "external_id_field"
                )
            return FatalError(
                f"{self.name}: Salesforce has no such resource: check instance_url and "
                f"api_version ({self.config.api_version})"
            )
        return None

    def _track_usage(self, response: requests.Response) -> None:
        info = response.headers.get("Sforce-Limit-Info")
        if info:
            usage = Salesforce.parse_api_usage(info).get("api-usage")
            if usage is not None:
                self.api_usage = {"used": usage.used, "total": usage.total}

    # --- schema check ------------------------------------------------------------------

    def schema_problems(self, create_missing: bool = False) -> list[SchemaProblem]:
        """Lead's describe: the external id, the stage picklist, every mapped field, and the
        org's country mode (which it also settles for this instance: no second describe)."""
        fields = self._describe()
        self._learn_country_mode(fields)
        known = {
            name: {
                "length": f.get("length") if f.get("type") in TEXT_TYPES else None,
                "options": _active_values(f) if f.get("restrictedPicklist") else None,
            }
            for name, f in fields.items()
        }
        problems = self.field_problems(known) + self._country_problems(fields)
        config, key = self.config, f"targets[{self.name}]"
        external = fields.get(config.external_id_field)
        if external is None:
            problems.append(
                SchemaProblem(
                    f"{key}.external_id_field",
                    f"Lead has no field {config.external_id_field}",
                    f"create {config.external_id_field} on Lead: Text(32), External ID, Unique",
                )
            )
        elif not (external.get("externalId") and external.get("unique")):
            problems.append(
                SchemaProblem(
                    f"{key}.external_id_field",
                    f"{config.external_id_field} is not a unique "
                    "External ID, so upserts can't key on it",
                    f"edit {config.external_id_field}: tick External ID and Unique",
                )
            )
        if config.stage_field and self.pushes_stage:
            stage = known.get(config.stage_field)
            values = sorted(set(config.stage_values.values()))
            if stage is None:
                problems.append(
                    SchemaProblem(
                        f"{key}.stage_field",
                        f"Lead has no field {config.stage_field}",
                        f"create {config.stage_field} on Lead: a picklist of {', '.join(values)}",
                    )
                )
            elif stage["options"] is not None and set(values) - stage["options"]:
                missing = sorted(set(values) - stage["options"])
                problems.append(
                    SchemaProblem(
                        f"{key}.stage_values",
                        f"{config.stage_field} refuses {', '.join(missing)}",
                        f"add {', '.join(missing)} to the picklist, or change stage_values",
                    )
                )
        return problems

    def _country_problems(self, fields: Mapping[str, Any]) -> list[SchemaProblem]:
        """Say which country mode this org is in (`schema_notes`, and the log), and refuse a
        pinned `country_field: code` in an org that has no CountryCode to write."""
        picklists = "CountryCode" in fields
        pinned = self.config.country_field != "auto"
        if picklists:
            note = (
                f"{self.name}: State and Country/Territory Picklists are on: leadbridge sends "
                "CountryCode (ISO alpha-2) and leaves Country to Salesforce"
            )
        else:
            note = (
                f"{self.name}: no State and Country/Territory Picklists: leadbridge sends "
                "Country as the ISO 3166 English short name"
            )
        if pinned:
            note += f" (country_field: {self.config.country_field} decides: it sends "
            note += "CountryCode)" if self.country_mode == "code" else "Country)"
        self.schema_notes.append(note)
        log.info(note, extra={"target": self.name, "country_mode": self.country_mode})
        if self.country_mode == "code" and not picklists:
            return [
                SchemaProblem(
                    f"targets[{self.name}].country_field",
                    "country_field is code, but the org has no State and Country/Territory "
                    "Picklists (no CountryCode on Lead): every lead would be refused",
                    "set country_field: auto (or name), or enable the picklists in Setup",
                )
            ]
        return []

    # --- stages read back ---------------------------------------------------------------

    def stage_changes(self, since: str | None) -> tuple[list[StageChange], str]:
        """Leads modified since the watermark (minus the overlap), by SOQL on SystemModstamp.

        SystemModstamp, not LastModifiedDate: the system maintains it and it can't be back-set.
        A converted lead reads as SQL, or opportunity when an opportunity was made from it.
        """
        config = self.config
        start = _parse_time(since) - config.overlap if since else datetime(2000, 1, 1, tzinfo=UTC)
        stage_column = config.stage_field or "Status"
        soql = format_soql(
            "SELECT Id, {:literal}, {:literal}, IsConverted, ConvertedOpportunityId, "
            "SystemModstamp FROM Lead WHERE SystemModstamp >= {} AND {:literal} != null "
            "ORDER BY SystemModstamp",
            config.external_id_field,
            stage_column,
            start,
            config.external_id_field,
        )
        reverse = {v.lower(): Stage(k) for k, v in config.stage_values.items()}
        newest = start + config.overlap if since else start
        changes = []
        for record in self._query(soql):
            at = _parse_time(record["SystemModstamp"])
            newest = max(newest, at)
            stage = _sf_stage(record, stage_column, reverse)
            if stage is not None:
                changes.append(
                    StageChange(
                        lead_key=record[config.external_id_field],
                        target=self.name,
                        stage=stage,
                        at=at,
                        external_id=record.get("Id"),
                        raw_value=str(record.get(stage_column)),
                    )
                )
        return changes, newest.isoformat()

    def _query(self, soql: str) -> Iterator[dict[str, Any]]:
        """Every record of a query, following nextRecordsUrl (what query_all_iter does)."""
        url = (
            f"{self._instance}/services/data/v{self.config.api_version}/query?"
            f"{urlencode({'q': soql})}"
        )
        while url:
            response = self.transport.request("GET", url)
            if response.status_code >= 400:
                raise RetryableError(
                    f"{self.name}: query HTTP {response.status_code} {_codes(response)}"
                )
            page = response.json()
            yield from page.get("records", [])
            next_url = page.get("nextRecordsUrl")
            url = f"{self._instance}{next_url}" if next_url and not page.get("done") else ""

    def state(self) -> dict[str, Any]:
        return {"api_usage": self.api_usage}

    # --- tokens --------------------------------------------------------------------------

    def auth_headers(self, force_refresh: bool) -> Mapping[str, str]:
        with self._token_lock:
            if self._token is None or force_refresh:
                self._token = self._fetch_token()
        return {"Authorization": f"Bearer {self._token}"}

    def _fetch_token(self) -> str:
        config = self.config
        if config.auth == "client_credentials":
            return self._client_credentials()
        return self._jwt_bearer()

    def _jwt_bearer(self) -> str:
        """OAuth 2.0 JWT bearer flow (help: remoteaccess_oauth_jwt_flow): a JWT signed with the
        app's certificate key, for a pre-authorised user; no secret, no refresh token."""
        config = self.config
        try:
            session_id, instance = SalesforceLogin(
                username=config.username,
                consumer_key=config.client_id,
                privatekey=config.private_key.get_secret_value() if config.private_key else None,
                domain=config.domain,
            )
        except SalesforceAuthenticationFailed as exc:
            raise FatalError(
                f"{self.name}: JWT bearer sign-in refused ({exc.code}): check client_id, "
                "username, private_key and that the user is pre-authorised for the app"
            ) from None
        except requests.RequestException as exc:
            raise RetryableError(f"{self.name}: token endpoint unreachable") from exc
        self._instance = f"https://{instance}"
        return session_id

    def _client_credentials(self) -> str:
        config = self.config
        url = config.token_url or f"{config.instance_url.rstrip('/')}/services/oauth2/token"
        try:
            response = requests.post(
                url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": config.client_id,
                    "client_secret": config.client_secret.get_secret_value(),
                },
                timeout=(5, 30),
                verify=self.verify(),
            )
        except requests.RequestException as exc:
            raise RetryableError(f"{self.name}: token endpoint unreachable") from exc
        if response.status_code >= 500:
            raise RetryableError(f"{self.name}: token endpoint HTTP {response.status_code}")
        body = response_body(response) or {}
        if response.status_code != 200 or "access_token" not in body:
            raise FatalError(
                f"{self.name}: client credentials rejected "
                f"({body.get('error', response.status_code)}): check client_id, "
                "client_secret and the connected app's run-as user"
            )
        self._instance = body.get("instance_url", self._instance).rstrip("/")
        return body["access_token"]

    # --- sandbox (demo, `leadbridge sandbox`, tests): the server is loaded only when asked for

    default_name: ClassVar[str] = "sales"

    @classmethod
    def sandbox(cls, *, port: int = 0, latency_ms: float = 0.0) -> Any:
        from leadbridge.connectors.salesforce import sandbox

        return sandbox.SalesforceSandbox(port=port, latency_ms=latency_ms)

    @classmethod
    def sandbox_entry(cls, sandbox: Any, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "kind": "salesforce",
            "instance_url": sandbox.url,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        }

    @classmethod
    def sandbox_records(cls, sandbox: Any, config: Any) -> list[SandboxRecord]:
        return [
            SandboxRecord(
                name=str(r.get("LastName") or ""),
                email=str(r.get("Email") or ""),
                stage=str(r.get(config.stage_field) or "") if config.stage_field else "",
            )
            for r in list(sandbox.records.values())
        ]

    @classmethod
    def move_stage(cls, sandbox: Any, config: Any, lead_key: str, stage: str) -> bool:
        """A salesperson setting the stage picklist on the Lead (the sandbox's admin API)."""
        if not config.stage_field or stage not in config.stage_values:
            return False
        body = {"key": lead_key, "field": config.stage_field, "value": config.stage_values[stage]}
        requests.post(f"{sandbox.url}/_sandbox/stage", json=body, timeout=10).raise_for_status()
        return True


def _parse_time(value: str) -> datetime:
    """Salesforce datetimes: 2026-05-01T10:00:00.000+0000 (and ISO-8601 from our cursors)."""
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _sf_stage(record: dict[str, Any], column: str, reverse: dict[str, Stage]) -> Stage | None:
    stage = reverse.get(str(record.get(column) or "").lower())
    if record.get("IsConverted"):
        converted = Stage.OPPORTUNITY if record.get("ConvertedOpportunityId") else Stage.SQL
        if stage is None or rank(converted) > rank(stage):
            stage = converted
    return stage


def _errors(response: requests.Response) -> list[dict[str, Any]]:
    """A refused request's body: `[{"message", "errorCode", "fields"}]` (REST errorcodes.htm)."""
    body = response_body(response)
    return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []


def _codes(response: requests.Response) -> str:
    return ",".join(str(e.get("errorCode")) for e in _errors(response))


def _errors_of(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record's errors in a collections answer: `[{"statusCode", "message", "fields"}]`."""
    errors = answer.get("errors")
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _without_country(write: Write) -> Write:
    """The same write with no country: what a record refused for its country is sent as."""
    dropped = {
        name: "refused by the org's country picklist"
        for name in sorted(COUNTRY_FIELDS & set(write.body))
    }
    body = {k: v for k, v in write.body.items() if k not in COUNTRY_FIELDS}
    return replace(write, body=body, dropped={**write.dropped, **dropped})


def _active_values(field: Mapping[str, Any]) -> set[str]:
    entries = field.get("picklistValues")
    listed = entries if isinstance(entries, list) else []
    return {
        str(p["value"])
        for p in listed
        if isinstance(p, dict) and "value" in p and p.get("active", True)
    }
