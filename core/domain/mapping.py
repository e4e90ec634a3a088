"""From a Lead to the fields a CRM receives: canonical values, a field map, write policies.

Every target's built-in map is data in this form (CRM field → canonical field), so a
publisher's own fields are configuration (`fields:` in the target's YAML), not code. A value
the lead doesn't have is left out, never sent empty, so leadbridge never blanks a field a
salesperson filled in. A value longer than the CRM field is cut at a character boundary with
a marker, never rejected (the full value stays in leadbridge's store).

The CRM is where people work, so each field has a write policy (HubSpot's Salesforce
integration rules: "prefer CRM unless blank", "always use", "don't sync"): person fields are
written only where the CRM's value is empty, what leadbridge owns is always written, the
placeholders a CRM requires on create are sent on create only. Consent fields are one-way:
an opt-out is sent only as true, never as false or empty, whatever the map says.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pycountry
from pydantic import BaseModel, ConfigDict, Field, model_validator

from leadbridge.core.domain.models import Lead

TRUNCATION_MARK = "…"


class WritePolicy(enum.StrEnum):
    """When leadbridge writes a field into a record that already exists in the CRM."""

    ALWAYS = "always"  # leadbridge owns it: key, offer, action, score, attribution
    IF_EMPTY = "if_empty"  # the person's: written only where the CRM holds nothing
    ON_CREATE = "on_create"  # set once when the record is made (placeholders, lead source)
    NEVER = "never"  # never written by leadbridge


# Canonical values that describe the person: a salesperson's edit of them wins.
PERSON_VALUES = frozenset(
    {
        "email",
        "first_name",
        "last_name",
        "full_name",
        "phone",
        "country",
        "country_name",
        "country_code",
        "country_iso_name",
        "company",
        "title",
        "notes",
    }
)


# A canonical consent field per channel, and the withdrawals that set it.
CONSENT_CHANNELS: dict[str, frozenset[str]] = {
    "email": frozenset({"email"}),
    "bulk_email": frozenset({"email", "bulk_email"}),
    "phone": frozenset({"phone"}),
    "fax": frozenset({"fax"}),
    "mail": frozenset({"mail"}),
}


def _withdrawn(lead: Lead) -> set[str]:
    """The channels the person withdrew from; an opt-out that names none withdrew all."""
    if lead.opted_out_of:
        return set(lead.opted_out_of)
    return set(CONSENT_CHANNELS) if lead.opted_out else set()


def canonical(lead: Lead) -> dict[str, Any]:
    """Every value a map may name. `attribution.<key>` gives marketplace URL parameters."""
    # ISO 3166, only for a country normalisation could place: a CRM with a country picklist
    # gets a real code or nothing, never a made-up one.
    iso = pycountry.countries.get(alpha_2=lead.country) if lead.country else None
    values: dict[str, Any] = {
        "lead_key": lead.lead_key,
        "email": lead.email,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "full_name": " ".join(p for p in (lead.first_name, lead.last_name) if p) or None,
        "phone": lead.phone,
        "country": lead.country,
        "country_name": country_name(lead.country),
        "country_code": iso.alpha_2 if iso else None,  # ISO 3166-1 alpha-2
        # The ISO 3166 English short name ("Bolivia, Plurinational State of"): what
        # Salesforce's country picklists take as integration values by default. A country
        # that couldn't be placed is passed on as typed.
        "country_iso_name": iso.name if iso else lead.country,
        "company": lead.company,
        "title": lead.title,
        "notes": lead.notes,
        "offer": lead.offer_key,
        "offer_id": lead.offer_id,
        "offer_title": lead.offer_title or lead.offer_id or lead.offer_key,
        "action": lead.last_action,
        "first_action": lead.first_action,
        "actions": ";".join(lead.actions) or None,
        "channel": lead.channel,
        "stage": str(lead.stage),
        "score": lead.score,
        # Fit × engagement (docs/scoring.md): None — left out — unless it is configured.
        "grade": lead.grade,
        "fit": lead.fit,
        "engagement": lead.engagement,
        "do_not_contact": lead.do_not_contact,  # the marketplace DNC marker, not an opt-out
        "marketplace_dnc": lead.do_not_contact,
        "opted_out": True if lead.opted_out else None,  # an explicit withdrawal, or nothing
        # Per channel, from a withdrawal read back from a CRM: true, or nothing — never false.
        # No email at all covers marketing email too.
        **{
            f"opted_out_{channel}": True if covered & _withdrawn(lead) else None
            for channel, covered in CONSENT_CHANNELS.items()
        },
        "opted_out_of": ";".join(lead.opted_out_of) or None,
        "first_seen": lead.first_seen.isoformat() if lead.first_seen else None,
        "last_seen": lead.last_seen.isoformat() if lead.last_seen else None,
        "lead_source": f"Marketplace-{lead.last_action or 'unknown'}|{lead.offer_key}",
        "topic": f"Marketplace: {lead.offer_title or lead.offer_id or lead.offer_key}"
        f" ({lead.first_action or 'unknown action'})",
    }
    for key, value in lead.attribution.items():
        values[f"attribution.{key}"] = value
    return values


def country_name(code: str | None) -> str | None:
    if not code:
        return None
    country = pycountry.countries.get(alpha_2=code)
    return getattr(country, "common_name", None) or getattr(country, "name", None) or code


class FieldSpec(BaseModel):
    """One CRM field's value, when a plain canonical name or `=constant` isn't enough.

    from: a canonical field (or `attribution.<key>`); const: a fixed value of any type;
    join: several fields joined `with` a separator; map: a value table applied to the value
    (unlisted values pass unless `default` says otherwise); default: when the value is empty;
    truncate: at most this many characters; date_format: strftime for dates;
    update: the write policy for records that already exist (always, if_empty, on_create,
    never; default by where the value comes from: person fields if_empty, the rest always).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str | None = Field(default=None, alias="from")
    const: Any = None
    join: list[str] | None = None
    with_: str = Field(default=" ", alias="with")
    map: dict[str, Any] | None = None
    default: Any = None
    truncate: int | None = Field(default=None, ge=1)
    date_format: str | None = None
    update: WritePolicy | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        if sum(x is not None for x in (self.from_, self.const, self.join)) != 1:
            raise ValueError("give exactly one of from, const or join")
        return self

    def value(self, values: Mapping[str, Any]) -> Any:
        if self.const is not None:
            return self.const
        if self.join is not None:
            parts = [str(values[name]) for name in self.join if values.get(name) not in (None, "")]
            value: Any = self.with_.join(parts) or None
        else:
            value = values.get(self.from_ or "")
        if self.date_format and value:
            value = datetime.fromisoformat(str(value)).strftime(self.date_format)
        if self.map is not None and value is not None:
            value = self.map.get(str(value), value if self.default is None else self.default)
        if value in (None, ""):
            value = self.default
        if self.truncate is not None:
            value = truncate(value, self.truncate)
        return value

    def reads_person(self) -> bool:
        """Whether the value describes the person (then a salesperson's edit wins)."""
        names = self.join if self.join is not None else [self.from_ or ""]
        return any(name in PERSON_VALUES for name in names)


