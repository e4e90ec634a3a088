"""The job functions: `ingest(source)` lands and processes raw leads. Engines call these;
they don't know which engine called them.

Landing and processing are separate steps on purpose. Raw leads are committed together
with the source cursor that covers them (rule 1); processing then reads landed rows with
status `new`, so a crash between the two loses nothing: the next run processes what was
landed. Processing a batch — leads, events, outbox rows, raw statuses — is one transaction.

What a raw lead can't become is quarantined on its own and kept in landing, and the batch
goes on: a malformed record, Microsoft's test leads, a lead without a usable email (no
person to merge into, nothing to deliver), and any record that makes processing raise.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic_core import PydanticSerializationError
from sqlalchemy import Connection
from sqlalchemy.exc import DataError, IntegrityError

from leadbridge.core.connector import Countable, MalformedLead, Source, parse_raw
from leadbridge.core.domain import identity, normalize, qualify
from leadbridge.core.domain.models import Event, Lead, MarketplaceLead, RawLead
from leadbridge.core.ingest import forgotten
from leadbridge.core.ingest.parse_ahead import START_AFTER_BATCHES, ParseAhead
from leadbridge.core.ingest.read_ahead import ReadAhead
from leadbridge.core.ingest.redact import landed, redact
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.planner import PlannerStatistics
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.support import faults, metrics

log = logging.getLogger("leadbridge.pipeline")
# What one record's values can make the batch's write raise: a value the database refuses
# (too long for its column, a constraint), or text that can't be encoded (a lone surrogate).
# A lost connection or a deadlock is not among them: the batch is simply tried again.
_REFUSED_VALUES = (DataError, IntegrityError, PydanticSerializationError, UnicodeError)
_LEAD_SLOTS = tuple(f.name for f in fields(Lead))


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
    siblings_updated: int = 0  # a person's other leads, filled from a new action
    erased: int = 0  # raw leads of forgotten people: set aside as asked, not a problem
    problems: list[str] = field(default_factory=list)

    def add(self, other: IngestReport) -> None:
        for name in (
            "processed",
            "leads_created",
            "leads_updated",
            "new_mqls",
            "quarantined",
            "test_leads",
            "siblings_updated",
            "erased",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems.extend(other.problems)

    @property
    def needs_attention(self) -> bool:
        return self.quarantined > 0


class Watcher(Protocol):
    """Who follows a long ingest (core/app/progress.py): told the source and how many
    records it expects (None: unknown), the count read after each batch, and the end."""

    def start(self, what: str, total: int | None) -> None: ...

    def update(self, done: int) -> None: ...

    def finish(self) -> None: ...


def ingest(
    source: Source,
    store: Store,
    settings: Settings,
    *,
    on_batch: Callable[[IngestReport], None] | None = None,
    cursor_key: state.Key | None = None,
    stop: threading.Event | None = None,
    watcher: Watcher | None = None,
) -> IngestReport:
    """Poll one source once: land everything new, then process it into leads.

    `cursor_key` lets a backfill read the source from the start under its own cursor, so an
    interrupted backfill resumes where it stopped and the live cursor never moves back.
    `stop` (the daemon's shutdown) ends the run after the batch in hand is committed;
    what was landed and not processed yet is the `process` job's (see `_Ahead`).
    """
    report = IngestReport(source=source.name)
    cursor_key = cursor_key or state.source_cursor(source.name)
    with store.connect() as conn:
        cursor = state.get(conn, cursor_key)
    if watcher is not None:
        expected = source.expected_records(cursor) if isinstance(source, Countable) else None
        watcher.start(source.name, expected)

    def batch_done() -> None:
        if on_batch:
            on_batch(report)
        if watcher is not None:
            watcher.update(report.fetched)

    batch: list[RawLead] = []
    position = cursor
    ahead = _Ahead(store, settings)
    planner = PlannerStatistics(store)
    records = _read(source, cursor, START_AFTER_BATCHES * settings.batch_size)
    try:
        for raw, position in records:
            batch.append(raw)
            if len(batch) >= settings.batch_size:
                through = _land(store, cursor_key, batch, position, report)
                faults.point("ingest.after_land")
                planner.landed(report.fetched)
                report.add(ahead.process_landed(batch, through, stop))
                batch = []
                batch_done()
                if stop is not None and stop.is_set():
                    return report
        if batch or (position is not None and position != cursor):
            _land(store, cursor_key, batch, position, report)
        report.add(process_pending(store, settings, stop=stop, ahead=ahead.worker))
    finally:
        try:
            records.close()
        finally:  # the worker is stopped even if a second Ctrl-C cuts the close above short
            ahead.close()
    batch_done()
    if watcher is not None:
        watcher.finish()
    return report


def _read(
    source: Source, cursor: str | None, inline: int
) -> Generator[tuple[RawLead, str], None, None]:
    """The source's records from `cursor`: the first `inline` read in this thread, the rest
    read ahead on a thread of their own (core/ingest/read_ahead.py), so a source's waits
    for its pages overlap landing and processing. Closing this ends that thread."""
    records = iter(source.fetch(cursor))
    for _ in range(inline):
        try:
            yield next(records)
        except StopIteration:
            return
    reader = ReadAhead(records, source.name)
    try:
        yield from reader
    finally:
        reader.close()


class _Ahead:
    """One ingest's processing of what it landed, pipelined once the ingest proves long.

    Short: each landed batch is processed at once, as it always was. From the
    `START_AFTER_BATCHES`-th batch on, each landed batch is handed to the parsing worker
    (core/ingest/parse_ahead.py), and the batch handed the time before — parsed by now,
    while this one was read and landed — is processed. So a stop leaves at most the last
    two batches landed and unprocessed, which the `process` job (or the next run) takes.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.batches = 0
        self.worker: ParseAhead | None = None
        self.handed_through: int | None = None  # the highest raw lead id when last handing

    def process_landed(
        self, landed: Sequence[RawLead], through: int | None, stop: threading.Event | None
    ) -> IngestReport:
        """After landing `landed` (the store's raw lead ids now go up to `through`)."""
        self.batches += 1
        if self.worker is None:
            if self.batches < START_AFTER_BATCHES or not self.settings.parse_worker:
                return process_pending(self.store, self.settings, stop=stop)
            self.worker = ParseAhead(_source_kinds(self.settings))
            self.worker.hand(landed)
            self.handed_through = through
            return IngestReport()  # everything landed before is processed
        previous, self.handed_through = self.handed_through, through
        self.worker.hand(landed)
        done = process_pending(
            self.store, self.settings, stop=stop, ahead=self.worker, through=previous
        )
        self.worker.forget_all_but_the_last()
        return done

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


def _land(
    store: Store,
    cursor_key: state.Key,
    batch: Sequence[RawLead],
    position: str | None,
    report: IngestReport,
) -> int | None:
    """Land the batch with the cursor after it; the highest raw lead id the store holds."""
    now = utcnow()
    with store.begin() as conn:
        repo.land(conn, batch, now)
        if position is not None:
            state.put(conn, cursor_key, position, now)
        through = repo.last_raw_lead_id(conn)
    report.fetched += len(batch)
    report.landed_batches += 1
    log.info("landed batch", extra={"source": report.source, "count": len(batch)})
    return through


def land_one(store: Store, raw: RawLead) -> None:
    """Commit one pushed raw lead (the HTTPS webhook): answered 2xx only after this returns."""
    with store.begin() as conn:
        repo.land(conn, [raw], utcnow())


def process_pending(
    store: Store,
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    ahead: ParseAhead | None = None,
    through: int | None = None,
) -> IngestReport:
    """Turn every landed-but-unprocessed raw lead into lead changes, a batch at a time,
    until a batch comes short: rows landed after that read (a webhook, another replica)
    are the next run's.

    A raw lead that breaks processing is quarantined inside its batch (`_unprocessable`).
    A value that can't be stored (`_REFUSED_VALUES`) fails the batch's write as a whole
    instead; that batch is then processed again record by record, so only the record at
    fault is set aside and the run never stalls on it.

    `through` stops at that raw lead id; `ahead` holds parses done in the worker
    (core/ingest/parse_ahead.py), used where they match the row.
    """
    report = IngestReport()
    more = True
    while more and (stop is None or not stop.is_set()):
        done = IngestReport()
        ids: list[int] = []
        try:
            with store.begin() as conn:
                rows = repo.pending_raw_leads(conn, settings.batch_size, through)
                if not rows:
                    return report
                ids = [row.id for row in rows]
                _process_batch(conn, rows, settings, done, ahead)
        except _REFUSED_VALUES as exc:
            if not ids:
                raise
            log.warning(
                "the store refused a processing batch; processing it record by record",
                extra={"count": len(ids), "error": type(exc).__name__},
            )
            done = _process_one_by_one(store, ids, settings)
        report.add(done)
        # A short batch took every row pending when it was read, and one that reached
        # `through` every row it was asked for: no second transaction (a write lock, on
        # SQLite) to find nothing. A row landed since is the next run's, as it would be had
        # it landed a moment after that empty read.
        more = len(ids) >= settings.batch_size and (through is None or ids[-1] < through)
    return report


def _process_one_by_one(store: Store, ids: Sequence[int], settings: Settings) -> IngestReport:
    report = IngestReport()
    for rid in ids:
        single = IngestReport()
        try:
            with store.begin() as conn:
                rows = repo.pending_raw_leads_by_id(conn, [rid])
                if rows:
                    _process_batch(conn, rows, settings, single)
        except _REFUSED_VALUES as exc:
            single = _refused(store, rid, exc)
        report.add(single)
    return report


def _refused(store: Store, rid: int, exc: Exception) -> IngestReport:
    """Quarantine the one raw lead whose lead changes could not be stored, in a transaction
    of its own (the one that failed is gone)."""
    report = IngestReport()
    with store.begin() as conn:
        rows = repo.pending_raw_leads_by_id(conn, [rid])
        if not rows:
            return report  # another worker took it meanwhile
        batch = _Batch(now=utcnow(), aliases={})
        _unprocessable(rows[0], batch, report, "saving", exc)
        repo.add_quarantine(conn, batch.quarantined)
        repo.mark_raw(conn, batch.raw_updates)
        _count(batch)
        report.processed += 1
    return report


@dataclass
class _Batch:
    """Working state of one processing transaction."""

    now: datetime
    aliases: dict[str, str]
    new_aliases: dict[str, str] = field(default_factory=dict)
    leads: dict[str, Lead] = field(default_factory=dict)
    loaded: dict[str, list[Lead]] = field(default_factory=dict)  # stored leads by email
    people: dict[str, identity.Person] = field(default_factory=dict)  # by email
    seen: dict[str, datetime] = field(default_factory=dict)  # newest action per email
    created: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    raw_updates: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    last_test_at: datetime | None = None
    source_kinds: dict[str, str] = field(default_factory=dict)  # source name → connector kind
    ahead: ParseAhead | None = None  # parses done in the worker (core/ingest/parse_ahead.py)
    # Metric increments, counted per (source, action) and per (source, reason) and added to
    # the counters once per batch: a labelled `.inc()` per record was 3 % of an ingest.
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)


