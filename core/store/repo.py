"""Repository functions: every SQL statement the pipeline and the CLI run, on a Connection.

Callers own the transaction (`with store.begin() as conn:`), so a lead, its events and its
outbox rows commit together, and raw leads commit with their source cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.sql import ClauseElement

from leadbridge.core.domain.identity import person_key
from leadbridge.core.domain.models import Event, Lead, RawLead, lead_from_json, lead_to_json
from leadbridge.core.store import bulk, migrate
from leadbridge.core.store.db import OPEN_ERRORS, StoreUnavailable, make_engine
from leadbridge.core.store.dialect import in_chunks, rows_where_in
from leadbridge.core.store.dialect import insert as _insert
from leadbridge.core.store.dialect import insert_for as _insert_for
from leadbridge.core.store.tables import (
    contacts,
    cursors,
    dead_letters,
    events,
    leads,
    offer_aliases,
    outbox,
    quarantine,
    raw_leads,
    record_links,
    target_links,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """The engine plus the migrations check; hand out transactions with `begin()`.

    Opening it is where a wrong `store` shows (a database that is down, a wrong password, a
    driver that isn't there): that is raised as `StoreUnavailable`, the one error callers
    turn into a message. With `upgrade=False` nothing connects until first used; `check()`
    then says whether it can.
    """

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        try:
            self.engine: Engine = make_engine(url)
            if upgrade:
                migrate.upgrade(self.engine)
        except OPEN_ERRORS as exc:
            raise StoreUnavailable.from_error(exc) from exc

    def check(self) -> str | None:
        """Connect once; the revision the store is at (None: empty). Raises StoreUnavailable."""
        try:
            return migrate.current_revision(self.engine)
        except OPEN_ERRORS as exc:
            raise StoreUnavailable.from_error(exc) from exc

    def begin(self) -> AbstractContextManager[Connection]:
        return self.engine.begin()

    def connect(self) -> Connection:
        return self.engine.connect()

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A connection whose reads all see the store as it was at the first of them: for a
        report made of several statements, which an ingest committing between two of them
        would otherwise leave counting a raw lead whose lead it never read.

        PostgreSQL: a REPEATABLE READ, read-only transaction. SQLite: one read transaction,
        which WAL keeps a snapshot while writers go on (pysqlite begins none for a SELECT:
        each statement would see the latest commit). Closing the connection rolls it back.
        """
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            else:
                conn.exec_driver_sql("BEGIN")
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """INSERT … ON CONFLICT DO NOTHING, on SQLite and PostgreSQL alike."""
    if rows:
        conn.execute(_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys)), rows)


def upsert_rows(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """INSERT … ON CONFLICT DO UPDATE of every non-key column given."""
    if not rows:
        return
    stmt = _insert(conn, table)
    columns = [c for c in rows[0] if c not in keys]
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns}
    )
    conn.execute(stmt, rows)


# --- landing ---------------------------------------------------------------------------


_LAND = bulk.Bulk(
    lambda dialect: _insert_for(dialect, raw_leads).on_conflict_do_nothing(
        index_elements=["source", "source_key"]
    ),
    ["source", "source_key", "kind", "payload", "received_at", "occurred_at", "status"],
)


def land(conn: Connection, raws: Sequence[RawLead], received_at: datetime) -> None:
    """Store raw leads; the same (source, source_key) twice is one row, the first."""
    time = bulk.time(conn)
    now = time(received_at)
    _LAND.execute(
        conn,
        [
            {
                "source": r.source,
                "source_key": r.source_key,
                "kind": r.kind,
                "payload": bulk.json(r.payload),
                "received_at": now if r.received_at is None else time(r.received_at),
                "occurred_at": time(r.occurred_at),
                "status": "new",
            }
            for r in raws
        ],
    )


