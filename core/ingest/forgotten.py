"""A person who asked to be forgotten is never a lead again.

Processing asks here, once per batch, which of the batch's people are on the suppression
list (`leads forget`): their raw leads are quarantined `erased` and their payloads redacted
in the same transaction, so the address is stored nowhere past it. One query per batch, by
the keyed hashes of the batch's addresses; nothing is asked while the list is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, exists, select

from leadbridge.core.domain.models import MarketplaceLead
from leadbridge.core.domain.suppression import person_hash
from leadbridge.core.settings import Settings
from leadbridge.core.store.tables import suppressions

Parsed = tuple[Any, MarketplaceLead]


def split_forgotten(
    conn: Connection, parsed: Sequence[Parsed], settings: Settings
) -> tuple[list[Parsed], list[Parsed]]:
    """(the rows to process, the rows of forgotten people)."""
    key = settings.privacy.suppression_key
    if key is None or not parsed or not conn.execute(select(exists(suppressions))).scalar():
        return list(parsed), []
    secret = key.get_secret_value()
    hashes = {id(row): person_hash(secret, lead.email or "") for row, lead in parsed}
    known = set(
        conn.execute(
            select(suppressions.c.person_hash).where(
                suppressions.c.person_hash.in_(set(hashes.values()))
            )
        ).scalars()
    )
    keep = [(row, lead) for row, lead in parsed if hashes[id(row)] not in known]
    forgotten = [(row, lead) for row, lead in parsed if hashes[id(row)] in known]
    return keep, forgotten
