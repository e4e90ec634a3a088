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

from leadbridge.connectors.marketplace import UNPARSED, MarketplacePayloads, parse_payload
from leadbridge.connectors.marketplace.leadsource import build_lead
from leadbridge.core.connector import ConnectorConfig, MalformedLead, PushReceiver
from leadbridge.core.domain.models import MarketplaceLead, RawLead
from leadbridge.core.domain.normalize import MAX_JSON_DEPTH, nesting_depth

# The webhook's body cap (core/http/app.py MAX_BODY) applied to every record read as text,
# so a file line can't make parsing or the store's JSON column take an unbounded value.
MAX_RECORD_CHARS = 1024 * 1024


def unparsed(original: str, error: str) -> dict[str, Any]:
    """The landable stand-in for a record that can't be stored or read as it came."""
    return {UNPARSED: original, "_error": error}


def read_record(data: str | bytes, where: str = "") -> dict[str, Any]:
    """One JSON record (a webhook body, a file line) in a shape landing can always store.

    The parsed object when it is one; otherwise `unparsed(original text, reason)`: not
    JSON, not an object, longer than MAX_RECORD_CHARS, or nested deeper than
    MAX_JSON_DEPTH. Depth matters because orjson — the store's JSON serializer and the
    payload key's canonical form — refuses anything deeper than 255 levels, so such a
    record used to fail its whole batch on every run and hold the cursor; as text it
    lands, is quarantined as malformed, and the records after it go on.
    """
    prefix = f"{where}: " if where else ""
    if len(data) > MAX_RECORD_CHARS:
        return unparsed(_text(data), f"{prefix}over {MAX_RECORD_CHARS} characters")
    try:
        payload: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return unparsed(_text(data), f"{prefix}not JSON: {exc}")
    if not isinstance(payload, dict):
        return unparsed(
            _text(data), f"{prefix}expected a JSON object, got {type(payload).__name__}"
        )
    if nesting_depth(payload) > MAX_JSON_DEPTH:
        return unparsed(_text(data), f"{prefix}nested more than {MAX_JSON_DEPTH} levels deep")
    return payload


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


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


class MarketplaceHttpsSource(MarketplacePayloads, PushReceiver):
    """A push source: raw leads arrive through the daemon's HTTP server, not by polling."""

    Config: ClassVar[type[MarketplaceHttpsConfig]] = MarketplaceHttpsConfig
    role: ClassVar[str] = "source"
    payload_kinds: ClassVar[frozenset[str]] = frozenset({"https"})

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

    def raw_lead(self, body: bytes, received_at: datetime) -> RawLead:
        """The raw lead to land for a body — always, readable or not (see `read_record`).

        Same body on the same day is the same raw lead: a sender's retry adds nothing, while
        the same person doing the same thing another day is a new customer action.
        """
        payload = read_record(body)
        return RawLead(
            source=self.name,
            source_key=f"{payload_key(payload)}:{received_at:%Y-%m-%d}",
            kind="https",
            payload=payload,
            received_at=received_at,
        )

    def problem(self, raw: RawLead) -> MalformedLead | None:
        """What is wrong with a landed body, for the sender's answer; None when it reads.

        Called after landing, so even a failure of the parser itself can't lose the body:
        it is answered as unreadable, and processing quarantines the raw lead.
        """
        try:
            parse_payload("https", raw.payload, None)
        except MalformedLead as problem:
            return problem
        except Exception as exc:  # the body is kept: the sender gets a 400, never a 500
            return MalformedLead(
                "body",
                f"could not be read ({type(exc).__name__})",
                "send the marketplace lead as one flat JSON object; the body is kept",
            )
        return None