def pending_raw_leads(conn: Connection, limit: int, through: int | None = None) -> list[Any]:
    """Landed raw leads not processed yet (with ids up to `through`, when given). On
    PostgreSQL they stay locked until the caller's transaction ends, and rows another worker
    holds are skipped: no raw lead is processed by two workers, and none waits on another."""
    stmt = select(raw_leads).where(raw_leads.c.status == "new")
    if through is not None:
        stmt = stmt.where(raw_leads.c.id <= through)
    stmt = stmt.order_by(raw_leads.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    else:
        take_write_lock(conn)
    return list(conn.execute(stmt).all())  # one fetchall, not a fetch a row


def last_raw_lead_id(conn: Connection) -> int | None:
    """The highest raw lead id: what an ingest has landed so far, to process up to."""
    found: int | None = conn.execute(select(func.max(raw_leads.c.id))).scalar()
    return found


def take_write_lock(conn: Connection) -> None:
    """SQLite: take the database's one write lock before reading what to process.

    SQLite has no row locks: two processors (an ingest run and the processing job, or the
    daemon and a one-off `leadbridge ingest`) would both read the same `new` rows and both
    merge them — doubled events, doubled counts. A write statement as the transaction's
    first makes the second processor wait for the first to commit, and then read fresh.
    """
    conn.execute(text("UPDATE raw_leads SET status = status WHERE 0"))


def pending_raw_leads_by_id(conn: Connection, ids: Sequence[int]) -> list[Any]:
    """These landed raw leads, those still unprocessed, locked like `pending_raw_leads`:
    processing a batch again record by record after the database refused it as a whole."""
    stmt = (
        select(raw_leads)
        .where(raw_leads.c.status == "new", raw_leads.c.id.in_(list(ids)))
        .order_by(raw_leads.c.id)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    else:
        take_write_lock(conn)
    return list(conn.execute(stmt))


def lock_leads(conn: Connection, keys: Iterable[str]) -> None:
    """Serialise changes to the same leads across workers (PostgreSQL; SQLite has one writer).

    Transaction-scoped advisory locks, taken in sorted order so two workers can't deadlock,
    and they cover leads that don't exist yet, which row locks can't.
    """
    if conn.dialect.name != "postgresql":
        return
    ordered = sorted(set(keys))
    if ordered:  # one round trip: the locks are taken as unnest yields them, in array order
        conn.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) "
                "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n)"
            ),
            {"keys": ordered},
        )


def lock_people(conn: Connection, emails: Iterable[str], keys: Iterable[str] = ()) -> None:
    """Lock these people, then every lead of theirs and `keys` (leads about to be made):
    the order every writer takes them in, so none waits on another in a cycle.

    On SQLite, which has one writer, there is nothing to lock, and the lookup of the
    people's lead keys — a query per batch, made only to lock them — is skipped too."""
    if conn.dialect.name != "postgresql":
        return
    emails = set(emails)
    lock_leads(conn, [person_key(email) for email in emails])
    lock_leads(conn, set(keys) | lead_keys_by_email(conn, emails))


_MARK_RAW = bulk.Bulk(
    lambda _dialect: (
        update(raw_leads)
        .where(raw_leads.c.id == bindparam("rid"))
        .values(status=bindparam("status"), lead_key=bindparam("lkey"))
    )
)


def mark_raw(conn: Connection, updates: Sequence[dict[str, Any]]) -> None:
    """Set status and lead key of processed raw leads (`rid`, `status`, `lead_key`)."""
    _MARK_RAW.execute(
        conn, [{"rid": u["rid"], "status": u["status"], "lkey": u["lead_key"]} for u in updates]
    )


