"""Opt-outs read back from the CRMs and made true everywhere: consent flows one way.

Each target that can (a `ConsentReader`) is read for the records found opted out since its
watermark, at the same time as its stages. An opt-out is the person's: it is recorded on
every lead of theirs (`Lead.opted_out_of`, with an event naming the CRM and the time it
says), and those leads are queued for every target, which writes it as true — never as
false: an opt-in is the person's to give in each system, so leadbridge never sends one. A
new marketplace action doesn't clear it (processing gives a person's new lead what their
other leads withdrew: core/domain/identity.py), and an opt-out already known makes no noise.

What a CRM answers is outside input: an item that isn't an opt-out is counted and skipped,
a record leadbridge doesn't know is counted as unknown, and one CRM that can't be read
doesn't stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, select

from leadbridge.core.connector import ConsentReader, HttpTarget
from leadbridge.core.delivery.pauses import vendor_pause
from leadbridge.core.domain import identity
from leadbridge.core.domain.models import Event, Lead, OptOut
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import leads, record_links, target_links

log = logging.getLogger("leadbridge.consent")
_OPT_OUT = TypeAdapter(OptOut)


@dataclass
class ConsentReport:
    """One read of the targets' opt-outs: how many each answered, how many people it
    changed (every lead of theirs), and what could not be used."""

    read: dict[str, int] = field(default_factory=dict)
    people: int = 0
    leads: int = 0
    unknown: int = 0
    invalid: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)


@dataclass
class _Withdrawal:
    """What one person withdrew, as read in this cycle."""

    channels: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    at: datetime | None = None


def pull_opt_outs(
    targets: Sequence[HttpTarget],
    store: Store,
    settings: Settings,
    *,
    only: Collection[str] | None = None,
) -> ConsentReport:
    """Read every consent-reading target (or `only` these), record and fan out."""
    report = ConsentReport()
    read: dict[str, tuple[list[OptOut], str]] = {}
    for target in targets:
        if isinstance(target, ConsentReader) and (only is None or target.name in only):
            _read_one(target, store, read, report)
    if not read:
        return report
    now = utcnow()
    with store.begin() as conn:
        by_person = _whose(conn, [o for found, _ in read.values() for o in found], report)
        _apply(conn, by_person, settings, now, report)
        for name, (_, watermark) in read.items():
            state.put(conn, state.consent_watermark(name), watermark, now)
    if report.people:
        log.info("opt-outs recorded", extra={"people": report.people, "leads": report.leads})
    return report


def _read_one(
    target: HttpTarget,
    store: Store,
    read: dict[str, tuple[list[OptOut], str]],
    report: ConsentReport,
) -> None:
    """One target's opt-outs since its watermark, unless its vendor paused it."""
    assert isinstance(target, ConsentReader)
    with vendor_pause(store, target) as pause:
        if pause is not None:
            report.paused[target.name] = f"until {pause.until.isoformat()}: {pause.why}"
            return
        with store.connect() as conn:
            since = state.get(conn, state.consent_watermark(target.name))
        try:
            found, watermark = target.opt_outs(since)
        except Exception as exc:  # one CRM down must not stop the others
            report.errors[target.name] = str(exc)
            log.warning("opt-out read failed", extra={"target": target.name, "reason": str(exc)})
            return
    read[target.name] = (_valid(found, report), watermark)
    report.read[target.name] = len(found)


def _valid(found: Sequence[Mapping[str, Any]], report: ConsentReport) -> list[OptOut]:
    valid = []
    for item in found:
        try:
            valid.append(_OPT_OUT.validate_python(item))
        except ValidationError:
            report.invalid += 1
    return valid


def _whose(
    conn: Connection, opt_outs: list[OptOut], report: ConsentReport
) -> dict[str, _Withdrawal]:
    """Each opt-out's person (by email): from the lead it names, else from the CRM record
    it was read from (a person-level record, or a lead record by its id)."""
    by_person: dict[str, _Withdrawal] = {}
    for opt_out in opt_outs:
        email = _email_of(conn, opt_out)
        if email is None:
            report.unknown += 1
            continue
        withdrawal = by_person.setdefault(email, _Withdrawal())
        withdrawal.channels.update(opt_out.channels)
        withdrawal.sources.add(opt_out.target)
        withdrawal.at = min(withdrawal.at or opt_out.at, opt_out.at)
    return by_person


def _email_of(conn: Connection, opt_out: OptOut) -> str | None:
    key = opt_out.lead_key
    if key is None:
        for table in (record_links, target_links):
            key = conn.execute(
                select(table.c.lead_key)
                .where(table.c.target == opt_out.target, table.c.external_id == opt_out.external_id)
                .limit(1)
            ).scalar_one_or_none()
            if key is not None:
                break
    if key is None:
        return None
    email: str | None = conn.execute(
        select(leads.c.email).where(leads.c.lead_key == key)
    ).scalar_one_or_none()
    return email


def _apply(
    conn: Connection,
    by_person: dict[str, _Withdrawal],
    settings: Settings,
    now: datetime,
    report: ConsentReport,
) -> None:
    """Every lead of each person gets the withdrawal; the changed ones are queued for every
    target. Locks as processing takes them: people first, then their leads, sorted."""
    repo.lock_leads(conn, [identity.person_key(email) for email in by_person])
    repo.lock_leads(conn, repo.lead_keys_by_email(conn, by_person))
    people = repo.leads_by_email(conn, by_person)
    changed: list[Lead] = []
    events: list[Event] = []
    for email, group in people.items():
        withdrawal = by_person[email]
        touched = [e for e in (_withdraw(lead, withdrawal, now) for lead in group) if e]
        if touched:
            report.people += 1
            changed += [lead for lead in group if lead.lead_key in {e.lead_key for e in touched}]
            events += touched
    report.leads += len(changed)
    repo.save_leads(conn, changed, now)
    repo.add_events(conn, events)
    repo.enqueue(conn, [lead.lead_key for lead in changed], [t.name for t in settings.targets], now)


def _withdraw(lead: Lead, withdrawal: _Withdrawal, now: datetime) -> Event | None:
    """Add what the person withdrew from to the lead; the event saying so, or None when the
    lead had it all already."""
    new = withdrawal.channels - set(lead.opted_out_of)
    if not new:
        return None
    lead.opted_out_of = sorted(set(lead.opted_out_of) | withdrawal.channels)
    lead.opted_out = True
    sources = sorted(withdrawal.sources)
    return Event(
        lead_key=lead.lead_key,
        kind="consent",
        actor=sources[0],
        at=now,
        data={
            "withdrawn": sorted(new),
            "in": sources,
            "at": withdrawal.at.isoformat() if withdrawal.at else None,
            "reason": "opted out in a CRM: sent to every target as true, never back as false",
        },
    )
