"""Zoho CRM target: Leads written in batches of ≤100, keyed on a unique custom field.

Sources, all Zoho CRM API v8 (zoho.com/crm/developer/docs/api/v8/…): insert-records.html,
upsert-records.html, Get-Records-through-COQL-Query.html, field-meta.html, and Zoho
Accounts' refresh-token flow (zoho.com/accounts/protocol/oauth/web-apps/
access-token-expiry.html). docs/connectors.md says which facts were confirmed where.

Insert first, as the Salesforce target does. A lead leadbridge has never pushed here is
inserted (`POST /crm/v8/Leads`, ≤100 a call, no read first): "duplicates are checked for every
insert record API call based on unique fields", so an insert can't overwrite anything — a
record already holding the lead's key is refused with DUPLICATE_DATA on the key field and
left as it is. Those, and the leads pushed before, are read (COQL, ≤50 keys a query: the `in`
comparator's limit), planned under the write policies and upserted (`POST …/Leads/upsert`
with `duplicate_check_fields: [<key field>]`, so Zoho matches on leadbridge's key alone, never
on the e-mail: one person has a lead per offer). Each upserted record's `action` (insert or
update) is the `created` flag. Why insert first: a read costs a call per 50 leads, an insert
one per 100, and new leads are most of the traffic — 1,000 new leads cost 20 calls at the
default batch of 50 (see `__init__`), against 40 with a read before every write.

Tokens: the refresh-token grant of a Zoho self client at the data centre's accounts URL,
cached until shortly before `expires_in` and renewed when the API answers 401. Zoho lets a
refresh token mint ten access tokens in ten minutes and blocks the rest of the window: that
answer pauses the target instead of stopping it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import requests
from pydantic import Field, SecretStr

from leadbridge.connectors.zoho.erase import ZohoEraser
from leadbridge.connectors.zoho.mapping import (
    DNC_FIELD,
    FATAL_CODES,
    FIELD_MAP,
    KEY_FIELD,
    RETRYABLE_CODES,
    SCORE_FIELDS,
    STAGE_FIELD,
    STAGE_VALUES,
    TEXT_TYPES,
)
from leadbridge.core.connector import (
    FatalError,
    HttpTarget,
    Link,
    Outcome,
    PermanentError,
    RetryableError,
    Sandboxed,
    SandboxRecord,
    SchemaChecker,
    SchemaProblem,
    StageReader,
    TargetConfig,
    Write,
    response_body,
)
from leadbridge.core.domain.mapping import FieldMap, FieldSpec
from leadbridge.core.domain.models import Lead, PushResult, Stage, StageChange
from leadbridge.core.domain.stages import SALES_STAGES, rank

log = logging.getLogger("leadbridge.zoho")

# Zoho's data centres: (API domain, accounts URL). zoho.com/crm/developer/docs/api/v8/
# multi-dc.html and zoho.com/accounts/protocol/oauth/multi-dc.html.
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "us": ("https://www.zohoapis.com", "https://accounts.zoho.com"),
    "eu": ("https://www.zohoapis.eu", "https://accounts.zoho.eu"),
    "in": ("https://www.zohoapis.in", "https://accounts.zoho.in"),
    "au": ("https://www.zohoapis.com.au", "https://accounts.zoho.com.au"),
    "jp": ("https://www.zohoapis.jp", "https://accounts.zoho.jp"),
    "ca": ("https://www.zohoapis.ca", "https://accounts.zohocloud.ca"),
    "cn": ("https://www.zohoapis.com.cn", "https://accounts.zoho.com.cn"),
    "sa": ("https://www.zohoapis.sa", "https://accounts.zoho.sa"),
}
MODULE = "Leads"
# An API name goes into COQL as an identifier, which COQL can't quote: config allows only
# what Zoho itself makes API names of.
API_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,99}$"
COQL_IN_LIMIT = 50  # "more than 50 values for the in … comparators": LIMIT_EXCEEDED
COQL_PAGE = 200  # LIMIT 1–200 costs one API credit
COQL_MAX_ROWS = 10_000  # "You can retrieve a maximum of 10,000 records" through OFFSET
KEY_LENGTH = 32  # a lead key: uuid5 as 32 hex characters
# Zoho's 429 (TOO_MANY_REQUESTS: the org's concurrency or sub-concurrency limit) gives no
# documented wait; a throttled target pauses this long unless a Retry-After says otherwise.
THROTTLE_PAUSE_S = 120.0
TOKEN_BLOCK_S = 600.0  # ten new access tokens in ten minutes, then "the rest of the ten minutes"
TOKEN_EARLY_S = 60.0  # renew this long before `expires_in` runs out
WRITE_STATUSES = frozenset({200, 201, 202, 207, 400})  # answers that carry one result a record
DataCentre = Literal["us", "eu", "in", "au", "jp", "ca", "cn", "sa"]


class ZohoConfig(TargetConfig):
    kind: str = "zoho"
    data_centre: DataCentre = "us"  # fills api_domain and accounts_url unless they are given
    api_domain: str | None = Field(default=None, pattern=r"^https?://")
    accounts_url: str | None = Field(default=None, pattern=r"^https?://")
    api_version: str = Field(default="v8", pattern=r"^v\d+$")
    client_id: str
    client_secret: SecretStr
    refresh_token: SecretStr  # a self client's, with the scopes docs/connectors.md lists
    key_field: str = Field(default=KEY_FIELD, pattern=API_NAME)
    stage_field: str | None = Field(default=STAGE_FIELD, pattern=API_NAME)
    stage_values: dict[str, str] = Field(default_factory=lambda: dict(STAGE_VALUES))

    @property
    def api_base(self) -> str:
        domain = self.api_domain or DATA_CENTRES[self.data_centre][0]
        return f"{domain.rstrip('/')}/crm/{self.api_version}"

    @property
    def token_url(self) -> str:
        accounts = self.accounts_url or DATA_CENTRES[self.data_centre][1]
        return f"{accounts.rstrip('/')}/oauth/v2/token"


class ZohoTarget(HttpTarget, StageReader, SchemaChecker, Sandboxed, ZohoEraser):
    Config: ClassVar[type[ZohoConfig]] = ZohoConfig
    max_batch: ClassVar[int] = 100  # insert and upsert: "A maximum of 100 records … per call"
    # Zoho limits concurrency (5–25 calls at once by edition) and API credits per 24 hours,
    # not requests per second: 5 a second keeps one replica well inside both.
    default_rate: ClassVar[float | None] = 5.0
    field_map: ClassVar[FieldMap] = FIELD_MAP
    score_fields: ClassVar[dict[str, str | FieldSpec]] = SCORE_FIELDS
    default_owns: ClassVar[frozenset[Stage]] = frozenset(SALES_STAGES)  # sales: SQL on
    owner_field: ClassVar[str | None] = "Owner"
    # A batch of leads pushed before is read once (one COQL query: ≤50 keys, the batch's
    # default size); new leads are inserted without a read, a duplicate read after.
    reads_per_batch: ClassVar[int] = 1
    reads_for_new_leads: ClassVar[int | None] = 0

    config: ZohoConfig

    def __init__(
        self, config: ZohoConfig, placeholder: str = "[not provided]", **kwargs: Any
    ) -> None:
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()
        super().__init__(config, placeholder, **kwargs)
        if config.batch_size is None:
            # One COQL query reads at most 50 keys: a batch of 50 is one read and one write.
            self.batch_size = COQL_IN_LIMIT

    @property
    def base(self) -> str:
        return self.config.api_base

    # --- payloads and upsert -------------------------------------------------------------

    def owned_fields(self, lead: Lead) -> dict[str, Any]:
        """The key (what every write is matched on) and the stage: always written."""
        owned: dict[str, Any] = {self.config.key_field: lead.lead_key}
        if self.config.stage_field and self.pushes_stage:
            owned[self.config.stage_field] = self.config.stage_values.get(
                str(lead.stage), str(lead.stage)
            )
        return owned

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        """Insert the leads this target has no link for (no read); read, plan and upsert the
        rest, and every insert Zoho refused because the key is taken — all in this call."""
        links = links or {}
        results: dict[str, PushResult] = {}
        fresh = [lead for lead in leads if lead.lead_key not in links]
        known = [lead for lead in leads if lead.lead_key in links]
        inserted = self._insert(fresh)
        existed = [lead for lead, result in zip(fresh, inserted, strict=True) if result is None]
        results.update((r.lead_key, r) for r in inserted if r is not None)
        if existed:  # their keys are taken: read them, then update them
            log.info("leads already in Zoho", extra={"target": self.name, "count": len(existed)})
        known += existed
        if known:
            results.update(self._after_inserts(known, bool(results)))
        return [results[lead.lead_key] for lead in leads]

    def _after_inserts(self, leads: Sequence[Lead], inserted: bool) -> dict[str, PushResult]:
        """Read and upsert; when that is refused for now, what the insert landed still
        counts (its `created` is what erasure trusts), and only these leads wait."""
        try:
            return self._read_and_upsert(leads)
        except RetryableError as exc:
            if not inserted:
                raise
            return {
                lead.lead_key: PushResult(
                    lead_key=lead.lead_key,
                    ok=False,
                    error_class=Outcome.RETRYABLE,
                    error=str(exc),
                    retry_after=exc.retry_after,
                )
                for lead in leads
            }

    def _insert(self, leads: Sequence[Lead]) -> list[PushResult | None]:
        """Insert Records: one result per record; None for a lead whose key Zoho already holds."""
        writes = [self.plan(lead, None) for lead in leads]
        results: list[PushResult | None] = []
        for start in range(0, len(writes), self.max_batch):
            chunk = writes[start : start + self.max_batch]
            answers = self._write(chunk, upsert=False)
            results += [self._result(w, a, True) for w, a in zip(chunk, answers, strict=True)]
        return results

    def _read_and_upsert(self, leads: Sequence[Lead]) -> dict[str, PushResult]:
        """Read what Zoho holds for these leads, plan each as a create or an update under the
        write policies, and upsert them; a converted lead is read-only and is not written."""
        existing = self.existing(leads)
        results: dict[str, PushResult] = {}
        writes: list[Write] = []
        for lead in leads:
            record = existing.get(lead.lead_key)
            if record is not None and record.get("Converted__s") is True:
                results[lead.lead_key] = PushResult(
                    lead_key=lead.lead_key,
                    ok=False,
                    external_id=_text(record.get("id")),
                    error_class=Outcome.CONVERTED,
                    error="the Lead is converted in Zoho CRM: leadbridge no longer writes it",
                )
            else:
                writes.append(self.plan(lead, record))
        for start in range(0, len(writes), self.max_batch):
            chunk = writes[start : start + self.max_batch]
            for write, answer in zip(chunk, self._write(chunk, upsert=True), strict=True):
                results[write.lead.lead_key] = self._result(
                    write, answer, insert=False
                ) or write.result(
                    ok=False, error_class=Outcome.RETRYABLE, error="no result for this record"
                )
        return results

    def _write(self, writes: Sequence[Write], *, upsert: bool) -> list[dict[str, Any]]:
        """One insert or upsert call. Zoho answers `{"data": [one result per record]}` — with
        200/201 when all landed, 207 when some did, 400 when none did; a request refused as a
        whole answers one error object instead."""
        body: dict[str, Any] = {"data": [self._record(write) for write in writes]}
        url = f"{self.base}/{MODULE}"
        if upsert:
            url += "/upsert"
            body["duplicate_check_fields"] = [self.config.key_field]
        response = self.transport.request("POST", url, json=body)
        answer = response_body(response)
        rows = answer.get("data") if isinstance(answer, dict) else None
        if response.status_code in WRITE_STATUSES and isinstance(rows, list):
            if len(rows) != len(writes):
                raise RetryableError(f"{self.name}: Zoho answered {len(rows)} of {len(writes)}")
            return [row if isinstance(row, dict) else {} for row in rows]
        if response.status_code >= 500:
            raise RetryableError(f"{self.name}: HTTP {response.status_code}")
        raise PermanentError(
            f"{self.name}: HTTP {response.status_code} {_field(answer, 'code')}: "
            f"{_field(answer, 'message')}",
            body=answer,
        )

    def _record(self, write: Write) -> dict[str, Any]:
        """The record's fields, and the routed owner when Zoho is to create the record (an
        existing record's owner is a salesperson's business)."""
        record = dict(write.body)
        owner = self.owner(write.lead) if write.created else None
        if owner:
            record["Owner"] = {"id": owner}
        return record

    def _result(self, write: Write, answer: Mapping[str, Any], insert: bool) -> PushResult | None:
        code = str(answer.get("code") or "")
        given = answer.get("details")
        details: Mapping[str, Any] = given if isinstance(given, dict) else {}
        if code == "SUCCESS":
            action = answer.get("action")
            created = True if insert else {"insert": True, "update": False}.get(str(action))
            return write.result(ok=True, external_id=_text(details.get("id")), created=created)
        field = details.get("api_name")
        if code == "DUPLICATE_DATA" and field == self.config.key_field and insert:
            return None  # the record exists: read it and update it, never overwrite
        message = f"{code or 'rejected'}: {answer.get('message') or ''}".strip()
        if field:
            message += f" ({field})"
        if code == "DUPLICATE_DATA":
            message += "; the org allows no duplicates in that field"
        if code in RETRYABLE_CODES:
            outcome = Outcome.RETRYABLE
        elif not write.created and code == "MANDATORY_NOT_FOUND":
            # Planned as an update, but the record went away since it was read: the next
            # attempt reads again and creates it with its placeholders.
            outcome = Outcome.RETRYABLE
        else:
            outcome = Outcome.PERMANENT
        return write.result(ok=False, error_class=outcome, error=message, body=dict(answer))

    def existing(self, leads: Sequence[Lead]) -> dict[str, dict[str, Any]]:
        """The Leads Zoho holds for these keys, with what the write policies need: one COQL
        query per 50 keys (`in` takes no more)."""
        key = self.config.key_field
        columns = list(dict.fromkeys(["id", key, "Converted__s", *self.fields.read_fields()]))
        keys = sorted({lead.lead_key for lead in leads})
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), COQL_IN_LIMIT):
            values = ", ".join(coql_string(k) for k in keys[start : start + COQL_IN_LIMIT])
            query = (
                f"select {', '.join(columns)} from {MODULE} "
                f"where {key} in ({values}) limit {COQL_PAGE}"
            )
            rows, _ = self._coql(query)
            found.update((str(row[key]), row) for row in rows if row.get(key))
        return found

    def _coql(self, query: str) -> tuple[list[dict[str, Any]], bool]:
        """One COQL page: its records, and whether more follow (`info.more_records`). No
        match is a 204 with no body."""
        response = self.transport.request("POST", f"{self.base}/coql", json={"select_query": query})
        if response.status_code == 204:
            return [], False
        body = response_body(response)
        if response.status_code >= 400:
            code = _field(body, "code")
            if code in ("INVALID_QUERY", "SYNTAX_ERROR"):
                # The columns come from the config: every read would fail the same way.
                raise FatalError(
                    f"{self.name}: Zoho refused leadbridge's COQL query ({code}: "
                    f"{str(_field(body, 'message'))[:200]}): run `leadbridge config check "
                    "--online` to see which Leads field is missing"
                )
            raise RetryableError(f"{self.name}: COQL HTTP {response.status_code} {code}")
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise RetryableError(f"{self.name}: unexpected COQL response")
        info = body.get("info") if isinstance(body.get("info"), dict) else {}
        return [r for r in rows if isinstance(r, dict)], bool(info.get("more_records"))

    # --- HTTP policy ---------------------------------------------------------------------

    def classify(self, response: requests.Response) -> Any:
        """Zoho's throttle (429 TOO_MANY_REQUESTS) pauses the target; a request refused for
        the user's permissions, the token's scopes or the URL stops it."""
        status = response.status_code
        if status < 400:
            return None
        code = _field(response_body(response), "code")
        if status == 429 or code == "TOO_MANY_REQUESTS":
            # No documented wait: the transport reads a Retry-After when there is one.
            wait = None if response.headers.get("Retry-After") else THROTTLE_PAUSE_S
            return RetryableError(f"{self.name}: Zoho TOO_MANY_REQUESTS", retry_after=wait)
        if code in FATAL_CODES:
            return FatalError(f"{self.name}: Zoho refused the request ({code}): {_fix(code)}")
        if status == 404:
            return FatalError(
                f"{self.name}: Zoho has no such resource (HTTP 404): check api_domain "
                f"({self.base}) and api_version"
            )
        return None

    # --- schema check --------------------------------------------------------------------

    def schema_problems(self, create_missing: bool = False) -> list[SchemaProblem]:
        """The Leads module's fields (Fields Metadata API): every mapped field exists and is
        long enough, the key field is a unique text field, the stage picklist offers every
        stage value, and leadbridge's DNC marker is a checkbox."""
        fields = self._fields()
        known = {
            name: {
                "length": f.get("length") if f.get("data_type") in TEXT_TYPES else None,
                "options": _picklist(f) if f.get("data_type") == "picklist" else None,
            }
            for name, f in fields.items()
        }
        problems = self.field_problems(known)
        problems += self._key_problems(fields.get(self.config.key_field))
        if self.config.stage_field and self.pushes_stage:
            problems += self._stage_problems(fields.get(self.config.stage_field))
        return problems + self._dnc_problems(fields.get(DNC_FIELD))

    def _fields(self) -> dict[str, dict[str, Any]]:
        """`GET /settings/fields?module=Leads`: the module's fields by API name."""
        url = f"{self.base}/settings/fields"
        body = self.read_json(url, "Leads fields", params={"module": MODULE})
        listed = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(listed, list):
            raise RetryableError(f"{self.name}: unexpected fields metadata response")
        return {
            str(f["api_name"]): f
            for f in listed
            if isinstance(f, dict) and isinstance(f.get("api_name"), str)
        }

    def _dnc_problems(self, field: Mapping[str, Any] | None) -> list[SchemaProblem]:
        """leadbridge's DNC marker is a checkbox (a missing one is reported with the map)."""
        if DNC_FIELD not in self.fields.fields or field is None:
            return []
        if field.get("data_type") == "boolean":
            return []
        return [
            SchemaProblem(
                f"targets[{self.name}].fields.{DNC_FIELD}",
                f"{DNC_FIELD} is a {field.get('data_type')} field; leadbridge writes true or false",
                f"recreate {DNC_FIELD} on Leads as a Checkbox",
            )
        ]

    def _key_problems(self, field: Mapping[str, Any] | None) -> list[SchemaProblem]:
        name, key = self.config.key_field, f"targets[{self.name}].key_field"
        create = (
            f"create {name} on Leads: a Single Line field of at least {KEY_LENGTH} characters "
            "with 'Do not allow duplicate values' ticked"
        )
        if field is None:
            return [SchemaProblem(key, f"Leads has no field {name}", create)]
        problems = []
        if field.get("data_type") != "text":
            kind = field.get("data_type")
            problems.append(
                SchemaProblem(key, f"{name} is a {kind} field", f"re{create}"),
            )
        if not field.get("unique"):
            problems.append(
                SchemaProblem(
                    key,
                    f"{name} allows duplicate values, so Zoho can't find a lead by it: an "
                    "insert would not be refused and an upsert could not match",
                    f"edit {name}: tick 'Do not allow duplicate values'",
                )
            )
        length = field.get("length")
        if isinstance(length, int) and length < KEY_LENGTH:
            problems.append(
                SchemaProblem(
                    key,
                    f"{name} holds {length} characters; a lead key has {KEY_LENGTH}",
                    f"raise the length of {name} to at least {KEY_LENGTH}",
                )
            )
        return problems

    def _stage_problems(self, field: Mapping[str, Any] | None) -> list[SchemaProblem]:
        name, key = self.config.stage_field, f"targets[{self.name}]"
        values = sorted(set(self.config.stage_values.values()))
        if field is None:
            return [
                SchemaProblem(
                    f"{key}.stage_field",
                    f"Leads has no field {name}",
                    f"create {name} on Leads: a Pick List of {', '.join(values)}",
                )
            ]
        missing = sorted(set(values) - _picklist(field))
        if field.get("data_type") != "picklist" or not missing:
            return []
        return [
            SchemaProblem(
                f"{key}.stage_values",
                f"{name} offers no {', '.join(missing)}",
                f"add {', '.join(missing)} to the pick list, or change stage_values",
            )
        ]

    # --- stages read back ----------------------------------------------------------------

    def stage_changes(self, since: str | None) -> tuple[list[StageChange], str]:
        """Leads modified since the watermark (minus the overlap), by COQL on Modified_Time,
        oldest first, 200 a page. OFFSET stops at 10,000 records: past it the query starts
        again from the newest Modified_Time read (keyset), and records read twice count once.
        A converted lead reads as SQL, or opportunity when a deal was made from it."""
        config = self.config
        start = _parse_time(since) - config.overlap if since else datetime(2000, 1, 1, tzinfo=UTC)
        newest = start + config.overlap if since else start
        reverse = {v.lower(): Stage(k) for k, v in config.stage_values.items()}
        changes: dict[str, StageChange] = {}
        floor, offset, seen = start, 0, start
        while True:
            rows, more = self._coql(self._changes_query(floor, offset))
            for record in rows:
                at = _parse_time(str(record.get("Modified_Time")))
                seen, newest = max(seen, at), max(newest, at)
                change = self._change(record, at, reverse)
                if change is not None:
                    changes[str(record.get("id"))] = change
            if not more or not rows:
                break
            offset += COQL_PAGE
            if offset + COQL_PAGE > COQL_MAX_ROWS:
                if seen <= floor:
                    break  # 10,000 leads modified in one second: nothing more to gain
                floor, offset = seen, 0
        return list(changes.values()), newest.isoformat()

    def _changes_query(self, floor: datetime, offset: int) -> str:
        config, key = self.config, self.config.key_field
        columns = ["id", key, "Converted__s", "Converted_Deal", "Modified_Time"]
        if config.stage_field:
            columns.append(config.stage_field)
        stamp = floor.astimezone(UTC).isoformat(timespec="seconds")
        return (
            f"select {', '.join(columns)} from {MODULE} "
            f"where (Modified_Time >= {coql_string(stamp)} and {key} is not null) "
            f"order by Modified_Time asc limit {COQL_PAGE} offset {offset}"
        )

    def _change(
        self, record: Mapping[str, Any], at: datetime, reverse: Mapping[str, Stage]
    ) -> StageChange | None:
        key = record.get(self.config.key_field)
        if not key:
            return None
        column = self.config.stage_field
        raw = record.get(column) if column else None
        stage = reverse.get(str(raw or "").lower())
        if record.get("Converted__s") is True:
            converted = Stage.OPPORTUNITY if record.get("Converted_Deal") else Stage.SQL
            if stage is None or rank(converted) > rank(stage):
                stage = converted
        if stage is None:
            return None
        return StageChange(
            lead_key=str(key),
            target=self.name,
            stage=stage,
            at=at,
            external_id=_text(record.get("id")),
            raw_value=f"{column}={raw}, converted={record.get('Converted__s') is True}",
        )

    # --- tokens --------------------------------------------------------------------------

    def auth_headers(self, force_refresh: bool) -> Mapping[str, str]:
        with self._token_lock:
            if self._token is None or force_refresh or time.monotonic() >= self._token_expires:
                self._token = self._refresh()
        return {"Authorization": f"Zoho-oauthtoken {self._token}"}

    def _refresh(self) -> str:
        """The refresh-token grant (zoho.com/accounts/protocol/oauth/web-apps/
        access-token-expiry.html), its parameters in the body, never in the URL."""
        config = self.config
        try:
            response = requests.post(
                config.token_url,
                data={
                    "grant_type": "refresh_token",
                    "client_id": config.client_id,
                    "client_secret": config.client_secret.get_secret_value(),
                    "refresh_token": config.refresh_token.get_secret_value(),
                },
                timeout=(5, 30),
                verify=self.verify(),
            )
        except requests.RequestException as exc:
            raise RetryableError(f"{self.name}: Zoho accounts unreachable") from exc
        if response.status_code >= 500:
            raise RetryableError(f"{self.name}: Zoho accounts HTTP {response.status_code}")
        body = response_body(response)
        body = body if isinstance(body, dict) else {}
        token = body.get("access_token")
        if isinstance(token, str) and token:
            lifetime = body.get("expires_in")
            seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
            self._token_expires = time.monotonic() + max(0.0, seconds - TOKEN_EARLY_S)
            return token
        error = str(body.get("error") or response.status_code)[:60]
        if "too many requests" in str(body.get("error_description", "")).lower():
            why = "Zoho blocks new access tokens for the rest of ten minutes after ten"
            self.transport.hold(TOKEN_BLOCK_S, why)
            raise RetryableError(f"{self.name}: {why}", retry_after=TOKEN_BLOCK_S)
        raise FatalError(
            f"{self.name}: Zoho accounts refused the refresh token ({error}): check client_id, "
            f"client_secret and refresh_token, and that {config.token_url} is the data centre "
            "the self client and its refresh token were made in"
        )

    # --- sandbox (demo, `leadbridge sandbox`, tests): the server is loaded only when asked for

    default_name: ClassVar[str] = "zoho"

    @classmethod
    def sandbox(cls, *, port: int = 0, latency_ms: float = 0.0) -> Any:
        from leadbridge.connectors.zoho import sandbox

        return sandbox.ZohoSandbox(port=port, latency_ms=latency_ms)

    @classmethod
    def sandbox_entry(cls, sandbox: Any, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "kind": "zoho",
            "api_domain": sandbox.url,
            "accounts_url": sandbox.url,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "refresh_token": sandbox.refresh_token,
        }

    @classmethod
    def sandbox_records(cls, sandbox: Any, config: Any) -> list[SandboxRecord]:
        return [
            SandboxRecord(
                name=str(r.get("Last_Name") or ""),
                email=str(r.get("Email") or ""),
                stage=str(r.get(config.stage_field) or "") if config.stage_field else "",
            )
            for r in list(sandbox.records.values())
        ]

    @classmethod
    def move_stage(cls, sandbox: Any, config: Any, lead_key: str, stage: str) -> bool:
        """A salesperson picking the stage on the Lead (the sandbox's admin API)."""
        if not config.stage_field or stage not in config.stage_values:
            return False
        body = {"key": lead_key, "field": config.stage_field, "value": config.stage_values[stage]}
        requests.post(f"{sandbox.url}/_sandbox/stage", json=body, timeout=10).raise_for_status()
        return True


