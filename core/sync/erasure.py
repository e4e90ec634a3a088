"""The right to erasure: `leadbridge leads forget EMAIL`, in the store and in every target.

In one transaction: the person's keyed hash joins the suppression list (a new raw lead with
the address is quarantined `erased` from then on), the erasure's plan is written — per
target, the CRM records to delete, by id — and everything the store holds on the person is
deleted: every row of every table keyed by one of their leads, the raw leads quarantined
before they became one, their contact row. On SQLite the deleted pages are overwritten
(`secure_delete`) and the write-ahead log is checkpointed and truncated, so no copy stays in
the store's files. Then the plan is carried out target by target.

Do no harm: a CRM record is deleted only when the CRM said it created it for leadbridge
(`target_links.created_at`); one leadbridge only updated — a person's record that was there
before — is `kept`, and the plan says to erase it by hand. A target that only notifies (a
webhook: it deletes nothing, it tells the receiver) is told about every record.

Resumable and idempotent: the plan is committed before any CRM is called, each record's
state is saved as its target answers, and a record a target couldn't delete now (throttled,
down, credentials refused) stays `pending` — the daemon's `erasures` job and a rerun of
`forget` carry it out later. The erasure is audited without personal data: its id, when,
who asked, what left the store, what each target confirmed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, Table, cast, func, select, update

from leadbridge.core.connector import Eraser, FatalError, HttpTarget, RetryableError
from leadbridge.core.domain import identity
from leadbridge.core.domain.models import ErasureRecord, ErasureResult
from leadbridge.core.domain.suppression import person_hash
from leadbridge.core.domain.vocabulary import Outcome
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo
from leadbridge.core.store.dialect import in_chunks
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import (
    contacts,
    erasures,
    leads,
    metadata,
    quarantine,
    raw_leads,
    record_links,
    suppressions,
    target_links,
)
from leadbridge.core.support import faults

log = logging.getLogger("leadbridge.erasure")
ERASE_BATCH = 100  # records per `erase` call

PENDING, DONE, REFUSED, KEPT = "pending", "done", "refused", "kept"
NOT_CREATED = (
    "not created by leadbridge (it updated a record that was there): erase it in the CRM by hand"
)
NO_ERASER = "this connector can't delete records: erase it in the CRM by hand"
NOT_CONFIGURED = "the target is no longer configured: erase it in the CRM by hand"


class NoSuppressionKey(ValueError):
    """`privacy.suppression_key` is not set: a forgotten person couldn't be recognised."""


@dataclass
class ErasureReport:
    """One erasure: what left the store, and each target's records by state."""

    erasure_id: int | None
    removed: dict[str, int] = field(default_factory=dict)
    targets: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not any(states.get(PENDING) for states in self.targets.values())

    @property
    def needs_attention(self) -> bool:
        """Something is still to be done: pending, refused, or kept for a person to erase."""
        return any(
            states.get(PENDING) or states.get(REFUSED) or states.get(KEPT)
            for states in self.targets.values()
        )


def forget(
    store: Store,
    settings: Settings,
    email: str,
    targets: Sequence[HttpTarget],
    *,
    actor: str,
    now: datetime,
) -> ErasureReport:
    """Forget the person with `email` in the store now, then in every target; an earlier
    erasure of theirs still open is carried on too."""
    digest = hash_of(settings, email)
    address = email.strip().lower()
    with store.begin() as conn:
        _lock_person(conn, address)
        repo.insert_ignore(
            conn, suppressions, [{"person_hash": digest, "created_at": now}], ["person_hash"]
        )
        keys = list(
            conn.execute(select(leads.c.lead_key).where(leads.c.email == address)).scalars()
        )
        repo.lock_leads(conn, keys)  # a stage sync holding one finishes first, never after
        plan = _plan(conn, keys, targets)
        _overwrite_deleted_pages(conn)
        removed = _remove(conn, keys, address)
        erasure_id: int | None = None
        if keys or any(removed.values()):
            inserted = conn.execute(
                erasures.insert().values(
                    person_hash=digest,
                    requested_at=now,
                    requested_by=actor,
                    removed=removed,
                    plan=plan,
                    finished_at=None if _open(plan) else now,
                )
            ).inserted_primary_key
            erasure_id = None if inserted is None else int(inserted[0])
    _checkpoint(store)
    faults.point("erasure.after_store")  # gone from the store; no CRM asked yet
    log.info(
        "person forgotten in the store",
        extra={"erasure": erasure_id, "actor": actor, "tables": len(removed)},
    )
    report = ErasureReport(erasure_id=erasure_id, removed=removed)
    carried = carry_out(store, targets, now, person=digest, report=report)
    if erasure_id is not None and erasure_id not in carried:  # nothing was left to ask
        _count(plan, report)
    return report


