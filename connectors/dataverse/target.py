"""Dataverse target: leads upserted by alternate key through `$batch` with continue-on-error.

Each lead is `PATCH leads(<key_column>='<lead key>')` — create or update, never a plain
create — inside one `$batch` (≤1000 requests; default 100, as Microsoft advises smaller
batches), with `Prefer: odata.continue-on-error` so every row gets its own status. The stage
lives in its own choice column; statecode is never written (qualifying is Dynamics' own
process and makes the lead read-only).

Tokens: msal client credentials with a configurable authority. Instance discovery is on for
Microsoft's clouds and off for any other authority (sovereign proxies, the sandbox); tokens
are cached by msal and renewed; a 401 drops the cached token and fetches a new one once.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlencode, urlsplit

import msal
import requests
from pydantic import Field, SecretStr

from leadbridge.connectors.dataverse import batch, journeys, people
from leadbridge.connectors.dataverse.consent import DataverseConsent
from leadbridge.connectors.dataverse.erase import DataverseEraser
from leadbridge.connectors.dataverse.journeys import JourneysConsent
from leadbridge.connectors.dataverse.mapping import (
    DNC_COLUMN,
    FIELD_MAP,
    LEAD_SOURCE_WEB,
    SCORE_FIELDS,
    STAGE_VALUES,
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
from leadbridge.core.connector.transport import VerifyingSession, response_body
from leadbridge.core.domain.mapping import FieldMap, FieldSpec, canonical
from leadbridge.core.domain.models import Lead, PushResult, Stage, StageChange
from leadbridge.core.domain.stages import SALES_STAGES, rank
from leadbridge.core.support.logs import mask_email

log = logging.getLogger("leadbridge.dataverse")


class DeltaExpired(Exception):
    """The change-tracking token is older than the environment keeps changes for."""


LEAD_KEY_LENGTH = 32  # uuid5 as 32 hex characters
_ENTITY_ID = re.compile(r"/(\w+)\(([0-9a-fA-F-]{36})\)$")  # …/leads(<guid>)
ODATA_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


class DataverseConfig(TargetConfig):
    kind: str = "dataverse"
    environment_url: str = Field(pattern=r"^https?://")
    authority: str = Field(pattern=r"^https://")  # https://login.microsoftonline.com/<tenant-id>
    client_id: str
    client_secret: SecretStr
    scope: str | None = None  # default: <environment_url>/.default
    instance_discovery: bool | None = None  # default: on for Microsoft's authority hosts only
    api_path: str = "/api/data/v9.2"
    entity_set: str = "leads"
    key_column: str = "lb_leadkey"
    stage_column: str | None = "lb_leadstage"
    stage_values: dict[str, int] = Field(default_factory=lambda: dict(STAGE_VALUES))
    lead_source_code: int | None = LEAD_SOURCE_WEB
    change_query: Literal["track_changes", "modifiedon"] = "track_changes"
    # People and companies (connectors/dataverse/people.py): a contact per person and an
    # account per company, each lead bound to both; `leads` writes loose leads only.
    model: people.Model = "contacts_and_leads"
    contact_entity_set: str = "contacts"
    contact_key_column: str = "lb_personkey"
    account_entity_set: str = "accounts"
    account_key_column: str = "lb_companykey"
    parent_bind: people.ParentBind = "content_id"
    contact_fields: dict[str, str | FieldSpec | None] = Field(default_factory=dict)
    account_fields: dict[str, str | FieldSpec | None] = Field(default_factory=dict)
    # issue 17: where Customer Insights – Journeys is installed, an email opt-out is also an
    # opted-out contact point consent record for this purpose's GUID (journeys.py). Unset: off.
    journeys_purpose_id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{36}$")


@dataclass(frozen=True)
class _PersonWrite:
    """One lead's change set (account, contact, lead) and how to read its answer."""

    write: Write
    parts: list[batch.Part]
    kinds: list[str]  # what each part before the lead's writes: "account", "contact"

    @property
    def items(self) -> batch.ChangeSet:
        return batch.ChangeSet(self.parts)

    def result(self, target: DataverseTarget, answer: Any) -> PushResult:
        """A change set answered part by part landed; a single answer is its failure, and
        nothing of it was kept (the change set is rolled back as a whole)."""
        if not isinstance(answer, batch.ChangeSet):
            missing = _missing_key(answer)
            if missing:
                return self.write.result(
                    ok=False,
                    error_class=Outcome.FATAL,
                    error=f"{target.name}: {missing} has no usable alternate key on "
                    f"leadbridge's key column: create it (`config check --online` says how) "
                    "or set `model: leads`",
                    body=answer.body,
                )
            return target._result(self.write, answer)
        by_id = {part.content_id: part for part in answer.parts}
        lead_answer = by_id.get(self.parts[-1].content_id) or answer.parts[-1]
        result = target._result(self.write, lead_answer)
        if not result.ok:
            return result
        related, created = {}, []
        for kind, part in zip(self.kinds, self.parts, strict=False):
            answered = by_id.get(part.content_id) or batch.Part()
            entity = (answered.headers or {}).get("odata-entityid")
            if entity:
                related[kind] = entity
                if answered.status == 201:
                    created.append(kind)
        return result.model_copy(update={"related": related, "related_created": created})


