"""`deliver(target)`: work one target's outbox until nothing is due.

Claim a batch (up to the vendor's batch size), build each payload from the lead's current
state, skip the ones whose payload equals the last successful push (no API call at all),
upsert the rest in one request, and record each record's own outcome: links for the ones
that landed, back-off for retryable ones, dead letters (with the CRM's own error body) for
permanent ones, and "converted" for CRM records that can no longer be written. A target
whose credentials are rejected stops, and everything stays queued.

A vendor's pause (Retry-After, Salesforce REQUEST_LIMIT_EXCEEDED, HubSpot's daily limit)
binds every process on the store, now and later: the one that was told writes it down
(`remember_pause`), and every delivery, backfill, stage read or daemon start loads it first
(`honour_pause`) and sends nothing to that vendor until it ends.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from leadbridge.core.alerts import outbox as alert_outbox
from leadbridge.core.alerts.hot import hot_lead_alerts
from leadbridge.core.connector import (
    FatalError,
    HttpTarget,
    Link,
    Outcome,
    PermanentError,
    RetryableError,
    StateReporter,
)
from leadbridge.core.delivery.pauses import Pause, honour_pause, remember_pause
from leadbridge.core.domain.mapping import payload_hash
from leadbridge.core.domain.models import Event, Lead, PushResult
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.support import faults, metrics
from leadbridge.core.support.whoami import replica_name

log = logging.getLogger("leadbridge.delivery")
WORKER = replica_name()


@dataclass
class DeliveryReport:
    target: str
    batches: int = 0
    pushed: int = 0
    skipped_unchanged: int = 0
    skipped_converted: int = 0
    retrying: int = 0
    dead_lettered: int = 0
    converted: int = 0
    api_calls: int = 0
    fatal: str | None = None
    paused_until: datetime | None = None  # nothing more before then: a pause or back-offs
    pause: Pause | None = None  # the vendor's pause, when one holds the target
    errors: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return bool(self.dead_lettered or self.fatal)


_NO = PushResult(lead_key="", ok=False)


@dataclass
class _Claimed:
    row: Any
    lead: Lead
    payload_hash: str


def deliver(
    target: HttpTarget,
    store: Store,
    settings: Settings,
    *,
    worker: str = WORKER,
    on_batch: Callable[[DeliveryReport], None] | None = None,
    max_batches: int | None = None,
    stop: threading.Event | None = None,
    hot_leads: bool = True,
) -> DeliveryReport:
    """Drain the target's due outbox rows once; `stop` ends it after the batch in hand.
    Nothing is sent while a vendor's pause runs, whichever process was given it.
    `hot_leads=False` (backfill) queues no per-lead alert for what it confirms."""
    report = DeliveryReport(target=target.name)
    report.pause = honour_pause(store, target)
    if report.pause is not None:
        report.paused_until = report.pause.until
        return report
    calls_before, errors_before = target.transport.stats.requests, _errors(target)
    lease = settings.delivery.claim_ttl
    while max_batches is None or report.batches < max_batches:
        if stop is not None and stop.is_set():
            break
        with store.begin() as conn:
            rows = repo.claim_due(conn, target.name, target.batch_size, utcnow(), lease, worker)
        if not rows:
            break
        report.batches += 1
        if not _deliver_batch(target, store, settings, rows, worker, report, hot_leads):
            break
        if on_batch:
            on_batch(report)
    report.api_calls = target.transport.stats.requests - calls_before
    if report.api_calls:
        _count_calls(store, target.name, report.api_calls, _errors(target) - errors_before)
    report.pause = remember_pause(store, target)
    if report.pause is not None:
        report.paused_until = max(report.paused_until or report.pause.until, report.pause.until)
    if report.fatal is None:
        _set_health(store, target.name, "ok", None, _target_state(target))
    return report


def _deliver_batch(
    target: HttpTarget,
    store: Store,
    settings: Settings,
    rows: Sequence[Any],
    worker: str,
    report: DeliveryReport,
    hot_leads: bool = True,
) -> bool:
    """One claimed batch; returns False when the target should not be called again now."""
    with store.connect() as conn:
        leads = repo.load_leads(conn, [r.lead_key for r in rows])
        stored = repo.load_links(conn, target.name, leads)
        links = {k: Link(r.external_id, r.pushed_stage, r.state) for k, r in stored.items()}
        hashes = {k: r.pushed_hash for k, r in stored.items()}
        siblings = _siblings(conn, target, leads.values())
    done, to_push = [], []
    for row in rows:
        lead = leads.get(row.lead_key)
        link = links.get(row.lead_key)
        if lead is None or not lead.email:
            # Gone, or no address to key a CRM record on (processing quarantines these; a
            # store written before it did may still hold some): never sent.
            done.append(row.id)
        elif link is not None and link.state == "converted":
            done.append(row.id)
            report.skipped_converted += 1
        else:
            digest = payload_hash(target.payload(lead))
            if hashes.get(row.lead_key) == digest:
                done.append(row.id)
                report.skipped_unchanged += 1
            else:
                to_push.append(_Claimed(row, lead, digest))
    with store.begin() as conn:
        repo.complete(conn, done, worker)
    if not to_push:
        return True
    faults.point("delivery.after_claim")
    try:
        results = _push(target, [c.lead for c in to_push], siblings, links)
    except FatalError as exc:
        return _stop(store, target, to_push, str(exc), report)
    except RetryableError as exc:
        results = [
            PushResult(
                lead_key=c.lead.lead_key,
                ok=False,
                error_class=Outcome.RETRYABLE,
                error=str(exc),
                retry_after=exc.retry_after,
            )
            for c in to_push
        ]
    faults.point("delivery.after_upsert")  # the CRM has it; leadbridge hasn't recorded it yet
    fatal = {r.lead_key: r for r in results if r.error_class is Outcome.FATAL}
    answered = [c for c in to_push if c.lead.lead_key not in fatal]
    _record(store, target, settings, answered, results, worker, report, hot_leads)
    faults.point("delivery.after_record")
    if fatal:
        # A record refused for the target's configuration or credentials says nothing about
        # the record: it stays queued (not a dead letter) and the target stops, as for a
        # request refused as a whole.
        held = [c for c in to_push if c.lead.lead_key in fatal]
        first = next(iter(fatal.values()))
        return _stop(store, target, held, first.error or "refused (fatal)", report)
    return not any(r.error_class is Outcome.RETRYABLE for r in results)


def _siblings(conn: Connection, target: HttpTarget, leads: Any) -> list[Lead]:
    """For a target holding one record per person, the person's other leads too."""
    if not target.contact_level:
        return []
    emails = {lead.email for lead in leads if lead.email}
    keys = {lead.lead_key for lead in leads}
    return [
        s
        for group in repo.leads_by_email(conn, emails).values()
        for s in group
        if s.lead_key not in keys
    ]


