"""The HTTP target base core offers connectors: its config keys, its transport (one HTTP
policy for all), its field map and write policies, create-or-update planning, routing.

A target subclasses `HttpTarget`, declares its facts as class attributes (batch size, rate,
field map, stages it owns by default) and the capabilities it has (contract.py), and
implements `upsert`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from leadbridge.core.connector.config import ConnectorConfig
from leadbridge.core.connector.contract import SchemaProblem, StageReader
from leadbridge.core.connector.errors import RetryableError
from leadbridge.core.connector.transport import Transport
from leadbridge.core.domain.durations import Duration
from leadbridge.core.domain.mapping import FieldMap, FieldSpec, canonical
from leadbridge.core.domain.models import Lead, PushResult, Stage
from leadbridge.core.domain.routing import Rule, route
from leadbridge.core.domain.stages import Policy


class TargetConfig(ConnectorConfig):
    """Keys every target accepts (see config/leadbridge.example.yaml)."""

    batch_size: int | None = Field(default=None, ge=1)  # default: the vendor's maximum
    every: Duration = Field(default=timedelta(seconds=30))
    rate: float | None = Field(default=None, gt=0)  # requests per second, None = vendor default
    timeout: Duration = Field(default=timedelta(seconds=60))
    max_attempts: int = Field(default=5, ge=1, le=20)
    ca_bundle: Path | None = None  # extra CA for TLS (private CAs, proxies, sandboxes)
    fields: dict[str, str | FieldSpec | None] = Field(default_factory=dict)  # see docs/mapping.md
    routing: list[Rule] = Field(default_factory=list)  # owner per lead, first match wins
    default_owner: str | None = None
    stage_sync: Literal["two_way", "push", "pull", "off"] | None = None  # default per kind
    owns: list[Stage] | None = None  # default: sales CRMs own sql and beyond
    pull_every: Duration = Field(default=timedelta(minutes=2))
    overlap: Duration = Field(default=timedelta(minutes=5))  # re-read behind the watermark


@dataclass(frozen=True)
class Write:
    """One record's write, planned from what the CRM holds now."""

    lead: Lead
    body: dict[str, Any]
    created: bool  # no record exists: the create payload, placeholders included
    kept: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # not sent, and why

    def result(self, **values: Any) -> PushResult:
        """The push result for this write, with the plan's facts filled in."""
        values.setdefault("created", self.created if values.get("ok") else None)
        return PushResult(
            lead_key=self.lead.lead_key, kept=self.kept, dropped=self.dropped, **values
        )


@dataclass(frozen=True)
class Link:
    """What leadbridge knows of a lead in one target (from target_links)."""

    external_id: str | None
    pushed_stage: str | None
    state: str