def add_quarantine(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    insert_ignore(conn, quarantine, rows, ["raw_lead_id"])


def requeue_quarantined(conn: Connection, raw_ids: Sequence[int] | None, reason: str | None) -> int:
    """Quarantined raw leads (these ids, and/or every one with `reason`) back to `new`, their
    quarantine rows gone; how many. One whose payload was redacted after its retention
    stays: it no longer holds what processing needs.

    The ids are read once, under a lock (SQLite's write lock; on PostgreSQL the quarantine
    rows' own), and exactly those rows change: one another replica quarantines meanwhile
    stays quarantined, listed. They are bound through `in_chunks`: a reason can cover a
    whole backfill, more rows than a statement takes parameters.
    """
    chosen = (
        select(quarantine.c.raw_lead_id)
        .join(raw_leads, raw_leads.c.id == quarantine.c.raw_lead_id)
        .where(raw_leads.c.redacted_at.is_(None))
    )
    if raw_ids is not None:
        chosen = chosen.where(quarantine.c.raw_lead_id.in_(list(raw_ids)))
    if reason is not None:
        chosen = chosen.where(quarantine.c.reason == reason)
    if conn.dialect.name == "postgresql":
        chosen = chosen.with_for_update(of=quarantine)
    else:
        take_write_lock(conn)
    ids = list(conn.execute(chosen).scalars())
    requeue = update(raw_leads).where(raw_leads.c.status == "quarantined").values(status="new")
    for clause in in_chunks(conn, raw_leads.c.id, ids):
        conn.execute(requeue.where(clause))
    for clause in in_chunks(conn, quarantine.c.raw_lead_id, ids):
        conn.execute(quarantine.delete().where(clause))
    return len(ids)


# --- cursors ---------------------------------------------------------------------------


def get_cursor(conn: Connection, name: str) -> str | None:
    return conn.execute(select(cursors.c.value).where(cursors.c.name == name)).scalar_one_or_none()


def set_cursor(conn: Connection, name: str, value: str, at: datetime) -> None:
    upsert_rows(conn, cursors, [{"name": name, "value": value, "updated_at": at}], ["name"])


def all_cursors(conn: Connection) -> list[Any]:
    return list(conn.execute(select(cursors).order_by(cursors.c.name)))


# --- leads -----------------------------------------------------------------------------


def load_leads(conn: Connection, keys: Iterable[str]) -> dict[str, Lead]:
    rows = rows_where_in(conn, select(leads.c.lead_key, leads.c.data), leads.c.lead_key, keys)
    return {row.lead_key: lead_from_json(row.data) for row in rows}


def lead_keys_by_email(conn: Connection, emails: Iterable[str]) -> set[str]:
    """The keys of every lead of these people: what to lock before loading them."""
    return {
        row.lead_key for row in rows_where_in(conn, select(leads.c.lead_key), leads.c.email, emails)
    }


def save_leads(conn: Connection, changed: Sequence[Lead], at: datetime) -> None:
    """Upsert leads (and their contacts) as they are now; bumps `version` on update."""
    emails = sorted({lead.email for lead in changed if lead.email})
    insert_ignore(conn, contacts, [{"email": e, "created_at": at} for e in emails], ["email"])
    found = rows_where_in(conn, select(contacts.c.email, contacts.c.id), contacts.c.email, emails)
    contact_ids = {row.email: row.id for row in found}
    time = bulk.time(conn)
    now = time(at)
    _SAVE_LEADS.execute(
        conn,
        [
            {
                "lead_key": lead.lead_key,
                "contact_id": contact_ids.get(lead.email),
                "email": lead.email,
                "offer_key": lead.offer_key,
                "stage": lead.stage.value,
                "score": lead.score,
                "do_not_contact": lead.do_not_contact,
                "grade": lead.grade,
                "data": lead_to_json(lead),
                "first_seen": time(lead.first_seen),
                "last_seen": time(lead.last_seen),
                "created_at": now,
                "updated_at": now,
                "version": 1,
            }
            for lead in changed
        ],
    )


def _save_leads_statement(dialect: str) -> ClauseElement:
    """Insert a lead, or update every column of it but its key, creation time and version,
    which goes up by one."""
    stmt = _insert_for(dialect, leads)
    keep = {"lead_key", "created_at", "version"}
    set_: dict[str, ColumnElement[Any]] = {
        c.name: stmt.excluded[c.name] for c in leads.columns if c.name not in keep
    }
    set_["version"] = leads.c.version + 1
    return stmt.on_conflict_do_update(index_elements=["lead_key"], set_=set_)


_SAVE_LEADS = bulk.Bulk(_save_leads_statement, [c.name for c in leads.columns])


_ADD_EVENTS = bulk.Bulk(
    lambda _dialect: events.insert(), ["lead_key", "kind", "actor", "at", "data", "raw_lead_id"]
)


def add_events(conn: Connection, new_events: Sequence[Event]) -> None:
    time = bulk.time(conn)
    _ADD_EVENTS.execute(
        conn,
        [
            {
                "lead_key": e.lead_key,
                "kind": e.kind,
                "actor": e.actor,
                "at": time(e.at),
                "data": bulk.json(e.data),
                "raw_lead_id": e.raw_lead_id,
            }
            for e in new_events
        ],
    )


def load_aliases(conn: Connection) -> dict[str, str]:
    return dict(conn.execute(select(offer_aliases.c.title_key, offer_aliases.c.offer_id)).all())


def learn_aliases(conn: Connection, aliases: dict[str, str], at: datetime) -> None:
    insert_ignore(
        conn,
        offer_aliases,
        [{"title_key": t, "offer_id": o, "learned_at": at} for t, o in aliases.items()],
        ["title_key"],
    )


# --- outbox ----------------------------------------------------------------------------


def enqueue(
    conn: Connection, lead_keys: Iterable[str], targets: Sequence[str], at: datetime
) -> None:
    """One pending row per (lead, target): a second change before delivery coalesces,
    and is made due now so the newest state goes out promptly."""
    rows = [
        {"lead_key": k, "target": t, "created_at": at, "next_attempt_at": at, "attempts": 0}
        for k in lead_keys
        for t in targets
    ]
    if rows:
        stmt = _insert(conn, outbox)
        least = func.min if conn.dialect.name == "sqlite" else func.least
        # A row being delivered right now loses its claim, so completing that delivery can't
        # delete it (see `complete`): the newer state is pushed next.
        set_ = {
            "next_attempt_at": least(outbox.c.next_attempt_at, stmt.excluded.next_attempt_at),
            "claimed_by": None,
            "claimed_until": None,
        }
        conn.execute(
            stmt.on_conflict_do_update(index_elements=["lead_key", "target"], set_=set_), rows
        )


# --- reads for the CLI -----------------------------------------------------------------


def count_by(conn: Connection, column: Any, *where: Any) -> dict[str, int]:
    stmt = select(column, func.count()).group_by(column)
    for clause in where:
        stmt = stmt.where(clause)
    return {str(k): int(v) for k, v in conn.execute(stmt).all()}


def lead_history(conn: Connection, key: str) -> list[Any]:
    return list(
        conn.execute(
            select(events).where(events.c.lead_key == key).order_by(events.c.at, events.c.id)
        )
    )


def lead_links(conn: Connection, key: str) -> list[Any]:
    return list(conn.execute(select(target_links).where(target_links.c.lead_key == key)))


def open_dead_letters(conn: Connection) -> dict[str, int]:
    return count_by(conn, dead_letters.c.target, dead_letters.c.resolved_at.is_(None))


def outbox_depth(conn: Connection) -> dict[str, int]:
    return count_by(conn, outbox.c.target)


# --- delivery --------------------------------------------------------------------------


def claim_due(
    conn: Connection, target: str, limit: int, now: datetime, lease: timedelta, worker: str
) -> list[Any]:
    """Claim up to `limit` due outbox rows of a target for `lease`.

    On PostgreSQL the rows are locked with SKIP LOCKED, so replicas claiming at once get
    disjoint sets; on SQLite the write transaction serialises claimers. A claim a worker
    didn't finish (crash, SIGKILL) expires with its lease and the rows are claimed again.
    """
    free = or_(
        outbox.c.claimed_until.is_(None),
        outbox.c.claimed_until < now,
        outbox.c.claimed_by == worker,
    )
    stmt = (
        select(outbox.c.id, outbox.c.lead_key, outbox.c.attempts)
        .where(outbox.c.target == target, outbox.c.next_attempt_at <= now, free)
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(conn.execute(stmt))
    if rows:
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_([r.id for r in rows]))
            .values(claimed_by=worker, claimed_until=now + lease)
        )
    return rows