def coql_string(value: str) -> str:
    """A COQL string literal: single-quoted, with backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse_time(value: str) -> datetime:
    """Zoho datetimes are ISO 8601 with the org's offset (2024-06-05T02:04:09-07:00)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _picklist(field: Mapping[str, Any]) -> set[str]:
    """A pick list's values as the API takes them (`actual_value`)."""
    entries = field.get("pick_list_values")
    listed = entries if isinstance(entries, list) else []
    return {str(p["actual_value"]) for p in listed if isinstance(p, dict) and "actual_value" in p}


def _field(body: Any, key: str) -> Any:
    return body.get(key) if isinstance(body, dict) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _fix(code: str) -> str:
    """What an operator does about a request Zoho refuses for good."""
    if code in ("NO_PERMISSION", "AUTHORIZATION_FAILED"):
        return (
            "the Zoho user who made the refresh token may not create or edit Leads: give that "
            "user's profile those permissions"
        )
    if code == "OAUTH_SCOPE_MISMATCH":
        return (
            "make a new refresh token with the scopes ZohoCRM.modules.leads.ALL, "
            "ZohoCRM.coql.READ and ZohoCRM.settings.fields.READ"
        )
    if code == "FEATURE_NOT_SUPPORTED":
        return "the org's Zoho CRM edition lacks the feature"
    return "check api_domain and api_version"