def hash_of(settings: Settings, email: str) -> str:
    key = settings.privacy.suppression_key
    if key is None:
        raise NoSuppressionKey("privacy.suppression_key is not set")
    return person_hash(key.get_secret_value(), email)


def _lock_person(conn: Connection, address: str) -> None:
    """Processing merging a new action of this person waits until the erasure commits (and
    then finds them on the suppression list): the same lock, in the same order."""
    if conn.dialect.name == "postgresql":
        repo.lock_leads(conn, [identity.person_key(address)])
    else:
        repo.take_write_lock(conn)


# --- the plan --------------------------------------------------------------------------------


def _plan(
    conn: Connection, keys: Sequence[str], targets: Sequence[HttpTarget]
) -> dict[str, list[dict[str, Any]]]:
    """Per target, each CRM record of the person once, with what is to become of it."""
    by_name = {target.name: target for target in targets}
    # One record may be named by several leads (the contact both of a person's leads hang
    # off): leadbridge made it if the CRM said so for any of them.
    records: dict[tuple[str, str], tuple[str, bool]] = {}
    for target_name, kind, external_id, created in _records(conn, keys):
        if external_id:
            _, made = records.get((target_name, external_id), (kind, False))
            records[(target_name, external_id)] = (kind, made or created)
    plan: dict[str, list[dict[str, Any]]] = {}
    for (target_name, external_id), (kind, created) in records.items():
        state, why = _verdict(by_name.get(target_name), created)
        entry = {"kind": kind, "external_id": external_id, "state": state, "error": why}
        plan.setdefault(target_name, []).append(entry)
    return plan


def _records(conn: Connection, keys: Sequence[str]) -> list[tuple[str, str, str, bool]]:
    """(target, kind, external id, created by leadbridge) for every record of these leads."""
    if not keys:
        return []
    found: list[tuple[str, str, str, bool]] = [
        (row.target, "lead", row.external_id, row.created_at is not None)
        for row in conn.execute(
            select(target_links)
            .where(target_links.c.lead_key.in_(keys))
            .order_by(target_links.c.target, target_links.c.lead_key)
        )
    ]
    found += [
        (row.target, "contact", row.external_id, row.created_at is not None)
        for row in conn.execute(
            select(record_links).where(
                record_links.c.lead_key.in_(keys), record_links.c.kind == "contact"
            )
        )
    ]
    return found


def _verdict(target: HttpTarget | None, created: bool) -> tuple[str, str | None]:
    if target is None:
        return KEPT, NOT_CONFIGURED
    if not isinstance(target, Eraser):
        return KEPT, NO_ERASER
    if not created and not getattr(target, "notifies_only", False):
        return KEPT, NOT_CREATED
    return PENDING, None


def _open(plan: dict[str, list[dict[str, Any]]]) -> bool:
    return any(entry["state"] == PENDING for entries in plan.values() for entry in entries)


# --- the store -------------------------------------------------------------------------------


def _remove(conn: Connection, keys: Sequence[str], address: str) -> dict[str, int]:
    """Delete every row keyed by one of the person's leads, in every table (a table added
    later is covered too), the raw leads quarantined before they became one, the contact."""
    removed: dict[str, int] = {}
    quarantined = quarantined_naming(conn, address)
    if quarantined:
        removed["quarantine"] = _delete(conn, quarantine, quarantine.c.raw_lead_id, quarantined)
        removed["raw_leads"] = _delete(conn, raw_leads, raw_leads.c.id, quarantined)
    for table in _keyed_tables():
        if keys:
            count = _delete(conn, table, table.c.lead_key, keys)
            name = str(table.name)  # a quoted_name: orjson takes plain str keys only
            removed[name] = removed.get(name, 0) + count
    removed["contacts"] = conn.execute(
        contacts.delete().where(contacts.c.email == address)
    ).rowcount
    return {name: count for name, count in removed.items() if count}


def _keyed_tables() -> list[Table]:
    """Every table with a lead_key column, children before the tables they point to."""
    return [t for t in reversed(metadata.sorted_tables) if "lead_key" in t.c]