def _process_batch(
    conn: Connection,
    rows: Sequence[Any],
    settings: Settings,
    report: IngestReport,
    ahead: ParseAhead | None = None,
) -> None:
    """Each step runs record by record and a record that raises anything is quarantined on
    its own (`_unprocessable`): one poison pill must not roll back, on every run, the
    batch that carries it — no lead from any source would ever be processed again."""
    batch = _Batch(
        now=utcnow(),
        aliases=repo.load_aliases(conn) | _configured_aliases(settings),
        source_kinds=_source_kinds(settings),
        ahead=ahead,
    )
    parsed_rows = []
    for row in rows:
        try:
            parsed = _parse(row, batch, settings, report)
        except Exception as exc:  # anything: see the docstring
            _unprocessable(row, batch, report, "parsing", exc)
            continue
        if parsed is not None:
            parsed_rows.append((row, parsed))
    parsed_rows = _without_the_forgotten(conn, parsed_rows, batch, settings, report)
    # Keys only after the whole batch is parsed: a title-only lead may be resolved by an
    # alias another lead of the same batch taught.
    keyed = []
    for row, parsed in parsed_rows:
        try:
            keyed.append((row, parsed, _key_for(parsed, batch)))
        except Exception as exc:
            _unprocessable(row, batch, report, "keying", exc)
    _load_people(conn, {parsed.email for _, parsed, _ in keyed if parsed.email}, keyed, batch)
    for row, parsed, key in keyed:
        try:
            _apply(row, parsed, key, batch, settings, report)
        except Exception as exc:
            _unprocessable(row, batch, report, "merging", exc)
    _spread_person_fields(batch, settings, report)
    _write(conn, batch, settings)
    _count(batch)
    faults.point("process.before_commit")
    report.processed += len(rows)