def _push(
    target: HttpTarget, leads: list[Lead], siblings: list[Lead], links: dict[str, Link]
) -> list[PushResult]:
    """Upsert; a request the endpoint refuses as a whole is retried lead by lead, so one bad
    record can't sink the rest of the batch."""
    try:
        results = target.upsert([*leads, *siblings], links)
    except PermanentError as exc:
        if len(leads) == 1:
            return [
                PushResult(
                    lead_key=leads[0].lead_key,
                    ok=False,
                    error_class=Outcome.PERMANENT,
                    error=str(exc),
                    body=exc.body,
                )
            ]
        return [r for lead in leads for r in _push(target, [lead], [], links)]
    wanted = {lead.lead_key for lead in leads}
    return [r for r in results if r.lead_key in wanted]


def _stop(
    store: Store, target: HttpTarget, claimed: list[_Claimed], message: str, report: DeliveryReport
) -> bool:
    log.error(
        "target stopped: credentials or configuration rejected",
        extra={"target": target.name, "reason": message},
    )
    with store.begin() as conn:
        repo.release(conn, [c.row.id for c in claimed])
    _set_health(store, target.name, "fatal", message)
    report.fatal = message
    return False


def _record(
    store: Store,
    target: HttpTarget,
    settings: Settings,
    claimed: list[_Claimed],
    results: list[PushResult],
    worker: str,
    report: DeliveryReport,
    hot_leads: bool = True,
) -> None:
    by_key = {r.lead_key: r for r in results}
    now = utcnow()
    links, done, backoffs, dead, events = [], [], [], [], []
    related: list[dict[str, Any]] = []  # contact/account records the CRM named (issue 16)
    created: list[str] = []
    for item in claimed:
        lead, row = item.lead, item.row
        result = by_key.get(lead.lead_key) or PushResult(
            lead_key=lead.lead_key,
            ok=False,
            error_class=Outcome.RETRYABLE,
            error="no result for this record in the response",
        )
        event_data: dict[str, Any] = {
            "target": target.name,
            "ok": result.ok,
            "stage": str(lead.stage),
        }
        if result.ok:
            links.append(_link_row(target.name, lead, result.external_id, item.payload_hash, now))
            done.append(row.id)
            report.pushed += 1
            event_data["external_id"] = result.external_id
            related += _related_rows(target.name, lead.lead_key, result, now)
            if result.created:
                created.append(lead.lead_key)
                event_data["created"] = True
            if result.kept:  # field names only: the values are personal data
                event_data["kept"] = {"fields": result.kept, "why": "the CRM has a value"}
            if result.dropped:
                event_data["dropped"] = result.dropped
            if result.consent:  # an unsubscribe, a consent record: in the lead's history
                event_data["consent"] = result.consent
            if lead.last_received_at is not None:
                metrics.ARRIVAL_TO_CONFIRMED.labels(target.name).observe(
                    (now - lead.last_received_at).total_seconds()
                )
        elif result.error_class is Outcome.CONVERTED:
            links.append(
                _link_row(
                    target.name, lead, result.external_id, item.payload_hash, now, state="converted"
                )
            )
            done.append(row.id)
            report.converted += 1
            event_data["converted"] = True
        elif (
            result.error_class is Outcome.RETRYABLE
            and row.attempts + 1 < settings.delivery.max_attempts
        ):
            due = now + _backoff(settings, row.attempts, result.retry_after)
            backoffs.append(
                {
                    "id": row.id,
                    "attempts": row.attempts + 1,
                    "last_error": result.error or "",
                    "next_attempt_at": due,
                }
            )
            report.retrying += 1
            report.paused_until = max(report.paused_until or due, due)
            metrics.PUSHES.labels(target.name, "retrying").inc()
            continue  # no event per attempt: the history records outcomes, not noise
        else:
            dead.append(
                {
                    "lead_key": lead.lead_key,
                    "target": target.name,
                    "error_class": result.error_class or Outcome.PERMANENT,
                    "error": result.error or "rejected",
                    "body": _jsonable(result.body),
                    "created_at": now,
                }
            )
            done.append(row.id)
            report.dead_lettered += 1
            report.errors.append(f"{lead.lead_key}: {result.error}")
            event_data["error"] = result.error
        outcome = "ok" if result.ok else (result.error_class or Outcome.PERMANENT)
        metrics.PUSHES.labels(target.name, outcome).inc()
        events.append(
            Event(lead_key=lead.lead_key, kind="push", actor=target.name, at=now, data=event_data)
        )
    with store.begin() as conn:
        repo.save_links(conn, links)
        repo.save_record_links(conn, related)
        repo.mark_created(conn, target.name, created, now)
        repo.complete(conn, done, worker)
        repo.back_off(conn, backoffs)
        repo.add_dead_letters(conn, dead)
        repo.add_events(conn, events)
        if hot_leads:  # in the transaction that records the CRM's confirmation
            confirmed = [c.lead for c in claimed if by_key.get(c.lead.lead_key, _NO).ok]
            hot = hot_lead_alerts(confirmed, now, settings.alerts.max_age)
            alert_outbox.enqueue(conn, settings.alerts, hot, now)
    log.info(
        "delivered batch",
        extra={
            "target": target.name,
            "pushed": len(links),
            "retrying": len(backoffs),
            "dead": len(dead),
        },
    )


