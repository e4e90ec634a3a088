"""The marketplace lead parser: LeadSource strings and customer fields into a MarketplaceLead.

The LeadSource string comes in every shape Microsoft has documented over the years
(shared/reference/marketplace-leads.md §2): `Source-Action|publisher.offer` with or
without spaces, a bare source with the action in ActionCode and only a display title,
`AppSource (SPZA)` or `SPZA`, the `MSFT_TEST_<ticks>` validation lead. Unknown sources
and actions are kept verbatim and flagged, never rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from leadbridge.core.connector import MalformedLead
from leadbridge.core.domain import normalize
from leadbridge.core.domain.models import Action, Channel, MarketplaceLead

TEST_MARKER = "MSFT_TEST_"

_CHANNELS = {
    "azuremarketplace": Channel.AZURE_MARKETPLACE,
    "azureportal": Channel.AZURE_PORTAL,
    "appsource(spza)": Channel.APPSOURCE,
    "appsource": Channel.APPSOURCE,
    "spza": Channel.APPSOURCE,
    "testdrive": Channel.TEST_DRIVE,
}
_ACTIONS = {a.value.lower(): a.value for a in Action}
# publisher.offer: IDs publishers type in Partner Center; no spaces, one dot at least.
_OFFER_ID = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)+$")
CUSTOMER_FIELDS = ("FirstName", "LastName", "Email", "Phone", "Country", "Company", "Title")


@dataclass(frozen=True)
class ParsedSource:
    """What one LeadSource says; immutable, as `parse_lead_source` hands out cached ones."""

    channel: str | None
    action: str | None
    offer_id: str | None
    offer_title: str | None
    flags: tuple[str, ...] = ()


def channel_of(source: str) -> str:
    """Canonical channel for a LeadSource source part; unknown ones kept as typed."""
    key = re.sub(r"\s+", "", source).lower()
    if key.startswith(TEST_MARKER.lower()):
        return Channel.TEST
    return _CHANNELS.get(key, source)


def action_of(code: str) -> str:
    """Canonical spelling of a documented action code; unknown ones kept verbatim."""
    if code.upper().startswith(TEST_MARKER):
        return "test"
    return _ACTIONS.get(code.lower(), code)


@lru_cache(maxsize=4096)
def parse_lead_source(
    lead_source: str | None, action_code: str | None, offer_title: str | None
) -> ParsedSource:
    """Split LeadSource into channel, action and offer, filling gaps from the separate fields.

    Cached per value: a publisher has a few offers, channels and actions, so a backfill of
    a million leads carries a few hundred distinct LeadSource triples (a bounded cache, as
    the values come from outside). A MalformedLead is raised, never cached.

    The action inside LeadSource wins over ActionCode when both are present: it is what the
    CRM destinations receive. An offer part that is not `publisher.offer` (the test lead
    carries the offer *name*) is taken as a title.
    """
    lead_source = normalize.text(lead_source)
    action_code = normalize.text(action_code)
    title = normalize.text(offer_title)
    if lead_source is None:
        raise MalformedLead(
            "LeadSource",
            "missing or empty",
            "the marketplace always sends LeadSource; check the sender is Partner Center "
            "or add LeadSource to the record",
        )
    head, sep, offer_part = lead_source.partition("|")
    head, offer_part = head.strip(), offer_part.strip()
    source_part, action_part = head, None
    if "-" in head:
        left, _, right = head.rpartition("-")
        if left.strip() and right.strip():
            source_part, action_part = left.strip(), right.strip()
    channel = channel_of(source_part)
    code = action_part or action_code
    flags: list[str] = []
    if code is None:
        action = None
        flags.append("no_action")
    else:
        action = action_of(code)
        if action not in _ACTIONS.values() and action != "test":
            flags.append("unknown_action")
    if channel not in {c.value for c in Channel}:
        flags.append("unknown_source")
    offer_id = None
    if sep and offer_part:
        if _OFFER_ID.match(offer_part):
            offer_id = offer_part
        elif title is None:
            title = offer_part
    return ParsedSource(channel, action, offer_id, title, tuple(flags))


def contains_test_marker(value: Any) -> bool:
    """Microsoft's validation lead: MSFT_TEST_ in any field, at any depth, any case.

    Searches the repr of the whole record at once: one C-speed scan instead of a walk.
    """
    return TEST_MARKER in repr(value).upper()


def build_lead(
    *,
    customer: Mapping[str, Any],
    lead_source: str | None,
    action_code: str | None,
    offer_title: str | None,
    description: str | None,
    occurred_at: datetime | None,
    raw: Mapping[str, Any],
) -> MarketplaceLead:
    """Normalise one customer action. `customer` keys are matched case-insensitively.

    Every value is read with normalize's bounds: one that can't be read safely (too long,
    nested too deep, not valid Unicode) is dropped and the lead flagged `unreadable_<field>`
    so a person can look at the raw lead; only an unreadable LeadSource, without which the
    action means nothing, rejects the record.
    """
    # An object or a list where a person's field belongs is absent, not text to keep.
    fields = {str(k).lower(): v for k, v in customer.items() if not isinstance(v, dict | list)}
    flags: list[str] = []
    read = _Reader(flags)
    source_text = _lead_source_text(lead_source)
    parsed = parse_lead_source(
        source_text, read("action", action_code), read("offer_title", offer_title)
    )
    flags[:0] = parsed.flags
    offer_id, title = _bounded_offer(parsed, flags)
    country = normalize.country(read("country", fields.get("country")))
    if country is not None and not normalize.is_iso_country(country):
        flags.append("unknown_country")
    typed_email = read("email", fields.get("email"))
    email, email_problem = normalize.email(typed_email)
    if email is None:
        unusable = email_problem or "unreadable_email" in flags
        flags.append("invalid_email" if unusable else "no_email")
    if normalize.lookalike_email(typed_email, email):
        flags.append("lookalike_email")
    notes, attribution = read.description(description)
    return MarketplaceLead(
        channel=parsed.channel,
        action=parsed.action,
        offer_id=offer_id,
        offer_title=title,
        lead_source=source_text,
        email=email,
        first_name=read("first_name", fields.get("firstname")),
        last_name=read("last_name", fields.get("lastname")),
        phone=normalize.phone(read("phone", fields.get("phone")), country),
        country=country,
        company=read("company", fields.get("company")),
        title=read("title", fields.get("title")),
        notes=notes,
        attribution=attribution,
        occurred_at=occurred_at,
        is_test=contains_test_marker(raw),
        flags=flags,
    )


class _Reader:
    """Reads payload values through normalize's bounds, flagging what it had to drop."""

    def __init__(self, flags: list[str]) -> None:
        self.flags = flags

    def __call__(self, name: str, value: Any) -> str | None:
        try:
            return normalize.readable(value)
        except normalize.Unreadable:
            self.flags.append(f"unreadable_{name}")
            return None

    def description(self, value: Any) -> tuple[str | None, dict[str, str]]:
        try:
            return normalize.description(value)
        except normalize.Unreadable:
            self.flags.append("unreadable_description")
            return None, {}


def _lead_source_text(value: Any) -> str | None:
    try:
        return normalize.readable(value)
    except normalize.Unreadable as exc:
        raise MalformedLead(
            "LeadSource",
            f"unreadable: {exc}",
            "LeadSource is a short text like 'AzureMarketplace-INS|publisher.offer'; "
            "fix it at the sender and send the lead again",
        ) from exc


def _bounded_offer(parsed: ParsedSource, flags: list[str]) -> tuple[str | None, str | None]:
    """The offer id and title, each dropped with a flag when its key would not fit the
    store's 300-character offer key (Partner Center's own ids and names are far shorter)."""
    offer_id, title = parsed.offer_id, parsed.offer_title
    if offer_id is not None and len(offer_id) > normalize.MAX_OFFER_CHARS:
        flags.append("unreadable_offer_id")
        offer_id = None
    if title is not None and len(normalize.offer_title_key(title)) > normalize.MAX_OFFER_CHARS:
        flags.append("unreadable_offer_title")
        title = None
    return offer_id, title