def _source_kinds(settings: Settings) -> dict[str, str]:
    """Source name → the connector kind that lands its raw leads: the parser to try first."""
    return {config.name: config.kind for config in settings.source_configs()}


def _count(batch: _Batch) -> None:
    """Add the batch's actions and quarantine reasons to the Prometheus counters."""
    for (source, action), n in batch.actions.items():
        metrics.RAW_LEADS.labels(source, action).inc(n)
    for (source, reason), n in batch.reasons.items():
        metrics.QUARANTINED.labels(source, reason).inc(n)


def _without_the_forgotten(
    conn: Connection,
    parsed_rows: list[tuple[Any, MarketplaceLead]],
    batch: _Batch,
    settings: Settings,
    report: IngestReport,
) -> list[tuple[Any, MarketplaceLead]]:
    """Set aside the raw leads of people who asked to be forgotten (core/ingest/forgotten.py)."""
    keep, forgotten_rows = forgotten.split_forgotten(conn, parsed_rows, settings)
    for row, _ in forgotten_rows:
        _quarantine(
            row,
            batch,
            "erased",
            "Email",
            "the person asked to be forgotten (leads forget): the payload was redacted",
            "nothing to fix: leadbridge keeps no personal data of this person",
        )
        batch.reasons[row.source, "erased"] += 1
        report.erased += 1
    redact(conn, [row for row, _ in forgotten_rows], batch.now)
    return keep


