"""Who a raw lead is: the lead key, and how a new action merges into an existing lead.

A contact is one normalised email; a lead is (email, offer key). The lead key is
deterministic, so an upsert after a crash or even a lost database hits the same CRM record.

Identity fields (names, phone, country, company, title) belong to the person, not to one
of their leads: a `Person` gathers them across all of a person's leads, and every lead of
the person carries the person's values, under the same rules a single lead merges by.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leadbridge.core.domain import normalize
from leadbridge.core.domain.models import Action, Lead, MarketplaceLead

# Never change: every CRM record written by leadbridge is keyed by ids derived from it.
LEADBRIDGE_NS = uuid.UUID("6f1c2a4e-5b0d-5c3e-9a7f-1e2d3c4b5a69")
_NS_BYTES = LEADBRIDGE_NS.bytes

PERSON_FIELDS = ("first_name", "last_name", "phone", "country", "company", "title")
_NAME_FIELDS = ("first_name", "last_name", "company")
_DAWN = datetime.min.replace(tzinfo=UTC)  # sorts a lead never seen before every other


def uuid5_hex(name: str) -> str:
    """`uuid.uuid5(LEADBRIDGE_NS, name).hex`, without building a UUID object: RFC 4122's
    SHA-1 of namespace + name, version 5 and variant bits set. Two keys per lead on every
    ingest made `uuid.UUID`'s own checks 2.5 % of the run; the test proves the two equal."""
    digest = bytearray(hashlib.sha1(_NS_BYTES + name.encode(), usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return digest[:16].hex()


def lead_key(email: str, offer_key: str) -> str:
    """`uuid5(LEADBRIDGE_NS, email + "|" + offer_key)` as 32 hex chars."""
    return uuid5_hex(f"{email}|{offer_key}")


def person_key(email: str) -> str:
    """A hex stand-in for the email where a person must be named outside the store (a
    PostgreSQL advisory lock): no address leaves in a statement or a server log."""
    return uuid5_hex(f"person|{email}")


# Mailbox providers anyone can sign up to: their domain says nothing about an employer.
PERSONAL_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "yahoo.com",
        "ymail.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "t-online.de",
        "proton.me",
        "protonmail.com",
        "zoho.com",
        "yandex.ru",
        "mail.ru",
        "qq.com",
        "163.com",
        "126.com",
        "naver.com",
    }
)
# Legal-form words at the end of a company name ("Contoso Ltd." is Contoso).
_LEGAL_SUFFIXES = frozenset(
    {
        "ab", "ag", "as", "asa", "bv", "co", "company", "corp", "corporation", "gmbh",
        "inc", "incorporated", "kg", "kk", "limited", "llc", "llp", "lp", "ltd", "nv",
        "oy", "plc", "pty", "sa", "sarl", "sas", "se", "spa", "srl",
    }
)  # fmt: skip
_WORD = re.compile(r"[^\W_]+")


def mail_domain(email: str | None) -> str | None:
    """The domain of an address, or None for a personal mailbox (gmail.com, outlook.com …)
    or no address: only an employer's domain says which company a person works for."""
    if not email or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].strip().lower().rstrip(".")
    if not domain or domain in PERSONAL_MAIL_DOMAINS or domain.startswith(("yahoo.", "hotmail.")):
        return None
    return domain


def company_name_key(name: str | None) -> str | None:
    """A company name reduced to what stays the same however people type it: NFKC, case
    folded, punctuation dropped, legal-form words at the end removed ("Contoso, Ltd." and
    "CONTOSO LTD" are both `contoso`). None when nothing is left."""
    if not name:
        return None
    words = _WORD.findall(unicodedata.normalize("NFKC", name).casefold())
    while len(words) > 1 and words[-1] in _LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words) or None


def company_key(company: str | None, email: str | None) -> str | None:
    """The key of a person's company in every CRM (a Dataverse account's alternate key), as
    32 hex chars: `uuid5(LEADBRIDGE_NS, "company|" + name key + "|" + domain)`.

    The rule: the normalised company name (`company_name_key`) and the email domain, the
    domain left empty for a personal mailbox. Colleagues who type the name alike and write
    from the employer's domain share one key; a name alone is not matched across domains,
    so two different firms called "Contoso" at contoso.com and contoso.de stay apart. No
    company name: no key (leadbridge never makes an account it can't name).
    """
    name = company_name_key(company)
    if name is None:
        return None
    return uuid5_hex(f"company|{name}|{mail_domain(email) or ''}")


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


