"""From a Lead to the fields a CRM receives: canonical values, a field map, placeholders, lengths.

Every target's built-in map is data in this form (CRM field → canonical field), so a
publisher's own fields are configuration (`fields:` in the target's YAML), not code. A value
the lead doesn't have is left out, never sent empty, so leadbridge never blanks a field a
salesperson filled in. A required field the lead lacks gets the configured placeholder; a
value longer than the CRM field is cut at a character boundary with a marker, never rejected
(the full value stays in leadbridge's store).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pycountry
from pydantic import BaseModel, ConfigDict, Field, model_validator

from leadbridge.core.models import Lead

TRUNCATION_MARK = "…"


def canonical(lead: Lead) -> dict[str, Any]:
    """Every value a map may name. `attribution.<key>` gives marketplace URL parameters."""
    values: dict[str, Any] = {
        "lead_key": lead.lead_key,
        "email": lead.email,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "full_name": " ".join(p for p in (lead.first_name, lead.last_name) if p) or None,
        "phone": lead.phone,
        "country": lead.country,
        "country_name": country_name(lead.country),
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
        "do_not_contact": lead.do_not_contact,
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
    truncate: at most this many characters; date_format: strftime for dates.
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


Source = str | FieldSpec


def source_value(source: Source, values: Mapping[str, Any]) -> Any:
    if isinstance(source, FieldSpec):
        return source.value(values)
    return constant(source) if is_constant(source) else values.get(source)


@dataclass(frozen=True)
class FieldMap:
    """CRM field → where its value comes from; `required` CRM fields get the placeholder when
    empty; `lengths` are the CRM's own limits (values are cut, never refused)."""

    fields: Mapping[str, Source]
    required: frozenset[str] = frozenset()
    lengths: Mapping[str, int] = field(default_factory=dict)

    def with_overrides(self, overrides: Mapping[str, Any]) -> FieldMap:
        """Key-by-key overrides from config; `None` drops a built-in field."""
        fields = dict(self.fields)
        for crm_field, source in overrides.items():
            if source is None:
                fields.pop(crm_field, None)
            elif isinstance(source, dict):
                fields[crm_field] = FieldSpec.model_validate(source)
            else:
                fields[crm_field] = source
        return FieldMap(fields, self.required, self.lengths)

    def apply(self, values: Mapping[str, Any], placeholder: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for crm_field, source in self.fields.items():
            value = source_value(source, values)
            if value is None or value == "":
                if crm_field in self.required:
                    out[crm_field] = placeholder
                continue
            out[crm_field] = truncate(value, self.lengths.get(crm_field))
        for crm_field in self.required:
            out.setdefault(crm_field, placeholder)
        return out

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
