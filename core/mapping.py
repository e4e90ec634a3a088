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
from typing import Any

import orjson
import pycountry

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


@dataclass(frozen=True)
class FieldMap:
    """CRM field → canonical field; `required` CRM fields get the placeholder when empty."""

    fields: Mapping[str, str]
    required: frozenset[str] = frozenset()
    lengths: Mapping[str, int] = field(default_factory=dict)

    def with_overrides(self, overrides: Mapping[str, str | None]) -> FieldMap:
        """Key-by-key overrides from config; `None` drops a built-in field."""
        fields = dict(self.fields)
        for crm_field, source in overrides.items():
            if source is None:
                fields.pop(crm_field, None)
            else:
                fields[crm_field] = source
        return FieldMap(fields, self.required, self.lengths)

    def apply(self, values: Mapping[str, Any], placeholder: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for crm_field, source in self.fields.items():
            value = constant(source) if is_constant(source) else values.get(source)
            if value is None or value == "":
                if crm_field in self.required:
                    out[crm_field] = placeholder
                continue
            out[crm_field] = truncate(value, self.lengths.get(crm_field))
        for crm_field in self.required:
            out.setdefault(crm_field, placeholder)
        return out


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
