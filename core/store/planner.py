"""The PostgreSQL planner's picture of a store that a long ingest is growing fast.

PostgreSQL plans each statement from the statistics `ANALYZE` last gathered. A backfill
into a new store starts with none: the planner guesses, and its guess for "leads whose
email is one of these 300" on a table it believes small is a sequential scan. Each batch
then reads the whole leads table to find its people, and the ingest slows as the table
grows. A million-line backfill into PostgreSQL with autovacuum off (this project's CI
server) had landed a third of it after 21 minutes, ~265 leads/s and falling, each batch's
lookup a 0.6 s parallel scan; with this refresh it took 13 minutes, 1,281 leads/s, faster
than at 10,000 (docs/benchmarks.md, "Sixth pass"). Autovacuum analyzes the tables in time
where it is on, but only a minute after they changed at best: long enough on a new store.

So a long ingest analyzes the tables it grows itself, each time they have doubled since
the planner last counted them: nine times over a million rows into a new store (each
reads a sample of at most 30,000 rows a table, PostgreSQL's default), never for a small
poll of a large store. It is a
planner hint, not a write: a lock it would wait for (another replica's ANALYZE, a
migration, an anti-wraparound VACUUM) is given up after a moment and not asked for again
until a quarter more rows have come; a store user that doesn't own the tables (PostgreSQL
would skip them) leaves it to autovacuum. SQLite plans from its indexes without statistics.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from leadbridge.core.store.repo import Store

log = logging.getLogger(__name__)

# The tables an ingest grows: it looks people up in the first three, and delivery reads
# the outbox it fills.
GROWN_TABLES = ("raw_leads", "leads", "contacts", "events", "outbox")
# Never analyze for fewer rows than this: below it a scan is as cheap as an index.
FIRST_AT = 2000
GROWTH = 2  # analyze when the store holds this many times the rows the planner believes
LOCK_WAIT = "2s"  # how long ANALYZE waits for a lock before the refresh is given up


class PlannerStatistics:
    """Told how many raw leads an ingest has read so far; analyzes the grown tables when
    the store holds `GROWTH` times what the planner believes (at least `FIRST_AT` rows)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.enabled = store.engine.dialect.name == "postgresql"
        self._believed: float | None = None  # raw_leads rows, as the planner counts them
        self._read_then = 0  # read by this ingest when `_believed` was set
        self._not_before = 0  # after a refresh that failed: not again before this count

    def landed(self, count: int) -> None:
        """`count`: raw leads this ingest has read, in total (landed, or held already:
        counted as grown either way, so a re-run may analyze once more than it needs)."""
        if not self.enabled or count < self._not_before:
            return
        if self._believed is None:
            self._believed = self._planner_rows()
            if self._believed is None:
                self.enabled = False
                return
        rows = self._believed + count - self._read_then
        if rows < max(FIRST_AT, GROWTH * self._believed):
            return
        if self._analyze():
            self._believed, self._read_then = rows, count
        else:  # a lock held by a long VACUUM: not one 2 s wait per batch while it lasts
            self._not_before = count + max(FIRST_AT, int(rows) // 4)

    def _planner_rows(self) -> float | None:
        """The rows the planner believes raw_leads holds (0 before any ANALYZE, where it
        says -1); None when this store's user can't analyze the tables (not their owner:
        PostgreSQL would skip them with a warning only its own log shows) or the question
        failed — statistics are then autovacuum's, and the ingest goes on."""
        try:
            with self.store.connect() as conn:
                found = conn.execute(
                    text(
                        "SELECT reltuples, pg_has_role(relowner, 'USAGE') FROM pg_class "
                        "WHERE oid = to_regclass('raw_leads')"
                    )
                ).one_or_none()
        except SQLAlchemyError as exc:
            _not_refreshed(exc)
            return None
        if found is None or not found[1]:
            log.info("the store's user doesn't own its tables: statistics are autovacuum's")
            return None
        return max(float(found[0]), 0.0)

    def _analyze(self) -> bool:
        """ANALYZE the grown tables; False (logged) when it couldn't, e.g. a lock held."""
        try:
            with self.store.begin() as conn:
                _analyze_in(conn)
        except SQLAlchemyError as exc:
            _not_refreshed(exc)
            return False
        log.info("planner statistics refreshed", extra={"tables": list(GROWN_TABLES)})
        return True


def _analyze_in(conn: Connection) -> None:
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))  # a constant, not input
    conn.execute(text("ANALYZE " + ", ".join(GROWN_TABLES)))


def _not_refreshed(exc: SQLAlchemyError) -> None:
    """The driver's error class only: its message may quote a statement's values."""
    orig = getattr(exc, "orig", None)
    log.warning(
        "the planner's statistics were not refreshed; the ingest goes on",
        extra={"error": type(orig or exc).__name__},
    )
