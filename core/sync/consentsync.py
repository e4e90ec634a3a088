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

Writing an opt-out may take more than the record's fields (an unsubscribe, a consent record:
the connector's business). A CRM that refuses that part (a 4xx) still takes the record, and
the connector says so in the push's `dropped` under a `consent:` key (`CONSENT_REFUSED`).
Such a refusal is not lost: each consent sync of that target finds the pushes recorded since
its last run whose refusal is still the latest word, and sends those leads again (their
last-pushed hash cleared, so the push isn't skipped as unchanged) — up to
`MAX_CONSENT_ATTEMPTS` times, each decision an event in the lead's history. Throttling and
outages are the delivery's retries, as for any push.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, Text, and_, cast, or_, select, update

from leadbridge.core.connector import ConsentReader, HttpTarget
from leadbridge.core.delivery.pauses import vendor_pause
from leadbridge.core.domain.models import Event, Lead, OptOut
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.dialect import in_chunks, rows_where_in
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import events, leads, record_links, target_links

log = logging.getLogger("leadbridge.consent")
_OPT_OUT = TypeAdapter(OptOut)
# A `dropped` key under which a connector says the CRM refused writing an opt-out (beyond the
# record's fields): sent again at the target's next consent sync.
CONSENT_REFUSED = "consent:"
MAX_CONSENT_ATTEMPTS = 5  # the first push and four more; then the history says to fix it
_OVERLAP = timedelta(minutes=5)  # pushes recorded while the last consent sync ran


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
    retried: dict[str, int] = field(default_factory=dict)  # refused opt-out writes, per target
    gave_up: dict[str, int] = field(default_factory=dict)


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
    readers = [
        t for t in targets if isinstance(t, ConsentReader) and (only is None or t.name in only)
    ]
    for target in readers:
        _read_one(target, store, read, report)
    now = utcnow()
    with store.begin() as conn:  # before the watermarks move: they say where to look from
        retry_refused(conn, [t.name for t in readers], now, report)
    if not read:
        return report
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
    repo.lock_people(conn, by_person)
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


# --- refused opt-out writes, asked again ---------------------------------------------------


@dataclass
class _Refusal:
    """A (lead, target) whose latest push says the CRM refused writing the opt-out."""

    lead_key: str
    target: str
    push_id: int
    why: dict[str, str]
    attempts: int


def retry_refused(
    conn: Connection, targets: Sequence[str], now: datetime, report: ConsentReport
) -> None:
    """Send again each lead whose latest push to one of `targets` had its opt-out write
    refused, once per refused push, until `MAX_CONSENT_ATTEMPTS`; then say so, once."""
    refusals = _refusals(conn, targets)
    if not refusals:
        return
    again = [r for r in refusals if r.attempts < MAX_CONSENT_ATTEMPTS]
    for target in sorted({r.target for r in again}):
        keys = [r.lead_key for r in again if r.target == target]
        for clause in in_chunks(conn, target_links.c.lead_key, keys):
            conn.execute(  # the push isn't skipped as unchanged
                update(target_links)
                .where(target_links.c.target == target, clause)
                .values(pushed_hash=None)
            )
        repo.enqueue(conn, keys, [target], now)
        report.retried[target] = len(keys)
        log.info("refused opt-out writes sent again", extra={"target": target, "leads": len(keys)})
    for refusal in refusals:
        if refusal.attempts >= MAX_CONSENT_ATTEMPTS:
            report.gave_up[refusal.target] = report.gave_up.get(refusal.target, 0) + 1
    repo.add_events(conn, [_retry_event(r, now) for r in refusals])


def _refusals(conn: Connection, targets: Sequence[str]) -> list[_Refusal]:
    """The (lead, target) pairs with a refused opt-out write among the pushes recorded since
    each target's last consent sync, whose refusal is still the latest push and hasn't been
    acted on yet."""
    since = state.every_updated(conn, "consent_watermark")
    window = [
        and_(events.c.actor == name, events.c.at >= since[name].updated_at - _OVERLAP)
        if name in since
        else events.c.actor == name
        for name in targets
    ]
    if not window:
        return []
    recent = conn.execute(
        select(events.c.lead_key, events.c.actor, events.c.data).where(
            events.c.kind == "push",
            or_(*window),
            # the few that may hold one, found by the database (JSON as text on both)
            cast(events.c.data, Text).contains(f'"{CONSENT_REFUSED}'),
        )
    ).all()
    pairs = {(key, actor) for key, actor, data in recent if _refused(data)}
    if not pairs:
        return []
    return _still_refused(conn, pairs)


def _still_refused(conn: Connection, pairs: set[tuple[str, str]]) -> list[_Refusal]:
    # A lead's events are all in one statement's rows (`in_chunks`), in their order.
    history = rows_where_in(
        conn,
        select(events.c.id, events.c.lead_key, events.c.kind, events.c.actor, events.c.data)
        .where(events.c.kind.in_(["push", "consent"]))
        .order_by(events.c.id),
        events.c.lead_key,
        {key for key, _ in pairs},
    )
    acted_on = {
        (row.lead_key, row.data.get("target"), row.data.get("after_push"))
        for row in history
        if row.kind == "consent" and isinstance(row.data, dict)
    }
    latest: dict[tuple[str, str], Any] = {}
    attempts: dict[tuple[str, str], int] = {}
    for row in history:
        pair = (row.lead_key, row.actor)
        if row.kind != "push" or pair not in pairs:
            continue
        latest[pair] = row  # refusals in a row: a clean push starts the count again
        attempts[pair] = attempts.get(pair, 0) + 1 if _refused(row.data) else 0
    return [
        _Refusal(key, target, row.id, _refused(row.data), attempts[(key, target)])
        for (key, target), row in sorted(latest.items())
        if _refused(row.data) and (key, target, row.id) not in acted_on
    ]


def _refused(data: Any) -> dict[str, str]:
    """The refused opt-out writes a push event records (none unless the record landed)."""
    if not isinstance(data, dict) or not data.get("ok"):
        return {}
    dropped = data.get("dropped")
    if not isinstance(dropped, dict):
        return {}
    return {str(k): str(v) for k, v in dropped.items() if str(k).startswith(CONSENT_REFUSED)}


def _retry_event(refusal: _Refusal, now: datetime) -> Event:
    gave_up = refusal.attempts >= MAX_CONSENT_ATTEMPTS
    reason = (
        f"refused {refusal.attempts} times: not asked again; fix what the CRM says, and the "
        "opt-out is written with the lead's next change"
        if gave_up
        else "the CRM refused writing the opt-out: sent again at this consent sync"
    )
    return Event(
        lead_key=refusal.lead_key,
        kind="consent",
        actor="leadbridge",
        at=now,
        data={
            "target": refusal.target,
            "after_push": refusal.push_id,
            "refused": refusal.why,
            "attempt": refusal.attempts,
            ("gave_up" if gave_up else "retry"): True,
            "reason": reason,
        },
    )
