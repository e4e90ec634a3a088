"""`rescore`: the daily job that lets fit × engagement scores change with time.

Engagement decays (docs/scoring.md), so a lead nobody touches still moves down the grid as
days pass; nothing else would ever recompute it. The job walks the leads marketing still
owns (subscriber, nurture, MQL: once sales accepts a lead its grade is what it was at the
hand-off), recomputes each score as of `now`, and for each lead whose grade changed records
the change as an event and queues one push: what a CRM holds (the grade, the numbers
behind it, the stage) changes only then. The numbers a lead carries are a snapshot taken
at its last action or last change of grade, so a day of decay that leaves the grade where
it was changes nothing anywhere — no row, no push, no API call.

An MQL that sales never accepted and whose engagement fell to level 4 goes back to nurture
after `recycle_after`: marketing's own backward move under the stage rules (stages.recycle),
with the reason in its history, pushed to every CRM like any stage change.

`now` is explicit (the CLI's `--now`, a test's clock): the same store and the same `now`
give the same result, and the outbox rows are due at the real time they were queued.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select

from leadbridge.core.domain import qualify, stages
from leadbridge.core.domain.models import Event, Lead, Stage
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo
from leadbridge.core.store.dialect import rows_where_in
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import events, leads

log = logging.getLogger("leadbridge.rescore")
# The stages whose score still decides something: marketing's (stages.MARKETING).
RESCORED_STAGES = sorted(stage.value for stage in stages.MARKETING.owns)


@dataclass
class RescoreReport:
    """What one rescore did; the CLI prints it (`--format json` is this, as data)."""

    now: str = ""
    scanned: int = 0
    regraded: int = 0
    recycled: int = 0
    queued: int = 0
    failed: int = 0
    grades: dict[str, str] = field(default_factory=dict)  # lead key → "A1→A3"
    problems: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return self.failed > 0


def rescore(
    store: Store,
    settings: Settings,
    *,
    now: datetime | None = None,
    batch_size: int | None = None,
    stop: threading.Event | None = None,
) -> RescoreReport:
    """Recompute every marketing-owned lead's score as of `now` (default: the clock), a
    batch at a time, each batch one transaction. A config without fit × engagement has
    nothing that changes with time: the job then does nothing."""
    now = now or utcnow()
    report = RescoreReport(now=now.isoformat())
    if not settings.qualification.graded:
        return report
    after = ""
    size = batch_size or settings.batch_size
    while stop is None or not stop.is_set():
        with store.begin() as conn:
            keys = _next_keys(conn, after, size)
            if not keys:
                break
            _rescore_batch(conn, keys, settings, now, report)
        after = keys[-1]
    log.info(
        "rescored",
        extra={k: getattr(report, k) for k in ("scanned", "regraded", "recycled", "queued")},
    )
    return report


def _next_keys(conn: Connection, after: str, size: int) -> list[str]:
    """The next batch of keys in key order (a keyset walk: a lead regraded by this run is
    never read twice, and a lead a person creates meanwhile is scored at its ingest)."""
    query = (
        select(leads.c.lead_key)
        .where(leads.c.stage.in_(RESCORED_STAGES), leads.c.lead_key > after)
        .order_by(leads.c.lead_key)
        .limit(size)
    )
    return [row.lead_key for row in conn.execute(query)]


def _rescore_batch(
    conn: Connection, keys: Sequence[str], settings: Settings, now: datetime, report: RescoreReport
) -> None:
    """One transaction: lock, load, recompute, save what changed, queue its pushes.

    A lead whose rescore raises is reported and left as it was; the batch goes on.
    """
    repo.lock_leads(conn, keys)
    loaded = repo.load_leads(conn, keys)
    since = _mql_since(conn, [k for k, lead in loaded.items() if lead.stage == Stage.MQL])
    changed: list[Lead] = []
    new_events: list[Event] = []
    for key in keys:
        lead = loaded.get(key)
        if lead is None or lead.stage.value not in RESCORED_STAGES:
            continue  # moved on by another worker since the keys were read
        report.scanned += 1
        try:
            moved = rescore_lead(lead, settings.qualification, now, since.get(key))
        except Exception as exc:  # one lead's fault must not stop the others
            report.failed += 1
            report.problems.append(f"lead {key}: {type(exc).__name__} while rescoring")
            log.error("lead not rescored", extra={"lead_key": key, "error": type(exc).__name__})
            continue
        if moved:
            _count(lead, moved, report)
            changed.append(lead)
            new_events += moved
    if not changed:
        return
    at = utcnow()
    repo.save_leads(conn, changed, at)
    repo.add_events(conn, new_events)
    deliverable = [lead.lead_key for lead in changed if not _skipped(lead, settings)]
    repo.enqueue(conn, deliverable, [t.name for t in settings.targets], at)
    report.queued += len(deliverable)


def rescore_lead(
    lead: Lead, rules: qualify.QualificationSettings, now: datetime, mql_since: datetime | None
) -> list[Event]:
    """Recompute one lead as of `now`, in place; the events of what changed (none: the lead
    is as it was, and nothing is written or pushed)."""
    result = qualify.graded_score(lead, rules, now)
    moved: list[Event] = []
    if result.grade != lead.grade:
        moved.append(
            Event(
                lead_key=lead.lead_key,
                kind="grade",
                actor="leadbridge",
                at=now,
                data={
                    "from": lead.grade,
                    "to": result.grade,
                    "score": {"from": lead.score, "to": result.points},
                    "reason": "rescore: engagement decays with time",
                    "rules": result.rules,
                },
            )
        )
        lead.score, lead.score_rules = result.points, result.rules
        lead.grade, lead.fit, lead.engagement = result.grade, result.fit, result.engagement
    why = qualify.recycle_reason(lead, result, rules, mql_since, now)
    decision = stages.recycle(lead.stage, why) if why else None
    if decision is not None and decision.apply:
        moved.append(
            Event(
                lead_key=lead.lead_key,
                kind="stage",
                actor="leadbridge",
                at=now,
                data={
                    "from": lead.stage.value,
                    "to": Stage.LEAD.value,
                    "reason": decision.reason,
                    "rules": result.rules,
                    "grade": result.grade,
                },
            )
        )
        lead.stage = Stage.LEAD
    return moved


def _mql_since(conn: Connection, keys: Sequence[str]) -> dict[str, datetime]:
    """When each of these MQLs became one: its newest stage event into MQL."""
    found: dict[str, datetime] = {}
    query = (
        select(events.c.lead_key, events.c.at, events.c.data)
        .where(events.c.kind == "stage")
        .order_by(events.c.id)  # a lead's events are all in one statement (`in_chunks`)
    )
    for row in rows_where_in(conn, query, events.c.lead_key, keys):
        if isinstance(row.data, dict) and row.data.get("to") == Stage.MQL.value:
            found[row.lead_key] = row.at
    return found


def _count(lead: Lead, moved: Sequence[Event], report: RescoreReport) -> None:
    for event in moved:
        if event.kind == "grade":
            report.regraded += 1
            report.grades[lead.lead_key] = f"{event.data['from']}→{event.data['to']}"
        else:
            report.recycled += 1


def _skipped(lead: Lead, settings: Settings) -> bool:
    """The same rule as ingest: DNC leads are not delivered with `dnc: skip`."""
    return lead.do_not_contact and settings.dnc == "skip"
