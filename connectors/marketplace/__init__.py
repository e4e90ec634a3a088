"""Microsoft commercial-marketplace lead sources: parser, Azure Table, HTTPS, files, referrals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from leadbridge.core.connector import MalformedLead, PayloadParser
from leadbridge.core.domain.models import MarketplaceLead
from leadbridge.core.domain.normalize import MAX_JSON_DEPTH, nesting_depth

# A landed-but-unreadable record is kept as {UNPARSED: its original text, "_error": why}
# (https.py `unparsed`): processing quarantines it with that reason, and the text is there
# to fix and re-send.
UNPARSED = "_unparsed"
_Parser = Callable[[Any, datetime | None], MarketplaceLead]


@cache
def _parsers() -> dict[str, _Parser]:
    """The parser per raw kind, imported on first use: the modules import this package
    (a top-level import would be a cycle), and importing them on every call was 2 % of an
    ingest."""
    from leadbridge.connectors.marketplace.file import parse_csv_row
    from leadbridge.connectors.marketplace.https import parse_https_payload
    from leadbridge.connectors.marketplace.referrals import parse_referral
    from leadbridge.connectors.marketplace.table import parse_table_row

    return {
        "https": parse_https_payload,
        "table": parse_table_row,
        "csv": parse_csv_row,
        "referral": parse_referral,
    }


def parse_payload(kind: str, payload: Any, occurred_at: datetime | None) -> MarketplaceLead:
    """Dispatch a landed payload to the parser for its shape ("https", "table", "csv")."""
    parsers = _parsers()
    if isinstance(payload, dict) and UNPARSED in payload:
        raise MalformedLead(
            "body",
            f"not readable: {payload.get('_error', 'unparsed')}",
            "fix the record at the source and ingest it again; the original is kept in landing",
        )
    if nesting_depth(payload) > MAX_JSON_DEPTH:
        # Landed before landing bounded depth, or handed in directly: every parser below
        # walks or reprs the payload, so nothing deeper than the bound goes past here.
        raise MalformedLead(
            "body",
            f"nested more than {MAX_JSON_DEPTH} levels deep",
            "a marketplace lead is a flat object; fix the record at the source and ingest "
            "it again; the original is kept in landing",
        )
    if kind not in parsers:
        raise ValueError(f"unknown raw lead kind {kind!r}")
    return parsers[kind](payload, occurred_at)


class MarketplacePayloads(PayloadParser):
    """The marketplace sources' raw leads, parsed when core processes them: each source
    names the raw kinds it lands in `payload_kinds`."""

    @classmethod
    def parse_payload(
        cls, kind: str, payload: Any, occurred_at: datetime | None
    ) -> MarketplaceLead:
        return parse_payload(kind, payload, occurred_at)
