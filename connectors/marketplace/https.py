"""The HTTPS-endpoint payload Partner Center POSTs (reference §3.2), keys in any case.

The documented schema is PascalCase (`UserDetails.FirstName`); community receivers
deserialize camelCase; both and any other casing are read by lower-casing keys.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import orjson
from pydantic import Field, SecretStr

from leadbridge.connectors.base import ConnectorConfig, MalformedLead
from leadbridge.connectors.marketplace import parse_payload
from leadbridge.connectors.marketplace.leadsource import build_lead
from leadbridge.core.models import MarketplaceLead, RawLead

UNPARSED = "_unparsed"  # the key a landed-but-unreadable body is kept under


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


class MarketplaceHttpsConfig(ConnectorConfig):
    """`POST /marketplace/leads/<token>` on the daemon: the URL pasted into Partner Center.

    Microsoft sends no signature or auth header, so the token in the URL is the credential:
    make it long and random, and rotate it in Partner Center like a password.
    """

    kind: str = "marketplace_https"
    token: SecretStr = Field(min_length=16)


class MarketplaceHttpsSource:
    """A push source: raw leads arrive through the daemon's HTTP server, not by polling."""

    Config: ClassVar[type[MarketplaceHttpsConfig]] = MarketplaceHttpsConfig
    role: ClassVar[str] = "source"
    push: ClassVar[bool] = True

    def __init__(self, config: MarketplaceHttpsConfig) -> None:
        self.config = config
        self.name = config.name

    @classmethod
    def from_config(cls, config: MarketplaceHttpsConfig) -> MarketplaceHttpsSource:
        return cls(config)

    def fetch(self, cursor: str | None) -> Iterator[tuple[RawLead, str]]:
        """Nothing to poll: posted leads are landed as they arrive (see `receive`)."""
        return iter(())

    def token_matches(self, candidate: str) -> bool:
        expected = self.config.token.get_secret_value().encode()
        return hmac.compare_digest(expected, candidate.encode())

    def receive(self, body: bytes, received_at: datetime) -> tuple[RawLead, MalformedLead | None]:
        """The raw lead to land — always, readable or not — and what is wrong with it, if anything.

        Same body on the same day is the same raw lead: a sender's retry adds nothing, while
        the same person doing the same thing another day is a new customer action.
        """
        try:
            payload: Any = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            payload = {
                UNPARSED: body.decode("utf-8", errors="replace"),
                "_error": f"not JSON: {exc}",
            }
        if not isinstance(payload, dict):
            payload = {
                UNPARSED: body.decode("utf-8", errors="replace"),
                "_error": f"expected a JSON object, got {type(payload).__name__}",
            }
        raw = RawLead(
            source=self.name,
            source_key=f"{payload_key(payload)}:{received_at:%Y-%m-%d}",
            kind="https",
            payload=payload,
            received_at=received_at,
        )
        try:
            parse_payload("https", payload, None)
        except MalformedLead as problem:
            return raw, problem
        return raw, None
