"""Salesforce target: Leads upserted on the External ID field in sObject Collections of ≤200.

`PATCH /services/data/vXX.X/composite/sobjects/Lead/<External_Id__c>` with `allOrNone:
false`, so each record has its own result; records already known to leadbridge go with
`Sforce-Auto-Assign: FALSE`, so an update never re-runs assignment rules (creates do, unless
`assignment_rules_on_create: false`). Per-record errorCodes decide retry, dead letter or
"converted" (a converted Lead is read-only: leadbridge stops pushing to it). 403
REQUEST_LIMIT_EXCEEDED pauses the target; `Sforce-Limit-Info` usage is kept for `status`.

Tokens: client credentials POSTed to `token_url` (works with any My Domain, sandbox or
proxy); the JWT bearer and username-password flows go through simple-salesforce's
`SalesforceLogin`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

import requests
from pydantic import Field, SecretStr, model_validator
from simple_salesforce import Salesforce, SalesforceLogin, format_soql
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from leadbridge.connectors.base import FatalError, PermanentError, RetryableError
from leadbridge.connectors.salesforce.mapping import (
    CONVERTED_CODES,
    FIELD_MAP,
    RETRYABLE_CODES,
    STAGE_VALUES,
)
from leadbridge.connectors.targets import HttpTarget, Link, SchemaProblem, TargetConfig, Write
from leadbridge.core.mapping import FieldMap
from leadbridge.core.models import Lead, PushResult, Stage, StageChange
from leadbridge.core.stages import rank
from leadbridge.core.transport import response_body

TEXT_TYPES = ("string", "textarea", "email", "phone", "url")
DAILY_LIMIT_PAUSE_S = 3600.0  # the org's 24 h allocation is spent: try again in an hour
CONCURRENCY_PAUSE_S = 120.0  # too many long requests at once: back off a little


class SalesforceConfig(TargetConfig):
    kind: str = "salesforce"
    instance_url: str = Field(pattern=r"^https?://")
    auth: Literal["client_credentials", "jwt", "password"] = "client_credentials"
    token_url: str | None = None  # default: <instance_url>/services/oauth2/token
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    private_key: SecretStr | None = None  # PEM, for auth: jwt
    domain: str = "login"  # login | test | <mydomain>.my (jwt and password flows)
    api_version: str = "62.0"
    external_id_field: str = "LeadBridge_Key__c"
    stage_field: str | None = "Lead_Stage__c"
    stage_values: dict[str, str] = Field(default_factory=lambda: dict(STAGE_VALUES))
    assignment_rules_on_create: bool = True

    @model_validator(mode="after")
    def _credentials_for_flow(self) -> SalesforceConfig:
        needed = {
            "client_credentials": ("client_id", "client_secret"),
            "jwt": ("client_id", "username", "private_key"),
            "password": ("username", "password"),
        }[self.auth]
        missing = [k for k in needed if getattr(self, k) is None]
        if missing:
            raise ValueError(f"auth: {self.auth} needs {', '.join(missing)}")
        return self


class SalesforceTarget(HttpTarget):
    Config: ClassVar[type[SalesforceConfig]] = SalesforceConfig
    max_batch: ClassVar[int] = 200
    default_rate: ClassVar[float | None] = 10.0
    field_map: ClassVar[FieldMap] = FIELD_MAP

    config: SalesforceConfig

    def __init__(
        self, config: SalesforceConfig, placeholder: str = "[not provided]", **kwargs: Any
    ) -> None:
        self._token: str | None = None
        self._instance = config.instance_url.rstrip("/")
        self._token_lock = threading.Lock()
        self.api_usage: dict[str, int] | None = None
        super().__init__(config, placeholder, **kwargs)
        self.transport.on_response.append(self._track_usage)

    # --- payloads and upsert -----------------------------------------------------------

    def owned_fields(self, lead: Lead) -> dict[str, Any]:
        if self.config.stage_field and self.pushes_stage:
            return {
                self.config.stage_field: self.config.stage_values.get(
                    str(lead.stage), str(lead.stage)
                )
            }
        return {}

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        """Read what Salesforce holds for the batch (one SOQL per 200 keys), plan each record
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
                    error_class="converted",
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
            if group:
                for result in self._collection(group, auto_assign, owners):
                    results[result.lead_key] = result
        return [results[lead.lead_key] for lead in leads]

    def existing(self, leads: Sequence[Lead]) -> dict[str, dict[str, Any]]:
        """The Leads Salesforce holds for these keys, with the fields the write policies need."""
        key_field = self.config.external_id_field
        columns = ["Id", key_field, "IsConverted"]
        columns += [f for f in self.fields.read_fields() if f not in columns]
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

    def _collection(
        self, writes: Sequence[Write], auto_assign: bool, owners: Mapping[str, str | None]
    ) -> list[PushResult]:
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
        url = (
            f"{self._instance}/services/data/v{self.config.api_version}"
            f"/composite/sobjects/Lead/{requests.utils.quote(field, safe='')}"
        )
        headers = {"Sforce-Auto-Assign": "TRUE" if auto_assign else "FALSE"}
        response = self.transport.request("PATCH", url, json=body, headers=headers)
        if response.status_code >= 400:
            raise PermanentError(
                f"{self.name}: HTTP {response.status_code} {_codes(response)}",
                body=response_body(response),
            )
        records = response_body(response)
        if not isinstance(records, list) or len(records) != len(writes):
            raise RetryableError(f"{self.name}: unexpected collections response")
        return [self._result(w, record) for w, record in zip(writes, records, strict=True)]

    def _result(self, write: Write, record: dict[str, Any]) -> PushResult:
        if record.get("success"):
            return write.result(
                ok=True, external_id=record.get("id"), created=record.get("created")
            )
        errors = record.get("errors") or []
        codes = {e.get("statusCode") for e in errors}
        message = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
        if codes & CONVERTED_CODES:
            cls = "converted"
        elif codes and codes <= RETRYABLE_CODES:
            cls = "retryable"
        elif not write.created and codes == {"REQUIRED_FIELD_MISSING"}:
            # Planned as an update, but the record went away since it was read: the next
            # attempt reads again and creates it with its placeholders.
            cls = "retryable"
        else:
            cls = "permanent"
        return write.result(
            ok=False,
            external_id=record.get("id"),
            error_class=cls,
            error=message or "rejected",
            body=errors,
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
            return FatalError(
                f"{self.name}: {self.config.external_id_field} not found on Lead: "
                "create it as a unique External ID text field, or fix "
                "external_id_field"
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
        """Lead's describe: the external id, the stage picklist, every mapped field."""
        self.auth_headers(False)  # the token response names the instance to ask
        url = f"{self._instance}/services/data/v{self.config.api_version}/sobjects/Lead/describe"
        fields = {f["name"]: f for f in self.read_json(url, "describe").get("fields", [])}
        known = {
            name: {
                "length": f.get("length") if f.get("type") in TEXT_TYPES else None,
                "options": {
                    p["value"] for p in f.get("picklistValues", []) if p.get("active", True)
                }
                if f.get("restrictedPicklist")
                else None,
            }
            for name, f in fields.items()
        }
        problems = self.field_problems(known)
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
        try:
            if config.auth == "jwt":
                session_id, instance = SalesforceLogin(
                    username=config.username,
                    consumer_key=config.client_id,
                    privatekey=config.private_key.get_secret_value(),
                    domain=config.domain,
                )
            else:
                session_id, instance = SalesforceLogin(
                    username=config.username,
                    password=config.password.get_secret_value(),
                    security_token=(
                        config.security_token.get_secret_value() if config.security_token else None
                    ),
                    domain=config.domain,
                )
        except SalesforceAuthenticationFailed as exc:
            raise FatalError(f"{self.name}: Salesforce login failed ({exc.code})") from None
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


def _codes(response: requests.Response) -> str:
    body = response_body(response)
    if isinstance(body, list):
        return ",".join(str(e.get("errorCode")) for e in body if isinstance(e, dict))
    return ""
