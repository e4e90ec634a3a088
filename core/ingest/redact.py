"""A landed payload without its personal data: what retention and erasure leave in landing.

The row stays (landing never loses a record, and reports count rows), its payload becomes
the offer and action it carried — read by the parser of the payload's own kind, so this
holds for every source — and the time it was redacted. Nothing is kept from a payload that
can't be read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from leadbridge.core.connector import parse_raw
from leadbridge.core.domain.models import RawLead

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


def landed(row: Any) -> RawLead:
    """The raw lead a `raw_leads` row holds, as its source's parser reads it."""
    return RawLead(
        source=row.source,
        source_key=row.source_key,
        kind=row.kind,
        payload=row.payload,
        occurred_at=row.occurred_at,
    )
