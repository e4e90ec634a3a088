"""Operator actions (core/app/operations.py) on more rows than a statement takes
parameters: a day's outage dead-letters a whole backfill, a bad mapping quarantines it."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import event, func, select

from leadbridge.core.app import operations
from leadbridge.core.domain.models import RawLead
from leadbridge.core.domain.vocabulary import QuarantineReason
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import dead_letters, outbox, quarantine

LIMIT = 100  # SQLite's limit on a statement's parameters, lowered from 32,766
LETTERS = 150


@pytest.fixture
def few_parameters(store: Store) -> Store:
    """The store's SQLite connections take at most LIMIT parameters a statement."""

    def lower(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, LIMIT)

    event.listen(store.engine, "checkout", lower)
    return store


def test_replaying_every_dead_letter_takes_any_number_of_them(
    few_parameters: Store, settings: Settings
) -> None:
    store = few_parameters
    now = repo.utcnow()
    letter = {"target": "crm", "error_class": "permanent", "error": "400", "created_at": now}
    with store.begin() as conn:
        repo.add_dead_letters(conn, [{**letter, "lead_key": f"{i:032x}"} for i in range(LETTERS)])
    replay = operations.replay_dead_letters(settings, store, actor="test", deliver_now=False)
    assert replay.replayed == LETTERS
    with store.connect() as conn:
        still_open = select(func.count()).where(dead_letters.c.resolved_at.is_(None))
        assert conn.execute(still_open).scalar_one() == 0
        queued = set(conn.execute(select(outbox.c.lead_key, outbox.c.target)).all())
    assert queued == {(f"{i:032x}", "crm") for i in range(LETTERS)}


def test_processing_again_every_lead_quarantined_for_a_reason_takes_any_number(
    few_parameters: Store, settings: Settings
) -> None:
    """Nothing on the way binds a parameter per row in one statement: landing, processing
    and quarantining again all run under the lowered limit."""
    store = few_parameters
    body = {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "not-an-email"}}
    raws = [RawLead(source="s", source_key=str(i), kind="https", payload=body) for i in range(150)]
    with store.begin() as conn:
        repo.land(conn, raws, repo.utcnow())
    assert pipeline.process_pending(store, settings).quarantined == 150
    again = operations.reprocess_quarantined(
        settings, store, reason=QuarantineReason.INVALID_EMAIL, actor="test"
    )
    assert again.released == 150 and again.report.quarantined == 150
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 150