def _load_people(conn: Connection, emails: set[str], keyed: Sequence[Any], batch: _Batch) -> None:
    """Lock, then load, every lead of the batch's people: a new action may change what
    their leads for other offers must carry.

    Another worker merging into one of these people waits its turn. The order is the same
    in every worker, so none waits on another in a cycle: people first, in sorted order;
    then, in sorted order, every lead of theirs — all known by then, as no worker adds a
    lead to a person whose lock it doesn't hold. One query per batch finds them.
    """
    repo.lock_people(conn, emails, {key for _, _, key in keyed})
    batch.loaded = repo.leads_by_email(conn, emails)
    for group in batch.loaded.values():
        batch.leads.update((lead.lead_key, lead) for lead in group)


def _parse(
    row: Any, batch: _Batch, settings: Settings, report: IngestReport
) -> MarketplaceLead | None:
    try:
        raw = landed(row)
        parsed = batch.ahead.take(raw) if batch.ahead is not None else None
        if parsed is None:
            parsed = parse_raw(raw, batch.source_kinds.get(row.source))
    except MalformedLead as exc:
        _quarantine(row, batch, "malformed", exc.field, exc.reason, exc.fix)
        batch.reasons[row.source, "malformed"] += 1
        report.quarantined += 1
        report.problems.append(f"raw lead {row.id} from {row.source}: {exc.field}: {exc.reason}")
        return None
    title = normalize.offer_title_key(parsed.offer_title) if parsed.offer_title else None
    if parsed.is_test:
        batch.last_test_at = row.received_at
        report.test_leads += 1
        if settings.test_leads == "quarantine":
            batch.actions[row.source, "test"] += 1
            _quarantine(
                row,
                batch,
                "test",
                None,
                "Microsoft test lead (MSFT_TEST_)",
                "nothing to fix: it proves Partner Center reaches leadbridge",
            )
            return None
    if parsed.offer_id and title is not None and title not in batch.aliases:
        batch.aliases[title] = batch.new_aliases[title] = parsed.offer_id
    if parsed.email is None:
        _no_email(row, parsed, batch, report)
        return None
    return parsed


def _no_email(row: Any, parsed: MarketplaceLead, batch: _Batch, report: IngestReport) -> None:
    """A lead is a person, and a person is their email: without one there is no one to
    merge into and nothing a CRM could hold, so it is quarantined, never delivered."""
    what = (
        "the email address the marketplace sent is not a valid address"
        if "invalid_email" in parsed.flags
        else "the marketplace sent no email address"
    )
    _quarantine(
        row,
        batch,
        "invalid_email",
        "Email",
        f"{what}; nothing to deliver",
        "nothing to fix in leadbridge: the raw lead is kept in landing; a new action by the "
        "customer with a valid email becomes a lead",
    )
    batch.reasons[row.source, "invalid_email"] += 1
    report.quarantined += 1
    report.problems.append(f"raw lead {row.id} from {row.source}: Email: {what}")


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


