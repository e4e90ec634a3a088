"""Retention: personal data in landed raw leads is kept only as long as the config says.

A raw lead older than `retention.raw_days` (a quarantined one: `quarantine_days`) has its
payload replaced by what reports need and nothing personal: the offer and the action it
carried, and when it was redacted. The row itself stays, with its source, kind, times,
status and lead key, so every funnel figure is the same before and after a prune, and the
raw-lead count (landing is never lost) still adds up. The lead built from it is the
operational record and is not touched here (erasure is `leads forget`).

A quarantined record's message can quote the value at fault (an address that isn't one), so
it is replaced by one naming only the reason; the field and the fix stay.

Idempotent and resumable: each batch commits on its own and marks its rows `redacted_at`;
a rerun picks up where a crash left it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, not_, or_, select, update

from leadbridge.core.ingest.redact import redact
from leadbridge.core.settings import RetentionSettings
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import quarantine, raw_leads

log = logging.getLogger("leadbridge.retention")
BATCH = 500


@dataclass
class PruneReport:
    """How many landed raw leads had their personal data redacted, processed and quarantined."""

    raw_redacted: int = 0
    quarantine_redacted: int = 0

    @property
    def total(self) -> int:
        return self.raw_redacted + self.quarantine_redacted


def prune(store: Store, retention: RetentionSettings, now: datetime) -> PruneReport:
    """Redact every raw lead past its retention, a batch per transaction."""
    report = PruneReport()
    while True:
        with store.begin() as conn:
            rows = _due(conn, retention, now)
            if not rows:
                break
            _redact(conn, rows, now)
        quarantined = sum(1 for row in rows if row.status == "quarantined")
        report.quarantine_redacted += quarantined
        report.raw_redacted += len(rows) - quarantined
    if report.total:
        log.info(
            "personal data past retention redacted",
            extra={"raw": report.raw_redacted, "quarantined": report.quarantine_redacted},
        )
    return report


def _due(conn: Connection, retention: RetentionSettings, now: datetime) -> Sequence[Any]:
    """The next batch of unredacted raw leads past their retention. Rows still waiting to
    be processed (`new`) are never redacted: processing needs what they hold."""
    windows = []
    if retention.raw_days is not None:
        windows.append(
            and_(
                raw_leads.c.status == "processed",
                raw_leads.c.received_at < now - timedelta(days=retention.raw_days),
            )
        )
    if retention.quarantine_days is not None:
        windows.append(
            and_(
                raw_leads.c.status == "quarantined",
                raw_leads.c.received_at < now - timedelta(days=retention.quarantine_days),
            )
        )
    if not windows:
        return []
    stmt = (
        select(raw_leads)
        .where(raw_leads.c.redacted_at.is_(None), or_(*windows))
        .order_by(raw_leads.c.id)
        .limit(BATCH)
    )
    return list(conn.execute(stmt))


def _redact(conn: Connection, rows: Sequence[Any], now: datetime) -> None:
    redact(conn, rows, now)
    quarantined = [row.id for row in rows if row.status == "quarantined"]
    if quarantined:
        conn.execute(
            update(quarantine)
            .where(quarantine.c.raw_lead_id.in_(quarantined), not_(quarantine.c.message == ""))
            .values(message="redacted after its retention (retention.quarantine_days)")
        )