def _related_rows(
    target: str, lead_key: str, result: PushResult, now: datetime
) -> list[dict[str, Any]]:
    """The person's and company's records a push named (a Dataverse contact and account),
    and whether the CRM made them now."""
    return [
        {
            "lead_key": lead_key,
            "target": target,
            "kind": kind,
            "external_id": ref,
            "linked_at": now,
            "created": kind in result.related_created,
        }
        for kind, ref in result.related.items()
    ]


def _link_row(
    target: str,
    lead: Lead,
    external_id: str | None,
    digest: str,
    now: datetime,
    state: str = "active",
) -> dict[str, Any]:
    return {
        "lead_key": lead.lead_key,
        "target": target,
        "external_id": external_id,
        "pushed_hash": digest,
        "pushed_stage": str(lead.stage),
        "pushed_at": now,
        "state": state,
    }


def _backoff(settings: Settings, attempts: int, retry_after: float | None) -> timedelta:
    """The vendor's wait when it gave one, else exponential with full jitter."""
    if retry_after is not None:
        return timedelta(seconds=retry_after)
    ceiling = min(
        settings.delivery.retry_max.total_seconds(),
        settings.delivery.retry_base.total_seconds() * 2**attempts,
    )
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _target_state(target: HttpTarget) -> dict[str, Any]:
    stats = target.transport.stats
    extra = target.state() if isinstance(target, StateReporter) else {}
    return {
        "requests": stats.requests,
        "retries": stats.retries,
        "throttled": stats.throttled,
        **extra,
    }


def _errors(target: HttpTarget) -> int:
    """Error answers the target's transport has had (HTTP 4xx/5xx, retried or not)."""
    return sum(n for status, n in target.transport.stats.by_status.items() if status >= 400)


def _count_calls(store: Store, target: str, calls: int, errors: int) -> None:
    """Add a delivery run's API calls and error answers to the target's clock-hour counts in
    the store (the console's overview; every replica's runs add to the same counts)."""
    with store.begin() as conn:
        state.add_calls(conn, target, calls, errors, utcnow())


def _set_health(
    store: Store,
    target: str,
    health: str,
    message: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """The target's health for `status` and /readyz: ok, or fatal with the reason."""
    value = {"state": health, "message": message, **(details or {})}
    with store.begin() as conn:
        state.put_json(conn, state.target_health(target), value, utcnow())


def _jsonable(body: Any) -> Any:
    if body is None or isinstance(body, dict | list | str | int | float | bool):
        return body
    return str(body)