def _unprocessable(
    row: Any, batch: _Batch, report: IngestReport, step: str, exc: Exception
) -> None:
    """Set aside a raw lead that made processing raise, so the rest of its batch goes on.

    Only the exception's type and where it was raised are kept and logged — its message
    may quote the payload, which is personal data. The raw lead stays in landing.
    """
    error = type(exc).__name__
    where = _where(exc)
    field_name = getattr(exc, "field", None)
    _quarantine(
        row,
        batch,
        "unprocessable",
        field_name if isinstance(field_name, str) else None,
        f"{error} while {step} this raw lead{where}; it was set aside so the rest of its "
        "batch could go on",
        "report it with the raw lead id: the fault is leadbridge's, not the customer's; the "
        "raw lead is kept in landing and can be processed again once that is fixed",
    )
    batch.reasons[row.source, "unprocessable"] += 1
    report.quarantined += 1
    report.problems.append(f"raw lead {row.id} from {row.source}: {error} while {step}")
    log.error(
        "raw lead unprocessable, quarantined",
        extra={
            "raw_lead_id": row.id,
            "source": row.source,
            "step": step,
            "error": error,
            "where": where.strip(" ()"),
        },
    )


def _where(exc: BaseException) -> str:
    """` (in file.py:12, function)` of the innermost frame: code, never data."""
    frames = traceback.extract_tb(exc.__traceback__, limit=-1)
    if not frames:
        return ""
    frame = frames[-1]
    return f" (in {Path(frame.filename).name}:{frame.lineno}, {frame.name})"


def _key_for(parsed: MarketplaceLead, batch: _Batch) -> str:
    if parsed.email is None:  # quarantined by `_parse`; never keyed
        raise ValueError("a raw lead without an email has no lead key")
    return identity.lead_key(parsed.email, identity.offer_key(parsed, batch.aliases))


def _apply(
    row: Any,
    parsed: MarketplaceLead,
    key: str,
    batch: _Batch,
    settings: Settings,
    report: IngestReport,
) -> None:
    """Merge one action into its lead and its person, score it, and record it.

    The work is done on copies of the lead and the person, and joins the batch only once
    all of it has succeeded: a record that raises midway leaves nothing half-merged behind
    for the records after it (the batch writes in bulk, so a savepoint per record would
    cost a round trip each and still not undo changes made in memory).
    """
    email = str(parsed.email)
    at = parsed.occurred_at or row.received_at
    existing = batch.leads.get(key)
    lead = (
        identity.new_lead(key, identity.offer_key(parsed, batch.aliases), parsed, at)
        if existing is None
        else _copy(existing)
    )
    person = batch.people.get(email)
    if person is None:  # the person's first action in the batch: built here, per record
        person = identity.person_of(batch.loaded.get(email, []))
    person = person.copy()
    changes = identity.merge(lead, parsed, at, person)
    qualify.record_touch(lead, parsed.action, at)
    if lead.last_received_at is None or row.received_at > lead.last_received_at:
        lead.last_received_at = row.received_at
    score_before = lead.score
    result = _score(lead, settings, batch.now)
    # One event per customer action carries what it changed (field names only: values are
    # personal data) and the score it led to; a stage change is an event of its own.
    events = [
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
                "score": _score_change(score_before, result),
            },
        )
    ]
    moved = _qualify(lead, result, at, settings)
    # Nothing below can fail: the record's work joins the batch whole.
    if existing is None:
        batch.created.add(key)
        report.leads_created += 1
    elif key not in batch.created and key not in batch.changed:
        report.leads_updated += 1
    batch.leads[key] = lead
    batch.people[email] = person
    batch.seen[email] = max(batch.seen.get(email, at), at)
    batch.changed.add(key)
    batch.events += [*events, *moved]
    batch.raw_updates.append({"rid": row.id, "status": "processed", "lead_key": key})
    report.new_mqls += len(moved)
    batch.actions[row.source, parsed.action or "unknown"] += 1


def _spread_person_fields(batch: _Batch, settings: Settings, report: IngestReport) -> None:
    """Identity fields are the person's: after the batch's actions, every lead of each person
    they touched carries the person's values — a phone given for one offer is the phone on
    all of them. A lead changed this way is re-scored, saved and re-queued like any changed
    lead, with an event naming the fields filled (names only: values are personal data).

    Done once per batch, after every action, so a lead acted on early in the batch also
    gets what a later action of the same person taught.
    """
    family: dict[str, list[str]] = {}
    for key, lead in batch.leads.items():
        if lead.email in batch.seen:
            family.setdefault(lead.email, []).append(key)
    for email, keys in sorted(family.items()):
        try:
            filled = [
                _fill(batch.leads[key], batch.people[email], batch.seen[email], settings, batch.now)
                for key in sorted(keys)
            ]
        except Exception as exc:
            # Not one raw lead's fault: the person's other leads stay as they were, and
            # are filled the next time this person acts.
            log.error(
                "person fields not spread to the person's other leads",
                extra={"lead_keys": sorted(keys), "error": type(exc).__name__},
            )
            continue
        for lead, event, moved in filter(None, filled):
            if lead.lead_key not in batch.changed:
                report.siblings_updated += 1
            batch.leads[lead.lead_key] = lead
            batch.changed.add(lead.lead_key)
            batch.events += [event, *moved]
            report.new_mqls += len(moved)