def _missing_key(answer: Any) -> str | None:
    """The table (contact, account) whose alternate key an upsert by key found missing: the
    Web API's "The key in the request URI is not valid for resource
    'Microsoft.Dynamics.CRM.<table>'" (use-alternate-key-reference-record.md). Configuration,
    not the record: the target stops with everything kept queued, never dead-lettered."""
    error = answer.body.get("error") if isinstance(getattr(answer, "body", None), dict) else None
    message = str((error or {}).get("message") or "")
    for table in ("contact", "account"):
        if f"not valid for resource 'Microsoft.Dynamics.CRM.{table}'" in message:
            return table
    return None


class DataverseTarget(
    HttpTarget,
    StageReader,
    SchemaChecker,
    Sandboxed,
    RecordLinks,
    DataverseEraser,
    DataverseConsent,
    JourneysConsent,
):
    Config: ClassVar[type[DataverseConfig]] = DataverseConfig
    default_owns: ClassVar[frozenset[Stage]] = frozenset(SALES_STAGES)  # sales: SQL on
    owner_field: ClassVar[str | None] = "ownerid@odata.bind"
    max_batch: ClassVar[int] = 1000
    default_rate: ClassVar[float | None] = 15.0  # 6,000 per 5 minutes per user is 20/s
    field_map: ClassVar[FieldMap] = FIELD_MAP
    score_fields: ClassVar[dict[str, str | FieldSpec]] = SCORE_FIELDS

    config: DataverseConfig

    def __init__(
        self, config: DataverseConfig, placeholder: str = "[not provided]", **kwargs: Any
    ) -> None:
        self._app: msal.ConfidentialClientApplication | None = None
        self._app_lock = threading.Lock()
        super().__init__(config, placeholder, **kwargs)
        self.contact_fields = people.CONTACT_FIELDS.with_overrides(config.contact_fields)
        self.account_fields = people.ACCOUNT_FIELDS.with_overrides(config.account_fields)
        if config.batch_size is None:
            # Two calls per batch (read, then write): 250 keeps new leads at ≤ 10 calls per
            # 1,000 and leaves room under the 1,000-request cap for contacts and accounts.
            self.batch_size = 250

    @property
    def base(self) -> str:
        return f"{self.config.environment_url.rstrip('/')}{self.config.api_path}"

    def owned_fields(self, lead: Lead) -> dict[str, Any]:
        if self.config.stage_column and self.pushes_stage:
            value = self.config.stage_values.get(str(lead.stage))
            if value is not None:
                return {self.config.stage_column: value}
        return {}

    def create_only_fields(self, lead: Lead) -> dict[str, Any]:
        """The lead source says where a lead came from when it was made; a salesperson may
        reclassify it, so it is never rewritten."""
        if self.config.lead_source_code is not None:
            return {"leadsourcecode": self.config.lead_source_code}
        return {}

    def record_url(self, external_id: str) -> str | None:
        """The record's form in the Dynamics 365 app: `main.aspx?etn=…&pagetype=entityrecord
        &id=…` ("Open forms, views, dialogs and reports with a URL",
        learn.microsoft.com/previous-versions/dynamicscrm-2015/developers-guide/gg328483).
        The external id is the record's OData-EntityId, `…/leads(<guid>)`."""
        found = _ENTITY_ID.search(external_id)
        if found is None:
            return None
        entity_set, guid = found.groups()
        table = "contact" if entity_set == self.config.contact_entity_set else "lead"
        query = urlencode({"etn": table, "pagetype": "entityrecord", "id": guid})
        return f"{self.config.environment_url.rstrip('/')}/main.aspx?{query}"

    def _key_url(self, lead_key: str) -> str:
        """The lead's API address by its alternate key."""
        key = quote(batch.odata_string(lead_key), safe="'")
        return f"{self.base}/{self.config.entity_set}({self.config.key_column}={key})"

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        """Read what Dataverse holds for the batch (one `$batch` GET), plan each lead as a
        create or an update under the write policies, then PATCH them all in one `$batch`.
        `return=representation` makes each part say 201 (created) or 200 (updated)."""
        if self.config.model == "contacts_and_leads":
            return self._upsert_people(leads)
        existing = self.existing(leads)
        writes = [self.plan(lead, existing.get(lead.lead_key)) for lead in leads]
        parts = [
            batch.Part(
                method="PATCH",
                url=f"{self._key_url(w.lead.lead_key)}?$select={self.config.key_column}",
                headers={"Prefer": "return=representation"},
                body=self._body(w),
            )
            for w in writes
        ]
        consents = self.consent_parts(leads)
        answers = self._batch([*parts, *consents.values()])
        if len(answers) != len(leads) + len(consents):
            raise RetryableError(f"{self.name}: $batch answered {len(answers)} of {len(leads)}")
        results = [self._result(w, a) for w, a in zip(writes, answers[: len(leads)], strict=True)]
        return journeys.with_consent_answers(leads, results, consents, answers[len(leads) :])

    def existing(self, leads: Sequence[Lead]) -> dict[str, dict[str, Any]]:
        """The leads Dataverse holds for these keys, with the columns the write policies
        need: one GET with the `In` query function, sent inside a `$batch` so a long key list
        never meets the URL length limit."""
        keys = sorted({lead.lead_key for lead in leads})
        if not keys:
            return {}
        column = self.config.key_column
        read = self._read_part(self.config.entity_set, column, keys, self.fields.read_fields())
        [answer] = self._batch([read])
        return self._rows(answer, column, "leads")

    def _read_part(
        self, entity_set: str, column: str, keys: Sequence[str], fields: Sequence[str]
    ) -> batch.Part:
        """`GET <set>?$select=…&$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,
        PropertyValues=@p2)`: the rows of these keys, with the columns the policies read."""
        select = ",".join(dict.fromkeys([column, *fields]))
        values = quote(json.dumps(sorted(keys), separators=(",", ":")), safe="")
        url = (
            f"{self.base}/{entity_set}?$select={select}"
            "&$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)"
            f"&@p1={quote(batch.odata_string(column), safe='')}&@p2={values}"
        )
        return batch.Part(method="GET", url=url, headers={"Prefer": "odata.maxpagesize=5000"})

    def _rows(self, answer: Any, column: str, what: str) -> dict[str, dict[str, Any]]:
        if (
            not isinstance(answer, batch.Part)
            or answer.status >= 400
            or not isinstance(answer.body, dict)
        ):
            status = answer.status if isinstance(answer, batch.Part) else "?"
            raise RetryableError(f"{self.name}: reading {what} by key HTTP {status}")
        return {
            record[column]: record
            for record in answer.body.get("value", [])
            if isinstance(record, dict) and record.get(column)
        }

    # --- people and companies (model: contacts_and_leads) -------------------------------

    @property
    def tables(self) -> people.Tables:
        config = self.config
        return people.Tables(
            contacts=config.contact_entity_set,
            contact_key=config.contact_key_column,
            accounts=config.account_entity_set,
            account_key=config.account_key_column,
            bind=config.parent_bind,
        )

    def _upsert_people(self, leads: Sequence[Lead]) -> list[PushResult]:
        """One read `$batch` (leads, contacts and accounts by key: three GETs), then one
        write `$batch` of one change set per lead — account, contact, lead — so a batch of
        new leads costs two calls whatever it holds."""
        parents = [people.parents_of(lead) for lead in leads]
        found_leads, contacts, accounts = self._existing_people(leads, parents)
        changes = [
            self._change_set(i, lead, parent, found_leads, contacts, accounts)
            for i, (lead, parent) in enumerate(zip(leads, parents, strict=True))
        ]
        consents = self.consent_parts(leads)
        answers = self._batch([*(change.items for change in changes), *consents.values()])
        if len(answers) != len(leads) + len(consents):
            raise RetryableError(f"{self.name}: $batch answered {len(answers)} of {len(leads)}")
        results = [
            change.result(self, answer)
            for change, answer in zip(changes, answers[: len(leads)], strict=True)
        ]
        return journeys.with_consent_answers(leads, results, consents, answers[len(leads) :])

    def _existing_people(
        self, leads: Sequence[Lead], parents: Sequence[people.Parents]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        config, tables = self.config, self.tables
        contact_keys = sorted({p.contact for p in parents if p.contact})
        account_keys = sorted({p.account for p in parents if p.account})
        lead_fields = [
            *self.fields.read_fields(),
            people.LEAD_PARENT_CONTACT,
            people.LEAD_PARENT_ACCOUNT,
        ]
        reads = [
            self._read_part(
                config.entity_set, config.key_column, [le.lead_key for le in leads], lead_fields
            )
        ]
        if contact_keys:
            contact_fields = [*self.contact_fields.read_fields(), people.CONTACT_PARENT]
            reads.append(
                self._read_part(tables.contacts, tables.contact_key, contact_keys, contact_fields)
            )
        if account_keys:
            reads.append(
                self._read_part(
                    tables.accounts,
                    tables.account_key,
                    account_keys,
                    self.account_fields.read_fields(),
                )
            )
        answers = self._batch(reads)
        if len(answers) != len(reads):
            raise RetryableError(f"{self.name}: $batch answered {len(answers)} of {len(reads)}")
        found = self._rows(answers[0], config.key_column, "leads")
        contacts = self._rows(answers[1], tables.contact_key, "contacts") if contact_keys else {}
        accounts = self._rows(answers[-1], tables.account_key, "accounts") if account_keys else {}
        return found, contacts, accounts

    def _change_set(
        self,
        index: int,
        lead: Lead,
        parent: people.Parents,
        found: Mapping[str, dict[str, Any]],
        contacts: Mapping[str, dict[str, Any]],
        accounts: Mapping[str, dict[str, Any]],
    ) -> _PersonWrite:
        """The lead's change set: account, contact, lead, with Content-IDs unique in the
        batch (3i+1, 3i+2, 3i+3) so every `$n` names one request."""
        tables, values = self.tables, canonical(lead)
        existing = found.get(lead.lead_key)
        write = self.plan(lead, existing)
        parts: list[batch.Part] = []
        kinds: list[str] = []
        kept = list(write.kept)
        account_ref = contact_ref = None
        if parent.account:
            cid = str(3 * index + 1)
            body, kept_here = people.account_body(
                self.account_fields, accounts.get(parent.account), self.placeholder, values
            )
            kept += [f"account.{name}" for name in kept_here]
            parts.append(
                self._patch(tables.accounts, tables.account_key, parent.account, cid, body)
            )
            kinds.append("account")
            account_ref = tables.account_ref(parent.account, cid)
        if parent.contact:
            cid = str(3 * index + 2)
            body, kept_here = people.contact_body(
                lead,
                self.contact_fields,
                contacts.get(parent.contact),
                account_ref,
                self.placeholder,
                values,
            )
            kept += [f"contact.{name}" for name in kept_here]
            parts.append(
                self._patch(tables.contacts, tables.contact_key, parent.contact, cid, body)
            )
            kinds.append("contact")
            contact_ref = tables.contact_ref(parent.contact, cid)
        lead_body = {**self._body(write), **people.lead_binds(existing, contact_ref, account_ref)}
        parts.append(
            batch.Part(
                method="PATCH",
                url=f"{self._key_url(lead.lead_key)}?$select={self.config.key_column}",
                headers={"Prefer": "return=representation"},
                body=lead_body,
                content_id=str(3 * index + 3),
            )
        )
        planned = Write(lead, write.body, write.created, kept, write.dropped)
        return _PersonWrite(planned, parts, kinds)

    def _patch(
        self, entity_set: str, column: str, key: str, content_id: str, body: dict[str, Any]
    ) -> batch.Part:
        """An upsert by alternate key (no If-Match: create or update); `return=representation`
        makes it say 201 (created: erasure may delete it) or 200 (it was there)."""
        return batch.Part(
            method="PATCH",
            url=f"{self.base}/{entity_set}({column}={batch.odata_string(key)})?$select={column}",
            headers={"Prefer": "return=representation"},
            body=body,
            content_id=content_id,
        )

    def _batch(self, parts: list[batch.Part]) -> list[batch.Part]:
        content_type, body = batch.build(parts)
        headers = {
            **ODATA_HEADERS,
            "Content-Type": content_type,
            "Prefer": "odata.continue-on-error",
        }
        response = self.transport.request("POST", f"{self.base}/$batch", data=body, headers=headers)
        if response.status_code >= 400:
            raise PermanentError(
                f"{self.name}: $batch HTTP {response.status_code}", body=response_body(response)
            )
        return batch.parse(response.headers.get("Content-Type", ""), response.content)

    def payload(self, lead: Lead) -> dict[str, Any]:
        """The mapped columns, plus — when CI-J consent is configured and the person withdrew
        their email — the purpose the consent record is written for: configuring a purpose
        (or changing it) changes what Dataverse must get, so the lead is pushed again and its
        record written, not skipped as unchanged. The mark is no column: `_body` takes it
        out again."""
        body = super().payload(lead)
        if self.config.journeys_purpose_id and journeys.withdrew_email(lead):
            body[journeys.PURPOSE_MARK] = self.config.journeys_purpose_id
        return body

    def _body(self, write: Write) -> dict[str, Any]:
        """Columns, plus the owner binding (`systemusers(<id>)`, `teams(<id>)`) on create."""
        body = {k: v for k, v in write.body.items() if k != journeys.PURPOSE_MARK}
        owner = self.owner(write.lead) if write.created else None
        if owner:
            body["ownerid@odata.bind"] = f"/{owner.lstrip('/')}"
        return body

    def _result(self, write: Write, answer: batch.Part) -> PushResult:
        if 200 <= answer.status < 300:
            entity = (answer.headers or {}).get("odata-entityid")
            record = answer.body if isinstance(answer.body, dict) else {}
            return write.result(
                ok=True,
                external_id=entity or record.get("leadid") or write.lead.lead_key,
                created=answer.status == 201 if answer.status in (200, 201) else None,
            )
        error = answer.body.get("error", {}) if isinstance(answer.body, dict) else {}
        message = f"{answer.status} {error.get('code', '')}: {error.get('message', answer.body)}"
        retryable = answer.status in (429, 500, 502, 503, 504)
        return write.result(
            ok=False,
            error_class=Outcome.RETRYABLE if retryable else Outcome.PERMANENT,
            error=message.strip(),
            body=answer.body,
        )

    # --- schema check ------------------------------------------------------------------

    def schema_problems(self, create_missing: bool = False) -> list[SchemaProblem]:
        """The lead table's definition against the config: every mapped column exists and is
        long enough, and leadbridge's own columns (key, stage, DNC marker) exist with the
        right type, the key with an alternate key whose index is built.

        Read the documented way (learn.microsoft.com/power-apps/developer/data-platform/
        webapi/query-metadata-web-api, "Querying EntityMetadata attributes"): expanding
        `Attributes` gives only the properties every AttributeMetadata shares, so the column
        types and the keys come in one request, and `MaxLength` from the Attributes
        collection cast to StringAttributeMetadata (and MemoAttributeMetadata when a mapped
        column is a memo). Asking the uncast collection for MaxLength is a 400.
        """
        definition = self._definition()
        types = {
            a["LogicalName"]: str(a.get("AttributeType") or "")
            for a in definition.get("Attributes") or []
            if isinstance(a, dict) and isinstance(a.get("LogicalName"), str)
        }
        lengths = self._max_lengths(types)
        own = self._own_columns()
        known = {
            name: {"length": lengths.get(name), "options": None}
            for name in [*types, *own]  # own columns are checked below, with their type
        }
        problems = self.field_problems(known)
        problems += self._own_column_problems(own, types, lengths)
        problems += self._key_problems(definition.get("Keys") or [], types)
        if self.config.model == "contacts_and_leads":
            problems += self._people_problems()
        problems += self._journeys_problems()
        return problems

    def _journeys_problems(self) -> list[SchemaProblem]:
        """With `journeys_purpose_id` set: whether CI-J's consent table is there (a note when
        it is, a problem when it isn't: opt-outs would reach the leads only). Without it:
        a problem when CI-J is installed, as real-time journeys read consent per purpose
        from its records, never from the lead's flags (vendor-facts.md §1.7)."""
        if not self.config.journeys_purpose_id:
            try:
                installed = self.journeys_installed()
            except RetryableError:  # metadata not readable now: nothing configured to check
                return []
            if not installed:
                return []
            return [
                SchemaProblem(
                    f"targets[{self.name}].journeys_purpose_id",
                    "Customer Insights – Journeys is installed here, but no consent purpose is "
                    "configured: opt-outs reach the leads' flags only, which its real-time "
                    "journeys do not read",
                    "set journeys_purpose_id to the GUID of the purpose email opt-outs withdraw "
                    "(Customer Insights – Journeys › Settings › Compliance)",
                )
            ]
        if self.journeys_installed():
            self.schema_notes.append(
                "Customer Insights – Journeys found: email opt-outs are also written as "
                f"opted-out consent records ({journeys.CONSENT_ENTITY})"
            )
            return []
        return [
            SchemaProblem(
                f"targets[{self.name}].journeys_purpose_id",
                f"Customer Insights – Journeys isn't installed here (no {journeys.CONSENT_ENTITY})",
                "remove journeys_purpose_id, or install Customer Insights – Journeys",
            )
        ]

    def _people_problems(self) -> list[SchemaProblem]:
        """contact and account each need leadbridge's key column with an Active alternate
        key over it alone: the change sets upsert and bind by it (EntityKeyMetadata.
        EntityKeyIndexStatus: Pending, InProgress, Active, Failed — define-alternate-keys-
        entity.md)."""
        config, key = self.config, f"targets[{self.name}]"
        problems = []
        for entity, column, setting in (
            ("contact", config.contact_key_column, "contact_key_column"),
            ("account", config.account_key_column, "account_key_column"),
        ):
            body = self._metadata(
                "?$select=LogicalName&$expand=Attributes($select=LogicalName),"
                "Keys($select=LogicalName,KeyAttributes,EntityKeyIndexStatus)",
                f"the {entity} table's definition",
                entity=entity,
            )
            names = {
                a.get("LogicalName") for a in body.get("Attributes") or [] if isinstance(a, dict)
            }
            keys = [
                k
                for k in body.get("Keys") or []
                if isinstance(k, dict) and k.get("KeyAttributes") == [column]
            ]
            fix_model = f"or set `model: leads` under targets[{self.name}] to write loose leads"
            if column not in names:
                problems.append(
                    SchemaProblem(
                        f"{key}.{setting}",
                        f"{entity} has no column {column}",
                        f"create {column} (single line of text, 32) on {entity} and an "
                        f"alternate key on it alone, {fix_model}",
                    )
                )
            elif not keys:
                problems.append(
                    SchemaProblem(
                        f"{key}.{setting}",
                        f"no alternate key on {entity} over {column}: contacts and accounts "
                        "can't be upserted or bound",
                        f"define an alternate key on {entity} with the single column {column}, "
                        f"{fix_model}",
                    )
                )
            problems += [
                SchemaProblem(
                    f"{key}.{setting}",
                    f"the alternate key {k.get('LogicalName')} on {entity} is "
                    f"{k.get('EntityKeyIndexStatus')}, not Active",
                    "wait until it is Active (Pending/InProgress: the index is building); if "
                    "it Failed (duplicate values), clear the duplicates and run "
                    "ReactivateEntityKey",
                )
                for k in keys
                if k.get("EntityKeyIndexStatus") != "Active"
            ]
        return problems

    def _entity_path(self, entity: str | None = None) -> str:
        entity = entity or self.config.entity_set.removesuffix("s")  # leads → lead
        key = quote(batch.odata_string(entity), safe="'")
        return f"{self.base}/EntityDefinitions(LogicalName={key})"

    def _definition(self) -> dict[str, Any]:
        """Column names and types, and the alternate keys, in one request."""
        body = self._metadata(
            "?$select=LogicalName"
            "&$expand=Attributes($select=LogicalName,AttributeType),"
            "Keys($select=LogicalName,KeyAttributes,EntityKeyIndexStatus)",
            "the lead table's definition",
        )
        # The doc's own example wraps the one definition in `value`; the service sends it bare.
        value = body.get("value")
        if "LogicalName" not in body and isinstance(value, list) and value:
            body = value[0] if isinstance(value[0], dict) else {}
        return body

    def _max_lengths(self, types: Mapping[str, str]) -> dict[str, int]:
        """MaxLength per text column: one request per attribute type that carries it."""
        casts = ["StringAttributeMetadata"]
        if any(types.get(name) == "Memo" for name in self.fields.fields):
            casts.append("MemoAttributeMetadata")
        lengths: dict[str, int] = {}
        for cast in casts:
            body = self._metadata(
                f"/Attributes/Microsoft.Dynamics.CRM.{cast}?$select=LogicalName,MaxLength",
                f"the lead table's {cast}",
            )
            for attribute in body.get("value") or []:
                if not isinstance(attribute, dict):
                    continue
                name, length = attribute.get("LogicalName"), attribute.get("MaxLength")
                if isinstance(name, str) and isinstance(length, int):
                    lengths[name] = length
        return lengths

    def _metadata(self, path: str, what: str, entity: str | None = None) -> dict[str, Any]:
        """A metadata read; a refusal names Dataverse's own error, so the operator sees why."""
        response = self.transport.request(
            "GET", self._entity_path(entity) + path, headers=ODATA_HEADERS
        )
        body = response_body(response)
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            error = error if isinstance(error, dict) else {}
            detail = f"{error.get('code', '')} {error.get('message', '')}".strip()[:300]
            raise PermanentError(
                f"{self.name}: reading {what} HTTP {response.status_code} {detail}".strip(),
                body=body,
            )
        if not isinstance(body, dict):
            raise PermanentError(f"{self.name}: reading {what}: not a JSON object", body=body)
        return body

    def _own_columns(self) -> dict[str, tuple[str, str, str]]:
        """leadbridge's own columns: name → (config key, AttributeType, how to create it)."""
        config, key = self.config, f"targets[{self.name}]"
        own = {
            config.key_column: (
                f"{key}.key_column",
                "String",
                f"create {config.key_column} (single line of text, 32) and an alternate key on it",
            )
        }
        if config.stage_column and self.pushes_stage:
            own[config.stage_column] = (
                f"{key}.stage_column",
                "Picklist",
                f"create the choice column {config.stage_column} with the stage_values",
            )
        if DNC_COLUMN in self.fields.fields:
            own[DNC_COLUMN] = (
                f"{key}.fields.{DNC_COLUMN}",
                "Boolean",
                f"create the Yes/No column {DNC_COLUMN} on lead (leadbridge's marketplace DNC "
                f"marker, default No), or set `{DNC_COLUMN}: null` under fields to stop sending it",
            )
        return own

    @staticmethod
    def _own_column_problems(
        own: Mapping[str, tuple[str, str, str]],
        types: Mapping[str, str],
        lengths: Mapping[str, int],
    ) -> list[SchemaProblem]:
        problems = []
        for column, (key, wanted, fix) in own.items():
            found = types.get(column)
            if found is None:
                problems.append(SchemaProblem(key, f"lead has no column {column}", fix))
            elif found != wanted:
                problems.append(
                    SchemaProblem(
                        key,
                        f"lead column {column} is of type {found}; leadbridge writes {wanted}",
                        fix.replace("create", "recreate", 1),
                    )
                )
            elif wanted == "String" and lengths.get(column, LEAD_KEY_LENGTH) < LEAD_KEY_LENGTH:
                problems.append(
                    SchemaProblem(
                        key,
                        f"{column} holds {lengths[column]} characters; a lead key has "
                        f"{LEAD_KEY_LENGTH}",
                        f"raise the maximum length of {column} to at least {LEAD_KEY_LENGTH}",
                    )
                )
        return problems

    def _key_problems(self, keys: list[Any], types: Mapping[str, str]) -> list[SchemaProblem]:
        """The alternate key over the key column alone, and whether its index is built."""
        column, key = self.config.key_column, f"targets[{self.name}].key_column"
        if column not in types:
            return []  # the missing column is reported already
        ours = [k for k in keys if isinstance(k, dict) and k.get("KeyAttributes") == [column]]
        if not ours:
            return [
                SchemaProblem(
                    key,
                    f"no alternate key on lead over {column}: upserts by key will fail",
                    f"define an alternate key on lead with the single column {column}",
                )
            ]
        return [
            SchemaProblem(
                key,
                f"the alternate key {k.get('LogicalName')} index is "
                f"{k.get('EntityKeyIndexStatus')}",
                "wait until it is Active; if it Failed, run ReactivateEntityKey",
            )
            for k in ours
            if k.get("EntityKeyIndexStatus") != "Active"
        ]

    # --- stages read back ---------------------------------------------------------------

    def stage_changes(self, since: str | None) -> tuple[list[StageChange], str]:
        """Change tracking: the stored delta link returns what changed since it was issued;
        a token past the environment's retention (7 days by default) means a full resync.
        `change_query: modifiedon` filters on modifiedon instead (no metadata change needed,
        but blind to deletions)."""
        if self.config.change_query == "modifiedon":
            return self._modified_since(since)
        url = since if since and since.startswith("http") else self._select_url()
        try:
            records, delta = self._pages(url, track=True)
        except DeltaExpired:
            log.warning("change tracking token expired: full resync", extra={"target": self.name})
            records, delta = self._pages(self._select_url(), track=True)
        return self._changes(records), delta or (since or "")

    def _select_url(self) -> str:
        config = self.config
        columns = [
            "leadid",
            config.key_column,
            "statecode",
            "modifiedon",
            *([config.stage_column] if config.stage_column else []),
        ]
        return f"{self.base}/{config.entity_set}?$select={','.join(columns)}"

    def _modified_since(self, since: str | None) -> tuple[list[StageChange], str]:
        start = (
            datetime.fromisoformat(since) - self.config.overlap
            if since
            else datetime(2000, 1, 1, tzinfo=UTC)
        )
        stamp = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        url = (
            f"{self._select_url()}&$filter={quote(f'modifiedon ge {stamp}')}"
            f"&$orderby={quote('modifiedon asc')}"
        )
        records, _ = self._pages(url, track=False)
        changes = self._changes(records)
        newest = max(
            [c.at for c in changes], default=datetime.fromisoformat(since) if since else start
        )
        return changes, newest.isoformat()

    def _pages(self, url: str, *, track: bool) -> tuple[list[dict[str, Any]], str | None]:
        prefer = ["odata.maxpagesize=500", *(["odata.track-changes"] if track else [])]
        headers = {**ODATA_HEADERS, "Prefer": ",".join(prefer)}
        records: list[dict[str, Any]] = []
        while True:
            response = self.transport.request("GET", url, headers=headers)
            body = response_body(response)
            if response.status_code in (400, 410) and "expired" in str(body).lower():
                raise DeltaExpired(str(body))
            if response.status_code >= 400:
                raise RetryableError(f"{self.name}: change query HTTP {response.status_code}")
            records.extend(
                r
                for r in body.get("value", [])
                if "$deletedEntity" not in str(r.get("@odata.context", ""))
            )
            if body.get("@odata.nextLink"):
                url = body["@odata.nextLink"]
                continue
            return records, body.get("@odata.deltaLink")

    def _changes(self, records: list[dict[str, Any]]) -> list[StageChange]:
        config = self.config
        reverse = {value: Stage(stage) for stage, value in config.stage_values.items()}
        changes = []
        for record in records:
            key = record.get(config.key_column)
            stage = reverse.get(record.get(config.stage_column)) if config.stage_column else None
            state = record.get("statecode")
            if state == 2:  # Disqualified
                stage = Stage.DISQUALIFIED
            elif state == 1 and (stage is None or rank(stage) < rank(Stage.SQL)):
                stage = Stage.SQL  # Qualified: Dynamics' own "sales accepted"
            if key and stage is not None:
                modified = record.get("modifiedon") or datetime.now(UTC).isoformat()
                changes.append(
                    StageChange(
                        lead_key=key,
                        target=self.name,
                        stage=stage,
                        external_id=record.get("leadid"),
                        at=datetime.fromisoformat(modified.replace("Z", "+00:00")),
                        raw_value=f"{config.stage_column}={record.get(config.stage_column)}, "
                        f"statecode={state}",
                    )
                )
        return changes

    # --- tokens --------------------------------------------------------------------------

    def app(self) -> msal.ConfidentialClientApplication:
        with self._app_lock:
            if self._app is None:
                config = self.config
                host = urlsplit(config.authority).hostname or ""
                discovery = config.instance_discovery
                if discovery is None:
                    discovery = host in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS
                try:
                    self._app = msal.ConfidentialClientApplication(
                        config.client_id,
                        client_credential=config.client_secret.get_secret_value(),
                        authority=config.authority,
                        instance_discovery=discovery,
                        http_client=VerifyingSession(self.verify()),
                        timeout=30,
                    )
                except ValueError as exc:
                    raise FatalError(
                        f"{self.name}: authority {config.authority} refused: {exc}"
                    ) from None
                except requests.RequestException as exc:
                    raise RetryableError(f"{self.name}: authority unreachable") from exc
            return self._app

    def auth_headers(self, force_refresh: bool) -> Mapping[str, str]:
        app = self.app()
        scope = self.config.scope or f"{self.config.environment_url.rstrip('/')}/.default"
        if force_refresh:
            app.remove_tokens_for_client()
        try:
            result = app.acquire_token_for_client(scopes=[scope])
        except requests.RequestException as exc:
            raise RetryableError(f"{self.name}: token endpoint unreachable") from exc
        if "access_token" not in result:
            raise FatalError(
                f"{self.name}: Entra ID refused the client credentials "
                f"({result.get('error')}): check client_id, client_secret and "
                "the application user in the environment"
            )
        return {"Authorization": f"Bearer {result['access_token']}"}

    # --- sandbox (demo, `leadbridge sandbox`, tests): the server is loaded only when asked for

    default_name: ClassVar[str] = "d365"

    @classmethod
    def sandbox(cls, *, port: int = 0, latency_ms: float = 0.0) -> Any:
        from leadbridge.connectors.dataverse import sandbox

        return sandbox.DataverseSandbox(port=port, latency_ms=latency_ms)

    @classmethod
    def sandbox_entry(cls, sandbox: Any, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "kind": "dataverse",
            "environment_url": sandbox.url,
            "authority": sandbox.authority,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "ca_bundle": str(sandbox.ca_file),
        }

    @classmethod
    def sandbox_records(cls, sandbox: Any, config: Any) -> list[SandboxRecord]:
        """The stage column holds a choice's number, which says nothing to a reader: shown
        with the stage it stands for, `mql (100000002)`."""
        names = {value: stage for stage, value in config.stage_values.items()}
        column = config.stage_column

        def shown(value: Any) -> str:
            return (
                ""
                if value is None
                else f"{names[value]} ({value})"
                if value in names
                else str(value)
            )

        return [
            SandboxRecord(
                name=str(r.get("lastname") or ""),
                email=str(r.get("emailaddress1") or ""),
                stage=shown(r.get(column)) if column else "",
            )
            for r in list(sandbox.records.values())
        ]

    @classmethod
    def sandbox_people(cls, sandbox: Any, config: Any) -> list[str]:
        """How the leads hang off contacts and accounts, from the sandbox's own tables: the
        count, then each person with more than one lead (the same person, two offers)."""
        if config.model != "contacts_and_leads":
            return []
        contacts = {c["contactid"]: c for c in sandbox.contacts.values()}
        accounts = {a["accountid"]: a for a in sandbox.accounts.values()}
        leads = list(sandbox.records.values())
        bound = [r for r in leads if r.get("_parentcontactid_value") in contacts]
        lines = [
            f"{len(contacts)} contacts and {len(accounts)} accounts; {len(bound)} of "
            f"{len(leads)} leads hang off their person's contact (parentcontactid)"
        ]
        by_contact: dict[str, list[dict[str, Any]]] = {}
        for lead in bound:
            by_contact.setdefault(lead["_parentcontactid_value"], []).append(lead)
        for contact_id, own in sorted(by_contact.items(), key=lambda item: -len(item[1])):
            if len(own) < 2:
                continue
            email = mask_email(contacts[contact_id].get("emailaddress1"))
            account_ids = {lead.get("_parentaccountid_value") for lead in own}
            account = accounts.get(next(iter(account_ids))) if len(account_ids) == 1 else None
            company = f" and one account ({account.get('name')})" if account else ""
            lines.append(f"the {len(own)} leads of {email} hang off one contact{company}")
        return lines

    @classmethod
    def move_stage(cls, sandbox: Any, config: Any, lead_key: str, stage: str) -> bool:
        """A Dynamics user setting the stage column (the sandbox's admin API)."""
        if not config.stage_column or stage not in config.stage_values:
            return False
        body = {"key": lead_key, "columns": {config.stage_column: config.stage_values[stage]}}
        response = requests.post(
            f"{sandbox.url}/_sandbox/stage", json=body, timeout=10, verify=str(sandbox.ca_file)
        )
        response.raise_for_status()
        return True
