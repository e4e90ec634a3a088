"""The job functions: `ingest(source)` lands and processes raw leads. Engines call these;
they don't know which engine called them.

Landing and processing are separate steps on purpose. Raw leads are committed together
with the source cursor that covers them (rule 1); processing then reads landed rows with
status `new`, so a crash between the two loses nothing: the next run processes what was
landed. Processing a batch — leads, events, outbox rows, raw statuses — is one transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leadbridge.connectors.base import MalformedLead, Source, parse_raw
from leadbridge.core import faults, identity, metrics, normalize, qualify
from leadbridge.core.models import Event, Lead, MarketplaceLead, RawLead
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store, utcnow

log = logging.getLogger("leadbridge.pipeline")
LAST_TEST_LEAD = "health:last_test_lead"


def cursor_name(source_name: str) -> str:
    return f"source:{source_name}"


@dataclass
class IngestReport:
    """What one ingest run did; the CLI prints it and sets the exit code from it."""

    source: str = ""
    fetched: int = 0
    landed_batches: int = 0
    processed: int = 0
    leads_created: int = 0
    leads_updated: int = 0
    new_mqls: int = 0
    quarantined: int = 0
    test_leads: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: IngestReport) -> None:
        for name in (
            "processed",
            "leads_created",
            "leads_updated",
            "new_mqls",
            "quarantined",
            "test_leads",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems.extend(other.problems)

    @property
    def needs_attention(self) -> bool:
        return self.quarantined > 0


def ingest(
    source: Source,
    store: Store,
    settings: Settings,
    *,
    on_batch: Callable[[IngestReport], None] | None = None,
    cursor_key: str | None = None,
    stop: threading.Event | None = None,
) -> IngestReport:
    """Poll one source once: land everything new, then process it into leads.

    `cursor_key` lets a backfill read the source from the start under its own cursor, so an
    interrupted backfill resumes where it stopped and the live cursor never moves back.
    `stop` (the daemon's shutdown) ends the run after the batch in hand is committed.
    """
    report = IngestReport(source=source.name)
    cursor_key = cursor_key or cursor_name(source.name)
    with store.connect() as conn:
        cursor = repo.get_cursor(conn, cursor_key)
    batch: list[RawLead] = []
    position = cursor
    for raw, position in source.fetch(cursor):
        batch.append(raw)
        if len(batch) >= settings.batch_size:
            _land(store, cursor_key, batch, position, report)
            faults.point("ingest.after_land")
            report.add(process_pending(store, settings, stop=stop))
            batch = []
            if on_batch:
                on_batch(report)
            if stop is not None and stop.is_set():
                return report
    if batch or (position is not None and position != cursor):
        _land(store, cursor_key, batch, position, report)
    report.add(process_pending(store, settings, stop=stop))
    if on_batch:
        on_batch(report)
    return report


def _land(
    store: Store,
    cursor_key: str,
    batch: Sequence[RawLead],
    position: str | None,
    report: IngestReport,
) -> None:
    now = utcnow()
    with store.begin() as conn:
        repo.land(conn, batch, now)
        if position is not None:
            repo.set_cursor(conn, cursor_key, position, now)
    report.fetched += len(batch)
    report.landed_batches += 1
    log.info("landed batch", extra={"source": report.source, "count": len(batch)})


def land_one(store: Store, raw: RawLead) -> None:
    """Commit one pushed raw lead (the HTTPS webhook): answered 2xx only after this returns."""
    with store.begin() as conn:
        repo.land(conn, [raw], utcnow())


def process_pending(
    store: Store, settings: Settings, *, stop: threading.Event | None = None
) -> IngestReport:
    """Turn every landed-but-unprocessed raw lead into lead changes, a batch at a time."""
    report = IngestReport()
    while stop is None or not stop.is_set():
        with store.begin() as conn:
            rows = repo.pending_raw_leads(conn, settings.batch_size)
            if not rows:
                return report
            _process_batch(conn, rows, settings, report)
    return report


@dataclass
class _Batch:
    """Working state of one processing transaction."""

    now: datetime
    aliases: dict[str, str]
    new_aliases: dict[str, str] = field(default_factory=dict)
    leads: dict[str, Lead] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    raw_updates: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    last_test_at: datetime | None = None


def _process_batch(
    conn: Any, rows: Sequence[Any], settings: Settings, report: IngestReport
) -> None:
    batch = _Batch(now=utcnow(), aliases=repo.load_aliases(conn) | _configured_aliases(settings))
    parsed_rows = [
        (row, parsed)
        for row in rows
        if (parsed := _parse(row, batch, settings, report)) is not None
    ]
    # Keys only after the whole batch is parsed: a title-only lead may be resolved by an
    # alias another lead of the same batch taught.
    keyed = [(row, parsed, _key_for(row, parsed, batch)) for row, parsed in parsed_rows]
    keys = {key for _, _, key in keyed}
    repo.lock_leads(conn, keys)  # another worker merging into one of these waits its turn
    batch.leads.update(repo.load_leads(conn, keys))
    for row, parsed, key in keyed:
        _apply(row, parsed, key, batch, settings, report)
    _write(conn, batch, settings)
    faults.point("process.before_commit")
    report.processed += len(rows)


def _parse(
    row: Any, batch: _Batch, settings: Settings, report: IngestReport
) -> MarketplaceLead | None:
    raw = RawLead(
        source=row.source,
        source_key=row.source_key,
        kind=row.kind,
        payload=row.payload,
        occurred_at=row.occurred_at,
    )
    try:
        parsed = parse_raw(raw)
    except MalformedLead as exc:
        _quarantine(row, batch, "malformed", exc.field, exc.reason, exc.fix)
        metrics.QUARANTINED.labels(row.source, "malformed").inc()
        report.quarantined += 1
        report.problems.append(f"raw lead {row.id} from {row.source}: {exc.field}: {exc.reason}")
        return None
    if parsed.is_test:
        batch.last_test_at = row.received_at
        report.test_leads += 1
        if settings.test_leads == "quarantine":
            metrics.RAW_LEADS.labels(row.source, "test").inc()
            _quarantine(
                row,
                batch,
                "test",
                None,
                "Microsoft test lead (MSFT_TEST_)",
                "nothing to fix: it proves Partner Center reaches leadbridge",
            )
            return None
    if parsed.offer_id and parsed.offer_title:
        title = normalize.offer_title_key(parsed.offer_title)
        if title not in batch.aliases:
            batch.aliases[title] = batch.new_aliases[title] = parsed.offer_id
    return parsed


def _quarantine(
    row: Any, batch: _Batch, reason: str, field_name: str | None, message: str, fix: str
) -> None:
    batch.quarantined.append(
        {
            "raw_lead_id": row.id,
            "reason": reason,
            "field": field_name,
            "message": message,
            "fix": fix,
            "at": batch.now,
        }
    )
    batch.raw_updates.append({"rid": row.id, "status": "quarantined", "lead_key": None})


def _key_for(row: Any, parsed: MarketplaceLead, batch: _Batch) -> str:
    if parsed.email is None:
        return identity.orphan_key(row.source, row.source_key)
    return identity.lead_key(parsed.email, identity.offer_key(parsed, batch.aliases))


def _apply(
    row: Any,
    parsed: MarketplaceLead,
    key: str,
    batch: _Batch,
    settings: Settings,
    report: IngestReport,
) -> None:
    at = parsed.occurred_at or row.received_at
    lead = batch.leads.get(key)
    if lead is None:
        lead = identity.new_lead(key, identity.offer_key(parsed, batch.aliases), parsed, at)
        batch.leads[key] = lead
        batch.created.add(key)
        report.leads_created += 1
    elif key not in batch.created and key not in batch.changed:
        report.leads_updated += 1
    changes = identity.merge(lead, parsed, at)
    batch.changed.add(key)
    batch.raw_updates.append({"rid": row.id, "status": "processed", "lead_key": key})
    metrics.RAW_LEADS.labels(row.source, parsed.action or "unknown").inc()
    if lead.last_received_at is None or row.received_at > lead.last_received_at:
        lead.last_received_at = row.received_at
    score_before = lead.score
    result = qualify.score(lead, settings.qualification)
    lead.score, lead.score_rules = result.points, result.rules
    # One event per customer action carries what it changed (field names only: values are
    # personal data) and the score it led to; a stage change is an event of its own.
    batch.events.append(
        Event(
            lead_key=key,
            kind="action",
            actor=row.source,
            at=at,
            raw_lead_id=row.id,
            data={
                "action": parsed.action,
                "channel": parsed.channel,
                "offer_id": parsed.offer_id,
                "offer_title": parsed.offer_title,
                "flags": parsed.flags,
                "changed": sorted(changes) if lead.raw_count > 1 else [],
                "score": {"from": score_before, "to": result.points},
            },
        )
    )
    _qualify(lead, result, at, batch, settings, report)


def _qualify(
    lead: Lead,
    result: qualify.Score,
    at: datetime,
    batch: _Batch,
    settings: Settings,
    report: IngestReport,
) -> None:
    new_stage = qualify.stage_after_scoring(lead, result, settings.qualification)
    if new_stage is None:
        return
    batch.events.append(
        Event(
            lead_key=lead.lead_key,
            kind="stage",
            actor="leadbridge",
            at=at,
            data={
                "from": lead.stage.value,
                "to": new_stage.value,
                "reason": f"score {result.points} ≥ mql_at {settings.qualification.mql_at}",
                "rules": result.rules,
            },
        )
    )
    lead.stage = new_stage
    report.new_mqls += 1


def _write(conn: Any, batch: _Batch, settings: Settings) -> None:
    changed = [batch.leads[k] for k in sorted(batch.changed)]
    repo.save_leads(conn, changed, batch.now)
    repo.add_events(conn, batch.events)
    repo.add_quarantine(conn, batch.quarantined)
    repo.learn_aliases(conn, batch.new_aliases, batch.now)
    repo.mark_raw(conn, batch.raw_updates)
    deliverable = [lead.lead_key for lead in changed if _deliverable(lead, settings)]
    repo.enqueue(conn, deliverable, [t.name for t in settings.targets], batch.now)
    if batch.last_test_at is not None:
        repo.set_cursor(conn, LAST_TEST_LEAD, batch.last_test_at.isoformat(), batch.now)


def _deliverable(lead: Lead, settings: Settings) -> bool:
    return not (lead.do_not_contact and settings.dnc == "skip")


def _configured_aliases(settings: Settings) -> dict[str, str]:
    return {normalize.offer_title_key(title): offer for title, offer in settings.offers.items()}