def _fill(
    lead: Lead, person: identity.Person, at: datetime, settings: Settings, now: datetime
) -> tuple[Lead, Event, list[Event]] | None:
    """The lead with the person's fields (a copy), the event saying which were filled and
    the stage event if its new score moved it; None when it has them all already."""
    if not identity.behind(lead, person):
        return None  # most leads: no copy made
    lead = _copy(lead)
    filled = identity.adopt(lead, person)
    if not filled:
        return None
    score_before = lead.score
    result = _score(lead, settings, now)
    event = Event(
        lead_key=lead.lead_key,
        kind="person",
        actor="leadbridge",
        at=at,
        data={
            "filled": sorted(filled),
            "reason": "known from the person's actions on other offers",
            "score": _score_change(score_before, result),
        },
    )
    return lead, event, _qualify(lead, result, at, settings)


def _copy(lead: Lead) -> Lead:
    """A working copy whose lists and dicts are its own: changing it leaves `lead` intact.

    Slot by slot rather than `dataclasses.replace`, which re-runs `__init__` and cost a
    tenth of the ingest profile.
    """
    twin = object.__new__(Lead)
    for name in _LEAD_SLOTS:
        setattr(twin, name, getattr(lead, name))
    twin.attribution = dict(lead.attribution)
    twin.actions = list(lead.actions)
    twin.flags = list(lead.flags)
    twin.score_rules = list(lead.score_rules)
    twin.touches = list(lead.touches)
    return twin


def _score(lead: Lead, settings: Settings, now: datetime) -> qualify.Score:
    """Score the lead as of `now` (engagement decays up to the batch's time) and keep the
    score on it, in place."""
    rules = settings.qualification
    result = qualify.graded_score(lead, rules, now) if rules.graded else qualify.score(lead, rules)
    lead.score, lead.score_rules = result.points, result.rules
    lead.grade, lead.fit, lead.engagement = result.grade, result.fit, result.engagement
    return result


def _score_change(before: int, result: qualify.Score) -> dict[str, Any]:
    """The score an event led to (with the grid cell, when graded)."""
    change: dict[str, Any] = {"from": before, "to": result.points}
    if result.grade is not None:
        change["grade"] = result.grade
    return change


def _qualify(lead: Lead, result: qualify.Score, at: datetime, settings: Settings) -> list[Event]:
    """Move the lead to the stage its score earns, in place; the stage event, if it moved."""
    new_stage = qualify.stage_after_scoring(lead, result, settings.qualification)
    if new_stage is None:
        return []
    event = Event(
        lead_key=lead.lead_key,
        kind="stage",
        actor="leadbridge",
        at=at,
        data={
            "from": lead.stage.value,
            "to": new_stage.value,
            "reason": qualify.mql_reason(lead, result, settings.qualification),
            "rules": result.rules,
            **({"grade": result.grade} if result.grade is not None else {}),
        },
    )
    lead.stage = new_stage
    return [event]


def _write(conn: Connection, batch: _Batch, settings: Settings) -> None:
    changed = [batch.leads[k] for k in sorted(batch.changed)]
    repo.save_leads(conn, changed, batch.now)
    repo.add_events(conn, batch.events)
    repo.add_quarantine(conn, batch.quarantined)
    repo.learn_aliases(conn, batch.new_aliases, batch.now)
    repo.mark_raw(conn, batch.raw_updates)
    deliverable = [lead.lead_key for lead in changed if _deliverable(lead, settings)]
    repo.enqueue(conn, deliverable, [t.name for t in settings.targets], batch.now)
    if batch.last_test_at is not None:
        state.put(conn, state.LAST_TEST_LEAD, batch.last_test_at.isoformat(), batch.now)


def _deliverable(lead: Lead, settings: Settings) -> bool:
    return not (lead.do_not_contact and settings.dnc == "skip")


def _configured_aliases(settings: Settings) -> dict[str, str]:
    return {normalize.offer_title_key(title): offer for title, offer in settings.offers.items()}