class HttpTarget:
    """Base of the HTTP targets: a Transport, a field map, the batch size."""

    role: ClassVar[str] = "target"
    max_batch: ClassVar[int] = 100
    default_rate: ClassVar[float | None] = None
    field_map: ClassVar[FieldMap]
    contact_level: ClassVar[bool] = False  # True: one CRM record per person (HubSpot)
    # Reads before each batch's write: what the CRM holds decides create vs update and which
    # fields may be written (one call per batch, never one per lead).
    reads_per_batch: ClassVar[int] = 1
    default_stage_sync: ClassVar[str] = "two_way"
    # The stages this CRM owns unless `owns:` says otherwise (a sales CRM: SQL and beyond).
    default_owns: ClassVar[frozenset[Stage]] = frozenset()
    # Where a routed owner goes when a record is created (None: this target has no owners).
    owner_field: ClassVar[str | None] = None
    # Reads before writing a batch of leads leadbridge has never pushed here (None: the same
    # as reads_per_batch; 0: the write itself can't overwrite, e.g. a create-only insert).
    reads_for_new_leads: ClassVar[int | None] = None
    # This CRM's fields for the fit × engagement score (docs/scoring.md): grade, fit,
    # engagement. Joined to the map only when the config scores that way (settings).
    score_fields: ClassVar[dict[str, str | FieldSpec]] = {}

    def __init__(
        self,
        config: TargetConfig,
        placeholder: str = "[not provided]",
        transport: Transport | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.placeholder = placeholder
        self.batch_size = min(config.batch_size or self.max_batch, self.max_batch)
        self.fields = self.field_map.with_overrides(config.fields)
        self.transport = transport or Transport(
            config.name,
            auth=self.auth_headers,
            classify=self.classify,
            timeout=(5.0, config.timeout.total_seconds()),
            max_attempts=config.max_attempts,
            rate=config.rate or self.default_rate,
            verify=self.verify(),
        )

    @classmethod
    def from_config(cls, config: Any, placeholder: str = "[not provided]") -> HttpTarget:
        return cls(config, placeholder)

    @property
    def setup_calls(self) -> int:
        """Calls a new instance makes once, on its first batch (e.g. reading metadata)."""
        return 0

    def verify(self) -> bool | str:
        if self.config.ca_bundle is not None:
            return str(self.config.ca_bundle)
        return os.environ.get("REQUESTS_CA_BUNDLE") or True

    def auth_headers(self, force_refresh: bool) -> Mapping[str, str]:
        return {}

    def classify(self, response: Any) -> Any:
        return None

    def payload(self, lead: Lead) -> dict[str, Any]:
        """Everything this target holds for the lead: what a new record receives, and what a
        push is hashed on (an unchanged payload costs no call)."""
        return {
            **self.fields.apply(canonical(lead), self.placeholder),
            **self.create_only_fields(lead),
            **self.owned_fields(lead),
        }

    def update_payload(
        self, lead: Lead, existing: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """What an existing record receives under the write policies, and the fields left as
        the CRM has them (a person's value wins)."""
        fields, kept = self.fields.update(canonical(lead), existing, self.placeholder)
        return {**fields, **self.owned_fields(lead)}, kept

    def plan(self, lead: Lead, existing: Mapping[str, Any] | None) -> Write:
        """Create or update, decided by what the CRM holds now (read for the whole batch)."""
        if existing is None:
            return Write(lead, self.payload(lead), created=True)
        body, kept = self.update_payload(lead, existing)
        return Write(lead, body, created=False, kept=kept)

    def owned_fields(self, lead: Lead) -> dict[str, Any]:
        """Fields leadbridge owns beyond the map (its key, the stage): always written."""
        return {}

    def create_only_fields(self, lead: Lead) -> dict[str, Any]:
        """Fields beyond the map set only when leadbridge creates the record."""
        return {}

    @property
    def stage_sync(self) -> str:
        return self.config.stage_sync or self.default_stage_sync

    def policy(self) -> Policy:
        owns = frozenset(self.config.owns) if self.config.owns is not None else self.default_owns
        pulls = self.stage_sync in ("two_way", "pull") and isinstance(self, StageReader)
        return Policy(self.name, pulls=pulls, owns=owns)

    @property
    def pushes_stage(self) -> bool:
        return self.stage_sync in ("two_way", "push")

    def owner(self, lead: Lead) -> str | None:
        """The owner for a record about to be created (never for an existing one: a
        salesperson's reassignment stands)."""
        return route(lead, self.config.routing, self.config.default_owner)

    def read_json(self, url: str, what: str, **kwargs: Any) -> Any:
        """A GET the caller can't do without: an error answer is worth retrying later."""
        response = self.transport.request("GET", url, **kwargs)
        if response.status_code >= 400:
            raise RetryableError(f"{self.name}: {what} HTTP {response.status_code}")
        return response.json()

    def field_problems(self, known: Mapping[str, dict[str, Any]]) -> list[SchemaProblem]:
        """Common checks of the field map against the CRM's fields: `known` maps a field
        name to {"length": int|None, "options": set|None (restricted picklist values)}."""
        problems = []
        for name in self.fields.fields:
            key = f"targets[{self.name}].fields.{name}"
            meta = known.get(name)
            if meta is None:
                problems.append(
                    SchemaProblem(
                        key,
                        f"{name} does not exist in {self.config.kind}",
                        f"create {name}, or set `{name}: null` under fields to stop sending it",
                    )
                )
                continue
            options = meta.get("options")
            if options is not None:
                refused = sorted(
                    str(v) for v in self.fields.fixed_values(name) if str(v) not in options
                )
                if refused:
                    problems.append(
                        SchemaProblem(
                            key,
                            f"the restricted picklist {name} refuses {', '.join(refused)}",
                            f"add the value(s) to {name}, or map to one of: "
                            f"{', '.join(sorted(options))}",
                        )
                    )
            length, cut = meta.get("length"), self.fields.cut_at(name)
            if length and (cut is None or cut > length):
                problems.append(
                    SchemaProblem(
                        key,
                        f"{name} holds {length} characters; leadbridge would send up to "
                        f"{cut or 'unlimited'}",
                        f"set `{name}: {{from: ..., truncate: {length}}}` under fields so long "
                        "values are cut, not refused",
                    )
                )
        return problems

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        raise NotImplementedError