@dataclass(slots=True)
class Person:
    """What is known about one person (one email) from all of their actions on any offer.

    `last_seen` is the person's newest action: between two equally good values the one
    from an action at least that recent wins. Like a lead, a person keeps no time per
    field, so that is the same approximation a single lead's merge makes.
    """

    fields: dict[str, str] = field(default_factory=dict)
    last_seen: datetime | None = None
    # Consent the person withdrew, on any lead of theirs: every lead of theirs carries it
    # (a withdrawal only grows: no new action gives consent back).
    opted_out_of: set[str] = field(default_factory=set)

    def copy(self) -> Person:
        return Person(dict(self.fields), self.last_seen, set(self.opted_out_of))

    def absorb(self, source: Lead | MarketplaceLead, at: datetime | None, newer: bool) -> None:
        """Take the source's identity fields where they beat what the person has."""
        for name in PERSON_FIELDS:
            value = getattr(source, name)
            if value is not None and _better(name, self.fields.get(name), value, newer):
                self.fields[name] = value
        self.opted_out_of.update(getattr(source, "opted_out_of", ()))
        if at is not None and (self.last_seen is None or at > self.last_seen):
            self.last_seen = at


def person_of(leads: Iterable[Lead]) -> Person:
    """The person behind some leads of one email: their values folded oldest lead first, so
    the better-formed value wins and, between equals, the one on the most recent lead."""
    person = Person()
    for lead in sorted(leads, key=lambda lead: (lead.last_seen or _DAWN, lead.lead_key)):
        person.absorb(lead, lead.last_seen, newer=True)
    return person


def behind(lead: Lead, person: Person) -> list[str]:
    """The identity fields `adopt` would change on this lead; none when it is up to date."""
    names = [
        name
        for name, value in person.fields.items()
        if _better(name, getattr(lead, name), value, newer=True)
    ]
    return names + (["opted_out_of"] if person.opted_out_of - set(lead.opted_out_of) else [])


def adopt(lead: Lead, person: Person) -> dict[str, tuple[Any, Any]]:
    """Give the lead the person's identity fields, in place. Returns what changed.

    The person already holds the best of every lead of theirs, so this fills gaps and
    brings a stale value up to date; a lead's value is never emptied, and never replaced
    by a worse-formed one.
    """
    changes: dict[str, tuple[Any, Any]] = {}
    for name in behind(lead, person):
        if name == "opted_out_of":
            withdrawn = sorted(person.opted_out_of | set(lead.opted_out_of))
            changes[name] = (list(lead.opted_out_of), withdrawn)
            lead.opted_out_of, lead.opted_out = withdrawn, True
            continue
        changes[name] = (getattr(lead, name), person.fields[name])
        setattr(lead, name, person.fields[name])
    return changes


def merge(
    lead: Lead, parsed: MarketplaceLead, at: datetime, person: Person | None = None
) -> dict[str, tuple[Any, Any]]:
    """Fold one more customer action into the lead, in place. Returns what changed.

    Gaps are filled; a value is never overwritten with an empty one; a better-formed value
    (an E.164 phone, an ISO country, a name typed with capitals) beats a worse one; between
    equally good values the more recent action wins — people change titles and companies.

    With the lead's `person`, identity fields are decided for the person (their newest
    action on any offer counts as "more recent"), the person is updated in place, and the
    lead takes the person's values; without it, the lead alone is the measure.
    """
    changes: dict[str, tuple[Any, Any]] = {}
    newer = lead.last_seen is None or at >= lead.last_seen
    if person is None:
        for name in PERSON_FIELDS:
            old, new = getattr(lead, name), getattr(parsed, name)
            if _better(name, old, new, newer):
                setattr(lead, name, new)
                changes[name] = (old, new)
    else:
        person_newer = person.last_seen is None or at >= person.last_seen
        person.absorb(parsed, at, person_newer)
        changes.update(adopt(lead, person))
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


def _better(name: str, old: str | None, new: str | None, newer: bool) -> bool:
    """Whether `new` replaces `old`: fills a gap, is better-formed, or is as good and newer."""
    if new is None or new == old:
        return False
    if old is None:
        return True
    gain = _quality(name, new) - _quality(name, old)
    return gain > 0 or (gain == 0 and newer)


def _quality(name: str, value: str) -> int:
    if name == "phone":
        return 2 if normalize.is_e164(value) else 1
    if name == "country":
        return 2 if normalize.is_iso_country(value) else 1
    if name in _NAME_FIELDS:
        return normalize.name_quality(value)
    return 1
