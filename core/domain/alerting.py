"""What alerts are and who gets which: the `alerts:` block of the configuration.

The models live here, at the bottom of the layers, because the configuration (core/settings.py)
is below the alerts layer that sends them; core/alerts/ holds the outbox and the sending.

`alerts:` is either a list of channels (the short form) or a mapping with `channels:` and the
settings every channel shares (`pii`, the grouping window, the SLA warning, the digest time).
A channel is an apprise URL — which carries its credentials in its path (a Teams Workflows
signature, Slack's tokens) — so the URL is a secret: masked in `config show`, redacted from
every log line.
"""

from __future__ import annotations

import enum
from datetime import time, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from leadbridge.core.domain.durations import Duration

MASK = "***"
# A path part this long or longer, or any query value, may be a credential: redacted from logs.
_SECRET_PART = 6


class AlertEvent(enum.StrEnum):
    """Every kind of alert; also the `event` label of the alert metrics (bounded)."""

    HOT_LEAD = "hot_lead"
    SLA_AT_RISK = "sla_at_risk"
    SLA_BREACHED = "sla_breached"
    TARGET_DOWN = "target_down"
    TARGET_RECOVERED = "target_recovered"
    DEAD_LETTERS = "dead_letters"
    DIGEST = "digest"
    TEST = "test"  # `leadbridge alerts test`: never queued, always sent


# The events a channel gets when it names none.
DEFAULT_EVENTS = (
    AlertEvent.HOT_LEAD,
    AlertEvent.SLA_AT_RISK,
    AlertEvent.SLA_BREACHED,
    AlertEvent.TARGET_DOWN,
    AlertEvent.TARGET_RECOVERED,
    AlertEvent.DEAD_LETTERS,
    AlertEvent.DIGEST,
)
# Events about one lead, to which a channel's `when` filter applies.
LEAD_EVENTS = frozenset({AlertEvent.HOT_LEAD, AlertEvent.SLA_AT_RISK, AlertEvent.SLA_BREACHED})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LeadFilter(_Strict):
    """Which leads a channel hears about: all of them unless narrowed here (lead events
    only; a target going down or the digest reach every channel that asks for them)."""

    offers: list[str] | None = None  # offer keys (publisher.offer)
    countries: list[str] | None = None  # ISO alpha-2, as leads hold them
    min_score: int | None = None

    @field_validator("countries")
    @classmethod
    def _upper(cls, value: list[str] | None) -> list[str] | None:
        return [c.upper() for c in value] if value is not None else None

    def admits(self, offer: str | None, country: str | None, score: int | None) -> bool:
        if self.offers is not None and offer not in self.offers:
            return False
        if self.countries is not None and (country or "").upper() not in self.countries:
            return False
        return self.min_score is None or (score or 0) >= self.min_score


class ChannelSettings(_Strict):
    """One place alerts go: an apprise URL and the events it wants."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,99}$")
    url: SecretStr  # any apprise URL: workflows://, slack://, mailtos://, json://
    events: list[AlertEvent] = Field(default_factory=lambda: list(DEFAULT_EVENTS))
    when: LeadFilter = Field(default_factory=LeadFilter)
    pii: bool | None = None  # None: the `alerts.pii` default

    @field_validator("events")
    @classmethod
    def _no_test_event(cls, value: list[AlertEvent]) -> list[AlertEvent]:
        if AlertEvent.TEST in value:
            raise ValueError("`test` is not an event to subscribe to: `leadbridge alerts test`")
        return value

    @field_serializer("url", when_used="json")
    def _shown(self, url: SecretStr, info: SerializationInfo) -> str:
        """`config show`: the kind of channel, never where it posts or with what key."""
        scheme = url.get_secret_value().partition("://")[0]
        return f"{scheme}://{MASK}" if scheme.isidentifier() else MASK

    def wants(self, event: AlertEvent) -> bool:
        return event in self.events

    def secrets(self) -> set[str]:
        """What of the URL must never reach a log: the whole, its password, its longer path
        parts (tokens, signatures) and every query value."""
        url = self.url.get_secret_value()
        found = {url}
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError:
            return found
        if password:
            found.add(password)
        for part in [parts.netloc.rpartition("@")[2], *parts.path.split("/")]:
            if len(part) >= _SECRET_PART:
                found |= {part, unquote(part)}
        found |= {v for _, v in parse_qsl(parts.query) if len(v) >= 4}
        return found


class AlertSettings(_Strict):
    """Alerts, every channel's and the rules they share (docs/alerts.md)."""

    channels: list[ChannelSettings] = Field(default_factory=list)
    # Hot leads and SLA alerts name the person (name, email); false sends offer, company,
    # score and links only. A channel's own `pii:` wins.
    pii: bool = True
    # Grouping: a channel that has sent `burst` messages within `window` gets the rest of
    # that window's alerts as one summary when the window ends (a backfill, a flood).
    window: Duration = Field(default=timedelta(minutes=1), gt=timedelta(0))
    burst: int = Field(default=5, ge=1, le=1000)
    # A failing channel: back-off from retry_base doubling up to retry_max; an alert still
    # unsent after max_age is dropped (a hot lead from yesterday is no longer news).
    retry_base: Duration = Field(default=timedelta(seconds=30), gt=timedelta(0))
    retry_max: Duration = Field(default=timedelta(minutes=30), gt=timedelta(0))
    max_age: Duration = Field(default=timedelta(days=1), gt=timedelta(0))
    timeout: Duration = Field(default=timedelta(seconds=15), gt=timedelta(0))  # one send
    # Follow-up SLA: the window is `reports.sla_hours`; warn this long before its end.
    sla_warn_before: Duration = Field(default=timedelta(hours=4), ge=timedelta(0))
    # A target paused, refusing credentials or failing every call this long is down.
    target_down_after: Duration = Field(default=timedelta(minutes=10), ge=timedelta(0))
    watch_every: Duration = Field(default=timedelta(minutes=1), gt=timedelta(0))
    # The daily digest: at this local time, in this time zone (IANA name).
    digest_at: time = time(8, 0)
    timezone: str = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _list_is_channels(cls, value: Any) -> Any:
        """`alerts:` written as a bare list of channels is the short form."""
        return {"channels": value} if isinstance(value, list) else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from None
        return value

    @field_validator("channels")
    @classmethod
    def _unique_names(cls, value: list[ChannelSettings]) -> list[ChannelSettings]:
        names = [c.name for c in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"channel names used twice: {', '.join(twice)}")
        return value

    def channel(self, name: str) -> ChannelSettings | None:
        return next((c for c in self.channels if c.name == name), None)

    def pii_for(self, channel: ChannelSettings) -> bool:
        return self.pii if channel.pii is None else channel.pii

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def secrets(self) -> set[str]:
        return {s for c in self.channels for s in c.secrets()}
