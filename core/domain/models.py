"""The domain's nouns, shared by the core and every connector.

A `RawLead` is one customer action exactly as a source delivered it; a `MarketplaceLead`
is that action parsed and normalised; a `Lead` is one person's interest in one offer,
merged from every action, and the unit pushed to CRMs.

The per-lead nouns of the ingest path (RawLead, MarketplaceLead, Lead, Event) are slotted
stdlib dataclasses: pydantic model construction and attribute assignment were most of the
ingest profile. pydantic still guards their boundary — `LEAD_JSON` validates a Lead read
back from the store — and the connector-facing results (PushResult, StageChange) are
pydantic models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from leadbridge.core.domain.vocabulary import Action, Channel, Outcome, Stage

__all__ = [
    "Action",
    "Channel",
    "Event",
    "Lead",
    "MarketplaceLead",
    "Outcome",
    "PushResult",
    "RawLead",
    "Stage",
    "StageChange",
]


@dataclass(frozen=True, slots=True)
class RawLead:
    """One record exactly as a source delivered it. Never edited; its personal data is
    redacted once past `retention` (core/sync/retention.py), the row itself kept.

    `source_key` is the source's own idempotency key (Table `PartitionKey|RowKey`, a hash
    of the canonical body for HTTPS and files), so landing the same record twice is a no-op.
    """

    source: str
    source_key: str
    kind: str  # payload shape: "https" | "table" | "csv"
    payload: dict[str, Any]
    occurred_at: datetime | None = None  # when the customer acted, if the source says
    received_at: datetime | None = None


@dataclass(slots=True)
class MarketplaceLead:
    """A raw lead parsed and normalised: every field clean or None, nothing guessed."""

    channel: str | None = None
    action: str | None = None
    offer_id: str | None = None
    offer_title: str | None = None
    lead_source: str | None = None  # the LeadSource string as delivered
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    country: str | None = None
    company: str | None = None
    title: str | None = None
    notes: str | None = None
    attribution: dict[str, str] = field(default_factory=dict)
    occurred_at: datetime | None = None
    is_test: bool = False
    flags: list[str] = field(
        default_factory=list
    )  # e.g. "no_email", "invalid_email", "unknown_action"

    @property
    def do_not_contact(self) -> bool:
        return self.action == Action.DO_NOT_CONTACT or self.is_test


@dataclass(slots=True)
class Lead:
    """One person's interest in one offer: the unit pushed to CRMs."""

    lead_key: str
    offer_key: str
    email: str | None = None
    offer_id: str | None = None
    offer_title: str | None = None
    channel: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    country: str | None = None
    company: str | None = None
    title: str | None = None
    notes: str | None = None
    attribution: dict[str, str] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    first_action: str | None = None
    last_action: str | None = None
    do_not_contact: bool = False  # the marketplace DNC action: an FYI, never an opt-out
    opted_out: bool = False  # an explicit withdrawal of consent (sent to CRMs only as true)
    # What the person withdrew from, read back from a CRM (core/sync/consentsync.py): email,
    # bulk_email, phone, fax, mail. Only ever grows; `opted_out` is true once it holds one.
    opted_out_of: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    score: int = 0
    score_rules: list[str] = field(default_factory=list)
    stage: Stage = Stage.LEAD
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    raw_count: int = 0
    last_received_at: datetime | None = None  # newest raw lead's arrival (latency metric)
    # Fit × engagement (issue 24, docs/scoring.md), when configured: the grid cell ("A2")
    # and the numbers behind it, as of the lead's last action or last change of grade.
    grade: str | None = None
    fit: int | None = None
    engagement: int | None = None
    # Each action's code and time, oldest first: engagement decays from these.
    touches: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass(slots=True)
class Event:
    """Anything that happened to a lead; the lead's history, from which reports are computed."""

    lead_key: str
    kind: str  # "action" | "merge" | "score" | "stage" | "push" | ...
    actor: str  # a source name, a target name, or "leadbridge"
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    raw_lead_id: int | None = None


class PushResult(BaseModel):
    """What a target says about one lead of a batch, in the batch's order."""

    lead_key: str
    ok: bool
    external_id: str | None = None
    error_class: Outcome | None = None  # None when it landed
    error: str | None = None
    body: Any = None
    retry_after: float | None = None
    created: bool | None = None  # the CRM says it made the record now (None: it doesn't say)
    kept: list[str] = []  # fields left as the CRM had them (a person's value wins)
    dropped: dict[str, str] = {}  # fields not sent, and why (e.g. refused by a picklist)
    # The person's and company's records the lead hangs off in this CRM, when it has them:
    # {"contact": id, "account": id} (ids or record URLs, as the CRM gives them).
    related: dict[str, str] = {}
    related_created: list[str] = []  # which of them the CRM says it made now (erasure's)
    # Consent the target wrote beyond the record's fields, for the lead's history (issue 17):
    # {"unsubscribe": "unsubscribed from all email", "journeys_consent": "… record <id>"}.
    # Ids and the CRM's words only, never an address.
    consent: dict[str, str] = {}


class ErasureRecord(BaseModel):
    """One CRM record to delete for a forgotten person: the record a lead was delivered as
    (`lead`) or the person's own (`contact`), by the id the CRM gave it."""

    kind: Literal["lead", "contact"]
    external_id: str


class ErasureResult(BaseModel):
    """What a target says about one record it was asked to delete. A record already gone
    (deleted by a person, merged away) is `ok`: what was asked is true."""

    external_id: str
    ok: bool
    error_class: Outcome | None = None  # RETRYABLE: asked again later; PERMANENT: said why
    error: str | None = None


class OptOut(BaseModel):
    """A withdrawal of consent read back from a CRM: whose (the lead the record holds, or the
    person-level record by its id), from what, and when the CRM says it happened."""

    target: str
    external_id: str
    channels: list[Literal["email", "bulk_email", "phone", "fax", "mail"]]
    at: datetime
    lead_key: str | None = None
    person_key: str | None = None


class StageChange(BaseModel):
    """A stage read back from a CRM, with the CRM's own timestamp."""

    lead_key: str
    target: str
    stage: Stage
    at: datetime
    external_id: str | None = None
    raw_value: str | None = None


LEAD_JSON: TypeAdapter[Lead] = TypeAdapter(Lead)


def lead_to_json(lead: Lead) -> str:
    return LEAD_JSON.dump_json(lead).decode("utf-8")


def lead_from_json(data: str | bytes) -> Lead:
    return LEAD_JSON.validate_json(data)


def lead_to_dict(lead: Lead) -> dict[str, Any]:
    """JSON-ready plain data (enums as values, datetimes as ISO strings)."""
    data: dict[str, Any] = LEAD_JSON.dump_python(lead, mode="json")
    return data
