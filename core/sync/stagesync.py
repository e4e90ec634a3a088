"""`pull_stages`: read stage changes back from the CRMs, reconcile, fan out, re-assert.

One cycle reads every pulling target since its watermark (plus an overlap), groups what it
read by lead, and decides each lead once (core/stages.py): a change leadbridge accepts
becomes the lead's stage — an event saying who, what and why — and goes out through the
outbox to every other target; a change it refuses is an event too, and the true stage is
pushed back to the target that disagreed. Echoes (a CRM showing what leadbridge wrote) are
nothing. The watermarks move in the same transaction as the changes they cover.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, update

from leadbridge.core.connector import HttpTarget, StageReader
from leadbridge.core.delivery.pauses import vendor_pause
from leadbridge.core.domain.mapping import payload_hash
from leadbridge.core.domain.models import Event, Lead, Stage, StageChange
from leadbridge.core.domain.stages import Decision, Policy, decide, winner
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import target_links
from leadbridge.core.support import faults

log = logging.getLogger("leadbridge.stagesync")


@dataclass
class SyncReport:
    read: dict[str, int] = field(default_factory=dict)  # changes read, per target
    api_calls: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    refused: int = 0
    unchanged: int = 0  # echoes and no-ops
    unknown: int = 0  # records leadbridge didn't write
    errors: dict[str, str] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)  # target -> "until …: why"


@dataclass
class _Cycle:
    targets: dict[str, HttpTarget]
    policies: dict[str, Policy]
    now: datetime
    leads: dict[str, Lead] = field(default_factory=dict)
    links: dict[tuple[str, str], Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    changed: dict[str, Lead] = field(default_factory=dict)
    fan_out: list[tuple[str, str]] = field(default_factory=list)  # (lead, source target)
    reassert: list[tuple[str, str, str]] = field(default_factory=list)  # lead, target, theirs


def pull_stages(
    targets: Sequence[HttpTarget],
    store: Store,
    settings: Settings,
    *,
    only: Collection[str] | None = None,
    stop: threading.Event | None = None,
) -> SyncReport:
    """One stage-sync cycle: read the pulling targets (or `only` these), fan out to all."""
    report = SyncReport()
    pulling = [t for t in targets if t.policy().pulls and (only is None or t.name in only)]
    read: dict[str, tuple[list[StageChange], str]] = {}
    for target in pulling:
        if stop is not None and stop.is_set():
            return report
        _read_one(target, store, read, report)
    faults.point("stagesync.after_read")
    cycle = _Cycle({t.name: t for t in targets}, {t.name: t.policy() for t in targets}, utcnow())
    with store.begin() as conn:
        by_lead = _group(read, conn, cycle, report)
        for key, changes in by_lead.items():
            _reconcile(cycle.leads[key], changes, cycle, report)
        _write(conn, cycle)
        for name, (_, watermark) in read.items():
            state.put(conn, state.stage_watermark(name), watermark, cycle.now)
        faults.point("stagesync.before_commit")
    log.info(
        "stage sync",
        extra={"applied": report.applied, "refused": report.refused, "read": report.read},
    )
    return report


def _read_one(
    target: HttpTarget,
    store: Store,
    read: dict[str, tuple[list[StageChange], str]],
    report: SyncReport,
) -> None:
    """Read one target's changes, unless its vendor paused it (in any process: the pause is
    in the store): the read calls the same CRM as delivery does."""
    if not isinstance(target, StageReader):  # a target pulls only if it is one: policy()
        return
    before = target.transport.stats.requests
    with vendor_pause(store, target) as pause:
        if pause is not None:
            report.paused[target.name] = f"until {pause.until.isoformat()}: {pause.why}"
            log.info("stage read paused", extra={"target": target.name, "why": pause.why})
            return
        with store.connect() as conn:
            since = state.get(conn, state.stage_watermark(target.name))
        try:
            read[target.name] = target.stage_changes(since)
        except Exception as exc:  # one CRM down must not stop the others' sync
            report.errors[target.name] = str(exc)
            log.warning("stage sync read failed", extra={"target": target.name, "reason": str(exc)})
    report.api_calls[target.name] = target.transport.stats.requests - before
    report.read[target.name] = len(read.get(target.name, ([], ""))[0])


def _group(
    read: dict[str, tuple[list[StageChange], str]],
    conn: Connection,
    cycle: _Cycle,
    report: SyncReport,
) -> dict[str, list[StageChange]]:
    """The latest change per (lead, target), grouped by lead; unknown records dropped."""
    latest: dict[tuple[str, str], StageChange] = {}
    for changes, _ in read.values():
        for change in changes:
            slot = (change.lead_key, change.target)
            if slot not in latest or change.at >= latest[slot].at:
                latest[slot] = change
    keys = {key for key, _ in latest}
    # The same per-lead locks processing (and erasure) take, in the same sorted order: a
    # lead changed by a new action meanwhile is read after that commits, never overwritten
    # with what was read before it (PostgreSQL; SQLite has one writer).
    repo.lock_leads(conn, keys)
    cycle.leads = repo.load_leads(conn, keys)
    for name in cycle.targets:
        for key, link in repo.load_links(conn, name, keys).items():
            cycle.links[(key, name)] = link
    grouped: dict[str, list[StageChange]] = {}
    for (key, _), change in latest.items():
        if key in cycle.leads:
            grouped.setdefault(key, []).append(change)
        else:
            report.unknown += 1
    return grouped


def _reconcile(lead: Lead, changes: list[StageChange], cycle: _Cycle, report: SyncReport) -> None:
    decided: list[tuple[StageChange, Decision]] = []
    for change in changes:
        link = cycle.links.get((lead.lead_key, change.target))
        decision = decide(
            lead.stage,
            change,
            cycle.policies[change.target],
            link.pushed_stage if link is not None else None,
        )
        if decision is None:
            report.unchanged += 1
        else:
            decided.append((change, decision))
    accepted = [c for c, d in decided if d.apply]
    losers: list[StageChange] = []
    if accepted:
        best, losers = winner(accepted, cycle.policies, lead.stage)
        reason = next(d.reason for c, d in decided if c is best)
        _apply(lead, best, reason, cycle)
        report.applied += 1
    for change, decision in decided:
        if decision.apply and change not in losers:
            continue
        why = (
            decision.reason
            if not decision.apply
            else (f"in the same window, {change.target} lost to the owner or the later change")
        )
        cycle.events.append(
            Event(
                lead_key=lead.lead_key,
                kind="stage_refused",
                actor=change.target,
                at=cycle.now,
                data={
                    "stage": Stage(change.stage).value,
                    "reason": why,
                    "kept": lead.stage.value,
                    "crm_at": change.at.isoformat(),
                    "raw_value": change.raw_value,
                },
            )
        )
        cycle.reassert.append((lead.lead_key, change.target, Stage(change.stage).value))
        report.refused += 1


def _apply(lead: Lead, change: StageChange, reason: str, cycle: _Cycle) -> None:
    new = Stage(change.stage)
    cycle.events.append(
        Event(
            lead_key=lead.lead_key,
            kind="stage",
            actor=change.target,
            at=change.at,
            data={
                "from": lead.stage.value,
                "to": new.value,
                "reason": reason,
                "raw_value": change.raw_value,
                "recorded_at": cycle.now.isoformat(),
            },
        )
    )
    lead.stage = new
    cycle.changed[lead.lead_key] = lead
    cycle.fan_out.append((lead.lead_key, change.target))


def _write(conn: Connection, cycle: _Cycle) -> None:
    repo.save_leads(conn, list(cycle.changed.values()), cycle.now)
    repo.add_events(conn, cycle.events)
    pushing = [name for name, t in cycle.targets.items() if t.pushes_stage]
    for key, source in cycle.fan_out:
        repo.enqueue(conn, [key], [n for n in pushing if n != source], cycle.now)
        _remember_source(conn, cycle, key, source)
    for key, target, theirs in cycle.reassert:
        if target in pushing:
            # Force the push (the payload equals what was last sent, but the CRM now differs),
            # and record what the CRM holds, so the push moves it from there (HubSpot decides
            # forward or clear-then-set from it).
            conn.execute(
                update(target_links)
                .where(target_links.c.lead_key == key, target_links.c.target == target)
                .values(pushed_hash=None, pushed_stage=theirs)
            )
            repo.enqueue(conn, [key], [target], cycle.now)


def _remember_source(conn: Connection, cycle: _Cycle, key: str, source: str) -> None:
    """The CRM that made the change already holds it: record that, so it isn't pushed back
    to it (a call for nothing) nor read back later as a change (an echo)."""
    target, lead = cycle.targets[source], cycle.changed[key]
    link = cycle.links.get((key, source))
    repo.save_links(
        conn,
        [
            {
                "lead_key": key,
                "target": source,
                "external_id": link.external_id if link else None,
                "pushed_hash": payload_hash(target.payload(lead)),
                "pushed_stage": lead.stage.value,
                "pushed_at": link.pushed_at if link else cycle.now,
                "state": link.state if link else "active",
            }
        ],
    )
