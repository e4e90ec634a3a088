"""Operator actions (core/app/operations.py) on more rows than a statement takes
parameters: a day's outage dead-letters a whole backfill, a bad mapping quarantines it
(the `few_parameters` store, tests/conftest.py)."""

from __future__ import annotations

from sqlalchemy import func, select

from leadbridge.core.app import operations
from leadbridge.core.domain.models import RawLead
from leadbridge.core.domain.vocabulary import QuarantineReason
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import dead_letters, outbox, quarantine

ROWS = 150  # more than a statement of `few_parameters` (tests/conftest.py) takes


def _letters(store: Store) -> None:
    now = repo.utcnow()
    letter = {"target": "crm", "error_class": "permanent", "error": "400", "created_at": now}
    with store.begin() as conn:
        repo.add_dead_letters(conn, [{**letter, "lead_key": f"{i:032x}"} for i in range(ROWS)])


def test_replaying_every_dead_letter_takes_any_number_of_them(
    few_parameters: Store, settings: Settings
) -> None:
    store = few_parameters
    _letters(store)
    replay = operations.replay_dead_letters(settings, store, actor="test", deliver_now=False)
    assert replay.replayed == ROWS
    with store.connect() as conn:
        still_open = select(func.count()).where(dead_letters.c.resolved_at.is_(None))
        assert conn.execute(still_open).scalar_one() == 0
        queued = set(conn.execute(select(outbox.c.lead_key, outbox.c.target)).all())
    assert queued == {(f"{i:032x}", "crm") for i in range(ROWS)}


def test_a_dead_letter_is_closed_once_however_many_ask(few_parameters: Store) -> None:
    """The close checks the letter is still open in the same statement: a replay and a
    discard of the same letter (two replicas, two operators) don't both act on it."""
    store = few_parameters
    _letters(store)
    with store.begin() as conn:
        ids = repo.open_dead_letter_ids(conn)
        first = repo.resolve_dead_letters(conn, ids[:10], "discarded", repo.utcnow())
        second = repo.resolve_dead_letters(conn, ids, "replayed", repo.utcnow())
    assert sorted(r.id for r in first) == sorted(ids[:10])
    assert sorted(r.id for r in second) == sorted(ids[10:])
    assert {r.resolution for r in first} == {"discarded"} and {r.resolution for r in second} == {
        "replayed"
    }


def test_processing_again_every_lead_quarantined_for_a_reason_takes_any_number(
    few_parameters: Store, settings: Settings
) -> None:
    """Nothing on the way binds a parameter per row in one statement: landing, processing
    and quarantining again all run with the short lists."""
    store = few_parameters
    body = {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "not-an-email"}}
    raws = [RawLead(source="s", source_key=str(i), kind="https", payload=body) for i in range(ROWS)]
    with store.begin() as conn:
        repo.land(conn, raws, repo.utcnow())
    assert pipeline.process_pending(store, settings).quarantined == ROWS
    again = operations.reprocess_quarantined(
        settings, store, reason=QuarantineReason.INVALID_EMAIL, actor="test"
    )
    assert again.released == ROWS and again.report.quarantined == ROWS
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == ROWS