def _delete(conn: Connection, table: Table, column: Any, values: Sequence[Any]) -> int:
    return sum(
        conn.execute(table.delete().where(clause)).rowcount
        for clause in in_chunks(conn, column, values)
    )


def quarantined_naming(conn: Connection, address: str) -> list[int]:
    """Raw leads quarantined before they became a lead whose payload holds the address, in
    any field and any case. The quarantine is small, so reading its payloads as text is
    cheap; the address is a bound parameter with LIKE's wildcards escaped."""
    pattern = "%" + address.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    stmt = (
        select(raw_leads.c.id)
        .join(quarantine, quarantine.c.raw_lead_id == raw_leads.c.id)
        .where(func.lower(cast(raw_leads.c.payload, String)).like(pattern, escape="\\"))
        .order_by(raw_leads.c.id)
    )
    return list(conn.execute(stmt).scalars())


def _overwrite_deleted_pages(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete = ON")


def _checkpoint(store: Store) -> None:
    """SQLite: move the log's pages into the database file and truncate the log, so the
    deleted rows' old pages leave the -wal file too. (PostgreSQL: docs/privacy.md, VACUUM.)"""
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


# --- the targets -----------------------------------------------------------------------------


def carry_out(
    store: Store,
    targets: Sequence[HttpTarget],
    now: datetime,
    *,
    person: str | None = None,
    report: ErasureReport | None = None,
) -> list[int]:
    """Ask each target to delete the records still pending in open erasures (of one person,
    or all); save each answer as it comes. Returns the erasures it carried on; `report`
    gets their records' states and the targets' errors."""
    report = report or ErasureReport(erasure_id=None)
    by_name = {target.name: target for target in targets}
    with store.connect() as conn:
        stmt = select(erasures).where(erasures.c.finished_at.is_(None)).order_by(erasures.c.id)
        if person is not None:
            stmt = stmt.where(erasures.c.person_hash == person)
        open_ones = list(conn.execute(stmt))
    for erasure in open_ones:
        plan = {name: [dict(entry) for entry in entries] for name, entries in erasure.plan.items()}
        for name, entries in plan.items():
            target = by_name.get(name)
            if isinstance(target, Eraser):
                _ask(target, [e for e in entries if e["state"] == PENDING], report)
            _save(store, erasure.id, plan, now)
        _count(plan, report)
        if report.erasure_id is None:
            report.erasure_id = erasure.id
    return [erasure.id for erasure in open_ones]


def _count(plan: dict[str, list[dict[str, Any]]], report: ErasureReport) -> None:
    """Each target's records of one erasure, counted by state, into the report."""
    for name, entries in plan.items():
        states = report.targets.setdefault(name, {})
        for entry in entries:
            states[entry["state"]] = states.get(entry["state"], 0) + 1


def _ask(target: Any, pending: list[dict[str, Any]], report: ErasureReport) -> None:
    for start in range(0, len(pending), ERASE_BATCH):
        chunk = pending[start : start + ERASE_BATCH]
        records = [ErasureRecord(kind=e["kind"], external_id=e["external_id"]) for e in chunk]
        try:
            results = target.erase(records)
        except (FatalError, RetryableError) as exc:  # all stay pending: asked again later
            for entry in chunk:
                entry["error"] = str(exc)
            report.errors.append(f"{target.name}: {exc}")
            return
        answered = {result.external_id: result for result in results}
        for entry in chunk:
            _apply(entry, answered.get(entry["external_id"]))


def _apply(entry: dict[str, Any], result: ErasureResult | None) -> None:
    if result is None:
        entry["error"] = "no answer for this record: asked again later"
    elif result.ok:
        entry["state"], entry["error"] = DONE, None
    elif result.error_class is Outcome.RETRYABLE:
        entry["error"] = result.error
    else:
        entry["state"], entry["error"] = REFUSED, result.error or "refused"


def _save(store: Store, erasure_id: int, plan: dict[str, Any], now: datetime) -> None:
    with store.begin() as conn:
        conn.execute(
            update(erasures)
            .where(erasures.c.id == erasure_id)
            .values(plan=plan, finished_at=None if _open(plan) else now)
        )


def pending_count(conn: Connection) -> int:
    """Erasures not finished yet (`status`)."""
    stmt = select(func.count()).select_from(erasures).where(erasures.c.finished_at.is_(None))
    return int(conn.execute(stmt).scalar_one())