def release(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(list(ids)))
            .values(claimed_by=None, claimed_until=None)
        )


def complete(conn: Connection, ids: Sequence[int], worker: str) -> None:
    """Delivered (or nothing to deliver): the pending row goes — unless a change re-enqueued
    the lead meanwhile (which cleared the claim, see `enqueue`), or the claim expired and
    another worker holds the row now."""
    if ids:
        conn.execute(
            outbox.delete().where(outbox.c.id.in_(list(ids)), outbox.c.claimed_by == worker)
        )


def back_off(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Retry later: `id`, `next_attempt_at`, `attempts`, `last_error`."""
    for row in rows:
        conn.execute(
            update(outbox)
            .where(outbox.c.id == row["id"])
            .values(
                next_attempt_at=row["next_attempt_at"],
                attempts=row["attempts"],
                last_error=row["last_error"][:2000],
                claimed_by=None,
                claimed_until=None,
            )
        )


def load_links(conn: Connection, target: str, keys: Iterable[str]) -> dict[str, Any]:
    stmt = select(target_links).where(target_links.c.target == target)
    return {row.lead_key: row for row in rows_where_in(conn, stmt, target_links.c.lead_key, keys)}


def save_links(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    upsert_rows(conn, target_links, rows, ["lead_key", "target"])


def save_record_links(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """The contact and account a lead hangs off in a CRM (lead_key, target, kind,
    external_id, linked_at, created): the newest the CRM named replaces the one before;
    `created_at` is set when the CRM says it made the record now, and never cleared."""
    links = [{k: v for k, v in row.items() if k != "created"} for row in rows]
    upsert_rows(conn, record_links, links, ["lead_key", "target", "kind"])
    for row in rows:
        if row.get("created"):
            conn.execute(
                record_links.update()
                .where(
                    record_links.c.lead_key == row["lead_key"],
                    record_links.c.target == row["target"],
                    record_links.c.kind == row["kind"],
                    record_links.c.created_at.is_(None),
                )
                .values(created_at=row["linked_at"])
            )


def lead_record_links(conn: Connection, key: str) -> list[Any]:
    """The contact and account records of one lead, in every CRM."""
    return list(
        conn.execute(
            select(record_links)
            .where(record_links.c.lead_key == key)
            .order_by(record_links.c.target, record_links.c.kind)
        )
    )


def mark_created(conn: Connection, target: str, keys: Sequence[str], at: datetime) -> None:
    """Record that the CRM created these records for leadbridge. Set once, never cleared: a
    later update of the same record doesn't make it someone else's."""
    for clause in in_chunks(conn, target_links.c.lead_key, keys):
        conn.execute(
            target_links.update()
            .where(target_links.c.target == target, clause, target_links.c.created_at.is_(None))
            .values(created_at=at)
        )


def add_dead_letters(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(dead_letters.insert(), list(rows))


def leads_by_email(conn: Connection, emails: Iterable[str]) -> dict[str, list[Lead]]:
    out: dict[str, list[Lead]] = {}
    for row in rows_where_in(conn, select(leads.c.email, leads.c.data), leads.c.email, emails):
        out.setdefault(row.email, []).append(lead_from_json(row.data))
    return out


def resolve_dead_letters(
    conn: Connection, ids: Sequence[int], resolution: str, at: datetime
) -> list[Any]:
    """Mark open dead letters replayed or discarded; returns the rows this call closed.

    Each is closed by one statement that checks it is still open and returns it: a replay
    and a discard of the same letter at once (two replicas, two operators) close it once.
    All of a target's can be many (a day's outage), so the ids go through `in_chunks`.
    """
    close = (
        update(dead_letters)
        .where(dead_letters.c.resolved_at.is_(None))
        .values(resolved_at=at, resolution=resolution)
        .returning(*dead_letters.c)
    )
    return rows_where_in(conn, close, dead_letters.c.id, ids)


def open_dead_letter_ids(conn: Connection, target: str | None = None) -> list[int]:
    stmt = select(dead_letters.c.id).where(dead_letters.c.resolved_at.is_(None))
    if target:
        stmt = stmt.where(dead_letters.c.target == target)
    return list(conn.execute(stmt).scalars())


def lead_keys_active_between(
    conn: Connection, since: datetime | None, until: datetime | None
) -> list[str]:
    """Leads with customer activity in [since, until] (either bound optional)."""
    stmt = select(leads.c.lead_key).order_by(leads.c.first_seen, leads.c.lead_key)
    if since is not None:
        stmt = stmt.where(leads.c.last_seen >= since)
    if until is not None:
        stmt = stmt.where(leads.c.first_seen <= until)
    return list(conn.execute(stmt).scalars())


def delete_cursor(conn: Connection, name: str) -> None:
    conn.execute(cursors.delete().where(cursors.c.name == name))
