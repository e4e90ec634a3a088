"""A landed payload without its personal data: what retention and erasure leave in landing.

The row stays (landing never loses a record, and reports count rows), its payload becomes
the offer and action it carried — read by the parser of the payload's own kind, so this
holds for every source — and the time it was redacted. Nothing is kept from a payload that
can't be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, update

from leadbridge.core.connector import parse_raw
from leadbridge.core.domain.models import RawLead
from leadbridge.core.store.tables import raw_leads

REDACTED_MARK = "_redacted_at"  # the key every redacted payload carries
KEPT = ("channel", "action", "offer_id", "offer_title")  # what reports group by


def redacted_payload(row: Any, now: datetime) -> dict[str, Any]:
    """The payload a landed raw lead (`row`: source, source_key, kind, payload, occurred_at)
    keeps once its personal data is gone."""
    kept: dict[str, Any] = {REDACTED_MARK: now.isoformat()}
    try:
        parsed = parse_raw(landed(row))
    except Exception:  # malformed, or hostile: nothing is kept, and the batch goes on
        return kept
    for name in KEPT:
        value = getattr(parsed, name, None)
        if value:
            kept[name] = value
    return kept


def redact(conn: Connection, rows: Sequence[Any], now: datetime) -> None:
    """Replace these landed raw leads' payloads by what carries no personal data, and mark
    them redacted (retention, and a forgotten person's new action)."""
    if rows:
        conn.execute(
            update(raw_leads)
            .where(raw_leads.c.id == bindparam("rid"))
            .values(payload=bindparam("kept"), redacted_at=now),
            [{"rid": row.id, "kept": redacted_payload(row, now)} for row in rows],
        )


def landed(row: Any) -> RawLead:
    """The raw lead a `raw_leads` row holds, as its source's parser reads it."""
    return RawLead(
        source=row.source,
        source_key=row.source_key,
        kind=row.kind,
        payload=row.payload,
        occurred_at=row.occurred_at,
    )
