"""Who a raw lead is: the lead key, and how a new action merges into an existing lead.

A contact is one normalised email; a lead is (email, offer key). The lead key is
deterministic, so an upsert after a crash or even a lost database hits the same CRM record.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from leadbridge.core import normalize
from leadbridge.core.models import Action, Lead, MarketplaceLead

# Never change: every CRM record written by leadbridge is keyed by ids derived from it.
LEADBRIDGE_NS = uuid.UUID("6f1c2a4e-5b0d-5c3e-9a7f-1e2d3c4b5a69")

PERSON_FIELDS = ("first_name", "last_name", "phone", "country", "company", "title")
_NAME_FIELDS = ("first_name", "last_name", "company")


def lead_key(email: str, offer_key: str) -> str:
    """`uuid5(LEADBRIDGE_NS, email + "|" + offer_key)` as 32 hex chars."""
    return uuid.uuid5(LEADBRIDGE_NS, f"{email}|{offer_key}").hex


def orphan_key(source: str, source_key: str) -> str:
    """Key for a lead with no usable email: one per raw lead, never merged with another."""
    return uuid.uuid5(LEADBRIDGE_NS, f"raw|{source}|{source_key}").hex


def offer_key(parsed: MarketplaceLead, aliases: dict[str, str]) -> str:
    """`publisher.offer` when the lead carries it, else the alias known for its title, else
    the normalised title (or `unknown` when there is neither)."""
    if parsed.offer_id:
        return parsed.offer_id
    if parsed.offer_title:
        title = normalize.offer_title_key(parsed.offer_title)
        return aliases.get(title, f"title:{title}")
    return "unknown"


def new_lead(key: str, offer: str, parsed: MarketplaceLead, at: datetime) -> Lead:
    return Lead(lead_key=key, email=parsed.email, offer_key=offer, first_seen=at, last_seen=at)


def merge(lead: Lead, parsed: MarketplaceLead, at: datetime) -> dict[str, tuple[Any, Any]]:
    """Fold one more customer action into the lead, in place. Returns what changed.

    Gaps are filled; a value is never overwritten with an empty one; a better-formed value
    (an E.164 phone, an ISO country, a name typed with capitals) beats a worse one; between
    equally good values the more recent action wins — people change titles and companies.
    """
    changes: dict[str, tuple[Any, Any]] = {}
    newer = lead.last_seen is None or at >= lead.last_seen
    for name in PERSON_FIELDS:
        old, new = getattr(lead, name), getattr(parsed, name)
        if new is None or new == old:
            continue
        if (
            old is None
            or _quality(name, new) > _quality(name, old)
            or (_quality(name, new) == _quality(name, old) and newer)
        ):
            setattr(lead, name, new)
            changes[name] = (old, new)
    _merge_offer(lead, parsed, changes)
    if parsed.notes and parsed.notes != lead.notes and (lead.notes is None or newer):
        changes["notes"] = (lead.notes, parsed.notes)
        lead.notes = parsed.notes
    added = {k: v for k, v in parsed.attribution.items() if k not in lead.attribution}
    if added:  # first touch wins: the campaign that brought the customer first keeps credit
        changes["attribution"] = (dict(lead.attribution), {**lead.attribution, **added})
        lead.attribution = {**lead.attribution, **added}
    _record_action(lead, parsed, at, newer)
    lead.flags = sorted(set(lead.flags) | {f for f in parsed.flags if f != "unknown_country"})
    return changes


def _merge_offer(lead: Lead, parsed: MarketplaceLead, changes: dict[str, tuple[Any, Any]]) -> None:
    for name in ("offer_id", "offer_title", "channel"):
        new = getattr(parsed, name)
        if new is not None and getattr(lead, name) is None:
            changes[name] = (None, new)
            setattr(lead, name, new)


def _record_action(lead: Lead, parsed: MarketplaceLead, at: datetime, newer: bool) -> None:
    action = parsed.action or "unknown"
    if action not in lead.actions:
        lead.actions.append(action)
    if lead.first_action is None or (lead.first_seen is not None and at < lead.first_seen):
        lead.first_action = action
    if newer or lead.last_action is None:
        lead.last_action = action
    lead.first_seen = min(filter(None, [lead.first_seen, at]))
    lead.last_seen = max(filter(None, [lead.last_seen, at]))
    lead.raw_count += 1
    # Do-not-contact holds while every action so far is DNC: a DNC lead is an FYI that a
    # cross-listed partner was asked; once the customer acts on this offer directly
    # (Contact me, install, trial) they have asked to hear from the publisher.
    lead.do_not_contact = all(a == Action.DO_NOT_CONTACT for a in lead.actions)


def _quality(name: str, value: str) -> int:
    if name == "phone":
        return 2 if normalize.is_e164(value) else 1
    if name == "country":
        return 2 if normalize.is_iso_country(value) else 1
    if name in _NAME_FIELDS:
        return normalize.name_quality(value)
    return 1