Source = str | FieldSpec


def source_value(source: Source, values: Mapping[str, Any]) -> Any:
    if isinstance(source, FieldSpec):
        return source.value(values)
    return constant(source) if is_constant(source) else values.get(source)


def default_policy(source: Source) -> WritePolicy:
    """Person fields are the CRM's once set; everything else is leadbridge's to keep current."""
    if isinstance(source, FieldSpec):
        if source.update is not None:
            return source.update
        return WritePolicy.IF_EMPTY if source.reads_person() else WritePolicy.ALWAYS
    return WritePolicy.IF_EMPTY if source in PERSON_VALUES else WritePolicy.ALWAYS


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass(frozen=True)
class FieldMap:
    """CRM field → where its value comes from.

    `required` CRM fields get the placeholder when the record is created without a value;
    `lengths` are the CRM's own limits (values are cut, never refused); `policies` are the
    built-in write policies where the default (by source) is not right; `consent` names the
    CRM's opt-out fields, which are only ever sent as true.
    """

    fields: Mapping[str, Source]
    required: frozenset[str] = frozenset()
    lengths: Mapping[str, int] = field(default_factory=dict)
    policies: Mapping[str, WritePolicy] = field(default_factory=dict)
    consent: frozenset[str] = frozenset()

    def with_overrides(self, overrides: Mapping[str, Any]) -> FieldMap:
        """Key-by-key overrides from config; `None` drops a built-in field; a spec's `update`
        sets that field's write policy."""
        fields, policies = dict(self.fields), dict(self.policies)
        for crm_field, source in overrides.items():
            if source is None:
                fields.pop(crm_field, None)
                continue
            if isinstance(source, dict):
                source = FieldSpec.model_validate(source)
            if isinstance(source, FieldSpec) and source.update is not None:
                policies[crm_field] = source.update
            fields[crm_field] = source
        return FieldMap(fields, self.required, self.lengths, policies, self.consent)

    def policy(self, crm_field: str) -> WritePolicy:
        if crm_field in self.policies:
            return self.policies[crm_field]
        source = self.fields.get(crm_field)
        return default_policy(source) if source is not None else WritePolicy.NEVER

    def apply(self, values: Mapping[str, Any], placeholder: str) -> dict[str, Any]:
        """The fields a new record receives (and what a push is hashed on)."""
        out: dict[str, Any] = {}
        for crm_field, source in self.fields.items():
            if self.policy(crm_field) is WritePolicy.NEVER:
                continue
            value = self._value(crm_field, source, values)
            if is_empty(value):
                if crm_field in self.required:
                    out[crm_field] = placeholder
                continue
            out[crm_field] = value
        for crm_field in self.required:
            out.setdefault(crm_field, placeholder)
        return out

    def update(
        self, values: Mapping[str, Any], existing: Mapping[str, Any], placeholder: str
    ) -> tuple[dict[str, Any], list[str]]:
        """The fields an existing record receives, and the ones left as the CRM has them.

        `existing` is the record's current values of `read_fields()`. A value leadbridge put
        there as a placeholder counts as empty, so the real value replaces it when it comes.
        """
        out: dict[str, Any] = {}
        kept: list[str] = []
        for crm_field, source in self.fields.items():
            policy = self.policy(crm_field)
            if policy in (WritePolicy.NEVER, WritePolicy.ON_CREATE):
                continue
            value = self._value(crm_field, source, values)
            if is_empty(value):
                continue
            current = existing.get(crm_field)
            if policy is WritePolicy.IF_EMPTY and not (is_empty(current) or current == placeholder):
                if current != value:
                    kept.append(crm_field)
                continue
            out[crm_field] = value
        return out, kept

    def read_fields(self) -> list[str]:
        """What must be read from existing records to apply the policies."""
        return sorted(f for f in self.fields if self.policy(f) is WritePolicy.IF_EMPTY)

    def _value(self, crm_field: str, source: Source, values: Mapping[str, Any]) -> Any:
        value = source_value(source, values)
        if crm_field in self.consent:
            # One-way: an opt-out goes out as true or not at all; never false, never empty.
            return True if value is True else None
        return truncate(value, self.lengths.get(crm_field))

    def fixed_values(self, crm_field: str) -> set[Any]:
        """The literal values a field can receive (constants, value tables, defaults): what a
        restricted picklist must accept."""
        source = self.fields.get(crm_field)
        if isinstance(source, str):
            return {constant(source)} if is_constant(source) else set()
        if source is None:
            return set()
        found = {v for v in (source.const, source.default) if v is not None}
        return found | set((source.map or {}).values())

    def cut_at(self, crm_field: str) -> int | None:
        source = self.fields.get(crm_field)
        spec_cut = source.truncate if isinstance(source, FieldSpec) else None
        limits = [x for x in (spec_cut, self.lengths.get(crm_field)) if x]
        return min(limits) if limits else None

    def describe(self) -> dict[str, Any]:
        """The map as config would write it (docs/mapping.md is generated from this)."""
        return {
            name: (
                source.model_dump(by_alias=True, exclude_none=True)
                if isinstance(source, FieldSpec)
                else source
            )
            for name, source in self.fields.items()
        }


def is_constant(source: str) -> bool:
    return source.startswith("=")


def constant(source: str) -> str:
    """`=Marketplace` in a map is the literal text `Marketplace`."""
    return source[1:]


def truncate(value: Any, limit: int | None) -> Any:
    if not isinstance(value, str) or limit is None or len(value) <= limit:
        return value
    return value[: max(0, limit - len(TRUNCATION_MARK))] + TRUNCATION_MARK


def payload_hash(payload: Any) -> str:
    """What a push would send, hashed: equal to the last successful push → no API call."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
