"""Microsoft commercial-marketplace lead sources: parser, Azure Table, HTTPS, files, referrals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from leadbridge.core.connector import PayloadParser
from leadbridge.core.domain.models import MarketplaceLead


def parse_payload(kind: str, payload: Any, occurred_at: datetime | None) -> MarketplaceLead:
    """Dispatch a landed payload to the parser for its shape ("https", "table", "csv")."""
    from leadbridge.connectors.marketplace.file import parse_csv_row
    from leadbridge.connectors.marketplace.https import UNPARSED, parse_https_payload
    from leadbridge.connectors.marketplace.referrals import parse_referral
    from leadbridge.connectors.marketplace.table import parse_table_row
    from leadbridge.core.connector import MalformedLead
    from leadbridge.core.domain.normalize import MAX_JSON_DEPTH, nesting_depth

    parsers = {
        "https": parse_https_payload,
        "table": parse_table_row,
        "csv": parse_csv_row,
        "referral": parse_referral,
    }
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
