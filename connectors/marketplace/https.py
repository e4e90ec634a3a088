"""The HTTPS-endpoint payload Partner Center POSTs (reference §3.2), keys in any case.

The documented schema is PascalCase (`UserDetails.FirstName`); community receivers
deserialize camelCase; both and any other casing are read by lower-casing keys.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson
from leadbridge.connectors.base import MalformedLead
from leadbridge.connectors.marketplace.leadsource import build_lead
from leadbridge.core.models import MarketplaceLead


def lower_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in obj.items()}


def parse_https_payload(payload: Any, occurred_at: datetime | None = None) -> MarketplaceLead:
    """Normalise one HTTPS body. Raises MalformedLead naming the field when it can't be read."""
    if not isinstance(payload, dict):
        raise MalformedLead(
            "body",
            f"expected a JSON object, got {type(payload).__name__}",
            "send the marketplace lead as one JSON object per request",
        )
    top = lower_keys(payload)
    customer = top.get("userdetails")
    if customer is None:
        customer = {}
    if not isinstance(customer, dict):
        raise MalformedLead(
            "UserDetails",
            f"expected an object, got {type(customer).__name__}",
            "UserDetails must be an object with FirstName, LastName, Email, ...",
        )
    return build_lead(
        customer=customer,
        lead_source=_str_field(top, "leadsource"),
        action_code=_str_field(top, "actioncode"),
        offer_title=_str_field(top, "offertitle") or _str_field(top, "offerdisplayname"),
        description=_str_field(top, "description"),
        occurred_at=occurred_at,
        raw=payload,
    )


def _str_field(top: dict[str, Any], key: str) -> str | None:
    value = top.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return str(value)
    raise MalformedLead(
        key, f"expected a string, got {type(value).__name__}", f"send {key} as text"
    )


def payload_key(payload: Any) -> str:
    """The idempotency key of a body with no id of its own: SHA-256 of its canonical JSON.

    Identical bodies are one raw lead: a sender's retry or a file ingested twice adds nothing.
    """
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(canonical).hexdigest()
