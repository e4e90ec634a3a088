"""What an operator does to the sync, once, for the CLI, the daemon and the console alike:
replay or discard dead letters, process quarantined raw leads again.

Each operation is one function that takes who asked (`actor`: "cli", a console user's name)
and returns what happened; presentation (exit codes, tables, pages) stays with the caller.
A change to a lead is written into that lead's history with the actor and the reason, so
`leads show` (and the console's lineage page) says who replayed or discarded what, and why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from leadbridge.core.app import views
from leadbridge.core.connector import build
from leadbridge.core.delivery.deliver import DeliveryReport, deliver
from leadbridge.core.domain.models import Event
from leadbridge.core.domain.vocabulary import QuarantineReason
from leadbridge.core.ingest.pipeline import IngestReport, process_pending
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store, utcnow

log = logging.getLogger("leadbridge.operations")

# Reasons an operator can fix without touching the record: a config change (`test_leads:
# deliver`) or a newer leadbridge (a record processing broke on). Malformed and invalid-email
# records are what they are; processing them again quarantines them again.
FIXABLE = frozenset({QuarantineReason.TEST, QuarantineReason.UNPROCESSABLE})


class UnknownTarget(ValueError):
    """A target name that is neither configured nor has dead letters."""

    def __init__(self, name: str, known: set[str]) -> None:
        super().__init__(f"no target named {name!r}")
        self.name, self.known = name, sorted(known)


@dataclass
class Replay:
    """Dead letters queued again, and each target's delivery run that sent them."""

    replayed: int = 0
    reports: list[DeliveryReport] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return any(report.needs_attention for report in self.reports)


@dataclass
class Reprocessed:
    """Quarantined raw leads released for processing, and what processing made of them."""

    released: int
    report: IngestReport


def check_target(settings: Settings, store: Store, name: str | None) -> None:
    """Raise UnknownTarget unless `name` is configured or still has dead letters (a target
    since removed from the config can still be looked at and cleaned up)."""
    if name is None:
        return
    with store.connect() as conn:
        known = {t.name for t in settings.targets} | views.dead_letter_targets(conn)
    if name not in known:
        raise UnknownTarget(name, known)


def replay_dead_letters(
    settings: Settings,
    store: Store,
    *,
    letter_ids: Sequence[int] | None = None,
    target: str | None = None,
    actor: str,
    deliver_now: bool = True,
) -> Replay:
    """Close the open dead letters named (by id, or all of a target, or all when neither is
    given), queue their leads again and — unless `deliver_now` is False (the daemon's
    delivery job will pick them up) — deliver to each target concerned at once."""
    check_target(settings, store, target)
    now = utcnow()
    with store.begin() as conn:
        ids = (
            list(letter_ids) if letter_ids is not None else repo.open_dead_letter_ids(conn, target)
        )
        rows = repo.resolve_dead_letters(conn, ids, "replayed", now)
        for name in sorted({row.target for row in rows}):
            repo.enqueue(conn, [row.lead_key for row in rows if row.target == name], [name], now)
        repo.add_events(conn, [_resolved(row, "replayed", actor, None, now) for row in rows])
    log.info("dead letters replayed", extra={"count": len(rows), "actor": actor})
    replay = Replay(replayed=len(rows))
    if deliver_now and rows:
        names = {row.target for row in rows}
        replay.reports = [
            deliver(build(config, placeholder=settings.placeholder), store, settings)
            for config in settings.target_configs()
            if config.name in names
        ]
    return replay


def discard_dead_letter(store: Store, letter_id: int, *, actor: str, reason: str | None) -> bool:
    """Close one open dead letter without sending it again; False if there is none open."""
    now = utcnow()
    with store.begin() as conn:
        rows = repo.resolve_dead_letters(conn, [letter_id], "discarded", now)
        repo.add_events(conn, [_resolved(row, "discarded", actor, reason, now) for row in rows])
    if rows:
        log.info("dead letter discarded", extra={"dead_letter": letter_id, "actor": actor})
    return bool(rows)


def _resolved(row: Any, how: str, actor: str, reason: str | None, at: Any) -> Event:
    """The lead's history entry for a dead letter an operator closed."""
    data: dict[str, Any] = {"target": row.target, "dead_letter": row.id, "resolution": how}
    if reason:
        data["reason"] = reason
    return Event(lead_key=row.lead_key, kind="dead_letter", actor=actor, at=at, data=data)


def reprocess_quarantined(
    settings: Settings,
    store: Store,
    *,
    raw_ids: Sequence[int] | None = None,
    reason: QuarantineReason | None = None,
    actor: str,
) -> Reprocessed:
    """Process quarantined raw leads again (by id, or every one with `reason`) — after the
    config or leadbridge changed. A record still at fault is quarantined again with today's
    reason; the raw lead itself never left the landing table."""
    with store.begin() as conn:
        count = repo.requeue_quarantined(conn, raw_ids, reason.value if reason else None)
    log.info("quarantined raw leads processed again", extra={"count": count, "actor": actor})
    return Reprocessed(count, process_pending(store, settings) if count else IngestReport())
